//! The key operations of the hot path (sign, encrypt, decrypt, wrapKey, unwrapKey) sent by
//! hsmux itself, `POST {vault}/keys/{name}/{version}/{op}?api-version=7.5` with the slot's
//! reqwest client, instead of through the SDK's `KeyClient` pipeline.
//!
//! Why: per call the SDK's pipeline rebuilds the URL, passes the request through six boxed
//! policies, copies the headers into its own map and back, and its client-request-id
//! policy looks the header up with a lookup whose miss is an `azure_core::Error`, which
//! captures a stack backtrace whenever `RUST_BACKTRACE` is set in the consumer's process.
//! That was 45-70 µs of CPU per call on the bench machine (docs/benchmarks.md), about a
//! third of a call's client-side cost; none of it can be configured away.
//!
//! What stays the same: the JSON bodies and answers are the SDK's models (serialized and
//! parsed by their own serde code), the retries are [`transport::send`]'s, errors map
//! through [`errors::failed`] as the SDK's answers do, and a 401 is handled as the SDK's
//! bearer-token policy does (the token is dropped, the challenge's resource checked, one
//! new token, one more attempt). The SDK keeps every other call (listing, reading and
//! creating keys) and any call made while the vault's resource is still unknown: the
//! SDK's first request draws the challenge that names it.

use super::errors::{self, Call};
use super::transport::{self, API_VERSION};
use super::Inner;
use crate::backend::remote::http::{self, Reply, Retry};
use crate::core::error::Result;
use azure_core::Bytes;
use azure_security_keyvault_keys::models::KeyOperationResult;
use reqwest::header;
use zeroize::Zeroizing;

/// A key operation, by its path segment.
#[derive(Clone, Copy, Debug)]
pub enum Verb {
    Sign,
    Encrypt,
    Decrypt,
    WrapKey,
    UnwrapKey,
}

impl Verb {
    fn path(self) -> &'static str {
        match self {
            Verb::Sign => "sign",
            Verb::Encrypt => "encrypt",
            Verb::Decrypt => "decrypt",
            Verb::WrapKey => "wrapkey",
            Verb::UnwrapKey => "unwrapkey",
        }
    }
}

/// The scope a 401 challenge names (`scope="..."`, or `resource="..."` + `/.default`), as
/// the SDK's Key Vault authorizer reads it.
fn challenge_scope(challenge: &str) -> Option<String> {
    challenge.match_indices("=\"").find_map(|(i, _)| {
        let key = challenge[..i].trim_end();
        let value = &challenge[i + 2..];
        let value = &value[..value.find('"')?];
        if key.ends_with("scope") {
            Some(value.to_string())
        } else if key.ends_with("resource") {
            Some(format!("{value}/.default"))
        } else {
            None
        }
    })
}

impl Inner {
    /// The operation `verb` of key version `locator` (`name/version`, both checked names)
    /// with the JSON `body`; `None` while the vault's resource is unknown (the caller then
    /// sends it through the SDK).
    pub async fn post_op(
        &self,
        what: &str,
        locator: &str,
        verb: Verb,
        body: &Bytes,
        call: Call,
    ) -> Option<Result<KeyOperationResult>> {
        let resource = self.auth.resource()?;
        let url = format!(
            "{}/keys/{locator}/{}?api-version={API_VERSION}",
            self.vault,
            verb.path()
        );
        Some(self.post_as(what, &url, &resource, body, call).await)
    }

    async fn post_as(
        &self,
        what: &str,
        url: &str,
        resource: &str,
        body: &Bytes,
        call: Call,
    ) -> Result<KeyOperationResult> {
        let mut reply = self.post_once(what, url, resource, body).await?;
        if reply.status == 401 {
            if let Some(challenge) = reply.headers.get(header::WWW_AUTHENTICATE) {
                let scope = challenge
                    .to_str()
                    .ok()
                    .and_then(challenge_scope)
                    .ok_or_else(|| {
                        http::malformed(what, "no scope or resource in the 401 challenge")
                    })?;
                let resource = self.auth.accept_scope(&scope)?;
                reply = self.post_once(what, url, &resource, body).await?;
            }
        }
        if reply.status != 200 {
            return Err(errors::failed(what, call, &reply));
        }
        http::parse_wiped(what, reply)
    }

    /// One request (with [`transport::send`]'s retries) under the current token.
    async fn post_once(
        &self,
        what: &str,
        url: &str,
        resource: &str,
        body: &Bytes,
    ) -> Result<Reply> {
        let token = self.auth.bearer(&self.http, resource).await?;
        let bearer = Zeroizing::new(format!("Bearer {}", token.as_str()));
        let bearer = http::bearer_value(what, &bearer)?;
        // The SDK's per-call id, which Azure's request logs keep.
        let id = azure_core::Uuid::new_v4().to_string();
        transport::send(&self.auth, what, Retry::Read, Some(&token), || {
            self.http
                .post(url)
                .header(header::AUTHORIZATION, bearer.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, "application/json")
                .header("x-ms-client-request-id", id.as_str())
                .body(reqwest::Body::from(body.clone()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_name_their_scope_as_the_sdk_reads_them() {
        let c = r#"Bearer authorization="https://login.microsoftonline.com/t", resource="https://vault.azure.net""#;
        assert_eq!(
            challenge_scope(c).as_deref(),
            Some("https://vault.azure.net/.default")
        );
        let c = r#"Bearer authorization="https://login.microsoftonline.com/t" scope="https://managedhsm.azure.net/.default""#;
        assert_eq!(
            challenge_scope(c).as_deref(),
            Some("https://managedhsm.azure.net/.default")
        );
        assert_eq!(challenge_scope(r#"Bearer authorization="x""#), None);
        assert_eq!(challenge_scope(r#"Bearer resource="unterminated"#), None);
    }
}
