//! `CK_ATTRIBUTE` templates to and from the core's [`Attr`] values.

use crate::core::attr::{Attr, AttrValue};
use crate::core::error::{err, Error, Result};
use cryptoki_sys::*;

/// Copies a consumer's template. Array-valued attributes (`CKA_WRAP_TEMPLATE`, ...) hold
/// pointers and are not supported by hsmux's own tokens.
pub(crate) unsafe fn template(p: *const CK_ATTRIBUTE, n: CK_ULONG) -> Result<Vec<Attr>> {
    super::bounds::template(p, n)?;
    if p.is_null() {
        return if n == 0 {
            Ok(Vec::new())
        } else {
            Err(err(CKR_ARGUMENTS_BAD))
        };
    }
    let raw = std::slice::from_raw_parts(p, n as usize);
    raw.iter()
        .map(|a| {
            if crate::core::attr::holds_template(a.type_) {
                return Err(Error::logged(
                    CKR_ATTRIBUTE_TYPE_INVALID,
                    format!("array attribute 0x{:x} is not supported", a.type_),
                ));
            }
            let value = if a.pValue.is_null() {
                if a.ulValueLen != 0 {
                    return Err(err(CKR_ATTRIBUTE_VALUE_INVALID));
                }
                Vec::new()
            } else {
                // The length has passed `bounds::template` (shape and cap).
                super::bounds::copy(std::slice::from_raw_parts(
                    a.pValue as *const u8,
                    a.ulValueLen as usize,
                ))?
            };
            Ok(Attr { ty: a.type_, value })
        })
        .collect()
}

/// The attribute types a consumer asks for.
pub(crate) unsafe fn types(p: *const CK_ATTRIBUTE, n: CK_ULONG) -> Result<Vec<CK_ATTRIBUTE_TYPE>> {
    super::bounds::count(n)?;
    if p.is_null() {
        return if n == 0 {
            Ok(Vec::new())
        } else {
            Err(err(CKR_ARGUMENTS_BAD))
        };
    }
    Ok(std::slice::from_raw_parts(p, n as usize)
        .iter()
        .map(|a| a.type_)
        .collect())
}

/// Fills a consumer's template per C_GetAttributeValue (PKCS#11 §5.7): every attribute is
/// processed; the return value is one of the errors met, `CKR_OK` if none.
pub(crate) unsafe fn fill(p: *mut CK_ATTRIBUTE, n: CK_ULONG, values: &[AttrValue]) -> Result<()> {
    let raw = std::slice::from_raw_parts_mut(p, n as usize);
    let mut rv = CKR_OK;
    for (a, v) in raw.iter_mut().zip(values) {
        match v {
            AttrValue::Sensitive => {
                a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                rv = CKR_ATTRIBUTE_SENSITIVE;
            }
            AttrValue::Invalid => {
                a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                rv = CKR_ATTRIBUTE_TYPE_INVALID;
            }
            AttrValue::Value(bytes) => {
                if a.pValue.is_null() {
                    a.ulValueLen = bytes.len() as CK_ULONG;
                } else if (a.ulValueLen as usize) >= bytes.len() {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), a.pValue as *mut u8, bytes.len());
                    a.ulValueLen = bytes.len() as CK_ULONG;
                } else {
                    a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    rv = CKR_BUFFER_TOO_SMALL;
                }
            }
        }
    }
    if rv == CKR_OK {
        Ok(())
    } else {
        Err(err(rv))
    }
}
