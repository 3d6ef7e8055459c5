//! Encryption and decryption: AES-GCM, AES-CBC (with and without PKCS#7 padding),
//! AES-ECB, AES-CTR, RSA-OAEP and RSA PKCS#1 v1.5.
//!
//! Multi-part operations collect their input and produce everything at the final call,
//! which PKCS#11 allows (an update may output nothing); GCM must do so anyway.

use super::keys::Key;
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{MechParam, Mechanism};
use crate::core::op::Cipher;
use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{self, DecryptionContext, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::rsa;
use cryptoki_sys::*;
use std::sync::Arc;
use zeroize::Zeroizing;

fn aes_value(key: &Key) -> Result<&[u8]> {
    match key {
        Key::Secret {
            key_type: CKK_AES,
            value,
        } => Ok(value),
        _ => Err(err(CKR_KEY_TYPE_INCONSISTENT)),
    }
}

fn block_alg(v: &[u8]) -> Result<&'static cipher::Algorithm> {
    Ok(match v.len() {
        16 => &cipher::AES_128,
        24 => &cipher::AES_192,
        32 => &cipher::AES_256,
        _ => return Err(err(CKR_KEY_SIZE_RANGE)),
    })
}

/// The kind of work and the data collected so far.
pub struct Op {
    encrypt: bool,
    mode: Mode,
    buf: Zeroizing<Vec<u8>>,
}

enum Mode {
    Gcm {
        key: LessSafeKey,
        nonce: [u8; 12],
        aad: Vec<u8>,
    },
    /// Other IV lengths or a truncated tag (see `gcm.rs`).
    GcmGeneral {
        key: Zeroizing<Vec<u8>>,
        iv: Vec<u8>,
        aad: Vec<u8>,
        tag_len: usize,
    },
    Block {
        key: Zeroizing<Vec<u8>>,
        iv: Option<[u8; 16]>,
        padded: bool,
        ctr: bool,
    },
    Oaep {
        key: Arc<Key>,
        alg: &'static rsa::OaepAlgorithm,
        label: Vec<u8>,
    },
    Pkcs1 {
        key: Arc<Key>,
    },
}

const TAG: usize = 16;

fn gcm(mech: &Mechanism, key: &Key) -> Result<Mode> {
    let v = aes_value(key)?;
    let MechParam::Gcm {
        iv, aad, tag_bits, ..
    } = &mech.param
    else {
        return Err(Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            "CKM_AES_GCM needs CK_GCM_PARAMS",
        ));
    };
    if !matches!(*tag_bits, 32 | 64 | 96 | 104 | 112 | 120 | 128) {
        return Err(Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            "AES-GCM tag length must be 32, 64 or 96..128 bits",
        ));
    }
    if iv.is_empty() || iv.len() > 256 {
        return Err(Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            "AES-GCM IV must be 1 to 256 bytes",
        ));
    }
    block_alg(v)?;
    let nonce: [u8; 12] = match (iv.as_slice().try_into(), *tag_bits) {
        (Ok(n), 128) => n,
        _ => {
            return Ok(Mode::GcmGeneral {
                key: Zeroizing::new(v.to_vec()),
                iv: iv.clone(),
                aad: aad.clone(),
                tag_len: (*tag_bits / 8) as usize,
            })
        }
    };
    let alg = match v.len() {
        16 => &aead::AES_128_GCM,
        24 => &aead::AES_192_GCM,
        32 => &aead::AES_256_GCM,
        _ => return Err(err(CKR_KEY_SIZE_RANGE)),
    };
    let key = LessSafeKey::new(UnboundKey::new(alg, v).map_err(|_| err(CKR_KEY_SIZE_RANGE))?);
    Ok(Mode::Gcm {
        key,
        nonce,
        aad: aad.clone(),
    })
}

