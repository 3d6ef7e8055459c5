//! The two Ed25519 variants of RFC 8032 that aws-lc implements and aws-lc-rs does not wrap:
//! Ed25519ctx and Ed25519ph (PKCS#11's CKM_EDDSA with a `CK_EDDSA_PARAMS`). An FFI edge
//! like `rsa_raw.rs`: fixed-size buffers in, one return code out, nothing kept. The caller
//! has checked the context's length (`okp::EdScheme::check`).

use crate::core::error::{err, Result};
use aws_lc_sys as sys;
use cryptoki_sys::*;

/// Ed25519ctx (`prehash` false) or Ed25519ph signature of `msg` with the 32-byte seed and
/// its public key.
pub fn sign(
    seed: &[u8; 32],
    public: &[u8; 32],
    prehash: bool,
    context: &[u8],
    msg: &[u8],
) -> Result<Vec<u8>> {
    let mut private = zeroize::Zeroizing::new([0u8; 64]);
    private[..32].copy_from_slice(seed);
    private[32..].copy_from_slice(public);
    let mut sig = [0u8; 64];
    let f = if prehash {
        sys::ED25519ph_sign
    } else {
        sys::ED25519ctx_sign
    };
    // SAFETY: every buffer has the size aws-lc reads or writes (64-byte signature and
    // private key), and the message and context are read within their lengths.
    let ok = unsafe {
        f(
            sig.as_mut_ptr(),
            msg.as_ptr(),
            msg.len(),
            private.as_ptr(),
            context.as_ptr(),
            context.len(),
        )
    };
    if ok != 1 {
        return Err(err(CKR_FUNCTION_FAILED));
    }
    Ok(sig.to_vec())
}

/// Checks an Ed25519ctx or Ed25519ph signature.
pub fn verify(
    public: &[u8; 32],
    prehash: bool,
    context: &[u8],
    msg: &[u8],
    sig: &[u8; 64],
) -> Result<()> {
    let f = if prehash {
        sys::ED25519ph_verify
    } else {
        sys::ED25519ctx_verify
    };
    // SAFETY: fixed-size signature and key; message and context read within their lengths.
    let ok = unsafe {
        f(
            msg.as_ptr(),
            msg.len(),
            sig.as_ptr(),
            public.as_ptr(),
            context.as_ptr(),
            context.len(),
        )
    };
    if ok == 1 {
        Ok(())
    } else {
        Err(err(CKR_SIGNATURE_INVALID))
    }
}
