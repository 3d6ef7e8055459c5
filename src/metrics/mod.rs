//! The module's metrics and their Prometheus listener (`[metrics] listen`).
//!
//! Series (DESIGN.md, "Metrics and logs"):
//! - `hsmux_calls_total{slot,replica,function,rv}` counter: every PKCS#11 call, by the
//!   name of its return value (`crate::core::rv::name`; vendor values: `CKR_VENDOR_DEFINED`)
//! - `hsmux_call_duration_seconds{slot,replica,function}` histogram, 10 µs .. 10 s
//! - `hsmux_replica_up{slot,replica}` gauge, 1/0 (once set)
//! - `hsmux_failovers_total{slot,from,to}` counter
//! - `hsmux_hedges_total{slot,replica}`, `hsmux_hedges_won_total{slot,replica}` counters
//! - `hsmux_sessions{slot}` gauge
//! - the replicas' pool and re-initialisation figures (`pools.rs`)
//!
//! Calls whose slot is unknown (`C_GetInfo`, `C_Initialize`, ...) have `slot="" replica=""`;
//! replica `""` (index 0) is the slot itself.
//!
//! # Two text formats
//! Scrapers that ask for OpenMetrics 1.0 (Prometheus does) get it from `prometheus-client`'s
//! encoder over these counters (`openmetrics.rs`); others get the 0.0.4 text (`render.rs`),
//! which bookworm's `promtool check metrics` accepts and the crate cannot write.
//!
//! # Why the recording is hand-rolled
//! `prometheus-client`'s metric types were the first choice for recording and are not used
//! (12x slower, `benches/metrics.rs`): its `Family` keeps series in an `RwLock<HashMap<LabelSet, _>>` (every record takes the read
//! lock, whose shared reader count bounces between cores, and hashes the label set), its
//! `Histogram::observe` takes a mutex per series. The `prometheus` crate has the same label-map lookup. Here the label
//! sets are dense indices fixed at registration: (slot, replica) rows laid out when the
//! replica is registered (`MAX_REPLICAS` places per slot, each a `OnceLock`), a function
//! index from a compile-time table behind a per-call-site cache (`functions`), return
//! values in a small lock-free map per cell; threads are spread round-robin over up to 4
//! stripes of cells, so that two cores rarely write one cache line. A record is a few
//! loads, a thread-local read and four relaxed atomic adds: no allocation, no lock, no
//! shared reader count. Names become escaped label values once, at registration; `render`
//! reads the atomics and sums the stripes. The output is checked in the tests by an
//! independent strict parser of the text format (`openmetrics-parser`).
//!
//! # Wiring
//! ```ignore
//! // C_Initialize (the composition root), after the slots are built, when `[metrics]` is
//! // configured (without it, install nothing: each call then costs one relaxed load):
//! let m = Arc::new(metrics::Metrics::new(&slot_labels));
//! m.set_sessions_source(Box::new(|slot| open_sessions(slot)));  // read at scrape time
//! let r = m.add_replica(slot, "luna-a");            // 1, 2, ... per slot
//! let listener = metrics::Listener::start(&cfg.listen, m.clone())?;  // keep it
//! metrics::install(Some(m));
//! // C_Finalize: metrics::install(None); listener.stop();
//!
//! // ffi::guard, around the call:
//! let t = metrics::start();                  // None (one relaxed load) when disabled
//! let rv = ...;
//! metrics::finish(t, name, rv, || slot);     // the slot the call's handle names
//!
//! // a replica group, during a call, for the replica label:
//! metrics::note_replica(replica_index);
//! ```
//! The core knows nothing of the metrics: the slot comes from the call's handle (the FFI
//! layer asks the core which slot it is), the session gauge from the core's state when
//! scraped.
//! After `fork()` the listener's thread does not exist in the child: a child must neither
//! `stop` nor drop the parent's `Listener` (leak it with the rest of the parent's state).

pub mod extra;
mod functions;
mod listener;
mod openmetrics;
pub mod pools;
mod registry;
mod render;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_openmetrics;

