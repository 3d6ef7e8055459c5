//! Signatures, MACs and digests: ECDSA (raw and hash-then-sign), EdDSA, RSA PKCS#1 v1.5
//! and PSS, HMAC, SHA digests.

use super::der::{self, Curve};
use super::keys::Key;
use super::okp::EdScheme;
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{is_rsa_pss, MechParam, Mechanism, RSA_SIGN};
use crate::core::op::{Signer, Verifier};
use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::{cmac, hmac, signature};
use cryptoki_sys::*;
use std::sync::Arc;

pub fn digest_alg(hash: CK_MECHANISM_TYPE) -> Option<&'static digest::Algorithm> {
    Some(match hash {
        CKM_SHA_1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        CKM_SHA224 => &digest::SHA224,
        CKM_SHA256 => &digest::SHA256,
        CKM_SHA384 => &digest::SHA384,
        CKM_SHA512 => &digest::SHA512,
        _ => return None,
    })
}

/// The hash a combined mechanism applies first (`None` for raw mechanisms).
fn prehash(mech: CK_MECHANISM_TYPE) -> Option<CK_MECHANISM_TYPE> {
    Some(match mech {
        CKM_ECDSA_SHA1 | CKM_SHA1_RSA_PKCS | CKM_SHA1_RSA_PKCS_PSS => CKM_SHA_1,
        CKM_ECDSA_SHA224 | CKM_SHA224_RSA_PKCS | CKM_SHA224_RSA_PKCS_PSS => CKM_SHA224,
        CKM_ECDSA_SHA256 | CKM_SHA256_RSA_PKCS | CKM_SHA256_RSA_PKCS_PSS => CKM_SHA256,
        CKM_ECDSA_SHA384 | CKM_SHA384_RSA_PKCS | CKM_SHA384_RSA_PKCS_PSS => CKM_SHA384,
        CKM_ECDSA_SHA512 | CKM_SHA512_RSA_PKCS | CKM_SHA512_RSA_PKCS_PSS => CKM_SHA512,
        _ => return None,
    })
}

/// Collects the message: hashing it as it comes for hash-then-sign mechanisms, buffering
/// it for raw ones (whose input is a hash or DigestInfo, or for EdDSA the message).
enum Input {
    Hashing(digest::Context),
    Raw(Vec<u8>),
}

impl Input {
    fn new(mech: CK_MECHANISM_TYPE) -> Input {
        match prehash(mech).and_then(digest_alg) {
            Some(alg) => Input::Hashing(digest::Context::new(alg)),
            None => Input::Raw(Vec::new()),
        }
    }
    fn update(&mut self, data: &[u8]) {
        match self {
            Input::Hashing(c) => c.update(data),
            Input::Raw(b) => b.extend_from_slice(data),
        }
    }
    /// The hash (for hash-then-sign) or the raw input.
    fn take(&mut self) -> Vec<u8> {
        match std::mem::replace(self, Input::Raw(Vec::new())) {
            Input::Hashing(c) => c.finish().as_ref().to_vec(),
            Input::Raw(b) => b,
        }
    }
}

/// ECDSA's input as the curve needs it: a hash shorter than the group order is left-padded,
/// a longer one keeps its leftmost bytes (SEC 1 §4.1.3; exact for P-256 and P-384 whose
/// orders are whole bytes long), then presented as the curve's native hash. P-521's
/// native hash (SHA-512) is shorter than its order: an input of up to 64 bytes is the
/// same number left-padded; a longer one would need a cut inside a byte and is refused.
fn ecdsa_digest(curve: Curve, h: &[u8]) -> Result<Digest> {
    let (n, alg) = match curve {
        Curve::P384 => (48, &digest::SHA384),
        Curve::P521 => (64, &digest::SHA512),
        _ => (32, &digest::SHA256),
    };
    if curve == Curve::P521 && h.len() > n {
        return Err(Error::logged(
            CKR_DATA_LEN_RANGE,
            "CKM_ECDSA on P-521 signs at most 64 bytes (a hash)",
        ));
    }
    let mut v = vec![0u8; n.saturating_sub(h.len())];
    v.extend_from_slice(&h[..h.len().min(n)]);
    Digest::import_less_safe(&v, alg).map_err(|_| err(CKR_GENERAL_ERROR))
}

