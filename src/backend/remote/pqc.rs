//! Post-quantum keys of the remote services (PKCS#11 3.2): ML-DSA (FIPS 204), SLH-DSA
//! (FIPS 205; SHA2-128s, the one set a service offers) and ML-KEM (FIPS 203). What this
//! holds: each parameter set's sizes and SubjectPublicKeyInfo OID (the NIST OIDs of
//! RFC 9881/9909/9935), the public key in and out of a SubjectPublicKeyInfo (AWS hands
//! one out; Cloud KMS's `NIST_PQC` format and transit give the raw FIPS encoding), and the
//! ML-DSA message representative μ for a service that signs one computed outside (AWS
//! KMS's `EXTERNAL_MU`).

use super::KeyAlg;
use crate::core::attr::{Attrs, AttrsExt};
use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use der::{Decode, Encode};
use shake::{ExtendableOutput, Update, XofReader};

/// One parameter set: the key kind, its OID, the public key's length and the length of
/// what an operation gives (signature, or ML-KEM ciphertext).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PqSet {
    pub alg: KeyAlg,
    /// The FIPS name (`ML-DSA-65`), as `hsmux check` shows it.
    pub name: &'static str,
    oid: &'static str,
    pub public_len: usize,
    pub output_len: usize,
}

const fn set(
    (alg, name): (KeyAlg, &'static str),
    oid: &'static str,
    public_len: usize,
    output_len: usize,
) -> PqSet {
    PqSet {
        alg,
        name,
        oid,
        public_len,
        output_len,
    }
}

/// FIPS 204 table 2, FIPS 205 table 2, FIPS 203 table 3.
pub const SETS: [PqSet; 7] = [
    set(
        (KeyAlg::MlDsa { set: CKP_ML_DSA_44 }, "ML-DSA-44"),
        "2.16.840.1.101.3.4.3.17",
        1312,
        2420,
    ),
    set(
        (KeyAlg::MlDsa { set: CKP_ML_DSA_65 }, "ML-DSA-65"),
        "2.16.840.1.101.3.4.3.18",
        1952,
        3309,
    ),
    set(
        (KeyAlg::MlDsa { set: CKP_ML_DSA_87 }, "ML-DSA-87"),
        "2.16.840.1.101.3.4.3.19",
        2592,
        4627,
    ),
    set(
        (
            KeyAlg::SlhDsa {
                set: CKP_SLH_DSA_SHA2_128S,
            },
            "SLH-DSA-SHA2-128s",
        ),
        "2.16.840.1.101.3.4.3.20",
        32,
        7856,
    ),
    set(
        (
            KeyAlg::MlKem {
                set: CKP_ML_KEM_512,
            },
            "ML-KEM-512",
        ),
        "2.16.840.1.101.3.4.4.1",
        800,
        768,
    ),
    set(
        (
            KeyAlg::MlKem {
                set: CKP_ML_KEM_768,
            },
            "ML-KEM-768",
        ),
        "2.16.840.1.101.3.4.4.2",
        1184,
        1088,
    ),
    set(
        (
            KeyAlg::MlKem {
                set: CKP_ML_KEM_1024,
            },
            "ML-KEM-1024",
        ),
        "2.16.840.1.101.3.4.4.3",
        1568,
        1568,
    ),
];

/// The 3.2 mechanisms of these keys, in the order a slot lists them.
pub const MECHANISMS: [CK_MECHANISM_TYPE; 6] = [
    CKM_ML_DSA,
    CKM_SLH_DSA,
    CKM_ML_KEM,
    CKM_ML_DSA_KEY_PAIR_GEN,
    CKM_SLH_DSA_KEY_PAIR_GEN,
    CKM_ML_KEM_KEY_PAIR_GEN,
];

/// ML-KEM's shared secret: 32 bytes for every parameter set.
pub const SHARED_SECRET_LEN: usize = 32;

/// The parameter set of a PQC key kind (`None`: not a PQC kind, or a set no service has).
pub fn of(alg: KeyAlg) -> Option<&'static PqSet> {
    SETS.iter().find(|s| s.alg == alg)
}

/// A key kind as `hsmux check` shows it: the FIPS name of a post-quantum parameter set.
pub fn describe_kind(alg: KeyAlg) -> String {
    of(alg).map_or_else(|| format!("{alg:?}"), |s| s.name.to_string())
}

/// The PQC key kind of a `CKK_*` key type and `CKA_PARAMETER_SET` value.
pub fn kind(key_type: CK_KEY_TYPE, parameter_set: CK_ULONG) -> Option<KeyAlg> {
    let alg = match key_type {
        CKK_ML_DSA => KeyAlg::MlDsa { set: parameter_set },
        CKK_SLH_DSA => KeyAlg::SlhDsa { set: parameter_set },
        CKK_ML_KEM => KeyAlg::MlKem { set: parameter_set },
        _ => return None,
    };
    of(alg).map(|s| s.alg)
}

fn bad(why: impl std::fmt::Display) -> Error {
    Error::logged(CKR_DEVICE_ERROR, format!("service public key: {why}"))
}

