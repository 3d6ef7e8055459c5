//! Microsoft Entra ID access tokens for Key Vault / Managed HSM: OAuth2 client credentials
//! (a secret, or an RS256 client-assertion JWT made from a certificate's key with aws-lc-rs,
//! or a workload identity's federated token), or the Instance Metadata Service of a
//! managed identity.
//!
//! [`EntraCredential`] is the Azure SDK's `TokenCredential` for the slot's `KeyClient`. One
//! token is cached per slot and renewed before it expires (five minutes before, or at half
//! its life for short ones), and at once when the vault refuses it. The scope is the vault's
//! resource (`https://vault.azure.net` or `https://managedhsm.azure.net`), from the vault's
//! 401 challenge (the SDK's Key Vault authorizer sends the first request without a token,
//! as Azure's clients do); a challenge may only name one of the Key Vault resources, so
//! that a vault cannot obtain a token for another service.
//! Secrets and tokens are zeroized when dropped and never logged.

use crate::backend::remote::http::{self, Reply, Retry};
use crate::config::{AzureAuth, Secret};
use crate::core::error::{Error, Result};
use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::Engine as _;
use cryptoki_sys::*;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The resources a vault may name in its challenge (public, China and US Government clouds).
const RESOURCES: &[&str] = &[
    "https://vault.azure.net",
    "https://managedhsm.azure.net",
    "https://vault.azure.cn",
    "https://managedhsm.azure.cn",
    "https://vault.usgovcloudapi.net",
    "https://managedhsm.usgovcloudapi.net",
];

/// How a token is obtained.
enum Credential {
    Secret {
        client_id: String,
        secret: Zeroizing<Vec<u8>>,
    },
    Certificate {
        client_id: String,
        key: RsaKeyPair,
        /// base64url SHA-1 thumbprint of the certificate (the JWT header's `x5t`).
        x5t: String,
    },
    /// The federated token file is read at each grant: the kubelet rotates it.
    Workload { client_id: String, file: PathBuf },
    Imds {
        endpoint: String,
        client_id: Option<String>,
    },
}

#[derive(Clone)]
struct Cached {
    token: Zeroizing<String>,
    /// The resource the token is for.
    resource: String,
    renew_at: Instant,
    expires: SystemTime,
}

