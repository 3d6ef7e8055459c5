//! Hedged calls: a single-part operation that is safe to run twice (sign, verify, MAC,
//! digest, decrypt, a non-AEAD encryption) and whose replica has not answered within the
//! slot's hedge delay is sent to the next healthy replica as well (its `*Init` there, then
//! the call); the first answer is returned and the other discarded. A hung replica then
//! costs the consumer the hedge delay instead of the whole deadline.
//!
//! While hedging is possible (the slot hedges, the operation is safe to repeat, another
//! replica is healthy) the replica's call runs on a small per-replica pool of threads and
//! the consumer waits on a channel; otherwise the call runs inline as before. The call left
//! behind keeps its thread until its replica answers or its own deadline passes: a
//! device-class failure then marks that replica down as any other call would, and until it
//! ends the replica is tried last by new operations ([`Hedging::prefer_answering`]).
//!
//! The automatic hedge delay is the replica's observed p99 latency (a small lock-free
//! histogram of recent calls, decayed as it fills), never below [`FLOOR`].

mod race;

use super::{Found, Group};
use crate::backend::module::worker::Workers;
use crate::core::error::{err, Result};
use crate::core::mechanism::Mechanism;
use crate::core::op::{Cipher, Signer, Verifier};
use crate::core::token::{device_class, Ctx, ObjectId};
use cryptoki_sys::*;
use race::{Job, Race, Raced, Reply};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The lowest automatic hedge delay: below it a replica's ordinary jitter would hedge.
pub const FLOOR: Duration = Duration::from_millis(5);
/// `hedge_ms` absent: the delay follows the replica's latency.
const AUTO: u64 = u64::MAX;

/// What kind of single-part call a group operation makes (what decides whether it may run
/// twice).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Sign,
    Verify,
    Digest,
    Encrypt,
    Decrypt,
}

/// May this call run on two replicas at once? Signing, MACs, digests, verification and
/// decryption change nothing on the token, except the stateful hash-based signatures
/// (HSS, XMSS: each signature uses up a one-time key). Encryption only where its output is
/// fixed by the key, the data and the caller's parameters: not the AEAD modes, whose IV a
/// replica may generate itself (`gcm_iv = "service"`).
pub fn safe_to_repeat(kind: Kind, mech: &Mechanism) -> bool {
    match kind {
        Kind::Sign => !matches!(mech.mech, CKM_HSS | CKM_XMSS | CKM_XMSSMT),
        Kind::Verify | Kind::Digest | Kind::Decrypt => true,
        Kind::Encrypt => !matches!(mech.mech, CKM_AES_GCM | CKM_AES_CCM | CKM_CHACHA20_POLY1305),
    }
}

/// A group operation's own operation type (`Box<dyn Signer>`, ...): what stands in its
/// place while the real one is on a pool thread, and answers `rv` if called.
pub trait Op: Send + Sized + 'static {
    fn failed(rv: CK_RV) -> Self;
}

/// The stand-in: its replica failed with `0` (a device-class code), and the caller's
/// failover logic, calling it, sees that failure once more and moves on.
struct Failed(CK_RV);

impl Signer for Failed {
    fn output_len(&self) -> usize {
        0
    }
    fn update(&mut self, _: &[u8]) -> Result<()> {
        Err(err(self.0))
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        Err(err(self.0))
    }
}

impl Verifier for Failed {
    fn update(&mut self, _: &[u8]) -> Result<()> {
        Err(err(self.0))
    }
    fn finish(&mut self, _: &[u8]) -> Result<()> {
        Err(err(self.0))
    }
}

impl Cipher for Failed {
    fn output_len(&self, _: usize) -> usize {
        0
    }
    fn oneshot(&mut self, _: &[u8]) -> Result<Vec<u8>> {
        Err(err(self.0))
    }
    fn update_len(&self, _: usize) -> usize {
        0
    }
    fn update(&mut self, _: &[u8]) -> Result<Vec<u8>> {
        Err(err(self.0))
    }
    fn final_len(&self) -> usize {
        0
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        Err(err(self.0))
    }
}

