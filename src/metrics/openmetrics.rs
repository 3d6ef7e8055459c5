//! The OpenMetrics 1.0 text exposition, written by the official client library's encoder
//! (`prometheus_client::encoding::text`) over hsmux's own counters.
//!
//! Why both formats: Prometheus asks for OpenMetrics first in its `Accept` header and gets it
//! from here; everything else (curl, `promtool check metrics`, older scrapers) gets the
//! 0.0.4 text of `render.rs`. The crate writes OpenMetrics only (`# EOF`, a counter family
//! named without its `_total` suffix), which the 0.0.4 parsers reject: Debian bookworm's
//! `promtool check metrics` (Prometheus 2.42) answers "hsmux_calls_total no help text" for
//! every counter. The values come from one [`Snapshot`], so the two cannot disagree.
//!
//! The crate's `Family`/`Counter` types are not used for recording (12x slower than the
//! per-thread counters, `benches/metrics.rs`): a [`Collector`] hands the snapshot to the
//! encoder at scrape time. Label values arrive escaped already (slot and replica names at
//! registration, function names here): the encoder writes label values as given.
//!
//! A family with no samples is left out (OpenMetrics allows it empty, but nothing is lost
//! without it, and some strict parsers, `openmetrics-parser` 0.5 among them, merge an empty
//! family's descriptors with the next family's).

use super::extra;
use super::pools;
use super::registry::{Metrics, BOUNDS_NS};
use super::render::{
    help, Series, Snapshot, CALLS, DURATION, FAILOVERS, HEDGES, HEDGES_WON, REPLICA_UP, SESSIONS,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// The `Content-Type` of this format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The collector registered for one scrape: reads the metrics when the encoder asks.
struct Scrape(Arc<Metrics>);

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("hsmux metrics")
    }
}

/// Upper bounds in seconds, the last one `+Inf` (the encoder writes `f64::MAX` as `+Inf`).
fn bucket_bounds() -> [f64; BOUNDS_NS.len() + 1] {
    let mut b = [f64::MAX; BOUNDS_NS.len() + 1];
    for (b, ns) in b.iter_mut().zip(BOUNDS_NS) {
        *b = ns as f64 / 1e9;
    }
    b
}

/// A function name as a label value (they come from callers: escape if needed).
fn escaped(s: &str) -> Cow<'_, str> {
    if s.contains(['\\', '"', '\n']) {
        Cow::Owned(super::registry::escape_label(s))
    } else {
        Cow::Borrowed(s)
    }
}

