//! A mechanism with its parameter, decoded from the C structures by the FFI layer.

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
    /// `CK_RSA_PKCS_OAEP_PARAMS` (the source data is the label when `source` is
    /// `CKZ_DATA_SPECIFIED`).
    Oaep {
        hash: CK_MECHANISM_TYPE,
        mgf: CK_ULONG,
        source: CK_ULONG,
        source_data: Vec<u8>,
    },
    /// `CK_RSA_PKCS_PSS_PARAMS`.
    Pss {
        hash: CK_MECHANISM_TYPE,
        mgf: CK_ULONG,
        salt_len: CK_ULONG,
    },
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
    /// An object handle (`CKM_CONCATENATE_BASE_AND_KEY`): hsmux's handle, already
    /// translated to the backend's object id by the core.
    Key(u64),
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
}
