//! What a replica group decides, below its `Token` methods (`mod.rs`): which replicas to
//! try and in which order, marking them down and back up, logging in on a replica that
//! (re)joins, running a call on the first replica that can, and mapping the group's object
//! ids to each replica's.

use super::*;

impl Group {
    pub(super) fn metrics_up(&self, i: usize, up: bool) {
        if let Some((m, slot)) = self.metrics.get() {
            m.set_replica_up(
                *slot,
                self.replicas[i].metrics_index.load(Ordering::Relaxed),
                up,
            );
        }
    }

    /// Counts a failover and logs it (slot, from, to, cause).
    pub(super) fn failed_over(&self, from: usize, to: usize, what: &str, cause: &str) {
        log::warn!(
            "slot {}: failover from {} to {} ({what}: {cause})",
            self.slot,
            self.replicas[from].name,
            self.replicas[to].name
        );
        if let Some((m, slot)) = self.metrics.get() {
            let idx = |i: usize| self.replicas[i].metrics_index.load(Ordering::Relaxed);
            m.failover(*slot, idx(from), idx(to));
        }
        let (a, b) = (&self.replicas[from].name, &self.replicas[to].name);
        crate::audit::failover(&self.slot, a, b, &format!("{what}: {cause}"));
    }

    /// Counts a hedge sent to replica `to`.
    pub(super) fn hedge_sent(&self, to: usize) {
        if let Some((m, slot)) = self.metrics.get() {
            let idx = |i: usize| self.replicas[i].metrics_index.load(Ordering::Relaxed);
            m.hedge(*slot, idx(to), false);
        }
    }

    /// Counts a hedge on replica `to` that answered before replica `from`.
    pub(super) fn hedge_won(&self, from: usize, to: usize) {
        log::debug!(
            "slot {}: the hedge on {} answered before {}",
            self.slot,
            self.replicas[to].name,
            self.replicas[from].name
        );
        if let Some((m, slot)) = self.metrics.get() {
            let idx = |i: usize| self.replicas[i].metrics_index.load(Ordering::Relaxed);
            m.hedge(*slot, idx(to), true);
        }
    }

