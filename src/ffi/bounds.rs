//! Caller lengths checked before anything is read (issue 17, defect 3).
//!
//! A PKCS#11 consumer hands hsmux a pointer and a length; nothing tells hsmux how much
//! memory is really behind the pointer. What hsmux can do, and does here for every slot
//! (its own tokens and module slots alike, before a vendor library sees the call):
//! - a value whose size PKCS#11 fixes (`CK_ULONG` and `CK_BBOOL` attributes, `CK_DATE`,
//!   mechanism parameter structures, the IV of a fixed-IV mechanism) must have that size,
//!   else `CKR_ATTRIBUTE_VALUE_INVALID` / `CKR_MECHANISM_PARAM_INVALID`;
//! - a variable length is bounded by what the operation can accept: a PIN by the token's
//!   maximum PIN length (`CKR_PIN_LEN_RANGE`), an attribute value by
//!   [`crate::core::attr::MAX_VALUE_LEN`], a mechanism parameter blob by
//!   [`MAX_PARAM_LEN`](crate::core::limits::MAX_PARAM_LEN), a template by [`MAX_TEMPLATE_ATTRS`](crate::core::limits::MAX_TEMPLATE_ATTRS) entries, and data by
//!   [`MAX_DATA_LEN`](crate::core::limits::MAX_DATA_LEN) (`CKR_ARGUMENTS_BAD`);
//! - a copy that cannot be allocated is `CKR_HOST_MEMORY` ([`copy`]), never an abort.
//!
//! Each refusal logs one line naming the function's argument and the length (never a
//! PIN or key byte).

use crate::core::attr;
use crate::core::error::{Error, Result};
use crate::core::limits::{MAX_DATA_LEN, MAX_PARAM_LEN, MAX_TEMPLATE_ATTRS};
use crate::core::mechanism::is_rsa_pss;
use cryptoki_sys::*;
use std::mem::size_of;

/// A data length (`ulDataLen`, `ulSignatureLen`, ...): at most [`MAX_DATA_LEN`].
pub fn data_len(len: CK_ULONG, what: &str) -> Result<usize> {
    match usize::try_from(len) {
        Ok(n) if n <= MAX_DATA_LEN => Ok(n),
        _ => Err(Error::logged(
            CKR_ARGUMENTS_BAD,
            format!("{what}: length {len} is larger than {MAX_DATA_LEN} bytes"),
        )),
    }
}

/// A PIN length against the token's maximum.
pub fn pin_len(len: CK_ULONG, max: usize) -> Result<usize> {
    match usize::try_from(len) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(Error::logged(
            CKR_PIN_LEN_RANGE,
            format!("PIN length {len} is larger than the token's maximum of {max}"),
        )),
    }
}

/// Copies a slice, answering `CKR_HOST_MEMORY` when the memory cannot be had.
pub fn copy(b: &[u8]) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(b.len()).map_err(|_| {
        Error::logged(
            CKR_HOST_MEMORY,
            format!("cannot allocate {} bytes for a copy", b.len()),
        )
    })?;
    v.extend_from_slice(b);
    Ok(v)
}

fn param_invalid(mech: CK_MECHANISM_TYPE, why: impl std::fmt::Display) -> Error {
    Error::logged(
        CKR_MECHANISM_PARAM_INVALID,
        format!("mechanism 0x{mech:x}: {why}"),
    )
}

/// A mechanism's parameter, or a buffer inside it: not NULL when its length is not 0, and
/// at most [`MAX_PARAM_LEN`](crate::core::limits::MAX_PARAM_LEN).
fn inner(mech: CK_MECHANISM_TYPE, what: &str, p: *const u8, len: CK_ULONG) -> Result<()> {
    if p.is_null() && len != 0 {
        return Err(param_invalid(
            mech,
            format!("{what} is NULL with length {len}"),
        ));
    }
    if len as u128 > MAX_PARAM_LEN as u128 {
        return Err(param_invalid(
            mech,
            format!("{what} length {len} is larger than {MAX_PARAM_LEN}"),
        ));
    }
    Ok(())
}

/// The 2.40 header's `CK_GCM_PARAMS` (no `ulIvBits`); some consumers still pass it.
#[repr(C)]
pub(crate) struct GcmParams240 {
    pub p_iv: *mut CK_BYTE,
    pub ul_iv_len: CK_ULONG,
    pub p_aad: *mut CK_BYTE,
    pub ul_aad_len: CK_ULONG,
    pub ul_tag_bits: CK_ULONG,
}

