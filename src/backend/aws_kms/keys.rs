//! What a KMS key is in hsmux's model: `DescribeKey`'s metadata (key spec, usage, the
//! algorithm lists) and `GetPublicKey`'s SubjectPublicKeyInfo turned into a
//! [`KeyVersion`], and back: the names of the algorithms requests carry.
//!
//! AWS keys have no versions: each key is one object (two for an asymmetric key), its
//! `CKA_ID` the key ARN, its `CKA_LABEL` its alias without `alias/` (else the key id).

use crate::backend::remote::{public, EcCurve, HashAlg, KeyAlg, KeyVersion, SignScheme, Usage};
use crate::core::error::{Error, Result};
use aws_sdk_kms::types::KeyMetadata;
use cryptoki_sys::*;

/// A key that is left out of the slot, and why (logged by the caller).
#[derive(Debug)]
pub enum Skip {
    /// Disabled, pending deletion, pending import, ...: not usable now.
    State(String),
    /// A key spec or usage PKCS#11 cannot present here (SYMMETRIC_DEFAULT's KMS-own
    /// ciphertext format, ECC_SECG_P256K1, SM2, key agreement, ...).
    Unsupported(String),
}

/// The key alg and usage of `m`, or why it is not shown.
pub fn kind(m: &KeyMetadata) -> std::result::Result<(KeyAlg, Usage), Skip> {
    let state = m.key_state().map(|s| s.as_str()).unwrap_or("");
    if state != "Enabled" || !m.enabled() {
        return Err(Skip::State(if state.is_empty() {
            "not enabled".into()
        } else {
            state.to_string()
        }));
    }
    let spec = m.key_spec().map(|s| s.as_str()).unwrap_or("");
    let usage = m.key_usage().map(|u| u.as_str()).unwrap_or("");
    let alg = match spec {
        "RSA_2048" => KeyAlg::Rsa { bits: 2048 },
        "RSA_3072" => KeyAlg::Rsa { bits: 3072 },
        "RSA_4096" => KeyAlg::Rsa { bits: 4096 },
        "ECC_NIST_P256" => KeyAlg::Ec {
            curve: EcCurve::P256,
        },
        "ECC_NIST_P384" => KeyAlg::Ec {
            curve: EcCurve::P384,
        },
        "HMAC_224" => hmac(HashAlg::Sha224, 224),
        "HMAC_256" => hmac(HashAlg::Sha256, 256),
        "HMAC_384" => hmac(HashAlg::Sha384, 384),
        "HMAC_512" => hmac(HashAlg::Sha512, 512),
        "ML_DSA_44" => KeyAlg::MlDsa { set: CKP_ML_DSA_44 },
        "ML_DSA_65" => KeyAlg::MlDsa { set: CKP_ML_DSA_65 },
        "ML_DSA_87" => KeyAlg::MlDsa { set: CKP_ML_DSA_87 },
        other => return Err(Skip::Unsupported(format!("key spec {other:?}"))),
    };
    let mut u = Usage::default();
    match (alg, usage) {
        (KeyAlg::Rsa { .. } | KeyAlg::Ec { .. } | KeyAlg::MlDsa { .. }, "SIGN_VERIFY") => {
            u.sign = true;
            u.sign_schemes = known(m.signing_algorithms(), scheme);
            if u.sign_schemes.is_empty() {
                return Err(Skip::Unsupported("no signing algorithm hsmux knows".into()));
            }
        }
        (KeyAlg::Rsa { .. }, "ENCRYPT_DECRYPT") => {
            u.decrypt = true;
            u.oaep_hashes = known(m.encryption_algorithms(), oaep_hash);
            if u.oaep_hashes.is_empty() {
                return Err(Skip::Unsupported("no RSAES_OAEP algorithm".into()));
            }
        }
        (KeyAlg::Hmac { hash: Some(h), .. }, "GENERATE_VERIFY_MAC") => {
            // The key spec binds the hash; MacAlgorithms lists exactly that one.
            let listed: Vec<HashAlg> = known(m.mac_algorithms(), mac_hash);
            if !listed.is_empty() && !listed.contains(&h) {
                return Err(Skip::Unsupported(format!(
                    "{spec} with MacAlgorithms {listed:?}"
                )));
            }
            u.sign = true;
            u.sign_schemes = vec![SignScheme::Hmac(h)];
        }
        (_, other) => {
            return Err(Skip::Unsupported(format!(
                "{spec} with key usage {other:?}"
            )))
        }
    }
    Ok((alg, u))
}

