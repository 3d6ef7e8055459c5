//! The functions PKCS#11 3.2 added (its `CK_FUNCTION_LIST_3_2`, `table.rs`): key
//! encapsulation and verification with the signature first go to `core::api::v32`;
//! `C_GetSessionValidationFlags` answers that no validation applies; the asynchronous
//! and authenticated-wrapping functions are not offered (`CKR_FUNCTION_NOT_SUPPORTED`).

use super::attr::template;
use super::mech::{mechanism, required};
use super::{ck_fn, in_bytes, with_out};
use crate::core::api::session::session_info;
use crate::core::api::v32 as api;
use crate::core::error::{err, Result};
use crate::core::instance;
use cryptoki_sys::*;

ck_fn!(C_EncapsulateKey(
    h: CK_SESSION_HANDLE,
    p_mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    p_t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    p_out: *mut CK_BYTE,
    p_out_len: *mut CK_ULONG,
    ph: *mut CK_OBJECT_HANDLE,
) {
    instance::get()?;
    if ph.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    let m = required(p_mech)?;
    let t = template(p_t, n)?;
    with_out(p_out, p_out_len, |o| {
        if let Some(k) = api::encapsulate_key(h, &m, key, &t, o)? {
            *ph = k;
        }
        Ok(())
    })
});

ck_fn!(C_DecapsulateKey(
    h: CK_SESSION_HANDLE,
    p_mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    p_t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    p_in: *mut CK_BYTE,
    in_len: CK_ULONG,
    ph: *mut CK_OBJECT_HANDLE,
) {
    instance::get()?;
    if ph.is_null() || p_in.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    let m = required(p_mech)?;
    let t = template(p_t, n)?;
    *ph = api::decapsulate_key(h, &m, key, &t, in_bytes(p_in, in_len)?)?;
    Ok(())
});

ck_fn!(C_VerifySignatureInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE, p_sig: *mut CK_BYTE, sig_len: CK_ULONG) {
    instance::get()?;
    let m = mechanism(p_mech)?;
    if m.is_some() && p_sig.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    api::verify_signature_init(h, m.as_ref(), key, in_bytes(p_sig, sig_len)?)
});

/// Runs a data call of `C_VerifySignature*`, which ends the operation on any error (as
/// `crypto.rs`'s `ending` does for the 2.40 verification).
unsafe fn ending(h: CK_SESSION_HANDLE, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let r = f();
    if r.is_err() && instance::get().is_ok() {
        let _ = api::verify_signature_init(h, None, 0, &[]);
    }
    r
}

ck_fn!(C_VerifySignature(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG) {
    instance::get()?;
    ending(h, || api::verify_signature(h, in_bytes(p_data, len)?))
});

ck_fn!(C_VerifySignatureUpdate(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG) {
    instance::get()?;
    ending(h, || api::verify_signature_update(h, in_bytes(p_data, len)?))
});

ck_fn!(C_VerifySignatureFinal(h: CK_SESSION_HANDLE) {
    instance::get()?;
    api::verify_signature_final(h)
});

ck_fn!(C_GetSessionValidationFlags(h: CK_SESSION_HANDLE, ty: CK_ULONG, p_flags: *mut CK_FLAGS) {
    instance::get()?;
    session_info(h)?;
    if p_flags.is_null() || ty != CKS_LAST_VALIDATION_OK {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    // No operation of hsmux's is validated by an authority (FIPS 140 and the like): no flag.
    *p_flags = 0;
    Ok(())
});

/// A 3.2 function hsmux does not offer; the library must be initialized first.
unsafe fn not_offered() -> Result<()> {
    instance::get()?;
    Err(err(CKR_FUNCTION_NOT_SUPPORTED))
}

ck_fn!(C_AsyncComplete(_h: CK_SESSION_HANDLE, _name: *mut CK_UTF8CHAR, _result: *mut CK_ASYNC_DATA) {
    not_offered()
});
ck_fn!(C_AsyncGetID(_h: CK_SESSION_HANDLE, _name: *mut CK_UTF8CHAR, _id: *mut CK_ULONG) {
    not_offered()
});
ck_fn!(C_AsyncJoin(_h: CK_SESSION_HANDLE, _name: *mut CK_UTF8CHAR, _id: CK_ULONG, _data: *mut CK_BYTE, _len: CK_ULONG) {
    not_offered()
});
ck_fn!(C_WrapKeyAuthenticated(
    _h: CK_SESSION_HANDLE,
    _m: *mut CK_MECHANISM,
    _wrapping: CK_OBJECT_HANDLE,
    _key: CK_OBJECT_HANDLE,
    _aad: *mut CK_BYTE,
    _aad_len: CK_ULONG,
    _out: *mut CK_BYTE,
    _out_len: *mut CK_ULONG,
) {
    not_offered()
});
ck_fn!(C_UnwrapKeyAuthenticated(
    _h: CK_SESSION_HANDLE,
    _m: *mut CK_MECHANISM,
    _unwrapping: CK_OBJECT_HANDLE,
    _wrapped: *mut CK_BYTE,
    _wrapped_len: CK_ULONG,
    _t: *mut CK_ATTRIBUTE,
    _n: CK_ULONG,
    _aad: *mut CK_BYTE,
    _aad_len: CK_ULONG,
    _ph: *mut CK_OBJECT_HANDLE,
) {
    not_offered()
});
