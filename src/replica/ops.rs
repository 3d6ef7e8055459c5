//! Operations of a replica group. Each remembers its mechanism and key, so that when its
//! replica fails a single-part call is replayed on the next one (`*Init` there, then the
//! call) and the consumer sees success; a multi-part operation that loses its replica in
//! the middle is replayed there from its journal (`replay.rs`: `*Init`, the Updates so
//! far, their output checked and dropped, then the call), or, when it cannot be, answers
//! `CKR_DEVICE_ERROR` once (the core then ends it) and the next operation starts on a
//! healthy replica.

use super::hedge::{self, Kind};
use super::replay::{self, Feed, Journal};
use super::{Found, Group};
use crate::core::error::{err, Result};
use crate::core::mechanism::Mechanism;
use crate::core::op::{Cipher, Signer, Verifier};
use crate::core::token::{Ctx, ObjectId};
use cryptoki_sys::*;
use std::sync::Arc;

/// Starts a replica's own operation: replica index, translated mechanism, its key id.
type StartOn<'a, T> = dyn FnMut(usize, &Mechanism, Option<ObjectId>) -> Result<T> + 'a;
/// The same with the group and session given (for a replay from inside an operation).
type Reinit<'a, T> = dyn FnMut(&Group, usize, &Ctx, &Mechanism, Option<ObjectId>) -> Result<T> + 'a;

/// What every group operation carries: where it runs now and how to start it again.
struct Replay {
    g: Arc<Group>,
    ctx: Ctx,
    mech: Mechanism,
    key: Option<ObjectId>,
    /// The replica the operation runs on.
    at: usize,
    multipart: bool,
    /// The Updates so far, for a replay on the next replica.
    journal: Journal,
}

impl Replay {
    /// Starts the operation on the first replica that can (`init` makes the replica's
    /// own operation from its key id and the translated mechanism).
    fn start<T>(
        g: &Arc<Group>,
        ctx: &Ctx,
        mech: &Mechanism,
        key: Option<ObjectId>,
        what: &str,
        init: &mut StartOn<'_, T>,
    ) -> Result<(Replay, T)> {
        // Single-part work is what "balance" spreads; it rotates over the replicas. One
        // with calls left behind by a hedge (slow or hung now) comes last.
        let order = g.hedging.prefer_answering(g.order(true), ctx.session);
        let (at, op) = g.on_session(what, &order, ctx, |i, _| {
            let m = g.mech_for(i, ctx, mech)?;
            match key {
                None => init(i, &m, None).map(|op| Found::Yes((i, op))),
                Some(k) => match g.with_object(i, ctx, k, |c| init(i, &m, Some(c)))? {
                    Found::Yes(op) => Ok(Found::Yes((i, op))),
                    Found::NotHere => Ok(Found::NotHere),
                },
            }
        })?;
        let replay = Replay {
            g: g.clone(),
            ctx: *ctx,
            mech: mech.clone(),
            key,
            at,
            multipart: false,
            journal: Journal::new(g.replay_limit.load(std::sync::atomic::Ordering::Relaxed)),
        };
        Ok((replay, op))
    }