fn block(mech: &Mechanism, key: &Key) -> Result<Mode> {
    let v = aes_value(key)?;
    block_alg(v)?;
    let iv = match (mech.mech, &mech.param) {
        (CKM_AES_ECB, _) => None,
        (CKM_AES_CTR, MechParam::Bytes(b)) if b.len() == 16 + std::mem::size_of::<CK_ULONG>() => {
            // CK_AES_CTR_PARAMS { ulCounterBits, cb[16] }: the counter block follows.
            let cb: [u8; 16] = b[std::mem::size_of::<CK_ULONG>()..]
                .try_into()
                .map_err(|_| err(CKR_MECHANISM_PARAM_INVALID))?;
            Some(cb)
        }
        (_, MechParam::Bytes(b)) if b.len() == 16 && mech.mech != CKM_AES_CTR => Some(
            b.as_slice()
                .try_into()
                .map_err(|_| err(CKR_MECHANISM_PARAM_INVALID))?,
        ),
        _ => {
            return Err(Error::logged(
                CKR_MECHANISM_PARAM_INVALID,
                "AES-CBC needs a 16-byte IV (AES-CTR: CK_AES_CTR_PARAMS)",
            ))
        }
    };
    Ok(Mode::Block {
        key: Zeroizing::new(v.to_vec()),
        iv,
        padded: mech.mech == CKM_AES_CBC_PAD,
        ctr: mech.mech == CKM_AES_CTR,
    })
}

fn oaep(mech: &Mechanism, key: &Arc<Key>) -> Result<Mode> {
    let MechParam::Oaep {
        hash,
        mgf,
        source,
        source_data,
    } = &mech.param
    else {
        return Err(Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            "CKM_RSA_PKCS_OAEP needs CK_RSA_PKCS_OAEP_PARAMS",
        ));
    };
    let (alg, want_mgf) = match *hash {
        CKM_SHA_1 => (&rsa::OAEP_SHA1_MGF1SHA1, CKG_MGF1_SHA1),
        CKM_SHA256 => (&rsa::OAEP_SHA256_MGF1SHA256, CKG_MGF1_SHA256),
        CKM_SHA384 => (&rsa::OAEP_SHA384_MGF1SHA384, CKG_MGF1_SHA384),
        CKM_SHA512 => (&rsa::OAEP_SHA512_MGF1SHA512, CKG_MGF1_SHA512),
        _ => {
            return Err(Error::logged(
                CKR_MECHANISM_PARAM_INVALID,
                "OAEP supports SHA-1/256/384/512",
            ))
        }
    };
    if *mgf != want_mgf {
        return Err(Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            "OAEP needs MGF1 with the same hash as hashAlg",
        ));
    }
    if *source != CKZ_DATA_SPECIFIED && !(*source == 0 && source_data.is_empty()) {
        return Err(err(CKR_MECHANISM_PARAM_INVALID));
    }
    Ok(Mode::Oaep {
        key: key.clone(),
        alg,
        label: source_data.clone(),
    })
}

fn init(mech: &Mechanism, key: &Arc<Key>, encrypt: bool) -> Result<Box<dyn Cipher>> {
    let mode = match mech.mech {
        CKM_AES_GCM => gcm(mech, key)?,
        CKM_AES_CBC | CKM_AES_CBC_PAD | CKM_AES_ECB | CKM_AES_CTR => block(mech, key)?,
        CKM_RSA_PKCS_OAEP | CKM_RSA_PKCS => {
            match (&**key, encrypt) {
                (Key::RsaPublic { .. }, true) | (Key::RsaPrivate { .. }, false) => {}
                _ => return Err(err(CKR_KEY_TYPE_INCONSISTENT)),
            }
            if mech.mech == CKM_RSA_PKCS {
                Mode::Pkcs1 { key: key.clone() }
            } else {
                oaep(mech, key)?
            }
        }
        _ => return Err(err(CKR_MECHANISM_INVALID)),
    };
    Ok(Box::new(Op {
        encrypt,
        mode,
        buf: Zeroizing::new(Vec::new()),
    }))
}

pub fn encrypt_init(mech: &Mechanism, key: &Arc<Key>) -> Result<Box<dyn Cipher>> {
    init(mech, key, true)
}

pub fn decrypt_init(mech: &Mechanism, key: &Arc<Key>) -> Result<Box<dyn Cipher>> {
    init(mech, key, false)
}

impl Op {
    fn len_for(&self, n: usize) -> usize {
        match (&self.mode, self.encrypt) {
            (Mode::Gcm { .. }, true) => n + TAG,
            (Mode::Gcm { .. }, false) => n.saturating_sub(TAG),
            (Mode::GcmGeneral { tag_len, .. }, true) => n + tag_len,
            (Mode::GcmGeneral { tag_len, .. }, false) => n.saturating_sub(*tag_len),
            (Mode::Block { padded: true, .. }, true) => (n / 16 + 1) * 16,
            (Mode::Block { .. }, _) => n,
            (Mode::Oaep { key, .. } | Mode::Pkcs1 { key }, _) => key.rsa_len().unwrap_or(0),
        }
    }

