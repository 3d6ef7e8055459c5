//! Requests to Vault/OpenBao: the token and namespace headers, one re-login when a token
//! stops working (Vault answers 403 past a token's max TTL, never 401), and the mapping
//! of Vault's answers to PKCS#11 codes with Vault's own message in the log.

use super::auth::Auth;
use crate::backend::remote::http::{self, Reply, Retry};
use crate::backend::remote::ServiceInfo;
use crate::config::VaultConfig;
use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use parking_lot::Mutex;
use reqwest::Method;
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use zeroize::Zeroizing;

/// What is known of a key's versions (from its read, or learned from encryptions when
/// the policy forbids reading it).
#[derive(Clone, Copy, Debug)]
pub struct KeyMeta {
    pub min_decryption: u32,
    pub latest: u32,
    /// Read was forbidden: the versions are what encryptions answered.
    pub learned: bool,
    /// Read and encryption were forbidden (a policy with `hmac/<k>` only): an HMAC key
    /// whose versions HMACs answer.
    pub mac_only: bool,
}

/// The state shared by every call of one slot.
pub struct Inner {
    pub slot: String,
    pub cfg: VaultConfig,
    pub http: reqwest::Client,
    pub timeout: Duration,
    pub auth: Auth,
    pub keys: Mutex<HashMap<String, KeyMeta>>,
    /// Keys created through `C_GenerateKey*` (listed even when config names the keys).
    pub generated: Mutex<Vec<String>>,
    /// Learned at login from `sys/capabilities-self`.
    pub can_generate: AtomicBool,
    /// Keys whose read was refused, logged once each.
    pub read_refused_logged: Mutex<std::collections::HashSet<String>>,
}

/// A JSON request body kept in zeroized memory (it carries plaintexts and credentials).
pub struct Body(Zeroizing<String>);

impl Body {
    pub fn new() -> Body {
        Body(Zeroizing::new(String::from("{")))
    }
    fn sep(&mut self, name: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        // Field names are ours: plain ASCII without quotes.
        self.0.push('"');
        self.0.push_str(name);
        self.0.push_str("\":");
    }
    /// A base64 field, encoded straight into the zeroized buffer.
    pub fn b64(mut self, name: &str, bytes: &[u8]) -> Body {
        use base64::Engine as _;
        self.sep(name);
        self.0.push('"');
        base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut self.0);
        self.0.push('"');
        self
    }
    /// A string field that may be a secret (role id, JWT): escaped into the buffer.
    pub fn secret(mut self, name: &str, value: &[u8]) -> Body {
        self.sep(name);
        self.0.push('"');
        for c in String::from_utf8_lossy(value).chars() {
            match c {
                '"' => self.0.push_str("\\\""),
                '\\' => self.0.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = std::fmt::Write::write_fmt(
                        &mut *self.0,
                        format_args!("\\u{:04x}", c as u32),
                    );
                }
                c => self.0.push(c),
            }
        }
        self.0.push('"');
        self
    }
    pub fn str(self, name: &str, value: &str) -> Body {
        self.secret(name, value.as_bytes())
    }
    pub fn num(mut self, name: &str, v: u64) -> Body {
        self.sep(name);
        self.0.push_str(&v.to_string());
        self
    }
    pub fn bool(mut self, name: &str, v: bool) -> Body {
        self.sep(name);
        self.0.push_str(if v { "true" } else { "false" });
        self
    }
    pub fn finish(mut self) -> Zeroizing<Vec<u8>> {
        self.0.push('}');
        Zeroizing::new(self.0.as_bytes().to_vec())
    }
}

/// How a 400 answer of an operation is reported (Vault says 400 for bad input of any kind).
#[derive(Clone, Copy)]
pub struct On400(pub CK_RV);

/// Which namespace a request goes to: the auth method's (logins, and the token's own
/// `auth/token/*` and `sys/capabilities-self` requests) or the transit mount's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ns {
    Auth,
    Transit,
}

