//! The object model of PKCS#11 §4 for tokens whose objects hsmux itself presents (the soft
//! token, and the remote key services through `backend::remote`): which attributes each
//! class has, their defaults, which are sensitive, and the rules of C_CreateObject,
//! C_CopyObject and C_SetAttributeValue.
//!
//! Defaults follow SoftHSMv2 (usage flags TRUE, CKA_SENSITIVE and CKA_EXTRACTABLE FALSE)
//! except CKA_PRIVATE, which defaults to TRUE only for private and secret keys, so that
//! public keys, certificates and data objects are visible before login as consumers such
//! as Java and OpenSSL expect.

use crate::core::attr::{parse_bool, parse_ulong, Attr, AttrValue, Attrs, AttrsExt};
use crate::core::error::{err, Error, Result};
use cryptoki_sys::*;

/// Which operation makes or changes an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Create,
    Generate,
    Unwrap,
    Derive,
    Copy,
    Set,
}

const STORAGE: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_CLASS,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_MODIFIABLE,
    CKA_LABEL,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_UNIQUE_ID,
];
const DATA: &[CK_ATTRIBUTE_TYPE] = &[CKA_APPLICATION, CKA_OBJECT_ID, CKA_VALUE];
const CERT: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_CERTIFICATE_TYPE,
    CKA_TRUSTED,
    CKA_CERTIFICATE_CATEGORY,
    CKA_CHECK_VALUE,
    CKA_START_DATE,
    CKA_END_DATE,
    CKA_PUBLIC_KEY_INFO,
    CKA_SUBJECT,
    CKA_ID,
    CKA_ISSUER,
    CKA_SERIAL_NUMBER,
    CKA_VALUE,
    CKA_URL,
    CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
    CKA_HASH_OF_ISSUER_PUBLIC_KEY,
    CKA_JAVA_MIDP_SECURITY_DOMAIN,
    CKA_NAME_HASH_ALGORITHM,
];
const KEY: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_KEY_TYPE,
    CKA_ID,
    CKA_START_DATE,
    CKA_END_DATE,
    CKA_DERIVE,
    CKA_LOCAL,
    CKA_KEY_GEN_MECHANISM,
    CKA_ALLOWED_MECHANISMS,
];
const PUBLIC: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_SUBJECT,
    CKA_ENCRYPT,
    CKA_VERIFY,
    CKA_VERIFY_RECOVER,
    CKA_WRAP,
    CKA_TRUSTED,
    CKA_PUBLIC_KEY_INFO,
];
const PRIVATE: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_SUBJECT,
    CKA_SENSITIVE,
    CKA_DECRYPT,
    CKA_SIGN,
    CKA_SIGN_RECOVER,
    CKA_UNWRAP,
    CKA_EXTRACTABLE,
    CKA_ALWAYS_SENSITIVE,
    CKA_NEVER_EXTRACTABLE,
    CKA_WRAP_WITH_TRUSTED,
    CKA_ALWAYS_AUTHENTICATE,
    CKA_PUBLIC_KEY_INFO,
];
/// The usage flags of a secret key (all TRUE by default).
const SECRET_USAGE: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_SIGN,
    CKA_VERIFY,
    CKA_WRAP,
    CKA_UNWRAP,
];
const SECRET: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_SENSITIVE,
    CKA_EXTRACTABLE,
    CKA_ALWAYS_SENSITIVE,
    CKA_NEVER_EXTRACTABLE,
    CKA_CHECK_VALUE,
    CKA_WRAP_WITH_TRUSTED,
    CKA_TRUSTED,
    CKA_VALUE,
    CKA_VALUE_LEN,
];
const RSA_PUBLIC: &[CK_ATTRIBUTE_TYPE] = &[CKA_MODULUS, CKA_MODULUS_BITS, CKA_PUBLIC_EXPONENT];
/// The secret parts of an RSA private key (next to its modulus and public exponent).
pub const RSA_SECRETS: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_PRIVATE_EXPONENT,
    CKA_PRIME_1,
    CKA_PRIME_2,
    CKA_EXPONENT_1,
    CKA_EXPONENT_2,
    CKA_COEFFICIENT,
];
const RSA_PRIVATE: &[CK_ATTRIBUTE_TYPE] = &[CKA_MODULUS, CKA_PUBLIC_EXPONENT];
const EC_PUBLIC: &[CK_ATTRIBUTE_TYPE] = &[CKA_EC_PARAMS, CKA_EC_POINT];
const EC_PRIVATE: &[CK_ATTRIBUTE_TYPE] = &[CKA_EC_PARAMS, CKA_VALUE];
/// PKCS#11 3.2 ML-DSA and ML-KEM keys (`CKA_ENCAPSULATE`/`CKA_DECAPSULATE` are ML-KEM's).
const PQC_PUBLIC: &[CK_ATTRIBUTE_TYPE] = &[CKA_PARAMETER_SET, CKA_VALUE, CKA_ENCAPSULATE];
const PQC_PRIVATE: &[CK_ATTRIBUTE_TYPE] =
    &[CKA_PARAMETER_SET, CKA_VALUE, CKA_SEED, CKA_DECAPSULATE];

