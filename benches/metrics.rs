//! `cargo bench --bench metrics`: the cost of recording one PKCS#11 call in hsmux's
//! metrics, per call, with 1 and 2 threads: `Metrics::record_call` directly, the FFI guard's
//! path (`start` + `note_replica` + `finish`: clock, thread context, current-instance load,
//! record), the same path with metrics not installed, and `record_call` on a disabled
//! registry. The 2-thread rows record the same series from both threads (the worst case
//! for sharing). `BENCH_CALLS` sets the calls per thread (default 5,000,000).

use cryptoki_sys::{CKR_BUFFER_TOO_SMALL, CKR_OK};
use hsmux::metrics::{self, Metrics};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const FUNCTIONS: [&str; 4] = [
    "C_Sign",
    "C_GetSessionInfo",
    "C_EncryptUpdate",
    "C_FindObjects",
];

/// Runs `f(thread, i)` `calls` times on each of `threads` threads; ns per call per thread.
fn per_call(threads: usize, calls: usize, f: impl Fn(usize, usize) + Sync) -> f64 {
    let barrier = Barrier::new(threads);
    let elapsed: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..calls {
                        f(t, i);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let worst = elapsed.iter().max().copied().unwrap_or_default();
    worst.as_nanos() as f64 / calls as f64
}

fn main() {
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let slots: Vec<String> = vec!["dev".into(), "ha".into()];
    let m = Arc::new(Metrics::new(&slots));
    let replica = m.add_replica(1, "a");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("metrics recording cost, {calls} calls per thread, {cores} cores");
    println!("| path | threads | ns per call |");
    println!("|---|---:|---:|");

    // Warm up (page in the cells, claim the return value entries).
    per_call(2, calls / 10, |_, i| {
        let f = FUNCTIONS[i % FUNCTIONS.len()];
        m.record_call(1, replica, f, CKR_OK, Duration::from_nanos(700));
        m.record_call(
            1,
            replica,
            f,
            CKR_BUFFER_TOO_SMALL,
            Duration::from_nanos(700),
        );
    });

    for threads in [1, 2] {
        let ns = per_call(threads, calls, |_, i| {
            let f = FUNCTIONS[i & 3];
            let rv = if i & 15 == 0 {
                CKR_BUFFER_TOO_SMALL
            } else {
                CKR_OK
            };
            m.record_call(
                1,
                replica,
                f,
                rv,
                Duration::from_nanos(300 + (i & 1023) as u64),
            );
        });
        println!("| record_call | {threads} | {ns:.1} |");
    }
    for threads in [1, 2] {
        let ns = per_call(threads, calls, |_, i| {
            m.record_call(1, replica, "C_Sign", CKR_OK, Duration::from_nanos(700));
            black_box(i);
        });
        println!("| record_call, one series | {threads} | {ns:.1} |");
    }

    metrics::install(Some(m.clone()));
    for threads in [1, 2] {
        let ns = per_call(threads, calls, |_, i| {
            let t = metrics::start();
            metrics::note_replica(replica);
            black_box(i);
            metrics::finish(t, FUNCTIONS[i & 3], CKR_OK, || black_box(Some(1)));
        });
        println!("| guard path: start + note_replica + finish(slot) | {threads} | {ns:.1} |");
    }
    metrics::install(None);
    for threads in [1, 2] {
        let ns = per_call(threads, calls, |_, i| {
            let t = metrics::start();
            black_box(i);
            metrics::finish(t, FUNCTIONS[i & 3], CKR_OK, || black_box(Some(1)));
        });
        println!("| guard path, no metrics installed | {threads} | {ns:.1} |");
    }
    m.set_enabled(false);
    for threads in [1, 2] {
        let ns = per_call(threads, calls, |_, i| {
            m.record_call(
                1,
                replica,
                FUNCTIONS[i & 3],
                CKR_OK,
                Duration::from_nanos(700),
            );
        });
        println!("| record_call, registry disabled | {threads} | {ns:.1} |");
    }
    m.set_enabled(true);
    prometheus_client_rows(calls);
    let empty = per_call(1, calls, |_, i| {
        black_box(i);
    });
    println!("| empty loop (overhead of the harness) | 1 | {empty:.1} |");

    let t = Instant::now();
    let text = m.render();
    println!(
        "render: {} bytes, {} lines in {:?}",
        text.len(),
        text.lines().count(),
        t.elapsed()
    );
}

/// The labels of a call series in prometheus-client (what hsmux's rows hold).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    slot: &'static str,
    replica: &'static str,
    function: &'static str,
    rv: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    slot: &'static str,
    replica: &'static str,
    function: &'static str,
}

/// The same recording as `record_call` (a counter by return value, a duration histogram
/// with hsmux's buckets) through prometheus-client's families.
fn prometheus_client_rows(calls: usize) {
    let mut registry = Registry::default();
    let total = Family::<CallLabels, Counter>::default();
    let duration = Family::<DurationLabels, Histogram>::new_with_constructor(|| {
        Histogram::new([
            1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0, 5.0, 10.0,
        ])
    });
    registry.register("hsmux_calls", "calls", total.clone());
    registry.register("hsmux_call_duration_seconds", "durations", duration.clone());
    for threads in [1, 2] {
        let ns = per_call(threads, calls, |_, i| {
            let function = FUNCTIONS[i & 3];
            let rv = if i & 15 == 0 {
                "CKR_BUFFER_TOO_SMALL"
            } else {
                "CKR_OK"
            };
            let (slot, replica) = ("ha", "a");
            total
                .get_or_create(&CallLabels {
                    slot,
                    replica,
                    function,
                    rv,
                })
                .inc();
            duration
                .get_or_create(&DurationLabels {
                    slot,
                    replica,
                    function,
                })
                .observe((300 + (i & 1023)) as f64 / 1e9);
        });
        println!("| prometheus-client: counter + histogram families | {threads} | {ns:.1} |");
    }
    let t = Instant::now();
    let mut text = String::new();
    encode(&mut text, &registry).expect("encode");
    println!(
        "prometheus-client render: {} bytes in {:?}",
        text.len(),
        t.elapsed()
    );
}
