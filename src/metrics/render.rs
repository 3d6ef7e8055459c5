//! The Prometheus text exposition format, version 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>): `# HELP` and `# TYPE`
//! lines, then one line per sample; label values escaped (`\\`, `\"`, `\n`); histograms as
//! cumulative `_bucket{le=..}` series ending in `le="+Inf"`, then `_sum` and `_count`.

use super::functions;
use super::registry::{CallTotals, Metrics, Row, BOUNDS_LE};
use std::fmt::Write;

pub(crate) const CALLS: &str = "hsmux_calls_total";
pub(crate) const DURATION: &str = "hsmux_call_duration_seconds";
pub(crate) const REPLICA_UP: &str = "hsmux_replica_up";
pub(crate) const FAILOVERS: &str = "hsmux_failovers_total";
pub(crate) const SESSIONS: &str = "hsmux_sessions";
pub(crate) const HEDGES: &str = "hsmux_hedges_total";
pub(crate) const HEDGES_WON: &str = "hsmux_hedges_won_total";
const BUCKET: &str = "hsmux_call_duration_seconds_bucket";
const SUM: &str = "hsmux_call_duration_seconds_sum";
const COUNT: &str = "hsmux_call_duration_seconds_count";

/// The `# HELP` texts, shared by both formats.
pub(crate) mod help {
    pub(crate) const CALLS: &str =
        "PKCS#11 calls by slot, replica, function and return value name.";
    pub(crate) const DURATION: &str = "Duration of PKCS#11 calls in seconds.";
    pub(crate) const REPLICA_UP: &str = "Whether a replica of a slot is healthy (1) or not (0).";
    pub(crate) const FAILOVERS: &str = "Failovers of a slot from one replica to another.";
    pub(crate) const SESSIONS: &str = "Open sessions per slot.";
    pub(crate) const HEDGES: &str =
        "Calls a replica had not answered in time, sent to this replica as well.";
    pub(crate) const HEDGES_WON: &str =
        "Hedged calls this replica answered before the replica first asked.";
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One (slot, replica, function) with calls.
pub(crate) struct Series<'a> {
    pub(crate) slot: &'a str,
    pub(crate) replica: &'a str,
    pub(crate) function: &'static str,
    pub(crate) totals: CallTotals,
}

fn collect<'a>(slot: &'a str, row: &'a Row, out: &mut Vec<Series<'a>>) {
    for f in 0..functions::COUNT {
        if let Some(totals) = row.totals(f) {
            out.push(Series {
                slot,
                replica: &row.label,
                function: functions::name(f),
                totals,
            });
        }
    }
}

/// Writes `name` escaped as a label value (function names come from callers).
fn push_escaped(out: &mut String, s: &str) {
    if !s.contains(['\\', '"', '\n']) {
        out.push_str(s);
    } else {
        out.push_str(&super::registry::escape_label(s));
    }
}

/// Starts a sample line of a call series: `name{slot="..",replica="..",function=".."`.
fn open_sample(out: &mut String, name: &str, s: &Series) {
    out.push_str(name);
    out.push('{');
    out.push_str("slot=\"");
    out.push_str(s.slot);
    out.push_str("\",replica=\"");
    out.push_str(s.replica);
    out.push_str("\",function=\"");
    push_escaped(out, s.function);
    out.push('"');
}

/// Seconds from nanoseconds, written the shortest way that reads back the same `f64`
/// (Rust's `Display` for `f64` never uses an exponent: `0.000012`, `3`).
fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

impl Metrics {
    /// The Prometheus text exposition (format 0.0.4) of everything recorded.
    pub fn render(&self) -> String {
        render(self)
    }
}

/// What a scrape reads, once, for either format: the call series and each slot's rows.
pub(crate) struct Snapshot<'a> {
    pub(crate) series: Vec<Series<'a>>,
    pub(crate) slots: Vec<(&'a str, Vec<&'a Row>)>,
}

