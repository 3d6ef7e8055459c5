//! The counters themselves: fixed arrays of atomics, indexed by slot, replica, stripe and
//! function, laid out when a slot or replica is registered. Recording is a few relaxed
//! atomic adds on memory that only this thread's stripe touches.

use super::functions;
use crate::core::rv;
use cryptoki_sys::*;
use parking_lot::Mutex;
use std::cell::Cell as TlsCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// `slot` value for calls that name no slot (recorded with `slot="" replica=""`). Any
/// index past the configured slots means the same.
pub const NO_SLOT: usize = usize::MAX;

/// Upper bounds of the duration buckets, in nanoseconds (10 µs .. 10 s), and their `le`
/// label values. Observations above the last go to the `+Inf` bucket only.
pub(crate) const BOUNDS_NS: [u64; 12] = [
    10_000,
    100_000,
    500_000,
    1_000_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
    1_000_000_000,
    5_000_000_000,
    10_000_000_000,
];
pub(crate) const BOUNDS_LE: [&str; 12] = [
    "0.00001", "0.0001", "0.0005", "0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "5", "10",
];
/// Buckets stored per cell: one per bound plus the overflow (`+Inf` only).
pub(crate) const BUCKETS: usize = BOUNDS_NS.len() + 1;

/// Most functions see a handful of return values; a cell keeps 6 inline and allocates
/// room for the rest once, the first time a 7th distinct one shows up there.
const SPARSE_INLINE: usize = 6;
/// Room past the inline entries: more than the distinct names `rv::name` gives (about
/// 105; vendor-defined values all count as `CKR_VENDOR_DEFINED`) and than MAX_REPLICAS
/// (failover targets), so never exhausted.
const SPARSE_MORE: usize = 128;
const EMPTY_KEY: u64 = u64::MAX;

struct Entry {
    key: AtomicU64,
    count: AtomicU64,
}

impl Entry {
    const fn new() -> Entry {
        Entry {
            key: AtomicU64::new(EMPTY_KEY),
            count: AtomicU64::new(0),
        }
    }

