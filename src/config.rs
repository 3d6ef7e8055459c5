//! The TOML configuration: where it is found, its schema, and its validation.
//!
//! - here: the checked configuration ([`Config`], [`SlotConfig`], one [`BackendConfig`] per
//!   slot or replica) and where the file is found;
//! - `table.rs`: the `[[slot]]` and `[[slot.replica]]` tables as written, which share
//!   every backend key, and their checks;
//! - `backends.rs`: the backends, the keys each takes and its parse function (adding a
//!   backend: one row there, one [`BackendConfig`] arm, and its keys in `table.rs`);
//! - `remote.rs`: the remote services' config types and checks; `azure.rs`: Azure Key
//!   Vault's.
//!
//! Order of precedence for the file: a path passed in `CK_C_INITIALIZE_ARGS.pReserved`,
//! then `HSMUX_CONFIG`, then `$XDG_CONFIG_HOME/hsmux/hsmux.toml` (`~/.config/...`), then
//! `/etc/hsmux/hsmux.toml`; none of them: the embedded default (one soft slot).

use serde::Deserialize;

pub mod audit;
mod azure;
mod backends;
pub mod policy;
mod remote;
mod table;
pub mod uri;
pub use azure::{kind_of as azure_kind_of, AzureAuth, AzureKind, AzureKvConfig};
pub use remote::{
    AwsCredentials, AwsKmsConfig, CloudHsmConfig, GcpKmsConfig, RemoteCommon, SealConfig,
    VaultAuth, VaultConfig,
};
use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration problem, with the file and position when known.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub log: LogConfig,
    pub metrics: Option<MetricsConfig>,
    pub slots: Vec<SlotConfig>,
    /// Where this configuration came from (not part of the file).
    pub source: String,
    /// `[audit]`: the audit trail (`crate::audit`).
    pub audit: Option<audit::AuditConfig>,
    /// `[policy]`: the key-use policy's defaults (`crate::policy`).
    pub policy: policy::PolicyConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: Option<String>,
    pub file: Option<PathBuf>,
    /// Log to the local syslog socket instead (wins over `file`).
    pub syslog: Option<bool>,
    /// The syslog socket (default /dev/log).
    pub syslog_socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: String,
}

#[derive(Debug, Clone)]
pub struct SlotConfig {
    pub id: Option<u64>,
    pub label: String,
    pub backend: BackendConfig,
    /// `user_pin = { sha256 = ".." }`: the PIN `C_Login(CKU_USER)` must present before any
    /// credential of the backend is used.
    pub user_pin: Option<PinCheck>,
    /// Line of the slot's table in the file (for messages).
    pub line: usize,
    /// The slot's own policy keys (`hardware_only`, `read_only`, `allow`, ...).
    pub policy: policy::SlotPolicy,
}

/// A hash of the PIN consumers must give: `{ sha256 = "<64 hex digits>" }`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinCheck {
    pub sha256: String,
}

impl fmt::Debug for PinCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinCheck(sha256)")
    }
}

impl PinCheck {
    /// Does `pin` hash to the configured value? Compared in constant time.
    pub fn matches(&self, pin: &[u8]) -> bool {
        let Ok(want) = hex::decode(&self.sha256) else {
            return false;
        };
        let got = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pin);
        want.len() == got.as_ref().len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(&want, got.as_ref()).is_ok()
    }
}

/// How a module slot picks its token among the vendor library's slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// `token = "label"`: the token label, trailing blanks ignored.
    Label(String),
    /// `serial = ".."`: the token serial number, trailing blanks ignored.
    Serial(String),
    /// `slot = N`: the vendor's own slot id.
    Slot(u64),
}

/// The key store behind a slot or a replica, chosen by `backend = "..."` (a replica is
/// never `Soft` nor `Replicas`).
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// hsmux's own software token.
    Soft {
        path: PathBuf,
        /// PBKDF2-HMAC-SHA256 iterations for PINs set from now on.
        kdf_iterations: Option<u32>,
        /// `[slot.seal]`: the store key sealed by a transit key as well as the PIN.
        seal: Option<SealConfig>,
    },
    /// A vendor PKCS#11 library, its token presented as this slot.
    Module(ModuleConfig),
    /// Vault / OpenBao transit.
    Vault(VaultConfig),
    /// Google Cloud KMS / Cloud HSM.
    GcpKms(GcpKmsConfig),
    /// AWS KMS.
    AwsKms(AwsKmsConfig),
    /// AWS CloudHSM: its PKCS#11 client library, with the cluster's health.
    CloudHsm(CloudHsmConfig),
    /// Azure Key Vault / Azure Managed HSM.
    AzureKv(AzureKvConfig),
    /// Several replicas of the same keys behind one slot (`crate::replica`).
    Replicas {
        policy: Policy,
        replicas: Vec<ReplicaConfig>,
        /// `replay_limit`: bytes of input a multi-part operation keeps to be replayed on
        /// the next replica (0: no replay).
        replay_limit: usize,
        /// `hedge_ms`: when a call is sent to a second replica as well (`None`:
        /// automatic, the replica's p99 latency; `Some(0)`: never).
        hedge_ms: Option<u64>,
    },
}

