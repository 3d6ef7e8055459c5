//! Objects: creating, copying and destroying them, their attributes and size, and the
//! search. The vendor's object handles go back as hsmux's.

use super::super::session::PassSession;
use super::super::stage::{List, Owned, Template, Val};
use cryptoki_sys::*;

impl PassSession {
    plain! { vf:
        find_objects_final => C_FindObjectsFinal();
    }

    pub unsafe fn create_object(
        &self,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        ph: *mut CK_OBJECT_HANDLE,
    ) -> CK_RV {
        let f = vf!(self.slot, C_CreateObject);
        let tpl = Owned(try_rv!(Template::new(t, n, true)));
        self.forward_out(
            "C_CreateObject",
            (tpl, Val::new(ph)),
            move |vh, (tpl, out)| unsafe { f(vh, tpl.ptr(), tpl.count(), out.ptr()) },
            |rv, (_, out)| self.handle_back(rv, out, ph),
        )
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
        let tpl = Owned(try_rv!(Template::new(t, n, true)));
        self.forward_out(
            "C_CopyObject",
            (tpl, Val::new(ph)),
            move |vh, (tpl, out)| unsafe { f(vh, obj, tpl.ptr(), tpl.count(), out.ptr()) },
            |rv, (_, out)| self.handle_back(rv, out, ph),
        )
    }

    pub unsafe fn destroy_object(&self, obj: CK_OBJECT_HANDLE) -> CK_RV {
        let f = vf!(self.slot, C_DestroyObject);
        let vobj = self.slot.to_vendor(obj);
        let rv = self.forward_in("C_DestroyObject", (), move |vh, _| unsafe { f(vh, vobj) });
        if rv == CKR_OK {
            self.slot.objects.forget(self.slot.key, vobj);
        }
        rv
    }

    pub unsafe fn get_object_size(&self, obj: CK_OBJECT_HANDLE, p: *mut CK_ULONG) -> CK_RV {
        let f = vf!(self.slot, C_GetObjectSize);
        let obj = self.slot.to_vendor(obj);
        self.forward_out(
            "C_GetObjectSize",
            Val::new(p),
            move |vh, out| unsafe { f(vh, obj, out.ptr()) },
            |_, out| out.back(p),
        )
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
        let tpl = Owned(try_rv!(Template::new(t, n, false)));
        self.forward_out(
            "C_GetAttributeValue",
            tpl,
            move |vh, tpl| unsafe { f(vh, obj, tpl.ptr(), tpl.count()) },
            |_, tpl| tpl.back(t),
        )
    }

    pub unsafe fn set_attribute_value(
        &self,
        obj: CK_OBJECT_HANDLE,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
    ) -> CK_RV {
        let f = vf!(self.slot, C_SetAttributeValue);
        let obj = self.slot.to_vendor(obj);
        let tpl = Owned(try_rv!(Template::new(t, n, true)));
        self.forward_in("C_SetAttributeValue", tpl, move |vh, tpl| unsafe {
            f(vh, obj, tpl.ptr(), tpl.count())
        })
    }

    pub unsafe fn find_objects_init(&self, t: *mut CK_ATTRIBUTE, n: CK_ULONG) -> CK_RV {
        let f = vf!(self.slot, C_FindObjectsInit);
        let tpl = Owned(try_rv!(Template::new(t, n, true)));
        self.forward_in("C_FindObjectsInit", tpl, move |vh, tpl| unsafe {
            f(vh, tpl.ptr(), tpl.count())
        })
    }

    /// The vendor fills our array; its handles go back as hsmux's.
    pub unsafe fn find_objects(
        &self,
        ph: *mut CK_OBJECT_HANDLE,
        max: CK_ULONG,
        count: *mut CK_ULONG,
    ) -> CK_RV {
        let f = vf!(self.slot, C_FindObjects);
        let list = try_rv!(List::new(ph, max));
        self.forward_out(
            "C_FindObjects",
            (list, Val::new(count)),
            move |vh, (list, n)| unsafe { f(vh, list.ptr(), max, n.ptr()) },
            |rv, (list, n)| {
                n.back(count);
                if rv == CKR_OK {
                    if let Some(k) = n.get() {
                        list.back(ph, k.min(max), |h| self.slot.to_hsmux(h));
                    }
                }
            },
        )
    }
}
