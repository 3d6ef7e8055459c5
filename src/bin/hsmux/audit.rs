//! `hsmux audit verify` and `hsmux audit tail`: thin calls into `hsmux::audit`, where the
//! chain rules and the readable format live (the tests check them there too).

use crate::cli::AuditVerb;
use hsmux::audit::{tail, verify};
use std::process::ExitCode;

pub fn run(verb: AuditVerb) -> ExitCode {
    match verb {
        AuditVerb::Verify { files } => match verify::verify_files(&files) {
            Ok(r) => {
                println!(
                    "ok: {} line(s) in {} chain(s); {} chain(s) without a stop record \
                     (process running, killed, or tail cut)",
                    r.lines,
                    r.chains,
                    r.open.len()
                );
                ExitCode::SUCCESS
            }
            Err(b) => {
                println!("broken: {b}");
                ExitCode::from(1)
            }
        },
        AuditVerb::Tail {
            follow,
            slot,
            key,
            file,
        } => {
            let filter = tail::Filter { slot, key };
            match tail::tail(&file, follow, &filter, &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hsmux: {}: {e}", file.display());
                    ExitCode::from(1)
                }
            }
        }
    }
}
