//! The calls of a module slot, forwarded to the vendor library with hsmux's handles
//! swapped for the vendor's (and back). Pointers from the consumer go through as they
//! came: the vendor checks them, fills the consumer's buffers, answers length queries and
//! `CKR_BUFFER_TOO_SMALL` exactly as it would when loaded directly.
//!
//! Every function here is `unsafe`: its pointer arguments are the consumer's, valid as
//! PKCS#11 requires of the corresponding C function.
#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

use super::params::with_vendor_mechanism;
use super::ModuleSlot;
use cryptoki_sys::*;
use std::sync::Arc;

/// A session of a module slot: hsmux's handle stands for the vendor's `vh`.
pub struct PassSession {
    pub slot: Arc<ModuleSlot>,
    pub vh: CK_SESSION_HANDLE,
    /// Message-based AES-GCM that hsmux runs itself for a 2.40 vendor (`message.rs`).
    pub(super) messages: parking_lot::Mutex<super::message::Messages>,
}

impl PassSession {
    pub fn new(slot: Arc<ModuleSlot>, vh: CK_SESSION_HANDLE) -> PassSession {
        PassSession {
            slot,
            vh,
            messages: Default::default(),
        }
    }
}

/// The vendor function `$f` of the 2.40 table, or `CKR_FUNCTION_NOT_SUPPORTED`.
macro_rules! call {
    ($slot:expr, $f:ident ( $($a:expr),* )) => {
        match $slot.library() {
            Err(rv) => rv,
            Ok(lib) => match lib.fl.$f {
                Some(f) => f($($a),*),
                None => CKR_FUNCTION_NOT_SUPPORTED,
            },
        }
    };
}

/// The same from the 3.0 table; a 2.40 vendor does not have the function.
macro_rules! call3 {
    ($slot:expr, $f:ident ( $($a:expr),* )) => {
        match $slot.library() {
            Err(rv) => rv,
            Ok(lib) => match lib.fl3.and_then(|t| t.$f) {
                Some(f) => f($($a),*),
                None => CKR_FUNCTION_NOT_SUPPORTED,
            },
        }
    };
}

/// Methods that only put the vendor's session handle in front of the consumer's arguments.
macro_rules! forward {
    ($tbl:ident: $( $name:ident => $f:ident ( $($a:ident : $t:ty),* ); )*) => {
        $(
            pub unsafe fn $name(&self, $($a: $t),*) -> CK_RV {
                $tbl!(self.slot, $f(self.vh $(, $a)*))
            }
        )*
    };
}

/// `*Init(mechanism, key)` with the key and any handles in the mechanism translated.
macro_rules! init_with_key {
    ($tbl:ident: $( $name:ident => $f:ident; )*) => {
        $(
            pub unsafe fn $name(&self, mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) -> CK_RV {
                let key = self.slot.to_vendor(key);
                with_vendor_mechanism(&*self.slot, mech, |m| $tbl!(self.slot, $f(self.vh, m, key)))
            }
        )*
    };
}

impl ModuleSlot {
    pub unsafe fn get_slot_info(&self, p: *mut CK_SLOT_INFO) -> CK_RV {
        match self.vendor_slot() {
            Ok(vs) => call!(self, C_GetSlotInfo(vs, p)),
            Err(_) if p.is_null() => CKR_ARGUMENTS_BAD,
            Err(_) => {
                // Disabled, or the token is not (yet) in the vendor's list: a slot without
                // a token, so that slot ids stay where the config put them.
                let desc = match self.disabled_reason() {
                    Some(_) => format!("hsmux {} (module unavailable)", self.label),
                    None => format!("hsmux {} (token not found)", self.label),
                };
                *p = CK_SLOT_INFO {
                    slotDescription: crate::core::text::padded(&desc),
                    manufacturerID: crate::core::text::padded("hsmux"),
                    flags: CKF_REMOVABLE_DEVICE,
                    hardwareVersion: CK_VERSION { major: 0, minor: 0 },
                    firmwareVersion: CK_VERSION { major: 0, minor: 0 },
                };
                CKR_OK
            }
        }
    }

