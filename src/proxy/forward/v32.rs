//! The functions PKCS#11 3.2 added, for a vendor that offers the 3.2 interface: key
//! encapsulation (the new key's handle translated back) and verification with the
//! signature given at `Init`. A vendor without it answers `CKR_FUNCTION_NOT_SUPPORTED`
//! (`vf32!`), as it would if the consumer had asked it for the 3.2 table itself.

use super::super::params::VendorMech;
use super::super::session::PassSession;
use super::super::stage::{In, Out, Owned, Template, Val};
use cryptoki_sys::*;

impl PassSession {
    data_in! { vf32:
        verify_signature => C_VerifySignature;
        verify_signature_update => C_VerifySignatureUpdate;
    }

    plain! { vf32:
        verify_signature_final => C_VerifySignatureFinal();
    }

    pub unsafe fn encapsulate_key(
        &self,
        mech: *mut CK_MECHANISM,
        key: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        o: *mut CK_BYTE,
        on: *mut CK_ULONG,
        ph: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let f = vf32!(self.slot, C_EncapsulateKey);
        let k = self.slot.to_vendor(key);
        let m = Owned(try_rv!(VendorMech::new(&*self.slot, mech)));
        let tpl = Owned(try_rv!(Template::new(t, n, true)));
        let out = try_rv!(Out::new(o, on));
        self.forward_out(
            "C_EncapsulateKey",
            (m, tpl, out, Val::new(ph)),
            move |vh, (m, tpl, out, h)| unsafe {
                f(
                    vh,
                    m.ptr(),
                    k,
                    tpl.ptr(),
                    tpl.count(),
                    out.ptr(),
                    out.len_ptr(),
                    h.ptr(),
                )
            },
            |rv, (m, _, out, h)| {
                m.back(&*self.slot, mech, rv);
                out.back(rv, o, on);
                // A length query makes no key: the vendor's word is left as it was.
                if !o.is_null() {
                    self.handle_back(rv, h, ph);
                }
            },
        )
    }

    pub unsafe fn decapsulate_key(
        &self,
        mech: *mut CK_MECHANISM,
        key: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        c: *mut CK_BYTE,
        cn: CK_ULONG,
        ph: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let f = vf32!(self.slot, C_DecapsulateKey);
        let k = self.slot.to_vendor(key);
        let m = Owned(try_rv!(VendorMech::new(&*self.slot, mech)));
        let tpl = Owned(try_rv!(Template::new(t, n, true)));
        let ct = try_rv!(In::new(c, cn));
        self.forward_out(
            "C_DecapsulateKey",
            (m, tpl, ct, Val::new(ph)),
            move |vh, (m, tpl, ct, h)| unsafe {
                f(
                    vh,
                    m.ptr(),
                    k,
                    tpl.ptr(),
                    tpl.count(),
                    ct.ptr(),
                    ct.len(),
                    h.ptr(),
                )
            },
            |rv, (m, _, _, h)| {
                m.back(&*self.slot, mech, rv);
                self.handle_back(rv, h, ph);
            },
        )
    }

    pub unsafe fn verify_signature_init(
        &self,
        mech: *mut CK_MECHANISM,
        key: CK_OBJECT_HANDLE,
        s: *mut CK_BYTE,
        sn: CK_ULONG,
    ) -> CK_RV {
        let f = vf32!(self.slot, C_VerifySignatureInit);
        let k = self.slot.to_vendor(key);
        let m = Owned(try_rv!(VendorMech::new(&*self.slot, mech)));
        let sig = try_rv!(In::new(s, sn));
        self.forward_out(
            "C_VerifySignatureInit",
            (m, sig),
            move |vh, (m, sig)| unsafe { f(vh, m.ptr(), k, sig.ptr(), sig.len()) },
            |rv, (m, _)| m.back(&*self.slot, mech, rv),
        )
    }

    pub unsafe fn get_session_validation_flags(
        &self,
        ty: CK_SESSION_VALIDATION_FLAGS_TYPE,
        p: *mut CK_FLAGS,
    ) -> CK_RV {
        let f = vf32!(self.slot, C_GetSessionValidationFlags);
        self.forward_out(
            "C_GetSessionValidationFlags",
            Val::new(p),
            move |vh, out| unsafe { f(vh, ty, out.ptr()) },
            |_, out| out.back(p),
        )
    }
}