    /// Runs `call` on the current replica's operation; on a device-class failure of a
    /// single-part call, moves to the next replica (replaying the init) and runs it there.
    fn run<T: Feed, R>(
        &mut self,
        op: &mut T,
        what: &str,
        init: &mut Reinit<'_, T>,
        call: &mut dyn FnMut(&mut T) -> Result<R>,
    ) -> Result<R> {
        let mut tries = self.g.replicas.len();
        loop {
            crate::metrics::note_replica(
                self.g.replicas[self.at]
                    .metrics_index
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
            match call(op) {
                // A pool that had no free session in time is busy, not failing.
                Err(e) if super::device_failure(&e) => {
                    let from = self.at;
                    self.g.mark_down(from, &format!("{what}: {e}"));
                    if self.multipart {
                        replay::check_replayable(&self.g, from, &e, &self.journal, op)?;
                    }
                    tries -= 1;
                    if tries == 0 {
                        return Err(err(CKR_DEVICE_ERROR));
                    }
                    let g = self.g.clone();
                    let ctx = self.ctx;
                    let (multipart, journal) = (self.multipart, &mut self.journal);
                    let started =
                        Replay::start(&g, &ctx, &self.mech, self.key, what, &mut |i, m, k| {
                            let mut op = init(&g, i, &ctx, m, k)?;
                            if multipart {
                                journal.replay(&mut op)?;
                            }
                            Ok(op)
                        });
                    let (again, new_op) = match started {
                        Err(e2) if multipart => return Err(replay::failed(&g, from, &e2)),
                        r => r?,
                    };
                    let how = replay::how(multipart, &self.journal);
                    g.failed_over(from, again.at, &format!("{what}, {how}"), &e.to_string());
                    self.at = again.at;
                    *op = new_op;
                }
                r => return r,
            }
        }
    }
}

impl Replay {
    /// `start` for an operation that may run twice: its `*Init` hedged on a second
    /// replica when the first does not answer in time (`hedge::start`).
    fn start_hedged<T: hedge::Op>(
        g: &Arc<Group>,
        ctx: &Ctx,
        mech: &Mechanism,
        key: Option<ObjectId>,
        (what, kind): (&'static str, Kind),
        init: impl hedge::Init<T>,
    ) -> Result<(Replay, T)> {
        let unhedged = || {
            Replay::start(g, ctx, mech, key, what, &mut |i, m, k| {
                init(g, i, ctx, m, k)
            })
        };
        match hedge::start(g, ctx, mech, key, kind, what, init) {
            hedge::Started::Answer(Ok((at, op))) => {
                let replay = Replay {
                    g: g.clone(),
                    ctx: *ctx,
                    mech: mech.clone(),
                    key,
                    at,
                    multipart: false,
                    journal: Journal::new(
                        g.replay_limit.load(std::sync::atomic::Ordering::Relaxed),
                    ),
                };
                Ok((replay, op))
            }
            hedge::Started::Answer(Err(e)) => Err(e),
            hedge::Started::NotHedged => unhedged(),
            hedge::Started::Failed(from, e) => {
                let (replay, op) = unhedged()?;
                if replay.at != from {
                    g.failed_over(from, replay.at, what, &e.to_string());
                }
                Ok((replay, op))
            }
        }
    }

    /// A single-part call: hedged on a second replica when the slot hedges and the call
    /// may run twice (`hedge.rs`), else (and after a failure of both) as `run`. `call`
    /// runs it here; `shared` makes the copy a pool thread can run, only when a hedge
    /// is possible (so that an unhedged call copies nothing).
    fn run_single<T: hedge::Op + Feed, R: Send + 'static>(
        &mut self,
        op: &mut T,
        (what, kind): (&'static str, Kind),
        init: impl hedge::Init<T>,
        call: &mut dyn FnMut(&mut T) -> Result<R>,
        shared: impl FnOnce() -> hedge::Call<T, R>,
    ) -> Result<R> {
        if hedge::possible(&self.g, self.at, kind, &self.mech, self.ctx.session) {
            let hedged = hedge::Request {
                g: &self.g,
                ctx: self.ctx,
                mech: &self.mech,
                key: self.key,
                kind,
                what,
                init,
                call: shared(),
            }
            .run(self.at, op);
            if let Some(h) = hedged {
                self.at = h.at;
                crate::metrics::note_replica(
                    self.g.replicas[h.at]
                        .metrics_index
                        .load(std::sync::atomic::Ordering::Relaxed),
                );
                match h.result {
                    // `op` repeats the failure: `run` fails over as for any other call.
                    Err(e) if super::device_failure(&e) => {}
                    r => return r,
                }
            }
        }
        self.run(op, what, &mut |g, i, c, m, k| init(g, i, c, m, k), call)
    }

    /// The part of a cipher call's output the consumer does not have yet (`replay.rs`).
    fn hand_out(&mut self, out: Vec<u8>, last: bool) -> Result<Vec<u8>> {
        self.journal
            .hand_out(out, last)
            .map_err(|_| replay::mismatch(&self.g, self.at))
    }
}

fn cipher_init(
    g: &Group,
    i: usize,
    ctx: &Ctx,
    m: &Mechanism,
    k: Option<ObjectId>,
    encrypt: bool,
) -> Result<Box<dyn Cipher>> {
    let t = &g.replicas[i].token;
    let k = k.ok_or_else(|| err(CKR_KEY_HANDLE_INVALID))?;
    if encrypt {
        t.encrypt_init(ctx, m, k)
    } else {
        t.decrypt_init(ctx, m, k)
    }
}

pub struct GroupCipher {
    r: Replay,
    op: Box<dyn Cipher>,
    encrypt: bool,
}

impl GroupCipher {
    pub fn start(
        g: Arc<Group>,
        ctx: &Ctx,
        mech: &Mechanism,
        key: ObjectId,
        encrypt: bool,
    ) -> Result<Self> {
        let what = if encrypt {
            "C_EncryptInit"
        } else {
            "C_DecryptInit"
        };
        let init = move |g: &Group, i: usize, ctx: &Ctx, m: &Mechanism, k: Option<ObjectId>| {
            cipher_init(g, i, ctx, m, k, encrypt)
        };
        let kind = if encrypt {
            Kind::Encrypt
        } else {
            Kind::Decrypt
        };
        let (mut r, op) = Replay::start_hedged(&g, ctx, mech, Some(key), (what, kind), init)?;
        if let Some(why) = replay::cipher_refusal(mech) {
            r.journal.refuse(why);
        }
        Ok(GroupCipher { r, op, encrypt })
    }

