//! A vendor token as a [`Token`]: what a module replica of a replica group is
//! (`crate::replica`), and a `backend = "cloudhsm"` slot or replica (with a health hook).
//! Unlike the passthrough of a plain module slot (`crate::proxy`), every call here works on
//! owned data and runs with a deadline on the replica's worker threads (`worker.rs`), so
//! that a vendor that hangs costs the consumer at most `timeout` and a failover.
//!
//! Object ids are the vendor's handles. hsmux's sessions are its own: a vendor session
//! comes from the token's pool (`token/pool.rs`, `token/sessions.rs`) and is lent to one
//! only while an operation runs on it, or for one call. The pool's "anchor" session holds
//! the login, which the vendor keeps for every session of the application.
//! A re-initialised library (`reinit.rs`) makes all of them void: the token notices the
//! library's new generation and starts afresh.

use super::encode::{OwnedMechanism, OwnedTemplate};
use super::library::Library;
use super::reinit::Registration;
use super::worker::Workers;
use crate::config::{ModuleConfig, TokenSelector};
use crate::core::attr::{Attr, AttrValue};
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::Mechanism;
use crate::core::op::{Cipher, Signer, Verifier};
use crate::core::token::{Ctx, Login, ObjectId, PoolStats, Token, TokenInfo};
use cryptoki_sys::*;
use dashmap::DashMap;
use parking_lot::Mutex;
use sessions::Lease;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const UNRESOLVED: u64 = u64::MAX;

/// A vendor call counted in `Inner::busy` from its submission until it returns (or its
/// job is dropped unrun).
struct Running {
    busy: Arc<DashMap<CK_SESSION_HANDLE, usize>>,
    vs: CK_SESSION_HANDLE,
}

