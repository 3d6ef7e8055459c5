//! The two Ed25519 variants of RFC 8032 that aws-lc implements and aws-lc-rs does not wrap:
//! Ed25519ctx and Ed25519ph (PKCS#11's CKM_EDDSA with a `CK_EDDSA_PARAMS`). An FFI edge
//! like `rsa_raw.rs`: fixed-size buffers in, one return code out, nothing kept.

use crate::core::error::{err, Error, Result};
use aws_lc_sys as sys;
use cryptoki_sys::*;

/// RFC 8032 §5.1: a context is at most 255 bytes; Ed25519ctx's must not be empty (aws-lc
/// refuses it, and RFC 8032 §8.3 says an empty context should use plain Ed25519).
fn check_context(context: &[u8], prehash: bool) -> Result<()> {
    if context.len() > 255 || (!prehash && context.is_empty()) {
        return Err(Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            format!(
                "Ed25519{}: a context of {} bytes (1..255 for ctx, 0..255 for ph)",
                if prehash { "ph" } else { "ctx" },
                context.len()
            ),
        ));
    }
    Ok(())
}

/// Ed25519ctx (`prehash` false) or Ed25519ph signature of `msg` with the 32-byte seed and
/// its public key.
pub fn sign(
    seed: &[u8; 32],
    public: &[u8; 32],
    prehash: bool,
    context: &[u8],
    msg: &[u8],
) -> Result<Vec<u8>> {
    check_context(context, prehash)?;
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
    check_context(context, prehash)?;
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
