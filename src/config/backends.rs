//! The backends a slot or replica may name: one row of [`BACKENDS`] each, with the keys it
//! takes and the function that checks them into its [`BackendConfig`] arm. The keys a
//! backend does not take are refused here, in one place, naming the backend they belong to.

use super::table::Keys;
use super::{remote, BackendConfig, ConfigError, ModuleConfig, TokenSelector, DEFAULT_TIMEOUT_MS};
use std::fmt::Display;
use toml::Spanned;

/// Where a table is, for messages: `<file>: line N: [[slot]] "label"` at the table's own
/// line or at the line of one of its keys.
pub(super) struct Here<'a> {
    /// Names the table at a line.
    pub at: &'a dyn Fn(usize) -> String,
    /// The table's own line.
    pub line: usize,
    /// The line of a byte offset of the file.
    pub line_of: &'a dyn Fn(usize) -> usize,
}

impl Here<'_> {
    /// The table at its own line.
    pub fn table(&self) -> String {
        (self.at)(self.line)
    }
    /// The table at the line of the key whose value is `v`.
    pub fn key<T>(&self, v: &Spanned<T>) -> String {
        (self.at)((self.line_of)(v.span().start))
    }
    /// `<table>: <what>`.
    pub fn err(&self, what: impl Display) -> ConfigError {
        ConfigError(format!("{}: {what}", self.table()))
    }
}

/// One backend as the config names it.
pub(super) struct Backend {
    pub name: &'static str,
    /// The keys it takes besides `backend` and `timeout_ms` (which every backend takes),
    /// in groups.
    keys: &'static [&'static [&'static str]],
    /// Can it be a `[[slot.replica]]`?
    pub replica: bool,
    /// Its keys, already known to be its own, into its config.
    parse: fn(&Keys, &Here) -> Result<BackendConfig, ConfigError>,
}

impl Backend {
    fn takes(&self, key: &str) -> bool {
        self.keys.iter().any(|group| group.contains(&key))
    }
}

/// The keys of a vendor module (`backend = "module"`, and `"cloudhsm"` which is one).
const MODULE_KEYS: &[&str] = &[
    "library",
    "token",
    "serial",
    "slot",
    "pin",
    "init_args",
    "probe_init",
    "max_sessions",
];
/// The keys of hsmux's own software token.
const SOFT_KEYS: &[&str] = &["path", "kdf_iterations", "seal"];
/// Where an AWS service is and the credentials for it.
const AWS_KEYS: &[&str] = &[
    "region",
    "endpoint",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "profile",
];

/// Every backend this build offers, in the order messages list them.
const BACKENDS: &[Backend] = &[
    Backend {
        name: "soft",
        keys: &[SOFT_KEYS],
        replica: false,
        parse: soft,
    },
    Backend {
        name: "module",
        keys: &[MODULE_KEYS],
        replica: true,
        parse: |k, h| Ok(BackendConfig::Module(module(k, h)?)),
    },
    Backend {
        name: "vault",
        keys: &[&[
            "address",
            "namespace",
            "auth",
            "transit",
            "ca_file",
            "gcm_iv",
        ]],
        replica: true,
        parse: |k, h| Ok(BackendConfig::Vault(remote::vault(k, &h.table())?)),
    },
    Backend {
        name: "gcp-kms",
        keys: &[&[
            "key_ring",
            "keys",
            "credentials",
            "endpoint",
            "hsm_only",
            "gcm_iv",
        ]],
        replica: true,
        parse: |k, h| Ok(BackendConfig::GcpKms(remote::gcp_kms(k, &h.table())?)),
    },
    Backend {
        name: "aws-kms",
        keys: &[AWS_KEYS, &["keys"]],
        replica: true,
        parse: |k, h| Ok(BackendConfig::AwsKms(remote::aws_kms(k, &h.table())?)),
    },
    Backend {
        name: "cloudhsm",
        keys: &[MODULE_KEYS, AWS_KEYS, &["cluster_id"]],
        replica: true,
        parse: |k, h| {
            let module = module(k, h)?;
            Ok(BackendConfig::CloudHsm(remote::cloudhsm(
                k,
                module,
                &h.table(),
            )?))
        },
    },
    Backend {
        name: "azure-kv",
        keys: &[&["vault", "keys", "auth", "hsm_only", "ca_file", "gcm_iv"]],
        replica: true,
        parse: |k, h| {
            Ok(BackendConfig::AzureKv(super::azure::azure_kv(
                k,
                &h.table(),
            )?))
        },
    },
];

/// `a, b and c`.
fn listed<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// The backends a replica may be (`module, vault, ... and cloudhsm`).
pub(super) fn replica_names() -> String {
    listed(BACKENDS.iter().filter(|b| b.replica).map(|b| b.name))
}

/// The backend a table names with `backend = "..."`.
pub(super) fn kind(k: &Keys, here: &Here) -> Result<&'static Backend, ConfigError> {
    let Some(name) = &k.backend else {
        return Err(here.err("key `backend` is missing (or give [[slot.replica]] entries)"));
    };
    BACKENDS
        .iter()
        .find(|b| b.name == name.get_ref())
        .ok_or_else(|| {
            let offered: Vec<&str> = BACKENDS.iter().map(|b| b.name).collect();
            ConfigError(format!(
                "{}: key `backend`: unknown backend {:?} (this build offers: {})",
                here.key(name),
                name.get_ref(),
                offered.join(", ")
            ))
        })
}