/// The algorithms in `listed` that hsmux knows (`read` takes a name), in their order.
fn known<A: AsRef<str>, T>(listed: &[A], read: fn(&str) -> Option<T>) -> Vec<T> {
    listed.iter().filter_map(|a| read(a.as_ref())).collect()
}

fn hmac(h: HashAlg, bits: u32) -> KeyAlg {
    KeyAlg::Hmac {
        hash: Some(h),
        bits,
    }
}

/// Whether the key's material lives in HSMs: AWS KMS keeps keys of origin `AWS_KMS` and
/// `EXTERNAL` (imported material) in its FIPS 140-3 level 3 HSMs, a CloudHSM key store's
/// keys in the customer's CloudHSM cluster. An external key store's keys live outside AWS,
/// where KMS cannot say what protects them.
pub fn hardware(m: &KeyMetadata) -> Option<bool> {
    match m.origin().map(|o| o.as_str()) {
        Some("AWS_KMS") | Some("EXTERNAL") | Some("AWS_CLOUDHSM") => Some(true),
        _ => None,
    }
}

/// A signing algorithm's scheme. AWS's RSASSA-PSS uses MGF1 with the message hash and a
/// salt as long as the digest.
pub fn scheme(name: &str) -> Option<SignScheme> {
    Some(match name {
        "ECDSA_SHA_256" => SignScheme::Ecdsa(HashAlg::Sha256),
        "ECDSA_SHA_384" => SignScheme::Ecdsa(HashAlg::Sha384),
        "ECDSA_SHA_512" => SignScheme::Ecdsa(HashAlg::Sha512),
        "RSASSA_PKCS1_V1_5_SHA_256" => SignScheme::Pkcs1(HashAlg::Sha256),
        "RSASSA_PKCS1_V1_5_SHA_384" => SignScheme::Pkcs1(HashAlg::Sha384),
        "RSASSA_PKCS1_V1_5_SHA_512" => SignScheme::Pkcs1(HashAlg::Sha512),
        "RSASSA_PSS_SHA_256" => SignScheme::Pss(HashAlg::Sha256, 32),
        "RSASSA_PSS_SHA_384" => SignScheme::Pss(HashAlg::Sha384, 48),
        "RSASSA_PSS_SHA_512" => SignScheme::Pss(HashAlg::Sha512, 64),
        "ML_DSA_SHAKE_256" => SignScheme::MlDsa,
        _ => return None,
    })
}

/// The `SigningAlgorithm` a scheme is sent as (`None`: AWS has no such algorithm).
pub fn signing_algorithm(s: SignScheme) -> Option<&'static str> {
    Some(match s {
        SignScheme::Ecdsa(HashAlg::Sha256) => "ECDSA_SHA_256",
        SignScheme::Ecdsa(HashAlg::Sha384) => "ECDSA_SHA_384",
        SignScheme::Ecdsa(HashAlg::Sha512) => "ECDSA_SHA_512",
        SignScheme::Pkcs1(HashAlg::Sha256) => "RSASSA_PKCS1_V1_5_SHA_256",
        SignScheme::Pkcs1(HashAlg::Sha384) => "RSASSA_PKCS1_V1_5_SHA_384",
        SignScheme::Pkcs1(HashAlg::Sha512) => "RSASSA_PKCS1_V1_5_SHA_512",
        SignScheme::Pss(HashAlg::Sha256, 32) => "RSASSA_PSS_SHA_256",
        SignScheme::Pss(HashAlg::Sha384, 48) => "RSASSA_PSS_SHA_384",
        SignScheme::Pss(HashAlg::Sha512, 64) => "RSASSA_PSS_SHA_512",
        SignScheme::MlDsa => "ML_DSA_SHAKE_256",
        _ => return None,
    })
}

