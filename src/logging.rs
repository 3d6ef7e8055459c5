//! Logging set-up: `HSMUX_LOG` (env_logger syntax) wins over `[log] level`; lines go to
//! stderr unless `[log] file` is set. Initialised once per process; later calls are no-ops.

use crate::config::LogConfig;
use std::sync::Once;

static INIT: Once = Once::new();

/// Starts logging from the environment only (before any config is read).
pub fn init_early() {
    init(&LogConfig::default());
}

pub fn init(cfg: &LogConfig) {
    INIT.call_once(|| {
        let mut b = env_logger::Builder::new();
        b.filter_level(log::LevelFilter::Warn);
        if let Some(level) = cfg.level.as_deref().and_then(|l| l.parse().ok()) {
            b.filter_level(level);
        }
        if let Ok(spec) = std::env::var("HSMUX_LOG") {
            b.parse_filters(&spec);
        }
        b.format_target(false);
        if let Some(path) = &cfg.file {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(f) => {
                    b.target(env_logger::Target::Pipe(Box::new(f)));
                }
                Err(e) => eprintln!(
                    "hsmux: cannot open log file {}: {e}; logging to stderr",
                    path.display()
                ),
            }
        }
        let _ = b.try_init();
    });
}
