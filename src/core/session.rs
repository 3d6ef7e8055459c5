//! A session and the state machines of its operations (PKCS#11 §5.2: one operation of each
//! kind at a time; a length query or `CKR_BUFFER_TOO_SMALL` keeps it alive; any other
//! error, and success, end it).

use crate::core::error::{err, Result};
use crate::core::op::{Cipher, Signer, Verifier};
use crate::core::out::OutBuf;
use crate::core::slot::Slot;
use crate::core::token::{Ctx, Login, ObjectId};
use cryptoki_sys::*;
use std::sync::Arc;

/// An operation in progress with what the PKCS#11 rules need to remember about it.
pub struct Active<T: ?Sized> {
    pub op: Box<T>,
    /// An update has been made: the single-part call is no longer allowed.
    pub multipart: bool,
    /// Output computed for a call that answered `CKR_BUFFER_TOO_SMALL`, with a fingerprint
    /// of the input it was computed from, so that the retry does not compute it again.
    pending: Option<(u64, Vec<u8>)>,
    /// The key has CKA_ALWAYS_AUTHENTICATE and the user has not yet logged in with
    /// CKU_CONTEXT_SPECIFIC for this operation.
    pub needs_auth: bool,
    /// Where the caller wants an IV the token chooses (an encryption only).
    pub iv_out: Option<IvOut>,
}

/// Where the caller wants an IV that the token chooses during an encryption (PKCS#11 3.0
/// §2.12.3: the consumer's `pIv` of `CK_GCM_PARAMS`). Opaque to the core: the FFI layer's
/// address and length of that buffer. It is kept with the operation, so that it ends
/// (succeeds, fails, is cancelled, its session closes) with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IvOut {
    pub addr: usize,
    pub len: usize,
}

/// An IV the token chose ([`Cipher::produced_iv`]), with where the caller asked for it:
/// what an encryption that ended returns to the caller, who writes it there.
#[derive(Debug, PartialEq, Eq)]
pub struct ProducedIv {
    pub iv: Vec<u8>,
    pub to: IvOut,
}

impl<T: ?Sized> Active<T> {
    pub fn new(op: Box<T>) -> Self {
        Active {
            op,
            multipart: false,
            pending: None,
            needs_auth: false,
            iv_out: None,
        }
    }
}

/// A message-based (3.0) encryption or decryption in progress.
pub struct MessageState {
    pub key: ObjectId,
    /// Messages so far, for `CKG_GENERATE_COUNTER` IVs.
    pub counter: u64,
}

pub struct FindState {
    pub ids: Vec<ObjectId>,
    pub pos: usize,
}

pub struct Session {
    pub handle: CK_SESSION_HANDLE,
    pub slot: Arc<Slot>,
    pub rw: bool,
    pub find: Option<FindState>,
    pub encrypt: Option<Active<dyn Cipher>>,
    pub decrypt: Option<Active<dyn Cipher>>,
    pub sign: Option<Active<dyn Signer>>,
    pub verify: Option<Active<dyn Verifier>>,
    pub digest: Option<Active<dyn Signer>>,
    pub msg_encrypt: Option<MessageState>,
    pub msg_decrypt: Option<MessageState>,
    /// `C_VerifySignatureInit` (PKCS#11 3.2): the signature is given first, the data after.
    pub verify_signature: Option<Active<dyn Verifier>>,
}

/// The operation in `slot`, refusing (and ending) one whose key still waits for its
/// context-specific login (PKCS#11 §4.9 CKA_ALWAYS_AUTHENTICATE; SoftHSM answers the same).
fn active<T: ?Sized>(slot: &mut Option<Active<T>>) -> Result<&mut Active<T>> {
    match slot {
        None => Err(err(CKR_OPERATION_NOT_INITIALIZED)),
        Some(a) if a.needs_auth => {
            *slot = None;
            Err(err(CKR_USER_NOT_LOGGED_IN))
        }
        Some(a) => Ok(a),
    }
}