fn is_pqc(key_type: CK_KEY_TYPE) -> bool {
    matches!(key_type, CKK_ML_DSA | CKK_ML_KEM)
}

/// Attributes that hold a key's value: fixed at creation.
fn is_key_value(ty: CK_ATTRIBUTE_TYPE) -> bool {
    matches!(
        ty,
        CKA_VALUE
            | CKA_MODULUS
            | CKA_PUBLIC_EXPONENT
            | CKA_EC_PARAMS
            | CKA_EC_POINT
            | CKA_PARAMETER_SET
            | CKA_SEED
    ) || RSA_SECRETS.contains(&ty)
}

/// Attributes only the token sets.
const TOKEN_SET: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_LOCAL,
    CKA_ALWAYS_SENSITIVE,
    CKA_NEVER_EXTRACTABLE,
    CKA_KEY_GEN_MECHANISM,
    CKA_UNIQUE_ID,
];

fn is_key_class(class: CK_OBJECT_CLASS) -> bool {
    matches!(class, CKO_PUBLIC_KEY | CKO_PRIVATE_KEY | CKO_SECRET_KEY)
}

fn is_ec(key_type: CK_KEY_TYPE) -> bool {
    matches!(key_type, CKK_EC | CKK_EC_EDWARDS | CKK_EC_MONTGOMERY)
}

/// Is `ty` an attribute of an object of this class and key type?
pub fn valid_for(class: CK_OBJECT_CLASS, key_type: CK_KEY_TYPE, ty: CK_ATTRIBUTE_TYPE) -> bool {
    if STORAGE.contains(&ty) || ty >= CKA_VENDOR_DEFINED {
        return true;
    }
    let specific: &[&[CK_ATTRIBUTE_TYPE]] = match class {
        CKO_DATA => &[DATA],
        CKO_CERTIFICATE => &[CERT],
        CKO_PUBLIC_KEY if key_type == CKK_RSA => &[KEY, PUBLIC, RSA_PUBLIC],
        CKO_PUBLIC_KEY if is_ec(key_type) => &[KEY, PUBLIC, EC_PUBLIC],
        CKO_PUBLIC_KEY if is_pqc(key_type) => &[KEY, PUBLIC, PQC_PUBLIC],
        CKO_PUBLIC_KEY => &[KEY, PUBLIC, &[CKA_VALUE]],
        CKO_PRIVATE_KEY if key_type == CKK_RSA => &[KEY, PRIVATE, RSA_PRIVATE, RSA_SECRETS],
        CKO_PRIVATE_KEY if is_ec(key_type) => &[KEY, PRIVATE, EC_PRIVATE],
        CKO_PRIVATE_KEY if is_pqc(key_type) => &[KEY, PRIVATE, PQC_PRIVATE],
        CKO_PRIVATE_KEY => &[KEY, PRIVATE, &[CKA_VALUE]],
        CKO_SECRET_KEY => &[KEY, SECRET_USAGE, SECRET],
        _ => &[DATA, CERT, KEY],
    };
    specific.iter().any(|s| s.contains(&ty))
}

