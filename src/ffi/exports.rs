//! The exported PKCS#11 functions, all generated from one list by [`exports!`]: the one
//! place where a call goes either to the module-slot passthrough (`crate::proxy`) or to
//! the core path (`ck_fn!` in this folder's files).
//!
//! Each entry names its handle kind:
//! - `none`: the core path only (library-wide functions);
//! - `slot`: the first argument is a slot id; a module slot's call is forwarded;
//! - `session`: the first argument is a session handle; a module session's call is
//!   forwarded, after `check { .. }`: the bounds a vendor library may not check before it
//!   reads (`bounds.rs`). hsmux's own tokens check the same bounds where they read the
//!   argument, so that their order of checks stays the one they had.
//!
//! A forwarded call's return value is the vendor's (`vendor_rv`); panics, logging and the
//! per-call metrics (under the slot the handle kind names, [`super::Subject`]) are
//! `guard`'s, as for the core path.

use super::bounds::{
    count as check_count, data_len, template as check_template, vendor_mechanism as vendor_mech,
    vendor_message_mechanism,
};
use super::{crypto, general, keys, message, object, policy, session, table, v32, vendor_rv};
use crate::proxy::{ModuleSlot, PassSession};
use cryptoki_sys::*;
use std::os::raw::c_void;
use std::sync::Arc;

macro_rules! exports {
    ($( $kind:ident $module:ident :: $core:ident as $name:ident ( $h:ident : $hty:ty $(, $arg:ident : $ty:ty)* $(,)? )
        $(check $check:block)? $(=> |$p:ident| $call:expr)? ; )*) => {
        $(
            #[no_mangle]
            pub unsafe extern "C" fn $name($h: $hty $(, $arg: $ty)*) -> CK_RV {
                let args = exports!(@args $($arg)*);
                let subject = exports!(@subject $kind $h);
                #[allow(unused_unsafe)]
                $crate::ffi::audit::guard(stringify!($name), subject, args, || unsafe {
                    // The key-use policy refuses first (its refusal is audited).
                    $crate::ffi::policy::check(stringify!($name), subject, &args)?;
                    exports!(@route $kind $h $(check $check)? $(|$p| $call)?);
                    $module::$core($h $(, $arg)*)
                })
            }
        )*
    };
    // The arguments the audit trail reads (`super::audit::Args`), picked by name.
    (@args $($arg:ident)*) => {{
        #[allow(unused_mut)]
        let mut a = $crate::ffi::audit::Args::default();
        $(exports!(@arg a $arg $arg);)*
        a
    }};
    (@arg $a:ident p_mech $v:ident) => { $a.mech = $v as *const CK_MECHANISM; };
    (@arg $a:ident _m $v:ident) => { $a.mech = $v as *const CK_MECHANISM; };
    (@arg $a:ident key $v:ident) => { exports!(@key $a $v); };
    (@arg $a:ident _key $v:ident) => { exports!(@key $a $v); };
    (@arg $a:ident _k $v:ident) => { exports!(@key $a $v); };
    (@arg $a:ident base $v:ident) => { exports!(@key $a $v); };
    (@arg $a:ident wrapping $v:ident) => { exports!(@key $a $v); };
    (@arg $a:ident unwrapping $v:ident) => { exports!(@key $a $v); };
    (@arg $a:ident obj $v:ident) => { $a.obj = Some($v); };
    (@arg $a:ident len $v:ident) => { $a.len = Some($v); };
    (@arg $a:ident in_len $v:ident) => { $a.len = Some($v); };
    (@arg $a:ident _l $v:ident) => { $a.len = Some($v); };
    (@arg $a:ident _dl $v:ident) => { $a.len = Some($v); };
    (@arg $a:ident wrapped_len $v:ident) => { $a.len = Some($v); };
    (@arg $a:ident p_out $v:ident) => { $a.out = Some($v as *const u8); };
    (@arg $a:ident p_sig $v:ident) => { $a.out = Some($v as *const u8); };
    (@arg $a:ident _o $v:ident) => { $a.out = Some($v as *const u8); };
    (@arg $a:ident _s $v:ident) => { $a.out = Some($v as *const u8); };
    (@arg $a:ident ph $v:ident) => { $a.new = $v as *const CK_ULONG; };
    (@arg $a:ident ph_priv $v:ident) => { $a.new = $v as *const CK_ULONG; };
    (@arg $a:ident user_type $v:ident) => { $a.user = Some($v); };
    (@arg $a:ident p_t $v:ident) => { $a.template = $v as *const CK_ATTRIBUTE; };
    (@arg $a:ident p_pub $v:ident) => { $a.template = $v as *const CK_ATTRIBUTE; };
    (@arg $a:ident n $v:ident) => { $a.template_len = $v; };
    (@arg $a:ident n_pub $v:ident) => { $a.template_len = $v; };
    (@arg $a:ident flags $v:ident) => { $a.flags = $v; };
    (@arg $a:ident $other:ident $v:ident) => {};
    // The first key argument is the key used; a second (`C_WrapKey`'s) the object.
    (@key $a:ident $k:ident) => {
        if $a.key.is_none() { $a.key = Some($k); } else { $a.obj = Some($k); }
    };
    (@subject none $h:ident) => { $crate::ffi::Subject::None };
    (@subject slot $h:ident) => { $crate::ffi::Subject::Slot($h) };
    (@subject session $h:ident) => { $crate::ffi::Subject::Session($h) };
    (@route none $h:ident) => {};
    (@route session $h:ident $(check $check:block)? |$p:ident| $call:expr) => {
        if let Some($p) = crate::proxy::session($h) {
            $($check)?
            return vendor_rv($call);
        }
    };
    (@route slot $h:ident |$m:ident| $call:expr) => {
        if let Some($m) = crate::proxy::slot($h) {
            return vendor_rv($call);
        }
    };
}

