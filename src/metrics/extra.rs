//! Counters other parts of the module keep themselves and the registry only reads when
//! scraped (the audit trail's `hsmux_audit_dropped_total`, ...): registered by name with a
//! function that reads them, rendered after the call series.

use parking_lot::Mutex;
use std::fmt::Write;

/// A counter read at scrape time.
pub struct Counter {
    pub name: &'static str,
    pub help: &'static str,
    pub read: fn() -> u64,
}

static COUNTERS: Mutex<Vec<Counter>> = Mutex::new(Vec::new());

/// Registers a counter (once per name: a second registration of a name replaces the first).
/// Counter names end in `_total`, as both exposition formats want (the debug build checks).
pub fn register_counter(name: &'static str, help: &'static str, read: fn() -> u64) {
    debug_assert!(name.ends_with("_total"), "{name}");
    let mut c = COUNTERS.lock();
    c.retain(|x| x.name != name);
    c.push(Counter { name, help, read });
}

/// The registered counters and their values now, in registration order.
pub fn counters() -> Vec<(&'static str, &'static str, u64)> {
    COUNTERS
        .lock()
        .iter()
        .map(|c| (c.name, c.help, (c.read)()))
        .collect()
}

/// Appends the registered counters in the text format.
pub(crate) fn render(out: &mut String) {
    for (name, help, v) in counters() {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
}
