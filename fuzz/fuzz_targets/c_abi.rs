//! Structured sequences of PKCS#11 calls into hsmux's exported C functions (through the
//! 3.0 function table, `hsmux::ffi::table::FUNCTION_LIST_30`, the same functions a C
//! consumer gets from `C_GetInterface`), against an embedded soft token.
//!
//! # What the harness models
//!
//! Every call gets arbitrary handles (sessions and objects opened in this input, the
//! fixture keys, or raw values such as 0, 2^32-1, (CK_ULONG)-1), mechanisms with arbitrary
//! parameter structures, templates, PINs, and buffers with *lying lengths*: the length a
//! call is given is 0, shorter or longer than the buffer, 2^31, 2^32(+k), 2^34, 2^40 or
//! (CK_ULONG)-1. A pointer is only ever NULL or a real buffer of known size, as from a C
//! caller. What a C caller may do decides how a lie is built:
//!
//! * a length *shorter* than the buffer (or 0): the buffer as it is; a module that reads
//!   past the length it was given reads past what it may, and AddressSanitizer reports it
//!   when that also leaves the allocation (buffers are allocated at their exact size);
//! * a *moderately* longer length (up to a few KiB past the data): the buffer is allocated
//!   at the claimed length (the data, then filler), so the caller keeps the C contract and
//!   any read or write within the claimed length is in bounds;
//! * a *huge* length (2^31 and above): the pointer is a real buffer of the data's size.
//!   No C caller owns such a buffer; issue 17 requires that hsmux rejects these lengths
//!   (`CKR_ARGUMENTS_BAD`, `CKR_ATTRIBUTE_VALUE_INVALID`, `CKR_MECHANISM_PARAM_INVALID`,
//!   `CKR_PIN_LEN_RANGE`, `CKR_DATA_LEN_RANGE`, ...) *before* reading, so a read there is
//!   a defect and shows as an ASan report, a segfault or an allocation failure.
//!   Output buffers with a huge claimed length point at a 1 MiB buffer (larger than
//!   anything this harness can make hsmux write), since writing what fits the claim is
//!   within the contract.
//!
//! Set `HSMUX_FUZZ_NO_HUGE=1` to turn huge lengths into moderate ones (to look past the
//! known length defects of issue 17 in unfixed code), and `HSMUX_FUZZ_STRICT=1` to abort
//! on any `CKR_GENERAL_ERROR` (hsmux's answer for an internal failure). A panic anywhere in
//! hsmux aborts the run even though hsmux's guard would turn it into `CKR_GENERAL_ERROR`:
//! libfuzzer-sys's panic hook aborts first. `HSMUX_FUZZ_TRACE=1` prints each step of an
//! input and the return value of each call (to read a reproducer).
//!
//! # State
//!
//! One soft token per process in a temporary directory (`HSMUX_CONFIG` points at a
//! generated config with `kdf_iterations = 1000`), initialized once with known SO and user
//! PINs and fixture keys (AES, generic secret, EC P-256, Ed25519, RSA-2048, a data object).
//! Each input may open sessions, log in, start operations, create objects, finalize and
//! initialize again; afterwards the harness closes every session, re-initializes the
//! module if the input finalized it, undoes a PIN change, clears wrong-PIN counters with a
//! right login, and rebuilds the token when an input re-initialized it, locked a PIN, or
//! left too many objects.
#![no_main]

use arbitrary::Arbitrary;
use cryptoki_sys::*;
use hsmux::ffi::table::FUNCTION_LIST_30 as F;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::path::PathBuf;
use std::ptr::null_mut;

const SO_PIN: &[u8] = b"fuzz-so-pin-1";
const USER_PIN: &[u8] = b"fuzz-user-pin-1";
const SLOT: CK_SLOT_ID = 0;
const MAX_OPS: usize = 48;
/// Past this many object files the token is rebuilt.
const MAX_STORE_OBJECTS: usize = 400;
/// Where outputs with a huge claimed length point.
const BIG_OUT: usize = 1 << 20;

macro_rules! call {
    ($f:ident ( $($a:expr),* $(,)? )) => {{
        let rv = unsafe { (F.$f.expect(stringify!($f)))($($a),*) };
        check(stringify!($f), rv);
        rv
    }};
}

fn check(name: &str, rv: CK_RV) {
    if env().trace {
        eprintln!("    {name} -> 0x{rv:x}");
    }
    if rv == CKR_GENERAL_ERROR && env().strict {
        panic!("{name} answered CKR_GENERAL_ERROR (HSMUX_FUZZ_STRICT)");
    }
}

struct Env {
    no_huge: bool,
    strict: bool,
    trace: bool,
}

fn env() -> &'static Env {
    static E: std::sync::OnceLock<Env> = std::sync::OnceLock::new();
    E.get_or_init(|| Env {
        no_huge: std::env::var_os("HSMUX_FUZZ_NO_HUGE").is_some_and(|v| v != "0"),
        strict: std::env::var_os("HSMUX_FUZZ_STRICT").is_some_and(|v| v != "0"),
        trace: std::env::var_os("HSMUX_FUZZ_TRACE").is_some_and(|v| v != "0"),
    })
}

// ---- lengths and buffers -----------------------------------------------------------------

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Huge {
    P31,
    P32,
    P32Plus(u8),
    P34,
    P40,
    Max,
    MaxMinus(u8),
}

impl Huge {
    fn value(self) -> CK_ULONG {
        match self {
            Huge::P31 => 1 << 31,
            Huge::P32 => 1 << 32,
            Huge::P32Plus(k) => (1 << 32) + 1 + k as CK_ULONG,
            Huge::P34 => 1 << 34,
            Huge::P40 => 1 << 40,
            Huge::Max => CK_ULONG::MAX,
            Huge::MaxMinus(k) => CK_ULONG::MAX - 1 - k as CK_ULONG,
        }
    }
}

/// The length a call is told, relative to the real buffer.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Len {
    Exact,
    Zero,
    Short(u8),
    Long(u8),
    Huge(Huge),
}

/// What a lie comes to: the claimed length and how large the real allocation must be.
fn plan(len: Len, real: usize) -> (CK_ULONG, usize) {
    match len {
        Len::Exact => (real as CK_ULONG, real),
        Len::Zero => (0, real),
        Len::Short(k) => {
            if real == 0 {
                (0, 0)
            } else {
                ((real - 1 - (k as usize % real)) as CK_ULONG, real)
            }
        }
        Len::Long(k) => {
            let c = real + 1 + k as usize * 8;
            (c as CK_ULONG, c)
        }
        Len::Huge(h) if env().no_huge => plan(Len::Long(h.value() as u8), real),
        Len::Huge(h) => (h.value(), real),
    }
}

/// Every buffer handed to hsmux during one input; freed after its sessions are closed.
#[derive(Default)]
struct Arena {
    bytes: Vec<Box<[u8]>>,
    words: Vec<Box<[u64]>>,
    ulongs: Vec<Box<CK_ULONG>>,
    attrs: Vec<Box<[CK_ATTRIBUTE]>>,
    mechs: Vec<Box<CK_MECHANISM>>,
    handles: Vec<Box<[CK_ULONG]>>,
}

thread_local! {
    static BIG: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; BIG_OUT].into_boxed_slice());
}

fn big_ptr() -> *mut u8 {
    BIG.with(|b| b.borrow_mut().as_mut_ptr())
}

impl Arena {
    fn keep(&mut self, b: Vec<u8>) -> *mut u8 {
        let mut b = b.into_boxed_slice();
        let p = if b.is_empty() {
            // A real, non-NULL pointer to nothing, as C's malloc(0) may give.
            std::ptr::NonNull::<u8>::dangling().as_ptr()
        } else {
            b.as_mut_ptr()
        };
        self.bytes.push(b);
        p
    }

    /// An input buffer holding `data` (then filler up to a moderate claimed length).
    /// Returns the pointer, the claimed length and the bytes a call may read, when
    /// the claim is within the allocation.
    fn input(&mut self, data: &[u8], len: Len, null: bool) -> (*mut u8, CK_ULONG, Option<Vec<u8>>) {
        self.input_fill(data, len, null, 0xa5)
    }

    fn input_fill(
        &mut self,
        data: &[u8],
        len: Len,
        null: bool,
        fill: u8,
    ) -> (*mut u8, CK_ULONG, Option<Vec<u8>>) {
        let (claimed, real) = plan(len, data.len());
        if null {
            return (null_mut(), claimed, None);
        }
        let mut v = data.to_vec();
        v.resize(real, fill);
        let seen = ((claimed as usize) <= v.len()).then(|| v[..claimed as usize].to_vec());
        (self.keep(v), claimed, seen)
    }

    fn ulong(&mut self, v: CK_ULONG) -> *mut CK_ULONG {
        let mut b = Box::new(v);
        let p = &mut *b as *mut CK_ULONG;
        self.ulongs.push(b);
        p
    }

    /// An output buffer and its length pointer.
    fn output(&mut self, o: &BufOut) -> (*mut u8, *mut CK_ULONG) {
        let real = o.cap as usize % 4096;
        let (claimed, alloc) = plan(o.len, real);
        let p = if o.null_buf {
            null_mut()
        } else if claimed as usize > alloc {
            big_ptr()
        } else {
            self.keep(vec![0x5a; alloc])
        };
        let l = if o.null_len {
            null_mut()
        } else {
            self.ulong(claimed)
        };
        (p, l)
    }

