//! The calls of a module slot, forwarded to the vendor library with hsmux's handles
//! swapped for the vendor's (and back). Each call is staged (`stage.rs`): the vendor reads
//! and writes copies owned by the call, which go back to the consumer's pointers once it
//! returned within the slot's deadline (`ModuleSlot::call`). NULL stays NULL and lengths
//! stay the consumer's, so the vendor checks the arguments, answers length queries and
//! `CKR_BUFFER_TOO_SMALL` exactly as it would when loaded directly.
//!
//! Every function here is `unsafe`: its pointer arguments are the consumer's, valid as
//! PKCS#11 requires of the corresponding C function.
#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

use super::params::VendorMech;
use super::session::PassSession;
use super::slot::ModuleSlot;
use super::stage::{In, List, Out, Owned, Param, Template, Val};
use cryptoki_sys::*;

/// The vendor function `$f` of the 2.40 table, or the code that the call answers.
macro_rules! vf {
    ($slot:expr, $f:ident) => {
        match $slot.library() {
            Err(rv) => return rv,
            Ok(lib) => match lib.fl.$f {
                Some(f) => f,
                None => return CKR_FUNCTION_NOT_SUPPORTED,
            },
        }
    };
}

/// The same from the 3.0 table; a 2.40 vendor does not have the function.
macro_rules! vf3 {
    ($slot:expr, $f:ident) => {
        match $slot.library() {
            Err(rv) => return rv,
            Ok(lib) => match lib.fl3.and_then(|t| t.$f) {
                Some(f) => f,
                None => return CKR_FUNCTION_NOT_SUPPORTED,
            },
        }
    };
}

/// A staged value, or the call answers the staging's error (`CKR_HOST_MEMORY`).
macro_rules! staged {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(rv) => return rv,
        }
    };
}

fn rv_of(r: Result<CK_RV, CK_RV>) -> CK_RV {
    r.unwrap_or_else(|rv| rv)
}

/// Calls with nothing but scalars after the session handle.
macro_rules! plain {
    ($tbl:ident: $( $name:ident => $f:ident ( $($a:ident : $t:ty),* ); )*) => {
        $(
            pub unsafe fn $name(&self, $($a: $t),*) -> CK_RV {
                let f = $tbl!(self.slot, $f);
                let vh = self.vh;
                rv_of(self.slot.call(stringify!($f), move || unsafe { f(vh $(, $a)*) }))
            }
        )*
    };
}

/// `(pData, ulDataLen)`: input only.
macro_rules! data_in {
    ($tbl:ident: $( $name:ident => $f:ident; )*) => {
        $(
            pub unsafe fn $name(&self, d: *mut CK_BYTE, n: CK_ULONG) -> CK_RV {
                let f = $tbl!(self.slot, $f);
                let mut i = staged!(In::new(d, n));
                let vh = self.vh;
                rv_of(self.slot.call(stringify!($f), move || unsafe { f(vh, i.ptr(), i.len()) }))
            }
        )*
    };
}

/// `(pOut, pulOutLen)`: output only.
macro_rules! data_out {
    ($tbl:ident: $( $name:ident => $f:ident; )*) => {
        $(
            pub unsafe fn $name(&self, o: *mut CK_BYTE, on: *mut CK_ULONG) -> CK_RV {
                let f = $tbl!(self.slot, $f);
                let mut out = staged!(Out::new(o, on));
                let vh = self.vh;
                match self.slot.call(stringify!($f), move || {
                    let rv = unsafe { f(vh, out.ptr(), out.len_ptr()) };
                    (rv, out)
                }) {
                    Ok((rv, out)) => {
                        out.back(rv, o, on);
                        rv
                    }
                    Err(rv) => rv,
                }
            }
        )*
    };
}

/// `(pData, ulDataLen, pOut, pulOutLen)`.
macro_rules! data_in_out {
    ($tbl:ident: $( $name:ident => $f:ident; )*) => {
        $(
            pub unsafe fn $name(&self, d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG) -> CK_RV {
                let f = $tbl!(self.slot, $f);
                let mut i = staged!(In::new(d, n));
                let mut out = staged!(Out::new(o, on));
                let vh = self.vh;
                match self.slot.call(stringify!($f), move || {
                    let rv = unsafe { f(vh, i.ptr(), i.len(), out.ptr(), out.len_ptr()) };
                    (rv, out)
                }) {
                    Ok((rv, out)) => {
                        out.back(rv, o, on);
                        rv
                    }
                    Err(rv) => rv,
                }
            }
        )*
    };
}

