//! `backend = "azure-kv"`: the keys of an Azure Key Vault or an Azure Managed HSM, through
//! the Azure SDK's `KeyClient` (REST API 7.5) over the module's shared HTTP stack (reqwest,
//! rustls on aws-lc) and runtime.
//!
//! - [`auth`]: Microsoft Entra ID tokens (client secret, certificate assertion, workload
//!   identity, IMDS managed identity), cached and renewed: the SDK's credential;
//! - [`transport`]: the `KeyClient`, its transport over hsmux's reqwest client, retries;
//! - [`rest`]: sign, encrypt, decrypt, wrap and unwrap sent without the SDK's pipeline
//!   (its per-call cost), with the same bodies, retries, errors and 401 handling;
//! - [`errors`]: Key Vault's errors as PKCS#11 codes;
//! - [`keys`]: key names, versions and JSON Web Keys as hsmux's key versions; creation;
//! - [`crypto`]: sign, RSA decrypt, wrap/unwrap, AES-GCM and AES-CBC-PAD on Managed HSM.
//!
//! Key Vault or Managed HSM is told by the vault's host name (`*.vault.azure.net`,
//! `*.managedhsm.azure.net`), else by the resource its first challenge names; `hsmux
//! check` and `CK_TOKEN_INFO.model` say which. Every [`KeyService`] method runs on the
//! module's runtime under the slot's `timeout_ms` ([`rt::call`]); nothing is sent before
//! the first such call.

mod auth;
mod crypto;
mod errors;
mod keys;
mod rest;
mod transport;

use crate::backend::remote::token::{SIGN_EC, SIGN_RSA};
use crate::backend::remote::{
    self, http, rt, GcmCall, GcmSealed, HashAlg, KeyService, KeyVersion, NewKey, RemoteToken,
    ServiceInfo, SignInput, SignScheme, Transform,
};
use crate::config::{AzureKind, AzureKvConfig};
use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// A key creation waits for the HSM to generate it (RSA-4096 takes seconds), so it gets at
/// least this long whatever `timeout_ms` says.
const GENERATE_MIN: Duration = Duration::from_secs(60);

/// The token of an azure-kv slot or replica named `name` ([`remote::token`]).
pub fn open(name: &str, cfg: &AzureKvConfig, gated: bool) -> RemoteToken {
    remote::token(
        name,
        AzureKv::new(name, cfg),
        &cfg.common,
        cfg.hsm_only,
        gated,
    )
}

/// What the async calls share.
pub(crate) struct Inner {
    slot: String,
    client: azure_security_keyvault_keys::KeyClient,
    /// The HTTP client under `client`, which [`rest`] sends with too.
    http: reqwest::Client,
    /// `https://<name>.vault.azure.net`, no trailing slash.
    vault: String,
    auth: Arc<auth::Auth>,
    /// Named keys (empty = the whole vault).
    keys: Vec<String>,
    /// JSON Web Keys by `name/version`: a version's key never changes.
    jwks: Mutex<HashMap<String, keys::Jwk>>,
    /// A call met a key that is no longer usable (disabled, expired, deleted, refused):
    /// the key list is read again before the next search.
    stale: std::sync::atomic::AtomicBool,
    /// The AES key size (A256GCM, A128KW, ...) each oct-HSM version took.
    aes_bits: Mutex<HashMap<String, u32>>,
}

pub struct AzureKv {
    inner: Arc<Inner>,
    deadline: Duration,
    serial: String,
}

/// The resource (token audience) of each service.
fn resource(kind: AzureKind) -> &'static str {
    match kind {
        AzureKind::KeyVault => "https://vault.azure.net",
        AzureKind::ManagedHsm => "https://managedhsm.azure.net",
    }
}

impl AzureKv {
    /// Reads the credential (secret, certificate, ...) and the CA file and builds the HTTP
    /// client; touches no network.
    pub fn new(slot: &str, cfg: &AzureKvConfig) -> std::result::Result<AzureKv, String> {
        // A sovereign cloud's host (vault.azure.cn, ...) gets its resource from the
        // challenge: only the public cloud's is assumed from the name.
        let public = cfg.vault.ends_with(".azure.net");
        let known = cfg.kind.filter(|_| public).map(resource);
        let auth = Arc::new(auth::Auth::new(&cfg.auth, known)?);
        let deadline = Duration::from_millis(cfg.common.timeout_ms);
        let pool = http::client_with_ca(deadline, cfg.ca_file.as_deref())?;
        let client = transport::key_client(&cfg.vault, pool.clone(), auth.clone(), deadline)?;
        log::debug!("slot {slot}: Azure {} with {}", cfg.vault, auth.describe());
        let serial = {
            let d = HashAlg::Sha256.digest(cfg.vault.as_bytes());
            hex::encode(&d[..8])
        };
        Ok(AzureKv {
            inner: Arc::new(Inner {
                slot: slot.to_string(),
                client,
                http: pool,
                vault: cfg.vault.clone(),
                auth,
                keys: cfg.keys.clone(),
                jwks: Mutex::new(HashMap::new()),
                aes_bits: Mutex::new(HashMap::new()),
                stale: Default::default(),
            }),
            deadline,
            serial,
        })
    }

