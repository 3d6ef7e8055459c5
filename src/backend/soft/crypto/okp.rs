//! Edwards and Montgomery curve keys (RFC 8032 EdDSA, RFC 7748 X25519/X448): parsing,
//! generation, CKM_EDDSA in each scheme of PKCS#11 3.0's CKM_EDDSA table, and the
//! Diffie-Hellman function behind CKM_ECDH1_DERIVE on CKK_EC_MONTGOMERY keys.
//!
//! Ed25519 and X25519 are aws-lc's (aws-lc-rs, and `ed25519_raw` for Ed25519ctx/ph);
//! Ed448 and X448, which aws-lc lacks, are RustCrypto's ed448-goldilocks and x448.

use super::der::Curve;
use super::ed25519_raw;
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::MechParam;
use aws_lc_rs::agreement;
use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair as _};
use cryptoki_sys::*;
use ed448_goldilocks::shake::{
    digest::{ExtendableOutput, Update, XofReader},
    Shake256,
};
use ed448_goldilocks::{PreHash, Signature as Ed448Sig, SigningKey as Ed448Key, VerifyingKey};
use zeroize::Zeroizing;

/// An EdDSA private key.
pub enum EdKey {
    Ed25519(Ed25519KeyPair),
    Ed448(Box<Ed448Key>),
}

/// The scheme a CKM_EDDSA mechanism asks for: no parameter is pure EdDSA (Ed448 with an
/// empty context), a `CK_EDDSA_PARAMS` selects ctx (phFlag false) or ph with its context.
pub enum EdScheme {
    Pure,
    Context(Vec<u8>),
    Prehash(Vec<u8>),
}

impl EdScheme {
    pub fn of(param: &MechParam) -> Result<EdScheme> {
        Ok(match param {
            MechParam::None => EdScheme::Pure,
            MechParam::Eddsa {
                prehash: false,
                context,
            } => EdScheme::Context(context.clone()),
            MechParam::Eddsa {
                prehash: true,
                context,
            } => EdScheme::Prehash(context.clone()),
            _ => return Err(err(CKR_MECHANISM_PARAM_INVALID)),
        })
    }

    /// RFC 8032 §5.1 / §5.2: a context is at most 255 bytes, and Ed25519ctx's is not empty
    /// (RFC 8032 §8.3: without a context, plain Ed25519 is the scheme to use). Checked at
    /// C_SignInit / C_VerifyInit, so that a bad parameter never starts an operation.
    pub fn check(&self, curve: Curve) -> Result<()> {
        let (name, ctx) = match self {
            EdScheme::Pure => return Ok(()),
            EdScheme::Context(c) => ("ctx", c),
            EdScheme::Prehash(c) => ("ph", c),
        };
        if ctx.len() > 255 || (curve == Curve::Ed25519 && name == "ctx" && ctx.is_empty()) {
            return Err(Error::logged(
                CKR_MECHANISM_PARAM_INVALID,
                format!(
                    "CKM_EDDSA ({curve:?}{name}): a context of {} bytes (Ed25519ctx takes \
                     1..255, the others 0..255; pure Ed25519 is CKM_EDDSA without a parameter)",
                    ctx.len()
                ),
            ));
        }
        Ok(())
    }
}

fn bad_value(what: &str) -> Error {
    Error::logged(CKR_ATTRIBUTE_VALUE_INVALID, what.to_string())
}

/// The curve of an Edwards or Montgomery key: CKA_EC_PARAMS when present, else the private
/// value's length (RFC 8032 / RFC 7748 sizes differ per curve).
pub fn curve_of(params: Option<&[u8]>, value_len: usize, key_type: CK_KEY_TYPE) -> Result<Curve> {
    let curve = match params.filter(|p| !p.is_empty()) {
        Some(p) => Curve::from_params(p)?,
        None => match (key_type, value_len) {
            (CKK_EC_EDWARDS, 57) => Curve::Ed448,
            (CKK_EC_EDWARDS, _) => Curve::Ed25519,
            (_, 56) => Curve::X448,
            _ => Curve::X25519,
        },
    };
    if curve.key_type() != key_type {
        return Err(Error::logged(
            CKR_ATTRIBUTE_VALUE_INVALID,
            format!("CKA_EC_PARAMS names {curve:?}, not a curve of key type 0x{key_type:x}"),
        ));
    }
    Ok(curve)
}

