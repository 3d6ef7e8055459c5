//! The hsmux command line. The verbs are defined in `cli.rs` (clap derive, which also
//! generates `--help`, the completions and the man pages); each verb is one function here
//! or in its own module. Exit status 0 when all is well, 1 when a problem was found or the
//! verb failed, 2 for a usage error (clap's own exit status for one).

mod audit;
mod cli;
mod init;
mod keyinfo;
mod keys;
mod man;
mod p11;
mod pins;
mod report;
mod store;

use clap::{CommandFactory, Parser};
use cli::{Cli, Verb};
use std::process::ExitCode;

fn main() -> ExitCode {
    run(Cli::parse())
}

/// One function per verb.
fn run(cli: Cli) -> ExitCode {
    match cli.verb {
        Verb::Check(c) => report::check(c.config.as_deref(), true),
        Verb::Status(c) => report::check(c.config.as_deref(), false),
        Verb::Init(args) => init::init(&args),
        Verb::Audit(verb) => audit::run(verb),
        Verb::Store(verb) => store::run(verb),
        Verb::Keys(a) => keys::list(&a),
        Verb::Key(verb) => keys::key(&verb),
        Verb::Sign(a) => keys::sign(&a),
        Verb::Version => {
            println!("hsmux {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Verb::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "hsmux", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Verb::Man { out } => man::write_all(&out),
    }
}
