//! HTTP for the REST backends: one keep-alive connection pool per backend, bounded
//! retries with back-off where a retry cannot do harm, and the mapping of HTTP failures
//! to PKCS#11 codes with the service's own message in the log.

use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use std::time::Duration;

/// The client of one backend: its pool is kept for the life of the slot.
pub fn client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        // Every request also runs under the slot's deadline (rt::call); this bounds a
        // single attempt so that a retry still fits.
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Some(Duration::from_secs(90)))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| Error::general(format!("remote backend: cannot build an HTTP client: {e}")))
}

/// A client like [`client`]'s that also trusts the CA certificates of `ca_file` (PEM), for
/// services behind a private CA: verification stays on, with more roots.
pub fn client_with_ca(
    timeout: Duration,
    ca_file: Option<&std::path::Path>,
) -> std::result::Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Some(Duration::from_secs(90)))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true);
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("ca_file {}: no certificate in it", ca.display()));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// `Bearer <token>` as a header value marked sensitive (kept out of the HTTP stack's
/// debug output); a token that is not a header value is a malformed grant.
pub fn bearer_value(what: &str, bearer: &str) -> Result<reqwest::header::HeaderValue> {
    let mut v = reqwest::header::HeaderValue::from_str(bearer).map_err(|_| {
        Error::logged(
            CKR_DEVICE_ERROR,
            format!("{what}: the access token is not a header value"),
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// A request with an optional `Authorization` and an optional JSON body (what the REST
/// services' calls are).
pub fn json_request(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    auth: Option<&reqwest::header::HeaderValue>,
    body: Option<&[u8]>,
) -> reqwest::RequestBuilder {
    let mut b = client.request(method, url);
    if let Some(a) = auth {
        b = b.header(reqwest::header::AUTHORIZATION, a.clone());
    }
    if let Some(body) = body {
        b = b
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
    }
    b
}

/// What a REST service request does, which decides its retries and how its errors read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// A GET.
    Read,
    /// A signature, MAC or encryption: changes nothing in the service, so a 5xx/429
    /// answer is retried like a read (Google's and Azure's client libraries retry these
    /// methods too).
    Crypto,
    /// A decryption: as `Crypto`, and a bad-argument answer means the ciphertext (or its
    /// IV, tag or AAD) is not one the key made.
    Decrypt,
    /// A create: never sent twice (a second one would make a second version).
    Create,
}

impl Call {
    pub fn retry(self) -> Retry {
        match self {
            Call::Read | Call::Crypto | Call::Decrypt => Retry::Read,
            Call::Create => Retry::Never,
        }
    }
}

/// A request body as JSON, zeroized when dropped (a plaintext may be in it).
pub fn json_body(what: &str, body: &impl serde::Serialize) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    Ok(zeroize::Zeroizing::new(
        serde_json::to_vec(body).map_err(|e| Error::general(format!("{what}: {e}")))?,
    ))
}

/// The answer parsed as `T`, its bytes zeroized after (a decryption's plaintext is in
/// them).
pub fn parse_wiped<T: serde::de::DeserializeOwned>(what: &str, mut reply: Reply) -> Result<T> {
    let parsed = reply.json(what);
    zeroize::Zeroize::zeroize(&mut reply.body);
    parsed
}

/// When a failed attempt may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Only when the request provably never left (the connection could not be made).
    Never,
    /// Also on a transport failure after sending: the operation is idempotent (a
    /// signature, a decryption, a MAC), so doing it twice changes nothing.
    Idempotent,
    /// A read: also on 429 and 5xx answers.
    Read,
}

/// An answer with its status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// The answer's headers (Azure's 401 challenge is in `WWW-Authenticate`).
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// An answer with no headers (tests, fuzzing).
    pub fn new(status: u16, body: &[u8]) -> Reply {
        Reply {
            status,
            body: body.to_vec(),
            headers: Default::default(),
        }
    }
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// The body as JSON; a body that is not is a malformed answer (`CKR_DEVICE_ERROR`).
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::logged(
                CKR_DEVICE_ERROR,
                format!("{what}: malformed answer (HTTP {}): {e}", self.status),
            )
        })
    }
    /// The service's error message (Vault `errors`, Google `error.message`, AWS
    /// `message`/`__type`), else the start of the body.
    pub fn message(&self) -> String {
        error_message(&self.body)
    }
}

/// Attempts per request, and the first back-off (doubled each time).
const ATTEMPTS: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(50);

