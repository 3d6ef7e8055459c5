//! Vendor calls with a deadline, cheaply. A vendor call cannot be interrupted, so it runs
//! on another thread while the consumer's thread waits at most the slot's `timeout_ms`.
//!
//! A channel and a futex per call would cost several microseconds; instead each consumer
//! thread gets its own worker thread (its "lane") and the two hand a call over through one
//! atomic state word, each spinning briefly before it parks. A call that overruns is
//! abandoned with its lane: the worker stays inside the vendor until it returns, then runs
//! the abandonment hook (the slot comes back up) and exits; the consumer thread gets a new
//! lane on its next call. Everything the vendor writes into is owned by the job
//! (`stage.rs`), so a late return writes into nothing of the consumer's.

use std::cell::{RefCell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

const IDLE: u32 = 0;
const POSTED: u32 = 1;
const DONE: u32 = 2;
const ABANDONED: u32 = 3;
const CLOSED: u32 = 4;

/// Spin rounds before parking: the consumer's covers a cheap vendor call (well under a
/// millisecond costs nothing but a core that would otherwise idle), the worker's the gap
/// between two calls of a busy consumer. Every `YIELD_EVERY` rounds the spinner yields, so
/// that on a machine with fewer cores than spinning threads the thread it waits for runs.
const CONSUMER_SPINS: u32 = 20_000;
const WORKER_SPINS: u32 = 40_000;
const YIELD_EVERY: u32 = 256;

/// A job: the call and its result, shared by the consumer and the worker.
trait Task: Send + Sync {
    fn run(&self);
}

struct Cell<F, R> {
    f: UnsafeCell<Option<F>>,
    r: UnsafeCell<Option<R>>,
}

// SAFETY: `f` is touched by the worker only (between POSTED and DONE), `r` by the worker
// before DONE and by the consumer after it has seen DONE (Acquire); F and R are Send.
unsafe impl<F: Send, R: Send> Sync for Cell<F, R> {}

impl<F: FnOnce() -> R + Send, R: Send> Task for Cell<F, R> {
    fn run(&self) {
        // SAFETY: see the Sync impl: only the worker is here.
        unsafe {
            if let Some(f) = (*self.f.get()).take() {
                *self.r.get() = Some(f());
            }
        }
    }
}

type Hook = Box<dyn FnOnce() + Send>;

struct Lane {
    state: AtomicU32,
    job: UnsafeCell<Option<Arc<dyn Task>>>,
    worker_sleeping: AtomicBool,
    consumer_sleeping: AtomicBool,
    worker: std::sync::OnceLock<Thread>,
    consumer: Thread,
    /// Run by the worker when its abandoned call finally returns.
    late: parking_lot::Mutex<Option<Hook>>,
    /// The fork epoch the worker thread lives in (a forked child has no such thread).
    epoch: u64,
}

// SAFETY: `job` is written by the consumer before POSTED (Release) and taken by the worker
// after it saw POSTED (Acquire); nobody else touches it.
unsafe impl Sync for Lane {}
unsafe impl Send for Lane {}

/// The consumer thread's lane; dropping it (thread exit) ends an idle worker.
struct Mine(Arc<Lane>);

impl Drop for Mine {
    fn drop(&mut self) {
        if self
            .0
            .state
            .compare_exchange(DONE, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            || self
                .0
                .state
                .compare_exchange(IDLE, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            if let Some(w) = self.0.worker.get() {
                w.unpark();
            }
        }
    }
}

thread_local! {
    static LANE: RefCell<Option<Mine>> = const { RefCell::new(None) };
}

fn new_lane(epoch: u64) -> Option<Arc<Lane>> {
    let lane = Arc::new(Lane {
        state: AtomicU32::new(IDLE),
        job: UnsafeCell::new(None),
        worker_sleeping: AtomicBool::new(false),
        consumer_sleeping: AtomicBool::new(false),
        worker: std::sync::OnceLock::new(),
        consumer: std::thread::current(),
        late: parking_lot::Mutex::new(None),
        epoch,
    });
    let l = lane.clone();
    let spawned = std::thread::Builder::new()
        .name("hsmux-vendor".into())
        .spawn(move || work(l));
    match spawned {
        Ok(h) => {
            let _ = lane.worker.set(h.thread().clone());
            Some(lane)
        }
        Err(e) => {
            log::error!("cannot start a vendor-call thread: {e}");
            None
        }
    }
}

fn work(lane: Arc<Lane>) {
    loop {
        let mut spins = 0u32;
        loop {
            match lane.state.load(Ordering::Acquire) {
                POSTED => break,
                CLOSED => return,
                _ => {}
            }
            spins += 1;
            if spins < WORKER_SPINS {
                if spins.is_multiple_of(YIELD_EVERY) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            lane.worker_sleeping.store(true, Ordering::SeqCst);
            if !matches!(lane.state.load(Ordering::SeqCst), POSTED | CLOSED) {
                std::thread::park();
            }
            lane.worker_sleeping.store(false, Ordering::SeqCst);
            spins = 0;
        }
        // SAFETY: POSTED seen with Acquire: the consumer's write of `job` is visible and
        // it does not touch `job` again until DONE.
        let job = unsafe { (*lane.job.get()).take() };
        if let Some(job) = &job {
            job.run();
        }
        let prev = lane.state.swap(DONE, Ordering::SeqCst);
        if prev == ABANDONED {
            // The consumer has long returned; the job's staged memory goes with `job`.
            drop(job);
            if let Some(hook) = lane.late.lock().take() {
                hook();
            }
            return;
        }
        drop(job);
        if lane.consumer_sleeping.load(Ordering::SeqCst) {
            lane.consumer.unpark();
        }
    }
}

/// Runs `f` on the calling thread's lane and waits at most `timeout`. `None` when it did
/// not finish in time: `f` keeps running, and `on_late()` gives the hook its worker runs
/// once `f` has returned.
pub fn run<R, F>(timeout: Duration, f: F, on_late: impl FnOnce() -> Hook) -> Option<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let epoch = crate::core::instance::fork_epoch();
    let lane = LANE.with(|l| {
        let mut l = l.borrow_mut();
        match l.as_ref() {
            Some(m) if m.0.epoch == epoch => Some(m.0.clone()),
            _ => {
                if let Some(old) = l.take() {
                    // The parent's lane (its worker is not in this process): never touched.
                    std::mem::forget(old);
                }
                let lane = new_lane(epoch)?;
                *l = Some(Mine(lane.clone()));
                Some(lane)
            }
        }
    });
    let Some(lane) = lane else {
        // No thread for it: the call runs here, without a deadline, rather than not at all.
        return Some(f());
    };
    let cell: Arc<Cell<F, R>> = Arc::new(Cell {
        f: UnsafeCell::new(Some(f)),
        r: UnsafeCell::new(None),
    });
    // SAFETY: the lane is IDLE or DONE: the worker does not touch `job` now.
    unsafe { *lane.job.get() = Some(cell.clone() as Arc<dyn Task>) };
    lane.state.store(POSTED, Ordering::SeqCst);
    if lane.worker_sleeping.load(Ordering::SeqCst) {
        if let Some(w) = lane.worker.get() {
            w.unpark();
        }
    }
    let done = wait(&lane, timeout, on_late);
    if !done {
        LANE.with(|l| {
            // This lane's worker is stuck in the vendor: the next call gets a new one.
            if let Some(m) = l.borrow_mut().take() {
                std::mem::forget(m);
            }
        });
        return None;
    }
    // SAFETY: DONE seen (Acquire): the worker has written `r` and no longer touches it.
    unsafe { (*cell.r.get()).take() }
}

/// Waits for DONE; false when the deadline passed and the call was abandoned.
fn wait(lane: &Lane, timeout: Duration, on_late: impl FnOnce() -> Hook) -> bool {
    for i in 0..CONSUMER_SPINS {
        if lane.state.load(Ordering::Acquire) == DONE {
            return true;
        }
        if i % YIELD_EVERY == YIELD_EVERY - 1 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        lane.consumer_sleeping.store(true, Ordering::SeqCst);
        if lane.state.load(Ordering::SeqCst) == DONE {
            lane.consumer_sleeping.store(false, Ordering::SeqCst);
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            lane.consumer_sleeping.store(false, Ordering::SeqCst);
            *lane.late.lock() = Some(on_late());
            match lane
                .state
                .compare_exchange(POSTED, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return false,
                Err(_) => {
                    // It finished just now after all.
                    lane.late.lock().take();
                    return true;
                }
            }
        }
        std::thread::park_timeout(deadline - now);
        lane.consumer_sleeping.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_hook() -> Hook {
        Box::new(|| {})
    }

    #[test]
    fn results_come_back_and_a_hung_call_is_abandoned_without_blocking_the_next() {
        assert_eq!(run(Duration::from_secs(5), || 41 + 1, no_hook), Some(42));
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (late_tx, late_rx) = std::sync::mpsc::channel::<()>();
        let t = Instant::now();
        let hung = run(
            Duration::from_millis(100),
            move || {
                let _ = wait.recv();
                7
            },
            move || {
                Box::new(move || {
                    let _ = late_tx.send(());
                })
            },
        );
        assert_eq!(hung, None);
        assert!(t.elapsed() < Duration::from_secs(3));
        // The next call on this thread gets a new lane.
        assert_eq!(
            run(Duration::from_secs(5), || "free", no_hook),
            Some("free")
        );
        release.send(()).unwrap();
        late_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the hook runs once the abandoned call returns");
    }

    #[test]
    fn many_calls_from_several_threads() {
        let threads: Vec<_> = (0..3)
            .map(|k| {
                std::thread::spawn(move || {
                    for i in 0..2000u64 {
                        assert_eq!(
                            run(Duration::from_secs(10), move || i * k, no_hook),
                            Some(i * k)
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
