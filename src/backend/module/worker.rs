//! Calls into a vendor library with a deadline. A vendor call cannot be interrupted, so it
//! runs on one of a few worker threads of its replica while the caller waits at most
//! `timeout`; a call that overruns is abandoned (its thread stays with it until the vendor
//! returns) and the caller gets a timeout to fail over on. Everything a job touches is
//! owned by the job, so a late return writes into nothing of the consumer's.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

pub struct Workers {
    name: String,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    threads: Mutex<Vec<(JoinHandle<()>, Arc<AtomicBool>)>>,
    /// Workers that are not inside a job: when none is, one more is started (up to
    /// `MAX`), so that a hung vendor call does not hold up calls that could still work.
    idle: Arc<AtomicUsize>,
}

/// The deadline passed: the vendor call is still running somewhere.
#[derive(Debug)]
pub struct TimedOut;

const MAX: usize = 16;

impl Workers {
    pub fn new(name: &str) -> Workers {
        let (tx, rx) = mpsc::channel();
        Workers {
            name: name.to_string(),
            tx: Mutex::new(Some(tx)),
            rx: Arc::new(Mutex::new(rx)),
            threads: Mutex::new(Vec::new()),
            idle: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn spawn(&self) {
        let mut threads = self.threads.lock();
        if threads.len() >= MAX {
            return;
        }
        let rx = self.rx.clone();
        let idle = self.idle.clone();
        let busy = Arc::new(AtomicBool::new(false));
        let b = busy.clone();
        idle.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name(format!("hsmux-{}", self.name))
            .spawn(move || loop {
                let job = rx.lock().recv();
                let Ok(job) = job else {
                    idle.fetch_sub(1, Ordering::SeqCst);
                    return;
                };
                idle.fetch_sub(1, Ordering::SeqCst);
                b.store(true, Ordering::SeqCst);
                job();
                b.store(false, Ordering::SeqCst);
                idle.fetch_add(1, Ordering::SeqCst);
            });
        match spawned {
            Ok(h) => threads.push((h, busy)),
            Err(e) => {
                self.idle.fetch_sub(1, Ordering::SeqCst);
                log::error!("{}: cannot start a worker thread: {e}", self.name);
            }
        }
    }

    /// Runs `f` on a worker without waiting for it (clean-up that nobody waits for).
    pub fn detach(&self, f: impl FnOnce() + Send + 'static) {
        if self.idle.load(Ordering::SeqCst) == 0 {
            self.spawn();
        }
        if let Some(tx) = self.tx.lock().as_ref() {
            let _ = tx.send(Box::new(f));
        }
    }

    /// Runs `f` on a worker; `Err(TimedOut)` when it has not finished within `timeout`.
    pub fn run<R: Send + 'static>(
        &self,
        timeout: Duration,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, TimedOut> {
        if self.idle.load(Ordering::SeqCst) == 0 {
            self.spawn();
        }
        let (rtx, rrx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let r = f();
            let _ = rtx.send(r);
        });
        match self.tx.lock().as_ref() {
            Some(tx) if tx.send(job).is_ok() => {}
            _ => return Err(TimedOut),
        }
        rrx.recv_timeout(timeout).map_err(|_| TimedOut)
    }
}

impl Drop for Workers {
    /// Ends the workers: idle ones are joined; one still inside a vendor call that never
    /// returned is left to the process (joining it would hang C_Finalize) and logged.
    fn drop(&mut self) {
        self.tx.lock().take();
        for (h, busy) in self.threads.lock().drain(..) {
            if busy.load(Ordering::SeqCst) {
                log::warn!(
                    "{}: a vendor call is still running; its thread is left behind",
                    self.name
                );
                continue;
            }
            if let Err(p) = h.join() {
                log::error!("{}: a worker thread panicked: {p:?}", self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_and_a_hung_call_times_out_without_blocking_others() {
        let w = Workers::new("test");
        assert_eq!(w.run(Duration::from_secs(5), || 41 + 1).unwrap(), 42);
        let (release, wait) = mpsc::channel::<()>();
        let hung = w.run(Duration::from_millis(100), move || {
            let _ = wait.recv();
        });
        assert!(hung.is_err());
        // Another call still gets a worker while the first is stuck.
        assert_eq!(w.run(Duration::from_secs(5), || "free").unwrap(), "free");
        release.send(()).unwrap();
    }
}
