//! The SP 800-108 KDFs of PKCS#11 3.0 §2.42: counter, feedback and double-pipeline mode,
//! with HMAC (SHA-1, SHA-2) or AES-CMAC as the PRF (the soft token's own MACs, `sign.rs`).
//!
//! The PRF input is the consumer's data fields concatenated in their order (§2.42
//! "Constructing PRF Input Data"); counters and the DKM length are written in the width
//! (bits, whole bytes) and byte order their format names. Each derived key starts on a
//! fresh PRF output segment (§2.42 "Deriving Additional Keys": keys come from disjoint
//! segments), so the DKM length "sum of segments" counts whole segments.

use super::keys::Key;
use super::param_invalid;
use crate::core::attr::{Attrs, AttrsExt};
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{CounterFormat, DkmFormat, KbkdfParams, Mechanism, PrfData};
use crate::core::op::Signer;
use cryptoki_sys::*;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The PRFs §2.42 lists that the soft token has (SHA-3 HMAC and DES3-CMAC it has not).
const PRFS: [CK_MECHANISM_TYPE; 6] = [
    CKM_SHA_1_HMAC,
    CKM_SHA224_HMAC,
    CKM_SHA256_HMAC,
    CKM_SHA384_HMAC,
    CKM_SHA512_HMAC,
    CKM_AES_CMAC,
];

/// How the data fields are filled in at iteration `i`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Counter,
    Feedback,
    DoublePipeline,
}

/// The length in bytes of a key a KBKDF makes from `template`: CKA_VALUE_LEN, or the
/// fixed length of its key type (DES, DES2, DES3); `CKR_TEMPLATE_INCOMPLETE` when neither
/// says (§2.42 derives keys of a length known ahead of time).
pub fn key_len(template: &Attrs) -> Result<usize> {
    let kt = template.ulong(CKA_KEY_TYPE).unwrap_or(CKK_GENERIC_SECRET);
    let fixed = match kt {
        CKK_DES => Some(8),
        CKK_DES2 => Some(16),
        CKK_DES3 => Some(24),
        _ => None,
    };
    match (template.ulong(CKA_VALUE_LEN), fixed) {
        (Some(n), Some(f)) if n as usize != f => Err(err(CKR_TEMPLATE_INCONSISTENT)),
        (Some(0), _) => Err(Error::logged(
            CKR_TEMPLATE_INCONSISTENT,
            "SP 800-108: CKA_VALUE_LEN 0",
        )),
        (Some(n), _) if n > 4096 => Err(err(CKR_KEY_SIZE_RANGE)),
        (Some(n), _) => Ok(n as usize),
        (None, Some(f)) => Ok(f),
        (None, None) => Err(Error::logged(
            CKR_TEMPLATE_INCOMPLETE,
            "SP 800-108: the derived key's template needs CKA_VALUE_LEN",
        )),
    }
}

/// `v` in `width_bits` (a multiple of 8, checked before) in the byte order asked for;
/// `None` when it does not fit.
fn encode(v: u64, width_bits: CK_ULONG, little_endian: bool) -> Option<Vec<u8>> {
    let n = (width_bits / 8) as usize;
    if n < 8 && v >> (8 * n) != 0 {
        return None;
    }
    let be = v.to_be_bytes();
    let mut out = be[8 - n..].to_vec();
    if little_endian {
        out.reverse();
    }
    Some(out)
}

fn counter_ok(c: &CounterFormat) -> bool {
    // SP 800-108 r, as the spec's counter width: 8, 16, 24 or 32 bits.
    matches!(c.width_bits, 8 | 16 | 24 | 32)
}

fn dkm_ok(f: &DkmFormat) -> bool {
    matches!(
        f.method,
        CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS | CK_SP800_108_DKM_LENGTH_SUM_OF_SEGMENTS
    ) && f.width_bits.is_multiple_of(8)
        && (8..=64).contains(&f.width_bits)
}

/// The §2.42 field rules of each mode: one iteration variable (counter mode: with its
/// counter format; chained modes: without), CK_SP800_108_COUNTER only in the chained modes
/// and at most once, at most one DKM length; widths the formats allow.
fn check_fields(mode: Mode, data: &[PrfData]) -> Result<()> {
    let count = |f: fn(&PrfData) -> bool| data.iter().filter(|d| f(d)).count();
    if count(|d| matches!(d, PrfData::Iteration(_))) != 1 {
        return Err(param_invalid(
            "SP 800-108: exactly one iteration variable is required",
        ));
    }
    if count(|d| matches!(d, PrfData::DkmLength(_))) > 1 {
        return Err(param_invalid("SP 800-108: more than one DKM length"));
    }
    let counters = count(|d| matches!(d, PrfData::Counter(_)));
    if (mode == Mode::Counter && counters > 0) || counters > 1 {
        return Err(param_invalid(
            "SP 800-108: CK_SP800_108_COUNTER is invalid in counter mode, once at most otherwise",
        ));
    }
    for d in data {
        let ok = match d {
            PrfData::Iteration(Some(c)) => mode == Mode::Counter && counter_ok(c),
            PrfData::Iteration(None) => mode != Mode::Counter,
            PrfData::Counter(c) => counter_ok(c),
            PrfData::DkmLength(f) => dkm_ok(f),
            PrfData::Bytes(_) => true,
        };
        if !ok {
            return Err(param_invalid(
                "SP 800-108: a data field's format does not suit the mode (iteration \
                 variable, counter width 8/16/24/32, DKM width 8..64 bits, DKM method)",
            ));
        }
    }
    Ok(())
}

