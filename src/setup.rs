//! The composition root: `C_Initialize` and `C_Finalize`. The configuration becomes tokens
//! ([`crate::backend::open`]), replica groups of tokens, slots and the core's instance,
//! plus the `/metrics` listener; `C_Finalize` takes them down in the reverse order.
//!
//! This is the one place that knows every layer: the core keeps the running state and
//! builds nothing, the backends and replica groups know nothing of each other.

use crate::backend::module::library;
use crate::config::{BackendConfig, Config};
use crate::core::error::{err, Result};
use crate::core::handles::HandleTable;
use crate::core::instance::{self, Instance};
use crate::core::slot::Slot;
use crate::core::token::Token;
use crate::metrics::{Listener, Metrics};
use crate::replica::{Member, ReplicaGroup};
use cryptoki_sys::*;
use parking_lot::Mutex;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What runs beside the core's instance, from `C_Initialize` to `C_Finalize`. The mutex
/// also serializes the two calls.
static LIFECYCLE: Mutex<Option<Running>> = Mutex::new(None);

/// Set by the `hsmux` CLI: its instance serves no `/metrics` (a module in a running
/// consumer may hold the port, and a check has nothing to show there).
static NO_METRICS: AtomicBool = AtomicBool::new(false);

pub fn without_metrics() {
    NO_METRICS.store(true, Ordering::SeqCst);
}

/// The replica groups among the slots, by slot id (`hsmux check`, the metrics).
pub type Groups = Vec<(CK_SLOT_ID, Arc<ReplicaGroup>)>;

struct Running {
    groups: Groups,
    /// The `/metrics` listener.
    listener: Option<Listener>,
}

/// `C_Initialize`: loads the configuration (see `config.rs` for where from) and builds
/// every slot; nothing is half-started on error.
pub fn initialize(explicit_config: Option<&Path>) -> Result<()> {
    let mut running = LIFECYCLE.lock();
    if instance::vacate()? {
        // The parent's metrics and listener (whose thread is not in this process) go with
        // its instance: leaked, not dropped.
        std::mem::forget(running.take());
        if let Some(m) = crate::metrics::current() {
            std::mem::forget(m);
        }
        crate::metrics::install(None);
        crate::proxy::forget_parent();
        crate::audit::forget_parent();
    }
    crate::logging::init_early();
    let config = Config::locate(explicit_config).map_err(|e| {
        log::error!("hsmux: configuration error: {e}");
        err(CKR_GENERAL_ERROR)
    })?;
    crate::logging::init(&config.log);
    audit(&config)?;
    let rules = crate::policy::build(&config).map_err(|e| {
        crate::audit::uninstall();
        log::error!("hsmux: configuration error: {e}");
        err(CKR_GENERAL_ERROR)
    })?;
    let (inst, groups) = build(config).inspect_err(|_| crate::audit::uninstall())?;
    crate::policy::install(Some(rules));
    let listener = metrics(&inst, &groups);
    audit_replicas(&inst, &groups);
    log::info!(
        "hsmux {} initialized from {} with {} slot(s)",
        env!("CARGO_PKG_VERSION"),
        inst.config.source,
        inst.all_slots.len()
    );
    instance::install(inst);
    *running = Some(Running { groups, listener });
    Ok(())
}

/// `C_Finalize`.
pub fn finalize() -> Result<()> {
    let mut running = LIFECYCLE.lock();
    let inst = instance::uninstall()?;
    crate::metrics::install(None);
    if let Some(l) = running.take().and_then(|r| r.listener) {
        l.stop();
    }
    inst.close();
    crate::audit::uninstall();
    crate::policy::install(None);
    // A vendor library shared with another user in the process is not finalized by hsmux:
    // the module slots' sessions are closed there explicitly.
    crate::proxy::stop();
    drop(inst);
    // The remote backends' runtime goes with the slots (DESIGN: owned by the module, shut
    // down by C_Finalize); the next C_Initialize starts a new one.
    crate::backend::remote::rt::shutdown();
    Ok(())
}

/// The replica groups of the live instance, by slot id (for `hsmux check`).
pub fn groups() -> Groups {
    LIFECYCLE
        .lock()
        .as_ref()
        .map(|r| r.groups.clone())
        .unwrap_or_default()
}

