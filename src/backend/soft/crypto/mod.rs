//! The software token's cryptography (aws-lc-rs): key material parsed from object
//! attributes, key generation, and every mechanism the soft token lists.
//!
//! INTERFACE CONTRACT (used by `backend/soft/mod.rs`; keep these signatures):
//! - attribute maps are `core::attr::Attrs` (values exactly as PKCS#11 lays them out);
//! - errors are `core::error::Error` carrying the spec's return value;
//! - the caller has already checked the key's usage flag (CKA_SIGN, CKA_ENCRYPT, ...) and
//!   CKA_ALLOWED_MECHANISMS; this module checks mechanism vs key type
//!   (`CKR_KEY_TYPE_INCONSISTENT`), parameters (`CKR_MECHANISM_PARAM_INVALID`), sizes
//!   (`CKR_KEY_SIZE_RANGE`, `CKR_DATA_LEN_RANGE`, `CKR_ENCRYPTED_DATA_LEN_RANGE`, ...).

use crate::core::attr::Attrs;
use crate::core::error::{err, Result};
use crate::core::mechanism::Mechanism;
use crate::core::op::{Cipher, Signer, Verifier};
use cryptoki_sys::*;
use std::sync::Arc;

/// A key parsed from an object's attributes, ready for use; cached on the object so that
/// an operation does not parse it again.
pub struct Key {
    _private: (),
}

impl Key {
    /// Parses the key held by an object (by CKA_CLASS and CKA_KEY_TYPE).
    pub fn from_attrs(_attrs: &Attrs) -> Result<Key> {
        Err(err(CKR_KEY_TYPE_INCONSISTENT))
    }
}

/// The mechanisms of the soft token with their info, in the order C_GetMechanismList gives.
pub fn mechanisms() -> &'static [(CK_MECHANISM_TYPE, CK_MECHANISM_INFO)] {
    &[]
}

pub fn encrypt_init(_mech: &Mechanism, _key: &Arc<Key>) -> Result<Box<dyn Cipher>> {
    Err(err(CKR_MECHANISM_INVALID))
}
pub fn decrypt_init(_mech: &Mechanism, _key: &Arc<Key>) -> Result<Box<dyn Cipher>> {
    Err(err(CKR_MECHANISM_INVALID))
}
pub fn sign_init(_mech: &Mechanism, _key: &Arc<Key>) -> Result<Box<dyn Signer>> {
    Err(err(CKR_MECHANISM_INVALID))
}
pub fn verify_init(_mech: &Mechanism, _key: &Arc<Key>) -> Result<Box<dyn Verifier>> {
    Err(err(CKR_MECHANISM_INVALID))
}
pub fn digest_init(_mech: &Mechanism) -> Result<Box<dyn Signer>> {
    Err(err(CKR_MECHANISM_INVALID))
}

/// C_GenerateKey: `template` is the new object's attributes so far (consumer template plus
/// defaults, CKA_CLASS/CKA_KEY_TYPE set). Returns the attributes the mechanism sets
/// (CKA_VALUE, CKA_VALUE_LEN, CKA_KEY_TYPE).
pub fn generate_key(_mech: &Mechanism, _template: &Attrs) -> Result<Attrs> {
    Err(err(CKR_MECHANISM_INVALID))
}

/// C_GenerateKeyPair: returns (public attributes, private attributes) the mechanism sets
/// (CKA_KEY_TYPE, CKA_MODULUS/CKA_PUBLIC_EXPONENT/private CRT values, CKA_EC_POINT/CKA_VALUE,
/// CKA_EC_PARAMS on both, ...).
pub fn generate_key_pair(_mech: &Mechanism, _public: &Attrs, _private: &Attrs) -> Result<(Attrs, Attrs)> {
    Err(err(CKR_MECHANISM_INVALID))
}

/// C_CreateObject / C_UnwrapKey of a key: checks the key values in `attrs` (sizes, curve,
/// point on curve, RSA consistency) and returns the attributes the token derives from them
/// (CKA_VALUE_LEN of a secret key, CKA_MODULUS_BITS of an RSA public key, ...).
pub fn complete_import(_attrs: &Attrs) -> Result<Attrs> {
    Err(err(CKR_TEMPLATE_INCONSISTENT))
}

/// C_WrapKey: wraps the key whose attributes are `target` (a secret key's CKA_VALUE, or a
/// private key as PKCS#8) with `wrapping`.
pub fn wrap(_mech: &Mechanism, _wrapping: &Arc<Key>, _target: &Attrs) -> Result<Vec<u8>> {
    Err(err(CKR_MECHANISM_INVALID))
}

/// C_UnwrapKey: returns the value attributes of the unwrapped key (for a secret key
/// CKA_VALUE; for a private key the attributes decoded from PKCS#8, incl. CKA_KEY_TYPE),
/// given the new object's template so far (CKA_CLASS, CKA_KEY_TYPE if known, CKA_VALUE_LEN).
pub fn unwrap(_mech: &Mechanism, _unwrapping: &Arc<Key>, _wrapped: &[u8], _template: &Attrs) -> Result<Attrs> {
    Err(err(CKR_MECHANISM_INVALID))
}

/// C_DeriveKey: returns the value attributes of the derived key (CKA_VALUE, CKA_VALUE_LEN,
/// CKA_KEY_TYPE if the mechanism fixes it) given the base key and the new object's template.
pub fn derive(_mech: &Mechanism, _base: &Arc<Key>, _base_attrs: &Attrs, _template: &Attrs) -> Result<Attrs> {
    Err(err(CKR_MECHANISM_INVALID))
}

/// Fills `out` from the system's CSPRNG.
pub fn random(out: &mut [u8]) -> Result<()> {
    aws_lc_rs::rand::fill(out).map_err(|_| err(CKR_FUNCTION_FAILED))
}
