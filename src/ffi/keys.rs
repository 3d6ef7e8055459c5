//! Key management and random numbers (PKCS#11 §5.14, §5.15).

use super::attr::template;
use super::bounds::data_len;
use super::mech::required;
use super::{ck_fn, in_bytes, with_out};
use crate::core::api::keys as api;
use crate::core::attr::Attr;
use crate::core::error::{err, Result};
use crate::core::instance;
use crate::core::mechanism::Mechanism;
use cryptoki_sys::*;

/// The arguments of a call that makes one key (`C_GenerateKey`, `C_DeriveKey`), checked
/// in the order hsmux's tokens answer them: initialized, `phKey`, mechanism, template.
unsafe fn new_key_args(
    p_mech: *mut CK_MECHANISM,
    p_t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    ph: *mut CK_OBJECT_HANDLE,
) -> Result<(Mechanism, Vec<Attr>)> {
    instance::get()?;
    if ph.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    Ok((required(p_mech)?, template(p_t, n)?))
}

ck_fn!(C_GenerateKey(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, p_t: *mut CK_ATTRIBUTE, n: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) {
    let (m, t) = new_key_args(p_mech, p_t, n, ph)?;
    *ph = api::generate_key(h, &m, &t)?;
    Ok(())
});

ck_fn!(C_GenerateKeyPair(
    h: CK_SESSION_HANDLE,
    p_mech: *mut CK_MECHANISM,
    p_pub: *mut CK_ATTRIBUTE,
    n_pub: CK_ULONG,
    p_priv: *mut CK_ATTRIBUTE,
    n_priv: CK_ULONG,
    ph_pub: *mut CK_OBJECT_HANDLE,
    ph_priv: *mut CK_OBJECT_HANDLE,
) {
    instance::get()?;
    if ph_pub.is_null() || ph_priv.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    let m = required(p_mech)?;
    let (pt, st) = (template(p_pub, n_pub)?, template(p_priv, n_priv)?);
    let (p, s) = api::generate_key_pair(h, &m, &pt, &st)?;
    *ph_pub = p;
    *ph_priv = s;
    Ok(())
});

ck_fn!(C_WrapKey(
    h: CK_SESSION_HANDLE,
    p_mech: *mut CK_MECHANISM,
    wrapping: CK_OBJECT_HANDLE,
    key: CK_OBJECT_HANDLE,
    p_out: *mut CK_BYTE,
    p_out_len: *mut CK_ULONG,
) {
    instance::get()?;
    let m = required(p_mech)?;
    with_out(p_out, p_out_len, |o| api::wrap_key(h, &m, wrapping, key, o))
});

ck_fn!(C_UnwrapKey(
    h: CK_SESSION_HANDLE,
    p_mech: *mut CK_MECHANISM,
    unwrapping: CK_OBJECT_HANDLE,
    p_wrapped: *mut CK_BYTE,
    wrapped_len: CK_ULONG,
    p_t: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
    ph: *mut CK_OBJECT_HANDLE,
) {
    instance::get()?;
    if ph.is_null() || p_wrapped.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    let m = required(p_mech)?;
    let t = template(p_t, n)?;
    *ph = api::unwrap_key(h, &m, unwrapping, in_bytes(p_wrapped, wrapped_len)?, &t)?;
    Ok(())
});

ck_fn!(C_DeriveKey(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, base: CK_OBJECT_HANDLE, p_t: *mut CK_ATTRIBUTE, n: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) {
    instance::get()?;
    // The SP 800-108 KDFs make more keys than phKey names: their handles go into the
    // parameter's CK_DERIVED_KEYs, which hold CK_INVALID_HANDLE unless all were made.
    let derived = || {
        let (m, t) = new_key_args(p_mech, p_t, n, ph)?;
        api::derive_key(h, &m, base, &t)
    };
    match derived() {
        Ok((key, more)) => {
            *ph = key;
            super::kbkdf::write_handles(p_mech, Some(&more));
            Ok(())
        }
        Err(e) => {
            super::kbkdf::write_handles(p_mech, None);
            Err(e)
        }
    }
});

ck_fn!(C_SeedRandom(h: CK_SESSION_HANDLE, p_seed: *mut CK_BYTE, len: CK_ULONG) {
    instance::get()?;
    if p_seed.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    api::seed_random(h, in_bytes(p_seed, len)?)
});

ck_fn!(C_GenerateRandom(h: CK_SESSION_HANDLE, p_out: *mut CK_BYTE, len: CK_ULONG) {
    instance::get()?;
    if p_out.is_null() && len > 0 {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    let len = data_len(len, "ulRandomLen")? as CK_ULONG;
    let out: &mut [u8] = if len == 0 { &mut [] } else { std::slice::from_raw_parts_mut(p_out, len as usize) };
    api::generate_random(h, out)
});