    /// The vendor's token info under hsmux's label.
    pub unsafe fn get_token_info(&self, p: *mut CK_TOKEN_INFO) -> CK_RV {
        let vs = match self.vendor_slot() {
            Ok(vs) => vs,
            Err(rv) => return rv,
        };
        let rv = call!(self, C_GetTokenInfo(vs, p));
        if rv == CKR_OK && !p.is_null() {
            (*p).label = crate::core::text::padded(&self.label);
        }
        rv
    }

    pub unsafe fn get_mechanism_list(&self, p: *mut CK_MECHANISM_TYPE, n: *mut CK_ULONG) -> CK_RV {
        match self.vendor_slot() {
            Ok(vs) => call!(self, C_GetMechanismList(vs, p, n)),
            Err(rv) => rv,
        }
    }

    pub unsafe fn get_mechanism_info(
        &self,
        m: CK_MECHANISM_TYPE,
        p: *mut CK_MECHANISM_INFO,
    ) -> CK_RV {
        match self.vendor_slot() {
            Ok(vs) => call!(self, C_GetMechanismInfo(vs, m, p)),
            Err(rv) => rv,
        }
    }

    pub unsafe fn init_token(
        &self,
        pin: *mut CK_UTF8CHAR,
        len: CK_ULONG,
        label: *mut CK_UTF8CHAR,
    ) -> CK_RV {
        if !pin.is_null() {
            if let Err(rv) = self.check_pin_len(len) {
                return rv;
            }
        }
        match self.vendor_slot() {
            Ok(vs) => call!(self, C_InitToken(vs, pin, len, label)),
            Err(rv) => rv,
        }
    }

    /// `C_OpenSession` at the vendor; the vendor's handle on success. Notification
    /// callbacks are not passed on: the vendor would report its own session handles.
    pub fn open_session(
        &self,
        flags: CK_FLAGS,
        want_handle: bool,
    ) -> Result<CK_SESSION_HANDLE, CK_RV> {
        let vs = self.vendor_slot()?;
        let mut vh: CK_SESSION_HANDLE = 0;
        let out = if want_handle {
            &mut vh as *mut _
        } else {
            std::ptr::null_mut()
        };
        // SAFETY: our own output variable (or NULL, which the vendor must refuse).
        match unsafe {
            call!(
                self,
                C_OpenSession(vs, flags, std::ptr::null_mut(), None, out)
            )
        } {
            CKR_OK => Ok(vh),
            rv => Err(rv),
        }
    }

    pub fn close_vendor_session(&self, vh: CK_SESSION_HANDLE) -> CK_RV {
        // SAFETY: a session handle the vendor gave us; no pointer is passed.
        unsafe { call!(self, C_CloseSession(vh)) }
    }
}

