//! Cloud KMS's `CryptoKeyVersionAlgorithm` names and what PKCS#11 makes of them. Each
//! algorithm fixes its padding and hash, so a version's `Usage` lists exactly the one
//! scheme it accepts. Post-quantum: `PQ_SIGN_ML_DSA_44/65/87` and
//! `PQ_SIGN_SLH_DSA_SHA2_128S` (pure, whole message) and `ML_KEM_768/1024` (purpose
//! `KEY_ENCAPSULATION`). Algorithms hsmux has no mechanism for (AES-CBC/CTR, raw PKCS#1,
//! secp256k1, the ML-DSA external-μ and HashSLH-DSA variants, X-Wing, Google's own
//! symmetric encryption) are not mapped: their versions are left out of the slot with a
//! log line.

use crate::backend::remote::{EcCurve, HashAlg, KeyAlg, NewKey, SignScheme, Usage};
use cryptoki_sys::*;

/// The post-quantum algorithms and their kinds.
const PQ: [(&str, KeyAlg); 6] = [
    ("PQ_SIGN_ML_DSA_44", KeyAlg::MlDsa { set: CKP_ML_DSA_44 }),
    ("PQ_SIGN_ML_DSA_65", KeyAlg::MlDsa { set: CKP_ML_DSA_65 }),
    ("PQ_SIGN_ML_DSA_87", KeyAlg::MlDsa { set: CKP_ML_DSA_87 }),
    (
        "PQ_SIGN_SLH_DSA_SHA2_128S",
        KeyAlg::SlhDsa {
            set: CKP_SLH_DSA_SHA2_128S,
        },
    ),
    (
        "ML_KEM_768",
        KeyAlg::MlKem {
            set: CKP_ML_KEM_768,
        },
    ),
    (
        "ML_KEM_1024",
        KeyAlg::MlKem {
            set: CKP_ML_KEM_1024,
        },
    ),
];

fn hash_named(s: &str) -> Option<HashAlg> {
    Some(match s {
        "SHA1" => HashAlg::Sha1,
        "SHA224" => HashAlg::Sha224,
        "SHA256" => HashAlg::Sha256,
        "SHA384" => HashAlg::Sha384,
        "SHA512" => HashAlg::Sha512,
        _ => return None,
    })
}

fn hash_name(h: HashAlg) -> &'static str {
    match h {
        HashAlg::Sha1 => "SHA1",
        HashAlg::Sha224 => "SHA224",
        HashAlg::Sha256 => "SHA256",
        HashAlg::Sha384 => "SHA384",
        HashAlg::Sha512 => "SHA512",
    }
}

/// `<bits>_<HASH>` of the RSA algorithm names.
fn rsa_tail(s: &str) -> Option<(u32, HashAlg)> {
    let (bits, hash) = s.split_once('_')?;
    let bits = match bits {
        "2048" => 2048,
        "3072" => 3072,
        "4096" => 4096,
        _ => return None,
    };
    Some((bits, hash_named(hash)?))
}

/// The key kind and usage of a version of algorithm `name`; `None` for an algorithm
/// hsmux does not serve.
pub fn describe(name: &str) -> Option<(KeyAlg, Usage)> {
    let sign = |scheme: SignScheme| Usage {
        sign: true,
        sign_schemes: vec![scheme],
        ..Usage::default()
    };
    if let Some(t) = name.strip_prefix("RSA_SIGN_PSS_") {
        let (bits, h) = rsa_tail(t)?;
        // Cloud KMS's PSS salt is as long as the digest.
        return Some((KeyAlg::Rsa { bits }, sign(SignScheme::Pss(h, h.len()))));
    }
    if let Some(t) = name.strip_prefix("RSA_SIGN_PKCS1_") {
        let (bits, h) = rsa_tail(t)?;
        return Some((KeyAlg::Rsa { bits }, sign(SignScheme::Pkcs1(h))));
    }
    if let Some(t) = name.strip_prefix("RSA_DECRYPT_OAEP_") {
        let (bits, h) = rsa_tail(t)?;
        let usage = Usage {
            decrypt: true,
            oaep_hashes: vec![h],
            ..Usage::default()
        };
        return Some((KeyAlg::Rsa { bits }, usage));
    }
    if let Some((_, alg)) = PQ.iter().find(|(n, _)| *n == name) {
        let usage = match alg {
            KeyAlg::MlDsa { .. } => sign(SignScheme::MlDsa),
            KeyAlg::SlhDsa { .. } => sign(SignScheme::SlhDsa),
            // Decapsulation is its own call (KeyService::decapsulate).
            _ => Usage::default(),
        };
        return Some((*alg, usage));
    }
    if let Some(h) = name.strip_prefix("HMAC_").and_then(hash_named) {
        let bits = h.len() as u32 * 8;
        return Some((
            KeyAlg::Hmac {
                hash: Some(h),
                bits,
            },
            sign(SignScheme::Hmac(h)),
        ));
    }
    Some(match name {
        "EC_SIGN_P256_SHA256" => (
            KeyAlg::Ec {
                curve: EcCurve::P256,
            },
            sign(SignScheme::Ecdsa(HashAlg::Sha256)),
        ),
        "EC_SIGN_P384_SHA384" => (
            KeyAlg::Ec {
                curve: EcCurve::P384,
            },
            sign(SignScheme::Ecdsa(HashAlg::Sha384)),
        ),
        "EC_SIGN_ED25519" => (KeyAlg::Ed25519, sign(SignScheme::Ed25519)),
        "AES_128_GCM" | "AES_256_GCM" => (
            KeyAlg::AesGcm {
                bits: if name == "AES_128_GCM" { 128 } else { 256 },
            },
            Usage {
                encrypt: true,
                decrypt: true,
                ..Usage::default()
            },
        ),
        _ => return None,
    })
}

