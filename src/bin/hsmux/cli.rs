//! The command line's definition (clap derive): every verb, its options and help text. The
//! `--help` output, the shell completions and the man pages are all generated from these
//! types, so they cannot drift apart. A new verb is a variant of [`Verb`] plus a function
//! that [`crate::run`] calls for it.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Exit statuses, the same for every verb (also in the man page).
pub const EXIT_STATUS: &str = "Exit status: 0 all well, 1 a problem was found (each is printed \
with PROBLEM) or the verb failed, 2 usage error.";

#[derive(Parser, Debug)]
#[command(
    name = "hsmux",
    version,
    about = "Check, inspect and set up hsmux, the PKCS#11 module that multiplexes HSMs, \
             cloud KMS and a software token behind one set of slots",
    long_about = None,
    after_help = EXIT_STATUS,
    arg_required_else_help = true,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub verb: Verb,
}

/// Where the configuration comes from; the same search as the module's C_Initialize when
/// not given (HSMUX_CONFIG, then ~/.config/hsmux/hsmux.toml, /etc/hsmux/hsmux.toml, then
/// the embedded default).
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArg {
    /// The configuration file (default: the module's own search)
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Load the configuration as the module does, reach every slot, list keys and mechanisms
    #[command(after_help = EXIT_STATUS)]
    Check(ConfigArg),
    /// The state of every slot and replica
    #[command(after_help = EXIT_STATUS)]
    Status(ConfigArg),
    /// Initialise a token (the software token of a new install): label, SO PIN, user PIN
    ///
    /// The PINs are read from the terminal without echo (asked twice), or from
    /// --so-pin-source / --pin-source. A PIN is never an argument of its own: command lines
    /// are visible to every user of the machine. An initialised token is initialised
    /// anew: its keys are erased.
    #[command(after_help = EXIT_STATUS)]
    Init(InitArgs),
    /// Check or read the audit trail that `[audit] file` writes
    #[command(subcommand)]
    Audit(AuditVerb),
    /// Operations on a soft token's store (re-sealing)
    #[command(subcommand)]
    Store(crate::store::StoreVerb),
    /// List the objects a pkcs11: URI selects, each key's versions together
    #[command(after_help = EXIT_STATUS)]
    Keys(crate::keys::ListArgs),
    /// Create, rotate, destroy a key or print its public key, named by a pkcs11: URI
    #[command(subcommand)]
    Key(crate::keys::KeyVerb),
    /// Sign a file with the key a pkcs11: URI names
    #[command(after_help = EXIT_STATUS)]
    Sign(crate::keys::SignArgs),
    /// Print the version
    Version,
    /// Print a shell completion script on stdout
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (hsmux.1, one page per verb, hsmux.toml.5) into a directory
    #[command(hide = true)]
    Man {
        /// The directory (created if missing)
        #[arg(value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditVerb {
    /// Check the hash chains of audit trail files and name the first broken line
    ///
    /// Every line carries `prev`, the SHA-256 of the previous line of its process's chain;
    /// an edited, deleted or reordered line breaks it. Give the rotated files too (oldest
    /// first) to check across a rotation.
    #[command(after_help = EXIT_STATUS)]
    Verify {
        /// The audit trail files, oldest first
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
    /// Print an audit trail readably, a line per record
    #[command(after_help = EXIT_STATUS)]
    Tail {
        /// Keep printing what is appended (follows a rename or truncation by logrotate)
        #[arg(short, long)]
        follow: bool,
        /// Only the records of this slot (its label or id)
        #[arg(long, value_name = "SLOT")]
        slot: Option<String>,
        /// Only the records of this key (its label or CKA_ID)
        #[arg(long, value_name = "LABEL")]
        key: Option<String>,
        /// The audit trail file
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The slot to initialise (default: the first slot of the configuration)
    #[arg(long, value_name = "ID")]
    pub slot: Option<u64>,
    /// The token label (at most 32 bytes; default: the slot's configured label)
    #[arg(long)]
    pub label: Option<String>,
    /// Where the security officer PIN comes from: file:PATH (its first line) or env:VAR
    #[arg(long, value_name = "SOURCE")]
    pub so_pin_source: Option<PinSource>,
    /// Where the user PIN comes from: file:PATH (its first line) or env:VAR
    #[arg(long, value_name = "SOURCE")]
    pub pin_source: Option<PinSource>,
}

/// A PIN's source on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    File(PathBuf),
    Env(String),
}

impl std::str::FromStr for PinSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("file", p)) if !p.is_empty() => Ok(PinSource::File(p.into())),
            Some(("env", v)) if !v.is_empty() => Ok(PinSource::Env(v.into())),
            _ => Err("expected file:PATH or env:VAR".into()),
        }
    }
}