    fn run(&self, input: &[u8]) -> Result<Vec<u8>> {
        match &self.mode {
            Mode::Gcm { key, nonce, aad } => {
                let n = Nonce::assume_unique_for_key(*nonce);
                if self.encrypt {
                    let mut out = input.to_vec();
                    let tag = key
                        .seal_in_place_separate_tag(n, Aad::from(aad), &mut out)
                        .map_err(|_| err(CKR_FUNCTION_FAILED))?;
                    out.extend_from_slice(tag.as_ref());
                    Ok(out)
                } else {
                    if input.len() < TAG {
                        return Err(err(CKR_ENCRYPTED_DATA_LEN_RANGE));
                    }
                    let mut buf = input.to_vec();
                    let len = key
                        .open_in_place(n, Aad::from(aad), &mut buf)
                        .map_err(|_| err(CKR_ENCRYPTED_DATA_INVALID))?
                        .len();
                    buf.truncate(len);
                    Ok(buf)
                }
            }
            Mode::GcmGeneral {
                key,
                iv,
                aad,
                tag_len,
            } => super::gcm::run(key, iv, aad, *tag_len, self.encrypt, input),
            Mode::Block {
                key,
                iv,
                padded,
                ctr,
            } => block_run(key, *iv, *padded, *ctr, self.encrypt, input),
            Mode::Oaep { key, alg, label } => {
                let label = Some(label.as_slice());
                if self.encrypt {
                    let Key::RsaPublic { spki, n, .. } = &**key else {
                        return Err(err(CKR_KEY_TYPE_INCONSISTENT));
                    };
                    let pk = rsa::PublicEncryptingKey::from_der(spki)
                        .map_err(|_| err(CKR_KEY_TYPE_INCONSISTENT))?;
                    let pk = rsa::OaepPublicEncryptingKey::new(pk)
                        .map_err(|_| err(CKR_KEY_SIZE_RANGE))?;
                    if input.len() > pk.max_plaintext_size(alg) {
                        return Err(err(CKR_DATA_LEN_RANGE));
                    }
                    let mut out = vec![0u8; n.len()];
                    let r = pk
                        .encrypt(alg, input, &mut out, label)
                        .map_err(|_| err(CKR_FUNCTION_FAILED))?
                        .len();
                    out.truncate(r);
                    Ok(out)
                } else {
                    let k = rsa::OaepPrivateDecryptingKey::new(key.rsa_decrypting()?.clone())
                        .map_err(|_| err(CKR_KEY_SIZE_RANGE))?;
                    if input.len() != k.key_size_bytes() {
                        return Err(err(CKR_ENCRYPTED_DATA_LEN_RANGE));
                    }
                    let mut out = vec![0u8; k.min_output_size()];
                    let r = k
                        .decrypt(alg, input, &mut out, label)
                        .map_err(|_| err(CKR_ENCRYPTED_DATA_INVALID))?
                        .len();
                    out.truncate(r);
                    Ok(out)
                }
            }
            Mode::Pkcs1 { key } => {
                if self.encrypt {
                    let Key::RsaPublic { spki, n, .. } = &**key else {
                        return Err(err(CKR_KEY_TYPE_INCONSISTENT));
                    };
                    let pk = rsa::PublicEncryptingKey::from_der(spki)
                        .map_err(|_| err(CKR_KEY_TYPE_INCONSISTENT))?;
                    let pk = rsa::Pkcs1PublicEncryptingKey::new(pk)
                        .map_err(|_| err(CKR_KEY_SIZE_RANGE))?;
                    if input.len() > pk.max_plaintext_size() {
                        return Err(err(CKR_DATA_LEN_RANGE));
                    }
                    let mut out = vec![0u8; n.len()];
                    let r = pk
                        .encrypt(input, &mut out)
                        .map_err(|_| err(CKR_FUNCTION_FAILED))?
                        .len();
                    out.truncate(r);
                    Ok(out)
                } else {
                    let k = rsa::Pkcs1PrivateDecryptingKey::new(key.rsa_decrypting()?.clone())
                        .map_err(|_| err(CKR_KEY_SIZE_RANGE))?;
                    if input.len() != k.key_size_bytes() {
                        return Err(err(CKR_ENCRYPTED_DATA_LEN_RANGE));
                    }
                    let mut out = vec![0u8; k.min_output_size()];
                    let r = k
                        .decrypt(input, &mut out)
                        .map_err(|_| err(CKR_ENCRYPTED_DATA_INVALID))?
                        .len();
                    out.truncate(r);
                    Ok(out)
                }
            }
        }
    }
}

