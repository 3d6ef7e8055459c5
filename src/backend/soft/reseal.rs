//! Re-sealing a soft store (`hsmux store reseal`): moving its master key between PIN
//! sealing (each PIN record wraps the key itself) and `[slot.seal]` transit sealing (each
//! PIN record wraps transit's ciphertext of the key), both ways, every object kept.
//!
//! The whole sealing of a store is in one file: `token.json` (the PIN records and the seal
//! record). The master key does not change, so the object files are not touched. The rule
//! that makes a crash harmless: **the `token.json` in place is authoritative**. The new
//! records are made (the transit calls done) first, written to a temporary file that is
//! fsync'ed, renamed over `token.json`, and the directory fsync'ed; a process killed before
//! the rename leaves the old file (and a temporary file the next lock holder removes), one
//! killed after it leaves the new one. Only once the new file is durable is the old one's
//! content overwritten (its inode, unlinked by the rename: no other path reaches it).

use super::store::{SealRecord, WriteStep};
use super::*;
use std::io::{Seek, Write};

/// How a store's master key is sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sealing {
    /// The PINs alone open it.
    Pin,
    /// The PINs open transit's ciphertext of it; the `[slot.seal]` transit key opens that.
    Transit,
}

/// What a store's `token.json` says about its sealing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealingState {
    /// The transit key of the seal record, if any.
    pub transit_key: Option<String>,
    pub so_sealed: bool,
    /// `None`: the store has no user PIN yet.
    pub user_sealed: Option<bool>,
}

impl SealingState {
    fn of(meta: &TokenMeta) -> SealingState {
        SealingState {
            transit_key: meta.seal.as_ref().map(|s| s.key.clone()),
            so_sealed: meta.so.sealed,
            user_sealed: meta.user.as_ref().map(|u| u.sealed),
        }
    }

    /// One sealing for the whole store, or `None` when its records differ (a store that
    /// got `[slot.seal]` and then a new PIN for one of its two records only).
    pub fn sealing(&self) -> Option<Sealing> {
        let all = |v: bool| self.so_sealed == v && self.user_sealed.unwrap_or(v) == v;
        match &self.transit_key {
            Some(_) if all(true) => Some(Sealing::Transit),
            None if all(false) => Some(Sealing::Pin),
            _ => None,
        }
    }

    pub fn has_user_pin(&self) -> bool {
        self.user_sealed.is_some()
    }
}

/// The points of a re-seal, in order (reported to the caller as each is passed: the CLI
/// prints them with `-v`, and its tests stop it at each one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Both PINs checked (under the store's lock, counted like a login); lock released.
    PinsChecked = 1,
    /// The master key opened with the old sealing (transit asked when it was sealed).
    KeyOpened,
    /// The new PIN records (and seal record) made: transit asked when sealing to it.
    NewRecordsMade,
    /// The lock taken again, `token.json` found unchanged, stale temporary files removed.
    Relocked,
    /// The new `token.json` written to a temporary file and fsync'ed.
    NewFileWritten,
    /// Renamed over `token.json`.
    Renamed,
    /// The directory fsync'ed: the new sealing is durable.
    NewDurable,
    /// The old file's content overwritten and fsync'ed.
    OldDestroyed,
}

impl Step {
    pub const ALL: [Step; 8] = [
        Step::PinsChecked,
        Step::KeyOpened,
        Step::NewRecordsMade,
        Step::Relocked,
        Step::NewFileWritten,
        Step::Renamed,
        Step::NewDurable,
        Step::OldDestroyed,
    ];

    pub fn number(self) -> u32 {
        self as u32
    }
}

/// What a re-seal did.
#[derive(Debug)]
pub struct Resealed {
    pub from: SealingState,
    pub to: Sealing,
    /// The transit key sealing it now (`to == Transit`).
    pub transit_key: Option<String>,
    /// PIN records re-wrapped (SO, and user when it has one).
    pub records: usize,
    /// Whether the old `token.json`'s content could be overwritten (not when another hard
    /// link to it exists: then it is still reachable, and a warning says so).
    pub old_overwritten: bool,
}

fn refused(why: String) -> Error {
    Error::logged(CKR_FUNCTION_FAILED, why)
}

