//! DES3 and single DES, for legacy interoperability (payment systems under PCI, keys
//! migrated from SoftHSM): CKM_DES3_ECB / CKM_DES3_CBC / CKM_DES3_CBC_PAD on 24-byte
//! CKK_DES3 keys and CKM_DES_ECB / _CBC / _CBC_PAD on 8-byte CKK_DES keys; aws-lc's DES
//! through aws-lc-rs's `legacy-des` feature (raw ECB and CBC; the PKCS#7 padding of the
//! _PAD mechanisms is done here). Multi-part calls stream whole 8-byte blocks like the
//! AES modes in `cipher.rs` (CBC-PAD decryption holds the last block back).
#![allow(deprecated)] // aws-lc-rs marks DES as legacy; these mechanisms are exactly that

use super::keys::Key;
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{MechParam, Mechanism};
use crate::core::op::Cipher;
use aws_lc_rs::cipher::{
    self, DecryptionContext, EncryptionContext, UnboundCipherKey, DES_EDE3_FOR_LEGACY_USE_ONLY,
    DES_FOR_LEGACY_USE_ONLY,
};
use cryptoki_sys::*;
use zeroize::Zeroizing;

const BLOCK: usize = 8;

/// Is this one of the DES / DES3 cipher mechanisms?
pub fn is_des(m: CK_MECHANISM_TYPE) -> bool {
    matches!(
        m,
        CKM_DES3_ECB
            | CKM_DES3_CBC
            | CKM_DES3_CBC_PAD
            | CKM_DES_ECB
            | CKM_DES_CBC
            | CKM_DES_CBC_PAD
    )
}

pub struct DesOp {
    encrypt: bool,
    key: Zeroizing<Vec<u8>>,
    alg: &'static cipher::Algorithm,
    /// CBC: the IV of the next block; ECB: none.
    chain: Option<[u8; BLOCK]>,
    padded: bool,
    pending: Zeroizing<Vec<u8>>,
}

pub fn init(mech: &Mechanism, key: &Key, encrypt: bool) -> Result<Box<dyn Cipher>> {
    let triple = matches!(mech.mech, CKM_DES3_ECB | CKM_DES3_CBC | CKM_DES3_CBC_PAD);
    let (alg, want, len) = if triple {
        (&DES_EDE3_FOR_LEGACY_USE_ONLY, CKK_DES3, 24)
    } else {
        (&DES_FOR_LEGACY_USE_ONLY, CKK_DES, 8)
    };
    let value = match key {
        Key::Secret { key_type, value } if *key_type == want => value,
        _ => return Err(err(CKR_KEY_TYPE_INCONSISTENT)),
    };
    if value.len() != len {
        return Err(err(CKR_KEY_SIZE_RANGE));
    }
    let ecb = matches!(mech.mech, CKM_DES3_ECB | CKM_DES_ECB);
    let chain = match (&mech.param, ecb) {
        (MechParam::None, true) => None,
        (MechParam::Bytes(iv), false) if iv.len() == BLOCK => iv.as_slice().try_into().ok(),
        _ => {
            return Err(Error::logged(
                CKR_MECHANISM_PARAM_INVALID,
                "DES ECB takes no parameter, DES CBC an 8-byte IV",
            ))
        }
    };
    Ok(Box::new(DesOp {
        encrypt,
        key: Zeroizing::new(value.to_vec()),
        alg,
        chain,
        padded: matches!(mech.mech, CKM_DES3_CBC_PAD | CKM_DES_CBC_PAD),
        pending: Zeroizing::new(Vec::new()),
    }))
}

