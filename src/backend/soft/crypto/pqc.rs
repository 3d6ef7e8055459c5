//! Post-quantum keys of the soft token (PKCS#11 3.2): ML-DSA (FIPS 204) signatures with
//! `CKM_ML_DSA` and ML-KEM (FIPS 203) key encapsulation with `CKM_ML_KEM`, parameter sets
//! from `CKA_PARAMETER_SET`. Keys are generated from a seed that is kept as `CKA_SEED`
//! (sensitive, like `CKA_VALUE`, which holds the expanded private key); a key imported with
//! a seed is rebuilt from it. aws-lc does the cryptography: ML-KEM through aws-lc-rs, ML-DSA
//! and the seeded key generation through `pqc_raw.rs` (context strings, seeds).

use super::keys::Key;
use super::wrap::finish_derived_into;
use super::{param_invalid, pqc_raw, random};
use crate::core::attr::{Attrs, AttrsExt};
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{MechParam, Mechanism};
use crate::core::op::{Signer, Verifier};
use aws_lc_rs::kem;
use cryptoki_sys::*;
use std::sync::Arc;
use zeroize::Zeroizing;

/// An ML-DSA parameter set with its sizes (FIPS 204 table 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MlDsa {
    pub set: CK_ULONG,
    nid: i32,
    pub public_len: usize,
    pub private_len: usize,
    pub signature_len: usize,
}

pub const ML_DSA: [MlDsa; 3] = [
    MlDsa {
        set: CKP_ML_DSA_44,
        nid: aws_lc_sys::NID_MLDSA44,
        public_len: 1312,
        private_len: 2560,
        signature_len: 2420,
    },
    MlDsa {
        set: CKP_ML_DSA_65,
        nid: aws_lc_sys::NID_MLDSA65,
        public_len: 1952,
        private_len: 4032,
        signature_len: 3309,
    },
    MlDsa {
        set: CKP_ML_DSA_87,
        nid: aws_lc_sys::NID_MLDSA87,
        public_len: 2592,
        private_len: 4896,
        signature_len: 4627,
    },
];

/// An ML-KEM parameter set with its sizes (FIPS 203 table 3).
#[derive(Clone, Copy, Debug)]
pub struct MlKem {
    pub set: CK_ULONG,
    nid: i32,
    alg: &'static kem::Algorithm,
    pub public_len: usize,
    pub private_len: usize,
    pub ciphertext_len: usize,
}

pub const ML_KEM: [MlKem; 3] = [
    MlKem {
        set: CKP_ML_KEM_512,
        nid: aws_lc_sys::NID_MLKEM512,
        alg: &kem::ML_KEM_512,
        public_len: 800,
        private_len: 1632,
        ciphertext_len: 768,
    },
    MlKem {
        set: CKP_ML_KEM_768,
        nid: aws_lc_sys::NID_MLKEM768,
        alg: &kem::ML_KEM_768,
        public_len: 1184,
        private_len: 2400,
        ciphertext_len: 1088,
    },
    MlKem {
        set: CKP_ML_KEM_1024,
        nid: aws_lc_sys::NID_MLKEM1024,
        alg: &kem::ML_KEM_1024,
        public_len: 1568,
        private_len: 3168,
        ciphertext_len: 1568,
    },
];

/// FIPS 204's ξ and FIPS 203's d‖z.
const ML_DSA_SEED_LEN: usize = 32;
const ML_KEM_SEED_LEN: usize = 64;

fn bad_set(v: CK_ULONG) -> Error {
    Error::logged(
        CKR_ATTRIBUTE_VALUE_INVALID,
        format!("CKA_PARAMETER_SET 0x{v:x} is not a parameter set of this key type"),
    )
}

fn ml_dsa(set: CK_ULONG) -> Result<MlDsa> {
    ML_DSA
        .into_iter()
        .find(|p| p.set == set)
        .ok_or_else(|| bad_set(set))
}

fn ml_kem(set: CK_ULONG) -> Result<MlKem> {
    ML_KEM
        .into_iter()
        .find(|p| p.set == set)
        .ok_or_else(|| bad_set(set))
}

fn parameter_set(a: &Attrs) -> Result<CK_ULONG> {
    a.ulong(CKA_PARAMETER_SET)
        .ok_or_else(|| Error::logged(CKR_TEMPLATE_INCOMPLETE, "a PQC key needs CKA_PARAMETER_SET"))
}

/// Is `kt` a key type of this module?
pub fn is_pqc(kt: CK_KEY_TYPE) -> bool {
    matches!(kt, CKK_ML_DSA | CKK_ML_KEM)
}

