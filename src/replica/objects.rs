//! Session objects made through a group. A session object exists on the replica that made
//! it only; one the consumer created with `C_CreateObject` keeps its template (zeroized on
//! drop: it may hold a key value), so that when that replica is down the object is created
//! again on the replica a call lands on, in its owner's session there, under the same
//! hsmux handle. A session key a replica generated (`C_GenerateKey*`, `C_UnwrapKey`,
//! `C_DeriveKey`) has no value hsmux ever saw: it is gone with its replica, and a use of it
//! answers `CKR_OBJECT_HANDLE_INVALID` with a log line that says why.

use super::{Group, Replica};
use crate::core::attr::Attr;
use crate::core::error::{err, Result};
use crate::core::token::{Ctx, ObjectId};
use cryptoki_sys::*;
use std::sync::atomic::Ordering;
use zeroize::Zeroize;

/// How a session object came to be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Made {
    /// `C_CreateObject` with its value: it can be created again elsewhere.
    Created,
    /// Generated inside the replica by this function: it cannot.
    Generated(&'static str),
}

/// A template kept to create a session object again; its values are zeroized on drop.
#[derive(Clone)]
pub(super) struct KeptTemplate(Vec<Attr>);

impl Drop for KeptTemplate {
    fn drop(&mut self) {
        for a in &mut self.0 {
            a.value.zeroize();
        }
    }
}

/// A session object and where it is.
pub(super) struct SessionObject {
    /// The replica that holds it (the last one it was created on).
    pub at: usize,
    /// The consumer session that owns it: closing that session forgets it.
    pub session: CK_SESSION_HANDLE,
    /// What re-creates it, `None` for a generated key.
    template: Option<KeptTemplate>,
    made: Made,
    /// Its loss has been logged (once per object).
    reported: bool,
}

impl SessionObject {
    pub fn can_be_recreated(&self) -> bool {
        self.template.is_some()
    }
}

impl Group {
    /// Remembers a new object of replica `i` when it is a session object.
    pub(super) fn note_new(
        &self,
        i: usize,
        ctx: &Ctx,
        gid: ObjectId,
        template: &[Attr],
        made: Made,
    ) {
        if crate::core::attr::find(template, CKA_TOKEN) == Some(&[1u8][..]) {
            return;
        }
        let template = (made == Made::Created).then(|| KeptTemplate(template.to_vec()));
        self.session_objects.insert(
            gid,
            SessionObject {
                at: i,
                session: ctx.session,
                template,
                made,
                reported: false,
            },
        );
    }

    /// Consumer session `session` closed: its session objects are gone from every
    /// replica that served it, and their ids there may be handed out again.
    pub(super) fn forget_session_objects(&self, session: CK_SESSION_HANDLE) {
        let mut gone = Vec::new();
        self.session_objects.retain(|gid, o| {
            let mine = o.session == session;
            if mine {
                gone.push(*gid);
            }
            !mine
        });
        for gid in gone {
            for i in 0..self.replicas.len() {
                self.forget_child(i, gid);
            }
        }
    }

    /// After `C_SetAttributeValue` on `gid`: a re-created copy gets the new values too.
    pub(super) fn session_object_changed(&self, gid: ObjectId, changes: &[Attr]) {
        if let Some(mut o) = self.session_objects.get_mut(&gid) {
            if let Some(t) = o.template.as_mut() {
                for c in changes {
                    t.0.retain(|a| a.ty != c.ty);
                    t.0.push(c.clone());
                }
            }
        }
    }

    /// Replica `i` lacks `gid`: when it is a session object whose replica is down, create it
    /// there again (its new id); a generated one cannot be: `CKR_OBJECT_HANDLE_INVALID`,
    /// logged once. `None`: not here (not a session object, or its replica serves it).
    pub(super) fn recreate(
        &self,
        i: usize,
        r: &Replica,
        gid: ObjectId,
    ) -> Result<Option<ObjectId>> {
        let (owner, template) = {
            let Some(mut o) = self.session_objects.get_mut(&gid) else {
                return Ok(None);
            };
            let holder = &self.replicas[o.at];
            if o.at == i || holder.up.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let Some(t) = o.template.clone() else {
                if !o.reported {
                    o.reported = true;
                    let by = match o.made {
                        Made::Generated(by) => by,
                        Made::Created => "C_CreateObject",
                    };
                    log::warn!(
                        "slot {}: session key {gid} was generated inside replica {} ({by}), which is down: it cannot be made on another replica (CKR_OBJECT_HANDLE_INVALID)",
                        self.slot,
                        holder.name
                    );
                }
                // The object's answer, not the replica's: no other replica has it either.
                return Err(err(CKR_OBJECT_HANDLE_INVALID));
            };
            (o.session, t)
        };
        // The owner's session, still open in the group.
        let Some(rw) = self.sessions.get(&owner).map(|e| *e) else {
            return Ok(None);
        };
        let ctx = Ctx {
            session: owner,
            rw,
            login: if self.user_logged.load(Ordering::SeqCst) {
                crate::core::token::Login::User
            } else {
                crate::core::token::Login::Public
            },
        };
        self.ensure_session(i, &ctx)?;
        let c = r.token.create_object(&ctx, &template.0)?;
        r.ids.insert(gid, c);
        r.rev.insert(c, gid);
        if let Some(mut o) = self.session_objects.get_mut(&gid) {
            let from = std::mem::replace(&mut o.at, i);
            log::warn!(
                "slot {}: session object {gid} created again on replica {} (replica {} that held it is down)",
                self.slot,
                r.name,
                self.replicas[from].name
            );
        }
        Ok(Some(c))
    }
}
