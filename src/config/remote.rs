//! The config of the remote backends: Vault/OpenBao transit, Google Cloud KMS, AWS KMS,
//! AWS CloudHSM (a vendor module with the cluster's health beside it), and the soft
//! token's `[slot.seal]`.

use super::azure::AnyAuth;
use super::table::Keys;
use super::{ConfigError, ModuleConfig, Secret, DEFAULT_TIMEOUT_MS};
use serde::Deserialize;
use std::path::PathBuf;

/// What every remote slot takes besides its service's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCommon {
    /// Deadline of one PKCS#11 call's requests, retries included.
    pub timeout_ms: u64,
    /// `gcm_iv = "service"`: a caller's AES-GCM IV that the service cannot honour is
    /// replaced by the service's (written back into `pIv`). Default `"caller"`: only an
    /// all-zero IV is, anything else is `CKR_MECHANISM_PARAM_INVALID`.
    pub gcm_service_iv: bool,
}

/// `auth = { method = "...", ... }` of a Vault slot. Each method takes `namespace`: the
/// Vault namespace of the auth mount (and of the token it gives), when it is not the
/// slot's `namespace`; `""` is the root namespace.
#[derive(Clone, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
pub enum VaultAuth {
    /// A token given outright (`token = { env = "VAULT_TOKEN" }`), renewed while it is
    /// renewable.
    Token {
        token: Secret,
        namespace: Option<String>,
    },
    /// `POST /v1/auth/<path>/login {role_id, secret_id}`.
    Approle {
        #[serde(default = "approle")]
        path: String,
        role_id: Secret,
        secret_id: Secret,
        namespace: Option<String>,
    },
    /// `POST /v1/auth/<path>/login {role, jwt}`; the JWT defaults to the pod's service
    /// account token.
    Kubernetes {
        #[serde(default = "kubernetes")]
        path: String,
        role: String,
        #[serde(default = "sa_token")]
        jwt: Secret,
        namespace: Option<String>,
    },
}

impl VaultAuth {
    /// `auth.namespace` as written (`None`: the slot's `namespace` applies).
    pub fn namespace(&self) -> Option<&str> {
        match self {
            VaultAuth::Token { namespace, .. }
            | VaultAuth::Approle { namespace, .. }
            | VaultAuth::Kubernetes { namespace, .. } => namespace.as_deref(),
        }
    }
}

fn approle() -> String {
    "approle".into()
}
fn kubernetes() -> String {
    "kubernetes".into()
}
fn sa_token() -> Secret {
    Secret::File {
        file: PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token"),
    }
}
fn transit() -> String {
    "transit".into()
}

impl std::fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VaultAuth::Token { .. } => f.write_str("VaultAuth::Token"),
            VaultAuth::Approle { path, .. } => write!(f, "VaultAuth::Approle({path})"),
            VaultAuth::Kubernetes { path, role, .. } => {
                write!(f, "VaultAuth::Kubernetes({path}, {role})")
            }
        }
    }
}

/// `transit = { path = "transit", keys = [..], namespace = ".." }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransit {
    #[serde(default = "transit")]
    pub path: String,
    /// The keys the slot shows; absent = every key of the mount (needs `list` on
    /// `<mount>/keys`). Named keys need no list permission.
    pub keys: Option<Vec<String>>,
    /// The Vault namespace of the transit mount, when it is not the slot's `namespace`;
    /// `""` is the root namespace.
    pub namespace: Option<String>,
}

#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// `http(s)://host:port`, no trailing slash.
    pub address: String,
    /// The slot's `namespace` (the default of the two below).
    pub namespace: Option<String>,
    /// Where logins and the token's own requests go (`X-Vault-Namespace`; `None`: the
    /// root namespace): `auth.namespace`, else `namespace`.
    pub auth_namespace: Option<String>,
    /// Where the transit requests go: `transit.namespace`, else `namespace`.
    pub transit_namespace: Option<String>,
    pub auth: VaultAuth,
    /// The transit mount path (`transit`).
    pub mount: String,
    /// Keys named in config (empty = list the mount).
    pub keys: Vec<String>,
    /// PEM file of the CA that signed the server's certificate (else the system's).
    pub ca_file: Option<PathBuf>,
    pub common: RemoteCommon,
}

#[derive(Debug, Clone)]
pub struct GcpKmsConfig {
    /// `projects/<p>/locations/<l>/keyRings/<r>`.
    pub key_ring: String,
    /// Crypto key names in the ring (empty = list the ring).
    pub keys: Vec<String>,
    /// A service-account JSON file; `None` = Application Default Credentials.
    pub credentials: Option<PathBuf>,
    /// `https://cloudkms.googleapis.com` unless overridden (tests).
    pub endpoint: String,
    /// Refuse (hide) key versions whose protection level is not HSM.
    pub hsm_only: bool,
    pub common: RemoteCommon,
}