/// `*Init(pMechanism, hKey)` with the key and any handles in the mechanism translated.
macro_rules! init_with_key {
    ($tbl:ident: $( $name:ident => $f:ident; )*) => {
        $(
            pub unsafe fn $name(&self, mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) -> CK_RV {
                let f = $tbl!(self.slot, $f);
                let key = self.slot.to_vendor(key);
                let mut m = Owned(staged!(VendorMech::new(&*self.slot, mech)));
                let vh = self.vh;
                match self.slot.call(stringify!($f), move || {
                    let rv = unsafe { f(vh, m.ptr(), key) };
                    (rv, m)
                }) {
                    Ok((rv, m)) => {
                        m.back(&*self.slot, mech, rv);
                        rv
                    }
                    Err(rv) => rv,
                }
            }
        )*
    };
}

impl ModuleSlot {
    pub unsafe fn get_slot_info(&self, p: *mut CK_SLOT_INFO) -> CK_RV {
        match self.vendor_slot() {
            Ok(vs) => {
                let f = vf!(self, C_GetSlotInfo);
                let mut out = Val::new(p);
                match self.call("C_GetSlotInfo", move || (unsafe { f(vs, out.ptr()) }, out)) {
                    Ok((rv, out)) => {
                        out.back(p);
                        rv
                    }
                    Err(rv) => rv,
                }
            }
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
        let f = vf!(self, C_GetTokenInfo);
        let mut out = Val::new(p);
        match self.call("C_GetTokenInfo", move || (unsafe { f(vs, out.ptr()) }, out)) {
            Ok((rv, mut out)) => {
                if rv == CKR_OK {
                    if let Some(mut t) = out.get() {
                        t.label = crate::core::text::padded(&self.label);
                        out.set(t);
                    }
                }
                out.back(p);
                rv
            }
            Err(rv) => rv,
        }
    }

    pub unsafe fn get_mechanism_list(&self, p: *mut CK_MECHANISM_TYPE, n: *mut CK_ULONG) -> CK_RV {
        let vs = match self.vendor_slot() {
            Ok(vs) => vs,
            Err(rv) => return rv,
        };
        let f = vf!(self, C_GetMechanismList);
        let mut count = Val::new(n);
        let max = count.get().unwrap_or(0);
        let mut list = staged!(List::new(p, max));
        match self.call("C_GetMechanismList", move || {
            (unsafe { f(vs, list.ptr(), count.ptr()) }, list, count)
        }) {
            Ok((rv, list, count)) => {
                count.back(n);
                if rv == CKR_OK {
                    list.back(p, count.get().unwrap_or(0), |m| m);
                }
                rv
            }
            Err(rv) => rv,
        }
    }

    pub unsafe fn get_mechanism_info(
        &self,
        m: CK_MECHANISM_TYPE,
        p: *mut CK_MECHANISM_INFO,
    ) -> CK_RV {
        let vs = match self.vendor_slot() {
            Ok(vs) => vs,
            Err(rv) => return rv,
        };
        let f = vf!(self, C_GetMechanismInfo);
        let mut out = Val::new(p);
        match self.call("C_GetMechanismInfo", move || {
            (unsafe { f(vs, m, out.ptr()) }, out)
        }) {
            Ok((rv, out)) => {
                out.back(p);
                rv
            }
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
        let vs = match self.vendor_slot() {
            Ok(vs) => vs,
            Err(rv) => return rv,
        };
        let f = vf!(self, C_InitToken);
        let mut pin = staged!(In::new(pin, len));
        let mut label = staged!(In::new(label, if label.is_null() { 0 } else { 32 }));
        rv_of(self.call("C_InitToken", move || unsafe {
            f(vs, pin.ptr(), pin.len(), label.ptr())
        }))
    }

    /// `C_OpenSession` at the vendor; the vendor's handle on success. Notification
    /// callbacks are not passed on: the vendor would report its own session handles.
    pub fn open_session(
        &self,
        flags: CK_FLAGS,
        want_handle: bool,
    ) -> Result<CK_SESSION_HANDLE, CK_RV> {
        let vs = self.vendor_slot()?;
        let f = self
            .library()?
            .fl
            .C_OpenSession
            .ok_or(CKR_FUNCTION_NOT_SUPPORTED)?;
        let (rv, vh) = self.call("C_OpenSession", move || {
            let mut vh: CK_SESSION_HANDLE = 0;
            let out = if want_handle {
                &mut vh as *mut _
            } else {
                std::ptr::null_mut()
            };
            // SAFETY: the job's own output variable (or NULL, which the vendor must refuse).
            let rv = unsafe { f(vs, flags, std::ptr::null_mut(), None, out) };
            (rv, vh)
        })?;
        match rv {
            CKR_OK => Ok(vh),
            rv => Err(rv),
        }
    }

    pub fn close_vendor_session(&self, vh: CK_SESSION_HANDLE) -> CK_RV {
        let f = vf!(self, C_CloseSession);
        // SAFETY: a session handle the vendor gave us; no pointer is passed.
        rv_of(self.call("C_CloseSession", move || unsafe { f(vh) }))
    }
}

impl PassSession {
    plain! { vf:
        logout => C_Logout();
        find_objects_final => C_FindObjectsFinal();
        get_function_status => C_GetFunctionStatus();
        cancel_function => C_CancelFunction();
    }

    plain! { vf3:
        session_cancel => C_SessionCancel(flags: CK_FLAGS);
        vendor_message_encrypt_final => C_MessageEncryptFinal();
        vendor_message_decrypt_final => C_MessageDecryptFinal();
        message_sign_final => C_MessageSignFinal();
        message_verify_final => C_MessageVerifyFinal();
    }

    data_in! { vf:
        digest_update => C_DigestUpdate;
        sign_update => C_SignUpdate;
        verify_update => C_VerifyUpdate;
        verify_final => C_VerifyFinal;
        seed_random => C_SeedRandom;
    }

    data_out! { vf:
        get_operation_state => C_GetOperationState;
        encrypt_final => C_EncryptFinal;
        decrypt_final => C_DecryptFinal;
        digest_final => C_DigestFinal;
        sign_final => C_SignFinal;
    }

    data_in_out! { vf:
        encrypt => C_Encrypt;
        encrypt_update => C_EncryptUpdate;
        decrypt => C_Decrypt;
        decrypt_update => C_DecryptUpdate;
        digest => C_Digest;
        sign => C_Sign;
        sign_recover => C_SignRecover;
        verify_recover => C_VerifyRecover;
        digest_encrypt_update => C_DigestEncryptUpdate;
        decrypt_digest_update => C_DecryptDigestUpdate;
        sign_encrypt_update => C_SignEncryptUpdate;
        decrypt_verify_update => C_DecryptVerifyUpdate;
    }

    init_with_key! { vf:
        encrypt_init => C_EncryptInit;
        decrypt_init => C_DecryptInit;
        sign_init => C_SignInit;
        verify_init => C_VerifyInit;
        sign_recover_init => C_SignRecoverInit;
        verify_recover_init => C_VerifyRecoverInit;
    }

    init_with_key! { vf3:
        vendor_message_encrypt_init => C_MessageEncryptInit;
        vendor_message_decrypt_init => C_MessageDecryptInit;
        message_sign_init => C_MessageSignInit;
        message_verify_init => C_MessageVerifyInit;
    }

    pub unsafe fn verify(
        &self,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        s: *mut CK_BYTE,
        sn: CK_ULONG,
    ) -> CK_RV {
        let f = vf!(self.slot, C_Verify);
        let mut i = staged!(In::new(d, n));
        let mut sig = staged!(In::new(s, sn));
        let vh = self.vh;
        rv_of(self.slot.call("C_Verify", move || unsafe {
            f(vh, i.ptr(), i.len(), sig.ptr(), sig.len())
        }))
    }

    /// `C_GenerateRandom`: the vendor fills exactly `n` bytes.
    pub unsafe fn generate_random(&self, d: *mut CK_BYTE, n: CK_ULONG) -> CK_RV {
        let f = vf!(self.slot, C_GenerateRandom);
        let mut out = staged!(Out::exact(d, n));
        let vh = self.vh;
        match self.slot.call("C_GenerateRandom", move || {
            (unsafe { f(vh, out.ptr(), n) }, out)
        }) {
            Ok((rv, out)) => {
                out.back_exact(rv, d);
                rv
            }
            Err(rv) => rv,
        }
    }

    /// The vendor's session info with hsmux's slot id.
    pub unsafe fn get_session_info(&self, p: *mut CK_SESSION_INFO) -> CK_RV {
        let f = vf!(self.slot, C_GetSessionInfo);
        let mut out = Val::new(p);
        let vh = self.vh;
        match self.slot.call("C_GetSessionInfo", move || {
            (unsafe { f(vh, out.ptr()) }, out)
        }) {
            Ok((rv, mut out)) => {
                if rv == CKR_OK {
                    if let Some(mut i) = out.get() {
                        i.slotID = self.slot.id;
                        out.set(i);
                    }
                }
                out.back(p);
                rv
            }
            Err(rv) => rv,
        }
    }

    pub unsafe fn set_operation_state(
        &self,
        p: *mut CK_BYTE,
        n: CK_ULONG,
        enc: CK_OBJECT_HANDLE,
        auth: CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let f = vf!(self.slot, C_SetOperationState);
        let (enc, auth) = (self.slot.to_vendor(enc), self.slot.to_vendor(auth));
        let mut state = staged!(In::new(p, n));
        let vh = self.vh;
        rv_of(self.slot.call("C_SetOperationState", move || unsafe {
            f(vh, state.ptr(), state.len(), enc, auth)
        }))
    }

    /// `C_InitPIN`, the PIN's length checked against the vendor token's maximum first.
    pub unsafe fn init_pin(&self, p: *mut CK_UTF8CHAR, n: CK_ULONG) -> CK_RV {
        if !p.is_null() {
            if let Err(rv) = self.slot.check_pin_len(n) {
                return rv;
            }
        }
        let f = vf!(self.slot, C_InitPIN);
        let mut pin = staged!(In::new(p, n));
        let vh = self.vh;
        rv_of(
            self.slot
                .call("C_InitPIN", move || unsafe { f(vh, pin.ptr(), pin.len()) }),
        )
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
        let f = vf!(self.slot, C_SetPIN);
        let mut old = staged!(In::new(po, no));
        let mut new = staged!(In::new(pn, nn));
        let vh = self.vh;
        rv_of(self.slot.call("C_SetPIN", move || unsafe {
            f(vh, old.ptr(), old.len(), new.ptr(), new.len())
        }))
    }

    /// `C_Login`: with the slot's configured PIN for the user when there is one.
    pub unsafe fn login(&self, user: CK_USER_TYPE, pin: *mut CK_UTF8CHAR, n: CK_ULONG) -> CK_RV {
        let f = vf!(self.slot, C_Login);
        let mut pin = match self.configured_pin(user, pin, n) {
            Err(rv) => return rv,
            Ok(None) => staged!(In::new(pin, n)),
            Ok(Some(p)) => staged!(In::new(p.as_ptr(), p.len() as CK_ULONG)),
        };
        let vh = self.vh;
        rv_of(self.slot.call("C_Login", move || {
            let rv = unsafe { f(vh, user, pin.ptr(), pin.len()) };
            pin.wipe();
            rv
        }))
    }

    pub unsafe fn login_user(
        &self,
        user: CK_USER_TYPE,
        pin: *mut CK_UTF8CHAR,
        n: CK_ULONG,
        name: *mut CK_UTF8CHAR,
        name_len: CK_ULONG,
    ) -> CK_RV {
        let f = vf3!(self.slot, C_LoginUser);
        let mut pin = match self.configured_pin(user, pin, n) {
            Err(rv) => return rv,
            Ok(None) => staged!(In::new(pin, n)),
            Ok(Some(p)) => staged!(In::new(p.as_ptr(), p.len() as CK_ULONG)),
        };
        let mut name = staged!(In::new(name, name_len));
        let vh = self.vh;
        rv_of(self.slot.call("C_LoginUser", move || {
            let rv = unsafe { f(vh, user, pin.ptr(), pin.len(), name.ptr(), name.len()) };
            pin.wipe();
            rv
        }))
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
        let f = vf!(self.slot, C_CreateObject);
        let mut tpl = Owned(staged!(Template::new(t, n, true)));
        let mut out = Val::new(ph);
        let vh = self.vh;
        let r = self.slot.call("C_CreateObject", move || {
            (unsafe { f(vh, tpl.ptr(), tpl.count(), out.ptr()) }, out)
        });
        self.handle_back(r, ph)
    }

    pub unsafe fn copy_object(
        &self,
        obj: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        ph: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let f = vf!(self.slot, C_CopyObject);
        let obj = self.slot.to_vendor(obj);
        let mut tpl = Owned(staged!(Template::new(t, n, true)));
        let mut out = Val::new(ph);
        let vh = self.vh;
        let r = self.slot.call("C_CopyObject", move || {
            (
                unsafe { f(vh, obj, tpl.ptr(), tpl.count(), out.ptr()) },
                out,
            )
        });
        self.handle_back(r, ph)
    }

    pub unsafe fn destroy_object(&self, obj: CK_OBJECT_HANDLE) -> CK_RV {
        let f = vf!(self.slot, C_DestroyObject);
        let vobj = self.slot.to_vendor(obj);
        let vh = self.vh;
        let rv = rv_of(
            self.slot
                .call("C_DestroyObject", move || unsafe { f(vh, vobj) }),
        );
        if rv == CKR_OK {
            self.slot.objects.forget(self.slot.key, vobj);
        }
        rv
    }

    pub unsafe fn get_object_size(&self, obj: CK_OBJECT_HANDLE, p: *mut CK_ULONG) -> CK_RV {
        let f = vf!(self.slot, C_GetObjectSize);
        let obj = self.slot.to_vendor(obj);
        let mut out = Val::new(p);
        let vh = self.vh;
        match self.slot.call("C_GetObjectSize", move || {
            (unsafe { f(vh, obj, out.ptr()) }, out)
        }) {
            Ok((rv, out)) => {
                out.back(p);
                rv
            }
            Err(rv) => rv,
        }
    }

    /// The vendor fills our copy of the template; lengths and values go back after.
    pub unsafe fn get_attribute_value(
        &self,
        obj: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
    ) -> CK_RV {
        let f = vf!(self.slot, C_GetAttributeValue);
        let obj = self.slot.to_vendor(obj);
        let mut tpl = Owned(staged!(Template::new(t, n, false)));
        let vh = self.vh;
        match self.slot.call("C_GetAttributeValue", move || {
            (unsafe { f(vh, obj, tpl.ptr(), tpl.count()) }, tpl)
        }) {
            Ok((rv, tpl)) => {
                tpl.back(t);
                rv
            }
            Err(rv) => rv,
        }
    }

    pub unsafe fn set_attribute_value(
        &self,
        obj: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
    ) -> CK_RV {
        let f = vf!(self.slot, C_SetAttributeValue);
        let obj = self.slot.to_vendor(obj);
        let mut tpl = Owned(staged!(Template::new(t, n, true)));
        let vh = self.vh;
        rv_of(self.slot.call("C_SetAttributeValue", move || unsafe {
            f(vh, obj, tpl.ptr(), tpl.count())
        }))
    }

    pub unsafe fn find_objects_init(&self, t: *mut CK_ATTRIBUTE, n: CK_ULONG) -> CK_RV {
        let f = vf!(self.slot, C_FindObjectsInit);
        let mut tpl = Owned(staged!(Template::new(t, n, true)));
        let vh = self.vh;
        rv_of(self.slot.call("C_FindObjectsInit", move || unsafe {
            f(vh, tpl.ptr(), tpl.count())
        }))
    }

    /// The vendor fills our array; its handles go back as hsmux's.
    pub unsafe fn find_objects(
        &self,
        ph: *mut CK_OBJECT_HANDLE,
        max: CK_ULONG,
        count: *mut CK_ULONG,
    ) -> CK_RV {
        let f = vf!(self.slot, C_FindObjects);
        let mut list = staged!(List::new(ph, max));
        let mut n = Val::new(count);
        let vh = self.vh;
        match self.slot.call("C_FindObjects", move || {
            (unsafe { f(vh, list.ptr(), max, n.ptr()) }, list, n)
        }) {
            Ok((rv, list, n)) => {
                n.back(count);
                if rv == CKR_OK {
                    if let Some(k) = n.get() {
                        list.back(ph, k.min(max), |h| self.slot.to_hsmux(h));
                    }
                }
                rv
            }
            Err(rv) => rv,
        }
    }

    pub unsafe fn digest_init(&self, mech: *mut CK_MECHANISM) -> CK_RV {
        let f = vf!(self.slot, C_DigestInit);
        let mut m = Owned(staged!(VendorMech::new(&*self.slot, mech)));
        let vh = self.vh;
        match self
            .slot
            .call("C_DigestInit", move || (unsafe { f(vh, m.ptr()) }, m))
        {
            Ok((rv, m)) => {
                m.back(&*self.slot, mech, rv);
                rv
            }
            Err(rv) => rv,
        }
    }

    pub unsafe fn digest_key(&self, key: CK_OBJECT_HANDLE) -> CK_RV {
        let f = vf!(self.slot, C_DigestKey);
        let key = self.slot.to_vendor(key);
        let vh = self.vh;
        rv_of(self.slot.call("C_DigestKey", move || unsafe { f(vh, key) }))
    }

    pub unsafe fn generate_key(
        &self,
        mech: *mut CK_MECHANISM,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        ph: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let f = vf!(self.slot, C_GenerateKey);
        let mut m = Owned(staged!(VendorMech::new(&*self.slot, mech)));
        let mut tpl = Owned(staged!(Template::new(t, n, true)));
        let mut out = Val::new(ph);
        let vh = self.vh;
        let r = self.slot.call("C_GenerateKey", move || {
            let rv = unsafe { f(vh, m.ptr(), tpl.ptr(), tpl.count(), out.ptr()) };
            (rv, m, out)
        });
        match r {
            Ok((rv, m, out)) => {
                m.back(&*self.slot, mech, rv);
                self.handle_back(Ok((rv, out)), ph)
            }
            Err(rv) => rv,
        }
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
        let f = vf!(self.slot, C_GenerateKeyPair);
        let mut m = Owned(staged!(VendorMech::new(&*self.slot, mech)));
        let mut pt = Owned(staged!(Template::new(tp, np, true)));
        let mut st = Owned(staged!(Template::new(ts, ns, true)));
        let (mut op, mut os) = (Val::new(hp), Val::new(hs));
        let vh = self.vh;
        let r = self.slot.call("C_GenerateKeyPair", move || {
            let rv = unsafe {
                f(
                    vh,
                    m.ptr(),
                    pt.ptr(),
                    pt.count(),
                    st.ptr(),
                    st.count(),
                    op.ptr(),
                    os.ptr(),
                )
            };
            (rv, m, op, os)
        });
        match r {
            Ok((rv, m, op, os)) => {
                m.back(&*self.slot, mech, rv);
                self.handle_back(Ok((rv, op)), hp);
                self.handle_back(Ok((rv, os)), hs)
            }
            Err(rv) => rv,
        }
    }

    pub unsafe fn wrap_key(
        &self,
        mech: *mut CK_MECHANISM,
        wrapping: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
        o: *mut CK_BYTE,
        on: *mut CK_ULONG,
    ) -> CK_RV {
        let f = vf!(self.slot, C_WrapKey);
        let (w, k) = (self.slot.to_vendor(wrapping), self.slot.to_vendor(key));
        let mut m = Owned(staged!(VendorMech::new(&*self.slot, mech)));
        let mut out = staged!(Out::new(o, on));
        let vh = self.vh;
        match self.slot.call("C_WrapKey", move || {
            let rv = unsafe { f(vh, m.ptr(), w, k, out.ptr(), out.len_ptr()) };
            (rv, m, out)
        }) {
            Ok((rv, m, out)) => {
                m.back(&*self.slot, mech, rv);
                out.back(rv, o, on);
                rv
            }
            Err(rv) => rv,
        }
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
        let f = vf!(self.slot, C_UnwrapKey);
        let u = self.slot.to_vendor(unwrapping);
        let mut m = Owned(staged!(VendorMech::new(&*self.slot, mech)));
        let mut wrapped = staged!(In::new(d, dn));
        let mut tpl = Owned(staged!(Template::new(t, n, true)));
        let mut out = Val::new(ph);
        let vh = self.vh;
        let r = self.slot.call("C_UnwrapKey", move || {
            let rv = unsafe {
                f(
                    vh,
                    m.ptr(),
                    u,
                    wrapped.ptr(),
                    wrapped.len(),
                    tpl.ptr(),
                    tpl.count(),
                    out.ptr(),
                )
            };
            (rv, m, out)
        });
        match r {
            Ok((rv, m, out)) => {
                m.back(&*self.slot, mech, rv);
                self.handle_back(Ok((rv, out)), ph)
            }
            Err(rv) => rv,
        }
    }

    pub unsafe fn derive_key(
        &self,
        mech: *mut CK_MECHANISM,
        base: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        ph: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let f = vf!(self.slot, C_DeriveKey);
        let b = self.slot.to_vendor(base);
        let mut m = Owned(staged!(VendorMech::new(&*self.slot, mech)));
        let mut tpl = Owned(staged!(Template::new(t, n, true)));
        let mut out = Val::new(ph);
        let vh = self.vh;
        let r = self.slot.call("C_DeriveKey", move || {
            let rv = unsafe { f(vh, m.ptr(), b, tpl.ptr(), tpl.count(), out.ptr()) };
            (rv, m, out)
        });
        match r {
            Ok((rv, m, out)) => {
                m.back(&*self.slot, mech, rv);
                self.handle_back(Ok((rv, out)), ph)
            }
            Err(rv) => rv,
        }
    }

    /// A handle the vendor wrote for a new object goes back as hsmux's (the vendor's
    /// word as it was otherwise, as the consumer would have seen it).
    unsafe fn handle_back(
        &self,
        r: Result<(CK_RV, Val<CK_OBJECT_HANDLE>), CK_RV>,
        ph: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        match r {
            Ok((rv, mut out)) => {
                if rv == CKR_OK {
                    if let Some(h) = out.get() {
                        out.set(self.slot.to_hsmux(h));
                    }
                }
                out.back(ph);
                rv
            }
            Err(rv) => rv,
        }
    }
}

/// The 3.0 message functions a vendor with the 3.0 interface runs itself. The message
/// parameter is staged as a structure (`stage::Param`); see the module header of `stage.rs`
/// for the buffers inside it.
impl PassSession {
    pub unsafe fn vendor_encrypt_message(
        &self,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        a: *mut CK_BYTE,
        an: CK_ULONG,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        o: *mut CK_BYTE,
        on: *mut CK_ULONG,
    ) -> CK_RV {
        let f = vf3!(self.slot, C_EncryptMessage);
        self.message_in_out("C_EncryptMessage", p, pn, a, an, d, n, o, on, f)
    }

    pub unsafe fn vendor_decrypt_message(
        &self,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        a: *mut CK_BYTE,
        an: CK_ULONG,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        o: *mut CK_BYTE,
        on: *mut CK_ULONG,
    ) -> CK_RV {
        let f = vf3!(self.slot, C_DecryptMessage);
        self.message_in_out("C_DecryptMessage", p, pn, a, an, d, n, o, on, f)
    }

    unsafe fn message_in_out(
        &self,
        name: &'static str,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        a: *mut CK_BYTE,
        an: CK_ULONG,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        o: *mut CK_BYTE,
        on: *mut CK_ULONG,
        f: unsafe extern "C" fn(
            CK_SESSION_HANDLE,
            CK_VOID_PTR,
            CK_ULONG,
            *mut CK_BYTE,
            CK_ULONG,
            *mut CK_BYTE,
            CK_ULONG,
            *mut CK_BYTE,
            *mut CK_ULONG,
        ) -> CK_RV,
    ) -> CK_RV {
        let mut param = staged!(Param::new(p as *const u8, pn));
        let mut aad = staged!(In::new(a, an));
        let mut i = staged!(In::new(d, n));
        let mut out = staged!(Out::new(o, on));
        let vh = self.vh;
        match self.slot.call(name, move || {
            let pp = param.as_mut().map_or(std::ptr::null_mut(), |x| x.ptr());
            let rv = unsafe {
                f(
                    vh,
                    pp as CK_VOID_PTR,
                    pn,
                    aad.ptr(),
                    aad.len(),
                    i.ptr(),
                    i.len(),
                    out.ptr(),
                    out.len_ptr(),
                )
            };
            (rv, param, out)
        }) {
            Ok((rv, param, out)) => {
                if let Some(x) = &param {
                    x.back(p as *mut u8);
                }
                out.back(rv, o, on);
                rv
            }
            Err(rv) => rv,
        }
    }

    pub unsafe fn encrypt_message_begin(
        &self,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        a: *mut CK_BYTE,
        an: CK_ULONG,
    ) -> CK_RV {
        let f = vf3!(self.slot, C_EncryptMessageBegin);
        self.message_begin("C_EncryptMessageBegin", p, pn, a, an, f)
    }

    pub unsafe fn decrypt_message_begin(
        &self,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        a: *mut CK_BYTE,
        an: CK_ULONG,
    ) -> CK_RV {
        let f = vf3!(self.slot, C_DecryptMessageBegin);
        self.message_begin("C_DecryptMessageBegin", p, pn, a, an, f)
    }

    unsafe fn message_begin(
        &self,
        name: &'static str,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        a: *mut CK_BYTE,
        an: CK_ULONG,
        f: unsafe extern "C" fn(
            CK_SESSION_HANDLE,
            CK_VOID_PTR,
            CK_ULONG,
            *mut CK_BYTE,
            CK_ULONG,
        ) -> CK_RV,
    ) -> CK_RV {
        let mut param = staged!(Param::new(p as *const u8, pn));
        let mut aad = staged!(In::new(a, an));
        let vh = self.vh;
        match self.slot.call(name, move || {
            let pp = param.as_mut().map_or(std::ptr::null_mut(), |x| x.ptr());
            (
                unsafe { f(vh, pp as CK_VOID_PTR, pn, aad.ptr(), aad.len()) },
                param,
            )
        }) {
            Ok((rv, param)) => {
                if let Some(x) = &param {
                    x.back(p as *mut u8);
                }
                rv
            }
            Err(rv) => rv,
        }
    }

    pub unsafe fn encrypt_message_next(
        &self,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        o: *mut CK_BYTE,
        on: *mut CK_ULONG,
        fl: CK_FLAGS,
    ) -> CK_RV {
        let f = vf3!(self.slot, C_EncryptMessageNext);
        self.message_next("C_EncryptMessageNext", p, pn, d, n, o, on, fl, f)
    }

    pub unsafe fn decrypt_message_next(
        &self,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        o: *mut CK_BYTE,
        on: *mut CK_ULONG,
        fl: CK_FLAGS,
    ) -> CK_RV {
        let f = vf3!(self.slot, C_DecryptMessageNext);
        self.message_next("C_DecryptMessageNext", p, pn, d, n, o, on, fl, f)
    }

    unsafe fn message_next(
        &self,
        name: &'static str,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        o: *mut CK_BYTE,
        on: *mut CK_ULONG,
        fl: CK_FLAGS,
        f: unsafe extern "C" fn(
            CK_SESSION_HANDLE,
            CK_VOID_PTR,
            CK_ULONG,
            *mut CK_BYTE,
            CK_ULONG,
            *mut CK_BYTE,
            *mut CK_ULONG,
            CK_FLAGS,
        ) -> CK_RV,
    ) -> CK_RV {
        let mut param = staged!(Param::new(p as *const u8, pn));
        let mut i = staged!(In::new(d, n));
        let mut out = staged!(Out::new(o, on));
        let vh = self.vh;
        match self.slot.call(name, move || {
            let pp = param.as_mut().map_or(std::ptr::null_mut(), |x| x.ptr());
            let rv = unsafe {
                f(
                    vh,
                    pp as CK_VOID_PTR,
                    pn,
                    i.ptr(),
                    i.len(),
                    out.ptr(),
                    out.len_ptr(),
                    fl,
                )
            };
            (rv, param, out)
        }) {
            Ok((rv, param, out)) => {
                if let Some(x) = &param {
                    x.back(p as *mut u8);
                }
                out.back(rv, o, on);
                rv
            }
            Err(rv) => rv,
        }
    }

    pub unsafe fn sign_message_begin(&self, p: CK_VOID_PTR, pn: CK_ULONG) -> CK_RV {
        let f = vf3!(self.slot, C_SignMessageBegin);
        self.param_only("C_SignMessageBegin", p, pn, f)
    }

    pub unsafe fn verify_message_begin(&self, p: CK_VOID_PTR, pn: CK_ULONG) -> CK_RV {
        let f = vf3!(self.slot, C_VerifyMessageBegin);
        self.param_only("C_VerifyMessageBegin", p, pn, f)
    }

    unsafe fn param_only(
        &self,
        name: &'static str,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        f: unsafe extern "C" fn(CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG) -> CK_RV,
    ) -> CK_RV {
        let mut param = staged!(Param::new(p as *const u8, pn));
        let vh = self.vh;
        match self.slot.call(name, move || {
            let pp = param.as_mut().map_or(std::ptr::null_mut(), |x| x.ptr());
            (unsafe { f(vh, pp as CK_VOID_PTR, pn) }, param)
        }) {
            Ok((rv, param)) => {
                if let Some(x) = &param {
                    x.back(p as *mut u8);
                }
                rv
            }
            Err(rv) => rv,
        }
    }

    pub unsafe fn sign_message(
        &self,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        s: *mut CK_BYTE,
        sn: *mut CK_ULONG,
    ) -> CK_RV {
        let f = vf3!(self.slot, C_SignMessage);
        self.sign_like("C_SignMessage", p, pn, d, n, s, sn, f)
    }

    pub unsafe fn sign_message_next(
        &self,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        s: *mut CK_BYTE,
        sn: *mut CK_ULONG,
    ) -> CK_RV {
        let f = vf3!(self.slot, C_SignMessageNext);
        self.sign_like("C_SignMessageNext", p, pn, d, n, s, sn, f)
    }

    unsafe fn sign_like(
        &self,
        name: &'static str,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        s: *mut CK_BYTE,
        sn: *mut CK_ULONG,
        f: unsafe extern "C" fn(
            CK_SESSION_HANDLE,
            CK_VOID_PTR,
            CK_ULONG,
            *mut CK_BYTE,
            CK_ULONG,
            *mut CK_BYTE,
            *mut CK_ULONG,
        ) -> CK_RV,
    ) -> CK_RV {
        let mut param = staged!(Param::new(p as *const u8, pn));
        let mut i = staged!(In::new(d, n));
        let mut out = staged!(Out::new(s, sn));
        let vh = self.vh;
        match self.slot.call(name, move || {
            let pp = param.as_mut().map_or(std::ptr::null_mut(), |x| x.ptr());
            let rv = unsafe {
                f(
                    vh,
                    pp as CK_VOID_PTR,
                    pn,
                    i.ptr(),
                    i.len(),
                    out.ptr(),
                    out.len_ptr(),
                )
            };
            (rv, param, out)
        }) {
            Ok((rv, param, out)) => {
                if let Some(x) = &param {
                    x.back(p as *mut u8);
                }
                out.back(rv, s, sn);
                rv
            }
            Err(rv) => rv,
        }
    }

    pub unsafe fn verify_message(
        &self,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        s: *mut CK_BYTE,
        sn: CK_ULONG,
    ) -> CK_RV {
        let f = vf3!(self.slot, C_VerifyMessage);
        self.verify_like("C_VerifyMessage", p, pn, d, n, s, sn, f)
    }

    pub unsafe fn verify_message_next(
        &self,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        s: *mut CK_BYTE,
        sn: CK_ULONG,
    ) -> CK_RV {
        let f = vf3!(self.slot, C_VerifyMessageNext);
        self.verify_like("C_VerifyMessageNext", p, pn, d, n, s, sn, f)
    }

    unsafe fn verify_like(
        &self,
        name: &'static str,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        s: *mut CK_BYTE,
        sn: CK_ULONG,
        f: unsafe extern "C" fn(
            CK_SESSION_HANDLE,
            CK_VOID_PTR,
            CK_ULONG,
            *mut CK_BYTE,
            CK_ULONG,
            *mut CK_BYTE,
            CK_ULONG,
        ) -> CK_RV,
    ) -> CK_RV {
        let mut param = staged!(Param::new(p as *const u8, pn));
        let mut i = staged!(In::new(d, n));
        let mut sig = staged!(In::new(s, sn));
        let vh = self.vh;
        match self.slot.call(name, move || {
            let pp = param.as_mut().map_or(std::ptr::null_mut(), |x| x.ptr());
            let rv = unsafe {
                f(
                    vh,
                    pp as CK_VOID_PTR,
                    pn,
                    i.ptr(),
                    i.len(),
                    sig.ptr(),
                    sig.len(),
                )
            };
            (rv, param)
        }) {
            Ok((rv, param)) => {
                if let Some(x) = &param {
                    x.back(p as *mut u8);
                }
                rv
            }
            Err(rv) => rv,
        }
    }
}
