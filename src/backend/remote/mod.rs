//! What every remote key service (Vault/OpenBao transit, Google Cloud KMS, AWS KMS) has in
//! common: the kmsp11-style object model, the mapping of PKCS#11 mechanisms onto service
//! operations, the AES-GCM service-IV contract, local verification, the runtime the HTTP
//! clients run on and the HTTP helpers (deadlines, retries, error mapping).
//!
//! A service implements [`KeyService`]: plain blocking calls on owned data, each of which
//! runs its requests on the module's runtime ([`rt`]) with the slot's deadline.
//! [`token::RemoteToken`] turns any `KeyService` into a [`crate::core::token::Token`], so
//! a remote slot and a remote replica of a replica group are the same thing. The services
//! themselves live in their own folders (`backend/vault`, `backend/gcp_kms`,
//! `backend/aws_kms`), which depend on this one and never the reverse; `backend::open`
//! builds their tokens with [`token`].
//!
//! Object model (what a consumer sees):
//! - every usable key version is one object (a secret key), or two for an asymmetric key
//!   (a private key and a public key with the same `CKA_ID`);
//! - `CKA_LABEL` = the key's name (shared by its versions), `CKA_ID` = the version's full
//!   name (e.g. `projects/../cryptoKeyVersions/3`, `transit/keys/k/v3`);
//! - the primary (newest usable) version comes first in `C_FindObjects`;
//! - keys are `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`, `CKA_TOKEN`, `CKA_PRIVATE` (private
//!   and secret keys), public keys carry the service's public key.

pub mod http;
pub mod ops;
pub mod pqc;
pub mod public;
pub mod rt;
pub mod token;

use crate::core::error::Result;
use cryptoki_sys::*;
use std::sync::Arc;

pub use token::RemoteToken;

/// A hash function as services name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// The digest's length in bytes (a digest is never empty).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha224 => 28,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }
    /// The PKCS#11 digest mechanism (`CKM_SHA256`, ...).
    pub fn ckm(self) -> CK_MECHANISM_TYPE {
        match self {
            HashAlg::Sha1 => CKM_SHA_1,
            HashAlg::Sha224 => CKM_SHA224,
            HashAlg::Sha256 => CKM_SHA256,
            HashAlg::Sha384 => CKM_SHA384,
            HashAlg::Sha512 => CKM_SHA512,
        }
    }
    /// Splits a PKCS#1 v1.5 DigestInfo (what `CKM_RSA_PKCS` signs) into its hash and
    /// digest; services sign digests, so only these two travel.
    pub fn split_digest_info(data: &[u8]) -> Option<(HashAlg, &[u8])> {
        let (m, digest) = crate::backend::soft::crypto::der::split_digest_info(data)?;
        Some((HashAlg::from_ckm(m)?, digest))
    }
    pub fn from_ckm(m: CK_MECHANISM_TYPE) -> Option<HashAlg> {
        Some(match m {
            CKM_SHA_1 => HashAlg::Sha1,
            CKM_SHA224 => HashAlg::Sha224,
            CKM_SHA256 => HashAlg::Sha256,
            CKM_SHA384 => HashAlg::Sha384,
            CKM_SHA512 => HashAlg::Sha512,
            _ => return None,
        })
    }
    /// The MGF1 constant that goes with this hash (`CKG_MGF1_SHA256`, ...).
    pub fn mgf(self) -> CK_ULONG {
        match self {
            HashAlg::Sha1 => CKG_MGF1_SHA1,
            HashAlg::Sha224 => CKG_MGF1_SHA224,
            HashAlg::Sha256 => CKG_MGF1_SHA256,
            HashAlg::Sha384 => CKG_MGF1_SHA384,
            HashAlg::Sha512 => CKG_MGF1_SHA512,
        }
    }
    /// Lower-case name as Vault and most REST APIs write it ("sha2-256" is Vault's own,
    /// see the service modules).
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha224 => "sha224",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }
    /// Hashes `data` (locally: a digest is exact, so it is never sent to a service).
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use aws_lc_rs::digest;
        let alg = match self {
            HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha224 => &digest::SHA224,
            HashAlg::Sha256 => &digest::SHA256,
            HashAlg::Sha384 => &digest::SHA384,
            HashAlg::Sha512 => &digest::SHA512,
        };
        digest::digest(alg, data).as_ref().to_vec()
    }
}

/// An elliptic curve of a remote EC key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcCurve {
    P256,
    P384,
    P521,
}