    /// Adds one if this entry holds `key` or could be claimed for it.
    #[inline]
    fn try_add(&self, key: u64) -> bool {
        let k = self.key.load(Ordering::Acquire);
        if k == key {
            self.count.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if k != EMPTY_KEY {
            return false;
        }
        match self
            .key
            .compare_exchange(EMPTY_KEY, key, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                self.count.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(actual) if actual == key => {
                self.count.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }
}

/// A small lock-free map from u64 keys to counts: keys are claimed by compare-and-swap
/// and never removed.
struct Sparse {
    inline: [Entry; SPARSE_INLINE],
    more: OnceLock<Box<[Entry]>>,
}

impl Sparse {
    fn new() -> Sparse {
        Sparse {
            inline: [const { Entry::new() }; SPARSE_INLINE],
            more: OnceLock::new(),
        }
    }

    #[inline]
    fn add(&self, key: u64) {
        debug_assert_ne!(key, EMPTY_KEY);
        for e in &self.inline {
            if e.try_add(key) {
                return;
            }
        }
        self.add_more(key);
    }

    #[cold]
    fn add_more(&self, key: u64) {
        let more = self
            .more
            .get_or_init(|| (0..SPARSE_MORE).map(|_| Entry::new()).collect());
        // Always found: SPARSE_MORE exceeds the distinct keys there can be.
        let _ = more.iter().any(|e| e.try_add(key));
    }

    /// Calls `f(key, count)` for every claimed entry.
    fn for_each(&self, mut f: impl FnMut(u64, u64)) {
        let more = self.more.get().map(|m| &m[..]).unwrap_or(&[]);
        for e in self.inline.iter().chain(more) {
            let k = e.key.load(Ordering::Acquire);
            if k == EMPTY_KEY {
                // Entries are claimed in order, but a racing claim of a later entry may
                // be visible first: keep looking.
                continue;
            }
            f(k, e.count.load(Ordering::Relaxed));
        }
    }
}

/// Everything recorded for one (slot, replica, function) by one stripe of threads (232
/// bytes; a row's cells are stripe-major, so two stripes never share a cache line but at
/// the one boundary).
pub(crate) struct CallCell {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
    rvs: Sparse,
}

impl CallCell {
    fn new() -> CallCell {
        CallCell {
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_ns: AtomicU64::new(0),
            rvs: Sparse::new(),
        }
    }

    #[inline]
    fn record(&self, rv_key: u64, ns: u64) {
        let b = BOUNDS_NS.partition_point(|&bound| bound < ns);
        if let Some(bucket) = self.buckets.get(b) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.rvs.add(rv_key);
    }
}

/// The value of `replica_up` (0 = never set, not rendered).
const UP_UNSET: u8 = 0;
const UP_DOWN: u8 = 1;
const UP_UP: u8 = 2;

/// One (slot, replica): its label, health, failovers from it, and its call cells.
pub(crate) struct Row {
    /// The replica's name, already escaped for a label value.
    pub(crate) label: String,
    name: String,
    up: AtomicU8,
    failovers: Sparse,
    /// Hedged calls sent to this replica, and those it answered first.
    hedges: [AtomicU64; 2],
    /// `stripes * functions::COUNT` cells, stripe-major.
    cells: Box<[CallCell]>,
}

impl Row {
    fn new(name: &str, stripes: usize) -> Row {
        Row {
            label: escape_label(name),
            name: name.to_string(),
            up: AtomicU8::new(UP_UNSET),
            failovers: Sparse::new(),
            hedges: [AtomicU64::new(0), AtomicU64::new(0)],
            cells: (0..stripes * functions::COUNT)
                .map(|_| CallCell::new())
                .collect(),
        }
    }

    #[inline]
    fn cell(&self, stripe: usize, function: usize) -> Option<&CallCell> {
        self.cells.get(stripe * functions::COUNT + function)
    }
}

/// Most replicas one slot can have, the slot itself (index 0) included.
pub const MAX_REPLICAS: usize = 64;

/// A slot's rows: index 0 is the slot itself (`replica=""`), then its replicas in the
/// order registered. Places are filled in order, once each (under `registration`), and
/// read with one acquire load: no lock, no shared counter written.
struct Rows {
    places: Box<[OnceLock<Row>]>,
}

impl Rows {
    fn new(stripes: usize) -> Rows {
        let places: Box<[OnceLock<Row>]> = (0..MAX_REPLICAS).map(|_| OnceLock::new()).collect();
        if let Some(p) = places.first() {
            let _ = p.set(Row::new("", stripes));
        }
        Rows { places }
    }

    #[inline]
    fn get(&self, i: usize) -> Option<&Row> {
        self.places.get(i)?.get()
    }

    fn iter(&self) -> impl Iterator<Item = &Row> {
        self.places.iter().map_while(|p| p.get())
    }

    fn len(&self) -> usize {
        self.iter().count()
    }
}

struct SlotMetrics {
    label: String,
    rows: Rows,
}

/// Where `hsmux_sessions` comes from: the open sessions of the slot at an index, read at
/// scrape time from the state that holds them (the composition root gives it).
pub type SessionsSource = Box<dyn Fn(usize) -> usize + Send + Sync>;

/// The metrics of one module instance. Recording methods never allocate (but once per
/// cell, for its 7th distinct return value), never lock, and never wait for `render`.
/// Memory: about 28 KB per (slot, replica) and stripe (1, 2 or 4 stripes, from the CPUs).
pub struct Metrics {
    enabled: AtomicBool,
    stripe_mask: usize,
    stripes: usize,
    slots: Box<[SlotMetrics]>,
    /// Calls that name no slot.
    none: Row,
    /// Serializes `add_replica` (registration only; recording never takes it).
    registration: Mutex<()>,
    sessions: OnceLock<SessionsSource>,
    /// `(slot, replica, source)` of the replicas' own figures (`pools.rs`).
    figures: Mutex<Vec<(usize, usize, super::pools::FiguresSource)>>,
}

/// Threads are spread over stripes round-robin, so that two threads recording the same
/// call do not bounce one cache line between cores.
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static STRIPE: TlsCell<usize> = const { TlsCell::new(usize::MAX) };
}

#[inline]
fn thread_stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed);
        s.set(v);
        v
    })
}

/// The return value a count is kept under: vendor-defined and unknown values all have
/// the one name `CKR_VENDOR_DEFINED`, so they share one key (and cannot fill a cell).
#[inline]
#[allow(clippy::unnecessary_cast)] // CK_RV (CK_ULONG) is u32 on some targets
fn rv_key(rv: CK_RV) -> u64 {
    if rv == CKR_OK {
        return CKR_OK as u64;
    }
    let name = rv::name(rv);
    if name == "CKR_VENDOR_DEFINED" {
        CKR_VENDOR_DEFINED as u64
    } else {
        rv as u64
    }
}