    fn init_fn(
        encrypt: bool,
    ) -> impl FnMut(&Group, usize, &Ctx, &Mechanism, Option<ObjectId>) -> Result<Box<dyn Cipher>>
    {
        move |g, i, ctx, m, k| cipher_init(g, i, ctx, m, k, encrypt)
    }
}

impl Cipher for GroupCipher {
    fn output_len(&self, input_len: usize) -> usize {
        self.op.output_len(input_len)
    }
    fn oneshot(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        let what = if self.encrypt {
            "C_Encrypt"
        } else {
            "C_Decrypt"
        };
        let encrypt = self.encrypt;
        let init = move |g: &Group, i: usize, ctx: &Ctx, m: &Mechanism, k: Option<ObjectId>| {
            cipher_init(g, i, ctx, m, k, encrypt)
        };
        let kind = if encrypt {
            Kind::Encrypt
        } else {
            Kind::Decrypt
        };
        let shared = || -> hedge::Call<Box<dyn Cipher>, Vec<u8>> {
            let input = input.to_vec();
            Arc::new(move |op: &mut Box<dyn Cipher>| op.oneshot(&input))
        };
        self.r.run_single(
            &mut self.op,
            (what, kind),
            init,
            &mut |op| op.oneshot(input),
            shared,
        )
    }
    fn update_len(&self, input_len: usize) -> usize {
        self.op.update_len(input_len)
    }
    fn update(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        self.r.multipart = true;
        let mut init = Self::init_fn(self.encrypt);
        let out = self
            .r
            .run(&mut self.op, "C_EncryptUpdate", &mut init, &mut |op| {
                op.update(input)
            })?;
        let out = self.r.hand_out(out, false)?;
        self.r.journal.note(input);
        Ok(out)
    }
    fn final_len(&self) -> usize {
        self.op.final_len()
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        self.r.multipart = true;
        let mut init = Self::init_fn(self.encrypt);
        let out = self
            .r
            .run(&mut self.op, "C_EncryptFinal", &mut init, &mut |op| {
                op.finish()
            })?;
        self.r.hand_out(out, true)
    }
    // The IV a remote replica's service chose (AES-GCM), for the consumer's pIv.
    fn produced_iv(&self) -> Option<Vec<u8>> {
        self.op.produced_iv()
    }
}

fn signer_init(
    g: &Group,
    i: usize,
    ctx: &Ctx,
    m: &Mechanism,
    k: Option<ObjectId>,
) -> Result<Box<dyn Signer>> {
    let t = &g.replicas[i].token;
    match k {
        Some(k) => t.sign_init(ctx, m, k),
        None => t.digest_init(ctx, m),
    }
}

pub struct GroupSigner {
    r: Replay,
    op: Box<dyn Signer>,
}

impl GroupSigner {
    /// A signature (`key` given) or a digest.
    pub fn start(
        g: Arc<Group>,
        ctx: &Ctx,
        mech: &Mechanism,
        key: Option<ObjectId>,
    ) -> Result<Self> {
        let kind = if key.is_some() {
            Kind::Sign
        } else {
            Kind::Digest
        };
        let (r, op) = Replay::start_hedged(&g, ctx, mech, key, ("C_SignInit", kind), signer_init)?;
        Ok(GroupSigner { r, op })
    }
}

impl Signer for GroupSigner {
    fn output_len(&self) -> usize {
        self.op.output_len()
    }
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.r.multipart = true;
        self.r
            .run(&mut self.op, "C_SignUpdate", &mut signer_init, &mut |op| {
                op.update(data)
            })?;
        self.r.journal.note(data);
        Ok(())
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        self.r.multipart = true;
        self.r
            .run(&mut self.op, "C_SignFinal", &mut signer_init, &mut |op| {
                op.finish()
            })
    }
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let kind = if self.r.key.is_some() {
            Kind::Sign
        } else {
            Kind::Digest
        };
        let shared = || -> hedge::Call<Box<dyn Signer>, Vec<u8>> {
            let data = data.to_vec();
            Arc::new(move |op: &mut Box<dyn Signer>| op.oneshot(&data))
        };
        self.r.run_single(
            &mut self.op,
            ("C_Sign", kind),
            signer_init,
            &mut |op| op.oneshot(data),
            shared,
        )
    }
}

