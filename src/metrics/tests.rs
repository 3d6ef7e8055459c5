use super::registry::Metrics;
use super::*;
use cryptoki_sys::*;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricsExposition, PrometheusType, PrometheusValue};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub(super) fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

pub(super) type Exposition = MetricsExposition<PrometheusType, PrometheusValue>;

/// Parses with the independent parser; every family must be there with its type.
pub(super) fn parse(text: &str) -> Exposition {
    let e = parse_prometheus(text).unwrap_or_else(|err| panic!("{err:?} in:\n{text}"));
    for (name, ty) in [
        ("hsmux_calls_total", PrometheusType::Counter),
        ("hsmux_call_duration_seconds", PrometheusType::Histogram),
        ("hsmux_replica_up", PrometheusType::Gauge),
        ("hsmux_failovers_total", PrometheusType::Counter),
        ("hsmux_sessions", PrometheusType::Gauge),
    ] {
        let f = e
            .families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name}"));
        assert_eq!(f.family_type, ty, "{name}");
        assert!(!f.help.is_empty(), "{name}");
    }
    assert_eq!(e.families.len(), 5);
    e
}

/// `(labels, value)` of every sample of a counter or gauge family, as parsed.
fn scalar_samples(e: &Exposition, family: &str) -> Vec<(HashMap<String, String>, f64)> {
    let f = &e.families[family];
    f.iter_samples()
        .map(|s| {
            let ls = s.get_labelset().unwrap();
            let map = ls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>();
            let v = match &s.value {
                PrometheusValue::Counter(c) => c.value.as_f64(),
                PrometheusValue::Gauge(g) => g.as_f64(),
                other => panic!("{family}: {other:?}"),
            };
            (map, v)
        })
        .collect()
}

