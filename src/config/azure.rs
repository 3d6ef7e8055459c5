//! The config of `backend = "azure-kv"` (Azure Key Vault and Azure Managed HSM): the vault
//! URL, the keys, and `auth = { method = ... }` with Microsoft Entra ID's credential kinds.
//!
//! `auth` is one key of the slot table for both Vault and Azure; [`AnyAuth`] reads it by
//! its `method` into the one or the other, so that each keeps serde's own messages (with
//! the line) for a missing or unknown field.

use super::remote::{common, names, need, url};
use super::table::Keys;
use super::{ConfigError, RemoteCommon, Secret, VaultAuth};
use serde::Deserialize;
use std::path::PathBuf;

/// `auth = { method = "client_secret" | "certificate" | "managed_identity" |
/// "workload_identity", ... }` of an azure-kv slot. Where `tenant`, `client_id` or
/// `authority_host` are optional, the environment Azure's tooling sets is read at start
/// (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_AUTHORITY_HOST`,
/// `AZURE_FEDERATED_TOKEN_FILE`).
#[derive(Clone, Deserialize)]
#[serde(tag = "method", deny_unknown_fields)]
pub enum AzureAuth {
    /// OAuth2 client credentials with the app registration's secret.
    #[serde(rename = "client_secret")]
    ClientSecret {
        tenant: String,
        client_id: String,
        secret: Secret,
        authority_host: Option<String>,
    },
    /// OAuth2 client credentials with a certificate: an RS256 client-assertion JWT signed
    /// by the key of `certificate` (a PEM file with the certificate and its private key).
    #[serde(rename = "certificate")]
    Certificate {
        tenant: String,
        client_id: String,
        certificate: PathBuf,
        authority_host: Option<String>,
    },
    /// The Instance Metadata Service of an Azure VM (`http://169.254.169.254`;
    /// `endpoint` or `AZURE_POD_IDENTITY_AUTHORITY_HOST` elsewhere); `client_id` picks a
    /// user-assigned identity.
    #[serde(rename = "managed_identity")]
    ManagedIdentity {
        client_id: Option<String>,
        endpoint: Option<String>,
    },
    /// AKS workload identity: the federated token the pod's file holds, exchanged as a
    /// client assertion.
    #[serde(rename = "workload_identity")]
    WorkloadIdentity {
        tenant: Option<String>,
        client_id: Option<String>,
        token_file: Option<PathBuf>,
        authority_host: Option<String>,
    },
}

impl std::fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AzureAuth::ClientSecret { client_id, .. } => {
                write!(f, "AzureAuth::ClientSecret({client_id})")
            }
            AzureAuth::Certificate {
                client_id,
                certificate,
                ..
            } => write!(
                f,
                "AzureAuth::Certificate({client_id}, {})",
                certificate.display()
            ),
            AzureAuth::ManagedIdentity { client_id, .. } => {
                write!(f, "AzureAuth::ManagedIdentity({client_id:?})")
            }
            AzureAuth::WorkloadIdentity { client_id, .. } => {
                write!(f, "AzureAuth::WorkloadIdentity({client_id:?})")
            }
        }
    }
}

/// The methods [`AzureAuth`] takes (any other `method` is read as a Vault one).
const AZURE_METHODS: &[&str] = &[
    "client_secret",
    "certificate",
    "managed_identity",
    "workload_identity",
];

/// The `auth` key as written: a Vault or an Azure credential, told apart by `method`.
#[derive(Clone, Debug)]
pub enum AnyAuth {
    Vault(VaultAuth),
    Azure(AzureAuth),
}

impl<'de> Deserialize<'de> for AnyAuth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = toml::Value::deserialize(d)?;
        let azure = v
            .get("method")
            .and_then(|m| m.as_str())
            .is_some_and(|m| AZURE_METHODS.contains(&m));
        if azure {
            AzureAuth::deserialize(v)
                .map(AnyAuth::Azure)
                .map_err(D::Error::custom)
        } else {
            VaultAuth::deserialize(v)
                .map(AnyAuth::Vault)
                .map_err(D::Error::custom)
        }
    }
}

/// Which service a vault URL is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AzureKind {
    KeyVault,
    ManagedHsm,
}

#[derive(Debug, Clone)]
pub struct AzureKvConfig {
    /// `https://<name>.vault.azure.net` or `https://<name>.managedhsm.azure.net`, no
    /// trailing slash.
    pub vault: String,
    /// What the host name says (`None`: a private endpoint or a test address; the first
    /// 401 challenge tells).
    pub kind: Option<AzureKind>,
    /// Key names (empty = list the vault).
    pub keys: Vec<String>,
    pub auth: AzureAuth,
    /// Hide software-protected keys (`RSA`, `EC`): HSM keys only.
    pub hsm_only: bool,
    /// PEM file of the CA of the vault's and the token endpoint's certificates (else the
    /// system's roots).
    pub ca_file: Option<PathBuf>,
    pub common: RemoteCommon,
}