impl Inner {
    pub fn new(slot: &str, cfg: &VaultConfig) -> std::result::Result<Inner, String> {
        let timeout = Duration::from_millis(cfg.common.timeout_ms.max(1));
        let http = crate::backend::remote::http::client_with_ca(timeout, cfg.ca_file.as_deref())?;
        Ok(Inner {
            slot: slot.to_string(),
            cfg: cfg.clone(),
            http,
            timeout,
            auth: Auth::new(&cfg.auth),
            keys: Mutex::new(HashMap::new()),
            generated: Mutex::new(Vec::new()),
            can_generate: AtomicBool::new(false),
            read_refused_logged: Mutex::new(Default::default()),
        })
    }

    pub fn info(&self) -> ServiceInfo {
        // The keys' namespace (the slot's `namespace` unless `transit.namespace` says
        // otherwise): the serial stays what it was for a config without the latter.
        let ns = self.cfg.transit_namespace.as_deref().unwrap_or("");
        let id = format!("{}\0{ns}\0{}", self.cfg.address, self.cfg.mount);
        let sum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
        let mut location = format!("{}/{}", self.cfg.address, self.cfg.mount);
        if !ns.is_empty() {
            location = format!("{} (namespace {ns})", location);
        }
        ServiceInfo {
            // Vault and OpenBao answer the same API; which one it is needs a request.
            manufacturer: "Vault/OpenBao".into(),
            model: "transit".into(),
            serial: hex::encode(&sum.as_ref()[..8]),
            location,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/v1/{}", self.cfg.address, path.trim_start_matches('/'))
    }

    /// A path under the transit mount.
    pub fn mount_path(&self, rest: &str) -> String {
        format!("{}/{rest}", self.cfg.mount)
    }

    /// The `X-Vault-Namespace` of a request (`None`: the root namespace, no header).
    pub fn namespace(&self, ns: Ns) -> Option<&str> {
        match ns {
            Ns::Auth => self.cfg.auth_namespace.as_deref(),
            Ns::Transit => self.cfg.transit_namespace.as_deref(),
        }
    }

    /// One request with `token` (none for a login) in namespace `ns`.
    #[allow(clippy::too_many_arguments)]
    pub async fn send_raw(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        token: Option<&str>,
        ns: Ns,
        retry: Retry,
    ) -> Result<Reply> {
        let url = self.url(path);
        let ns = self.namespace(ns);
        http::send(what, retry, || {
            let mut r = self.http.request(method.clone(), &url);
            if let Some(ns) = ns {
                r = r.header("X-Vault-Namespace", ns);
            }
            if let Some(t) = token {
                r = r.header("X-Vault-Token", t);
            }
            if let Some(b) = body {
                r = r
                    .header("Content-Type", "application/json")
                    .body(b.to_vec());
            }
            r
        })
        .await
    }

    /// An authenticated request to the transit namespace (see [`Inner::send_in`]).
    pub async fn send(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        retry: Retry,
    ) -> Result<Reply> {
        self.send_in(Ns::Transit, what, method, path, body, retry)
            .await
    }

    /// An authenticated request in namespace `ns`. Vault answers 403 both for a token
    /// past its max TTL and for a path the policy does not grant: the token's own lookup
    /// (which every token's `default` policy allows) tells them apart. A policy refusal
    /// is final at once (no new login: a least-privilege policy refuses key reads, and a
    /// login per refused read would mint a token each time); a token that no longer
    /// works is replaced by one new login and the request sent again, and what comes
    /// back then is final.
    pub async fn send_in(
        &self,
        ns: Ns,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        retry: Retry,
    ) -> Result<Reply> {
        let session = self.auth.token(self).await?;
        let reply = self
            .send_raw(
                what,
                method.clone(),
                path,
                body,
                Some(session.token()),
                ns,
                retry,
            )
            .await?;
        if reply.status != 403 {
            return Ok(reply);
        }
        if self.token_works(session.token()).await {
            log::debug!(
                "slot {}: {what}: HTTP 403 with a working token: the policy refuses it",
                self.slot
            );
            return Ok(reply);
        }
        if !self.auth.can_login() {
            log::debug!("{what}: HTTP 403 and the configured token cannot log in again");
            self.auth.forget(&session);
            return Ok(reply);
        }
        log::info!(
            "slot {}: {what}: HTTP 403 ({}); logging in again",
            self.slot,
            reply.message()
        );
        let fresh = self.auth.relogin(self, &session).await?;
        self.send_raw(what, method, path, body, Some(fresh.token()), ns, retry)
            .await
    }

    /// Whether Vault still takes `token` (`auth/token/lookup-self` answers 200). Any
    /// other answer, or none, is "no": the caller then logs in again as before.
    async fn token_works(&self, token: &str) -> bool {
        let r = self
            .send_raw(
                "token check",
                Method::GET,
                "auth/token/lookup-self",
                None,
                Some(token),
                Ns::Auth,
                Retry::Never,
            )
            .await;
        match r {
            Ok(mut reply) => {
                // The lookup's answer describes the token (its accessor): not kept.
                zeroize::Zeroize::zeroize(&mut reply.body);
                reply.status == 200
            }
            Err(_) => false,
        }
    }

    /// A POST of `body` to the transit namespace: the `data` of a successful answer, else
    /// the mapped failure.
    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        body: &[u8],
        retry: Retry,
        on400: On400,
    ) -> Result<T> {
        let reply = self
            .send(what, Method::POST, path, Some(body), retry)
            .await?;
        self.parse(what, reply, on400)
    }

