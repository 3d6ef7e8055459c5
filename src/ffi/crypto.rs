//! Encryption, decryption, digests, signatures (PKCS#11 §5.8-§5.13).

use super::mech::{mechanism, required};
use super::{ck_fn, in_bytes, with_out};
use crate::core::api::crypto as api;
use crate::core::api::session::session_info;
use crate::core::error::{err, Result};
use crate::core::instance;
use crate::core::session::ProducedIv;
use cryptoki_sys::*;

/// Runs a call that ends its operation when it fails (PKCS#11 3.0 §5.2 and each
/// function's text: a single-part call, a `*Final` and an `*Update` end the operation
/// on every result except `CKR_BUFFER_TOO_SMALL` and a successful length query). The
/// core's state machines (`core::session`) already end it on their own errors and on
/// success; this covers the refusals made before the core sees the call (a NULL
/// `pulSignatureLen`, a NULL `pData` with a length, a length over its bound). Module
/// sessions are the vendor's: hsmux does not end a vendor's operation behind its back.
fn ending(h: CK_SESSION_HANDLE, flags: CK_FLAGS, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let r = f();
    if let Err(e) = &r {
        if e.rv() != CKR_BUFFER_TOO_SMALL {
            end_operation(h, flags);
        }
    }
    r
}

fn end_operation(h: CK_SESSION_HANDLE, flags: CK_FLAGS) {
    // Module sessions never get here (ffi/exports.rs sends them to the proxy).
    if instance::get().is_ok() {
        // A handle that is not a session (or not this kind's operation) leaves
        // nothing to end.
        let _ = api::session_cancel(h, flags);
    }
}

/// Writes the IV a token chose for an AES-GCM encryption into the consumer's `pIv`, given
/// at `C_EncryptInit` (PKCS#11 3.0 §2.12.3; OpenBao's seal reads it after `C_Encrypt`),
/// when that buffer has exactly the IV's length. The core returns it from the call that
/// ended the operation.
unsafe fn write_back_iv(produced: Option<ProducedIv>) {
    if let Some(p) = produced.filter(|p| p.iv.len() == p.to.len) {
        // SAFETY: the consumer's pIv buffer of ulIvLen bytes from C_EncryptInit, which the
        // spec's IV generation requires it to keep alive until the operation ends.
        std::ptr::copy_nonoverlapping(p.iv.as_ptr(), p.to.addr as *mut u8, p.to.len);
    }
}

ck_fn!(C_EncryptInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
    instance::get()?;
    api::encrypt_init(h, mechanism(p_mech)?.as_ref(), key, super::mech::gcm_iv_out(p_mech))
});
ck_fn!(C_Encrypt(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
    ending(h, CKF_ENCRYPT, || {
        instance::get()?;
        let data = in_bytes(p_data, len)?;
        let mut produced = None;
        with_out(p_out, p_out_len, |o| {
            produced = api::encrypt(h, data, o)?;
            Ok(())
        })?;
        write_back_iv(produced);
        Ok(())
    })
});
ck_fn!(C_EncryptUpdate(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
    ending(h, CKF_ENCRYPT, || {
        instance::get()?;
        let data = in_bytes(p_data, len)?;
        with_out(p_out, p_out_len, |o| api::encrypt_update(h, data, o))
    })
});
ck_fn!(C_EncryptFinal(h: CK_SESSION_HANDLE, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
    ending(h, CKF_ENCRYPT, || {
        instance::get()?;
        let mut produced = None;
        with_out(p_out, p_out_len, |o| {
            produced = api::encrypt_final(h, o)?;
            Ok(())
        })?;
        write_back_iv(produced);
        Ok(())
    })
});

ck_fn!(C_DecryptInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
    instance::get()?;
    api::decrypt_init(h, mechanism(p_mech)?.as_ref(), key)
});
ck_fn!(C_Decrypt(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
    ending(h, CKF_DECRYPT, || {
        instance::get()?;
        let data = in_bytes(p_data, len)?;
        with_out(p_out, p_out_len, |o| api::decrypt(h, data, o))
    })
});
ck_fn!(C_DecryptUpdate(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
    ending(h, CKF_DECRYPT, || {
        instance::get()?;
        let data = in_bytes(p_data, len)?;
        with_out(p_out, p_out_len, |o| api::decrypt_update(h, data, o))
    })
});
ck_fn!(C_DecryptFinal(h: CK_SESSION_HANDLE, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
    ending(h, CKF_DECRYPT, || {
        instance::get()?;
        with_out(p_out, p_out_len, |o| api::decrypt_final(h, o))
    })
});

