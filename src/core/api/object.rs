//! Object management (PKCS#11 §5.7).

use super::{ctx_of, with_session};
use crate::core::attr::{Attr, AttrValue};
use crate::core::error::{err, Result};
use crate::core::session::FindState;
use cryptoki_sys::*;

pub fn create_object(h: CK_SESSION_HANDLE, template: &[Attr]) -> Result<CK_OBJECT_HANDLE> {
    with_session(h, |inst, s| {
        let (slot, ctx) = ctx_of(inst, s);
        let id = s.slot.token.create_object(&ctx, template)?;
        Ok(inst.objects.handle_for_new(slot, id))
    })
}

pub fn copy_object(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    template: &[Attr],
) -> Result<CK_OBJECT_HANDLE> {
    with_session(h, |inst, s| {
        let (slot, ctx) = ctx_of(inst, s);
        let id = inst.object(slot, obj, CKR_OBJECT_HANDLE_INVALID)?;
        let new = s.slot.token.copy_object(&ctx, id, template)?;
        Ok(inst.objects.handle_for_new(slot, new))
    })
}

pub fn destroy_object(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE) -> Result<()> {
    with_session(h, |inst, s| {
        let (slot, ctx) = ctx_of(inst, s);
        let id = inst.object(slot, obj, CKR_OBJECT_HANDLE_INVALID)?;
        s.slot.token.destroy_object(&ctx, id)?;
        inst.objects.forget(slot, id);
        Ok(())
    })
}

pub fn object_size(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE) -> Result<CK_ULONG> {
    with_session(h, |inst, s| {
        let (slot, ctx) = ctx_of(inst, s);
        let id = inst.object(slot, obj, CKR_OBJECT_HANDLE_INVALID)?;
        s.slot.token.object_size(&ctx, id)
    })
}

pub fn get_attributes(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    types: &[CK_ATTRIBUTE_TYPE],
) -> Result<Vec<AttrValue>> {
    with_session(h, |inst, s| {
        let (slot, ctx) = ctx_of(inst, s);
        let id = inst.object(slot, obj, CKR_OBJECT_HANDLE_INVALID)?;
        s.slot.token.get_attributes(&ctx, id, types)
    })
}

pub fn set_attributes(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    template: &[Attr],
) -> Result<()> {
    with_session(h, |inst, s| {
        let (slot, ctx) = ctx_of(inst, s);
        let id = inst.object(slot, obj, CKR_OBJECT_HANDLE_INVALID)?;
        s.slot.token.set_attributes(&ctx, id, template)
    })
}

pub fn find_init(h: CK_SESSION_HANDLE, template: &[Attr]) -> Result<()> {
    with_session(h, |inst, s| {
        if s.find.is_some() {
            return Err(err(CKR_OPERATION_ACTIVE));
        }
        let (_, ctx) = ctx_of(inst, s);
        let ids = s.slot.token.find_objects(&ctx, template)?;
        s.find = Some(FindState { ids, pos: 0 });
        Ok(())
    })
}

pub fn find(h: CK_SESSION_HANDLE, max: usize) -> Result<Vec<CK_OBJECT_HANDLE>> {
    with_session(h, |inst, s| {
        let slot = inst.slot_position(&s.slot);
        let f = s
            .find
            .as_mut()
            .ok_or_else(|| err(CKR_OPERATION_NOT_INITIALIZED))?;
        let end = (f.pos + max).min(f.ids.len());
        let out = f.ids[f.pos..end]
            .iter()
            .map(|id| inst.objects.handle_for(slot, *id))
            .collect();
        f.pos = end;
        Ok(out)
    })
}

pub fn find_final(h: CK_SESSION_HANDLE) -> Result<()> {
    with_session(h, |_, s| {
        s.find
            .take()
            .map(|_| ())
            .ok_or_else(|| err(CKR_OPERATION_NOT_INITIALIZED))
    })
}
