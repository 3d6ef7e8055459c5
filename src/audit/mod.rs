//! The audit trail (`[audit]`): one JSON line per security-relevant PKCS#11 call, chained
//! per process by SHA-256 so that an edited, deleted or reordered line shows
//! (`hsmux audit verify`, [`verify`]).
//!
//! - [`calls`]: which calls get a line (`level = "keys" | "all"`), what each is to the trail.
//! - [`event`]: one call's fields and their JSON (no key material, PIN or data, ever).
//! - [`writer`]: the writer thread behind a bounded queue; the chain; rotation; disk errors.
//! - [`verify`], [`tail`]: reading a trail back (the CLI's `hsmux audit verify | tail`).
//!
//! The FFI layer calls in (`ffi::audit`): it classifies each call, remembers per session
//! the mechanism and key of each operation from its `*Init`, times the call and hands an
//! [`Event`] to [`Trail::submit`]. Module slots go through the same entry points, so the
//! passthrough is audited like every other slot. Without `[audit]` a call costs one
//! relaxed load.

pub mod calls;
pub mod event;
mod process;
mod queue;
pub mod tail;
pub mod verify;
mod writer;

pub use event::{Event, KeyIdentity};

use crate::config::audit::{AuditConfig, AuditLevel, OnFailure, OnFull};
use crate::config::Config;
use crate::core::int_hash::IntHash;
use arc_swap::{ArcSwapOption, Guard};
use calls::Op;
use cryptoki_sys::*;
use dashmap::DashMap;
use event::{Names, SlotName};
use parking_lot::Mutex;
use queue::{Pushed, Queue, Queued};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use writer::{Ack, Writer};

/// Lines dropped because the queue was full (`on_full = "drop"`), since the process began.
pub static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Lines that could not be written to the file (disk errors), since the process began.
pub static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// The queue's default length, in lines.
const DEFAULT_QUEUE: usize = 4096;
/// How long a call waits for its line under `on_failure = "refuse"`.
const ACK_LIMIT: Duration = Duration::from_secs(10);

static CURRENT: ArcSwapOption<Trail> = ArcSwapOption::const_empty();
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Bumped whenever `CURRENT` changes: a thread's copy of an older one is taken again.
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's copy of the installed trail, and the `GENERATION` it was taken at: a
    /// call reads the trail without touching a shared reference count (an `arc_swap`
    /// guard costs two locked instructions per call, and each waits for the call's
    /// earlier stores to leave the core). A copy outlives `C_Finalize` until the thread's
    /// next audited call or its exit; the trail it holds is stopped by then.
    static CACHED: RefCell<(u64, Option<Arc<Trail>>)> = const { RefCell::new((u64::MAX, None)) };
}

/// An operation in progress on a session, as its `*Init` set it up.
#[derive(Clone, Default)]
pub struct Running {
    pub mechanism: Option<CK_MECHANISM_TYPE>,
    pub key: Option<Arc<KeyIdentity>>,
    /// Bytes fed by `*Update` calls so far.
    pub data_len: u64,
}

#[derive(Default)]
struct SessionOps {
    slot: Option<usize>,
    ops: [Option<Running>; Op::COUNT],
    /// The key this session's last `*Init` used, as `Trail::keys_changed` was then: a
    /// copy of its own, so that sessions on other threads using the same key do not
    /// share a reference count (a cache line bounced between cores at every operation).
    last_key: Option<(u64, Arc<KeyIdentity>)>,
}

type HandleMap<V> = DashMap<CK_ULONG, V, IntHash>;

/// The running trail of this process (from `C_Initialize` to `C_Finalize`).
pub struct Trail {
    level: AuditLevel,
    on_full: OnFull,
    on_failure: OnFailure,
    queue: Arc<Queue>,
    thread: Mutex<Option<JoinHandle<()>>>,
    failed: Arc<AtomicBool>,
    names: Arc<Names>,
    epoch: u64,
    sessions: HandleMap<SessionOps>,
    /// Key identities by hsmux object handle (handles are not reused while initialized).
    keys: HandleMap<Arc<KeyIdentity>>,
    /// Bumped whenever a key's identity is forgotten: the sessions' copies older than
    /// that are read again.
    keys_changed: AtomicU64,
}

