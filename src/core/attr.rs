//! Attribute values as the core and the backends hold them: plain bytes keyed by
//! `CK_ATTRIBUTE_TYPE`, laid out exactly as a consumer reads them from `pValue`
//! (`CK_ULONG` native-endian, `CK_BBOOL` one byte).

use crate::core::error::{err, Result};
use cryptoki_sys::*;

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

pub use super::attr_map::{Attrs, Value};

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
        self.flag_bool(ty)
            .or_else(|| self.get(&ty).and_then(|v| parse_bool(v).ok()))
    }
    fn bytes(&self, ty: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
        self.get(&ty)
    }
    fn set_ulong(&mut self, ty: CK_ATTRIBUTE_TYPE, v: CK_ULONG) {
        self.insert_slice(ty, &v.to_ne_bytes());
    }
    fn set_flag(&mut self, ty: CK_ATTRIBUTE_TYPE, v: bool) {
        if !self.set_flag_bool(ty, v) {
            self.insert_slice(ty, &[v as u8]);
        }
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
        .all(|a| attrs.get(&a.ty).is_some_and(|v| v == a.value.as_slice()))
}

/// The layout a known attribute's value must have: the one table of fixed attribute sizes,
/// used by the FFI edge (before a consumer's value is read), by the module passthrough
/// (before a vendor reads it) and by template checks in the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A `CK_BBOOL`: exactly one byte.
    Bool,
    /// A `CK_ULONG` (`CK_OBJECT_CLASS`, `CK_KEY_TYPE`, ...): exactly `size_of::<CK_ULONG>()`.
    Ulong,
    /// A `CK_DATE`: eight bytes, or empty (no date).
    Date,
    /// A `CK_MECHANISM_TYPE_PTR` array: a multiple of `size_of::<CK_ULONG>()`.
    UlongArray,
}

/// Largest attribute value hsmux reads from a consumer (1 MiB): far above any key,
/// certificate or DER parameter; a longer `ulValueLen` is refused with
/// `CKR_ATTRIBUTE_VALUE_INVALID` before a byte is read.
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// The shape of `ty`'s value, `None` for variable-length (byte string) attributes.
pub fn shape(ty: CK_ATTRIBUTE_TYPE) -> Option<Shape> {
    Some(match ty {
        CKA_TOKEN
        | CKA_PRIVATE
        | CKA_MODIFIABLE
        | CKA_COPYABLE
        | CKA_DESTROYABLE
        | CKA_TRUSTED
        | CKA_ENCRYPT
        | CKA_DECRYPT
        | CKA_SIGN
        | CKA_SIGN_RECOVER
        | CKA_VERIFY
        | CKA_VERIFY_RECOVER
        | CKA_WRAP
        | CKA_UNWRAP
        | CKA_DERIVE
        | CKA_LOCAL
        | CKA_SENSITIVE
        | CKA_EXTRACTABLE
        | CKA_ALWAYS_SENSITIVE
        | CKA_NEVER_EXTRACTABLE
        | CKA_WRAP_WITH_TRUSTED
        | CKA_ALWAYS_AUTHENTICATE
        | CKA_RESET_ON_INIT
        | CKA_HAS_RESET
        | CKA_COLOR
        | CKA_OTP_USER_FRIENDLY_MODE
        | CKA_ENCAPSULATE
        | CKA_DECAPSULATE => Shape::Bool,
        CKA_CLASS
        | CKA_KEY_TYPE
        | CKA_CERTIFICATE_TYPE
        | CKA_CERTIFICATE_CATEGORY
        | CKA_JAVA_MIDP_SECURITY_DOMAIN
        | CKA_NAME_HASH_ALGORITHM
        | CKA_KEY_GEN_MECHANISM
        | CKA_MODULUS_BITS
        | CKA_PRIME_BITS
        | CKA_SUB_PRIME_BITS
        | CKA_VALUE_BITS
        | CKA_VALUE_LEN
        | CKA_HW_FEATURE_TYPE
        | CKA_PIXEL_X
        | CKA_PIXEL_Y
        | CKA_RESOLUTION
        | CKA_CHAR_ROWS
        | CKA_CHAR_COLUMNS
        | CKA_BITS_PER_PIXEL
        | CKA_MECHANISM_TYPE
        | CKA_OTP_FORMAT
        | CKA_OTP_LENGTH
        | CKA_OTP_TIME_INTERVAL
        | CKA_OTP_CHALLENGE_REQUIREMENT
        | CKA_OTP_TIME_REQUIREMENT
        | CKA_OTP_COUNTER_REQUIREMENT
        | CKA_OTP_PIN_REQUIREMENT
        | CKA_OTP_SERVICE_LOGO_TYPE
        | CKA_PROFILE_ID
        | CKA_PARAMETER_SET => Shape::Ulong,
        CKA_START_DATE | CKA_END_DATE => Shape::Date,
        CKA_ALLOWED_MECHANISMS => Shape::UlongArray,
        _ => return None,
    })
}

/// Does an attribute's value hold a template (`CK_ATTRIBUTE`s pointing further, as
/// `CKA_WRAP_TEMPLATE`)? `CKA_ALLOWED_MECHANISMS` carries the `CKF_ARRAY_ATTRIBUTE` bit
/// too but holds plain `CK_MECHANISM_TYPE`s (PKCS#11 3.0 §4.7), read as bytes.
pub fn holds_template(ty: CK_ATTRIBUTE_TYPE) -> bool {
    ty & CKF_ARRAY_ATTRIBUTE != 0 && ty != CKA_ALLOWED_MECHANISMS
}

/// Checks a value length against `ty`'s shape and [`MAX_VALUE_LEN`]; the reason when it
/// does not fit, for the log line.
pub fn check_len(ty: CK_ATTRIBUTE_TYPE, len: usize) -> std::result::Result<(), String> {
    const UL: usize = std::mem::size_of::<CK_ULONG>();
    let ok = match shape(ty) {
        Some(Shape::Bool) => len == 1,
        Some(Shape::Ulong) => len == UL,
        Some(Shape::Date) => len == 0 || len == 8,
        Some(Shape::UlongArray) => len.is_multiple_of(UL) && len <= MAX_VALUE_LEN,
        None => len <= MAX_VALUE_LEN,
    };
    if ok {
        return Ok(());
    }
    let want = match shape(ty) {
        Some(Shape::Bool) => "a 1-byte CK_BBOOL".to_string(),
        Some(Shape::Ulong) => format!("a {UL}-byte CK_ULONG"),
        Some(Shape::Date) => "an 8-byte CK_DATE or empty".to_string(),
        Some(Shape::UlongArray) => format!("a multiple of {UL} bytes up to {MAX_VALUE_LEN}"),
        None => format!("at most {MAX_VALUE_LEN} bytes"),
    };
    Err(format!(
        "attribute 0x{ty:x}: value length {len} is not {want}"
    ))
}
