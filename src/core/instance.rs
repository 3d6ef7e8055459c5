//! The module's state between `C_Initialize` and `C_Finalize`: slots, sessions and the
//! object handle table, plus the fork epoch that makes a forked child re-initialize.
//!
//! The core builds nothing: the composition root (`crate::setup`) makes the slots from the
//! configuration, then [`install`]s the instance; `C_Finalize` [`uninstall`]s it.

use crate::backend::module::{pass::PassSession, ModuleSlot};
use crate::config::Config;
use crate::core::error::{err, Error, Result};
use crate::core::handles::HandleTable;
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

/// Where a configured slot lives: the core's slots (soft and the other `Token` backends)
/// or the module slots, which forward to a vendor library.
#[derive(Clone)]
pub enum SlotRef {
    Core(Arc<Slot>),
    Module(Arc<ModuleSlot>),
}

pub struct Instance {
    /// The slots the core runs (PKCS#11 rules in hsmux, keys in a `Token`).
    pub slots: Vec<Arc<Slot>>,
    /// Every slot in configuration order, with its id.
    pub all_slots: Vec<(CK_SLOT_ID, SlotRef)>,
    pub sessions: DashMap<CK_SESSION_HANDLE, Arc<Mutex<Session>>>,
    /// Sessions of module slots (handles from the same counter as `sessions`).
    pub pass_sessions: DashMap<CK_SESSION_HANDLE, Arc<PassSession>>,
    /// Any module slot configured? Spares the soft slots' calls a second table lookup.
    has_modules: bool,
    next_session: AtomicU64,
    pub objects: Arc<HandleTable>,
    epoch: u64,
    pub config: Config,
}

impl Instance {
    /// An instance of `all_slots` (in configuration order) whose objects are numbered in
    /// `objects`; made in this process's fork epoch.
    pub fn new(
        all_slots: Vec<(CK_SLOT_ID, SlotRef)>,
        objects: Arc<HandleTable>,
        config: Config,
    ) -> Instance {
        Instance {
            slots: all_slots
                .iter()
                .filter_map(|(_, s)| match s {
                    SlotRef::Core(s) => Some(s.clone()),
                    SlotRef::Module(_) => None,
                })
                .collect(),
            has_modules: all_slots
                .iter()
                .any(|(_, s)| matches!(s, SlotRef::Module(_))),
            all_slots,
            sessions: DashMap::new(),
            pass_sessions: DashMap::new(),
            next_session: AtomicU64::new(1),
            objects,
            epoch: fork_epoch(),
            config,
        }
    }

    /// What `C_Finalize` ends here: every token logged out, every session closed (a vendor
    /// library shared with another user in the process is not finalized by hsmux, so the
    /// module slots' sessions are closed there explicitly).
    pub fn close(&self) {
        for s in &self.slots {
            s.token.logout();
        }
        self.sessions.clear();
        let pass: Vec<_> = self
            .pass_sessions
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        for (h, p) in pass {
            self.close_pass_session(h, &p);
        }
    }

    /// The module slot with id `id`, if it is one.
    pub fn module_slot(&self, id: CK_SLOT_ID) -> Option<Arc<ModuleSlot>> {
        if !self.has_modules {
            return None;
        }
        let m = self.all_slots.iter().find_map(|(i, s)| match s {
            SlotRef::Module(m) if *i == id => Some(m.clone()),
            _ => None,
        });
        m
    }

    /// One round of `C_WaitForSlotEvent(CKF_DONT_BLOCK)` over the vendor libraries behind
    /// module slots (hsmux's own slots never change): `Ok(Some(id))` for an event on one of
    /// our slots, `Ok(None)` when some vendor could tell there was none, else the error.
    pub fn poll_slot_events(&self) -> Result<Option<CK_SLOT_ID>> {
        let modules: Vec<&Arc<ModuleSlot>> = self
            .all_slots
            .iter()
            .filter_map(|(_, s)| match s {
                SlotRef::Module(m) => Some(m),
                _ => None,
            })
            .collect();
        let mut libraries: Vec<&Arc<crate::backend::module::library::Library>> = Vec::new();
        for m in &modules {
            if let Some(l) = m.shared_library() {
                if !libraries.iter().any(|x| Arc::ptr_eq(x, l)) {
                    libraries.push(l);
                }
            }
        }
        let mut supported = false;
        for lib in libraries {
            match lib.poll_slot_event() {
                Ok(None) => supported = true,
                Ok(Some(vs)) => {
                    supported = true;
                    let mine = modules.iter().find(|m| {
                        m.shared_library().is_some_and(|l| Arc::ptr_eq(l, lib))
                            && m.vendor_slot() == Ok(vs)
                    });
                    if let Some(m) = mine {
                        return Ok(Some(m.id));
                    }
                }
                Err(_) => {}
            }
        }
        if supported {
            Ok(None)
        } else {
            Err(err(CKR_FUNCTION_NOT_SUPPORTED))
        }
    }