pub struct Auth {
    cred: Credential,
    /// `{authority_host}/{tenant}/oauth2/v2.0/token` (client credentials).
    token_url: String,
    /// The vault's resource, once known.
    resource: Mutex<Option<String>>,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn from_env(v: &Option<String>, var: &str, what: &str) -> std::result::Result<String, String> {
    v.clone()
        .or_else(|| env(var))
        .ok_or_else(|| format!("auth: no {what} (give it, or set {var})"))
}

impl Auth {
    /// Reads the credential's files and secrets now (a broken one makes the slot unusable
    /// at once, with the reason); touches no network.
    pub fn new(cfg: &AzureAuth, resource: Option<&str>) -> std::result::Result<Auth, String> {
        let authority = |h: &Option<String>| {
            h.clone()
                .or_else(|| env("AZURE_AUTHORITY_HOST"))
                .unwrap_or_else(|| "https://login.microsoftonline.com".into())
                .trim_end_matches('/')
                .to_string()
        };
        let (cred, token_url) = match cfg {
            AzureAuth::ClientSecret {
                tenant,
                client_id,
                secret,
                authority_host,
            } => (
                Credential::Secret {
                    client_id: client_id.clone(),
                    secret: resolve(secret)?,
                },
                format!("{}/{tenant}/oauth2/v2.0/token", authority(authority_host)),
            ),
            AzureAuth::Certificate {
                tenant,
                client_id,
                certificate,
                authority_host,
            } => {
                let (key, x5t) = read_certificate(certificate)?;
                (
                    Credential::Certificate {
                        client_id: client_id.clone(),
                        key,
                        x5t,
                    },
                    format!("{}/{tenant}/oauth2/v2.0/token", authority(authority_host)),
                )
            }
            AzureAuth::WorkloadIdentity {
                tenant,
                client_id,
                token_file,
                authority_host,
            } => {
                let tenant = from_env(tenant, "AZURE_TENANT_ID", "tenant")?;
                let file = match token_file {
                    Some(f) => f.clone(),
                    None => {
                        PathBuf::from(from_env(&None, "AZURE_FEDERATED_TOKEN_FILE", "token_file")?)
                    }
                };
                (
                    Credential::Workload {
                        client_id: from_env(client_id, "AZURE_CLIENT_ID", "client_id")?,
                        file,
                    },
                    format!("{}/{tenant}/oauth2/v2.0/token", authority(authority_host)),
                )
            }
            AzureAuth::ManagedIdentity {
                client_id,
                endpoint,
            } => (
                Credential::Imds {
                    endpoint: endpoint
                        .clone()
                        .or_else(|| env("AZURE_POD_IDENTITY_AUTHORITY_HOST"))
                        .unwrap_or_else(|| "http://169.254.169.254".into())
                        .trim_end_matches('/')
                        .to_string(),
                    client_id: client_id.clone(),
                },
                String::new(),
            ),
        };
        Ok(Auth {
            cred,
            token_url,
            resource: Mutex::new(resource.map(str::to_string)),
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// What the credential is, for logs.
    pub fn describe(&self) -> String {
        match &self.cred {
            Credential::Secret { client_id, .. } => format!("client secret of app {client_id}"),
            Credential::Certificate { client_id, .. } => {
                format!("certificate of app {client_id}")
            }
            Credential::Workload { client_id, file } => {
                format!("workload identity of app {client_id} ({})", file.display())
            }
            Credential::Imds {
                endpoint,
                client_id,
            } => match client_id {
                Some(c) => format!("managed identity {c} at {endpoint}"),
                None => format!("system-assigned managed identity at {endpoint}"),
            },
        }
    }

    /// The vault's resource, once known (host name or challenge).
    pub fn resource(&self) -> Option<String> {
        self.resource.lock().clone()
    }

    /// A token for `resource`, from the cache while it is good, else a new grant.
    async fn token(&self, http: &reqwest::Client, resource: &str) -> Result<Cached> {
        let mut g = self.cached.lock().await;
        if let Some(c) = g
            .as_ref()
            .filter(|c| Instant::now() < c.renew_at && c.resource == resource)
        {
            return Ok(c.clone());
        }
        let (token, lifetime) = self.grant(http, resource).await?;
        let early = (lifetime / 2).min(Duration::from_secs(300));
        let now = Instant::now();
        let c = Cached {
            token,
            resource: resource.to_string(),
            renew_at: now + lifetime - early,
            expires: SystemTime::now() + lifetime,
        };
        *g = Some(c.clone());
        Ok(c)
    }

    /// The access token for `resource` (cached while good), for the requests hsmux sends
    /// itself (`rest.rs`).
    pub async fn bearer(
        &self,
        http: &reqwest::Client,
        resource: &str,
    ) -> Result<Zeroizing<String>> {
        Ok(self.token(http, resource).await?.token)
    }

    /// The vault refused `token` (401): it is not handed out again, so the challenge that
    /// follows gets a new grant.
    pub async fn refused(&self, token: &str) {
        let mut g = self.cached.lock().await;
        if g.as_ref().is_some_and(|c| c.token.as_str() == token) {
            *g = None;
        }
    }

    /// The resource of an SDK scope (`{resource}/.default`), if it is a Key Vault or Managed
    /// HSM resource: a vault's challenge must not obtain a token for another service.
    pub fn accept_scope(&self, scope: &str) -> Result<String> {
        let resource = scope
            .trim_end_matches("/.default")
            .trim_end_matches('/')
            .to_string();
        if !RESOURCES.contains(&resource.as_str()) {
            return Err(Error::logged(
                CKR_DEVICE_ERROR,
                format!("the vault's challenge names resource {resource:?}, which is not a Key Vault or Managed HSM resource; no token is sent for it"),
            ));
        }
        let mut r = self.resource.lock();
        if r.as_deref() != Some(resource.as_str()) {
            log::info!("the vault's challenge names resource {resource}");
            *r = Some(resource.clone());
        }
        Ok(resource)
    }

    /// A new token and its lifetime.
    async fn grant(
        &self,
        http: &reqwest::Client,
        resource: &str,
    ) -> Result<(Zeroizing<String>, Duration)> {
        let what = format!("Entra ID token ({})", self.describe());
        let reply = match &self.cred {
            Credential::Imds {
                endpoint,
                client_id,
            } => {
                let mut url =
                    reqwest::Url::parse(&format!("{endpoint}/metadata/identity/oauth2/token"))
                        .map_err(|e| Error::logged(CKR_DEVICE_ERROR, format!("{what}: {e}")))?;
                url.query_pairs_mut()
                    .append_pair("api-version", "2018-02-01")
                    .append_pair("resource", resource);
                if let Some(c) = client_id {
                    url.query_pairs_mut().append_pair("client_id", c);
                }
                http::send(&what, Retry::Read, || {
                    http.get(url.clone()).header("Metadata", "true")
                })
                .await?
            }
            _ => {
                let form = self.form(resource)?;
                http::send(&what, Retry::Idempotent, || {
                    http.post(&self.token_url)
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            "application/x-www-form-urlencoded",
                        )
                        .body(form.to_vec())
                })
                .await?
            }
        };
        parse_grant(&what, reply)
    }

    /// The client-credentials form (`application/x-www-form-urlencoded`).
    fn form(&self, resource: &str) -> Result<Zeroizing<Vec<u8>>> {
        let mut u = reqwest::Url::parse("http://form/").expect("a constant URL");
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("grant_type", "client_credentials")
                .append_pair("scope", &format!("{resource}/.default"));
            match &self.cred {
                Credential::Secret { client_id, secret } => {
                    let s = Zeroizing::new(String::from_utf8_lossy(secret).into_owned());
                    q.append_pair("client_id", client_id)
                        .append_pair("client_secret", &s);
                }
                Credential::Certificate {
                    client_id,
                    key,
                    x5t,
                } => {
                    let jwt = assertion(key, x5t, client_id, &self.token_url)?;
                    q.append_pair("client_id", client_id)
                        .append_pair("client_assertion_type", ASSERTION_TYPE)
                        .append_pair("client_assertion", &jwt);
                }
                Credential::Workload { client_id, file } => {
                    let jwt = Zeroizing::new(std::fs::read_to_string(file).map_err(|e| {
                        Error::logged(
                            CKR_USER_NOT_LOGGED_IN,
                            format!("workload identity: {}: {e}", file.display()),
                        )
                    })?);
                    q.append_pair("client_id", client_id)
                        .append_pair("client_assertion_type", ASSERTION_TYPE)
                        .append_pair("client_assertion", jwt.trim());
                }
                Credential::Imds { .. } => {}
            }
        }
        let out = Zeroizing::new(u.query().unwrap_or("").as_bytes().to_vec());
        // The URL's own copy of the secret.
        let mut s: String = u.into();
        zeroize::Zeroize::zeroize(&mut s);
        Ok(out)
    }
}

/// [`Auth`] as the Azure SDK's credential: the SDK's bearer-token policy asks it for a
/// token for the scope the vault's challenge names. The grants go through hsmux's own
/// HTTP client (the slot's CA file, deadlines), to the configured authority host or IMDS
/// address, which the SDK's own credentials cannot all be pointed at.
#[derive(Clone)]
pub struct EntraCredential {
    pub auth: Arc<Auth>,
    pub http: reqwest::Client,
}

impl std::fmt::Debug for EntraCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EntraCredential({})", self.auth.describe())
    }
}

