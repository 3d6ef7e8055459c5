//! The one tokio runtime of the module, on which every remote backend's requests run.
//!
//! Started on first need (a config without remote slots never starts it), shut down by
//! `C_Finalize`. A PKCS#11 call never runs on a runtime worker: it hands its future to the
//! runtime and waits on a plain channel, so that a consumer calling hsmux from inside its
//! own tokio runtime (an async Rust application using cryptoki) blocks only its thread
//! instead of panicking with "cannot start a runtime from within a runtime".
//! After `fork()` the runtime's threads do not exist in the child: the child builds a new
//! runtime (and the slots their new clients, as `C_Initialize` builds new slots).

use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use parking_lot::Mutex;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;

/// The runtime and the process it was built in.
static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// Two workers: requests are I/O-bound, and the machines hsmux runs on are often small.
const WORKERS: usize = 2;

fn runtime() -> Result<Arc<Runtime>> {
    let pid = std::process::id();
    let mut g = RUNTIME.lock();
    if let Some((owner, rt)) = g.as_ref() {
        if *owner == pid {
            return Ok(rt.clone());
        }
        // A forked child: the parent's worker threads are not here. Dropping that runtime
        // would wait for them, so it is left alone (a fixed, one-time leak per fork).
        if let Some((_, rt)) = g.take() {
            std::mem::forget(rt);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name("hsmux-remote")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::general(format!("remote backends: cannot start the runtime: {e}")))?;
    let rt = Arc::new(rt);
    *g = Some((pid, rt.clone()));
    Ok(rt)
}

/// Runs `fut` on the runtime and waits for it at most `deadline`; a missed deadline is
/// `CKR_DEVICE_ERROR` with a log line naming `what` (the request is cancelled).
pub fn call<T, F>(what: &str, deadline: Duration, fut: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let rt = runtime()?;
    if tokio::runtime::Handle::try_current().is_err() {
        // The usual caller, a plain thread: it drives the future itself (the runtime's
        // workers still run the I/O and the timer), which spares a hand-over to a worker
        // and a wake-up back per request. Inside some runtime (an async consumer) that
        // would panic, so those callers take the spawned path below.
        // (The timer is made inside block_on: it needs the runtime's context.)
        return match rt.block_on(async move { tokio::time::timeout(deadline, fut).await }) {
            Ok(r) => r,
            Err(_) => Err(Error::logged(
                CKR_DEVICE_ERROR,
                format!("{what}: no answer within {} ms", deadline.as_millis()),
            )),
        };
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let task = rt.spawn(async move {
        let r = match tokio::time::timeout(deadline, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(CKR_FUNCTION_CANCELED)),
        };
        let _ = tx.send(r);
    });
    // The runtime's own timer ends the future at the deadline; the margin only covers a
    // runtime too busy to run the timer.
    match rx.recv_timeout(deadline + Duration::from_millis(500)) {
        Ok(Err(e)) if e.rv() == CKR_FUNCTION_CANCELED => Err(Error::logged(
            CKR_DEVICE_ERROR,
            format!("{what}: no answer within {} ms", deadline.as_millis()),
        )),
        Ok(r) => r,
        Err(_) => {
            task.abort();
            Err(Error::logged(
                CKR_DEVICE_ERROR,
                format!("{what}: no answer within {} ms", deadline.as_millis()),
            ))
        }
    }
}

/// [`call`] of `f(inner)` for the service of slot `slot` (a service keeps what its requests
/// share behind an `Arc`, which each call's future holds), its log lines naming the slot.
pub fn run_for<I, T, F>(
    slot: &str,
    what: &str,
    deadline: Duration,
    inner: &Arc<I>,
    f: impl FnOnce(Arc<I>) -> F,
) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    call(&format!("slot {slot}: {what}"), deadline, f(inner.clone()))
}

/// `C_Finalize`: stops the runtime (its idle connections close with it). Tasks still
/// running are abandoned; a new `C_Initialize` starts a new runtime.
pub fn shutdown() {
    let taken = RUNTIME.lock().take();
    if let Some((pid, rt)) = taken {
        if pid != std::process::id() {
            std::mem::forget(rt);
            return;
        }
        match Arc::try_unwrap(rt) {
            Ok(rt) => rt.shutdown_timeout(Duration::from_secs(1)),
            // A call still in flight on another thread holds it; it ends with the last.
            Err(rt) => drop(rt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_answers_and_a_slow_one_times_out() {
        let v = call("test", Duration::from_secs(2), async { Ok(7u32) }).unwrap();
        assert_eq!(v, 7);
        let t = std::time::Instant::now();
        let e = call("slow", Duration::from_millis(100), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(1u32)
        })
        .unwrap_err();
        assert_eq!(e.rv(), CKR_DEVICE_ERROR);
        // A hang detector, not a speed test (the sleep is 5 s).
        assert!(t.elapsed() < Duration::from_millis(4500));
    }

    #[test]
    fn a_call_from_inside_another_runtime_does_not_panic() {
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let v = other
            .block_on(async { call("nested", Duration::from_secs(2), async { Ok(3u8) }).unwrap() });
        assert_eq!(v, 3);
    }
}