impl SoftToken {
    /// The sealing `token.json` describes now.
    pub fn sealing_state(&self) -> Result<SealingState> {
        let mut st = self.state.write();
        self.reload_meta(&mut st, true);
        Self::meta(&st).map(SealingState::of)
    }

    /// Re-seals the store's master key `to` PIN or transit sealing. `user_pin` is needed
    /// when the store has a user PIN. A wrong PIN counts as a failed login and changes
    /// nothing else; an unreachable transit changes nothing. See the module header for the
    /// crash rule.
    pub fn reseal(
        &self,
        to: Sealing,
        so_pin: &[u8],
        user_pin: Option<&[u8]>,
        on_step: &mut dyn FnMut(Step),
    ) -> Result<Resealed> {
        let new_seal = match (to, &self.seal) {
            (Sealing::Transit, None) => {
                return Err(refused(format!(
                    "soft token {:?}: sealing to transit needs the slot's [slot.seal] in the configuration",
                    self.config_label
                )))
            }
            (Sealing::Transit, Some(s)) => Some(s.clone()),
            (Sealing::Pin, _) => None,
        };
        let mut st = self.state.write();
        let lock = self.lock()?;
        self.reload_meta(&mut st, true);
        let from = SealingState::of(Self::meta(&st)?);
        if from.sealing() == Some(to) {
            return Err(refused(format!(
                "soft token {:?}: already sealed by {}; nothing to do",
                self.config_label,
                match &from.transit_key {
                    Some(k) => format!("transit key {k:?}"),
                    None => "its PINs alone".into(),
                }
            )));
        }
        let user_pin = match (from.has_user_pin(), user_pin) {
            (true, None) => {
                return Err(Error::logged(
                    CKR_ARGUMENTS_BAD,
                    "the store has a user PIN: both PINs are needed to re-seal it",
                ))
            }
            (true, Some(p)) => Some(p),
            (false, _) => None,
        };
        let (meta, so_rec, so_layer) = self.check_pin(&lock, &mut st, Login::So, so_pin)?;
        let user = match user_pin {
            Some(p) => Some((self.check_pin(&lock, &mut st, Login::User, p)?, p)),
            None => None,
        };
        drop(lock);
        on_step(Step::PinsChecked);

        // The network calls (transit) run without the lock: others wait at most LOCK_WAIT.
        let mk = self.open_key(&meta, &so_rec, &so_layer)?;
        if let Some(((m, rec, layer), _)) = &user {
            let other = self.open_key(m, rec, layer)?;
            if aws_lc_rs::constant_time::verify_slices_are_equal(&mk[..], &other[..]).is_err() {
                return Err(refused(format!(
                    "soft token {:?}: the SO and user PIN records open different keys; the store is damaged",
                    self.config_label
                )));
            }
        }
        on_step(Step::KeyOpened);
        let seal = new_seal.as_deref();
        let new_so = pin::make_record_sealed(so_pin, &mk, self.kdf_iterations, seal)?;
        let new_user = match &user {
            Some((_, p)) => Some(pin::make_record_sealed(p, &mk, self.kdf_iterations, seal)?),
            None => None,
        };
        let new_seal_record = match seal {
            Some(s) => Some(SealRecord {
                backend: "vault".into(),
                key: s.key_name(),
                check: s.check(&seal_context(&meta.serial), None)?,
            }),
            None => None,
        };
        on_step(Step::NewRecordsMade);

        let lock = self.lock()?;
        self.reload_meta(&mut st, true);
        let mut now = Self::meta(&st)?.clone();
        let same = |a: &Option<store::PinRecord>, b: &Option<store::PinRecord>| {
            a.as_ref().map(|r| &r.wrapped) == b.as_ref().map(|r| &r.wrapped)
        };
        if now.so.wrapped != meta.so.wrapped
            || !same(&now.user, &meta.user)
            || now.seal != meta.seal
        {
            return Err(refused(format!(
                "soft token {:?}: its PINs or seal changed while re-sealing (another process); nothing written, run it again",
                self.config_label
            )));
        }
        // A writer that died mid-write may have left a copy of the old records.
        lock.remove_stale_temps(&self.dir);
        on_step(Step::Relocked);

        now.so = new_so;
        now.user = new_user;
        now.seal = new_seal_record;
        let records = 1 + usize::from(now.user.is_some());
        // Held across the rename: after it, this is the only way to the old content.
        let old = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(store::meta_path(&self.dir));
        store::save_meta_steps(&lock, &self.dir, &now, &mut |w| {
            on_step(match w {
                WriteStep::Written => Step::NewFileWritten,
                WriteStep::Renamed => Step::Renamed,
                WriteStep::Durable => Step::NewDurable,
            })
        })?;
        st.meta = MetaState::Ready(now);
        st.meta_stamp = self.meta_stamp();
        let old_overwritten = match old {
            Ok(f) => self.overwrite_unlinked(f),
            Err(e) => {
                log::warn!(
                    "soft token {:?}: the old token.json was not opened to overwrite it: {e}",
                    self.config_label
                );
                false
            }
        };
        drop(lock);
        on_step(Step::OldDestroyed);
        log::info!(
            "soft token at {} re-sealed: {} PIN record(s) now sealed by {}",
            self.dir.display(),
            records,
            match &new_seal {
                Some(s) => format!("transit key {:?}", s.key_name()),
                None => "the PINs alone".into(),
            }
        );
        Ok(Resealed {
            from,
            to,
            transit_key: new_seal.map(|s| s.key_name()),
            records,
            old_overwritten,
        })
    }

