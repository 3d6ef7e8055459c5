//! Replica groups: one slot, several key stores holding the same keys (`[[slot.replica]]`).
//! The group is a [`Token`] to the core, so sessions, login state, handles and operation
//! state stay the core's; behind it every call goes to a healthy replica, and a
//! device-class failure moves it to the next one: the session is opened there, logged in
//! with that replica's PIN, the key found again by identity (`CKA_CLASS` + `CKA_ID`, else
//! `CKA_LABEL`), the `*Init` replayed and a single-part operation retried (`ops.rs`).
//!
//! Replicas are any `Token` (vendor modules, remote services), built by `setup`; health and
//! probing are in `health.rs`, the background prober in `prober.rs`.

mod group;
mod health;
mod hedge;
mod objects;
mod ops;
mod prober;
mod replay;
#[cfg(test)]
mod tests;

use crate::config::{Policy, Secret};
use crate::core::attr::{Attr, AttrValue};
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{MechParam, Mechanism};
use crate::core::op::{Cipher, Signer, Verifier};
use crate::core::token::{device_class, Ctx, Login, ObjectId, Token, TokenInfo};
use cryptoki_sys::*;
use dashmap::DashMap;
pub use health::State;
use health::{Change, Health};
use objects::Made;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use zeroize::Zeroizing;

/// A device-class failure of a replica (one that is only busy is not: it stays up).
fn device_failure(e: &Error) -> bool {
    device_class(e.rv()) && !e.is_overload()
}

/// What identifies "the same key" on every replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Identity {
    class: CK_OBJECT_CLASS,
    /// `CKA_ID` when the object has a non-empty one, else `CKA_LABEL`.
    by_id: bool,
    key: Vec<u8>,
}

/// One replica as the group receives it: its name in the slot, its token, and the user PIN
/// hsmux logs in to it with (`None`: the consumer's, or none for a remote service).
pub struct Member {
    pub name: String,
    pub pin: Option<Secret>,
    pub token: Box<dyn Token>,
}

pub struct Replica {
    pub name: String,
    token: Box<dyn Token>,
    pin: Option<Secret>,
    health: Mutex<Health>,
    /// Fast copy of `health.usable()`.
    up: AtomicBool,
    /// Fast copy of `health.state == Healthy` (a call on a healthy replica takes no lock).
    healthy: AtomicBool,
    /// group object id -> this replica's object id, and back.
    ids: DashMap<ObjectId, ObjectId>,
    rev: DashMap<ObjectId, ObjectId>,
    /// hsmux sessions opened on this replica.
    opened: DashMap<CK_SESSION_HANDLE, bool>,
    logged_in: AtomicBool,
    /// This replica's index in the metrics (`Metrics::add_replica`), 0 before.
    metrics_index: AtomicUsize,
}

impl Replica {
    pub fn state(&self) -> (State, String, Instant) {
        let h = self.health.lock();
        (h.state, h.cause.clone(), h.since)
    }

    /// The last re-initialisation of its client attempted by this process (when, what
    /// came of it) and how many were carried out.
    pub fn last_reinit(&self) -> Option<(std::time::SystemTime, String, u64)> {
        let h = self.health.lock();
        h.last_reinit
            .as_ref()
            .map(|(t, what)| (*t, what.clone(), h.reinits))
    }
}

/// The consumer's login on the slot, kept to log in on replicas that come (back) later.
struct LoginState {
    who: Login,
    /// The consumer's PIN, for replicas without a `pin` of their own.
    pin: Zeroizing<Vec<u8>>,
}

pub(crate) struct Group {
    pub slot: String,
    policy: Policy,
    pub replicas: Vec<Replica>,
    ids: DashMap<ObjectId, Identity>,
    by_identity: DashMap<Identity, ObjectId>,
    next_id: AtomicU64,
    /// Sessions: whether read/write.
    sessions: DashMap<CK_SESSION_HANDLE, bool>,
    login: Mutex<Option<LoginState>>,
    /// Fast copy of "the user is logged in" (`login` holds `Login::User`).
    user_logged: AtomicBool,
    rr: AtomicUsize,
    /// The last token info and mechanism list seen, for when no replica answers.
    last_info: Mutex<Option<TokenInfo>>,
    mechs: Mutex<Option<Vec<CK_MECHANISM_TYPE>>>,
    stop: AtomicBool,
    /// Session objects (not `CKA_TOKEN`), the replica that holds each and how to make it
    /// again elsewhere when it can be (`objects.rs`).
    session_objects: DashMap<ObjectId, objects::SessionObject>,
    /// `replay_limit`: the input a multi-part operation keeps for a replay (`replay.rs`).
    replay_limit: AtomicUsize,
    /// The instance's metrics and this slot's index there, when `[metrics]` is on.
    metrics: std::sync::OnceLock<(Arc<crate::metrics::Metrics>, usize)>,
    /// Hedged single-part calls (`hedge.rs`).
    hedging: hedge::Hedging,
}