impl Metrics {
    /// A registry for slots with these labels (index = position); each has replica 0, the
    /// slot itself.
    pub fn new(slots: &[String]) -> Metrics {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Metrics::with_stripes(slots, cores)
    }

    /// As `new`, with about `stripes` stripes (rounded up to a power of two, 1..=4).
    pub(crate) fn with_stripes(slots: &[String], stripes: usize) -> Metrics {
        let stripes = stripes.clamp(1, 4).next_power_of_two();
        Metrics {
            enabled: AtomicBool::new(true),
            stripe_mask: stripes - 1,
            stripes,
            slots: slots
                .iter()
                .map(|label| SlotMetrics {
                    label: escape_label(label),
                    rows: Rows::new(stripes),
                })
                .collect(),
            none: Row::new("", stripes),
            registration: Mutex::new(()),
            sessions: OnceLock::new(),
            figures: Mutex::new(Vec::new()),
        }
    }

    /// Turns recording on or off (on after `new`). Off, every recording method costs one
    /// relaxed atomic load; what was recorded stays and is still rendered.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Registers replica `name` of slot `slot` and returns its index within the slot
    /// (1, 2, ...; the same index again for a name already registered; 0 for `""`, the
    /// slot itself, for a slot index out of range, and past `MAX_REPLICAS`, with a log
    /// line). Meant for start-up; recording threads never wait for it.
    pub fn add_replica(&self, slot: usize, name: &str) -> usize {
        let Some(s) = self.slots.get(slot) else {
            return 0;
        };
        let _g = self.registration.lock();
        if let Some(i) = s.rows.iter().position(|r| r.name == name) {
            return i;
        }
        let index = s.rows.len();
        match s.rows.places.get(index) {
            Some(place) => {
                let _ = place.set(Row::new(name, self.stripes));
                index
            }
            None => {
                log::warn!(
                    "metrics: slot {} has more than {} replicas; {name} is counted as the slot",
                    s.label,
                    MAX_REPLICAS - 1
                );
                0
            }
        }
    }

    /// The index of a registered replica of `slot`.
    pub fn replica_index(&self, slot: usize, name: &str) -> Option<usize> {
        self.slots
            .get(slot)?
            .rows
            .iter()
            .position(|r| r.name == name)
    }

    /// Counts one PKCS#11 call: `hsmux_calls_total` by `rv`'s name and
    /// `hsmux_call_duration_seconds`. `slot` past the configured slots (e.g. `NO_SLOT`)
    /// records `slot="" replica=""`; an unregistered `replica` records the slot itself.
    #[inline(always)]
    pub fn record_call(
        &self,
        slot: usize,
        replica: usize,
        function: &'static str,
        rv: CK_RV,
        elapsed: Duration,
    ) {
        if self.enabled.load(Ordering::Relaxed) {
            self.record_enabled(slot, replica, function, rv, elapsed);
        }
    }

    fn record_enabled(
        &self,
        slot: usize,
        replica: usize,
        function: &'static str,
        rv: CK_RV,
        elapsed: Duration,
    ) {
        let f = functions::index(function);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let key = rv_key(rv);
        let stripe = thread_stripe() & self.stripe_mask;
        if let Some(s) = self.slots.get(slot) {
            let row = s.rows.get(replica).or_else(|| s.rows.get(0));
            if let Some(c) = row.and_then(|r| r.cell(stripe, f)) {
                c.record(key, ns);
            }
        } else if let Some(c) = self.none.cell(stripe, f) {
            c.record(key, ns);
        }
    }