/// Attributes of this class that are never revealed while the key is sensitive or
/// unextractable.
pub fn is_sensitive_attr(class: CK_OBJECT_CLASS, ty: CK_ATTRIBUTE_TYPE) -> bool {
    match class {
        CKO_PRIVATE_KEY => ty == CKA_VALUE || ty == CKA_SEED || RSA_SECRETS.contains(&ty),
        CKO_SECRET_KEY => ty == CKA_VALUE,
        _ => false,
    }
}

/// The default attributes of a new object of `class`, with room for `room` more: built
/// once per class and copied (every object made pays this, `C_DecapsulateKey`'s included).
fn defaults(class: CK_OBJECT_CLASS, room: usize) -> Attrs {
    use std::sync::OnceLock;
    const CLASSES: [CK_OBJECT_CLASS; 5] = [
        CKO_DATA,
        CKO_CERTIFICATE,
        CKO_PUBLIC_KEY,
        CKO_PRIVATE_KEY,
        CKO_SECRET_KEY,
    ];
    static BUILT: OnceLock<[Attrs; 5]> = OnceLock::new();
    match CLASSES.iter().position(|c| *c == class) {
        Some(i) => BUILT.get_or_init(|| CLASSES.map(build_defaults))[i].clone_with_room(room),
        None => build_defaults(class),
    }
}

fn build_defaults(class: CK_OBJECT_CLASS) -> Attrs {
    let mut a = Attrs::new();
    a.set_flag(CKA_TOKEN, false);
    a.set_flag(
        CKA_PRIVATE,
        matches!(class, CKO_PRIVATE_KEY | CKO_SECRET_KEY),
    );
    a.set_flag(CKA_MODIFIABLE, true);
    a.set_flag(CKA_COPYABLE, true);
    a.set_flag(CKA_DESTROYABLE, true);
    a.insert(CKA_LABEL, Vec::new());
    match class {
        CKO_DATA => {
            a.insert(CKA_APPLICATION, Vec::new());
            a.insert(CKA_OBJECT_ID, Vec::new());
            a.insert(CKA_VALUE, Vec::new());
        }
        CKO_CERTIFICATE => {
            a.set_flag(CKA_TRUSTED, false);
            a.set_ulong(CKA_CERTIFICATE_CATEGORY, 0);
            for t in [
                CKA_START_DATE,
                CKA_END_DATE,
                CKA_SUBJECT,
                CKA_ID,
                CKA_ISSUER,
                CKA_SERIAL_NUMBER,
                CKA_URL,
            ] {
                a.insert(t, Vec::new());
            }
        }
        _ => {}
    }
    if is_key_class(class) {
        for t in [CKA_ID, CKA_START_DATE, CKA_END_DATE] {
            a.insert(t, Vec::new());
        }
        a.set_flag(CKA_DERIVE, false);
        a.set_flag(CKA_LOCAL, false);
        a.set_ulong(CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION);
    }
    if matches!(class, CKO_PUBLIC_KEY) {
        a.insert(CKA_SUBJECT, Vec::new());
        for t in [CKA_ENCRYPT, CKA_VERIFY, CKA_VERIFY_RECOVER, CKA_WRAP] {
            a.set_flag(t, true);
        }
        a.set_flag(CKA_TRUSTED, false);
    }
    if matches!(class, CKO_PRIVATE_KEY) {
        a.insert(CKA_SUBJECT, Vec::new());
        for t in [CKA_DECRYPT, CKA_SIGN, CKA_SIGN_RECOVER, CKA_UNWRAP] {
            a.set_flag(t, true);
        }
        a.set_flag(CKA_WRAP_WITH_TRUSTED, false);
        a.set_flag(CKA_ALWAYS_AUTHENTICATE, false);
    }
    if matches!(class, CKO_SECRET_KEY) {
        for t in SECRET_USAGE {
            a.set_flag(*t, true);
        }
        a.set_flag(CKA_WRAP_WITH_TRUSTED, false);
        a.set_flag(CKA_TRUSTED, false);
    }
    if matches!(class, CKO_PRIVATE_KEY | CKO_SECRET_KEY) {
        a.set_flag(CKA_SENSITIVE, false);
        a.set_flag(CKA_EXTRACTABLE, false);
    }
    a
}