/// Sends the request `build` makes (called again for each attempt) and reads the answer.
/// Transport failures that exhaust the retries are `CKR_DEVICE_ERROR`.
pub async fn send(
    what: &str,
    retry: Retry,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Reply> {
    let mut delay = BACKOFF;
    let mut attempt = 1;
    loop {
        let outcome = match build().send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(b) => Ok(Reply {
                        status,
                        body: b.to_vec(),
                        headers,
                    }),
                    Err(e) => Err((e.is_timeout(), format!("reading the answer: {e}"), true)),
                }
            }
            Err(e) => Err((e.is_timeout(), describe(&e), !e.is_connect())),
        };
        let again = match &outcome {
            Ok(r) => retry == Retry::Read && (r.status == 429 || r.status >= 500),
            Err((_, _, sent)) => !*sent || retry != Retry::Never,
        };
        if !again || attempt >= ATTEMPTS {
            return match outcome {
                Ok(r) => Ok(r),
                Err((timeout, why, _)) => Err(Error::logged(
                    CKR_DEVICE_ERROR,
                    format!(
                        "{what}: {} after {attempt} attempt(s): {why}",
                        if timeout {
                            "timed out"
                        } else {
                            "transport failure"
                        }
                    ),
                )),
            };
        }
        match &outcome {
            Ok(r) => log::debug!("{what}: HTTP {} (attempt {attempt}), retrying", r.status),
            Err((_, why, _)) => log::debug!("{what}: {why} (attempt {attempt}), retrying"),
        }
        // A service that says when to come back (429/503 `Retry-After`, in seconds) is
        // waited for; the slot's deadline (rt::call) still ends the call.
        let wait = match &outcome {
            Ok(r) => retry_after(r).map_or(delay, |ra| ra.max(delay)),
            Err(_) => delay,
        };
        tokio::time::sleep(wait).await;
        delay *= 2;
        attempt += 1;
    }
}

/// The `Retry-After` of an answer, in seconds (the HTTP-date form is not used by the
/// services hsmux talks to), at most a minute.
fn retry_after(r: &Reply) -> Option<Duration> {
    let s = r.headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: u64 = s.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

/// An error with its causes, `: `-separated, by their `Display` texts only (reqwest's own
/// text stops at "error sending request").
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The PKCS#11 code for an HTTP failure status, where the service has no better one.
pub fn status_rv(status: u16) -> CK_RV {
    match status {
        401 | 403 => CKR_USER_NOT_LOGGED_IN,
        404 => CKR_KEY_HANDLE_INVALID,
        429 | 500..=599 => CKR_DEVICE_ERROR,
        _ => CKR_FUNCTION_FAILED,
    }
}

/// An unsuccessful answer as an error: the code of `status_rv` unless `rv` is given,
/// logged with the service's message.
pub fn failure(what: &str, reply: &Reply, rv: Option<CK_RV>) -> Error {
    Error::logged(
        rv.unwrap_or_else(|| status_rv(reply.status)),
        format!("{what}: HTTP {}: {}", reply.status, reply.message()),
    )
}

/// A malformed answer: `CKR_DEVICE_ERROR` with why.
pub fn malformed(what: &str, why: impl std::fmt::Display) -> Error {
    Error::logged(CKR_DEVICE_ERROR, format!("{what}: malformed answer: {why}"))
}

/// Longest service message copied into a log line.
const MESSAGE_MAX: usize = 300;

pub fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Any {
        errors: Option<Vec<String>>,
        error: Option<serde_json::Value>,
        message: Option<String>,
        #[serde(rename = "Message")]
        message_upper: Option<String>,
        #[serde(rename = "__type")]
        kind: Option<String>,
    }
    let text = match serde_json::from_slice::<Any>(body) {
        Ok(a) => {
            if let Some(e) = a.errors.filter(|e| !e.is_empty()) {
                e.join("; ")
            } else if let Some(e) = a.error {
                match e.get("message").and_then(|m| m.as_str()) {
                    Some(m) => match e.get("status").and_then(|s| s.as_str()) {
                        Some(s) => format!("{s}: {m}"),
                        None => m.to_string(),
                    },
                    None => e.to_string(),
                }
            } else {
                let m = a.message.or(a.message_upper).unwrap_or_default();
                match a.kind {
                    Some(k) => format!("{}: {m}", k.rsplit('#').next().unwrap_or(&k)),
                    None => m,
                }
            }
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    // One log line: Vault's texts are multi-line ("1 error occurred:\n\t* permission
    // denied\n\n"), and a body must not start lines of its own in the log.
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return "(empty body)".into();
    }
    let mut end = text.len().min(MESSAGE_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_messages_are_found_in_each_shape() {
        assert_eq!(
            error_message(br#"{"errors":["permission denied"]}"#),
            "permission denied"
        );
        assert_eq!(
            error_message(br#"{"error":{"code":404,"message":"not found","status":"NOT_FOUND"}}"#),
            "NOT_FOUND: not found"
        );
        assert_eq!(
            error_message(
                br#"{"__type":"com.amazonaws.kms#NotFoundException","message":"no key"}"#
            ),
            "NotFoundException: no key"
        );
        assert_eq!(
            error_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_message(b""), "(empty body)");
        assert_eq!(
            error_message(br#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#),
            "1 error occurred: * permission denied"
        );
        assert_eq!(error_message(b"a\r\nforged log line"), "a forged log line");
        let long = "x".repeat(1000);
        assert_eq!(error_message(long.as_bytes()).len(), MESSAGE_MAX);
    }
}
