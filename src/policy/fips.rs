//! The FIPS 140-3 approved mechanisms (`approved_mechanisms = "fips"`): one row per
//! mechanism, the functions it is approved for and the document that approves it.
//! `docs/policy.md` shows this table (tests/policy.rs checks the page against it) and a
//! slot under `fips` offers exactly the rows' mechanisms, restricted to the rows' functions.
//! A mechanism with no row (raw RSA, SHA-1 signatures, DES, MD5, DSA, ...) is not approved.

use cryptoki_sys::*;

/// The function flags of `CK_MECHANISM_INFO` a row may approve.
pub const FUNCTIONS: CK_FLAGS = CKF_ENCRYPT
    | CKF_DECRYPT
    | CKF_DIGEST
    | CKF_SIGN
    | CKF_SIGN_RECOVER
    | CKF_VERIFY
    | CKF_VERIFY_RECOVER
    | CKF_GENERATE
    | CKF_GENERATE_KEY_PAIR
    | CKF_WRAP
    | CKF_UNWRAP
    | CKF_DERIVE
    | CKF_MESSAGE_ENCRYPT
    | CKF_MESSAGE_DECRYPT
    | CKF_MESSAGE_SIGN
    | CKF_MESSAGE_VERIFY;

/// One approved mechanism.
pub struct Row {
    pub mech: CK_MECHANISM_TYPE,
    pub name: &'static str,
    /// The functions (`CKF_*` of [`FUNCTIONS`]) it is approved for.
    pub functions: CK_FLAGS,
    /// Approved only where the key store's own validation covers it (`fips_extra`).
    pub conditional: bool,
    /// The approving document and what it limits.
    pub source: &'static str,
}

const SV: CK_FLAGS = CKF_SIGN | CKF_VERIFY | CKF_MESSAGE_SIGN | CKF_MESSAGE_VERIFY;
const ED: CK_FLAGS = CKF_ENCRYPT | CKF_DECRYPT | CKF_MESSAGE_ENCRYPT | CKF_MESSAGE_DECRYPT;
const EDWU: CK_FLAGS = ED | CKF_WRAP | CKF_UNWRAP;

macro_rules! rows {
    ($($m:ident $f:expr, $c:expr, $s:expr;)*) => {
        /// The table (`docs/policy.md`).
        pub const TABLE: &[Row] = &[$(Row {
            mech: $m,
            name: stringify!($m),
            functions: $f,
            conditional: $c,
            source: $s,
        },)*];
    };
}

const RSA_GEN: &str = "FIPS 186-5 A.1; modulus at least 2048 bits (SP 800-131A Rev 2 §3)";
const RSA_SIG: &str =
    "FIPS 186-5 §5; modulus at least 2048 bits to sign, 1024 to verify (SP 800-131A Rev 2 §3)";
const ECDSA: &str = "FIPS 186-5 §6, curves P-224/256/384/521 (SP 800-186)";
const EDDSA: &str = "FIPS 186-5 §7 (Ed25519, Ed448): only where the key store is validated for it";
const AES_38A: &str = "SP 800-38A";
const HMAC: &str = "FIPS 198-1; key at least 112 bits (SP 800-131A Rev 2 §10)";
const HASH: &str = "FIPS 180-4";
const HASH3: &str = "FIPS 202";
const KBKDF: &str = "SP 800-108 Rev 1 §4 with an HMAC (FIPS 198-1) or CMAC (SP 800-38B) PRF";
const KEYGEN: &str = "SP 800-133 Rev 2; HMAC keys at least 112 bits (SP 800-131A Rev 2 §10)";