/// Whether a trail is installed (one relaxed load).
#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The installed trail of this process (not a forked parent's).
#[inline]
pub fn current() -> Option<Guard<Option<Arc<Trail>>>> {
    if !enabled() {
        return None;
    }
    let g = CURRENT.load();
    match g.as_ref() {
        Some(t) if t.epoch == crate::core::instance::fork_epoch() => Some(g),
        _ => None,
    }
}

/// Runs `f` on the installed trail of this process, if there is one, through this
/// thread's copy (see `CACHED`).
#[inline]
pub fn with_current<R>(f: impl FnOnce(&Trail) -> R) -> Option<R> {
    if !enabled() {
        return None;
    }
    let generation = GENERATION.load(Ordering::Acquire);
    let mut f = Some(f);
    // `Some(r)`: answered from the copy; `None`: the copy could not be used (taken again
    // while a call of this thread further up the stack holds it, or the thread is ending).
    let cached = CACHED
        .try_with(|cell| {
            if cell.borrow().0 != generation {
                let mut c = cell.try_borrow_mut().ok()?;
                *c = (generation, CURRENT.load_full());
            }
            let c = cell.borrow();
            let t =
                c.1.as_deref()
                    .filter(|t| t.epoch == crate::core::instance::fork_epoch());
            Some(t.and_then(|t| f.take().map(|f| f(t))))
        })
        .ok()
        .flatten();
    match cached {
        Some(r) => r,
        None => {
            let g = current()?;
            let t = g.as_ref()?;
            f.take().map(|f| f(t))
        }
    }
}

fn names_of(config: &Config) -> Names {
    let slots = config
        .slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            SlotName::new(
                s.label.clone(),
                s.id.unwrap_or(i as u64) as CK_SLOT_ID,
                match &s.backend {
                    crate::config::BackendConfig::Replicas { replicas, .. } => {
                        replicas.iter().map(|r| r.name.clone()).collect()
                    }
                    _ => Vec::new(),
                },
            )
        })
        .collect();
    Names { slots }
}

/// `C_Initialize`: starts the trail `config` asks for (or none). The chain's start record
/// is written before this returns; if it cannot be and `on_failure = "refuse"`, this
/// fails (the module does not start without its trail).
pub fn install(config: &Config) -> Result<(), String> {
    uninstall();
    let Some(cfg) = &config.audit else {
        return Ok(());
    };
    let trail = start(cfg, names_of(config))?;
    CURRENT.store(Some(Arc::new(trail)));
    GENERATION.fetch_add(1, Ordering::AcqRel);
    ENABLED.store(true, Ordering::Release);
    Ok(())
}