/// The MAC of the base key that serves as the PRF.
fn prf(prf: CK_MECHANISM_TYPE, base: &Arc<Key>) -> Result<Box<dyn Signer>> {
    if !PRFS.contains(&prf) {
        return Err(param_invalid("SP 800-108: PRF type not supported"));
    }
    super::sign::sign_init(&Mechanism::new(prf), base)
}

/// The derived keying material of a `CKM_SP800_108_*` derivation: one value per entry of
/// `key_lens` (bytes; the main key first, then the additional keys), each from its own
/// PRF output segments.
pub fn derive(
    mech: CK_MECHANISM_TYPE,
    p: &KbkdfParams,
    base: &Arc<Key>,
    key_lens: &[usize],
) -> Result<Vec<Zeroizing<Vec<u8>>>> {
    let mode = match mech {
        CKM_SP800_108_COUNTER_KDF => Mode::Counter,
        CKM_SP800_108_FEEDBACK_KDF => Mode::Feedback,
        CKM_SP800_108_DOUBLE_PIPELINE_KDF => Mode::DoublePipeline,
        _ => return Err(err(CKR_MECHANISM_INVALID)),
    };
    check_fields(mode, &p.data)?;
    if mode != Mode::Feedback && !p.iv.is_empty() {
        return Err(param_invalid("SP 800-108: an IV is feedback mode's only"));
    }
    let mut mac = prf(p.prf, base)?;
    let h = mac.output_len();
    let segments: Vec<usize> = key_lens.iter().map(|n| n.div_ceil(h)).collect();
    let n = segments.iter().sum::<usize>() as u64;
    // SP 800-108: at most 2^r - 1 iterations (r: the counter's width, 32 when none).
    let r = p
        .data
        .iter()
        .find_map(|d| match d {
            PrfData::Iteration(Some(c)) | PrfData::Counter(c) => Some(c.width_bits),
            _ => None,
        })
        .unwrap_or(32);
    if n >= 1u64 << r {
        return Err(Error::logged(
            CKR_KEY_SIZE_RANGE,
            "SP 800-108: more output than the counter width allows",
        ));
    }
    let keys_bits = key_lens.iter().sum::<usize>() as u64 * 8;
    let dkm_bits = |f: &DkmFormat| match f.method {
        CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS => keys_bits,
        _ => n * h as u64 * 8,
    };
    // Every field but the chained value, encoded once (the counter per iteration).
    let field = |d: &PrfData, i: u64| -> Result<Option<Vec<u8>>> {
        let too_wide = || Error::logged(CKR_KEY_SIZE_RANGE, "SP 800-108: value exceeds its width");
        Ok(match d {
            PrfData::Iteration(Some(c)) | PrfData::Counter(c) => {
                Some(encode(i, c.width_bits, c.little_endian).ok_or_else(too_wide)?)
            }
            PrfData::DkmLength(f) => {
                Some(encode(dkm_bits(f), f.width_bits, f.little_endian).ok_or_else(too_wide)?)
            }
            PrfData::Bytes(b) => Some(b.clone()),
            PrfData::Iteration(None) => None,
        })
    };
    // Double pipeline: A(0) is the fields without iteration variable and counter (§2.42).
    let mut chained: Zeroizing<Vec<u8>> = Zeroizing::new(match mode {
        Mode::Feedback => p.iv.clone(),
        Mode::DoublePipeline => {
            let mut a0 = Vec::new();
            for d in p.data.iter().filter(|d| !matches!(d, PrfData::Counter(_))) {
                if let Some(v) = field(d, 0)? {
                    a0.extend(v);
                }
            }
            a0
        }
        Mode::Counter => Vec::new(),
    });
    let mut stream = Zeroizing::new(Vec::with_capacity(n as usize * h));
    for i in 1..=n {
        if mode == Mode::DoublePipeline {
            chained = Zeroizing::new(mac.oneshot(&chained)?);
        }
        let mut input = Zeroizing::new(Vec::new());
        for d in &p.data {
            match field(d, i)? {
                Some(v) => input.extend(v),
                None => input.extend_from_slice(&chained),
            }
        }
        let k = Zeroizing::new(mac.oneshot(&input)?);
        stream.extend_from_slice(&k);
        if mode == Mode::Feedback {
            chained = k;
        }
    }
    let mut at = 0;
    Ok(key_lens
        .iter()
        .zip(&segments)
        .map(|(len, segs)| {
            let v = Zeroizing::new(stream[at..at + len].to_vec());
            at += segs * h;
            v
        })
        .collect())
}
