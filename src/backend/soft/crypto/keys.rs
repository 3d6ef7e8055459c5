//! Key material: parsing an object's attributes into a ready-to-use key (cached per
//! object), generating keys, and turning keys into attributes.

use super::der::{self, Curve, RsaParts};
use super::okp::{self, EdKey};
use super::pqc::{self, MlDsa, MlKem};
use crate::core::attr::{Attrs, AttrsExt};
use crate::core::error::{err, Error, Result};
use aws_lc_rs::encoding::{AsBigEndian, AsDer};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _};
use aws_lc_rs::{agreement, rsa, signature};
use cryptoki_sys::*;
use std::sync::OnceLock;
use zeroize::Zeroizing;

pub enum Key {
    /// AES, generic secret and HMAC keys.
    Secret {
        key_type: CK_KEY_TYPE,
        value: Zeroizing<Vec<u8>>,
    },
    EcPrivate {
        curve: Curve,
        pair: EcdsaKeyPair,
        scalar: Zeroizing<Vec<u8>>,
    },
    EcPublic {
        curve: Curve,
        point: Vec<u8>,
    },
    /// Ed25519 and Ed448 private keys.
    EdPrivate(EdKey),
    EdPublic {
        curve: Curve,
        point: Vec<u8>,
    },
    /// X25519 and X448 private keys (CKK_EC_MONTGOMERY).
    XPrivate {
        curve: Curve,
        scalar: Zeroizing<Vec<u8>>,
    },
    XPublic {
        curve: Curve,
        point: Vec<u8>,
    },
    RsaPrivate {
        /// aws-lc-rs's key, `None` for a modulus under 2048 bits (`rsa_raw::legacy`).
        pair: Option<rsa::KeyPair>,
        parts: RsaParts,
        decrypting: OnceLock<Option<rsa::PrivateDecryptingKey>>,
    },
    RsaPublic {
        n: Vec<u8>,
        e: Vec<u8>,
        pkcs1: Vec<u8>,
        spki: Vec<u8>,
    },
    /// ML-DSA (`pqc.rs`): made from the seed when kept, else from the expanded key.
    MlDsaPrivate {
        set: MlDsa,
        key: super::pqc_raw::MlDsaKey,
    },
    MlDsaPublic {
        set: MlDsa,
        key: super::pqc_raw::MlDsaKey,
    },
    MlKemPrivate {
        set: MlKem,
        key: aws_lc_rs::kem::DecapsulationKey,
    },
    MlKemPublic {
        set: MlKem,
        key: aws_lc_rs::kem::EncapsulationKey,
    },
}

pub fn ecdsa_alg(c: Curve) -> &'static signature::EcdsaSigningAlgorithm {
    match c {
        Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
        _ => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
    }
}

pub fn ecdh_alg(c: Curve) -> &'static agreement::Algorithm {
    match c {
        Curve::P384 => &agreement::ECDH_P384,
        Curve::P521 => &agreement::ECDH_P521,
        _ => &agreement::ECDH_P256,
    }
}

/// The curve of a CKK_EC key: a NIST curve (Edwards and Montgomery curves have their own
/// key types, CKK_EC_EDWARDS and CKK_EC_MONTGOMERY).
pub fn nist_curve(params: &[u8]) -> Result<Curve> {
    let curve = Curve::from_params(params)?;
    if curve.key_type() != CKK_EC {
        return Err(Error::logged(
            CKR_CURVE_NOT_SUPPORTED,
            format!("{curve:?} is not a curve of CKK_EC keys"),
        ));
    }
    Ok(curve)
}

fn need<'a>(a: &'a Attrs, ty: CK_ATTRIBUTE_TYPE, what: &str) -> Result<&'a [u8]> {
    a.bytes(ty)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::logged(CKR_TEMPLATE_INCOMPLETE, format!("key lacks {what}")))
}

/// The public point of a NIST-curve private scalar.
fn point_of(curve: Curve, scalar: &[u8]) -> Result<Vec<u8>> {
    let k = agreement::PrivateKey::from_private_key(ecdh_alg(curve), scalar).map_err(|_| {
        Error::logged(
            CKR_ATTRIBUTE_VALUE_INVALID,
            "EC private value is not a valid scalar",
        )
    })?;
    Ok(k.compute_public_key()
        .map_err(|_| err(CKR_GENERAL_ERROR))?
        .as_ref()
        .to_vec())
}

