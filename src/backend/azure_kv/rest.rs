//! Requests to the vault (REST API 7.5): the bearer token on each, the 401 challenge
//! handled once per request (a new token, or the resource the challenge names), retries
//! where repeating cannot do harm (429/503 after their `Retry-After`, within the call's
//! deadline), and Key Vault's `{"error": {"code", "message"}}` mapped to PKCS#11 codes
//! with the service's code and message in the log.

use super::auth::Auth;
use crate::backend::remote::http::{self, Reply};
use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use reqwest::Method;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

pub const API_VERSION: &str = "7.5";

pub use crate::backend::remote::http::Call;

pub struct Rest {
    pub http: reqwest::Client,
    /// `https://<name>.vault.azure.net`, no trailing slash.
    pub vault: String,
    pub auth: Auth,
}

impl Rest {
    /// `{vault}/{path}?api-version=7.5`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}?api-version={API_VERSION}", self.vault)
    }

    pub async fn get<T: DeserializeOwned>(&self, what: &str, url: &str) -> Result<T> {
        self.send(what, Method::GET, url, None, Call::Read)
            .await?
            .json(what)
    }

    /// A POST whose answer is parsed as `T`; the request's and the answer's bytes are
    /// zeroized (a plaintext may be in either).
    pub async fn post<T: DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        body: &impl serde::Serialize,
        call: Call,
    ) -> Result<T> {
        let body = http::json_body(what, body)?;
        let reply = self.send(what, Method::POST, url, Some(body), call).await?;
        http::parse_wiped(what, reply)
    }

    /// Sends the request; an unsuccessful answer is an error with its PKCS#11 code.
    async fn send(
        &self,
        what: &str,
        method: Method,
        url: &str,
        body: Option<Zeroizing<Vec<u8>>>,
        call: Call,
    ) -> Result<Reply> {
        let retry = call.retry();
        let mut challenged = false;
        loop {
            let auth = match self.auth.bearer(&self.http).await? {
                Some(b) => Some(http::bearer_value(what, &b)?),
                None => None,
            };
            // Without a token (the vault's resource not known yet) the request only asks
            // for the challenge: its body (a plaintext, perhaps) is kept for the request
            // that carries the token, as Azure's clients do.
            let sent_body = auth.as_ref().and(body.as_deref()).map(|b| b.as_slice());
            let reply = http::send(what, retry, || {
                http::json_request(&self.http, method.clone(), url, auth.as_ref(), sent_body)
            })
            .await?;
            if reply.status == 401 && !challenged {
                // The first request to a vault whose resource was unknown, or a token the
                // vault no longer takes: a token for the challenge's resource, then the
                // request once more.
                if auth.is_some() {
                    log::info!(
                        "{what}: the access token was refused ({}); getting a new one",
                        describe(&reply)
                    );
                }
                self.auth.refused(&reply).await?;
                challenged = true;
                continue;
            }
            if reply.ok() {
                return Ok(reply);
            }
            return Err(Error::logged(
                rv_of(&reply, call),
                format!("{what}: HTTP {}: {}", reply.status, describe(&reply)),
            ));
        }
    }
}

/// Key Vault's error body.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    error: ErrorInner,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ErrorInner {
    code: String,
    message: String,
    innererror: Option<Box<ErrorInner>>,
}

/// `code[/inner code]: message` of an error answer (its body's start if it is not Key
/// Vault's JSON).
pub fn describe(reply: &Reply) -> String {
    match serde_json::from_slice::<ErrorBody>(&reply.body) {
        Ok(b) if !b.error.code.is_empty() => {
            let inner = b
                .error
                .innererror
                .map(|i| format!("/{}", i.code))
                .unwrap_or_default();
            let m: String = b
                .error
                .message
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            format!(
                "{}{inner}: {}",
                b.error.code,
                m.chars().take(300).collect::<String>()
            )
        }
        _ => http::error_message(&reply.body),
    }
}

/// The PKCS#11 code of a failed answer.
pub fn rv_of(reply: &Reply, call: Call) -> CK_RV {
    let code = serde_json::from_slice::<ErrorBody>(&reply.body)
        .map(|b| b.error.code)
        .unwrap_or_default();
    match (reply.status, code.as_str()) {
        (401, _) => CKR_USER_NOT_LOGGED_IN,
        (403, _) => CKR_KEY_FUNCTION_NOT_PERMITTED,
        (404, _) => CKR_KEY_HANDLE_INVALID,
        (400, _) if call == Call::Decrypt => CKR_ENCRYPTED_DATA_INVALID,
        (400, _) if call == Call::Crypto => CKR_DATA_INVALID,
        (429, _) | (500..=599, _) => CKR_DEVICE_ERROR,
        _ => CKR_FUNCTION_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply::new(status, body.as_bytes())
    }

    #[test]
    fn key_vault_errors_map_to_pkcs11_codes() {
        let r = reply(
            403,
            r#"{"error":{"code":"Forbidden","message":"Operation decrypt is not allowed on a disabled key.","innererror":{"code":"KeyDisabled"}}}"#,
        );
        assert_eq!(rv_of(&r, Call::Crypto), CKR_KEY_FUNCTION_NOT_PERMITTED);
        assert_eq!(
            describe(&r),
            "Forbidden/KeyDisabled: Operation decrypt is not allowed on a disabled key."
        );
        let r = reply(400, r#"{"error":{"code":"BadParameter","message":"x"}}"#);
        assert_eq!(rv_of(&r, Call::Decrypt), CKR_ENCRYPTED_DATA_INVALID);
        assert_eq!(rv_of(&r, Call::Crypto), CKR_DATA_INVALID);
        assert_eq!(rv_of(&r, Call::Read), CKR_FUNCTION_FAILED);
        let r = reply(404, r#"{"error":{"code":"KeyNotFound","message":"no"}}"#);
        assert_eq!(rv_of(&r, Call::Crypto), CKR_KEY_HANDLE_INVALID);
        assert_eq!(rv_of(&reply(503, "<html>"), Call::Read), CKR_DEVICE_ERROR);
        assert_eq!(describe(&reply(503, "<html>")), "<html>");
        assert_eq!(rv_of(&reply(429, ""), Call::Crypto), CKR_DEVICE_ERROR);
    }
}