/// Most `[[slot.replica]]` entries one slot takes (a call tracks the replicas it tried
/// in one 64-bit word).
pub const MAX_REPLICAS: usize = 64;

/// `replay_limit` when absent: 1 MiB of input per multi-part operation.
pub const DEFAULT_REPLAY_LIMIT: usize = 1 << 20;

/// How a replica group uses its replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// One active replica, the first healthy one in file order.
    Failover,
    /// New sessions and single-part operations spread over the healthy replicas.
    Balance,
}

#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub name: String,
    /// The user PIN hsmux logs in to this replica with (`pin`); `None` passes the
    /// consumer's PIN through (vendor modules) or needs none (remote services).
    pub pin: Option<Secret>,
    /// Any backend but a soft token or another group.
    pub backend: BackendConfig,
}

#[derive(Debug, Clone)]
pub struct ModuleConfig {
    /// Absolute path of the vendor library.
    pub library: PathBuf,
    pub select: TokenSelector,
    /// The user PIN hsmux logs in with; `None` passes the consumer's PIN through.
    pub pin: Option<Secret>,
    /// Given to the vendor's `C_Initialize` as `pReserved` (a NUL-terminated string).
    pub init_args: Option<String>,
    /// Load and initialize the library once in a short-lived child process first, so that
    /// a library that crashes or hangs in `C_Initialize` disables its slot instead of
    /// taking the consumer down.
    pub probe_init: bool,
    /// The most vendor sessions hsmux keeps open on the token when it pools them (a module
    /// replica, `cloudhsm`); `None`: the token's `ulMaxSessionCount`, else 64.
    pub max_sessions: Option<u64>,
    /// How long that probe may take.
    pub timeout_ms: u64,
}

/// Default deadline of a backend call, and of the module probe.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// A secret in the config: a literal, `{ env = "NAME" }` or `{ file = "/path" }`.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    Literal(String),
    Env { env: String },
    File { file: PathBuf },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Literal(_) => f.write_str("Secret(literal, redacted)"),
            Secret::Env { env } => write!(f, "Secret(env {env})"),
            Secret::File { file } => write!(f, "Secret(file {})", file.display()),
        }
    }
}

impl Secret {
    /// The secret's bytes; the error names where it was looked for, never the value.
    pub fn resolve(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, ConfigError> {
        match self {
            Secret::Literal(s) => Ok(zeroize::Zeroizing::new(s.as_bytes().to_vec())),
            Secret::Env { env } => std::env::var(env)
                .map(|v| zeroize::Zeroizing::new(v.into_bytes()))
                .map_err(|_| ConfigError(format!("secret: environment variable {env} is not set"))),
            Secret::File { file } => std::fs::read(file)
                .map(|mut v| {
                    while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        v.pop();
                    }
                    zeroize::Zeroizing::new(v)
                })
                .map_err(|e| ConfigError(format!("secret: cannot read {}: {e}", file.display()))),
        }
    }
}

/// Where the embedded default keeps its software token.
pub fn default_soft_path() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("hsmux/soft");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/share/hsmux/soft"),
        None => std::env::temp_dir().join("hsmux/soft"),
    }
}

impl Config {
    /// The embedded default: one soft slot, id 0, label `hsmux-soft`.
    pub fn embedded_default() -> Config {
        Config {
            log: LogConfig::default(),
            metrics: None,
            slots: vec![SlotConfig {
                id: Some(0),
                label: "hsmux-soft".into(),
                backend: BackendConfig::Soft {
                    path: default_soft_path(),
                    kdf_iterations: None,
                    seal: None,
                },
                user_pin: None,
                line: 0,
                policy: Default::default(),
            }],
            source: "embedded default".into(),
            audit: None,
            policy: Default::default(),
        }
    }