fn block_run(
    key: &[u8],
    iv: Option<[u8; 16]>,
    padded: bool,
    ctr: bool,
    encrypt: bool,
    input: &[u8],
) -> Result<Vec<u8>> {
    let alg = block_alg(key)?;
    let ukey = || UnboundCipherKey::new(alg, key).map_err(|_| err(CKR_KEY_SIZE_RANGE));
    let ctx_e = || {
        iv.map(|v| EncryptionContext::Iv128(v.into()))
            .unwrap_or(EncryptionContext::None)
    };
    let ctx_d = || {
        iv.map(|v| DecryptionContext::Iv128(v.into()))
            .unwrap_or(DecryptionContext::None)
    };
    let len_err = if encrypt {
        CKR_DATA_LEN_RANGE
    } else {
        CKR_ENCRYPTED_DATA_LEN_RANGE
    };
    if padded {
        if encrypt {
            let k = cipher::PaddedBlockEncryptingKey::cbc_pkcs7(ukey()?)
                .map_err(|_| err(CKR_GENERAL_ERROR))?;
            let mut out = input.to_vec();
            k.less_safe_encrypt(&mut out, ctx_e())
                .map_err(|_| err(CKR_FUNCTION_FAILED))?;
            return Ok(out);
        }
        if input.is_empty() || input.len() % 16 != 0 {
            return Err(err(len_err));
        }
        let k = cipher::PaddedBlockDecryptingKey::cbc_pkcs7(ukey()?)
            .map_err(|_| err(CKR_GENERAL_ERROR))?;
        let mut buf = input.to_vec();
        let n = k
            .decrypt(&mut buf, ctx_d())
            .map_err(|_| err(CKR_ENCRYPTED_DATA_INVALID))?
            .len();
        buf.truncate(n);
        return Ok(buf);
    }
    if !ctr && input.len() % 16 != 0 {
        return Err(err(len_err));
    }
    let mut buf = input.to_vec();
    if buf.is_empty() {
        return Ok(buf);
    }
    let (ek, dk) = match (ctr, iv) {
        (true, _) => (
            cipher::EncryptingKey::ctr(ukey()?),
            cipher::DecryptingKey::ctr(ukey()?),
        ),
        (false, Some(_)) => (
            cipher::EncryptingKey::cbc(ukey()?),
            cipher::DecryptingKey::cbc(ukey()?),
        ),
        (false, None) => (
            cipher::EncryptingKey::ecb(ukey()?),
            cipher::DecryptingKey::ecb(ukey()?),
        ),
    };
    if encrypt || ctr {
        ek.map_err(|_| err(CKR_GENERAL_ERROR))?
            .less_safe_encrypt(&mut buf, ctx_e())
            .map_err(|_| err(CKR_FUNCTION_FAILED))?;
    } else {
        dk.map_err(|_| err(CKR_GENERAL_ERROR))?
            .decrypt(&mut buf, ctx_d())
            .map_err(|_| err(CKR_FUNCTION_FAILED))?;
    }
    Ok(buf)
}

impl Cipher for Op {
    fn output_len(&self, n: usize) -> usize {
        self.len_for(n)
    }
    fn oneshot(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        self.run(input)
    }
    fn update_len(&self, _n: usize) -> usize {
        0
    }
    fn update(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        if matches!(self.mode, Mode::Oaep { .. } | Mode::Pkcs1 { .. }) {
            // RSA encryption is single-part only (PKCS#11 §2.1.6).
            return Err(err(CKR_FUNCTION_NOT_SUPPORTED));
        }
        self.buf.extend_from_slice(input);
        Ok(Vec::new())
    }
    fn final_len(&self) -> usize {
        self.len_for(self.buf.len())
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        let data = std::mem::take(&mut *self.buf);
        let data = Zeroizing::new(data);
        self.run(&data)
    }
}
