//! Logging set-up: `HSMUX_LOG` (env_logger syntax) wins over `[log] level`; lines go to
//! stderr unless `[log] file` is set, or to syslog with `[log] syslog = true` (syslog.rs).
//!
//! The `log` crate takes one logger per process, for good, while hsmux learns its settings
//! only when a config is read (at each `C_Initialize`, and the config may differ after a
//! `C_Finalize`). So hsmux registers a forwarding logger once and swaps the configured
//! `env_logger` behind it each time the settings are applied. If the host program already
//! installed a logger of its own, hsmux leaves it alone.

mod syslog;

use crate::config::LogConfig;
use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use std::sync::{Arc, Once};

static REGISTER: Once = Once::new();
/// Whether hsmux's forwarder is the process's logger (false: the host has its own).
static OURS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static CURRENT: ArcSwapOption<env_logger::Logger> = ArcSwapOption::const_empty();
/// Why the configured `[log] file` could not be opened, for `hsmux check`.
static FILE_PROBLEM: Mutex<Option<String>> = Mutex::new(None);

struct Forward;

impl log::Log for Forward {
    fn enabled(&self, m: &log::Metadata) -> bool {
        CURRENT.load().as_ref().is_some_and(|l| l.enabled(m))
    }
    fn log(&self, r: &log::Record) {
        if let Some(l) = CURRENT.load().as_ref() {
            if l.matches(r) {
                l.log(r);
            }
        }
    }
    fn flush(&self) {
        if let Some(l) = CURRENT.load().as_ref() {
            l.flush();
        }
    }
}

/// Starts logging from the environment only (before any config is read).
pub fn init_early() {
    if CURRENT.load().is_none() {
        init(&LogConfig::default());
    }
}

/// Applies `[log]`: builds the logger it describes and puts it in place.
pub fn init(cfg: &LogConfig) {
    REGISTER.call_once(|| {
        if log::set_logger(&Forward).is_ok() {
            OURS.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    if !OURS.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let mut b = env_logger::Builder::new();
    b.filter_level(log::LevelFilter::Warn);
    if let Some(level) = cfg.level.as_deref().and_then(|l| l.parse().ok()) {
        b.filter_level(level);
    }
    if let Ok(spec) = std::env::var("HSMUX_LOG") {
        b.parse_filters(&spec);
    }
    b.format_target(false);
    let mut problem = None;
    if let Some(path) = &cfg.file {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => {
                b.target(env_logger::Target::Pipe(Box::new(f)));
            }
            Err(e) => {
                let why = format!("cannot open log file {}: {e}", path.display());
                // The log itself is what failed: say it where the operator will see it.
                eprintln!("hsmux: {why}; logging to stderr");
                problem = Some(why);
            }
        }
    }
    if cfg.syslog == Some(true) {
        let path = cfg
            .syslog_socket
            .clone()
            .unwrap_or_else(|| syslog::DEFAULT_SOCKET.into());
        match syslog::Syslog::connect(&path) {
            Ok(s) => {
                let pid = std::process::id();
                b.format(move |buf, r| {
                    use std::io::Write;
                    let pri = syslog::priority(r.level());
                    writeln!(buf, "<{pri}>hsmux[{pid}]: {}: {}", r.level(), r.args())
                });
                b.target(env_logger::Target::Pipe(Box::new(s)));
            }
            Err(e) => {
                let why = format!("cannot reach syslog at {}: {e}", path.display());
                eprintln!("hsmux: {why}; logging to stderr");
                problem = Some(why);
            }
        }
    }
    *FILE_PROBLEM.lock() = problem;
    let logger = b.build();
    log::set_max_level(logger.filter());
    CURRENT.store(Some(Arc::new(logger)));
}

/// The `[log] file` problem of the settings last applied, if any.
pub fn file_problem() -> Option<String> {
    FILE_PROBLEM.lock().clone()
}