impl PassSession {
    forward! { call:
        get_operation_state => C_GetOperationState(p: *mut CK_BYTE, n: *mut CK_ULONG);
        logout => C_Logout();
        find_objects_init => C_FindObjectsInit(t: *mut CK_ATTRIBUTE, n: CK_ULONG);
        find_objects_final => C_FindObjectsFinal();
        encrypt => C_Encrypt(d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        encrypt_update => C_EncryptUpdate(d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        encrypt_final => C_EncryptFinal(o: *mut CK_BYTE, on: *mut CK_ULONG);
        decrypt => C_Decrypt(d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        decrypt_update => C_DecryptUpdate(d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        decrypt_final => C_DecryptFinal(o: *mut CK_BYTE, on: *mut CK_ULONG);
        digest => C_Digest(d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        digest_update => C_DigestUpdate(d: *mut CK_BYTE, n: CK_ULONG);
        digest_final => C_DigestFinal(o: *mut CK_BYTE, on: *mut CK_ULONG);
        sign => C_Sign(d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        sign_update => C_SignUpdate(d: *mut CK_BYTE, n: CK_ULONG);
        sign_final => C_SignFinal(o: *mut CK_BYTE, on: *mut CK_ULONG);
        sign_recover => C_SignRecover(d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        verify => C_Verify(d: *mut CK_BYTE, n: CK_ULONG, s: *mut CK_BYTE, sn: CK_ULONG);
        verify_update => C_VerifyUpdate(d: *mut CK_BYTE, n: CK_ULONG);
        verify_final => C_VerifyFinal(s: *mut CK_BYTE, sn: CK_ULONG);
        verify_recover => C_VerifyRecover(s: *mut CK_BYTE, sn: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        digest_encrypt_update => C_DigestEncryptUpdate(d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        decrypt_digest_update => C_DecryptDigestUpdate(d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        sign_encrypt_update => C_SignEncryptUpdate(d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        decrypt_verify_update => C_DecryptVerifyUpdate(d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        seed_random => C_SeedRandom(d: *mut CK_BYTE, n: CK_ULONG);
        generate_random => C_GenerateRandom(d: *mut CK_BYTE, n: CK_ULONG);
        get_function_status => C_GetFunctionStatus();
        cancel_function => C_CancelFunction();
    }

    forward! { call3:
        session_cancel => C_SessionCancel(flags: CK_FLAGS);
        vendor_encrypt_message => C_EncryptMessage(p: CK_VOID_PTR, pn: CK_ULONG, a: *mut CK_BYTE, an: CK_ULONG, d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        encrypt_message_begin => C_EncryptMessageBegin(p: CK_VOID_PTR, pn: CK_ULONG, a: *mut CK_BYTE, an: CK_ULONG);
        encrypt_message_next => C_EncryptMessageNext(p: CK_VOID_PTR, pn: CK_ULONG, d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG, fl: CK_FLAGS);
        vendor_message_encrypt_final => C_MessageEncryptFinal();
        vendor_decrypt_message => C_DecryptMessage(p: CK_VOID_PTR, pn: CK_ULONG, a: *mut CK_BYTE, an: CK_ULONG, d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG);
        decrypt_message_begin => C_DecryptMessageBegin(p: CK_VOID_PTR, pn: CK_ULONG, a: *mut CK_BYTE, an: CK_ULONG);
        decrypt_message_next => C_DecryptMessageNext(p: CK_VOID_PTR, pn: CK_ULONG, d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG, fl: CK_FLAGS);
        vendor_message_decrypt_final => C_MessageDecryptFinal();
        sign_message => C_SignMessage(p: CK_VOID_PTR, pn: CK_ULONG, d: *mut CK_BYTE, n: CK_ULONG, s: *mut CK_BYTE, sn: *mut CK_ULONG);
        sign_message_begin => C_SignMessageBegin(p: CK_VOID_PTR, pn: CK_ULONG);
        sign_message_next => C_SignMessageNext(p: CK_VOID_PTR, pn: CK_ULONG, d: *mut CK_BYTE, n: CK_ULONG, s: *mut CK_BYTE, sn: *mut CK_ULONG);
        message_sign_final => C_MessageSignFinal();
        verify_message => C_VerifyMessage(p: CK_VOID_PTR, pn: CK_ULONG, d: *mut CK_BYTE, n: CK_ULONG, s: *mut CK_BYTE, sn: CK_ULONG);
        verify_message_begin => C_VerifyMessageBegin(p: CK_VOID_PTR, pn: CK_ULONG);
        verify_message_next => C_VerifyMessageNext(p: CK_VOID_PTR, pn: CK_ULONG, d: *mut CK_BYTE, n: CK_ULONG, s: *mut CK_BYTE, sn: CK_ULONG);
        message_verify_final => C_MessageVerifyFinal();
    }

    init_with_key! { call:
        encrypt_init => C_EncryptInit;
        decrypt_init => C_DecryptInit;
        sign_init => C_SignInit;
        verify_init => C_VerifyInit;
        sign_recover_init => C_SignRecoverInit;
        verify_recover_init => C_VerifyRecoverInit;
    }

    init_with_key! { call3:
        vendor_message_encrypt_init => C_MessageEncryptInit;
        vendor_message_decrypt_init => C_MessageDecryptInit;
        message_sign_init => C_MessageSignInit;
        message_verify_init => C_MessageVerifyInit;
    }

    /// The vendor's session info with hsmux's slot id.
    pub unsafe fn get_session_info(&self, p: *mut CK_SESSION_INFO) -> CK_RV {
        let rv = call!(self.slot, C_GetSessionInfo(self.vh, p));
        if rv == CKR_OK && !p.is_null() {
            (*p).slotID = self.slot.id;
        }
        rv
    }

    pub unsafe fn set_operation_state(
        &self,
        p: *mut CK_BYTE,
        n: CK_ULONG,
        enc: CK_OBJECT_HANDLE,
        auth: CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let (enc, auth) = (self.slot.to_vendor(enc), self.slot.to_vendor(auth));
        call!(self.slot, C_SetOperationState(self.vh, p, n, enc, auth))
    }

    /// `C_InitPIN`, the PIN's length checked against the vendor token's maximum first.
    pub unsafe fn init_pin(&self, p: *mut CK_UTF8CHAR, n: CK_ULONG) -> CK_RV {
        if !p.is_null() {
            if let Err(rv) = self.slot.check_pin_len(n) {
                return rv;
            }
        }
        call!(self.slot, C_InitPIN(self.vh, p, n))
    }

    /// `C_SetPIN`, both lengths checked first.
    pub unsafe fn set_pin(
        &self,
        po: *mut CK_UTF8CHAR,
        no: CK_ULONG,
        pn: *mut CK_UTF8CHAR,
        nn: CK_ULONG,
    ) -> CK_RV {
        for (p, n) in [(po, no), (pn, nn)] {
            if !p.is_null() {
                if let Err(rv) = self.slot.check_pin_len(n) {
                    return rv;
                }
            }
        }
        call!(self.slot, C_SetPIN(self.vh, po, no, pn, nn))
    }

    /// `C_Login`: with the slot's configured PIN for the user when there is one.
    pub unsafe fn login(&self, user: CK_USER_TYPE, pin: *mut CK_UTF8CHAR, n: CK_ULONG) -> CK_RV {
        match self.configured_pin(user, pin, n) {
            Err(rv) => rv,
            Ok(None) => call!(self.slot, C_Login(self.vh, user, pin, n)),
            Ok(Some(mut p)) => {
                call!(
                    self.slot,
                    C_Login(self.vh, user, p.as_mut_ptr(), p.len() as CK_ULONG)
                )
            }
        }
    }

    pub unsafe fn login_user(
        &self,
        user: CK_USER_TYPE,
        pin: *mut CK_UTF8CHAR,
        n: CK_ULONG,
        name: *mut CK_UTF8CHAR,
        name_len: CK_ULONG,
    ) -> CK_RV {
        match self.configured_pin(user, pin, n) {
            Err(rv) => rv,
            Ok(None) => call3!(
                self.slot,
                C_LoginUser(self.vh, user, pin, n, name, name_len)
            ),
            Ok(Some(mut p)) => call3!(
                self.slot,
                C_LoginUser(
                    self.vh,
                    user,
                    p.as_mut_ptr(),
                    p.len() as CK_ULONG,
                    name,
                    name_len
                )
            ),
        }
    }

    unsafe fn configured_pin(
        &self,
        user: CK_USER_TYPE,
        pin: *mut CK_UTF8CHAR,
        n: CK_ULONG,
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, CK_RV> {
        let given: &[u8] = if pin.is_null() {
            &[]
        } else {
            // Bounded before the consumer's PIN is read, here and at the vendor.
            self.slot.check_pin_len(n)?;
            std::slice::from_raw_parts(pin, n as usize)
        };
        self.slot.login_pin(user, given)
    }

    pub unsafe fn create_object(
        &self,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        ph: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let rv = call!(self.slot, C_CreateObject(self.vh, t, n, ph));
        self.fix_out(rv, ph);
        rv
    }

    pub unsafe fn copy_object(
        &self,
        obj: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        ph: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let rv = call!(
            self.slot,
            C_CopyObject(self.vh, self.slot.to_vendor(obj), t, n, ph)
        );
        self.fix_out(rv, ph);
        rv
    }

    pub unsafe fn destroy_object(&self, obj: CK_OBJECT_HANDLE) -> CK_RV {
        let vobj = self.slot.to_vendor(obj);
        let rv = call!(self.slot, C_DestroyObject(self.vh, vobj));
        if rv == CKR_OK {
            self.slot.objects.forget(self.slot.key, vobj);
        }
        rv
    }

    pub unsafe fn get_object_size(&self, obj: CK_OBJECT_HANDLE, p: *mut CK_ULONG) -> CK_RV {
        call!(
            self.slot,
            C_GetObjectSize(self.vh, self.slot.to_vendor(obj), p)
        )
    }

    pub unsafe fn get_attribute_value(
        &self,
        obj: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
    ) -> CK_RV {
        call!(
            self.slot,
            C_GetAttributeValue(self.vh, self.slot.to_vendor(obj), t, n)
        )
    }

    pub unsafe fn set_attribute_value(
        &self,
        obj: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
    ) -> CK_RV {
        call!(
            self.slot,
            C_SetAttributeValue(self.vh, self.slot.to_vendor(obj), t, n)
        )
    }

    /// The vendor fills the consumer's array; its handles are then replaced in place.
    pub unsafe fn find_objects(
        &self,
        ph: *mut CK_OBJECT_HANDLE,
        max: CK_ULONG,
        count: *mut CK_ULONG,
    ) -> CK_RV {
        let rv = call!(self.slot, C_FindObjects(self.vh, ph, max, count));
        if rv == CKR_OK && !ph.is_null() && !count.is_null() {
            let n = (*count).min(max) as usize;
            for h in std::slice::from_raw_parts_mut(ph, n) {
                *h = self.slot.to_hsmux(*h);
            }
        }
        rv
    }

    pub unsafe fn digest_init(&self, mech: *mut CK_MECHANISM) -> CK_RV {
        with_vendor_mechanism(&*self.slot, mech, |m| {
            call!(self.slot, C_DigestInit(self.vh, m))
        })
    }

    pub unsafe fn digest_key(&self, key: CK_OBJECT_HANDLE) -> CK_RV {
        call!(self.slot, C_DigestKey(self.vh, self.slot.to_vendor(key)))
    }

    pub unsafe fn generate_key(
        &self,
        mech: *mut CK_MECHANISM,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        ph: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let rv = with_vendor_mechanism(&*self.slot, mech, |m| {
            call!(self.slot, C_GenerateKey(self.vh, m, t, n, ph))
        });
        self.fix_out(rv, ph);
        rv
    }

    pub unsafe fn generate_key_pair(
        &self,
        mech: *mut CK_MECHANISM,
        tp: *mut CK_ATTRIBUTE,
        np: CK_ULONG,
        ts: *mut CK_ATTRIBUTE,
        ns: CK_ULONG,
        hp: *mut CK_OBJECT_HANDLE,
        hs: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let rv = with_vendor_mechanism(&*self.slot, mech, |m| {
            call!(
                self.slot,
                C_GenerateKeyPair(self.vh, m, tp, np, ts, ns, hp, hs)
            )
        });
        self.fix_out(rv, hp);
        self.fix_out(rv, hs);
        rv
    }

    pub unsafe fn wrap_key(
        &self,
        mech: *mut CK_MECHANISM,
        wrapping: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
        o: *mut CK_BYTE,
        on: *mut CK_ULONG,
    ) -> CK_RV {
        let (w, k) = (self.slot.to_vendor(wrapping), self.slot.to_vendor(key));
        with_vendor_mechanism(&*self.slot, mech, |m| {
            call!(self.slot, C_WrapKey(self.vh, m, w, k, o, on))
        })
    }

    pub unsafe fn unwrap_key(
        &self,
        mech: *mut CK_MECHANISM,
        unwrapping: CK_OBJECT_HANDLE,
        d: *mut CK_BYTE,
        dn: CK_ULONG,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        ph: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let u = self.slot.to_vendor(unwrapping);
        let rv = with_vendor_mechanism(&*self.slot, mech, |m| {
            call!(self.slot, C_UnwrapKey(self.vh, m, u, d, dn, t, n, ph))
        });
        self.fix_out(rv, ph);
        rv
    }

    pub unsafe fn derive_key(
        &self,
        mech: *mut CK_MECHANISM,
        base: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        ph: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let b = self.slot.to_vendor(base);
        let rv = with_vendor_mechanism(&*self.slot, mech, |m| {
            call!(self.slot, C_DeriveKey(self.vh, m, b, t, n, ph))
        });
        self.fix_out(rv, ph);
        rv
    }

    /// A handle the vendor wrote for a new object becomes hsmux's.
    unsafe fn fix_out(&self, rv: CK_RV, ph: *mut CK_OBJECT_HANDLE) {
        if rv == CKR_OK && !ph.is_null() {
            *ph = self.slot.to_hsmux(*ph);
        }
    }
}
