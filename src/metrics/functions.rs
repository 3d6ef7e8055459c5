//! The `function` label: PKCS#11 function names mapped to a dense index at record time,
//! without allocating or locking.
//!
//! Every function of PKCS#11 3.0 (and the 3.2 additions) has a fixed index; a lookup hashes
//! the first and last eight bytes of the name into a 256-entry table built at compile time
//! and compares one or two names. A name outside the list (a caller passing something else)
//! takes one of `EXTRA` dynamic places, claimed once through a `OnceLock`; past those, it
//! is counted as `function="other"`.
//!
//! In front of that, a direct-mapped cache keyed by the name's address and length: a
//! `&'static str` never moves or changes, so the same (address, length) is the same name,
//! and each call site's literal is found with one load. A cache place keeps the first name
//! stored there (no thrashing between two call sites that collide; the later one just
//! takes the table path).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The names with a fixed index, in the order of the spec's function lists.
pub(crate) const KNOWN: [&str; 104] = [
    // 2.40
    "C_Initialize",
    "C_Finalize",
    "C_GetInfo",
    "C_GetFunctionList",
    "C_GetSlotList",
    "C_GetSlotInfo",
    "C_GetTokenInfo",
    "C_GetMechanismList",
    "C_GetMechanismInfo",
    "C_InitToken",
    "C_InitPIN",
    "C_SetPIN",
    "C_OpenSession",
    "C_CloseSession",
    "C_CloseAllSessions",
    "C_GetSessionInfo",
    "C_GetOperationState",
    "C_SetOperationState",
    "C_Login",
    "C_Logout",
    "C_CreateObject",
    "C_CopyObject",
    "C_DestroyObject",
    "C_GetObjectSize",
    "C_GetAttributeValue",
    "C_SetAttributeValue",
    "C_FindObjectsInit",
    "C_FindObjects",
    "C_FindObjectsFinal",
    "C_EncryptInit",
    "C_Encrypt",
    "C_EncryptUpdate",
    "C_EncryptFinal",
    "C_DecryptInit",
    "C_Decrypt",
    "C_DecryptUpdate",
    "C_DecryptFinal",
    "C_DigestInit",
    "C_Digest",
    "C_DigestUpdate",
    "C_DigestKey",
    "C_DigestFinal",
    "C_SignInit",
    "C_Sign",
    "C_SignUpdate",
    "C_SignFinal",
    "C_SignRecoverInit",
    "C_SignRecover",
    "C_VerifyInit",
    "C_Verify",
    "C_VerifyUpdate",
    "C_VerifyFinal",
    "C_VerifyRecoverInit",
    "C_VerifyRecover",
    "C_DigestEncryptUpdate",
    "C_DecryptDigestUpdate",
    "C_SignEncryptUpdate",
    "C_DecryptVerifyUpdate",
    "C_GenerateKey",
    "C_GenerateKeyPair",
    "C_WrapKey",
    "C_UnwrapKey",
    "C_DeriveKey",
    "C_SeedRandom",
    "C_GenerateRandom",
    "C_GetFunctionStatus",
    "C_CancelFunction",
    "C_WaitForSlotEvent",
    // 3.0
    "C_GetInterfaceList",
    "C_GetInterface",
    "C_LoginUser",
    "C_SessionCancel",
    "C_MessageEncryptInit",
    "C_EncryptMessage",
    "C_EncryptMessageBegin",
    "C_EncryptMessageNext",
    "C_MessageEncryptFinal",
    "C_MessageDecryptInit",
    "C_DecryptMessage",
    "C_DecryptMessageBegin",
    "C_DecryptMessageNext",
    "C_MessageDecryptFinal",
    "C_MessageSignInit",
    "C_SignMessage",
    "C_SignMessageBegin",
    "C_SignMessageNext",
    "C_MessageSignFinal",
    "C_MessageVerifyInit",
    "C_VerifyMessage",
    "C_VerifyMessageBegin",
    "C_VerifyMessageNext",
    "C_MessageVerifyFinal",
    // 3.2
    "C_EncapsulateKey",
    "C_DecapsulateKey",
    "C_VerifySignatureInit",
    "C_VerifySignature",
    "C_VerifySignatureUpdate",
    "C_VerifySignatureFinal",
    "C_GetSessionValidationFlags",
    "C_AsyncComplete",
    "C_AsyncGetID",
    "C_AsyncJoin",
    "C_WrapKeyAuthenticated",
    "C_UnwrapKeyAuthenticated",
];

