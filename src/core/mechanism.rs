//! A mechanism with its parameter, decoded from the C structures by the FFI layer.

use crate::core::attr::Attr;
use cryptoki_sys::*;

/// A mechanism as passed to an `*Init`, `C_GenerateKey*`, `C_WrapKey`, ... call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mechanism {
    pub mech: CK_MECHANISM_TYPE,
    pub param: MechParam,
}

/// The decoded parameter of a mechanism. The FFI layer decodes the structures of the
/// mechanisms hsmux knows (checking `ulParameterLen` against the structure's size) and
/// hands any other parameter over as raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MechParam {
    None,
    /// A byte string parameter (an IV, derivation data) or an undecoded structure.
    Bytes(Vec<u8>),
    /// A `CK_ULONG` parameter (`CK_MAC_GENERAL_PARAMS`, `CK_EXTRACT_PARAMS`).
    Ulong(CK_ULONG),
    /// `CK_GCM_PARAMS`.
    Gcm {
        iv: Vec<u8>,
        iv_bits: CK_ULONG,
        aad: Vec<u8>,
        tag_bits: CK_ULONG,
    },
    /// `CK_RSA_PKCS_OAEP_PARAMS`.
    Oaep(OaepParams),
    /// `CK_RSA_PKCS_PSS_PARAMS`.
    Pss(PssParams),
    /// `CK_ECDH1_DERIVE_PARAMS`.
    Ecdh1 {
        kdf: CK_ULONG,
        shared_data: Vec<u8>,
        public_data: Vec<u8>,
    },
    /// `CK_KEY_DERIVATION_STRING_DATA` (`CKM_CONCATENATE_BASE_AND_DATA`, ...).
    Data(Vec<u8>),
    /// `CK_AES_CBC_ENCRYPT_DATA_PARAMS`.
    AesCbcData {
        iv: [u8; 16],
        data: Vec<u8>,
    },
    /// `CK_DES_CBC_ENCRYPT_DATA_PARAMS` (DES and DES3 CBC encrypt-data derivation).
    DesCbcData {
        iv: [u8; 8],
        data: Vec<u8>,
    },
    /// `CK_EDDSA_PARAMS`: its presence selects Ed25519ctx / Ed25519ph (Ed448 / Ed448ph).
    Eddsa {
        prehash: bool,
        context: Vec<u8>,
    },
    /// An object handle (`CKM_CONCATENATE_BASE_AND_KEY`): hsmux's handle, already
    /// translated to the backend's object id by the core.
    Key(u64),
    /// `CK_SIGN_ADDITIONAL_CONTEXT` (PKCS#11 3.2, `CKM_ML_DSA`): the hedging the caller
    /// asks for (`CKH_*`) and the FIPS 204 context string (at most 255 bytes).
    SignContext {
        hedge: CK_ULONG,
        context: Vec<u8>,
    },
    /// `CK_SP800_108_KDF_PARAMS` / `CK_SP800_108_FEEDBACK_KDF_PARAMS` (boxed: the largest
    /// parameter by far).
    Kbkdf(Box<KbkdfParams>),
}

/// The parameter of the SP 800-108 KDFs (PKCS#11 3.0 §2.42), as the consumer gave it; the
/// token checks which data fields its mode allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KbkdfParams {
    /// The PRF (`CKM_SHA256_HMAC`, `CKM_AES_CMAC`, ...).
    pub prf: CK_MECHANISM_TYPE,
    /// The PRF input, in order.
    pub data: Vec<PrfData>,
    /// Feedback mode's IV (`pIV`), empty when absent.
    pub iv: Vec<u8>,
    /// The templates of the additional derived keys (`CK_DERIVED_KEY`), in order; their
    /// handles go back into the consumer's structures.
    pub additional: Vec<Vec<Attr>>,
}

/// One `CK_PRF_DATA_PARAM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrfData {
    /// `CK_SP800_108_ITERATION_VARIABLE`: with its counter format in counter mode, without
    /// one (NULL, 0) in the chained modes.
    Iteration(Option<CounterFormat>),
    /// `CK_SP800_108_COUNTER`.
    Counter(CounterFormat),
    /// `CK_SP800_108_DKM_LENGTH`.
    DkmLength(DkmFormat),
    /// `CK_SP800_108_BYTE_ARRAY`.
    Bytes(Vec<u8>),
}

/// `CK_SP800_108_COUNTER_FORMAT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterFormat {
    pub little_endian: bool,
    pub width_bits: CK_ULONG,
}

/// `CK_SP800_108_DKM_LENGTH_FORMAT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DkmFormat {
    /// `CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS` or `..._SUM_OF_SEGMENTS`.
    pub method: CK_ULONG,
    pub little_endian: bool,
    pub width_bits: CK_ULONG,
}

/// `CK_RSA_PKCS_OAEP_PARAMS` (the source data is the label when `source` is
/// `CKZ_DATA_SPECIFIED`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OaepParams {
    pub hash: CK_MECHANISM_TYPE,
    pub mgf: CK_ULONG,
    pub source: CK_ULONG,
    pub source_data: Vec<u8>,
}

/// `CK_RSA_PKCS_PSS_PARAMS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PssParams {
    pub hash: CK_MECHANISM_TYPE,
    pub mgf: CK_ULONG,
    pub salt_len: CK_ULONG,
}

/// The RSA signature mechanisms: PKCS#1 v1.5, then PSS; each the raw one (a digest or
/// DigestInfo in) and the hash-and-sign ones.
pub const RSA_SIGN: [CK_MECHANISM_TYPE; 12] = [
    CKM_RSA_PKCS,
    CKM_SHA1_RSA_PKCS,
    CKM_SHA224_RSA_PKCS,
    CKM_SHA256_RSA_PKCS,
    CKM_SHA384_RSA_PKCS,
    CKM_SHA512_RSA_PKCS,
    CKM_RSA_PKCS_PSS,
    CKM_SHA1_RSA_PKCS_PSS,
    CKM_SHA224_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS_PSS,
    CKM_SHA384_RSA_PKCS_PSS,
    CKM_SHA512_RSA_PKCS_PSS,
];

/// The RSA-PSS signature mechanisms (the second half of [`RSA_SIGN`]); all take a
/// `CK_RSA_PKCS_PSS_PARAMS`.
pub const RSA_PSS: &[CK_MECHANISM_TYPE] = RSA_SIGN.split_at(6).1;

/// Is `mech` one of [`RSA_PSS`]?
pub fn is_rsa_pss(mech: CK_MECHANISM_TYPE) -> bool {
    RSA_PSS.contains(&mech)
}

impl Mechanism {
    pub fn new(mech: CK_MECHANISM_TYPE) -> Self {
        Mechanism {
            mech,
            param: MechParam::None,
        }
    }
    pub fn with(mech: CK_MECHANISM_TYPE, param: MechParam) -> Self {
        Mechanism { mech, param }
    }
    /// The OAEP parameter, `None` when the consumer gave another (or none).
    pub fn oaep(&self) -> Option<&OaepParams> {
        match &self.param {
            MechParam::Oaep(p) => Some(p),
            _ => None,
        }
    }
    /// The PSS parameter, `None` when the consumer gave another (or none).
    pub fn pss(&self) -> Option<PssParams> {
        match self.param {
            MechParam::Pss(p) => Some(p),
            _ => None,
        }
    }
}
