//! The few DER encodings the soft token needs: curve identifiers, EC points as OCTET
//! STRINGs, DigestInfo prefixes, and RSA keys as PKCS#1 / PKCS#8 / SubjectPublicKeyInfo.

use crate::core::error::{err, Error, Result};
use cryptoki_sys::*;
use pkcs1::der::{Decode, Encode};
use zeroize::Zeroizing;

/// The curves the soft token knows: NIST curves (CKK_EC), Edwards curves (CKK_EC_EDWARDS)
/// and Montgomery curves (CKK_EC_MONTGOMERY).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
    Ed25519,
    Ed448,
    X25519,
    X448,
}

pub const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
pub const OID_P521: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
pub const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
// RFC 8410: id-X25519 1.3.101.110, id-X448 1.3.101.111, id-Ed448 1.3.101.113.
pub const OID_X25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6e];
pub const OID_X448: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6f];
pub const OID_ED448: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x71];

impl Curve {
    /// Reads CKA_EC_PARAMS: a DER OID, or the printable-string curve name some consumers
    /// use (PKCS#11 3.0 §2.3.10 names edwards25519/edwards448 and curve25519/curve448).
    pub fn from_params(p: &[u8]) -> Result<Curve> {
        match p {
            OID_P256 => Ok(Curve::P256),
            OID_P384 => Ok(Curve::P384),
            OID_P521 => Ok(Curve::P521),
            OID_ED25519 => Ok(Curve::Ed25519),
            OID_ED448 => Ok(Curve::Ed448),
            OID_X25519 => Ok(Curve::X25519),
            OID_X448 => Ok(Curve::X448),
            [0x13, n, rest @ ..] if *n as usize == rest.len() => match rest {
                b"prime256v1" | b"secp256r1" => Ok(Curve::P256),
                b"secp384r1" => Ok(Curve::P384),
                b"secp521r1" => Ok(Curve::P521),
                b"edwards25519" | b"Ed25519" => Ok(Curve::Ed25519),
                b"edwards448" | b"Ed448" => Ok(Curve::Ed448),
                b"curve25519" | b"X25519" => Ok(Curve::X25519),
                b"curve448" | b"X448" => Ok(Curve::X448),
                _ => Err(Error::logged(
                    CKR_CURVE_NOT_SUPPORTED,
                    "unsupported curve name in CKA_EC_PARAMS",
                )),
            },
            _ => Err(Error::logged(
                CKR_CURVE_NOT_SUPPORTED,
                "unsupported CKA_EC_PARAMS (P-256, P-384, P-521, Ed25519, Ed448, X25519, X448 \
                 are supported)",
            )),
        }
    }

    pub fn params(self) -> Vec<u8> {
        match self {
            Curve::P256 => OID_P256,
            Curve::P384 => OID_P384,
            Curve::P521 => OID_P521,
            Curve::Ed25519 => OID_ED25519,
            Curve::Ed448 => OID_ED448,
            Curve::X25519 => OID_X25519,
            Curve::X448 => OID_X448,
        }
        .to_vec()
    }

    /// The key type of keys on this curve.
    pub fn key_type(self) -> CK_KEY_TYPE {
        match self {
            Curve::Ed25519 | Curve::Ed448 => CKK_EC_EDWARDS,
            Curve::X25519 | Curve::X448 => CKK_EC_MONTGOMERY,
            _ => CKK_EC,
        }
    }

    /// Bytes of a scalar / field element (of the private value for Edwards and Montgomery
    /// curves: RFC 8032 and RFC 7748 sizes).
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 | Curve::Ed25519 | Curve::X25519 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
            Curve::Ed448 => 57,
            Curve::X448 => 56,
        }
    }

    /// Length of the public point as the token stores it (uncompressed for NIST curves,
    /// the RFC 8032 / RFC 7748 encoding otherwise).
    pub fn point_len(self) -> usize {
        match self.key_type() {
            CKK_EC => 1 + 2 * self.field_len(),
            _ => self.field_len(),
        }
    }

    pub fn bits(self) -> CK_ULONG {
        match self {
            Curve::P256 | Curve::Ed25519 | Curve::X25519 => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
            Curve::Ed448 | Curve::X448 => 448,
        }
    }
}

fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
}

/// CKA_EC_POINT as SoftHSM and OpenSC write it: a DER OCTET STRING around the point.
pub fn octet_string(point: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    der_len(point.len(), &mut out);
    out.extend_from_slice(point);
    out
}