impl<'a> Snapshot<'a> {
    pub(crate) fn of(m: &'a Metrics) -> Snapshot<'a> {
        // The rows registered now (one acquire load each: no lock, recorders never wait).
        let slots = m.snapshot_rows();
        let mut series = Vec::new();
        for (label, rows) in &slots {
            for row in rows {
                collect(label, row, &mut series);
            }
        }
        collect("", m.none_row(), &mut series);
        Snapshot { series, slots }
    }

    /// `(slot, replica, up)` of every replica whose health is known.
    pub(crate) fn replicas_up(&self) -> impl Iterator<Item = (&'a str, &'a str, u8)> + '_ {
        self.slots.iter().flat_map(|(slot, rows)| {
            rows.iter()
                .filter_map(move |row| row.up().map(|up| (*slot, row.label.as_str(), up)))
        })
    }

    /// `(slot, replica, sent, won)` of every replica that hedged calls were sent to.
    pub(crate) fn hedges(&self) -> Vec<(&'a str, &'a str, u64, u64)> {
        let mut out = Vec::new();
        for (slot, rows) in &self.slots {
            for row in rows {
                let (sent, won) = row.hedges();
                if sent > 0 {
                    out.push((*slot, row.label.as_str(), sent, won));
                }
            }
        }
        out
    }

    /// `(slot, from, to, count)` of every failover path taken.
    pub(crate) fn failovers(&self) -> Vec<(&'a str, &'a str, &'a str, u64)> {
        let mut out = Vec::new();
        for (slot, rows) in &self.slots {
            for row in rows {
                for (to, n) in row.failovers() {
                    if let Some(target) = rows.get(to) {
                        out.push((*slot, row.label.as_str(), target.label.as_str(), n));
                    }
                }
            }
        }
        out
    }
}

fn render(m: &Metrics) -> String {
    let snap = Snapshot::of(m);
    let mut out = String::with_capacity(1024 + snap.series.len() * 1600);

    family(&mut out, CALLS, "counter", help::CALLS);
    for s in &snap.series {
        for (rv, n) in &s.totals.by_rv {
            open_sample(&mut out, CALLS, s);
            let _ = writeln!(out, ",rv=\"{rv}\"}} {n}");
        }
    }

    family(&mut out, DURATION, "histogram", help::DURATION);
    for s in &snap.series {
        let mut cumulative = 0u64;
        for (le, n) in BOUNDS_LE.iter().zip(&s.totals.buckets) {
            cumulative += n;
            open_sample(&mut out, BUCKET, s);
            let _ = writeln!(out, ",le=\"{le}\"}} {cumulative}");
        }
        let count = s.totals.count();
        open_sample(&mut out, BUCKET, s);
        let _ = writeln!(out, ",le=\"+Inf\"}} {count}");
        open_sample(&mut out, SUM, s);
        let _ = writeln!(out, "}} {}", seconds(s.totals.sum_ns));
        open_sample(&mut out, COUNT, s);
        let _ = writeln!(out, "}} {count}");
    }

    family(&mut out, REPLICA_UP, "gauge", help::REPLICA_UP);
    for (slot, replica, up) in snap.replicas_up() {
        let _ = writeln!(
            out,
            "{REPLICA_UP}{{slot=\"{slot}\",replica=\"{replica}\"}} {up}"
        );
    }

    family(&mut out, FAILOVERS, "counter", help::FAILOVERS);
    for (slot, from, to, n) in snap.failovers() {
        let _ = writeln!(
            out,
            "{FAILOVERS}{{slot=\"{slot}\",from=\"{from}\",to=\"{to}\"}} {n}"
        );
    }

    // The hedge families only once a hedge was sent (a slot without replicas never does).
    let hedges = snap.hedges();
    for (name, help, won) in [
        (HEDGES, help::HEDGES, false),
        (HEDGES_WON, help::HEDGES_WON, true),
    ] {
        if hedges.is_empty() {
            break;
        }
        family(&mut out, name, "counter", help);
        for (slot, replica, sent, n) in &hedges {
            let v = if won { n } else { sent };
            let _ = writeln!(out, "{name}{{slot=\"{slot}\",replica=\"{replica}\"}} {v}");
        }
    }

    family(&mut out, SESSIONS, "gauge", help::SESSIONS);
    for (slot, n) in m.sessions() {
        let _ = writeln!(out, "{SESSIONS}{{slot=\"{slot}\"}} {n}");
    }
    super::pools::render(m, &mut out);
    super::extra::render(&mut out);
    out
}
