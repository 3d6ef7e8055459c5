//! The calls into aws-lc's C API that aws-lc-rs does not wrap: the RSA private
//! operation with PKCS#1 v1.5 type-1 padding over arbitrary bytes, and its public inverse
//! (PKCS#11's `CKM_RSA_PKCS` signs whatever the caller passes: pkcs11-tool and TLS
//! 1.0-style callers pass raw data, not a DigestInfo); and every RSA operation on keys of
//! 1024 to 2047 bits (`legacy` below), which aws-lc-rs refuses to load (its RSA types take
//! 2048 to 8192 bits) while legacy systems and test suites still use them. This is an FFI
//! edge, kept next to the RSA code that needs it; keys enter as DER and nothing outlives a
//! call.

use crate::core::error::{err, Error, Result};
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

/// aws-lc's digest of a PKCS#11 hash mechanism, with its NID.
fn md(hash: CK_MECHANISM_TYPE) -> Result<(*const sys::EVP_MD, std::os::raw::c_int)> {
    // SAFETY: the EVP_sha* functions return static tables.
    unsafe {
        Ok(match hash {
            CKM_SHA_1 => (sys::EVP_sha1(), sys::NID_sha1),
            CKM_SHA224 => (sys::EVP_sha224(), sys::NID_sha224),
            CKM_SHA256 => (sys::EVP_sha256(), sys::NID_sha256),
            CKM_SHA384 => (sys::EVP_sha384(), sys::NID_sha384),
            CKM_SHA512 => (sys::EVP_sha512(), sys::NID_sha512),
            _ => return Err(err(CKR_MECHANISM_PARAM_INVALID)),
        })
    }
}

/// A key of 1024 to 2047 bits is handled here, not by aws-lc-rs.
pub fn legacy(modulus_len: usize) -> bool {
    modulus_len < 256
}

/// The smallest modulus the soft token takes, in bits.
pub const MIN_BITS: usize = 1024;

/// A new RSA key of `bits` with public exponent 65537, as a PKCS#1 RSAPrivateKey.
pub fn generate(bits: u32) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    // SAFETY: every object made here is freed before return; the DER aws-lc allocates is
    // copied, wiped and freed.
    unsafe {
        let rsa = Rsa(sys::RSA_new());
        let e = sys::BN_new();
        if rsa.0.is_null() || e.is_null() {
            sys::BN_free(e);
            return Err(err(CKR_HOST_MEMORY));
        }
        let ok = sys::BN_set_word(e, 65537) == 1
            && sys::RSA_generate_key_ex(rsa.0, bits as _, e, std::ptr::null_mut()) == 1;
        sys::BN_free(e);
        if !ok {
            return Err(err(CKR_FUNCTION_FAILED));
        }
        let (mut p, mut n) = (std::ptr::null_mut(), 0usize);
        if sys::RSA_private_key_to_bytes(&mut p, &mut n, rsa.0) != 1 || p.is_null() {
            return Err(err(CKR_FUNCTION_FAILED));
        }
        let der = zeroize::Zeroizing::new(std::slice::from_raw_parts(p, n).to_vec());
        sys::OPENSSL_cleanse(p.cast(), n);
        sys::OPENSSL_free(p.cast());
        Ok(der)
    }
}

/// Checks a legacy private key (aws-lc's RSA_check_key: the CRT values agree, n = pq).
pub fn check_private(der: &[u8]) -> Result<()> {
    let rsa = parse(der, true)?;
    // SAFETY: the key is valid; RSA_check_key only reads it.
    if unsafe { sys::RSA_check_key(rsa.0) } != 1 {
        return Err(Error::logged(
            CKR_ATTRIBUTE_VALUE_INVALID,
            "RSA private key rejected: inconsistent values",
        ));
    }
    Ok(())
}

/// A PKCS#1 v1.5 (`pss` None) or PSS signature (MGF1 with the same hash, `pss` the salt
/// length) of `digest` with a PKCS#1 RSAPrivateKey.
pub fn sign_digest(
    der: &[u8],
    hash: CK_MECHANISM_TYPE,
    digest: &[u8],
    pss: Option<u16>,
) -> Result<Vec<u8>> {
    let rsa = parse(der, true)?;
    let (md, nid) = md(hash)?;
    let mut out = vec![0u8; rsa.size()];
    // SAFETY: out has the modulus' length, the digest is read within its length.
    let n = unsafe {
        match pss {
            None => {
                let mut n: std::os::raw::c_uint = 0;
                let ok = sys::RSA_sign(
                    nid,
                    digest.as_ptr(),
                    digest.len(),
                    out.as_mut_ptr(),
                    &mut n,
                    rsa.0,
                );
                (ok == 1).then_some(n as usize)
            }
            Some(salt) => {
                let mut n = 0usize;
                let ok = sys::RSA_sign_pss_mgf1(
                    rsa.0,
                    &mut n,
                    out.as_mut_ptr(),
                    out.len(),
                    digest.as_ptr(),
                    digest.len(),
                    md,
                    md,
                    salt as _,
                );
                (ok == 1).then_some(n)
            }
        }
    };
    match n {
        Some(n) if n <= out.len() => {
            out.truncate(n);
            Ok(out)
        }
        _ => Err(err(CKR_FUNCTION_FAILED)),
    }
}