/// `C_OpenSession` on a module slot.
unsafe fn open_session(m: &Arc<ModuleSlot>, flags: CK_FLAGS, ph: *mut CK_SESSION_HANDLE) -> CK_RV {
    let Some(proxy) = crate::proxy::get() else {
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    };
    match proxy.open_session(m, flags, !ph.is_null()) {
        Ok(h) => {
            *ph = h;
            CKR_OK
        }
        Err(rv) => rv,
    }
}

fn close_session(h: CK_SESSION_HANDLE, p: &PassSession) -> CK_RV {
    crate::proxy::get().map_or(CKR_CRYPTOKI_NOT_INITIALIZED, |x| x.close_session(h, p))
}

fn close_all_sessions(m: &Arc<ModuleSlot>) -> CK_RV {
    crate::proxy::get().map_or(CKR_CRYPTOKI_NOT_INITIALIZED, |x| x.close_all_sessions(m))
}

exports! {
    none general::C_Initialize as C_Initialize(p_init_args: CK_VOID_PTR);
    none general::C_Finalize as C_Finalize(p_reserved: CK_VOID_PTR);
    none general::C_GetInfo as C_GetInfo(p_info: *mut CK_INFO);
    none general::C_GetSlotList as C_GetSlotList(token_present: CK_BBOOL, p_slot_list: *mut CK_SLOT_ID, pul_count: *mut CK_ULONG);
    slot general::C_GetSlotInfo as C_GetSlotInfo(slot: CK_SLOT_ID, p_info: *mut CK_SLOT_INFO) => |m| m.get_slot_info(p_info);
    slot policy::C_GetTokenInfo as C_GetTokenInfo(slot: CK_SLOT_ID, p_info: *mut CK_TOKEN_INFO) => |m| policy::rv(policy::module_token_info(&m, slot, p_info));
    slot policy::C_GetMechanismList as C_GetMechanismList(slot: CK_SLOT_ID, p_list: *mut CK_MECHANISM_TYPE, pul_count: *mut CK_ULONG) => |m| policy::rv(policy::mechanism_list(policy::Source::Module(&m), p_list, pul_count));
    slot policy::C_GetMechanismInfo as C_GetMechanismInfo(slot: CK_SLOT_ID, mech: CK_MECHANISM_TYPE, p_info: *mut CK_MECHANISM_INFO) => |m| policy::rv(policy::mechanism_info(policy::Source::Module(&m), mech, p_info));
    slot general::C_InitToken as C_InitToken(slot: CK_SLOT_ID, p_pin: *mut CK_UTF8CHAR, ul_pin_len: CK_ULONG, p_label: *mut CK_UTF8CHAR) => |m| m.init_token(p_pin, ul_pin_len, p_label);
    none general::C_WaitForSlotEvent as C_WaitForSlotEvent(flags: CK_FLAGS, p_slot: *mut CK_SLOT_ID, p_reserved: CK_VOID_PTR);
    session general::C_GetFunctionStatus as C_GetFunctionStatus(_h: CK_SESSION_HANDLE) => |p| p.get_function_status();
    session general::C_CancelFunction as C_CancelFunction(_h: CK_SESSION_HANDLE) => |p| p.cancel_function();
    slot session::C_OpenSession as C_OpenSession(slot: CK_SLOT_ID, flags: CK_FLAGS, _app: CK_VOID_PTR, _notify: CK_NOTIFY, ph: *mut CK_SESSION_HANDLE) => |m| open_session(&m, flags, ph);
    session session::C_CloseSession as C_CloseSession(h: CK_SESSION_HANDLE) => |p| close_session(h, &p);
    slot session::C_CloseAllSessions as C_CloseAllSessions(slot: CK_SLOT_ID) => |m| close_all_sessions(&m);
    session session::C_GetSessionInfo as C_GetSessionInfo(h: CK_SESSION_HANDLE, p_info: *mut CK_SESSION_INFO) => |p| p.get_session_info(p_info);
    session session::C_GetOperationState as C_GetOperationState(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _len: *mut CK_ULONG) => |p| p.get_operation_state(_p, _len);
    session session::C_SetOperationState as C_SetOperationState(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _len: CK_ULONG, _enc: CK_OBJECT_HANDLE, _auth: CK_OBJECT_HANDLE) check { data_len(_len, "ulOperationStateLen")?; } => |p| p.set_operation_state(_p, _len, _enc, _auth);
    session session::C_Login as C_Login(h: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, p_pin: *mut CK_UTF8CHAR, ul_pin_len: CK_ULONG) => |p| p.login(user_type, p_pin, ul_pin_len);
    session session::C_LoginUser as C_LoginUser(h: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, p_pin: *mut CK_UTF8CHAR, ul_pin_len: CK_ULONG, _p_user: *mut CK_UTF8CHAR, _ul_user_len: CK_ULONG) check { data_len(_ul_user_len, "ulUsernameLen")?; } => |p| p.login_user(user_type, p_pin, ul_pin_len, _p_user, _ul_user_len);
    session session::C_Logout as C_Logout(h: CK_SESSION_HANDLE) => |p| p.logout();
    session session::C_InitPIN as C_InitPIN(h: CK_SESSION_HANDLE, p_pin: *mut CK_UTF8CHAR, ul_pin_len: CK_ULONG) => |p| p.init_pin(p_pin, ul_pin_len);
    session session::C_SetPIN as C_SetPIN(h: CK_SESSION_HANDLE, p_old: *mut CK_UTF8CHAR, ul_old: CK_ULONG, p_new: *mut CK_UTF8CHAR, ul_new: CK_ULONG) => |p| p.set_pin(p_old, ul_old, p_new, ul_new);
    session session::C_SessionCancel as C_SessionCancel(h: CK_SESSION_HANDLE, flags: CK_FLAGS) => |p| p.session_cancel(flags);
    session object::C_CreateObject as C_CreateObject(h: CK_SESSION_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) check { check_template(p_template, count)?; } => |p| p.create_object(p_template, count, ph);
    session object::C_CopyObject as C_CopyObject(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) check { check_template(p_template, count)?; } => |p| p.copy_object(obj, p_template, count, ph);
    session object::C_DestroyObject as C_DestroyObject(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE) => |p| p.destroy_object(obj);
    session object::C_GetObjectSize as C_GetObjectSize(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, p_size: *mut CK_ULONG) => |p| p.get_object_size(obj, p_size);
    session object::C_GetAttributeValue as C_GetAttributeValue(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG) check { check_count(count)?; } => |p| p.get_attribute_value(obj, p_template, count);
    session object::C_SetAttributeValue as C_SetAttributeValue(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG) check { check_template(p_template, count)?; } => |p| p.set_attribute_value(obj, p_template, count);
    session object::C_FindObjectsInit as C_FindObjectsInit(h: CK_SESSION_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG) check { check_template(p_template, count)?; } => |p| p.find_objects_init(p_template, count);
    session object::C_FindObjects as C_FindObjects(h: CK_SESSION_HANDLE, ph: *mut CK_OBJECT_HANDLE, max: CK_ULONG, p_count: *mut CK_ULONG) => |p| p.find_objects(ph, max, p_count);
    session object::C_FindObjectsFinal as C_FindObjectsFinal(h: CK_SESSION_HANDLE) => |p| p.find_objects_final();
    session crypto::C_EncryptInit as C_EncryptInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) check { vendor_mech(p_mech)?; } => |p| p.encrypt_init(p_mech, key);
    session crypto::C_Encrypt as C_Encrypt(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) check { data_len(len, "ulDataLen")?; } => |p| p.encrypt(p_data, len, p_out, p_out_len);
    session crypto::C_EncryptUpdate as C_EncryptUpdate(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) check { data_len(len, "ulDataLen")?; } => |p| p.encrypt_update(p_data, len, p_out, p_out_len);
    session crypto::C_EncryptFinal as C_EncryptFinal(h: CK_SESSION_HANDLE, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) => |p| p.encrypt_final(p_out, p_out_len);
    session crypto::C_DecryptInit as C_DecryptInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) check { vendor_mech(p_mech)?; } => |p| p.decrypt_init(p_mech, key);
    session crypto::C_Decrypt as C_Decrypt(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) check { data_len(len, "ulDataLen")?; } => |p| p.decrypt(p_data, len, p_out, p_out_len);
    session crypto::C_DecryptUpdate as C_DecryptUpdate(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) check { data_len(len, "ulDataLen")?; } => |p| p.decrypt_update(p_data, len, p_out, p_out_len);
    session crypto::C_DecryptFinal as C_DecryptFinal(h: CK_SESSION_HANDLE, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) => |p| p.decrypt_final(p_out, p_out_len);
    session crypto::C_DigestInit as C_DigestInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM) check { vendor_mech(p_mech)?; } => |p| p.digest_init(p_mech);
    session crypto::C_Digest as C_Digest(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) check { data_len(len, "ulDataLen")?; } => |p| p.digest(p_data, len, p_out, p_out_len);
    session crypto::C_DigestUpdate as C_DigestUpdate(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG) check { data_len(len, "ulDataLen")?; } => |p| p.digest_update(p_data, len);
    session crypto::C_DigestKey as C_DigestKey(h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) => |p| p.digest_key(key);
    session crypto::C_DigestFinal as C_DigestFinal(h: CK_SESSION_HANDLE, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) => |p| p.digest_final(p_out, p_out_len);
    session crypto::C_SignInit as C_SignInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) check { vendor_mech(p_mech)?; } => |p| p.sign_init(p_mech, key);
    session crypto::C_Sign as C_Sign(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_sig: *mut CK_BYTE, p_sig_len: *mut CK_ULONG) check { data_len(len, "ulDataLen")?; } => |p| p.sign(p_data, len, p_sig, p_sig_len);
    session crypto::C_SignUpdate as C_SignUpdate(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG) check { data_len(len, "ulDataLen")?; } => |p| p.sign_update(p_data, len);
    session crypto::C_SignFinal as C_SignFinal(h: CK_SESSION_HANDLE, p_sig: *mut CK_BYTE, p_sig_len: *mut CK_ULONG) => |p| p.sign_final(p_sig, p_sig_len);
    session crypto::C_VerifyInit as C_VerifyInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) check { vendor_mech(p_mech)?; } => |p| p.verify_init(p_mech, key);
    session crypto::C_Verify as C_Verify(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_sig: *mut CK_BYTE, sig_len: CK_ULONG) check { data_len(len, "ulDataLen")?; data_len(sig_len, "ulSignatureLen")?; } => |p| p.verify(p_data, len, p_sig, sig_len);
    session crypto::C_VerifyUpdate as C_VerifyUpdate(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG) check { data_len(len, "ulDataLen")?; } => |p| p.verify_update(p_data, len);
    session crypto::C_VerifyFinal as C_VerifyFinal(h: CK_SESSION_HANDLE, p_sig: *mut CK_BYTE, sig_len: CK_ULONG) check { data_len(sig_len, "ulSignatureLen")?; } => |p| p.verify_final(p_sig, sig_len);
    session crypto::C_SignRecoverInit as C_SignRecoverInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, _key: CK_OBJECT_HANDLE) check { vendor_mech(p_mech)?; } => |p| p.sign_recover_init(p_mech, _key);
    session crypto::C_SignRecover as C_SignRecover(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _l: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG) check { data_len(_l, "ulDataLen")?; } => |p| p.sign_recover(_p, _l, _o, _ol);
    session crypto::C_VerifyRecoverInit as C_VerifyRecoverInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, _key: CK_OBJECT_HANDLE) check { vendor_mech(p_mech)?; } => |p| p.verify_recover_init(p_mech, _key);
    session crypto::C_VerifyRecover as C_VerifyRecover(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _l: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG) check { data_len(_l, "ulDataLen")?; } => |p| p.verify_recover(_p, _l, _o, _ol);
    session crypto::C_DigestEncryptUpdate as C_DigestEncryptUpdate(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _l: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG) check { data_len(_l, "ulDataLen")?; } => |p| p.digest_encrypt_update(_p, _l, _o, _ol);
    session crypto::C_DecryptDigestUpdate as C_DecryptDigestUpdate(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _l: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG) check { data_len(_l, "ulDataLen")?; } => |p| p.decrypt_digest_update(_p, _l, _o, _ol);
    session crypto::C_SignEncryptUpdate as C_SignEncryptUpdate(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _l: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG) check { data_len(_l, "ulDataLen")?; } => |p| p.sign_encrypt_update(_p, _l, _o, _ol);
    session crypto::C_DecryptVerifyUpdate as C_DecryptVerifyUpdate(h: CK_SESSION_HANDLE, _p: *mut CK_BYTE, _l: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG) check { data_len(_l, "ulDataLen")?; } => |p| p.decrypt_verify_update(_p, _l, _o, _ol);
    session keys::C_GenerateKey as C_GenerateKey(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, p_t: *mut CK_ATTRIBUTE, n: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) check { vendor_mech(p_mech)?; check_template(p_t, n)?; } => |p| p.generate_key(p_mech, p_t, n, ph);
    session keys::C_GenerateKeyPair as C_GenerateKeyPair(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, p_pub: *mut CK_ATTRIBUTE, n_pub: CK_ULONG, p_priv: *mut CK_ATTRIBUTE, n_priv: CK_ULONG, ph_pub: *mut CK_OBJECT_HANDLE, ph_priv: *mut CK_OBJECT_HANDLE) check { vendor_mech(p_mech)?; check_template(p_pub, n_pub)?; check_template(p_priv, n_priv)?; } => |p| p.generate_key_pair(p_mech, p_pub, n_pub, p_priv, n_priv, ph_pub, ph_priv);
    session keys::C_WrapKey as C_WrapKey(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, wrapping: CK_OBJECT_HANDLE, key: CK_OBJECT_HANDLE, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) check { vendor_mech(p_mech)?; } => |p| p.wrap_key(p_mech, wrapping, key, p_out, p_out_len);
    session keys::C_UnwrapKey as C_UnwrapKey(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, unwrapping: CK_OBJECT_HANDLE, p_wrapped: *mut CK_BYTE, wrapped_len: CK_ULONG, p_t: *mut CK_ATTRIBUTE, n: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) check { vendor_mech(p_mech)?; check_template(p_t, n)?; data_len(wrapped_len, "ulWrappedKeyLen")?; } => |p| p.unwrap_key(p_mech, unwrapping, p_wrapped, wrapped_len, p_t, n, ph);
    session keys::C_DeriveKey as C_DeriveKey(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, base: CK_OBJECT_HANDLE, p_t: *mut CK_ATTRIBUTE, n: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) check { vendor_mech(p_mech)?; check_template(p_t, n)?; } => |p| p.derive_key(p_mech, base, p_t, n, ph);
    session keys::C_SeedRandom as C_SeedRandom(h: CK_SESSION_HANDLE, p_seed: *mut CK_BYTE, len: CK_ULONG) check { data_len(len, "ulSeedLen")?; } => |p| p.seed_random(p_seed, len);
    session keys::C_GenerateRandom as C_GenerateRandom(h: CK_SESSION_HANDLE, p_out: *mut CK_BYTE, len: CK_ULONG) check { data_len(len, "ulRandomLen")?; } => |p| p.generate_random(p_out, len);
    session message::C_MessageEncryptInit as C_MessageEncryptInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) check { vendor_message_mechanism(p_mech)?; } => |p| p.message_encrypt_init(p_mech, key);
    session message::C_MessageDecryptInit as C_MessageDecryptInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) check { vendor_message_mechanism(p_mech)?; } => |p| p.message_decrypt_init(p_mech, key);
    session message::C_EncryptMessage as C_EncryptMessage(h: CK_SESSION_HANDLE, p_param: *mut c_void, param_len: CK_ULONG, p_aad: *mut CK_BYTE, aad_len: CK_ULONG, p_in: *mut CK_BYTE, in_len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) check { data_len(param_len, "ulParameterLen")?; data_len(aad_len, "ulAssociatedDataLen")?; data_len(in_len, "ulDataLen")?; } => |p| p.encrypt_message(p_param, param_len, p_aad, aad_len, p_in, in_len, p_out, p_out_len);
    session message::C_DecryptMessage as C_DecryptMessage(h: CK_SESSION_HANDLE, p_param: *mut c_void, param_len: CK_ULONG, p_aad: *mut CK_BYTE, aad_len: CK_ULONG, p_in: *mut CK_BYTE, in_len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) check { data_len(param_len, "ulParameterLen")?; data_len(aad_len, "ulAssociatedDataLen")?; data_len(in_len, "ulDataLen")?; } => |p| p.decrypt_message(p_param, param_len, p_aad, aad_len, p_in, in_len, p_out, p_out_len);
    session message::C_MessageEncryptFinal as C_MessageEncryptFinal(h: CK_SESSION_HANDLE) => |p| p.message_encrypt_final();
    session message::C_MessageDecryptFinal as C_MessageDecryptFinal(h: CK_SESSION_HANDLE) => |p| p.message_decrypt_final();
    none table::function_list as C_GetFunctionList(pp: *mut *mut CK_FUNCTION_LIST);
    none table::interface_list as C_GetInterfaceList(p_list: *mut CK_INTERFACE, pul_count: *mut CK_ULONG);
    none table::interface as C_GetInterface(p_name: *mut CK_UTF8CHAR, p_version: *mut CK_VERSION, pp: *mut *mut CK_INTERFACE, flags: CK_FLAGS);
    session message::C_EncryptMessageBegin as C_EncryptMessageBegin(h: CK_SESSION_HANDLE, _p: *mut c_void, _pl: CK_ULONG, _a: *mut CK_BYTE, _al: CK_ULONG) => |p| p.encrypt_message_begin(_p, _pl, _a, _al);
    session message::C_EncryptMessageNext as C_EncryptMessageNext(h: CK_SESSION_HANDLE, _p: *mut c_void, _pl: CK_ULONG, _i: *mut CK_BYTE, _il: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG, _f: CK_FLAGS) => |p| p.encrypt_message_next(_p, _pl, _i, _il, _o, _ol, _f);
    session message::C_DecryptMessageBegin as C_DecryptMessageBegin(h: CK_SESSION_HANDLE, _p: *mut c_void, _pl: CK_ULONG, _a: *mut CK_BYTE, _al: CK_ULONG) => |p| p.decrypt_message_begin(_p, _pl, _a, _al);
    session message::C_DecryptMessageNext as C_DecryptMessageNext(h: CK_SESSION_HANDLE, _p: *mut c_void, _pl: CK_ULONG, _i: *mut CK_BYTE, _il: CK_ULONG, _o: *mut CK_BYTE, _ol: *mut CK_ULONG, _f: CK_FLAGS) => |p| p.decrypt_message_next(_p, _pl, _i, _il, _o, _ol, _f);
    session message::C_MessageSignInit as C_MessageSignInit(h: CK_SESSION_HANDLE, _m: *mut CK_MECHANISM, _k: CK_OBJECT_HANDLE) => |p| p.message_sign_init(_m, _k);
    session message::C_SignMessage as C_SignMessage(h: CK_SESSION_HANDLE, _p: *mut c_void, _pl: CK_ULONG, _d: *mut CK_BYTE, _dl: CK_ULONG, _s: *mut CK_BYTE, _sl: *mut CK_ULONG) => |p| p.sign_message(_p, _pl, _d, _dl, _s, _sl);
    session message::C_SignMessageBegin as C_SignMessageBegin(h: CK_SESSION_HANDLE, _p: *mut c_void, _pl: CK_ULONG) => |p| p.sign_message_begin(_p, _pl);
    session message::C_SignMessageNext as C_SignMessageNext(h: CK_SESSION_HANDLE, _p: *mut c_void, _pl: CK_ULONG, _d: *mut CK_BYTE, _dl: CK_ULONG, _s: *mut CK_BYTE, _sl: *mut CK_ULONG) => |p| p.sign_message_next(_p, _pl, _d, _dl, _s, _sl);
    session message::C_MessageSignFinal as C_MessageSignFinal(h: CK_SESSION_HANDLE) => |p| p.message_sign_final();
    session message::C_MessageVerifyInit as C_MessageVerifyInit(h: CK_SESSION_HANDLE, _m: *mut CK_MECHANISM, _k: CK_OBJECT_HANDLE) => |p| p.message_verify_init(_m, _k);
    session message::C_VerifyMessage as C_VerifyMessage(h: CK_SESSION_HANDLE, _p: *mut c_void, _pl: CK_ULONG, _d: *mut CK_BYTE, _dl: CK_ULONG, _s: *mut CK_BYTE, _sl: CK_ULONG) => |p| p.verify_message(_p, _pl, _d, _dl, _s, _sl);
    session message::C_VerifyMessageBegin as C_VerifyMessageBegin(h: CK_SESSION_HANDLE, _p: *mut c_void, _pl: CK_ULONG) => |p| p.verify_message_begin(_p, _pl);
    session message::C_VerifyMessageNext as C_VerifyMessageNext(h: CK_SESSION_HANDLE, _p: *mut c_void, _pl: CK_ULONG, _d: *mut CK_BYTE, _dl: CK_ULONG, _s: *mut CK_BYTE, _sl: CK_ULONG) => |p| p.verify_message_next(_p, _pl, _d, _dl, _s, _sl);
    session message::C_MessageVerifyFinal as C_MessageVerifyFinal(h: CK_SESSION_HANDLE) => |p| p.message_verify_final();
    // PKCS#11 3.2 (the 3.2 function list only): a module slot's vendor runs them when it
    // offers the 3.2 interface.
    session v32::C_EncapsulateKey as C_EncapsulateKey(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE, p_t: *mut CK_ATTRIBUTE, n: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG, ph: *mut CK_OBJECT_HANDLE) check { vendor_mech(p_mech)?; check_template(p_t, n)?; } => |p| p.encapsulate_key(p_mech, key, p_t, n, p_out, p_out_len, ph);
    session v32::C_DecapsulateKey as C_DecapsulateKey(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE, p_t: *mut CK_ATTRIBUTE, n: CK_ULONG, p_in: *mut CK_BYTE, in_len: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) check { vendor_mech(p_mech)?; check_template(p_t, n)?; data_len(in_len, "ulCiphertextLen")?; } => |p| p.decapsulate_key(p_mech, key, p_t, n, p_in, in_len, ph);
    session v32::C_VerifySignatureInit as C_VerifySignatureInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE, p_sig: *mut CK_BYTE, sig_len: CK_ULONG) check { vendor_mech(p_mech)?; data_len(sig_len, "ulSignatureLen")?; } => |p| p.verify_signature_init(p_mech, key, p_sig, sig_len);
    session v32::C_VerifySignature as C_VerifySignature(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG) check { data_len(len, "ulDataLen")?; } => |p| p.verify_signature(p_data, len);
    session v32::C_VerifySignatureUpdate as C_VerifySignatureUpdate(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG) check { data_len(len, "ulDataLen")?; } => |p| p.verify_signature_update(p_data, len);
    session v32::C_VerifySignatureFinal as C_VerifySignatureFinal(h: CK_SESSION_HANDLE) => |p| p.verify_signature_final();
    session v32::C_GetSessionValidationFlags as C_GetSessionValidationFlags(h: CK_SESSION_HANDLE, ty: CK_ULONG, p_flags: *mut CK_FLAGS) => |p| p.get_session_validation_flags(ty, p_flags);
    none v32::C_AsyncComplete as C_AsyncComplete(_h: CK_SESSION_HANDLE, _name: *mut CK_UTF8CHAR, _result: *mut CK_ASYNC_DATA);
    none v32::C_AsyncGetID as C_AsyncGetID(_h: CK_SESSION_HANDLE, _name: *mut CK_UTF8CHAR, _id: *mut CK_ULONG);
    none v32::C_AsyncJoin as C_AsyncJoin(_h: CK_SESSION_HANDLE, _name: *mut CK_UTF8CHAR, _id: CK_ULONG, _data: *mut CK_BYTE, _len: CK_ULONG);
    none v32::C_WrapKeyAuthenticated as C_WrapKeyAuthenticated(_h: CK_SESSION_HANDLE, _m: *mut CK_MECHANISM, _wrapping: CK_OBJECT_HANDLE, _key: CK_OBJECT_HANDLE, _aad: *mut CK_BYTE, _aad_len: CK_ULONG, _out: *mut CK_BYTE, _out_len: *mut CK_ULONG);
    none v32::C_UnwrapKeyAuthenticated as C_UnwrapKeyAuthenticated(_h: CK_SESSION_HANDLE, _m: *mut CK_MECHANISM, _unwrapping: CK_OBJECT_HANDLE, _wrapped: *mut CK_BYTE, _wrapped_len: CK_ULONG, _t: *mut CK_ATTRIBUTE, _n: CK_ULONG, _aad: *mut CK_BYTE, _aad_len: CK_ULONG, _ph: *mut CK_OBJECT_HANDLE);
}
