//! Requests to Cloud KMS: the bearer token on each, one new token after an UNAUTHENTICATED
//! answer, retries where repeating cannot do harm, and the service's error statuses mapped
//! to PKCS#11 codes (its message in the log).

use super::api::ErrorBody;
use super::auth::Auth;
use crate::backend::remote::http::{self, Reply};
use crate::core::error::Result;
use cryptoki_sys::*;
use reqwest::Method;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

pub use crate::backend::remote::http::Call;

pub struct Rest {
    http: reqwest::Client,
    /// `https://cloudkms.googleapis.com`, no trailing slash.
    endpoint: String,
    pub auth: Auth,
}

impl Rest {
    pub fn new(http: reqwest::Client, endpoint: &str, auth: Auth) -> Rest {
        Rest {
            http,
            endpoint: endpoint.to_string(),
            auth,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, what: &str, path: &str) -> Result<T> {
        let reply = self.send(what, Method::GET, path, None, Call::Read).await?;
        success(what, reply, Call::Read)?.json(what)
    }

    /// A POST whose answer is parsed as `T`. The answer's bytes are zeroized once parsed
    /// (a decryption's plaintext is in them).
    pub async fn post<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        body: &impl serde::Serialize,
        call: Call,
    ) -> Result<T> {
        let body = http::json_body(what, body)?;
        let reply = self
            .send(what, Method::POST, path, Some(body), call)
            .await?;
        http::parse_wiped(what, success(what, reply, call)?)
    }

    /// A GET of a resource that may not exist: `None` for NOT_FOUND.
    pub async fn get_maybe<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
    ) -> Result<Option<T>> {
        let reply = self.send(what, Method::GET, path, None, Call::Read).await?;
        if !reply.ok() && error_of(&reply).status == "NOT_FOUND" {
            return Ok(None);
        }
        success(what, reply, Call::Read)?.json(what).map(Some)
    }

    /// Sends the request and returns the service's answer, successful or not; only a
    /// transport failure (after the retries) or a missing token is an error here.
    async fn send(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<Zeroizing<Vec<u8>>>,
        call: Call,
    ) -> Result<Reply> {
        let url = format!("{}/v1/{}", self.endpoint, path);
        let retry = call.retry();
        let mut renewed = false;
        loop {
            let bearer = self.auth.bearer().await?;
            let auth = http::bearer_value(what, &bearer)?;
            drop(bearer);
            let reply = http::send(what, retry, || {
                http::json_request(
                    &self.http,
                    method.clone(),
                    &url,
                    Some(&auth),
                    body.as_deref().map(|b| b.as_slice()),
                )
            })
            .await?;
            if !reply.ok() && !renewed && error_of(&reply).status == "UNAUTHENTICATED" {
                // A token the service no longer takes (revoked, or expired early): one new
                // grant, then the request once more.
                log::info!(
                    "{what}: the access token was refused ({}); getting a new one",
                    reply.message()
                );
                self.auth.reset().await;
                renewed = true;
                continue;
            }
            return Ok(reply);
        }
    }
}

/// `reply` when it is a success, else its error with its PKCS#11 code.
fn success(what: &str, reply: Reply, call: Call) -> Result<Reply> {
    if reply.ok() {
        return Ok(reply);
    }
    let rv = rv_of(&error_of(&reply), reply.status, call);
    Err(http::failure(what, &reply, Some(rv)))
}

/// The `error` object of an answer (empty fields when the body is not one).
pub struct ServiceError {
    pub status: String,
}

pub fn error_of(reply: &Reply) -> ServiceError {
    let b: ErrorBody = serde_json::from_slice(&reply.body).unwrap_or_default();
    let status = if b.error.status.is_empty() {
        // A proxy's or load balancer's answer: the canonical status of its HTTP code.
        match reply.status {
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            _ => "",
        }
        .to_string()
    } else {
        b.error.status
    };
    ServiceError { status }
}

/// The PKCS#11 code of a Cloud KMS error.
pub fn rv_of(e: &ServiceError, http_status: u16, call: Call) -> CK_RV {
    match e.status.as_str() {
        "NOT_FOUND" => CKR_KEY_HANDLE_INVALID,
        "PERMISSION_DENIED" => CKR_KEY_FUNCTION_NOT_PERMITTED,
        "UNAUTHENTICATED" => CKR_USER_NOT_LOGGED_IN,
        // A version that is disabled, destroyed or not yet generated.
        "FAILED_PRECONDITION" => CKR_KEY_HANDLE_INVALID,
        "INVALID_ARGUMENT" if call == Call::Decrypt => CKR_ENCRYPTED_DATA_INVALID,
        "INVALID_ARGUMENT" | "OUT_OF_RANGE" => CKR_FUNCTION_FAILED,
        "ALREADY_EXISTS" => CKR_FUNCTION_FAILED,
        "RESOURCE_EXHAUSTED" | "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED" | "UNKNOWN"
        | "ABORTED" | "DATA_LOSS" | "CANCELLED" => CKR_DEVICE_ERROR,
        _ => http::status_rv(http_status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code for an answer of HTTP `status` with `body`, to a request of kind `call`.
    fn rv(status: u16, body: &str, call: Call) -> CK_RV {
        let reply = Reply::new(status, body.as_bytes());
        rv_of(&error_of(&reply), status, call)
    }

    #[test]
    fn service_statuses_map_to_pkcs11_codes() {
        let invalid =
            r#"{"error":{"code":400,"message":"Decryption failed","status":"INVALID_ARGUMENT"}}"#;
        let disabled =
            r#"{"error":{"code":400,"message":"disabled","status":"FAILED_PRECONDITION"}}"#;
        let denied = r#"{"error":{"code":403,"message":"no","status":"PERMISSION_DENIED"}}"#;
        let quota = r#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#;
        let cases = [
            (400, invalid, Call::Decrypt, CKR_ENCRYPTED_DATA_INVALID),
            (400, invalid, Call::Crypto, CKR_FUNCTION_FAILED),
            (400, disabled, Call::Crypto, CKR_KEY_HANDLE_INVALID),
            (403, denied, Call::Crypto, CKR_KEY_FUNCTION_NOT_PERMITTED),
            // Not Google's JSON (a proxy): the HTTP status decides.
            (
                503,
                "<html>unavailable</html>",
                Call::Read,
                CKR_DEVICE_ERROR,
            ),
            (404, "", Call::Read, CKR_KEY_HANDLE_INVALID),
            (429, quota, Call::Crypto, CKR_DEVICE_ERROR),
        ];
        for (status, body, call, want) in cases {
            assert_eq!(
                rv(status, body, call),
                want,
                "HTTP {status} {body} on {call:?}"
            );
        }
    }
}
