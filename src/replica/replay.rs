//! Multi-part replay: what a group operation keeps so that losing its replica between two
//! Updates does not reach the consumer. The [`Journal`] holds the input of the Updates made
//! so far (up to the slot's `replay_limit`, zeroized on drop: it may be plaintext) and a
//! SHA-256 of the output already handed out. On a failover `ops.rs` re-initialises the
//! operation on the next replica and [`Journal::replay`] feeds it that input; the output
//! it gives again is held back and compared, byte for byte through the hash, with what the
//! consumer already has ([`Journal::hand_out`]), so that only new output reaches the
//! consumer and a replica that computes something else is a `CKR_DEVICE_ERROR`, never
//! wrong data.
//!
//! Signatures, MACs, digests and verifications give no output before their final call, so
//! every mechanism of theirs replays. Encryption and decryption replay only in the modes
//! whose output for the data already seen is fixed by the key and the parameters (see
//! [`cipher_refusal`]); an IV the token chose cannot be chosen again.

use super::Group;
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{MechParam, Mechanism};
use crate::core::op::{Cipher, Signer, Verifier};
use aws_lc_rs::digest;
use cryptoki_sys::*;
use zeroize::Zeroizing;

/// Default `replay_limit`: the input kept per operation.
pub use crate::config::DEFAULT_REPLAY_LIMIT as DEFAULT_LIMIT;

/// At most this much input goes to a replica in one replayed Update (a remote replica's
/// request stays small whatever the consumer's Updates were).
const REPLAY_CHUNK: usize = 64 << 10;

/// A replica's own operation that a journal can be replayed into.
pub(super) trait Feed {
    /// One Update; a cipher's output, nothing for the others.
    fn feed(&mut self, input: &[u8]) -> Result<Vec<u8>>;
    /// The token chose the IV, and output made with it may have been handed out.
    fn chose_iv(&self) -> bool {
        false
    }
}

impl Feed for Box<dyn Cipher> {
    fn feed(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        self.update(input)
    }
    fn chose_iv(&self) -> bool {
        self.produced_iv().is_some()
    }
}

impl Feed for Box<dyn Signer> {
    fn feed(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        self.update(input).map(|()| Vec::new())
    }
}

impl Feed for Box<dyn Verifier> {
    fn feed(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        self.update(input).map(|()| Vec::new())
    }
}

/// Why an encryption or decryption with `mech` cannot be replayed; `None` when it can:
/// AES and DES3 in ECB, CBC, CBC-PAD, CTR, and AES-GCM with an IV the caller gave.
pub(super) fn cipher_refusal(mech: &Mechanism) -> Option<String> {
    match (mech.mech, &mech.param) {
        (CKM_AES_GCM, MechParam::Gcm { iv, .. }) if !iv.is_empty() => None,
        (CKM_AES_GCM, _) => Some("AES-GCM without a caller-supplied IV".into()),
        (
            CKM_AES_ECB | CKM_AES_CBC | CKM_AES_CBC_PAD | CKM_AES_CTR | CKM_DES3_ECB | CKM_DES3_CBC
            | CKM_DES3_CBC_PAD,
            _,
        ) => None,
        (m, _) => Some(format!(
            "{} is not a mechanism whose output replays",
            crate::core::mechname::names(&[m])
        )),
    }
}

/// The input of a multi-part operation so far and a fingerprint of its output.
pub(super) struct Journal {
    limit: usize,
    /// Why the operation can no longer be replayed, once it cannot.
    refused: Option<String>,
    /// The Updates' input, in order. Grown by hand so that no copy is left unzeroized.
    input: Zeroizing<Vec<u8>>,
    updates: usize,
    /// SHA-256 of the output handed out so far, and its length.
    out_hash: digest::Context,
    out_len: usize,
    /// After a replay: its output, not yet matched against what was handed out (a replica
    /// may hold back a partial block at other boundaries than the one that failed).
    resync: Option<Zeroizing<Vec<u8>>>,
}

/// The result of a replay that gave other output than the consumer has.
pub(super) struct Mismatch;

impl Journal {
    /// A journal keeping up to `limit` bytes of input (0: replay is off).
    pub fn new(limit: usize) -> Journal {
        Journal {
            limit,
            refused: (limit == 0).then(|| "replay_limit = 0".to_string()),
            input: Zeroizing::new(Vec::new()),
            updates: 0,
            out_hash: digest::Context::new(&digest::SHA256),
            out_len: 0,
            resync: None,
        }
    }

    /// The operation cannot be replayed from now on: forget its input.
    pub fn refuse(&mut self, why: String) {
        if self.refused.is_none() {
            self.refused = Some(why);
        }
        self.input = Zeroizing::new(Vec::new());
        self.resync = None;
    }