/// Checks the shape of a consumer's value for a known attribute (the table in
/// [`crate::core::attr::shape`]).
fn check_value(a: &Attr) -> Result<()> {
    crate::core::attr::check_len(a.ty, a.value.len())
        .map_err(|why| Error::logged(CKR_ATTRIBUTE_VALUE_INVALID, why))
}

/// Folds a consumer template into a map; the same type twice with different values is
/// `CKR_TEMPLATE_INCONSISTENT`.
pub fn to_attrs(template: &[Attr]) -> Result<Attrs> {
    let mut out = Attrs::with_capacity(template.len());
    for a in template {
        check_value(a)?;
        // A copy only for values longer than a word: flags and numbers go in inline.
        if let Some(prev) = out.insert_slice(a.ty, &a.value) {
            if *prev != *a.value {
                return Err(err(CKR_TEMPLATE_INCONSISTENT));
            }
        }
    }
    Ok(out)
}

/// Builds the attributes of a new object from the consumer's template.
///
/// `fixed` holds what the caller already knows (CKA_CLASS and CKA_KEY_TYPE implied by a
/// mechanism); a template value that contradicts it is `CKR_TEMPLATE_INCONSISTENT`.
/// The result lacks the key values, which the caller adds.
pub fn new_object(op: Op, template: &[Attr], fixed: &Attrs) -> Result<Attrs> {
    let given = to_attrs(template)?;
    for (ty, v) in fixed {
        if given.get(ty).is_some_and(|g| g != v) {
            return Err(Error::logged(
                CKR_TEMPLATE_INCONSISTENT,
                format!("template attribute 0x{ty:x} contradicts the mechanism"),
            ));
        }
    }
    let class = given
        .ulong(CKA_CLASS)
        .or_else(|| fixed.ulong(CKA_CLASS))
        .ok_or_else(|| Error::logged(CKR_TEMPLATE_INCOMPLETE, "template lacks CKA_CLASS"))?;
    let key_type = given
        .ulong(CKA_KEY_TYPE)
        .or_else(|| fixed.ulong(CKA_KEY_TYPE));
    if is_key_class(class) && key_type.is_none() && op == Op::Create {
        return Err(Error::logged(
            CKR_TEMPLATE_INCOMPLETE,
            "template of a key lacks CKA_KEY_TYPE",
        ));
    }
    if class == CKO_CERTIFICATE && !given.contains_key(&CKA_CERTIFICATE_TYPE) {
        return Err(Error::logged(
            CKR_TEMPLATE_INCOMPLETE,
            "template of a certificate lacks CKA_CERTIFICATE_TYPE",
        ));
    }
    if !matches!(
        class,
        CKO_DATA | CKO_CERTIFICATE | CKO_PUBLIC_KEY | CKO_PRIVATE_KEY | CKO_SECRET_KEY
    ) {
        return Err(Error::logged(
            CKR_ATTRIBUTE_VALUE_INVALID,
            format!("objects of class 0x{class:x} are not supported"),
        ));
    }
    let kt = key_type.unwrap_or(CK_UNAVAILABLE_INFORMATION);
    for ty in given.keys() {
        if !valid_for(class, kt, *ty) {
            return Err(Error::logged(
                CKR_ATTRIBUTE_TYPE_INVALID,
                format!("attribute 0x{ty:x} does not belong to this object class"),
            ));
        }
        if *ty == CKA_UNIQUE_ID {
            // The token assigns it; like kryoptic (and the cryptoki test suite) refuse the
            // type outright.
            return Err(Error::logged(
                CKR_ATTRIBUTE_TYPE_INVALID,
                "CKA_UNIQUE_ID is assigned by the token",
            ));
        }
        if TOKEN_SET.contains(ty) {
            return Err(Error::logged(
                CKR_ATTRIBUTE_READ_ONLY,
                format!("attribute 0x{ty:x} is set by the token"),
            ));
        }
        let settable_here = match *ty {
            CKA_VALUE_LEN => matches!(op, Op::Generate | Op::Derive | Op::Unwrap),
            CKA_MODULUS_BITS => op == Op::Generate,
            _ => true,
        };
        if !settable_here {
            return Err(Error::logged(
                CKR_ATTRIBUTE_READ_ONLY,
                format!("attribute 0x{ty:x} cannot be given here"),
            ));
        }
        if matches!(op, Op::Generate | Op::Unwrap | Op::Derive)
            && is_key_value(*ty)
            && !matches!(*ty, CKA_EC_PARAMS | CKA_PUBLIC_EXPONENT | CKA_PARAMETER_SET)
        {
            return Err(Error::logged(
                CKR_TEMPLATE_INCONSISTENT,
                format!("attribute 0x{ty:x} is made by the mechanism"),
            ));
        }
    }
    if given.flag(CKA_TRUSTED) == Some(true) {
        return Err(Error::logged(
            CKR_ATTRIBUTE_READ_ONLY,
            "CKA_TRUSTED can only be set by the SO",
        ));
    }
    // Room for what a key adds to its class's defaults: the template's attributes and at
    // most seven more (CKA_CLASS, CKA_KEY_TYPE, the two history flags, CKA_UNIQUE_ID, and
    // the CKA_VALUE and CKA_VALUE_LEN a secret's mechanism adds): filling it in does not
    // grow it.
    let mut attrs = defaults(class, given.len() + 7);
    if key_type == Some(CKK_ML_KEM) {
        // Like CKA_ENCRYPT/CKA_DECRYPT here, the KEM usage is allowed unless refused.
        attrs.set_flag(CKA_ENCAPSULATE, class == CKO_PUBLIC_KEY);
        attrs.set_flag(CKA_DECAPSULATE, class == CKO_PRIVATE_KEY);
    }
    for (k, v) in fixed {
        attrs.insert_slice(*k, v);
    }
    attrs.extend(given);
    if let Some(kt) = key_type {
        attrs.set_ulong(CKA_KEY_TYPE, kt);
    }
    if class == CKO_PUBLIC_KEY || class == CKO_CERTIFICATE || class == CKO_DATA {
        // CKA_ALWAYS_AUTHENTICATE only makes sense on a private object.
    } else if attrs.flag(CKA_ALWAYS_AUTHENTICATE) == Some(true)
        && attrs.flag(CKA_PRIVATE) == Some(false)
    {
        return Err(err(CKR_TEMPLATE_INCONSISTENT));
    }
    if matches!(class, CKO_PRIVATE_KEY | CKO_SECRET_KEY) {
        let sensitive = attrs.flag_or(CKA_SENSITIVE, false);
        let extractable = attrs.flag_or(CKA_EXTRACTABLE, false);
        let local = matches!(op, Op::Generate);
        // Only keys made inside the token can claim a history (PKCS#11 §4.9).
        attrs.set_flag(
            CKA_ALWAYS_SENSITIVE,
            (local || op == Op::Derive) && sensitive,
        );
        attrs.set_flag(
            CKA_NEVER_EXTRACTABLE,
            (local || op == Op::Derive) && !extractable,
        );
    }
    if is_key_class(class) {
        attrs.set_flag(CKA_LOCAL, op == Op::Generate);
    }
    attrs.insert(CKA_UNIQUE_ID, new_unique_id());
    Ok(attrs)
}

