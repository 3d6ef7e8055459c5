//! The slot's Azure SDK `KeyClient`, and the transport it sends through: hsmux's own
//! reqwest client (one keep-alive pool per slot, the slot's `ca_file`, rustls on aws-lc)
//! behind azure_core's `HttpClient` trait.
//!
//! The SDK's retry policy is off: it would resend every method on 429/5xx, key creation
//! included (a second version). Retries happen here instead, with hsmux's rules
//! ([`http::send`]): reads and crypto calls (which change nothing) after 429/5xx and
//! transport failures, honouring `Retry-After`; a create only when the connection was never
//! made. Every attempt is bounded by the client's timeout and the whole call by the slot's
//! deadline ([`crate::backend::remote::rt`]). Requests go to the vault's origin only, so a
//! hostile `nextLink` cannot carry the bearer token elsewhere; a refused token (401) is
//! dropped from the credential's cache before the SDK answers the challenge.

use super::auth::{Auth, EntraCredential};
use crate::backend::remote::http::{self, Retry};
use crate::core::error::Error;
use azure_core::http::headers::{HeaderName, HeaderValue, Headers};
use azure_core::http::{AsyncRawResponse, Body, ClientOptions, Method, Request, RetryOptions};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use std::collections::HashMap;
use std::sync::Arc;

/// The REST API version the client asks for.
pub const API_VERSION: &str = "7.5";

/// The `KeyClient` of a vault, with hsmux's credential and transport.
pub fn key_client(
    vault: &str,
    http: reqwest::Client,
    auth: Arc<Auth>,
    deadline: std::time::Duration,
) -> std::result::Result<KeyClient, String> {
    let origin = reqwest::Url::parse(vault)
        .map_err(|e| format!("vault {vault:?}: {e}"))?
        .origin()
        .ascii_serialization();
    let transport = VaultTransport {
        http: http.clone(),
        origin,
        auth: auth.clone(),
        create_timeout: deadline.max(super::GENERATE_MIN),
    };
    let options = KeyClientOptions {
        api_version: API_VERSION.into(),
        client_options: ClientOptions {
            retry: RetryOptions::none(),
            transport: Some(azure_core::http::Transport::new(Arc::new(transport))),
            ..Default::default()
        },
        // The SDK would take a challenge only from a vault whose host is under the
        // resource's domain (`*.vault.azure.net`), which private endpoints and the test
        // server are not; the credential accepts Key Vault resources only instead.
        verify_challenge_resource: Some(false),
    };
    KeyClient::new(
        vault,
        Arc::new(EntraCredential { auth, http }),
        Some(options),
    )
    .map_err(|e| format!("vault {vault:?}: {e}"))
}

/// azure_core's `HttpClient` over the slot's reqwest client.
struct VaultTransport {
    http: reqwest::Client,
    /// `https://host[:port]` of the vault.
    origin: String,
    auth: Arc<Auth>,
    /// The bound of one key creation attempt: the HSM generates the key meanwhile, so it
    /// gets what the call gets (`GENERATE_MIN` at least), not the client's `timeout_ms`.
    create_timeout: std::time::Duration,
}

impl std::fmt::Debug for VaultTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VaultTransport({})", self.origin)
    }
}

/// What a failed request is to the SDK: hsmux's error (already logged) inside.
fn to_sdk(e: Error) -> azure_core::Error {
    azure_core::Error::new(azure_core::error::ErrorKind::Io, e)
}

/// Does a request to `path` make a new key version (`/create`, `/rotate`)?
fn creates_a_version(path: &str) -> bool {
    path.ends_with("/create") || path.ends_with("/rotate")
}

/// When a request may be sent again: key creation (`/create`, `/rotate`) makes a new
/// version each time; every other Key Vault call (reads, sign, encrypt, decrypt, wrap,
/// unwrap) changes nothing.
fn retry_of(method: Method, path: &str) -> Retry {
    match method {
        Method::Get => Retry::Read,
        _ if creates_a_version(path) => Retry::Never,
        Method::Post => Retry::Read,
        _ => Retry::Never,
    }
}

/// Sends a vault request ([`http::send`]: its retries, `Retry-After`); a 401 answer to a
/// request that carried the token `bearer` drops that token from the credential's cache,
/// so that the challenge that follows gets a new one.
pub async fn send(
    auth: &Auth,
    what: &str,
    retry: Retry,
    bearer: Option<&str>,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> crate::core::error::Result<http::Reply> {
    let reply = http::send(what, retry, build).await?;
    if reply.status == 401 {
        if let Some(token) = bearer {
            log::info!(
                "{what}: the access token was refused ({}); getting a new one",
                super::errors::describe(&reply)
            );
            auth.refused(token).await;
        }
    }
    Ok(reply)
}

#[async_trait::async_trait]
impl azure_core::http::HttpClient for VaultTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let url = request.url().clone();
        let what = format!("Key Vault {} {}", request.method(), url.path());
        let origin = url.origin().ascii_serialization();
        if origin != self.origin {
            return Err(to_sdk(http::malformed(
                &what,
                format!("a request to {origin} leaves the vault"),
            )));
        }
        let body = match request.body() {
            Body::Bytes(b) => b.clone(),
            Body::SeekableStream(_) => {
                return Err(to_sdk(Error::general(format!(
                    "{what}: the SDK sent a streamed body"
                ))))
            }
        };
        let mut headers = reqwest::header::HeaderMap::new();
        let mut bearer = None;
        for (name, value) in request.headers().iter() {
            let (name, value) = (name.as_str(), value.as_str());
            let v = if name.eq_ignore_ascii_case("authorization") {
                bearer = value.strip_prefix("Bearer ");
                http::bearer_value(&what, value).map_err(to_sdk)?
            } else {
                reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                    to_sdk(Error::general(format!(
                        "{what}: header {name} is not a value"
                    )))
                })?
            };
            let n = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| to_sdk(Error::general(format!("{what}: {name:?} is not a header"))))?;
            headers.insert(n, v);
        }
        let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
            .map_err(|_| to_sdk(Error::general(format!("{what}: not an HTTP method"))))?;
        let retry = retry_of(request.method(), url.path());
        let creates = creates_a_version(url.path());
        let reply = send(&self.auth, &what, retry, bearer, || {
            let b = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            let b = if creates {
                b.timeout(self.create_timeout)
            } else {
                b
            };
            if body.is_empty() {
                b
            } else {
                b.body(body.clone())
            }
        })
        .await
        .map_err(to_sdk)?;
        let mut out = HashMap::new();
        for (name, value) in &reply.headers {
            if let Ok(v) = value.to_str() {
                out.insert(
                    HeaderName::from(name.as_str().to_owned()),
                    HeaderValue::from(v.to_owned()),
                );
            }
        }
        Ok(AsyncRawResponse::from_bytes(
            reply.status.into(),
            Headers::from(out),
            reply.body,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_and_crypto_calls_are_retried_after_an_answer() {
        assert_eq!(retry_of(Method::Get, "/keys/k/versions"), Retry::Read);
        assert_eq!(retry_of(Method::Post, "/keys/k/1/sign"), Retry::Read);
        assert_eq!(retry_of(Method::Post, "/keys/k/1/unwrapkey"), Retry::Read);
        assert_eq!(retry_of(Method::Post, "/keys/k/create"), Retry::Never);
        assert_eq!(retry_of(Method::Post, "/keys/k/rotate"), Retry::Never);
        assert_eq!(retry_of(Method::Delete, "/keys/k"), Retry::Never);
    }
}