/// Reads CKA_EC_POINT (or ECDH public data): a DER OCTET STRING around the point, or the
/// raw point itself.
pub fn ec_point(v: &[u8], curve: Curve) -> Result<Vec<u8>> {
    let want = curve.point_len();
    if v.len() == want && (curve.key_type() != CKK_EC || v[0] == 0x04) {
        return Ok(v.to_vec());
    }
    let inner = match v {
        [0x04, n, rest @ ..] if (*n as usize) < 0x80 && *n as usize == rest.len() => rest,
        [0x04, 0x81, n, rest @ ..] if *n as usize == rest.len() => rest,
        _ => {
            return Err(Error::logged(
                CKR_ATTRIBUTE_VALUE_INVALID,
                "EC point is neither a DER OCTET STRING nor a raw point",
            ))
        }
    };
    if inner.len() != want {
        return Err(Error::logged(
            CKR_ATTRIBUTE_VALUE_INVALID,
            "EC point has the wrong length for its curve",
        ));
    }
    Ok(inner.to_vec())
}

/// The DigestInfo prefix of a SHA-2 hash (RFC 8017 §9.2 note 1): SEQUENCE { SEQUENCE {
/// OID 2.16.840.1.101.3.4.2.`n`, NULL }, OCTET STRING } for a digest of `len` bytes.
const fn sha2_prefix(n: u8, len: u8) -> [u8; 19] {
    let mut p = [
        0x30, 0, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0, 0x05,
        0x00, 0x04, 0,
    ];
    p[1] = 0x11 + len; // 15 bytes of AlgorithmIdentifier, the OCTET STRING header, the digest
    p[14] = n;
    p[18] = len;
    p
}

/// DigestInfo prefixes (RFC 8017 §9.2 note 1), for CKM_RSA_PKCS signatures.
pub const DIGEST_INFO: &[(CK_MECHANISM_TYPE, &[u8])] = &[
    (
        CKM_SHA_1,
        &[
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ],
    ),
    (CKM_SHA224, &sha2_prefix(4, 28)),
    (CKM_SHA256, &sha2_prefix(1, 32)),
    (CKM_SHA384, &sha2_prefix(2, 48)),
    (CKM_SHA512, &sha2_prefix(3, 64)),
];

/// Splits a DigestInfo into (hash mechanism, digest).
pub fn split_digest_info(data: &[u8]) -> Option<(CK_MECHANISM_TYPE, &[u8])> {
    DIGEST_INFO.iter().find_map(|(m, prefix)| {
        let rest = data.strip_prefix(*prefix)?;
        (rest.len() == prefix[prefix.len() - 1] as usize).then_some((*m, rest))
    })
}

const OID_RSA: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// RSA private key components, big-endian without leading zeros.
pub struct RsaParts {
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub d: Zeroizing<Vec<u8>>,
    pub p: Zeroizing<Vec<u8>>,
    pub q: Zeroizing<Vec<u8>>,
    pub dp: Zeroizing<Vec<u8>>,
    pub dq: Zeroizing<Vec<u8>>,
    pub qinv: Zeroizing<Vec<u8>>,
}

fn uint(b: &[u8]) -> Result<pkcs1::UintRef<'_>> {
    pkcs1::UintRef::new(b).map_err(|_| err(CKR_ATTRIBUTE_VALUE_INVALID))
}

impl RsaParts {
    /// PKCS#1 RSAPrivateKey DER.
    pub fn to_pkcs1(&self) -> Result<Zeroizing<Vec<u8>>> {
        let k = pkcs1::RsaPrivateKey {
            modulus: uint(&self.n)?,
            public_exponent: uint(&self.e)?,
            private_exponent: uint(&self.d)?,
            prime1: uint(&self.p)?,
            prime2: uint(&self.q)?,
            exponent1: uint(&self.dp)?,
            exponent2: uint(&self.dq)?,
            coefficient: uint(&self.qinv)?,
            other_prime_infos: None,
        };
        Ok(Zeroizing::new(
            k.to_der().map_err(|_| err(CKR_ATTRIBUTE_VALUE_INVALID))?,
        ))
    }

    pub fn from_pkcs1(der: &[u8]) -> Result<RsaParts> {
        let k = pkcs1::RsaPrivateKey::from_der(der).map_err(|_| err(CKR_WRAPPED_KEY_INVALID))?;
        let z = |u: pkcs1::UintRef| Zeroizing::new(u.as_bytes().to_vec());
        Ok(RsaParts {
            n: k.modulus.as_bytes().to_vec(),
            e: k.public_exponent.as_bytes().to_vec(),
            d: z(k.private_exponent),
            p: z(k.prime1),
            q: z(k.prime2),
            dp: z(k.exponent1),
            dq: z(k.exponent2),
            qinv: z(k.coefficient),
        })
    }