/// A new `CKA_UNIQUE_ID`: 32 hex digits, 16 of a random half drawn once per process and
/// 16 of a counter. The random half keeps processes sharing a token directory apart (a
/// token object's file is named after it), the counter keeps one process's objects apart;
/// a child process after `fork` (a new fork epoch) draws its own half. One DRBG draw per
/// object (aws-lc's prediction resistance reads RDRAND on every draw) and `hex::encode`'s
/// char-by-char `String` (now `encode_to_slice`) were a twentieth of `C_DecapsulateKey`'s
/// time in perf. Atomics, not a lock: a lock held by another thread at `fork` would stay
/// held in the child.
fn new_unique_id() -> Vec<u8> {
    use crate::core::instance::fork_epoch;
    use std::sync::atomic::{AtomicU64, Ordering};
    static HALF: AtomicU64 = AtomicU64::new(0);
    /// The fork epoch (plus one) HALF was drawn in; 0 before the first draw.
    static DRAWN_IN: AtomicU64 = AtomicU64::new(0);
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let epoch = fork_epoch() + 1;
    if DRAWN_IN.load(Ordering::Acquire) != epoch {
        let mut h = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut h);
        HALF.store(u64::from_ne_bytes(h), Ordering::Relaxed);
        DRAWN_IN.store(epoch, Ordering::Release);
    }
    let count = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&HALF.load(Ordering::Relaxed).to_be_bytes());
    raw[8..].copy_from_slice(&count.to_be_bytes());
    let mut id = vec![0u8; 32];
    // 16 bytes are always 32 digits: encode_to_slice's only error is a length mismatch.
    let _ = hex::encode_to_slice(raw, &mut id);
    id
}

