//! The software token's cryptography (aws-lc-rs): key material parsed from object
//! attributes, key generation, and every mechanism the soft token lists.
//!
//! The caller has checked the key's usage flag (CKA_SIGN, CKA_ENCRYPT, ...) and
//! CKA_ALLOWED_MECHANISMS; this module checks mechanism against key type
//! (`CKR_KEY_TYPE_INCONSISTENT`), parameters (`CKR_MECHANISM_PARAM_INVALID`) and sizes.

mod cipher;
pub(crate) mod der;
mod des;
mod ecdh;
// aws-lc's C API for Ed25519ctx / Ed25519ph, which aws-lc-rs does not wrap.
#[allow(unsafe_code)]
mod ed25519_raw;
mod gcm;
pub(crate) mod kbkdf;
mod keys;
mod mechs;
mod okp;
pub(crate) mod pqc;
// aws-lc's C API for what aws-lc-rs does not wrap: ML-DSA with a context string, seeded
// PQC key generation.
#[allow(unsafe_code)]
mod pqc_raw;
// aws-lc's C API, for the RSA aws-lc-rs does not wrap: PKCS#1 v1.5 over raw data, and
// every operation on keys under 2048 bits.
#[allow(unsafe_code)]
mod rsa_raw;
mod sign;
mod wrap;

pub use cipher::{decrypt_init, encrypt_init};
pub use keys::{complete_import, Key};
pub use sign::digest_init;
pub use wrap::{derive, finish_derived, unwrap, wrap};

use self::der::Curve;
use crate::core::attr::{Attrs, AttrsExt};
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{MechParam, Mechanism};
use crate::core::op::{Signer, Verifier};
use cryptoki_sys::*;
use zeroize::Zeroizing;

/// The mechanisms of the soft token with their info, in the order C_GetMechanismList gives.
pub fn mechanisms() -> &'static [(CK_MECHANISM_TYPE, CK_MECHANISM_INFO)] {
    mechs::MECHANISMS
}

/// `CKR_MECHANISM_PARAM_INVALID`, with the reason in the log.
fn param_invalid(why: &'static str) -> Error {
    Error::logged(CKR_MECHANISM_PARAM_INVALID, why)
}

fn no_param(mech: &Mechanism) -> Result<()> {
    match mech.param {
        MechParam::None => Ok(()),
        _ => Err(err(CKR_MECHANISM_PARAM_INVALID)),
    }
}

/// C_SignInit: ML-DSA (`pqc.rs`) or the classic schemes (`sign.rs`).
pub fn sign_init(mech: &Mechanism, key: &std::sync::Arc<Key>) -> Result<Box<dyn Signer>> {
    if mech.mech == CKM_ML_DSA {
        return pqc::sign_init(mech, key);
    }
    sign::sign_init(mech, key)
}

/// C_VerifyInit: as [`sign_init`].
pub fn verify_init(mech: &Mechanism, key: &std::sync::Arc<Key>) -> Result<Box<dyn Verifier>> {
    if mech.mech == CKM_ML_DSA {
        return pqc::verify_init(mech, key);
    }
    sign::verify_init(mech, key)
}