pub struct ReplicaGroup {
    g: Arc<Group>,
    prober: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Did the call find the object on that replica?
enum Found<T> {
    Yes(T),
    NotHere,
}

impl ReplicaGroup {
    /// A group over `members`, in file order (the failover order). The tokens are built
    /// by the caller (`setup`); a member whose token says it is unavailable starts down.
    pub fn new(slot: &str, policy: Policy, members: Vec<Member>) -> ReplicaGroup {
        let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
        let replicas = members
            .into_iter()
            .map(|m| {
                let mut health = Health::new();
                if let Some(why) = m.token.unavailable() {
                    health.failed(&why);
                }
                let up = health.usable();
                Replica {
                    name: m.name,
                    token: m.token,
                    pin: m.pin,
                    health: Mutex::new(health),
                    up: AtomicBool::new(up),
                    healthy: AtomicBool::new(up),
                    ids: DashMap::new(),
                    rev: DashMap::new(),
                    opened: DashMap::new(),
                    logged_in: AtomicBool::new(false),
                    metrics_index: AtomicUsize::new(0),
                }
            })
            .collect();
        let g = Arc::new(Group {
            slot: slot.to_string(),
            policy,
            replicas,
            ids: DashMap::new(),
            by_identity: DashMap::new(),
            next_id: AtomicU64::new(1),
            sessions: DashMap::new(),
            login: Mutex::new(None),
            user_logged: AtomicBool::new(false),
            rr: AtomicUsize::new(0),
            last_info: Mutex::new(None),
            mechs: Mutex::new(None),
            stop: AtomicBool::new(false),
            session_objects: DashMap::new(),
            replay_limit: AtomicUsize::new(replay::DEFAULT_LIMIT),
            metrics: std::sync::OnceLock::new(),
            hedging: hedge::Hedging::new(slot, &names),
        });
        let prober = prober::start(g.clone());
        ReplicaGroup {
            g,
            prober: Mutex::new(prober),
        }
    }

    /// Registers the replicas in the metrics (`hsmux_replica_up` from now on).
    pub fn register_metrics(&self, m: &Arc<crate::metrics::Metrics>, slot: usize) {
        for (i, r) in self.g.replicas.iter().enumerate() {
            let idx = m.add_replica(slot, &r.name);
            r.metrics_index.store(idx, Ordering::SeqCst);
            m.set_replica_up(slot, idx, r.up.load(Ordering::SeqCst));
            // Weak: the metrics must not keep the group (which holds them) alive.
            let g = Arc::downgrade(&self.g);
            m.add_replica_figures(
                slot,
                idx,
                Box::new(move || {
                    let g = g.upgrade()?;
                    let r = g.replicas.get(i)?;
                    let reinits = r.health.lock().reinits;
                    Some(crate::metrics::pools::ReplicaFigures {
                        pool: r.token.pool_stats(),
                        reinits,
                    })
                }),
            );
        }
        let _ = self.g.metrics.set((m.clone(), slot));
    }

    /// `replay_limit`: the input each multi-part operation keeps to be replayed on the
    /// next replica (0: none, a cut operation answers `CKR_DEVICE_ERROR` once).
    pub fn set_replay_limit(&self, bytes: usize) {
        self.g.replay_limit.store(bytes, Ordering::Relaxed);
    }

    /// The slot's `hedge_ms`: `None` automatic (each replica's p99 latency), `Some(0)` off.
    pub fn set_hedge(&self, ms: Option<u64>) {
        self.g.hedging.set(ms);
    }

    pub fn replicas(&self) -> &[Replica] {
        &self.g.replicas
    }

