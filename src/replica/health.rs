//! The health of one replica: healthy, degraded (answering again, not yet re-admitted) or
//! down, with the back-off of its probes (1 s doubling to `MAX_BACKOFF`), after
//! nethsm-pkcs11's instance state machine; and when a down replica's key store client is
//! re-initialised (self-healing: `REINIT_AFTER` failed probes, then at growing intervals).

use std::time::{Duration, Instant, SystemTime};

pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Probes a degraded replica must pass in a row before it is healthy again.
pub const PROBES_TO_READMIT: u32 = 2;
/// How often a healthy replica is probed (to notice one that died while idle).
pub const HEALTHY_PROBE_EVERY: Duration = Duration::from_secs(5);
/// Failed probes in a row of a down replica before its client is re-initialised.
pub const REINIT_AFTER: u32 = 2;
/// The least time between two re-initialisations of one replica, doubling after each
/// that did not bring it back, up to `REINIT_MAX_INTERVAL`.
pub const REINIT_FIRST_INTERVAL: Duration = Duration::from_secs(5);
pub const REINIT_MAX_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Healthy,
    Degraded,
    Down,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Degraded => "degraded",
            State::Down => "down",
        }
    }
}

#[derive(Debug)]
pub struct Health {
    pub state: State,
    pub since: Instant,
    pub cause: String,
    backoff: Duration,
    pub next_probe: Instant,
    ok_streak: u32,
    /// SHA-256 of a configured PIN the replica refused: never tried again (it would lock
    /// the token) until the configured PIN changes.
    pub bad_pin: Option<Vec<u8>>,
    /// Probes failed in a row (reset by a passed one).
    failed_probes: u32,
    /// Re-initialisations: none before this, the interval to the next, how many were
    /// done, and the last attempt (when, what came of it).
    reinit_not_before: Instant,
    reinit_interval: Duration,
    pub reinits: u64,
    pub last_reinit: Option<(SystemTime, String)>,
}

/// What a state change was, for the log and the metrics.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    None,
    WentDown,
    Degraded,
    Readmitted,
}

impl Health {
    pub fn new() -> Health {
        let now = Instant::now();
        Health {
            state: State::Healthy,
            since: now,
            cause: String::new(),
            backoff: FIRST_BACKOFF,
            next_probe: now + HEALTHY_PROBE_EVERY,
            ok_streak: 0,
            bad_pin: None,
            failed_probes: 0,
            reinit_not_before: now,
            reinit_interval: REINIT_FIRST_INTERVAL,
            reinits: 0,
            last_reinit: None,
        }
    }

    /// A probe failed (after `failed`, which recorded it as a failure).
    pub fn probe_failed(&mut self) {
        self.failed_probes = self.failed_probes.saturating_add(1);
    }

    /// Is it time to re-initialise this replica's client? Down, its probes failing
    /// `REINIT_AFTER` times in a row, the interval since the last attempt passed, and
    /// never for a refused PIN (re-initialising would only try it again).
    pub fn reinit_due(&self, now: Instant) -> bool {
        self.state == State::Down
            && self.bad_pin.is_none()
            && self.failed_probes >= REINIT_AFTER
            && now >= self.reinit_not_before
    }

    /// A re-initialisation was attempted (`done`: it was carried out); `what` for
    /// `hsmux status`. The next is not before the interval, which doubles.
    pub fn reinit_attempted(&mut self, done: bool, what: String) {
        let now = Instant::now();
        if done {
            self.reinits += 1;
            // Probe at once: the replica may be back.
            self.next_probe = now;
        }
        self.last_reinit = Some((SystemTime::now(), what));
        self.reinit_not_before = now + self.reinit_interval;
        self.reinit_interval = (self.reinit_interval * 2).min(REINIT_MAX_INTERVAL);
    }

    pub fn usable(&self) -> bool {
        self.state != State::Down
    }

