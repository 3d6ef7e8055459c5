//! The functions PKCS#11 3.2 added that hsmux's tokens answer: key encapsulation
//! (`C_EncapsulateKey`, `C_DecapsulateKey`) and verification with the signature given
//! first (`C_VerifySignatureInit` .. `C_VerifySignatureFinal`).

use super::{ctx_of, translate_mech, with_session};
use crate::core::attr::Attr;
use crate::core::error::{err, Result};
use crate::core::mechanism::Mechanism;
use crate::core::op::Verifier;
use crate::core::out::OutBuf;
use crate::core::session::{self, Active};
use crate::core::token::Encapsulated;
use cryptoki_sys::*;

/// `C_EncapsulateKey`: the ciphertext goes to `out`; a length query or a buffer too small
/// makes no key (`None`), as the two-call convention wants.
pub fn encapsulate_key(
    h: CK_SESSION_HANDLE,
    mech: &Mechanism,
    key: CK_OBJECT_HANDLE,
    template: &[Attr],
    out: &mut OutBuf,
) -> Result<Option<CK_OBJECT_HANDLE>> {
    with_session(h, |inst, s| {
        let (slot, ctx) = ctx_of(inst, s);
        let k = inst.object(slot, key, CKR_KEY_HANDLE_INVALID)?;
        let mech = translate_mech(inst, slot, mech)?;
        match s
            .slot
            .token
            .encapsulate_key(&ctx, &mech, k, template, out.space())?
        {
            Encapsulated::NeedsRoom(n) => {
                out.report(n);
                if out.is_query() {
                    Ok(None)
                } else {
                    Err(err(CKR_BUFFER_TOO_SMALL))
                }
            }
            Encapsulated::Key { len, key } => {
                out.report(len);
                Ok(Some(inst.objects.handle_for_new(slot, key)))
            }
        }
    })
}

/// `C_DecapsulateKey`: the new secret key's handle.
pub fn decapsulate_key(
    h: CK_SESSION_HANDLE,
    mech: &Mechanism,
    key: CK_OBJECT_HANDLE,
    template: &[Attr],
    ciphertext: &[u8],
) -> Result<CK_OBJECT_HANDLE> {
    with_session(h, |inst, s| {
        let (slot, ctx) = ctx_of(inst, s);
        let k = inst.object(slot, key, CKR_KEY_HANDLE_INVALID)?;
        let mech = translate_mech(inst, slot, mech)?;
        let id = s
            .slot
            .token
            .decapsulate_key(&ctx, &mech, k, ciphertext, template)?;
        Ok(inst.objects.handle_for_new(slot, id))
    })
}

/// A verification whose signature came with the `Init`: the data calls end it with that
/// signature instead of one of their own.
struct KnownSignature {
    inner: Box<dyn Verifier>,
    signature: Vec<u8>,
}

impl Verifier for KnownSignature {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.inner.update(data)
    }
    fn finish(&mut self, _: &[u8]) -> Result<()> {
        self.inner.finish(&self.signature)
    }
    fn oneshot(&mut self, data: &[u8], _: &[u8]) -> Result<()> {
        self.inner.oneshot(data, &self.signature)
    }
}

/// `C_VerifySignatureInit`; no mechanism cancels the operation in progress.
pub fn verify_signature_init(
    h: CK_SESSION_HANDLE,
    mech: Option<&Mechanism>,
    key: CK_OBJECT_HANDLE,
    signature: &[u8],
) -> Result<()> {
    with_session(h, |inst, s| {
        let Some(mech) = mech else {
            s.verify_signature = None;
            return Ok(());
        };
        if s.verify_signature.is_some() {
            return Err(err(CKR_OPERATION_ACTIVE));
        }
        let (slot, ctx) = ctx_of(inst, s);
        let id = inst.object(slot, key, CKR_KEY_HANDLE_INVALID)?;
        let mech = translate_mech(inst, slot, mech)?;
        let inner = s.slot.token.verify_init(&ctx, &mech, id)?;
        s.verify_signature = Some(Active::new(Box::new(KnownSignature {
            inner,
            signature: signature.to_vec(),
        })));
        Ok(())
    })
}

pub fn verify_signature(h: CK_SESSION_HANDLE, data: &[u8]) -> Result<()> {
    with_session(h, |_, s| {
        session::verify_single(&mut s.verify_signature, data, &[])
    })
}
pub fn verify_signature_update(h: CK_SESSION_HANDLE, data: &[u8]) -> Result<()> {
    with_session(h, |_, s| {
        session::verify_update(&mut s.verify_signature, data)
    })
}
pub fn verify_signature_final(h: CK_SESSION_HANDLE) -> Result<()> {
    with_session(h, |_, s| {
        session::verify_final(&mut s.verify_signature, &[])
    })
}