/// C_GenerateKeyPair with `CKM_ML_DSA_KEY_PAIR_GEN` or `CKM_ML_KEM_KEY_PAIR_GEN`: the
/// parameter set comes from the public template (or the private one; both must agree).
pub fn generate_key_pair(
    mech: CK_MECHANISM_TYPE,
    public: &Attrs,
    private: &Attrs,
) -> Result<(Attrs, Attrs)> {
    let set = match (
        public.ulong(CKA_PARAMETER_SET),
        private.ulong(CKA_PARAMETER_SET),
    ) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::logged(
                CKR_TEMPLATE_INCONSISTENT,
                "the two templates name different parameter sets",
            ))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            return Err(Error::logged(
                CKR_TEMPLATE_INCOMPLETE,
                "PQC key generation needs CKA_PARAMETER_SET",
            ))
        }
    };
    let (seed, (sk, pk)) = if mech == CKM_ML_DSA_KEY_PAIR_GEN {
        let p = ml_dsa(set)?;
        let mut seed = Zeroizing::new(vec![0u8; ML_DSA_SEED_LEN]);
        random(&mut seed)?;
        let pair = pqc_raw::mldsa_from_seed(p.nid, &seed)?;
        (seed, pair)
    } else {
        let p = ml_kem(set)?;
        let mut seed = Zeroizing::new(vec![0u8; ML_KEM_SEED_LEN]);
        random(&mut seed)?;
        let pair = pqc_raw::mlkem_from_seed(p.nid, &seed)?;
        (seed, pair)
    };
    let (mut p, mut s) = (Attrs::new(), Attrs::new());
    p.set_ulong(CKA_PARAMETER_SET, set);
    p.insert(CKA_VALUE, pk);
    s.set_ulong(CKA_PARAMETER_SET, set);
    s.insert(CKA_VALUE, sk.to_vec());
    s.insert(CKA_SEED, seed.to_vec());
    Ok((p, s))
}

/// The expanded private key and public key a seed gives, for key type `kt`.
fn from_seed(kt: CK_KEY_TYPE, set: CK_ULONG, seed: &[u8]) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    let (nid, want) = if kt == CKK_ML_DSA {
        (ml_dsa(set)?.nid, ML_DSA_SEED_LEN)
    } else {
        (ml_kem(set)?.nid, ML_KEM_SEED_LEN)
    };
    if seed.len() != want {
        return Err(Error::logged(
            CKR_ATTRIBUTE_VALUE_INVALID,
            format!("CKA_SEED must be {want} bytes"),
        ));
    }
    if kt == CKK_ML_DSA {
        pqc_raw::mldsa_from_seed(nid, seed)
    } else {
        pqc_raw::mlkem_from_seed(nid, seed)
    }
}

/// C_CreateObject / C_UnwrapKey of a PQC private key: with a CKA_SEED the expanded key is
/// computed from it (and a CKA_VALUE given too must be the same); the attributes to add.
pub fn complete_import(a: &Attrs) -> Result<Attrs> {
    let mut extra = Attrs::new();
    let kt = a.ulong(CKA_KEY_TYPE).unwrap_or(CK_UNAVAILABLE_INFORMATION);
    let set = parameter_set(a)?;
    if a.ulong(CKA_CLASS) == Some(CKO_PRIVATE_KEY) {
        if let Some(seed) = a.bytes(CKA_SEED).filter(|s| !s.is_empty()) {
            let (sk, _) = from_seed(kt, set, seed)?;
            match a.bytes(CKA_VALUE).filter(|v| !v.is_empty()) {
                Some(v) if v != sk.as_slice() => {
                    return Err(Error::logged(
                        CKR_ATTRIBUTE_VALUE_INVALID,
                        "CKA_VALUE is not the key CKA_SEED gives",
                    ))
                }
                Some(_) => {}
                None => {
                    extra.insert(CKA_VALUE, sk.to_vec());
                }
            }
            return Ok(extra);
        }
    }
    let mut full = a.clone();
    full.extend(extra.clone());
    key_from_attrs(&full)?;
    Ok(extra)
}

fn value<'a>(a: &'a Attrs, len: usize, what: &str) -> Result<&'a [u8]> {
    match a.bytes(CKA_VALUE).filter(|v| !v.is_empty()) {
        Some(v) if v.len() == len => Ok(v),
        Some(v) => Err(Error::logged(
            CKR_ATTRIBUTE_VALUE_INVALID,
            format!("{what} of {} bytes ({len} expected)", v.len()),
        )),
        None => Err(Error::logged(
            CKR_TEMPLATE_INCOMPLETE,
            format!("key lacks CKA_VALUE ({what})"),
        )),
    }
}