impl Op for Box<dyn Signer> {
    fn failed(rv: CK_RV) -> Self {
        Box::new(Failed(rv))
    }
}
impl Op for Box<dyn Verifier> {
    fn failed(rv: CK_RV) -> Self {
        Box::new(Failed(rv))
    }
}
impl Op for Box<dyn Cipher> {
    fn failed(rv: CK_RV) -> Self {
        Box::new(Failed(rv))
    }
}

/// Starts a replica's own operation (replica index, session, translated mechanism, the
/// replica's key id), as `ops.rs`'s `*_init` functions do.
pub trait Init<T>:
    Fn(&Group, usize, &Ctx, &Mechanism, Option<ObjectId>) -> Result<T> + Send + Sync + Copy + 'static
{
}
impl<T, F> Init<T> for F where
    F: Fn(&Group, usize, &Ctx, &Mechanism, Option<ObjectId>) -> Result<T>
        + Send
        + Sync
        + Copy
        + 'static
{
}

/// The call itself on an operation, owning its input (it may outlive the consumer's call).
pub type Call<T, R> = Arc<dyn Fn(&mut T) -> Result<R> + Send + Sync>;

/// Recent call latencies of one replica: 48 buckets, two per power of two microseconds
/// (up to about 16 s), counted with relaxed atomics. Every `WINDOW` samples the p99 is
/// computed again and the counts halved, so that it follows the replica's current pace.
struct Latency {
    buckets: [AtomicU32; 48],
    samples: AtomicU32,
    p99_us: AtomicU64,
}

const WINDOW: u32 = 128;

impl Latency {
    fn new() -> Latency {
        Latency {
            buckets: std::array::from_fn(|_| AtomicU32::new(0)),
            samples: AtomicU32::new(0),
            p99_us: AtomicU64::new(0),
        }
    }

    /// Bucket of `us`: 2 * log2 plus the bit below the top one.
    fn bucket(us: u64) -> usize {
        let us = us.max(1);
        let top = 63 - us.leading_zeros() as usize;
        let half = if top > 0 { (us >> (top - 1)) & 1 } else { 0 } as usize;
        (2 * top + half).min(47)
    }

    /// The largest value of bucket `b` (what a p99 in it is taken as).
    fn upper(b: usize) -> u64 {
        let (top, half) = (b / 2, b % 2);
        let base = 1u64 << top;
        if half == 0 {
            base + base / 2
        } else {
            2 * base
        }
    }

    fn record(&self, d: Duration) {
        let b = Self::bucket(d.as_micros() as u64);
        self.buckets[b].fetch_add(1, Ordering::Relaxed);
        if self.samples.fetch_add(1, Ordering::Relaxed) % WINDOW != WINDOW - 1 {
            return;
        }
        let counts: Vec<u32> = self
            .buckets
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().map(|&c| c as u64).sum();
        let mut above = 0u64;
        let mut p99 = 0;
        for (b, &c) in counts.iter().enumerate().rev() {
            above += c as u64;
            if above * 100 > total {
                p99 = Self::upper(b);
                break;
            }
        }
        self.p99_us.store(p99, Ordering::Relaxed);
        for c in &self.buckets {
            let v = c.load(Ordering::Relaxed);
            c.fetch_sub(v / 2, Ordering::Relaxed);
        }
    }

    fn p99(&self) -> Duration {
        Duration::from_micros(self.p99_us.load(Ordering::Relaxed))
    }
}

/// One replica's hedging state.
struct PerReplica {
    latency: Latency,
    /// Its calls that a hedge has left behind and that have not returned yet.
    lagging: AtomicU32,
    /// Threads its hedgeable calls run on (started when first needed).
    pool: Workers,
}

