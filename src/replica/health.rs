//! The health of one replica: healthy, degraded (answering again, not yet re-admitted) or
//! down, with the back-off of its probes (1 s doubling to `MAX_BACKOFF`), after
//! nethsm-pkcs11's instance state machine.

use std::time::{Duration, Instant};

pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Probes a degraded replica must pass in a row before it is healthy again.
pub const PROBES_TO_READMIT: u32 = 2;
/// How often a healthy replica is probed (to notice one that died while idle).
pub const HEALTHY_PROBE_EVERY: Duration = Duration::from_secs(5);

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
        }
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
                if self.ok_streak >= PROBES_TO_READMIT {
                    self.state = State::Healthy;
                    self.since = now;
                    self.backoff = FIRST_BACKOFF;
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