impl EdKey {
    /// The private key from its RFC 8032 private value (32 or 57 bytes).
    pub fn from_value(curve: Curve, value: &[u8]) -> Result<EdKey> {
        if value.len() != curve.field_len() {
            return Err(bad_value(&format!(
                "{curve:?} private value must be {} bytes, not {}",
                curve.field_len(),
                value.len()
            )));
        }
        match curve {
            Curve::Ed25519 => Ed25519KeyPair::from_seed_unchecked(value)
                .map(EdKey::Ed25519)
                .map_err(|_| bad_value("Ed25519 private value rejected")),
            _ => Ed448Key::try_from(value)
                .map(|k| EdKey::Ed448(Box::new(k)))
                .map_err(|_| bad_value("Ed448 private value rejected")),
        }
    }

    pub fn curve(&self) -> Curve {
        match self {
            EdKey::Ed25519(_) => Curve::Ed25519,
            EdKey::Ed448(_) => Curve::Ed448,
        }
    }

    pub fn public(&self) -> Vec<u8> {
        match self {
            EdKey::Ed25519(p) => p.public_key().as_ref().to_vec(),
            EdKey::Ed448(k) => k.verifying_key().to_bytes().to_vec(),
        }
    }

    pub fn sign(&self, scheme: &EdScheme, msg: &[u8]) -> Result<Vec<u8>> {
        match (self, scheme) {
            (EdKey::Ed25519(p), EdScheme::Pure) => Ok(p.sign(msg).as_ref().to_vec()),
            (EdKey::Ed25519(p), EdScheme::Context(c) | EdScheme::Prehash(c)) => {
                let seed = ed25519_seed(p)?;
                let public: [u8; 32] = p
                    .public_key()
                    .as_ref()
                    .try_into()
                    .map_err(|_| err(CKR_GENERAL_ERROR))?;
                let ph = matches!(scheme, EdScheme::Prehash(_));
                ed25519_raw::sign(&seed, &public, ph, c, msg)
            }
            (EdKey::Ed448(k), EdScheme::Pure) => Ok(k.sign_raw(msg).to_bytes().to_vec()),
            (EdKey::Ed448(k), EdScheme::Context(c)) => k
                .sign_ctx(c, msg)
                .map(|s| s.to_bytes().to_vec())
                .map_err(|_| err(CKR_FUNCTION_FAILED)),
            (EdKey::Ed448(k), EdScheme::Prehash(c)) => k
                .sign_prehashed(Some(c), Shake64::of(msg))
                .map(|s| s.to_bytes().to_vec())
                .map_err(|_| err(CKR_FUNCTION_FAILED)),
        }
    }
}

fn ed25519_seed(p: &Ed25519KeyPair) -> Result<Zeroizing<[u8; 32]>> {
    let seed: aws_lc_rs::encoding::Curve25519SeedBin = p
        .seed()
        .and_then(|s| s.as_be_bytes())
        .map_err(|_| err(CKR_GENERAL_ERROR))?;
    Ok(Zeroizing::new(
        seed.as_ref()
            .try_into()
            .map_err(|_| err(CKR_GENERAL_ERROR))?,
    ))
}

/// Ed448ph's prehash: SHAKE256 of the message, 64 bytes (RFC 8032 §5.2).
struct Shake64([u8; 64]);

impl Shake64 {
    fn of(msg: &[u8]) -> Shake64 {
        let mut h = Shake256::default();
        h.update(msg);
        let mut out = [0u8; 64];
        h.finalize_xof().read(&mut out);
        Shake64(out)
    }
}

impl PreHash for Shake64 {
    fn fill_bytes(&mut self, out: &mut [u8]) {
        out.copy_from_slice(&self.0[..out.len()]);
    }
}