impl Running {
    fn start(busy: &Arc<DashMap<CK_SESSION_HANDLE, usize>>, vs: CK_SESSION_HANDLE) -> Running {
        *busy.entry(vs).or_insert(0) += 1;
        Running {
            busy: busy.clone(),
            vs,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.busy.remove_if_mut(&self.vs, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

/// A timed-out vendor call is answered with this code, which the replica logic treats as
/// a device failure (hsmux never gets it from a vendor for a call it made).
pub const TIMED_OUT: CK_RV = CKR_DEVICE_ERROR;

pub struct ModuleToken {
    inner: Arc<Inner>,
    /// What the key store knows beside the library (CloudHSM: whether its cluster has an
    /// ACTIVE HSM), checked by `probe` after the library answered.
    health: Option<Health>,
}

/// A key store's own health check (see [`ModuleToken::with_health`]).
pub type Health = Box<dyn Fn() -> Result<()> + Send + Sync>;

struct Inner {
    name: String,
    lib: std::result::Result<Arc<Library>, String>,
    /// This token as a user of its library (for re-initialisations).
    registration: Option<Arc<Registration>>,
    select: TokenSelector,
    vendor_slot: AtomicU64,
    /// The library generation `vendor_slot` and `anchor` belong to.
    generation: AtomicU64,
    timeout: Duration,
    workers: Workers,
    pool: pool::Pool,
    /// hsmux session -> the vendor session lent to its running operation.
    active: DashMap<CK_SESSION_HANDLE, Lease>,
    /// Vendor calls submitted and not returned yet, per vendor session: a session is not
    /// closed under a call that still runs in it (one that missed its deadline goes on at
    /// the vendor, and closing its session then is a use after free in some libraries).
    busy: Arc<DashMap<CK_SESSION_HANDLE, usize>>,
    /// hsmux sessions open on this token and the session objects each created (destroyed
    /// when it closes: on the vendor side they belong to a pooled session, not to it).
    consumers: DashMap<CK_SESSION_HANDLE, Vec<ObjectId>>,
    /// The session the login is made on (a pool session never given back while it holds
    /// the login).
    anchor: Mutex<Option<Lease>>,
}

/// The vendor library of a call that runs on a worker.
#[derive(Clone)]
struct Lib(Arc<Library>);

impl Lib {
    fn fl(&self) -> &'static CK_FUNCTION_LIST {
        self.0.fl
    }
}

macro_rules! vcall {
    ($lib:expr, $f:ident ( $($a:expr),* )) => {
        match $lib.fl().$f {
            Some(f) => unsafe { f($($a),*) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        }
    };
}

fn check(rv: CK_RV) -> Result<()> {
    if rv == CKR_OK {
        Ok(())
    } else {
        Err(Error::new(rv))
    }
}

impl ModuleToken {
    /// Loads the replica's library (a load failure leaves a token whose every call fails,
    /// so that the replica is simply down).
    pub fn new(name: &str, cfg: &ModuleConfig) -> ModuleToken {
        let lib = Library::open_configured(cfg);
        if let Err(why) = &lib {
            log::error!(
                "replica {name}: vendor library {}: {why}",
                cfg.library.display()
            );
        }
        let registration = lib.as_ref().ok().map(|l| Arc::new(l.register(name)));
        let generation = lib.as_ref().map_or(0, |l| l.generation());
        let size = cfg.max_sessions.map(|n| n.min(usize::MAX as u64) as usize);
        ModuleToken {
            inner: Arc::new(Inner {
                name: name.to_string(),
                lib,
                registration,
                select: cfg.select.clone(),
                vendor_slot: AtomicU64::new(UNRESOLVED),
                generation: AtomicU64::new(generation),
                timeout: Duration::from_millis(cfg.timeout_ms),
                workers: Workers::new(name),
                pool: pool::Pool::new(size),
                active: DashMap::new(),
                busy: Arc::new(DashMap::new()),
                consumers: DashMap::new(),
                anchor: Mutex::new(None),
            }),
            health: None,
        }
    }

    /// The same token whose `probe` also asks `health` once the library answered: a
    /// failure there is a device failure even while the library still answers (from its
    /// cache).
    pub fn with_health(self, health: Health) -> ModuleToken {
        ModuleToken {
            health: Some(health),
            ..self
        }
    }

    /// Why the library is unusable, if it is.
    pub fn load_error(&self) -> Option<&str> {
        self.inner.lib.as_ref().err().map(|s| s.as_str())
    }
}

impl Inner {
    /// Runs `f` on a worker with the call deadline, through the library's gate (no call
    /// runs while it is re-initialised); a timeout is `TIMED_OUT` with a log line.
    fn run<R: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(Lib) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let lib = match &self.lib {
            Ok(l) => Lib(l.clone()),
            Err(_) => return Err(err(CKR_DEVICE_REMOVED)),
        };
        let job = move || {
            let gate = lib.0.clone();
            let _pass = gate.enter();
            f(lib)
        };
        match self.workers.run(self.timeout, job) {
            Ok(r) => r,
            Err(_) => {
                log::warn!(
                    "replica {}: {what} did not return within {} ms",
                    self.name,
                    self.timeout.as_millis()
                );
                Err(err(TIMED_OUT))
            }
        }
    }

    /// `run` for a call in vendor session `vs`, counted in `busy` until it returns.
    fn run_in<R: Send + 'static>(
        &self,
        what: &str,
        vs: CK_SESSION_HANDLE,
        f: impl FnOnce(Lib) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let running = Running::start(&self.busy, vs);
        self.run(what, move |lib| {
            let _running = running;
            f(lib)
        })
    }

    /// The library generation now; state of an older one (slot id, login session) is
    /// forgotten here, the pool forgets its sessions itself.
    fn sync(&self) -> u64 {
        let now = self.lib.as_ref().map_or(0, |l| l.generation());
        let seen = self.generation.load(Ordering::Acquire);
        if now != seen
            && self
                .generation
                .compare_exchange(seen, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.vendor_slot.store(UNRESOLVED, Ordering::Release);
            if self.anchor.lock().take().is_some() {
                self.pool.gone();
            }
            log::info!(
                "replica {}: its library was re-initialised: vendor sessions and login start afresh",
                self.name
            );
        }
        now
    }

    fn vendor_slot(&self) -> Result<CK_SLOT_ID> {
        self.sync();
        let v = self.vendor_slot.load(Ordering::Acquire);
        if v != UNRESOLVED {
            return Ok(v);
        }
        let select = self.select.clone();
        let found = self.run("C_GetSlotList", move |lib| {
            super::library::find_token(&lib.0, &select).map_err(Error::new)
        })?;
        self.vendor_slot.store(found, Ordering::Release);
        Ok(found)
    }

    /// [`Token::restart`]: re-initialises the library (`reinit.rs` says when it does) on a
    /// worker, so that a vendor hanging in `C_Finalize` costs the prober one deadline.
    fn restart(&self) -> Result<bool> {
        let Some(reg) = self.registration.clone() else {
            return Ok(false);
        };
        let grace = self.timeout;
        match self
            .workers
            .run(self.timeout * 3, move || reg.restart(grace))
        {
            Ok(Ok(super::reinit::Outcome::Done)) => Ok(true),
            Ok(Ok(super::reinit::Outcome::NotNow(_))) => Ok(false),
            Ok(Err(rv)) => Err(Error::new(rv)),
            Err(_) => {
                log::error!(
                    "replica {}: re-initialising its library did not end within {} ms",
                    self.name,
                    (self.timeout * 3).as_millis()
                );
                Err(err(TIMED_OUT))
            }
        }
    }

    /// Runs an `*Init` on a vendor session lent to hsmux session `h` until the operation
    /// ends; a session left busy by an earlier operation is replaced once.
    fn init<R: Send + 'static>(
        &self,
        what: &str,
        h: CK_SESSION_HANDLE,
        f: impl Fn(Lib, CK_SESSION_HANDLE) -> Result<R> + Send + Sync + Clone + 'static,
    ) -> Result<(Lease, R)> {
        for attempt in 0..2 {
            let lease = self.borrow()?;
            let (vs, g) = (lease.vs, f.clone());
            match self.run_in(what, vs, move |lib| g(lib, vs)) {
                Ok(r) => {
                    self.active.insert(h, lease);
                    return Ok((lease, r));
                }
                Err(e) if e.rv() == CKR_OPERATION_ACTIVE && attempt == 0 => {
                    log::info!(
                        "replica {}: {what}: a vendor session was still busy; replaced",
                        self.name
                    );
                    self.discard(lease);
                }
                Err(e) => {
                    self.finish(lease, Some(&e));
                    return Err(e);
                }
            }
        }
        Err(err(CKR_OPERATION_ACTIVE))
    }
}

/// `C_Sign(dummy, NULL)`-style length queries keep the operation and give its length.
fn two_call(mut f: impl FnMut(*mut u8, *mut CK_ULONG) -> CK_RV) -> Result<Vec<u8>> {
    let mut n: CK_ULONG = 0;
    check(f(std::ptr::null_mut(), &mut n))?;
    let mut out = vec![0u8; n as usize];
    check(f(out.as_mut_ptr(), &mut n))?;
    out.truncate(n as usize);
    Ok(out)
}

impl Token for ModuleToken {
    fn unavailable(&self) -> Option<String> {
        self.load_error()
            .map(|why| format!("vendor library: {why}"))
    }
    fn probe(&self) -> Result<()> {
        // The library first (cheap, local); then what the key store adds.
        self.token_info()?;
        if let Some(r) = &self.inner.registration {
            r.working();
        }
        match &self.health {
            Some(health) => health(),
            None => Ok(()),
        }
    }
    fn pool_stats(&self) -> Option<PoolStats> {
        let p = &self.inner.pool;
        let (size, in_use) = p.figures();
        Some(PoolStats {
            size,
            in_use,
            waits: p.waits.load(Ordering::Relaxed),
            wait_timeouts: p.timeouts.load(Ordering::Relaxed),
        })
    }
    fn restart(&self) -> Result<bool> {
        self.inner.restart()
    }
    fn slot_description(&self) -> String {
        format!("hsmux replica {}", self.inner.name)
    }