    /// The master key from a record's PIN layer: [`SoftToken::unseal`] (which checks the
    /// seal's key), except for a PIN-sealed record of a store that has no seal record, which
    /// opens without transit (and without `unseal`'s "not sealed yet" warning, the very
    /// thing a re-seal to transit corrects).
    fn open_key(
        &self,
        meta: &TokenMeta,
        rec: &store::PinRecord,
        layer: &[u8],
    ) -> Result<MasterKey> {
        if meta.seal.is_none() && !rec.sealed {
            return pin::master_key(rec, layer, None);
        }
        self.unseal(meta, rec, layer)
    }

    /// Overwrites the content of the replaced `token.json` (held open in `f`) with zeros
    /// and fsyncs it, when nothing else links to it. The filesystem may keep older copies
    /// of the blocks (journal, copy-on-write, snapshots, backups): those are the
    /// operator's to retire (docs/operations.md).
    fn overwrite_unlinked(&self, mut f: std::fs::File) -> bool {
        let done = (|| -> std::io::Result<bool> {
            let m = f.metadata()?;
            if m.nlink() > 0 {
                log::warn!(
                    "soft token {:?}: the old token.json has another hard link; its content is left there",
                    self.config_label
                );
                return Ok(false);
            }
            f.seek(std::io::SeekFrom::Start(0))?;
            f.write_all(&vec![0u8; m.len() as usize])?;
            f.sync_all()?;
            Ok(true)
        })();
        done.unwrap_or_else(|e| {
            log::warn!(
                "soft token {:?}: cannot overwrite the old token.json: {e}",
                self.config_label
            );
            false
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(key: Option<&str>, so: bool, user: Option<bool>) -> SealingState {
        SealingState {
            transit_key: key.map(String::from),
            so_sealed: so,
            user_sealed: user,
        }
    }

    #[test]
    fn one_sealing_for_the_whole_store_or_none_when_mixed() {
        assert_eq!(
            state(None, false, Some(false)).sealing(),
            Some(Sealing::Pin)
        );
        assert_eq!(state(None, false, None).sealing(), Some(Sealing::Pin));
        let k = Some("k");
        assert_eq!(state(k, true, Some(true)).sealing(), Some(Sealing::Transit));
        assert_eq!(state(k, true, None).sealing(), Some(Sealing::Transit));
        // [slot.seal] added, then one PIN set again: a re-seal either way completes it.
        assert_eq!(state(k, true, Some(false)).sealing(), None);
        assert_eq!(state(k, false, Some(true)).sealing(), None);
        assert_eq!(state(None, true, Some(true)).sealing(), None);
        assert!(!state(None, false, None).has_user_pin());
    }

    #[test]
    fn steps_are_numbered_in_order() {
        let n: Vec<u32> = Step::ALL.iter().map(|s| s.number()).collect();
        assert_eq!(n, (1..=8).collect::<Vec<_>>());
    }
}
