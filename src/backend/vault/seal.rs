//! `[slot.seal] backend = "vault"`: a soft token's master key sealed by a transit key.
//! The token's PIN records then wrap the transit ciphertext of the key instead of the key
//! (see `soft/pin.rs`), so whoever copies the store files (and guesses the PIN) still
//! needs transit to open it; a transit HMAC kept in `token.json` tells a different
//! transit key apart before any decryption is tried.

use super::client::{parse_versioned, Body, Inner, On400};
use crate::backend::remote::http::Retry;
use crate::backend::remote::{rt, HashAlg};
use crate::backend::soft::StoreSeal;
use crate::config::SealConfig;
use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Bound to every sealed master key as associated data: the ciphertext is for this use
/// only.
const AAD: &[u8] = b"hsmux-soft master key seal";

pub struct VaultSeal {
    inner: Arc<Inner>,
    key: String,
}

impl VaultSeal {
    /// The seal of the soft slot `slot` (no request is sent here).
    pub fn new(slot: &str, cfg: &SealConfig) -> std::result::Result<VaultSeal, String> {
        let mut vc = cfg.vault.clone();
        vc.keys = vec![cfg.key.clone()];
        Ok(VaultSeal {
            inner: Arc::new(Inner::new(&format!("{slot} [seal]"), &vc)?),
            key: cfg.key.clone(),
        })
    }

    fn run<T, Fut>(&self, what: &str, fut: Fut) -> Result<T>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        rt::call(
            &format!("slot {}: {what}", self.inner.slot),
            self.inner.timeout,
            fut,
        )
    }
}

/// The seal of a soft slot's `[slot.seal]`; one that cannot be set up fails each use
/// with the reason (the slot itself still exists, as for a remote slot).
pub fn store_seal(slot: &str, cfg: &SealConfig) -> Arc<dyn StoreSeal> {
    match VaultSeal::new(slot, cfg) {
        Ok(s) => Arc::new(s),
        Err(why) => {
            log::error!("slot {slot}: [slot.seal]: {why}");
            Arc::new(UnusableSeal {
                key: cfg.key.clone(),
                why,
            })
        }
    }
}

/// A seal that could not be set up: every use fails with the reason.
pub struct UnusableSeal {
    pub key: String,
    pub why: String,
}

impl UnusableSeal {
    fn fail<T>(&self) -> Result<T> {
        Err(Error::logged(
            CKR_DEVICE_ERROR,
            format!("[slot.seal]: unusable: {}", self.why),
        ))
    }
}

impl StoreSeal for UnusableSeal {
    fn key_name(&self) -> String {
        self.key.clone()
    }
    fn seal(&self, _: &[u8]) -> Result<String> {
        self.fail()
    }
    fn open(&self, _: &str) -> Result<Zeroizing<Vec<u8>>> {
        self.fail()
    }
    fn check(&self, _: &[u8], _: Option<&str>) -> Result<String> {
        self.fail()
    }
}

impl StoreSeal for VaultSeal {
    fn key_name(&self) -> String {
        self.key.clone()
    }

    fn seal(&self, mk: &[u8]) -> Result<String> {
        let (i, key, mk) = (
            self.inner.clone(),
            self.key.clone(),
            Zeroizing::new(mk.to_vec()),
        );
        self.run("sealing the store key", async move {
            use base64::Engine as _;
            let (v, blob) = i.encrypt_raw(&key, &mk, AAD, None).await?;
            Ok(format!(
                "vault:v{v}:{}",
                base64::engine::general_purpose::STANDARD.encode(blob)
            ))
        })
    }

    fn open(&self, sealed: &str) -> Result<Zeroizing<Vec<u8>>> {
        let (i, key) = (self.inner.clone(), self.key.clone());
        let sealed = Zeroizing::new(sealed.to_string());
        self.run("unsealing the store key", async move {
            let what = format!("unsealing the store key with {key}");
            let body = Body::new()
                .str("ciphertext", &sealed)
                .b64("associated_data", AAD)
                .finish();
            let path = i.mount_path(&format!("decrypt/{key}"));
            #[derive(serde::Deserialize)]
            struct Opened {
                plaintext: String,
            }
            let mut o: Opened = i
                .post(
                    &what,
                    &path,
                    &body,
                    Retry::Idempotent,
                    On400(CKR_DEVICE_ERROR),
                )
                .await?;
            use base64::Engine as _;
            let pt = base64::engine::general_purpose::STANDARD
                .decode(o.plaintext.as_bytes())
                .map(Zeroizing::new)
                .map_err(|e| crate::backend::remote::http::malformed(&what, e));
            zeroize::Zeroize::zeroize(&mut o.plaintext);
            pt
        })
    }

    fn check(&self, context: &[u8], like: Option<&str>) -> Result<String> {
        let version = match like {
            Some(l) => Some(parse_versioned("the seal's check", l)?.0),
            None => None,
        };
        let (i, key, context) = (self.inner.clone(), self.key.clone(), context.to_vec());
        self.run("the seal's check HMAC", async move {
            let what = format!("the seal's check HMAC with {key}");
            // A 400 (a version this key does not have) means "not the sealing key".
            i.hmac_raw(
                &what,
                &key,
                HashAlg::Sha256,
                &context,
                version.map(u64::from),
                On400(CKR_FUNCTION_FAILED),
            )
            .await
        })
    }
}
