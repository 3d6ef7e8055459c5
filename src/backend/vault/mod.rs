//! Vault / OpenBao transit (`backend = "vault"`) as a [`KeyService`].
//!
//! - `client.rs`: the requests (token and namespace headers, one re-login on 403, the
//!   mapping of Vault's answers to PKCS#11 codes);
//! - `auth.rs`: token, AppRole and Kubernetes logins, renewal before expiry;
//! - `keys.rs`: key reads, listing, the version model, key creation and rotation;
//! - `ops.rs`: sign, HMAC, AES-GCM and RSA-OAEP through transit;
//! - `seal.rs`: the soft token's `[slot.seal]` (its store key sealed by a transit key).
//!
//! Nothing here touches the network before the first PKCS#11 call that needs the service:
//! `C_Initialize` never waits on Vault.

mod auth;
pub(crate) mod client;
pub(crate) mod keys;
mod ops;
pub mod seal;

use crate::backend::remote::{
    self, rt, GcmSealed, HashAlg, KeyService, KeyVersion, NewKey, RemoteToken, ServiceInfo,
    SignInput, SignScheme,
};
use crate::config::VaultConfig;
use crate::core::error::Result;
use std::sync::Arc;
use std::time::Duration;

pub use client::Inner;

/// The token of a Vault slot or replica named `name` ([`remote::token`]).
pub fn open(name: &str, cfg: &VaultConfig, gated: bool) -> RemoteToken {
    remote::token(name, Vault::new(name, cfg), &cfg.common, false, gated)
}

/// One transit mount of one Vault/OpenBao server, as a slot (or a replica) sees it.
pub struct Vault {
    inner: Arc<Inner>,
}

impl Vault {
    /// Builds the client (no request is sent here).
    pub fn new(slot: &str, cfg: &VaultConfig) -> std::result::Result<Vault, String> {
        Ok(Vault {
            inner: Arc::new(Inner::new(slot, cfg)?),
        })
    }

    fn deadline(&self) -> Duration {
        self.inner.timeout
    }

    /// Runs `f` on the module's runtime with the slot's deadline.
    fn run<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let what_owned = format!("slot {}: {what}", self.inner.slot);
        rt::call(&what_owned, self.deadline(), f(self.inner.clone()))
    }
}

impl KeyService for Vault {
    fn info(&self) -> ServiceInfo {
        self.inner.info()
    }

    fn login(&self) -> Result<()> {
        self.run("login", |i| async move {
            // What the credentials may do is asked once per new token.
            if i.auth.login_now(&i).await? {
                i.learn_can_generate().await;
            }
            Ok(())
        })
    }

    fn probe(&self) -> Result<()> {
        self.run("probe", |i| async move { i.probe().await })
    }

    fn list_keys(&self) -> Result<Vec<KeyVersion>> {
        self.run("listing keys", |i| async move { i.list_keys().await })
    }

    fn sign(&self, key: &KeyVersion, scheme: SignScheme, input: SignInput<'_>) -> Result<Vec<u8>> {
        let key = key.clone();
        let (data, digest) = match input {
            SignInput::Digest(d) => (zeroize::Zeroizing::new(d.to_vec()), true),
            SignInput::Message(m) => (zeroize::Zeroizing::new(m.to_vec()), false),
            // Empty: transit takes no context string (sign_context is false).
            SignInput::Pure {
                message,
                context: [],
            } => (zeroize::Zeroizing::new(message.to_vec()), false),
            SignInput::Pure { .. } => {
                return Err(crate::core::error::err(
                    cryptoki_sys::CKR_MECHANISM_PARAM_INVALID,
                ))
            }
        };
        self.run("sign", move |i| async move {
            i.sign(&key, scheme, &data, digest).await
        })
    }

    fn check_sign_scheme(&self, key: &KeyVersion, scheme: SignScheme) -> Result<()> {
        if let SignScheme::Pss(_, 0) = scheme {
            // Transit hands the number to Go's crypto/rsa, where 0 means "auto" (the
            // longest salt): an empty salt cannot be asked for.
            return Err(crate::core::error::Error::logged(
                cryptoki_sys::CKR_MECHANISM_PARAM_INVALID,
                format!(
                    "slot {}: {}: transit cannot make RSA-PSS signatures with an empty salt",
                    self.inner.slot, key.id
                ),
            ));
        }
        Ok(())
    }

    fn rsa_decrypt(&self, key: &KeyVersion, hash: HashAlg, ciphertext: &[u8]) -> Result<Vec<u8>> {
        let key = key.clone();
        let ct = ciphertext.to_vec();
        self.run("RSA-OAEP decrypt", move |i| async move {
            i.rsa_decrypt(&key, hash, &ct).await
        })
    }

    fn gcm_encrypt(&self, key: &KeyVersion, plaintext: &[u8], aad: &[u8]) -> Result<GcmSealed> {
        let key = key.clone();
        let pt = zeroize::Zeroizing::new(plaintext.to_vec());
        let aad = aad.to_vec();
        self.run("AES-GCM encrypt", move |i| async move {
            i.gcm_encrypt(&key, &pt, &aad).await
        })
    }

    fn gcm_decrypt(
        &self,
        key: &KeyVersion,
        iv: &[u8],
        ciphertext_and_tag: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        let key = key.clone();
        let blob = [iv, ciphertext_and_tag].concat();
        let aad = aad.to_vec();
        self.run("AES-GCM decrypt", move |i| async move {
            i.gcm_decrypt(&key, &blob, &aad).await
        })
    }

    fn generate(&self, key: &NewKey) -> Result<()> {
        let key = key.clone();
        self.run(
            "key creation",
            move |i| async move { i.generate(&key).await },
        )
    }

    fn can_generate(&self) -> bool {
        self.inner
            .can_generate
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn pqc_mechanisms(&self) -> Vec<cryptoki_sys::CK_MECHANISM_TYPE> {
        // ML-DSA keys (OpenBao 2.7's mldsa-44/65/87); transit has no SLH-DSA or ML-KEM.
        vec![
            cryptoki_sys::CKM_ML_DSA,
            cryptoki_sys::CKM_ML_DSA_KEY_PAIR_GEN,
        ]
    }
}
