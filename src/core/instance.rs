//! The module's state between `C_Initialize` and `C_Finalize`: slots, sessions and the
//! object handle table, plus the fork epoch that makes a forked child re-initialize.

use crate::backend::module::{pass::PassSession, ModuleSlot};
use crate::backend::remote;
use crate::backend::soft::SoftToken;
use crate::config::{BackendConfig, Config};
use crate::core::error::{err, Error, Result};
use crate::core::handles::HandleTable;
use crate::core::session::Session;
use crate::core::slot::Slot;
use crate::core::token::{ObjectId, Token};
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
    /// The replica groups among the core slots (for `hsmux check` and the metrics).
    pub groups: Vec<(CK_SLOT_ID, Arc<crate::replica::ReplicaGroup>)>,
    /// Any module slot configured? Spares the soft slots' calls a second table lookup.
    has_modules: bool,
    next_session: AtomicU64,
    pub objects: Arc<HandleTable>,
    epoch: u64,
    pub config: Config,
}

impl Instance {
    fn build(config: Config) -> Result<Instance> {
        crate::backend::module::library::forget_failures();
        let objects = Arc::new(HandleTable::default());
        let mut slots = Vec::new();
        let mut all_slots = Vec::new();
        let mut groups = Vec::new();
        // Keys in the handle table: core slots by their index in `slots`, module slots
        // after them (offset by the number of configured slots, so none collide).
        let module_base = config.slots.len();
        for (i, s) in config.slots.iter().enumerate() {
            let id = s.id.unwrap_or(i as u64) as CK_SLOT_ID;
            let token: Arc<dyn Token> = match &s.backend {
                BackendConfig::Soft {
                    path,
                    kdf_iterations,
                    seal,
                } => {
                    let t = SoftToken::new(path, &s.label, *kdf_iterations);
                    match seal {
                        None => Arc::new(t),
                        Some(sc) => Arc::new(
                            t.with_seal(crate::backend::vault::seal::store_seal(&s.label, sc)),
                        ),
                    }
                }
                BackendConfig::Vault(c) => Arc::new(remote::token(
                    &s.label,
                    remote::RemoteConfig::Vault(c),
                    s.user_pin.is_some(),
                )),
                BackendConfig::GcpKms(c) => Arc::new(remote::token(
                    &s.label,
                    remote::RemoteConfig::GcpKms(c),
                    s.user_pin.is_some(),
                )),
                BackendConfig::AwsKms(c) => Arc::new(remote::token(
                    &s.label,
                    remote::RemoteConfig::AwsKms(c),
                    s.user_pin.is_some(),
                )),
                BackendConfig::CloudHsm(c) => {
                    crate::backend::aws_kms::cloudhsm::slot_token(&s.label, c)
                }
                BackendConfig::Replicas { policy, replicas } => {
                    let members = replicas
                        .iter()
                        .map(|r| crate::replica::Member {
                            name: r.name.clone(),
                            pin: r.pin.clone(),
                            token: replica_token(&format!("{}/{}", s.label, r.name), &r.backend),
                        })
                        .collect();
                    let g = Arc::new(crate::replica::ReplicaGroup::new(
                        &s.label, *policy, members,
                    ));
                    groups.push((id, g.clone()));
                    g
                }
                BackendConfig::Module(m) => {
                    let slot = ModuleSlot::new(
                        id,
                        i,
                        &s.label,
                        module_base + i,
                        m,
                        s.user_pin.clone(),
                        objects.clone(),
                    );
                    all_slots.push((id, SlotRef::Module(Arc::new(slot))));
                    continue;
                }
            };
            let slot = Arc::new(Slot::new(id, i, s.label.clone(), token, s.user_pin.clone()));
            slots.push(slot.clone());
            all_slots.push((id, SlotRef::Core(slot)));
        }
        Ok(Instance {
            slots,
            has_modules: all_slots
                .iter()
                .any(|(_, s)| matches!(s, SlotRef::Module(_))),
            all_slots,
            groups,
            sessions: DashMap::new(),
            pass_sessions: DashMap::new(),
            next_session: AtomicU64::new(1),
            objects,
            epoch: FORK_EPOCH.load(Ordering::SeqCst),
            config,
        })
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

/// The token of one replica (named `slot/replica` in its log lines).
fn replica_token(name: &str, backend: &crate::config::ReplicaBackend) -> Box<dyn Token> {
    use crate::config::ReplicaBackend as B;
    match backend {
        B::Module(m) => Box::new(crate::backend::module::token::ModuleToken::new(name, m)),
        B::Vault(c) => Box::new(remote::token(name, remote::RemoteConfig::Vault(c), false)),
        B::GcpKms(c) => Box::new(remote::token(name, remote::RemoteConfig::GcpKms(c), false)),
        B::AwsKms(c) => Box::new(remote::token(name, remote::RemoteConfig::AwsKms(c), false)),
        B::CloudHsm(c) => crate::backend::aws_kms::cloudhsm::replica_token(name, c),
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
        inst.all_slots.len()
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
        // A vendor library shared with another user in the process is not finalized by
        // us: close our sessions there explicitly.
        let pass: Vec<_> = inst
            .pass_sessions
            .iter()
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        for (h, p) in pass {
            inst.close_pass_session(h, &p);
        }
        drop(inst);
        // The remote backends' runtime goes with the slots (DESIGN: owned by the
        // module, shut down by C_Finalize); the next C_Initialize starts a new one.
        crate::backend::remote::rt::shutdown();
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