/// AWS credentials: explicit keys, a profile, or the SDK's default chain.
#[derive(Debug, Clone, Default)]
pub struct AwsCredentials {
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    pub profile: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AwsKmsConfig {
    pub region: String,
    /// Key ids, ARNs or `alias/..` names (empty = ListKeys).
    pub keys: Vec<String>,
    /// Overrides the regional endpoint (tests, VPC endpoints).
    pub endpoint: Option<String>,
    pub credentials: AwsCredentials,
    pub common: RemoteCommon,
}

/// `backend = "cloudhsm"`: the CloudHSM PKCS#11 client library (a vendor module) whose
/// health and HSM addresses come from `DescribeClusters` beside it.
#[derive(Debug, Clone)]
pub struct CloudHsmConfig {
    pub module: ModuleConfig,
    pub cluster_id: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub credentials: AwsCredentials,
}

/// `[slot.seal]` of a soft slot: the store key is sealed by a transit key instead of the
/// PIN alone.
#[derive(Debug, Clone)]
pub struct SealConfig {
    pub vault: VaultConfig,
    /// The transit key (an aes256-gcm96 key) that seals the store key.
    pub key: String,
}

pub(super) fn need<T: Clone>(
    v: &Option<T>,
    key: &str,
    backend: &str,
    at: &str,
) -> Result<T, ConfigError> {
    v.clone().ok_or_else(|| {
        ConfigError(format!(
            "{at}: key `{key}` is missing (backend {backend:?} needs it)"
        ))
    })
}

pub(super) fn common(r: &Keys, at: &str) -> Result<RemoteCommon, ConfigError> {
    let gcm_service_iv = match r.gcm_iv.as_deref() {
        None | Some("caller") => false,
        Some("service") => true,
        Some(other) => {
            return Err(ConfigError(format!(
                "{at}: key `gcm_iv`: {other:?} is not \"caller\" or \"service\""
            )))
        }
    };
    Ok(RemoteCommon {
        timeout_ms: r.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
        gcm_service_iv,
    })
}

pub(super) fn url(v: &str, key: &str, at: &str) -> Result<String, ConfigError> {
    if !(v.starts_with("http://") || v.starts_with("https://")) {
        return Err(ConfigError(format!(
            "{at}: key `{key}`: {v:?} is not an http:// or https:// address"
        )));
    }
    Ok(v.trim_end_matches('/').to_string())
}

pub(super) fn names(
    v: &Option<Vec<String>>,
    key: &str,
    at: &str,
) -> Result<Vec<String>, ConfigError> {
    // A name may be written as a `pkcs11:object=...` URI (`uri::key_name`).
    let v = v
        .iter()
        .flatten()
        .map(|k| super::uri::key_name(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError(format!("{at}: key `{key}`: {e}")))?;
    if v.iter()
        .any(|k| k.is_empty() || k.contains(char::is_whitespace))
    {
        return Err(ConfigError(format!(
            "{at}: key `{key}`: key names must be non-empty and without blanks"
        )));
    }
    Ok(v)
}

/// A namespace as Vault takes it in `X-Vault-Namespace`: `a/b` (slashes around are
/// dropped); empty = the root namespace (no header).
fn namespace(v: Option<&str>, key: &str, at: &str) -> Result<Option<String>, ConfigError> {
    let Some(v) = v.map(|v| v.trim_matches('/')) else {
        return Ok(None);
    };
    let bad_part = !v.is_empty() && v.split('/').any(|p| p.is_empty() || p == "." || p == "..");
    if bad_part || v.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError(format!(
            "{at}: key `{key}`: {v:?} is not a Vault namespace path (`a/b`)"
        )));
    }
    Ok((!v.is_empty()).then(|| v.to_string()))
}