/// The length a mechanism's parameter must have, for the mechanisms whose parameter is
/// one fixed-size value: an IV of a block cipher mode, or a structure without a
/// layout variant. `None`: variable, optional, or unknown to hsmux.
pub fn fixed_param_len(mech: CK_MECHANISM_TYPE) -> Option<usize> {
    Some(match mech {
        CKM_AES_CBC | CKM_AES_CBC_PAD | CKM_AES_OFB | CKM_AES_CFB8 | CKM_AES_CFB64
        | CKM_AES_CFB128 | CKM_AES_CTS => 16,
        CKM_DES_CBC | CKM_DES_CBC_PAD | CKM_DES3_CBC | CKM_DES3_CBC_PAD => 8,
        CKM_AES_CTR => size_of::<CK_AES_CTR_PARAMS>(),
        CKM_RSA_PKCS_OAEP => size_of::<CK_RSA_PKCS_OAEP_PARAMS>(),
        t if is_rsa_pss(t) => size_of::<CK_RSA_PKCS_PSS_PARAMS>(),
        CKM_ECDH1_DERIVE | CKM_ECDH1_COFACTOR_DERIVE => size_of::<CK_ECDH1_DERIVE_PARAMS>(),
        CKM_CONCATENATE_BASE_AND_DATA
        | CKM_CONCATENATE_DATA_AND_BASE
        | CKM_XOR_BASE_AND_DATA
        | CKM_AES_ECB_ENCRYPT_DATA
        | CKM_DES_ECB_ENCRYPT_DATA
        | CKM_DES3_ECB_ENCRYPT_DATA => size_of::<CK_KEY_DERIVATION_STRING_DATA>(),
        CKM_AES_CBC_ENCRYPT_DATA => size_of::<CK_AES_CBC_ENCRYPT_DATA_PARAMS>(),
        CKM_DES_CBC_ENCRYPT_DATA | CKM_DES3_CBC_ENCRYPT_DATA => {
            size_of::<CK_DES_CBC_ENCRYPT_DATA_PARAMS>()
        }
        CKM_CONCATENATE_BASE_AND_KEY => size_of::<CK_OBJECT_HANDLE>(),
        CKM_EXTRACT_KEY_FROM_KEY
        | CKM_SHA_1_HMAC_GENERAL
        | CKM_SHA224_HMAC_GENERAL
        | CKM_SHA256_HMAC_GENERAL
        | CKM_SHA384_HMAC_GENERAL
        | CKM_SHA512_HMAC_GENERAL
        | CKM_AES_MAC_GENERAL
        | CKM_AES_CMAC_GENERAL => size_of::<CK_ULONG>(),
        _ => return None,
    })
}

/// Checks a consumer's `CK_MECHANISM` before anything reads its parameter: the
/// parameter's length against [`fixed_param_len`] and [`MAX_PARAM_LEN`](crate::core::limits::MAX_PARAM_LEN), and the lengths
/// of the buffers inside the structures hsmux knows. A NULL mechanism passes (the
/// function decides what NULL means).
///
/// # Safety
/// `p` is NULL or points to a `CK_MECHANISM`; a parameter that passes the length checks
/// is read as the structure its mechanism names.
pub unsafe fn mechanism(p: *const CK_MECHANISM) -> Result<()> {
    check_mechanism(p, true)
}

/// The same for a mechanism going to a vendor library (module slots): only what a vendor
/// could read past the consumer's buffers is refused (a NULL parameter with a length,
/// lengths over [`MAX_PARAM_LEN`](crate::core::limits::MAX_PARAM_LEN), the same inside the structures hsmux knows). A
/// parameter of the wrong size but within the cap goes to the vendor, which answers it
/// as it would if loaded directly (SoftHSM checks those itself).
///
/// # Safety
/// As [`mechanism`].
pub unsafe fn vendor_mechanism(p: *const CK_MECHANISM) -> Result<()> {
    check_mechanism(p, false)
}