    /// PKCS#8 PrivateKeyInfo DER around the PKCS#1 key.
    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>> {
        let inner = self.to_pkcs1()?;
        let info = pkcs8::PrivateKeyInfo {
            algorithm: pkcs8::AlgorithmIdentifierRef {
                oid: OID_RSA,
                parameters: Some(pkcs8::der::asn1::AnyRef::NULL),
            },
            private_key: &inner,
            public_key: None,
        };
        Ok(Zeroizing::new(
            info.to_der().map_err(|_| err(CKR_GENERAL_ERROR))?,
        ))
    }
}

/// PKCS#1 RSAPublicKey DER (what aws-lc-rs verifies with).
pub fn rsa_public_pkcs1(n: &[u8], e: &[u8]) -> Result<Vec<u8>> {
    pkcs1::RsaPublicKey {
        modulus: uint(n)?,
        public_exponent: uint(e)?,
    }
    .to_der()
    .map_err(|_| err(CKR_ATTRIBUTE_VALUE_INVALID))
}

/// SubjectPublicKeyInfo DER of an RSA key (what aws-lc-rs encrypts with).
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Result<Vec<u8>> {
    let pk = rsa_public_pkcs1(n, e)?;
    let spki = pkcs8::spki::SubjectPublicKeyInfoRef {
        algorithm: pkcs8::AlgorithmIdentifierRef {
            oid: OID_RSA,
            parameters: Some(pkcs8::der::asn1::AnyRef::NULL),
        },
        subject_public_key: pkcs8::der::asn1::BitStringRef::from_bytes(&pk)
            .map_err(|_| err(CKR_GENERAL_ERROR))?,
    };
    spki.to_der().map_err(|_| err(CKR_GENERAL_ERROR))
}

/// What a PKCS#8 PrivateKeyInfo holds: the algorithm OID, its parameters (DER), the key.
pub type Pkcs8Parts = (String, Option<Vec<u8>>, Zeroizing<Vec<u8>>);

pub fn read_pkcs8(der: &[u8]) -> Result<Pkcs8Parts> {
    let info = pkcs8::PrivateKeyInfo::try_from(der)
        .map_err(|_| Error::logged(CKR_WRAPPED_KEY_INVALID, "unwrapped data is not PKCS#8"))?;
    let params = info.algorithm.parameters.and_then(|p| p.to_der().ok());
    Ok((
        info.algorithm.oid.to_string(),
        params,
        Zeroizing::new(info.private_key.to_vec()),
    ))
}

/// Strips leading zero bytes (PKCS#11 big integers may carry them).
pub fn trim(b: &[u8]) -> &[u8] {
    let i = b
        .iter()
        .position(|x| *x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_by_oid_and_name() {
        assert_eq!(Curve::from_params(OID_P256).unwrap(), Curve::P256);
        assert_eq!(
            Curve::from_params(b"\x13\x0aprime256v1").unwrap(),
            Curve::P256
        );
        assert_eq!(
            Curve::from_params(b"\x13\x0cedwards25519").unwrap(),
            Curve::Ed25519
        );
        assert_eq!(
            Curve::from_params(&[0x06, 0x01, 0x00]).unwrap_err().rv(),
            CKR_CURVE_NOT_SUPPORTED
        );
    }

    #[test]
    fn points_in_both_encodings() {
        let p = [0x04u8; 65];
        assert_eq!(
            ec_point(&octet_string(&p), Curve::P256).unwrap(),
            p.to_vec()
        );
        assert_eq!(ec_point(&p, Curve::P256).unwrap(), p.to_vec());
        let p384 = [0x04u8; 97];
        assert_eq!(octet_string(&p384)[..3], [0x04, 0x61, 0x04]);
        assert!(ec_point(&[0x04, 0x02, 1, 2], Curve::P256).is_err());
    }

    #[test]
    fn digest_info_is_recognized() {
        // RFC 8017 §9.2 note 1, as printed there.
        let sha256 =
            b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20";
        let sha512 =
            b"\x30\x51\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x03\x05\x00\x04\x40";
        assert_eq!(
            (DIGEST_INFO[2].1, DIGEST_INFO[4].1),
            (&sha256[..], &sha512[..])
        );
        let mut di = DIGEST_INFO[2].1.to_vec();
        di.extend_from_slice(&[7u8; 32]);
        assert_eq!(split_digest_info(&di), Some((CKM_SHA256, &[7u8; 32][..])));
        di.push(0);
        assert_eq!(split_digest_info(&di), None);
    }
}