/// Dynamic places for names outside `KNOWN`.
pub(crate) const EXTRA: usize = 16;
/// The index of `function="other"`, where names go once the dynamic places are taken.
pub(crate) const OTHER: usize = KNOWN.len() + EXTRA;
/// Number of function indices (the size of each replica's row of cells).
pub(crate) const COUNT: usize = OTHER + 1;
// Indices fit the cache's low byte.
const _: () = assert!(COUNT < 0xFF);

const EMPTY: u8 = u8::MAX;
const TABLE_BITS: u32 = 8;
const TABLE_MASK: usize = (1 << TABLE_BITS) - 1;

/// Mixes the length and the first and last eight bytes of a name (little-endian, zero
/// padded). `const` so that the table is built by the compiler with the same function.
const fn hash(b: &[u8]) -> usize {
    let n = b.len();
    let mut head: u64 = 0;
    let mut i = 0;
    while i < 8 && i < n {
        head |= (b[i] as u64) << (8 * i);
        i += 1;
    }
    let start = n.saturating_sub(8);
    let mut tail: u64 = 0;
    let mut j = start;
    while j < n {
        tail |= (b[j] as u64) << (8 * (j - start));
        j += 1;
    }
    let x = (head ^ tail.rotate_left(23) ^ (n as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> (64 - TABLE_BITS)) as usize
}

/// `hash` for run time: the same value, with two unaligned loads for names of 8 bytes
/// or more (every PKCS#11 name but `C_Sign` and `C_Login`).
#[inline]
fn hash_fast(b: &[u8]) -> usize {
    let n = b.len();
    match (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(h), Some(t)) => {
            let head = u64::from_le_bytes(*h);
            let tail = u64::from_le_bytes(*t);
            let x = (head ^ tail.rotate_left(23) ^ (n as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (x >> (64 - TABLE_BITS)) as usize
        }
        _ => hash(b),
    }
}

/// Open addressing, linear probing; `EMPTY` ends a probe.
static TABLE: [u8; 1 << TABLE_BITS] = {
    let mut t = [EMPTY; 1 << TABLE_BITS];
    let mut i = 0;
    while i < KNOWN.len() {
        let mut h = hash(KNOWN[i].as_bytes());
        while t[h] != EMPTY {
            h = (h + 1) & TABLE_MASK;
        }
        t[h] = i as u8;
        i += 1;
    }
    t
};

static EXTRA_NAMES: [OnceLock<&'static str>; EXTRA] = [const { OnceLock::new() }; EXTRA];

const CACHE_BITS: u32 = 9;
/// `address << 16 | length << 8 | index`; 0 = empty.
static CACHE: [AtomicU64; 1 << CACHE_BITS] = [const { AtomicU64::new(0) }; 1 << CACHE_BITS];

/// The index of a function name (never fails: unknown names get a dynamic place or OTHER).
#[inline]
pub(crate) fn index(name: &'static str) -> usize {
    let addr = name.as_ptr() as u64;
    let len = name.len() as u64;
    if addr >= 1 << 48 || len > 0xFF {
        return lookup(name);
    }
    let tag = addr << 16 | len << 8;
    let place = &CACHE[(((addr ^ (addr >> 17)).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        >> (64 - CACHE_BITS)) as usize];
    let e = place.load(Ordering::Relaxed);
    if e & !0xFF == tag && e != 0 {
        return (e & 0xFF) as usize;
    }
    let i = lookup(name);
    if e == 0 {
        let _ = place.compare_exchange(0, tag | i as u64, Ordering::Relaxed, Ordering::Relaxed);
    }
    i
}

/// `index` without the cache.
#[inline]
pub(crate) fn lookup(name: &'static str) -> usize {
    let mut h = hash_fast(name.as_bytes());
    loop {
        let e = TABLE[h];
        if e == EMPTY {
            return extra(name);
        }
        if KNOWN[e as usize] == name {
            return e as usize;
        }
        h = (h + 1) & TABLE_MASK;
    }
}

#[cold]
fn extra(name: &'static str) -> usize {
    for (i, place) in EXTRA_NAMES.iter().enumerate() {
        let taken = match place.get() {
            Some(n) => *n,
            None => {
                // Racing claimers: one wins, the others see its name.
                let _ = place.set(name);
                match place.get() {
                    Some(n) => *n,
                    None => continue,
                }
            }
        };
        if taken == name {
            return KNOWN.len() + i;
        }
    }
    OTHER
}

/// The label value of an index.
pub(crate) fn name(index: usize) -> &'static str {
    if let Some(n) = KNOWN.get(index) {
        return n;
    }
    match index
        .checked_sub(KNOWN.len())
        .and_then(|i| EXTRA_NAMES.get(i))
    {
        Some(place) => place.get().copied().unwrap_or("other"),
        None => "other",
    }
}
