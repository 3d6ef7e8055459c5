//! `backend = "gcp-kms"`: Google Cloud KMS and Cloud HSM keys of one key ring, over the REST
//! v1 API.
//!
//! - [`auth`]: access tokens (service-account file or ADC) through `gcp_auth`;
//! - [`rest`]: requests with the token, retries and the error mapping;
//! - [`api`]: the JSON shapes; [`crc`]: the CRC32C integrity fields;
//! - [`alg`]: algorithm names to key kinds and the one scheme each allows;
//! - [`keys`]: listing and creating keys; [`crypto`]: the crypto calls.
//!
//! Every [`KeyService`] method runs its requests on the module's runtime under the slot's
//! `timeout_ms` ([`rt::call`]); nothing is sent before the first such call.

pub(crate) mod alg;
pub(crate) mod api;
mod auth;
pub(crate) mod crc;
mod crypto;
mod keys;
pub(crate) mod rest;

use crate::backend::remote::{
    self, http, rt, GcmSealed, HashAlg, KeyService, KeyVersion, NewKey, RemoteToken, ServiceInfo,
    SignInput, SignScheme,
};
use crate::config::GcpKmsConfig;
use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// A key creation waits for the service to generate the version (RSA keys in an HSM take
/// seconds), so it gets at least this long whatever `timeout_ms` says.
const GENERATE_MIN: Duration = Duration::from_secs(60);

/// The token of a Cloud KMS slot or replica named `name` ([`remote::token`]).
pub fn open(name: &str, cfg: &GcpKmsConfig, gated: bool) -> RemoteToken {
    remote::token(
        name,
        GcpKms::new(name, cfg),
        &cfg.common,
        cfg.hsm_only,
        gated,
    )
}

/// What the async calls share.
struct Inner {
    slot: String,
    rest: rest::Rest,
    /// `projects/<p>/locations/<l>/keyRings/<r>`.
    key_ring: String,
    /// Named keys (empty = the whole ring).
    keys: Vec<String>,
    /// SubjectPublicKeyInfo by version name: a version's public key never changes.
    public_keys: Mutex<HashMap<String, Vec<u8>>>,
}

pub struct GcpKms {
    inner: Arc<Inner>,
    deadline: Duration,
    info: ServiceInfo,
}

impl GcpKms {
    /// Reads the credentials file (if any) and builds the HTTP client; touches no network.
    pub fn new(slot: &str, cfg: &GcpKmsConfig) -> std::result::Result<GcpKms, String> {
        let auth = auth::Auth::new(cfg.credentials.as_ref())?;
        let deadline = Duration::from_millis(cfg.common.timeout_ms);
        let client = http::client(deadline).map_err(|e| format!("HTTP client: {e}"))?;
        log::debug!(
            "slot {slot}: Cloud KMS {} at {} with {}",
            cfg.key_ring,
            cfg.endpoint,
            auth.describe()
        );
        let info = ServiceInfo {
            manufacturer: "Google".into(),
            model: "Cloud KMS".into(),
            serial: serial(&cfg.endpoint, &cfg.key_ring),
            location: cfg.key_ring.clone(),
        };
        Ok(GcpKms {
            inner: Arc::new(Inner {
                slot: slot.to_string(),
                rest: rest::Rest::new(client, &cfg.endpoint, auth),
                key_ring: cfg.key_ring.clone(),
                keys: cfg.keys.clone(),
                public_keys: Mutex::new(HashMap::new()),
            }),
            deadline,
            info,
        })
    }

    /// Runs `f` on the runtime under the slot's deadline.
    fn run<T, F>(
        &self,
        what: &str,
        deadline: Duration,
        f: impl FnOnce(Arc<Inner>) -> F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let what = format!("slot {}: {what}", self.inner.slot);
        rt::call(&what, deadline, f(self.inner.clone()))
    }
}

/// 16 hex digits of SHA-256(endpoint, key ring): the same slot config gives the same
/// serial on every host and start.
fn serial(endpoint: &str, key_ring: &str) -> String {
    let d = HashAlg::Sha256.digest(format!("{endpoint}\n{key_ring}").as_bytes());
    hex::encode(&d[..8])
}

impl KeyService for GcpKms {
    fn info(&self) -> ServiceInfo {
        self.info.clone()
    }

    /// A token (cached or new) and a read of the key ring with it: refused credentials are
    /// `CKR_PIN_INCORRECT`. A service account that may use its keys but not read the ring
    /// is let in (logged).
    fn login(&self) -> Result<()> {
        let r = self.run("Cloud KMS login", self.deadline, |me| async move {
            let what = format!("Cloud KMS get {}", me.key_ring);
            me.rest
                .get::<api::KeyRing>(&what, &me.key_ring)
                .await
                .map(|_| ())
        });
        match r {
            Err(e) if e.rv() == CKR_USER_NOT_LOGGED_IN => Err(Error::new(CKR_PIN_INCORRECT)),
            Err(e) if e.rv() == CKR_KEY_FUNCTION_NOT_PERMITTED => {
                log::warn!(
                    "slot {}: the credentials may not read {} (cloudkms.keyRings.get); logged in anyway",
                    self.inner.slot,
                    self.inner.key_ring
                );
                Ok(())
            }
            Err(e) if e.rv() == CKR_KEY_HANDLE_INVALID => Err(Error::logged(
                CKR_DEVICE_ERROR,
                format!(
                    "slot {}: key ring {} does not exist",
                    self.inner.slot, self.inner.key_ring
                ),
            )),
            other => other,
        }
    }

