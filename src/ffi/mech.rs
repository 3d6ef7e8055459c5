//! `CK_MECHANISM` to the core's [`Mechanism`]: the parameter structures hsmux knows are
//! decoded (their size checked), any other parameter is passed on as bytes.

use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{is_rsa_pss, MechParam, Mechanism, OaepParams, PssParams};
use crate::core::session::IvOut;
use cryptoki_sys::*;
use std::mem::size_of;

use super::bounds::GcmParams240;

/// A buffer inside a parameter, whose length [`super::bounds::mechanism`] has checked.
unsafe fn bytes(p: *const u8, len: CK_ULONG) -> Result<Vec<u8>> {
    super::bounds::copy(super::in_bytes(p, len).map_err(|_| err(CKR_MECHANISM_PARAM_INVALID))?)
}

unsafe fn param<T>(m: &CK_MECHANISM) -> Result<&T> {
    if m.pParameter.is_null() || m.ulParameterLen as usize != size_of::<T>() {
        return Err(Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            format!(
                "mechanism 0x{:x}: parameter must be a {}-byte structure",
                m.mechanism,
                size_of::<T>()
            ),
        ));
    }
    Ok(&*(m.pParameter as *const T))
}

/// Where the IV of a `CKM_AES_GCM` mechanism lives in the consumer's memory (`pIv`,
/// `ulIvLen`), for a token that chooses the IV and writes it back there.
pub(crate) unsafe fn gcm_iv_out(p: *const CK_MECHANISM) -> Option<IvOut> {
    if p.is_null() {
        return None;
    }
    let m = &*p;
    if m.mechanism != CKM_AES_GCM || m.pParameter.is_null() {
        return None;
    }
    let (iv, len) = if m.ulParameterLen as usize == size_of::<GcmParams240>() {
        let g = &*(m.pParameter as *const GcmParams240);
        (g.p_iv, g.ul_iv_len)
    } else if m.ulParameterLen as usize == size_of::<CK_GCM_PARAMS>() {
        let g = &*(m.pParameter as *const CK_GCM_PARAMS);
        (g.pIv, g.ulIvLen)
    } else {
        return None;
    };
    (!iv.is_null() && len > 0).then_some(IvOut {
        addr: iv as usize,
        len: len as usize,
    })
}

