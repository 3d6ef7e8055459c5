//! The calls into aws-lc's C API for post-quantum keys that aws-lc-rs does not wrap: ML-DSA
//! signing and verification with a FIPS 204 context string (aws-lc-rs signs with the empty
//! one only), and key generation from a seed (ML-DSA's 32-byte ξ, ML-KEM's 64-byte d‖z),
//! which PKCS#11 3.2 keeps as CKA_SEED. Like `rsa_raw.rs`, an FFI edge kept next to the code
//! that needs it: keys enter and leave as bytes and nothing outlives a call.

use crate::core::error::{err, Error, Result};
use aws_lc_sys as sys;
use cryptoki_sys::*;
use std::ptr::null_mut;
use zeroize::Zeroizing;

/// An `EVP_PKEY` freed on drop.
struct Pkey(*mut sys::EVP_PKEY);

impl Drop for Pkey {
    fn drop(&mut self) {
        // SAFETY: the pointer came from an aws-lc constructor and is freed once.
        unsafe { sys::EVP_PKEY_free(self.0) }
    }
}

impl Pkey {
    fn new(p: *mut sys::EVP_PKEY, what: &'static str) -> Result<Pkey> {
        if p.is_null() {
            return Err(Error::logged(CKR_ATTRIBUTE_VALUE_INVALID, what));
        }
        Ok(Pkey(p))
    }

    /// The raw private (expanded) or public key.
    fn raw(&self, private: bool) -> Result<Zeroizing<Vec<u8>>> {
        let get = if private {
            sys::EVP_PKEY_get_raw_private_key
        } else {
            sys::EVP_PKEY_get_raw_public_key
        };
        let mut n = 0usize;
        // SAFETY: a NULL output asks for the length; then `out` has that many bytes.
        unsafe {
            if get(self.0, null_mut(), &mut n) != 1 {
                return Err(err(CKR_FUNCTION_FAILED));
            }
            let mut out = Zeroizing::new(vec![0u8; n]);
            if get(self.0, out.as_mut_ptr(), &mut n) != 1 || n > out.len() {
                return Err(err(CKR_FUNCTION_FAILED));
            }
            out.truncate(n);
            Ok(out)
        }
    }
}

/// An `EVP_MD_CTX` freed on drop.
struct MdCtx(*mut sys::EVP_MD_CTX);

impl Drop for MdCtx {
    fn drop(&mut self) {
        // SAFETY: from EVP_MD_CTX_new, freed once (it frees the EVP_PKEY_CTX inside).
        unsafe { sys::EVP_MD_CTX_free(self.0) }
    }
}

/// An ML-DSA key pair from its seed ξ: (expanded private key, public key).
pub fn mldsa_from_seed(nid: i32, seed: &[u8]) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    // SAFETY: aws-lc reads `seed` within its length (a 32-byte seed is taken as ξ).
    let k = Pkey::new(
        unsafe { sys::EVP_PKEY_pqdsa_new_raw_private_key(nid, seed.as_ptr(), seed.len()) },
        "ML-DSA seed rejected",
    )?;
    Ok((k.raw(true)?, k.raw(false)?.to_vec()))
}

/// An ML-KEM key pair from its seed d‖z (FIPS 203 ML-KEM.KeyGen_internal): (expanded
/// decapsulation key, encapsulation key).
pub fn mlkem_from_seed(nid: i32, seed: &[u8]) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    // SAFETY: the context is freed below; aws-lc reads `seed` within `len` and writes the
    // new key's pointer.
    unsafe {
        let ctx = sys::EVP_PKEY_CTX_new_id(sys::EVP_PKEY_KEM, null_mut());
        if ctx.is_null() {
            return Err(err(CKR_HOST_MEMORY));
        }
        let mut pkey = null_mut();
        let mut len = seed.len();
        let ok = sys::EVP_PKEY_CTX_kem_set_params(ctx, nid) == 1
            && sys::EVP_PKEY_keygen_init(ctx) == 1
            && sys::EVP_PKEY_keygen_deterministic(ctx, &mut pkey, seed.as_ptr(), &mut len) == 1;
        sys::EVP_PKEY_CTX_free(ctx);
        if !ok {
            if !pkey.is_null() {
                sys::EVP_PKEY_free(pkey);
            }
            return Err(Error::logged(
                CKR_ATTRIBUTE_VALUE_INVALID,
                "ML-KEM seed rejected",
            ));
        }
        let k = Pkey::new(pkey, "ML-KEM seed rejected")?;
        Ok((k.raw(true)?, k.raw(false)?.to_vec()))
    }
}