fn lbl(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn small_example() -> Metrics {
    let m = Metrics::with_stripes(&labels(&["dev", "ha"]), 2);
    assert_eq!(m.add_replica(1, "a"), 1);
    assert_eq!(m.add_replica(1, "b"), 2);
    assert_eq!(m.add_replica(1, "a"), 1);
    assert_eq!(m.add_replica(1, ""), 0);
    assert_eq!(m.add_replica(7, "x"), 0);
    assert_eq!(m.replica_index(1, "b"), Some(2));
    assert_eq!(m.replica_index(1, "c"), None);
    let ms = Duration::from_millis;
    m.record_call(0, 0, "C_Sign", CKR_OK, ms(2));
    m.record_call(0, 0, "C_Sign", CKR_OK, ms(2));
    m.record_call(
        0,
        0,
        "C_Sign",
        CKR_BUFFER_TOO_SMALL,
        Duration::from_micros(5),
    );
    m.record_call(1, 2, "C_Login", CKR_PIN_INCORRECT, Duration::from_secs(20));
    m.record_call(NO_SLOT, 0, "C_GetInfo", CKR_OK, Duration::from_micros(1));
    m.set_replica_up(1, 1, true);
    m.set_replica_up(1, 2, false);
    m.failover(1, 1, 2);
    m.failover(1, 1, 2);
    m.failover(1, 2, 9); // unregistered target: ignored
                         // One open session on "dev", none on "ha".
    m.set_sessions_source(Box::new(|slot| usize::from(slot == 0)));
    m
}

/// The lines of one `hsmux_call_duration_seconds` series: `labels` as rendered, the
/// cumulative count of each bucket (`le` as the renderer writes the bounds) and the sum.
fn histogram(labels: &str, cumulative: [u64; 13], sum: &str) -> String {
    const LE: [&str; 13] = [
        "0.00001", "0.0001", "0.0005", "0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "5",
        "10", "+Inf",
    ];
    let name = "hsmux_call_duration_seconds";
    let mut s = String::new();
    for (le, n) in LE.iter().zip(cumulative) {
        s += &format!("{name}_bucket{{{labels},le=\"{le}\"}} {n}\n");
    }
    s += &format!("{name}_sum{{{labels}}} {sum}\n");
    s + &format!("{name}_count{{{labels}}} {}\n", cumulative[12])
}

/// What `small_example` renders, exactly.
fn small_example_text() -> String {
    let calls = r#"# HELP hsmux_calls_total PKCS#11 calls by slot, replica, function and return value name.
# TYPE hsmux_calls_total counter
hsmux_calls_total{slot="dev",replica="",function="C_Sign",rv="CKR_BUFFER_TOO_SMALL"} 1
hsmux_calls_total{slot="dev",replica="",function="C_Sign",rv="CKR_OK"} 2
hsmux_calls_total{slot="ha",replica="b",function="C_Login",rv="CKR_PIN_INCORRECT"} 1
hsmux_calls_total{slot="",replica="",function="C_GetInfo",rv="CKR_OK"} 1
# HELP hsmux_call_duration_seconds Duration of PKCS#11 calls in seconds.
# TYPE hsmux_call_duration_seconds histogram
"#;
    let rest = r#"# HELP hsmux_replica_up Whether a replica of a slot is healthy (1) or not (0).
# TYPE hsmux_replica_up gauge
hsmux_replica_up{slot="ha",replica="a"} 1
hsmux_replica_up{slot="ha",replica="b"} 0
# HELP hsmux_failovers_total Failovers of a slot from one replica to another.
# TYPE hsmux_failovers_total counter
hsmux_failovers_total{slot="ha",from="a",to="b"} 2
# HELP hsmux_sessions Open sessions per slot.
# TYPE hsmux_sessions gauge
hsmux_sessions{slot="dev"} 1
hsmux_sessions{slot="ha"} 0
"#;
    [
        calls.to_string(),
        histogram(
            r#"slot="dev",replica="",function="C_Sign""#,
            [1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3],
            "0.004005",
        ),
        histogram(
            r#"slot="ha",replica="b",function="C_Login""#,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            "20",
        ),
        histogram(
            r#"slot="",replica="",function="C_GetInfo""#,
            [1; 13],
            "0.000001",
        ),
        rest.to_string(),
    ]
    .concat()
}

#[test]
fn renders_a_small_example_exactly() {
    let m = small_example();
    let text = m.render();
    let want = small_example_text();
    if text != want {
        for (i, (a, b)) in text.lines().zip(want.lines()).enumerate() {
            assert_eq!(a, b, "line {}", i + 1);
        }
        assert_eq!(text.lines().count(), want.lines().count());
    }
    assert_eq!(text, want);
}

#[test]
fn the_small_example_parses_with_an_independent_parser() {
    let e = parse(&small_example().render());

    let calls = scalar_samples(&e, "hsmux_calls_total");
    assert_eq!(calls.len(), 4);
    assert!(calls.contains(&(
        lbl(&[
            ("slot", "dev"),
            ("replica", ""),
            ("function", "C_Sign"),
            ("rv", "CKR_OK")
        ]),
        2.0
    )));
    assert!(calls.contains(&(
        lbl(&[
            ("slot", ""),
            ("replica", ""),
            ("function", "C_GetInfo"),
            ("rv", "CKR_OK")
        ]),
        1.0
    )));

    let h = &e.families["hsmux_call_duration_seconds"];
    assert_eq!(h.iter_samples().count(), 3);
    for s in h.iter_samples() {
        let PrometheusValue::Histogram(v) = &s.value else {
            panic!("{:?}", s.value)
        };
        // Cumulative, ending in +Inf == count.
        assert_eq!(v.buckets.len(), 13);
        let counts: Vec<f64> = v.buckets.iter().map(|b| b.count.as_f64()).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        let last = v.buckets.last().unwrap();
        assert_eq!(last.upper_bound, f64::INFINITY);
        assert_eq!(last.count.as_f64() as u64, v.count.unwrap());
        let ls = s.get_labelset().unwrap();
        if ls.get_label_value("function") == Some("C_Sign") {
            assert_eq!(v.count, Some(3));
            assert!((v.sum.as_ref().unwrap().as_f64() - 0.004005).abs() < 1e-12);
            assert_eq!(v.buckets[0].upper_bound, 0.00001);
            assert_eq!(v.buckets[0].count.as_f64(), 1.0);
            assert_eq!(v.buckets[4].upper_bound, 0.005);
            assert_eq!(v.buckets[4].count.as_f64(), 3.0);
        }
    }

    let up = scalar_samples(&e, "hsmux_replica_up");
    assert_eq!(
        up,
        vec![
            (lbl(&[("slot", "ha"), ("replica", "a")]), 1.0),
            (lbl(&[("slot", "ha"), ("replica", "b")]), 0.0)
        ]
    );
    let fo = scalar_samples(&e, "hsmux_failovers_total");
    assert_eq!(
        fo,
        vec![(lbl(&[("slot", "ha"), ("from", "a"), ("to", "b")]), 2.0)]
    );
    let sessions = scalar_samples(&e, "hsmux_sessions");
    assert_eq!(sessions.len(), 2);
    assert!(sessions.contains(&(lbl(&[("slot", "dev")]), 1.0)));
}

#[test]
fn an_empty_registry_renders_every_family() {
    let m = Metrics::new(&[]);
    let text = m.render();
    assert_eq!(text.lines().filter(|l| l.starts_with("# HELP ")).count(), 5);
    assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE ")).count(), 5);
    assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 0);
    parse(&text);
}

