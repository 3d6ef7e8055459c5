//! The message-based functions of PKCS#11 3.0: AES-GCM message encryption and decryption
//! (see `core::api::message`); messages in parts and message signing answer
//! `CKR_FUNCTION_NOT_SUPPORTED` after checking that the session exists.

use super::bounds::copy;
use super::{ck_fn, in_bytes, with_out};
use crate::core::api::message::{self as api, GcmMessage};
use crate::core::api::session::session_info;
use crate::core::error::{err, Error, Result};
use crate::core::instance;
use cryptoki_sys::*;
use std::os::raw::c_void;

/// Borrows the consumer's `CK_GCM_MESSAGE_PARAMS` (written back: tag, generated IV).
unsafe fn gcm_message(p: *mut c_void, len: CK_ULONG) -> Result<&'static mut CK_GCM_MESSAGE_PARAMS> {
    if p.is_null() || len as usize != std::mem::size_of::<CK_GCM_MESSAGE_PARAMS>() {
        return Err(Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            "message parameter must be a CK_GCM_MESSAGE_PARAMS",
        ));
    }
    let g = &mut *(p as *mut CK_GCM_MESSAGE_PARAMS);
    if g.ulIvLen as u128 > crate::core::limits::MAX_PARAM_LEN as u128
        || (g.pIv.is_null() && g.ulIvLen != 0)
    {
        return Err(Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            format!(
                "CK_GCM_MESSAGE_PARAMS: ulIvLen {} does not fit pIv",
                g.ulIvLen
            ),
        ));
    }
    // Both directions need the tag buffer: encryption writes it, decryption reads it.
    if g.pTag.is_null() || !g.ulTagBits.is_multiple_of(8) || g.ulTagBits > 128 {
        return Err(err(CKR_MECHANISM_PARAM_INVALID));
    }
    Ok(g)
}

unsafe fn decode(g: &CK_GCM_MESSAGE_PARAMS, read_tag: bool) -> Result<GcmMessage> {
    Ok(GcmMessage {
        iv: copy(in_bytes(g.pIv, g.ulIvLen).map_err(|_| err(CKR_MECHANISM_PARAM_INVALID))?)?,
        iv_fixed_bits: g.ulIvFixedBits,
        generator: g.ivGenerator,
        tag_bits: g.ulTagBits,
        tag: if read_tag {
            copy(in_bytes(g.pTag, g.ulTagBits / 8)?)?
        } else {
            Vec::new()
        },
    })
}

ck_fn!(C_MessageEncryptInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
    instance::get()?;
    // The parameter (if any) is read per message; only the type matters here.
    let m = p_mech.as_ref().ok_or_else(|| err(CKR_ARGUMENTS_BAD))?;
    api::init(h, true, m.mechanism, key)
});

ck_fn!(C_MessageDecryptInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
    instance::get()?;
    let m = p_mech.as_ref().ok_or_else(|| err(CKR_ARGUMENTS_BAD))?;
    api::init(h, false, m.mechanism, key)
});

ck_fn!(C_EncryptMessage(h: CK_SESSION_HANDLE, p_param: *mut c_void, param_len: CK_ULONG, p_aad: *mut CK_BYTE, aad_len: CK_ULONG, p_in: *mut CK_BYTE, in_len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
    let g = gcm_message(p_param, param_len)?;
    let params = decode(g, false)?;
    let (aad, input) = (in_bytes(p_aad, aad_len)?, in_bytes(p_in, in_len)?);
    let mut extras = None;
    with_out(p_out, p_out_len, |o| {
        extras = Some(api::run(h, true, &params, aad, input, o)?);
        Ok(())
    })?;
    if let Some(x) = extras.filter(|x| !x.tag.is_empty()) {
        std::ptr::copy_nonoverlapping(x.tag.as_ptr(), g.pTag, x.tag.len());
        if let Some(iv) = x.iv {
            std::ptr::copy_nonoverlapping(iv.as_ptr(), g.pIv, iv.len().min(g.ulIvLen as usize));
        }
    }
    Ok(())
});

ck_fn!(C_DecryptMessage(h: CK_SESSION_HANDLE, p_param: *mut c_void, param_len: CK_ULONG, p_aad: *mut CK_BYTE, aad_len: CK_ULONG, p_in: *mut CK_BYTE, in_len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
    let g = gcm_message(p_param, param_len)?;
    let params = decode(g, true)?;
    let (aad, input) = (in_bytes(p_aad, aad_len)?, in_bytes(p_in, in_len)?);
    with_out(p_out, p_out_len, |o| api::run(h, false, &params, aad, input, o).map(|_| ()))
});

ck_fn!(C_MessageEncryptFinal(h: CK_SESSION_HANDLE) {
    api::finish(h, true)
});
ck_fn!(C_MessageDecryptFinal(h: CK_SESSION_HANDLE) {
    api::finish(h, false)
});

macro_rules! unsupported {
    ($($name:ident => $method:ident ( $($arg:ident : $ty:ty),* );)*) => {
        $(ck_fn!($name(h: CK_SESSION_HANDLE, $($arg: $ty),*) {
            // Not offered by hsmux's own tokens; a module session's vendor may have it.
            session_info(h)?;
            Err(err(CKR_FUNCTION_NOT_SUPPORTED))
        });)*
    };
}

unsupported! {
    C_EncryptMessageBegin => encrypt_message_begin(_p: *mut c_void, _pl: CK_ULONG, _a: *mut CK_BYTE, _al: CK_ULONG);
    C_EncryptMessageNext => encrypt_message_next(_p: *mut c_void, _pl: CK_ULONG, _i: *mut CK_BYTE, _il: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG, _f: CK_FLAGS);
    C_DecryptMessageBegin => decrypt_message_begin(_p: *mut c_void, _pl: CK_ULONG, _a: *mut CK_BYTE, _al: CK_ULONG);
    C_DecryptMessageNext => decrypt_message_next(_p: *mut c_void, _pl: CK_ULONG, _i: *mut CK_BYTE, _il: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG, _f: CK_FLAGS);
    C_MessageSignInit => message_sign_init(_m: *mut CK_MECHANISM, _k: CK_OBJECT_HANDLE);
    C_SignMessage => sign_message(_p: *mut c_void, _pl: CK_ULONG, _d: *mut CK_BYTE, _dl: CK_ULONG, _s: *mut CK_BYTE, _sl: *mut CK_ULONG);
    C_SignMessageBegin => sign_message_begin(_p: *mut c_void, _pl: CK_ULONG);
    C_SignMessageNext => sign_message_next(_p: *mut c_void, _pl: CK_ULONG, _d: *mut CK_BYTE, _dl: CK_ULONG, _s: *mut CK_BYTE, _sl: *mut CK_ULONG);
    C_MessageSignFinal => message_sign_final();
    C_MessageVerifyInit => message_verify_init(_m: *mut CK_MECHANISM, _k: CK_OBJECT_HANDLE);
    C_VerifyMessage => verify_message(_p: *mut c_void, _pl: CK_ULONG, _d: *mut CK_BYTE, _dl: CK_ULONG, _s: *mut CK_BYTE, _sl: CK_ULONG);
    C_VerifyMessageBegin => verify_message_begin(_p: *mut c_void, _pl: CK_ULONG);
    C_VerifyMessageNext => verify_message_next(_p: *mut c_void, _pl: CK_ULONG, _d: *mut CK_BYTE, _dl: CK_ULONG, _s: *mut CK_BYTE, _sl: CK_ULONG);
    C_MessageVerifyFinal => message_verify_final();
}