fn fingerprint(data: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

impl Session {
    pub fn new(handle: CK_SESSION_HANDLE, slot: Arc<Slot>, rw: bool) -> Self {
        Session {
            handle,
            slot,
            rw,
            find: None,
            encrypt: None,
            decrypt: None,
            sign: None,
            verify: None,
            digest: None,
            msg_encrypt: None,
            msg_decrypt: None,
            verify_signature: None,
        }
    }

    pub fn ctx(&self) -> Ctx {
        Ctx {
            session: self.handle,
            rw: self.rw,
            login: self.slot.login_state(),
        }
    }

    pub fn state(&self) -> CK_STATE {
        match (self.slot.login_state(), self.rw) {
            (Login::Public, false) => CKS_RO_PUBLIC_SESSION,
            (Login::Public, true) => CKS_RW_PUBLIC_SESSION,
            (Login::User, false) => CKS_RO_USER_FUNCTIONS,
            (Login::User, true) => CKS_RW_USER_FUNCTIONS,
            (Login::So, _) => CKS_RW_SO_FUNCTIONS,
        }
    }
}

/// Ends a cipher operation that succeeded, giving back the IV it produced (if the caller
/// asked for one).
fn done(slot: &mut Option<Active<dyn Cipher>>) -> Option<ProducedIv> {
    let a = slot.take()?;
    let to = a.iv_out?;
    a.op.produced_iv().map(|iv| ProducedIv { iv, to })
}

/// `C_Encrypt` / `C_Decrypt`.
pub fn cipher_single(
    slot: &mut Option<Active<dyn Cipher>>,
    input: &[u8],
    out: &mut OutBuf,
) -> Result<Option<ProducedIv>> {
    let a = active(slot)?;
    if a.multipart {
        *slot = None;
        return Err(err(CKR_OPERATION_ACTIVE));
    }
    let fp = fingerprint(input);
    if let Some((p, data)) = &a.pending {
        if *p == fp {
            out.put(data)?;
            return Ok(if out.is_query() { None } else { done(slot) });
        }
    }
    if out.is_query() {
        out.report(a.op.output_len(input.len()));
        return Ok(None);
    }
    let computed = a.op.oneshot(input);
    deliver(slot, computed, fp, out, true)
}

/// Hands a cipher call's output to the caller: an error ends the operation; output that
/// does not fit is kept for the retry (with the input's fingerprint `fp`); output that
/// fits ends the operation when the call is one that `ends` it.
fn deliver(
    slot: &mut Option<Active<dyn Cipher>>,
    computed: Result<Vec<u8>>,
    fp: u64,
    out: &mut OutBuf,
    ends: bool,
) -> Result<Option<ProducedIv>> {
    let data = computed.inspect_err(|_| *slot = None)?;
    match out.put(&data) {
        Ok(()) if ends => Ok(done(slot)),
        Ok(()) => Ok(None),
        Err(e) => {
            if let Some(a) = slot {
                a.pending = Some((fp, data));
            }
            Err(e)
        }
    }
}

/// `C_EncryptUpdate` / `C_DecryptUpdate`.
pub fn cipher_update(
    slot: &mut Option<Active<dyn Cipher>>,
    input: &[u8],
    out: &mut OutBuf,
) -> Result<()> {
    let a = active(slot)?;
    let fp = fingerprint(input);
    if let Some((p, data)) = &a.pending {
        if *p == fp {
            let r = out.put(data);
            if r.is_ok() && !out.is_query() {
                a.pending = None;
            }
            return r;
        }
    }
    if out.is_query() {
        out.report(a.op.update_len(input.len()));
        return Ok(());
    }
    a.multipart = true;
    let computed = a.op.update(input);
    deliver(slot, computed, fp, out, false).map(drop)
}

/// `C_EncryptFinal` / `C_DecryptFinal`.
pub fn cipher_final(
    slot: &mut Option<Active<dyn Cipher>>,
    out: &mut OutBuf,
) -> Result<Option<ProducedIv>> {
    let a = active(slot)?;
    if let Some((_, data)) = &a.pending {
        out.put(data)?;
        return Ok(if out.is_query() { None } else { done(slot) });
    }
    if out.is_query() {
        out.report(a.op.final_len());
        return Ok(None);
    }
    let computed = a.op.finish();
    deliver(slot, computed, 0, out, true)
}

/// When `need` bytes do not fit in `out`: the answer (the length reported; success for a
/// length query, `CKR_BUFFER_TOO_SMALL` otherwise), the operation staying alive.
fn no_room(out: &mut OutBuf, need: usize) -> Option<Result<()>> {
    if out.fits(need) {
        return None;
    }
    out.report(need);
    Some(if out.is_query() {
        Ok(())
    } else {
        Err(err(CKR_BUFFER_TOO_SMALL))
    })
}

/// `C_Sign` / `C_Digest`: the output length is known up front.
pub fn signer_single(
    slot: &mut Option<Active<dyn Signer>>,
    data: &[u8],
    out: &mut OutBuf,
) -> Result<()> {
    let a = active(slot)?;
    if a.multipart {
        *slot = None;
        return Err(err(CKR_OPERATION_ACTIVE));
    }
    if let Some(r) = no_room(out, a.op.output_len()) {
        return r;
    }
    let r = a.op.oneshot(data).and_then(|sig| out.put(&sig));
    *slot = None;
    r
}

/// `C_SignUpdate` / `C_DigestUpdate`.
pub fn signer_update(slot: &mut Option<Active<dyn Signer>>, data: &[u8]) -> Result<()> {
    let a = active(slot)?;
    a.multipart = true;
    let r = a.op.update(data);
    if r.is_err() {
        *slot = None;
    }
    r
}

/// `C_SignFinal` / `C_DigestFinal`.
pub fn signer_final(slot: &mut Option<Active<dyn Signer>>, out: &mut OutBuf) -> Result<()> {
    let a = active(slot)?;
    if let Some(r) = no_room(out, a.op.output_len()) {
        return r;
    }
    let r = a.op.finish().and_then(|sig| out.put(&sig));
    *slot = None;
    r
}

/// `C_Verify`.
pub fn verify_single(
    slot: &mut Option<Active<dyn Verifier>>,
    data: &[u8],
    sig: &[u8],
) -> Result<()> {
    let mut a = slot
        .take()
        .ok_or_else(|| err(CKR_OPERATION_NOT_INITIALIZED))?;
    if a.multipart {
        return Err(err(CKR_OPERATION_ACTIVE));
    }
    a.op.oneshot(data, sig)
}

/// `C_VerifyUpdate`.
pub fn verify_update(slot: &mut Option<Active<dyn Verifier>>, data: &[u8]) -> Result<()> {
    let a = active(slot)?;
    a.multipart = true;
    let r = a.op.update(data);
    if r.is_err() {
        *slot = None;
    }
    r
}

/// `C_VerifyFinal`.
pub fn verify_final(slot: &mut Option<Active<dyn Verifier>>, sig: &[u8]) -> Result<()> {
    let mut a = slot
        .take()
        .ok_or_else(|| err(CKR_OPERATION_NOT_INITIALIZED))?;
    a.op.finish(sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::Error;

    /// The code of a call that must fail.
    fn refused<T: std::fmt::Debug>(r: Result<T>) -> CK_RV {
        r.unwrap_err().rv()
    }

    /// Doubles its input; counts how often it really ran.
    struct Twice {
        runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        fail: bool,
    }
    impl Cipher for Twice {
        fn output_len(&self, n: usize) -> usize {
            2 * n
        }
        fn oneshot(&mut self, input: &[u8]) -> Result<Vec<u8>> {
            self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.fail {
                return Err(Error::new(CKR_DATA_INVALID));
            }
            Ok(input.iter().flat_map(|b| [*b, *b]).collect())
        }
        fn update_len(&self, n: usize) -> usize {
            2 * n
        }
        fn update(&mut self, input: &[u8]) -> Result<Vec<u8>> {
            self.oneshot(input)
        }
        fn final_len(&self) -> usize {
            0
        }
        fn finish(&mut self) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
    }

    fn op(
        fail: bool,
    ) -> (
        Option<Active<dyn Cipher>>,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (
            Some(Active::new(Box::new(Twice {
                runs: runs.clone(),
                fail,
            }))),
            runs,
        )
    }

    #[test]
    fn length_query_keeps_the_operation_and_computes_nothing() {
        let (mut slot, runs) = op(false);
        let mut out = OutBuf::new(None);
        cipher_single(&mut slot, b"abc", &mut out).unwrap();
        assert_eq!(out.written, 6);
        assert!(slot.is_some());
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);
        let mut buf = [0u8; 6];
        let mut out = OutBuf::new(Some(&mut buf));
        cipher_single(&mut slot, b"abc", &mut out).unwrap();
        assert_eq!(&buf, b"aabbcc");
        assert!(slot.is_none(), "success ends the operation");
    }

    #[test]
    fn too_small_keeps_the_result_for_the_retry() {
        let (mut slot, runs) = op(false);
        let mut small = [0u8; 2];
        let mut out = OutBuf::new(Some(&mut small));
        assert_eq!(
            refused(cipher_single(&mut slot, b"abc", &mut out)),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(out.written, 6);
        let mut buf = [0u8; 8];
        let mut out = OutBuf::new(Some(&mut buf));
        cipher_single(&mut slot, b"abc", &mut out).unwrap();
        assert_eq!(out.written, 6);
        assert_eq!(&buf[..6], b"aabbcc");
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "computed once"
        );
    }

    #[test]
    fn an_error_ends_the_operation() {
        let (mut slot, _) = op(true);
        let mut buf = [0u8; 8];
        let mut out = OutBuf::new(Some(&mut buf));
        assert_eq!(
            refused(cipher_single(&mut slot, b"abc", &mut out)),
            CKR_DATA_INVALID
        );
        assert!(slot.is_none());
        let mut out = OutBuf::new(Some(&mut buf));
        assert_eq!(
            refused(cipher_single(&mut slot, b"abc", &mut out)),
            CKR_OPERATION_NOT_INITIALIZED
        );
    }

    #[test]
    fn single_part_after_update_is_refused() {
        let (mut slot, _) = op(false);
        let mut buf = [0u8; 8];
        let mut out = OutBuf::new(Some(&mut buf));
        cipher_update(&mut slot, b"a", &mut out).unwrap();
        let mut out = OutBuf::new(Some(&mut buf));
        assert_eq!(
            refused(cipher_single(&mut slot, b"a", &mut out)),
            CKR_OPERATION_ACTIVE
        );
    }

    /// Encrypts to nothing and says it chose the IV `[7; 12]`.
    struct ChoosesIv;
    impl Cipher for ChoosesIv {
        fn output_len(&self, _: usize) -> usize {
            0
        }
        fn oneshot(&mut self, _: &[u8]) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn update_len(&self, _: usize) -> usize {
            0
        }
        fn update(&mut self, _: &[u8]) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn final_len(&self) -> usize {
            0
        }
        fn finish(&mut self) -> Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn produced_iv(&self) -> Option<Vec<u8>> {
            Some(vec![7; 12])
        }
    }

    #[test]
    fn the_ended_operation_returns_the_chosen_iv_to_where_the_caller_asked() {
        let to = IvOut {
            addr: 0x1000,
            len: 12,
        };
        let mut slot: Option<Active<dyn Cipher>> = Some(Active::new(Box::new(ChoosesIv)));
        slot.as_mut().unwrap().iv_out = Some(to);
        let mut out = OutBuf::new(None);
        assert_eq!(
            cipher_single(&mut slot, b"", &mut out).unwrap(),
            None,
            "query"
        );
        let mut buf = [0u8; 0];
        let mut out = OutBuf::new(Some(&mut buf));
        let produced = cipher_single(&mut slot, b"", &mut out).unwrap();
        assert_eq!(
            produced,
            Some(ProducedIv {
                iv: vec![7; 12],
                to
            })
        );

        // Nobody asked: nothing to give back.
        let mut slot: Option<Active<dyn Cipher>> = Some(Active::new(Box::new(ChoosesIv)));
        let mut out = OutBuf::new(Some(&mut buf));
        assert_eq!(cipher_final(&mut slot, &mut out).unwrap(), None);
        assert!(slot.is_none());
    }
}