/// Refuses the keys `b` does not take, naming whose they are; then `b`'s config.
pub(super) fn parse(b: &Backend, k: &Keys, here: &Here) -> Result<BackendConfig, ConfigError> {
    let name = b.name;
    let foreign: Vec<&str> = k
        .given()
        .into_iter()
        .filter(|key| *key != "timeout_ms" && !b.takes(key))
        .collect();
    // A backend that takes none of the remote keys (soft, module) is told apart from the
    // remote ones in the messages.
    let local = b
        .keys
        .iter()
        .all(|group| *group == MODULE_KEYS || *group == SOFT_KEYS);
    if foreign.iter().any(|key| MODULE_KEYS.contains(key)) {
        let keys: Vec<String> = MODULE_KEYS.iter().map(|k| format!("`{k}`")).collect();
        return Err(here.err(format!(
            "keys {} belong to backend \"module\"{}",
            keys.join(", "),
            if local { "" } else { " (a remote slot authenticates with its own credentials; `user_pin` checks the consumer's PIN)" }
        )));
    }
    if foreign.iter().any(|key| SOFT_KEYS.contains(key)) {
        return Err(
            here.err("keys `path`, `kdf_iterations` and [slot.seal] belong to backend \"soft\"")
        );
    }
    if let Some(key) = foreign.first() {
        if local {
            return Err(here.err(format!(
                "key `{key}` belongs to a remote backend, not {name:?}"
            )));
        }
        let owners: Vec<&str> = BACKENDS
            .iter()
            .filter(|o| o.takes(key))
            .map(|o| o.name)
            .collect();
        return Err(here.err(format!(
            "key `{key}` does not belong to backend {name:?} (it is a key of {})",
            owners.join(", ")
        )));
    }
    if k.timeout_ms == Some(0) {
        return Err(here.err("key `timeout_ms` must be above 0"));
    }
    (b.parse)(k, here)
}

/// `backend = "soft"`. Without `path`, the store is where the embedded default keeps it
/// (per user, `$XDG_DATA_HOME/hsmux/soft`): the packaged /etc/hsmux/hsmux.toml relies on it.
fn soft(k: &Keys, here: &Here) -> Result<BackendConfig, ConfigError> {
    Ok(BackendConfig::Soft {
        path: k.path.clone().unwrap_or_else(super::default_soft_path),
        kdf_iterations: k.kdf_iterations,
        seal: k
            .seal
            .as_ref()
            .map(|s| remote::seal(s, &here.table()))
            .transpose()?,
    })
}

/// The keys of a vendor module, checked with the line of the offending key.
fn module(k: &Keys, here: &Here) -> Result<ModuleConfig, ConfigError> {
    let library = k.library.as_ref().ok_or_else(|| {
        here.err(
            "key `library` is missing (backend \"module\" needs the vendor library's absolute path)",
        )
    })?;
    if !library.get_ref().is_absolute() {
        return Err(ConfigError(format!(
            "{}: key `library`: {:?} is not an absolute path",
            here.key(library),
            library.get_ref()
        )));
    }
    let mut chosen = Vec::new();
    if let Some(t) = &k.token {
        chosen.push(TokenSelector::Label(t.trim_end().to_string()));
    }
    if let Some(t) = &k.serial {
        chosen.push(TokenSelector::Serial(t.trim_end().to_string()));
    }
    if let Some(n) = k.slot {
        chosen.push(TokenSelector::Slot(n));
    }
    if chosen.len() != 1 {
        return Err(here.err(
            "give exactly one of the keys `token` (label), `serial` or `slot` to choose the vendor's token",
        ));
    }
    if k.max_sessions == Some(0) {
        return Err(here.err("key `max_sessions` must be above 0"));
    }
    Ok(ModuleConfig {
        library: library.get_ref().clone(),
        select: chosen.remove(0),
        pin: k.pin.clone(),
        init_args: k.init_args.clone(),
        probe_init: k.probe_init.unwrap_or(true),
        max_sessions: k.max_sessions,
        timeout_ms: k.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
    })
}