/// Verifies a signature [`sign_digest`] makes, with a PKCS#1 RSAPublicKey.
pub fn verify_digest(
    der: &[u8],
    hash: CK_MECHANISM_TYPE,
    digest: &[u8],
    pss: Option<u16>,
    sig: &[u8],
) -> Result<bool> {
    let rsa = parse(der, false)?;
    let (md, nid) = md(hash)?;
    // SAFETY: digest and signature are read within their lengths.
    let ok = unsafe {
        match pss {
            None => sys::RSA_verify(
                nid,
                digest.as_ptr(),
                digest.len(),
                sig.as_ptr(),
                sig.len(),
                rsa.0,
            ),
            Some(salt) => sys::RSA_verify_pss_mgf1(
                rsa.0,
                digest.as_ptr(),
                digest.len(),
                md,
                md,
                salt as _,
                sig.as_ptr(),
                sig.len(),
            ),
        }
    };
    // A failed verification leaves an error on aws-lc's thread queue; drop it.
    // SAFETY: clears this thread's error queue only.
    unsafe { sys::ERR_clear_error() };
    Ok(ok == 1)
}

/// An EVP_PKEY over one RSA key and a context on it, freed together.
struct PkeyCtx(*mut sys::EVP_PKEY, *mut sys::EVP_PKEY_CTX);

impl Drop for PkeyCtx {
    fn drop(&mut self) {
        // SAFETY: both came from their constructors (or are NULL, which the frees take).
        unsafe {
            sys::EVP_PKEY_CTX_free(self.1);
            sys::EVP_PKEY_free(self.0);
        }
    }
}

/// RSA encryption (`encrypt`) or decryption with PKCS#1 v1.5 padding (`oaep` None) or
/// OAEP (MGF1 with the same hash, and the label).
pub fn crypt(
    der: &[u8],
    encrypt: bool,
    oaep: Option<(CK_MECHANISM_TYPE, &[u8])>,
    input: &[u8],
) -> Result<Vec<u8>> {
    let rsa = parse(der, !encrypt)?;
    let mut out = vec![0u8; rsa.size()];
    let bad = if encrypt {
        CKR_DATA_LEN_RANGE
    } else {
        CKR_ENCRYPTED_DATA_INVALID
    };
    // SAFETY: the EVP_PKEY holds its own reference to the key; the label is handed to
    // aws-lc in memory it allocated (set0 takes it); out has the modulus' length.
    unsafe {
        let pk = sys::EVP_PKEY_new();
        let mut c = PkeyCtx(pk, std::ptr::null_mut());
        if pk.is_null() || sys::EVP_PKEY_set1_RSA(pk, rsa.0) != 1 {
            return Err(err(CKR_HOST_MEMORY));
        }
        c.1 = sys::EVP_PKEY_CTX_new(pk, std::ptr::null_mut());
        let init = if encrypt {
            sys::EVP_PKEY_encrypt_init(c.1)
        } else {
            sys::EVP_PKEY_decrypt_init(c.1)
        };
        let pad = if oaep.is_some() {
            sys::RSA_PKCS1_OAEP_PADDING
        } else {
            sys::RSA_PKCS1_PADDING
        };
        if c.1.is_null() || init != 1 || sys::EVP_PKEY_CTX_set_rsa_padding(c.1, pad) != 1 {
            return Err(err(CKR_FUNCTION_FAILED));
        }
        if let Some((hash, label)) = oaep {
            let (md, _) = md(hash)?;
            if sys::EVP_PKEY_CTX_set_rsa_oaep_md(c.1, md) != 1
                || sys::EVP_PKEY_CTX_set_rsa_mgf1_md(c.1, md) != 1
            {
                return Err(err(CKR_FUNCTION_FAILED));
            }
            if !label.is_empty() {
                let l = sys::OPENSSL_malloc(label.len()) as *mut u8;
                if l.is_null() {
                    return Err(err(CKR_HOST_MEMORY));
                }
                std::ptr::copy_nonoverlapping(label.as_ptr(), l, label.len());
                if sys::EVP_PKEY_CTX_set0_rsa_oaep_label(c.1, l, label.len()) != 1 {
                    sys::OPENSSL_free(l.cast());
                    return Err(err(CKR_FUNCTION_FAILED));
                }
            }
        }
        let mut n = out.len();
        let ok = if encrypt {
            sys::EVP_PKEY_encrypt(c.1, out.as_mut_ptr(), &mut n, input.as_ptr(), input.len())
        } else {
            sys::EVP_PKEY_decrypt(c.1, out.as_mut_ptr(), &mut n, input.as_ptr(), input.len())
        };
        sys::ERR_clear_error();
        if ok != 1 || n > out.len() {
            return Err(err(bad));
        }
        out.truncate(n);
        Ok(out)
    }
}