    /// A structure as a mechanism parameter: `ulParameterLen` lies as `len` says.
    fn param<T>(&mut self, v: T, len: Len) -> (*mut u8, CK_ULONG) {
        let size = std::mem::size_of::<T>();
        let (claimed, real) = plan(len, size);
        let words = real.max(size).div_ceil(8).max(1);
        let mut b = vec![0xa5a5_a5a5_a5a5_a5a5u64; words].into_boxed_slice();
        let p = b.as_mut_ptr() as *mut u8;
        unsafe { std::ptr::write(p as *mut T, v) };
        self.words.push(b);
        (p, claimed)
    }
}

// ---- handles -----------------------------------------------------------------------------

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Raw {
    Zero,
    One,
    Small(u8),
    U32Max,
    Max,
    Any(u64),
}

impl Raw {
    fn value(self) -> CK_ULONG {
        match self {
            Raw::Zero => 0,
            Raw::One => 1,
            Raw::Small(k) => k as CK_ULONG,
            Raw::U32Max => u32::MAX as CK_ULONG,
            Raw::Max => CK_ULONG::MAX,
            Raw::Any(v) => v,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Sess {
    Open(u8),
    Raw(Raw),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Obj {
    Fixture(u8),
    Made(u8),
    Raw(Raw),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Slot {
    Ours,
    Raw(Raw),
}

// ---- attributes and templates ------------------------------------------------------------

const ATTR_TYPES: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_CLASS,
    CKA_KEY_TYPE,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_LABEL,
    CKA_ID,
    CKA_VALUE,
    CKA_VALUE_LEN,
    CKA_SENSITIVE,
    CKA_EXTRACTABLE,
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_SIGN,
    CKA_VERIFY,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_DERIVE,
    CKA_SIGN_RECOVER,
    CKA_VERIFY_RECOVER,
    CKA_MODULUS_BITS,
    CKA_MODULUS,
    CKA_PUBLIC_EXPONENT,
    CKA_PRIVATE_EXPONENT,
    CKA_PRIME_1,
    CKA_EC_PARAMS,
    CKA_EC_POINT,
    CKA_START_DATE,
    CKA_END_DATE,
    CKA_APPLICATION,
    CKA_OBJECT_ID,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_TRUSTED,
    CKA_WRAP_WITH_TRUSTED,
    CKA_ALWAYS_AUTHENTICATE,
    CKA_ALWAYS_SENSITIVE,
    CKA_NEVER_EXTRACTABLE,
    CKA_LOCAL,
    CKA_KEY_GEN_MECHANISM,
    CKA_CHECK_VALUE,
    CKA_UNIQUE_ID,
    CKA_PUBLIC_KEY_INFO,
    CKA_WRAP_TEMPLATE,
    CKA_UNWRAP_TEMPLATE,
    CKA_DERIVE_TEMPLATE,
    CKA_ALLOWED_MECHANISMS,
    CKA_CERTIFICATE_TYPE,
    CKA_SUBJECT,
    CKA_ISSUER,
    CKA_SERIAL_NUMBER,
    CKA_HW_FEATURE_TYPE,
    CKA_VENDOR_DEFINED,
];

const ULONGS: &[CK_ULONG] = &[
    CKO_DATA,
    CKO_CERTIFICATE,
    CKO_PUBLIC_KEY,
    CKO_PRIVATE_KEY,
    CKO_SECRET_KEY,
    CKO_HW_FEATURE,
    CKO_PROFILE,
    CKK_RSA,
    CKK_EC,
    CKK_EC_EDWARDS,
    CKK_AES,
    CKK_GENERIC_SECRET,
    CKK_SHA256_HMAC,
    CKK_DES3,
    16,
    24,
    32,
    64,
    1024,
    2048,
    CK_UNAVAILABLE_INFORMATION,
];

const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
const ED25519_NAME: &[u8] = &[
    0x13, 0x0c, b'e', b'd', b'w', b'a', b'r', b'd', b's', b'2', b'5', b'5', b'1', b'9',
];
const PRESETS: &[&[u8]] = &[
    P256_OID,
    P384_OID,
    ED25519_OID,
    ED25519_NAME,
    &[1, 0, 1],
    &[0x11; 16],
    &[0x22; 32],
    &[0x33; 24],
    b"fz-aes",
    b"fz-ec",
    b"20261206",
    &[0x04; 65],
];

#[derive(Arbitrary, Debug)]
enum AttrType {
    Known(u8),
    Raw(u64),
}

impl AttrType {
    fn value(&self) -> CK_ATTRIBUTE_TYPE {
        match self {
            AttrType::Known(i) => ATTR_TYPES[*i as usize % ATTR_TYPES.len()],
            AttrType::Raw(v) => *v,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Value {
    Ulong(u8),
    RawUlong(u64),
    True,
    False,
    Byte(u8),
    Preset(u8),
    Bytes(Vec<u8>),
}

impl Value {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Value::Ulong(i) => ULONGS[*i as usize % ULONGS.len()].to_ne_bytes().to_vec(),
            Value::RawUlong(v) => v.to_ne_bytes().to_vec(),
            Value::True => vec![CK_TRUE],
            Value::False => vec![CK_FALSE],
            Value::Byte(b) => vec![*b],
            Value::Preset(i) => PRESETS[*i as usize % PRESETS.len()].to_vec(),
            Value::Bytes(b) => b.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct AttrIn {
    ty: AttrType,
    value: Value,
    len: Len,
    null: bool,
}

#[derive(Arbitrary, Debug)]
struct Template {
    attrs: Vec<AttrIn>,
    count: Count,
    null: bool,
}

/// `ulCount` of a template or list, relative to the array.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Count {
    Exact,
    Zero,
    Short(u8),
    /// A count past the array: the array is allocated at that count (zeroed entries),
    /// as a C caller's would be.
    Long(u8),
    Huge(Huge),
}

fn count_plan(c: Count, real: usize) -> (CK_ULONG, usize) {
    let len = match c {
        Count::Exact => Len::Exact,
        Count::Zero => Len::Zero,
        Count::Short(k) => Len::Short(k),
        Count::Long(k) => Len::Long(k % 8),
        Count::Huge(h) => Len::Huge(h),
    };
    match len {
        Len::Long(k) => {
            let c = real + 1 + k as usize;
            (c as CK_ULONG, c)
        }
        other => plan(other, real),
    }
}

fn empty_attr() -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: CKA_VENDOR_DEFINED,
        pValue: null_mut(),
        ulValueLen: 0,
    }
}

impl Arena {
    fn template(&mut self, t: &Template) -> (*mut CK_ATTRIBUTE, CK_ULONG) {
        let mut v: Vec<CK_ATTRIBUTE> = t
            .attrs
            .iter()
            .take(24)
            .map(|a| {
                let (p, l, _) = self.input(&a.value.bytes(), a.len, a.null);
                CK_ATTRIBUTE {
                    type_: a.ty.value(),
                    pValue: p as *mut _,
                    ulValueLen: l,
                }
            })
            .collect();
        let (claimed, real) = count_plan(t.count, v.len());
        v.resize(real.max(v.len()), empty_attr());
        self.attrs_ptr(v, claimed, t.null)
    }

    fn attrs_ptr(
        &mut self,
        v: Vec<CK_ATTRIBUTE>,
        claimed: CK_ULONG,
        null: bool,
    ) -> (*mut CK_ATTRIBUTE, CK_ULONG) {
        if null {
            return (null_mut(), claimed);
        }
        let mut b = v.into_boxed_slice();
        let p = if b.is_empty() {
            std::ptr::NonNull::dangling().as_ptr()
        } else {
            b.as_mut_ptr()
        };
        self.attrs.push(b);
        (p, claimed)
    }

    fn out_template(&mut self, t: &OutTemplate) -> (*mut CK_ATTRIBUTE, CK_ULONG) {
        let mut v: Vec<CK_ATTRIBUTE> = t
            .attrs
            .iter()
            .take(24)
            .map(|a| {
                let (p, l) = self.output(&a.out);
                CK_ATTRIBUTE {
                    type_: a.ty.value(),
                    pValue: p as *mut _,
                    // The length pointer of an output is the attribute's own field here.
                    ulValueLen: if l.is_null() { 0 } else { unsafe { *l } },
                }
            })
            .collect();
        let (claimed, real) = count_plan(t.count, v.len());
        v.resize(real.max(v.len()), empty_attr());
        self.attrs_ptr(v, claimed, t.null)
    }
}

#[derive(Arbitrary, Debug)]
struct BufOut {
    cap: u16,
    len: Len,
    null_buf: bool,
    null_len: bool,
}

#[derive(Arbitrary, Debug)]
struct AttrOut {
    ty: AttrType,
    out: BufOut,
}

#[derive(Arbitrary, Debug)]
struct OutTemplate {
    attrs: Vec<AttrOut>,
    count: Count,
    null: bool,
}

#[derive(Arbitrary, Debug)]
struct BufIn {
    data: Vec<u8>,
    len: Len,
    null: bool,
}

impl Arena {
    fn buf(&mut self, b: &BufIn) -> (*mut u8, CK_ULONG) {
        let (p, l, _) = self.input(&b.data, b.len, b.null);
        (p, l)
    }
}

// ---- mechanisms ----------------------------------------------------------------------------

const MECHS: &[CK_MECHANISM_TYPE] = &[
    CKM_AES_KEY_GEN,
    CKM_AES_ECB,
    CKM_AES_CBC,
    CKM_AES_CBC_PAD,
    CKM_AES_CTR,
    CKM_AES_GCM,
    CKM_AES_KEY_WRAP,
    CKM_AES_KEY_WRAP_PAD,
    CKM_AES_CMAC,
    CKM_AES_CBC_ENCRYPT_DATA,
    CKM_AES_ECB_ENCRYPT_DATA,
    CKM_GENERIC_SECRET_KEY_GEN,
    CKM_SHA256_KEY_GEN,
    CKM_SHA_1,
    CKM_SHA224,
    CKM_SHA256,
    CKM_SHA384,
    CKM_SHA512,
    CKM_SHA_1_HMAC,
    CKM_SHA256_HMAC,
    CKM_SHA384_HMAC,
    CKM_SHA512_HMAC,
    CKM_SHA256_HMAC_GENERAL,
    CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKM_RSA_PKCS,
    CKM_RSA_X_509,
    CKM_RSA_PKCS_OAEP,
    CKM_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS,
    CKM_SHA256_RSA_PKCS_PSS,
    CKM_SHA1_RSA_PKCS,
    CKM_EC_KEY_PAIR_GEN,
    CKM_ECDSA,
    CKM_ECDSA_SHA256,
    CKM_ECDSA_SHA384,
    CKM_ECDH1_DERIVE,
    CKM_ECDH1_COFACTOR_DERIVE,
    CKM_EC_EDWARDS_KEY_PAIR_GEN,
    CKM_EDDSA,
    CKM_CONCATENATE_BASE_AND_DATA,
    CKM_CONCATENATE_DATA_AND_BASE,
    CKM_CONCATENATE_BASE_AND_KEY,
    CKM_XOR_BASE_AND_DATA,
    CKM_EXTRACT_KEY_FROM_KEY,
    CKM_DES3_CBC,
    CKM_MD5,
];

#[derive(Arbitrary, Debug, Clone, Copy)]
enum MechType {
    Known(u8),
    Raw(u64),
}

impl MechType {
    fn value(self) -> CK_MECHANISM_TYPE {
        match self {
            MechType::Known(i) => MECHS[i as usize % MECHS.len()],
            MechType::Raw(v) => v,
        }
    }
}

/// The 2.40 header's `CK_GCM_PARAMS` (no `ulIvBits`), which hsmux also takes.
#[repr(C)]
struct Gcm240 {
    p_iv: *mut u8,
    ul_iv_len: CK_ULONG,
    p_aad: *mut u8,
    ul_aad_len: CK_ULONG,
    ul_tag_bits: CK_ULONG,
}

#[derive(Arbitrary, Debug)]
enum Param {
    None,
    Bytes(BufIn),
    Gcm {
        iv: BufIn,
        iv_bits: Raw,
        aad: BufIn,
        tag_bits: u8,
    },
    Gcm240 {
        iv: BufIn,
        aad: BufIn,
        tag_bits: u8,
    },
    Oaep {
        hash: u8,
        mgf: u8,
        source: u8,
        data: BufIn,
    },
    Pss {
        hash: u8,
        mgf: u8,
        salt: Raw,
    },
    Ecdh {
        kdf: u8,
        shared: BufIn,
        public: BufIn,
    },
    Derive(BufIn),
    CbcData {
        iv: [u8; 16],
        data: BufIn,
    },
    Ulong(Raw),
    Key(Obj),
    Eddsa {
        ph: u8,
        ctx: BufIn,
    },
}

#[derive(Arbitrary, Debug)]
struct MechIn {
    ty: MechType,
    param: Param,
    /// `ulParameterLen` against the structure or buffer.
    len: Len,
    null: bool,
}

const HASHES: &[CK_MECHANISM_TYPE] = &[
    CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384, CKM_SHA512, CKM_MD5, 0,
];
const MGFS: &[CK_ULONG] = &[
    CKG_MGF1_SHA1,
    CKG_MGF1_SHA224,
    CKG_MGF1_SHA256,
    CKG_MGF1_SHA384,
    CKG_MGF1_SHA512,
    0,
    99,
];
const KDFS: &[CK_ULONG] = &[CKD_NULL, CKD_SHA1_KDF, CKD_SHA256_KDF, 99];

/// The mechanisms whose parameter is `p`'s structure, for structures that hold pointers.
fn pointer_mechs(p: &Param) -> Option<&'static [CK_MECHANISM_TYPE]> {
    Some(match p {
        Param::Gcm { .. } | Param::Gcm240 { .. } => &[CKM_AES_GCM],
        Param::Oaep { .. } => &[CKM_RSA_PKCS_OAEP],
        Param::Ecdh { .. } => &[CKM_ECDH1_DERIVE, CKM_ECDH1_COFACTOR_DERIVE],
        Param::Derive(_) => &[
            CKM_CONCATENATE_BASE_AND_DATA,
            CKM_CONCATENATE_DATA_AND_BASE,
            CKM_XOR_BASE_AND_DATA,
            CKM_AES_ECB_ENCRYPT_DATA,
        ],
        Param::CbcData { .. } => &[CKM_AES_CBC_ENCRYPT_DATA],
        Param::Eddsa { .. } => &[CKM_EDDSA],
        _ => return None,
    })
}

const POINTER_MECHS: &[CK_MECHANISM_TYPE] = &[
    CKM_AES_GCM,
    CKM_RSA_PKCS_OAEP,
    CKM_ECDH1_DERIVE,
    CKM_ECDH1_COFACTOR_DERIVE,
    CKM_CONCATENATE_BASE_AND_DATA,
    CKM_CONCATENATE_DATA_AND_BASE,
    CKM_XOR_BASE_AND_DATA,
    CKM_AES_ECB_ENCRYPT_DATA,
    CKM_AES_CBC_ENCRYPT_DATA,
    CKM_EDDSA,
];

fn pick<T: Copy>(list: &[T], i: u8) -> T {
    list[i as usize % list.len()]
}

// ---- the calls -----------------------------------------------------------------------------

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Family {
    Encrypt,
    Decrypt,
    Digest,
    Sign,
    Verify,
    SignRecover,
    VerifyRecover,
}

#[derive(Arbitrary, Debug)]
enum Pin {
    User,
    So,
    Wrong(BufIn),
    /// The right PIN with a lying length.
    Lying {
        so: bool,
        len: Len,
    },
    Null(Len),
}

#[derive(Arbitrary, Debug)]
enum UserType {
    User,
    So,
    Context,
    Raw(Raw),
}

impl UserType {
    fn value(&self) -> CK_USER_TYPE {
        match self {
            UserType::User => CKU_USER,
            UserType::So => CKU_SO,
            UserType::Context => CKU_CONTEXT_SPECIFIC,
            UserType::Raw(r) => r.value(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Initialize {
        args: bool,
        os_locking: bool,
        reserved_config: bool,
    },
    Finalize {
        reserved: bool,
    },
    GetInfo {
        null: bool,
    },
    GetSlotList {
        present: bool,
        out: ListOut,
    },
    GetSlotInfo {
        slot: Slot,
        null: bool,
    },
    GetTokenInfo {
        slot: Slot,
        null: bool,
    },
    GetMechanismList {
        slot: Slot,
        out: ListOut,
    },
    GetMechanismInfo {
        slot: Slot,
        mech: MechType,
        null: bool,
    },
    InitToken {
        slot: Slot,
        pin: Pin,
        label: [u8; 4],
        null_label: bool,
    },
    InitPin {
        s: Sess,
        pin: Pin,
    },
    SetPin {
        s: Sess,
        old: Pin,
        new: Pin,
    },
    OpenSession {
        slot: Slot,
        rw: bool,
        serial: bool,
        null_handle: bool,
    },
    CloseSession {
        s: Sess,
    },
    CloseAllSessions {
        slot: Slot,
    },
    GetSessionInfo {
        s: Sess,
        null: bool,
    },
    GetOperationState {
        s: Sess,
        out: BufOut,
    },
    SetOperationState {
        s: Sess,
        state: BufIn,
        enc: Obj,
        auth: Obj,
    },
    Login {
        s: Sess,
        user: UserType,
        pin: Pin,
    },
    LoginUser {
        s: Sess,
        user: UserType,
        pin: Pin,
        name: BufIn,
    },
    Logout {
        s: Sess,
    },
    CreateObject {
        s: Sess,
        t: Template,
        null_handle: bool,
    },
    CopyObject {
        s: Sess,
        o: Obj,
        t: Template,
        null_handle: bool,
    },
    DestroyObject {
        s: Sess,
        o: Obj,
    },
    GetObjectSize {
        s: Sess,
        o: Obj,
        null: bool,
    },
    GetAttributeValue {
        s: Sess,
        o: Obj,
        t: OutTemplate,
    },
    SetAttributeValue {
        s: Sess,
        o: Obj,
        t: Template,
    },
    FindObjectsInit {
        s: Sess,
        t: Template,
    },
    FindObjects {
        s: Sess,
        out: ListOut,
    },
    FindObjectsFinal {
        s: Sess,
    },
    OpInit {
        s: Sess,
        family: Family,
        mech: MechIn,
        key: Obj,
    },
    OneShot {
        s: Sess,
        family: Family,
        input: BufIn,
        out: BufOut,
    },
    Update {
        s: Sess,
        family: Family,
        input: BufIn,
        out: BufOut,
    },
    Final {
        s: Sess,
        family: Family,
        out: BufOut,
    },
    Verify {
        s: Sess,
        data: BufIn,
        sig: BufIn,
    },
    VerifyFinal {
        s: Sess,
        sig: BufIn,
    },
    DigestKey {
        s: Sess,
        key: Obj,
    },
    Dual {
        s: Sess,
        which: u8,
        input: BufIn,
        out: BufOut,
    },
    GenerateKey {
        s: Sess,
        mech: MechIn,
        t: Template,
        null_handle: bool,
    },
    GenerateKeyPair {
        s: Sess,
        mech: MechIn,
        public: Template,
        private: Template,
    },
    WrapKey {
        s: Sess,
        mech: MechIn,
        wrapping: Obj,
        key: Obj,
        out: BufOut,
    },
    UnwrapKey {
        s: Sess,
        mech: MechIn,
        unwrapping: Obj,
        wrapped: BufIn,
        t: Template,
    },
    DeriveKey {
        s: Sess,
        mech: MechIn,
        base: Obj,
        t: Template,
        null_handle: bool,
    },
    SeedRandom {
        s: Sess,
        seed: BufIn,
    },
    GenerateRandom {
        s: Sess,
        out: BufIn,
    },
    GetFunctionStatus {
        s: Sess,
    },
    CancelFunction {
        s: Sess,
    },
    SessionCancel {
        s: Sess,
        flags: Raw,
    },
    WaitForSlotEvent {
        flags: Raw,
    },
}

/// An output list (`C_GetSlotList`, `C_GetMechanismList`, `C_FindObjects`).
#[derive(Arbitrary, Debug)]
struct ListOut {
    cap: u8,
    count: Count,
    null_list: bool,
    null_count: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Open a RW session and log in as the user before the calls (reaches deep states
    /// without the fuzzer having to find a login first).
    open_rw: bool,
    login_user: bool,
    ops: Vec<Op>,
}

// ---- process state -------------------------------------------------------------------------

struct Fixture {
    labels: Vec<&'static str>,
    handles: Vec<CK_OBJECT_HANDLE>,
}

struct World {
    dir: PathBuf,
    fixtures: Fixture,
    /// Set when the fixture handles must be looked up again (after C_Initialize).
    refind: bool,
    /// Set when the token must be rebuilt before the next input.
    rebuild: bool,
    inputs: u64,
    rebuilds: u64,
    /// The RSA fixture's parts, to import it instead of generating it again.
    rsa_parts: Option<Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>>,
}

static mut WORLD: Option<World> = None;

fn world() -> &'static mut World {
    // libFuzzer runs inputs on one thread; the world is that thread's alone.
    #[allow(static_mut_refs)]
    unsafe {
        WORLD.get_or_insert_with(World::create)
    }
}

const FIXTURE_LABELS: &[&str] = &[
    "fz-aes",
    "fz-hmac",
    "fz-ec-pub",
    "fz-ec-priv",
    "fz-ed-pub",
    "fz-ed-priv",
    "fz-rsa-pub",
    "fz-rsa-priv",
    "fz-data",
];

fn attr(ty: CK_ATTRIBUTE_TYPE, v: &[u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: ty,
        pValue: v.as_ptr() as *mut _,
        ulValueLen: v.len() as CK_ULONG,
    }
}

fn mech(m: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: m,
        pParameter: null_mut(),
        ulParameterLen: 0,
    }
}

fn ok(name: &str, rv: CK_RV) {
    assert_eq!(rv, CKR_OK, "harness set-up: {name} failed: 0x{rv:x}");
}

impl World {
    fn create() -> World {
        // On tmpfs when there is one: the store fsyncs every write, which on a disk makes
        // the run wait on I/O (3-4x fewer executions).
        let base = ["/dev/shm"]
            .iter()
            .map(PathBuf::from)
            .find(|d| d.is_dir() && std::fs::metadata(d).is_ok_and(|m| !m.permissions().readonly()))
            .filter(|_| std::env::var_os("HSMUX_FUZZ_DISK").is_none())
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("hsmux-fuzz-cabi-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("hsmux.toml");
        std::fs::write(
            &config,
            format!(
                "[log]\nlevel = \"off\"\n\n[[slot]]\nlabel = \"fuzz\"\nbackend = \"soft\"\npath = {:?}\nkdf_iterations = 1000\n",
                dir.join("token").display().to_string()
            ),
        )
        .expect("config");
        std::env::set_var("HSMUX_CONFIG", &config);
        // Logging starts before the config is read: the environment silences it.
        std::env::set_var("HSMUX_LOG", "off");
        extern "C" fn cleanup() {
            #[allow(static_mut_refs)]
            let w = unsafe { WORLD.as_ref() };
            if let Some(w) = w {
                let _ = std::fs::remove_dir_all(&w.dir);
            }
        }
        unsafe { libc::atexit(cleanup) };
        let mut w = World {
            dir,
            fixtures: Fixture {
                labels: FIXTURE_LABELS.to_vec(),
                handles: vec![],
            },
            refind: false,
            rebuild: true,
            inputs: 0,
            rebuilds: 0,
            rsa_parts: None,
        };
        w.build_token();
        w
    }

    /// A fresh token: store wiped, C_InitToken, user PIN set, fixture objects made.
    fn build_token(&mut self) {
        self.rebuilds += 1;
        if env().trace || self.rebuilds % 100 == 0 {
            eprintln!(
                "c_abi: token rebuilt ({} times in {} inputs)",
                self.rebuilds, self.inputs
            );
        }
        unsafe {
            (F.C_Finalize.unwrap())(null_mut());
        }
        let _ = std::fs::remove_dir_all(self.dir.join("token"));
        ok("C_Initialize", call!(C_Initialize(null_mut())));
        let mut label = [b' '; 32];
        label[..4].copy_from_slice(b"fuzz");
        ok(
            "C_InitToken",
            call!(C_InitToken(
                SLOT,
                SO_PIN.as_ptr() as *mut _,
                SO_PIN.len() as CK_ULONG,
                label.as_mut_ptr()
            )),
        );
        let s = open_rw();
        ok(
            "C_Login(SO)",
            call!(C_Login(
                s,
                CKU_SO,
                SO_PIN.as_ptr() as *mut _,
                SO_PIN.len() as CK_ULONG
            )),
        );
        ok(
            "C_InitPIN",
            call!(C_InitPIN(
                s,
                USER_PIN.as_ptr() as *mut _,
                USER_PIN.len() as CK_ULONG
            )),
        );
        call!(C_Logout(s));
        ok(
            "C_Login(user)",
            call!(C_Login(
                s,
                CKU_USER,
                USER_PIN.as_ptr() as *mut _,
                USER_PIN.len() as CK_ULONG
            )),
        );
        self.make_fixtures(s);
        call!(C_CloseAllSessions(SLOT));
        self.rebuild = false;
        self.refind = false;
    }

    fn make_fixtures(&mut self, s: CK_SESSION_HANDLE) {
        let t = [CK_TRUE];
        let f = [CK_FALSE];
        let mut hs = Vec::new();
        let secret = |m: CK_MECHANISM_TYPE, label: &str, len: CK_ULONG| {
            let l = len.to_ne_bytes();
            let tmpl = [
                attr(CKA_TOKEN, &t),
                attr(CKA_LABEL, label.as_bytes()),
                attr(CKA_VALUE_LEN, &l),
                attr(CKA_ENCRYPT, &t),
                attr(CKA_DECRYPT, &t),
                attr(CKA_WRAP, &t),
                attr(CKA_UNWRAP, &t),
                attr(CKA_DERIVE, &t),
                attr(CKA_SIGN, &t),
                attr(CKA_VERIFY, &t),
                attr(CKA_EXTRACTABLE, &t),
                attr(CKA_SENSITIVE, &f),
            ];
            let mut m = mech(m);
            let mut h = 0;
            let mut rv = call!(C_GenerateKey(
                s,
                &mut m,
                tmpl.as_ptr() as *mut _,
                tmpl.len() as CK_ULONG,
                &mut h
            ));
            if rv != CKR_OK {
                // Not every key accepts every usage: the minimal template then.
                let tmpl = [
                    attr(CKA_TOKEN, &t),
                    attr(CKA_LABEL, label.as_bytes()),
                    attr(CKA_VALUE_LEN, &l),
                ];
                rv = call!(C_GenerateKey(
                    s,
                    &mut m,
                    tmpl.as_ptr() as *mut _,
                    tmpl.len() as CK_ULONG,
                    &mut h
                ));
            }
            ok(label, rv);
            h
        };
        hs.push(secret(CKM_AES_KEY_GEN, "fz-aes", 32));
        hs.push(secret(CKM_GENERIC_SECRET_KEY_GEN, "fz-hmac", 32));
        let pair = |m: CK_MECHANISM_TYPE, extra: &[CK_ATTRIBUTE], pl: &str, vl: &str, enc: bool| {
            let mut pubt = vec![
                attr(CKA_TOKEN, &t),
                attr(CKA_LABEL, pl.as_bytes()),
                attr(CKA_VERIFY, &t),
            ];
            pubt.extend_from_slice(extra);
            let mut privt = vec![
                attr(CKA_TOKEN, &t),
                attr(CKA_PRIVATE, &t),
                attr(CKA_LABEL, vl.as_bytes()),
                attr(CKA_SIGN, &t),
            ];
            if enc {
                pubt.push(attr(CKA_ENCRYPT, &t));
                pubt.push(attr(CKA_WRAP, &t));
                privt.push(attr(CKA_DECRYPT, &t));
                privt.push(attr(CKA_UNWRAP, &t));
                privt.push(attr(CKA_SENSITIVE, &f));
                privt.push(attr(CKA_EXTRACTABLE, &t));
            } else if m == CKM_EC_KEY_PAIR_GEN {
                privt.push(attr(CKA_DERIVE, &t));
            }
            let mut m = mech(m);
            let (mut a, mut b) = (0, 0);
            let rv = call!(C_GenerateKeyPair(
                s,
                &mut m,
                pubt.as_ptr() as *mut _,
                pubt.len() as CK_ULONG,
                privt.as_ptr() as *mut _,
                privt.len() as CK_ULONG,
                &mut a,
                &mut b
            ));
            ok(pl, rv);
            (a, b)
        };
        let (a, b) = pair(
            CKM_EC_KEY_PAIR_GEN,
            &[attr(CKA_EC_PARAMS, P256_OID)],
            "fz-ec-pub",
            "fz-ec-priv",
            false,
        );
        hs.extend([a, b]);
        let (a, b) = pair(
            CKM_EC_EDWARDS_KEY_PAIR_GEN,
            &[attr(CKA_EC_PARAMS, ED25519_NAME)],
            "fz-ed-pub",
            "fz-ed-priv",
            false,
        );
        hs.extend([a, b]);
        // RSA key generation costs 100+ ms: the pair is generated once per process (not
        // sensitive, so its parts can be read) and imported on every later rebuild.
        let (a, b) = match self.rsa_parts.clone() {
            Some(parts) => match import_rsa(s, &parts) {
                Some(pair) => pair,
                None => self.generate_rsa(s, &pair),
            },
            None => self.generate_rsa(s, &pair),
        };
        hs.extend([a, b]);
        let class = CKO_DATA.to_ne_bytes();
        let data = [
            attr(CKA_CLASS, &class),
            attr(CKA_TOKEN, &t),
            attr(CKA_LABEL, b"fz-data"),
            attr(CKA_VALUE, b"hello"),
        ];
        let mut h = 0;
        ok(
            "fz-data",
            call!(C_CreateObject(
                s,
                data.as_ptr() as *mut _,
                data.len() as CK_ULONG,
                &mut h
            )),
        );
        hs.push(h);
        self.fixtures.handles = hs;
    }

    fn generate_rsa(
        &mut self,
        s: CK_SESSION_HANDLE,
        pair: &dyn Fn(
            CK_MECHANISM_TYPE,
            &[CK_ATTRIBUTE],
            &str,
            &str,
            bool,
        ) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE),
    ) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
        let bits = (2048 as CK_ULONG).to_ne_bytes();
        let e = [1u8, 0, 1];
        let (a, b) = pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            &[attr(CKA_MODULUS_BITS, &bits), attr(CKA_PUBLIC_EXPONENT, &e)],
            "fz-rsa-pub",
            "fz-rsa-priv",
            true,
        );
        let mut parts = Vec::new();
        for ty in RSA_PARTS {
            let mut t = [CK_ATTRIBUTE {
                type_: ty,
                pValue: null_mut(),
                ulValueLen: 0,
            }];
            if call!(C_GetAttributeValue(s, b, t.as_mut_ptr(), 1)) != CKR_OK {
                return (a, b);
            }
            let mut v = vec![0u8; t[0].ulValueLen as usize];
            t[0].pValue = v.as_mut_ptr() as *mut _;
            if call!(C_GetAttributeValue(s, b, t.as_mut_ptr(), 1)) != CKR_OK {
                return (a, b);
            }
            v.truncate(t[0].ulValueLen as usize);
            parts.push((ty, v));
        }
        self.rsa_parts = Some(parts);
        (a, b)
    }

    /// The fixtures' handles after the module was initialized again.
    fn find_fixtures(&mut self) {
        let s = open_rw();
        call!(C_Login(
            s,
            CKU_USER,
            USER_PIN.as_ptr() as *mut _,
            USER_PIN.len() as CK_ULONG
        ));
        let mut hs = Vec::new();
        for l in &self.fixtures.labels {
            let t = [attr(CKA_LABEL, l.as_bytes())];
            call!(C_FindObjectsInit(s, t.as_ptr() as *mut _, 1));
            let mut h = [0; 2];
            let mut n = 0;
            call!(C_FindObjects(s, h.as_mut_ptr(), 2, &mut n));
            call!(C_FindObjectsFinal(s));
            if n == 0 {
                // Destroyed by an input: rebuild before the next one.
                self.rebuild = true;
            }
            hs.push(h[0]);
        }
        call!(C_CloseAllSessions(SLOT));
        self.fixtures.handles = hs;
        self.refind = false;
    }
}

const RSA_PARTS: [CK_ATTRIBUTE_TYPE; 8] = [
    CKA_MODULUS,
    CKA_PUBLIC_EXPONENT,
    CKA_PRIVATE_EXPONENT,
    CKA_PRIME_1,
    CKA_PRIME_2,
    CKA_EXPONENT_1,
    CKA_EXPONENT_2,
    CKA_COEFFICIENT,
];

/// The RSA fixture pair from its parts; `None` when the token refuses them.
fn import_rsa(
    s: CK_SESSION_HANDLE,
    parts: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
) -> Option<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
    let t = [CK_TRUE];
    let (pc, vc, k) = (
        CKO_PUBLIC_KEY.to_ne_bytes(),
        CKO_PRIVATE_KEY.to_ne_bytes(),
        CKK_RSA.to_ne_bytes(),
    );
    let mut pubt = vec![
        attr(CKA_CLASS, &pc),
        attr(CKA_KEY_TYPE, &k),
        attr(CKA_TOKEN, &t),
        attr(CKA_LABEL, b"fz-rsa-pub"),
        attr(CKA_VERIFY, &t),
        attr(CKA_ENCRYPT, &t),
        attr(CKA_WRAP, &t),
    ];
    pubt.extend(parts.iter().take(2).map(|(ty, v)| attr(*ty, v)));
    let mut privt = vec![
        attr(CKA_CLASS, &vc),
        attr(CKA_KEY_TYPE, &k),
        attr(CKA_TOKEN, &t),
        attr(CKA_PRIVATE, &t),
        attr(CKA_LABEL, b"fz-rsa-priv"),
        attr(CKA_SIGN, &t),
        attr(CKA_DECRYPT, &t),
        attr(CKA_UNWRAP, &t),
        attr(CKA_EXTRACTABLE, &t),
    ];
    privt.extend(parts.iter().map(|(ty, v)| attr(*ty, v)));
    let (mut a, mut b) = (0, 0);
    if call!(C_CreateObject(
        s,
        pubt.as_mut_ptr(),
        pubt.len() as CK_ULONG,
        &mut a
    )) != CKR_OK
    {
        return None;
    }
    if call!(C_CreateObject(
        s,
        privt.as_mut_ptr(),
        privt.len() as CK_ULONG,
        &mut b
    )) != CKR_OK
    {
        call!(C_DestroyObject(s, a));
        return None;
    }
    Some((a, b))
}

fn open_rw() -> CK_SESSION_HANDLE {
    let mut s = 0;
    ok(
        "C_OpenSession",
        call!(C_OpenSession(
            SLOT,
            CKF_SERIAL_SESSION | CKF_RW_SESSION,
            null_mut(),
            None,
            &mut s
        )),
    );
    s
}

/// One input's state.
struct Run<'w> {
    w: &'w mut World,
    a: Arena,
    sessions: Vec<CK_SESSION_HANDLE>,
    made: Vec<CK_OBJECT_HANDLE>,
    /// Wrong PINs given (so the counters are cleared afterwards).
    wrong_user: bool,
    wrong_so: bool,
    initialized: bool,
}

impl Run<'_> {
    fn sess(&self, s: Sess) -> CK_SESSION_HANDLE {
        match s {
            Sess::Open(i) if !self.sessions.is_empty() => {
                self.sessions[i as usize % self.sessions.len()]
            }
            Sess::Open(i) => i as CK_SESSION_HANDLE,
            Sess::Raw(r) => r.value(),
        }
    }

    fn obj(&self, o: Obj) -> CK_OBJECT_HANDLE {
        match o {
            Obj::Fixture(i) => {
                let f = &self.w.fixtures.handles;
                if f.is_empty() {
                    0
                } else {
                    f[i as usize % f.len()]
                }
            }
            Obj::Made(i) if !self.made.is_empty() => self.made[i as usize % self.made.len()],
            Obj::Made(i) => i as CK_OBJECT_HANDLE,
            Obj::Raw(r) => r.value(),
        }
    }

    fn slot(&self, s: Slot) -> CK_SLOT_ID {
        match s {
            Slot::Ours => SLOT,
            Slot::Raw(r) => r.value(),
        }
    }

    /// A PIN argument; also the bytes hsmux may read, when they are within the buffer.
    fn pin(&mut self, p: &Pin) -> (*mut u8, CK_ULONG, Option<Vec<u8>>) {
        match p {
            Pin::User => self.a.input(USER_PIN, Len::Exact, false),
            Pin::So => self.a.input(SO_PIN, Len::Exact, false),
            Pin::Wrong(b) => self.a.input(&b.data, b.len, b.null),
            Pin::Lying { so, len } => {
                self.a
                    .input(if *so { SO_PIN } else { USER_PIN }, *len, false)
            }
            Pin::Null(len) => self.a.input(&[], *len, true),
        }
    }

    fn note_login(&mut self, user: CK_USER_TYPE, rv: CK_RV) {
        if rv == CKR_PIN_INCORRECT {
            if user == CKU_SO {
                self.wrong_so = true;
            } else {
                self.wrong_user = true;
            }
        }
        if rv == CKR_PIN_LOCKED {
            self.w.rebuild = true;
        }
    }

    fn mechanism(&mut self, m: &MechIn) -> *mut CK_MECHANISM {
        if m.null {
            return null_mut();
        }
        // A structure that holds pointers goes only with a mechanism that defines it, and
        // a mechanism whose parameter holds pointers gets no other structure (zeroes
        // instead): otherwise the module would read numbers as pointers, which no C
        // implementation can guard against.
        let mut ty = m.ty.value();
        let own = pointer_mechs(&m.param);
        if let Some(list) = own {
            if !list.contains(&ty) {
                ty = list[ty as usize % list.len()];
            }
        }
        if own.is_none() && POINTER_MECHS.contains(&ty) {
            let size = match &m.param {
                Param::None => 0,
                Param::Bytes(b) => b.data.len(),
                Param::Pss { .. } => std::mem::size_of::<CK_RSA_PKCS_PSS_PARAMS>(),
                _ => std::mem::size_of::<CK_ULONG>(),
            };
            let null = matches!(
                &m.param,
                Param::None | Param::Bytes(BufIn { null: true, .. })
            );
            let (p, l, _) = self.a.input_fill(&vec![0; size], m.len, null, 0);
            return self.mech_ptr(ty, p, l);
        }
        let (p, l): (*mut u8, CK_ULONG) = match &m.param {
            Param::None => (null_mut(), 0),
            Param::Bytes(b) => {
                // A raw parameter: `ulParameterLen` lies as the mechanism's `len` says.
                let (p, l, _) = self.a.input(&b.data, m.len, b.null);
                (p, l)
            }
            Param::Gcm {
                iv,
                iv_bits,
                aad,
                tag_bits,
            } => {
                let (piv, liv) = self.a.buf(iv);
                let (paad, laad) = self.a.buf(aad);
                let bits = match iv_bits {
                    Raw::Zero => liv.wrapping_mul(8),
                    r => r.value(),
                };
                self.gcm(
                    piv,
                    liv,
                    bits,
                    paad,
                    laad,
                    *tag_bits as CK_ULONG,
                    m.len,
                    false,
                )
            }
            Param::Gcm240 { iv, aad, tag_bits } => {
                let (piv, liv) = self.a.buf(iv);
                let (paad, laad) = self.a.buf(aad);
                self.gcm(
                    piv,
                    liv,
                    liv.wrapping_mul(8),
                    paad,
                    laad,
                    *tag_bits as CK_ULONG,
                    m.len,
                    true,
                )
            }
            Param::Oaep {
                hash,
                mgf,
                source,
                data,
            } => {
                let (pd, ld) = self.a.buf(data);
                let o = CK_RSA_PKCS_OAEP_PARAMS {
                    hashAlg: pick(HASHES, *hash),
                    mgf: pick(MGFS, *mgf),
                    source: if *source % 4 == 3 {
                        *source as CK_ULONG
                    } else {
                        CKZ_DATA_SPECIFIED
                    },
                    pSourceData: pd as *mut _,
                    ulSourceDataLen: ld,
                };
                self.a.param(o, m.len)
            }
            Param::Pss { hash, mgf, salt } => {
                let s = CK_RSA_PKCS_PSS_PARAMS {
                    hashAlg: pick(HASHES, *hash),
                    mgf: pick(MGFS, *mgf),
                    sLen: salt.value(),
                };
                self.a.param(s, m.len)
            }
            Param::Ecdh {
                kdf,
                shared,
                public,
            } => {
                let (ps, ls) = self.a.buf(shared);
                let (pp, lp) = self.a.buf(public);
                let e = CK_ECDH1_DERIVE_PARAMS {
                    kdf: pick(KDFS, *kdf),
                    ulSharedDataLen: ls,
                    pSharedData: ps,
                    ulPublicDataLen: lp,
                    pPublicData: pp,
                };
                self.a.param(e, m.len)
            }
            Param::Derive(d) => {
                let (pd, ld) = self.a.buf(d);
                let k = CK_KEY_DERIVATION_STRING_DATA {
                    pData: pd,
                    ulLen: ld,
                };
                self.a.param(k, m.len)
            }
            Param::CbcData { iv, data } => {
                let (pd, ld) = self.a.buf(data);
                let c = CK_AES_CBC_ENCRYPT_DATA_PARAMS {
                    iv: *iv,
                    pData: pd,
                    length: ld,
                };
                self.a.param(c, m.len)
            }
            Param::Ulong(r) => self.a.param(r.value(), m.len),
            Param::Key(o) => {
                let h = self.obj(*o);
                self.a.param(h, m.len)
            }
            Param::Eddsa { ph, ctx } => {
                let (pc, lc) = self.a.buf(ctx);
                let e = CK_EDDSA_PARAMS {
                    phFlag: *ph & 1,
                    ulContextDataLen: lc,
                    pContextData: pc,
                };
                self.a.param(e, m.len)
            }
        };
        self.mech_ptr(ty, p, l)
    }

    fn mech_ptr(&mut self, ty: CK_MECHANISM_TYPE, p: *mut u8, l: CK_ULONG) -> *mut CK_MECHANISM {
        let mut b = Box::new(CK_MECHANISM {
            mechanism: ty,
            pParameter: p as *mut _,
            ulParameterLen: l,
        });
        let ptr = &mut *b as *mut CK_MECHANISM;
        self.a.mechs.push(b);
        ptr
    }

    /// A GCM parameter in either layout (40 bytes: the 2.40 header's, 48: 3.0's). The
    /// module picks the layout by the claimed length, so a lie that lands on the other
    /// layout's size is moved one byte off it (else numbers would be read as pointers).
    #[allow(clippy::too_many_arguments)]
    fn gcm(
        &mut self,
        piv: *mut u8,
        liv: CK_ULONG,
        bits: CK_ULONG,
        paad: *mut u8,
        laad: CK_ULONG,
        tag: CK_ULONG,
        len: Len,
        prefer240: bool,
    ) -> (*mut u8, CK_ULONG) {
        let use240 = prefer240;
        if use240 {
            let g = Gcm240 {
                p_iv: piv,
                ul_iv_len: liv,
                p_aad: paad,
                ul_aad_len: laad,
                ul_tag_bits: tag,
            };
            let (p, l) = self.a.param(g, len);
            // A claim of 48 bytes on a 40-byte structure is read as 3.0's: not made.
            if l as usize == std::mem::size_of::<CK_GCM_PARAMS>() {
                return (p, l + 1);
            }
            (p, l)
        } else {
            let g = CK_GCM_PARAMS {
                pIv: piv,
                ulIvLen: liv,
                ulIvBits: bits,
                pAAD: paad,
                ulAADLen: laad,
                ulTagBits: tag,
            };
            let (p, l) = self.a.param(g, len);
            if l as usize == std::mem::size_of::<Gcm240>() {
                return (p, l - 1);
            }
            (p, l)
        }
    }

    fn handle_out(&mut self, null: bool) -> *mut CK_OBJECT_HANDLE {
        if null {
            null_mut()
        } else {
            self.a.ulong(0)
        }
    }

    fn made(&mut self, rv: CK_RV, p: *mut CK_OBJECT_HANDLE) {
        if rv == CKR_OK && !p.is_null() {
            self.made.push(unsafe { *p });
        }
    }

    fn list<T>(&mut self, l: &ListOut) -> (*mut T, *mut CK_ULONG) {
        let real = l.cap as usize % 64;
        let (claimed, alloc) = count_plan(l.count, real);
        let count = if l.null_count {
            null_mut()
        } else {
            self.a.ulong(claimed)
        };
        if l.null_list {
            return (null_mut(), count);
        }
        // Lists hold CK_ULONG-sized items (slot ids, mechanism types, object handles);
        // a huge claimed count points at the big buffer.
        let p = if claimed as usize > alloc {
            big_ptr() as *mut T
        } else {
            let mut b = vec![0 as CK_ULONG; alloc.max(1)].into_boxed_slice();
            let p = b.as_mut_ptr() as *mut T;
            self.a.handles.push(b);
            p
        };
        (p, count)
    }

    fn op(&mut self, op: &Op) {
        if env().trace {
            eprintln!("{op:?}");
        }
        match op {
            Op::Initialize {
                args,
                os_locking,
                reserved_config,
            } => {
                let mut a = CK_C_INITIALIZE_ARGS {
                    CreateMutex: None,
                    DestroyMutex: None,
                    LockMutex: None,
                    UnlockMutex: None,
                    flags: if *os_locking { CKF_OS_LOCKING_OK } else { 0 },
                    pReserved: null_mut(),
                };
                if *reserved_config {
                    // A config path in pReserved (an hsmux extension): the same file.
                    let p =
                        std::ffi::CString::new(std::env::var("HSMUX_CONFIG").unwrap_or_default())
                            .unwrap_or_default();
                    let b = p.into_bytes_with_nul();
                    a.pReserved = self.a.keep(b) as *mut _;
                }
                let p = if *args {
                    &mut a as *mut _ as *mut _
                } else {
                    null_mut()
                };
                let rv = call!(C_Initialize(p));
                if rv == CKR_OK {
                    self.initialized = true;
                    self.sessions.clear();
                    self.w.refind = true;
                }
            }
            Op::Finalize { reserved } => {
                let p = if *reserved {
                    self.a.ulong(1) as *mut _
                } else {
                    null_mut()
                };
                if call!(C_Finalize(p)) == CKR_OK {
                    self.initialized = false;
                    self.sessions.clear();
                }
            }
            Op::GetInfo { null } => {
                let mut i: CK_INFO = unsafe { std::mem::zeroed() };
                let p = if *null { null_mut() } else { &mut i as *mut _ };
                call!(C_GetInfo(p));
            }
            Op::GetSlotList { present, out } => {
                let (p, n) = self.list::<CK_SLOT_ID>(out);
                call!(C_GetSlotList(*present as CK_BBOOL, p, n));
            }
            Op::GetSlotInfo { slot, null } => {
                let mut i: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
                let p = if *null { null_mut() } else { &mut i as *mut _ };
                call!(C_GetSlotInfo(self.slot(*slot), p));
            }
            Op::GetTokenInfo { slot, null } => {
                let mut i: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
                let p = if *null { null_mut() } else { &mut i as *mut _ };
                call!(C_GetTokenInfo(self.slot(*slot), p));
            }
            Op::GetMechanismList { slot, out } => {
                let (p, n) = self.list::<CK_MECHANISM_TYPE>(out);
                call!(C_GetMechanismList(self.slot(*slot), p, n));
            }
            Op::GetMechanismInfo { slot, mech, null } => {
                let mut i: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
                let p = if *null { null_mut() } else { &mut i as *mut _ };
                call!(C_GetMechanismInfo(self.slot(*slot), mech.value(), p));
            }
            Op::InitToken {
                slot,
                pin,
                label,
                null_label,
            } => {
                let (pp, pl, _) = self.pin(pin);
                let mut l = [b' '; 32];
                l[..4].copy_from_slice(label);
                let lp = if *null_label {
                    null_mut()
                } else {
                    self.a.keep(l.to_vec())
                };
                let rv = call!(C_InitToken(self.slot(*slot), pp, pl, lp));
                if rv == CKR_OK {
                    self.w.rebuild = true;
                }
                if rv == CKR_PIN_INCORRECT {
                    self.wrong_so = true;
                }
                if rv == CKR_PIN_LOCKED {
                    self.w.rebuild = true;
                }
            }
            Op::InitPin { s, pin } => {
                let (pp, pl, seen) = self.pin(pin);
                let rv = call!(C_InitPIN(self.sess(*s), pp, pl));
                if rv == CKR_OK && seen.as_deref() != Some(USER_PIN) {
                    // The user PIN is now something else: set it back.
                    let h = self.sess(*s);
                    let rv = call!(C_InitPIN(
                        h,
                        USER_PIN.as_ptr() as *mut _,
                        USER_PIN.len() as CK_ULONG
                    ));
                    if rv != CKR_OK {
                        self.w.rebuild = true;
                    }
                }
            }
            Op::SetPin { s, old, new } => {
                let (op, ol, old_seen) = self.pin(old);
                let (np, nl, new_seen) = self.pin(new);
                let h = self.sess(*s);
                let rv = call!(C_SetPIN(h, op, ol, np, nl));
                if rv == CKR_PIN_INCORRECT {
                    self.wrong_user = true;
                    self.wrong_so = true;
                }
                if rv == CKR_PIN_LOCKED {
                    self.w.rebuild = true;
                }
                if rv == CKR_OK && new_seen != old_seen {
                    match (new_seen, old_seen) {
                        (Some(n), Some(o)) => {
                            let rv = call!(C_SetPIN(
                                h,
                                n.as_ptr() as *mut _,
                                n.len() as CK_ULONG,
                                o.as_ptr() as *mut _,
                                o.len() as CK_ULONG
                            ));
                            if rv != CKR_OK {
                                self.w.rebuild = true;
                            }
                        }
                        _ => self.w.rebuild = true,
                    }
                }
            }
            Op::OpenSession {
                slot,
                rw,
                serial,
                null_handle,
            } => {
                let flags = if *serial { CKF_SERIAL_SESSION } else { 0 }
                    | if *rw { CKF_RW_SESSION } else { 0 };
                let p = self.handle_out(*null_handle);
                let rv = call!(C_OpenSession(self.slot(*slot), flags, null_mut(), None, p));
                if rv == CKR_OK && !p.is_null() {
                    self.sessions.push(unsafe { *p });
                }
            }
            Op::CloseSession { s } => {
                let h = self.sess(*s);
                if call!(C_CloseSession(h)) == CKR_OK {
                    self.sessions.retain(|x| *x != h);
                }
            }
            Op::CloseAllSessions { slot } => {
                if call!(C_CloseAllSessions(self.slot(*slot))) == CKR_OK {
                    self.sessions.clear();
                }
            }
            Op::GetSessionInfo { s, null } => {
                let mut i: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
                let p = if *null { null_mut() } else { &mut i as *mut _ };
                call!(C_GetSessionInfo(self.sess(*s), p));
            }
            Op::GetOperationState { s, out } => {
                let (p, l) = self.a.output(out);
                call!(C_GetOperationState(self.sess(*s), p, l));
            }
            Op::SetOperationState {
                s,
                state,
                enc,
                auth,
            } => {
                let (p, l) = self.a.buf(state);
                call!(C_SetOperationState(
                    self.sess(*s),
                    p,
                    l,
                    self.obj(*enc),
                    self.obj(*auth)
                ));
            }
            Op::Login { s, user, pin } => {
                let (p, l, _) = self.pin(pin);
                let u = user.value();
                let rv = call!(C_Login(self.sess(*s), u, p, l));
                self.note_login(u, rv);
            }
            Op::LoginUser { s, user, pin, name } => {
                let (p, l, _) = self.pin(pin);
                let (np, nl) = self.a.buf(name);
                let u = user.value();
                let rv = call!(C_LoginUser(self.sess(*s), u, p, l, np, nl));
                self.note_login(u, rv);
            }
            Op::Logout { s } => {
                call!(C_Logout(self.sess(*s)));
            }
            Op::CreateObject { s, t, null_handle } => {
                let (tp, tn) = self.a.template(t);
                let h = self.handle_out(*null_handle);
                let rv = call!(C_CreateObject(self.sess(*s), tp, tn, h));
                self.made(rv, h);
            }
            Op::CopyObject {
                s,
                o,
                t,
                null_handle,
            } => {
                let (tp, tn) = self.a.template(t);
                let h = self.handle_out(*null_handle);
                let rv = call!(C_CopyObject(self.sess(*s), self.obj(*o), tp, tn, h));
                self.made(rv, h);
            }
            Op::DestroyObject { s, o } => {
                let h = self.obj(*o);
                if call!(C_DestroyObject(self.sess(*s), h)) == CKR_OK {
                    self.made.retain(|x| *x != h);
                    if self.w.fixtures.handles.contains(&h) {
                        self.w.rebuild = true;
                    }
                }
            }
            Op::GetObjectSize { s, o, null } => {
                let p = if *null { null_mut() } else { self.a.ulong(0) };
                call!(C_GetObjectSize(self.sess(*s), self.obj(*o), p));
            }
            Op::GetAttributeValue { s, o, t } => {
                let (tp, tn) = self.a.out_template(t);
                call!(C_GetAttributeValue(self.sess(*s), self.obj(*o), tp, tn));
            }
            Op::SetAttributeValue { s, o, t } => {
                let (tp, tn) = self.a.template(t);
                let h = self.obj(*o);
                // A fixture changed stays in use; a relabelled one is found again (or
                // the token rebuilt) after the next C_Initialize.
                call!(C_SetAttributeValue(self.sess(*s), h, tp, tn));
            }
            Op::FindObjectsInit { s, t } => {
                let (tp, tn) = self.a.template(t);
                call!(C_FindObjectsInit(self.sess(*s), tp, tn));
            }
            Op::FindObjects { s, out } => {
                let (p, n) = self.list::<CK_OBJECT_HANDLE>(out);
                // ulMaxObjectCount is an input here: the claimed count; the count
                // found goes to a separate pointer.
                let max = if n.is_null() { 0 } else { unsafe { *n } };
                let found = if out.null_count {
                    null_mut()
                } else {
                    self.a.ulong(0)
                };
                call!(C_FindObjects(self.sess(*s), p, max, found));
            }
            Op::FindObjectsFinal { s } => {
                call!(C_FindObjectsFinal(self.sess(*s)));
            }
            Op::OpInit {
                s,
                family,
                mech,
                key,
            } => {
                let m = self.mechanism(mech);
                let (h, k) = (self.sess(*s), self.obj(*key));
                match family {
                    Family::Encrypt => call!(C_EncryptInit(h, m, k)),
                    Family::Decrypt => call!(C_DecryptInit(h, m, k)),
                    Family::Digest => call!(C_DigestInit(h, m)),
                    Family::Sign => call!(C_SignInit(h, m, k)),
                    Family::Verify => call!(C_VerifyInit(h, m, k)),
                    Family::SignRecover => call!(C_SignRecoverInit(h, m, k)),
                    Family::VerifyRecover => call!(C_VerifyRecoverInit(h, m, k)),
                };
            }
            Op::OneShot {
                s,
                family,
                input,
                out,
            } => {
                let (ip, il) = self.a.buf(input);
                let (op, ol) = self.a.output(out);
                let h = self.sess(*s);
                match family {
                    Family::Encrypt => call!(C_Encrypt(h, ip, il, op, ol)),
                    Family::Decrypt => call!(C_Decrypt(h, ip, il, op, ol)),
                    Family::Digest => call!(C_Digest(h, ip, il, op, ol)),
                    Family::Sign => call!(C_Sign(h, ip, il, op, ol)),
                    Family::Verify => {
                        let n = if ol.is_null() { 0 } else { unsafe { *ol } };
                        call!(C_Verify(h, ip, il, op, n))
                    }
                    Family::SignRecover => call!(C_SignRecover(h, ip, il, op, ol)),
                    Family::VerifyRecover => call!(C_VerifyRecover(h, ip, il, op, ol)),
                };
            }
            Op::Update {
                s,
                family,
                input,
                out,
            } => {
                let (ip, il) = self.a.buf(input);
                let (op, ol) = self.a.output(out);
                let h = self.sess(*s);
                match family {
                    Family::Encrypt => call!(C_EncryptUpdate(h, ip, il, op, ol)),
                    Family::Decrypt => call!(C_DecryptUpdate(h, ip, il, op, ol)),
                    Family::Digest | Family::SignRecover => call!(C_DigestUpdate(h, ip, il)),
                    Family::Sign => call!(C_SignUpdate(h, ip, il)),
                    Family::Verify | Family::VerifyRecover => call!(C_VerifyUpdate(h, ip, il)),
                };
            }
            Op::Final { s, family, out } => {
                let (op, ol) = self.a.output(out);
                let h = self.sess(*s);
                match family {
                    Family::Encrypt => call!(C_EncryptFinal(h, op, ol)),
                    Family::Decrypt => call!(C_DecryptFinal(h, op, ol)),
                    Family::Digest | Family::SignRecover => call!(C_DigestFinal(h, op, ol)),
                    Family::Sign => call!(C_SignFinal(h, op, ol)),
                    Family::Verify | Family::VerifyRecover => {
                        let n = if ol.is_null() { 0 } else { unsafe { *ol } };
                        call!(C_VerifyFinal(h, op, n))
                    }
                };
            }
            Op::Verify { s, data, sig } => {
                let (dp, dl) = self.a.buf(data);
                let (sp, sl) = self.a.buf(sig);
                call!(C_Verify(self.sess(*s), dp, dl, sp, sl));
            }
            Op::VerifyFinal { s, sig } => {
                let (sp, sl) = self.a.buf(sig);
                call!(C_VerifyFinal(self.sess(*s), sp, sl));
            }
            Op::DigestKey { s, key } => {
                call!(C_DigestKey(self.sess(*s), self.obj(*key)));
            }
            Op::Dual {
                s,
                which,
                input,
                out,
            } => {
                let (ip, il) = self.a.buf(input);
                let (op, ol) = self.a.output(out);
                let h = self.sess(*s);
                match which % 4 {
                    0 => call!(C_DigestEncryptUpdate(h, ip, il, op, ol)),
                    1 => call!(C_DecryptDigestUpdate(h, ip, il, op, ol)),
                    2 => call!(C_SignEncryptUpdate(h, ip, il, op, ol)),
                    _ => call!(C_DecryptVerifyUpdate(h, ip, il, op, ol)),
                };
            }
            Op::GenerateKey {
                s,
                mech,
                t,
                null_handle,
            } => {
                let m = self.mechanism(mech);
                let (tp, tn) = self.a.template(t);
                let h = self.handle_out(*null_handle);
                let rv = call!(C_GenerateKey(self.sess(*s), m, tp, tn, h));
                self.made(rv, h);
            }
            Op::GenerateKeyPair {
                s,
                mech,
                public,
                private,
            } => {
                if mech.ty.value() == CKM_RSA_PKCS_KEY_PAIR_GEN
                    || mech.ty.value() == CKM_RSA_X9_31_KEY_PAIR_GEN
                {
                    // RSA key generation takes 10-1000 ms: one key per run (the
                    // fixture) covers it; fuzzing it would slow every other path.
                    return;
                }
                let m = self.mechanism(mech);
                let (pp, pn) = self.a.template(public);
                let (vp, vn) = self.a.template(private);
                let (a, b) = (self.a.ulong(0), self.a.ulong(0));
                let rv = call!(C_GenerateKeyPair(self.sess(*s), m, pp, pn, vp, vn, a, b));
                self.made(rv, a);
                self.made(rv, b);
            }
            Op::WrapKey {
                s,
                mech,
                wrapping,
                key,
                out,
            } => {
                let m = self.mechanism(mech);
                let (op, ol) = self.a.output(out);
                call!(C_WrapKey(
                    self.sess(*s),
                    m,
                    self.obj(*wrapping),
                    self.obj(*key),
                    op,
                    ol
                ));
            }
            Op::UnwrapKey {
                s,
                mech,
                unwrapping,
                wrapped,
                t,
            } => {
                let m = self.mechanism(mech);
                let (wp, wl) = self.a.buf(wrapped);
                let (tp, tn) = self.a.template(t);
                let h = self.a.ulong(0);
                let rv = call!(C_UnwrapKey(
                    self.sess(*s),
                    m,
                    self.obj(*unwrapping),
                    wp,
                    wl,
                    tp,
                    tn,
                    h
                ));
                self.made(rv, h);
            }
            Op::DeriveKey {
                s,
                mech,
                base,
                t,
                null_handle,
            } => {
                let m = self.mechanism(mech);
                let (tp, tn) = self.a.template(t);
                let h = self.handle_out(*null_handle);
                let rv = call!(C_DeriveKey(self.sess(*s), m, self.obj(*base), tp, tn, h));
                self.made(rv, h);
            }
            Op::SeedRandom { s, seed } => {
                let (p, l) = self.a.buf(seed);
                call!(C_SeedRandom(self.sess(*s), p, l));
            }
            Op::GenerateRandom { s, out } => {
                // An output buffer with an input's lies: a moderate claim is allocated,
                // a huge one is refused or would write past (it is a length to check).
                let (p, l, _) = self.a.input(&out.data, out.len, out.null);
                call!(C_GenerateRandom(self.sess(*s), p, l));
            }
            Op::GetFunctionStatus { s } => {
                call!(C_GetFunctionStatus(self.sess(*s)));
            }
            Op::CancelFunction { s } => {
                call!(C_CancelFunction(self.sess(*s)));
            }
            Op::SessionCancel { s, flags } => {
                call!(C_SessionCancel(self.sess(*s), flags.value()));
            }
            Op::WaitForSlotEvent { flags } => {
                // Blocking waits would hang the run: always CKF_DONT_BLOCK.
                let mut slot = 0;
                call!(C_WaitForSlotEvent(
                    flags.value() | CKF_DONT_BLOCK,
                    &mut slot,
                    null_mut()
                ));
            }
        }
    }

    /// Back to the state every input starts from.
    fn finish(mut self) {
        if !self.initialized {
            ok("C_Initialize", call!(C_Initialize(null_mut())));
            self.w.refind = true;
        }
        call!(C_CloseAllSessions(SLOT));
        if !self.w.rebuild && (self.wrong_user || self.wrong_so || !self.made.is_empty()) {
            let s = open_rw();
            // A right login clears the failure counter; a locked PIN needs a new token.
            for (wrong, user, pin) in [
                (self.wrong_user, CKU_USER, USER_PIN),
                (self.wrong_so, CKU_SO, SO_PIN),
            ] {
                if wrong {
                    let rv = call!(C_Login(
                        s,
                        user,
                        pin.as_ptr() as *mut _,
                        pin.len() as CK_ULONG
                    ));
                    if rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN {
                        self.w.rebuild = true;
                    }
                    call!(C_Logout(s));
                }
            }
            // Public token objects made by the input go now; private ones stay until the
            // store holds too many objects.
            for h in std::mem::take(&mut self.made) {
                call!(C_DestroyObject(s, h));
            }
            call!(C_CloseAllSessions(SLOT));
        }
        drop(std::mem::take(&mut self.a));
        self.w.inputs += 1;
        if self.w.inputs % 256 == 0 {
            let n = std::fs::read_dir(self.w.dir.join("token/objects")).map_or(0, |d| d.count());
            if n > MAX_STORE_OBJECTS {
                self.w.rebuild = true;
            }
        }
        if self.w.rebuild {
            self.w.build_token();
        } else if self.w.refind {
            self.w.find_fixtures();
            if self.w.rebuild {
                self.w.build_token();
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let w = world();
    if w.rebuild {
        w.build_token();
    }
    let mut run = Run {
        w,
        a: Arena::default(),
        sessions: Vec::new(),
        made: Vec::new(),
        wrong_user: false,
        wrong_so: false,
        initialized: true,
    };
    if input.open_rw {
        let s = open_rw();
        run.sessions.push(s);
        if input.login_user {
            call!(C_Login(
                s,
                CKU_USER,
                USER_PIN.as_ptr() as *mut _,
                USER_PIN.len() as CK_ULONG
            ));
        }
    }
    for op in input.ops.iter().take(MAX_OPS) {
        run.op(op);
    }
    run.finish();
});