/// The RSA signature scheme of a mechanism and its parameters: (hash of the signed
/// digest, PSS?). Checks PSS parameters against what aws-lc-rs can do (MGF1 with the same
/// hash, salt as long as the hash).
/// The PSS salt length of a mechanism (`None` for PKCS#1 v1.5), checked against what
/// aws-lc can do (MGF1 with the signature's hash) and the modulus (`em_len` bytes).
fn rsa_scheme(
    mech: &Mechanism,
    data_hash: Option<CK_MECHANISM_TYPE>,
    em_len: usize,
) -> Result<Option<u16>> {
    if is_rsa_pss(mech.mech) {
        let Some(p) = mech.pss() else {
            return Err(super::param_invalid("PSS needs CK_RSA_PKCS_PSS_PARAMS"));
        };
        if let Some(h) = data_hash {
            if h != p.hash {
                return Err(super::param_invalid(
                    "PSS hashAlg differs from the mechanism's hash",
                ));
            }
        }
        let (want_mgf, hlen) = match p.hash {
            CKM_SHA256 => (CKG_MGF1_SHA256, 32usize),
            CKM_SHA384 => (CKG_MGF1_SHA384, 48),
            CKM_SHA512 => (CKG_MGF1_SHA512, 64),
            _ => return Err(super::param_invalid("PSS supports SHA-256/384/512")),
        };
        if p.mgf != want_mgf {
            return Err(super::param_invalid(
                "PSS needs MGF1 with the same hash as the signature",
            ));
        }
        // RFC 8017 §9.1.1: emLen >= hLen + sLen + 2.
        if p.salt_len as usize + hlen + 2 > em_len {
            return Err(super::param_invalid("PSS salt too long for this modulus"));
        }
        return Ok(Some(p.salt_len as u16));
    }
    Ok(None)
}

/// A PSS encoding or verification parameter set with a salt length other than the hash
/// length. aws-lc-rs takes them as `&'static`; each distinct (hash, salt) is made once and
/// kept for the life of the process (at most a few hundred small values).
fn custom_salt<T: Send + Sync + 'static>(
    cache: &'static std::sync::Mutex<
        std::collections::HashMap<(CK_MECHANISM_TYPE, u16), &'static T>,
    >,
    key: (CK_MECHANISM_TYPE, u16),
    make: impl FnOnce() -> T,
) -> &'static T {
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    c.entry(key).or_insert_with(|| Box::leak(Box::new(make())))
}

type SaltCache<T> =
    std::sync::Mutex<std::collections::HashMap<(CK_MECHANISM_TYPE, u16), &'static T>>;
static ENCODINGS: std::sync::LazyLock<SaltCache<signature::RsaSignatureEncoding>> =
    std::sync::LazyLock::new(Default::default);
static PARAMS: std::sync::LazyLock<SaltCache<signature::RsaParameters>> =
    std::sync::LazyLock::new(Default::default);

pub(super) fn hash_len(hash: CK_MECHANISM_TYPE) -> usize {
    digest_alg(hash).map(|a| a.output_len()).unwrap_or(0)
}

fn rsa_encoding(
    hash: CK_MECHANISM_TYPE,
    salt: Option<u16>,
) -> Result<&'static dyn signature::RsaEncoding> {
    if let Some(s) = salt.filter(|s| *s as usize != hash_len(hash)) {
        let base = match hash {
            CKM_SHA256 => signature::RSA_PSS_SHA256,
            CKM_SHA384 => signature::RSA_PSS_SHA384,
            CKM_SHA512 => signature::RSA_PSS_SHA512,
            _ => return Err(err(CKR_MECHANISM_PARAM_INVALID)),
        };
        let enc: &'static signature::RsaSignatureEncoding =
            custom_salt(&*ENCODINGS, (hash, s), || {
                base.with_pss_salt_length(signature::RsaPssSaltLength::Custom(s))
            });
        return Ok(enc);
    }
    let pss = salt.is_some();
    Ok(match (hash, pss) {
        (CKM_SHA256, false) => &signature::RSA_PKCS1_SHA256,
        (CKM_SHA384, false) => &signature::RSA_PKCS1_SHA384,
        (CKM_SHA512, false) => &signature::RSA_PKCS1_SHA512,
        (CKM_SHA256, true) => &signature::RSA_PSS_SHA256,
        (CKM_SHA384, true) => &signature::RSA_PSS_SHA384,
        (CKM_SHA512, true) => &signature::RSA_PSS_SHA512,
        _ => {
            return Err(Error::logged(
                CKR_DATA_INVALID,
                "RSA signing supports SHA-256/384/512 digests only",
            ))
        }
    })
}

