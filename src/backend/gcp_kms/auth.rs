//! OAuth2 access tokens for Cloud KMS through `gcp_auth`: a service-account file (its JWT
//! is exchanged at the file's `token_uri`) or Application Default Credentials.
//!
//! `gcp_auth` caches each token and fetches a new one 20 s before it expires; hsmux keeps
//! the provider for the life of the slot and drops it only when the service answers
//! UNAUTHENTICATED (a revoked token), so that the next request makes a new grant. The
//! provider is built on first need, on the module's runtime: ADC may ask the metadata
//! server, and `C_Initialize` never waits on the network.
//! Tokens are never logged; the `Authorization` value hsmux builds is zeroized when
//! dropped and marked sensitive for the HTTP stack (`gcp_auth`'s own cached copy is out of
//! hsmux's reach).

use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use gcp_auth::{CustomServiceAccount, TokenProvider};
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The scope Cloud KMS's methods accept.
const SCOPES: &[&str] = &["https://www.googleapis.com/auth/cloudkms"];

/// Where the credentials come from.
#[derive(Clone, Debug)]
enum Source {
    File(PathBuf),
    Adc,
}

pub struct Auth {
    source: Source,
    provider: tokio::sync::Mutex<Option<Arc<dyn TokenProvider>>>,
}

impl Auth {
    /// Checks a service-account file now (a broken one makes the slot unusable at once,
    /// with the reason), without reaching the token endpoint.
    pub fn new(credentials: Option<&PathBuf>) -> std::result::Result<Auth, String> {
        let source = match credentials {
            Some(p) => {
                check_file(p)?;
                Source::File(p.clone())
            }
            None => Source::Adc,
        };
        Ok(Auth {
            source,
            provider: tokio::sync::Mutex::new(None),
        })
    }

    /// What the credentials are, for logs.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::File(p) => format!("service account {}", p.display()),
            Source::Adc => "Application Default Credentials".into(),
        }
    }

    async fn provider(&self) -> Result<Arc<dyn TokenProvider>> {
        let mut g = self.provider.lock().await;
        if let Some(p) = g.as_ref() {
            return Ok(p.clone());
        }
        let p: Arc<dyn TokenProvider> = match &self.source {
            Source::File(path) => Arc::new(
                CustomServiceAccount::from_file(path)
                    .map_err(|e| refused(&format!("{}: {e}", path.display()), &e))?,
            ),
            Source::Adc => gcp_auth::provider()
                .await
                .map_err(|e| refused("Application Default Credentials", &e))?,
        };
        *g = Some(p.clone());
        Ok(p)
    }

    /// The `Authorization` header value (`Bearer <token>`), from the cache when the token
    /// is still good.
    pub async fn bearer(&self) -> Result<Zeroizing<String>> {
        let p = self.provider().await?;
        let t = p
            .token(SCOPES)
            .await
            .map_err(|e| refused(&self.describe(), &e))?;
        Ok(Zeroizing::new(format!("Bearer {}", t.as_str())))
    }

    /// Forgets the provider and its cached token: the service refused the token.
    pub async fn reset(&self) {
        *self.provider.lock().await = None;
    }
}

/// A token that could not be had: refused credentials (the token endpoint said no, or the
/// file is not a usable key) are `CKR_USER_NOT_LOGGED_IN` (`C_Login` makes it
/// `CKR_PIN_INCORRECT`); an endpoint that could not be reached is `CKR_DEVICE_ERROR`.
fn refused(what: &str, e: &gcp_auth::Error) -> Error {
    let transport = matches!(e, gcp_auth::Error::Http(..) | gcp_auth::Error::Other(..))
        || matches!(
            e,
            gcp_auth::Error::NoAuthMethod(..) | gcp_auth::Error::Io(..)
        );
    let why = crate::backend::remote::http::describe(e);
    let rv = if transport {
        CKR_DEVICE_ERROR
    } else {
        CKR_USER_NOT_LOGGED_IN
    };
    Error::logged(
        rv,
        format!("Cloud KMS credentials ({what}): no access token: {why}"),
    )
}

/// The fields `gcp_auth` needs, read once to refuse a broken file at start-up. The file's
/// text (it holds the private key) is zeroized, and the key itself is only seen, not copied.
fn check_file(p: &PathBuf) -> std::result::Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Sa {
        #[serde(rename = "type")]
        kind: Option<String>,
        client_email: Option<String>,
        private_key: Option<serde::de::IgnoredAny>,
        token_uri: Option<String>,
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(p).map_err(|e| format!("credentials file {}: {e}", p.display()))?,
    );
    let sa: Sa = serde_json::from_str(&text)
        .map_err(|_| format!("credentials file {}: not a JSON object", p.display()))?;
    if let Some(kind) = sa.kind.as_deref().filter(|k| *k != "service_account") {
        return Err(format!(
            "credentials file {}: type {kind:?} is not a service account key (leave `credentials` out to use ADC)",
            p.display()
        ));
    }
    let mut missing = Vec::new();
    if sa.client_email.is_none() {
        missing.push("client_email");
    }
    if sa.private_key.is_none() {
        missing.push("private_key");
    }
    if sa.token_uri.is_none() {
        missing.push("token_uri");
    }
    if !missing.is_empty() {
        return Err(format!(
            "credentials file {}: no {} (not a service account key)",
            p.display(),
            missing.join(", ")
        ));
    }
    Ok(())
}