rows! {
    CKM_RSA_PKCS_KEY_PAIR_GEN CKF_GENERATE_KEY_PAIR, false, RSA_GEN;
    CKM_RSA_PKCS SV, false, "FIPS 186-5 §5.4 (RSASSA-PKCS1-v1_5); encryption with it is not approved (SP 800-131A Rev 2 §6)";
    CKM_RSA_PKCS_PSS SV, false, "FIPS 186-5 §5.4 (RSASSA-PSS); a SHA-1 hashAlg is refused";
    CKM_SHA224_RSA_PKCS SV, false, RSA_SIG;
    CKM_SHA256_RSA_PKCS SV, false, RSA_SIG;
    CKM_SHA384_RSA_PKCS SV, false, RSA_SIG;
    CKM_SHA512_RSA_PKCS SV, false, RSA_SIG;
    CKM_SHA224_RSA_PKCS_PSS SV, false, RSA_SIG;
    CKM_SHA256_RSA_PKCS_PSS SV, false, RSA_SIG;
    CKM_SHA384_RSA_PKCS_PSS SV, false, RSA_SIG;
    CKM_SHA512_RSA_PKCS_PSS SV, false, RSA_SIG;
    CKM_SHA3_256_RSA_PKCS SV, false, RSA_SIG;
    CKM_SHA3_384_RSA_PKCS SV, false, RSA_SIG;
    CKM_SHA3_512_RSA_PKCS SV, false, RSA_SIG;
    CKM_SHA3_256_RSA_PKCS_PSS SV, false, RSA_SIG;
    CKM_SHA3_384_RSA_PKCS_PSS SV, false, RSA_SIG;
    CKM_SHA3_512_RSA_PKCS_PSS SV, false, RSA_SIG;
    CKM_RSA_PKCS_OAEP EDWU, false, "SP 800-56B Rev 2 §7.2.2 (RSA-OAEP); modulus at least 2048 bits";
    CKM_EC_KEY_PAIR_GEN CKF_GENERATE_KEY_PAIR, false, ECDSA;
    CKM_ECDSA SV, false, ECDSA;
    CKM_ECDSA_SHA224 SV, false, ECDSA;
    CKM_ECDSA_SHA256 SV, false, ECDSA;
    CKM_ECDSA_SHA384 SV, false, ECDSA;
    CKM_ECDSA_SHA512 SV, false, ECDSA;
    CKM_ECDSA_SHA3_256 SV, false, ECDSA;
    CKM_ECDSA_SHA3_384 SV, false, ECDSA;
    CKM_ECDSA_SHA3_512 SV, false, ECDSA;
    CKM_ECDH1_DERIVE CKF_DERIVE, false, "SP 800-56A Rev 3 §5.7.1.2 (ECC CDH), approved curves";
    CKM_ECDH1_COFACTOR_DERIVE CKF_DERIVE, false, "SP 800-56A Rev 3 §5.7.1.2 (ECC CDH), approved curves";
    CKM_EC_EDWARDS_KEY_PAIR_GEN CKF_GENERATE_KEY_PAIR, true, EDDSA;
    CKM_EDDSA SV, true, EDDSA;
    CKM_AES_KEY_GEN CKF_GENERATE, false, "SP 800-133 Rev 2; FIPS 197 (128, 192, 256 bits)";
    CKM_AES_ECB EDWU, false, AES_38A;
    CKM_AES_CBC EDWU, false, AES_38A;
    CKM_AES_CBC_PAD EDWU, false, AES_38A;
    CKM_AES_CTR ED, false, AES_38A;
    CKM_AES_CTS ED, false, "SP 800-38A Addendum (CBC-CS)";
    CKM_AES_GCM EDWU, false, "SP 800-38D";
    CKM_AES_CCM ED, false, "SP 800-38C";
    CKM_AES_CMAC SV, false, "SP 800-38B";
    CKM_AES_CMAC_GENERAL SV, false, "SP 800-38B";
    CKM_AES_XTS ED, false, "SP 800-38E (storage only)";
    CKM_AES_KEY_WRAP EDWU, false, "SP 800-38F (KW)";
    CKM_AES_KEY_WRAP_PAD EDWU, false, "SP 800-38F (KWP)";
    CKM_AES_KEY_WRAP_KWP EDWU, false, "SP 800-38F (KWP)";
    CKM_GENERIC_SECRET_KEY_GEN CKF_GENERATE, false, KEYGEN;
    CKM_SHA_1_KEY_GEN CKF_GENERATE, false, KEYGEN;
    CKM_SHA224_KEY_GEN CKF_GENERATE, false, KEYGEN;
    CKM_SHA256_KEY_GEN CKF_GENERATE, false, KEYGEN;
    CKM_SHA384_KEY_GEN CKF_GENERATE, false, KEYGEN;
    CKM_SHA512_KEY_GEN CKF_GENERATE, false, KEYGEN;
    CKM_SHA_1_HMAC SV, false, HMAC;
    CKM_SHA224_HMAC SV, false, HMAC;
    CKM_SHA256_HMAC SV, false, HMAC;
    CKM_SHA384_HMAC SV, false, HMAC;
    CKM_SHA512_HMAC SV, false, HMAC;
    CKM_SHA_1_HMAC_GENERAL SV, false, HMAC;
    CKM_SHA224_HMAC_GENERAL SV, false, HMAC;
    CKM_SHA256_HMAC_GENERAL SV, false, HMAC;
    CKM_SHA384_HMAC_GENERAL SV, false, HMAC;
    CKM_SHA512_HMAC_GENERAL SV, false, HMAC;
    CKM_SHA3_256_HMAC SV, false, HMAC;
    CKM_SHA3_384_HMAC SV, false, HMAC;
    CKM_SHA3_512_HMAC SV, false, HMAC;
    CKM_SHA_1 CKF_DIGEST, false, "FIPS 180-4; not for signatures (SP 800-131A Rev 2 §9)";
    CKM_SHA224 CKF_DIGEST, false, HASH;
    CKM_SHA256 CKF_DIGEST, false, HASH;
    CKM_SHA384 CKF_DIGEST, false, HASH;
    CKM_SHA512 CKF_DIGEST, false, HASH;
    CKM_SHA3_256 CKF_DIGEST, false, HASH3;
    CKM_SHA3_384 CKF_DIGEST, false, HASH3;
    CKM_SHA3_512 CKF_DIGEST, false, HASH3;
    CKM_HKDF_DERIVE CKF_DERIVE, false, "SP 800-56C Rev 2 §5 (HKDF)";
    CKM_SP800_108_COUNTER_KDF CKF_DERIVE, false, KBKDF;
    CKM_SP800_108_FEEDBACK_KDF CKF_DERIVE, false, KBKDF;
    CKM_SP800_108_DOUBLE_PIPELINE_KDF CKF_DERIVE, false, KBKDF;
}

