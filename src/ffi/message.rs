//! The message-based functions of PKCS#11 3.0 (§5.8.1 ff.). None of hsmux's tokens offers
//! a message mechanism yet, so each answers `CKR_FUNCTION_NOT_SUPPORTED` after checking
//! that the module is initialized and the session exists.

use super::ck_fn;
use crate::core::api::session::session_info;
use crate::core::error::err;
use cryptoki_sys::*;
use std::os::raw::c_void;

macro_rules! unsupported {
    ($($name:ident ( $($arg:ident : $ty:ty),* );)*) => {
        $(ck_fn!($name(h: CK_SESSION_HANDLE, $($arg: $ty),*) {
            session_info(h)?;
            Err(err(CKR_FUNCTION_NOT_SUPPORTED))
        });)*
    };
}

unsupported! {
    C_MessageEncryptInit(_m: *mut CK_MECHANISM, _k: CK_OBJECT_HANDLE);
    C_EncryptMessage(_p: *mut c_void, _pl: CK_ULONG, _a: *mut CK_BYTE, _al: CK_ULONG, _i: *mut CK_BYTE, _il: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG);
    C_EncryptMessageBegin(_p: *mut c_void, _pl: CK_ULONG, _a: *mut CK_BYTE, _al: CK_ULONG);
    C_EncryptMessageNext(_p: *mut c_void, _pl: CK_ULONG, _i: *mut CK_BYTE, _il: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG, _f: CK_FLAGS);
    C_MessageEncryptFinal();
    C_MessageDecryptInit(_m: *mut CK_MECHANISM, _k: CK_OBJECT_HANDLE);
    C_DecryptMessage(_p: *mut c_void, _pl: CK_ULONG, _a: *mut CK_BYTE, _al: CK_ULONG, _i: *mut CK_BYTE, _il: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG);
    C_DecryptMessageBegin(_p: *mut c_void, _pl: CK_ULONG, _a: *mut CK_BYTE, _al: CK_ULONG);
    C_DecryptMessageNext(_p: *mut c_void, _pl: CK_ULONG, _i: *mut CK_BYTE, _il: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG, _f: CK_FLAGS);
    C_MessageDecryptFinal();
    C_MessageSignInit(_m: *mut CK_MECHANISM, _k: CK_OBJECT_HANDLE);
    C_SignMessage(_p: *mut c_void, _pl: CK_ULONG, _d: *mut CK_BYTE, _dl: CK_ULONG, _s: *mut CK_BYTE, _sl: *mut CK_ULONG);
    C_SignMessageBegin(_p: *mut c_void, _pl: CK_ULONG);
    C_SignMessageNext(_p: *mut c_void, _pl: CK_ULONG, _d: *mut CK_BYTE, _dl: CK_ULONG, _s: *mut CK_BYTE, _sl: *mut CK_ULONG);
    C_MessageSignFinal();
    C_MessageVerifyInit(_m: *mut CK_MECHANISM, _k: CK_OBJECT_HANDLE);
    C_VerifyMessage(_p: *mut c_void, _pl: CK_ULONG, _d: *mut CK_BYTE, _dl: CK_ULONG, _s: *mut CK_BYTE, _sl: CK_ULONG);
    C_VerifyMessageBegin(_p: *mut c_void, _pl: CK_ULONG);
    C_VerifyMessageNext(_p: *mut c_void, _pl: CK_ULONG, _d: *mut CK_BYTE, _dl: CK_ULONG, _s: *mut CK_BYTE, _sl: CK_ULONG);
    C_MessageVerifyFinal();
}
