//! Encryption, decryption, message digesting, signing and verification (PKCS#11 §5.8-§5.13).
//! `*Init` with no mechanism cancels the operation in progress (PKCS#11 3.0).

use super::{ctx_of, translate_mech, with_session};
use crate::core::attr::AttrValue;
use crate::core::error::{err, Result};
use crate::core::mechanism::Mechanism;
use crate::core::out::OutBuf;
use crate::core::session::{self, Active, IvOut, ProducedIv, Session};
use cryptoki_sys::*;

/// What an `*Init` needs: the mechanism (`None` cancels) and the key handle; an encryption
/// also where the caller wants an IV the token chooses (see [`IvOut`]).
macro_rules! init_fn {
    ($name:ident, $field:ident, $backend:ident, $private_key_op:expr $(, $iv_out:ident)?) => {
        pub fn $name(
            h: CK_SESSION_HANDLE,
            mech: Option<&Mechanism>,
            key: CK_OBJECT_HANDLE,
            $($iv_out: Option<IvOut>,)?
        ) -> Result<()> {
            with_session(h, |inst, s| {
                let Some(mech) = mech else {
                    s.$field = None;
                    return Ok(());
                };
                if s.$field.is_some() {
                    return Err(err(CKR_OPERATION_ACTIVE));
                }
                let (slot, ctx) = ctx_of(inst, s);
                let id = inst.object(slot, key, CKR_KEY_HANDLE_INVALID)?;
                let mech = translate_mech(inst, slot, mech)?;
                let mut active = Active::new(s.slot.token.$backend(&ctx, &mech, id)?);
                if $private_key_op && uses_private_key(mech.mech) {
                    active.needs_auth = always_authenticate(s, &ctx, id);
                }
                $(active.iv_out = $iv_out;)?
                s.$field = Some(active);
                Ok(())
            })
        }
    };
}

init_fn!(encrypt_init, encrypt, encrypt_init, false, iv_out);
init_fn!(decrypt_init, decrypt, decrypt_init, true);
init_fn!(sign_init, sign, sign_init, true);
init_fn!(verify_init, verify, verify_init, false);

/// Mechanisms whose sign/decrypt key is a private key, the only class with
/// CKA_ALWAYS_AUTHENTICATE; symmetric ones skip the extra attribute read on the hot path.
fn uses_private_key(m: CK_MECHANISM_TYPE) -> bool {
    !matches!(
        m,
        CKM_AES_GCM
            | CKM_AES_CBC
            | CKM_AES_CBC_PAD
            | CKM_AES_ECB
            | CKM_AES_CTR
            | CKM_AES_CMAC
            | CKM_AES_CMAC_GENERAL
            | CKM_SHA_1_HMAC
            | CKM_SHA224_HMAC
            | CKM_SHA256_HMAC
            | CKM_SHA384_HMAC
            | CKM_SHA512_HMAC
            | CKM_SHA_1_HMAC_GENERAL
            | CKM_SHA224_HMAC_GENERAL
            | CKM_SHA256_HMAC_GENERAL
            | CKM_SHA384_HMAC_GENERAL
            | CKM_SHA512_HMAC_GENERAL
    )
}

/// Does the key ask for a context-specific login before each use?
fn always_authenticate(
    s: &Session,
    ctx: &crate::core::token::Ctx,
    id: crate::core::token::ObjectId,
) -> bool {
    matches!(
        s.slot.token.get_attributes(ctx, id, &[CKA_ALWAYS_AUTHENTICATE]).as_deref(),
        Ok([AttrValue::Value(v)]) if v.first().is_some_and(|b| *b != 0)
    )
}

pub fn digest_init(h: CK_SESSION_HANDLE, mech: Option<&Mechanism>) -> Result<()> {
    with_session(h, |inst, s| {
        let Some(mech) = mech else {
            s.digest = None;
            return Ok(());
        };
        if s.digest.is_some() {
            return Err(err(CKR_OPERATION_ACTIVE));
        }
        let (_, ctx) = ctx_of(inst, s);
        s.digest = Some(Active::new(s.slot.token.digest_init(&ctx, mech)?));
        Ok(())
    })
}