    fn token_info(&self) -> Result<TokenInfo> {
        let vs = self.inner.vendor_slot()?;
        self.inner.run("C_GetTokenInfo", move |lib| {
            let mut t: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
            check(vcall!(lib, C_GetTokenInfo(vs, &mut t)))?;
            let s = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_string();
            Ok(TokenInfo {
                label: s(&t.label),
                manufacturer: s(&t.manufacturerID),
                model: s(&t.model),
                serial: s(&t.serialNumber),
                flags: t.flags,
                max_pin_len: t.ulMaxPinLen,
                min_pin_len: t.ulMinPinLen,
                total_public_memory: t.ulTotalPublicMemory,
                free_public_memory: t.ulFreePublicMemory,
                total_private_memory: t.ulTotalPrivateMemory,
                free_private_memory: t.ulFreePrivateMemory,
                hardware_version: (t.hardwareVersion.major, t.hardwareVersion.minor),
                firmware_version: (t.firmwareVersion.major, t.firmwareVersion.minor),
                utc_time: if t.flags & CKF_CLOCK_ON_TOKEN != 0 {
                    s(&t.utcTime)
                } else {
                    String::new()
                },
            })
        })
    }

    fn mechanisms(&self) -> Vec<CK_MECHANISM_TYPE> {
        let Ok(vs) = self.inner.vendor_slot() else {
            return Vec::new();
        };
        self.inner
            .run("C_GetMechanismList", move |lib| {
                let mut n: CK_ULONG = 0;
                check(vcall!(
                    lib,
                    C_GetMechanismList(vs, std::ptr::null_mut(), &mut n)
                ))?;
                let mut v = vec![0; n as usize];
                check(vcall!(lib, C_GetMechanismList(vs, v.as_mut_ptr(), &mut n)))?;
                v.truncate(n as usize);
                Ok(v)
            })
            .unwrap_or_default()
    }