/// The same for the mechanism of `C_MessageEncryptInit`/`C_MessageDecryptInit` going to a
/// vendor library: its parameter, if any, is per-message (`CK_GCM_MESSAGE_PARAMS` for
/// AES-GCM, which has the size of `CK_GCM_PARAMS` but not its fields), so only the outer
/// buffer and, for AES-GCM, the IV and tag pointers are checked.
///
/// # Safety
/// As [`mechanism`].
pub unsafe fn vendor_message_mechanism(p: *const CK_MECHANISM) -> Result<()> {
    let Some((mt, pp, len)) = outer(p)? else {
        return Ok(());
    };
    if mt == CKM_AES_GCM && !pp.is_null() && len == size_of::<CK_GCM_MESSAGE_PARAMS>() {
        let g: CK_GCM_MESSAGE_PARAMS = std::ptr::read_unaligned(pp as *const _);
        inner(mt, "pIv", g.pIv, g.ulIvLen)?;
        inner(mt, "pTag", g.pTag, g.ulTagBits / 8)?;
    }
    Ok(())
}

/// A consumer's mechanism as (type, parameter, parameter length), once the parameter is
/// not NULL with a length and its length is at most [`MAX_PARAM_LEN`]; `None` for a NULL
/// mechanism.
unsafe fn outer(p: *const CK_MECHANISM) -> Result<Option<(CK_MECHANISM_TYPE, *const u8, usize)>> {
    if p.is_null() {
        return Ok(None);
    }
    let m = std::ptr::read_unaligned(p);
    let (mt, pp, len) = (m.mechanism, m.pParameter as *const u8, m.ulParameterLen);
    inner(mt, "pParameter", pp, len)?;
    Ok(Some((mt, pp, len as usize)))
}

unsafe fn check_mechanism(p: *const CK_MECHANISM, exact: bool) -> Result<()> {
    let Some((mt, pp, len)) = outer(p)? else {
        return Ok(());
    };
    if let Some(want) = fixed_param_len(mt) {
        if len != want && exact {
            return Err(param_invalid(
                mt,
                format!("the parameter must be {want} bytes, not {len}"),
            ));
        }
    }
    unsafe fn read<T>(p: *const u8) -> T {
        std::ptr::read_unaligned(p as *const T)
    }
    match mt {
        CKM_AES_GCM if len == size_of::<CK_GCM_PARAMS>() => {
            let g: CK_GCM_PARAMS = read(pp);
            inner(mt, "pIv", g.pIv, g.ulIvLen)?;
            inner(mt, "pAAD", g.pAAD, g.ulAADLen)?;
        }
        CKM_AES_GCM if len == size_of::<GcmParams240>() => {
            let g: GcmParams240 = read(pp);
            inner(mt, "pIv", g.p_iv, g.ul_iv_len)?;
            inner(mt, "pAAD", g.p_aad, g.ul_aad_len)?;
        }
        CKM_AES_GCM if exact => {
            return Err(param_invalid(
                mt,
                format!("the parameter must be a CK_GCM_PARAMS, not {len} bytes"),
            ))
        }
        CKM_AES_CCM if len == size_of::<CK_CCM_PARAMS>() => {
            let c: CK_CCM_PARAMS = read(pp);
            inner(mt, "pNonce", c.pNonce, c.ulNonceLen)?;
            inner(mt, "pAAD", c.pAAD, c.ulAADLen)?;
        }
        CKM_RSA_PKCS_OAEP if Some(len) == fixed_param_len(mt) => {
            let o: CK_RSA_PKCS_OAEP_PARAMS = read(pp);
            inner(
                mt,
                "pSourceData",
                o.pSourceData as *const u8,
                o.ulSourceDataLen,
            )?;
        }
        CKM_ECDH1_DERIVE | CKM_ECDH1_COFACTOR_DERIVE if Some(len) == fixed_param_len(mt) => {
            let e: CK_ECDH1_DERIVE_PARAMS = read(pp);
            inner(mt, "pSharedData", e.pSharedData, e.ulSharedDataLen)?;
            inner(mt, "pPublicData", e.pPublicData, e.ulPublicDataLen)?;
        }
        CKM_CONCATENATE_BASE_AND_DATA
        | CKM_CONCATENATE_DATA_AND_BASE
        | CKM_XOR_BASE_AND_DATA
        | CKM_AES_ECB_ENCRYPT_DATA
        | CKM_DES_ECB_ENCRYPT_DATA
        | CKM_DES3_ECB_ENCRYPT_DATA
            if Some(len) == fixed_param_len(mt) =>
        {
            let d: CK_KEY_DERIVATION_STRING_DATA = read(pp);
            inner(mt, "pData", d.pData, d.ulLen)?;
        }
        CKM_AES_CBC_ENCRYPT_DATA if Some(len) == fixed_param_len(mt) => {
            let d: CK_AES_CBC_ENCRYPT_DATA_PARAMS = read(pp);
            inner(mt, "pData", d.pData, d.length)?;
        }
        CKM_DES_CBC_ENCRYPT_DATA | CKM_DES3_CBC_ENCRYPT_DATA
            if Some(len) == fixed_param_len(mt) =>
        {
            let d: CK_DES_CBC_ENCRYPT_DATA_PARAMS = read(pp);
            inner(mt, "pData", d.pData, d.length)?;
        }
        CKM_EDDSA if len != 0 && (exact || len == size_of::<CK_EDDSA_PARAMS>()) => {
            if len != size_of::<CK_EDDSA_PARAMS>() {
                return Err(param_invalid(
                    mt,
                    format!("the parameter must be a CK_EDDSA_PARAMS, not {len} bytes"),
                ));
            }
            let e: CK_EDDSA_PARAMS = read(pp);
            inner(mt, "pContextData", e.pContextData, e.ulContextDataLen)?;
        }
        _ => {}
    }
    Ok(())
}