/// A replica group's hedging: the configured delay and each replica's state.
pub struct Hedging {
    /// `hedge_ms`: 0 off, [`AUTO`] automatic, else milliseconds.
    setting: AtomicU64,
    replicas: Vec<PerReplica>,
    /// (replica, consumer session) pairs a pool job is using: a vendor session takes one
    /// call at a time, so nothing else uses that pair until the job ends (a call left
    /// behind on a slow replica would otherwise meet the consumer's next call there).
    busy: dashmap::DashMap<(usize, CK_SESSION_HANDLE), u32>,
    /// `busy.len()`, read without a lock on the fast path.
    busy_count: AtomicU32,
}

impl Hedging {
    pub fn new(slot: &str, names: &[String]) -> Hedging {
        Hedging {
            setting: AtomicU64::new(AUTO),
            replicas: names
                .iter()
                .map(|n| PerReplica {
                    latency: Latency::new(),
                    lagging: AtomicU32::new(0),
                    pool: Workers::new(&format!("hedge-{slot}/{n}")),
                })
                .collect(),
            busy: dashmap::DashMap::new(),
            busy_count: AtomicU32::new(0),
        }
    }

    /// A pool job starts using the consumer's `session` on replica `i`.
    fn hold(&self, i: usize, session: CK_SESSION_HANDLE) {
        *self.busy.entry((i, session)).or_insert(0) += 1;
        self.busy_count.fetch_add(1, Ordering::SeqCst);
    }

    /// ... and is done with it.
    fn release(&self, i: usize, session: CK_SESSION_HANDLE) {
        self.busy.remove_if_mut(&(i, session), |_, n| {
            *n -= 1;
            *n == 0
        });
        self.busy_count.fetch_sub(1, Ordering::SeqCst);
    }

    fn is_busy(&self, i: usize, session: CK_SESSION_HANDLE) -> bool {
        self.busy_count.load(Ordering::SeqCst) > 0 && self.busy.contains_key(&(i, session))
    }

