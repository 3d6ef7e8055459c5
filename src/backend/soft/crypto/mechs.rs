//! The mechanism list of the soft token (C_GetMechanismList / C_GetMechanismInfo).

use cryptoki_sys::*;

const fn info(min: CK_ULONG, max: CK_ULONG, flags: CK_FLAGS) -> CK_MECHANISM_INFO {
    CK_MECHANISM_INFO {
        ulMinKeySize: min,
        ulMaxKeySize: max,
        flags,
    }
}

const EC: CK_FLAGS = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;
const SV: CK_FLAGS = CKF_SIGN | CKF_VERIFY;
const CIPHER: CK_FLAGS = CKF_ENCRYPT | CKF_DECRYPT;
const ED: CK_FLAGS = CKF_EC_NAMEDCURVE | CKF_EC_COMPRESS;

/// Key sizes: bytes for AES, DES and generic secrets, bits for RSA and EC (PKCS#11 §2).
pub static MECHANISMS: &[(CK_MECHANISM_TYPE, CK_MECHANISM_INFO)] = &[
    (CKM_AES_KEY_GEN, info(16, 32, CKF_GENERATE)),
    (CKM_AES_GCM, info(16, 32, CKF_ENCRYPT | CKF_DECRYPT)),
    (CKM_AES_CBC, info(16, 32, CKF_ENCRYPT | CKF_DECRYPT)),
    (CKM_AES_CBC_PAD, info(16, 32, CKF_ENCRYPT | CKF_DECRYPT)),
    (CKM_AES_ECB, info(16, 32, CKF_ENCRYPT | CKF_DECRYPT)),
    (CKM_AES_CTR, info(16, 32, CKF_ENCRYPT | CKF_DECRYPT)),
    (CKM_AES_KEY_WRAP, info(16, 32, CKF_WRAP | CKF_UNWRAP)),
    (CKM_AES_KEY_WRAP_PAD, info(16, 32, CKF_WRAP | CKF_UNWRAP)),
    (CKM_AES_KEY_WRAP_KWP, info(16, 32, CKF_WRAP | CKF_UNWRAP)),
    (
        CKM_EC_KEY_PAIR_GEN,
        info(256, 521, CKF_GENERATE_KEY_PAIR | EC),
    ),
    (CKM_ECDSA, info(256, 521, SV | EC)),
    (CKM_ECDSA_SHA1, info(256, 521, SV | EC)),
    (CKM_ECDSA_SHA224, info(256, 521, SV | EC)),
    (CKM_ECDSA_SHA256, info(256, 521, SV | EC)),
    (CKM_ECDSA_SHA384, info(256, 521, SV | EC)),
    (CKM_ECDSA_SHA512, info(256, 521, SV | EC)),
    (CKM_ECDH1_DERIVE, info(256, 521, CKF_DERIVE | EC)),
    (
        CKM_EC_EDWARDS_KEY_PAIR_GEN,
        info(256, 448, CKF_GENERATE_KEY_PAIR | ED),
    ),
    (CKM_EDDSA, info(256, 448, SV | ED)),
    (
        CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
        info(256, 448, CKF_GENERATE_KEY_PAIR | ED),
    ),
    (
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        info(1024, 4096, CKF_GENERATE_KEY_PAIR),
    ),
    (
        CKM_RSA_PKCS,
        info(
            1024,
            4096,
            SV | CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP,
        ),
    ),
    (CKM_SHA256_RSA_PKCS, info(1024, 4096, SV)),
    (CKM_SHA384_RSA_PKCS, info(1024, 4096, SV)),
    (CKM_SHA512_RSA_PKCS, info(1024, 4096, SV)),
    (CKM_RSA_PKCS_PSS, info(1024, 4096, SV)),
    (CKM_SHA256_RSA_PKCS_PSS, info(1024, 4096, SV)),
    (CKM_SHA384_RSA_PKCS_PSS, info(1024, 4096, SV)),
    (CKM_SHA512_RSA_PKCS_PSS, info(1024, 4096, SV)),
    (
        CKM_RSA_PKCS_OAEP,
        info(
            1024,
            4096,
            CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP,
        ),
    ),
    (CKM_DES3_KEY_GEN, info(24, 24, CKF_GENERATE)),
    (CKM_DES3_ECB, info(24, 24, CIPHER | CKF_WRAP | CKF_UNWRAP)),
    (CKM_DES3_CBC, info(24, 24, CIPHER | CKF_WRAP | CKF_UNWRAP)),
    (
        CKM_DES3_CBC_PAD,
        info(24, 24, CIPHER | CKF_WRAP | CKF_UNWRAP),
    ),
    (CKM_DES_KEY_GEN, info(8, 8, CKF_GENERATE)),
    (CKM_DES_ECB, info(8, 8, CIPHER)),
    (CKM_DES_CBC, info(8, 8, CIPHER)),
    (CKM_DES_CBC_PAD, info(8, 8, CIPHER)),
    (CKM_GENERIC_SECRET_KEY_GEN, info(1, 512, CKF_GENERATE)),
    (CKM_SHA_1_KEY_GEN, info(1, 512, CKF_GENERATE)),
    (CKM_SHA224_KEY_GEN, info(1, 512, CKF_GENERATE)),
    (CKM_SHA256_KEY_GEN, info(1, 512, CKF_GENERATE)),
    (CKM_SHA384_KEY_GEN, info(1, 512, CKF_GENERATE)),
    (CKM_SHA512_KEY_GEN, info(1, 512, CKF_GENERATE)),
    (CKM_AES_CMAC, info(16, 32, SV)),
    (CKM_AES_CMAC_GENERAL, info(16, 32, SV)),
    (CKM_CONCATENATE_BASE_AND_KEY, info(0, 0, CKF_DERIVE)),
    (CKM_CONCATENATE_BASE_AND_DATA, info(0, 0, CKF_DERIVE)),
    (CKM_CONCATENATE_DATA_AND_BASE, info(0, 0, CKF_DERIVE)),
    (CKM_XOR_BASE_AND_DATA, info(0, 0, CKF_DERIVE)),
    (CKM_EXTRACT_KEY_FROM_KEY, info(0, 0, CKF_DERIVE)),
    (CKM_AES_ECB_ENCRYPT_DATA, info(16, 32, CKF_DERIVE)),
    (CKM_AES_CBC_ENCRYPT_DATA, info(16, 32, CKF_DERIVE)),
    // SP 800-108 (kbkdf.rs). §2.42 gives these base key sizes in bits, over every PRF:
    // a 1-byte generic secret (HMAC) up to the 512 bytes generic secrets reach.
    (CKM_SP800_108_COUNTER_KDF, info(8, 4096, CKF_DERIVE)),
    (CKM_SP800_108_FEEDBACK_KDF, info(8, 4096, CKF_DERIVE)),
    (CKM_SP800_108_DOUBLE_PIPELINE_KDF, info(8, 4096, CKF_DERIVE)),
    (CKM_SHA_1_HMAC, info(1, 512, SV)),
    (CKM_SHA224_HMAC, info(1, 512, SV)),
    (CKM_SHA256_HMAC, info(1, 512, SV)),
    (CKM_SHA384_HMAC, info(1, 512, SV)),
    (CKM_SHA512_HMAC, info(1, 512, SV)),
    (CKM_SHA256_HMAC_GENERAL, info(1, 512, SV)),
    (CKM_SHA384_HMAC_GENERAL, info(1, 512, SV)),
    (CKM_SHA512_HMAC_GENERAL, info(1, 512, SV)),
    (CKM_SHA_1, info(0, 0, CKF_DIGEST)),
    (CKM_SHA224, info(0, 0, CKF_DIGEST)),
    (CKM_SHA256, info(0, 0, CKF_DIGEST)),
    (CKM_SHA384, info(0, 0, CKF_DIGEST)),
    (CKM_SHA512, info(0, 0, CKF_DIGEST)),
    // PKCS#11 3.2 post-quantum (pqc.rs). Key sizes are public key lengths in bytes (the 3.2
    // spec's rule for these mechanisms): ML-DSA-44 to -87, ML-KEM-512 to -1024.
    (
        CKM_ML_DSA_KEY_PAIR_GEN,
        info(1312, 2592, CKF_GENERATE_KEY_PAIR),
    ),
    (CKM_ML_DSA, info(1312, 2592, SV)),
    (
        CKM_ML_KEM_KEY_PAIR_GEN,
        info(800, 1568, CKF_GENERATE_KEY_PAIR),
    ),
    (
        CKM_ML_KEM,
        info(800, 1568, CKF_ENCAPSULATE | CKF_DECAPSULATE),
    ),
];