/// C_SetAttributeValue (and the template of C_CopyObject when `op` is `Copy`): applies
/// `template` to `attrs` following the rules of PKCS#11 §4.1.
pub fn apply_changes(op: Op, attrs: &mut Attrs, template: &[Attr], so: bool) -> Result<()> {
    if op == Op::Set && !attrs.flag_or(CKA_MODIFIABLE, true) {
        return Err(Error::logged(
            CKR_ACTION_PROHIBITED,
            "object is not modifiable (CKA_MODIFIABLE false)",
        ));
    }
    if op == Op::Copy && !attrs.flag_or(CKA_COPYABLE, true) {
        return Err(Error::logged(
            CKR_ACTION_PROHIBITED,
            "object is not copyable (CKA_COPYABLE false)",
        ));
    }
    let class = attrs.ulong(CKA_CLASS).unwrap_or(CKO_DATA);
    let kt = attrs
        .ulong(CKA_KEY_TYPE)
        .unwrap_or(CK_UNAVAILABLE_INFORMATION);
    let changes = to_attrs(template)?;
    for (ty, v) in &changes {
        if !valid_for(class, kt, *ty) {
            return Err(Error::logged(
                CKR_ATTRIBUTE_TYPE_INVALID,
                format!("attribute 0x{ty:x} does not belong to this object"),
            ));
        }
        let same = attrs.get(ty) == Some(v);
        let read_only = match *ty {
            CKA_CLASS | CKA_KEY_TYPE | CKA_CERTIFICATE_TYPE => !same,
            CKA_TOKEN | CKA_PRIVATE | CKA_MODIFIABLE => op == Op::Set && !same,
            CKA_MODULUS_BITS | CKA_VALUE_LEN => !same,
            t if TOKEN_SET.contains(&t) => true,
            t if is_key_value(t) && class != CKO_DATA && class != CKO_CERTIFICATE => !same,
            CKA_SENSITIVE => attrs.flag_or(CKA_SENSITIVE, false) && !parse_bool(v)?,
            CKA_EXTRACTABLE => !attrs.flag_or(CKA_EXTRACTABLE, false) && parse_bool(v)?,
            CKA_COPYABLE => !attrs.flag_or(CKA_COPYABLE, true) && parse_bool(v)?,
            CKA_WRAP_WITH_TRUSTED => attrs.flag_or(CKA_WRAP_WITH_TRUSTED, false) && !parse_bool(v)?,
            CKA_TRUSTED => parse_bool(v)? && !so,
            _ => false,
        };
        if read_only {
            return Err(Error::logged(
                CKR_ATTRIBUTE_READ_ONLY,
                format!("attribute 0x{ty:x} cannot be changed"),
            ));
        }
    }
    for (ty, v) in changes {
        if ty == CKA_SENSITIVE && !parse_bool(&v)? {
            attrs.set_flag(CKA_ALWAYS_SENSITIVE, false);
        }
        if ty == CKA_EXTRACTABLE && parse_bool(&v)? {
            attrs.set_flag(CKA_NEVER_EXTRACTABLE, false);
        }
        attrs.insert_value(ty, v);
    }
    Ok(())
}

