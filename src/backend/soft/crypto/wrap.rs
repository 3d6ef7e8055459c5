//! Key wrapping (AES Key Wrap RFC 3394, with padding RFC 5649, RSA-OAEP) and derivation
//! (ECDH1).

use super::der::{self, Curve};
use super::keys::{self, Key};
use crate::core::attr::{Attrs, AttrsExt};
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{MechParam, Mechanism};
use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::key_wrap::{self, KeyWrap, KeyWrapPadded};
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use cryptoki_sys::*;
use std::sync::Arc;
use zeroize::Zeroizing;

/// A key-encryption key: aws-lc for 128- and 256-bit keys, RustCrypto's `aes-kw` for
/// 192-bit ones (which aws-lc-rs does not take).
enum Kek {
    Lc(key_wrap::AesKek),
    Aes192(Box<aes_kw::KekAes192>),
}

fn kek(key: &Key) -> Result<Kek> {
    let Key::Secret {
        key_type: CKK_AES,
        value,
    } = key
    else {
        return Err(err(CKR_WRAPPING_KEY_TYPE_INCONSISTENT));
    };
    let lc = |c| {
        key_wrap::AesKek::new(c, value)
            .map(Kek::Lc)
            .map_err(|_| err(CKR_WRAPPING_KEY_SIZE_RANGE))
    };
    match value.len() {
        16 => lc(&key_wrap::AES_128),
        32 => lc(&key_wrap::AES_256),
        24 => Ok(Kek::Aes192(Box::new(aes_kw::KekAes192::new(
            value.as_slice().into(),
        )))),
        _ => Err(err(CKR_WRAPPING_KEY_SIZE_RANGE)),
    }
}

impl Kek {
    /// RFC 3394 (`pad` false) or RFC 5649 wrapping.
    fn wrap(self, data: &[u8], pad: bool) -> Result<Vec<u8>> {
        let mut out = vec![0u8; data.len() + 16];
        let n = match (self, pad) {
            (Kek::Lc(k), true) => k.wrap_with_padding(data, &mut out).map(|o| o.len()).ok(),
            (Kek::Lc(k), false) => k.wrap(data, &mut out).map(|o| o.len()).ok(),
            (Kek::Aes192(k), true) => k.wrap_with_padding_vec(data).ok().map(|v| {
                out = v;
                out.len()
            }),
            (Kek::Aes192(k), false) => k.wrap_vec(data).ok().map(|v| {
                out = v;
                out.len()
            }),
        }
        .ok_or_else(|| err(CKR_KEY_SIZE_RANGE))?;
        out.truncate(n);
        Ok(out)
    }

    fn unwrap(self, wrapped: &[u8], pad: bool) -> Result<Zeroizing<Vec<u8>>> {
        let bad = |_| err(CKR_WRAPPED_KEY_INVALID);
        let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
        let n = match (self, pad) {
            (Kek::Lc(k), true) => k.unwrap_with_padding(wrapped, &mut out).map_err(bad)?.len(),
            (Kek::Lc(k), false) => k.unwrap(wrapped, &mut out).map_err(bad)?.len(),
            (Kek::Aes192(k), true) => {
                return k
                    .unwrap_with_padding_vec(wrapped)
                    .map(Zeroizing::new)
                    .map_err(|_| err(CKR_WRAPPED_KEY_INVALID))
            }
            (Kek::Aes192(k), false) => {
                return k
                    .unwrap_vec(wrapped)
                    .map(Zeroizing::new)
                    .map_err(|_| err(CKR_WRAPPED_KEY_INVALID))
            }
        };
        out.truncate(n);
        Ok(out)
    }
}

fn is_kwp(m: CK_MECHANISM_TYPE) -> bool {
    m == CKM_AES_KEY_WRAP_PAD || m == CKM_AES_KEY_WRAP_KWP
}

/// The bytes a wrap carries: a secret key's value, or a private key as PKCS#8.
fn payload(target: &Attrs) -> Result<Zeroizing<Vec<u8>>> {
    match target.ulong(CKA_CLASS) {
        Some(CKO_SECRET_KEY) => Ok(Zeroizing::new(
            target
                .bytes(CKA_VALUE)
                .ok_or_else(|| err(CKR_KEY_NOT_WRAPPABLE))?
                .to_vec(),
        )),
        Some(CKO_PRIVATE_KEY) => Key::from_attrs(target)?.private_pkcs8(),
        _ => Err(err(CKR_KEY_NOT_WRAPPABLE)),
    }
}

