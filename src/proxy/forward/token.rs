//! Slot and token information, the mechanism list, `C_InitToken`, and the vendor's
//! sessions: the calls on our token's vendor slot id.

use super::super::slot::ModuleSlot;
use super::super::stage::{In, List, Val};
use cryptoki_sys::*;

impl ModuleSlot {
    pub unsafe fn get_slot_info(&self, p: *mut CK_SLOT_INFO) -> CK_RV {
        match self.vendor_slot() {
            Ok(vs) => {
                let f = vf!(self, C_GetSlotInfo);
                self.forward_out(
                    "C_GetSlotInfo",
                    vs,
                    Val::new(p),
                    move |vs, out| unsafe { f(vs, out.ptr()) },
                    |_, out| out.back(p),
                )
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
        let vs = try_rv!(self.vendor_slot());
        let f = vf!(self, C_GetTokenInfo);
        self.forward_out(
            "C_GetTokenInfo",
            vs,
            Val::new(p),
            move |vs, out| unsafe { f(vs, out.ptr()) },
            |rv, out| {
                if rv == CKR_OK {
                    if let Some(mut t) = out.get() {
                        t.label = crate::core::text::padded(&self.label);
                        out.set(t);
                    }
                }
                out.back(p);
            },
        )
    }

    pub unsafe fn get_mechanism_list(&self, p: *mut CK_MECHANISM_TYPE, n: *mut CK_ULONG) -> CK_RV {
        let vs = try_rv!(self.vendor_slot());
        let f = vf!(self, C_GetMechanismList);
        let count = Val::new(n);
        let max = count.get().unwrap_or(0);
        let list = try_rv!(List::new(p, max));
        self.forward_out(
            "C_GetMechanismList",
            vs,
            (list, count),
            move |vs, (list, count)| unsafe { f(vs, list.ptr(), count.ptr()) },
            |rv, (list, count)| {
                count.back(n);
                if rv == CKR_OK {
                    list.back(p, count.get().unwrap_or(0), |m| m);
                }
            },
        )
    }

    pub unsafe fn get_mechanism_info(
        &self,
        m: CK_MECHANISM_TYPE,
        p: *mut CK_MECHANISM_INFO,
    ) -> CK_RV {
        let vs = try_rv!(self.vendor_slot());
        let f = vf!(self, C_GetMechanismInfo);
        self.forward_out(
            "C_GetMechanismInfo",
            vs,
            Val::new(p),
            move |vs, out| unsafe { f(vs, m, out.ptr()) },
            |_, out| out.back(p),
        )
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
        let vs = try_rv!(self.vendor_slot());
        let f = vf!(self, C_InitToken);
        let pin = try_rv!(In::new(pin, len));
        let label = try_rv!(In::new(label, if label.is_null() { 0 } else { 32 }));
        self.forward_in(
            "C_InitToken",
            vs,
            (pin, label),
            move |vs, (pin, label)| unsafe { f(vs, pin.ptr(), pin.len(), label.ptr()) },
        )
    }

    /// `C_OpenSession` at the vendor; the vendor's handle on success. Notification
    /// callbacks are not passed on: the vendor would report its own session handles.
    pub fn open_session(
        &self,
        flags: CK_FLAGS,
        want_handle: bool,
    ) -> Result<CK_SESSION_HANDLE, CK_RV> {
        let vs = self.vendor_slot()?;
        let f = self.vendor_fn(|fl| fl.C_OpenSession)?;
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
        self.forward_in("C_CloseSession", vh, (), move |vh, _| unsafe { f(vh) })
    }
}