/// C_GenerateKey: returns the attributes the mechanism sets (CKA_VALUE, CKA_VALUE_LEN).
pub fn generate_key(mech: &Mechanism, template: &Attrs) -> Result<Attrs> {
    no_param(mech)?;
    let len = match (mech.mech, template.ulong(CKA_VALUE_LEN)) {
        (CKM_AES_KEY_GEN, Some(n)) if [16, 24, 32].contains(&n) => n,
        (CKM_AES_KEY_GEN, Some(_)) => {
            return Err(Error::logged(
                CKR_KEY_SIZE_RANGE,
                "AES keys are 16, 24 or 32 bytes",
            ))
        }
        (CKM_AES_KEY_GEN, None) => {
            return Err(Error::logged(
                CKR_TEMPLATE_INCOMPLETE,
                "CKM_AES_KEY_GEN needs CKA_VALUE_LEN",
            ))
        }
        (CKM_GENERIC_SECRET_KEY_GEN, Some(n)) if (1..=512).contains(&n) => n,
        (CKM_GENERIC_SECRET_KEY_GEN, Some(_)) => return Err(err(CKR_KEY_SIZE_RANGE)),
        (CKM_GENERIC_SECRET_KEY_GEN, None) => {
            return Err(Error::logged(
                CKR_TEMPLATE_INCOMPLETE,
                "generic secret needs CKA_VALUE_LEN",
            ))
        }
        (CKM_DES_KEY_GEN, None | Some(8)) => 8,
        (CKM_DES3_KEY_GEN, None | Some(24)) => 24,
        (CKM_DES_KEY_GEN | CKM_DES3_KEY_GEN, Some(_)) => {
            return Err(Error::logged(
                CKR_TEMPLATE_INCONSISTENT,
                "DES keys are 8 bytes, DES3 keys 24",
            ))
        }
        (CKM_SHA_1_KEY_GEN, n) => n.unwrap_or(20),
        (CKM_SHA224_KEY_GEN, n) => n.unwrap_or(28),
        (CKM_SHA256_KEY_GEN, n) => n.unwrap_or(32),
        (CKM_SHA384_KEY_GEN, n) => n.unwrap_or(48),
        (CKM_SHA512_KEY_GEN, n) => n.unwrap_or(64),
        _ => return Err(err(CKR_MECHANISM_INVALID)),
    };
    if len == 0 || len > 512 {
        return Err(err(CKR_KEY_SIZE_RANGE));
    }
    let mut value = Zeroizing::new(vec![0u8; len as usize]);
    random(&mut value)?;
    if matches!(mech.mech, CKM_DES_KEY_GEN | CKM_DES3_KEY_GEN) {
        value = des::with_odd_parity(value);
    }
    let mut a = Attrs::new();
    a.insert(CKA_VALUE, value.to_vec());
    a.set_ulong(CKA_VALUE_LEN, len);
    Ok(a)
}

/// C_GenerateKeyPair: returns (public attributes, private attributes) the mechanism sets.
pub fn generate_key_pair(
    mech: &Mechanism,
    public: &Attrs,
    private: &Attrs,
) -> Result<(Attrs, Attrs)> {
    no_param(mech)?;
    if matches!(mech.mech, CKM_ML_DSA_KEY_PAIR_GEN | CKM_ML_KEM_KEY_PAIR_GEN) {
        return pqc::generate_key_pair(mech.mech, public, private);
    }
    let (mut p, mut s) = (Attrs::new(), Attrs::new());
    match mech.mech {
        CKM_RSA_PKCS_KEY_PAIR_GEN => {
            let bits = public.ulong(CKA_MODULUS_BITS).ok_or_else(|| {
                Error::logged(
                    CKR_TEMPLATE_INCOMPLETE,
                    "RSA key generation needs CKA_MODULUS_BITS",
                )
            })?;
            let parts = keys::generate_rsa(bits, public.bytes(CKA_PUBLIC_EXPONENT))?;
            p.insert(CKA_MODULUS, parts.n.clone());
            p.insert(CKA_PUBLIC_EXPONENT, parts.e.clone());
            s = keys::rsa_private_attrs(&parts);
        }
        CKM_EC_KEY_PAIR_GEN | CKM_EC_EDWARDS_KEY_PAIR_GEN | CKM_EC_MONTGOMERY_KEY_PAIR_GEN => {
            let params = public.bytes(CKA_EC_PARAMS).ok_or_else(|| {
                Error::logged(
                    CKR_TEMPLATE_INCOMPLETE,
                    "EC key generation needs CKA_EC_PARAMS",
                )
            })?;
            let curve = Curve::from_params(params).map_err(|e| {
                if e.rv() == CKR_CURVE_NOT_SUPPORTED {
                    e
                } else {
                    err(CKR_ATTRIBUTE_VALUE_INVALID)
                }
            })?;
            let wanted = match curve.key_type() {
                CKK_EC_EDWARDS => CKM_EC_EDWARDS_KEY_PAIR_GEN,
                CKK_EC_MONTGOMERY => CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
                _ => CKM_EC_KEY_PAIR_GEN,
            };
            if wanted != mech.mech {
                return Err(Error::logged(
                    CKR_TEMPLATE_INCONSISTENT,
                    "curve does not match the key pair mechanism",
                ));
            }
            let (private, point) = keys::generate_ec(curve)?;
            p.insert(CKA_EC_PARAMS, params.to_vec());
            p.insert(CKA_EC_POINT, der::octet_string(&point));
            s.insert(CKA_EC_PARAMS, params.to_vec());
            s.insert(CKA_VALUE, private.to_vec());
        }
        _ => return Err(err(CKR_MECHANISM_INVALID)),
    }
    Ok((p, s))
}

/// Fills `out` from the system's CSPRNG.
pub fn random(out: &mut [u8]) -> Result<()> {
    aws_lc_rs::rand::fill(out).map_err(|_| err(CKR_FUNCTION_FAILED))
}

#[cfg(test)]
mod tests;
