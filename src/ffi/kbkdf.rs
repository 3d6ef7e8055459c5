//! The parameters of the SP 800-108 KDFs (PKCS#11 3.0 §2.42): `CK_SP800_108_KDF_PARAMS`
//! and `CK_SP800_108_FEEDBACK_KDF_PARAMS` with their nested `CK_PRF_DATA_PARAM` array,
//! counter and DKM-length formats, and `CK_DERIVED_KEY` templates, decoded with every
//! length checked before anything is read; and the handles of the additional derived
//! keys written back into the consumer's `CK_DERIVED_KEY`s.

use super::attr::template;
use crate::core::error::{Error, Result};
use crate::core::limits::MAX_PARAM_LEN;
use crate::core::mechanism::{CounterFormat, DkmFormat, KbkdfParams, PrfData};
use cryptoki_sys::*;
use std::mem::size_of;

/// At most this many data fields and additional keys: far above any encoding scheme (the
/// spec's samples use six fields), low enough that a bad count is refused at once.
const MAX_ENTRIES: CK_ULONG = 256;

fn invalid(why: impl Into<String>) -> Error {
    Error::logged(CKR_MECHANISM_PARAM_INVALID, why.into())
}

/// The outer structure's fields shared by both layouts.
struct Outer {
    prf: CK_MECHANISM_TYPE,
    n_data: CK_ULONG,
    data: *const CK_PRF_DATA_PARAM,
    n_keys: CK_ULONG,
    keys: *const CK_DERIVED_KEY,
    iv: Vec<u8>,
}

/// `ptr`/`n` as a slice of `n` structures, once `n` is within [`MAX_ENTRIES`] and the
/// pointer agrees with it (NULL exactly when `n` is 0, as §2.42 requires).
unsafe fn array<'a, T>(p: *const T, n: CK_ULONG, what: &str) -> Result<&'a [T]> {
    if n > MAX_ENTRIES {
        return Err(invalid(format!(
            "{what}: {n} entries (at most {MAX_ENTRIES})"
        )));
    }
    match (p.is_null(), n) {
        (true, 0) => Ok(&[]),
        (true, _) | (false, 0) => Err(invalid(format!(
            "{what}: the pointer must be NULL exactly when the count is 0 (count {n})"
        ))),
        (false, n) => Ok(std::slice::from_raw_parts(p, n as usize)),
    }
}

/// A byte buffer inside the parameter (NULL only with length 0, at most
/// [`MAX_PARAM_LEN`]), copied.
unsafe fn buffer(p: *const u8, len: CK_ULONG, what: &str) -> Result<Vec<u8>> {
    if len as u128 > MAX_PARAM_LEN as u128 || (p.is_null() && len != 0) {
        return Err(invalid(format!("{what}: bad pointer or length {len}")));
    }
    if len == 0 {
        return Ok(Vec::new());
    }
    super::bounds::copy(std::slice::from_raw_parts(p, len as usize))
}

/// `pValue` read as a `T` when `ulValueLen` is exactly its size.
unsafe fn value<T: Copy>(d: &CK_PRF_DATA_PARAM, what: &str) -> Result<T> {
    if d.pValue.is_null() || d.ulValueLen as usize != size_of::<T>() {
        return Err(invalid(format!(
            "{what}: pValue must point to a {}-byte structure",
            size_of::<T>()
        )));
    }
    Ok(std::ptr::read_unaligned(d.pValue as *const T))
}

unsafe fn counter(d: &CK_PRF_DATA_PARAM) -> Result<CounterFormat> {
    let c: CK_SP800_108_COUNTER_FORMAT = value(d, "CK_SP800_108_COUNTER_FORMAT")?;
    Ok(CounterFormat {
        little_endian: c.bLittleEndian != 0,
        width_bits: c.ulWidthInBits,
    })
}

unsafe fn data_param(d: &CK_PRF_DATA_PARAM) -> Result<PrfData> {
    Ok(match d.type_ {
        // Counter mode: its counter format; the chained modes: NULL and 0. Which one the
        // mode needs is the token's check.
        CK_SP800_108_ITERATION_VARIABLE if d.pValue.is_null() && d.ulValueLen == 0 => {
            PrfData::Iteration(None)
        }
        CK_SP800_108_ITERATION_VARIABLE => PrfData::Iteration(Some(counter(d)?)),
        CK_SP800_108_COUNTER => PrfData::Counter(counter(d)?),
        CK_SP800_108_DKM_LENGTH => {
            let f: CK_SP800_108_DKM_LENGTH_FORMAT = value(d, "CK_SP800_108_DKM_LENGTH_FORMAT")?;
            PrfData::DkmLength(DkmFormat {
                method: f.dkmLengthMethod,
                little_endian: f.bLittleEndian != 0,
                width_bits: f.ulWidthInBits,
            })
        }
        // §2.42: "pValue must be assigned a valid CK_BYTE_PTR value and ulValueLen must be
        // set to a non-zero length".
        CK_SP800_108_BYTE_ARRAY if d.ulValueLen == 0 || d.pValue.is_null() => {
            return Err(invalid("CK_SP800_108_BYTE_ARRAY: empty or NULL"))
        }
        CK_SP800_108_BYTE_ARRAY => PrfData::Bytes(buffer(
            d.pValue as *const u8,
            d.ulValueLen,
            "CK_SP800_108_BYTE_ARRAY",
        )?),
        t => {
            return Err(invalid(format!(
                "PRF data field type 0x{t:x} is not supported"
            )))
        }
    })
}