    /// Sets `hsmux_replica_up{slot,replica}` (rendered once set; replica 0 is the slot).
    pub fn set_replica_up(&self, slot: usize, replica: usize, up: bool) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        if let Some(s) = self.slots.get(slot) {
            if let Some(row) = s.rows.get(replica) {
                row.up
                    .store(if up { UP_UP } else { UP_DOWN }, Ordering::Relaxed);
            }
        }
    }

    /// Counts a failover of `slot` from replica `from` to replica `to`.
    pub fn failover(&self, slot: usize, from: usize, to: usize) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        if let Some(s) = self.slots.get(slot) {
            if let (Some(row), Some(_)) = (s.rows.get(from), s.rows.get(to)) {
                row.failovers.add(to as u64);
            }
        }
    }

    /// Adds where replica `replica` of `slot` reads its pool and re-initialisation figures.
    pub fn add_replica_figures(
        &self,
        slot: usize,
        replica: usize,
        source: super::pools::FiguresSource,
    ) {
        self.figures.lock().push((slot, replica, source));
    }

    /// Maps `f(slot, replica, read)` over the registered figure sources.
    pub(crate) fn figure_sources<T>(
        &self,
        mut f: impl FnMut(usize, usize, &dyn Fn() -> Option<super::pools::ReplicaFigures>) -> Option<T>,
    ) -> Vec<T> {
        self.figures
            .lock()
            .iter()
            .filter_map(|(s, r, read)| f(*s, *r, read))
            .collect()
    }

    /// Counts a hedged call of `slot` sent to replica `to`; `won`: it answered first.
    pub fn hedge(&self, slot: usize, to: usize, won: bool) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        if let Some(row) = self.slots.get(slot).and_then(|s| s.rows.get(to)) {
            row.hedges[usize::from(won)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sets where `hsmux_sessions{slot}` is read from (once; 0 for every slot without).
    pub fn set_sessions_source(&self, source: SessionsSource) {
        let _ = self.sessions.set(source);
    }

    /// `(slot label, its rows)` for each slot, in order (the no-slot row: `none_row`).
    pub(crate) fn snapshot_rows(&self) -> Vec<(&str, Vec<&Row>)> {
        self.slots
            .iter()
            .map(|s| (s.label.as_str(), s.rows.iter().collect()))
            .collect()
    }

    pub(crate) fn none_row(&self) -> &Row {
        &self.none
    }

    pub(crate) fn sessions(&self) -> impl Iterator<Item = (&str, usize)> {
        let source = self.sessions.get();
        self.slots
            .iter()
            .enumerate()
            .map(move |(i, s)| (s.label.as_str(), source.map_or(0, |f| f(i))))
    }
}

/// What one (slot, replica, function) recorded, summed over the stripes.
pub(crate) struct CallTotals {
    /// Per bucket, not cumulative; the last is the overflow.
    pub(crate) buckets: [u64; BUCKETS],
    pub(crate) sum_ns: u64,
    /// By return value name, sorted by name, names distinct.
    pub(crate) by_rv: Vec<(&'static str, u64)>,
}

impl CallTotals {
    /// Calls recorded: every bucket, the overflow included.
    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

impl Row {
    /// The totals of function index `f` over all stripes, or None if it was never called.
    pub(crate) fn totals(&self, f: usize) -> Option<CallTotals> {
        let mut t = CallTotals {
            buckets: [0; BUCKETS],
            sum_ns: 0,
            by_rv: Vec::new(),
        };
        let mut any = false;
        for stripe in 0..self.cells.len() / functions::COUNT {
            let Some(c) = self.cell(stripe, f) else {
                continue;
            };
            for (acc, b) in t.buckets.iter_mut().zip(&c.buckets) {
                let v = b.load(Ordering::Relaxed);
                any |= v != 0;
                *acc += v;
            }
            t.sum_ns = t.sum_ns.wrapping_add(c.sum_ns.load(Ordering::Relaxed));
            c.rvs.for_each(|key, n| {
                let name = rv::name(key as CK_RV);
                match t.by_rv.iter_mut().find(|(k, _)| *k == name) {
                    Some((_, acc)) => *acc += n,
                    None => t.by_rv.push((name, n)),
                }
            });
        }
        if !any {
            return None;
        }
        t.by_rv.retain(|&(_, n)| n != 0);
        t.by_rv.sort_unstable_by(|a, b| a.0.cmp(b.0));
        Some(t)
    }

    /// The `replica_up` value, if set.
    pub(crate) fn up(&self) -> Option<u8> {
        match self.up.load(Ordering::Relaxed) {
            UP_UP => Some(1),
            UP_DOWN => Some(0),
            _ => None,
        }
    }

    /// `(sent, won)`: hedged calls sent to this replica and those it answered first.
    pub(crate) fn hedges(&self) -> (u64, u64) {
        (
            self.hedges[0].load(Ordering::Relaxed),
            self.hedges[1].load(Ordering::Relaxed),
        )
    }

    /// `(to, count)` of the failovers from this replica, sorted by `to`.
    pub(crate) fn failovers(&self) -> Vec<(usize, u64)> {
        let mut v = Vec::new();
        self.failovers.for_each(|to, n| {
            if n != 0 {
                v.push((to as usize, n));
            }
        });
        v.sort_unstable();
        v
    }
}

/// A label value escaped for the text format: backslash, double quote and line feed.
pub(crate) fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}
