//! The module token's vendor sessions: borrowing one from the pool (opening, checking a
//! long-idle one with `C_GetSessionInfo`), giving it back or dropping it after a call or an
//! operation, the login's anchor session, and the session objects each hsmux session made.

use super::pool::Got;
use super::*;

/// A pooled session idle longer than this is checked with `C_GetSessionInfo` before it
/// is lent again (appliances drop sessions idle for minutes; CloudHSM after 10 or so).
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(30);

/// A vendor session lent out, with the library generation it was opened in.
#[derive(Clone, Copy, Debug)]
pub(super) struct Lease {
    pub(super) vs: CK_SESSION_HANDLE,
    generation: u64,
}

/// How long (10 ms polls) a discarded session waits for a call still running in it.
const CLOSE_WAIT_POLLS: u32 = 60_000;

/// Codes that say the vendor no longer has the session (nothing to close).
pub(super) fn session_gone(rv: CK_RV) -> bool {
    matches!(rv, CKR_SESSION_HANDLE_INVALID | CKR_SESSION_CLOSED)
}

impl Inner {
    /// A vendor session for one call or one operation, waiting up to the call deadline
    /// for one to come free when the pool is at its size. A wait that times out answers
    /// `CKR_DEVICE_ERROR` marked as overload (a replica group tries another replica and
    /// does not mark this one down), with a log line naming the pool.
    pub(super) fn borrow(&self) -> Result<Lease> {
        let generation = self.sync();
        if self.pool.size_unknown() {
            self.learn_size()?;
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let got = self.pool.take(generation, deadline).ok_or_else(|| {
                let (size, lent) = self.pool.figures();
                log::warn!(
                    "replica {}: no vendor session came free within {} ms (pool of {size}, {lent} lent); answered CKR_DEVICE_ERROR",
                    self.name,
                    self.timeout.as_millis()
                );
                Error::overloaded(CKR_DEVICE_ERROR)
            })?;
            let lease = |vs| Lease { vs, generation };
            match got {
                Got::Idle(vs, since, false) if since.elapsed() < CHECK_AFTER_IDLE => {
                    return Ok(lease(vs))
                }
                Got::Idle(vs, _, _) => match self.alive(vs) {
                    Ok(()) => return Ok(lease(vs)),
                    Err(e) if session_gone(e.rv()) => {
                        log::info!(
                            "replica {}: a pooled vendor session went stale while idle; replaced",
                            self.name
                        );
                        self.lost_session();
                    }
                    Err(e) => {
                        self.discard(lease(vs));
                        return Err(e);
                    }
                },
                Got::Room => match self.open_vendor_session() {
                    Ok(vs) => return Ok(lease(vs)),
                    Err(e) if e.rv() == CKR_SESSION_COUNT => match self.pool.shrink() {
                        Some(size) => log::warn!(
                            "replica {}: the token refused another session (CKR_SESSION_COUNT): its pool is {size} now",
                            self.name
                        ),
                        None => return Err(Error::overloaded(CKR_DEVICE_ERROR)),
                    },
                    Err(e) => {
                        self.pool.gone();
                        return Err(e);
                    }
                },
            }
        }
    }

    /// The pool size from the token's `ulMaxSessionCount` when it is a number, else the
    /// default (`max_sessions` not configured).
    fn learn_size(&self) -> Result<()> {
        let vs = self.vendor_slot()?;
        let max = self.run("C_GetTokenInfo", move |lib| {
            // SAFETY: plain data the vendor fills.
            let mut t: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
            check(vcall!(lib, C_GetTokenInfo(vs, &mut t)))?;
            Ok(t.ulMaxSessionCount)
        })?;
        let size = match max {
            CK_EFFECTIVELY_INFINITE | CK_UNAVAILABLE_INFORMATION => pool::DEFAULT_SIZE,
            n => usize::try_from(n).unwrap_or(pool::DEFAULT_SIZE),
        };
        self.pool.set_size(size);
        log::info!("replica {}: vendor session pool of {size}", self.name);
        Ok(())
    }

