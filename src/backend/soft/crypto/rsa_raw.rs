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

/// `RSA_sign_raw` or `RSA_verify_raw`: the private operation or its public inverse, with
/// the same C signature.
type RawOp = unsafe extern "C" fn(
    *mut sys::RSA,
    *mut usize,
    *mut u8,
    usize,
    *const u8,
    usize,
    std::os::raw::c_int,
) -> std::os::raw::c_int;

impl Rsa {
    /// The modulus length in bytes.
    fn size(&self) -> usize {
        // SAFETY: the key is valid; RSA_size reads it.
        unsafe { sys::RSA_size(self.0) as usize }
    }

    /// `op` on `input` with PKCS#1 v1.5 (type-1) padding: its output, `None` when aws-lc
    /// refuses (a bad signature or padding).
    fn raw(&self, op: RawOp, input: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; self.size()];
        let mut n = 0usize;
        // SAFETY: out has the modulus' length, input is read within its length.
        let ok = unsafe {
            op(
                self.0,
                &mut n,
                out.as_mut_ptr(),
                out.len(),
                input.as_ptr(),
                input.len(),
                sys::RSA_PKCS1_PADDING,
            )
        };
        if ok != 1 || n > out.len() {
            return None;
        }
        out.truncate(n);
        Some(out)
    }
}

/// PKCS#1 v1.5 signature (type-1 padding) of `data` with a PKCS#1 RSAPrivateKey.
pub fn rsa_pkcs1_sign_raw(private_der: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    let rsa = parse(private_der, true)?;
    if data.len() + 11 > rsa.size() {
        return Err(err(CKR_DATA_LEN_RANGE));
    }
    rsa.raw(sys::RSA_sign_raw, data)
        .ok_or_else(|| err(CKR_FUNCTION_FAILED))
}

/// Recovers the data of a PKCS#1 v1.5 signature with a PKCS#1 RSAPublicKey; `None` when the
/// signature or its padding is invalid.
pub fn rsa_pkcs1_recover_raw(public_der: &[u8], sig: &[u8]) -> Result<Option<Vec<u8>>> {
    let rsa = parse(public_der, false)?;
    if sig.len() != rsa.size() {
        return Err(err(CKR_SIGNATURE_LEN_RANGE));
    }
    Ok(rsa.raw(sys::RSA_verify_raw, sig))
}