fn start(cfg: &AuditConfig, names: Names) -> Result<Trail, String> {
    let failed = Arc::new(AtomicBool::new(false));
    let names = Arc::new(names);
    let (w, opened) = Writer::open(cfg, names.clone(), failed.clone());
    if let Err(e) = opened {
        let msg = format!("audit: cannot write {}: {e}", cfg.file.display());
        if cfg.on_failure == OnFailure::Refuse {
            return Err(format!("{msg} (on_failure = \"refuse\")"));
        }
        log::error!("{msg}; the calls go on without their lines until it can be");
        failed.store(true, Ordering::SeqCst);
        WRITE_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    let queue = Arc::new(Queue::new(cfg.queue.unwrap_or(DEFAULT_QUEUE)));
    let q = queue.clone();
    let thread = std::thread::Builder::new()
        .name("hsmux-audit".into())
        .spawn(move || w.run(q))
        .map_err(|e| format!("audit: cannot start the writer thread: {e}"))?;
    Ok(Trail {
        level: cfg.level,
        on_full: cfg.on_full,
        on_failure: cfg.on_failure,
        queue,
        thread: Mutex::new(Some(thread)),
        failed,
        names,
        epoch: crate::core::instance::fork_epoch(),
        sessions: HandleMap::default(),
        keys: HandleMap::default(),
        keys_changed: AtomicU64::new(0),
    })
}

/// `C_Finalize`: writes what is queued and the chain's stop record, and ends the thread.
pub fn uninstall() {
    ENABLED.store(false, Ordering::Release);
    let old = CURRENT.swap(None);
    GENERATION.fetch_add(1, Ordering::AcqRel);
    if let Some(t) = old {
        t.stop();
    }
}

/// At process exit (an `atexit` handler, `ffi::audit`): what is queued is written, and the
/// chain's stop record, as `C_Finalize` would. The trail stays installed, closed: a call
/// racing the exit gets no line (and under `on_failure = "refuse"`, `CKR_DEVICE_ERROR`).
pub fn at_exit() {
    if let Some(g) = current() {
        if let Some(t) = g.as_ref() {
            t.stop();
        }
    }
}

/// In a forked child: the parent's trail (whose thread is not in this process) is left
/// alone, neither written to nor stopped.
pub fn forget_parent() {
    ENABLED.store(false, Ordering::Release);
    let old = CURRENT.swap(None);
    GENERATION.fetch_add(1, Ordering::AcqRel);
    if let Some(t) = old {
        std::mem::forget(t);
    }
}

/// A replica group moved a slot's calls from replica `from` to `to`: a line of its own.
pub fn failover(slot_label: &str, from: &str, to: &str, cause: &str) {
    let Some(t) = current() else { return };
    let Some(t) = t.as_ref() else { return };
    let slot = t.names.slots.iter().position(|s| s.label == slot_label);
    let mut e = Event::new("failover", slot);
    e.replica = slot
        .and_then(|i| t.names.slots[i].replicas.iter().position(|r| r == to))
        .map_or(0, |i| i + 1);
    e.detail = Some(format!("from replica {from}: {cause}"));
    e.rv = CKR_DEVICE_ERROR;
    t.submit(e);
}

impl Trail {
    pub fn level(&self) -> AuditLevel {
        self.level
    }

    /// Whether calls that touch keys are refused now: `on_failure = "refuse"` and the
    /// last write failed.
    pub fn refusing(&self) -> bool {
        self.on_failure == OnFailure::Refuse && self.failed.load(Ordering::Relaxed)
    }

    /// Whether a call's result may stand only once its line is written.
    pub fn strict(&self) -> bool {
        self.on_failure == OnFailure::Refuse
    }

    /// Closes the queue and waits for the writer to write what is queued and the stop record.
    fn stop(&self) {
        self.queue.close();
        if let Some(h) = self.thread.lock().take() {
            if h.join().is_err() {
                log::error!("audit: the writer thread panicked");
            }
        }
        // Threads' copies (`CACHED`) may keep the struct a while: not its maps.
        self.sessions.clear();
        self.keys.clear();
    }

    /// Hands the event to the writer. Returns whether the line is (under `refuse`: was
    /// written; otherwise: will be) in the trail.
    pub fn submit(&self, event: Event) -> bool {
        let ack = self.strict().then(|| Arc::new(Ack::default()));
        let q = Queued {
            event,
            ack: ack.clone(),
        };
        let queued = match self.queue.push(q, self.on_full == OnFull::Block) {
            Pushed::Queued => true,
            Pushed::Full => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
                false
            }
            Pushed::Closed => false,
        };
        match ack {
            Some(a) if queued => a.wait(ACK_LIMIT),
            _ => queued,
        }
    }

    /// `*Init` on session `h`: remembers operation `op` if it `started` (or, started
    /// without a mechanism, cancels it), and returns the session's slot (`slot` is asked
    /// the first time only) and the identity of `key`, the session's own copy (see
    /// `SessionOps::last_key`; `resolve` reads it the first time the process sees it).
    /// A started operation's key identity is returned only if the `*Init` gets a line
    /// (`logged`): each reference counted is a locked instruction on the signing path.
    #[allow(clippy::too_many_arguments)]
    pub fn init_op(
        &self,
        h: CK_SESSION_HANDLE,
        slot: impl FnOnce() -> Option<usize>,
        op: Op,
        started: Option<Option<CK_MECHANISM_TYPE>>,
        key: Option<CK_OBJECT_HANDLE>,
        resolve: impl FnOnce(CK_OBJECT_HANDLE) -> KeyIdentity,
        logged: bool,
    ) -> (Option<usize>, Option<Arc<KeyIdentity>>) {
        if started.is_none() {
            // A failed `*Init`: nothing to remember, and no entry made for a session
            // handle that may not exist.
            let known = self.sessions.get(&h).and_then(|s| s.slot);
            let slot = known.or_else(slot);
            return (slot, key.map(|obj| self.key(obj, || resolve(obj))));
        }
        let changed = self.keys_changed.load(Ordering::Acquire);
        let mut s = self.sessions.entry(h).or_default();
        if s.slot.is_none() {
            s.slot = slot();
        }
        let mut k = key.and_then(|obj| match &s.last_key {
            Some((seen, k)) if *seen == changed && k.handle == obj => Some(k.clone()),
            _ => None,
        });
        if let (None, Some(obj)) = (&k, key) {
            // Read without holding the session map's lock (the key store may be remote).
            drop(s);
            let fresh = Arc::new(KeyIdentity::clone(&self.key(obj, || resolve(obj))));
            s = self.sessions.entry(h).or_default();
            s.last_key = Some((changed, fresh.clone()));
            k = Some(fresh);
        }
        let line_key = if logged { k.clone() } else { None };
        if let Some(mechanism) = started {
            s.ops[op.index()] = mechanism.map(|m| Running {
                mechanism: Some(m),
                key: k,
                data_len: 0,
            });
        }
        (s.slot, line_key)
    }

    /// Session `h`'s operation `op`, as its `*Init` set it up (taken out if the call
    /// `ends` it: no reference count touched), and the session's slot.
    pub fn op(&self, h: CK_SESSION_HANDLE, op: Op, ends: bool) -> (Option<Running>, Option<usize>) {
        let Some(mut s) = self.sessions.get_mut(&h) else {
            return (None, None);
        };
        let slot = s.slot;
        let r = &mut s.ops[op.index()];
        (if ends { r.take() } else { r.clone() }, slot)
    }

    pub fn add_len(&self, h: CK_SESSION_HANDLE, op: Op, n: u64) {
        if let Some(mut s) = self.sessions.get_mut(&h) {
            if let Some(r) = &mut s.ops[op.index()] {
                r.data_len += n;
            }
        }
    }

    pub fn end_op(&self, h: CK_SESSION_HANDLE, op: Op) {
        self.op(h, op, true);
    }

    pub fn close_session(&self, h: CK_SESSION_HANDLE) {
        self.sessions.remove(&h);
    }

    pub fn close_slot(&self, slot: usize) {
        self.sessions.retain(|_, s| s.slot != Some(slot));
    }

    /// The identity of key `obj`, read by `resolve` the first time only.
    pub fn key(
        &self,
        obj: CK_OBJECT_HANDLE,
        resolve: impl FnOnce() -> KeyIdentity,
    ) -> Arc<KeyIdentity> {
        if let Some(k) = self.keys.get(&obj) {
            return k.clone();
        }
        let k = Arc::new(resolve());
        self.keys.insert(obj, k.clone());
        k
    }

    /// Forgets `obj`'s identity (destroyed, or its label or id may have changed).
    pub fn forget_key(&self, obj: CK_OBJECT_HANDLE) {
        self.keys.remove(&obj);
        self.keys_changed.fetch_add(1, Ordering::AcqRel);
    }
}

/// `hsmux_audit_dropped_total`.
pub fn dropped_total() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// `hsmux_audit_write_errors_total`.
pub fn write_errors_total() -> u64 {
    WRITE_ERRORS.load(Ordering::Relaxed)
}