    /// Runs `f` on the runtime under the slot's deadline. A key that turned out to be
    /// gone or refused (403 KeyDisabled/KeyExpired, 404) marks the list stale, so the next
    /// search no longer finds it.
    fn run<T, F>(&self, what: &str, f: impl FnOnce(Arc<Inner>) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let r = rt::run_for(&self.inner.slot, what, self.deadline, &self.inner, f);
        if let Err(e) = &r {
            if matches!(
                e.rv(),
                CKR_KEY_FUNCTION_NOT_PERMITTED | CKR_KEY_HANDLE_INVALID
            ) {
                self.inner.stale.store(true, Ordering::Relaxed);
            }
        }
        r
    }

    /// Which service this is, as far as known.
    fn kind(&self) -> Option<AzureKind> {
        let r = self.inner.auth.resource()?;
        Some(if r.contains("managedhsm") {
            AzureKind::ManagedHsm
        } else {
            AzureKind::KeyVault
        })
    }

    /// A cheap read that needs a token: one key (or the first page of the list).
    fn read_one(&self, what: &str) -> Result<()> {
        self.run(what, |me| async move {
            match me.read_one().await {
                // A named key that does not exist yet: the vault and the token are fine.
                Err(e) if e.rv() == CKR_KEY_HANDLE_INVALID => Ok(()),
                other => other.map(|_| ()),
            }
        })
    }
}

impl KeyService for AzureKv {
    fn info(&self) -> ServiceInfo {
        ServiceInfo {
            manufacturer: "Microsoft".into(),
            model: match self.kind() {
                Some(AzureKind::ManagedHsm) => "Managed HSM",
                Some(AzureKind::KeyVault) => "Key Vault",
                None => "Key Vault/MHSM",
            }
            .into(),
            serial: self.serial.clone(),
            location: self.inner.vault.clone(),
        }
    }

    /// A token and a read with it: refused credentials are `CKR_PIN_INCORRECT`; a
    /// principal that may use keys but not read them is let in (logged).
    fn login(&self) -> Result<()> {
        match self.read_one("Key Vault login") {
            Err(e) if e.rv() == CKR_USER_NOT_LOGGED_IN => Err(Error::new(CKR_PIN_INCORRECT)),
            Err(e) if e.rv() == CKR_KEY_FUNCTION_NOT_PERMITTED => {
                log::warn!(
                    "slot {}: the credentials may not read keys (keys/get, keys/list); logged in anyway",
                    self.inner.slot
                );
                Ok(())
            }
            other => other,
        }
    }

    fn probe(&self) -> Result<()> {
        self.read_one("Key Vault probe")
    }

    fn take_stale(&self) -> bool {
        self.inner.stale.swap(false, Ordering::Relaxed)
    }

    fn list_keys(&self) -> Result<Vec<KeyVersion>> {
        self.run("Key Vault key listing", |me| me.list())
    }

    fn sign(&self, key: &KeyVersion, scheme: SignScheme, input: SignInput<'_>) -> Result<Vec<u8>> {
        let data = Zeroizing::new(match input {
            SignInput::Digest(d) | SignInput::Message(d) => d.to_vec(),
            // No post-quantum keys in Key Vault (no pqc_mechanisms).
            SignInput::Pure { .. } => return Err(Error::new(CKR_MECHANISM_INVALID)),
        });
        if let SignScheme::Pkcs1(h) = scheme {
            // CKM_RSA_PKCS with a DigestInfo of SHA-1/224: Key Vault has no RS1/RS224.
            if !matches!(h, HashAlg::Sha256 | HashAlg::Sha384 | HashAlg::Sha512) {
                return Err(Error::logged(
                    CKR_DATA_INVALID,
                    format!(
                        "{}: Key Vault signs SHA-256/384/512 digests only, not {}",
                        key.id,
                        h.name()
                    ),
                ));
            }
        }
        let key = key.clone();
        self.run("Key Vault sign", move |me| async move {
            me.sign(key, scheme, data).await
        })
    }