/// The row of `mech`, if it is approved on a slot whose key store is also validated for
/// `extra`.
pub fn row(mech: CK_MECHANISM_TYPE, extra: &[CK_MECHANISM_TYPE]) -> Option<&'static Row> {
    TABLE
        .iter()
        .find(|r| r.mech == mech && (!r.conditional || extra.contains(&mech)))
}

/// The mechanism named `name` among the conditional rows (`fips_extra`).
pub fn conditional(name: &str) -> Option<CK_MECHANISM_TYPE> {
    TABLE
        .iter()
        .find(|r| r.conditional && r.name == name)
        .map(|r| r.mech)
}

/// The approved curves, by their DER-encoded `CKA_EC_PARAMS` (named-curve OIDs).
pub const CURVES: &[(&str, &[u8])] = &[
    ("P-224", &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x21]),
    (
        "P-256",
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
    ),
    ("P-384", &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]),
    ("P-521", &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23]),
];

/// Smallest RSA modulus for signing, decryption and encryption, in bits.
pub const RSA_MIN_BITS: u64 = 2048;
/// Smallest RSA modulus for verification (legacy use, SP 800-131A Rev 2 §3).
pub const RSA_MIN_VERIFY_BITS: u64 = 1024;
/// Smallest HMAC or generic secret key, in bytes (112 bits).
pub const HMAC_MIN_BYTES: u64 = 14;

/// The functions of a row, by name.
pub fn function_names(f: CK_FLAGS) -> String {
    let names = [
        (CKF_GENERATE, "generate"),
        (CKF_GENERATE_KEY_PAIR, "generate key pair"),
        (CKF_SIGN, "sign"),
        (CKF_VERIFY, "verify"),
        (CKF_ENCRYPT, "encrypt"),
        (CKF_DECRYPT, "decrypt"),
        (CKF_WRAP, "wrap"),
        (CKF_UNWRAP, "unwrap"),
        (CKF_DERIVE, "derive"),
        (CKF_DIGEST, "digest"),
    ];
    names
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table as `docs/policy.md` shows it (tests/policy.rs checks the page has it).
pub fn markdown() -> String {
    let mut s = String::from("| mechanism | approved for | source and limits |\n|---|---|---|\n");
    for r in TABLE {
        let cond = if r.conditional {
            " (with `fips_extra`)"
        } else {
            ""
        };
        s += &format!(
            "| `{}`{cond} | {} | {} |\n",
            r.name,
            function_names(r.functions),
            r.source
        );
    }
    s
}
