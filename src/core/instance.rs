//! The module's state between `C_Initialize` and `C_Finalize`: slots, sessions and the
//! object handle table, plus the fork epoch that makes a forked child re-initialize.
//!
//! The core builds nothing: the composition root (`crate::setup`) makes the slots from the
//! configuration, then [`install`]s the instance; `C_Finalize` [`uninstall`]s it.

use crate::config::Config;
use crate::core::error::{err, Error, Result};
use crate::core::handles::HandleTable;
use crate::core::int_hash::IntHash;
use crate::core::session::Session;
use crate::core::slot::Slot;
use crate::core::token::ObjectId;
use arc_swap::{ArcSwapOption, Guard};
use cryptoki_sys::*;
use dashmap::DashMap;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The live instance. Read on every PKCS#11 call: `ArcSwap` loads without writing to a
/// counter shared by all threads, so concurrent calls on different sessions do not contend.
static STATE: ArcSwapOption<Instance> = ArcSwapOption::const_empty();

/// Bumped in the child after `fork()` (by the FFI layer's atfork handler); an instance made
/// in another epoch belongs to the parent and answers `CKR_CRYPTOKI_NOT_INITIALIZED`.
static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Called in the child right after `fork()`: only an atomic increment, nothing that could
/// take a lock held by a thread that did not survive the fork.
pub fn note_fork() {
    FORK_EPOCH.fetch_add(1, Ordering::SeqCst);
}

/// The current fork epoch (state made in another epoch belongs to the parent process).
pub fn fork_epoch() -> u64 {
    FORK_EPOCH.load(Ordering::SeqCst)
}

pub struct Instance {
    /// The slots the core runs (PKCS#11 rules in hsmux, keys in a `Token`).
    pub slots: Vec<Arc<Slot>>,
    /// Every configured slot id in configuration order: the core's and the module slots
    /// (which `crate::proxy` runs).
    pub all_slots: Vec<CK_SLOT_ID>,
    pub sessions: DashMap<CK_SESSION_HANDLE, Arc<Mutex<Session>>, IntHash>,
    pub objects: Arc<HandleTable>,
    epoch: u64,
    pub config: Config,
}

impl Instance {
    /// An instance of the core's `slots` among `all_slots` (every configured slot id, in
    /// configuration order), whose objects are numbered in `objects`; made in this
    /// process's fork epoch.
    pub fn new(
        slots: Vec<Arc<Slot>>,
        all_slots: Vec<CK_SLOT_ID>,
        objects: Arc<HandleTable>,
        config: Config,
    ) -> Instance {
        Instance {
            slots,
            all_slots,
            sessions: DashMap::default(),
            objects,
            epoch: fork_epoch(),
            config,
        }
    }

    /// What `C_Finalize` ends here: every token logged out, every session closed.
    pub fn close(&self) {
        for s in &self.slots {
            s.token.logout();
        }
        self.sessions.clear();
    }

    pub fn slot_index(&self, id: CK_SLOT_ID) -> Result<usize> {
        self.slots
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| err(CKR_SLOT_ID_INVALID))
    }

    pub fn slot(&self, id: CK_SLOT_ID) -> Result<&Arc<Slot>> {
        Ok(&self.slots[self.slot_index(id)?])
    }

    pub fn session(&self, h: CK_SESSION_HANDLE) -> Result<Arc<Mutex<Session>>> {
        self.sessions
            .get(&h)
            .map(|s| s.clone())
            .ok_or_else(|| err(CKR_SESSION_HANDLE_INVALID))
    }

    /// A new session handle, from the counter the module slots' sessions share.
    pub fn new_session_handle(&self) -> CK_SESSION_HANDLE {
        crate::core::handles::new_session_handle()
    }

    /// The backend object behind handle `h`, which must belong to slot `slot`.
    pub fn object(&self, slot: usize, h: CK_OBJECT_HANDLE, invalid: CK_RV) -> Result<ObjectId> {
        match self.objects.resolve(h) {
            Some((s, id)) if s == slot => Ok(id),
            _ => Err(err(invalid)),
        }
    }

    pub fn slot_position(&self, slot: &Arc<Slot>) -> usize {
        self.slots
            .iter()
            .position(|s| Arc::ptr_eq(s, slot))
            .unwrap_or(usize::MAX)
    }
}

/// Before a `C_Initialize` (under the caller's lifecycle lock): an instance of this process
/// is `CKR_CRYPTOKI_ALREADY_INITIALIZED`. One inherited through `fork()` belongs to the
/// parent: its threads and locks are not ours, so it is leaked rather than dropped, and
/// `Ok(true)` tells the caller to leak its own share of the parent's state too.
pub fn vacate() -> Result<bool> {
    let Some(inst) = STATE.load_full() else {
        return Ok(false);
    };
    if inst.epoch == fork_epoch() {
        return Err(err(CKR_CRYPTOKI_ALREADY_INITIALIZED));
    }
    std::mem::forget(STATE.swap(None));
    std::mem::forget(inst);
    Ok(true)
}

/// Makes `inst` the live instance (after [`vacate`], under the same lock).
pub fn install(inst: Instance) {
    STATE.store(Some(Arc::new(inst)));
}

/// `C_Finalize` (under the caller's lifecycle lock): takes the live instance out, or
/// `CKR_CRYPTOKI_NOT_INITIALIZED` when this process has none. Calls in flight keep their
/// reference until they return.
pub fn uninstall() -> Result<Arc<Instance>> {
    match STATE.load().as_ref() {
        Some(inst) if inst.epoch == fork_epoch() => {}
        _ => return Err(err(CKR_CRYPTOKI_NOT_INITIALIZED)),
    }
    STATE
        .swap(None)
        .ok_or_else(|| err(CKR_CRYPTOKI_NOT_INITIALIZED))
}

/// The live instance, or `CKR_CRYPTOKI_NOT_INITIALIZED`. The guard keeps it alive for the
/// call even if another thread finalizes meanwhile.
pub fn get() -> Result<Live<Instance>> {
    Live::load(&STATE, |inst| {
        inst.epoch == FORK_EPOCH.load(Ordering::Relaxed)
    })
    .ok_or_else(|| Error::new(CKR_CRYPTOKI_NOT_INITIALIZED))
}

/// What a process-wide slot (the instance, the module proxy) holds, kept alive for the
/// call even if another thread finalizes meanwhile.
pub struct Live<T>(Guard<Option<Arc<T>>>);

impl<T> Live<T> {
    /// The value in `state`, when there is one and `current` takes it (it was made in
    /// this process, not inherited through a fork).
    #[inline]
    pub fn load(state: &ArcSwapOption<T>, current: impl FnOnce(&T) -> bool) -> Option<Self> {
        let g = state.load();
        match g.as_ref() {
            Some(v) if current(v) => Some(Live(g)),
            _ => None,
        }
    }
}

impl<T> std::ops::Deref for Live<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // `load` only builds a Live around Some.
        self.0
            .as_ref()
            .map(|a| &**a)
            .unwrap_or_else(|| unreachable!("Live holds a value"))
    }
}