/// Every configured slot, in configuration order, and the replica groups among them. The
/// module slots go to the passthrough layer (`crate::proxy`), started last, once every
/// other slot was built: nothing is half-started on error.
fn build(config: Config) -> Result<(Instance, Groups)> {
    library::forget_failures();
    crate::core::handles::reset_session_handles();
    let objects = Arc::new(HandleTable::default());
    let mut slots = Vec::new();
    let mut all_slots = Vec::new();
    let mut module_slots = Vec::new();
    let mut groups = Vec::new();
    for (i, s) in config.slots.iter().enumerate() {
        let id = s.id.unwrap_or(i as u64) as CK_SLOT_ID;
        all_slots.push(id);
        let token: Arc<dyn Token> = match &s.backend {
            BackendConfig::Module(m) => {
                // Handle-table keys of module slots follow the configured slots' (a core
                // slot is keyed by its index), so none collide.
                module_slots.push(crate::proxy::ModuleSlotSpec {
                    id,
                    index: i,
                    label: s.label.clone(),
                    key: config.slots.len() + i,
                    config: m.clone(),
                    user_pin: s.user_pin.clone(),
                });
                continue;
            }
            BackendConfig::Replicas {
                policy,
                replicas,
                replay_limit,
                hedge_ms,
            } => {
                let members = replicas
                    .iter()
                    .map(|r| {
                        let name = format!("{}/{}", s.label, r.name);
                        Ok(Member {
                            token: crate::backend::open(&name, &r.backend, false)?,
                            name: r.name.clone(),
                            pin: r.pin.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let g = Arc::new(ReplicaGroup::new(&s.label, *policy, members));
                g.set_replay_limit(*replay_limit);
                g.set_hedge(*hedge_ms);
                groups.push((id, g.clone()));
                g
            }
            backend => Arc::from(crate::backend::open(
                &s.label,
                backend,
                s.user_pin.is_some(),
            )?),
        };
        slots.push(Arc::new(Slot::new(
            id,
            i,
            s.label.clone(),
            token,
            s.user_pin.clone(),
        )));
    }
    crate::proxy::start(module_slots, objects.clone());
    Ok((Instance::new(slots, all_slots, objects, config), groups))
}

/// `[metrics]`: the registry every slot and replica group counts in, and its listener.
/// The key stores work without it: a listener that cannot start is logged, not fatal.
fn metrics(inst: &Instance, groups: &Groups) -> Option<Listener> {
    let mc = inst.config.metrics.as_ref()?;
    // HSMUX_NO_METRICS: set by the `hsmux` key verbs, which load the module itself.
    if NO_METRICS.load(Ordering::SeqCst) || std::env::var_os("HSMUX_NO_METRICS").is_some() {
        return None;
    }
    let m = registry(inst, groups);
    // The sessions gauge is read from the core's and the proxy's state when scraped.
    m.set_sessions_source(Box::new(|index| {
        crate::core::api::open_sessions(index) + crate::proxy::open_sessions(index)
    }));
    crate::metrics::install(Some(m.clone()));
    match Listener::start(&mc.listen, m) {
        Ok(l) => {
            log::info!(
                "metrics: Prometheus text at http://{}/metrics",
                l.local_addr()
            );
            Some(l)
        }
        Err(e) => {
            log::error!(
                "metrics: cannot listen on {}: {e}; no /metrics this time",
                mc.listen
            );
            None
        }
    }
}

/// `[audit]`: the trail starts before the slots (its chain's start record is written, or
/// with `on_failure = "refuse"` the module does not start), and its counters join the
/// metrics. The CLI's instance writes none (`without_metrics`).
fn audit(config: &Config) -> Result<()> {
    if NO_METRICS.load(Ordering::SeqCst) || config.audit.is_none() {
        crate::audit::uninstall();
        return Ok(());
    }
    crate::audit::install(config).map_err(|e| {
        log::error!("hsmux: {e}");
        err(CKR_GENERAL_ERROR)
    })?;
    crate::metrics::extra::register_counter(
        "hsmux_audit_dropped_total",
        "Audit lines dropped because the queue to the writer was full (on_full = \"drop\").",
        crate::audit::dropped_total,
    );
    crate::metrics::extra::register_counter(
        "hsmux_audit_write_errors_total",
        "Audit lines that could not be written to the audit file (disk errors).",
        crate::audit::write_errors_total,
    );
    Ok(())
}

/// The audit lines name the replica that served a call, which the replica groups note in
/// the metrics: without `[metrics]`, a registry with no listener is installed for them.
fn audit_replicas(inst: &Instance, groups: &Groups) {
    if !crate::audit::enabled() || crate::metrics::current().is_some() || groups.is_empty() {
        return;
    }
    crate::metrics::install(Some(registry(inst, groups)));
}

/// A metrics registry with every slot and the replica groups' replicas.
fn registry(inst: &Instance, groups: &Groups) -> Arc<Metrics> {
    let labels: Vec<String> = inst.config.slots.iter().map(|s| s.label.clone()).collect();
    let m = Arc::new(Metrics::new(&labels));
    for (id, g) in groups {
        let index = inst.all_slots.iter().position(|i| i == id).unwrap_or(0);
        g.register_metrics(&m, index);
    }
    m
}