    /// A blocking `C_WaitForSlotEvent`: the one vendor library behind the module slots
    /// waits (its own answer, e.g. SoftHSM's CKR_FUNCTION_NOT_SUPPORTED); hsmux cannot
    /// block on several libraries at once, nor on its own fixed slots.
    pub fn wait_slot_event(&self) -> Result<CK_SLOT_ID> {
        let mut libraries: Vec<&Arc<crate::backend::module::library::Library>> = Vec::new();
        for (_, s) in &self.all_slots {
            if let SlotRef::Module(m) = s {
                if let Some(l) = m.shared_library() {
                    if !libraries.iter().any(|x| Arc::ptr_eq(x, l)) {
                        libraries.push(l);
                    }
                }
            }
        }
        let [lib] = libraries.as_slice() else {
            return Err(err(CKR_FUNCTION_NOT_SUPPORTED));
        };
        loop {
            let vs = lib.wait_slot_event().map_err(err)?;
            let mine = self.all_slots.iter().find_map(|(id, s)| match s {
                SlotRef::Module(m) if m.vendor_slot() == Ok(vs) => Some(*id),
                _ => None,
            });
            if let Some(id) = mine {
                return Ok(id);
            }
        }
    }

    /// The module session behind handle `h`, if it is one.
    #[inline]
    pub fn pass_session(&self, h: CK_SESSION_HANDLE) -> Option<Arc<PassSession>> {
        if !self.has_modules {
            return None;
        }
        self.pass_sessions.get(&h).map(|s| s.clone())
    }

    /// Opens a vendor session on module slot `m` and gives it an hsmux handle. With
    /// `want_handle` false (the consumer passed a NULL `phSession`) the vendor sees the NULL
    /// and answers it; one that still says CKR_OK gets the spec's code.
    pub fn open_pass_session(
        &self,
        m: &Arc<ModuleSlot>,
        flags: CK_FLAGS,
        want_handle: bool,
    ) -> std::result::Result<CK_SESSION_HANDLE, CK_RV> {
        let vh = m.open_session(flags, want_handle)?;
        if !want_handle {
            m.close_vendor_session(vh);
            return Err(CKR_ARGUMENTS_BAD);
        }
        let h = self.new_session_handle();
        self.pass_sessions
            .insert(h, Arc::new(PassSession::new(m.clone(), vh)));
        Ok(h)
    }

    /// `C_CloseSession` of a module session: the vendor's answer, and hsmux forgets it
    /// unless the vendor still holds it.
    pub fn close_pass_session(&self, h: CK_SESSION_HANDLE, p: &PassSession) -> CK_RV {
        let rv = p.slot.close_vendor_session(p.vh);
        if matches!(
            rv,
            CKR_OK
                | CKR_SESSION_HANDLE_INVALID
                | CKR_SESSION_CLOSED
                | CKR_CRYPTOKI_NOT_INITIALIZED
                | CKR_DEVICE_REMOVED
        ) {
            self.pass_sessions.remove(&h);
        }
        rv
    }

    /// `C_CloseAllSessions` of a module slot: each of hsmux's sessions there is closed at
    /// the vendor (other users of the vendor's slot keep theirs).
    pub fn close_all_pass_sessions(&self, m: &Arc<ModuleSlot>) -> CK_RV {
        if let Err(rv) = m.vendor_slot() {
            return rv;
        }
        let mine: Vec<(CK_SESSION_HANDLE, Arc<PassSession>)> = self
            .pass_sessions
            .iter()
            .filter(|e| Arc::ptr_eq(&e.value().slot, m))
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        for (h, p) in mine {
            self.close_pass_session(h, &p);
        }
        CKR_OK
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

    pub fn new_session_handle(&self) -> CK_SESSION_HANDLE {
        self.next_session.fetch_add(1, Ordering::Relaxed)
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
pub fn get() -> Result<Live> {
    let g = STATE.load();
    match g.as_ref() {
        Some(inst) if inst.epoch == FORK_EPOCH.load(Ordering::Relaxed) => Ok(Live(g)),
        _ => Err(Error::new(CKR_CRYPTOKI_NOT_INITIALIZED)),
    }
}

/// A loaded, initialized instance.
pub struct Live(Guard<Option<Arc<Instance>>>);

impl std::ops::Deref for Live {
    type Target = Instance;
    fn deref(&self) -> &Instance {
        // `get` only builds a Live around Some.
        self.0
            .as_ref()
            .map(|a| &**a)
            .unwrap_or_else(|| unreachable!("Live holds an instance"))
    }
}