/// The key an object of a PQC key type holds.
pub fn key_from_attrs(a: &Attrs) -> Result<Key> {
    let class = a.ulong(CKA_CLASS).unwrap_or(CKO_DATA);
    let kt = a.ulong(CKA_KEY_TYPE).unwrap_or(CK_UNAVAILABLE_INFORMATION);
    let set = parameter_set(a)?;
    let seed = a.bytes(CKA_SEED).filter(|s| !s.is_empty());
    match (class, kt) {
        (CKO_PRIVATE_KEY, CKK_ML_DSA) => {
            let p = ml_dsa(set)?;
            // The seed, when kept, is the key (CKA_SEED is honoured over CKA_VALUE).
            let private = match seed {
                Some(s) => Zeroizing::new(s.to_vec()),
                None => Zeroizing::new(value(a, p.private_len, "ML-DSA private key")?.to_vec()),
            };
            let key = pqc_raw::MlDsaKey::private(p.nid, &private)?;
            Ok(Key::MlDsaPrivate { set: p, key })
        }
        (CKO_PUBLIC_KEY, CKK_ML_DSA) => {
            let p = ml_dsa(set)?;
            let public = value(a, p.public_len, "ML-DSA public key")?.to_vec();
            let key = pqc_raw::MlDsaKey::public(p.nid, &public)?;
            Ok(Key::MlDsaPublic { set: p, key })
        }
        (CKO_PRIVATE_KEY, CKK_ML_KEM) => {
            let p = ml_kem(set)?;
            let sk = match seed {
                Some(s) => from_seed(kt, set, s)?.0,
                None => Zeroizing::new(value(a, p.private_len, "ML-KEM private key")?.to_vec()),
            };
            let key = kem::DecapsulationKey::new(p.alg, &sk).map_err(|_| {
                Error::logged(CKR_ATTRIBUTE_VALUE_INVALID, "ML-KEM private key rejected")
            })?;
            Ok(Key::MlKemPrivate { set: p, key })
        }
        (CKO_PUBLIC_KEY, CKK_ML_KEM) => {
            let p = ml_kem(set)?;
            let v = value(a, p.public_len, "ML-KEM public key")?;
            let key = kem::EncapsulationKey::new(p.alg, v).map_err(|_| {
                Error::logged(CKR_ATTRIBUTE_VALUE_INVALID, "ML-KEM public key rejected")
            })?;
            Ok(Key::MlKemPublic { set: p, key })
        }
        _ => Err(err(CKR_KEY_TYPE_INCONSISTENT)),
    }
}

/// The context string of a `CKM_ML_DSA` mechanism. Hedged signing is all aws-lc offers, so
/// a signature with `CKH_DETERMINISTIC_REQUIRED` is refused; verification ignores the
/// hedging (PKCS#11 3.2 §6.x CKM_ML_DSA).
fn context(mech: &Mechanism, signing: bool) -> Result<&[u8]> {
    match &mech.param {
        MechParam::None => Ok(&[]),
        MechParam::SignContext { context, .. } if !signing => Ok(context),
        MechParam::SignContext { hedge, context } => match *hedge {
            CKH_HEDGE_PREFERRED | CKH_HEDGE_REQUIRED => Ok(context),
            CKH_DETERMINISTIC_REQUIRED => Err(param_invalid(
                "CKM_ML_DSA: deterministic signing is not offered (aws-lc signs hedged)",
            )),
            _ => Err(param_invalid("CKM_ML_DSA: unknown hedgeVariant")),
        },
        _ => Err(param_invalid(
            "CKM_ML_DSA takes a CK_SIGN_ADDITIONAL_CONTEXT or no parameter",
        )),
    }
}

/// An ML-DSA signature or verification: the message is collected (pure ML-DSA signs the
/// whole message), then signed or checked once.
struct MlDsaOp {
    key: Arc<Key>,
    context: Vec<u8>,
    message: Vec<u8>,
}

fn ml_dsa_op(mech: &Mechanism, key: &Arc<Key>, private: bool) -> Result<MlDsaOp> {
    if mech.mech != CKM_ML_DSA {
        return Err(err(CKR_MECHANISM_INVALID));
    }
    match (&**key, private) {
        (Key::MlDsaPrivate { .. }, true) | (Key::MlDsaPublic { .. }, false) => {}
        _ => {
            return Err(Error::logged(
                CKR_KEY_TYPE_INCONSISTENT,
                "CKM_ML_DSA needs an ML-DSA key",
            ))
        }
    }
    Ok(MlDsaOp {
        key: key.clone(),
        context: context(mech, private)?.to_vec(),
        message: Vec::new(),
    })
}

pub fn sign_init(mech: &Mechanism, key: &Arc<Key>) -> Result<Box<dyn Signer>> {
    Ok(Box::new(ml_dsa_op(mech, key, true)?))
}