#[async_trait::async_trait]
impl azure_core::credentials::TokenCredential for EntraCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let sdk_err =
            |e: Error| azure_core::Error::new(azure_core::error::ErrorKind::Credential, e);
        let [scope] = scopes else {
            return Err(sdk_err(Error::logged(
                CKR_DEVICE_ERROR,
                format!(
                    "Key Vault asked for a token for {} scopes, not one",
                    scopes.len()
                ),
            )));
        };
        let resource = self.auth.accept_scope(scope).map_err(sdk_err)?;
        let c = self
            .auth
            .token(&self.http, &resource)
            .await
            .map_err(sdk_err)?;
        let left = c
            .expires
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        Ok(azure_core::credentials::AccessToken {
            token: azure_core::credentials::Secret::new(c.token.as_str().to_string()),
            expires_on: azure_core::time::OffsetDateTime::now_utc()
                + azure_core::time::Duration::try_from(left).unwrap_or_default(),
        })
    }
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The token endpoint's (or IMDS's) answer: a refusal is `CKR_USER_NOT_LOGGED_IN`
/// (`C_Login` makes it `CKR_PIN_INCORRECT`) with Entra's `error_description`, an
/// unavailable endpoint `CKR_DEVICE_ERROR`.
fn parse_grant(what: &str, mut reply: Reply) -> Result<(Zeroizing<String>, Duration)> {
    #[derive(serde::Deserialize)]
    struct Grant {
        access_token: Option<String>,
        /// A number from Entra ID, a string from IMDS.
        expires_in: Option<serde_json::Value>,
        error: Option<String>,
        error_description: Option<String>,
    }
    let parsed: std::result::Result<Grant, _> = serde_json::from_slice(&reply.body);
    zeroize::Zeroize::zeroize(&mut reply.body);
    if !reply.ok() {
        let (err, desc) = match &parsed {
            Ok(g) => (
                g.error.clone().unwrap_or_default(),
                g.error_description.clone().unwrap_or_default(),
            ),
            Err(_) => (String::new(), String::new()),
        };
        let desc: String = desc.split_whitespace().collect::<Vec<_>>().join(" ");
        let rv = if reply.status == 429 || reply.status >= 500 {
            CKR_DEVICE_ERROR
        } else {
            CKR_USER_NOT_LOGGED_IN
        };
        return Err(Error::logged(
            rv,
            format!("{what}: refused (HTTP {}): {err}: {desc}", reply.status),
        ));
    }
    let g = parsed.map_err(|e| http::malformed(what, e))?;
    let token = Zeroizing::new(
        g.access_token
            .filter(|t| !t.is_empty() && t.is_ascii() && !t.contains(char::is_whitespace))
            .ok_or_else(|| http::malformed(what, "no usable access_token"))?,
    );
    let secs = match g.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .filter(|s| *s > 0)
    .ok_or_else(|| http::malformed(what, "no expires_in"))?;
    Ok((token, Duration::from_secs(secs.min(86_400))))
}