impl EcCurve {
    pub fn field_len(self) -> usize {
        match self {
            EcCurve::P256 => 32,
            EcCurve::P384 => 48,
            EcCurve::P521 => 66,
        }
    }
}

/// The kind of a key version, as PKCS#11 sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlg {
    /// AES-GCM with a service-chosen 96-bit IV and a 128-bit tag (`CKK_AES`).
    AesGcm {
        bits: u32,
    },
    /// An HMAC key. `hash` is fixed by services that bind the hash to the key (Cloud KMS
    /// `HMAC_SHA256`, AWS `HMAC_256`); `None` where any hash may be chosen per call (Vault).
    Hmac {
        hash: Option<HashAlg>,
        bits: u32,
    },
    Ec {
        curve: EcCurve,
    },
    Ed25519,
    Rsa {
        bits: u32,
    },
    /// ML-DSA (FIPS 204) with its `CKP_ML_DSA_*` parameter set (see [`pqc`]).
    MlDsa {
        set: CK_ULONG,
    },
    /// SLH-DSA (FIPS 205) with its `CKP_SLH_DSA_*` parameter set.
    SlhDsa {
        set: CK_ULONG,
    },
    /// ML-KEM (FIPS 203) with its `CKP_ML_KEM_*` parameter set.
    MlKem {
        set: CK_ULONG,
    },
}

impl KeyAlg {
    pub fn is_asymmetric(self) -> bool {
        matches!(
            self,
            KeyAlg::Ec { .. } | KeyAlg::Ed25519 | KeyAlg::Rsa { .. }
        ) || self.is_pqc()
    }
    /// A post-quantum kind (PKCS#11 3.2 key types, `CKA_PARAMETER_SET`).
    pub fn is_pqc(self) -> bool {
        matches!(
            self,
            KeyAlg::MlDsa { .. } | KeyAlg::SlhDsa { .. } | KeyAlg::MlKem { .. }
        )
    }
    pub fn key_type(self) -> CK_KEY_TYPE {
        match self {
            KeyAlg::AesGcm { .. } => CKK_AES,
            KeyAlg::Hmac { hash, .. } => match hash {
                Some(HashAlg::Sha1) => CKK_SHA_1_HMAC,
                Some(HashAlg::Sha224) => CKK_SHA224_HMAC,
                Some(HashAlg::Sha256) => CKK_SHA256_HMAC,
                Some(HashAlg::Sha384) => CKK_SHA384_HMAC,
                Some(HashAlg::Sha512) => CKK_SHA512_HMAC,
                None => CKK_GENERIC_SECRET,
            },
            KeyAlg::Ec { .. } => CKK_EC,
            KeyAlg::Ed25519 => CKK_EC_EDWARDS,
            KeyAlg::Rsa { .. } => CKK_RSA,
            KeyAlg::MlDsa { .. } => CKK_ML_DSA,
            KeyAlg::SlhDsa { .. } => CKK_SLH_DSA,
            KeyAlg::MlKem { .. } => CKK_ML_KEM,
        }
    }
}

/// What a key version may do. Services that fix the padding and hash per key (Cloud KMS
/// `RSA_SIGN_PSS_2048_SHA256`, AWS's signing algorithms list) fill `sign_schemes` with
/// exactly what they accept; the token refuses other mechanisms with
/// `CKR_KEY_FUNCTION_NOT_PERMITTED`/`CKR_MECHANISM_INVALID` before any request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub sign: bool,
    pub decrypt: bool,
    pub encrypt: bool,
    /// The signature schemes the service accepts for this version; empty = any scheme
    /// the key type allows.
    pub sign_schemes: Vec<SignScheme>,
    /// The OAEP hashes the service accepts for decryption; empty = any.
    pub oaep_hashes: Vec<HashAlg>,
}

/// One usable version of a remote key: one PKCS#11 object (two for an asymmetric key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyVersion {
    /// The key's name: `CKA_LABEL` of every version.
    pub label: String,
    /// The version's full name: `CKA_ID`. Unique within the slot.
    pub id: String,
    /// The version number or name the service's requests need (service-specific).
    pub locator: String,
    /// The version new encryptions and signatures use (found first).
    pub primary: bool,
    pub alg: KeyAlg,
    pub usage: Usage,
    /// SubjectPublicKeyInfo (DER) of an asymmetric version.
    pub public_spki: Option<Vec<u8>>,
    /// Protection level: `Some(true)` for an HSM-backed version, `Some(false)` for a
    /// software one, `None` when the service does not say.
    pub hardware: Option<bool>,
}

