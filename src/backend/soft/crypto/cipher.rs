//! Encryption and decryption: AES-GCM, AES-CBC (with and without PKCS#7 padding),
//! AES-ECB, AES-CTR, RSA-OAEP and RSA PKCS#1 v1.5.
//!
//! Multi-part AES-ECB, -CBC, -CBC-PAD and -CTR stream: each update returns every whole
//! block it can (CBC-PAD decryption holds the last block back, since it carries the
//! padding), so that a consumer that sizes its buffers from the update length query gets
//! its data as it goes and large inputs are not kept. GCM (which must see the whole input
//! before it releases plaintext) and RSA collect their input for the final call.

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
    /// The multi-part state of a `Mode::Block` operation.
    stream: BlockStream,
}

/// Where a multi-part block-mode operation stands between updates.
struct BlockStream {
    /// Input not yet processed: less than a block, or for CBC-PAD decryption the last
    /// whole block (held back for the final call).
    pending: Zeroizing<Vec<u8>>,
    /// CBC: the IV of the next block (the last ciphertext block); CTR: the next counter
    /// block; ECB: none.
    chain: Option<[u8; 16]>,
    /// AES-CTR: counter blocks used so far (see [`ctr_count`]).
    ctr_used: u128,
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
        /// AES-CTR: the bits of the counter block that count (`ulCounterBits`).
        ctr: Option<u32>,
    },
    Oaep {
        key: Arc<Key>,
        /// hashAlg (MGF1 uses the same), for keys `rsa_raw` handles.
        hash: CK_MECHANISM_TYPE,
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

const UL: usize = std::mem::size_of::<CK_ULONG>();

fn block(mech: &Mechanism, key: &Key) -> Result<Mode> {
    let v = aes_value(key)?;
    block_alg(v)?;
    let mut counter_bits = None;
    let iv = match (mech.mech, &mech.param) {
        (CKM_AES_ECB, _) => None,
        (CKM_AES_CTR, MechParam::Bytes(b)) if b.len() == 16 + UL => {
            // CK_AES_CTR_PARAMS { ulCounterBits, cb[16] }: the counter block follows.
            let (bits, cb) = b.split_at(UL);
            let bits =
                CK_ULONG::from_ne_bytes(bits.try_into().map_err(|_| err(CKR_GENERAL_ERROR))?);
            if !(1..=128).contains(&bits) {
                return Err(Error::logged(
                    CKR_MECHANISM_PARAM_INVALID,
                    format!("AES-CTR ulCounterBits is 1..128, not {bits}"),
                ));
            }
            counter_bits = Some(bits as u32);
            Some(
                cb.try_into()
                    .map_err(|_| err(CKR_MECHANISM_PARAM_INVALID))?,
            )
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
        ctr: counter_bits,
    })
}

fn oaep(mech: &Mechanism, key: &Arc<Key>) -> Result<Mode> {
    let Some(p) = mech.oaep() else {
        return Err(super::param_invalid(
            "CKM_RSA_PKCS_OAEP needs CK_RSA_PKCS_OAEP_PARAMS",
        ));
    };
    let (alg, want_mgf) = match p.hash {
        CKM_SHA_1 => (&rsa::OAEP_SHA1_MGF1SHA1, CKG_MGF1_SHA1),
        CKM_SHA256 => (&rsa::OAEP_SHA256_MGF1SHA256, CKG_MGF1_SHA256),
        CKM_SHA384 => (&rsa::OAEP_SHA384_MGF1SHA384, CKG_MGF1_SHA384),
        CKM_SHA512 => (&rsa::OAEP_SHA512_MGF1SHA512, CKG_MGF1_SHA512),
        _ => return Err(super::param_invalid("OAEP supports SHA-1/256/384/512")),
    };
    if p.mgf != want_mgf {
        return Err(super::param_invalid(
            "OAEP needs MGF1 with the same hash as hashAlg",
        ));
    }
    if p.source != CKZ_DATA_SPECIFIED && !(p.source == 0 && p.source_data.is_empty()) {
        return Err(err(CKR_MECHANISM_PARAM_INVALID));
    }
    Ok(Mode::Oaep {
        key: key.clone(),
        hash: p.hash,
        alg,
        label: p.source_data.clone(),
    })
}

fn init(mech: &Mechanism, key: &Arc<Key>, encrypt: bool) -> Result<Box<dyn Cipher>> {
    let mode = match mech.mech {
        CKM_AES_GCM => gcm(mech, key)?,
        CKM_AES_CBC | CKM_AES_CBC_PAD | CKM_AES_ECB | CKM_AES_CTR => block(mech, key)?,
        m if super::des::is_des(m) => return super::des::init(mech, key, encrypt),
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
    let chain = match &mode {
        Mode::Block { iv, .. } => *iv,
        _ => None,
    };
    Ok(Box::new(Op {
        encrypt,
        mode,
        buf: Zeroizing::new(Vec::new()),
        stream: BlockStream {
            pending: Zeroizing::new(Vec::new()),
            chain,
            ctr_used: 0,
        },
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
            Mode::Oaep {
                key, hash, label, ..
            } if key.rsa_len().is_some_and(super::rsa_raw::legacy) => {
                rsa_legacy(key, self.encrypt, Some((*hash, label)), input)
            }
            Mode::Pkcs1 { key } if key.rsa_len().is_some_and(super::rsa_raw::legacy) => {
                rsa_legacy(key, self.encrypt, None, input)
            }
            Mode::Oaep {
                key, alg, label, ..
            } => {
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

/// RSA encryption or decryption with a key under 2048 bits (`rsa_raw.rs`), with the same
/// length rules as aws-lc-rs's path: PKCS#1 v1.5 takes at most k - 11 bytes, OAEP
/// k - 2 hLen - 2; a ciphertext is exactly k bytes.
fn rsa_legacy(
    key: &Key,
    encrypt: bool,
    oaep: Option<(CK_MECHANISM_TYPE, &Vec<u8>)>,
    input: &[u8],
) -> Result<Vec<u8>> {
    let k = key.rsa_len().unwrap_or(0);
    let overhead = match oaep {
        Some((h, _)) => 2 * super::sign::hash_len(h) + 2,
        None => 11,
    };
    match key {
        Key::RsaPublic { pkcs1, .. } if encrypt => {
            if input.len() + overhead > k {
                return Err(err(CKR_DATA_LEN_RANGE));
            }
            super::rsa_raw::crypt(pkcs1, true, oaep.map(|(h, l)| (h, l.as_slice())), input)
        }
        Key::RsaPrivate { parts, .. } if !encrypt => {
            if input.len() != k {
                return Err(err(CKR_ENCRYPTED_DATA_LEN_RANGE));
            }
            let der = parts.to_pkcs1()?;
            super::rsa_raw::crypt(&der, false, oaep.map(|(h, l)| (h, l.as_slice())), input)
        }
        _ => Err(err(CKR_KEY_TYPE_INCONSISTENT)),
    }
}

fn block_run(
    key: &[u8],
    iv: Option<[u8; 16]>,
    padded: bool,
    ctr: Option<u32>,
    encrypt: bool,
    input: &[u8],
) -> Result<Vec<u8>> {
    if let Some(bits) = ctr {
        return ctr_run(key, iv.unwrap_or_default(), bits, input);
    }
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
        if input.is_empty() || !input.len().is_multiple_of(16) {
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
    if !input.len().is_multiple_of(16) {
        return Err(err(len_err));
    }
    let mut buf = input.to_vec();
    if buf.is_empty() {
        return Ok(buf);
    }
    let (ek, dk) = match iv {
        Some(_) => (
            cipher::EncryptingKey::cbc(ukey()?),
            cipher::DecryptingKey::cbc(ukey()?),
        ),
        None => (
            cipher::EncryptingKey::ecb(ukey()?),
            cipher::DecryptingKey::ecb(ukey()?),
        ),
    };
    if encrypt {
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

/// The counter of a counter block: its low `bits` bits.
fn ctr_mask(bits: u32) -> u128 {
    u128::MAX >> (128 - bits)
}

/// Adds `blocks` to the counter (the low `bits` bits of the block, wrapping within them:
/// SP 800-38A B.1's standard incrementing function); the other bits stay.
fn ctr_add(counter: [u8; 16], bits: u32, blocks: usize) -> [u8; 16] {
    let (c, mask) = (u128::from_be_bytes(counter), ctr_mask(bits));
    ((c & !mask) | (c.wrapping_add(blocks as u128) & mask)).to_be_bytes()
}

/// Counter blocks used after `bytes` more, when `used` were: a `bits`-bit counter may wrap
/// within its bits, but not come back to where it started, which would repeat the key
/// stream (`CKR_DATA_LEN_RANGE`; NSS draws the same line, SoftHSM refuses any wrap).
fn ctr_count(bits: u32, used: u128, bytes: usize) -> Result<u128> {
    let total = used.saturating_add((bytes as u128).div_ceil(16));
    if bits < 128 && total > 1u128 << bits {
        return Err(Error::logged(
            CKR_DATA_LEN_RANGE,
            format!("AES-CTR: more than 2^{bits} blocks would repeat the counter"),
        ));
    }
    Ok(total)
}

/// AES-CTR with a `bits`-bit counter. aws-lc counts with all 128 bits, which is the same
/// until the counter wraps: the input is cut where it wraps and each piece started anew.
fn ctr_run(key: &[u8], mut counter: [u8; 16], bits: u32, input: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.try_reserve(input.len())
        .map_err(|_| err(CKR_HOST_MEMORY))?;
    let mut rest = input;
    while !rest.is_empty() {
        let mask = ctr_mask(bits);
        let before_wrap = (mask - (u128::from_be_bytes(counter) & mask)).saturating_add(1);
        let take = match usize::try_from(before_wrap.saturating_mul(16)) {
            Ok(n) if n < rest.len() => n,
            _ => rest.len(),
        };
        let mut piece = rest[..take].to_vec();
        let k = cipher::EncryptingKey::ctr(
            UnboundCipherKey::new(block_alg(key)?, key).map_err(|_| err(CKR_KEY_SIZE_RANGE))?,
        )
        .map_err(|_| err(CKR_GENERAL_ERROR))?;
        k.less_safe_encrypt(&mut piece, EncryptionContext::Iv128(counter.into()))
            .map_err(|_| err(CKR_FUNCTION_FAILED))?;
        out.extend_from_slice(&piece);
        counter = ctr_add(counter, bits, take.div_ceil(16));
        rest = &rest[take..];
    }
    Ok(out)
}

impl Op {
    /// How many of `available` buffered bytes a block-mode update processes now.
    fn stream_take(&self, available: usize) -> usize {
        let Mode::Block { padded, .. } = &self.mode else {
            return 0;
        };
        let keep = match available % 16 {
            // CBC-PAD decryption: the last whole block may be all padding.
            0 if *padded && !self.encrypt => available.min(16),
            r => r,
        };
        available - keep
    }

    /// A block-mode update: whole blocks out, the rest kept.
    fn stream_update(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        let Mode::Block { key, ctr, iv, .. } = &self.mode else {
            return Err(err(CKR_GENERAL_ERROR));
        };
        let (ctr, has_iv) = (*ctr, iv.is_some());
        let mut data = std::mem::take(&mut self.stream.pending);
        data.try_reserve(input.len())
            .map_err(|_| err(CKR_HOST_MEMORY))?;
        data.extend_from_slice(input);
        let take = self.stream_take(data.len());
        if let Some(bits) = ctr {
            self.stream.ctr_used = ctr_count(bits, self.stream.ctr_used, take)?;
        }
        let out = block_run(
            key,
            self.stream.chain,
            false,
            ctr,
            self.encrypt,
            &data[..take],
        )?;
        if take > 0 {
            self.stream.chain = match (ctr, has_iv) {
                (Some(bits), _) => self.stream.chain.map(|c| ctr_add(c, bits, take / 16)),
                (None, true) => {
                    let cipher_text = if self.encrypt {
                        &out[..]
                    } else {
                        &data[..take]
                    };
                    cipher_text[take - 16..take].try_into().ok()
                }
                (None, false) => None,
            };
        }
        self.stream.pending = Zeroizing::new(data[take..].to_vec());
        Ok(out)
    }

    /// A block-mode final call: the padding, a CTR tail, or a length error.
    fn stream_finish(&mut self) -> Result<Vec<u8>> {
        let Mode::Block {
            key, padded, ctr, ..
        } = &self.mode
        else {
            return Err(err(CKR_GENERAL_ERROR));
        };
        let rest = std::mem::take(&mut self.stream.pending);
        if let Some(bits) = *ctr {
            ctr_count(bits, self.stream.ctr_used, rest.len())?;
        }
        if *padded || ctr.is_some() {
            // CBC-PAD pads (or unpads) what is left under the chained IV; CTR takes a tail.
            return block_run(key, self.stream.chain, *padded, *ctr, self.encrypt, &rest);
        }
        if !rest.is_empty() {
            return Err(err(if self.encrypt {
                CKR_DATA_LEN_RANGE
            } else {
                CKR_ENCRYPTED_DATA_LEN_RANGE
            }));
        }
        Ok(Vec::new())
    }
}

impl Cipher for Op {
    fn output_len(&self, n: usize) -> usize {
        self.len_for(n)
    }
    fn oneshot(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        if let Mode::Block {
            ctr: Some(bits), ..
        } = self.mode
        {
            ctr_count(bits, 0, input.len())?;
        }
        self.run(input)
    }
    fn update_len(&self, n: usize) -> usize {
        match self.mode {
            Mode::Block { .. } => self.stream_take(self.stream.pending.len() + n),
            _ => 0,
        }
    }
    fn update(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        match self.mode {
            // RSA encryption is single-part only (PKCS#11 §2.1.6).
            Mode::Oaep { .. } | Mode::Pkcs1 { .. } => Err(err(CKR_FUNCTION_NOT_SUPPORTED)),
            Mode::Block { .. } => self.stream_update(input),
            _ => {
                self.buf
                    .try_reserve(input.len())
                    .map_err(|_| err(CKR_HOST_MEMORY))?;
                self.buf.extend_from_slice(input);
                Ok(Vec::new())
            }
        }
    }
    fn final_len(&self) -> usize {
        match (&self.mode, self.encrypt) {
            (Mode::Block { padded: true, .. }, true) => 16,
            (Mode::Block { .. }, _) => self.stream.pending.len(),
            _ => self.len_for(self.buf.len()),
        }
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        if let Mode::Block { .. } = self.mode {
            return self.stream_finish();
        }
        let data = std::mem::take(&mut *self.buf);
        let data = Zeroizing::new(data);
        self.run(&data)
    }
}
