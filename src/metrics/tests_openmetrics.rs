//! The OpenMetrics exposition: parsed by an independent strict OpenMetrics parser, the same
//! values as the 0.0.4 text, and served when the scraper's `Accept` asks for it.

use super::listener::wants_openmetrics;
use super::openmetrics::encode_counters;
use super::registry::Metrics;
use super::tests::{http, labels, parse, small_example, Exposition};
use super::Listener;
use cryptoki_sys::*;
use openmetrics_parser::openmetrics::parse_openmetrics;
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue, PrometheusValue};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What Prometheus 2.42 (bookworm) sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One sample, format-neutral: a scalar, or a histogram's (count, sum, cumulative buckets).
#[derive(Debug, PartialEq)]
enum Value {
    Scalar(f64),
    Histogram(u64, f64, Vec<(String, f64)>),
}

/// `(family without _total, labels)` -> value, for comparing the two formats.
type Samples = BTreeMap<(String, Vec<(String, String)>), Value>;

fn key<'a>(
    family: &str,
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> (String, Vec<(String, String)>) {
    let mut l: Vec<_> = pairs
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    l.sort();
    (family.trim_end_matches("_total").to_string(), l)
}

fn bucket_list(b: &[openmetrics_parser::HistogramBucket]) -> Vec<(String, f64)> {
    b.iter()
        .map(|b| (format!("{}", b.upper_bound), b.count.as_f64()))
        .collect()
}

/// The samples of a parsed exposition; `$value` is the parser's value enum of that format
/// (both have the same variants for what hsmux writes).
macro_rules! samples {
    ($e:expr, $value:ident) => {{
        let mut out = Samples::new();
        for (name, f) in &$e.families {
            for s in f.iter_samples() {
                let v = match &s.value {
                    $value::Counter(c) => Value::Scalar(c.value.as_f64()),
                    $value::Gauge(g) => Value::Scalar(g.as_f64()),
                    $value::Histogram(h) => Value::Histogram(
                        h.count.unwrap(),
                        h.sum.as_ref().unwrap().as_f64(),
                        bucket_list(&h.buckets),
                    ),
                    other => panic!("{name}: {other:?}"),
                };
                out.insert(key(name, s.get_labelset().unwrap().iter()), v);
            }
        }
        out
    }};
}

fn from_text(e: &Exposition) -> Samples {
    samples!(e, PrometheusValue)
}

fn from_openmetrics(e: &MetricsExposition<OpenMetricsType, OpenMetricsValue>) -> Samples {
    samples!(e, OpenMetricsValue)
}

/// Parses OpenMetrics strictly; the families that have samples, with their types and help.
fn parse_om(text: &str) -> MetricsExposition<OpenMetricsType, OpenMetricsValue> {
    let e = parse_openmetrics(text).unwrap_or_else(|err| panic!("{err:?} in:\n{text}"));
    for (name, ty) in [
        ("hsmux_calls", OpenMetricsType::Counter),
        ("hsmux_call_duration_seconds", OpenMetricsType::Histogram),
        ("hsmux_replica_up", OpenMetricsType::Gauge),
        ("hsmux_failovers", OpenMetricsType::Counter),
        ("hsmux_sessions", OpenMetricsType::Gauge),
    ] {
        let Some(f) = e.families.get(name) else {
            assert!(!text.contains(&format!("\n{name}")), "{name} in:\n{text}");
            continue;
        };
        assert_eq!(f.family_type, ty, "{name}");
        assert!(!f.help.is_empty(), "{name}");
        assert!(f.iter_samples().next().is_some(), "{name} is empty");
    }
    e
}