impl Key {
    /// Parses the key held by an object (by CKA_CLASS and CKA_KEY_TYPE).
    pub fn from_attrs(a: &Attrs) -> Result<Key> {
        let class = a
            .ulong(CKA_CLASS)
            .ok_or_else(|| err(CKR_KEY_TYPE_INCONSISTENT))?;
        let kt = a
            .ulong(CKA_KEY_TYPE)
            .ok_or_else(|| err(CKR_KEY_TYPE_INCONSISTENT))?;
        match (class, kt) {
            (CKO_PRIVATE_KEY | CKO_PUBLIC_KEY, _) if pqc::is_pqc(kt) => pqc::key_from_attrs(a),
            (CKO_SECRET_KEY, _) => Ok(Key::Secret {
                key_type: kt,
                value: Zeroizing::new(need(a, CKA_VALUE, "CKA_VALUE")?.to_vec()),
            }),
            (CKO_PRIVATE_KEY, CKK_EC) => {
                let curve = nist_curve(need(a, CKA_EC_PARAMS, "CKA_EC_PARAMS")?)?;
                let scalar = Zeroizing::new(left_pad(
                    der::trim(need(a, CKA_VALUE, "CKA_VALUE")?),
                    curve.field_len(),
                )?);
                let point = point_of(curve, &scalar)?;
                let pair = EcdsaKeyPair::from_private_key_and_public_key(
                    ecdsa_alg(curve),
                    &scalar,
                    &point,
                )
                .map_err(|_| {
                    Error::logged(CKR_ATTRIBUTE_VALUE_INVALID, "EC private key rejected")
                })?;
                Ok(Key::EcPrivate {
                    curve,
                    pair,
                    scalar,
                })
            }
            (CKO_PUBLIC_KEY, CKK_EC) => {
                let curve = nist_curve(need(a, CKA_EC_PARAMS, "CKA_EC_PARAMS")?)?;
                let point = der::ec_point(need(a, CKA_EC_POINT, "CKA_EC_POINT")?, curve)?;
                Ok(Key::EcPublic { curve, point })
            }
            (CKO_PRIVATE_KEY, CKK_EC_EDWARDS | CKK_EC_MONTGOMERY) => {
                let value = need(a, CKA_VALUE, "CKA_VALUE")?;
                let curve = okp::curve_of(a.bytes(CKA_EC_PARAMS), value.len(), kt)?;
                if kt == CKK_EC_EDWARDS {
                    return Ok(Key::EdPrivate(EdKey::from_value(curve, value)?));
                }
                if value.len() != curve.field_len() {
                    return Err(Error::logged(
                        CKR_ATTRIBUTE_VALUE_INVALID,
                        format!("{curve:?} private values are {} bytes", curve.field_len()),
                    ));
                }
                Ok(Key::XPrivate {
                    curve,
                    scalar: Zeroizing::new(value.to_vec()),
                })
            }
            (CKO_PUBLIC_KEY, CKK_EC_EDWARDS | CKK_EC_MONTGOMERY) => {
                let raw = need(a, CKA_EC_POINT, "CKA_EC_POINT")?;
                let curve = okp::curve_of(a.bytes(CKA_EC_PARAMS), raw.len(), kt)?;
                let point = der::ec_point(raw, curve)?;
                Ok(if kt == CKK_EC_EDWARDS {
                    Key::EdPublic { curve, point }
                } else {
                    Key::XPublic { curve, point }
                })
            }
            (CKO_PRIVATE_KEY, CKK_RSA) => {
                let z = |t, w| need(a, t, w).map(|v| Zeroizing::new(der::trim(v).to_vec()));
                let parts = RsaParts {
                    n: der::trim(need(a, CKA_MODULUS, "CKA_MODULUS")?).to_vec(),
                    e: der::trim(need(a, CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT")?).to_vec(),
                    d: z(CKA_PRIVATE_EXPONENT, "CKA_PRIVATE_EXPONENT")?,
                    p: z(CKA_PRIME_1, "CKA_PRIME_1 (CRT values are required)")?,
                    q: z(CKA_PRIME_2, "CKA_PRIME_2")?,
                    dp: z(CKA_EXPONENT_1, "CKA_EXPONENT_1")?,
                    dq: z(CKA_EXPONENT_2, "CKA_EXPONENT_2")?,
                    qinv: z(CKA_COEFFICIENT, "CKA_COEFFICIENT")?,
                };
                let pkcs1 = parts.to_pkcs1()?;
                let pair = if !super::rsa_raw::legacy(parts.n.len()) {
                    Some(rsa::KeyPair::from_der(&pkcs1).map_err(|e| {
                        Error::logged(
                            CKR_ATTRIBUTE_VALUE_INVALID,
                            format!("RSA private key rejected: {e}"),
                        )
                    })?)
                } else if parts.n.len() * 8 >= super::rsa_raw::MIN_BITS {
                    super::rsa_raw::check_private(&pkcs1)?;
                    None
                } else {
                    return Err(Error::logged(
                        CKR_ATTRIBUTE_VALUE_INVALID,
                        "RSA private key rejected: modulus under 1024 bits",
                    ));
                };
                Ok(Key::RsaPrivate {
                    pair,
                    parts,
                    decrypting: OnceLock::new(),
                })
            }
            (CKO_PUBLIC_KEY, CKK_RSA) => {
                let n = der::trim(need(a, CKA_MODULUS, "CKA_MODULUS")?).to_vec();
                let e = der::trim(need(a, CKA_PUBLIC_EXPONENT, "CKA_PUBLIC_EXPONENT")?).to_vec();
                let pkcs1 = der::rsa_public_pkcs1(&n, &e)?;
                let spki = der::rsa_spki(&n, &e)?;
                Ok(Key::RsaPublic { n, e, pkcs1, spki })
            }
            _ => Err(Error::logged(
                CKR_KEY_TYPE_INCONSISTENT,
                format!("the soft token has no keys of class 0x{class:x} type 0x{kt:x}"),
            )),
        }
    }

    pub fn key_type(&self) -> CK_KEY_TYPE {
        match self {
            Key::Secret { key_type, .. } => *key_type,
            Key::EcPrivate { .. } | Key::EcPublic { .. } => CKK_EC,
            Key::EdPrivate { .. } | Key::EdPublic { .. } => CKK_EC_EDWARDS,
            Key::XPrivate { .. } | Key::XPublic { .. } => CKK_EC_MONTGOMERY,
            Key::RsaPrivate { .. } | Key::RsaPublic { .. } => CKK_RSA,
            Key::MlDsaPrivate { .. } | Key::MlDsaPublic { .. } => CKK_ML_DSA,
            Key::MlKemPrivate { .. } | Key::MlKemPublic { .. } => CKK_ML_KEM,
        }
    }

    /// The modulus length of an RSA key in bytes.
    pub fn rsa_len(&self) -> Option<usize> {
        match self {
            Key::RsaPrivate { parts, .. } => Some(parts.n.len()),
            Key::RsaPublic { n, .. } => Some(n.len()),
            _ => None,
        }
    }

    /// The RSA private key for decryption, made on first use.
    pub fn rsa_decrypting(&self) -> Result<&rsa::PrivateDecryptingKey> {
        match self {
            Key::RsaPrivate {
                parts, decrypting, ..
            } => decrypting
                .get_or_init(|| {
                    parts
                        .to_pkcs8()
                        .ok()
                        .and_then(|p8| rsa::PrivateDecryptingKey::from_pkcs8(&p8).ok())
                })
                .as_ref()
                .ok_or_else(|| err(CKR_KEY_TYPE_INCONSISTENT)),
            _ => Err(err(CKR_KEY_TYPE_INCONSISTENT)),
        }
    }

    /// PKCS#8 of a private key (for C_WrapKey).
    pub fn private_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>> {
        match self {
            Key::RsaPrivate { parts, .. } => parts.to_pkcs8(),
            Key::EcPrivate { pair, .. } => Ok(Zeroizing::new(
                pair.to_pkcs8v1()
                    .map_err(|_| err(CKR_GENERAL_ERROR))?
                    .as_ref()
                    .to_vec(),
            )),
            Key::EdPrivate(EdKey::Ed25519(pair)) => Ok(Zeroizing::new(
                pair.to_pkcs8v1()
                    .map_err(|_| err(CKR_GENERAL_ERROR))?
                    .as_ref()
                    .to_vec(),
            )),
            _ => Err(err(CKR_KEY_NOT_WRAPPABLE)),
        }
    }
}

fn left_pad(v: &[u8], n: usize) -> Result<Vec<u8>> {
    if v.len() > n {
        return Err(Error::logged(
            CKR_ATTRIBUTE_VALUE_INVALID,
            "value is longer than the curve allows",
        ));
    }
    let mut out = vec![0u8; n - v.len()];
    out.extend_from_slice(v);
    Ok(out)
}

/// Attributes of an RSA private key (and the public ones it implies).
pub fn rsa_private_attrs(parts: &RsaParts) -> Attrs {
    let mut a = Attrs::new();
    a.insert(CKA_MODULUS, parts.n.clone());
    a.insert(CKA_PUBLIC_EXPONENT, parts.e.clone());
    a.insert(CKA_PRIVATE_EXPONENT, parts.d.to_vec());
    a.insert(CKA_PRIME_1, parts.p.to_vec());
    a.insert(CKA_PRIME_2, parts.q.to_vec());
    a.insert(CKA_EXPONENT_1, parts.dp.to_vec());
    a.insert(CKA_EXPONENT_2, parts.dq.to_vec());
    a.insert(CKA_COEFFICIENT, parts.qinv.to_vec());
    a.set_ulong(CKA_KEY_TYPE, CKK_RSA);
    a
}

/// Generates an RSA key pair of `bits`.
pub fn generate_rsa(bits: CK_ULONG, exponent: Option<&[u8]>) -> Result<RsaParts> {
    if let Some(e) = exponent {
        if der::trim(e) != [0x01, 0x00, 0x01] {
            return Err(Error::logged(
                CKR_TEMPLATE_INCONSISTENT,
                "only the public exponent 65537 is supported",
            ));
        }
    }
    let size = match bits {
        1024 => {
            let pkcs1 = super::rsa_raw::generate(1024)?;
            return RsaParts::from_pkcs1(&pkcs1);
        }
        2048 => rsa::KeySize::Rsa2048,
        3072 => rsa::KeySize::Rsa3072,
        4096 => rsa::KeySize::Rsa4096,
        _ => {
            return Err(Error::logged(
                CKR_KEY_SIZE_RANGE,
                format!("RSA keys of {bits} bits are not supported (1024, 2048, 3072, 4096)"),
            ))
        }
    };
    let pair = rsa::KeyPair::generate(size).map_err(|_| err(CKR_FUNCTION_FAILED))?;
    let p8: aws_lc_rs::encoding::Pkcs8V1Der = pair.as_der().map_err(|_| err(CKR_GENERAL_ERROR))?;
    let (_, _, inner) = der::read_pkcs8(p8.as_ref())?;
    RsaParts::from_pkcs1(&inner)
}

/// Generates an EC, Edwards or Montgomery key pair: (private value, public point).
pub fn generate_ec(curve: Curve) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    if curve.key_type() != CKK_EC {
        return okp::generate(curve);
    }
    let pair = EcdsaKeyPair::generate(ecdsa_alg(curve)).map_err(|_| err(CKR_FUNCTION_FAILED))?;
    let scalar: aws_lc_rs::encoding::EcPrivateKeyBin = pair
        .private_key()
        .as_be_bytes()
        .map_err(|_| err(CKR_GENERAL_ERROR))?;
    Ok((
        Zeroizing::new(scalar.as_ref().to_vec()),
        pair.public_key().as_ref().to_vec(),
    ))
}

/// The lengths CKA_VALUE may have for a secret key type whose length the spec fixes
/// (PKCS#11 3.0 AES, DES, DES2 and DES3 secret key objects); `None`: any length.
pub fn secret_lens(kt: CK_KEY_TYPE) -> Option<&'static [usize]> {
    Some(match kt {
        CKK_AES => &[16, 24, 32],
        CKK_DES => &[8],
        CKK_DES2 => &[16],
        CKK_DES3 => &[24],
        _ => return None,
    })
}

