//! What the key verbs read of an object: its label, `CKA_ID`, class and key type/size or
//! curve, the key's versions (objects of one label, newest first), and a public key as a
//! PEM SubjectPublicKeyInfo.
//!
//! A version is the set of objects of one label with one `CKA_ID` (a private and a public
//! key, or one secret key). Versions are ordered by the number their `CKA_ID` carries:
//! the remote services' ids end in the version number (`transit/keys/k/v3`), and ids that
//! hsmux makes on the soft token and module slots are 4 random bytes and a 4-byte
//! big-endian counter ([`next_id`]).

use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use hsmux::config::uri::{ObjectType, Pkcs11Uri};
use serde::Serialize;

/// One object, as listed.
#[derive(Serialize, Clone)]
pub struct Object {
    #[serde(skip)]
    pub handle: ObjectHandle,
    pub label: String,
    /// `CKA_ID`, hex.
    pub id: String,
    #[serde(skip)]
    pub id_bytes: Vec<u8>,
    /// `public`, `private`, `secret-key`, `cert`, `data` (RFC 7512's names).
    #[serde(rename = "type")]
    pub class: String,
    /// `ec`, `rsa`, `aes`, `generic-secret`, `ed25519`, ... (absent for a non-key).
    pub key_type: Option<String>,
    /// Bits: RSA modulus, secret key length, EC field size.
    pub size: Option<u64>,
    /// `p256`, `p384`, `p521`, `ed25519`.
    pub curve: Option<String>,
    /// A post-quantum key's parameter set as FIPS names it: `ML-DSA-65`, `ML-KEM-768`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter_set: Option<String>,
    /// The object's own RFC 7512 URI.
    pub uri: String,
}

impl Object {
    /// `ec:p256`, `rsa:3072`, `aes:256`: the form `--type` takes.
    pub fn kind(&self) -> String {
        if let (Some(t), Some(ps)) = (&self.key_type, &self.parameter_set) {
            // "ML-DSA-65" -> "ml-dsa:65", the form `--type` takes.
            let n = ps.rsplit('-').next().unwrap_or(ps);
            return format!("{t}:{n}");
        }
        match (&self.key_type, &self.curve, self.size) {
            (Some(t), Some(c), _) => format!("{t}:{c}"),
            (Some(t), None, Some(n)) => format!("{t}:{n}"),
            (Some(t), None, None) => t.clone(),
            (None, _, _) => "-".into(),
        }
    }
}

/// The curve of DER `CKA_EC_PARAMS` (a named-curve OID) and its size in bits.
fn curve(params: &[u8]) -> Option<(&'static str, u64)> {
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    const P521: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    match params {
        P256 => Some(("p256", 256)),
        P384 => Some(("p384", 384)),
        P521 => Some(("p521", 521)),
        ED25519 => Some(("ed25519", 255)),
        _ => None,
    }
}

/// The DER OID of a curve `--type ec:` names.
pub fn curve_params(name: &str) -> Option<Vec<u8>> {
    let oid = match name {
        "p256" => "1.2.840.10045.3.1.7",
        "p384" => "1.3.132.0.34",
        "p521" => "1.3.132.0.35",
        _ => return None,
    };
    use der::Encode;
    der::asn1::ObjectIdentifier::new(oid).ok()?.to_der().ok()
}

fn key_type_name(kt: cryptoki_sys::CK_KEY_TYPE) -> String {
    use cryptoki_sys::*;
    match kt {
        CKK_RSA => "rsa",
        CKK_EC => "ec",
        CKK_EC_EDWARDS => "ed",
        CKK_AES => "aes",
        CKK_GENERIC_SECRET => "generic-secret",
        CKK_SHA256_HMAC => "hmac-sha256",
        CKK_SHA384_HMAC => "hmac-sha384",
        CKK_SHA512_HMAC => "hmac-sha512",
        CKK_SHA_1_HMAC => "hmac-sha1",
        CKK_DES3 => "des3",
        CKK_ML_DSA => "ml-dsa",
        CKK_ML_KEM => "ml-kem",
        CKK_SLH_DSA => "slh-dsa",
        _ => return format!("0x{kt:x}"),
    }
    .into()
}

/// The attributes of `want` that the object has (cryptoki leaves out the others).
fn attributes(
    s: &Session,
    h: ObjectHandle,
    want: &[AttributeType],
) -> Result<Vec<Attribute>, String> {
    s.get_attributes(h, want)
        .map_err(|e| format!("C_GetAttributeValue: {e}"))
}