#[test]
fn openmetrics_has_the_same_samples_as_the_text_format() {
    let m = Arc::new(small_example());
    let om = m.render_openmetrics();
    assert!(om.ends_with("# EOF\n"), "{om}");
    // The five families (other tests in this process may have registered extra counters).
    assert!(om.matches("# TYPE ").count() >= 5, "{om}");
    let a = from_openmetrics(&parse_om(&om));
    let b = from_text(&parse(&m.render()));
    assert_eq!(a, b);
    // Not vacuous: every kind of sample is there.
    assert_eq!(a.len(), 4 + 3 + 2 + 1 + 2, "{a:#?}");
    let names = labels(&["function", "replica", "slot"]);
    let values = labels(&["C_Sign", "", "dev"]);
    let sign = &a[&key("hsmux_call_duration_seconds", names.iter().zip(&values))];
    match sign {
        Value::Histogram(count, sum, buckets) => {
            assert_eq!(*count, 3);
            assert!((sum - 0.004005).abs() < 1e-12, "{sum}");
            assert_eq!(buckets.len(), 13);
            assert_eq!(buckets[0], ("0.00001".to_string(), 1.0));
            assert_eq!(buckets[4], ("0.005".to_string(), 3.0));
            assert_eq!(buckets[12].1, 3.0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn openmetrics_escapes_label_values_and_names_extra_counters() {
    let slot = "a\"b\\c\nd";
    let m = Arc::new(Metrics::new(&[slot.to_string()]));
    let r = m.add_replica(0, "r\"1");
    m.record_call(0, r, "C_Sign", CKR_OK, Duration::from_micros(50));
    m.set_replica_up(0, r, true);
    let om = m.render_openmetrics();
    let e = parse_om(&om);
    assert_eq!(from_openmetrics(&e), from_text(&parse(&m.render())));
    let up = &e.families["hsmux_replica_up"];
    let s = up.iter_samples().next().unwrap();
    let set = s.get_labelset().unwrap();
    let got: Vec<_> = set.iter().collect();
    let (k, v) = (labels(&["replica", "slot"]), labels(&["r\"1", slot]));
    assert_eq!(got, k.iter().zip(&v).collect::<Vec<_>>());
}

/// Encodes fixed extra counters (not the process-wide registry other tests read).
#[derive(Debug)]
struct FixedCounters;

impl Collector for FixedCounters {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        encode_counters(
            &mut enc,
            &[
                ("hsmux_audit_dropped_total", "Audit lines dropped.", 7),
                ("hsmux_test_plain", "Named without _total.", 0),
            ],
        )
    }
}

#[test]
fn extra_counters_keep_their_sample_names() {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(FixedCounters));
    let mut om = String::new();
    prometheus_client::encoding::text::encode(&mut om, &registry).unwrap();
    assert!(om.contains("# TYPE hsmux_audit_dropped counter\n"), "{om}");
    assert!(om.contains("\nhsmux_audit_dropped_total 7\n"), "{om}");
    assert!(om.contains("\nhsmux_test_plain_total 0\n"), "{om}");
    let e = parse_openmetrics(&om).unwrap();
    assert_eq!(
        e.families["hsmux_audit_dropped"].family_type,
        OpenMetricsType::Counter
    );
}

#[test]
fn an_empty_registry_is_just_eof() {
    let om = Arc::new(Metrics::new(&[])).render_openmetrics();
    for family in [
        "hsmux_calls",
        "hsmux_call_duration",
        "hsmux_replica",
        "hsmux_sessions",
    ] {
        assert!(!om.contains(family), "{om}");
    }
    assert!(om.ends_with("# EOF\n"), "{om}");
    // The parser refuses a bare `# EOF` (valid OpenMetrics); other tests' extra counters
    // may be registered in this process.
    if om != "# EOF\n" {
        parse_om(&om);
    }
}

#[test]
fn accept_header_negotiation() {
    assert!(wants_openmetrics(PROMETHEUS_ACCEPT));
    assert!(wants_openmetrics("application/openmetrics-text"));
    assert!(wants_openmetrics(
        "Application/OpenMetrics-Text; version=1.0.0"
    ));
    assert!(!wants_openmetrics("*/*"));
    assert!(!wants_openmetrics("text/plain;version=0.0.4"));
    assert!(!wants_openmetrics(""));
    assert!(!wants_openmetrics(
        "application/openmetrics-text;q=0.3,text/plain;q=0.5"
    ));
    assert!(!wants_openmetrics("application/openmetrics-text;q=0"));
}

#[test]
fn listener_serves_openmetrics_to_prometheus_and_text_to_others() {
    let m = Arc::new(small_example());
    let l = Listener::start("127.0.0.1:0", m.clone()).unwrap();
    let req = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {PROMETHEUS_ACCEPT}\r\n\r\n");
    let (status, headers, body) = http(l.local_addr(), req.as_bytes());
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains(
            "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
        ),
        "{headers}"
    );
    assert_eq!(body, m.render_openmetrics());
    parse_om(&body);

    let (_, headers, body) = http(
        l.local_addr(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    );
    assert!(headers.contains("Content-Type: text/plain; version=0.0.4\r\n"));
    assert_eq!(body, m.render());
    l.stop();
}

#[test]
fn hedges_are_counted_per_replica_in_both_formats() {
    let m = Arc::new(small_example());
    m.hedge(1, 2, false);
    m.hedge(1, 2, false);
    m.hedge(1, 2, true);
    m.hedge(1, 9, false); // unregistered replica: ignored
    let text = m.render();
    let parsed = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("{e:?} in:\n{text}"));
    let b = from_text(&parsed);
    let a = from_openmetrics(&parse_om(&m.render_openmetrics()));
    assert_eq!(a, b);
    let names = labels(&["replica", "slot"]);
    let values = labels(&["b", "ha"]);
    let at = |family: &str| &a[&key(family, names.iter().zip(&values))];
    assert_eq!(*at("hsmux_hedges"), Value::Scalar(2.0));
    assert_eq!(*at("hsmux_hedges_won"), Value::Scalar(1.0));
    // Replica a got none: no sample for it.
    assert_eq!(
        a.keys()
            .filter(|(f, _)| f.starts_with("hsmux_hedges"))
            .count(),
        2
    );
}