    pub fn parse<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        mut reply: Reply,
        on400: On400,
    ) -> Result<T> {
        if !reply.ok() {
            return Err(self.failure(what, &reply, on400));
        }
        #[derive(serde::Deserialize)]
        struct Envelope<T> {
            data: Option<T>,
        }
        let parsed = reply.json::<Envelope<T>>(what);
        // The answer may hold a plaintext or a token.
        zeroize::Zeroize::zeroize(&mut reply.body);
        parsed?
            .data
            .ok_or_else(|| http::malformed(what, "no `data` in the answer"))
    }

    /// A Vault failure as a PKCS#11 error, with Vault's message (never a secret: Vault's
    /// error texts do not echo tokens or plaintexts) in the log.
    pub fn failure(&self, what: &str, reply: &Reply, on400: On400) -> Error {
        let rv = match reply.status {
            400 => on400.0,
            403 => CKR_KEY_FUNCTION_NOT_PERMITTED,
            404 => CKR_KEY_HANDLE_INVALID,
            429 | 500..=599 => CKR_DEVICE_ERROR,
            _ => CKR_FUNCTION_FAILED,
        };
        // A 403 with a working token is the policy's (see `send_in`); the hint is for a
        // given token that Vault no longer takes (forgotten then).
        let hint = if reply.status == 403 && !self.auth.can_login() && !self.auth.has_session() {
            " (the configured token may have expired: a token given outright cannot log in again)"
        } else if reply.status == 503 {
            " (sealed or standby)"
        } else {
            ""
        };
        Error::logged(
            rv,
            format!(
                "slot {}: {what}: HTTP {}: {}{hint}",
                self.slot,
                reply.status,
                reply.message()
            ),
        )
    }

    /// A cheap authenticated read: the token's own lookup (in the token's namespace).
    pub async fn probe(&self) -> Result<()> {
        let reply = self
            .send_in(
                Ns::Auth,
                "probe",
                Method::GET,
                "auth/token/lookup-self",
                None,
                Retry::Read,
            )
            .await?;
        if reply.ok() {
            Ok(())
        } else {
            Err(self.failure("probe", &reply, On400(CKR_DEVICE_ERROR)))
        }
    }

    fn capability_path(&self, path: &str) -> (Ns, String) {
        capability_path(
            self.cfg.auth_namespace.as_deref(),
            self.cfg.transit_namespace.as_deref(),
            path,
        )
    }

    /// Whether this token may create keys in the mount (for `CKF_WRITE_PROTECTED` and the
    /// key-generation mechanisms); a policy that does not say, or an error, is "no".
    pub async fn learn_can_generate(&self) {
        #[derive(serde::Deserialize)]
        struct Caps {
            capabilities: Vec<String>,
        }
        let (ns, path) = self.capability_path(&self.mount_path("keys/hsmux-capability-probe"));
        let mut b = String::from("{\"paths\":[");
        b.push_str(&serde_json::to_string(&path).unwrap_or_default());
        b.push_str("]}");
        let r = match self
            .send_in(
                ns,
                "capabilities",
                Method::POST,
                "sys/capabilities-self",
                Some(b.as_bytes()),
                Retry::Read,
            )
            .await
        {
            Ok(reply) => self.parse::<Caps>("capabilities", reply, On400(CKR_FUNCTION_FAILED)),
            Err(e) => Err(e),
        };
        let yes = match r {
            Ok(c) => c
                .capabilities
                .iter()
                .any(|c| c == "root" || c == "create" || c == "update"),
            Err(_) => false,
        };
        log::debug!("slot {}: key creation allowed: {yes}", self.slot);
        self.can_generate
            .store(yes, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Where to ask `sys/capabilities-self` about `path` (a path of the transit namespace):
/// in the token's own namespace, whose policies are the token's, with the transit
/// namespace's part below it in front (`kms/transit/keys/x` from namespace `org` for
/// `org/kms`); a transit namespace that is not below the token's is asked directly.
fn capability_path(auth: Option<&str>, transit: Option<&str>, path: &str) -> (Ns, String) {
    let below = match (auth, transit) {
        (a, t) if a == t => Some(""),
        (None, t) => t,
        (Some(a), Some(t)) => t.strip_prefix(a).and_then(|r| r.strip_prefix('/')),
        (Some(_), None) => None,
    };
    match below {
        Some("") => (Ns::Auth, path.to_string()),
        Some(rel) => (Ns::Auth, format!("{rel}/{path}")),
        None => (Ns::Transit, path.to_string()),
    }
}

/// `vault:v<N>:<base64>` split into the version and the decoded bytes; anything else is
/// a malformed answer.
pub fn parse_versioned(what: &str, s: &str) -> Result<(u32, Vec<u8>)> {
    use base64::Engine as _;
    let rest = s
        .strip_prefix("vault:v")
        .ok_or_else(|| http::malformed(what, "no vault:v<N>: prefix"))?;
    let (n, b64) = rest
        .split_once(':')
        .ok_or_else(|| http::malformed(what, "no vault:v<N>: prefix"))?;
    let n: u32 = n
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| http::malformed(what, "bad version in the prefix"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| http::malformed(what, format!("base64: {e}")))?;
    Ok((n, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_and_escape_what_they_must() {
        let b = Body::new()
            .b64("plaintext", b"hi")
            .str("role", "a\"b\\c\n")
            .num("key_version", 3)
            .bool("prehashed", true)
            .finish();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["plaintext"], "aGk=");
        assert_eq!(v["role"], "a\"b\\c\n");
        assert_eq!(v["key_version"], 3);
        assert_eq!(v["prehashed"], true);
        assert_eq!(&Body::new().finish()[..], b"{}");
    }

    #[test]
    fn capabilities_are_asked_in_the_token_namespace_with_the_path_below_it() {
        let p = "transit/keys/x";
        assert_eq!(capability_path(None, None, p), (Ns::Auth, p.to_string()));
        assert_eq!(
            capability_path(Some("org"), Some("org"), p),
            (Ns::Auth, p.to_string())
        );
        assert_eq!(
            capability_path(None, Some("org/kms"), p),
            (Ns::Auth, format!("org/kms/{p}"))
        );
        assert_eq!(
            capability_path(Some("org"), Some("org/kms"), p),
            (Ns::Auth, format!("kms/{p}"))
        );
        // Not below the token's namespace: asked where the keys are.
        for (a, t) in [(Some("org"), None), (Some("org"), Some("orgx/kms"))] {
            assert_eq!(capability_path(a, t, p), (Ns::Transit, p.to_string()));
        }
    }

    #[test]
    fn versioned_strings_parse_and_bad_ones_are_malformed() {
        assert_eq!(
            parse_versioned("t", "vault:v2:aGk=").unwrap(),
            (2, b"hi".to_vec())
        );
        for bad in [
            "vault:v:aGk=",
            "vault:v0:aGk=",
            "vault:2:aGk=",
            "vault:v2aGk=",
            "vault:v2:a*k=",
            "x",
        ] {
            assert_eq!(
                parse_versioned("t", bad).unwrap_err().rv(),
                CKR_DEVICE_ERROR,
                "{bad}"
            );
        }
    }
}