/// How a signature is made. The token hashes locally (a digest is exact) and sends the
/// digest for ECDSA and RSA; Ed25519 and HMAC get the message itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignScheme {
    /// ECDSA; the service answers DER or raw, the service module returns raw r||s.
    Ecdsa(HashAlg),
    /// RSASSA-PKCS1-v1_5 over a digest.
    Pkcs1(HashAlg),
    /// RSASSA-PSS over a digest with MGF1 of the same hash and this salt length.
    Pss(HashAlg, usize),
    Ed25519,
    /// HMAC with this hash (the key's own where the service binds it).
    Hmac(HashAlg),
    /// Pure ML-DSA (FIPS 204 algorithm 2) over the whole message.
    MlDsa,
    /// Pure SLH-DSA (FIPS 205 algorithm 22) over the whole message.
    SlhDsa,
}

/// What to sign: a digest of the message (ECDSA, RSA), the message itself (Ed25519,
/// HMAC), or the message with its FIPS 204/205 context string (ML-DSA, SLH-DSA; the
/// context is empty unless the service takes one, see [`KeyService::sign_context`]).
#[derive(Clone, Copy, Debug)]
pub enum SignInput<'a> {
    Digest(&'a [u8]),
    Message(&'a [u8]),
    Pure {
        message: &'a [u8],
        context: &'a [u8],
    },
}

/// A service's AES-GCM encryption: the IV it chose and `ciphertext || tag`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcmSealed {
    pub iv: Vec<u8>,
    pub ciphertext_and_tag: Vec<u8>,
}

/// The owned arguments of an AES-GCM call, for a future that outlives the caller's
/// borrows (the text zeroized when dropped).
pub struct GcmCall {
    pub key: KeyVersion,
    /// Empty for an encryption (the service chooses).
    pub iv: Vec<u8>,
    /// The plaintext, or `ciphertext || tag`.
    pub text: zeroize::Zeroizing<Vec<u8>>,
    pub aad: Vec<u8>,
}

impl GcmCall {
    pub fn new(key: &KeyVersion, iv: &[u8], text: &[u8], aad: &[u8]) -> GcmCall {
        GcmCall {
            key: key.clone(),
            iv: iv.to_vec(),
            text: zeroize::Zeroizing::new(text.to_vec()),
            aad: aad.to_vec(),
        }
    }
}

/// A key-wrapping algorithm of a service's wrap/unwrap operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapAlg {
    /// RSA-OAEP with MGF1 of the same hash and an empty label.
    RsaOaep(HashAlg),
    /// RSAES-PKCS1-v1_5.
    RsaPkcs1,
    /// AES key wrap (RFC 3394) with the default IV.
    AesKw,
}

/// A service cipher beyond the AES-GCM and RSA-OAEP decryption every service with such
/// keys has (see [`KeyService::transform`]): the input is the whole plaintext or
/// ciphertext, the answer the whole output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    /// Wraps raw key bytes (`C_WrapKey`, or `C_Encrypt` with a wrapping mechanism).
    Wrap(WrapAlg),
    /// Unwraps them (`C_UnwrapKey`, or `C_Decrypt` with a wrapping mechanism).
    Unwrap(WrapAlg),
    /// AES-CBC with PKCS#7 padding and the caller's IV.
    CbcPadEncrypt([u8; 16]),
    CbcPadDecrypt([u8; 16]),
    /// RSAES-PKCS1-v1_5 decryption (`CKM_RSA_PKCS`).
    Pkcs1Decrypt,
}

impl Transform {
    /// The input is ciphertext (too much of it is `CKR_ENCRYPTED_DATA_LEN_RANGE`).
    pub fn decrypts(self) -> bool {
        matches!(
            self,
            Transform::Unwrap(_) | Transform::CbcPadDecrypt(_) | Transform::Pkcs1Decrypt
        )
    }
}

/// A key to create with `C_GenerateKey` / `C_GenerateKeyPair` (a new key, or a new
/// version of an existing key of the same name where the service has versions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewKey {
    pub label: String,
    pub alg: KeyAlg,
    /// Asymmetric: sign (`CKA_SIGN`) or decrypt (`CKA_DECRYPT`) key. Services that bind
    /// a key to one purpose (Cloud KMS, AWS) pick it from this.
    pub sign: bool,
    pub decrypt: bool,
}

