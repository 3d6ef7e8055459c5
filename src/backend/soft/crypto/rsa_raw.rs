//! The two calls into aws-lc's C API that aws-lc-rs does not wrap: the RSA private
//! operation with PKCS#1 v1.5 type-1 padding over arbitrary bytes, and its public inverse.
//! PKCS#11's `CKM_RSA_PKCS` signs whatever the caller passes (pkcs11-tool and TLS 1.0-style
//! callers pass raw data, not a DigestInfo), so the soft token needs them. This is an FFI
//! edge, the one `unsafe` of the soft token, kept next to the RSA code that needs it; keys
//! enter as DER and nothing outlives a call.

use crate::core::error::{err, Result};
use aws_lc_sys as sys;
use cryptoki_sys::*;

struct Rsa(*mut sys::RSA);

impl Drop for Rsa {
    fn drop(&mut self) {
        // SAFETY: the pointer came from RSA_*_key_from_bytes and is freed once.
        unsafe { sys::RSA_free(self.0) }
    }
}

fn parse(der: &[u8], private: bool) -> Result<Rsa> {
    // SAFETY: aws-lc reads `der` within its length and returns NULL on any error.
    let p = unsafe {
        if private {
            sys::RSA_private_key_from_bytes(der.as_ptr(), der.len())
        } else {
            sys::RSA_public_key_from_bytes(der.as_ptr(), der.len())
        }
    };
    if p.is_null() {
        return Err(err(CKR_KEY_TYPE_INCONSISTENT));
    }
    Ok(Rsa(p))
}

/// PKCS#1 v1.5 signature (type-1 padding) of `data` with a PKCS#1 RSAPrivateKey.
pub fn rsa_pkcs1_sign_raw(private_der: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    let rsa = parse(private_der, true)?;
    // SAFETY: rsa is valid; RSA_size reads it.
    let size = unsafe { sys::RSA_size(rsa.0) } as usize;
    if data.len() + 11 > size {
        return Err(err(CKR_DATA_LEN_RANGE));
    }
    let mut out = vec![0u8; size];
    let mut n = 0usize;
    // SAFETY: out has `size` bytes, data is read within its length.
    let ok = unsafe {
        sys::RSA_sign_raw(
            rsa.0,
            &mut n,
            out.as_mut_ptr(),
            out.len(),
            data.as_ptr(),
            data.len(),
            sys::RSA_PKCS1_PADDING,
        )
    };
    if ok != 1 || n > out.len() {
        return Err(err(CKR_FUNCTION_FAILED));
    }
    out.truncate(n);
    Ok(out)
}

/// Recovers the data of a PKCS#1 v1.5 signature with a PKCS#1 RSAPublicKey; `None` when the
/// signature or its padding is invalid.
pub fn rsa_pkcs1_recover_raw(public_der: &[u8], sig: &[u8]) -> Result<Option<Vec<u8>>> {
    let rsa = parse(public_der, false)?;
    // SAFETY: as above.
    let size = unsafe { sys::RSA_size(rsa.0) } as usize;
    if sig.len() != size {
        return Err(err(CKR_SIGNATURE_LEN_RANGE));
    }
    let mut out = vec![0u8; size];
    let mut n = 0usize;
    // SAFETY: out has `size` bytes, sig is read within its length.
    let ok = unsafe {
        sys::RSA_verify_raw(
            rsa.0,
            &mut n,
            out.as_mut_ptr(),
            out.len(),
            sig.as_ptr(),
            sig.len(),
            sys::RSA_PKCS1_PADDING,
        )
    };
    if ok != 1 || n > out.len() {
        return Ok(None);
    }
    out.truncate(n);
    Ok(Some(out))
}