/// SubjectPublicKeyInfo DER of a raw public key of kind `alg` (the AlgorithmIdentifier has
/// no parameters for these OIDs); a key of the wrong length is a malformed answer.
pub fn spki(alg: KeyAlg, raw: &[u8]) -> Result<Vec<u8>> {
    let s = of(alg).ok_or_else(|| bad(format!("{alg:?} is not a post-quantum kind")))?;
    if raw.len() != s.public_len {
        return Err(bad(format!(
            "a {alg:?} public key of {} bytes ({} expected)",
            raw.len(),
            s.public_len
        )));
    }
    let info = pkcs8::spki::SubjectPublicKeyInfoOwned {
        algorithm: pkcs8::spki::AlgorithmIdentifierOwned {
            oid: s.oid.parse().map_err(|e| bad(format!("OID: {e}")))?,
            parameters: None,
        },
        subject_public_key: der::asn1::BitString::from_bytes(raw)
            .map_err(|e| bad(format!("bit string: {e}")))?,
    };
    info.to_der().map_err(|e| bad(format!("DER: {e}")))
}

/// The kind and the PKCS#11 attributes of a post-quantum SubjectPublicKeyInfo's key
/// (`CKA_KEY_TYPE`, `CKA_PARAMETER_SET`, `CKA_VALUE` = the raw FIPS encoding); `None` when
/// `oid` is not one of [`SETS`].
pub fn describe(oid: &str, key: &[u8]) -> Option<Result<(KeyAlg, Attrs)>> {
    let s = SETS.iter().find(|s| s.oid == oid)?;
    Some(if key.len() != s.public_len {
        Err(bad(format!(
            "a {:?} public key of {} bytes ({} expected)",
            s.alg,
            key.len(),
            s.public_len
        )))
    } else {
        let (key_type, parameter_set) = match s.alg {
            KeyAlg::MlDsa { set } => (CKK_ML_DSA, set),
            KeyAlg::SlhDsa { set } => (CKK_SLH_DSA, set),
            KeyAlg::MlKem { set } => (CKK_ML_KEM, set),
            _ => unreachable!("SETS holds post-quantum kinds only"),
        };
        let mut a = Attrs::new();
        a.set_ulong(CKA_KEY_TYPE, key_type);
        a.set_ulong(CKA_PARAMETER_SET, parameter_set);
        a.insert(CKA_VALUE, key.to_vec());
        Ok((s.alg, a))
    })
}

/// The raw public key inside a post-quantum SubjectPublicKeyInfo.
pub fn raw_public_key(spki_der: &[u8]) -> Result<Vec<u8>> {
    let info = pkcs8::spki::SubjectPublicKeyInfoRef::from_der(spki_der)
        .map_err(|e| bad(format!("not a SubjectPublicKeyInfo: {e}")))?;
    info.subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| bad("bit string with unused bits"))
}

/// Length of μ, the ML-DSA message representative (FIPS 204 algorithm 7, line 6).
pub const MU_LEN: usize = 64;

/// μ = SHAKE256(tr ‖ M′, 64) with tr = SHAKE256(pk, 64) and M′ = 0 ‖ |ctx| ‖ ctx ‖ M
/// (FIPS 204 algorithms 2 and 7: pure ML-DSA with context string `ctx`, at most 255 bytes).
/// Signing μ gives the signature signing M in that context gives.
pub fn ml_dsa_mu(public_key: &[u8], context: &[u8], message: &[u8]) -> Result<[u8; MU_LEN]> {
    let ctx_len = u8::try_from(context.len()).map_err(|_| {
        Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            "an ML-DSA context string has at most 255 bytes",
        )
    })?;
    let mut tr = [0u8; 64];
    let mut h = shake::Shake256::default();
    h.update(public_key);
    h.finalize_xof().read(&mut tr);
    let mut h = shake::Shake256::default();
    h.update(&tr);
    h.update(&[0, ctx_len]);
    h.update(context);
    h.update(message);
    let mut mu = [0u8; MU_LEN];
    h.finalize_xof().read(&mut mu);
    Ok(mu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_go_in_and_out_of_spki() {
        for s in SETS {
            let raw: Vec<u8> = (0..s.public_len).map(|i| i as u8).collect();
            let der = spki(s.alg, &raw).unwrap();
            let info = pkcs8::spki::SubjectPublicKeyInfoRef::from_der(&der).unwrap();
            let oid = info.algorithm.oid.to_string();
            let (alg, attrs) = describe(&oid, &raw).unwrap().unwrap();
            assert_eq!(alg, s.alg);
            assert_eq!(attrs.bytes(CKA_VALUE), Some(&raw[..]));
            assert_eq!(raw_public_key(&der).unwrap(), raw);
            assert!(spki(s.alg, &raw[1..]).is_err());
            assert!(describe(&oid, &raw[1..]).unwrap().is_err());
        }
        assert!(describe("1.2.840.10045.2.1", &[0; 65]).is_none());
        assert_eq!(
            kind(CKK_ML_DSA, CKP_ML_DSA_65),
            Some(KeyAlg::MlDsa { set: CKP_ML_DSA_65 })
        );
        assert_eq!(kind(CKK_SLH_DSA, CKP_SLH_DSA_SHA2_128F), None);
        assert_eq!(kind(CKK_EC, 1), None);
    }

    #[test]
    fn mu_binds_key_context_and_message() {
        let pk = [7u8; 1312];
        let a = ml_dsa_mu(&pk, b"", b"m").unwrap();
        assert_ne!(a, ml_dsa_mu(&pk, b"c", b"m").unwrap());
        assert_ne!(a, ml_dsa_mu(&pk, b"", b"n").unwrap());
        assert_ne!(a, ml_dsa_mu(&[8u8; 1312], b"", b"m").unwrap());
        // The context's length is part of M′: "" ‖ "m" differs from a 1-byte context "m".
        assert_ne!(a, ml_dsa_mu(&pk, b"m", b"").unwrap());
        assert!(ml_dsa_mu(&pk, &[0; 256], b"m").is_err());
    }
}