pub fn verify_init(mech: &Mechanism, key: &Arc<Key>) -> Result<Box<dyn Verifier>> {
    Ok(Box::new(ml_dsa_op(mech, key, false)?))
}

impl Signer for MlDsaOp {
    fn output_len(&self) -> usize {
        match &*self.key {
            Key::MlDsaPrivate { set, .. } => set.signature_len,
            _ => 0,
        }
    }
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.message.extend_from_slice(data);
        Ok(())
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        let message = std::mem::take(&mut self.message);
        Signer::oneshot(self, &message)
    }
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        match &*self.key {
            Key::MlDsaPrivate { key, .. } => key.sign(&self.context, data),
            _ => Err(err(CKR_KEY_TYPE_INCONSISTENT)),
        }
    }
}

impl Verifier for MlDsaOp {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.message.extend_from_slice(data);
        Ok(())
    }
    fn finish(&mut self, signature: &[u8]) -> Result<()> {
        let message = std::mem::take(&mut self.message);
        Verifier::oneshot(self, &message, signature)
    }
    fn oneshot(&mut self, data: &[u8], signature: &[u8]) -> Result<()> {
        let Key::MlDsaPublic { set, key } = &*self.key else {
            return Err(err(CKR_KEY_TYPE_INCONSISTENT));
        };
        if signature.len() != set.signature_len {
            return Err(err(CKR_SIGNATURE_LEN_RANGE));
        }
        if key.verify(&self.context, data, signature)? {
            Ok(())
        } else {
            Err(err(CKR_SIGNATURE_INVALID))
        }
    }
}

fn kem_mechanism(mech: &Mechanism) -> Result<()> {
    if mech.mech != CKM_ML_KEM {
        return Err(err(CKR_MECHANISM_INVALID));
    }
    match mech.param {
        MechParam::None => Ok(()),
        _ => Err(param_invalid("CKM_ML_KEM takes no parameter")),
    }
}

/// The ciphertext length of `CKM_ML_KEM` with this public key.
pub fn ciphertext_len(mech: &Mechanism, key: &Key) -> Result<usize> {
    kem_mechanism(mech)?;
    match key {
        Key::MlKemPublic { set, .. } => Ok(set.ciphertext_len),
        _ => Err(Error::logged(
            CKR_KEY_TYPE_INCONSISTENT,
            "C_EncapsulateKey needs an ML-KEM public key",
        )),
    }
}

/// ML-KEM.Encaps: the ciphertext written to `out` (exactly [`ciphertext_len`] bytes) and the
/// new key's value attributes added to `attrs`, its filled-in template (the shared secret
/// as CKA_VALUE, cut to the template's CKA_VALUE_LEN as a derivation is).
pub fn encapsulate(mech: &Mechanism, key: &Key, attrs: &mut Attrs, out: &mut [u8]) -> Result<()> {
    if ciphertext_len(mech, key)? != out.len() {
        return Err(Error::logged(
            CKR_GENERAL_ERROR,
            "ML-KEM ciphertext buffer of the wrong length",
        ));
    }
    let Key::MlKemPublic { key, .. } = key else {
        return Err(err(CKR_KEY_TYPE_INCONSISTENT));
    };
    let (ct, ss) = key.encapsulate().map_err(|_| err(CKR_FUNCTION_FAILED))?;
    out.copy_from_slice(ct.as_ref());
    finish_derived_into(attrs, ss.as_ref())
}

/// ML-KEM.Decaps: the new key's value attributes added to `attrs`, as [`encapsulate`].
/// FIPS 203's implicit rejection gives a pseudo-random secret for a tampered ciphertext of
/// the right length.
pub fn decapsulate(
    mech: &Mechanism,
    key: &Key,
    ciphertext: &[u8],
    attrs: &mut Attrs,
) -> Result<()> {
    kem_mechanism(mech)?;
    let Key::MlKemPrivate { set, key } = key else {
        return Err(Error::logged(
            CKR_KEY_TYPE_INCONSISTENT,
            "C_DecapsulateKey needs an ML-KEM private key",
        ));
    };
    if ciphertext.len() != set.ciphertext_len {
        return Err(Error::logged(
            CKR_ENCRYPTED_DATA_LEN_RANGE,
            format!(
                "ML-KEM ciphertext of {} bytes ({} expected)",
                ciphertext.len(),
                set.ciphertext_len
            ),
        ));
    }
    let ss = key
        .decapsulate(kem::Ciphertext::from(ciphertext))
        .map_err(|_| err(CKR_ENCRYPTED_DATA_INVALID))?;
    finish_derived_into(attrs, ss.as_ref())
}
