//! Message-based encryption (PKCS#11 3.0 §5.13-§5.14) for AES-GCM: each message carries
//! its own IV, AAD and tag in `CK_GCM_MESSAGE_PARAMS`. hsmux runs each message as one
//! single-part `CKM_AES_GCM` operation on the slot's token, so every backend that offers
//! AES-GCM offers this too. `C_EncryptMessageBegin`/`Next` (messages in parts) are not
//! offered.

use super::{ctx_of, with_session};
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{MechParam, Mechanism};
use crate::core::out::OutBuf;
use crate::core::session::MessageState;
use cryptoki_sys::*;

/// The per-message parameters, decoded from `CK_GCM_MESSAGE_PARAMS`.
pub struct GcmMessage {
    pub iv: Vec<u8>,
    pub iv_fixed_bits: CK_ULONG,
    pub generator: CK_GENERATOR_FUNCTION,
    pub tag_bits: CK_ULONG,
    /// The tag to check (decryption).
    pub tag: Vec<u8>,
}

/// What a message operation gives back besides the data: the tag (encryption) and the IV
/// the token generated, if it did.
#[derive(Default)]
pub struct MessageExtras {
    pub tag: Vec<u8>,
    pub iv: Option<Vec<u8>>,
}

/// `C_MessageEncryptInit` / `C_MessageDecryptInit`; `None` ends nothing here (3.0 leaves
/// cancelling to `*Final`), so it is an argument error.
pub fn init(
    h: CK_SESSION_HANDLE,
    encrypt: bool,
    mech: CK_MECHANISM_TYPE,
    key: CK_OBJECT_HANDLE,
) -> Result<()> {
    with_session(h, |inst, s| {
        let slot_state = if encrypt {
            &s.msg_encrypt
        } else {
            &s.msg_decrypt
        };
        if slot_state.is_some() {
            return Err(err(CKR_OPERATION_ACTIVE));
        }
        if mech != CKM_AES_GCM {
            return Err(Error::logged(
                CKR_MECHANISM_INVALID,
                "message-based encryption is offered for CKM_AES_GCM only",
            ));
        }
        let (slot, ctx) = ctx_of(inst, s);
        let id = inst.object(slot, key, CKR_KEY_HANDLE_INVALID)?;
        // A trial init checks the key (type, CKA_ENCRYPT/CKA_DECRYPT) now, as *Init must.
        let probe = Mechanism::with(
            CKM_AES_GCM,
            MechParam::Gcm {
                iv: vec![0; 12],
                iv_bits: 96,
                aad: Vec::new(),
                tag_bits: 128,
            },
        );
        if encrypt {
            s.slot.token.encrypt_init(&ctx, &probe, id)?;
        } else {
            s.slot.token.decrypt_init(&ctx, &probe, id)?;
        }
        let st = Some(MessageState {
            key: id,
            counter: 0,
        });
        if encrypt {
            s.msg_encrypt = st;
        } else {
            s.msg_decrypt = st;
        }
        Ok(())
    })
}

/// Fills the IV bits after the fixed ones as `generator` asks (SP 800-38D §8.2).
pub fn generate_iv(p: &GcmMessage, counter: u64) -> Result<Vec<u8>> {
    let mut iv = p.iv.clone();
    let fixed = p.iv_fixed_bits as usize;
    if fixed > iv.len() * 8 {
        return Err(err(CKR_MECHANISM_PARAM_INVALID));
    }
    let mut fresh = vec![0u8; iv.len()];
    match p.generator {
        CKG_GENERATE_RANDOM => {
            aws_lc_rs::rand::fill(&mut fresh).map_err(|_| err(CKR_FUNCTION_FAILED))?
        }
        CKG_GENERATE | CKG_GENERATE_COUNTER => {
            let c = counter.to_be_bytes();
            let n = c.len().min(fresh.len());
            let at = fresh.len() - n;
            fresh[at..].copy_from_slice(&c[c.len() - n..]);
        }
        _ => {
            return Err(Error::logged(
                CKR_MECHANISM_PARAM_INVALID,
                "unsupported IV generator",
            ))
        }
    }
    for (i, b) in iv.iter_mut().enumerate() {
        for bit in 0..8 {
            let pos = i * 8 + bit;
            if pos >= fixed {
                let mask = 0x80u8 >> bit;
                *b = (*b & !mask) | (fresh[i] & mask);
            }
        }
    }
    Ok(iv)
}

/// `C_EncryptMessage` / `C_DecryptMessage`.
pub fn run(
    h: CK_SESSION_HANDLE,
    encrypt: bool,
    p: &GcmMessage,
    aad: &[u8],
    input: &[u8],
    out: &mut OutBuf,
) -> Result<MessageExtras> {
    with_session(h, |inst, s| {
        let st = if encrypt {
            s.msg_encrypt.as_mut()
        } else {
            s.msg_decrypt.as_mut()
        };
        let st = st.ok_or_else(|| err(CKR_OPERATION_NOT_INITIALIZED))?;
        let key = st.key;
        // GCM output is as long as its input; answer queries before generating an IV.
        if !out.fits(input.len()) {
            out.report(input.len());
            return if out.is_query() {
                Ok(MessageExtras::default())
            } else {
                Err(err(CKR_BUFFER_TOO_SMALL))
            };
        }
        let tag_len = (p.tag_bits / 8) as usize;
        let generated = encrypt && p.generator != CKG_NO_GENERATE;
        let iv = if generated {
            st.counter += 1;
            generate_iv(p, st.counter)?
        } else {
            p.iv.clone()
        };
        let mech = Mechanism::with(
            CKM_AES_GCM,
            MechParam::Gcm {
                iv: iv.clone(),
                iv_bits: (iv.len() * 8) as CK_ULONG,
                aad: aad.to_vec(),
                tag_bits: p.tag_bits,
            },
        );
        let (_, ctx) = ctx_of(inst, s);
        if encrypt {
            let mut op = s.slot.token.encrypt_init(&ctx, &mech, key)?;
            let mut sealed = op.oneshot(input)?;
            let tag = sealed.split_off(sealed.len().saturating_sub(tag_len));
            out.put(&sealed)?;
            Ok(MessageExtras {
                tag,
                iv: generated.then_some(iv),
            })
        } else {
            if p.tag.len() != tag_len {
                return Err(err(CKR_MECHANISM_PARAM_INVALID));
            }
            let mut op = s.slot.token.decrypt_init(&ctx, &mech, key)?;
            let plain = op.oneshot(&[input, &p.tag].concat())?;
            out.put(&plain)?;
            Ok(MessageExtras::default())
        }
    })
}

/// `C_MessageEncryptFinal` / `C_MessageDecryptFinal`.
pub fn finish(h: CK_SESSION_HANDLE, encrypt: bool) -> Result<()> {
    with_session(h, |_, s| {
        let st = if encrypt {
            &mut s.msg_encrypt
        } else {
            &mut s.msg_decrypt
        };
        st.take()
            .map(|_| ())
            .ok_or_else(|| err(CKR_OPERATION_NOT_INITIALIZED))
    })
}