fn resolve(s: &Secret) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
    s.resolve().map_err(|e| format!("auth.secret: {}", e.0))
}

/// The blocks of type `label` in a PEM text, decoded.
fn pem_blocks(text: &str, label: &str) -> Vec<Zeroizing<Vec<u8>>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&begin) {
        let after = &rest[i + begin.len()..];
        let Some(j) = after.find(&end) else { break };
        let body = Zeroizing::new(after[..j].split_whitespace().collect::<String>());
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(body.as_bytes()) {
            out.push(Zeroizing::new(der));
        }
        rest = &after[j + end.len()..];
    }
    out
}

/// The certificate credential's key and thumbprint, from a PEM file holding the
/// certificate and its RSA private key (PKCS#8 or PKCS#1).
fn read_certificate(path: &PathBuf) -> std::result::Result<(RsaKeyPair, String), String> {
    let at = |why: &str| format!("auth.certificate {}: {why}", path.display());
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| at(&e.to_string()))?);
    let cert = pem_blocks(&text, "CERTIFICATE")
        .into_iter()
        .next()
        .ok_or_else(|| at("no CERTIFICATE block"))?;
    let key = if let Some(k) = pem_blocks(&text, "PRIVATE KEY").into_iter().next() {
        RsaKeyPair::from_pkcs8(&k)
    } else if let Some(k) = pem_blocks(&text, "RSA PRIVATE KEY").into_iter().next() {
        RsaKeyPair::from_der(&k)
    } else {
        return Err(at(
            "no PRIVATE KEY or RSA PRIVATE KEY block (the client assertion is RS256)",
        ));
    }
    .map_err(|e| at(&format!("not an RSA private key: {e}")))?;
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert);
    Ok((key, B64URL.encode(sha1.as_ref())))
}