/// Starts a one-shot ML-DSA signature or verification with `key` and `context`.
fn start(key: &Pkey, context: &[u8], sign: bool) -> Result<MdCtx> {
    // SAFETY: the digest context is owned by the returned MdCtx; `pctx` belongs to it and
    // lives as long; `context` is read within its length.
    unsafe {
        let md = MdCtx(sys::EVP_MD_CTX_new());
        if md.0.is_null() {
            return Err(err(CKR_HOST_MEMORY));
        }
        let mut pctx = null_mut();
        let init = if sign {
            sys::EVP_DigestSignInit(md.0, &mut pctx, std::ptr::null(), null_mut(), key.0)
        } else {
            sys::EVP_DigestVerifyInit(md.0, &mut pctx, std::ptr::null(), null_mut(), key.0)
        };
        if init != 1 {
            return Err(err(CKR_KEY_TYPE_INCONSISTENT));
        }
        if !context.is_empty()
            && sys::EVP_PKEY_CTX_set_signature_context(pctx, context.as_ptr(), context.len()) != 1
        {
            return Err(Error::logged(
                CKR_MECHANISM_PARAM_INVALID,
                "ML-DSA context string refused",
            ));
        }
        Ok(md)
    }
}

/// A parsed ML-DSA key, kept with its object so that a signature does not expand the key
/// again.
pub struct MlDsaKey(Pkey);

// SAFETY: an EVP_PKEY is not changed after it is made; aws-lc allows concurrent signing and
// verifying with one key (aws-lc-rs shares its keys across threads the same way).
unsafe impl Send for MlDsaKey {}
unsafe impl Sync for MlDsaKey {}

impl MlDsaKey {
    /// A private key from its seed or expanded form.
    pub fn private(nid: i32, bytes: &[u8]) -> Result<MlDsaKey> {
        // SAFETY: aws-lc reads `bytes` within its length.
        let p =
            unsafe { sys::EVP_PKEY_pqdsa_new_raw_private_key(nid, bytes.as_ptr(), bytes.len()) };
        Ok(MlDsaKey(Pkey::new(p, "ML-DSA private key rejected")?))
    }

    pub fn public(nid: i32, bytes: &[u8]) -> Result<MlDsaKey> {
        // SAFETY: aws-lc reads `bytes` within its length.
        let p = unsafe { sys::EVP_PKEY_pqdsa_new_raw_public_key(nid, bytes.as_ptr(), bytes.len()) };
        Ok(MlDsaKey(Pkey::new(p, "ML-DSA public key rejected")?))
    }

    /// ML-DSA.Sign (FIPS 204, hedged) of `msg` with context string `context`.
    pub fn sign(&self, context: &[u8], msg: &[u8]) -> Result<Vec<u8>> {
        let md = start(&self.0, context, true)?;
        let mut n = 0usize;
        // SAFETY: a NULL signature asks for its length; then `sig` has that many bytes and
        // `msg` is read within its length.
        unsafe {
            if sys::EVP_DigestSign(md.0, null_mut(), &mut n, msg.as_ptr(), msg.len()) != 1 {
                return Err(err(CKR_FUNCTION_FAILED));
            }
            let mut sig = vec![0u8; n];
            if sys::EVP_DigestSign(md.0, sig.as_mut_ptr(), &mut n, msg.as_ptr(), msg.len()) != 1
                || n > sig.len()
            {
                return Err(err(CKR_FUNCTION_FAILED));
            }
            sig.truncate(n);
            Ok(sig)
        }
    }

    /// ML-DSA.Verify of `sig` over `msg` with `context`: false when it does not verify.
    pub fn verify(&self, context: &[u8], msg: &[u8], sig: &[u8]) -> Result<bool> {
        let md = start(&self.0, context, false)?;
        // SAFETY: both buffers are read within their lengths.
        Ok(
            unsafe {
                sys::EVP_DigestVerify(md.0, sig.as_ptr(), sig.len(), msg.as_ptr(), msg.len())
            } == 1,
        )
    }
}