fn rsa_params(
    hash: CK_MECHANISM_TYPE,
    salt: Option<u16>,
) -> Result<&'static signature::RsaParameters> {
    if let Some(s) = salt.filter(|s| *s as usize != hash_len(hash)) {
        let base = match hash {
            CKM_SHA256 => signature::RSA_PSS_2048_8192_SHA256,
            CKM_SHA384 => signature::RSA_PSS_2048_8192_SHA384,
            CKM_SHA512 => signature::RSA_PSS_2048_8192_SHA512,
            _ => return Err(err(CKR_MECHANISM_PARAM_INVALID)),
        };
        return Ok(custom_salt(&*PARAMS, (hash, s), || {
            base.with_pss_salt_length(signature::RsaPssSaltLength::Custom(s))
        }));
    }
    let pss = salt.is_some();
    Ok(match (hash, pss) {
        (CKM_SHA_1, false) => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        (CKM_SHA256, false) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (CKM_SHA384, false) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (CKM_SHA512, false) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (CKM_SHA256, true) => &signature::RSA_PSS_2048_8192_SHA256,
        (CKM_SHA384, true) => &signature::RSA_PSS_2048_8192_SHA384,
        (CKM_SHA512, true) => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return Err(err(CKR_DATA_INVALID)),
    })
}

/// For RSA: the hash algorithm and digest to sign, from the (possibly hashed) input.
fn rsa_digest(mech: &Mechanism, input: &[u8]) -> Result<(CK_MECHANISM_TYPE, Digest)> {
    let (hash, bytes) = match (prehash(mech.mech), mech.mech, &mech.param) {
        (Some(h), _, _) => (h, input),
        (None, CKM_RSA_PKCS, _) => der::split_digest_info(input).ok_or_else(|| {
            Error::logged(
                CKR_DATA_INVALID,
                "CKM_RSA_PKCS signs a DigestInfo of SHA-1/224/256/384/512",
            )
        })?,
        (None, _, MechParam::Pss(p)) => (p.hash, input),
        _ => return Err(err(CKR_MECHANISM_INVALID)),
    };
    let alg = digest_alg(hash).ok_or_else(|| err(CKR_MECHANISM_PARAM_INVALID))?;
    if bytes.len() != alg.output_len() {
        return Err(Error::logged(
            CKR_DATA_LEN_RANGE,
            "input is not a hash of the expected length",
        ));
    }
    Ok((
        hash,
        Digest::import_less_safe(bytes, alg).map_err(|_| err(CKR_DATA_LEN_RANGE))?,
    ))
}

/// A DigestInfo that aws-lc-rs signs directly (SHA-256/384/512).
fn fast_digest_info(input: &[u8]) -> bool {
    matches!(
        der::split_digest_info(input),
        Some((CKM_SHA256 | CKM_SHA384 | CKM_SHA512, _))
    )
}

// The HMAC key is large, but a Scheme only ever lives inside a boxed operation.
#[allow(clippy::large_enum_variant)]
enum Scheme {
    Ecdsa,
    Eddsa(EdScheme),
    /// `pss` is the PSS salt length, `None` for PKCS#1 v1.5.
    Rsa {
        pss: Option<u16>,
    },
    Hmac {
        key: hmac::Key,
        len: usize,
    },
    Cmac {
        key: cmac::Key,
        len: usize,
    },
}

/// A signature or MAC in progress.
pub struct Sign {
    mech: Mechanism,
    key: Arc<Key>,
    scheme: Scheme,
    input: Input,
}