fn verifier_init(
    g: &Group,
    i: usize,
    ctx: &Ctx,
    m: &Mechanism,
    k: Option<ObjectId>,
) -> Result<Box<dyn Verifier>> {
    g.replicas[i]
        .token
        .verify_init(ctx, m, k.ok_or_else(|| err(CKR_KEY_HANDLE_INVALID))?)
}

pub struct GroupVerifier {
    r: Replay,
    op: Box<dyn Verifier>,
}

impl GroupVerifier {
    pub fn start(g: Arc<Group>, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Self> {
        let what = ("C_VerifyInit", Kind::Verify);
        let (r, op) = Replay::start_hedged(&g, ctx, mech, Some(key), what, verifier_init)?;
        Ok(GroupVerifier { r, op })
    }
}

impl GroupVerifier {
    /// A call of a multi-part verification (a failover replays the parts before it).
    fn part(
        &mut self,
        what: &str,
        call: &mut dyn FnMut(&mut Box<dyn Verifier>) -> Result<()>,
    ) -> Result<()> {
        self.r.multipart = true;
        self.r.run(&mut self.op, what, &mut verifier_init, call)
    }
}

impl Verifier for GroupVerifier {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.part("C_VerifyUpdate", &mut |op| op.update(data))?;
        self.r.journal.note(data);
        Ok(())
    }
    fn finish(&mut self, signature: &[u8]) -> Result<()> {
        self.part("C_VerifyFinal", &mut |op| op.finish(signature))
    }
    fn oneshot(&mut self, data: &[u8], signature: &[u8]) -> Result<()> {
        let shared = || -> hedge::Call<Box<dyn Verifier>, ()> {
            let (data, signature) = (data.to_vec(), signature.to_vec());
            Arc::new(move |op: &mut Box<dyn Verifier>| op.oneshot(&data, &signature))
        };
        self.r.run_single(
            &mut self.op,
            ("C_Verify", Kind::Verify),
            verifier_init,
            &mut |op| op.oneshot(data, signature),
            shared,
        )
    }
}
