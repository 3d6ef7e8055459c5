//! A service's public key (SubjectPublicKeyInfo, often as PEM) turned into the attributes
//! of a PKCS#11 public key object, and the ECDSA signature encodings services use.

use super::{EcCurve, KeyAlg};
use crate::backend::soft::crypto::der::{self as sder, OID_ED25519, OID_P256, OID_P384, OID_P521};
use crate::core::attr::{Attrs, AttrsExt};
use crate::core::error::{Error, Result};
use base64::Engine as _;
use cryptoki_sys::*;
use der::Decode;

const RSA: &str = "1.2.840.113549.1.1.1";
const EC: &str = "1.2.840.10045.2.1";
const ED25519: &str = "1.3.101.112";
const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const P521: &str = "1.3.132.0.35";

fn bad(why: impl std::fmt::Display) -> Error {
    Error::logged(CKR_DEVICE_ERROR, format!("service public key: {why}"))
}

/// The DER inside a PEM block (`-----BEGIN PUBLIC KEY-----`).
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    if !pem.contains("-----BEGIN") {
        return Err(bad("not PEM"));
    }
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| bad(format!("PEM body: {e}")))
}

/// SubjectPublicKeyInfo DER for a raw Ed25519 key (Vault hands out the 32 bytes only).
pub fn ed25519_spki(raw: &[u8]) -> Result<Vec<u8>> {
    if raw.len() != 32 {
        return Err(bad(format!("Ed25519 key of {} bytes", raw.len())));
    }
    let mut out = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    out.extend_from_slice(raw);
    Ok(out)
}

/// What a public key is and the attributes that describe it: `CKA_KEY_TYPE`,
/// `CKA_EC_PARAMS`+`CKA_EC_POINT` (EC, Ed25519, with the raw Ed25519 key also in
/// `CKA_VALUE`), `CKA_MODULUS`+`CKA_PUBLIC_EXPONENT`+`CKA_MODULUS_BITS` (RSA),
/// `CKA_PARAMETER_SET`+`CKA_VALUE` (ML-DSA, SLH-DSA, ML-KEM), `CKA_PUBLIC_KEY_INFO`.
pub fn describe(spki: &[u8]) -> Result<(KeyAlg, Attrs)> {
    let info = <pkcs8::spki::SubjectPublicKeyInfoRef as der::Decode>::from_der(spki)
        .map_err(|e| bad(format!("not a SubjectPublicKeyInfo: {e}")))?;
    let key = info
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| bad("bit string with unused bits"))?;
    let mut a = Attrs::new();
    a.insert(CKA_PUBLIC_KEY_INFO, spki.to_vec());
    let alg = match info.algorithm.oid.to_string().as_str() {
        RSA => {
            let pk = pkcs1::RsaPublicKey::from_der(key)
                .map_err(|e| bad(format!("RSA public key: {e}")))?;
            let n = sder::trim(pk.modulus.as_bytes()).to_vec();
            let e = sder::trim(pk.public_exponent.as_bytes()).to_vec();
            let bits = n.len() as u32 * 8 - n.first().map_or(8, |b| b.leading_zeros());
            a.set_ulong(CKA_KEY_TYPE, CKK_RSA);
            a.set_ulong(CKA_MODULUS_BITS, bits as CK_ULONG);
            a.insert(CKA_MODULUS, n);
            a.insert(CKA_PUBLIC_EXPONENT, e);
            KeyAlg::Rsa { bits }
        }
        EC => {
            let curve_oid = info
                .algorithm
                .parameters
                .ok_or_else(|| bad("EC key without curve"))?
                .decode_as::<pkcs8::ObjectIdentifier>()
                .map_err(|e| bad(format!("EC curve: {e}")))?;
            let (curve, params) = match curve_oid.to_string().as_str() {
                P256 => (EcCurve::P256, OID_P256),
                P384 => (EcCurve::P384, OID_P384),
                P521 => (EcCurve::P521, OID_P521),
                other => return Err(bad(format!("unsupported curve {other}"))),
            };
            if key.len() != 1 + 2 * curve.field_len() || key[0] != 0x04 {
                return Err(bad("EC point is not an uncompressed point of its curve"));
            }
            a.set_ulong(CKA_KEY_TYPE, CKK_EC);
            a.insert(CKA_EC_PARAMS, params.to_vec());
            a.insert(CKA_EC_POINT, sder::octet_string(key));
            KeyAlg::Ec { curve }
        }
        ED25519 => {
            if key.len() != 32 {
                return Err(bad("Ed25519 key is not 32 bytes"));
            }
            a.set_ulong(CKA_KEY_TYPE, CKK_EC_EDWARDS);
            a.insert(CKA_EC_PARAMS, OID_ED25519.to_vec());
            a.insert(CKA_EC_POINT, sder::octet_string(key));
            a.insert(CKA_VALUE, key.to_vec());
            KeyAlg::Ed25519
        }
        other => {
            let (alg, pq) = super::pqc::describe(other, key)
                .ok_or_else(|| bad(format!("unsupported algorithm {other}")))??;
            a.extend(pq);
            alg
        }
    };
    Ok((alg, a))
}