fn hmac_of(mech: &Mechanism) -> Option<(hmac::Algorithm, usize, bool)> {
    let (alg, full) = match mech.mech {
        CKM_SHA_1_HMAC | CKM_SHA_1_HMAC_GENERAL => (hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, 20),
        CKM_SHA224_HMAC | CKM_SHA224_HMAC_GENERAL => (hmac::HMAC_SHA224, 28),
        CKM_SHA256_HMAC | CKM_SHA256_HMAC_GENERAL => (hmac::HMAC_SHA256, 32),
        CKM_SHA384_HMAC | CKM_SHA384_HMAC_GENERAL => (hmac::HMAC_SHA384, 48),
        CKM_SHA512_HMAC | CKM_SHA512_HMAC_GENERAL => (hmac::HMAC_SHA512, 64),
        _ => return None,
    };
    let general = matches!(
        mech.mech,
        CKM_SHA_1_HMAC_GENERAL
            | CKM_SHA224_HMAC_GENERAL
            | CKM_SHA256_HMAC_GENERAL
            | CKM_SHA384_HMAC_GENERAL
            | CKM_SHA512_HMAC_GENERAL
    );
    Some((alg, full, general))
}

fn scheme(mech: &Mechanism, key: &Key, signing: bool) -> Result<Scheme> {
    if matches!(mech.mech, CKM_AES_CMAC | CKM_AES_CMAC_GENERAL) {
        let Key::Secret {
            value,
            key_type: CKK_AES,
        } = key
        else {
            return Err(err(CKR_KEY_TYPE_INCONSISTENT));
        };
        let alg = match value.len() {
            16 => cmac::AES_128,
            24 => cmac::AES_192,
            32 => cmac::AES_256,
            _ => return Err(err(CKR_KEY_SIZE_RANGE)),
        };
        let len = match (mech.mech, &mech.param) {
            (CKM_AES_CMAC, MechParam::None) => 16,
            (CKM_AES_CMAC_GENERAL, MechParam::Ulong(n)) if (1..=16).contains(n) => *n as usize,
            _ => return Err(err(CKR_MECHANISM_PARAM_INVALID)),
        };
        return Ok(Scheme::Cmac {
            key: cmac::Key::new(alg, value).map_err(|_| err(CKR_KEY_SIZE_RANGE))?,
            len,
        });
    }
    if let Some((alg, full, general)) = hmac_of(mech) {
        let Key::Secret { value, key_type } = key else {
            return Err(err(CKR_KEY_TYPE_INCONSISTENT));
        };
        if !matches!(
            *key_type,
            CKK_GENERIC_SECRET
                | CKK_SHA_1_HMAC
                | CKK_SHA224_HMAC
                | CKK_SHA256_HMAC
                | CKK_SHA384_HMAC
                | CKK_SHA512_HMAC
        ) {
            return Err(err(CKR_KEY_TYPE_INCONSISTENT));
        }
        let len = match (general, &mech.param) {
            (false, _) => full,
            (true, MechParam::Ulong(n)) if (1..=full as CK_ULONG).contains(n) => *n as usize,
            _ => return Err(err(CKR_MECHANISM_PARAM_INVALID)),
        };
        return Ok(Scheme::Hmac {
            key: hmac::Key::new(alg, value),
            len,
        });
    }
    match mech.mech {
        CKM_ECDSA | CKM_ECDSA_SHA1 | CKM_ECDSA_SHA224 | CKM_ECDSA_SHA256 | CKM_ECDSA_SHA384
        | CKM_ECDSA_SHA512 => match (key, signing) {
            (Key::EcPrivate { .. }, true) | (Key::EcPublic { .. }, false) => Ok(Scheme::Ecdsa),
            _ => Err(err(CKR_KEY_TYPE_INCONSISTENT)),
        },
        CKM_EDDSA => match (key, signing) {
            (Key::EdPrivate(k), true) => {
                let s = EdScheme::of(&mech.param)?;
                s.check(k.curve())?;
                Ok(Scheme::Eddsa(s))
            }
            (Key::EdPublic { curve, .. }, false) => {
                let s = EdScheme::of(&mech.param)?;
                s.check(*curve)?;
                Ok(Scheme::Eddsa(s))
            }
            _ => Err(err(CKR_KEY_TYPE_INCONSISTENT)),
        },
        m if RSA_SIGN.contains(&m) => {
            match (key, signing) {
                (Key::RsaPrivate { .. }, true) | (Key::RsaPublic { .. }, false) => {}
                _ => return Err(err(CKR_KEY_TYPE_INCONSISTENT)),
            }
            if signing && matches!(prehash(mech.mech), Some(CKM_SHA_1 | CKM_SHA224)) {
                return Err(Error::logged(
                    CKR_MECHANISM_INVALID,
                    "RSA signing with SHA-1/SHA-224 is not offered",
                ));
            }
            Ok(Scheme::Rsa {
                pss: rsa_scheme(mech, prehash(mech.mech), key.rsa_len().unwrap_or(0))?,
            })
        }
        _ => Err(err(CKR_MECHANISM_INVALID)),
    }
}