    /// Why a replay is impossible, if it is.
    pub fn refusal(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// Bytes of input kept, and the Updates they came in.
    pub fn size(&self) -> (usize, usize) {
        (self.input.len(), self.updates)
    }

    /// Records the input of an Update that succeeded.
    pub fn note(&mut self, data: &[u8]) {
        if self.refused.is_some() {
            return;
        }
        let need = self.input.len() + data.len();
        if need > self.limit {
            self.refuse(format!(
                "its input passed replay_limit ({} bytes)",
                self.limit
            ));
            return;
        }
        append(&mut self.input, data, self.limit);
        self.updates += 1;
    }

    /// Feeds the kept input to `op`, a fresh operation on another replica; the output it
    /// gives is held back for [`Journal::hand_out`] to check.
    pub fn replay<T: Feed>(&mut self, op: &mut T) -> Result<()> {
        if self.refused.is_some() {
            return Err(err(CKR_DEVICE_ERROR));
        }
        let mut again = Zeroizing::new(Vec::new());
        for chunk in self.input.chunks(REPLAY_CHUNK) {
            let out = Zeroizing::new(op.feed(chunk)?);
            append(&mut again, &out, usize::MAX);
        }
        self.resync = Some(again);
        Ok(())
    }

    /// What the consumer gets of `out`, the output of a call of the operation (`last`: its
    /// final call): after a replay, the output the consumer already has is checked and
    /// dropped. Output handed out is added to the fingerprint.
    pub fn hand_out(&mut self, out: Vec<u8>, last: bool) -> std::result::Result<Vec<u8>, Mismatch> {
        let out = match self.resync.take() {
            None => out,
            Some(mut replayed) => {
                append(&mut replayed, &Zeroizing::new(out), usize::MAX);
                if replayed.len() < self.out_len {
                    if last {
                        return Err(Mismatch);
                    }
                    // Still short of what was handed out: nothing new yet.
                    self.resync = Some(replayed);
                    return Ok(Vec::new());
                }
                let had = self.out_hash.clone().finish();
                let again = digest::digest(&digest::SHA256, &replayed[..self.out_len]);
                if had.as_ref() != again.as_ref() {
                    return Err(Mismatch);
                }
                replayed[self.out_len..].to_vec()
            }
        };
        if self.refused.is_none() && !last {
            self.out_hash.update(&out);
            self.out_len += out.len();
        }
        Ok(out)
    }
}

/// Before a failover in the middle of a multi-part operation: `Ok` when it can be
/// replayed; else the consumer's single `CKR_DEVICE_ERROR`, logged with why.
pub(super) fn check_replayable<T: Feed>(
    g: &Group,
    from: usize,
    cause: &Error,
    j: &Journal,
    op: &T,
) -> Result<()> {
    let why = match j.refusal() {
        Some(why) => why.to_string(),
        None if op.chose_iv() => "the token chose its IV".to_string(),
        None => return Ok(()),
    };
    log::warn!(
        "slot {}: a multi-part operation lost replica {} ({cause}) and cannot be replayed ({why}): answered CKR_DEVICE_ERROR once",
        g.slot,
        g.replicas[from].name
    );
    Err(err(CKR_DEVICE_ERROR))
}

/// The replay of a multi-part operation found no replica to run on: the consumer's
/// single `CKR_DEVICE_ERROR`, logged with the last answer.
pub(super) fn failed(g: &Group, from: usize, last: &Error) -> Error {
    log::warn!(
        "slot {}: a multi-part operation lost replica {} and its replay failed ({last}): answered CKR_DEVICE_ERROR once",
        g.slot,
        g.replicas[from].name
    );
    err(CKR_DEVICE_ERROR)
}

/// How a failover carried the operation over, for its log line.
pub(super) fn how(multipart: bool, j: &Journal) -> String {
    if multipart {
        let (bytes, updates) = j.size();
        format!("replayed {bytes} bytes of {updates} updates")
    } else {
        "replayed".to_string()
    }
}

/// A replay on replica `at` gave other output than the consumer already has.
pub(super) fn mismatch(g: &Group, at: usize) -> Error {
    log::error!(
        "slot {}: the replay of a multi-part operation on replica {} gave output that differs from what the consumer already has: answered CKR_DEVICE_ERROR (do the replicas hold the same key?)",
        g.slot,
        g.replicas[at].name
    );
    err(CKR_DEVICE_ERROR)
}

/// Appends `data` to `buf`, growing it by hand (to at most `cap` when that is enough):
/// `Vec`'s own growth would free the old buffer without zeroizing it.
fn append(buf: &mut Zeroizing<Vec<u8>>, data: &[u8], cap: usize) {
    let need = buf.len() + data.len();
    if need > buf.capacity() {
        let size = need.max(2 * buf.capacity()).min(cap.max(need));
        let mut bigger = Zeroizing::new(Vec::with_capacity(size));
        bigger.extend_from_slice(buf);
        *buf = bigger;
    }
    buf.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream cipher over XOR 0x5a that holds back `hold` bytes until the final call
    /// (as a CBC decryption holds back its last block).
    struct Xor {
        hold: usize,
        held: Vec<u8>,
        flip: bool,
    }

    impl Feed for Xor {
        fn feed(&mut self, input: &[u8]) -> Result<Vec<u8>> {
            self.held.extend_from_slice(input);
            let give = self.held.len().saturating_sub(self.hold);
            Ok(self
                .held
                .drain(..give)
                .map(|b| b ^ if self.flip { 0xa5 } else { 0x5a })
                .collect())
        }
    }

    fn xor(hold: usize) -> Xor {
        Xor {
            hold,
            held: Vec::new(),
            flip: false,
        }
    }

    /// Runs `parts` through `op`, journaled as `ops.rs` does.
    fn run(j: &mut Journal, op: &mut Xor, parts: &[&[u8]]) -> Vec<u8> {
        let mut got = Vec::new();
        for p in parts {
            let out = op.feed(p).unwrap();
            got.extend(j.hand_out(out, false).ok().unwrap());
            j.note(p);
        }
        got
    }

    #[test]
    fn a_replay_gives_only_the_output_the_consumer_does_not_have() {
        let mut j = Journal::new(DEFAULT_LIMIT);
        let mut a = xor(0);
        let mut got = run(&mut j, &mut a, &[b"hello ", b"wor"]);
        assert_eq!(j.size(), (9, 2));
        let mut b = xor(0);
        j.replay(&mut b).unwrap();
        got.extend(j.hand_out(b.feed(b"ld").unwrap(), false).ok().unwrap());
        let want: Vec<u8> = b"hello world".iter().map(|c| c ^ 0x5a).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_replica_that_holds_back_more_or_less_still_gives_each_byte_once() {
        for (first, second) in [(0, 3), (3, 0), (2, 5)] {
            let mut j = Journal::new(DEFAULT_LIMIT);
            let mut a = xor(first);
            let mut got = run(&mut j, &mut a, &[b"abcdefgh", b"ijk"]);
            let mut b = xor(second);
            j.replay(&mut b).unwrap();
            got.extend(j.hand_out(b.feed(b"lmn").unwrap(), false).ok().unwrap());
            let rest = std::mem::take(&mut b.held);
            let tail: Vec<u8> = rest.iter().map(|c| c ^ 0x5a).collect();
            got.extend(j.hand_out(tail, true).ok().unwrap());
            let want: Vec<u8> = b"abcdefghijklmn".iter().map(|c| c ^ 0x5a).collect();
            assert_eq!(got, want, "hold {first} then {second}");
        }
    }

    #[test]
    fn other_output_from_the_new_replica_is_a_mismatch() {
        let mut j = Journal::new(DEFAULT_LIMIT);
        let mut a = xor(0);
        run(&mut j, &mut a, &[b"secret data"]);
        let mut b = xor(0);
        b.flip = true;
        j.replay(&mut b).unwrap();
        let out = b.feed(b"more").unwrap();
        assert!(j.hand_out(out, false).is_err());
    }

    #[test]
    fn input_past_the_limit_turns_replay_off_and_forgets_it() {
        let mut j = Journal::new(10);
        j.note(b"12345");
        j.note(b"67890");
        assert!(j.refusal().is_none());
        j.note(b"x");
        assert!(j.refusal().unwrap().contains("replay_limit (10 bytes)"));
        assert_eq!(j.size().0, 0);
        assert_eq!(
            j.replay(&mut xor(0)).map_err(|e| e.rv()),
            Err(CKR_DEVICE_ERROR)
        );
        let off = Journal::new(0);
        assert_eq!(off.refusal(), Some("replay_limit = 0"));
    }

    /// docs/failover.md: "the bytes fed so far (at most `replay_limit`) plus about 170 bytes".
    #[test]
    fn an_operation_costs_its_input_and_a_few_hundred_bytes() {
        let size = std::mem::size_of::<Journal>();
        eprintln!("a journal: {size} bytes");
        assert!(size <= 400, "{size} bytes");
        let mut j = Journal::new(DEFAULT_LIMIT);
        for _ in 0..100 {
            j.note(&[7; 1000]);
        }
        assert!(j.input.capacity() <= 2 * 100_000, "{}", j.input.capacity());
    }

    #[test]
    fn only_modes_with_fixed_output_replay() {
        let gcm = |iv: Vec<u8>| {
            Mechanism::with(
                CKM_AES_GCM,
                MechParam::Gcm {
                    iv,
                    iv_bits: 96,
                    aad: Vec::new(),
                    tag_bits: 128,
                },
            )
        };
        assert!(cipher_refusal(&gcm(vec![1; 12])).is_none());
        assert!(cipher_refusal(&gcm(Vec::new())).is_some());
        assert!(cipher_refusal(&Mechanism::new(CKM_AES_CBC_PAD)).is_none());
        assert!(cipher_refusal(&Mechanism::new(CKM_DES3_CBC)).is_none());
        let oaep = cipher_refusal(&Mechanism::new(CKM_RSA_PKCS_OAEP)).unwrap();
        assert!(oaep.contains("RSA_PKCS_OAEP"), "{oaep}");
    }
}