    /// For `hsmux check`: each replica's state and the identities of the keys it holds
    /// (as seen with its configured PIN, else public objects only).
    pub fn inventory(&self) -> Vec<(String, State, String, Result<Vec<String>>)> {
        self.g
            .replicas
            .iter()
            .map(|r| {
                let keys = (|| {
                    r.token.probe()?;
                    let mut login = Login::Public;
                    if let Some(p) = &r.pin {
                        let pin = p.resolve().map_err(Error::general)?;
                        r.token.login(Login::User, &pin)?;
                        login = Login::User;
                    } else if !r.token.needs_pin() {
                        r.token.login(Login::User, b"")?;
                        login = Login::User;
                    }
                    let ctx = Ctx {
                        session: u64::MAX - 1,
                        rw: false,
                        login,
                    };
                    let ids = r.token.find_objects(&ctx, &[])?;
                    let mut names = Vec::new();
                    for id in ids {
                        if let Ok(ident) = read_identity(&*r.token, &ctx, id) {
                            if ident.class != CKO_DATA {
                                names.push(describe(&ident));
                            }
                        }
                    }
                    r.token.close_session(ctx.session);
                    r.token.logout();
                    names.sort();
                    names.dedup();
                    Ok(names)
                })();
                let (state, cause, _) = r.state();
                (r.name.clone(), state, cause, keys)
            })
            .collect()
    }
}

impl Drop for ReplicaGroup {
    fn drop(&mut self) {
        self.g.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.prober.lock().take() {
            h.thread().unpark();
            if let Err(p) = h.join() {
                log::error!("slot {}: the health prober panicked: {p:?}", self.g.slot);
            }
        }
    }
}

fn describe(i: &Identity) -> String {
    let class = match i.class {
        CKO_PRIVATE_KEY => "private",
        CKO_PUBLIC_KEY => "public",
        CKO_SECRET_KEY => "secret",
        CKO_CERTIFICATE => "certificate",
        _ => "object",
    };
    if i.by_id {
        format!("{class} id={}", hex::encode(&i.key))
    } else {
        format!("{class} label={}", String::from_utf8_lossy(&i.key))
    }
}

fn read_identity(t: &dyn Token, ctx: &Ctx, id: ObjectId) -> Result<Identity> {
    let v = t.get_attributes(ctx, id, &[CKA_CLASS, CKA_ID, CKA_LABEL])?;
    let val = |i: usize| match &v[i] {
        AttrValue::Value(b) => b.clone(),
        _ => Vec::new(),
    };
    let class = crate::core::attr::parse_ulong(&val(0)).unwrap_or(CK_UNAVAILABLE_INFORMATION);
    let (cid, label) = (val(1), val(2));
    Ok(if !cid.is_empty() {
        Identity {
            class,
            by_id: true,
            key: cid,
        }
    } else {
        Identity {
            class,
            by_id: false,
            key: label,
        }
    })
}

impl Token for ReplicaGroup {
    fn slot_description(&self) -> String {
        let names: Vec<&str> = self.g.replicas.iter().map(|r| r.name.as_str()).collect();
        format!("hsmux replica group {} ({})", self.g.slot, names.join(", "))
    }

    fn token_info(&self) -> Result<TokenInfo> {
        let g = &self.g;
        let got = g.on_replica("C_GetTokenInfo", &g.order(false), |_, r| {
            r.token.token_info().map(Found::Yes)
        });
        let mut info = match got {
            Ok(i) => {
                *g.last_info.lock() = Some(i.clone());
                i
            }
            // No replica answers: the last info seen, so that consumers that list tokens
            // at start-up (OpenBao) find the slot; calls fail until a replica is back.
            Err(_) => g.last_info.lock().clone().unwrap_or(TokenInfo {
                manufacturer: "hsmux".into(),
                model: "replica group".into(),
                flags: CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED,
                max_pin_len: 255,
                min_pin_len: 4,
                total_public_memory: CK_UNAVAILABLE_INFORMATION,
                free_public_memory: CK_UNAVAILABLE_INFORMATION,
                total_private_memory: CK_UNAVAILABLE_INFORMATION,
                free_private_memory: CK_UNAVAILABLE_INFORMATION,
                ..Default::default()
            }),
        };
        info.label = g.slot.clone();
        Ok(info)
    }

