//! The TOML configuration: where it is found, its schema, and its validation.
//!
//! Order of precedence for the file: a path passed in `CK_C_INITIALIZE_ARGS.pReserved`,
//! then `HSMUX_CONFIG`, then `$XDG_CONFIG_HOME/hsmux/hsmux.toml` (`~/.config/...`), then
//! `/etc/hsmux/hsmux.toml`; none of them: the embedded default (one soft slot).

use serde::Deserialize;

mod remote;
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
}

/// The file as written. Slot tables are flat (every backend's keys in one struct) so that
/// the TOML parser itself reports an unknown or mistyped key with its line; what depends
/// on the backend is checked afterwards with the positions kept in `Spanned`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    metrics: Option<MetricsConfig>,
    #[serde(default, rename = "slot")]
    slots: Vec<toml::Spanned<RawSlot>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlot {
    id: Option<u64>,
    label: String,
    /// Absent for a replica group (the backends are the replicas').
    backend: Option<toml::Spanned<String>>,
    path: Option<PathBuf>,
    kdf_iterations: Option<u32>,
    user_pin: Option<PinCheck>,
    // backend = "module"
    library: Option<toml::Spanned<PathBuf>>,
    token: Option<String>,
    serial: Option<String>,
    slot: Option<u64>,
    pin: Option<Secret>,
    init_args: Option<String>,
    probe_init: Option<bool>,
    timeout_ms: Option<u64>,
    // remote backends (config/remote.rs)
    address: Option<String>,
    namespace: Option<String>,
    auth: Option<remote::VaultAuth>,
    transit: Option<remote::RawTransit>,
    ca_file: Option<PathBuf>,
    key_ring: Option<String>,
    keys: Option<Vec<String>>,
    credentials: Option<PathBuf>,
    endpoint: Option<String>,
    hsm_only: Option<bool>,
    region: Option<String>,
    access_key_id: Option<Secret>,
    secret_access_key: Option<Secret>,
    session_token: Option<Secret>,
    profile: Option<String>,
    cluster_id: Option<String>,
    gcm_iv: Option<String>,
    /// `[slot.seal]` of a soft slot.
    seal: Option<remote::RawSeal>,
    // a replica group
    policy: Option<toml::Spanned<String>>,
    replica: Option<Vec<toml::Spanned<RawReplica>>>,
}

/// Copies the remote backends' keys out of a raw table.
macro_rules! raw_remote {
    ($s:expr) => {
        remote::RawRemote {
            address: $s.address.clone(),
            namespace: $s.namespace.clone(),
            auth: $s.auth.clone(),
            transit: $s.transit.clone(),
            ca_file: $s.ca_file.clone(),
            key_ring: $s.key_ring.clone(),
            keys: $s.keys.clone(),
            credentials: $s.credentials.clone(),
            endpoint: $s.endpoint.clone(),
            hsm_only: $s.hsm_only,
            region: $s.region.clone(),
            access_key_id: $s.access_key_id.clone(),
            secret_access_key: $s.secret_access_key.clone(),
            session_token: $s.session_token.clone(),
            profile: $s.profile.clone(),
            cluster_id: $s.cluster_id.clone(),
            gcm_iv: $s.gcm_iv.clone(),
        }
    };
}

/// One `[[slot.replica]]`: a name and a backend's keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplica {
    name: String,
    backend: toml::Spanned<String>,
    library: Option<toml::Spanned<PathBuf>>,
    token: Option<String>,
    serial: Option<String>,
    slot: Option<u64>,
    pin: Option<Secret>,
    init_args: Option<String>,
    probe_init: Option<bool>,
    timeout_ms: Option<u64>,
    // remote backends (config/remote.rs)
    address: Option<String>,
    namespace: Option<String>,
    auth: Option<remote::VaultAuth>,
    transit: Option<remote::RawTransit>,
    ca_file: Option<PathBuf>,
    key_ring: Option<String>,
    keys: Option<Vec<String>>,
    credentials: Option<PathBuf>,
    endpoint: Option<String>,
    hsm_only: Option<bool>,
    region: Option<String>,
    access_key_id: Option<Secret>,
    secret_access_key: Option<Secret>,
    session_token: Option<Secret>,
    profile: Option<String>,
    cluster_id: Option<String>,
    gcm_iv: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: Option<String>,
    pub file: Option<PathBuf>,
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

