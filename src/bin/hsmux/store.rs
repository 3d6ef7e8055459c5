//! `hsmux store reseal`: moves a soft store between PIN sealing and `[slot.seal]` transit
//! sealing. The work (and its crash rule) is `hsmux::backend::soft::reseal`; this file
//! finds the slot, reads the PINs, prints the outcome and writes the audit line.

use crate::cli::{ConfigArg, PinSource};
use crate::pins;
use clap::{Args, Subcommand, ValueEnum};
use hsmux::backend::soft::reseal::{Resealed, Sealing, Step};
use hsmux::config::{BackendConfig, Config};
use std::process::ExitCode;

/// Set (to a step number, 1 to 8) only by the tests: the re-seal stops at that step, says
/// so on stderr, and waits to be killed.
const PAUSE_ENV: &str = "HSMUX_TEST_RESEAL_PAUSE_AT";

#[derive(Subcommand, Debug)]
pub enum StoreVerb {
    /// Re-seal a soft store: PIN sealing to [slot.seal] transit sealing, or back
    ///
    /// The objects stay as they are (the store key does not change); both PIN records are
    /// re-wrapped, so both PINs are asked (without echo) unless given by --so-pin-source
    /// and --pin-source. Killed at any point, the store opens afterwards sealed the old way
    /// or the new way. Sealing to transit or back both need the slot's [slot.seal] in the
    /// configuration; after --to pin, remove it.
    #[command(after_help = crate::cli::EXIT_STATUS)]
    Reseal(ResealArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Target {
    /// The slot's [slot.seal] transit key seals the store key, under the PINs
    Transit,
    /// The PINs alone seal the store key
    Pin,
}

#[derive(Args, Debug)]
pub struct ResealArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The soft slot (its id or label)
    #[arg(long, value_name = "SLOT")]
    pub slot: String,
    /// The sealing to move to
    #[arg(long, value_enum)]
    pub to: Target,
    /// Where the security officer PIN comes from: file:PATH (its first line) or env:VAR
    #[arg(long, value_name = "SOURCE")]
    pub so_pin_source: Option<PinSource>,
    /// Where the user PIN comes from: file:PATH (its first line) or env:VAR
    #[arg(long, value_name = "SOURCE")]
    pub pin_source: Option<PinSource>,
    /// Print each step as it is passed
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(verb: StoreVerb) -> ExitCode {
    let StoreVerb::Reseal(args) = verb;
    match reseal(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("hsmux store reseal: {why}");
            ExitCode::from(1)
        }
    }
}

fn reseal(args: &ResealArgs) -> Result<String, String> {
    hsmux::logging::init_early();
    let config =
        Config::locate(args.config.config.as_deref()).map_err(|e| format!("configuration: {e}"))?;
    hsmux::logging::init(&config.log);
    let (index, label, token) = soft_slot(&config, &args.slot)?;
    let state = token
        .sealing_state()
        .map_err(|e| format!("slot {label}: {e}"))?;
    let so_pin = pins::read("SO PIN", args.so_pin_source.as_ref())?;
    let user_pin = match state.has_user_pin() {
        true => Some(pins::read("user PIN", args.pin_source.as_ref())?),
        false => None,
    };
    let to = match args.to {
        Target::Transit => Sealing::Transit,
        Target::Pin => Sealing::Pin,
    };
    let pause: Option<u32> = std::env::var(PAUSE_ENV).ok().and_then(|v| v.parse().ok());
    let mut on_step = |s: Step| {
        if args.verbose {
            eprintln!("step {}: {s:?}", s.number());
        }
        if pause == Some(s.number()) {
            eprintln!("paused at step {} ({s:?})", s.number());
            loop {
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
        }
    };
    let done = token.reseal(
        to,
        so_pin.as_bytes(),
        user_pin.as_ref().map(|p| p.as_bytes()),
        &mut on_step,
    );
    audit(&config, index, &label, args.to, &done);
    let r = done.map_err(|e| {
        format!("slot {label}: {e} (see the log line above); its sealing is unchanged")
    })?;
    Ok(describe(&label, &r))
}

/// The soft slot named `which` (id or label): its configuration index, label and token.
fn soft_slot(
    config: &Config,
    which: &str,
) -> Result<(usize, String, hsmux::backend::soft::SoftToken), String> {
    let (index, slot) = config
        .slots
        .iter()
        .enumerate()
        .find(|(i, s)| s.label == which || s.id.unwrap_or(*i as u64).to_string() == which)
        .ok_or_else(|| format!("no slot {which:?} in {}", config.source))?;
    match &slot.backend {
        BackendConfig::Soft {
            path,
            kdf_iterations,
            seal,
        } => Ok((
            index,
            slot.label.clone(),
            hsmux::backend::soft_token(&slot.label, path, *kdf_iterations, seal.as_ref()),
        )),
        _ => Err(format!(
            "slot {which:?} is not a soft slot (backend = \"soft\"): only a soft store is re-sealed"
        )),
    }
}

fn describe(label: &str, r: &Resealed) -> String {
    let now = match &r.transit_key {
        Some(k) => format!("sealed by transit key {k:?} under its PINs"),
        None => "sealed by its PINs alone; remove its [slot.seal] from the configuration".into(),
    };
    let old = if r.old_overwritten {
        "the old sealing overwritten"
    } else {
        "the old token.json could not be overwritten (see the warning)"
    };
    format!(
        "slot {label}: store re-sealed ({} PIN record(s)), now {now}; {old}",
        r.records
    )
}

/// One audit line for the re-seal, done or refused, when `[audit]` is configured.
fn audit(
    config: &Config,
    index: usize,
    label: &str,
    to: Target,
    done: &Result<Resealed, hsmux::core::error::Error>,
) {
    if config.audit.is_none() {
        return;
    }
    if let Err(e) = hsmux::audit::install(config) {
        eprintln!("hsmux store reseal: {e}");
        return;
    }
    if let Some(t) = hsmux::audit::current() {
        if let Some(t) = t.as_ref() {
            let mut e = hsmux::audit::Event::new("storeReseal", Some(index));
            e.detail = Some(match done {
                Ok(r) => format!(
                    "slot {label} re-sealed to {}",
                    r.transit_key
                        .as_ref()
                        .map_or("pin".to_string(), |k| format!("transit key {k}"))
                ),
                Err(err) => format!("slot {label}: re-seal to {to:?} refused: {err}"),
            });
            if let Err(err) = done {
                e.rv = err.rv();
            }
            t.submit(e);
        }
    }
    hsmux::audit::uninstall();
}