    /// A call or a probe failed with a device-class error.
    pub fn failed(&mut self, cause: &str) -> Change {
        let now = Instant::now();
        self.ok_streak = 0;
        self.cause = cause.to_string();
        if self.state == State::Down {
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            self.next_probe = now + self.backoff;
            return Change::None;
        }
        self.state = State::Down;
        self.since = now;
        self.backoff = FIRST_BACKOFF;
        self.next_probe = now + self.backoff;
        Change::WentDown
    }

    /// A probe succeeded.
    pub fn probe_ok(&mut self) -> Change {
        let now = Instant::now();
        match self.state {
            State::Healthy => {
                self.next_probe = now + HEALTHY_PROBE_EVERY;
                Change::None
            }
            _ if self.bad_pin.is_some() => {
                // Reachable, but its PIN is wrong: stays down, probed at the slow pace.
                self.next_probe = now + MAX_BACKOFF;
                Change::None
            }
            _ => {
                self.ok_streak += 1;
                self.failed_probes = 0;
                if self.ok_streak >= PROBES_TO_READMIT {
                    self.state = State::Healthy;
                    self.since = now;
                    self.backoff = FIRST_BACKOFF;
                    self.reinit_interval = REINIT_FIRST_INTERVAL;
                    self.next_probe = now + HEALTHY_PROBE_EVERY;
                    Change::Readmitted
                } else {
                    let was = self.state;
                    self.state = State::Degraded;
                    // The next probe soon: re-admission should not wait a whole back-off.
                    self.next_probe = now + Duration::from_millis(200);
                    if was == State::Down {
                        Change::Degraded
                    } else {
                        Change::None
                    }
                }
            }
        }
    }

    /// A real call succeeded on a degraded replica (probe-before-reuse let it serve):
    /// counts like a passed probe.
    pub fn call_ok(&mut self) -> Change {
        if self.state == State::Healthy {
            return Change::None;
        }
        self.probe_ok()
    }

    pub fn probe_due(&self, now: Instant) -> bool {
        now >= self.next_probe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_backs_off_and_needs_two_probes_to_come_back() {
        let mut h = Health::new();
        assert_eq!(h.failed("device error"), Change::WentDown);
        assert!(!h.usable());
        let first = h.next_probe - Instant::now();
        assert!(first <= FIRST_BACKOFF && first > FIRST_BACKOFF / 2);
        for _ in 0..10 {
            h.failed("still");
        }
        assert!(h.next_probe - Instant::now() <= MAX_BACKOFF);
        assert!(h.next_probe - Instant::now() > MAX_BACKOFF / 2);
        assert_eq!(h.probe_ok(), Change::Degraded);
        assert_eq!(h.state, State::Degraded);
        assert!(h.usable());
        assert_eq!(h.probe_ok(), Change::Readmitted);
        assert_eq!(h.state, State::Healthy);
    }

    #[test]
    fn reinit_after_two_failed_probes_then_at_doubling_intervals_never_for_a_bad_pin() {
        let mut h = Health::new();
        h.failed("device removed");
        let now = Instant::now();
        assert!(!h.reinit_due(now));
        h.probe_failed();
        assert!(!h.reinit_due(now));
        h.probe_failed();
        assert!(h.reinit_due(Instant::now()));
        h.reinit_attempted(true, "done".into());
        assert_eq!(h.reinits, 1);
        assert!(!h.reinit_due(Instant::now()));
        assert!(h.reinit_due(Instant::now() + REINIT_FIRST_INTERVAL));
        h.reinit_attempted(false, "not now".into());
        assert!(!h.reinit_due(Instant::now() + REINIT_FIRST_INTERVAL));
        assert!(h.reinit_due(Instant::now() + REINIT_FIRST_INTERVAL * 2));
        h.bad_pin = Some(vec![1]);
        assert!(!h.reinit_due(Instant::now() + REINIT_MAX_INTERVAL * 2));
    }

    #[test]
    fn a_wrong_pin_keeps_it_down_whatever_the_probes_say() {
        let mut h = Health::new();
        h.failed("wrong PIN");
        h.bad_pin = Some(vec![1]);
        for _ in 0..5 {
            assert_eq!(h.probe_ok(), Change::None);
        }
        assert_eq!(h.state, State::Down);
    }
}