#[test]
fn label_values_are_escaped() {
    let slot = "a\"b\\c\nd";
    let replica = "r\"1\\";
    let m = Metrics::new(&[slot.to_string()]);
    let r = m.add_replica(0, replica);
    m.record_call(0, r, "C_Sign", CKR_OK, Duration::from_micros(50));
    m.set_replica_up(0, r, true);
    m.failover(0, 0, r);
    let text = m.render();
    assert!(
        text.contains(r#"hsmux_replica_up{slot="a\"b\\c\nd",replica="r\"1\\"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"{slot="a\"b\\c\nd",from="",to="r\"1\\"} 1"#));
    // Escaping keeps every sample on one line.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("hsmux_"), "{line:?}");
    }
    let e = parse(&text);
    let up = scalar_samples(&e, "hsmux_replica_up");
    assert_eq!(
        up,
        vec![(lbl(&[("slot", slot), ("replica", replica)]), 1.0)]
    );
    let calls = scalar_samples(&e, "hsmux_calls_total");
    assert_eq!(calls[0].0["slot"], slot);
    assert_eq!(calls[0].0["replica"], replica);
}

#[test]
fn bucket_bounds_are_inclusive_and_overflow_goes_to_inf_only() {
    let m = Metrics::new(&labels(&["s"]));
    for ns in [10_000u64, 10_001, 10_000_000_000, 10_000_000_001, 0] {
        m.record_call(0, 0, "C_Digest", CKR_OK, Duration::from_nanos(ns));
    }
    let text = m.render();
    let bucket = |le: &str| -> u64 {
        let key = format!(r#"function="C_Digest",le="{le}"}} "#);
        let line = text.lines().find(|l| l.contains(&key)).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(bucket("0.00001"), 2); // 0 and exactly 10 µs
    assert_eq!(bucket("0.0001"), 3);
    assert_eq!(bucket("10"), 4); // exactly 10 s
    assert_eq!(bucket("+Inf"), 5);
    assert!(text.contains(
        r#"hsmux_call_duration_seconds_sum{slot="s",replica="",function="C_Digest"} 20.000020002"#
    ));
    parse(&text);
}

#[test]
fn return_values_by_name_many_per_function_and_vendor_values_merged() {
    let m = Metrics::with_stripes(&labels(&["s"]), 1);
    let rvs = [
        CKR_OK,
        CKR_ARGUMENTS_BAD,
        CKR_PIN_INCORRECT,
        CKR_PIN_LOCKED,
        CKR_SESSION_HANDLE_INVALID,
        CKR_USER_ALREADY_LOGGED_IN,
        CKR_USER_TYPE_INVALID,
        CKR_GENERAL_ERROR,
        CKR_DEVICE_ERROR,
        CKR_TOKEN_NOT_PRESENT,
        CKR_PIN_LEN_RANGE,
        CKR_USER_PIN_NOT_INITIALIZED,
        CKR_CRYPTOKI_NOT_INITIALIZED,
    ];
    for (i, rv) in rvs.iter().enumerate() {
        for _ in 0..=i {
            m.record_call(0, 0, "C_Login", *rv, Duration::from_micros(3));
        }
    }
    for v in 0..50 {
        m.record_call(0, 0, "C_Login", CKR_VENDOR_DEFINED + 1 + v, Duration::ZERO);
    }
    m.record_call(0, 0, "C_Login", u64::MAX as CK_RV, Duration::ZERO);
    let e = parse(&m.render());
    let calls = scalar_samples(&e, "hsmux_calls_total");
    assert_eq!(calls.len(), rvs.len() + 1);
    for (i, rv) in rvs.iter().enumerate() {
        let name = crate::core::rv::name(*rv);
        let n = calls.iter().find(|(l, _)| l["rv"] == name).unwrap().1;
        assert_eq!(n, (i + 1) as f64, "{name}");
    }
    let vendor = calls
        .iter()
        .find(|(l, _)| l["rv"] == "CKR_VENDOR_DEFINED")
        .unwrap();
    assert_eq!(vendor.1, 51.0);
}

#[test]
fn function_names_map_to_their_own_index() {
    for (i, name) in functions::KNOWN.iter().enumerate() {
        assert_eq!(functions::lookup(name), i, "{name}");
        assert_eq!(functions::index(name), i, "{name}");
        assert_eq!(functions::index(name), i, "{name} (cached)");
        assert_eq!(functions::name(i), *name);
        // The same name elsewhere in memory.
        let copy: &'static str = Box::leak(name.to_string().into_boxed_str());
        assert_eq!(functions::index(copy), i, "{name} (copy)");
        assert_eq!(functions::index(copy), i, "{name} (copy, cached)");
    }
    // A prefix of a known name (same address, other length) is not that name.
    let sign: &'static str = &functions::KNOWN[43][..6];
    assert_eq!(functions::KNOWN[43], "C_Sign");
    let verify_init: &'static str = "C_VerifyInit";
    assert_eq!(functions::index(verify_init), 48);
    assert_eq!(functions::index(&verify_init[..8]), 49); // "C_Verify"
    assert_eq!(functions::index(sign), 43);
    let mut sorted = functions::KNOWN.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), functions::KNOWN.len(), "duplicate names");
    // A name outside the list gets a place of its own, the same each time.
    let a = functions::index("X_VendorCall");
    assert!(a >= functions::KNOWN.len() && a < functions::OTHER);
    assert_eq!(functions::index("X_VendorCall"), a);
    assert_eq!(functions::name(a), "X_VendorCall");
    let m = Metrics::new(&labels(&["s"]));
    m.record_call(0, 0, "X_VendorCall", CKR_OK, Duration::ZERO);
    assert!(m.render().contains(
        r#"hsmux_calls_total{slot="s",replica="",function="X_VendorCall",rv="CKR_OK"} 1"#
    ));
}

/// Every function the FFI layer exports has a fixed index (so none becomes "other").
#[test]
fn every_exported_function_is_known() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/ffi");
    let mut found = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for marker in ["ck_fn!(", "fn "] {
            for piece in text.split(marker).skip(1) {
                if !piece.starts_with("C_") {
                    continue;
                }
                let name: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(functions::KNOWN.contains(&name.as_str()), "{name}");
                found += 1;
            }
        }
    }
    assert!(found > 60, "found {found}");
}

