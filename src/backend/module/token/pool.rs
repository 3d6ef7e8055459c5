//! The vendor sessions of one module token (session virtualization): consumers' sessions
//! are hsmux's, and a vendor session is lent to one only while an operation or a search
//! runs on it (from its `*Init` to its end), or for the length of one call. At most `size`
//! vendor sessions are open (the one that holds the login counted); a borrower that finds
//! none free and cannot open another waits for one within its deadline.
//!
//! This file is the bookkeeping only (no vendor call): the token opens, checks and closes
//! sessions itself and tells the pool (`token.rs`).

use cryptoki_sys::CK_SESSION_HANDLE;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Default size when neither `max_sessions` nor the token's `ulMaxSessionCount` says.
pub(crate) const DEFAULT_SIZE: usize = 64;

pub(crate) struct Pool {
    state: Mutex<State>,
    freed: Condvar,
    /// Borrowers that had to wait, and those whose deadline passed while waiting.
    pub(crate) waits: AtomicU64,
    pub(crate) timeouts: AtomicU64,
}

struct State {
    /// Most sessions open at once; 0 until known (the first borrow sets it).
    size: usize,
    /// Sessions open or being opened: idle, lent, and the login's.
    open: usize,
    /// Lent out (the login's session included).
    lent: usize,
    /// Free sessions, the most recently returned last (reused first: warm, least likely
    /// stale).
    idle: Vec<Idle>,
    /// The library generation the sessions belong to (`Library::generation`).
    generation: u64,
}

struct Idle {
    vs: CK_SESSION_HANDLE,
    since: Instant,
    /// The vendor lost another session since this one came back: check it before use.
    suspect: bool,
}

/// What a borrower got.
pub(crate) enum Got {
    /// A free session, idle since then, and whether it is suspect (the vendor lost
    /// another session since it came back: the borrower checks it first).
    Idle(CK_SESSION_HANDLE, Instant, bool),
    /// Room for one more: the borrower opens it (and calls `opened` or `gone`).
    Room,
}

