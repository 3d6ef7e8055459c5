//! The module's state between `C_Initialize` and `C_Finalize`: slots, sessions and the
//! object handle table, plus the fork epoch that makes a forked child re-initialize.

use crate::backend::{soft::SoftToken, ObjectId, Token};
use crate::config::{BackendConfig, Config};
use crate::core::error::{err, Error, Result};
use crate::core::session::Session;
use crate::core::slot::Slot;
use arc_swap::{ArcSwapOption, Guard};
use cryptoki_sys::*;
use dashmap::DashMap;
use parking_lot::Mutex;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The live instance. Read on every PKCS#11 call: `ArcSwap` loads without writing to a
/// counter shared by all threads, so concurrent calls on different sessions do not contend.
static STATE: ArcSwapOption<Instance> = ArcSwapOption::const_empty();

/// Serializes C_Initialize and C_Finalize.
static LIFECYCLE: Mutex<()> = Mutex::new(());

/// Bumped in the child after `fork()` (by the FFI layer's atfork handler); an instance made
/// in another epoch belongs to the parent and answers `CKR_CRYPTOKI_NOT_INITIALIZED`.
static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Called in the child right after `fork()`: only an atomic increment, nothing that could
/// take a lock held by a thread that did not survive the fork.
pub fn note_fork() {
    FORK_EPOCH.fetch_add(1, Ordering::SeqCst);
}

/// hsmux's object handles and the (slot, backend object) each one stands for. A handle is
/// never reused while the module is initialized, and one backend object keeps one handle.
#[derive(Default)]
pub struct HandleTable {
    by_handle: DashMap<CK_OBJECT_HANDLE, (usize, ObjectId)>,
    by_object: DashMap<(usize, ObjectId), CK_OBJECT_HANDLE>,
    next: AtomicU64,
}

impl HandleTable {
    pub fn handle_for(&self, slot: usize, id: ObjectId) -> CK_OBJECT_HANDLE {
        if let Some(h) = self.by_object.get(&(slot, id)) {
            return *h;
        }
        *self.by_object.entry((slot, id)).or_insert_with(|| {
            let h = self.next.fetch_add(1, Ordering::Relaxed) + 1;
            self.by_handle.insert(h, (slot, id));
            h
        })
    }

    pub fn resolve(&self, h: CK_OBJECT_HANDLE) -> Option<(usize, ObjectId)> {
        self.by_handle.get(&h).map(|v| *v)
    }

    pub fn forget(&self, slot: usize, id: ObjectId) {
        if let Some((_, h)) = self.by_object.remove(&(slot, id)) {
            self.by_handle.remove(&h);
        }
    }
}

pub struct Instance {
    pub slots: Vec<Arc<Slot>>,
    pub sessions: DashMap<CK_SESSION_HANDLE, Arc<Mutex<Session>>>,
    next_session: AtomicU64,
    pub objects: HandleTable,
    epoch: u64,
    pub config: Config,
}

impl Instance {
    fn build(config: Config) -> Result<Instance> {
        let mut slots = Vec::new();
        for s in &config.slots {
            let token: Arc<dyn Token> = match &s.backend {
                BackendConfig::Soft {
                    path,
                    kdf_iterations,
                } => Arc::new(SoftToken::new(path, &s.label, *kdf_iterations)),
            };
            slots.push(Arc::new(Slot::new(
                s.id.unwrap_or(slots.len() as u64),
                s.label.clone(),
                token,
            )));
        }
        Ok(Instance {
            slots,
            sessions: DashMap::new(),
            next_session: AtomicU64::new(1),
            objects: HandleTable::default(),
            epoch: FORK_EPOCH.load(Ordering::SeqCst),
            config,
        })
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

/// `C_Initialize`: loads the configuration (see `config.rs` for where from) and builds
/// every slot; nothing is half-started on error.
pub fn initialize(explicit_config: Option<&Path>) -> Result<()> {
    let _g = LIFECYCLE.lock();
    if let Some(inst) = STATE.load_full() {
        if inst.epoch == FORK_EPOCH.load(Ordering::SeqCst) {
            return Err(err(CKR_CRYPTOKI_ALREADY_INITIALIZED));
        }
        // The parent's state, inherited through fork(): its threads and locks are not ours.
        // Leak it rather than run its destructors.
        std::mem::forget(STATE.swap(None));
        std::mem::forget(inst);
    }
    crate::logging::init_early();
    let config = Config::locate(explicit_config).map_err(|e| {
        log::error!("hsmux: configuration error: {e}");
        err(CKR_GENERAL_ERROR)
    })?;
    crate::logging::init(&config.log);
    let inst = Instance::build(config)?;
    log::info!(
        "hsmux {} initialized from {} with {} slot(s)",
        env!("CARGO_PKG_VERSION"),
        inst.config.source,
        inst.slots.len()
    );
    STATE.store(Some(Arc::new(inst)));
    Ok(())
}

/// `C_Finalize`.
pub fn finalize() -> Result<()> {
    let _g = LIFECYCLE.lock();
    match STATE.load().as_ref() {
        Some(inst) if inst.epoch == FORK_EPOCH.load(Ordering::SeqCst) => {}
        _ => return Err(err(CKR_CRYPTOKI_NOT_INITIALIZED)),
    }
    if let Some(inst) = STATE.swap(None) {
        for s in &inst.slots {
            s.token.logout();
        }
        inst.sessions.clear();
    }
    Ok(())
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