/// Decodes a mechanism; `None` for a NULL pointer (which cancels an operation in 3.0).
pub(crate) unsafe fn mechanism(p: *const CK_MECHANISM) -> Result<Option<Mechanism>> {
    if p.is_null() {
        return Ok(None);
    }
    super::bounds::mechanism(p)?;
    let m = &*p;
    let no_param = m.pParameter.is_null() || m.ulParameterLen == 0;
    let param = match m.mechanism {
        CKM_AES_GCM => {
            if m.ulParameterLen as usize == size_of::<GcmParams240>() && !m.pParameter.is_null() {
                let g = &*(m.pParameter as *const GcmParams240);
                MechParam::Gcm {
                    iv: bytes(g.p_iv, g.ul_iv_len)?,
                    iv_bits: g.ul_iv_len * 8,
                    aad: bytes(g.p_aad, g.ul_aad_len)?,
                    tag_bits: g.ul_tag_bits,
                }
            } else {
                let g = param::<CK_GCM_PARAMS>(m)?;
                MechParam::Gcm {
                    iv: bytes(g.pIv, g.ulIvLen)?,
                    iv_bits: g.ulIvBits,
                    aad: bytes(g.pAAD, g.ulAADLen)?,
                    tag_bits: g.ulTagBits,
                }
            }
        }
        CKM_RSA_PKCS_OAEP => {
            let o = param::<CK_RSA_PKCS_OAEP_PARAMS>(m)?;
            MechParam::Oaep(OaepParams {
                hash: o.hashAlg,
                mgf: o.mgf,
                source: o.source,
                source_data: bytes(o.pSourceData as *const u8, o.ulSourceDataLen)?,
            })
        }
        t if is_rsa_pss(t) => {
            let s = param::<CK_RSA_PKCS_PSS_PARAMS>(m)?;
            MechParam::Pss(PssParams {
                hash: s.hashAlg,
                mgf: s.mgf,
                salt_len: s.sLen,
            })
        }
        CKM_ECDH1_DERIVE | CKM_ECDH1_COFACTOR_DERIVE => {
            let e = param::<CK_ECDH1_DERIVE_PARAMS>(m)?;
            MechParam::Ecdh1 {
                kdf: e.kdf,
                shared_data: bytes(e.pSharedData, e.ulSharedDataLen)?,
                public_data: bytes(e.pPublicData, e.ulPublicDataLen)?,
            }
        }
        // CK_KEY_DERIVATION_STRING_DATA: the data it points to, not its own bytes.
        CKM_CONCATENATE_BASE_AND_DATA
        | CKM_CONCATENATE_DATA_AND_BASE
        | CKM_XOR_BASE_AND_DATA
        | CKM_AES_ECB_ENCRYPT_DATA
        | CKM_DES_ECB_ENCRYPT_DATA
        | CKM_DES3_ECB_ENCRYPT_DATA => {
            let d = param::<CK_KEY_DERIVATION_STRING_DATA>(m)?;
            MechParam::Data(bytes(d.pData, d.ulLen)?)
        }
        CKM_AES_CBC_ENCRYPT_DATA => {
            let d = param::<CK_AES_CBC_ENCRYPT_DATA_PARAMS>(m)?;
            MechParam::AesCbcData {
                iv: d.iv,
                data: bytes(d.pData, d.length)?,
            }
        }
        CKM_DES_CBC_ENCRYPT_DATA | CKM_DES3_CBC_ENCRYPT_DATA => {
            let d = param::<CK_DES_CBC_ENCRYPT_DATA_PARAMS>(m)?;
            MechParam::DesCbcData {
                iv: d.iv,
                data: bytes(d.pData, d.length)?,
            }
        }
        CKM_CONCATENATE_BASE_AND_KEY => MechParam::Key(*param::<CK_OBJECT_HANDLE>(m)? as u64),
        CKM_EXTRACT_KEY_FROM_KEY
        | CKM_SHA_1_HMAC_GENERAL
        | CKM_SHA224_HMAC_GENERAL
        | CKM_SHA256_HMAC_GENERAL
        | CKM_SHA384_HMAC_GENERAL
        | CKM_SHA512_HMAC_GENERAL
        | CKM_AES_CMAC_GENERAL => MechParam::Ulong(*param::<CK_ULONG>(m)?),
        CKM_SP800_108_COUNTER_KDF
        | CKM_SP800_108_FEEDBACK_KDF
        | CKM_SP800_108_DOUBLE_PIPELINE_KDF => MechParam::Kbkdf(Box::new(super::kbkdf::decode(m)?)),
        CKM_EDDSA if !no_param => {
            // PKCS#11 3.0, CKM_EDDSA's scheme table: the parameter's presence alone selects
            // Ed25519ctx (phFlag false) or Ed25519ph (Ed448 / Ed448ph on Ed448 keys); pure
            // Ed25519 is the mechanism without one.
            let e = param::<CK_EDDSA_PARAMS>(m)?;
            MechParam::Eddsa {
                prehash: e.phFlag != 0,
                context: bytes(e.pContextData, e.ulContextDataLen)?,
            }
        }
        CKM_ML_DSA if !no_param => {
            let c = param::<CK_SIGN_ADDITIONAL_CONTEXT>(m)?;
            // FIPS 204: a context string of at most 255 bytes; checked before it is read.
            if c.ulContextLen > 255 {
                return Err(Error::logged(
                    CKR_MECHANISM_PARAM_INVALID,
                    format!(
                        "CKM_ML_DSA: context of {} bytes (255 at most)",
                        c.ulContextLen
                    ),
                ));
            }
            MechParam::SignContext {
                hedge: c.hedgeVariant,
                context: bytes(c.pContext, c.ulContextLen)?,
            }
        }
        _ if no_param => MechParam::None,
        _ => MechParam::Bytes(bytes(m.pParameter as *const u8, m.ulParameterLen)?),
    };
    Ok(Some(Mechanism {
        mech: m.mechanism,
        param,
    }))
}

/// A mechanism that must be given.
pub(crate) unsafe fn required(p: *const CK_MECHANISM) -> Result<Mechanism> {
    mechanism(p)?.ok_or_else(|| err(CKR_ARGUMENTS_BAD))
}