pub fn sign_init(mech: &Mechanism, key: &Arc<Key>) -> Result<Box<dyn Signer>> {
    let scheme = scheme(mech, key, true)?;
    Ok(Box::new(Sign {
        mech: mech.clone(),
        key: key.clone(),
        input: Input::new(mech.mech),
        scheme,
    }))
}

impl Signer for Sign {
    fn output_len(&self) -> usize {
        match (&self.scheme, &*self.key) {
            (Scheme::Hmac { len, .. } | Scheme::Cmac { len, .. }, _) => *len,
            (Scheme::Ecdsa, Key::EcPrivate { curve, .. }) => 2 * curve.field_len(),
            (Scheme::Eddsa(_), Key::EdPrivate(k)) => 2 * k.curve().field_len(),
            (Scheme::Rsa { .. }, k) => k.rsa_len().unwrap_or(0),
            _ => 0,
        }
    }

    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.input.update(data);
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<u8>> {
        let input = self.input.take();
        match (&self.scheme, &*self.key) {
            (Scheme::Hmac { key, len }, _) => Ok(hmac::sign(key, &input).as_ref()[..*len].to_vec()),
            (Scheme::Cmac { key, len }, _) => Ok(cmac::sign(key, &input)
                .map_err(|_| err(CKR_FUNCTION_FAILED))?
                .as_ref()[..*len]
                .to_vec()),
            (Scheme::Ecdsa, Key::EcPrivate { curve, pair, .. }) => {
                let d = ecdsa_digest(*curve, &input)?;
                Ok(pair
                    .sign_digest(&d)
                    .map_err(|_| err(CKR_FUNCTION_FAILED))?
                    .as_ref()
                    .to_vec())
            }
            (Scheme::Eddsa(scheme), Key::EdPrivate(k)) => k.sign(scheme, &input),
            (Scheme::Rsa { pss: None }, Key::RsaPrivate { parts, .. })
                if self.mech.mech == CKM_RSA_PKCS && !fast_digest_info(&input) =>
            {
                // Arbitrary data (or a SHA-1/224 DigestInfo): the raw PKCS#1 operation.
                super::rsa_raw::rsa_pkcs1_sign_raw(&parts.to_pkcs1()?, &input)
            }
            (
                Scheme::Rsa { pss },
                Key::RsaPrivate {
                    pair: None, parts, ..
                },
            ) => {
                // Under 2048 bits: aws-lc's own RSA (rsa_raw.rs).
                let (hash, d) = rsa_digest(&self.mech, &input)?;
                super::rsa_raw::sign_digest(&parts.to_pkcs1()?, hash, d.as_ref(), *pss)
            }
            (
                Scheme::Rsa { pss },
                Key::RsaPrivate {
                    pair: Some(pair), ..
                },
            ) => {
                let (hash, d) = rsa_digest(&self.mech, &input)?;
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign_digest(rsa_encoding(hash, *pss)?, &d, &mut sig)
                    .map_err(|_| err(CKR_FUNCTION_FAILED))?;
                Ok(sig)
            }
            _ => Err(err(CKR_KEY_TYPE_INCONSISTENT)),
        }
    }

    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        // HMAC over one buffer without a streaming context.
        if let Scheme::Hmac { key, len } = &self.scheme {
            return Ok(hmac::sign(key, data).as_ref()[..*len].to_vec());
        }
        self.input.update(data);
        self.finish()
    }
}

impl Sign {
    /// The MAC of `input`, truncated to the mechanism's length.
    fn finish_mac(&self, input: &[u8]) -> Result<Vec<u8>> {
        match &self.scheme {
            Scheme::Hmac { key, len } => Ok(hmac::sign(key, input).as_ref()[..*len].to_vec()),
            Scheme::Cmac { key, len } => Ok(cmac::sign(key, input)
                .map_err(|_| err(CKR_FUNCTION_FAILED))?
                .as_ref()[..*len]
                .to_vec()),
            _ => Err(err(CKR_GENERAL_ERROR)),
        }
    }
}

/// A verification in progress.
pub struct Verify(Sign);

