//! Names of key types and of the post-quantum parameter sets (`CKA_PARAMETER_SET`), for
//! logs and the CLI: "ML-DSA-65", "ML-KEM-768", "SLH-DSA-SHA2-128s", as FIPS 203/204/205
//! name them.

use cryptoki_sys::*;

/// The FIPS name of a key of type `kt` with parameter set `set`, for the PQC key types.
pub fn parameter_set(kt: CK_KEY_TYPE, set: CK_ULONG) -> Option<&'static str> {
    Some(match (kt, set) {
        (CKK_ML_DSA, CKP_ML_DSA_44) => "ML-DSA-44",
        (CKK_ML_DSA, CKP_ML_DSA_65) => "ML-DSA-65",
        (CKK_ML_DSA, CKP_ML_DSA_87) => "ML-DSA-87",
        (CKK_ML_KEM, CKP_ML_KEM_512) => "ML-KEM-512",
        (CKK_ML_KEM, CKP_ML_KEM_768) => "ML-KEM-768",
        (CKK_ML_KEM, CKP_ML_KEM_1024) => "ML-KEM-1024",
        (CKK_SLH_DSA, CKP_SLH_DSA_SHA2_128S) => "SLH-DSA-SHA2-128s",
        (CKK_SLH_DSA, CKP_SLH_DSA_SHAKE_128S) => "SLH-DSA-SHAKE-128s",
        (CKK_SLH_DSA, CKP_SLH_DSA_SHA2_128F) => "SLH-DSA-SHA2-128f",
        (CKK_SLH_DSA, CKP_SLH_DSA_SHAKE_128F) => "SLH-DSA-SHAKE-128f",
        (CKK_SLH_DSA, CKP_SLH_DSA_SHA2_192S) => "SLH-DSA-SHA2-192s",
        (CKK_SLH_DSA, CKP_SLH_DSA_SHAKE_192S) => "SLH-DSA-SHAKE-192s",
        (CKK_SLH_DSA, CKP_SLH_DSA_SHA2_192F) => "SLH-DSA-SHA2-192f",
        (CKK_SLH_DSA, CKP_SLH_DSA_SHAKE_192F) => "SLH-DSA-SHAKE-192f",
        (CKK_SLH_DSA, CKP_SLH_DSA_SHA2_256S) => "SLH-DSA-SHA2-256s",
        (CKK_SLH_DSA, CKP_SLH_DSA_SHAKE_256S) => "SLH-DSA-SHAKE-256s",
        (CKK_SLH_DSA, CKP_SLH_DSA_SHA2_256F) => "SLH-DSA-SHA2-256f",
        (CKK_SLH_DSA, CKP_SLH_DSA_SHAKE_256F) => "SLH-DSA-SHAKE-256f",
        _ => return None,
    })
}

/// Is `kt` a key type whose keys carry `CKA_PARAMETER_SET`?
pub fn has_parameter_set(kt: CK_KEY_TYPE) -> bool {
    matches!(kt, CKK_ML_DSA | CKK_ML_KEM | CKK_SLH_DSA)
}

/// A short name of a key type (`CKK_` left out), or its number in hex.
pub fn key_type(kt: CK_KEY_TYPE) -> String {
    match kt {
        CKK_RSA => "RSA",
        CKK_EC => "EC",
        CKK_EC_EDWARDS => "EC_EDWARDS",
        CKK_EC_MONTGOMERY => "EC_MONTGOMERY",
        CKK_AES => "AES",
        CKK_DES3 => "DES3",
        CKK_GENERIC_SECRET => "GENERIC_SECRET",
        CKK_SHA_1_HMAC => "SHA_1_HMAC",
        CKK_SHA256_HMAC => "SHA256_HMAC",
        CKK_SHA384_HMAC => "SHA384_HMAC",
        CKK_SHA512_HMAC => "SHA512_HMAC",
        CKK_ML_DSA => "ML-DSA",
        CKK_ML_KEM => "ML-KEM",
        CKK_SLH_DSA => "SLH-DSA",
        _ => return format!("0x{kt:x}"),
    }
    .to_string()
}

/// What a key is: its parameter set's name for a PQC key ("ML-KEM-768"), else its type's
/// ("EC"); a PQC key of an unknown set shows the set's number.
pub fn describe(kt: CK_KEY_TYPE, set: Option<CK_ULONG>) -> String {
    match (has_parameter_set(kt), set) {
        (true, Some(s)) => parameter_set(kt, s)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{} set 0x{s:x}", key_type(kt))),
        _ => key_type(kt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(describe(CKK_ML_DSA, Some(CKP_ML_DSA_65)), "ML-DSA-65");
        assert_eq!(describe(CKK_ML_KEM, Some(CKP_ML_KEM_1024)), "ML-KEM-1024");
        assert_eq!(
            describe(CKK_SLH_DSA, Some(CKP_SLH_DSA_SHA2_128S)),
            "SLH-DSA-SHA2-128s"
        );
        assert_eq!(describe(CKK_ML_KEM, Some(9)), "ML-KEM set 0x9");
        assert_eq!(describe(CKK_EC, None), "EC");
        assert_eq!(describe(0x8000_0001, None), "0x80000001");
    }
}
