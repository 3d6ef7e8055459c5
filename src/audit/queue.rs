//! The bounded queue between the calling threads and the writer thread.
//!
//! A call pushes its event under a short lock and, in the steady state, wakes nobody: while
//! lines keep coming the writer drains the queue on its own timer ([`Queue::take`] lingers
//! after each batch), so the signing threads pay neither a futex wake nor a switch to the
//! writer per line. A call wakes the writer only when the writer sleeps with nothing
//! queued (the first line after a quiet spell), when the queue passes its high watermark,
//! when the call waits for its line (`on_failure = "refuse"`), or when the queue is full
//! and the call waits for room (`on_full = "block"`). Events are moved into a vector the
//! writer swaps out whole: no allocation per line once the vectors have grown.

use super::writer::Ack;
use super::Event;
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::Duration;

/// One queued line, and the caller waiting for it to be written (`on_failure = "refuse"`).
pub struct Queued {
    pub event: Event,
    pub ack: Option<Arc<Ack>>,
}

/// What became of a pushed event.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue was full and the caller does not wait (`on_full = "drop"`).
    Full,
    /// The trail is stopping (`C_Finalize`, process exit): the line is not written.
    Closed,
}

/// What the writer found in the queue.
pub struct Taken {
    /// The trail was closed: the batch is the last one.
    pub closed: bool,
}

pub struct Queue {
    state: Mutex<State>,
    /// The writer waits here: idle, or lingering after a batch.
    writer: Condvar,
    /// Callers wait here for room (`on_full = "block"`).
    room: Condvar,
    cap: usize,
}

struct State {
    items: Vec<Queued>,
    /// The writer sleeps with nothing queued: the next push wakes it.
    idle: bool,
    /// A caller waits for its line, or the queue passed its high watermark: the writer
    /// takes the batch now rather than at the end of its linger.
    urgent: bool,
    closed: bool,
}

impl Queue {
    pub fn new(cap: usize) -> Queue {
        let cap = cap.max(1);
        Queue {
            state: Mutex::new(State {
                items: Vec::new(),
                idle: false,
                urgent: false,
                closed: false,
            }),
            writer: Condvar::new(),
            room: Condvar::new(),
            cap,
        }
    }

    /// The number of lines past which the writer is woken before its linger ends.
    fn high_watermark(&self) -> usize {
        (self.cap / 2).max(1)
    }

    /// Queues `q`; with the queue full, waits for room if `block`, else gives up.
    pub fn push(&self, q: Queued, block: bool) -> Pushed {
        let urgent = q.ack.is_some();
        let mut s = self.state.lock();
        while s.items.len() >= self.cap && !s.closed {
            if !block {
                return Pushed::Full;
            }
            s.urgent = true;
            self.writer.notify_one();
            self.room.wait(&mut s);
        }
        if s.closed {
            return Pushed::Closed;
        }
        s.items.push(q);
        // The writer is woken when it sleeps idle, or the first time the batch turns urgent.
        let now_urgent = urgent || s.items.len() >= self.high_watermark();
        let wake = s.idle || (now_urgent && !s.urgent);
        s.urgent |= now_urgent;
        if wake {
            s.idle = false;
        }
        drop(s);
        if wake {
            self.writer.notify_one();
        }
        Pushed::Queued
    }

    /// No more lines are taken; the writer takes what is queued and ends.
    pub fn close(&self) {
        let mut s = self.state.lock();
        s.closed = true;
        s.urgent = true;
        drop(s);
        self.writer.notify_one();
        self.room.notify_all();
    }

    /// The writer's wait for its next batch, swapped into `batch` (which must be empty):
    /// with nothing queued it sleeps until a push wakes it or `idle` passes (then the
    /// batch is empty); once lines are queued it lets more gather for `linger` unless a
    /// caller waits, the high watermark is passed, or the trail is closed.
    pub fn take(&self, batch: &mut Vec<Queued>, idle: Duration, linger: Duration) -> Taken {
        let mut s = self.state.lock();
        if s.items.is_empty() && !s.closed {
            s.idle = true;
            self.writer.wait_for(&mut s, idle);
            s.idle = false;
        }
        if !s.items.is_empty() && !s.urgent && !linger.is_zero() {
            self.writer.wait_for(&mut s, linger);
        }
        std::mem::swap(&mut s.items, batch);
        s.urgent = false;
        let closed = s.closed;
        drop(s);
        self.room.notify_all();
        Taken { closed }
    }
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

    #[test]
    fn a_full_queue_drops_without_blocking_and_takes_again_once_drained() {
        let q = Queue::new(2);
        assert_eq!(q.push(item(), false), Pushed::Queued);
        assert_eq!(q.push(item(), false), Pushed::Queued);
        assert_eq!(q.push(item(), false), Pushed::Full);
        let mut batch = Vec::new();
        let t = q.take(&mut batch, Duration::ZERO, Duration::ZERO);
        assert_eq!((batch.len(), t.closed), (2, false));
        assert_eq!(q.push(item(), false), Pushed::Queued);
    }

    #[test]
    fn a_blocked_caller_goes_on_once_the_writer_takes_the_batch() {
        let q = Arc::new(Queue::new(1));
        assert_eq!(q.push(item(), true), Pushed::Queued);
        let q2 = q.clone();
        let caller = std::thread::spawn(move || q2.push(item(), true));
        let mut got = 0;
        while got < 2 {
            let mut batch = Vec::new();
            q.take(
                &mut batch,
                Duration::from_millis(50),
                Duration::from_secs(60),
            );
            got += batch.len();
        }
        assert_eq!(caller.join().unwrap(), Pushed::Queued);
    }

    #[test]
    fn after_close_the_last_batch_is_taken_and_pushes_are_refused() {
        let q = Queue::new(8);
        assert_eq!(q.push(item(), true), Pushed::Queued);
        q.close();
        assert_eq!(q.push(item(), true), Pushed::Closed);
        let mut batch = Vec::new();
        // Closed: no linger, however long it is.
        let t = q.take(&mut batch, Duration::from_secs(60), Duration::from_secs(60));
        assert_eq!((batch.len(), t.closed), (1, true));
    }
}