pub fn wrap(mech: &Mechanism, wrapping: &Arc<Key>, target: &Attrs) -> Result<Vec<u8>> {
    let data = payload(target)?;
    match mech.mech {
        CKM_AES_KEY_WRAP | CKM_AES_KEY_WRAP_PAD | CKM_AES_KEY_WRAP_KWP => {
            if !matches!(mech.param, MechParam::None) {
                return Err(Error::logged(
                    CKR_MECHANISM_PARAM_INVALID,
                    "AES key wrap takes the default IV only",
                ));
            }
            let k = kek(wrapping)?;
            let pad = is_kwp(mech.mech);
            if !pad && (data.len() % 8 != 0 || data.len() < 16) {
                return Err(Error::logged(
                    CKR_KEY_SIZE_RANGE,
                    "CKM_AES_KEY_WRAP needs a multiple of 8 bytes (use CKM_AES_KEY_WRAP_PAD)",
                ));
            }
            k.wrap(&data, pad)
        }
        CKM_DES3_ECB | CKM_DES3_CBC | CKM_DES3_CBC_PAD => {
            // A DES3 wrapping key encrypts the payload (ECB and CBC: whole 8-byte blocks).
            let mut op = super::cipher::encrypt_init(mech, wrapping).map_err(wrapping_code)?;
            op.oneshot(&data).map_err(|e| match e.rv() {
                CKR_DATA_LEN_RANGE => err(CKR_KEY_SIZE_RANGE),
                _ => e,
            })
        }
        CKM_RSA_PKCS_OAEP | CKM_RSA_PKCS => {
            if target.ulong(CKA_CLASS) != Some(CKO_SECRET_KEY) {
                return Err(err(CKR_KEY_NOT_WRAPPABLE));
            }
            let mut op = super::cipher::encrypt_init(mech, wrapping).map_err(wrapping_code)?;
            op.oneshot(&data)
        }
        _ => Err(err(CKR_MECHANISM_INVALID)),
    }
}

