//! CKM_ECDH1_DERIVE: the Diffie-Hellman value Z on NIST curves (aws-lc) and on X25519 /
//! X448 (`okp`), then the key derivation function the `CK_ECDH1_DERIVE_PARAMS` names:
//! none (CKD_NULL), ANSI X9.63 (CKD_SHA*_KDF) or NIST SP 800-56C one-step
//! (CKD_SHA*_KDF_SP800), each with SHA-1 or SHA-2.

use super::der;
use super::keys::{self, Key};
use super::okp;
use crate::core::attr::{Attrs, AttrsExt};
use crate::core::error::{err, Error, Result};
use aws_lc_rs::{agreement, digest};
use cryptoki_sys::*;
use zeroize::Zeroizing;

/// The hash of a KDF, and whether it is SP 800-56C's (counter first) rather than X9.63's.
fn kdf_hash(kdf: CK_ULONG) -> Option<(&'static digest::Algorithm, bool)> {
    Some(match kdf {
        CKD_SHA1_KDF => (&digest::SHA1_FOR_LEGACY_USE_ONLY, false),
        CKD_SHA224_KDF => (&digest::SHA224, false),
        CKD_SHA256_KDF => (&digest::SHA256, false),
        CKD_SHA384_KDF => (&digest::SHA384, false),
        CKD_SHA512_KDF => (&digest::SHA512, false),
        CKD_SHA1_KDF_SP800 => (&digest::SHA1_FOR_LEGACY_USE_ONLY, true),
        CKD_SHA224_KDF_SP800 => (&digest::SHA224, true),
        CKD_SHA256_KDF_SP800 => (&digest::SHA256, true),
        CKD_SHA384_KDF_SP800 => (&digest::SHA384, true),
        CKD_SHA512_KDF_SP800 => (&digest::SHA512, true),
        _ => return None,
    })
}

/// `len` bytes of H(Z || counter || info) (X9.63) or H(counter || Z || info) (SP 800-56C),
/// counter a 32-bit big-endian number from 1.
fn kdf(
    alg: &'static digest::Algorithm,
    counter_first: bool,
    z: &[u8],
    info: &[u8],
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + alg.output_len()));
    let mut counter = 1u32;
    while out.len() < len {
        let mut h = digest::Context::new(alg);
        if counter_first {
            h.update(&counter.to_be_bytes());
            h.update(z);
        } else {
            h.update(z);
            h.update(&counter.to_be_bytes());
        }
        h.update(info);
        out.extend_from_slice(h.finish().as_ref());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// The shared secret of CKM_ECDH1_DERIVE with `base`, before `finish_derived` sizes it.
pub fn derive(
    base: &Key,
    kdf_type: CK_ULONG,
    shared_data: &[u8],
    public_data: &[u8],
    template: &Attrs,
) -> Result<Zeroizing<Vec<u8>>> {
    let z = match base {
        Key::EcPrivate { curve, scalar, .. } => {
            let peer =
                der::ec_point(public_data, *curve).map_err(|_| err(CKR_MECHANISM_PARAM_INVALID))?;
            let alg = keys::ecdh_alg(*curve);
            let me = agreement::PrivateKey::from_private_key(alg, scalar)
                .map_err(|_| err(CKR_GENERAL_ERROR))?;
            agreement::agree(
                &me,
                agreement::UnparsedPublicKey::new(alg, &peer),
                err(CKR_MECHANISM_PARAM_INVALID),
                |s| Ok(Zeroizing::new(s.to_vec())),
            )?
        }
        Key::XPrivate { curve, scalar } => {
            let peer =
                der::ec_point(public_data, *curve).map_err(|_| err(CKR_MECHANISM_PARAM_INVALID))?;
            okp::x_agree(*curve, scalar, &peer)?
        }
        _ => return Err(err(CKR_KEY_TYPE_INCONSISTENT)),
    };
    if kdf_type == CKD_NULL {
        if !shared_data.is_empty() {
            return Err(Error::logged(
                CKR_MECHANISM_PARAM_INVALID,
                "ECDH1: CKD_NULL takes no shared data",
            ));
        }
        return Ok(z);
    }
    let (alg, counter_first) = kdf_hash(kdf_type).ok_or_else(|| {
        Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            format!("ECDH1: the KDF 0x{kdf_type:x} is not offered (CKD_NULL, CKD_SHA*_KDF, CKD_SHA*_KDF_SP800 are)"),
        )
    })?;
    // The template says how long the key is; without CKA_VALUE_LEN, one hash output (an
    // AES key takes 32 bytes of it at most in `finish_derived`).
    let len = template
        .ulong(CKA_VALUE_LEN)
        .map_or(alg.output_len(), |n| n as usize);
    if len == 0 || len > 1024 {
        return Err(err(CKR_TEMPLATE_INCONSISTENT));
    }
    Ok(kdf(alg, counter_first, &z, shared_data, len))
}