ck_fn!(C_DigestInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM) {
    instance::get()?;
    api::digest_init(h, mechanism(p_mech)?.as_ref())
});
ck_fn!(C_Digest(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
    ending(h, CKF_DIGEST, || {
        instance::get()?;
        let data = in_bytes(p_data, len)?;
        with_out(p_out, p_out_len, |o| api::digest(h, data, o))
    })
});
ck_fn!(C_DigestUpdate(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG) {
    ending(h, CKF_DIGEST, || {
        instance::get()?;
        api::digest_update(h, in_bytes(p_data, len)?)
    })
});
ck_fn!(C_DigestKey(h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) {
    ending(h, CKF_DIGEST, || {
        api::digest_key(h, key)
    })
});
ck_fn!(C_DigestFinal(h: CK_SESSION_HANDLE, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
    ending(h, CKF_DIGEST, || {
        instance::get()?;
        with_out(p_out, p_out_len, |o| api::digest_final(h, o))
    })
});

ck_fn!(C_SignInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
    instance::get()?;
    api::sign_init(h, mechanism(p_mech)?.as_ref(), key)
});
ck_fn!(C_Sign(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_sig: *mut CK_BYTE, p_sig_len: *mut CK_ULONG) {
    ending(h, CKF_SIGN, || {
        instance::get()?;
        let data = in_bytes(p_data, len)?;
        with_out(p_sig, p_sig_len, |o| api::sign(h, data, o))
    })
});
ck_fn!(C_SignUpdate(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG) {
    ending(h, CKF_SIGN, || {
        instance::get()?;
        api::sign_update(h, in_bytes(p_data, len)?)
    })
});
ck_fn!(C_SignFinal(h: CK_SESSION_HANDLE, p_sig: *mut CK_BYTE, p_sig_len: *mut CK_ULONG) {
    ending(h, CKF_SIGN, || {
        instance::get()?;
        with_out(p_sig, p_sig_len, |o| api::sign_final(h, o))
    })
});

ck_fn!(C_VerifyInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
    instance::get()?;
    api::verify_init(h, mechanism(p_mech)?.as_ref(), key)
});
ck_fn!(C_Verify(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_sig: *mut CK_BYTE, sig_len: CK_ULONG) {
    ending(h, CKF_VERIFY, || {
        instance::get()?;
        api::verify(h, in_bytes(p_data, len)?, in_bytes(p_sig, sig_len)?)
    })
});
ck_fn!(C_VerifyUpdate(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG) {
    ending(h, CKF_VERIFY, || {
        instance::get()?;
        api::verify_update(h, in_bytes(p_data, len)?)
    })
});
ck_fn!(C_VerifyFinal(h: CK_SESSION_HANDLE, p_sig: *mut CK_BYTE, sig_len: CK_ULONG) {
    ending(h, CKF_VERIFY, || {
        instance::get()?;
        api::verify_final(h, in_bytes(p_sig, sig_len)?)
    })
});

// Signatures with message recovery and the dual-function updates are optional in
// PKCS#11 and offered by none of hsmux's tokens. The session is still checked first so
// that a bad handle gets its own code.
ck_fn!(C_SignRecoverInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, _key: CK_OBJECT_HANDLE) {
    session_info(h)?;
    required(p_mech)?;
    Err(err(CKR_FUNCTION_NOT_SUPPORTED))
});
ck_fn!(C_SignRecover(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _l: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG) {
    session_info(h)?;
    Err(err(CKR_FUNCTION_NOT_SUPPORTED))
});
ck_fn!(C_VerifyRecoverInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, _key: CK_OBJECT_HANDLE) {
    session_info(h)?;
    required(p_mech)?;
    Err(err(CKR_FUNCTION_NOT_SUPPORTED))
});
ck_fn!(C_VerifyRecover(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _l: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG) {
    session_info(h)?;
    Err(err(CKR_FUNCTION_NOT_SUPPORTED))
});
ck_fn!(C_DigestEncryptUpdate(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _l: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG) {
    session_info(h)?;
    Err(err(CKR_FUNCTION_NOT_SUPPORTED))
});
ck_fn!(C_DecryptDigestUpdate(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _l: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG) {
    session_info(h)?;
    Err(err(CKR_FUNCTION_NOT_SUPPORTED))
});
ck_fn!(C_SignEncryptUpdate(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _l: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG) {
    session_info(h)?;
    Err(err(CKR_FUNCTION_NOT_SUPPORTED))
});
ck_fn!(C_DecryptVerifyUpdate(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _l: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG) {
    session_info(h)?;
    Err(err(CKR_FUNCTION_NOT_SUPPORTED))
});