/// Reads one object's description; `token` is its token's URI.
pub fn describe(s: &Session, h: ObjectHandle, token: &Pkcs11Uri) -> Result<Object, String> {
    let want = [
        AttributeType::Class,
        AttributeType::Label,
        AttributeType::Id,
        AttributeType::KeyType,
        AttributeType::ModulusBits,
        AttributeType::Modulus,
        AttributeType::EcParams,
        AttributeType::ValueLen,
        AttributeType::ParameterSet,
    ];
    let attrs = attributes(s, h, &want)?;
    let (mut class, mut label, mut id, mut kt) = (None, String::new(), Vec::new(), None);
    let (mut bits, mut modulus, mut params, mut len) = (None, None, None, None);
    let mut set = None;
    for a in attrs {
        match a {
            Attribute::Class(c) => class = Some(*c),
            Attribute::Label(l) => label = String::from_utf8_lossy(&l).into_owned(),
            Attribute::Id(i) => id = i,
            Attribute::KeyType(k) => kt = Some(*k),
            Attribute::ModulusBits(b) => bits = Some(u64::from(b)),
            Attribute::Modulus(m) => modulus = Some(m.len() as u64 * 8),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::ValueLen(l) => len = Some(u64::from(l) * 8),
            Attribute::ParameterSet(p) => set = Some(*p),
            _ => {}
        }
    }
    let ty = class.and_then(ObjectType::of_class);
    let c = params.as_deref().and_then(curve);
    let key_type = kt.map(|k| match (k, &c) {
        (cryptoki_sys::CKK_EC_EDWARDS, Some(("ed25519", _))) => "ed25519".to_string(),
        _ => key_type_name(k),
    });
    let size = match kt {
        Some(cryptoki_sys::CKK_RSA) => bits.or(modulus),
        Some(cryptoki_sys::CKK_EC) | Some(cryptoki_sys::CKK_EC_EDWARDS) => c.map(|(_, b)| b),
        Some(_) => len,
        None => None,
    };
    let uri = Pkcs11Uri {
        object: Some(label.clone()),
        object_type: ty,
        id: Some(id.clone()),
        ..token.clone()
    };
    Ok(Object {
        handle: h,
        label,
        id: hex::encode(&id),
        id_bytes: id,
        class: ty.map_or_else(
            || format!("0x{:x}", class.unwrap_or(0)),
            |t| t.name().into(),
        ),
        curve: c
            .filter(|_| kt == Some(cryptoki_sys::CKK_EC))
            .map(|(n, _)| n.to_string()),
        parameter_set: kt
            .zip(set)
            .and_then(|(k, v)| hsmux::core::keyname::parameter_set(k, *v))
            .map(str::to_string),
        key_type,
        size,
        uri: uri.to_string(),
    })
}

/// The version number a `CKA_ID` carries: a printable id's trailing digits (the remote
/// services' `.../v3`, `.../cryptoKeyVersions/3`), else the last 4 bytes of an 8-byte id
/// (hsmux's own), else 0.
pub fn version_of(id: &[u8]) -> u64 {
    if let Ok(t) = std::str::from_utf8(id) {
        if !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic()) {
            let digits: String = t.chars().rev().take_while(char::is_ascii_digit).collect();
            let digits: String = digits.chars().rev().collect();
            if let Ok(n) = digits.parse() {
                return n;
            }
        }
    }
    match <[u8; 8]>::try_from(id) {
        Ok(b) => u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as u64,
        Err(_) => 0,
    }
}

/// The id of the version after `newest` (hsmux's form: the same 4-byte prefix, the
/// counter plus one); a fresh key's when there is none or it is not in hsmux's form.
pub fn next_id(newest: Option<&[u8]>, random: &[u8; 4]) -> Vec<u8> {
    match newest.and_then(|id| <[u8; 8]>::try_from(id).ok()) {
        Some(b) => {
            let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]).wrapping_add(1);
            [&b[..4], &n.to_be_bytes()[..]].concat()
        }
        None => [&random[..], &1u32.to_be_bytes()[..]].concat(),
    }
}

/// One version of a key: its `CKA_ID` and its objects.
#[derive(Serialize)]
pub struct Version {
    pub id: String,
    /// The id as text when it is printable (the remote services' version names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_text: Option<String>,
    pub objects: Vec<Object>,
}

/// Objects grouped by label (in first-seen order) and, within a label, by id, newest
/// version first.
pub fn group(objects: Vec<Object>) -> Vec<(String, Vec<Version>)> {
    let mut out: Vec<(String, Vec<Version>)> = Vec::new();
    for o in objects {
        let i = match out.iter().position(|(l, _)| *l == o.label) {
            Some(i) => i,
            None => {
                out.push((o.label.clone(), Vec::new()));
                out.len() - 1
            }
        };
        let versions = &mut out[i].1;
        match versions.iter_mut().find(|v| v.id == o.id) {
            Some(v) => v.objects.push(o),
            None => versions.push(Version {
                id: o.id.clone(),
                id_text: std::str::from_utf8(&o.id_bytes)
                    .ok()
                    .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic()))
                    .map(str::to_string),
                objects: vec![o],
            }),
        }
    }
    for (_, versions) in &mut out {
        // Stable: equal numbers keep the token's order (a remote token lists its primary
        // version first).
        versions.sort_by_key(|v| std::cmp::Reverse(version_of(&v.objects[0].id_bytes)));
    }
    out
}

