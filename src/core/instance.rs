//! The module's state between `C_Initialize` and `C_Finalize`: slots, sessions and the
//! object handle table, plus the fork epoch that makes a forked child re-initialize.

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

/// Set by the `hsmux` CLI: its instance serves no `/metrics` (a module in a running
/// consumer may hold the port, and a check has nothing to show there).
static NO_METRICS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn without_metrics() {
    NO_METRICS.store(true, Ordering::SeqCst);
}

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

pub struct Instance {
    /// The slots the core runs (PKCS#11 rules in hsmux, keys in a `Token`).
    pub slots: Vec<Arc<Slot>>,
    /// Every configured slot id in configuration order: the core's and the module slots
    /// (which `crate::proxy` runs).
    pub all_slots: Vec<CK_SLOT_ID>,
    pub sessions: DashMap<CK_SESSION_HANDLE, Arc<Mutex<Session>>>,
    /// The `/metrics` listener, stopped by `C_Finalize`.
    listener: Mutex<Option<crate::metrics::Listener>>,
    /// The replica groups among the core slots (for `hsmux check` and the metrics).
    pub groups: Vec<(CK_SLOT_ID, Arc<crate::replica::ReplicaGroup>)>,
    pub objects: Arc<HandleTable>,
    epoch: u64,
    pub config: Config,
}

impl Instance {
    fn build(config: Config) -> Result<Instance> {
        crate::backend::module::library::forget_failures();
        crate::core::handles::reset_session_handles();
        let mut module_slots = Vec::new();
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
                    module_slots.push(crate::proxy::ModuleSlotSpec {
                        id,
                        index: i,
                        label: s.label.clone(),
                        key: module_base + i,
                        config: m.clone(),
                        user_pin: s.user_pin.clone(),
                    });
                    all_slots.push(id);
                    continue;
                }
            };
            let slot = Arc::new(Slot::new(id, i, s.label.clone(), token, s.user_pin.clone()));
            slots.push(slot.clone());
            all_slots.push(id);
        }
        // ---- module slots: the passthrough layer (the composition root's call) ----
        crate::proxy::start(module_slots, objects.clone());
        // ----
        let metrics = config
            .metrics
            .as_ref()
            .filter(|_| !NO_METRICS.load(Ordering::SeqCst));
        let listener = match metrics {
            None => None,
            Some(mc) => {
                let labels: Vec<String> = config.slots.iter().map(|s| s.label.clone()).collect();
                let m = Arc::new(crate::metrics::Metrics::new(&labels));
                for (id, g) in &groups {
                    let index = all_slots.iter().position(|i| i == id).unwrap_or(0);
                    g.register_metrics(&m, index);
                }
                crate::metrics::install(Some(m.clone()));
                match crate::metrics::Listener::start(&mc.listen, m) {
                    Ok(l) => {
                        log::info!(
                            "metrics: Prometheus text at http://{}/metrics",
                            l.local_addr()
                        );
                        Some(l)
                    }
                    Err(e) => {
                        // The key stores work without it; the operator learns why here.
                        log::error!(
                            "metrics: cannot listen on {}: {e}; no /metrics this time",
                            mc.listen
                        );
                        None
                    }
                }
            }
        };
        Ok(Instance {
            slots,
            listener: Mutex::new(listener),
            all_slots,
            groups,
            sessions: DashMap::new(),
            objects,
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
        let s = &self.slots[self.slot_index(id)?];
        crate::metrics::note_slot(s.index);
        Ok(s)
    }

    pub fn session(&self, h: CK_SESSION_HANDLE) -> Result<Arc<Mutex<Session>>> {
        self.sessions
            .get(&h)
            .map(|s| s.clone())
            .ok_or_else(|| err(CKR_SESSION_HANDLE_INVALID))
    }

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

/// The `hsmux_sessions` gauge of slot `index`.
pub fn sessions_changed(index: usize, delta: i64) {
    if let Some(m) = crate::metrics::current() {
        m.sessions_changed(index, delta);
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
        // The parent's metrics (and its listener, whose thread is not in this process).
        if let Some(m) = crate::metrics::current() {
            std::mem::forget(m);
        }
        crate::metrics::install(None);
        // ---- module slots: the passthrough layer (the composition root's call) ----
        crate::proxy::forget_parent();
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
        crate::metrics::install(None);
        if let Some(l) = inst.listener.lock().take() {
            l.stop();
        }
        for s in &inst.slots {
            s.token.logout();
        }
        inst.sessions.clear();
        // ---- module slots: the passthrough layer (the composition root's call) ----
        crate::proxy::stop();
        // ----
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
