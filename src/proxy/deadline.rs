//! Vendor calls with a deadline, cheaply. A vendor call cannot be interrupted, so it runs
//! on another thread while the consumer's thread waits at most the slot's `timeout_ms`.
//!
//! A channel and a futex per call would cost several microseconds; instead each consumer
//! thread gets its own worker thread (its "lane") and the two hand a call over through one
//! cache line (the state word and the job pointer), each spinning briefly before it parks:
//! two cache-line transfers per call when both threads are on a core. A call that overruns
//! is abandoned with its lane: the worker stays inside the vendor until it returns, then
//! frees the job, runs the abandonment hook (the slot comes back up) and exits; the consumer
//! thread gets a new lane on its next call. Everything the vendor writes into is owned by
//! the job (`stage.rs`), so a late return writes into nothing of the consumer's.
//!
//! The job is one heap cell that exactly one side frees: the consumer when the call
//! finished in time, the worker when it was abandoned (whichever side's atomic exchange
//! saw the other's state decides).

use std::cell::{Cell as StdCell, RefCell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

const IDLE: u32 = 0;
const POSTED: u32 = 1;
const RUNNING: u32 = 2;
const DONE: u32 = 3;
const ABANDONED: u32 = 4;
const CLOSED: u32 = 5;

/// Spin rounds before parking. The consumer's covers a cheap vendor call; the worker's the
/// gap between two calls of a busy consumer. A consumer whose job has not been picked up
/// yet yields instead of spinning (its worker may be waiting for a core: this one), and a
/// waiting worker yields every `YIELD_EVERY` rounds for the same reason.
const CONSUMER_SPINS: u32 = 4_000;
const WORKER_SPINS: u32 = 4_000;
const YIELD_EVERY: u32 = 128;
/// Spins before a consumer whose job is still unclaimed starts yielding.
const CLAIM_SPINS: u32 = 64;

/// A job: the call and its result.
trait Task {
    fn run(&mut self);
}

struct Job<F, R> {
    f: Option<F>,
    r: Option<R>,
}

impl<F: FnOnce() -> R, R> Task for Job<F, R> {
    fn run(&mut self) {
        if let Some(f) = self.f.take() {
            self.r = Some(f());
        }
    }
}

type Hook = Box<dyn FnOnce() + Send>;

/// What both threads touch on every call, in one cache line.
#[repr(C, align(64))]
struct Hot {
    state: AtomicU32,
    worker_sleeping: AtomicBool,
    consumer_sleeping: AtomicBool,
    /// The posted job (a `Box<dyn Task + Send>` turned raw), valid from POSTED until the
    /// side that owns it frees it.
    job: UnsafeCell<Option<*mut (dyn Task + Send)>>,
}

struct Lane {
    hot: Hot,
    worker: std::sync::OnceLock<Thread>,
    consumer: Thread,
    /// Run by the worker when its abandoned call finally returns.
    late: parking_lot::Mutex<Option<Hook>>,
    /// The fork epoch the worker thread lives in (a forked child has no such thread).
    epoch: u64,
}

// SAFETY: `job` is written by the consumer before POSTED (Release) and read by the worker
// after it saw POSTED (Acquire); the job it points to is used by one thread at a time (see
// the module header), and every job is Send.
unsafe impl Sync for Lane {}
unsafe impl Send for Lane {}

/// The consumer thread's lane; dropping it (thread exit) ends an idle worker.
struct Mine(Arc<Lane>);

impl Drop for Mine {
    fn drop(&mut self) {
        let st = &self.0.hot.state;
        let closed = [IDLE, DONE].iter().any(|from| {
            st.compare_exchange(*from, CLOSED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        if closed {
            if let Some(w) = self.0.worker.get() {
                w.unpark();
            }
        }
    }
}

thread_local! {
    static LANE: RefCell<Option<Mine>> = const { RefCell::new(None) };
    /// The lane's address for the fast path (no RefCell borrow, no refcount traffic).
    static FAST: StdCell<(*const Lane, u64)> = const { StdCell::new((std::ptr::null(), u64::MAX)) };
}

fn new_lane(epoch: u64) -> Option<Arc<Lane>> {
    let lane = Arc::new(Lane {
        hot: Hot {
            state: AtomicU32::new(IDLE),
            worker_sleeping: AtomicBool::new(false),
            consumer_sleeping: AtomicBool::new(false),
            job: UnsafeCell::new(None),
        },
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
    let hot = &lane.hot;
    loop {
        let mut spins = 0u32;
        loop {
            match hot.state.load(Ordering::Acquire) {
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
            hot.worker_sleeping.store(true, Ordering::SeqCst);
            if !matches!(hot.state.load(Ordering::SeqCst), POSTED | CLOSED) {
                std::thread::park();
            }
            hot.worker_sleeping.store(false, Ordering::SeqCst);
            spins = 0;
        }
        // SAFETY: POSTED seen with Acquire: the consumer's write of `job` is visible.
        let job = unsafe { *hot.job.get() };
        let claimed = hot
            .state
            .compare_exchange(POSTED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        let prev = if claimed {
            if let Some(j) = job {
                // SAFETY: the job is ours to run until DONE.
                unsafe { (*j).run() };
            }
            hot.state.swap(DONE, Ordering::SeqCst)
        } else {
            ABANDONED // abandoned before it started
        };
        if prev == ABANDONED {
            // The consumer has long returned: the job (and its staged memory) is ours.
            if let Some(j) = job {
                // SAFETY: made by Box::into_raw in `run`, freed only here on this path.
                drop(unsafe { Box::from_raw(j) });
            }
            if let Some(hook) = lane.late.lock().take() {
                hook();
            }
            return;
        }
        if hot.consumer_sleeping.load(Ordering::SeqCst) {
            lane.consumer.unpark();
        }
    }
}

/// The calling thread's lane (made on first use, and again after an abandoned call or a
/// fork).
fn lane() -> Option<*const Lane> {
    let epoch = crate::core::instance::fork_epoch();
    let (p, e) = FAST.with(|f| f.get());
    if !p.is_null() && e == epoch {
        return Some(p);
    }
    LANE.with(|l| {
        let mut l = l.borrow_mut();
        if let Some(old) = l.take() {
            if old.0.epoch != epoch {
                // The parent's lane (its worker is not in this process): never touched.
                std::mem::forget(old);
            } else {
                drop(old);
            }
        }
        let lane = new_lane(epoch)?;
        let p = Arc::as_ptr(&lane);
        *l = Some(Mine(lane));
        FAST.with(|f| f.set((p, epoch)));
        Some(p)
    })
}

/// Runs `f` on the calling thread's lane and waits at most `timeout`. `None` when it did
/// not finish in time: `f` keeps running, and `on_late()` gives the hook its worker runs
/// once `f` has returned.
pub fn run<R, F>(timeout: Duration, f: F, on_late: impl FnOnce() -> Hook) -> Option<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let Some(lane) = lane() else {
        // No thread for it: the call runs here, without a deadline, rather than not at all.
        return Some(f());
    };
    // SAFETY: the thread-local `LANE` keeps the lane alive while this thread uses it.
    let lane = unsafe { &*lane };
    let hot = &lane.hot;
    let job: *mut Job<F, R> = Box::into_raw(Box::new(Job {
        f: Some(f),
        r: None,
    }));
    // SAFETY: the lane is IDLE or DONE: the worker does not read `job` now.
    unsafe { *hot.job.get() = Some(job as *mut (dyn Task + Send)) };
    hot.state.store(POSTED, Ordering::SeqCst);
    if hot.worker_sleeping.load(Ordering::SeqCst) {
        if let Some(w) = lane.worker.get() {
            w.unpark();
        }
    }
    if wait(lane, timeout, on_late) {
        // SAFETY: DONE seen (Acquire): the worker is done with the job, which is ours.
        let mut job = unsafe { Box::from_raw(job) };
        return job.r.take();
    }
    // The worker owns the job now, and this lane is stuck in the vendor: the next call
    // gets a new one (the worker ends itself once the vendor returns).
    FAST.with(|f| f.set((std::ptr::null(), u64::MAX)));
    LANE.with(|l| {
        if let Some(m) = l.borrow_mut().take() {
            std::mem::forget(m);
        }
    });
    None
}

/// Waits for DONE; false when the deadline passed and the call was abandoned.
fn wait(lane: &Lane, timeout: Duration, on_late: impl FnOnce() -> Hook) -> bool {
    let hot = &lane.hot;
    for i in 0..CONSUMER_SPINS {
        match hot.state.load(Ordering::Acquire) {
            DONE => return true,
            POSTED if i >= CLAIM_SPINS && i.is_multiple_of(8) => std::thread::yield_now(),
            _ if i.is_multiple_of(YIELD_EVERY) && i > 0 => std::thread::yield_now(),
            _ => std::hint::spin_loop(),
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        hot.consumer_sleeping.store(true, Ordering::SeqCst);
        if hot.state.load(Ordering::SeqCst) == DONE {
            hot.consumer_sleeping.store(false, Ordering::SeqCst);
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            hot.consumer_sleeping.store(false, Ordering::SeqCst);
            *lane.late.lock() = Some(on_late());
            loop {
                let s = hot.state.load(Ordering::SeqCst);
                if s == DONE {
                    // It finished just now after all.
                    lane.late.lock().take();
                    return true;
                }
                if hot
                    .state
                    .compare_exchange(s, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    return false;
                }
            }
        }
        std::thread::park_timeout(deadline - now);
        hot.consumer_sleeping.store(false, Ordering::SeqCst);
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