pub fn oaep_hash(name: &str) -> Option<HashAlg> {
    match name {
        "RSAES_OAEP_SHA_1" => Some(HashAlg::Sha1),
        "RSAES_OAEP_SHA_256" => Some(HashAlg::Sha256),
        _ => None,
    }
}

pub fn oaep_algorithm(h: HashAlg) -> Option<&'static str> {
    match h {
        HashAlg::Sha1 => Some("RSAES_OAEP_SHA_1"),
        HashAlg::Sha256 => Some("RSAES_OAEP_SHA_256"),
        _ => None,
    }
}

pub fn mac_hash(name: &str) -> Option<HashAlg> {
    match name {
        "HMAC_SHA_224" => Some(HashAlg::Sha224),
        "HMAC_SHA_256" => Some(HashAlg::Sha256),
        "HMAC_SHA_384" => Some(HashAlg::Sha384),
        "HMAC_SHA_512" => Some(HashAlg::Sha512),
        _ => None,
    }
}

pub fn mac_algorithm(h: HashAlg) -> Option<&'static str> {
    match h {
        HashAlg::Sha224 => Some("HMAC_SHA_224"),
        HashAlg::Sha256 => Some("HMAC_SHA_256"),
        HashAlg::Sha384 => Some("HMAC_SHA_384"),
        HashAlg::Sha512 => Some("HMAC_SHA_512"),
        HashAlg::Sha1 => None,
    }
}

/// `CreateKey`'s KeySpec and KeyUsage for a key to generate.
pub fn create_spec(alg: KeyAlg, decrypt: bool) -> Result<(&'static str, &'static str)> {
    let refuse = |why: &str| Error::logged(CKR_TEMPLATE_INCONSISTENT, format!("AWS KMS: {why}"));
    Ok(match alg {
        KeyAlg::Rsa { bits } => {
            let spec = match bits {
                2048 => "RSA_2048",
                3072 => "RSA_3072",
                4096 => "RSA_4096",
                _ => {
                    return Err(Error::logged(
                        CKR_KEY_SIZE_RANGE,
                        "AWS KMS: RSA keys are 2048, 3072 or 4096 bits",
                    ))
                }
            };
            (
                spec,
                if decrypt {
                    "ENCRYPT_DECRYPT"
                } else {
                    "SIGN_VERIFY"
                },
            )
        }
        KeyAlg::Ec {
            curve: EcCurve::P256,
        } => ("ECC_NIST_P256", "SIGN_VERIFY"),
        KeyAlg::Ec {
            curve: EcCurve::P384,
        } => ("ECC_NIST_P384", "SIGN_VERIFY"),
        KeyAlg::Ec {
            curve: EcCurve::P521,
        } => return Err(refuse("hsmux serves P-256 and P-384 keys of AWS KMS")),
        KeyAlg::Hmac {
            hash: Some(h),
            bits,
        } => {
            let (spec, want) = match h {
                HashAlg::Sha224 => ("HMAC_224", 224),
                HashAlg::Sha256 => ("HMAC_256", 256),
                HashAlg::Sha384 => ("HMAC_384", 384),
                HashAlg::Sha512 => ("HMAC_512", 512),
                HashAlg::Sha1 => return Err(refuse("no HMAC-SHA1 keys")),
            };
            if bits != want {
                return Err(Error::logged(
                    CKR_KEY_SIZE_RANGE,
                    format!(
                        "AWS KMS: an {spec} key has {} bytes (CKA_VALUE_LEN)",
                        want / 8
                    ),
                ));
            }
            (spec, "GENERATE_VERIFY_MAC")
        }
        KeyAlg::Hmac { hash: None, .. } => return Err(refuse(
            "HMAC keys are bound to one hash: give CKA_KEY_TYPE CKK_SHA256_HMAC (or 224/384/512)",
        )),
        KeyAlg::AesGcm { .. } => {
            return Err(refuse(
                "no raw AES-GCM keys (CreateKey's SYMMETRIC_DEFAULT is KMS's own format)",
            ))
        }
        KeyAlg::Ed25519 => return Err(refuse("no Ed25519 keys here")),
        KeyAlg::MlDsa { set } => (
            match set {
                CKP_ML_DSA_44 => "ML_DSA_44",
                CKP_ML_DSA_65 => "ML_DSA_65",
                CKP_ML_DSA_87 => "ML_DSA_87",
                _ => return Err(refuse("ML-DSA keys are ML_DSA_44, 65 or 87")),
            },
            "SIGN_VERIFY",
        ),
        KeyAlg::SlhDsa { .. } | KeyAlg::MlKem { .. } => {
            return Err(refuse("no SLH-DSA or ML-KEM keys (ML-DSA only)"))
        }
    })
}