/// The public key of `h` as a PEM SubjectPublicKeyInfo: `CKA_PUBLIC_KEY_INFO` when the
/// token has it, else built from the RSA modulus and exponent or the EC parameters and
/// point.
pub fn public_pem(s: &Session, h: ObjectHandle) -> Result<String, String> {
    let want = [
        AttributeType::PublicKeyInfo,
        AttributeType::KeyType,
        AttributeType::Modulus,
        AttributeType::PublicExponent,
        AttributeType::EcParams,
        AttributeType::EcPoint,
    ];
    let attrs = attributes(s, h, &want)?;
    let (mut spki, mut kt, mut n, mut e, mut params, mut point) =
        (None, None, None, None, None, None);
    for a in attrs {
        match a {
            Attribute::PublicKeyInfo(v) if !v.is_empty() => spki = Some(v),
            Attribute::KeyType(k) => kt = Some(*k),
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            Attribute::EcParams(v) => params = Some(v),
            Attribute::EcPoint(v) => point = Some(v),
            _ => {}
        }
    }
    let der = match (spki, kt) {
        (Some(d), _) => d,
        (None, Some(cryptoki_sys::CKK_RSA)) => {
            let (n, e) = n
                .zip(e)
                .ok_or("the RSA key shows no modulus and exponent")?;
            rsa_spki(&n, &e)?
        }
        (None, Some(k @ (cryptoki_sys::CKK_EC | cryptoki_sys::CKK_EC_EDWARDS))) => {
            let (p, q) = params
                .zip(point)
                .ok_or("the EC key shows no parameters and point")?;
            ec_spki(k == cryptoki_sys::CKK_EC_EDWARDS, &p, &q)?
        }
        _ => return Err("not an RSA or EC public key".into()),
    };
    Ok(pem("PUBLIC KEY", &der))
}

fn enc_err(e: der::Error) -> String {
    format!("DER encoding: {e}")
}

fn rsa_spki(n: &[u8], e: &[u8]) -> Result<Vec<u8>, String> {
    use der::Encode;
    let pk = pkcs1::RsaPublicKey {
        modulus: der::asn1::UintRef::new(n).map_err(enc_err)?,
        public_exponent: der::asn1::UintRef::new(e).map_err(enc_err)?,
    }
    .to_der()
    .map_err(enc_err)?;
    spki("1.2.840.113549.1.1.1", Some(&[0x05, 0x00]), &pk)
}

/// An EC or Ed25519 SubjectPublicKeyInfo; `point` is `CKA_EC_POINT` (a DER OCTET STRING,
/// or the raw point as some tokens give it).
fn ec_spki(edwards: bool, params: &[u8], point: &[u8]) -> Result<Vec<u8>, String> {
    use der::Decode;
    let raw = der::asn1::OctetStringRef::from_der(point)
        .map(|o| o.as_bytes().to_vec())
        .unwrap_or_else(|_| point.to_vec());
    if edwards {
        spki("1.3.101.112", None, &raw)
    } else {
        spki("1.2.840.10045.2.1", Some(params), &raw)
    }
}

fn spki(oid: &str, params: Option<&[u8]>, key: &[u8]) -> Result<Vec<u8>, String> {
    use der::{Decode, Encode};
    let parameters = params
        .map(der::asn1::AnyRef::from_der)
        .transpose()
        .map_err(enc_err)?;
    pkcs8::spki::SubjectPublicKeyInfoRef {
        algorithm: pkcs8::spki::AlgorithmIdentifierRef {
            oid: der::asn1::ObjectIdentifier::new(oid).map_err(|e| e.to_string())?,
            parameters,
        },
        subject_public_key: der::asn1::BitStringRef::from_bytes(key).map_err(enc_err)?,
    }
    .to_der()
    .map_err(enc_err)
}

/// A PEM block, 64 base64 characters a line.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_ids() {
        assert_eq!(version_of(b"transit/keys/k/v12"), 12);
        assert_eq!(version_of(b"projects/p/cryptoKeyVersions/3"), 3);
        assert_eq!(version_of(&[0xaa, 0xbb, 0xcc, 0xdd, 0, 0, 1, 2]), 258);
        assert_eq!(version_of(&[1, 2]), 0);
        let first = next_id(None, &[9, 8, 7, 6]);
        assert_eq!(first, [9, 8, 7, 6, 0, 0, 0, 1]);
        let second = next_id(Some(&first), &[1, 1, 1, 1]);
        assert_eq!(second, [9, 8, 7, 6, 0, 0, 0, 2]);
        assert!(version_of(&second) > version_of(&first));
        assert_eq!(
            curve_params("p256").as_deref().and_then(curve),
            Some(("p256", 256))
        );
    }
}