    /// Waits until no pool job uses `session` on replica `i` (at most as long as that job's
    /// call, which its replica's deadline bounds; a minute at the very most).
    pub fn wait_free(&self, i: usize, session: CK_SESSION_HANDLE) {
        let since = std::time::Instant::now();
        while self.is_busy(i, session) && since.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// `hedge_ms` of the slot: `None` automatic, `Some(0)` off.
    pub fn set(&self, ms: Option<u64>) {
        self.setting.store(ms.unwrap_or(AUTO), Ordering::Relaxed);
    }

    /// How long a call on replica `i` runs before it is hedged; `None`: never.
    fn delay(&self, i: usize) -> Option<Duration> {
        match self.setting.load(Ordering::Relaxed) {
            0 => None,
            AUTO => Some(self.replicas[i].latency.p99().max(FLOOR)),
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// `order` with the replicas that have calls left behind by a hedge, or a pool job in
    /// `session`, moved to the end (slow or hung right now; the deadline of those calls
    /// decides which).
    pub fn prefer_answering(&self, order: Vec<usize>, session: CK_SESSION_HANDLE) -> Vec<usize> {
        if self.busy_count.load(Ordering::SeqCst) == 0
            && self
                .replicas
                .iter()
                .all(|r| r.lagging.load(Ordering::Relaxed) == 0)
        {
            return order;
        }
        let lags = |i: &usize| {
            self.replicas[*i].lagging.load(Ordering::Relaxed) > 0 || self.is_busy(*i, session)
        };
        let (mut fast, slow): (Vec<usize>, Vec<usize>) = order.into_iter().partition(|i| !lags(i));
        fast.extend(slow);
        fast
    }
}

/// Where a hedged call ended.
pub struct Hedged<R> {
    /// The replica whose answer it is (the operation now belongs to it).
    pub at: usize,
    pub result: Result<R>,
}

/// Replica `i`'s own operation for the group's `key` (`NotHere`: it lacks the key), with
/// the login and session it needs there.
fn init_on<T, I: Init<T>>(
    g: &Group,
    i: usize,
    ctx: &Ctx,
    mech: &Mechanism,
    key: Option<ObjectId>,
    init: I,
) -> Result<Found<T>> {
    g.ensure_login(i)?;
    g.ensure_session_held(i, ctx)?;
    let m = g.mech_for(i, ctx, mech)?;
    match key {
        None => init(g, i, ctx, &m, None).map(Found::Yes),
        Some(k) => g.with_object(i, ctx, k, |c| init(g, i, ctx, &m, Some(c))),
    }
}

/// The first healthy replica after `at` with no call left behind (and none in `session`),
/// else the first healthy one after it.
fn next_healthy(g: &Group, at: usize, session: CK_SESSION_HANDLE) -> Option<usize> {
    let n = g.replicas.len();
    let healthy = |i: &usize| g.replicas[*i].healthy.load(Ordering::Relaxed);
    let lagging = |i: usize| {
        g.hedging.replicas[i].lagging.load(Ordering::Relaxed) > 0 || g.hedging.is_busy(i, session)
    };
    let mut candidates = (1..n).map(|k| (at + k) % n).filter(healthy);
    let first = candidates.clone().next()?;
    Some(candidates.find(|&i| !lagging(i)).unwrap_or(first))
}

/// How a hedged `*Init` ended.
pub enum Started<T> {
    /// On replica `.0` (or the request's own error).
    Answer(Result<(usize, T)>),
    /// Hedging does not apply, or neither replica could start it: start it as before.
    NotHedged,
    /// Replica `.0`, the first choice, failed (now down) and no other answered: start it
    /// as before, and count the failover from it.
    Failed(usize, crate::core::error::Error),
}

/// The `*Init` of a new operation, hedged like a call.
pub fn start<T: Op, I: Init<T>>(
    g: &Arc<Group>,
    ctx: &Ctx,
    mech: &Mechanism,
    key: Option<ObjectId>,
    kind: Kind,
    what: &'static str,
    init: I,
) -> Started<T> {
    let order = g.hedging.prefer_answering(g.order(true), ctx.session);
    let first = order
        .into_iter()
        .find(|&i| g.replicas[i].up.load(Ordering::Relaxed));
    let Some(at) = first.filter(|_| safe_to_repeat(kind, mech)) else {
        return Started::NotHedged;
    };
    let (Some(delay), Some(to)) = (g.hedging.delay(at), next_healthy(g, at, ctx.session)) else {
        return Started::NotHedged;
    };
    let job = |i: usize| -> Job<T, ()> {
        let (ctx, mech) = (*ctx, mech.clone());
        Box::new(
            move |g: &Group| match init_on(g, i, &ctx, &mech, key, init) {
                Ok(Found::Yes(op)) => Reply::Ran(op, Ok(())),
                Ok(Found::NotHere) => Reply::NotStarted(None),
                Err(e) if device_class(e.rv()) => Reply::NotStarted(Some(e)),
                // Refused for the request itself (key, mechanism): the answer.
                Err(e) => Reply::Ran(T::failed(e.rv()), Err(e)),
            },
        )
    };
    let race = Race {
        g,
        what,
        session: ctx.session,
        at,
        to,
        delay,
    };
    match race.run(job(at), job(to)) {
        Raced::Answer { from, op, result } => {
            g.note_ok(from);
            Started::Answer(result.map(|()| (from, op)))
        }
        Raced::Failed(Some(e)) => {
            g.mark_down(at, &format!("{what}: {e}"));
            Started::Failed(at, e)
        }
        Raced::Failed(None) => Started::NotHedged,
    }
}

/// Could a single-part call of `kind` on replica `at` be hedged now? (The slot hedges,
/// the call may run twice, and another replica is healthy.) Cheap: no allocation.
pub fn possible(
    g: &Group,
    at: usize,
    kind: Kind,
    mech: &Mechanism,
    session: CK_SESSION_HANDLE,
) -> bool {
    g.hedging.delay(at).is_some()
        && safe_to_repeat(kind, mech)
        && next_healthy(g, at, session).is_some()
}

/// What a single-part call needs to be run again elsewhere.
pub struct Request<'a, T, R, I> {
    pub g: &'a Arc<Group>,
    pub ctx: Ctx,
    pub mech: &'a Mechanism,
    pub key: Option<ObjectId>,
    pub kind: Kind,
    pub what: &'static str,
    pub init: I,
    pub call: Call<T, R>,
}

impl<T: Op, R: Send + 'static, I: Init<T>> Request<'_, T, R, I> {
    /// Runs the call of `op` (on replica `at`) hedged, when hedging applies: `None` when it
    /// does not (the caller runs it inline). A replica failure with no answer from the
    /// other leaves in `op` a stand-in that repeats the failure, for the caller's failover.
    pub fn run(&self, at: usize, op: &mut T) -> Option<Hedged<R>> {
        let g = self.g;
        let delay = g.hedging.delay(at)?;
        if !safe_to_repeat(self.kind, self.mech) {
            return None;
        }
        let to = next_healthy(g, at, self.ctx.session)?;
        let mut taken = std::mem::replace(op, T::failed(CKR_DEVICE_ERROR));
        let call = self.call.clone();
        let first: Job<T, R> = Box::new(move |_: &Group| {
            let result = call(&mut taken);
            Reply::Ran(taken, result)
        });
        let (call, ctx, mech, key, init) = (
            self.call.clone(),
            self.ctx,
            self.mech.clone(),
            self.key,
            self.init,
        );
        let second: Job<T, R> = Box::new(move |g: &Group| {
            match init_on(g, to, &ctx, &mech, key, init) {
                Ok(Found::Yes(mut op)) => {
                    let result = call(&mut op);
                    Reply::Ran(op, result)
                }
                Err(e) if device_class(e.rv()) => Reply::NotStarted(Some(e)),
                // Not on that replica, or refused there: the first replica decides.
                _ => Reply::NotStarted(None),
            }
        });
        let race = Race {
            g,
            what: self.what,
            session: self.ctx.session,
            at,
            to,
            delay,
        };
        match race.run(first, second) {
            Raced::Answer {
                from,
                op: back,
                result,
            } => {
                *op = back;
                Some(Hedged { at: from, result })
            }
            Raced::Failed(failure) => {
                let e = failure.unwrap_or_else(|| err(CKR_DEVICE_ERROR));
                *op = T::failed(e.rv());
                Some(Hedged { at, result: Err(e) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latency_estimate_finds_the_slow_tail() {
        let l = Latency::new();
        assert_eq!(l.p99(), Duration::ZERO);
        // 1 in 50 calls takes 20 ms, the others 200 µs: the p99 is in the slow tail.
        for i in 0..WINDOW * 4 {
            let us = if i % 50 == 0 { 20_000 } else { 200 };
            l.record(Duration::from_micros(us));
        }
        let p99 = l.p99();
        assert!(
            p99 >= Duration::from_millis(20) && p99 <= Duration::from_millis(32),
            "{p99:?}"
        );
        // The tail goes away: after a few windows the estimate follows.
        for _ in 0..WINDOW * 8 {
            l.record(Duration::from_micros(200));
        }
        assert!(l.p99() <= Duration::from_micros(256), "{:?}", l.p99());
    }

    #[test]
    fn a_bucket_bounds_its_values_within_a_factor_of_two() {
        for us in [1u64, 2, 3, 5, 100, 191, 192, 1000, 65_000, 10_000_000] {
            let up = Latency::upper(Latency::bucket(us));
            assert!(up >= us && up <= 2 * us, "{us}: {up}");
        }
    }

    #[test]
    fn what_may_run_twice() {
        let m = |t| Mechanism::with(t, crate::core::mechanism::MechParam::None);
        assert!(safe_to_repeat(Kind::Sign, &m(CKM_ECDSA)));
        assert!(!safe_to_repeat(Kind::Sign, &m(CKM_HSS)));
        assert!(safe_to_repeat(Kind::Encrypt, &m(CKM_AES_CBC_PAD)));
        assert!(!safe_to_repeat(Kind::Encrypt, &m(CKM_AES_GCM)));
        assert!(safe_to_repeat(Kind::Decrypt, &m(CKM_AES_GCM)));
    }
}
