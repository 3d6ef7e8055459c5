//! Per-replica figures a replica's token keeps itself and the registry reads when scraped:
//! its backend session pool (module tokens) and the re-initialisations of its client
//! (self-healing). Registered by the replica group with a function that reads them.
//!
//! - `hsmux_replica_pool_sessions{slot,replica}` gauge: the pool's size (most sessions)
//! - `hsmux_replica_pool_in_use{slot,replica}` gauge: sessions lent out (the login's too)
//! - `hsmux_replica_pool_waits_total{slot,replica}` counter: borrowers that waited
//! - `hsmux_replica_pool_wait_timeouts_total{slot,replica}` counter: ... in vain
//! - `hsmux_replica_reinit_total{slot,replica}` counter: client re-initialisations

use super::registry::Metrics;
use std::fmt::Write;

/// What a replica reports: its pool (if it has one) and its re-initialisations.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplicaFigures {
    pub pool: Option<crate::core::token::PoolStats>,
    pub reinits: u64,
}

/// Reads a replica's figures at scrape time (`None`: the replica is gone).
pub type FiguresSource = Box<dyn Fn() -> Option<ReplicaFigures> + Send + Sync>;

pub(crate) const POOL_SIZE: &str = "hsmux_replica_pool_sessions";
pub(crate) const POOL_IN_USE: &str = "hsmux_replica_pool_in_use";
pub(crate) const POOL_WAITS: &str = "hsmux_replica_pool_waits_total";
pub(crate) const POOL_TIMEOUTS: &str = "hsmux_replica_pool_wait_timeouts_total";
pub(crate) const REINITS: &str = "hsmux_replica_reinit_total";

/// `(name, kind is counter, help)` of each family, in the order rendered.
pub(crate) const FAMILIES: [(&str, bool, &str); 5] = [
    (
        POOL_SIZE,
        false,
        "Most backend sessions a replica's pool keeps open.",
    ),
    (
        POOL_IN_USE,
        false,
        "Backend sessions of a replica's pool lent out now.",
    ),
    (
        POOL_WAITS,
        true,
        "Calls that waited for a free backend session of a replica's pool.",
    ),
    (
        POOL_TIMEOUTS,
        true,
        "Calls that found no free backend session within their deadline.",
    ),
    (
        REINITS,
        true,
        "Re-initialisations of a replica's vendor library after failing probes.",
    ),
];

/// One sample: `(slot label, replica label, value per family; None: not this replica)`.
pub(crate) type Sample = (String, String, [Option<u64>; 5]);

impl ReplicaFigures {
    fn values(&self) -> [Option<u64>; 5] {
        let p = self.pool;
        [
            p.map(|p| p.size as u64),
            p.map(|p| p.in_use as u64),
            p.map(|p| p.waits),
            p.map(|p| p.wait_timeouts),
            Some(self.reinits),
        ]
    }
}

impl Metrics {
    /// The figures of every registered replica now.
    pub(crate) fn replica_figures(&self) -> Vec<Sample> {
        let rows = self.snapshot_rows();
        self.figure_sources(|slot, replica, read| {
            let (slot_label, rows) = rows.get(slot)?;
            let row = rows.get(replica)?;
            let v = read()?.values();
            Some((slot_label.to_string(), row.label.clone(), v))
        })
    }
}

/// Appends the families that have samples in the 0.0.4 text format.
pub(crate) fn render(m: &Metrics, out: &mut String) {
    let samples = m.replica_figures();
    for (k, (name, counter, help)) in FAMILIES.iter().enumerate() {
        if samples.iter().all(|(_, _, v)| v[k].is_none()) {
            continue;
        }
        let kind = if *counter { "counter" } else { "gauge" };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (slot, replica, v) in &samples {
            if let Some(v) = v[k] {
                let _ = writeln!(out, "{name}{{slot=\"{slot}\",replica=\"{replica}\"}} {v}");
            }
        }
    }
}