    /// A new read/write vendor session (the core has checked the consumer's flags; a
    /// write-protected token gets a read-only one).
    fn open_vendor_session(&self) -> Result<CK_SESSION_HANDLE> {
        let vs = self.vendor_slot()?;
        self.run("C_OpenSession", move |lib| {
            let mut h = 0;
            let mut flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
            let mut rv = vcall!(
                lib,
                C_OpenSession(vs, flags, std::ptr::null_mut(), None, &mut h)
            );
            if rv == CKR_TOKEN_WRITE_PROTECTED {
                flags = CKF_SERIAL_SESSION;
                rv = vcall!(
                    lib,
                    C_OpenSession(vs, flags, std::ptr::null_mut(), None, &mut h)
                );
            }
            check(rv)?;
            Ok(h)
        })
    }

    /// Does the vendor still know session `vs`?
    fn alive(&self, vs: CK_SESSION_HANDLE) -> Result<()> {
        self.run("C_GetSessionInfo", move |lib| {
            // SAFETY: plain data the vendor fills.
            let mut info: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
            check(vcall!(lib, C_GetSessionInfo(vs, &mut info)))
        })
    }

    /// After a call or an operation on `lease` ended with `failure` (or none): the session
    /// goes back to the pool, or is dropped when the vendor lost it, or closed when the
    /// device failed in it (it may be unusable).
    pub(super) fn finish(&self, lease: Lease, failure: Option<&Error>) {
        match failure.map(Error::rv) {
            Some(rv) if session_gone(rv) => self.lost_session(),
            Some(rv) if crate::core::token::device_class(rv) => self.discard(lease),
            _ => self.pool.give_back(lease.vs, lease.generation),
        }
    }

    /// The vendor no longer knows a lent session: its room is free, and the idle ones
    /// are checked before they are lent again (`Pool::suspect_idle`).
    fn lost_session(&self) {
        self.pool.gone();
        self.pool.suspect_idle();
    }

    /// Closes a lent session that must not be reused (an operation left in it, a call
    /// still running in it, a device error) on a worker, so that a hung vendor does not
    /// hold the caller; a session of an older library generation is only forgotten (its
    /// handle may be someone else's now).
    pub(super) fn discard(&self, lease: Lease) {
        let current = self
            .lib
            .as_ref()
            .is_ok_and(|l| l.generation() == lease.generation);
        if let (true, Ok(lib)) = (current, &self.lib) {
            let lib = Lib(lib.clone());
            let (vs, busy, name) = (lease.vs, self.busy.clone(), self.name.clone());
            self.workers.detach(move || {
                // A call that missed its deadline may still run in the session: it is
                // closed once that call returns (a call that never does keeps it open).
                let mut waited = 0u32;
                while busy.contains_key(&vs) {
                    if waited == CLOSE_WAIT_POLLS {
                        log::warn!("replica {name}: a vendor session is left open: a call in it has not returned in {} s", CLOSE_WAIT_POLLS / 100);
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    waited += 1;
                }
                let gate = lib.0.clone();
                let _pass = gate.enter();
                vcall!(lib, C_CloseSession(vs));
            });
        }
        self.pool.gone();
    }

    /// The operation of hsmux session `h` on `lease` ended (`failure`: how), or was
    /// dropped unfinished (`abandoned`: the vendor's operation is still active).
    pub(super) fn end_operation(
        &self,
        h: CK_SESSION_HANDLE,
        lease: Lease,
        failure: Option<&Error>,
        abandoned: bool,
    ) {
        self.active.remove_if(&h, |_, l| l.vs == lease.vs);
        if abandoned {
            self.discard(lease);
        } else {
            self.finish(lease, failure);
        }
    }

    /// Runs one call of hsmux session `h` on a vendor session: the one its running
    /// operation holds, else one borrowed for the call.
    pub(super) fn with_session<R: Send + 'static>(
        &self,
        h: CK_SESSION_HANDLE,
        what: &str,
        f: impl FnOnce(Lib, CK_SESSION_HANDLE) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        if let Some(lease) = self.active.get(&h).map(|l| *l) {
            if lease.generation != self.sync() {
                // The library was re-initialised under the operation: its vendor session
                // is gone, and the same handle may now be another session's. The call
                // does not reach the vendor; the operation is lost like its session.
                log::warn!(
                    "replica {}: {what}: the operation's vendor session ended when the library was re-initialised; answered CKR_SESSION_CLOSED",
                    self.name
                );
                return Err(err(CKR_SESSION_CLOSED));
            }
            let vs = lease.vs;
            return self.run_in(what, vs, move |lib| f(lib, vs));
        }
        let lease = self.borrow()?;
        let vs = lease.vs;
        let r = self.run_in(what, vs, move |lib| f(lib, vs));
        match &r {
            // A call that timed out still runs in that session.
            Err(e) if e.rv() == TIMED_OUT => self.discard(lease),
            Err(e) => self.finish(lease, Some(e)),
            Ok(_) => self.finish(lease, None),
        }
        r
    }