/// Facts about the service for `C_GetTokenInfo` and `hsmux check`.
#[derive(Clone, Debug, Default)]
pub struct ServiceInfo {
    pub manufacturer: String,
    pub model: String,
    /// Stable per service endpoint and key container (`CK_TOKEN_INFO.serialNumber`, 16
    /// characters at most).
    pub serial: String,
    /// Where the slot points (for logs and `hsmux check`): an address and key container.
    pub location: String,
}

/// One remote key service as the token drives it. Every method blocks the calling thread
/// (never a runtime worker) until the service answered or the slot's deadline passed, and
/// maps failures to PKCS#11 codes with the service's message in the log:
/// `CKR_DEVICE_ERROR` for 5xx, transport failures and timeouts, `CKR_KEY_HANDLE_INVALID`
/// for a key that vanished, `CKR_USER_NOT_LOGGED_IN`/`CKR_PIN_INCORRECT` for refused
/// credentials, `CKR_KEY_FUNCTION_NOT_PERMITTED` for a policy refusal, and
/// `CKR_DEVICE_ERROR` for a malformed answer (bad JSON, wrong lengths, bad checksum).
/// These are the services' codes; what a consumer's `C_Sign`, `C_Encrypt`, ... returns
/// for them is decided in `ops` ([`ops::CryptoCall`]), since not every function may
/// return each (`C_Sign` answers a refusal `CKR_FUNCTION_REJECTED`).
pub trait KeyService: Send + Sync {
    fn info(&self) -> ServiceInfo;
    /// Obtains (or checks) the credentials; called by `C_Login`. A refusal is
    /// `CKR_PIN_INCORRECT`, an unreachable service `CKR_DEVICE_ERROR`.
    fn login(&self) -> Result<()>;
    /// A cheap read that tells the service is up and the credentials work (health probe).
    fn probe(&self) -> Result<()>;
    /// Every usable version of the slot's keys, primary versions first.
    fn list_keys(&self) -> Result<Vec<KeyVersion>>;
    /// A signature or MAC in PKCS#11 form (ECDSA raw r||s, RSA as the modulus length,
    /// HMAC the full tag).
    fn sign(&self, key: &KeyVersion, scheme: SignScheme, input: SignInput<'_>) -> Result<Vec<u8>>;
    /// Refuses, at `C_SignInit`, a scheme the key type allows but the service cannot
    /// make (`CKR_MECHANISM_PARAM_INVALID`): `C_Sign` cannot return that code.
    fn check_sign_scheme(&self, _key: &KeyVersion, _scheme: SignScheme) -> Result<()> {
        Ok(())
    }
    /// Verifies an HMAC tag (ECDSA/RSA/Ed25519 verification is local, see `ops`). The
    /// default asks for the tag and compares in constant time.
    fn mac_verify(&self, key: &KeyVersion, hash: HashAlg, data: &[u8], tag: &[u8]) -> Result<bool> {
        let want = self.sign(key, SignScheme::Hmac(hash), SignInput::Message(data))?;
        Ok(want.len() == tag.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(&want, tag).is_ok())
    }
    /// RSA-OAEP decryption with MGF1 of the same hash and an empty label.
    fn rsa_decrypt(
        &self,
        _key: &KeyVersion,
        _hash: HashAlg,
        _ciphertext: &[u8],
    ) -> Result<Vec<u8>> {
        Err(crate::core::error::err(CKR_MECHANISM_INVALID))
    }
    /// AES-GCM encryption with a service-chosen 96-bit IV and a 128-bit tag.
    fn gcm_encrypt(&self, _key: &KeyVersion, _plaintext: &[u8], _aad: &[u8]) -> Result<GcmSealed> {
        Err(crate::core::error::err(CKR_MECHANISM_INVALID))
    }
    /// AES-GCM decryption; a wrong tag is `CKR_ENCRYPTED_DATA_INVALID`.
    fn gcm_decrypt(
        &self,
        _key: &KeyVersion,
        _iv: &[u8],
        _ciphertext_and_tag: &[u8],
        _aad: &[u8],
    ) -> Result<Vec<u8>> {
        Err(crate::core::error::err(CKR_MECHANISM_INVALID))
    }
    /// Runs a [`Transform`] on `input`. The default: none is offered (see
    /// [`KeyService::transforms`]).
    fn transform(&self, _key: &KeyVersion, _t: Transform, _input: &[u8]) -> Result<Vec<u8>> {
        Err(crate::core::error::err(CKR_MECHANISM_INVALID))
    }
    /// The mechanisms [`KeyService::transform`] serves, each with the functions it
    /// serves them for (`CKF_WRAP | CKF_UNWRAP | CKF_ENCRYPT | CKF_DECRYPT`): offered by
    /// the token on top of its common set. The default: none.
    fn transforms(&self) -> Vec<(CK_MECHANISM_TYPE, CK_FLAGS)> {
        Vec::new()
    }
    /// Whether the key list is to be read again at the next search or login, whatever
    /// its age: a call met a key disabled, expired or deleted since it was listed.
    /// Reading it clears it. The default: never.
    fn take_stale(&self) -> bool {
        false
    }
    /// Creates a key (or a new version of `label`); the token lists keys afterwards to
    /// find the new version.
    fn generate(&self, _key: &NewKey) -> Result<()> {
        Err(crate::core::error::err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    /// Whether `C_GenerateKey*` can create keys here (for the mechanism list and
    /// `CKF_WRITE_PROTECTED`).
    fn can_generate(&self) -> bool {
        false
    }
    /// The mechanisms this service can serve at all (empty = every mechanism of
    /// `token.rs`; AWS KMS, for one, has no raw AES-GCM).
    fn mechanisms(&self) -> Vec<CK_MECHANISM_TYPE> {
        Vec::new()
    }
    /// The post-quantum mechanisms (PKCS#11 3.2) the service serves, on top of
    /// [`KeyService::mechanisms`]: `CKM_ML_DSA`, `CKM_SLH_DSA`, `CKM_ML_KEM` and their key
    /// generation mechanisms. The default: none.
    fn pqc_mechanisms(&self) -> Vec<CK_MECHANISM_TYPE> {
        Vec::new()
    }
    /// Whether an ML-DSA signature may have a context string (`CK_SIGN_ADDITIONAL_CONTEXT`);
    /// where not, a non-empty one is refused at `C_SignInit`. The default: no.
    fn sign_context(&self) -> bool {
        false
    }
    /// ML-KEM decapsulation: the 32-byte shared secret of `ciphertext` (FIPS 203's
    /// implicit rejection makes a pseudo-random one for a tampered ciphertext).
    fn decapsulate(
        &self,
        _key: &KeyVersion,
        _ciphertext: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        Err(crate::core::error::err(CKR_MECHANISM_INVALID))
    }
}

/// A service that could not be set up (a credentials file that does not parse, ...):
/// the slot exists and every call fails with `CKR_DEVICE_ERROR`, the cause logged once
/// at start and again at each login.
pub struct Unusable {
    pub slot: String,
    pub why: String,
}

impl Unusable {
    fn fail<T>(&self) -> Result<T> {
        Err(crate::core::error::Error::logged(
            CKR_DEVICE_ERROR,
            format!("slot {}: unusable: {}", self.slot, self.why),
        ))
    }
}

impl KeyService for Unusable {
    fn info(&self) -> ServiceInfo {
        ServiceInfo {
            manufacturer: "hsmux".into(),
            model: "unusable".into(),
            serial: "0".into(),
            location: self.why.clone(),
        }
    }
    fn login(&self) -> Result<()> {
        self.fail()
    }
    fn probe(&self) -> Result<()> {
        self.fail()
    }
    fn list_keys(&self) -> Result<Vec<KeyVersion>> {
        self.fail()
    }
    fn sign(&self, _: &KeyVersion, _: SignScheme, _: SignInput<'_>) -> Result<Vec<u8>> {
        self.fail()
    }
}

/// The token of a remote slot or replica named `name`, over the service its folder built
/// (`Err`: why it could not be built, e.g. a credentials file that does not parse; the token
/// is then [`Unusable`]). `gate`: the slot checks a `user_pin`, so nothing reaches the
/// service before `C_Login`. Nothing here touches the network: `C_Initialize` does not wait
/// on a service.
pub fn token<S: KeyService + 'static>(
    name: &str,
    built: std::result::Result<S, String>,
    common: &crate::config::RemoteCommon,
    hsm_only: bool,
    gate: bool,
) -> RemoteToken {
    match built {
        Ok(service) => RemoteToken::new(
            name,
            Arc::new(service),
            common.gcm_service_iv,
            hsm_only,
            gate,
        ),
        Err(why) => {
            log::error!("slot {name}: {why}; its calls fail until the config is fixed");
            let service = Arc::new(Unusable {
                slot: name.to_string(),
                why,
            });
            RemoteToken::new(name, service, false, false, gate)
        }
    }
}

#[cfg(test)]
mod tests;