/// C_GetAttributeValue for one object: a value, `Sensitive` or `Invalid` per type.
pub fn read(attrs: &Attrs, types: &[CK_ATTRIBUTE_TYPE]) -> Vec<AttrValue> {
    let class = attrs.ulong(CKA_CLASS).unwrap_or(CKO_DATA);
    let hidden = attrs.flag_or(CKA_SENSITIVE, false) || !attrs.flag_or(CKA_EXTRACTABLE, true);
    types
        .iter()
        .map(|ty| match attrs.get(ty) {
            Some(_) if hidden && is_sensitive_attr(class, *ty) => AttrValue::Sensitive,
            Some(v) => AttrValue::Value(v.to_vec()),
            None => AttrValue::Invalid,
        })
        .collect()
}

/// The usage attribute an operation needs on its key.
pub fn usage_attr(kind: Usage) -> CK_ATTRIBUTE_TYPE {
    match kind {
        Usage::Encrypt => CKA_ENCRYPT,
        Usage::Decrypt => CKA_DECRYPT,
        Usage::Sign => CKA_SIGN,
        Usage::Verify => CKA_VERIFY,
        Usage::Wrap => CKA_WRAP,
        Usage::Unwrap => CKA_UNWRAP,
        Usage::Derive => CKA_DERIVE,
        Usage::Encapsulate => CKA_ENCAPSULATE,
        Usage::Decapsulate => CKA_DECAPSULATE,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Encrypt,
    Decrypt,
    Sign,
    Verify,
    Wrap,
    Unwrap,
    Derive,
    Encapsulate,
    Decapsulate,
}

/// Checks that `attrs` (a key) may be used for `usage` with `mech`:
/// `CKR_KEY_FUNCTION_NOT_PERMITTED` for a usage flag, `CKR_MECHANISM_INVALID` for
/// CKA_ALLOWED_MECHANISMS (the code SoftHSM gives).
pub fn check_usage(attrs: &Attrs, usage: Usage, mech: CK_MECHANISM_TYPE) -> Result<()> {
    let class = attrs.ulong(CKA_CLASS).unwrap_or(CKO_DATA);
    if !is_key_class(class) {
        return Err(err(CKR_KEY_TYPE_INCONSISTENT));
    }
    if !attrs.flag_or(usage_attr(usage), false) {
        return Err(Error::logged(
            CKR_KEY_FUNCTION_NOT_PERMITTED,
            format!("key does not allow {usage:?}"),
        ));
    }
    if let Some(allowed) = attrs.bytes(CKA_ALLOWED_MECHANISMS) {
        if !allowed.is_empty() {
            let ok = allowed
                .chunks_exact(std::mem::size_of::<CK_ULONG>())
                .filter_map(|c| parse_ulong(c).ok())
                .any(|m| m == mech);
            if !ok {
                return Err(Error::logged(
                    CKR_MECHANISM_INVALID,
                    format!("mechanism 0x{mech:x} is not in the key's CKA_ALLOWED_MECHANISMS"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ty: CK_ATTRIBUTE_TYPE, v: impl Into<Vec<u8>>) -> Attr {
        Attr::new(ty, v)
    }

    /// Templates `C_CreateObject` refuses, with the code it must give.
    #[test]
    fn create_refuses_bad_templates() {
        let secret = Attr::ulong(CKA_CLASS, CKO_SECRET_KEY);
        let aes = Attr::ulong(CKA_KEY_TYPE, CKK_AES);
        let data = Attr::ulong(CKA_CLASS, CKO_DATA);
        let cases: [(&str, Vec<Attr>, CK_RV); 5] = [
            ("no class", vec![], CKR_TEMPLATE_INCOMPLETE),
            (
                "a key needs its key type",
                vec![secret.clone()],
                CKR_TEMPLATE_INCOMPLETE,
            ),
            (
                "token-set attributes are read-only",
                vec![secret, aes, Attr::bool(CKA_LOCAL, true)],
                CKR_ATTRIBUTE_READ_ONLY,
            ),
            (
                "a wrong-sized bool is a value error",
                vec![data.clone(), t(CKA_TOKEN, vec![1, 0])],
                CKR_ATTRIBUTE_VALUE_INVALID,
            ),
            (
                "an attribute of another class is a type error",
                vec![data, t(CKA_MODULUS, vec![1])],
                CKR_ATTRIBUTE_TYPE_INVALID,
            ),
        ];
        for (what, tpl, rv) in cases {
            let got = new_object(Op::Create, &tpl, &Attrs::new()).map(|_| ());
            assert_eq!(got.map_err(|e| e.rv()), Err(rv), "{what}");
        }
    }

    #[test]
    fn sensitive_values_are_hidden_and_one_way() {
        let tpl = [
            Attr::ulong(CKA_CLASS, CKO_SECRET_KEY),
            Attr::ulong(CKA_KEY_TYPE, CKK_AES),
            Attr::bool(CKA_SENSITIVE, true),
            t(CKA_VALUE, vec![7; 16]),
        ];
        let mut a = new_object(Op::Create, &tpl, &Attrs::new()).unwrap();
        assert_eq!(
            read(&a, &[CKA_VALUE, CKA_MODULUS]),
            vec![AttrValue::Sensitive, AttrValue::Invalid]
        );
        assert_eq!(
            a.flag(CKA_ALWAYS_SENSITIVE),
            Some(false),
            "imported keys have no history"
        );
        let e =
            apply_changes(Op::Set, &mut a, &[Attr::bool(CKA_SENSITIVE, false)], false).unwrap_err();
        assert_eq!(e.rv(), CKR_ATTRIBUTE_READ_ONLY);
        apply_changes(Op::Set, &mut a, &[t(CKA_LABEL, b"x".to_vec())], false).unwrap();
        assert_eq!(a.bytes(CKA_LABEL), Some(&b"x"[..]));
    }

    #[test]
    fn generated_keys_keep_history() {
        let fixed: Attrs = [(CKA_CLASS, crate::core::attr::ulong_bytes(CKO_SECRET_KEY))]
            .into_iter()
            .collect();
        let tpl = [
            Attr::ulong(CKA_KEY_TYPE, CKK_AES),
            Attr::bool(CKA_SENSITIVE, true),
            Attr::ulong(CKA_VALUE_LEN, 32),
        ];
        let a = new_object(Op::Generate, &tpl, &fixed).unwrap();
        assert_eq!(a.flag(CKA_ALWAYS_SENSITIVE), Some(true));
        assert_eq!(a.flag(CKA_NEVER_EXTRACTABLE), Some(true));
        assert_eq!(a.flag(CKA_LOCAL), Some(true));
    }

    #[test]
    fn unmodifiable_object_refuses_changes() {
        let tpl = [
            Attr::ulong(CKA_CLASS, CKO_DATA),
            Attr::bool(CKA_MODIFIABLE, false),
        ];
        let mut a = new_object(Op::Create, &tpl, &Attrs::new()).unwrap();
        let e = apply_changes(Op::Set, &mut a, &[t(CKA_LABEL, b"y".to_vec())], false).unwrap_err();
        assert_eq!(e.rv(), CKR_ACTION_PROHIBITED);
    }

    #[test]
    fn allowed_mechanisms_are_enforced() {
        let mut a = Attrs::new();
        a.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
        a.set_flag(CKA_SIGN, true);
        a.insert(
            CKA_ALLOWED_MECHANISMS,
            crate::core::attr::ulong_bytes(CKM_SHA256_HMAC),
        );
        check_usage(&a, Usage::Sign, CKM_SHA256_HMAC).unwrap();
        assert_eq!(
            check_usage(&a, Usage::Sign, CKM_SHA384_HMAC)
                .unwrap_err()
                .rv(),
            CKR_MECHANISM_INVALID
        );
        assert_eq!(
            check_usage(&a, Usage::Encrypt, CKM_AES_GCM)
                .unwrap_err()
                .rv(),
            CKR_KEY_FUNCTION_NOT_PERMITTED
        );
    }

    #[test]
    fn unique_ids_differ_and_are_hex() {
        let ids: std::collections::HashSet<Vec<u8>> = (0..1000).map(|_| new_unique_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(id
                .iter()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        // The random half is the same within one process, the counter half is not.
        let (a, b) = (new_unique_id(), new_unique_id());
        assert_eq!(a[..16], b[..16]);
        assert_ne!(a[16..], b[16..]);
    }
}
