//! A session's own calls: PINs, login and logout, session info, operation state and
//! cancelling. The configured PIN of a slot is given to the vendor here.

use super::super::session::PassSession;
use super::super::stage::{In, Out, Val};
use cryptoki_sys::*;

impl PassSession {
    plain! { vf:
        logout => C_Logout();
        get_function_status => C_GetFunctionStatus();
        cancel_function => C_CancelFunction();
    }

    plain! { vf3:
        session_cancel => C_SessionCancel(flags: CK_FLAGS);
    }

    data_out! { vf:
        get_operation_state => C_GetOperationState;
    }

    /// The vendor's session info with hsmux's slot id. Inlined into `C_GetSessionInfo`
    /// across codegen units: the cheapest call, whose added cost `benches/passthrough.rs`
    /// measures.
    #[inline]
    pub unsafe fn get_session_info(&self, p: *mut CK_SESSION_INFO) -> CK_RV {
        let f = vf!(self.slot, C_GetSessionInfo);
        self.forward_out(
            "C_GetSessionInfo",
            Val::new(p),
            move |vh, out| unsafe { f(vh, out.ptr()) },
            |rv, out| {
                if rv == CKR_OK {
                    if let Some(mut i) = out.get() {
                        i.slotID = self.slot.id;
                        out.set(i);
                    }
                }
                out.back(p);
            },
        )
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
        let state = try_rv!(In::new(p, n));
        self.forward_in("C_SetOperationState", state, move |vh, state| unsafe {
            f(vh, state.ptr(), state.len(), enc, auth)
        })
    }

    /// `C_InitPIN`, the PIN's length checked against the vendor token's maximum first.
    pub unsafe fn init_pin(&self, p: *mut CK_UTF8CHAR, n: CK_ULONG) -> CK_RV {
        if !p.is_null() {
            if let Err(rv) = self.slot.check_pin_len(n) {
                return rv;
            }
        }
        let f = vf!(self.slot, C_InitPIN);
        let pin = try_rv!(In::new(p, n));
        self.forward_in("C_InitPIN", pin, move |vh, pin| unsafe {
            f(vh, pin.ptr(), pin.len())
        })
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
        let old = try_rv!(In::new(po, no));
        let new = try_rv!(In::new(pn, nn));
        self.forward_in("C_SetPIN", (old, new), move |vh, (old, new)| unsafe {
            f(vh, old.ptr(), old.len(), new.ptr(), new.len())
        })
    }

    /// `C_Login`: with the slot's configured PIN for the user when there is one.
    pub unsafe fn login(&self, user: CK_USER_TYPE, pin: *mut CK_UTF8CHAR, n: CK_ULONG) -> CK_RV {
        let f = vf!(self.slot, C_Login);
        let pin = try_rv!(self.pin_for(user, pin, n));
        self.forward_in("C_Login", pin, move |vh, pin| {
            let rv = unsafe { f(vh, user, pin.ptr(), pin.len()) };
            pin.wipe();
            rv
        })
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
        let pin = try_rv!(self.pin_for(user, pin, n));
        let name = try_rv!(In::new(name, name_len));
        self.forward_in("C_LoginUser", (pin, name), move |vh, (pin, name)| {
            let rv = unsafe { f(vh, user, pin.ptr(), pin.len(), name.ptr(), name.len()) };
            pin.wipe();
            rv
        })
    }

    /// The PIN the vendor gets, staged: the slot's configured one for `user`, else the
    /// consumer's.
    unsafe fn pin_for(
        &self,
        user: CK_USER_TYPE,
        pin: *mut CK_UTF8CHAR,
        n: CK_ULONG,
    ) -> Result<In, CK_RV> {
        match self.configured_pin(user, pin, n)? {
            None => In::new(pin, n),
            Some(p) => In::new(p.as_ptr(), p.len() as CK_ULONG),
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
}