impl Pool {
    pub(crate) fn new(size: Option<usize>) -> Pool {
        Pool {
            state: Mutex::new(State {
                size: size.unwrap_or(0),
                open: 0,
                lent: 0,
                idle: Vec::new(),
                generation: 0,
            }),
            freed: Condvar::new(),
            waits: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    /// Is the size still to be learnt from the token?
    pub(crate) fn size_unknown(&self) -> bool {
        self.state.lock().size == 0
    }

    /// Sets the size when it was not configured (from the token's `ulMaxSessionCount`).
    pub(crate) fn set_size(&self, size: usize) {
        let mut s = self.state.lock();
        if s.size == 0 {
            s.size = size.max(1);
        }
    }

    /// `(size, lent)` for the metrics.
    pub(crate) fn figures(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.size, s.lent)
    }

    /// A session of generation `generation` (after a re-initialisation the older ones
    /// are forgotten, not closed: their handles mean nothing now), waiting until
    /// `deadline` for one to come free. `None`: none came free in time.
    pub(crate) fn take(&self, generation: u64, deadline: Instant) -> Option<Got> {
        let mut s = self.state.lock();
        s.renew(generation);
        let mut waited = false;
        loop {
            if let Some(i) = s.idle.pop() {
                s.lent += 1;
                return Some(Got::Idle(i.vs, i.since, i.suspect));
            }
            if s.open < s.size.max(1) {
                s.open += 1;
                s.lent += 1;
                return Some(Got::Room);
            }
            if !waited {
                waited = true;
                self.waits.fetch_add(1, Ordering::Relaxed);
            }
            if self.freed.wait_until(&mut s, deadline).timed_out() {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            s.renew(generation);
        }
    }

    /// A lent session comes back free (a session of an older generation is dropped).
    pub(crate) fn give_back(&self, vs: CK_SESSION_HANDLE, generation: u64) {
        let mut s = self.state.lock();
        s.lent = s.lent.saturating_sub(1);
        if generation == s.generation {
            s.idle.push(Idle {
                vs,
                since: Instant::now(),
                suspect: false,
            });
        } else {
            s.open = s.open.saturating_sub(1);
        }
        drop(s);
        self.freed.notify_one();
    }

    /// A lent session is gone (closed, stale, never opened): its room is free.
    pub(crate) fn gone(&self) {
        let mut s = self.state.lock();
        s.lent = s.lent.saturating_sub(1);
        s.open = s.open.saturating_sub(1);
        drop(s);
        self.freed.notify_one();
    }

    /// The vendor lost a session (it answered `CKR_SESSION_HANDLE_INVALID`): a vendor
    /// that lost one usually lost all it had then (a restart, a dropped connection), so
    /// every idle session is checked before it is lent again, instead of each failing a
    /// call of its own.
    pub(crate) fn suspect_idle(&self) {
        for i in self.state.lock().idle.iter_mut() {
            i.suspect = true;
        }
    }

    /// The vendor refused the session the borrower had room for (`CKR_SESSION_COUNT`):
    /// the token allows fewer than the pool thought (other applications use it too). Its
    /// room is given up and the size becomes what is open now: the new size, or `None`
    /// when nothing is open (then there is nothing to wait for).
    pub(crate) fn shrink(&self) -> Option<usize> {
        let mut s = self.state.lock();
        s.lent = s.lent.saturating_sub(1);
        s.open = s.open.saturating_sub(1);
        if s.open == 0 {
            return None;
        }
        s.size = s.open;
        Some(s.size)
    }
}

impl State {
    /// Forgets the sessions of an older library generation.
    fn renew(&mut self, generation: u64) {
        if generation != self.generation {
            self.open = self.open.saturating_sub(self.idle.len());
            self.idle.clear();
            self.generation = generation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[test]
    fn lends_up_to_its_size_then_waits_and_times_out() {
        let p = Pool::new(Some(2));
        assert!(matches!(p.take(0, soon(10)), Some(Got::Room)));
        assert!(matches!(p.take(0, soon(10)), Some(Got::Room)));
        assert!(p.take(0, soon(20)).is_none());
        assert_eq!(p.waits.load(Ordering::Relaxed), 1);
        assert_eq!(p.timeouts.load(Ordering::Relaxed), 1);
        p.give_back(7, 0);
        assert!(matches!(p.take(0, soon(10)), Some(Got::Idle(7, _, false))));
        assert_eq!(p.figures(), (2, 2));
    }

    #[test]
    fn a_waiter_gets_the_session_returned_by_another_thread() {
        let p = std::sync::Arc::new(Pool::new(Some(1)));
        assert!(matches!(p.take(0, soon(10)), Some(Got::Room)));
        let q = p.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            q.give_back(9, 0);
        });
        assert!(matches!(
            p.take(0, soon(5000)),
            Some(Got::Idle(9, _, false))
        ));
        t.join().unwrap();
        assert_eq!(p.waits.load(Ordering::Relaxed), 1);
        assert_eq!(p.timeouts.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_new_generation_forgets_idle_sessions_and_drops_late_returns() {
        let p = Pool::new(Some(2));
        assert!(matches!(p.take(0, soon(10)), Some(Got::Room)));
        assert!(matches!(p.take(0, soon(10)), Some(Got::Room)));
        p.give_back(1, 0);
        // Re-initialised: session 1 is forgotten, room for a new one.
        assert!(matches!(p.take(1, soon(10)), Some(Got::Room)));
        // The other old one comes back late: dropped, its room freed.
        p.give_back(2, 0);
        assert!(matches!(p.take(1, soon(10)), Some(Got::Room)));
        assert!(p.take(1, soon(10)).is_none());
    }

    #[test]
    fn a_vendor_refusal_shrinks_the_pool() {
        let p = Pool::new(Some(8));
        assert!(matches!(p.take(0, soon(10)), Some(Got::Room)));
        assert!(matches!(p.take(0, soon(10)), Some(Got::Room)));
        // The second open was refused: one fits.
        assert_eq!(p.shrink(), Some(1));
        assert!(p.take(0, soon(10)).is_none());
        p.gone();
        // Nothing open and still refused: nothing to wait for.
        assert!(matches!(p.take(0, soon(10)), Some(Got::Room)));
        assert_eq!(p.shrink(), None);
    }
    #[test]
    fn after_a_lost_session_the_idle_ones_are_suspect_until_lent() {
        let p = Pool::new(Some(3));
        for _ in 0..3 {
            assert!(matches!(p.take(0, soon(10)), Some(Got::Room)));
        }
        p.give_back(1, 0);
        p.give_back(2, 0);
        // Session 3 was lost at the vendor: the two idle ones are checked first.
        p.gone();
        p.suspect_idle();
        assert!(matches!(p.take(0, soon(10)), Some(Got::Idle(2, _, true))));
        p.give_back(2, 0);
        assert!(matches!(p.take(0, soon(10)), Some(Got::Idle(2, _, false))));
        assert!(matches!(p.take(0, soon(10)), Some(Got::Idle(1, _, true))));
    }
}
