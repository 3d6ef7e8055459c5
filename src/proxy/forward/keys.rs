//! Keys: generating them (and key pairs), wrapping, unwrapping and deriving. The
//! mechanism's handles and the new keys' handles are translated both ways.

use super::super::params::VendorMech;
use super::super::session::PassSession;
use super::super::stage::{In, Out, Owned, Template, Val};
use cryptoki_sys::*;

impl PassSession {
    pub unsafe fn generate_key(
        &self,
        mech: *mut CK_MECHANISM,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        ph: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let f = vf!(self.slot, C_GenerateKey);
        let m = Owned(try_rv!(VendorMech::new(&*self.slot, mech)));
        let tpl = Owned(try_rv!(Template::new(t, n, true)));
        self.forward_out(
            "C_GenerateKey",
            (m, tpl, Val::new(ph)),
            move |vh, (m, tpl, out)| unsafe { f(vh, m.ptr(), tpl.ptr(), tpl.count(), out.ptr()) },
            |rv, (m, _, out)| {
                m.back(&*self.slot, mech, rv);
                self.handle_back(rv, out, ph);
            },
        )
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
        let m = Owned(try_rv!(VendorMech::new(&*self.slot, mech)));
        let pt = Owned(try_rv!(Template::new(tp, np, true)));
        let st = Owned(try_rv!(Template::new(ts, ns, true)));
        self.forward_out(
            "C_GenerateKeyPair",
            (m, pt, st, Val::new(hp), Val::new(hs)),
            move |vh, (m, pt, st, op, os)| unsafe {
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
            },
            |rv, (m, _, _, op, os)| {
                m.back(&*self.slot, mech, rv);
                self.handle_back(rv, op, hp);
                self.handle_back(rv, os, hs);
            },
        )
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
        let m = Owned(try_rv!(VendorMech::new(&*self.slot, mech)));
        let out = try_rv!(Out::new(o, on));
        self.forward_out(
            "C_WrapKey",
            (m, out),
            move |vh, (m, out)| unsafe { f(vh, m.ptr(), w, k, out.ptr(), out.len_ptr()) },
            |rv, (m, out)| {
                m.back(&*self.slot, mech, rv);
                out.back(rv, o, on);
            },
        )
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
        let m = Owned(try_rv!(VendorMech::new(&*self.slot, mech)));
        let wrapped = try_rv!(In::new(d, dn));
        let tpl = Owned(try_rv!(Template::new(t, n, true)));
        self.forward_out(
            "C_UnwrapKey",
            (m, wrapped, tpl, Val::new(ph)),
            move |vh, (m, wrapped, tpl, out)| unsafe {
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
            },
            |rv, (m, _, _, out)| {
                m.back(&*self.slot, mech, rv);
                self.handle_back(rv, out, ph);
            },
        )
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
        let m = Owned(try_rv!(VendorMech::new(&*self.slot, mech)));
        let tpl = Owned(try_rv!(Template::new(t, n, true)));
        self.forward_out(
            "C_DeriveKey",
            (m, tpl, Val::new(ph)),
            move |vh, (m, tpl, out)| unsafe {
                f(vh, m.ptr(), b, tpl.ptr(), tpl.count(), out.ptr())
            },
            |rv, (m, _, out)| {
                m.back(&*self.slot, mech, rv);
                self.handle_back(rv, out, ph);
            },
        )
    }
}