    fn mechanism_info(&self, mech: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO> {
        let vs = self.inner.vendor_slot()?;
        self.inner.run("C_GetMechanismInfo", move |lib| {
            let mut i: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
            check(vcall!(lib, C_GetMechanismInfo(vs, mech, &mut i)))?;
            Ok(i)
        })
    }

    fn open_session(&self, session: CK_SESSION_HANDLE, _rw: bool) -> Result<()> {
        // No vendor session yet (one is lent per operation); the token must be there.
        self.inner.vendor_slot()?;
        self.inner.consumers.insert(session, Vec::new());
        Ok(())
    }

    fn close_session(&self, session: CK_SESSION_HANDLE) -> Vec<ObjectId> {
        self.inner.close_consumer(session)
    }

    fn login(&self, who: Login, pin: &[u8]) -> Result<()> {
        let user = if who == Login::So { CKU_SO } else { CKU_USER };
        let pin = zeroize::Zeroizing::new(pin.to_vec());
        let mut retried = false;
        loop {
            let a = self.inner.anchor()?;
            let pin = pin.clone();
            let r = self.inner.run("C_Login", move |lib| {
                let mut pin = pin;
                match vcall!(
                    lib,
                    C_Login(a, user, pin.as_mut_ptr(), pin.len() as CK_ULONG)
                ) {
                    CKR_OK | CKR_USER_ALREADY_LOGGED_IN => Ok(()),
                    rv => Err(Error::new(rv)),
                }
            });
            match &r {
                Ok(()) => return r,
                // The vendor lost the anchor session (kept from an earlier login): once
                // more on a fresh one.
                Err(e) if !retried && sessions::session_gone(e.rv()) => {
                    self.inner.release_anchor(Some(e));
                    retried = true;
                }
                Err(e) => {
                    self.inner.release_anchor(Some(e));
                    return r;
                }
            }
        }
    }

    fn logout(&self) {
        let Some(a) = self.inner.anchor.lock().map(|l| l.vs) else {
            return;
        };
        let r = self
            .inner
            .run("C_Logout", move |lib| check(vcall!(lib, C_Logout(a))));
        self.inner.release_anchor(r.as_ref().err());
    }

    fn find_objects(&self, ctx: &Ctx, template: &[Attr]) -> Result<Vec<ObjectId>> {
        let mut t = OwnedTemplate::new(template);
        self.inner
            .with_session(ctx.session, "C_FindObjects", move |lib, vs| {
                check(vcall!(lib, C_FindObjectsInit(vs, t.as_ptr(), t.len())))?;
                let mut out = Vec::new();
                let r = loop {
                    let mut buf = [0 as CK_OBJECT_HANDLE; 64];
                    let mut n: CK_ULONG = 0;
                    let rv = vcall!(lib, C_FindObjects(vs, buf.as_mut_ptr(), 64, &mut n));
                    if rv != CKR_OK {
                        break Err(Error::new(rv));
                    }
                    if n == 0 {
                        break Ok(());
                    }
                    out.extend(buf[..(n as usize).min(64)].iter().map(|h| *h as ObjectId));
                };
                let fin = vcall!(lib, C_FindObjectsFinal(vs));
                r?;
                check(fin)?;
                Ok(out)
            })
    }

    fn get_attributes(
        &self,
        ctx: &Ctx,
        obj: ObjectId,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<AttrValue>> {
        let types = types.to_vec();
        self.inner
            .with_session(ctx.session, "C_GetAttributeValue", move |lib, vs| {
                let mut out = Vec::with_capacity(types.len());
                // One attribute per call: the vendor's code tells sensitive from absent.
                for ty in types {
                    let mut a = CK_ATTRIBUTE {
                        type_: ty,
                        pValue: std::ptr::null_mut(),
                        ulValueLen: 0,
                    };
                    match vcall!(
                        lib,
                        C_GetAttributeValue(vs, obj as CK_OBJECT_HANDLE, &mut a, 1)
                    ) {
                        CKR_OK => {}
                        CKR_ATTRIBUTE_SENSITIVE => {
                            out.push(AttrValue::Sensitive);
                            continue;
                        }
                        CKR_ATTRIBUTE_TYPE_INVALID => {
                            out.push(AttrValue::Invalid);
                            continue;
                        }
                        rv => return Err(Error::new(rv)),
                    }
                    let mut v = vec![0u8; a.ulValueLen as usize];
                    a.pValue = v.as_mut_ptr() as CK_VOID_PTR;
                    check(vcall!(
                        lib,
                        C_GetAttributeValue(vs, obj as CK_OBJECT_HANDLE, &mut a, 1)
                    ))?;
                    v.truncate(a.ulValueLen as usize);
                    out.push(AttrValue::Value(v));
                }
                Ok(out)
            })
    }

    fn set_attributes(&self, ctx: &Ctx, obj: ObjectId, template: &[Attr]) -> Result<()> {
        let mut t = OwnedTemplate::new(template);
        self.inner
            .with_session(ctx.session, "C_SetAttributeValue", move |lib, vs| {
                check(vcall!(
                    lib,
                    C_SetAttributeValue(vs, obj as CK_OBJECT_HANDLE, t.as_ptr(), t.len())
                ))
            })
    }

    fn create_object(&self, ctx: &Ctx, template: &[Attr]) -> Result<ObjectId> {
        let mut t = OwnedTemplate::new(template);
        let h = self
            .inner
            .with_session(ctx.session, "C_CreateObject", move |lib, vs| {
                let mut h = 0;
                check(vcall!(lib, C_CreateObject(vs, t.as_ptr(), t.len(), &mut h)))?;
                Ok(h as ObjectId)
            })?;
        self.inner.made(ctx.session, token_attr(template), &[h]);
        Ok(h)
    }

    fn copy_object(&self, ctx: &Ctx, obj: ObjectId, template: &[Attr]) -> Result<ObjectId> {
        let mut t = OwnedTemplate::new(template);
        let given = token_attr(template);
        let (h, token) = self
            .inner
            .with_session(ctx.session, "C_CopyObject", move |lib, vs| {
                let mut h = 0;
                check(vcall!(
                    lib,
                    C_CopyObject(vs, obj as CK_OBJECT_HANDLE, t.as_ptr(), t.len(), &mut h)
                ))?;
                // A copy is a token object as its source is, unless the template says.
                let token = given.or_else(|| {
                    let mut b: CK_BBOOL = 0;
                    let mut a = CK_ATTRIBUTE {
                        type_: CKA_TOKEN,
                        pValue: &mut b as *mut CK_BBOOL as CK_VOID_PTR,
                        ulValueLen: 1,
                    };
                    (vcall!(lib, C_GetAttributeValue(vs, h, &mut a, 1)) == CKR_OK).then_some(b != 0)
                });
                Ok((h as ObjectId, token))
            })?;
        self.inner.made(ctx.session, token, &[h]);
        Ok(h)
    }

    fn destroy_object(&self, ctx: &Ctx, obj: ObjectId) -> Result<()> {
        self.inner
            .with_session(ctx.session, "C_DestroyObject", move |lib, vs| {
                check(vcall!(lib, C_DestroyObject(vs, obj as CK_OBJECT_HANDLE)))
            })?;
        self.inner.destroyed(obj);
        Ok(())
    }

    fn encrypt_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>> {
        self.cipher(ctx, mech, key, true)
    }

    fn decrypt_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>> {
        self.cipher(ctx, mech, key, false)
    }

    fn sign_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Signer>> {
        self.signer(ctx, mech, Some(key))
    }

    fn verify_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Verifier>> {
        let mech = Arc::new(mech.clone());
        let (lease, ()) = self
            .inner
            .init("C_VerifyInit", ctx.session, move |lib, vs| {
                let mut m = OwnedMechanism::new(&mech);
                check(vcall!(
                    lib,
                    C_VerifyInit(vs, m.as_ptr(), key as CK_OBJECT_HANDLE)
                ))
            })?;
        Ok(Box::new(VendorVerifier {
            on: OnSession::new(&self.inner, ctx.session, lease),
        }))
    }

    fn digest_init(&self, ctx: &Ctx, mech: &Mechanism) -> Result<Box<dyn Signer>> {
        self.signer(ctx, mech, None)
    }

    fn generate_key(&self, ctx: &Ctx, mech: &Mechanism, template: &[Attr]) -> Result<ObjectId> {
        self.new_object(ctx, "C_GenerateKey", mech, template, |lib, vs, m, t, h| {
            vcall!(lib, C_GenerateKey(vs, m, t.as_ptr(), t.len(), h))
        })
    }

    fn generate_key_pair(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        public: &[Attr],
        private: &[Attr],
    ) -> Result<(ObjectId, ObjectId)> {
        let mut m = OwnedMechanism::new(mech);
        let (mut tp, mut ts) = (OwnedTemplate::new(public), OwnedTemplate::new(private));
        let (p, s) =
            self.inner
                .with_session(ctx.session, "C_GenerateKeyPair", move |lib, vs| {
                    let (mut p, mut s) = (0, 0);
                    check(vcall!(
                        lib,
                        C_GenerateKeyPair(
                            vs,
                            m.as_ptr(),
                            tp.as_ptr(),
                            tp.len(),
                            ts.as_ptr(),
                            ts.len(),
                            &mut p,
                            &mut s
                        )
                    ))?;
                    Ok((p as ObjectId, s as ObjectId))
                })?;
        self.inner.made(ctx.session, token_attr(public), &[p]);
        self.inner.made(ctx.session, token_attr(private), &[s]);
        Ok((p, s))
    }

    fn wrap_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        wrapping: ObjectId,
        key: ObjectId,
    ) -> Result<Vec<u8>> {
        let mut m = OwnedMechanism::new(mech);
        self.inner
            .with_session(ctx.session, "C_WrapKey", move |lib, vs| {
                two_call(|o, n| {
                    vcall!(
                        lib,
                        C_WrapKey(
                            vs,
                            m.as_ptr(),
                            wrapping as CK_OBJECT_HANDLE,
                            key as CK_OBJECT_HANDLE,
                            o,
                            n
                        )
                    )
                })
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
        let mut w = wrapped.to_vec();
        let u = unwrapping as CK_OBJECT_HANDLE;
        self.new_object(
            ctx,
            "C_UnwrapKey",
            mech,
            template,
            move |lib, vs, m, t, h| {
                let (wp, wn) = (w.as_mut_ptr(), w.len() as CK_ULONG);
                vcall!(lib, C_UnwrapKey(vs, m, u, wp, wn, t.as_ptr(), t.len(), h))
            },
        )
    }

    fn derive_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        base: ObjectId,
        template: &[Attr],
    ) -> Result<ObjectId> {
        let b = base as CK_OBJECT_HANDLE;
        self.new_object(
            ctx,
            "C_DeriveKey",
            mech,
            template,
            move |lib, vs, m, t, h| vcall!(lib, C_DeriveKey(vs, m, b, t.as_ptr(), t.len(), h)),
        )
    }

    fn generate_random(&self, out: &mut [u8]) -> Result<()> {
        let n = out.len();
        // No hsmux session is named: any pooled session serves.
        let bytes = self
            .inner
            .with_session(0, "C_GenerateRandom", move |lib, a| {
                let mut b = vec![0u8; n];
                check(vcall!(
                    lib,
                    C_GenerateRandom(a, b.as_mut_ptr(), n as CK_ULONG)
                ))?;
                Ok(b)
            })?;
        out.copy_from_slice(&bytes);
        Ok(())
    }
}

impl ModuleToken {
    /// A call that makes one object from `mech` and `template` on the calling session's
    /// vendor session (`C_GenerateKey`, `C_UnwrapKey`, `C_DeriveKey`): its new handle.
    fn new_object(
        &self,
        ctx: &Ctx,
        what: &'static str,
        mech: &Mechanism,
        template: &[Attr],
        call: impl FnOnce(
                &Lib,
                CK_SESSION_HANDLE,
                *mut CK_MECHANISM,
                &mut OwnedTemplate,
                &mut CK_OBJECT_HANDLE,
            ) -> CK_RV
            + Send
            + 'static,
    ) -> Result<ObjectId> {
        let mut m = OwnedMechanism::new(mech);
        let mut t = OwnedTemplate::new(template);
        let h = self.inner.with_session(ctx.session, what, move |lib, vs| {
            let mut h = 0;
            check(call(&lib, vs, m.as_ptr(), &mut t, &mut h))?;
            Ok(h as ObjectId)
        })?;
        self.inner.made(ctx.session, token_attr(template), &[h]);
        Ok(h)
    }
}

/// A device-class failure (the replica, not the request): the vendor session may be
/// unusable, and a failed init half is no reason to replace the session then.
fn device_error(e: &Error) -> bool {
    crate::core::token::device_class(e.rv())
}

// The vendor operations and sessions (after `vcall!`, which they use).
mod ops;
mod pool;
mod sessions;
use ops::{OnSession, VendorVerifier};
use sessions::token_attr;