    fn check_sign_scheme(&self, key: &KeyVersion, scheme: SignScheme) -> Result<()> {
        crypto::sign_alg(key, scheme).map(|_| ())
    }

    fn rsa_decrypt(&self, key: &KeyVersion, hash: HashAlg, ciphertext: &[u8]) -> Result<Vec<u8>> {
        let (key, ct) = (key.clone(), ciphertext.to_vec());
        self.run("Key Vault decrypt", move |me| async move {
            me.rsa_decrypt(key, hash, ct).await
        })
    }

    fn gcm_encrypt(&self, key: &KeyVersion, plaintext: &[u8], aad: &[u8]) -> Result<GcmSealed> {
        let c = GcmCall::new(key, &[], plaintext, aad);
        self.run("Key Vault encrypt", move |me| async move {
            me.gcm_encrypt(c).await
        })
    }

    fn gcm_decrypt(
        &self,
        key: &KeyVersion,
        iv: &[u8],
        ciphertext_and_tag: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        let c = GcmCall::new(key, iv, ciphertext_and_tag, aad);
        self.run("Key Vault decrypt", move |me| async move {
            me.gcm_decrypt(c).await
        })
    }

    fn transform(&self, key: &KeyVersion, t: Transform, input: &[u8]) -> Result<Vec<u8>> {
        let (key, input) = (key.clone(), Zeroizing::new(input.to_vec()));
        self.run("Key Vault wrap/decrypt", move |me| async move {
            me.transform(key, t, input).await
        })
    }

    fn transforms(&self) -> Vec<(CK_MECHANISM_TYPE, CK_FLAGS)> {
        // RSA: wrapKey/unwrapKey with RSA-OAEP(-256) and RSA1_5, decrypt with RSA1_5 (RSA
        // encryption runs locally, see token/wrap.rs); Managed HSM's oct-HSM keys: A*KW
        // both as C_WrapKey and as C_Encrypt of raw key bytes, A*CBCPAD with the caller's IV.
        let mut v = vec![
            (CKM_RSA_PKCS_OAEP, CKF_WRAP | CKF_UNWRAP),
            (
                CKM_RSA_PKCS,
                CKF_WRAP | CKF_UNWRAP | CKF_ENCRYPT | CKF_DECRYPT,
            ),
        ];
        if self.kind() != Some(AzureKind::KeyVault) {
            let both = CKF_WRAP | CKF_UNWRAP | CKF_ENCRYPT | CKF_DECRYPT;
            v.push((CKM_AES_KEY_WRAP, both));
            v.push((CKM_AES_CBC_PAD, CKF_ENCRYPT | CKF_DECRYPT));
        }
        v
    }

    fn generate(&self, key: &NewKey) -> Result<()> {
        let key = key.clone();
        rt::run_for(
            &self.inner.slot,
            "Key Vault key creation",
            self.deadline.max(GENERATE_MIN),
            &self.inner,
            move |me| me.generate(key),
        )
    }
    fn can_generate(&self) -> bool {
        true
    }

    fn mechanisms(&self) -> Vec<CK_MECHANISM_TYPE> {
        // Key Vault's JWA algorithms: ES256/384/512 (any ECDSA digest fits, see crypto.rs),
        // RS/PS 256/384/512, RSA-OAEP(-256); A*GCM on Managed HSM; no EdDSA, no HMAC.
        let sha1_or_224 = [
            CKM_SHA1_RSA_PKCS,
            CKM_SHA224_RSA_PKCS,
            CKM_SHA1_RSA_PKCS_PSS,
            CKM_SHA224_RSA_PKCS_PSS,
        ];
        let mut v: Vec<CK_MECHANISM_TYPE> = SIGN_EC.to_vec();
        v.extend(SIGN_RSA.iter().filter(|m| !sha1_or_224.contains(m)));
        v.extend([
            CKM_RSA_PKCS_OAEP,
            CKM_EC_KEY_PAIR_GEN,
            CKM_RSA_PKCS_KEY_PAIR_GEN,
        ]);
        if self.kind() != Some(AzureKind::KeyVault) {
            v.extend_from_slice(&[CKM_AES_GCM, CKM_AES_KEY_GEN]);
        }
        v
    }
}