/// Checks a template the consumer gives as input (`C_CreateObject`, `C_FindObjectsInit`,
/// key generation, ...) before its values are read: the count, NULL values with a length,
/// each value's length against [`attr::check_len`], and the nested templates of array
/// attributes (`CKA_WRAP_TEMPLATE`, ...), one level down.
///
/// # Safety
/// `p` is NULL or points to `n` `CK_ATTRIBUTE`s (once `n` has passed its bound).
pub unsafe fn template(p: *const CK_ATTRIBUTE, n: CK_ULONG) -> Result<()> {
    template_at(p, n, 0)
}

unsafe fn template_at(p: *const CK_ATTRIBUTE, n: CK_ULONG, depth: u32) -> Result<()> {
    count(n)?;
    if p.is_null() {
        return if n == 0 {
            Ok(())
        } else {
            Err(Error::logged(
                CKR_ARGUMENTS_BAD,
                format!("pTemplate is NULL with ulCount {n}"),
            ))
        };
    }
    for i in 0..n as usize {
        let a = std::ptr::read_unaligned(p.add(i));
        let len = a.ulValueLen;
        if a.pValue.is_null() {
            if len != 0 {
                return Err(Error::logged(
                    CKR_ATTRIBUTE_VALUE_INVALID,
                    format!(
                        "attribute 0x{:x}: pValue is NULL with length {len}",
                        a.type_
                    ),
                ));
            }
            continue;
        }
        let ulen = usize::try_from(len).unwrap_or(usize::MAX);
        if attr::holds_template(a.type_) {
            let each = size_of::<CK_ATTRIBUTE>();
            if ulen % each != 0 || ulen > MAX_TEMPLATE_ATTRS * each || depth > 0 {
                return Err(Error::logged(
                    CKR_ATTRIBUTE_VALUE_INVALID,
                    format!(
                        "array attribute 0x{:x}: {len} bytes is not a template of at most {MAX_TEMPLATE_ATTRS} CK_ATTRIBUTEs",
                        a.type_
                    ),
                ));
            }
            template_at(
                a.pValue as *const CK_ATTRIBUTE,
                (ulen / each) as CK_ULONG,
                depth + 1,
            )?;
            continue;
        }
        attr::check_len(a.type_, ulen)
            .map_err(|why| Error::logged(CKR_ATTRIBUTE_VALUE_INVALID, why))?;
    }
    Ok(())
}

