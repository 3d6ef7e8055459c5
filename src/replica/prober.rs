//! The background prober of a replica group: a thread that probes each replica when its
//! back-off says so (`C_GetTokenInfo` through the replica's deadline), re-admits replicas
//! that pass, notices healthy ones that died while idle, and re-initialises the client of
//! a down one whose probes keep failing (`Group::reinit_if_due`). It is joined when the group
//! is dropped (`C_Finalize`).

use super::health::State;
use super::Group;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(100);

pub fn start(g: Arc<Group>) -> Option<std::thread::JoinHandle<()>> {
    let name = format!("hsmux-probe-{}", g.slot);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || run(&g))
        .map_err(|e| log::error!("cannot start the health prober: {e}"))
        .ok()
}

fn run(g: &Group) {
    while !g.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        for (i, r) in g.replicas.iter().enumerate() {
            if g.stop.load(Ordering::SeqCst) {
                return;
            }
            let (due, state, reinit) = {
                let h = r.health.lock();
                (h.probe_due(now), h.state, h.reinit_due(now))
            };
            // Self-healing, whatever pushed the next probe back (the consumer's calls
            // probe a down replica too when no other serves).
            if reinit {
                g.reinit_if_due(i);
                continue;
            }
            if !due {
                continue;
            }
            if state == State::Healthy {
                match r.token.probe() {
                    Err(e) if crate::core::token::device_class(e.rv()) => {
                        g.mark_down(i, &format!("probe: {e}"));
                    }
                    // Any other answer (e.g. refused credentials) comes from a replica that
                    // is there: it stays healthy and is probed again at the healthy pace,
                    // not at every tick.
                    Err(e) => {
                        log::debug!("slot {}: replica {} probe: {e}", g.slot, r.name);
                        r.health.lock().probe_ok();
                    }
                    Ok(()) => {
                        r.health.lock().probe_ok();
                    }
                }
            } else {
                g.probe(i);
            }
        }
        std::thread::park_timeout(TICK);
    }
}