/// The client assertion: a JWT signed RS256 with the certificate's key, `x5t` its
/// thumbprint, `aud` the token endpoint, `iss` = `sub` = the client id, ten minutes valid.
fn assertion(key: &RsaKeyPair, x5t: &str, client_id: &str, aud: &str) -> Result<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).map_err(|_| Error::general("no randomness for the JWT id"))?;
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": x5t});
    let claims = serde_json::json!({
        "aud": aud, "iss": client_id, "sub": client_id, "jti": hex::encode(jti),
        "nbf": now, "iat": now, "exp": now + 600,
    });
    let signed = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut sig,
    )
    .map_err(|_| Error::general("signing the client assertion failed"))?;
    Ok(format!("{signed}.{}", B64URL.encode(sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_key_vault_resources_get_a_token() {
        let cfg = AzureAuth::ManagedIdentity {
            client_id: None,
            endpoint: Some("http://127.0.0.1:1".into()),
        };
        let auth = Auth::new(&cfg, None).unwrap();
        assert_eq!(auth.resource(), None);
        assert_eq!(
            auth.accept_scope("https://managedhsm.azure.net/.default")
                .unwrap(),
            "https://managedhsm.azure.net"
        );
        assert_eq!(
            auth.resource().as_deref(),
            Some("https://managedhsm.azure.net")
        );
        for other in [
            "https://management.azure.com/.default",
            "https://vault.azure.net.evil.example/.default",
            "https://graph.microsoft.com/.default",
        ] {
            assert_eq!(auth.accept_scope(other).unwrap_err().rv(), CKR_DEVICE_ERROR);
        }
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply::new(status, body.as_bytes())
    }

    #[test]
    fn grants_are_parsed_and_refusals_mapped() {
        let (t, d) = parse_grant(
            "t",
            reply(200, r#"{"access_token":"abc","expires_in":3599}"#),
        )
        .unwrap();
        assert_eq!((t.as_str(), d), ("abc", Duration::from_secs(3599)));
        // IMDS writes expires_in as a string.
        let (_, d) =
            parse_grant("t", reply(200, r#"{"access_token":"x","expires_in":"60"}"#)).unwrap();
        assert_eq!(d, Duration::from_secs(60));
        let e = parse_grant(
            "t",
            reply(
                401,
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret"}"#,
            ),
        )
        .unwrap_err();
        assert_eq!(e.rv(), CKR_USER_NOT_LOGGED_IN);
        assert_eq!(
            parse_grant("t", reply(503, "busy")).unwrap_err().rv(),
            CKR_DEVICE_ERROR
        );
        for bad in [
            "{",
            r#"{"access_token":"a b","expires_in":1}"#,
            r#"{"access_token":"a"}"#,
        ] {
            assert_eq!(
                parse_grant("t", reply(200, bad)).unwrap_err().rv(),
                CKR_DEVICE_ERROR,
                "{bad}"
            );
        }
    }
}
