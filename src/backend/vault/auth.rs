//! Vault credentials: a token given outright, or one obtained by an AppRole or Kubernetes
//! login. The token is cached (zeroized when dropped, never logged), renewed with
//! `renew-self` once two thirds of its lease have passed, and replaced by a new login when
//! renewal can no longer extend it (max TTL) or a request answers 403.

use super::client::{Body, Inner, Ns};
use crate::backend::remote::http::Retry;
use crate::config::VaultAuth;
use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use reqwest::Method;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// One token and what Vault said about its lease.
pub struct Session {
    token: Zeroizing<String>,
    /// When to renew (or log in again); `None` = the token does not expire (root tokens).
    renew_at: Option<Instant>,
    renewable: bool,
    lease: Duration,
}

impl Session {
    pub fn token(&self) -> &str {
        &self.token
    }
    fn due(&self) -> bool {
        self.renew_at.is_some_and(|t| Instant::now() >= t)
    }
    fn new(token: Zeroizing<String>, lease_secs: u64, renewable: bool) -> Session {
        let lease = Duration::from_secs(lease_secs);
        Session {
            token,
            renew_at: (lease_secs > 0).then(|| Instant::now() + lease * 2 / 3),
            renewable,
            lease,
        }
    }
}

pub struct Auth {
    method: VaultAuth,
    current: parking_lot::Mutex<Option<Arc<Session>>>,
    /// One login or renewal at a time; the others wait and use its result.
    refreshing: tokio::sync::Mutex<()>,
}