fn wrapping_code(e: Error) -> Error {
    match e.rv() {
        CKR_KEY_TYPE_INCONSISTENT => err(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
        _ => e,
    }
}

fn unwrapping_code(e: Error) -> Error {
    match e.rv() {
        CKR_KEY_TYPE_INCONSISTENT => err(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
        CKR_ENCRYPTED_DATA_INVALID | CKR_ENCRYPTED_DATA_LEN_RANGE => err(CKR_WRAPPED_KEY_INVALID),
        _ => e,
    }
}

pub fn unwrap(
    mech: &Mechanism,
    unwrapping: &Arc<Key>,
    wrapped: &[u8],
    template: &Attrs,
) -> Result<Attrs> {
    let data: Zeroizing<Vec<u8>> = match mech.mech {
        CKM_AES_KEY_WRAP | CKM_AES_KEY_WRAP_PAD | CKM_AES_KEY_WRAP_KWP => {
            let k = match &**unwrapping {
                Key::Secret {
                    key_type: CKK_AES, ..
                } => kek(unwrapping)?,
                _ => return Err(err(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT)),
            };
            let pad = is_kwp(mech.mech);
            if !pad && (!wrapped.len().is_multiple_of(8) || wrapped.len() < 24) {
                return Err(err(CKR_WRAPPED_KEY_LEN_RANGE));
            }
            k.unwrap(wrapped, pad)?
        }
        CKM_RSA_PKCS_OAEP | CKM_RSA_PKCS | CKM_DES3_ECB | CKM_DES3_CBC | CKM_DES3_CBC_PAD => {
            let mut op = super::cipher::decrypt_init(mech, unwrapping).map_err(unwrapping_code)?;
            Zeroizing::new(op.oneshot(wrapped).map_err(unwrapping_code)?)
        }
        _ => return Err(err(CKR_MECHANISM_INVALID)),
    };
    match template.ulong(CKA_CLASS) {
        Some(CKO_SECRET_KEY) => {
            let mut a = Attrs::new();
            let value = match template.ulong(CKA_VALUE_LEN) {
                Some(n) if (n as usize) < data.len() => data[..n as usize].to_vec(),
                Some(n) if n as usize > data.len() => return Err(err(CKR_WRAPPED_KEY_LEN_RANGE)),
                _ => data.to_vec(),
            };
            if template.ulong(CKA_KEY_TYPE).is_none() {
                return Err(err(CKR_TEMPLATE_INCOMPLETE));
            }
            a.set_ulong(CKA_VALUE_LEN, value.len() as CK_ULONG);
            a.insert(CKA_VALUE, value);
            Ok(a)
        }
        Some(CKO_PRIVATE_KEY) => private_from_pkcs8(&data, template.ulong(CKA_KEY_TYPE)),
        _ => Err(err(CKR_TEMPLATE_INCONSISTENT)),
    }
}

/// Decodes an unwrapped PKCS#8 private key into its attributes.
fn private_from_pkcs8(der_bytes: &[u8], want: Option<CK_KEY_TYPE>) -> Result<Attrs> {
    let (oid, params, inner) = der::read_pkcs8(der_bytes)?;
    let mut a = Attrs::new();
    let kt = match oid.as_str() {
        "1.2.840.113549.1.1.1" => {
            a = keys::rsa_private_attrs(&der::RsaParts::from_pkcs1(&inner)?);
            CKK_RSA
        }
        "1.2.840.10045.2.1" => {
            let curve = keys::nist_curve(params.as_deref().unwrap_or_default())
                .map_err(|_| err(CKR_WRAPPED_KEY_INVALID))?;
            let pair = EcdsaKeyPair::from_pkcs8(keys::ecdsa_alg(curve), der_bytes)
                .map_err(|_| err(CKR_WRAPPED_KEY_INVALID))?;
            let scalar: aws_lc_rs::encoding::EcPrivateKeyBin = pair
                .private_key()
                .as_be_bytes()
                .map_err(|_| err(CKR_GENERAL_ERROR))?;
            a.insert(CKA_EC_PARAMS, curve.params());
            a.insert(CKA_VALUE, scalar.as_ref().to_vec());
            CKK_EC
        }
        "1.3.101.112" => {
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der_bytes)
                .map_err(|_| err(CKR_WRAPPED_KEY_INVALID))?;
            let seed: aws_lc_rs::encoding::Curve25519SeedBin = pair
                .seed()
                .and_then(|s| s.as_be_bytes())
                .map_err(|_| err(CKR_GENERAL_ERROR))?;
            let _ = pair.public_key();
            a.insert(CKA_EC_PARAMS, Curve::Ed25519.params());
            a.insert(CKA_VALUE, seed.as_ref().to_vec());
            CKK_EC_EDWARDS
        }
        _ => {
            return Err(Error::logged(
                CKR_WRAPPED_KEY_INVALID,
                format!("unwrapped key of unknown algorithm {oid}"),
            ))
        }
    };
    if want.is_some_and(|w| w != kt) {
        return Err(err(CKR_TEMPLATE_INCONSISTENT));
    }
    a.set_ulong(CKA_KEY_TYPE, kt);
    Ok(a)
}

/// Length and type of a derived secret: CKA_VALUE_LEN from the template (at most what the
/// mechanism yields), else all of it; the key type from the template, else generic.
pub fn finish_derived(template: &Attrs, secret: &[u8]) -> Result<Attrs> {
    let mut a = Attrs::new();
    put_derived(&mut a, derived_size(template, secret)?, secret);
    Ok(a)
}

/// [`finish_derived`] into the new key's own attributes (its template filled in), without
/// a second attribute map to merge.
pub fn finish_derived_into(attrs: &mut Attrs, secret: &[u8]) -> Result<()> {
    let size = derived_size(attrs, secret)?;
    put_derived(attrs, size, secret);
    Ok(())
}

fn put_derived(a: &mut Attrs, (kt, len): (CK_KEY_TYPE, usize), secret: &[u8]) {
    a.set_ulong(CKA_KEY_TYPE, kt);
    a.set_ulong(CKA_VALUE_LEN, len as CK_ULONG);
    a.insert(CKA_VALUE, secret[..len].to_vec());
}

/// The key type and length a derived secret key takes from its template.
fn derived_size(template: &Attrs, secret: &[u8]) -> Result<(CK_KEY_TYPE, usize)> {
    let kt = template.ulong(CKA_KEY_TYPE).unwrap_or(CKK_GENERIC_SECRET);
    let len = match (template.ulong(CKA_VALUE_LEN), kt) {
        (Some(n), _) => n as usize,
        (None, CKK_AES) if secret.len() > 32 => 32,
        (None, _) => secret.len(),
    };
    if len == 0 || len > secret.len() || (kt == CKK_AES && ![16, 24, 32].contains(&len)) {
        return Err(Error::logged(
            CKR_TEMPLATE_INCONSISTENT,
            "derived key length does not fit",
        ));
    }
    Ok((kt, len))
}

fn secret_value(k: &Key) -> Result<&[u8]> {
    match k {
        Key::Secret { value, .. } => Ok(value),
        _ => Err(err(CKR_KEY_TYPE_INCONSISTENT)),
    }
}

/// The "encrypt data" derivations: `data` (non-empty whole blocks) encrypted with `m`.
fn encrypt_data(base: &Arc<Key>, m: Mechanism, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if data.is_empty() || !data.len().is_multiple_of(16) {
        return Err(Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            "encrypt-data derivation: the data must be whole cipher blocks",
        ));
    }
    let mut op = super::cipher::encrypt_init(&m, base)?;
    Ok(Zeroizing::new(op.oneshot(data)?))
}