#[test]
fn replicas_past_the_limit_count_as_the_slot() {
    let m = Metrics::new(&labels(&["s"]));
    for i in 1..registry::MAX_REPLICAS {
        assert_eq!(m.add_replica(0, &format!("r{i}")), i);
    }
    assert_eq!(m.add_replica(0, "one-too-many"), 0);
    assert_eq!(m.add_replica(0, "r5"), 5);
    m.record_call(
        0,
        registry::MAX_REPLICAS + 3,
        "C_Sign",
        CKR_OK,
        Duration::ZERO,
    );
    m.set_replica_up(0, registry::MAX_REPLICAS - 1, true);
    let text = m.render();
    assert!(
        text.contains(r#"hsmux_calls_total{slot="s",replica="",function="C_Sign",rv="CKR_OK"} 1"#)
    );
    assert!(text.contains(&format!(
        "hsmux_replica_up{{slot=\"s\",replica=\"r{}\"}} 1",
        registry::MAX_REPLICAS - 1
    )));
    parse(&text);
}

#[test]
fn a_disabled_registry_records_nothing() {
    let m = Metrics::new(&labels(&["s"]));
    m.set_enabled(false);
    assert!(!m.is_enabled());
    m.record_call(0, 0, "C_Sign", CKR_OK, Duration::ZERO);
    m.set_replica_up(0, 0, true);
    m.failover(0, 0, 0);
    let text = m.render();
    assert!(!text.contains("C_Sign"));
    assert!(text.contains("hsmux_sessions{slot=\"s\"} 0\n"));
    assert!(!text.contains("hsmux_replica_up{"));
    m.set_enabled(true);
    m.record_call(0, 0, "C_Sign", CKR_OK, Duration::ZERO);
    assert!(m
        .render()
        .contains("function=\"C_Sign\",rv=\"CKR_OK\"} 1\n"));
}

/// The process-wide hook and the thread's call context (the only test that installs).
#[test]
fn current_instance_and_call_context() {
    install(None);
    assert!(!enabled());
    assert!(current().is_none());
    assert!(start().is_none());
    note_replica(3); // disabled: not kept
    assert_eq!(take_replica(), 0);

    let m = Arc::new(Metrics::new(&labels(&["a", "b"])));
    let r = m.add_replica(1, "r1");
    install(Some(m.clone()));
    assert!(enabled());
    assert!(current().is_some());

    // A call on slot 1 that a replica served.
    let t = start();
    assert!(t.is_some());
    note_replica(r);
    finish(t, "C_Sign", CKR_OK, || Some(1));
    assert_eq!(take_replica(), 0, "finish resets the replica");

    // A call that names no slot.
    let t = start();
    finish(t, "C_GetInfo", CKR_OK, || None);

    // start clears what an earlier call left behind.
    note_replica(r);
    let t = start();
    finish(t, "C_GetSlotList", CKR_OK, || None);

    // take_replica by hand.
    note_replica(2);
    assert_eq!(take_replica(), 2);
    assert_eq!(take_replica(), 0);

    // Another thread's replica is its own.
    note_replica(1);
    std::thread::spawn(|| assert_eq!(take_replica(), 0))
        .join()
        .unwrap();
    assert_eq!(take_replica(), 1);

    // The slot is asked only when the call is recorded.
    install(None);
    finish(start(), "C_Sign", CKR_OK, || {
        unreachable!("metrics are off")
    });
    install(Some(m.clone()));

    let text = m.render();
    assert!(
        text.contains(
            r#"hsmux_calls_total{slot="b",replica="r1",function="C_Sign",rv="CKR_OK"} 1"#
        ),
        "{text}"
    );
    assert!(text
        .contains(r#"hsmux_calls_total{slot="",replica="",function="C_GetInfo",rv="CKR_OK"} 1"#));
    assert!(text.contains(
        r#"hsmux_calls_total{slot="",replica="",function="C_GetSlotList",rv="CKR_OK"} 1"#
    ));

    install(None);
    assert!(current().is_none());
    // A call started while enabled and finished after removal records nothing, safely.
    install(Some(m.clone()));
    let t = start();
    install(None);
    finish(t, "C_Sign", CKR_OK, || Some(1));
    assert!(m.render().contains(r#"function="C_Sign",rv="CKR_OK"} 1"#));
}

/// 8 threads x 100k calls, with a renderer and a late replica registration running
/// alongside: every count and the duration sum come out exact.
#[test]
fn concurrent_recording_is_exact() {
    const THREADS: usize = 8;
    const CALLS: usize = 100_000;
    let m = Arc::new(Metrics::new(&labels(&["s0", "s1"])));
    let r1 = m.add_replica(1, "r1");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renderer = {
        let (m, stop) = (m.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut renders = 0;
            let mut last = 0.0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let e = parse_prometheus(&m.render()).expect("parses mid-flight");
                // The total only grows.
                let total: f64 = e.families["hsmux_calls_total"]
                    .iter_samples()
                    .map(|s| match &s.value {
                        PrometheusValue::Counter(c) => c.value.as_f64(),
                        _ => 0.0,
                    })
                    .sum();
                assert!(total >= last);
                last = total;
                renders += 1;
            }
            renders
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let (slot, replica) = if t % 2 == 0 { (0, 0) } else { (1, r1) };
                for i in 0..CALLS {
                    let rv = if i % 10 == 0 {
                        CKR_PIN_INCORRECT
                    } else {
                        CKR_OK
                    };
                    let f = if i % 2 == 0 { "C_Sign" } else { "C_Encrypt" };
                    let ns = (i % 1000) as u64 * 1000 + 1;
                    m.record_call(slot, replica, f, rv, Duration::from_nanos(ns));
                    if t == 0 && i == CALLS / 2 {
                        m.add_replica(1, "late");
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let renders = renderer.join().unwrap();
    assert!(renders > 0);

    let per_thread_sum_ns: u64 = (0..CALLS).map(|i| (i % 1000) as u64 * 1000 + 1).sum();
    let half = THREADS / 2;
    let e = parse(&m.render());
    let calls = scalar_samples(&e, "hsmux_calls_total");
    let total: f64 = calls.iter().map(|(_, v)| v).sum();
    assert_eq!(total as usize, THREADS * CALLS);
    for slot in ["s0", "s1"] {
        for f in ["C_Sign", "C_Encrypt"] {
            let get = |rv: &str| {
                calls
                    .iter()
                    .find(|(l, _)| l["slot"] == slot && l["function"] == f && l["rv"] == rv)
                    .map(|(_, v)| *v as usize)
                    .unwrap()
            };
            // Per thread and function: 50k calls; C_Sign (even i) has the 10k errors (i % 10 == 0).
            let errors = if f == "C_Sign" { CALLS / 10 } else { 0 };
            if errors > 0 {
                assert_eq!(get("CKR_PIN_INCORRECT"), half * errors);
            }
            assert_eq!(get("CKR_OK"), half * (CALLS / 2 - errors), "{slot} {f}");
        }
    }
    // Histogram counts and the exact sum, from the registry itself.
    let mut sum_ns = 0u64;
    let mut count = 0u64;
    for (_, rows) in m.snapshot_rows() {
        for row in rows {
            for f in 0..functions::COUNT {
                if let Some(t) = row.totals(f) {
                    sum_ns += t.sum_ns;
                    count += t.buckets.iter().sum::<u64>();
                }
            }
        }
    }
    assert_eq!(count as usize, THREADS * CALLS);
    assert_eq!(sum_ns, THREADS as u64 * per_thread_sum_ns);
    let h = &e.families["hsmux_call_duration_seconds"];
    let parsed_count: u64 = h
        .iter_samples()
        .map(|s| match &s.value {
            PrometheusValue::Histogram(v) => v.count.unwrap(),
            _ => 0,
        })
        .sum();
    assert_eq!(parsed_count as usize, THREADS * CALLS);
}

/// One HTTP exchange over a raw socket: `(status line, headers, body)`.
pub(super) fn http(addr: std::net::SocketAddr, request: &[u8]) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

#[test]
fn listener_serves_metrics_and_stops() {
    let m = Arc::new(small_example());
    let l = Listener::start("127.0.0.1:0", m.clone()).unwrap();
    let addr = l.local_addr();
    assert!(addr.port() != 0);

    let (status, headers, body) = http(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4\r\n"),
        "{headers}"
    );
    assert!(headers.contains(&format!("Content-Length: {}", body.len())));
    assert_eq!(body, small_example_text());
    parse(&body);

    // An HTTP/1.0 request is answered in HTTP/1.0 (hyper), bare LFs accepted.
    let (status, _, body) = http(addr, b"GET /metrics?x=1 HTTP/1.0\n\n");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert_eq!(body, m.render());

    let (status, headers, body) = http(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains(&format!("Content-Length: {}", small_example_text().len())));
    assert!(body.is_empty());

    // Requests refused, with the status each gets.
    let refused: [(&[u8], &str); 4] = [
        (b"GET / HTTP/1.1\r\n\r\n", "404 Not Found"),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", "404 Not Found"),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "405 Method Not Allowed",
        ),
        (b"\x00\xff garbage\r\n\r\n", "400 Bad Request"),
    ];
    for (request, status) in refused {
        assert_eq!(http(addr, request).0, format!("HTTP/1.1 {status}"));
    }
    let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'a', 10_000));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(&big);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 431 "));
    drop(s);

    // A client that connects and says nothing holds the next scrape 2 s at most; one that
    // hangs up at once does not hold it at all.
    drop(TcpStream::connect(addr).unwrap());
    let silent = TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    let (status, _, _) = http(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let waited = t.elapsed();
    // (Bounds here catch a hang, not slowness: generous for a loaded CI machine.)
    assert!(waited < Duration::from_secs(10), "{waited:?}");

    // A second listener on the same address fails, naming it.
    let err = Listener::start(&addr.to_string(), m.clone())
        .err()
        .expect("address in use");
    assert!(err.contains(&addr.to_string()), "{err}");

    // stop joins the thread promptly, even with a silent client connected.
    let silent2 = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    l.stop();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    drop((silent, silent2));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "still listening"
    );
}

#[test]
fn listener_drop_joins_and_bad_addresses_fail() {
    let m = Arc::new(Metrics::new(&[]));
    let l = Listener::start("127.0.0.1:0", m.clone()).unwrap();
    let addr = l.local_addr();
    assert_eq!(
        http(addr, b"GET /metrics HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 200 OK"
    );
    drop(l);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());

    let err = Listener::start("not-an-address", m.clone()).err().unwrap();
    assert!(err.contains("not-an-address"), "{err}");
    let err = Listener::start("192.0.2.1:9464", m.clone()).err().unwrap();
    assert!(err.contains("192.0.2.1:9464"), "{err}");

    // Bound to every address: stop wakes it through loopback.
    let l = Listener::start("0.0.0.0:0", m).unwrap();
    let port = l.local_addr().port();
    let t = Instant::now();
    l.stop();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn a_cell_is_small() {
    assert!(std::mem::size_of::<registry::CallCell>() <= 256);
}