pub(super) fn vault(r: &Keys, at: &str) -> Result<VaultConfig, ConfigError> {
    let address = url(&need(&r.address, "address", "vault", at)?, "address", at)?;
    let auth = match need(&r.auth, "auth", "vault", at)? {
        AnyAuth::Vault(a) => a,
        AnyAuth::Azure(a) => {
            return Err(ConfigError(format!(
                "{at}: key `auth`: {a:?} is a method of backend \"azure-kv\", not \"vault\""
            )))
        }
    };
    let transit = r.transit.clone().unwrap_or(RawTransit {
        path: transit(),
        keys: None,
        namespace: None,
    });
    let mount = transit.path.trim_matches('/').to_string();
    if mount.is_empty() {
        return Err(ConfigError(format!("{at}: key `transit.path` is empty")));
    }
    let slot_ns = namespace(r.namespace.as_deref(), "namespace", at)?;
    let auth_namespace = match auth.namespace() {
        Some(n) => namespace(Some(n), "auth.namespace", at)?,
        None => slot_ns.clone(),
    };
    let transit_namespace = match transit.namespace.as_deref() {
        Some(n) => namespace(Some(n), "transit.namespace", at)?,
        None => slot_ns.clone(),
    };
    Ok(VaultConfig {
        address,
        namespace: slot_ns,
        auth_namespace,
        transit_namespace,
        auth,
        mount,
        keys: names(&transit.keys, "transit.keys", at)?,
        ca_file: r.ca_file.clone(),
        common: common(r, at)?,
    })
}

pub(super) fn gcp_kms(r: &Keys, at: &str) -> Result<GcpKmsConfig, ConfigError> {
    let key_ring = need(&r.key_ring, "key_ring", "gcp-kms", at)?;
    let parts: Vec<&str> = key_ring.split('/').collect();
    if parts.len() != 6
        || parts[0] != "projects"
        || parts[2] != "locations"
        || parts[4] != "keyRings"
        || parts.iter().any(|p| p.is_empty())
    {
        return Err(ConfigError(format!(
            "{at}: key `key_ring`: {key_ring:?} is not projects/<p>/locations/<l>/keyRings/<r>"
        )));
    }
    Ok(GcpKmsConfig {
        key_ring,
        keys: names(&r.keys, "keys", at)?,
        credentials: r.credentials.clone(),
        endpoint: url(
            r.endpoint
                .as_deref()
                .unwrap_or("https://cloudkms.googleapis.com"),
            "endpoint",
            at,
        )?,
        hsm_only: r.hsm_only.unwrap_or(false),
        common: common(r, at)?,
    })
}

/// `endpoint` of an AWS service: the regional one unless given.
fn aws_endpoint(r: &Keys, at: &str) -> Result<Option<String>, ConfigError> {
    r.endpoint
        .as_deref()
        .map(|e| url(e, "endpoint", at))
        .transpose()
}

fn aws_credentials(r: &Keys, at: &str) -> Result<AwsCredentials, ConfigError> {
    if r.access_key_id.is_some() != r.secret_access_key.is_some() {
        return Err(ConfigError(format!(
            "{at}: keys `access_key_id` and `secret_access_key` go together"
        )));
    }
    if r.session_token.is_some() && r.access_key_id.is_none() {
        return Err(ConfigError(format!(
            "{at}: key `session_token` needs `access_key_id` and `secret_access_key`"
        )));
    }
    Ok(AwsCredentials {
        access_key_id: r.access_key_id.clone(),
        secret_access_key: r.secret_access_key.clone(),
        session_token: r.session_token.clone(),
        profile: r.profile.clone(),
    })
}

pub(super) fn aws_kms(r: &Keys, at: &str) -> Result<AwsKmsConfig, ConfigError> {
    Ok(AwsKmsConfig {
        region: need(&r.region, "region", "aws-kms", at)?,
        keys: names(&r.keys, "keys", at)?,
        endpoint: aws_endpoint(r, at)?,
        credentials: aws_credentials(r, at)?,
        common: common(r, at)?,
    })
}

pub(super) fn cloudhsm(
    r: &Keys,
    module: ModuleConfig,
    at: &str,
) -> Result<CloudHsmConfig, ConfigError> {
    Ok(CloudHsmConfig {
        module,
        cluster_id: need(&r.cluster_id, "cluster_id", "cloudhsm", at)?,
        region: need(&r.region, "region", "cloudhsm", at)?,
        endpoint: aws_endpoint(r, at)?,
        credentials: aws_credentials(r, at)?,
    })
}

/// `[slot.seal]` as written: a backend (vault), the key, and Vault's connection keys.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSeal {
    pub backend: String,
    pub key: String,
    pub timeout_ms: Option<u64>,
    pub address: Option<String>,
    pub namespace: Option<String>,
    pub auth: Option<VaultAuth>,
    pub transit: Option<RawTransit>,
    pub ca_file: Option<PathBuf>,
}