/// A counter family's name without the `_total` the encoder appends to each sample.
fn counter_family(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let m = &*self.0;
        let snap = Snapshot::of(m);
        let functions: Vec<Cow<str>> = snap.series.iter().map(|s| escaped(s.function)).collect();
        let call_labels = |s, i: usize| call_labels(s, &functions[i]);

        let calls = snap.series.iter().enumerate().flat_map(|(i, s)| {
            let [slot, replica, function] = call_labels(s, i);
            s.totals
                .by_rv
                .iter()
                .map(move |&(rv, n)| ([slot, replica, function, ("rv", rv)], n))
        });
        family(&mut enc, CALLS, help::CALLS, Kind::Counter, calls)?;

        let bounds = bucket_bounds();
        let durations = snap.series.iter().enumerate().map(|(i, s)| {
            // Per-bucket counts: the encoder makes them cumulative.
            let buckets: Vec<(f64, u64)> = bounds.iter().copied().zip(s.totals.buckets).collect();
            (
                call_labels(s, i),
                (s.totals.sum_ns as f64 / 1e9, s.totals.count(), buckets),
            )
        });
        family(
            &mut enc,
            DURATION,
            help::DURATION,
            Kind::Histogram,
            durations,
        )?;

        let up = snap
            .replicas_up()
            .map(|(slot, replica, v)| ([("slot", slot), ("replica", replica)], u64::from(v)));
        family(&mut enc, REPLICA_UP, help::REPLICA_UP, Kind::Gauge, up)?;

        let failovers = snap
            .failovers()
            .into_iter()
            .map(|(slot, from, to, n)| ([("slot", slot), ("from", from), ("to", to)], n));
        family(
            &mut enc,
            FAILOVERS,
            help::FAILOVERS,
            Kind::Counter,
            failovers,
        )?;

        let hedges = snap.hedges();
        let sent = hedges
            .iter()
            .map(|&(slot, replica, n, _)| ([("slot", slot), ("replica", replica)], n));
        family(&mut enc, HEDGES, help::HEDGES, Kind::Counter, sent)?;
        let won = hedges
            .iter()
            .map(|&(slot, replica, _, n)| ([("slot", slot), ("replica", replica)], n));
        family(&mut enc, HEDGES_WON, help::HEDGES_WON, Kind::Counter, won)?;

        let sessions = m.sessions().map(|(slot, n)| ([("slot", slot)], n as u64));
        family(&mut enc, SESSIONS, help::SESSIONS, Kind::Gauge, sessions)?;

        let figures = m.replica_figures();
        for (k, (name, counter, help)) in pools::FAMILIES.iter().enumerate() {
            let samples = figures.iter().filter_map(|(slot, replica, v)| {
                v[k].map(|v| ([("slot", slot.as_str()), ("replica", replica.as_str())], v))
            });
            let kind = if *counter { Kind::Counter } else { Kind::Gauge };
            family(&mut enc, name, help, kind, samples)?;
        }

        encode_counters(&mut enc, &extra::counters())
    }
}

/// The labels of a call series.
fn call_labels<'b>(s: &'b Series<'b>, function: &'b str) -> [(&'static str, &'b str); 3] {
    [
        ("slot", s.slot),
        ("replica", s.replica),
        ("function", function),
    ]
}

/// How a family's samples are encoded.
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A sample value the encoder takes: a number, or a histogram's (sum, count, buckets).
trait Sample {
    fn encode(&self, kind: &Kind, enc: &mut MetricEncoder) -> fmt::Result;
}

impl Sample for u64 {
    fn encode(&self, kind: &Kind, enc: &mut MetricEncoder) -> fmt::Result {
        match kind {
            Kind::Gauge => enc.encode_gauge(self),
            _ => enc.encode_counter::<NoLabelSet, _, u64>(self, None),
        }
    }
}

impl Sample for (f64, u64, Vec<(f64, u64)>) {
    fn encode(&self, _: &Kind, enc: &mut MetricEncoder) -> fmt::Result {
        enc.encode_histogram::<NoLabelSet>(self.0, self.1, &self.2, None)
    }
}

/// One family: its descriptor, then each sample with its labels; nothing if it has none.
fn family<L: EncodeLabelSet, V: Sample>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: Kind,
    samples: impl Iterator<Item = (L, V)>,
) -> fmt::Result {
    let mut samples = samples.peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let (name, ty) = match kind {
        Kind::Counter => (counter_family(name), MetricType::Counter),
        Kind::Gauge => (name, MetricType::Gauge),
        Kind::Histogram => (name, MetricType::Histogram),
    };
    let mut family = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, value) in samples {
        value.encode(&kind, &mut family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Label-less counters (`extra`: those other parts of the module register), one family each.
pub(super) fn encode_counters(
    enc: &mut DescriptorEncoder,
    counters: &[(&'static str, &'static str, u64)],
) -> fmt::Result {
    for &(name, help, v) in counters {
        // No label set (`family` would write `name_total{} v`).
        enc.encode_descriptor(counter_family(name), help, None, MetricType::Counter)?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
    }
    Ok(())
}

impl Metrics {
    /// The OpenMetrics 1.0 text exposition of everything recorded, ending in `# EOF`.
    pub fn render_openmetrics(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape(self.clone())));
        let mut out = String::new();
        // Writing to a String cannot fail, and no collector above returns an error of its own.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
