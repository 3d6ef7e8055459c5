//! Session management and login (PKCS#11 §5.6).

use super::bounds::{data_len, pin_len};
use super::{ck_fn, route_session, vendor_rv};
use crate::core::api::{crypto as capi, session as api};
use crate::core::error::err;
use crate::core::instance;
use cryptoki_sys::*;

/// A PIN of a session of hsmux's own tokens, its length checked against the token's
/// maximum (`CKR_PIN_LEN_RANGE`) before a byte is read. `p` is not NULL.
unsafe fn pin<'a>(
    h: CK_SESSION_HANDLE,
    p: *const CK_UTF8CHAR,
    len: CK_ULONG,
) -> crate::core::error::Result<&'a [u8]> {
    let n = pin_len(len, api::max_pin_len(h)?)?;
    Ok(std::slice::from_raw_parts(p, n))
}

ck_fn!(C_OpenSession(slot: CK_SLOT_ID, flags: CK_FLAGS, _app: CK_VOID_PTR, _notify: CK_NOTIFY, ph: *mut CK_SESSION_HANDLE) {
    let inst = instance::get()?;
    if let Some(m) = inst.module_slot(slot) {
        let h = inst.open_pass_session(&m, flags, !ph.is_null()).map_err(err)?;
        *ph = h;
        return Ok(());
    }
    if ph.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    *ph = api::open_session(slot, flags)?;
    Ok(())
});

ck_fn!(C_CloseSession(h: CK_SESSION_HANDLE) {
    let inst = instance::get()?;
    if let Some(p) = inst.pass_session(h) {
        return vendor_rv(inst.close_pass_session(h, &p));
    }
    api::close_session(h)
});

ck_fn!(C_CloseAllSessions(slot: CK_SLOT_ID) {
    let inst = instance::get()?;
    if let Some(m) = inst.module_slot(slot) {
        return vendor_rv(inst.close_all_pass_sessions(&m));
    }
    api::close_all_sessions(slot)
});

ck_fn!(C_GetSessionInfo(h: CK_SESSION_HANDLE, p_info: *mut CK_SESSION_INFO) {
    route_session!(h, |p| p.get_session_info(p_info));
    let i = api::session_info(h)?;
    if p_info.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    *p_info = CK_SESSION_INFO { slotID: i.slot, state: i.state, flags: i.flags, ulDeviceError: 0 };
    Ok(())
});

ck_fn!(C_GetOperationState(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _len: *mut CK_ULONG) {
    route_session!(h, |p| p.get_operation_state(_p, _len));
    api::session_info(h)?;
    Err(err(CKR_FUNCTION_NOT_SUPPORTED))
});

ck_fn!(C_SetOperationState(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _len: CK_ULONG, _enc: CK_OBJECT_HANDLE, _auth: CK_OBJECT_HANDLE) {
    route_session!(h, check { data_len(_len, "ulOperationStateLen")?; }, |p| p.set_operation_state(_p, _len, _enc, _auth));
    api::session_info(h)?;
    Err(err(CKR_FUNCTION_NOT_SUPPORTED))
});

ck_fn!(C_Login(h: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, p_pin: *mut CK_UTF8CHAR, ul_pin_len: CK_ULONG) {
    route_session!(h, |p| p.login(user_type, p_pin, ul_pin_len));
    instance::get()?;
    if p_pin.is_null() {
        // No protected authentication path: a PIN must be given.
        api::session_info(h)?;
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    api::login(h, user_type, pin(h, p_pin, ul_pin_len)?)
});

ck_fn!(C_LoginUser(h: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, p_pin: *mut CK_UTF8CHAR, ul_pin_len: CK_ULONG, _p_user: *mut CK_UTF8CHAR, _ul_user_len: CK_ULONG) {
    route_session!(h, check { data_len(_ul_user_len, "ulUsernameLen")?; }, |p| p.login_user(user_type, p_pin, ul_pin_len, _p_user, _ul_user_len));
    instance::get()?;
    if p_pin.is_null() {
        api::session_info(h)?;
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    // hsmux tokens have one user per role: the user name is not used.
    api::login(h, user_type, pin(h, p_pin, ul_pin_len)?)
});

ck_fn!(C_Logout(h: CK_SESSION_HANDLE) {
    route_session!(h, |p| p.logout()); api::logout(h) });

ck_fn!(C_InitPIN(h: CK_SESSION_HANDLE, p_pin: *mut CK_UTF8CHAR, ul_pin_len: CK_ULONG) {
    route_session!(h, |p| p.init_pin(p_pin, ul_pin_len));
    instance::get()?;
    if p_pin.is_null() {
        api::session_info(h)?;
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    api::init_pin(h, pin(h, p_pin, ul_pin_len)?)
});

ck_fn!(C_SetPIN(h: CK_SESSION_HANDLE, p_old: *mut CK_UTF8CHAR, ul_old: CK_ULONG, p_new: *mut CK_UTF8CHAR, ul_new: CK_ULONG) {
    route_session!(h, |p| p.set_pin(p_old, ul_old, p_new, ul_new));
    instance::get()?;
    if p_old.is_null() || p_new.is_null() {
        api::session_info(h)?;
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    api::set_pin(h, pin(h, p_old, ul_old)?, pin(h, p_new, ul_new)?)
});

ck_fn!(C_SessionCancel(h: CK_SESSION_HANDLE, flags: CK_FLAGS) {
    route_session!(h, |p| p.session_cancel(flags)); capi::session_cancel(h, flags) });