impl DesOp {
    /// ECB or CBC over whole blocks, advancing the CBC chain.
    fn raw(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let mut buf = data.to_vec();
        if buf.is_empty() {
            return Ok(buf);
        }
        let key =
            || UnboundCipherKey::new(self.alg, &self.key).map_err(|_| err(CKR_KEY_SIZE_RANGE));
        let failed = |_| err(CKR_FUNCTION_FAILED);
        match (self.chain, self.encrypt) {
            (None, true) => cipher::EncryptingKey::ecb(key()?)
                .map_err(failed)?
                .less_safe_encrypt(&mut buf, EncryptionContext::None)
                .map(drop),
            (None, false) => cipher::DecryptingKey::ecb(key()?)
                .map_err(failed)?
                .decrypt(&mut buf, DecryptionContext::None)
                .map(drop),
            (Some(iv), true) => cipher::EncryptingKey::cbc(key()?)
                .map_err(failed)?
                .less_safe_encrypt(&mut buf, EncryptionContext::Iv64(iv.into()))
                .map(drop),
            (Some(iv), false) => cipher::DecryptingKey::cbc(key()?)
                .map_err(failed)?
                .decrypt(&mut buf, DecryptionContext::Iv64(iv.into()))
                .map(drop),
        }
        .map_err(failed)?;
        if self.chain.is_some() {
            let ct = if self.encrypt { &buf } else { data };
            self.chain = ct[ct.len() - BLOCK..].try_into().ok();
        }
        Ok(buf)
    }

    /// How many of `available` bytes an update processes now.
    fn take(&self, available: usize) -> usize {
        let keep = match available % BLOCK {
            0 if self.padded && !self.encrypt => available.min(BLOCK),
            r => r,
        };
        available - keep
    }

    fn len_error(&self) -> Error {
        err(if self.encrypt {
            CKR_DATA_LEN_RANGE
        } else {
            CKR_ENCRYPTED_DATA_LEN_RANGE
        })
    }
}

impl Cipher for DesOp {
    fn output_len(&self, n: usize) -> usize {
        if self.padded && self.encrypt {
            (n / BLOCK + 1) * BLOCK
        } else {
            n
        }
    }
    fn oneshot(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        let mut out = self.update(input)?;
        out.extend(self.finish()?);
        Ok(out)
    }
    fn update_len(&self, n: usize) -> usize {
        self.take(self.pending.len() + n)
    }
    fn update(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        let mut data = std::mem::take(&mut self.pending);
        data.try_reserve(input.len())
            .map_err(|_| err(CKR_HOST_MEMORY))?;
        data.extend_from_slice(input);
        let take = self.take(data.len());
        let out = self.raw(&data[..take])?;
        self.pending = Zeroizing::new(data[take..].to_vec());
        Ok(out)
    }
    fn final_len(&self) -> usize {
        if self.padded && self.encrypt {
            BLOCK
        } else {
            self.pending.len()
        }
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        let rest = std::mem::take(&mut self.pending);
        match (self.padded, self.encrypt) {
            (true, true) => {
                // PKCS#7: 1..8 bytes, each the count.
                let pad = BLOCK - rest.len() % BLOCK;
                let mut last = rest.to_vec();
                last.resize(rest.len() + pad, pad as u8);
                self.raw(&last)
            }
            (true, false) => {
                if rest.len() != BLOCK {
                    return Err(self.len_error());
                }
                let mut last = self.raw(&rest)?;
                let pad = *last.last().unwrap_or(&0) as usize;
                if pad == 0 || pad > BLOCK || last[BLOCK - pad..].iter().any(|b| *b as usize != pad)
                {
                    return Err(err(CKR_ENCRYPTED_DATA_INVALID));
                }
                last.truncate(BLOCK - pad);
                Ok(last)
            }
            _ if !rest.is_empty() => Err(self.len_error()),
            _ => Ok(Vec::new()),
        }
    }
}

/// DES / DES3 key values with odd parity in each byte (FIPS 46-3), as key generation
/// makes them.
pub fn with_odd_parity(mut v: Zeroizing<Vec<u8>>) -> Zeroizing<Vec<u8>> {
    for b in v.iter_mut() {
        let high = *b & 0xfe;
        *b = high | u8::from(high.count_ones() % 2 == 0);
    }
    v
}