/// The service a host belongs to, from the DNS suffixes of the public and sovereign
/// clouds (`.vault.azure.net`, `.vault.azure.cn`, `.vault.usgovcloudapi.net`, and their
/// `managedhsm` twins).
pub fn kind_of(url: &str) -> Option<AzureKind> {
    let host = url
        .split("://")
        .nth(1)?
        .split(['/', ':'])
        .next()?
        .to_ascii_lowercase();
    let label = host.split('.').nth(1)?;
    match label {
        "vault" => Some(AzureKind::KeyVault),
        "managedhsm" => Some(AzureKind::ManagedHsm),
        _ => None,
    }
}

pub(super) fn azure_kv(r: &Keys, at: &str) -> Result<AzureKvConfig, ConfigError> {
    let vault = url(&need(&r.vault, "vault", "azure-kv", at)?, "vault", at)?;
    let auth = match need(&r.auth, "auth", "azure-kv", at)? {
        AnyAuth::Azure(a) => a,
        AnyAuth::Vault(_) => {
            return Err(ConfigError(format!(
                "{at}: key `auth`: backend \"azure-kv\" takes method = {}",
                AZURE_METHODS.join(", ")
            )))
        }
    };
    let host = |h: &Option<String>, key: &str| -> Result<(), ConfigError> {
        match h {
            Some(h) => url(h, key, at).map(|_| ()),
            None => Ok(()),
        }
    };
    match &auth {
        AzureAuth::ClientSecret { authority_host, .. }
        | AzureAuth::Certificate { authority_host, .. }
        | AzureAuth::WorkloadIdentity { authority_host, .. } => {
            host(authority_host, "auth.authority_host")?
        }
        AzureAuth::ManagedIdentity { endpoint, .. } => host(endpoint, "auth.endpoint")?,
    }
    Ok(AzureKvConfig {
        kind: kind_of(&vault),
        vault,
        keys: names(&r.keys, "keys", at)?,
        auth,
        hsm_only: r.hsm_only.unwrap_or(false),
        ca_file: r.ca_file.clone(),
        common: common(r, at)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendConfig, Config};

    fn parse(body: &str) -> Result<AzureKvConfig, String> {
        let text = format!("[[slot]]\nlabel='a'\nbackend='azure-kv'\n{body}\n");
        match Config::parse(&text, "t.toml") {
            Ok(c) => match &c.slots[0].backend {
                BackendConfig::AzureKv(a) => Ok(a.clone()),
                other => panic!("{other:?}"),
            },
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn the_vault_url_tells_key_vault_from_managed_hsm() {
        assert_eq!(
            kind_of("https://v.vault.azure.net"),
            Some(AzureKind::KeyVault)
        );
        assert_eq!(
            kind_of("https://h.managedhsm.azure.net/"),
            Some(AzureKind::ManagedHsm)
        );
        assert_eq!(
            kind_of("https://v.vault.usgovcloudapi.net:443"),
            Some(AzureKind::KeyVault)
        );
        assert_eq!(kind_of("https://127.0.0.1:8443"), None);
        assert_eq!(kind_of("https://privatelink.example.com"), None);
    }

    #[test]
    fn each_auth_method_parses_and_wrong_ones_are_refused() {
        let a = parse(
            "vault='https://v.vault.azure.net'\nkeys=['seal']\nauth={method='client_secret',tenant='t',client_id='c',secret={env='S'}}",
        )
        .unwrap();
        assert_eq!(a.kind, Some(AzureKind::KeyVault));
        assert_eq!(a.keys, vec!["seal".to_string()]);
        assert!(matches!(a.auth, AzureAuth::ClientSecret { .. }));
        let a = parse("vault='https://h.managedhsm.azure.net'\nauth={method='certificate',tenant='t',client_id='c',certificate='/c.pem'}").unwrap();
        assert_eq!(a.kind, Some(AzureKind::ManagedHsm));
        assert!(parse(
            "vault='https://x'\nauth={method='managed_identity',endpoint='http://127.0.0.1:1'}"
        )
        .is_ok());
        assert!(parse("vault='https://x'\nauth={method='workload_identity'}").is_ok());
        // A Vault method, a missing secret, an unknown field, no vault.
        let e = parse("vault='https://x'\nauth={method='token',token='t'}").unwrap_err();
        assert!(e.contains("azure-kv") && e.contains("client_secret"), "{e}");
        let e = parse("vault='https://x'\nauth={method='client_secret',tenant='t',client_id='c'}")
            .unwrap_err();
        assert!(e.contains("secret"), "{e}");
        let e =
            parse("vault='https://x'\nauth={method='managed_identity',tenant='t'}").unwrap_err();
        assert!(e.contains("tenant"), "{e}");
        let e = parse("auth={method='managed_identity'}").unwrap_err();
        assert!(e.contains("`vault` is missing"), "{e}");
        let e = parse("vault='v.vault.azure.net'\nauth={method='managed_identity'}").unwrap_err();
        assert!(e.contains("https://"), "{e}");
        // A Vault slot still reads its own methods, and refuses Azure's.
        let e = Config::parse(
            "[[slot]]\nlabel='v'\nbackend='vault'\naddress='http://a'\nauth={method='managed_identity'}\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(e.0.contains("not \"vault\""), "{}", e.0);
    }
}
