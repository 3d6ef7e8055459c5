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
const BUCKET: &str = "hsmux_call_duration_seconds_bucket";
const SUM: &str = "hsmux_call_duration_seconds_sum";
const COUNT: &str = "hsmux_call_duration_seconds_count";

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One (slot, replica, function) with calls.
struct Series<'a> {
    slot: &'a str,
    replica: &'a str,
    function: &'static str,
    totals: CallTotals,
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

fn render(m: &Metrics) -> String {
    // The rows registered now (one acquire load each: no lock, recorders never wait).
    let slots = m.snapshot_rows();

    let mut series = Vec::new();
    for (label, rows) in &slots {
        for row in rows {
            collect(label, row, &mut series);
        }
    }
    collect("", m.none_row(), &mut series);

    let mut out = String::with_capacity(1024 + series.len() * 1600);

    family(
        &mut out,
        CALLS,
        "counter",
        "PKCS#11 calls by slot, replica, function and return value name.",
    );
    for s in &series {
        for (rv, n) in &s.totals.by_rv {
            open_sample(&mut out, CALLS, s);
            let _ = writeln!(out, ",rv=\"{rv}\"}} {n}");
        }
    }

    family(
        &mut out,
        DURATION,
        "histogram",
        "Duration of PKCS#11 calls in seconds.",
    );
    for s in &series {
        let mut cumulative = 0u64;
        for (le, n) in BOUNDS_LE.iter().zip(&s.totals.buckets) {
            cumulative += n;
            open_sample(&mut out, BUCKET, s);
            let _ = writeln!(out, ",le=\"{le}\"}} {cumulative}");
        }
        let count: u64 = s.totals.buckets.iter().sum();
        open_sample(&mut out, BUCKET, s);
        let _ = writeln!(out, ",le=\"+Inf\"}} {count}");
        open_sample(&mut out, SUM, s);
        let _ = writeln!(out, "}} {}", seconds(s.totals.sum_ns));
        open_sample(&mut out, COUNT, s);
        let _ = writeln!(out, "}} {count}");
    }

    family(
        &mut out,
        REPLICA_UP,
        "gauge",
        "Whether a replica of a slot is healthy (1) or not (0).",
    );
    for (slot, rows) in &slots {
        for row in rows {
            if let Some(up) = row.up() {
                let _ = writeln!(
                    out,
                    "{REPLICA_UP}{{slot=\"{slot}\",replica=\"{}\"}} {up}",
                    row.label
                );
            }
        }
    }

    family(
        &mut out,
        FAILOVERS,
        "counter",
        "Failovers of a slot from one replica to another.",
    );
    for (slot, rows) in &slots {
        for row in rows {
            for (to, n) in row.failovers() {
                if let Some(target) = rows.get(to) {
                    let _ = writeln!(
                        out,
                        "{FAILOVERS}{{slot=\"{slot}\",from=\"{}\",to=\"{}\"}} {n}",
                        row.label, target.label
                    );
                }
            }
        }
    }

    family(&mut out, SESSIONS, "gauge", "Open sessions per slot.");
    for (slot, n) in m.sessions() {
        let _ = writeln!(out, "{SESSIONS}{{slot=\"{slot}\"}} {n}");
    }
    super::extra::render(&mut out);
    out
}
