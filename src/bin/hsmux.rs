//! The hsmux command line: `hsmux check [--config FILE]` loads the configuration exactly as
//! the module does, opens every slot and lists tokens and mechanisms; `hsmux status` prints
//! the state of every slot. Exit status 0 when all is well, 1 when a problem was found, 2
//! for a usage error.

use hsmux::config::Config;
use hsmux::core::api::general;
use hsmux::core::instance;
use std::path::PathBuf;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!("usage: hsmux check [--config FILE]\n       hsmux status [--config FILE]\n       hsmux version");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(verb) = args.first() else {
        return usage();
    };
    let mut config: Option<PathBuf> = None;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--config" | "-c" if i + 1 < args.len() => {
                config = Some(PathBuf::from(&args[i + 1]));
                i += 2;
            }
            _ => return usage(),
        }
    }
    match verb.as_str() {
        "check" => check(config, true),
        "status" => check(config, false),
        "version" | "--version" => {
            println!("hsmux {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

fn check(config: Option<PathBuf>, detailed: bool) -> ExitCode {
    let cfg = match Config::locate(config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hsmux: configuration error: {e}");
            return ExitCode::from(1);
        }
    };
    println!("config: {}", cfg.source);
    if let Err(e) = instance::initialize(config.as_deref()) {
        eprintln!("hsmux: cannot initialize: {e}");
        return ExitCode::from(1);
    }
    let mut problems = 0;
    for slot in general::slot_list(true).unwrap_or_default() {
        match general::token_info(slot) {
            Ok((t, _, _)) => {
                let initialized = t.flags & cryptoki_sys::CKF_TOKEN_INITIALIZED != 0;
                println!(
                    "slot {slot}: token {:?} serial {} {}",
                    t.label,
                    t.serial,
                    if initialized {
                        "initialized"
                    } else {
                        "NOT initialized (C_InitToken, e.g. pkcs11-tool --init-token)"
                    }
                );
                if detailed {
                    let mechs = general::mechanism_list(slot).unwrap_or_default();
                    println!(
                        "  {} mechanisms: {}",
                        mechs.len(),
                        mechs
                            .iter()
                            .map(|m| match hsmux::core::mechname::name(*m) {
                                Some(n) => n.trim_start_matches("CKM_").to_string(),
                                None => format!("0x{m:x}"),
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    );
                }
            }
            Err(e) => {
                problems += 1;
                println!("slot {slot}: PROBLEM: {e} (see the log line above)");
            }
        }
    }
    let _ = instance::finalize();
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
