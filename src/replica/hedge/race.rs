//! The race of a hedged call: the first job runs on its replica's pool; when it has not
//! replied within the delay the second starts on another replica's pool, and the first
//! answer wins. The job that loses ends on its own thread: the consumer never waits for it,
//! and a replica failure it meets later marks its replica down there.

use super::super::Group;
use crate::core::error::{err, Error, Result};
use crate::core::token::device_class;
use cryptoki_sys::*;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A job's state bits: left behind by a hedge (first job only: counted in `lagging`),
/// given up by the consumer (the job then ends its operation itself), returned.
const LEFT_BEHIND: u8 = 1;
const GIVEN_UP: u8 = 2;
const RETURNED: u8 = 4;

/// What a pool job yields.
pub enum Reply<T, R> {
    /// It ran: the operation and its result (an error that is not device-class is the
    /// request's own, an answer like a success).
    Ran(T, Result<R>),
    /// It could not run there (the key is not on that replica, an init refused there);
    /// `Some`: a failure of the replica itself.
    NotStarted(Option<Error>),
}

impl<T, R> Reply<T, R> {
    /// The replica's failure in it (a device-class error), if any.
    fn failure(&self) -> Option<Error> {
        match self {
            Reply::Ran(_, Err(e)) if device_class(e.rv()) => Some(e.clone()),
            Reply::NotStarted(Some(e)) => Some(e.clone()),
            _ => None,
        }
    }

    fn is_answer(&self) -> bool {
        matches!(self, Reply::Ran(..)) && self.failure().is_none()
    }
}

/// How the race ended.
pub enum Raced<T, R> {
    /// An answer from replica `from`, with the operation it ran on.
    Answer {
        from: usize,
        op: T,
        result: Result<R>,
    },
    /// No answer: the first job's replica failure, if it had one (the second's replica has
    /// been marked down).
    Failed(Option<Error>),
}

pub type Job<T, R> = Box<dyn FnOnce(&Group) -> Reply<T, R> + Send>;

/// A job on a replica's pool, as the consumer follows it.
struct Flight {
    replica: usize,
    state: Arc<AtomicU8>,
    /// Its reply has been received.
    replied: bool,
    /// The replica failure it replied with.
    failure: Option<Error>,
}

type Replies<T, R> = mpsc::Receiver<(usize, Reply<T, R>)>;
type ReplyTo<T, R> = mpsc::Sender<(usize, Reply<T, R>)>;

/// One hedged step of `what`: `first` on replica `at`, and after `delay` without a reply
/// `second` on replica `to`.
pub struct Race<'a> {
    pub g: &'a Arc<Group>,
    pub what: &'static str,
    /// The consumer's session the jobs use on their replicas.
    pub session: CK_SESSION_HANDLE,
    pub at: usize,
    pub to: usize,
    pub delay: Duration,
}

impl Race<'_> {
    pub fn run<T: Send + 'static, R: Send + 'static>(
        &self,
        first: Job<T, R>,
        second: Job<T, R>,
    ) -> Raced<T, R> {
        let (g, at, to) = (self.g, self.at, self.to);
        let (tx, rx) = mpsc::channel();
        let mut primary = self.submit(at, &tx, first);
        match rx.recv_timeout(self.delay) {
            Ok((_, reply)) => {
                return match reply {
                    Reply::Ran(op, result) if reply_ok(&result) => Raced::Answer {
                        from: at,
                        op,
                        result,
                    },
                    r => Raced::Failed(r.failure()),
                }
            }
            // The pool dropped the job: it is shutting down (C_Finalize).
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Raced::Failed(Some(err(CKR_DEVICE_ERROR)))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        // Late: left behind (unless it returned just now), and hedged.
        let lagging = &g.hedging.replicas[at].lagging;
        lagging.fetch_add(1, Ordering::SeqCst);
        let left = primary
            .state
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                (s & RETURNED == 0).then_some(s | LEFT_BEHIND)
            });
        if left.is_err() {
            lagging.fetch_sub(1, Ordering::SeqCst);
        }
        let mut hedge = self.submit(to, &tx, second);
        drop(tx);
        g.hedge_sent(to);
        log::debug!(
            "slot {}: {}: replica {} silent for {} ms: hedged on {}",
            g.slot,
            self.what,
            g.replicas[at].name,
            self.delay.as_millis(),
            g.replicas[to].name
        );
        while let Ok((from, reply)) = rx.recv() {
            let (this, other) = if from == at {
                (&mut primary, &mut hedge)
            } else {
                (&mut hedge, &mut primary)
            };
            this.replied = true;
            this.failure = reply.failure();
            if reply.is_answer() {
                if let Reply::Ran(op, result) = reply {
                    if from == to {
                        g.hedge_won(at, to);
                    }
                    self.give_up(&rx, other);
                    return Raced::Answer { from, op, result };
                }
            }
        }
        if let Some(e) = &hedge.failure {
            g.mark_down(to, &format!("{} (hedged): {e}", self.what));
        }
        Raced::Failed(primary.failure)
    }

    /// The consumer has its answer from the other flight: `loser`, still out, ends its
    /// operation itself; a reply already on its way is received here. A failure of its
    /// replica marks that replica down.
    fn give_up<T, R>(&self, rx: &Replies<T, R>, loser: &mut Flight) {
        if !loser.replied && loser.state.fetch_or(GIVEN_UP, Ordering::SeqCst) & RETURNED != 0 {
            // Returned before it saw GIVEN_UP: its reply is being sent now.
            if let Ok((_, reply)) = rx.recv() {
                loser.failure = reply.failure();
            }
        }
        if let Some(e) = &loser.failure {
            self.g
                .mark_down(loser.replica, &format!("{} (hedged): {e}", self.what));
        }
    }

    /// Runs `job` on replica `i`'s pool; what it yields is sent back, unless the consumer
    /// gave it up: then it ends there (a replica failure marks the replica down).
    fn submit<T: Send + 'static, R: Send + 'static>(
        &self,
        i: usize,
        tx: &ReplyTo<T, R>,
        job: Job<T, R>,
    ) -> Flight {
        let state = Arc::new(AtomicU8::new(0));
        let (g, tx, st, what) = (self.g.clone(), tx.clone(), state.clone(), self.what);
        let started = Instant::now();
        let session = self.session;
        self.g.hedging.hold(i, session);
        self.g.hedging.replicas[i].pool.detach(move || {
            let reply = job(&g);
            let per = &g.hedging.replicas[i];
            if let Reply::Ran(_, Ok(_)) = &reply {
                per.latency.record(started.elapsed());
            }
            let prev = st.fetch_or(RETURNED, Ordering::SeqCst);
            if prev & LEFT_BEHIND != 0 {
                per.lagging.fetch_sub(1, Ordering::SeqCst);
            }
            if prev & GIVEN_UP == 0 {
                // Released first: the consumer's next call may go to this replica.
                g.hedging.release(i, session);
                let _ = tx.send((i, reply));
                return;
            }
            if let Some(e) = reply.failure() {
                g.mark_down(i, &format!("{what} (left behind by a hedge): {e}"));
            }
            // Its operation ends (and gives up its vendor session) before the pair is free.
            drop(reply);
            g.hedging.release(i, session);
        });
        Flight {
            replica: i,
            state,
            replied: false,
            failure: None,
        }
    }
}

/// Success, or the request's own error.
fn reply_ok<R>(r: &Result<R>) -> bool {
    !matches!(r, Err(e) if device_class(e.rv()))
}