pub use listener::{Listener, CONTENT_TYPE};
pub use registry::{Metrics, SessionsSource, MAX_REPLICAS, NO_SLOT};

use arc_swap::{ArcSwapOption, Guard};
use cryptoki_sys::CK_RV;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The instance's metrics, for the FFI guard. `ENABLED` mirrors whether one is installed,
/// so that a module without metrics pays one relaxed load per call.
static CURRENT: ArcSwapOption<Metrics> = ArcSwapOption::const_empty();
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Installs (`Some`, at `C_Initialize`) or removes (`None`, at `C_Finalize`) the metrics
/// that `current`, `start` and `finish` use.
pub fn install(m: Option<Arc<Metrics>>) {
    match m {
        Some(m) => {
            CURRENT.store(Some(m));
            ENABLED.store(true, Ordering::Release);
        }
        None => {
            ENABLED.store(false, Ordering::Release);
            CURRENT.store(None);
        }
    }
}

/// Whether metrics are installed (one relaxed atomic load).
#[inline(always)]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The installed metrics: an ArcSwap guard (a load that writes no shared counter), to be
/// dropped soon (do not keep it across a call).
#[inline]
pub fn current() -> Option<Current> {
    if !enabled() {
        return None;
    }
    let g = CURRENT.load();
    if g.is_some() {
        Some(Current(g))
    } else {
        None
    }
}

/// A loaded reference to the installed metrics.
pub struct Current(Guard<Option<Arc<Metrics>>>);

impl std::ops::Deref for Current {
    type Target = Metrics;
    fn deref(&self) -> &Metrics {
        match self.0.as_ref() {
            Some(m) => m,
            // `current` only builds a Current around Some.
            None => unreachable!("Current holds metrics"),
        }
    }
}

thread_local! {
    /// The replica that served the thread's current call, noted by the replica group
    /// (`replica` records into the metrics itself; 0: the slot itself).
    static REPLICA: Cell<usize> = const { Cell::new(0) };
}

/// Notes the replica (index from `add_replica`) that is serving the current call.
#[inline(always)]
pub fn note_replica(replica: usize) {
    if enabled() {
        REPLICA.with(|c| c.set(replica));
        SERVED.with(|c| c.set(replica));
    }
}

thread_local! {
    /// The same for the audit trail, which reads it after `finish` took `REPLICA`.
    static SERVED: Cell<usize> = const { Cell::new(0) };
}

/// Forgets the replica noted for the audit trail (before a call).
pub fn clear_served() {
    SERVED.with(|c| c.set(0));
}

/// The replica noted during this call for the audit trail (0: the slot itself, or none).
pub fn served() -> usize {
    SERVED.with(|c| c.get())
}

/// The replica noted during this call (0: none), and resets it.
#[inline]
pub fn take_replica() -> usize {
    REPLICA.with(|c| c.replace(0))
}

/// Starts timing a call: `None` when disabled (one relaxed load); otherwise clears the
/// thread's noted replica and reads the clock.
#[inline(always)]
pub fn start() -> Option<Instant> {
    if enabled() {
        start_enabled()
    } else {
        None
    }
}

fn start_enabled() -> Option<Instant> {
    REPLICA.with(|c| c.set(0));
    Some(Instant::now())
}

/// Ends a call that `start` timed: records it in the installed metrics under the slot
/// that `slot` names (asked only now, after the clock is read; `None`: no slot) and the
/// replica noted meanwhile (which it resets).
#[inline(always)]
pub fn finish(
    started: Option<Instant>,
    function: &'static str,
    rv: CK_RV,
    slot: impl FnOnce() -> Option<usize>,
) {
    if let Some(t) = started {
        let elapsed = t.elapsed();
        record(elapsed, function, rv, slot());
    }
}

fn record(elapsed: std::time::Duration, function: &'static str, rv: CK_RV, slot: Option<usize>) {
    let replica = take_replica();
    if let Some(m) = current() {
        m.record_call(slot.unwrap_or(NO_SLOT), replica, function, rv, elapsed);
    }
}
