//! Session management and login (PKCS#11 §5.6).

use super::bounds::pin_len;
use super::ck_fn;
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
    instance::get()?;
    if ph.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    *ph = api::open_session(slot, flags)?;
    Ok(())
});

ck_fn!(C_CloseSession(h: CK_SESSION_HANDLE) {
    instance::get()?;
    api::close_session(h)
});

ck_fn!(C_CloseAllSessions(slot: CK_SLOT_ID) {
    instance::get()?;
    api::close_all_sessions(slot)
});

ck_fn!(C_GetSessionInfo(h: CK_SESSION_HANDLE, p_info: *mut CK_SESSION_INFO) {
    let i = api::session_info(h)?;
    if p_info.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    *p_info = CK_SESSION_INFO { slotID: i.slot, state: i.state, flags: i.flags, ulDeviceError: 0 };
    Ok(())
});

ck_fn!(C_GetOperationState(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _len: *mut CK_ULONG) {
    api::session_info(h)?;
    Err(err(CKR_FUNCTION_NOT_SUPPORTED))
});

ck_fn!(C_SetOperationState(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _len: CK_ULONG, _enc: CK_OBJECT_HANDLE, _auth: CK_OBJECT_HANDLE) {
    api::session_info(h)?;
    Err(err(CKR_FUNCTION_NOT_SUPPORTED))
});

ck_fn!(C_Login(h: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, p_pin: *mut CK_UTF8CHAR, ul_pin_len: CK_ULONG) {
    instance::get()?;
    if p_pin.is_null() {
        // No protected authentication path: a PIN must be given.
        api::session_info(h)?;
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    api::login(h, user_type, pin(h, p_pin, ul_pin_len)?)
});

ck_fn!(C_LoginUser(h: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, p_pin: *mut CK_UTF8CHAR, ul_pin_len: CK_ULONG, _p_user: *mut CK_UTF8CHAR, _ul_user_len: CK_ULONG) {
    instance::get()?;
    if p_pin.is_null() {
        api::session_info(h)?;
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    // hsmux tokens have one user per role: the user name is not used.
    api::login(h, user_type, pin(h, p_pin, ul_pin_len)?)
});

ck_fn!(C_Logout(h: CK_SESSION_HANDLE) {
    api::logout(h)
});

ck_fn!(C_InitPIN(h: CK_SESSION_HANDLE, p_pin: *mut CK_UTF8CHAR, ul_pin_len: CK_ULONG) {
    instance::get()?;
    if p_pin.is_null() {
        api::session_info(h)?;
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    api::init_pin(h, pin(h, p_pin, ul_pin_len)?)
});

ck_fn!(C_SetPIN(h: CK_SESSION_HANDLE, p_old: *mut CK_UTF8CHAR, ul_old: CK_ULONG, p_new: *mut CK_UTF8CHAR, ul_new: CK_ULONG) {
    instance::get()?;
    if p_old.is_null() || p_new.is_null() {
        api::session_info(h)?;
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    api::set_pin(h, pin(h, p_old, ul_old)?, pin(h, p_new, ul_new)?)
});

ck_fn!(C_SessionCancel(h: CK_SESSION_HANDLE, flags: CK_FLAGS) {
    capi::session_cancel(h, flags)
});