    /// Parses and validates a config text that comes from no file; `origin` names it in
    /// errors. Relative paths are refused: there is no directory to resolve them against.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::parse_at(text, origin, None)
    }

    /// Parses and validates a config text; relative paths are resolved against `base` (the
    /// config file's directory) or, without one, refused.
    pub fn parse_at(text: &str, origin: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let raw: table::RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError(format!("{origin}: {}", e.to_string().trim_end())))?;
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let slots = raw
            .slots
            .into_iter()
            .map(|s| table::slot(s, origin, &line_of))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cfg = Config {
            log: raw.log,
            metrics: raw.metrics,
            slots,
            source: origin.to_string(),
            audit: raw.audit,
            policy: raw.policy,
        };
        cfg.resolve_paths(base)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Makes the soft stores' `path` and `[log] file` absolute (see [`Config::parse_at`]).
    fn resolve_paths(&mut self, base: Option<&Path>) -> Result<(), ConfigError> {
        let origin = self.source.clone();
        let resolve = |p: &mut PathBuf, what: &str| -> Result<(), ConfigError> {
            if p.as_os_str().is_empty() || p.is_absolute() {
                return Ok(());
            }
            match base {
                Some(b) => {
                    *p = b.join(&*p);
                    Ok(())
                }
                None => Err(ConfigError(format!(
                    "{origin}: {what} {:?} is relative and this configuration has no file to resolve it against; give an absolute path",
                    p.display()
                ))),
            }
        };
        if let Some(f) = &mut self.log.file {
            resolve(f, "[log] file")?;
        }
        if let Some(a) = &mut self.audit {
            resolve(&mut a.file, "[audit] file")?;
        }
        for s in &mut self.slots {
            if let BackendConfig::Soft { path, .. } = &mut s.backend {
                let what = format!("line {}: [[slot]] {:?}: key `path`", s.line, s.label);
                resolve(path, &what)?;
            }
        }
        Ok(())
    }

    /// Reads and validates the file at `path`. Relative paths in it (a soft store's `path`,
    /// `[log] file`) are taken relative to the file's own directory, never to the working
    /// directory of whichever program loads the module.
    pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read config: {e}", path.display())))?;
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .ok_or_else(|| {
                ConfigError(format!(
                    "{}: cannot tell the config file's directory",
                    path.display()
                ))
            })?;
        Config::parse_at(&text, &path.display().to_string(), Some(&base))
    }

    /// Finds and loads the configuration by the order of precedence (module doc).
    pub fn locate(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        if let Some(p) = explicit {
            return Config::load_file(p);
        }
        if let Some(p) = std::env::var_os("HSMUX_CONFIG").filter(|p| !p.is_empty()) {
            return Config::load_file(Path::new(&p));
        }
        let xdg = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        if let Some(dir) = xdg {
            let p = dir.join("hsmux/hsmux.toml");
            if p.exists() {
                return Config::load_file(&p);
            }
        }
        let etc = Path::new("/etc/hsmux/hsmux.toml");
        if etc.exists() {
            return Config::load_file(etc);
        }
        Ok(Config::embedded_default())
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        let origin = self.source.clone();
        if self.slots.is_empty() {
            return Err(ConfigError(format!("{origin}: no [[slot]] is configured")));
        }
        let mut next = 0u64;
        let mut ids = std::collections::BTreeSet::new();
        let mut labels = std::collections::BTreeSet::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            let id = *s.id.get_or_insert(next);
            next = id + 1;
            let at = format!(
                "{origin}: line {}: [[slot]] #{} (label {:?})",
                s.line,
                i + 1,
                s.label
            );
            if id >= 1 << 32 {
                return Err(ConfigError(format!("{at}: id {id} must be below 2^32")));
            }
            if !ids.insert(id) {
                return Err(ConfigError(format!("{at}: slot id {id} is used twice")));
            }
            if s.label.is_empty() || s.label.len() > 32 {
                return Err(ConfigError(format!("{at}: label must be 1 to 32 bytes")));
            }
            if !labels.insert(s.label.clone()) {
                return Err(ConfigError(format!("{at}: label is used twice")));
            }
            if let BackendConfig::Soft {
                path,
                kdf_iterations,
                ..
            } = &s.backend
            {
                if path.as_os_str().is_empty() {
                    return Err(ConfigError(format!("{at}: key `path` is empty")));
                }
                if kdf_iterations.is_some_and(|n| n < 1000) {
                    return Err(ConfigError(format!(
                        "{at}: key `kdf_iterations` must be at least 1000"
                    )));
                }
            }
        }
        if let Some(level) = &self.log.level {
            if level.parse::<log::LevelFilter>().is_err() {
                return Err(ConfigError(format!("{origin}: [log] level {level:?} is not one of off, error, warn, info, debug, trace")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_config_files_directory() {
        let dir = std::env::temp_dir().join(format!("hsmux-cfg-rel-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf")).unwrap();
        let file = dir.join("conf/hsmux.toml");
        std::fs::write(
            &file,
            "[log]\nfile='logs/h.log'\n[[slot]]\nlabel='a'\nbackend='soft'\npath='store/a'\n",
        )
        .unwrap();
        let c = Config::load_file(&file).unwrap();
        match &c.slots[0].backend {
            BackendConfig::Soft { path, .. } => assert_eq!(path, &dir.join("conf/store/a")),
            _ => panic!("backend"),
        }
        assert_eq!(
            c.log.file.as_deref(),
            Some(dir.join("conf/logs/h.log").as_path())
        );
        // Without a file there is nothing to resolve against: refused, naming the key.
        let e = Config::parse("[[slot]]\nlabel='a'\nbackend='soft'\npath='store/a'\n", "t")
            .unwrap_err();
        assert!(
            e.0.contains("relative") && e.0.contains("`path`"),
            "{}",
            e.0
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn slots_are_numbered_in_file_order() {
        let c = Config::parse(
            "[[slot]]\nlabel='a'\nbackend='soft'\npath='/tmp/a'\n[[slot]]\nlabel='b'\nbackend='soft'\npath='/tmp/b'\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            c.slots.iter().map(|s| s.id.unwrap()).collect::<Vec<_>>(),
            vec![0, 1]
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = Config::parse(
            "[[slot]]\nlabel='a'\nbackend='soft'\npath='/x'\ncolour='red'\n",
            "bad.toml",
        )
        .unwrap_err();
        assert!(e.0.contains("bad.toml"), "{}", e.0);
        assert!(e.0.contains("line"), "{}", e.0);
        assert!(e.0.contains("colour"), "{}", e.0);
    }

    #[test]
    fn duplicate_ids_and_long_labels_are_refused() {
        let e = Config::parse(
            "[[slot]]\nid=3\nlabel='a'\nbackend='soft'\npath='/a'\n[[slot]]\nid=3\nlabel='b'\nbackend='soft'\npath='/b'\n",
            "t",
        )
        .unwrap_err();
        assert!(e.0.contains("used twice"));
        let long = "x".repeat(33);
        let e = Config::parse(
            &format!("[[slot]]\nlabel='{long}'\nbackend='soft'\npath='/a'\n"),
            "t",
        )
        .unwrap_err();
        assert!(e.0.contains("1 to 32"));
    }

    #[test]
    fn unknown_backend_is_refused() {
        let e = Config::parse("[[slot]]\nlabel='a'\nbackend='floppy'\n", "t").unwrap_err();
        assert!(e.0.contains("floppy"), "{}", e.0);
    }

    #[test]
    fn a_replica_takes_the_backend_keys_of_a_slot_but_is_never_soft() {
        let group = |replica: &str| {
            Config::parse(
                &format!("[[slot]]\nlabel='g'\n[[slot.replica]]\nname='a'\n{replica}"),
                "t",
            )
        };
        let c = group("backend='module'\nlibrary='/x.so'\ntoken='t'\npin='1'\n").unwrap();
        let BackendConfig::Replicas { replicas, .. } = &c.slots[0].backend else {
            panic!("backend")
        };
        assert!(
            matches!(&replicas[0].backend, BackendConfig::Module(m) if m.library == Path::new("/x.so"))
        );
        assert!(replicas[0].pin.is_some());
        let e = group("backend='soft'\n").unwrap_err().0;
        let want =
            "\"soft\" cannot be a replica (module, vault, gcp-kms, aws-kms, cloudhsm and azure-kv can)";
        assert!(e.contains("line 5") && e.contains(want), "{e}");
        // A soft token's keys are a slot's only: the parser names the line.
        let e = group("backend='vault'\npath='/x'\n").unwrap_err().0;
        assert!(
            e.contains("line 6") && e.contains("unknown field `path`"),
            "{e}"
        );
    }

    #[test]
    fn a_slot_takes_at_most_64_replicas() {
        let group = |n: usize| {
            let mut t = String::from("[[slot]]\nlabel='g'\n");
            for i in 0..n {
                t.push_str(&format!(
                    "[[slot.replica]]\nname='r{i}'\nbackend='module'\nlibrary='/x.so'\ntoken='t'\n"
                ));
            }
            Config::parse(&t, "t")
        };
        assert!(group(MAX_REPLICAS).is_ok());
        let e = group(MAX_REPLICAS + 1).unwrap_err().0;
        assert!(
            e.contains("65 [[slot.replica]] entries") && e.contains("at most 64"),
            "{e}"
        );
    }

    #[test]
    fn secrets_resolve_without_showing_values() {
        std::env::set_var("HSMUX_TEST_SECRET", "s3cret");
        let s: Secret = toml::from_str::<toml::Value>("x = { env = 'HSMUX_TEST_SECRET' }").unwrap()
            ["x"]
            .clone()
            .try_into()
            .unwrap();
        assert_eq!(&*s.resolve().unwrap(), b"s3cret");
        let lit = Secret::Literal("hunter2".into());
        assert!(!format!("{lit:?}").contains("hunter2"));
    }
}