pub(super) fn seal(s: &RawSeal, at: &str) -> Result<SealConfig, ConfigError> {
    let at = format!("{at}: [slot.seal]");
    if s.backend != "vault" {
        return Err(ConfigError(format!(
            "{at}: key `backend`: {:?} cannot seal a soft token (vault can)",
            s.backend
        )));
    }
    let key =
        super::uri::key_name(&s.key).map_err(|e| ConfigError(format!("{at}: key `key`: {e}")))?;
    if key.is_empty() {
        return Err(ConfigError(format!("{at}: key `key` is empty")));
    }
    let r = Keys {
        timeout_ms: s.timeout_ms,
        address: s.address.clone(),
        namespace: s.namespace.clone(),
        auth: s.auth.clone().map(AnyAuth::Vault),
        transit: s.transit.clone(),
        ca_file: s.ca_file.clone(),
        ..Keys::default()
    };
    Ok(SealConfig {
        vault: vault(&r, &at)?,
        key,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{BackendConfig, Config, Policy, Secret, VaultAuth};

    fn parse(t: &str) -> Result<Config, String> {
        Config::parse(t, "t.toml").map_err(|e| e.0)
    }

    #[test]
    fn the_design_examples_parse() {
        let c = parse(
            r#"
[[slot]]
label = "transit"
backend = "vault"
address = "https://vault.example.net:8200/"
namespace = "ns-1"
auth = { method = "approle", path = "approle", role_id = { env = "ROLE_ID" }, secret_id = { env = "SECRET_ID" } }
transit = { path = "transit", keys = ["minkms-sealing-key"] }
gcm_iv = "service"

[[slot]]
label = "gcp"
backend = "gcp-kms"
key_ring = "projects/p/locations/us-east1/keyRings/ring"
credentials = "/etc/hsmux/sa.json"
endpoint = "https://cloudkms.googleapis.com"
hsm_only = true

[[slot]]
label = "aws"
backend = "aws-kms"
region = "us-east-1"
keys = ["alias/app-signing"]
endpoint = "https://kms.us-east-1.amazonaws.com"
timeout_ms = 2500
"#,
        )
        .unwrap();
        let BackendConfig::Vault(v) = &c.slots[0].backend else {
            panic!()
        };
        assert_eq!(v.address, "https://vault.example.net:8200");
        assert_eq!(v.mount, "transit");
        assert_eq!(v.keys, ["minkms-sealing-key"]);
        assert!(v.common.gcm_service_iv);
        assert!(matches!(&v.auth, VaultAuth::Approle { path, .. } if path == "approle"));
        let BackendConfig::GcpKms(g) = &c.slots[1].backend else {
            panic!()
        };
        assert!(g.hsm_only && g.keys.is_empty() && !g.common.gcm_service_iv);
        let BackendConfig::AwsKms(a) = &c.slots[2].backend else {
            panic!()
        };
        assert_eq!(a.common.timeout_ms, 2500);
        assert_eq!(a.keys, ["alias/app-signing"]);
    }

    #[test]
    fn remote_replicas_and_the_soft_seal_parse() {
        let c = parse(
            r#"
[[slot]]
label = "ha"
policy = "balance"
  [[slot.replica]]
  name = "a"
  backend = "vault"
  address = "http://127.0.0.1:8200"
  auth = { method = "token", token = "root" }
  [[slot.replica]]
  name = "b"
  backend = "vault"
  address = "http://127.0.0.1:8201"
  auth = { method = "kubernetes", role = "hsmux" }

[[slot]]
label = "dev"
backend = "soft"
path = "/tmp/x"
  [slot.seal]
  backend = "vault"
  key = "store-key"
  address = "http://127.0.0.1:8200"
  auth = { method = "token", token = { env = "T" } }
"#,
        )
        .unwrap();
        let BackendConfig::Replicas {
            policy, replicas, ..
        } = &c.slots[0].backend
        else {
            panic!()
        };
        assert_eq!(*policy, Policy::Balance);
        assert!(matches!(&replicas[1].backend, BackendConfig::Vault(v)
            if matches!(&v.auth, VaultAuth::Kubernetes { path, jwt: Secret::File { .. }, .. } if path == "kubernetes")));
        let BackendConfig::Soft { seal: Some(s), .. } = &c.slots[1].backend else {
            panic!()
        };
        assert_eq!(s.key, "store-key");
    }

    #[test]
    fn auth_and_transit_namespaces_default_to_the_slot_namespace() {
        let slot = |extra: &str| {
            let c = parse(&format!(
                "[[slot]]\nlabel='v'\nbackend='vault'\naddress='http://a'\n{extra}\n"
            ))
            .unwrap();
            let BackendConfig::Vault(v) = &c.slots[0].backend else {
                panic!()
            };
            (v.auth_namespace.clone(), v.transit_namespace.clone())
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(slot("auth={method='token',token='t'}"), (None, None));
        assert_eq!(
            slot("namespace='org/'\nauth={method='token',token='t'}"),
            (s("org"), s("org"))
        );
        // A key manager's config: approle.namespace and transit.namespace apart.
        assert_eq!(
            slot("auth={method='approle',role_id='r',secret_id='s',namespace='org'}\ntransit={keys=['k'],namespace='/org/kms/'}"),
            (s("org"), s("org/kms"))
        );
        assert_eq!(
            slot("namespace='org/kms'\nauth={method='kubernetes',role='x',namespace='org'}"),
            (s("org"), s("org/kms"))
        );
        assert_eq!(
            slot("namespace='org'\nauth={method='token',token='t'}\ntransit={namespace='org/kms'}"),
            (s("org"), s("org/kms"))
        );
        // "" is the root namespace, whatever the slot's default.
        assert_eq!(
            slot("namespace='org/kms'\nauth={method='approle',role_id='r',secret_id='s',namespace=''}"),
            (None, s("org/kms"))
        );
        // The [slot.seal] takes them too.
        let c = parse(
            "[[slot]]\nlabel='s'\nbackend='soft'\npath='/x'\n[slot.seal]\nbackend='vault'\nkey='k'\naddress='http://a'\nauth={method='token',token='t',namespace='org'}\ntransit={namespace='org/kms'}\n",
        )
        .unwrap();
        let BackendConfig::Soft {
            seal: Some(seal), ..
        } = &c.slots[0].backend
        else {
            panic!()
        };
        assert_eq!(seal.vault.auth_namespace.as_deref(), Some("org"));
        assert_eq!(seal.vault.transit_namespace.as_deref(), Some("org/kms"));
        for bad in [
            "auth={method='token',token='t',namespace='a//b'}",
            "auth={method='token',token='t'}\ntransit={namespace='a/../b'}",
            "namespace='a b'\nauth={method='token',token='t'}",
        ] {
            let e = parse(&format!(
                "[[slot]]\nlabel='v'\nbackend='vault'\naddress='http://a'\n{bad}\n"
            ))
            .unwrap_err();
            assert!(e.contains("is not a Vault namespace path"), "{bad}: {e}");
        }
        let e = parse(
            "[[slot]]\nlabel='v'\nbackend='vault'\naddress='http://a'\nauth={method='token',token='t',nmspace='x'}\n",
        )
        .unwrap_err();
        assert!(e.contains("unknown field `nmspace`"), "{e}");
    }

    #[test]
    fn mistakes_are_named_with_their_key() {
        for (text, want) in [
            (
                "[[slot]]\nlabel='v'\nbackend='vault'\nauth={method='token',token='t'}\n",
                "key `address` is missing",
            ),
            (
                "[[slot]]\nlabel='v'\nbackend='vault'\naddress='vault:8200'\nauth={method='token',token='t'}\n",
                "not an http:// or https:// address",
            ),
            (
                "[[slot]]\nlabel='v'\nbackend='vault'\naddress='http://a'\nauth={method='ldap'}\n",
                "unknown variant `ldap`",
            ),
            (
                "[[slot]]\nlabel='v'\nbackend='vault'\naddress='http://a'\nauth={method='token',token='t'}\nregion='x'\n",
                "key `region` does not belong to backend \"vault\"",
            ),
            (
                "[[slot]]\nlabel='g'\nbackend='gcp-kms'\nkey_ring='projects/p/keyRings/r'\n",
                "is not projects/<p>/locations/<l>/keyRings/<r>",
            ),
            (
                "[[slot]]\nlabel='g'\nbackend='gcp-kms'\nkey_ring='projects/p/locations/l/keyRings/r'\ngcm_iv='random'\n",
                "key `gcm_iv`",
            ),
            (
                "[[slot]]\nlabel='a'\nbackend='aws-kms'\nregion='r'\naccess_key_id='x'\n",
                "go together",
            ),
            (
                "[[slot]]\nlabel='a'\nbackend='aws-kms'\nregion='r'\npin='1234'\n",
                "belong to backend \"module\"",
            ),
            (
                "[[slot]]\nlabel='s'\nbackend='soft'\npath='/x'\naddress='http://a'\n",
                "key `address` belongs to a remote backend",
            ),
            (
                "[[slot]]\nlabel='s'\nbackend='soft'\npath='/x'\n[slot.seal]\nbackend='gcp-kms'\nkey='k'\n",
                "cannot seal a soft token",
            ),
            (
                "[[slot]]\nlabel='a'\nbackend='aws-kms'\nregion='r'\ntimeout_ms=0\n",
                "must be above 0",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.contains("t.toml"), "{e}");
        }
    }
}