/// The `auth` part of a login or renewal answer.
#[derive(serde::Deserialize)]
struct AuthAnswer {
    client_token: String,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

#[derive(serde::Deserialize)]
struct LoginReply {
    auth: Option<AuthAnswer>,
}

/// `auth/token/lookup-self` (for a token given outright).
#[derive(serde::Deserialize)]
struct Lookup {
    #[serde(default)]
    ttl: u64,
    #[serde(default)]
    renewable: bool,
}

impl Auth {
    pub fn new(method: &VaultAuth) -> Auth {
        Auth {
            method: method.clone(),
            current: parking_lot::Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether a refused token can be replaced by a new login.
    pub fn can_login(&self) -> bool {
        !matches!(self.method, VaultAuth::Token { .. })
    }

    /// The token to send: the cached one, renewed or replaced first when it is due.
    pub async fn token(&self, v: &Inner) -> Result<Arc<Session>> {
        if let Some(s) = self.current.lock().clone() {
            if !s.due() {
                return Ok(s);
            }
        }
        let _g = self.refreshing.lock().await;
        let cur = self.current.lock().clone();
        let r = match cur {
            Some(s) if !s.due() => Ok(s),
            Some(s) => self.refresh(v, &s).await,
            None => self.obtain(v).await,
        };
        // Credentials refused in the middle of an operation: the consumer must log in.
        r.map_err(|e| match e.rv() {
            CKR_PIN_INCORRECT => Error::new(CKR_USER_NOT_LOGGED_IN),
            _ => e,
        })
    }

    /// A request answered 403 with `stale`: log in again (once, whoever comes first).
    pub async fn relogin(&self, v: &Inner, stale: &Arc<Session>) -> Result<Arc<Session>> {
        let _g = self.refreshing.lock().await;
        if let Some(s) = self.current.lock().clone() {
            if !Arc::ptr_eq(&s, stale) {
                return Ok(s);
            }
        }
        self.obtain(v).await.map_err(|e| match e.rv() {
            // A refused login in the middle of an operation: the consumer must log in.
            CKR_PIN_INCORRECT => Error::new(CKR_USER_NOT_LOGGED_IN),
            _ => e,
        })
    }

    /// `C_Login`: credentials checked now (a fresh login, or the given token's lookup).
    /// `C_Login`: a valid cached token is kept (the OpenBao seal logs in for every
    /// operation: a login each time would mint a token each time); otherwise the
    /// credentials are used now, so that refused ones are `CKR_PIN_INCORRECT` here.
    /// Returns whether a new session was made.
    pub async fn login_now(&self, v: &Inner) -> Result<bool> {
        let _g = self.refreshing.lock().await;
        if self.current.lock().as_ref().is_some_and(|s| !s.due()) {
            return Ok(false);
        }
        self.obtain(v).await.map(|_| true)
    }

    /// Whether a token is held (a given token that Vault no longer takes is forgotten).
    pub fn has_session(&self) -> bool {
        self.current.lock().is_some()
    }

    /// A token given outright was refused (403): forget it, so that the next use (and
    /// `C_Login`) asks Vault about it again instead of sending it blindly.
    pub fn forget(&self, stale: &Arc<Session>) {
        let mut cur = self.current.lock();
        if cur.as_ref().is_some_and(|s| Arc::ptr_eq(s, stale)) {
            *cur = None;
        }
    }

    /// Renews `s`, or logs in again when renewal fails or no longer extends the lease.
    async fn refresh(&self, v: &Inner, s: &Arc<Session>) -> Result<Arc<Session>> {
        if s.renewable {
            match self.renew(v, s).await {
                Ok(new) if !(self.can_login() && new.lease * 2 < s.lease) => {
                    let new = Arc::new(new);
                    *self.current.lock() = Some(new.clone());
                    return Ok(new);
                }
                Ok(_) => log::info!(
                    "slot {}: the token is near its max TTL; logging in again",
                    v.slot
                ),
                Err(why) => log::info!(
                    "slot {}: token renewal failed ({why}); logging in again",
                    v.slot
                ),
            }
        }
        if self.can_login() {
            return self.obtain(v).await;
        }
        // A token given outright that cannot be renewed: used until Vault refuses it.
        let keep = Arc::new(Session {
            token: s.token.clone(),
            renew_at: None,
            renewable: false,
            lease: s.lease,
        });
        *self.current.lock() = Some(keep.clone());
        Ok(keep)
    }

    /// `renew-self`; a failure is not an error of the call (a new login follows), so it
    /// is only described.
    async fn renew(&self, v: &Inner, s: &Session) -> std::result::Result<Session, String> {
        let reply = v
            .send_raw(
                "token renewal",
                Method::POST,
                "auth/token/renew-self",
                Some(b"{}"),
                Some(s.token()),
                Ns::Auth,
                Retry::Never,
            )
            .await
            .map_err(|e| e.to_string())?;
        if !reply.ok() {
            return Err(format!("HTTP {}: {}", reply.status, reply.message()));
        }
        let r: LoginReply =
            serde_json::from_slice(&reply.body).map_err(|e| format!("malformed answer: {e}"))?;
        let a = r.auth.ok_or("no `auth` in the answer")?;
        // renew-self answers with the same token.
        Ok(Session::new(s.token.clone(), a.lease_duration, a.renewable))
    }

    /// A new session: a login, or the configured token checked by a lookup.
    async fn obtain(&self, v: &Inner) -> Result<Arc<Session>> {
        let session = match &self.method {
            VaultAuth::Token { token, .. } => {
                let t = resolve(v, token)?;
                let t = Zeroizing::new(
                    String::from_utf8(t.to_vec())
                        .map_err(|_| refused(v, "the configured token is not UTF-8"))?
                        .trim()
                        .to_string(),
                );
                let reply = v
                    .send_raw(
                        "token lookup",
                        Method::GET,
                        "auth/token/lookup-self",
                        None,
                        Some(&t),
                        Ns::Auth,
                        Retry::Read,
                    )
                    .await?;
                match reply.status {
                    200 => {}
                    400 | 401 | 403 => {
                        return Err(refused(
                            v,
                            format!(
                                "the configured token is refused (HTTP {}: {}); a token given outright cannot log in again",
                                reply.status,
                                reply.message()
                            ),
                        ))
                    }
                    _ => {
                        return Err(Error::logged(
                            CKR_DEVICE_ERROR,
                            format!("slot {}: token lookup: HTTP {}: {}", v.slot, reply.status, reply.message()),
                        ))
                    }
                }
                #[derive(serde::Deserialize)]
                struct Env {
                    data: Lookup,
                }
                let l: Env = reply.json("token lookup")?;
                Session::new(t, l.data.ttl, l.data.renewable)
            }
            VaultAuth::Approle {
                path,
                role_id,
                secret_id,
                ..
            } => {
                let body = Body::new()
                    .secret("role_id", &resolve(v, role_id)?)
                    .secret("secret_id", &resolve(v, secret_id)?)
                    .finish();
                self.login(v, path, &body).await?
            }
            VaultAuth::Kubernetes {
                path, role, jwt, ..
            } => {
                let jwt = resolve(v, jwt)?;
                let body = Body::new()
                    .str("role", role)
                    .secret("jwt", jwt.trim_ascii())
                    .finish();
                self.login(v, path, &body).await?
            }
        };
        let s = Arc::new(session);
        *self.current.lock() = Some(s.clone());
        Ok(s)
    }

    async fn login(&self, v: &Inner, path: &str, body: &[u8]) -> Result<Session> {
        let at = format!("auth/{}/login", path.trim_matches('/'));
        let reply = v
            .send_raw(
                "login",
                Method::POST,
                &at,
                Some(body),
                None,
                Ns::Auth,
                Retry::Never,
            )
            .await?;
        match reply.status {
            200 => {}
            400 | 401 | 403 | 404 => {
                return Err(refused(
                    v,
                    format!("login at {at}: HTTP {}: {}", reply.status, reply.message()),
                ))
            }
            _ => {
                return Err(Error::logged(
                    CKR_DEVICE_ERROR,
                    format!(
                        "slot {}: login at {at}: HTTP {}: {}",
                        v.slot,
                        reply.status,
                        reply.message()
                    ),
                ))
            }
        }
        let mut reply = reply;
        let r: Result<LoginReply> = reply.json("login");
        zeroize::Zeroize::zeroize(&mut reply.body);
        let a = r?.auth.ok_or_else(|| {
            Error::logged(
                CKR_DEVICE_ERROR,
                format!("slot {}: login: no `auth` in the answer", v.slot),
            )
        })?;
        log::debug!(
            "slot {}: logged in at {at} (lease {} s, renewable {})",
            v.slot,
            a.lease_duration,
            a.renewable
        );
        Ok(Session::new(
            Zeroizing::new(a.client_token),
            a.lease_duration,
            a.renewable,
        ))
    }
}

fn refused(v: &Inner, why: impl std::fmt::Display) -> Error {
    Error::logged(CKR_PIN_INCORRECT, format!("slot {}: {why}", v.slot))
}

fn resolve(v: &Inner, s: &crate::config::Secret) -> Result<Zeroizing<Vec<u8>>> {
    s.resolve()
        .map_err(|e| Error::logged(CKR_DEVICE_ERROR, format!("slot {}: {}", v.slot, e.0)))
}
