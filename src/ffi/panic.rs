//! Panics inside a PKCS#11 call go to hsmux's log, not to the consumer's stderr
//! (issue 17, defect 10).
//!
//! `run_guarded` catches every panic of a call and answers `CKR_GENERAL_ERROR`, but the
//! panic hook runs before the unwind is caught, and Rust's default hook prints
//! "thread '..' panicked at .." to stderr whatever hsmux's log settings say. hsmux
//! therefore installs, once (on the first guarded call), a hook that wraps the one in
//! place:
//! - a panic on a thread that is inside a guarded call (a thread-local depth that
//!   [`Guarded`] keeps) is logged with `log::error!` (message and location) and printed
//!   nowhere;
//! - any other panic goes to the previous hook unchanged, so that a Rust program that
//!   links hsmux as a library keeps its own hook for its own panics. (A C consumer of
//!   `libhsmux.so` has its own copy of the Rust runtime, if any, which hsmux's hook does
//!   not touch.)
//!
//! A host that replaces the hook after hsmux installed its own takes over panics inside
//! hsmux's calls too; they are still caught and answered `CKR_GENERAL_ERROR`.

use std::cell::Cell;
use std::panic::PanicHookInfo;
use std::sync::Once;

thread_local! {
    /// Guarded PKCS#11 calls in progress on this thread (more than one when a call
    /// re-enters the module, e.g. through a vendor library's callback).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

static INSTALL: Once = Once::new();

/// Installs the hook (once per process; a later call does nothing).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if in_guarded_call() {
                log_panic(info);
            } else {
                previous(info);
            }
        }));
    });
}

fn in_guarded_call() -> bool {
    // `try_with`: a panic while the thread's locals are being destroyed is not ours.
    DEPTH.try_with(|d| d.get() > 0).unwrap_or(false)
}

fn log_panic(info: &PanicHookInfo<'_>) {
    let payload = info.payload();
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(|s| s.as_str()))
        .unwrap_or("(no message)");
    let at = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_else(|| "an unknown location".into());
    let thread = std::thread::current();
    log::error!(
        "panic in a PKCS#11 call on thread '{}' at {at}: {what}",
        thread.name().unwrap_or("<unnamed>")
    );
}

/// Marks the current thread as inside a guarded call while it lives.
pub(crate) struct Guarded(());

impl Guarded {
    pub(crate) fn enter() -> Guarded {
        DEPTH.with(|d| d.set(d.get() + 1));
        Guarded(())
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = DEPTH.try_with(|d| d.set(d.get().saturating_sub(1)));
    }
}

#[cfg(test)]
mod tests {
    //! The hook is process-wide: the checks run in a child process (this test binary run
    //! again with only `child` selected), whose stderr and log file the parent reads.

    use cryptoki_sys::*;
    use std::io::Write;
    use std::process::Command;

    const CHILD_ENV: &str = "HSMUX_PANIC_HOOK_CHILD_LOG";

    /// Writes every log record to the file named by `CHILD_ENV`.
    struct FileLog(std::sync::Mutex<std::fs::File>);
    impl log::Log for FileLog {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, r: &log::Record) {
            let _ = writeln!(self.0.lock().unwrap(), "{} {}", r.level(), r.args());
        }
        fn flush(&self) {}
    }

    /// The child's part: not a test of its own (it returns at once unless the parent
    /// started it).
    #[test]
    fn child() {
        let Ok(path) = std::env::var(CHILD_ENV) else {
            return;
        };
        let file = std::fs::File::create(path).unwrap();
        log::set_boxed_logger(Box::new(FileLog(std::sync::Mutex::new(file)))).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
        // The host program's own hook, set before hsmux is first called.
        std::panic::set_hook(Box::new(|info| {
            eprintln!(
                "HOST HOOK SAW: {}",
                info.payload().downcast_ref::<&str>().unwrap()
            );
        }));
        let rv = crate::ffi::guard("C_TestPanic", crate::ffi::Subject::None, || {
            panic!("boom inside hsmux")
        });
        eprintln!("GUARDED CALL ANSWERED 0x{rv:x}");
        // The host's own panic, outside any hsmux call, after the hook was installed.
        let caught = std::panic::catch_unwind(|| panic!("the host's own panic"));
        assert!(caught.is_err());
        // A second guarded panic after the host's: still logged, not printed.
        let rv2 = crate::ffi::guard("C_TestPanic", crate::ffi::Subject::None, || {
            panic!("boom again")
        });
        eprintln!("SECOND GUARDED CALL ANSWERED 0x{rv2:x}");
    }

    #[test]
    fn a_panic_in_a_call_goes_to_the_log_and_the_hosts_hook_keeps_its_own() {
        let dir = std::env::temp_dir().join(format!("hsmux-panic-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log_path = dir.join("child.log");
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ffi::panic::tests::child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &log_path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success(), "child failed:\n{stderr}");
        assert!(
            stderr.contains(&format!("GUARDED CALL ANSWERED 0x{CKR_GENERAL_ERROR:x}")),
            "the guarded call answered CKR_GENERAL_ERROR:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "SECOND GUARDED CALL ANSWERED 0x{CKR_GENERAL_ERROR:x}"
            )),
            "{stderr}"
        );
        assert!(
            !stderr.contains("panicked at"),
            "no panic message on stderr:\n{stderr}"
        );
        assert!(
            !stderr.contains("boom"),
            "hsmux's panics are not printed, not even by the host's hook:\n{stderr}"
        );
        assert!(
            stderr.contains("HOST HOOK SAW: the host's own panic"),
            "the host's hook still sees its own panics:\n{stderr}"
        );
        assert!(
            log.contains("panic in a PKCS#11 call") && log.contains("boom inside hsmux"),
            "the panic is in hsmux's log:\n{log}"
        );
        assert!(
            log.contains("src/ffi/panic.rs:"),
            "with its location:\n{log}"
        );
        assert!(log.contains("boom again"), "{log}");
        assert!(
            log.contains("C_TestPanic: internal error"),
            "and the call that answered CKR_GENERAL_ERROR:\n{log}"
        );
    }
}