/// Checks an EdDSA signature made with the key whose public point is `point`.
pub fn verify(curve: Curve, point: &[u8], scheme: &EdScheme, msg: &[u8], sig: &[u8]) -> Result<()> {
    if sig.len() != 2 * curve.field_len() {
        return Err(err(CKR_SIGNATURE_LEN_RANGE));
    }
    if curve == Curve::Ed25519 {
        let public: &[u8; 32] = point
            .try_into()
            .map_err(|_| err(CKR_KEY_TYPE_INCONSISTENT))?;
        let sig: &[u8; 64] = sig.try_into().map_err(|_| err(CKR_SIGNATURE_LEN_RANGE))?;
        return match scheme {
            EdScheme::Pure => signature::UnparsedPublicKey::new(&signature::ED25519, point)
                .verify(msg, sig)
                .map_err(|_| err(CKR_SIGNATURE_INVALID)),
            EdScheme::Context(c) => ed25519_raw::verify(public, false, c, msg, sig),
            EdScheme::Prehash(c) => ed25519_raw::verify(public, true, c, msg, sig),
        };
    }
    let public: &[u8; 57] = point
        .try_into()
        .map_err(|_| err(CKR_KEY_TYPE_INCONSISTENT))?;
    let key = VerifyingKey::from_bytes(public).map_err(|_| err(CKR_KEY_TYPE_INCONSISTENT))?;
    let sig = Ed448Sig::try_from(sig).map_err(|_| err(CKR_SIGNATURE_INVALID))?;
    match scheme {
        EdScheme::Pure => key.verify_raw(&sig, msg),
        EdScheme::Context(c) => key.verify_ctx(&sig, c, msg),
        EdScheme::Prehash(c) => key.verify_prehashed(&sig, Some(c), Shake64::of(msg)),
    }
    .map_err(|_| err(CKR_SIGNATURE_INVALID))
}

/// A new private value and public point on an Edwards or Montgomery curve.
pub fn generate(curve: Curve) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    let mut value = Zeroizing::new(vec![0u8; curve.field_len()]);
    super::random(&mut value)?;
    let public = match curve.key_type() {
        CKK_EC_EDWARDS => EdKey::from_value(curve, &value)?.public(),
        _ => x_public(curve, &value)?,
    };
    Ok((value, public))
}

/// The public value (u-coordinate) of an X25519 / X448 private value.
pub fn x_public(curve: Curve, scalar: &[u8]) -> Result<Vec<u8>> {
    let bad = || bad_value("the Montgomery private value has the wrong length");
    match curve {
        Curve::X25519 => agreement::PrivateKey::from_private_key(&agreement::X25519, scalar)
            .map_err(|_| bad())?
            .compute_public_key()
            .map(|p| p.as_ref().to_vec())
            .map_err(|_| err(CKR_GENERAL_ERROR)),
        _ => {
            let k: [u8; 56] = scalar.try_into().map_err(|_| bad())?;
            let mut base = [0u8; 56];
            base[0] = 5; // RFC 7748 §4.2: the base point u = 5
            x448::x448(k, base)
                .map(|p| p.to_vec())
                .ok_or_else(|| err(CKR_GENERAL_ERROR))
        }
    }
}

/// X25519 / X448 of a private value and a peer's public value (RFC 7748); a peer value of
/// small order (an all-zero result) is refused.
pub fn x_agree(curve: Curve, scalar: &[u8], peer: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let bad_peer = || {
        Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            format!("ECDH1: the peer's {curve:?} public value is invalid or of small order"),
        )
    };
    match curve {
        Curve::X25519 => {
            let me = agreement::PrivateKey::from_private_key(&agreement::X25519, scalar)
                .map_err(|_| err(CKR_KEY_TYPE_INCONSISTENT))?;
            agreement::agree(
                &me,
                agreement::UnparsedPublicKey::new(&agreement::X25519, peer),
                err(CKR_MECHANISM_PARAM_INVALID),
                |s| Ok(Zeroizing::new(s.to_vec())),
            )
        }
        _ => {
            let k: [u8; 56] = scalar
                .try_into()
                .map_err(|_| err(CKR_KEY_TYPE_INCONSISTENT))?;
            let p: [u8; 56] = peer.try_into().map_err(|_| bad_peer())?;
            x448::x448(k, p)
                .map(|s| Zeroizing::new(s.to_vec()))
                .ok_or_else(bad_peer)
        }
    }
}
