//! The bounded queue between the calling threads and the writer thread.
//!
//! A call pushes its event into its thread's lane (threads take the [`LANES`] lanes in
//! turn), under that lane's own lock: calling threads do not share a lock or a cache line
//! of the queue, so on a busy multi-core host a push costs an uncontended lock and a copy,
//! not cache lines moved from another core (with one shared queue, measured: about
//! 0.15 µs per line with two signing threads). The writer merges the lanes by each line's
//! time (its call's start), so the calls of one session, one after the other whichever
//! threads make them, keep their order in the trail.
//!
//! In the steady state a push wakes nobody: while lines keep coming the writer drains the
//! lanes on its own timer ([`Queue::take`] lingers after each batch), so the signing
//! threads pay neither a futex wake nor a switch to the writer per line. A call wakes the
//! writer only when the writer sleeps with nothing queued (the first line after a quiet
//! spell), when its lane passes its high watermark, when the call waits for its line
//! (`on_failure = "refuse"`), or when its lane is full and the call waits for room
//! (`on_full = "block"`). Events are moved into vectors the writer swaps out whole: no
//! allocation per line once the vectors have grown.

use super::writer::Ack;
use super::Event;
use parking_lot::{Condvar, Mutex};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How many lanes the queue has. Each holds up to the configured `queue` lines.
pub const LANES: usize = 8;

thread_local! {
    /// This thread's lane (`usize::MAX`: none yet).
    static LANE: Cell<usize> = const { Cell::new(usize::MAX) };
}
/// The lane the next thread to push takes.
static NEXT_LANE: AtomicUsize = AtomicUsize::new(0);

/// The calling thread's lane.
fn my_lane() -> usize {
    LANE.with(|l| {
        let mut i = l.get();
        if i == usize::MAX {
            i = NEXT_LANE.fetch_add(1, Ordering::Relaxed) % LANES;
            l.set(i);
        }
        i
    })
}

/// How long a caller waiting for room sleeps before it looks at its lane again (the
/// writer also wakes it after each batch).
const ROOM_RECHECK: Duration = Duration::from_millis(50);

/// One queued line, and the caller waiting for it to be written (`on_failure = "refuse"`).
pub struct Queued {
    pub event: Event,
    pub ack: Option<Arc<Ack>>,
}

/// What became of a pushed event.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The lane was full and the caller does not wait (`on_full = "drop"`).
    Full,
    /// The trail is stopping (`C_Finalize`, process exit): the line is not written.
    Closed,
}

/// What the writer found in the queue.
pub struct Taken {
    /// The trail was closed: the batch is the last one.
    pub closed: bool,
}

/// A lane: its lines, on a cache line of its own.
#[repr(align(128))]
struct Lane {
    items: Mutex<Vec<Queued>>,
}

pub struct Queue {
    lanes: Box<[Lane]>,
    /// The writer's sleep (idle, or lingering after a batch) and the callers' wait for
    /// room: both on this lock, taken only to sleep and to wake.
    control: Mutex<()>,
    writer: Condvar,
    room: Condvar,
    /// The writer sleeps with nothing queued: the next push wakes it. Read on every push;
    /// written only when the writer goes to sleep idle and when it is woken.
    idle: AtomicBool,
    /// A caller waits for its line, or a lane passed its high watermark: the writer takes
    /// the batch now rather than at the end of its linger.
    urgent: AtomicBool,
    closed: AtomicBool,
    /// Lines a lane holds.
    cap: usize,
}

impl Queue {
    pub fn new(cap: usize) -> Queue {
        Queue {
            lanes: (0..LANES)
                .map(|_| Lane {
                    items: Mutex::new(Vec::new()),
                })
                .collect(),
            control: Mutex::new(()),
            writer: Condvar::new(),
            room: Condvar::new(),
            idle: AtomicBool::new(false),
            urgent: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            cap: cap.max(1),
        }
    }

    /// The number of lines in a lane past which the writer is woken before its linger ends.
    fn high_watermark(&self) -> usize {
        (self.cap / 2).max(1)
    }

    fn wake_writer(&self) {
        let _c = self.control.lock();
        self.writer.notify_one();
    }