    fn mechanisms(&self) -> Vec<CK_MECHANISM_TYPE> {
        let g = &self.g;
        if let Some(m) = g.mechs.lock().clone() {
            return m;
        }
        match g.on_replica("C_GetMechanismList", &g.order(false), |_, r| {
            let m = r.token.mechanisms();
            Ok(if m.is_empty() {
                Found::NotHere
            } else {
                Found::Yes(m)
            })
        }) {
            Ok(m) => {
                *g.mechs.lock() = Some(m.clone());
                m
            }
            Err(_) => Vec::new(),
        }
    }

    fn mechanism_info(&self, mech: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO> {
        let g = &self.g;
        g.on_replica("C_GetMechanismInfo", &g.order(false), |_, r| {
            r.token.mechanism_info(mech).map(Found::Yes)
        })
    }

    fn open_session(&self, session: CK_SESSION_HANDLE, rw: bool) -> Result<()> {
        let g = &self.g;
        g.sessions.insert(session, rw);
        let r = g.on_replica("C_OpenSession", &g.order(true), |_, r| {
            r.token.open_session(session, rw)?;
            r.opened.insert(session, rw);
            Ok(Found::Yes(()))
        });
        if r.is_err() {
            g.sessions.remove(&session);
        }
        r
    }

    fn close_session(&self, session: CK_SESSION_HANDLE) -> Vec<ObjectId> {
        let g = &self.g;
        g.sessions.remove(&session);
        g.forget_session_objects(session);
        for (i, r) in g.replicas.iter().enumerate() {
            if r.opened.remove(&session).is_some() {
                // A hedged call left behind in this session there ends first.
                g.hedging.wait_free(i, session);
                r.token.close_session(session);
            }
        }
        Vec::new()
    }

    fn login(&self, who: Login, pin: &[u8]) -> Result<()> {
        let g = &self.g;
        if who == Login::So {
            // The SO works on one replica at a time: the first that answers.
            return g.on_replica("C_Login(SO)", &g.order(false), |_, r| {
                r.token.login(Login::So, pin).map(Found::Yes)
            });
        }
        *g.login.lock() = Some(LoginState {
            who,
            pin: Zeroizing::new(pin.to_vec()),
        });
        g.user_logged.store(true, Ordering::SeqCst);
        let mut consumer_pin_refused = None;
        let mut any = false;
        for i in g.order(false) {
            let r = &g.replicas[i];
            if !r.up.load(Ordering::SeqCst) && !g.probe(i) {
                continue;
            }
            match g.ensure_login(i) {
                Ok(()) => any = true,
                Err(e) if device_failure(&e) => g.mark_down(i, &format!("C_Login: {e}")),
                Err(e) => consumer_pin_refused = Some(e),
            }
        }
        if any {
            return Ok(());
        }
        g.user_logged.store(false, Ordering::SeqCst);
        *g.login.lock() = None;
        Err(consumer_pin_refused.unwrap_or_else(|| err(CKR_DEVICE_ERROR)))
    }

    fn logout(&self) {
        let g = &self.g;
        g.user_logged.store(false, Ordering::SeqCst);
        *g.login.lock() = None;
        for r in &g.replicas {
            if r.logged_in.swap(false, Ordering::SeqCst) {
                r.token.logout();
            }
        }
    }

    fn find_objects(&self, ctx: &Ctx, template: &[Attr]) -> Result<Vec<ObjectId>> {
        let g = &self.g;
        // Every usable replica is asked, so that a key present on one replica only (in the
        // middle of a key rotation) is found too; the same key on several is one object.
        let mut out: Vec<ObjectId> = Vec::new();
        let mut answered = false;
        for i in g.order(false) {
            let r = &g.replicas[i];
            if !r.up.load(Ordering::SeqCst) {
                continue;
            }
            // The group ids are read from the replica too (`gid_for`): a failure there is
            // the replica's like a failed search.
            let gids = g
                .ensure_login(i)
                .and_then(|()| g.ensure_session(i, ctx))
                .and_then(|()| r.token.find_objects(ctx, template))
                .and_then(|ids| {
                    ids.into_iter()
                        .map(|c| g.gid_for(i, ctx, c))
                        .collect::<Result<Vec<_>>>()
                });
            match gids {
                Ok(gids) => {
                    answered = true;
                    g.note_ok(i);
                    for gid in gids {
                        if !out.contains(&gid) {
                            out.push(gid);
                        }
                    }
                }
                Err(e) if device_failure(&e) => g.mark_down(i, &format!("C_FindObjects: {e}")),
                Err(e) => return Err(e),
            }
        }
        if answered {
            return Ok(out);
        }
        // None was usable: probe-before-reuse on one.
        g.on_session("C_FindObjects", &g.order(false), ctx, |i, r| {
            let ids = r.token.find_objects(ctx, template)?;
            ids.into_iter()
                .map(|c| g.gid_for(i, ctx, c))
                .collect::<Result<Vec<_>>>()
                .map(Found::Yes)
        })
    }

    fn get_attributes(
        &self,
        ctx: &Ctx,
        obj: ObjectId,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<AttrValue>> {
        let g = &self.g;
        g.on_session("C_GetAttributeValue", &g.order(false), ctx, |i, r| {
            g.with_object(i, ctx, obj, |c| r.token.get_attributes(ctx, c, types))
        })
    }

    fn set_attributes(&self, ctx: &Ctx, obj: ObjectId, template: &[Attr]) -> Result<()> {
        let g = &self.g;
        // On every usable replica that has the object, so that they stay alike.
        let mut done = false;
        for i in g.order(false) {
            let r = &g.replicas[i];
            if !r.up.load(Ordering::SeqCst) {
                continue;
            }
            match g
                .ensure_login(i)
                .and_then(|()| g.ensure_session(i, ctx))
                .and_then(|()| {
                    g.with_object(i, ctx, obj, |c| r.token.set_attributes(ctx, c, template))
                }) {
                Ok(Found::Yes(())) => {
                    done = true;
                    g.session_object_changed(obj, template);
                }
                Ok(Found::NotHere) => {}
                Err(e) if device_failure(&e) => {
                    g.mark_down(i, &format!("C_SetAttributeValue: {e}"))
                }
                Err(e) => return Err(e),
            }
        }
        if done {
            Ok(())
        } else {
            Err(err(CKR_OBJECT_HANDLE_INVALID))
        }
    }

    fn create_object(&self, ctx: &Ctx, template: &[Attr]) -> Result<ObjectId> {
        let g = &self.g;
        g.on_session("C_CreateObject", &g.order(false), ctx, |i, r| {
            let c = r.token.create_object(ctx, template)?;
            log::info!("slot {}: object created on replica {} only", g.slot, r.name);
            let gid = g.gid_for(i, ctx, c)?;
            g.note_new(i, ctx, gid, template, Made::Created);
            Ok(Found::Yes(gid))
        })
    }

    fn destroy_object(&self, ctx: &Ctx, obj: ObjectId) -> Result<()> {
        let g = &self.g;
        let mut done = false;
        for i in g.order(false) {
            let r = &g.replicas[i];
            if !r.up.load(Ordering::SeqCst) {
                if r.ids.contains_key(&obj) {
                    log::warn!(
                        "slot {}: replica {} is down: the object stays there",
                        g.slot,
                        r.name
                    );
                }
                continue;
            }
            match g
                .ensure_login(i)
                .and_then(|()| g.with_object(i, ctx, obj, |c| r.token.destroy_object(ctx, c)))
            {
                Ok(Found::Yes(())) => {
                    done = true;
                    g.forget_child(i, obj);
                    g.session_objects.remove(&obj);
                }
                Ok(Found::NotHere) => {}
                Err(e) if device_failure(&e) => g.mark_down(i, &format!("C_DestroyObject: {e}")),
                Err(e) => return Err(e),
            }
        }
        if done {
            Ok(())
        } else {
            Err(err(CKR_OBJECT_HANDLE_INVALID))
        }
    }

    fn encrypt_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>> {
        ops::GroupCipher::start(self.g.clone(), ctx, mech, key, true)
            .map(|c| Box::new(c) as Box<dyn Cipher>)
    }

    fn decrypt_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>> {
        ops::GroupCipher::start(self.g.clone(), ctx, mech, key, false)
            .map(|c| Box::new(c) as Box<dyn Cipher>)
    }

    fn sign_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Signer>> {
        ops::GroupSigner::start(self.g.clone(), ctx, mech, Some(key))
            .map(|s| Box::new(s) as Box<dyn Signer>)
    }

    fn verify_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Verifier>> {
        ops::GroupVerifier::start(self.g.clone(), ctx, mech, key)
            .map(|v| Box::new(v) as Box<dyn Verifier>)
    }

    fn digest_init(&self, ctx: &Ctx, mech: &Mechanism) -> Result<Box<dyn Signer>> {
        ops::GroupSigner::start(self.g.clone(), ctx, mech, None)
            .map(|s| Box::new(s) as Box<dyn Signer>)
    }

    fn generate_key(&self, ctx: &Ctx, mech: &Mechanism, template: &[Attr]) -> Result<ObjectId> {
        let g = &self.g;
        g.on_session("C_GenerateKey", &g.order(false), ctx, |i, r| {
            let c = r.token.generate_key(ctx, mech, template)?;
            log::warn!("slot {}: key generated on replica {} only (replicas of a group should hold the same keys)", g.slot, r.name);
            let gid = g.gid_for(i, ctx, c)?;
            g.note_new(i, ctx, gid, template, Made::Generated("C_GenerateKey"));
            Ok(Found::Yes(gid))
        })
    }

    fn generate_key_pair(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        public: &[Attr],
        private: &[Attr],
    ) -> Result<(ObjectId, ObjectId)> {
        let g = &self.g;
        g.on_session("C_GenerateKeyPair", &g.order(false), ctx, |i, r| {
            let (p, s) = r.token.generate_key_pair(ctx, mech, public, private)?;
            log::warn!("slot {}: key pair generated on replica {} only (replicas of a group should hold the same keys)", g.slot, r.name);
            let (gp, gs) = (g.gid_for(i, ctx, p)?, g.gid_for(i, ctx, s)?);
            let made = Made::Generated("C_GenerateKeyPair");
            g.note_new(i, ctx, gp, public, made);
            g.note_new(i, ctx, gs, private, made);
            Ok(Found::Yes((gp, gs)))
        })
    }

    fn wrap_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        wrapping: ObjectId,
        key: ObjectId,
    ) -> Result<Vec<u8>> {
        let g = &self.g;
        g.on_session("C_WrapKey", &g.order(true), ctx, |i, r| {
            let m = g.mech_for(i, ctx, mech)?;
            let Some(k) = g.child_id(i, ctx, key)? else {
                return Ok(Found::NotHere);
            };
            g.with_object(i, ctx, wrapping, |w| r.token.wrap_key(ctx, &m, w, k))
        })
    }

    fn unwrap_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        unwrapping: ObjectId,
        wrapped: &[u8],
        template: &[Attr],
    ) -> Result<ObjectId> {
        let g = &self.g;
        g.on_session("C_UnwrapKey", &g.order(false), ctx, |i, r| {
            let m = g.mech_for(i, ctx, mech)?;
            match g.with_object(i, ctx, unwrapping, |u| {
                r.token.unwrap_key(ctx, &m, u, wrapped, template)
            })? {
                Found::Yes(c) => {
                    let gid = g.gid_for(i, ctx, c)?;
                    g.note_new(i, ctx, gid, template, Made::Generated("C_UnwrapKey"));
                    Ok(Found::Yes(gid))
                }
                Found::NotHere => Ok(Found::NotHere),
            }
        })
    }

    fn derive_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        base: ObjectId,
        template: &[Attr],
    ) -> Result<ObjectId> {
        let g = &self.g;
        g.on_session("C_DeriveKey", &g.order(false), ctx, |i, r| {
            let m = g.mech_for(i, ctx, mech)?;
            match g.with_object(i, ctx, base, |b| r.token.derive_key(ctx, &m, b, template))? {
                Found::Yes(c) => {
                    let gid = g.gid_for(i, ctx, c)?;
                    g.note_new(i, ctx, gid, template, Made::Generated("C_DeriveKey"));
                    Ok(Found::Yes(gid))
                }
                Found::NotHere => Ok(Found::NotHere),
            }
        })
    }

    fn generate_random(&self, out: &mut [u8]) -> Result<()> {
        let g = &self.g;
        let n = out.len();
        let bytes = g.on_replica("C_GenerateRandom", &g.order(true), |_, r| {
            let mut b = vec![0u8; n];
            r.token.generate_random(&mut b)?;
            Ok(Found::Yes(b))
        })?;
        out.copy_from_slice(&bytes);
        Ok(())
    }
}