/// The `purpose` and `algorithm` of a key to create for `C_GenerateKey*`, or why it cannot
/// be made. RSA signing keys are PKCS#1 v1.5 with SHA-256 (what most consumers expect),
/// decryption keys OAEP with SHA-256 (the OpenBao seal's default hash).
pub fn for_new(k: &NewKey) -> Result<(&'static str, String), String> {
    Ok(match k.alg {
        KeyAlg::AesGcm { bits: 256 } => ("RAW_ENCRYPT_DECRYPT", "AES_256_GCM".into()),
        KeyAlg::AesGcm { bits: 128 } => ("RAW_ENCRYPT_DECRYPT", "AES_128_GCM".into()),
        KeyAlg::AesGcm { bits } => return Err(format!("no {bits}-bit AES-GCM keys")),
        KeyAlg::Hmac { hash, bits } => {
            // Each HMAC algorithm has its own key length; a generic secret takes the hash
            // whose length it asks for.
            let h = match hash {
                Some(h) => h,
                None => [
                    HashAlg::Sha1,
                    HashAlg::Sha224,
                    HashAlg::Sha256,
                    HashAlg::Sha384,
                    HashAlg::Sha512,
                ]
                .into_iter()
                .find(|h| h.len() as u32 * 8 == bits)
                .ok_or_else(|| format!("no HMAC algorithm with {}-byte keys", bits / 8))?,
            };
            if h.len() as u32 * 8 != bits {
                return Err(format!(
                    "HMAC_{} keys are {} bytes, not {}",
                    hash_name(h),
                    h.len(),
                    bits / 8
                ));
            }
            ("MAC", format!("HMAC_{}", hash_name(h)))
        }
        KeyAlg::Ec {
            curve: EcCurve::P256,
        } => ("ASYMMETRIC_SIGN", "EC_SIGN_P256_SHA256".into()),
        KeyAlg::Ec {
            curve: EcCurve::P384,
        } => ("ASYMMETRIC_SIGN", "EC_SIGN_P384_SHA384".into()),
        KeyAlg::Ec {
            curve: EcCurve::P521,
        } => return Err("no P-521 keys".into()),
        KeyAlg::Ed25519 => ("ASYMMETRIC_SIGN", "EC_SIGN_ED25519".into()),
        KeyAlg::MlDsa { .. } | KeyAlg::SlhDsa { .. } | KeyAlg::MlKem { .. } => {
            let (name, _) = PQ
                .iter()
                .find(|(_, a)| *a == k.alg)
                .ok_or_else(|| format!("no {:?} keys (ML-KEM-768 and -1024 only)", k.alg))?;
            let purpose = match k.alg {
                KeyAlg::MlKem { .. } => "KEY_ENCAPSULATION",
                _ => "ASYMMETRIC_SIGN",
            };
            (purpose, name.to_string())
        }
        KeyAlg::Rsa { bits } => {
            if !matches!(bits, 2048 | 3072 | 4096) {
                return Err(format!("no {bits}-bit RSA keys"));
            }
            if k.decrypt && k.sign {
                return Err("a Cloud KMS RSA key either signs or decrypts, not both".into());
            }
            if k.decrypt {
                (
                    "ASYMMETRIC_DECRYPT",
                    format!("RSA_DECRYPT_OAEP_{bits}_SHA256"),
                )
            } else {
                ("ASYMMETRIC_SIGN", format!("RSA_SIGN_PKCS1_{bits}_SHA256"))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_algorithm_allows_exactly_its_scheme() {
        let (alg, u) = describe("RSA_SIGN_PSS_2048_SHA256").unwrap();
        assert_eq!(alg, KeyAlg::Rsa { bits: 2048 });
        assert_eq!(u.sign_schemes, vec![SignScheme::Pss(HashAlg::Sha256, 32)]);
        let (_, u) = describe("RSA_SIGN_PKCS1_4096_SHA512").unwrap();
        assert_eq!(u.sign_schemes, vec![SignScheme::Pkcs1(HashAlg::Sha512)]);
        let (alg, u) = describe("RSA_DECRYPT_OAEP_3072_SHA1").unwrap();
        assert_eq!(alg, KeyAlg::Rsa { bits: 3072 });
        assert!(u.decrypt && !u.sign);
        assert_eq!(u.oaep_hashes, vec![HashAlg::Sha1]);
        let (alg, _) = describe("HMAC_SHA384").unwrap();
        assert_eq!(
            alg,
            KeyAlg::Hmac {
                hash: Some(HashAlg::Sha384),
                bits: 384
            }
        );
        assert_eq!(
            describe("AES_256_GCM").unwrap().0,
            KeyAlg::AesGcm { bits: 256 }
        );
        assert_eq!(describe("EC_SIGN_ED25519").unwrap().0, KeyAlg::Ed25519);
        for unknown in [
            "GOOGLE_SYMMETRIC_ENCRYPTION",
            "AES_256_CBC",
            "RSA_SIGN_RAW_PKCS1_2048",
            "EC_SIGN_SECP256K1_SHA256",
            "RSA_SIGN_PSS_1024_SHA256",
            "ML_DSA_65",
        ] {
            assert!(describe(unknown).is_none(), "{unknown}");
        }
    }

    #[test]
    fn new_keys_get_a_purpose_and_an_algorithm() {
        let k = |alg, sign, decrypt| NewKey {
            label: "k".into(),
            alg,
            sign,
            decrypt,
        };
        assert_eq!(
            for_new(&k(KeyAlg::Rsa { bits: 3072 }, false, true)).unwrap(),
            ("ASYMMETRIC_DECRYPT", "RSA_DECRYPT_OAEP_3072_SHA256".into())
        );
        assert_eq!(
            for_new(&k(
                KeyAlg::Hmac {
                    hash: None,
                    bits: 512
                },
                true,
                false
            ))
            .unwrap(),
            ("MAC", "HMAC_SHA512".into())
        );
        assert!(for_new(&k(
            KeyAlg::Hmac {
                hash: Some(HashAlg::Sha256),
                bits: 128
            },
            true,
            false
        ))
        .is_err());
        assert!(for_new(&k(KeyAlg::Rsa { bits: 2048 }, true, true)).is_err());
        assert!(for_new(&k(
            KeyAlg::MlKem {
                set: CKP_ML_KEM_512
            },
            false,
            false
        ))
        .is_err());
        assert_eq!(
            for_new(&k(
                KeyAlg::MlKem {
                    set: CKP_ML_KEM_768
                },
                false,
                false
            ))
            .unwrap(),
            ("KEY_ENCAPSULATION", "ML_KEM_768".into())
        );
        // Every name made is one describe() knows (a created key shows up in the slot).
        for alg in [
            KeyAlg::AesGcm { bits: 256 },
            KeyAlg::Ec {
                curve: EcCurve::P384,
            },
            KeyAlg::Ed25519,
            KeyAlg::Rsa { bits: 2048 },
            KeyAlg::MlDsa { set: CKP_ML_DSA_87 },
            KeyAlg::SlhDsa {
                set: CKP_SLH_DSA_SHA2_128S,
            },
            KeyAlg::MlKem {
                set: CKP_ML_KEM_1024,
            },
        ] {
            let (_, name) = for_new(&k(alg, true, false)).unwrap();
            assert_eq!(describe(&name).unwrap().0, alg);
        }
    }
}