    /// Queues `q` in the calling thread's lane; with that lane full, waits for room if
    /// `block`, else gives up.
    pub fn push(&self, q: Queued, block: bool) -> Pushed {
        let wants_ack = q.ack.is_some();
        let lane = &self.lanes[my_lane()];
        let mut items = lane.items.lock();
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Pushed::Closed;
            }
            if items.len() < self.cap {
                break;
            }
            if !block {
                return Pushed::Full;
            }
            drop(items);
            let mut c = self.control.lock();
            self.urgent.store(true, Ordering::SeqCst);
            self.writer.notify_one();
            // The writer drains and says so under `control`: looked at again under it, a
            // batch taken since the look above is not waited for.
            let full = lane.items.lock().len() >= self.cap;
            if full && !self.closed.load(Ordering::SeqCst) {
                self.room.wait_for(&mut c, ROOM_RECHECK);
            }
            drop(c);
            items = lane.items.lock();
        }
        items.push(q);
        let len = items.len();
        drop(items);
        // The writer is woken when it sleeps idle, or the first time the batch turns urgent.
        if (wants_ack || len >= self.high_watermark()) && !self.urgent.swap(true, Ordering::SeqCst)
        {
            self.idle.store(false, Ordering::SeqCst);
            self.wake_writer();
            return Pushed::Queued;
        }
        // SeqCst, paired with the writer's store of `idle` before it looks at the lanes
        // again: either it sees this line, or this push sees it idle.
        if self.idle.load(Ordering::SeqCst) && self.idle.swap(false, Ordering::SeqCst) {
            self.wake_writer();
        }
        Pushed::Queued
    }

    /// No more lines are taken; the writer takes what is queued and ends.
    pub fn close(&self) {
        // Under each lane's lock: a push that got in before this is in the last batch.
        for lane in self.lanes.iter() {
            let _items = lane.items.lock();
            self.closed.store(true, Ordering::SeqCst);
        }
        let _c = self.control.lock();
        self.urgent.store(true, Ordering::SeqCst);
        self.writer.notify_one();
        self.room.notify_all();
    }

    fn all_empty(&self) -> bool {
        self.lanes.iter().all(|l| l.items.lock().is_empty())
    }

    /// The writer's wait for its next batch, swapped into `lanes` (the writer's own
    /// vectors, one per lane, which must be empty; [`next_in_time`] gives their order):
    /// with nothing queued it sleeps until a push wakes it or `idle` passes (then the batch
    /// is empty); once lines are queued it lets more gather for `linger` unless a caller
    /// waits, a lane passed its high watermark, or the trail is closed.
    pub fn take(&self, lanes: &mut [Vec<Queued>], idle: Duration, linger: Duration) -> Taken {
        let mut c = self.control.lock();
        if !self.closed.load(Ordering::SeqCst) && self.all_empty() {
            self.idle.store(true, Ordering::SeqCst);
            // Looked at again after saying so: a push before the store is seen here, one
            // after it sees `idle` and wakes us.
            if self.all_empty() {
                self.writer.wait_for(&mut c, idle);
            }
            self.idle.store(false, Ordering::SeqCst);
        }
        let lingering = !linger.is_zero()
            && !self.urgent.load(Ordering::SeqCst)
            && !self.closed.load(Ordering::SeqCst);
        if lingering && !self.all_empty() {
            self.writer.wait_for(&mut c, linger);
        }
        self.urgent.store(false, Ordering::SeqCst);
        let closed = self.closed.load(Ordering::SeqCst);
        drop(c);
        for (lane, out) in self.lanes.iter().zip(lanes.iter_mut()) {
            std::mem::swap(&mut *lane.items.lock(), out);
        }
        let _c = self.control.lock();
        self.room.notify_all();
        Taken { closed }
    }
}

/// The writer's vectors for [`Queue::take`]: one per lane.
pub fn taken_lanes() -> Vec<Vec<Queued>> {
    (0..LANES).map(|_| Vec::new()).collect()
}

