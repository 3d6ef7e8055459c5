//! Key management and random numbers (PKCS#11 §5.14, §5.15).

use super::{ctx_of, translate_mech, with_session};
use crate::core::attr::Attr;
use crate::core::error::{err, Result};
use crate::core::mechanism::Mechanism;
use crate::core::out::OutBuf;
use crate::core::token::{Ctx, ObjectId, Token};
use cryptoki_sys::*;

pub fn generate_key(
    h: CK_SESSION_HANDLE,
    mech: &Mechanism,
    template: &[Attr],
) -> Result<CK_OBJECT_HANDLE> {
    with_session(h, |inst, s| {
        let (slot, ctx) = ctx_of(inst, s);
        let id = s.slot.token.generate_key(&ctx, mech, template)?;
        Ok(inst.objects.handle_for_new(slot, id))
    })
}

pub fn generate_key_pair(
    h: CK_SESSION_HANDLE,
    mech: &Mechanism,
    public: &[Attr],
    private: &[Attr],
) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
    with_session(h, |inst, s| {
        let (slot, ctx) = ctx_of(inst, s);
        let (p, q) = s
            .slot
            .token
            .generate_key_pair(&ctx, mech, public, private)?;
        Ok((
            inst.objects.handle_for_new(slot, p),
            inst.objects.handle_for_new(slot, q),
        ))
    })
}

pub fn wrap_key(
    h: CK_SESSION_HANDLE,
    mech: &Mechanism,
    wrapping: CK_OBJECT_HANDLE,
    key: CK_OBJECT_HANDLE,
    out: &mut OutBuf,
) -> Result<()> {
    with_session(h, |inst, s| {
        let (slot, ctx) = ctx_of(inst, s);
        let w = inst.object(slot, wrapping, CKR_WRAPPING_KEY_HANDLE_INVALID)?;
        let k = inst.object(slot, key, CKR_KEY_HANDLE_INVALID)?;
        let mech = translate_mech(inst, slot, mech)?;
        let wrapped = s.slot.token.wrap_key(&ctx, &mech, w, k)?;
        out.put(&wrapped)
    })
}

pub fn unwrap_key(
    h: CK_SESSION_HANDLE,
    mech: &Mechanism,
    unwrapping: CK_OBJECT_HANDLE,
    wrapped: &[u8],
    template: &[Attr],
) -> Result<CK_OBJECT_HANDLE> {
    let bad = CKR_UNWRAPPING_KEY_HANDLE_INVALID;
    with_key(h, mech, unwrapping, bad, |token, ctx, mech, u| {
        token.unwrap_key(ctx, mech, u, wrapped, template)
    })
}

/// C_DeriveKey: the key `template` describes, and the handles of the additional keys a
/// mechanism's parameter asks for (SP 800-108), in their order.
pub fn derive_key(
    h: CK_SESSION_HANDLE,
    mech: &Mechanism,
    base: CK_OBJECT_HANDLE,
    template: &[Attr],
) -> Result<(CK_OBJECT_HANDLE, Vec<CK_OBJECT_HANDLE>)> {
    with_session(h, |inst, s| {
        let (slot, ctx) = ctx_of(inst, s);
        let b = inst.object(slot, base, CKR_KEY_HANDLE_INVALID)?;
        let mech = translate_mech(inst, slot, mech)?;
        let ids = s.slot.token.derive_keys(&ctx, &mech, b, template)?;
        let mut handles = ids
            .into_iter()
            .map(|id| inst.objects.handle_for_new(slot, id));
        let first = handles.next().ok_or_else(|| err(CKR_GENERAL_ERROR))?;
        Ok((first, handles.collect()))
    })
}

/// A call that makes one object with a key (`C_UnwrapKey` with the unwrapping key): `key` is looked up (`bad_key` when the session does
/// not see it), handles in the mechanism's parameter translated, and the new object's
/// handle returned.
fn with_key(
    h: CK_SESSION_HANDLE,
    mech: &Mechanism,
    key: CK_OBJECT_HANDLE,
    bad_key: CK_RV,
    make: impl FnOnce(&dyn Token, &Ctx, &Mechanism, ObjectId) -> Result<ObjectId>,
) -> Result<CK_OBJECT_HANDLE> {
    with_session(h, |inst, s| {
        let (slot, ctx) = ctx_of(inst, s);
        let k = inst.object(slot, key, bad_key)?;
        let mech = translate_mech(inst, slot, mech)?;
        let id = make(&*s.slot.token, &ctx, &mech, k)?;
        Ok(inst.objects.handle_for_new(slot, id))
    })
}

pub fn seed_random(h: CK_SESSION_HANDLE, seed: &[u8]) -> Result<()> {
    with_session(h, |_, s| s.slot.token.seed_random(seed))
}

pub fn generate_random(h: CK_SESSION_HANDLE, out: &mut [u8]) -> Result<()> {
    with_session(h, |_, s| s.slot.token.generate_random(out))
}
