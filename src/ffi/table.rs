//! The function tables and interfaces a consumer fetches: `C_GetFunctionList` (2.40) and
//! `C_GetInterfaceList` / `C_GetInterface` (the "PKCS 11" interface, 3.0 by default, 2.40
//! and 3.2 too). Every entry is filled; what hsmux cannot do answers with the spec's code.

use super::ck_fn;
use super::exports::*;
use crate::core::error::err;
use cryptoki_sys::*;
use std::ffi::c_void;

/// A function table of type `$ty` and version `$major.$minor`: the 2.40 functions, every
/// one filled, then `$extra` (the functions the version added), in the spec's order.
macro_rules! function_list {
    ($ty:ident, $major:literal, $minor:literal $(, $extra:ident)* $(,)?) => {
        function_list!(@fill $ty, $major, $minor;
            C_Initialize C_Finalize C_GetInfo C_GetFunctionList C_GetSlotList C_GetSlotInfo
            C_GetTokenInfo C_GetMechanismList C_GetMechanismInfo C_InitToken C_InitPIN C_SetPIN
            C_OpenSession C_CloseSession C_CloseAllSessions C_GetSessionInfo C_GetOperationState
            C_SetOperationState C_Login C_Logout C_CreateObject C_CopyObject C_DestroyObject
            C_GetObjectSize C_GetAttributeValue C_SetAttributeValue C_FindObjectsInit
            C_FindObjects C_FindObjectsFinal C_EncryptInit C_Encrypt C_EncryptUpdate
            C_EncryptFinal C_DecryptInit C_Decrypt C_DecryptUpdate C_DecryptFinal C_DigestInit
            C_Digest C_DigestUpdate C_DigestKey C_DigestFinal C_SignInit C_Sign C_SignUpdate
            C_SignFinal C_SignRecoverInit C_SignRecover C_VerifyInit C_Verify C_VerifyUpdate
            C_VerifyFinal C_VerifyRecoverInit C_VerifyRecover C_DigestEncryptUpdate
            C_DecryptDigestUpdate C_SignEncryptUpdate C_DecryptVerifyUpdate C_GenerateKey
            C_GenerateKeyPair C_WrapKey C_UnwrapKey C_DeriveKey C_SeedRandom C_GenerateRandom
            C_GetFunctionStatus C_CancelFunction C_WaitForSlotEvent
            $($extra)*)
    };
    (@fill $ty:ident, $major:literal, $minor:literal; $($f:ident)*) => {
        $ty {
            version: CK_VERSION { major: $major, minor: $minor },
            $($f: Some($f),)*
        }
    };
}

pub static FUNCTION_LIST_240: CK_FUNCTION_LIST = function_list!(CK_FUNCTION_LIST, 2, 40);

/// A 3.x table: the 2.40 functions, the ones 3.0 added, then `$extra` (what a later
/// version added), in the spec's order.
macro_rules! function_list_3 {
    ($ty:ident, $minor:literal $(, $extra:ident)* $(,)?) => {
        function_list!(
            $ty, 3, $minor, C_GetInterfaceList, C_GetInterface, C_LoginUser, C_SessionCancel,
            C_MessageEncryptInit, C_EncryptMessage, C_EncryptMessageBegin,
            C_EncryptMessageNext, C_MessageEncryptFinal, C_MessageDecryptInit,
            C_DecryptMessage, C_DecryptMessageBegin, C_DecryptMessageNext,
            C_MessageDecryptFinal, C_MessageSignInit, C_SignMessage, C_SignMessageBegin,
            C_SignMessageNext, C_MessageSignFinal, C_MessageVerifyInit, C_VerifyMessage,
            C_VerifyMessageBegin, C_VerifyMessageNext, C_MessageVerifyFinal $(, $extra)*
        )
    };
}

pub static FUNCTION_LIST_30: CK_FUNCTION_LIST_3_0 = function_list_3!(CK_FUNCTION_LIST_3_0, 0);

/// The 3.2 table: the 3.0 one, then the functions 3.2 added (`v32.rs`).
pub static FUNCTION_LIST_32: CK_FUNCTION_LIST_3_2 = function_list_3!(
    CK_FUNCTION_LIST_3_2,
    2,
    C_EncapsulateKey,
    C_DecapsulateKey,
    C_VerifySignatureInit,
    C_VerifySignature,
    C_VerifySignatureUpdate,
    C_VerifySignatureFinal,
    C_GetSessionValidationFlags,
    C_AsyncComplete,
    C_AsyncGetID,
    C_AsyncJoin,
    C_WrapKeyAuthenticated,
    C_UnwrapKeyAuthenticated
);

static INTERFACE_NAME: &[u8] = b"PKCS 11\0";

/// A `CK_INTERFACE` in static memory; its pointers point at other statics and are never
/// written through.
#[repr(transparent)]
struct StaticInterface(CK_INTERFACE);
// SAFETY: the pointers inside refer to immutable statics.
unsafe impl Sync for StaticInterface {}

/// The 3.0 interface first: it is the default (a NULL version), so that a 3.0 consumer
/// that takes the first one gets the table it was written for; 3.2 is asked for by version.
static INTERFACES: [StaticInterface; 3] = [
    StaticInterface(CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_UTF8CHAR,
        pFunctionList: &FUNCTION_LIST_30 as *const CK_FUNCTION_LIST_3_0 as *mut c_void,
        flags: 0,
    }),
    StaticInterface(CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_UTF8CHAR,
        pFunctionList: &FUNCTION_LIST_240 as *const CK_FUNCTION_LIST as *mut c_void,
        flags: 0,
    }),
    StaticInterface(CK_INTERFACE {
        pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_UTF8CHAR,
        pFunctionList: &FUNCTION_LIST_32 as *const CK_FUNCTION_LIST_3_2 as *mut c_void,
        flags: 0,
    }),
];

ck_fn!(function_list(pp: *mut *mut CK_FUNCTION_LIST) {
    if pp.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    *pp = &FUNCTION_LIST_240 as *const CK_FUNCTION_LIST as *mut CK_FUNCTION_LIST;
    Ok(())
});

ck_fn!(interface_list(p_list: *mut CK_INTERFACE, pul_count: *mut CK_ULONG) {
    let list: Vec<CK_INTERFACE> = INTERFACES.iter().map(|i| i.0).collect();
    super::write_list(&list, p_list, pul_count)
});

ck_fn!(interface(p_name: *mut CK_UTF8CHAR, p_version: *mut CK_VERSION, pp: *mut *mut CK_INTERFACE, flags: CK_FLAGS) {
    if pp.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    if !p_name.is_null() {
        let name = std::ffi::CStr::from_ptr(p_name as *const std::ffi::c_char);
        if name.to_bytes() != b"PKCS 11" {
            return Err(err(CKR_ARGUMENTS_BAD));
        }
    }
    // No interface of hsmux claims extra flags (e.g. CKF_INTERFACE_FORK_SAFE).
    if flags != 0 {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    let chosen = if p_version.is_null() {
        &INTERFACES[0]
    } else {
        match ((*p_version).major, (*p_version).minor) {
            (3, 0) => &INTERFACES[0],
            (2, 40) => &INTERFACES[1],
            (3, 2) => &INTERFACES[2],
            _ => return Err(err(CKR_ARGUMENTS_BAD)),
        }
    };
    *pp = &chosen.0 as *const CK_INTERFACE as *mut CK_INTERFACE;
    Ok(())
});