/// An ECDSA signature as DER `SEQUENCE { r INTEGER, s INTEGER }` to PKCS#11's raw
/// `r || s`, each left-padded to the field length. Anything else is a malformed answer.
pub fn ecdsa_der_to_raw(der: &[u8], curve: EcCurve) -> Result<Vec<u8>> {
    let n = curve.field_len();
    let sig = Signature::from_der(der).map_err(|e| bad(format!("ECDSA signature DER: {e}")))?;
    let mut out = vec![0u8; 2 * n];
    for (i, v) in [sig.r.as_bytes(), sig.s.as_bytes()].into_iter().enumerate() {
        let v = sder::trim(v);
        if v.len() > n || v.is_empty() {
            return Err(bad("ECDSA signature component longer than the field"));
        }
        out[i * n + n - v.len()..(i + 1) * n].copy_from_slice(v);
    }
    Ok(out)
}

/// Raw `r || s` to DER (for services whose verify takes DER).
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>> {
    use der::Encode;
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(Error::new(CKR_SIGNATURE_LEN_RANGE));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    fn uint(v: &[u8]) -> Result<der::asn1::UintRef<'_>> {
        der::asn1::UintRef::new(sder::trim(v)).map_err(|_| Error::new(CKR_SIGNATURE_INVALID))
    }
    Signature {
        r: uint(r)?,
        s: uint(s)?,
    }
    .to_der()
    .map_err(|_| Error::new(CKR_SIGNATURE_INVALID))
}

#[derive(der::Sequence)]
struct Signature<'a> {
    r: der::asn1::UintRef<'a>,
    s: der::asn1::UintRef<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_der_round_trips_with_short_components() {
        let mut raw = vec![0u8; 64];
        raw[31] = 5; // r = 5 (DER strips the zeros)
        raw[32] = 0x80; // s has its top bit set (DER adds a zero)
        raw[63] = 1;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(ecdsa_der_to_raw(&der, EcCurve::P256).unwrap(), raw);
        // Too long for P-256, truncated, trailing bytes: all malformed.
        assert!(ecdsa_der_to_raw(&ecdsa_raw_to_der(&[1u8; 96]).unwrap(), EcCurve::P256).is_err());
        assert!(ecdsa_der_to_raw(&der[..der.len() - 1], EcCurve::P256).is_err());
        let mut long = der.clone();
        long.push(0);
        assert!(ecdsa_der_to_raw(&long, EcCurve::P256).is_err());
    }

    #[test]
    fn public_keys_of_each_kind_are_described() {
        let ed = ed25519_spki(&[7u8; 32]).unwrap();
        let (alg, a) = describe(&ed).unwrap();
        assert_eq!(alg, KeyAlg::Ed25519);
        assert_eq!(a.bytes(CKA_VALUE).unwrap(), &[7u8; 32]);
        assert!(describe(&ed[..ed.len() - 1]).is_err());
        let rsa = sder::rsa_spki(&[0xc1; 256], &[1, 0, 1]).unwrap();
        let (alg, a) = describe(&rsa).unwrap();
        assert_eq!(alg, KeyAlg::Rsa { bits: 2048 });
        assert_eq!(a.bytes(CKA_PUBLIC_EXPONENT).unwrap(), &[1, 0, 1]);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&rsa)
        );
        assert_eq!(pem_to_der(&pem).unwrap(), rsa);
    }
}