    /// The login's session (borrowed once and kept while logged in).
    pub(super) fn anchor(&self) -> Result<CK_SESSION_HANDLE> {
        if let Some(l) = *self.anchor.lock() {
            if self
                .lib
                .as_ref()
                .is_ok_and(|lib| lib.generation() == l.generation)
            {
                return Ok(l.vs);
            }
        }
        let lease = self.borrow()?;
        let mut a = self.anchor.lock();
        match *a {
            // Another thread made one meanwhile.
            Some(l) if l.generation == lease.generation => {
                drop(a);
                self.finish(lease, None);
                Ok(l.vs)
            }
            _ => {
                *a = Some(lease);
                Ok(lease.vs)
            }
        }
    }

    /// Logged out (or the login failed): the anchor goes back to the pool.
    pub(super) fn release_anchor(&self, failure: Option<&Error>) {
        let a = self.anchor.lock().take();
        if let Some(l) = a {
            self.finish(l, failure);
        }
    }

    /// Remembers the session objects hsmux session `h` made (`token`: the template's
    /// CKA_TOKEN, when it gives one).
    pub(super) fn made(&self, h: CK_SESSION_HANDLE, token: Option<bool>, objects: &[ObjectId]) {
        if token == Some(true) {
            return;
        }
        if let Some(mut mine) = self.consumers.get_mut(&h) {
            mine.extend_from_slice(objects);
        }
    }

    /// Forgets an object hsmux session `h`... or any session destroyed.
    pub(super) fn destroyed(&self, obj: ObjectId) {
        for mut mine in self.consumers.iter_mut() {
            mine.retain(|o| *o != obj);
        }
    }

    /// Hsmux session `h` closes: the session objects it made are destroyed (a pooled
    /// vendor session outlives it). Their ids, for the core to forget.
    pub(super) fn close_consumer(&self, h: CK_SESSION_HANDLE) -> Vec<ObjectId> {
        let Some((_, objects)) = self.consumers.remove(&h) else {
            return Vec::new();
        };
        if objects.is_empty() {
            return objects;
        }
        let list = objects.clone();
        let r = self.with_session(h, "C_DestroyObject", move |lib, vs| {
            for o in list {
                let rv = vcall!(lib, C_DestroyObject(vs, o as CK_OBJECT_HANDLE));
                if rv != CKR_OK && rv != CKR_OBJECT_HANDLE_INVALID {
                    return Err(Error::new(rv));
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            log::warn!(
                "replica {}: {} session object(s) of a closed session not destroyed ({e}): they stay until their vendor session closes",
                self.name,
                objects.len()
            );
        }
        objects
    }
}

/// CKA_TOKEN as a template gives it.
pub(super) fn token_attr(template: &[Attr]) -> Option<bool> {
    crate::core::attr::find(template, CKA_TOKEN).map(|v| v.first().is_some_and(|b| *b != 0))
}