pub fn verify_init(mech: &Mechanism, key: &Arc<Key>) -> Result<Box<dyn Verifier>> {
    let scheme = scheme(mech, key, false)?;
    Ok(Box::new(Verify(Sign {
        mech: mech.clone(),
        key: key.clone(),
        input: Input::new(mech.mech),
        scheme,
    })))
}

impl Verifier for Verify {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.0.input.update(data);
        Ok(())
    }

    fn finish(&mut self, sig: &[u8]) -> Result<()> {
        let s = &mut self.0;
        let input = s.input.take();
        let bad = |_| err(CKR_SIGNATURE_INVALID);
        match (&s.scheme, &*s.key) {
            (Scheme::Hmac { .. } | Scheme::Cmac { .. }, _) => {
                let len = s.output_len();
                if sig.len() != len {
                    return Err(err(CKR_SIGNATURE_LEN_RANGE));
                }
                let full = s.finish_mac(&input)?;
                // Constant-time comparison of the (possibly truncated) tag.
                if aws_lc_rs::constant_time::verify_slices_are_equal(&full, sig).is_ok() {
                    Ok(())
                } else {
                    Err(err(CKR_SIGNATURE_INVALID))
                }
            }
            (Scheme::Ecdsa, Key::EcPublic { curve, point }) => {
                if sig.len() != 2 * curve.field_len() {
                    return Err(err(CKR_SIGNATURE_LEN_RANGE));
                }
                let alg = match curve {
                    Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
                    Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED,
                    _ => &signature::ECDSA_P256_SHA256_FIXED,
                };
                let d = ecdsa_digest(*curve, &input)?;
                signature::UnparsedPublicKey::new(alg, point)
                    .verify_digest(&d, sig)
                    .map_err(bad)
            }
            (Scheme::Eddsa(scheme), Key::EdPublic { curve, point }) => {
                super::okp::verify(*curve, point, scheme, &input, sig)
            }
            (Scheme::Rsa { pss }, Key::RsaPublic { n, pkcs1, .. }) => {
                if sig.len() != n.len() {
                    return Err(err(CKR_SIGNATURE_LEN_RANGE));
                }
                if s.mech.mech == CKM_RSA_PKCS {
                    // Recover and compare: covers DigestInfo and arbitrary data alike.
                    let recovered = super::rsa_raw::rsa_pkcs1_recover_raw(pkcs1, sig)?;
                    return match recovered {
                        Some(r)
                            if aws_lc_rs::constant_time::verify_slices_are_equal(&r, &input)
                                .is_ok() =>
                        {
                            Ok(())
                        }
                        _ => Err(err(CKR_SIGNATURE_INVALID)),
                    };
                }
                let (hash, d) = rsa_digest(&s.mech, &input)?;
                if super::rsa_raw::legacy(n.len()) {
                    return match super::rsa_raw::verify_digest(pkcs1, hash, d.as_ref(), *pss, sig)?
                    {
                        true => Ok(()),
                        false => Err(err(CKR_SIGNATURE_INVALID)),
                    };
                }
                signature::UnparsedPublicKey::new(rsa_params(hash, *pss)?, pkcs1)
                    .verify_digest(&d, sig)
                    .map_err(bad)
            }
            _ => Err(err(CKR_KEY_TYPE_INCONSISTENT)),
        }
    }
}

/// A digest in progress.
pub struct DigestOp {
    ctx: Option<digest::Context>,
    len: usize,
}

pub fn digest_init(mech: &Mechanism) -> Result<Box<dyn Signer>> {
    let alg = digest_alg(mech.mech).ok_or_else(|| err(CKR_MECHANISM_INVALID))?;
    // The SHA-1 and SHA-2 digest mechanisms have no parameter (PKCS#11 3.0).
    super::no_param(mech)?;
    Ok(Box::new(DigestOp {
        ctx: Some(digest::Context::new(alg)),
        len: alg.output_len(),
    }))
}

impl Signer for DigestOp {
    fn output_len(&self) -> usize {
        self.len
    }
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.ctx
            .as_mut()
            .ok_or_else(|| err(CKR_OPERATION_NOT_INITIALIZED))?
            .update(data);
        Ok(())
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        Ok(self
            .ctx
            .take()
            .ok_or_else(|| err(CKR_OPERATION_NOT_INITIALIZED))?
            .finish()
            .as_ref()
            .to_vec())
    }
}