unsafe fn outer(m: &CK_MECHANISM) -> Result<Outer> {
    let (p, len) = (m.pParameter as *const u8, m.ulParameterLen as usize);
    let feedback = m.mechanism == CKM_SP800_108_FEEDBACK_KDF;
    let want = if feedback {
        size_of::<CK_SP800_108_FEEDBACK_KDF_PARAMS>()
    } else {
        size_of::<CK_SP800_108_KDF_PARAMS>()
    };
    if p.is_null() || len != want {
        return Err(invalid(format!(
            "mechanism 0x{:x}: the parameter must be a {want}-byte structure",
            m.mechanism
        )));
    }
    Ok(if feedback {
        let k: CK_SP800_108_FEEDBACK_KDF_PARAMS = std::ptr::read_unaligned(p as *const _);
        if k.pIV.is_null() != (k.ulIVLen == 0) {
            return Err(invalid("pIV must be NULL exactly when ulIVLen is 0"));
        }
        Outer {
            prf: k.prfType,
            n_data: k.ulNumberOfDataParams,
            data: k.pDataParams,
            n_keys: k.ulAdditionalDerivedKeys,
            keys: k.pAdditionalDerivedKeys,
            iv: buffer(k.pIV, k.ulIVLen, "pIV")?,
        }
    } else {
        let k: CK_SP800_108_KDF_PARAMS = std::ptr::read_unaligned(p as *const _);
        Outer {
            prf: k.prfType,
            n_data: k.ulNumberOfDataParams,
            data: k.pDataParams,
            n_keys: k.ulAdditionalDerivedKeys,
            keys: k.pAdditionalDerivedKeys,
            iv: Vec::new(),
        }
    })
}

/// Decodes the parameter of a `CKM_SP800_108_*` mechanism.
///
/// # Safety
/// `m` is the consumer's mechanism; the pointers inside its parameter are read only once
/// the counts and lengths next to them passed their checks.
pub(crate) unsafe fn decode(m: &CK_MECHANISM) -> Result<KbkdfParams> {
    let o = outer(m)?;
    let data = array(o.data, o.n_data, "pDataParams")?
        .iter()
        .map(|d| data_param(d))
        .collect::<Result<Vec<_>>>()?;
    let additional = array(o.keys, o.n_keys, "pAdditionalDerivedKeys")?
        .iter()
        .map(|k| {
            if k.phKey.is_null() {
                return Err(invalid("CK_DERIVED_KEY.phKey is NULL"));
            }
            template(k.pTemplate, k.ulAttributeCount)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(KbkdfParams {
        prf: o.prf,
        data,
        iv: o.iv,
        additional,
    })
}

/// The consumer's `CK_DERIVED_KEY` array of a KBKDF mechanism, if it has one that
/// [`decode`] accepted.
unsafe fn derived_keys<'a>(p: *const CK_MECHANISM) -> Option<&'a [CK_DERIVED_KEY]> {
    if p.is_null() {
        return None;
    }
    let m = &*p;
    if !matches!(
        m.mechanism,
        CKM_SP800_108_COUNTER_KDF | CKM_SP800_108_FEEDBACK_KDF | CKM_SP800_108_DOUBLE_PIPELINE_KDF
    ) {
        return None;
    }
    let o = outer(m).ok()?;
    let keys = array(o.keys, o.n_keys, "pAdditionalDerivedKeys").ok()?;
    keys.iter().all(|k| !k.phKey.is_null()).then_some(keys)
}

/// Writes the handles of the additional derived keys into the consumer's `phKey`s, in
/// order; `CK_INVALID_HANDLE` into all of them when `handles` is `None` (the call failed:
/// §2.42 "none of the keys shall be derived"). Nothing for other mechanisms.
///
/// # Safety
/// `p` is the mechanism [`decode`] was given, still valid.
pub(crate) unsafe fn write_handles(p: *const CK_MECHANISM, handles: Option<&[CK_OBJECT_HANDLE]>) {
    let Some(keys) = derived_keys(p) else {
        return;
    };
    for (i, k) in keys.iter().enumerate() {
        let h = handles.and_then(|h| h.get(i).copied());
        std::ptr::write_unaligned(k.phKey, h.unwrap_or(CK_INVALID_HANDLE));
    }
}