/// The key store behind a slot, chosen by `backend = "..."`.
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
    /// Several replicas of the same keys behind one slot (`crate::replica`).
    Replicas {
        policy: Policy,
        replicas: Vec<ReplicaConfig>,
    },
}

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
    pub backend: ReplicaBackend,
}

/// The key store of one replica: any backend but a soft token or another group.
#[derive(Debug, Clone)]
pub enum ReplicaBackend {
    Module(ModuleConfig),
    Vault(VaultConfig),
    GcpKms(GcpKmsConfig),
    AwsKms(AwsKmsConfig),
    CloudHsm(CloudHsmConfig),
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

fn check_user_pin(
    s: &RawSlot,
    at: &dyn Fn(usize) -> String,
    line: usize,
) -> Result<(), ConfigError> {
    if let Some(p) = &s.user_pin {
        if hex::decode(&p.sha256).map(|v| v.len()) != Ok(32) {
            return Err(ConfigError(format!(
                "{}: key `user_pin.sha256` must be 64 hex digits",
                at(line)
            )));
        }
    }
    Ok(())
}

/// A slot with `[[slot.replica]]` entries: the policy and each replica's backend.
fn replica_group(
    s: &RawSlot,
    replicas: &[toml::Spanned<RawReplica>],
    at: &dyn Fn(usize) -> String,
    line: usize,
    line_of: &dyn Fn(usize) -> usize,
    origin: &str,
) -> Result<BackendConfig, ConfigError> {
    let own_keys = s.backend.is_some()
        || s.library.is_some()
        || s.token.is_some()
        || s.serial.is_some()
        || s.slot.is_some()
        || s.pin.is_some()
        || s.path.is_some()
        || s.seal.is_some()
        || !raw_remote!(s).present().is_empty();
    if own_keys {
        return Err(ConfigError(format!(
            "{}: a slot with [[slot.replica]] entries takes `backend` and its keys in each replica, not in the slot",
            at(line)
        )));
    }
    let policy = match s
        .policy
        .as_ref()
        .map(|p| (p.get_ref().as_str(), p.span().start))
    {
        None | Some(("failover", _)) => Policy::Failover,
        Some(("balance", _)) => Policy::Balance,
        Some((other, pos)) => {
            return Err(ConfigError(format!(
                "{}: key `policy`: {other:?} is not \"failover\" or \"balance\"",
                at(line_of(pos))
            )))
        }
    };
    if replicas.is_empty() {
        return Err(ConfigError(format!(
            "{}: [[slot.replica]] is empty",
            at(line)
        )));
    }
    let mut out: Vec<ReplicaConfig> = Vec::new();
    for r in replicas {
        let rline = line_of(r.span().start);
        let r = r.get_ref();
        let rat = |l: usize| {
            format!(
                "{origin}: line {l}: [[slot.replica]] {:?} of slot {:?}",
                r.name, s.label
            )
        };
        if r.name.is_empty() || out.iter().any(|o| o.name == r.name) {
            return Err(ConfigError(format!(
                "{}: key `name` must be given and unique in the slot",
                rat(rline)
            )));
        }
        let as_slot = RawSlot {
            id: None,
            label: r.name.clone(),
            backend: Some(r.backend.clone()),
            path: None,
            kdf_iterations: None,
            user_pin: None,
            library: r.library.clone(),
            token: r.token.clone(),
            serial: r.serial.clone(),
            slot: r.slot,
            pin: r.pin.clone(),
            init_args: r.init_args.clone(),
            probe_init: r.probe_init,
            timeout_ms: r.timeout_ms,
            address: r.address.clone(),
            namespace: r.namespace.clone(),
            auth: r.auth.clone(),
            transit: r.transit.clone(),
            ca_file: r.ca_file.clone(),
            key_ring: r.key_ring.clone(),
            keys: r.keys.clone(),
            credentials: r.credentials.clone(),
            endpoint: r.endpoint.clone(),
            hsm_only: r.hsm_only,
            region: r.region.clone(),
            access_key_id: r.access_key_id.clone(),
            secret_access_key: r.secret_access_key.clone(),
            session_token: r.session_token.clone(),
            profile: r.profile.clone(),
            cluster_id: r.cluster_id.clone(),
            gcm_iv: r.gcm_iv.clone(),
            seal: None,
            policy: None,
            replica: None,
        };
        let backend = match backend_of(&as_slot, &rat, rline, line_of)? {
            BackendConfig::Module(m) => ReplicaBackend::Module(m),
            BackendConfig::Vault(v) => ReplicaBackend::Vault(v),
            BackendConfig::GcpKms(v) => ReplicaBackend::GcpKms(v),
            BackendConfig::AwsKms(v) => ReplicaBackend::AwsKms(v),
            BackendConfig::CloudHsm(v) => ReplicaBackend::CloudHsm(v),
            BackendConfig::Soft { .. } | BackendConfig::Replicas { .. } => {
                return Err(ConfigError(format!(
                    "{}: key `backend`: {:?} cannot be a replica (module, vault, gcp-kms, aws-kms and cloudhsm can)",
                    rat(line_of(r.backend.span().start)),
                    r.backend.get_ref()
                )))
            }
        };
        out.push(ReplicaConfig {
            name: r.name.clone(),
            pin: r.pin.clone(),
            backend,
        });
    }
    Ok(BackendConfig::Replicas {
        policy,
        replicas: out,
    })
}

/// The backend of a slot (or replica) table without `[[slot.replica]]`.
fn backend_of(
    s: &RawSlot,
    at: &dyn Fn(usize) -> String,
    line: usize,
    line_of: &dyn Fn(usize) -> usize,
) -> Result<BackendConfig, ConfigError> {
    let Some(backend_key) = &s.backend else {
        return Err(ConfigError(format!(
            "{}: key `backend` is missing (or give [[slot.replica]] entries)",
            at(line)
        )));
    };
    let backend_line = line_of(backend_key.span().start);
    let name = backend_key.get_ref().as_str();
    if !matches!(
        name,
        "soft" | "module" | "vault" | "gcp-kms" | "aws-kms" | "cloudhsm"
    ) {
        return Err(ConfigError(format!(
            "{}: key `backend`: unknown backend {name:?} (this build offers: soft, module, vault, gcp-kms, aws-kms, cloudhsm)",
            at(backend_line)
        )));
    }
    let module_keys = s.library.is_some()
        || s.token.is_some()
        || s.serial.is_some()
        || s.slot.is_some()
        || s.init_args.is_some()
        || s.probe_init.is_some();
    let remote = raw_remote!(s);
    let here = at(line);
    if matches!(name, "soft" | "vault" | "gcp-kms" | "aws-kms") && (module_keys || s.pin.is_some())
    {
        return Err(ConfigError(format!(
            "{here}: keys `library`, `token`, `serial`, `slot`, `pin`, `init_args`, `probe_init` belong to backend \"module\"{}",
            if name == "soft" { "" } else { " (a remote slot authenticates with its own credentials; `user_pin` checks the consumer's PIN)" }
        )));
    }
    if name != "soft" && (s.path.is_some() || s.kdf_iterations.is_some() || s.seal.is_some()) {
        return Err(ConfigError(format!(
            "{here}: keys `path`, `kdf_iterations` and [slot.seal] belong to backend \"soft\""
        )));
    }
    if matches!(name, "soft" | "module") {
        if let Some(k) = remote.present().first() {
            return Err(ConfigError(format!(
                "{here}: key `{k}` belongs to a remote backend, not {name:?}"
            )));
        }
    }
    let timeout_ms = match s.timeout_ms {
        Some(0) => {
            return Err(ConfigError(format!(
                "{here}: key `timeout_ms` must be above 0"
            )))
        }
        t => t.unwrap_or(DEFAULT_TIMEOUT_MS),
    };
    Ok(match name {
        "soft" => BackendConfig::Soft {
            path: s.path.clone().ok_or_else(|| {
                ConfigError(format!(
                    "{here}: key `path` is missing (backend \"soft\" needs it)"
                ))
            })?,
            kdf_iterations: s.kdf_iterations,
            seal: s
                .seal
                .as_ref()
                .map(|r| remote::seal(r, DEFAULT_TIMEOUT_MS, &here))
                .transpose()?,
        },
        "module" => BackendConfig::Module(module_config(s, at, line, line_of)?),
        "vault" => BackendConfig::Vault(remote::vault(&remote, timeout_ms, &here)?),
        "gcp-kms" => BackendConfig::GcpKms(remote::gcp_kms(&remote, timeout_ms, &here)?),
        "aws-kms" => BackendConfig::AwsKms(remote::aws_kms(&remote, timeout_ms, &here)?),
        "cloudhsm" => BackendConfig::CloudHsm(remote::cloudhsm(
            &remote,
            module_config(s, at, line, line_of)?,
            &here,
        )?),
        other => {
            return Err(ConfigError(format!(
                "{}: key `backend`: unknown backend {other:?} (this build offers: soft, module, vault, gcp-kms, aws-kms, cloudhsm)",
                at(backend_line)
            )))
        }
    })
}

/// The keys of a `backend = "module"` slot, checked with the line of the offending key.
fn module_config(
    s: &RawSlot,
    at: &dyn Fn(usize) -> String,
    line: usize,
    line_of: &dyn Fn(usize) -> usize,
) -> Result<ModuleConfig, ConfigError> {
    let library = s.library.as_ref().ok_or_else(|| {
        ConfigError(format!(
            "{}: key `library` is missing (backend \"module\" needs the vendor library's absolute path)",
            at(line)
        ))
    })?;
    if !library.get_ref().is_absolute() {
        return Err(ConfigError(format!(
            "{}: key `library`: {:?} is not an absolute path",
            at(line_of(library.span().start)),
            library.get_ref()
        )));
    }
    let mut chosen = Vec::new();
    if let Some(t) = &s.token {
        chosen.push(TokenSelector::Label(t.trim_end().to_string()));
    }
    if let Some(t) = &s.serial {
        chosen.push(TokenSelector::Serial(t.trim_end().to_string()));
    }
    if let Some(n) = s.slot {
        chosen.push(TokenSelector::Slot(n));
    }
    if chosen.len() != 1 {
        return Err(ConfigError(format!(
            "{}: give exactly one of the keys `token` (label), `serial` or `slot` to choose the vendor's token",
            at(line)
        )));
    }
    if s.path.is_some() || s.kdf_iterations.is_some() {
        return Err(ConfigError(format!(
            "{}: keys `path` and `kdf_iterations` belong to backend \"soft\"",
            at(line)
        )));
    }
    if s.timeout_ms == Some(0) {
        return Err(ConfigError(format!(
            "{}: key `timeout_ms` must be above 0",
            at(line)
        )));
    }
    Ok(ModuleConfig {
        library: library.get_ref().clone(),
        select: chosen.remove(0),
        pin: s.pin.clone(),
        init_args: s.init_args.clone(),
        probe_init: s.probe_init.unwrap_or(true),
        timeout_ms: s.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
    })
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
            }],
            source: "embedded default".into(),
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
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError(format!("{origin}: {}", e.to_string().trim_end())))?;
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let mut slots = Vec::new();
        for spanned in raw.slots {
            let line = line_of(spanned.span().start);
            let s = spanned.into_inner();
            let at = |l: usize| format!("{origin}: line {l}: [[slot]] {:?}", s.label);
            if let Some(replicas) = &s.replica {
                let backend = replica_group(&s, replicas, &at, line, &line_of, origin)?;
                check_user_pin(&s, &at, line)?;
                slots.push(SlotConfig {
                    id: s.id,
                    label: s.label,
                    backend,
                    user_pin: s.user_pin,
                    line,
                });
                continue;
            }
            if let Some(p) = &s.policy {
                return Err(ConfigError(format!(
                    "{}: key `policy` needs [[slot.replica]] entries",
                    at(line_of(p.span().start))
                )));
            }
            let backend = backend_of(&s, &at, line, &line_of)?;
            check_user_pin(&s, &at, line)?;
            slots.push(SlotConfig {
                id: s.id,
                label: s.label,
                backend,
                user_pin: s.user_pin,
                line,
            });
        }
        let mut cfg = Config {
            log: raw.log,
            metrics: raw.metrics,
            slots,
            source: origin.to_string(),
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