    pub(super) fn sha(pin: &[u8]) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pin)
            .as_ref()
            .to_vec()
    }

    /// Records a device-class failure of replica `i`.
    pub(super) fn mark_down(&self, i: usize, cause: &str) {
        let r = &self.replicas[i];
        let change = r.health.lock().failed(cause);
        r.up.store(false, Ordering::SeqCst);
        r.healthy.store(false, Ordering::SeqCst);
        r.logged_in.store(false, Ordering::SeqCst);
        if change == Change::WentDown {
            log::warn!("slot {}: replica {} down: {cause}", self.slot, r.name);
            self.metrics_up(i, false);
            let (mut again, mut lost) = (0, 0);
            for o in self.session_objects.iter().filter(|e| e.value().at == i) {
                if o.can_be_recreated() {
                    again += 1;
                } else {
                    lost += 1;
                }
            }
            if again > 0 {
                log::warn!(
                    "slot {}: {again} session object(s) held by replica {} are created again on the replica that serves them next",
                    self.slot,
                    r.name
                );
            }
            if lost > 0 {
                log::warn!(
                    "slot {}: {lost} session key(s) generated inside replica {} are gone with it (hsmux never saw their values; their handles answer CKR_OBJECT_HANDLE_INVALID elsewhere)",
                    self.slot,
                    r.name
                );
            }
        }
    }

    pub(super) fn note_ok(&self, i: usize) {
        let r = &self.replicas[i];
        if r.healthy.load(Ordering::Relaxed) {
            return;
        }
        let change = r.health.lock().call_ok();
        self.log_change(i, change);
    }

    pub(super) fn log_change(&self, i: usize, change: Change) {
        let r = &self.replicas[i];
        let (healthy, level, how) = match change {
            Change::Readmitted => (true, log::Level::Warn, "healthy again (re-admitted)"),
            Change::Degraded => (
                false,
                log::Level::Info,
                "answers again (degraded until it passes its probes)",
            ),
            _ => return,
        };
        if change == Change::Degraded {
            // Back after being down: its key store may have restarted (or hsmux
            // re-initialised it) and numbered its objects anew; they are found again.
            r.ids.clear();
            r.rev.clear();
        }
        r.up.store(true, Ordering::SeqCst);
        r.healthy.store(healthy, Ordering::SeqCst);
        self.metrics_up(i, true);
        log::log!(level, "slot {}: replica {} {how}", self.slot, r.name);
    }

    /// The replicas in the order a call tries them: file order for "failover" (so that a
    /// re-admitted preferred replica takes over again), rotating for "balance".
    pub(super) fn order(&self, rotate: bool) -> Vec<usize> {
        let n = self.replicas.len();
        let start = if rotate && self.policy == Policy::Balance {
            self.rr.fetch_add(1, Ordering::Relaxed) % n
        } else {
            0
        };
        (0..n).map(|k| (start + k) % n).collect()
    }

    /// Probes replica `i` now (probe-before-reuse): usable afterwards?
    pub(super) fn probe(&self, i: usize) -> bool {
        self.probe_now(i).is_ok()
    }

    /// [`Group::probe`], with why the replica is not usable when it is not.
    pub(super) fn probe_now(&self, i: usize) -> std::result::Result<(), String> {
        let r = &self.replicas[i];
        let bad_pin = r.health.lock().bad_pin.is_some();
        if bad_pin && !self.pin_changed(i) {
            return Err("its PIN was refused".into());
        }
        match r.token.probe() {
            Ok(_) => {
                let change = r.health.lock().probe_ok();
                self.log_change(i, change);
                let usable = r.up.load(Ordering::SeqCst) || {
                    // Degraded replicas are usable; probe_ok set `up` through log_change
                    // only on a state change.
                    let usable = r.health.lock().usable();
                    r.up.store(usable, Ordering::SeqCst);
                    usable
                };
                if usable {
                    Ok(())
                } else {
                    Err("answers its probe but stays down".into())
                }
            }
            Err(e) => {
                // Down again (a degraded replica stops serving calls, logs it and shows 0 in
                // `hsmux_replica_up`); a down one backs off further.
                self.mark_down(i, &format!("probe: {e}"));
                r.health.lock().probe_failed();
                Err(format!("probe: {e}"))
            }
        }
    }

    /// Self-healing: re-initialises replica `i`'s key store client when its health says
    /// it is time (down, probes failing, never for a refused PIN; `health.rs`), from the
    /// prober. Its login is gone with it: `logged_in` stays false (it is down) until a
    /// call logs it in again after its probes re-admit it.
    pub(super) fn reinit_if_due(&self, i: usize) {
        let r = &self.replicas[i];
        if !r.health.lock().reinit_due(Instant::now()) {
            return;
        }
        let outcome = r.token.restart();
        let (done, what) = match &outcome {
            Ok(true) => (true, "re-initialised".to_string()),
            Ok(false) => (false, "not re-initialised (see the log)".to_string()),
            Err(e) => (false, format!("re-initialisation failed: {e}")),
        };
        r.health.lock().reinit_attempted(done, what.clone());
        if done {
            r.logged_in.store(false, Ordering::SeqCst);
            log::warn!(
                "slot {}: replica {}: its library was re-initialised after failing probes",
                self.slot,
                r.name
            );
        } else if outcome.is_err() {
            log::error!("slot {}: replica {}: {what}", self.slot, r.name);
        }
    }

    pub(super) fn pin_changed(&self, i: usize) -> bool {
        let r = &self.replicas[i];
        let Some(p) = &r.pin else { return false };
        let Ok(pin) = p.resolve() else { return false };
        let bad = r.health.lock().bad_pin.clone();
        if bad.as_deref() != Some(&Self::sha(&pin)[..]) {
            r.health.lock().bad_pin = None;
            log::info!(
                "slot {}: replica {}: its configured PIN changed; trying it",
                self.slot,
                r.name
            );
            return true;
        }
        false
    }

    /// [`Group::on_replica`] for a call in the consumer's session `ctx.session`: the
    /// session is opened on a replica the first time one of its calls lands there (after a
    /// failover, or when `balance` moves single-part work), so that `close_session` closes
    /// what was opened instead of leaving a vendor session behind per moved session.
    pub(super) fn on_session<T>(
        &self,
        what: &str,
        order: &[usize],
        ctx: &Ctx,
        mut f: impl FnMut(usize, &Replica) -> Result<Found<T>>,
    ) -> Result<T> {
        self.on_replica(what, order, |i, r| {
            self.ensure_session(i, ctx)?;
            f(i, r)
        })
    }

    /// Opens the consumer's session `ctx.session` on replica `i` unless it is open there.
    pub(super) fn ensure_session(&self, i: usize, ctx: &Ctx) -> Result<()> {
        // Not while a hedged call left behind still uses this session there.
        self.hedging.wait_free(i, ctx.session);
        self.ensure_session_held(i, ctx)
    }

    /// [`Group::ensure_session`] for a hedge's pool job, which holds the pair itself.
    pub(super) fn ensure_session_held(&self, i: usize, ctx: &Ctx) -> Result<()> {
        let r = &self.replicas[i];
        if r.opened.contains_key(&ctx.session) {
            return Ok(());
        }
        // Only a session the group has open (not one a racing C_CloseSession just ended).
        let Some(rw) = self.sessions.get(&ctx.session).map(|e| *e) else {
            return Ok(());
        };
        r.token.open_session(ctx.session, rw)?;
        r.opened.insert(ctx.session, rw);
        if !self.sessions.contains_key(&ctx.session) && r.opened.remove(&ctx.session).is_some() {
            // Closed while it was being opened here: close_session has already passed.
            r.token.close_session(ctx.session);
        }
        Ok(())
    }

    /// Logs replica `i` in as the user when the slot is logged in and it is not.
    pub(super) fn ensure_login(&self, i: usize) -> Result<()> {
        let r = &self.replicas[i];
        if r.logged_in.load(Ordering::SeqCst) || !self.user_logged.load(Ordering::SeqCst) {
            return Ok(());
        }
        let login = self.login.lock();
        let Some(l) = login.as_ref() else {
            return Ok(());
        };
        if l.who != Login::User {
            return Ok(());
        }
        let pin = match &r.pin {
            Some(p) => p.resolve().map_err(|e| {
                log::error!("slot {}: replica {}: its pin: {e}", self.slot, r.name);
                err(CKR_DEVICE_ERROR)
            })?,
            None => l.pin.clone(),
        };
        drop(login);
        if let Some(bad) = r.health.lock().bad_pin.as_ref() {
            if *bad == Self::sha(&pin) {
                return Err(err(CKR_DEVICE_ERROR));
            }
        }
        match r.token.login(Login::User, &pin) {
            Ok(()) => {
                r.logged_in.store(true, Ordering::SeqCst);
                Ok(())
            }
            Err(e)
                if matches!(e.rv(), CKR_PIN_INCORRECT | CKR_PIN_LOCKED | CKR_PIN_EXPIRED)
                    && r.pin.is_some() =>
            {
                r.health.lock().bad_pin = Some(Self::sha(&pin));
                self.mark_down(
                    i,
                    &format!(
                        "its configured PIN is refused ({e}); not tried again until it changes"
                    ),
                );
                log::error!(
                    "slot {}: replica {}: C_Login with its configured pin answered {e}: the replica is down and the PIN is not retried (it would lock the token) until the configured pin changes",
                    self.slot,
                    r.name
                );
                Err(err(CKR_DEVICE_ERROR))
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `f` on the first replica (in `order`) that is usable and can serve it; a
    /// device-class failure marks that replica down and moves on; when none is usable the
    /// down ones are probed and the first that answers serves (probe-before-reuse).
    pub(super) fn on_replica<T>(
        &self,
        what: &str,
        order: &[usize],
        mut f: impl FnMut(usize, &Replica) -> Result<Found<T>>,
    ) -> Result<T> {
        let mut failed_from: Option<(usize, String)> = None;
        let mut not_here = false;
        let mut busy = None;
        // Why each replica did not serve, for the error line when none did.
        let mut why: Vec<String> = Vec::new();
        // Replicas tried in the first pass (a bit each; a slot has at most
        // `config::MAX_REPLICAS`, 64). The second pass probes those down now (the ones
        // that failed in the first included) and tries those that answer, and tries a
        // replica the first skipped that the prober re-admitted meanwhile.
        let mut tried = 0u64;
        for pass in 0..2 {
            for &i in order {
                let r = &self.replicas[i];
                let usable = r.up.load(Ordering::SeqCst);
                if pass == 0 && !usable {
                    continue;
                }
                if pass == 1 {
                    // Tried already and still usable: it answered (not here, busy).
                    if usable && tried & (1 << i) != 0 {
                        continue;
                    }
                    if let Err(e) = if usable { Ok(()) } else { self.probe_now(i) } {
                        why.push(format!("{}: down ({e})", r.name));
                        continue;
                    }
                }
                tried |= 1 << i;
                let attempt = self.ensure_login(i).and_then(|()| f(i, r));
                match attempt {
                    Ok(Found::Yes(v)) => {
                        self.note_ok(i);
                        crate::metrics::note_replica(r.metrics_index.load(Ordering::Relaxed));
                        if let Some((from, cause)) = failed_from {
                            self.failed_over(from, i, what, &cause);
                        }
                        return Ok(v);
                    }
                    Ok(Found::NotHere) => {
                        not_here = true;
                        why.push(format!("{}: does not hold the object", r.name));
                    }
                    // Busy (no free session in time), not failing: the next replica.
                    Err(e) if e.is_overload() => {
                        why.push(format!("{}: busy ({e})", r.name));
                        busy = Some(e);
                    }
                    // The core lets no second operation start in a consumer session, so
                    // an operation still active in the replica's session is the replica's
                    // state (a call left running there), not the consumer's: the next one.
                    Err(e) if e.rv() == CKR_OPERATION_ACTIVE => {
                        log::warn!(
                            "slot {}: {what}: replica {} answered {e}; trying the next replica",
                            self.slot,
                            r.name
                        );
                        why.push(format!("{}: {e}", r.name));
                        busy = Some(e);
                    }
                    Err(e) if device_class(e.rv()) => {
                        self.mark_down(i, &format!("{what}: {e}"));
                        why.push(format!("{}: {e}", r.name));
                        failed_from.get_or_insert((i, e.to_string()));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if not_here && failed_from.is_none() {
            return Err(err(CKR_OBJECT_HANDLE_INVALID));
        }
        if let Some(e) = busy {
            return Err(e);
        }
        log::error!(
            "slot {}: {what}: no replica could serve it ({})",
            self.slot,
            why.join("; ")
        );
        Err(err(CKR_DEVICE_ERROR))
    }

    /// The group id of replica `i`'s object `child`, registering its identity.
    pub(super) fn gid_for(&self, i: usize, ctx: &Ctx, child: ObjectId) -> Result<ObjectId> {
        let r = &self.replicas[i];
        if let Some(g) = r.rev.get(&child) {
            return Ok(*g);
        }
        let ident = read_identity(&*r.token, ctx, child)?;
        let gid = *self.by_identity.entry(ident.clone()).or_insert_with(|| {
            let g = self.next_id.fetch_add(1, Ordering::Relaxed);
            self.ids.insert(g, ident);
            g
        });
        r.ids.insert(gid, child);
        r.rev.insert(child, gid);
        Ok(gid)
    }

    /// Replica `i`'s object for group id `gid`: cached, else found by identity.
    pub(super) fn child_id(&self, i: usize, ctx: &Ctx, gid: ObjectId) -> Result<Option<ObjectId>> {
        let r = &self.replicas[i];
        if let Some(c) = r.ids.get(&gid) {
            return Ok(Some(*c));
        }
        let Some(ident) = self.ids.get(&gid).map(|v| v.clone()) else {
            return Err(err(CKR_OBJECT_HANDLE_INVALID));
        };
        let t = [
            Attr::ulong(CKA_CLASS, ident.class),
            Attr::new(
                if ident.by_id { CKA_ID } else { CKA_LABEL },
                ident.key.clone(),
            ),
        ];
        let found = r.token.find_objects(ctx, &t)?;
        // An object with a label but no CKA_ID must not match one that has an id.
        for c in found {
            if read_identity(&*r.token, ctx, c)? == ident {
                r.ids.insert(gid, c);
                r.rev.insert(c, gid);
                return Ok(Some(c));
            }
        }
        // A session object whose replica died: made again here when it can be.
        self.recreate(i, r, gid)
    }

    /// Forgets replica `i`'s id for `gid` (the vendor no longer knows it).
    pub(super) fn forget_child(&self, i: usize, gid: ObjectId) {
        let r = &self.replicas[i];
        if let Some((_, c)) = r.ids.remove(&gid) {
            r.rev.remove(&c);
        }
    }

    /// `mech` with an object handle parameter translated for replica `i`.
    pub(super) fn mech_for(&self, i: usize, ctx: &Ctx, mech: &Mechanism) -> Result<Mechanism> {
        match mech.param {
            MechParam::Key(g) => match self.child_id(i, ctx, g)? {
                Some(c) => Ok(Mechanism::with(mech.mech, MechParam::Key(c))),
                None => Err(err(CKR_MECHANISM_PARAM_INVALID)),
            },
            _ => Ok(mech.clone()),
        }
    }

    /// Runs `f` with replica `i`'s id of `gid`; `NotHere` when the replica lacks it, and a
    /// stale id (the vendor restarted) is looked up once more.
    pub(super) fn with_object<T>(
        &self,
        i: usize,
        ctx: &Ctx,
        gid: ObjectId,
        mut f: impl FnMut(ObjectId) -> Result<T>,
    ) -> Result<Found<T>> {
        for attempt in 0..2 {
            let Some(c) = self.child_id(i, ctx, gid)? else {
                return Ok(Found::NotHere);
            };
            match f(c) {
                Err(e)
                    if attempt == 0
                        && matches!(e.rv(), CKR_OBJECT_HANDLE_INVALID | CKR_KEY_HANDLE_INVALID) =>
                {
                    self.forget_child(i, gid);
                }
                r => return r.map(Found::Yes),
            }
        }
        Ok(Found::NotHere)
    }
}