/// C_DeriveKey: ECDH1 (`ecdh`) on NIST and Montgomery curves, and the simple secret-key derivations of
/// PKCS#11 §2.43 (concatenation, XOR, extraction) and §2.13 (AES ECB/CBC encrypt data).
/// `other` is the second key of CKM_CONCATENATE_BASE_AND_KEY.
pub fn derive(
    mech: &Mechanism,
    base: &Arc<Key>,
    other: Option<&Arc<Key>>,
    template: &Attrs,
) -> Result<Attrs> {
    let secret: Zeroizing<Vec<u8>> = match (mech.mech, &mech.param) {
        (
            CKM_ECDH1_DERIVE,
            MechParam::Ecdh1 {
                kdf,
                shared_data,
                public_data,
            },
        ) => super::ecdh::derive(base, *kdf, shared_data, public_data, template)?,
        (CKM_CONCATENATE_BASE_AND_KEY, MechParam::Key(_)) => {
            let other = other.ok_or_else(|| err(CKR_MECHANISM_PARAM_INVALID))?;
            Zeroizing::new([secret_value(base)?, secret_value(other)?].concat())
        }
        (CKM_CONCATENATE_BASE_AND_DATA, MechParam::Data(d)) => {
            Zeroizing::new([secret_value(base)?, d].concat())
        }
        (CKM_CONCATENATE_DATA_AND_BASE, MechParam::Data(d)) => {
            Zeroizing::new([d, secret_value(base)?].concat())
        }
        (CKM_XOR_BASE_AND_DATA, MechParam::Data(d)) => Zeroizing::new(
            secret_value(base)?
                .iter()
                .zip(d)
                .map(|(a, b)| a ^ b)
                .collect(),
        ),
        (CKM_EXTRACT_KEY_FROM_KEY, MechParam::Ulong(first_bit)) => {
            // Bits taken from the base value cyclically, starting at `first_bit` (§2.43.6).
            let v = secret_value(base)?;
            let want = template
                .ulong(CKA_VALUE_LEN)
                .ok_or_else(|| err(CKR_TEMPLATE_INCOMPLETE))? as usize;
            let total = v.len() * 8;
            if total == 0 || want == 0 || want > v.len() {
                return Err(err(CKR_TEMPLATE_INCONSISTENT));
            }
            let bit = |i: usize| (v[(i % total) / 8] >> (7 - (i % total) % 8)) & 1;
            let start = *first_bit as usize;
            Zeroizing::new(
                (0..want)
                    .map(|b| (0..8).fold(0u8, |acc, j| (acc << 1) | bit(start + b * 8 + j)))
                    .collect(),
            )
        }
        // The data a CK_KEY_DERIVATION_STRING_DATA / CK_AES_CBC_ENCRYPT_DATA_PARAMS points
        // to, whole blocks, encrypted under the base key.
        (CKM_AES_ECB_ENCRYPT_DATA, MechParam::Data(d)) => {
            encrypt_data(base, Mechanism::new(CKM_AES_ECB), d)?
        }
        (CKM_AES_CBC_ENCRYPT_DATA, MechParam::AesCbcData { iv, data }) => {
            let m = Mechanism::with(CKM_AES_CBC, MechParam::Bytes(iv.to_vec()));
            encrypt_data(base, m, data)?
        }
        (
            CKM_ECDH1_DERIVE
            | CKM_CONCATENATE_BASE_AND_KEY
            | CKM_CONCATENATE_BASE_AND_DATA
            | CKM_CONCATENATE_DATA_AND_BASE
            | CKM_XOR_BASE_AND_DATA
            | CKM_EXTRACT_KEY_FROM_KEY
            | CKM_AES_ECB_ENCRYPT_DATA
            | CKM_AES_CBC_ENCRYPT_DATA,
            _,
        ) => return Err(err(CKR_MECHANISM_PARAM_INVALID)),
        _ => return Err(err(CKR_MECHANISM_INVALID)),
    };
    finish_derived(template, &secret)
}