/// A template's attribute count (`ulCount`): at most [`MAX_TEMPLATE_ATTRS`](crate::core::limits::MAX_TEMPLATE_ATTRS).
pub fn count(n: CK_ULONG) -> Result<usize> {
    match usize::try_from(n) {
        Ok(c) if c <= MAX_TEMPLATE_ATTRS => Ok(c),
        _ => Err(Error::logged(
            CKR_ARGUMENTS_BAD,
            format!("ulCount {n} is larger than {MAX_TEMPLATE_ATTRS} attributes"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mech(t: CK_MECHANISM_TYPE, p: *mut u8, len: CK_ULONG) -> CK_MECHANISM {
        CK_MECHANISM {
            mechanism: t,
            pParameter: p as CK_VOID_PTR,
            ulParameterLen: len,
        }
    }

    #[test]
    fn fixed_iv_and_structure_lengths() {
        let mut iv = [0u8; 17];
        for (t, len, want) in [
            (CKM_AES_CBC, 16, CKR_OK),
            (CKM_AES_CBC, 15, CKR_MECHANISM_PARAM_INVALID),
            (CKM_AES_CBC, 17, CKR_MECHANISM_PARAM_INVALID),
            (CKM_AES_CBC, 1 << 34, CKR_MECHANISM_PARAM_INVALID),
            (CKM_AES_CBC, 1 << 40, CKR_MECHANISM_PARAM_INVALID),
            (CKM_AES_CBC, CK_ULONG::MAX, CKR_MECHANISM_PARAM_INVALID),
            (CKM_DES3_CBC, 8, CKR_OK),
            (CKM_SHA256, 1 << 40, CKR_MECHANISM_PARAM_INVALID),
            (CKM_RSA_PKCS_PSS, 16, CKR_MECHANISM_PARAM_INVALID),
        ] {
            let m = mech(t, iv.as_mut_ptr(), len);
            let rv = unsafe { mechanism(&m) }.err().map_or(CKR_OK, |e| e.rv());
            assert_eq!(rv, want, "mechanism 0x{t:x} length {len}");
        }
    }

    #[test]
    fn lengths_inside_a_gcm_parameter() {
        let mut iv = [0u8; 12];
        let check = |iv_len: CK_ULONG, aad_len: CK_ULONG, iv: &mut [u8; 12]| {
            let mut g = CK_GCM_PARAMS {
                pIv: iv.as_mut_ptr(),
                ulIvLen: iv_len,
                ulIvBits: 96,
                pAAD: std::ptr::null_mut(),
                ulAADLen: aad_len,
                ulTagBits: 128,
            };
            let m = mech(
                CKM_AES_GCM,
                &mut g as *mut _ as *mut u8,
                size_of::<CK_GCM_PARAMS>() as CK_ULONG,
            );
            unsafe { mechanism(&m) }.err().map_or(CKR_OK, |e| e.rv())
        };
        assert_eq!(check(1 << 40, 0, &mut iv), CKR_MECHANISM_PARAM_INVALID);
        assert_eq!(
            check(12, 5, &mut iv),
            CKR_MECHANISM_PARAM_INVALID,
            "NULL pAAD with a length"
        );
        assert_eq!(check(12, 0, &mut iv), CKR_OK);
    }

    #[test]
    fn template_values_by_shape() {
        let mut v = [0u8; 16];
        for (ty, len, want) in [
            (CKA_CLASS, 8, CKR_OK),
            (CKA_CLASS, 7, CKR_ATTRIBUTE_VALUE_INVALID),
            (CKA_CLASS, CK_ULONG::MAX, CKR_ATTRIBUTE_VALUE_INVALID),
            (CKA_TOKEN, 1, CKR_OK),
            (CKA_TOKEN, 1 << 34, CKR_ATTRIBUTE_VALUE_INVALID),
            (CKA_START_DATE, 8, CKR_OK),
            (CKA_START_DATE, 7, CKR_ATTRIBUTE_VALUE_INVALID),
            (CKA_LABEL, 16, CKR_OK),
            (CKA_LABEL, 1 << 32, CKR_ATTRIBUTE_VALUE_INVALID),
        ] {
            let a = CK_ATTRIBUTE {
                type_: ty,
                pValue: v.as_mut_ptr() as CK_VOID_PTR,
                ulValueLen: len,
            };
            let rv = unsafe { template(&a, 1) }.err().map_or(CKR_OK, |e| e.rv());
            assert_eq!(rv, want, "attribute 0x{ty:x} length {len}");
        }
        let a = CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: v.as_mut_ptr() as CK_VOID_PTR,
            ulValueLen: 1,
        };
        let rv = unsafe { template(&a, 1 << 40) }.unwrap_err().rv();
        assert_eq!(rv, CKR_ARGUMENTS_BAD);
    }

    #[test]
    fn copy_of_nothing_and_limits() {
        assert_eq!(copy(b"abc").unwrap(), b"abc");
        assert_eq!(
            data_len(1 << 40, "ulDataLen").unwrap_err().rv(),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(pin_len(1 << 32, 255).unwrap_err().rv(), CKR_PIN_LEN_RANGE);
        assert_eq!(pin_len(255, 255).unwrap(), 255);
    }
}