/// Completes and checks the attributes of an imported key (C_CreateObject, C_UnwrapKey).
pub fn complete_import(a: &Attrs) -> Result<Attrs> {
    let mut extra = Attrs::new();
    let class = a.ulong(CKA_CLASS).unwrap_or(CKO_DATA);
    let kt = a.ulong(CKA_KEY_TYPE).unwrap_or(CK_UNAVAILABLE_INFORMATION);
    if pqc::is_pqc(kt) && class != CKO_SECRET_KEY {
        return pqc::complete_import(a);
    }
    let key = Key::from_attrs(a).map_err(|e| {
        if e.rv() == CKR_TEMPLATE_INCOMPLETE {
            e
        } else {
            Error::new(CKR_ATTRIBUTE_VALUE_INVALID).or_keep(e)
        }
    })?;
    match (&key, class) {
        (Key::Secret { value, .. }, _) => {
            if let Some(lens) = secret_lens(kt).filter(|l| !l.contains(&value.len())) {
                return Err(Error::logged(
                    CKR_ATTRIBUTE_VALUE_INVALID,
                    format!("keys of type 0x{kt:x} are {lens:?} bytes long"),
                ));
            }
            extra.set_ulong(CKA_VALUE_LEN, value.len() as CK_ULONG);
        }
        (Key::RsaPublic { n, .. }, _) => {
            extra.set_ulong(
                CKA_MODULUS_BITS,
                (n.len() * 8) as CK_ULONG - n.first().map_or(0, |b| b.leading_zeros()) as CK_ULONG,
            );
        }
        _ => {}
    }
    Ok(extra)
}

trait OrKeep {
    fn or_keep(self, e: Error) -> Error;
}
impl OrKeep for Error {
    /// Keeps a more precise code than the generic one.
    fn or_keep(self, e: Error) -> Error {
        match e.rv() {
            CKR_CURVE_NOT_SUPPORTED | CKR_KEY_TYPE_INCONSISTENT | CKR_ATTRIBUTE_VALUE_INVALID => e,
            _ => self,
        }
    }
}