/// `C_Encrypt`: also the IV the token chose, when the operation ended with one.
pub fn encrypt(h: CK_SESSION_HANDLE, data: &[u8], out: &mut OutBuf) -> Result<Option<ProducedIv>> {
    with_session(h, |_, s| session::cipher_single(&mut s.encrypt, data, out))
}
pub fn encrypt_update(h: CK_SESSION_HANDLE, data: &[u8], out: &mut OutBuf) -> Result<()> {
    with_session(h, |_, s| session::cipher_update(&mut s.encrypt, data, out))
}
/// `C_EncryptFinal`: also the IV the token chose, as [`encrypt`].
pub fn encrypt_final(h: CK_SESSION_HANDLE, out: &mut OutBuf) -> Result<Option<ProducedIv>> {
    with_session(h, |_, s| session::cipher_final(&mut s.encrypt, out))
}
pub fn decrypt(h: CK_SESSION_HANDLE, data: &[u8], out: &mut OutBuf) -> Result<()> {
    with_session(h, |_, s| {
        session::cipher_single(&mut s.decrypt, data, out).map(drop)
    })
}
pub fn decrypt_update(h: CK_SESSION_HANDLE, data: &[u8], out: &mut OutBuf) -> Result<()> {
    with_session(h, |_, s| session::cipher_update(&mut s.decrypt, data, out))
}
pub fn decrypt_final(h: CK_SESSION_HANDLE, out: &mut OutBuf) -> Result<()> {
    with_session(h, |_, s| {
        session::cipher_final(&mut s.decrypt, out).map(drop)
    })
}
pub fn digest(h: CK_SESSION_HANDLE, data: &[u8], out: &mut OutBuf) -> Result<()> {
    with_session(h, |_, s| session::signer_single(&mut s.digest, data, out))
}
pub fn digest_update(h: CK_SESSION_HANDLE, data: &[u8]) -> Result<()> {
    with_session(h, |_, s| session::signer_update(&mut s.digest, data))
}
pub fn digest_final(h: CK_SESSION_HANDLE, out: &mut OutBuf) -> Result<()> {
    with_session(h, |_, s| session::signer_final(&mut s.digest, out))
}

/// `C_DigestKey`: feeds a secret key's value to the digest in progress; the value stays
/// inside the module.
pub fn digest_key(h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> Result<()> {
    with_session(h, |inst, s| {
        if s.digest.is_none() {
            return Err(err(CKR_OPERATION_NOT_INITIALIZED));
        }
        let (slot, ctx) = ctx_of(inst, s);
        let id = inst.object(slot, key, CKR_KEY_HANDLE_INVALID)?;
        let value = s.slot.token.digest_key_value(&ctx, id)?;
        session::signer_update(&mut s.digest, &value)
    })
}

pub fn sign(h: CK_SESSION_HANDLE, data: &[u8], out: &mut OutBuf) -> Result<()> {
    with_session(h, |_, s| session::signer_single(&mut s.sign, data, out))
}
pub fn sign_update(h: CK_SESSION_HANDLE, data: &[u8]) -> Result<()> {
    with_session(h, |_, s| session::signer_update(&mut s.sign, data))
}
pub fn sign_final(h: CK_SESSION_HANDLE, out: &mut OutBuf) -> Result<()> {
    with_session(h, |_, s| session::signer_final(&mut s.sign, out))
}
pub fn verify(h: CK_SESSION_HANDLE, data: &[u8], sig: &[u8]) -> Result<()> {
    with_session(h, |_, s| session::verify_single(&mut s.verify, data, sig))
}
pub fn verify_update(h: CK_SESSION_HANDLE, data: &[u8]) -> Result<()> {
    with_session(h, |_, s| session::verify_update(&mut s.verify, data))
}
pub fn verify_final(h: CK_SESSION_HANDLE, sig: &[u8]) -> Result<()> {
    with_session(h, |_, s| session::verify_final(&mut s.verify, sig))
}

/// `C_SessionCancel` (3.0): ends the operations named by `flags`.
pub fn session_cancel(h: CK_SESSION_HANDLE, flags: CK_FLAGS) -> Result<()> {
    with_session(h, |_, s| {
        if flags & CKF_ENCRYPT != 0 {
            s.encrypt = None;
        }
        if flags & CKF_DECRYPT != 0 {
            s.decrypt = None;
        }
        if flags & CKF_SIGN != 0 {
            s.sign = None;
        }
        if flags & CKF_VERIFY != 0 {
            s.verify = None;
            s.verify_signature = None;
        }
        if flags & CKF_DIGEST != 0 {
            s.digest = None;
        }
        if flags & CKF_FIND_OBJECTS != 0 {
            s.find = None;
        }
        Ok(())
    })
}