    fn probe(&self) -> Result<()> {
        self.run("Cloud KMS probe", self.deadline, |me| async move {
            let what = format!("Cloud KMS get {}", me.key_ring);
            me.rest
                .get::<api::KeyRing>(&what, &me.key_ring)
                .await
                .map(|_| ())
        })
    }

    fn list_keys(&self) -> Result<Vec<KeyVersion>> {
        self.run("Cloud KMS key listing", self.deadline, |me| me.list())
    }

    fn sign(&self, key: &KeyVersion, scheme: SignScheme, input: SignInput<'_>) -> Result<Vec<u8>> {
        let data = Zeroizing::new(match input {
            SignInput::Digest(d) | SignInput::Message(d) => d.to_vec(),
            // Cloud KMS signs with an empty context (sign_context is false: the token
            // refused any other).
            SignInput::Pure {
                message,
                context: [],
            } => message.to_vec(),
            SignInput::Pure { .. } => return Err(Error::new(CKR_MECHANISM_PARAM_INVALID)),
        });
        let key = key.clone();
        self.run("Cloud KMS sign", self.deadline, move |me| async move {
            me.sign(key, scheme, data).await
        })
    }

    fn mac_verify(
        &self,
        key: &KeyVersion,
        _hash: HashAlg,
        data: &[u8],
        tag: &[u8],
    ) -> Result<bool> {
        // The hash is the key's own (HMAC_SHA256 keys make SHA-256 tags); the token has
        // checked the mechanism against it.
        let (key, data, tag) = (key.clone(), Zeroizing::new(data.to_vec()), tag.to_vec());
        self.run("Cloud KMS macVerify", self.deadline, move |me| async move {
            me.mac_verify(key, data, tag).await
        })
    }

    fn rsa_decrypt(&self, key: &KeyVersion, hash: HashAlg, ciphertext: &[u8]) -> Result<Vec<u8>> {
        if !key.usage.oaep_hashes.is_empty() && !key.usage.oaep_hashes.contains(&hash) {
            return Err(Error::logged(
                CKR_MECHANISM_PARAM_INVALID,
                format!(
                    "{}: OAEP with {} is not this key's algorithm",
                    key.id,
                    hash.name()
                ),
            ));
        }
        let (key, ct) = (key.clone(), ciphertext.to_vec());
        self.run(
            "Cloud KMS asymmetricDecrypt",
            self.deadline,
            move |me| async move { me.rsa_decrypt(key, ct).await },
        )
    }

    fn gcm_encrypt(&self, key: &KeyVersion, plaintext: &[u8], aad: &[u8]) -> Result<GcmSealed> {
        let (key, pt, aad) = (
            key.clone(),
            Zeroizing::new(plaintext.to_vec()),
            aad.to_vec(),
        );
        self.run(
            "Cloud KMS rawEncrypt",
            self.deadline,
            move |me| async move { me.gcm_encrypt(key, pt, aad).await },
        )
    }

    fn gcm_decrypt(
        &self,
        key: &KeyVersion,
        iv: &[u8],
        ciphertext_and_tag: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        let (key, iv, ct, aad) = (
            key.clone(),
            iv.to_vec(),
            ciphertext_and_tag.to_vec(),
            aad.to_vec(),
        );
        self.run(
            "Cloud KMS rawDecrypt",
            self.deadline,
            move |me| async move { me.gcm_decrypt(key, iv, ct, aad).await },
        )
    }

    fn generate(&self, key: &NewKey) -> Result<()> {
        let key = key.clone();
        self.run(
            "Cloud KMS key creation",
            self.deadline.max(GENERATE_MIN),
            move |me| me.generate(key),
        )
    }

    fn can_generate(&self) -> bool {
        true
    }

    fn pqc_mechanisms(&self) -> Vec<CK_MECHANISM_TYPE> {
        // All of them: ML-DSA, SLH-DSA and ML-KEM keys, and their creation.
        crate::backend::remote::pqc::MECHANISMS.to_vec()
    }

    fn decapsulate(&self, key: &KeyVersion, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let (key, ct) = (key.clone(), ciphertext.to_vec());
        self.run(
            "Cloud KMS decapsulate",
            self.deadline,
            move |me| async move { me.decapsulate(key, ct).await },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_is_stable_and_tells_rings_apart() {
        let a = serial(
            "https://cloudkms.googleapis.com",
            "projects/p/locations/l/keyRings/r",
        );
        assert_eq!(a.len(), 16);
        assert_eq!(
            a,
            serial(
                "https://cloudkms.googleapis.com",
                "projects/p/locations/l/keyRings/r"
            )
        );
        assert_ne!(
            a,
            serial(
                "https://cloudkms.googleapis.com",
                "projects/p/locations/l/keyRings/s"
            )
        );
        assert_ne!(
            a,
            serial("http://127.0.0.1:1", "projects/p/locations/l/keyRings/r")
        );
    }
}