/// The next line of a batch taken into `lanes`, the earliest first (each lane is in the
/// order its calls ended, which is nearly theirs), from `cursor` (one per lane, from 0).
/// The lines stay where they are: an event is not moved again on its way to its line.
pub fn next_in_time<'a>(
    lanes: &'a mut [Vec<Queued>],
    cursor: &mut [usize],
) -> Option<&'a mut Queued> {
    let mut best: Option<(std::time::SystemTime, usize)> = None;
    for (i, lane) in lanes.iter().enumerate() {
        if let Some(q) = lane.get(cursor[i]) {
            if best.is_none_or(|(t, _)| q.event.time < t) {
                best = Some((q.event.time, i));
            }
        }
    }
    let (_, i) = best?;
    cursor[i] += 1;
    lanes[i].get_mut(cursor[i] - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> Queued {
        Queued {
            event: Event::new("C_Sign", None),
            ack: None,
        }
    }

    fn total(lanes: &[Vec<Queued>]) -> usize {
        lanes.iter().map(Vec::len).sum()
    }

    #[test]
    fn a_full_queue_drops_without_blocking_and_takes_again_once_drained() {
        let q = Queue::new(2);
        assert_eq!(q.push(item(), false), Pushed::Queued);
        assert_eq!(q.push(item(), false), Pushed::Queued);
        assert_eq!(q.push(item(), false), Pushed::Full);
        let mut lanes = taken_lanes();
        let t = q.take(&mut lanes, Duration::ZERO, Duration::ZERO);
        assert_eq!((total(&lanes), t.closed), (2, false));
        assert_eq!(q.push(item(), false), Pushed::Queued);
    }

    #[test]
    fn a_blocked_caller_goes_on_once_the_writer_takes_the_batch() {
        let q = Arc::new(Queue::new(1));
        let q2 = q.clone();
        // One thread, one lane: its second line waits for room.
        let caller = std::thread::spawn(move || [q2.push(item(), true), q2.push(item(), true)]);
        let mut got = 0;
        while got < 2 {
            let mut lanes = taken_lanes();
            q.take(
                &mut lanes,
                Duration::from_millis(50),
                Duration::from_secs(60),
            );
            got += total(&lanes);
        }
        assert_eq!(caller.join().unwrap(), [Pushed::Queued, Pushed::Queued]);
    }

    #[test]
    fn after_close_the_last_batch_is_taken_and_pushes_are_refused() {
        let q = Queue::new(8);
        assert_eq!(q.push(item(), true), Pushed::Queued);
        q.close();
        assert_eq!(q.push(item(), true), Pushed::Closed);
        let mut lanes = taken_lanes();
        // Closed: no linger, however long it is.
        let t = q.take(&mut lanes, Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!((total(&lanes), t.closed), (1, true));
    }

    #[test]
    fn the_lines_of_several_threads_come_out_in_the_order_of_their_times() {
        let q = Arc::new(Queue::new(64));
        let base = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // Thread k pushes the times k, k + 4, k + 8, ...: four lanes, interleaved times.
        let threads: Vec<_> = (0..4u64)
            .map(|k| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..8 {
                        let mut it = item();
                        it.event.time = base + Duration::from_micros(k + 4 * i);
                        assert_eq!(q.push(it, true), Pushed::Queued);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let mut lanes = taken_lanes();
        q.take(&mut lanes, Duration::ZERO, Duration::ZERO);
        assert!(lanes.iter().filter(|l| !l.is_empty()).count() > 1);
        let mut cursor = [0; LANES];
        let mut times = Vec::new();
        while let Some(q) = next_in_time(&mut lanes, &mut cursor) {
            times.push(q.event.time.duration_since(base).unwrap().as_micros());
        }
        assert_eq!(times, (0..32).collect::<Vec<u128>>());
    }

    #[test]
    fn a_push_wakes_an_idle_writer() {
        let q = Arc::new(Queue::new(64));
        let q2 = q.clone();
        let pusher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            q2.push(item(), false)
        });
        let mut lanes = taken_lanes();
        let started = std::time::Instant::now();
        // Idle for up to a minute, no linger: back as soon as the line is pushed.
        q.take(&mut lanes, Duration::from_secs(60), Duration::ZERO);
        assert_eq!(pusher.join().unwrap(), Pushed::Queued);
        assert_eq!(total(&lanes), 1);
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