/// The version of key `m` with public key `spki` (asymmetric keys). A public key that is
/// not a SubjectPublicKeyInfo of the key's spec is a malformed answer.
pub fn version(
    m: &KeyMetadata,
    label: String,
    locator: String,
    alg: KeyAlg,
    usage: Usage,
    spki: Option<Vec<u8>>,
) -> Result<KeyVersion> {
    let arn = m
        .arn()
        .map(str::to_string)
        .unwrap_or_else(|| m.key_id().to_string());
    if let Some(spki) = &spki {
        let (got, _) = public::describe(spki)?;
        if got != alg {
            return Err(Error::logged(
                CKR_DEVICE_ERROR,
                format!("{arn}: GetPublicKey gave a {got:?} key, DescribeKey says {alg:?}"),
            ));
        }
    } else if alg.is_asymmetric() {
        return Err(Error::logged(
            CKR_DEVICE_ERROR,
            format!("{arn}: no public key"),
        ));
    }
    Ok(KeyVersion {
        label,
        id: arn,
        locator,
        primary: true,
        alg,
        usage,
        public_spki: spki,
        hardware: hardware(m),
    })
}

/// The account in a key ARN (`arn:aws:kms:<region>:<account>:key/<id>`).
pub fn arn_account(arn: &str) -> Option<&str> {
    let mut p = arn.split(':');
    if p.next()? != "arn" {
        return None;
    }
    let _partition = p.next()?;
    if p.next()? != "kms" {
        return None;
    }
    let _region = p.next()?;
    p.next().filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_round_trip_and_pss_salt_is_the_digest_length() {
        for n in [
            "ECDSA_SHA_256",
            "ECDSA_SHA_384",
            "RSASSA_PKCS1_V1_5_SHA_256",
            "RSASSA_PKCS1_V1_5_SHA_512",
            "RSASSA_PSS_SHA_256",
            "RSASSA_PSS_SHA_512",
            "ML_DSA_SHAKE_256",
        ] {
            assert_eq!(signing_algorithm(scheme(n).unwrap()), Some(n));
        }
        assert_eq!(
            scheme("RSASSA_PSS_SHA_384"),
            Some(SignScheme::Pss(HashAlg::Sha384, 48))
        );
        assert_eq!(
            signing_algorithm(SignScheme::Pss(HashAlg::Sha256, 20)),
            None
        );
        assert_eq!(signing_algorithm(SignScheme::Pkcs1(HashAlg::Sha1)), None);
    }

    #[test]
    fn arn_accounts_are_found() {
        assert_eq!(
            arn_account("arn:aws:kms:us-east-1:111122223333:key/1234abcd"),
            Some("111122223333")
        );
        assert_eq!(arn_account("alias/x"), None);
        assert_eq!(arn_account("1234abcd-12ab"), None);
    }
}
