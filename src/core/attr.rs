//! Attribute values as the core and the backends hold them: plain bytes keyed by
//! `CK_ATTRIBUTE_TYPE`, laid out exactly as a consumer reads them from `pValue`
//! (`CK_ULONG` native-endian, `CK_BBOOL` one byte).

use crate::core::error::{err, Result};
use cryptoki_sys::*;
use std::collections::BTreeMap;

/// One attribute of a template passed in by a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ty: CK_ATTRIBUTE_TYPE,
    pub value: Vec<u8>,
}

impl Attr {
    pub fn new(ty: CK_ATTRIBUTE_TYPE, value: impl Into<Vec<u8>>) -> Self {
        Attr {
            ty,
            value: value.into(),
        }
    }
    pub fn ulong(ty: CK_ATTRIBUTE_TYPE, v: CK_ULONG) -> Self {
        Attr {
            ty,
            value: ulong_bytes(v),
        }
    }
    pub fn bool(ty: CK_ATTRIBUTE_TYPE, v: bool) -> Self {
        Attr {
            ty,
            value: vec![v as u8],
        }
    }
}

/// What a backend answers for one requested attribute (C_GetAttributeValue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttrValue {
    Value(Vec<u8>),
    /// Present but must not be revealed (`CKR_ATTRIBUTE_SENSITIVE`).
    Sensitive,
    /// Not an attribute of this object (`CKR_ATTRIBUTE_TYPE_INVALID`).
    Invalid,
}

/// The attributes of one object.
pub type Attrs = BTreeMap<CK_ATTRIBUTE_TYPE, Vec<u8>>;

pub fn ulong_bytes(v: CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

/// Reads a `CK_ULONG` value; a value of the wrong size is `CKR_ATTRIBUTE_VALUE_INVALID`.
pub fn parse_ulong(v: &[u8]) -> Result<CK_ULONG> {
    let arr: [u8; std::mem::size_of::<CK_ULONG>()] =
        v.try_into().map_err(|_| err(CKR_ATTRIBUTE_VALUE_INVALID))?;
    Ok(CK_ULONG::from_ne_bytes(arr))
}

/// Reads a `CK_BBOOL`; anything but one byte is `CKR_ATTRIBUTE_VALUE_INVALID`.
pub fn parse_bool(v: &[u8]) -> Result<bool> {
    match v {
        [b] => Ok(*b != 0),
        _ => Err(err(CKR_ATTRIBUTE_VALUE_INVALID)),
    }
}

/// Typed access to an attribute map.
pub trait AttrsExt {
    fn ulong(&self, ty: CK_ATTRIBUTE_TYPE) -> Option<CK_ULONG>;
    fn flag(&self, ty: CK_ATTRIBUTE_TYPE) -> Option<bool>;
    /// A boolean attribute, `default` when absent.
    fn flag_or(&self, ty: CK_ATTRIBUTE_TYPE, default: bool) -> bool {
        self.flag(ty).unwrap_or(default)
    }
    fn bytes(&self, ty: CK_ATTRIBUTE_TYPE) -> Option<&[u8]>;
    fn set_ulong(&mut self, ty: CK_ATTRIBUTE_TYPE, v: CK_ULONG);
    fn set_flag(&mut self, ty: CK_ATTRIBUTE_TYPE, v: bool);
}

impl AttrsExt for Attrs {
    fn ulong(&self, ty: CK_ATTRIBUTE_TYPE) -> Option<CK_ULONG> {
        self.get(&ty).and_then(|v| parse_ulong(v).ok())
    }
    fn flag(&self, ty: CK_ATTRIBUTE_TYPE) -> Option<bool> {
        self.get(&ty).and_then(|v| parse_bool(v).ok())
    }
    fn bytes(&self, ty: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
        self.get(&ty).map(|v| v.as_slice())
    }
    fn set_ulong(&mut self, ty: CK_ATTRIBUTE_TYPE, v: CK_ULONG) {
        self.insert(ty, ulong_bytes(v));
    }
    fn set_flag(&mut self, ty: CK_ATTRIBUTE_TYPE, v: bool) {
        self.insert(ty, vec![v as u8]);
    }
}

/// The value of `ty` in a consumer's template, if given.
pub fn find(template: &[Attr], ty: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
    template
        .iter()
        .find(|a| a.ty == ty)
        .map(|a| a.value.as_slice())
}

/// True when every attribute of `template` is present in `attrs` with the same value
/// (the matching rule of C_FindObjects).
pub fn matches(attrs: &Attrs, template: &[Attr]) -> bool {
    template
        .iter()
        .all(|a| attrs.get(&a.ty).is_some_and(|v| *v == a.value))
}
