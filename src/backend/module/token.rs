//! A vendor token as a [`Token`]: what a module replica of a replica group is
//! (`crate::replica`), and a `backend = "cloudhsm"` slot or replica (with a health hook).
//! Unlike the passthrough of a plain module slot (`crate::proxy`), every call here works on
//! owned data and runs with a deadline on the replica's worker threads (`worker.rs`), so
//! that a vendor that hangs costs the consumer at most `timeout` and a failover.
//!
//! Object ids are the vendor's handles. Each hsmux session has its own vendor session; a
//! separate "anchor" session holds the login, which the vendor keeps while any session of
//! the application is open.

use super::encode::{OwnedMechanism, OwnedTemplate};
use super::library::Library;
use super::worker::Workers;
use crate::config::{ModuleConfig, TokenSelector};
use crate::core::attr::{Attr, AttrValue};
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::Mechanism;
use crate::core::op::{Cipher, Signer, Verifier};
use crate::core::token::{Ctx, Login, ObjectId, Token, TokenInfo};
use cryptoki_sys::*;
use dashmap::DashMap;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const UNRESOLVED: u64 = u64::MAX;

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
    select: TokenSelector,
    vendor_slot: AtomicU64,
    timeout: Duration,
    workers: Workers,
    /// hsmux session -> vendor session.
    sessions: DashMap<CK_SESSION_HANDLE, CK_SESSION_HANDLE>,
    /// The session the login is made on (opened by the first login).
    anchor: Mutex<Option<CK_SESSION_HANDLE>>,
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
        ModuleToken {
            inner: Arc::new(Inner {
                name: name.to_string(),
                lib,
                select: cfg.select.clone(),
                vendor_slot: AtomicU64::new(UNRESOLVED),
                timeout: Duration::from_millis(cfg.timeout_ms),
                workers: Workers::new(name),
                sessions: DashMap::new(),
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
    /// Runs `f` on a worker with the call deadline; a timeout is `TIMED_OUT` with a log line.
    fn run<R: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(Lib) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let lib = match &self.lib {
            Ok(l) => Lib(l.clone()),
            Err(_) => return Err(err(CKR_DEVICE_REMOVED)),
        };
        match self.workers.run(self.timeout, move || f(lib)) {
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

    fn vendor_slot(&self) -> Result<CK_SLOT_ID> {
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

    fn open_vendor_session(&self, rw: bool) -> Result<CK_SESSION_HANDLE> {
        let vs = self.vendor_slot()?;
        let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
        self.run("C_OpenSession", move |lib| {
            let mut h = 0;
            check(vcall!(
                lib,
                C_OpenSession(vs, flags, std::ptr::null_mut(), None, &mut h)
            ))?;
            Ok(h)
        })
    }

    /// The vendor session of hsmux session `h` (opened read/write on first need: the
    /// core has checked the consumer's session flags already).
    fn session(&self, h: CK_SESSION_HANDLE) -> Result<CK_SESSION_HANDLE> {
        if let Some(v) = self.sessions.get(&h) {
            return Ok(*v);
        }
        let v = self.open_vendor_session(true)?;
        self.sessions.insert(h, v);
        Ok(v)
    }

    /// Forgets a vendor session that failed (the vendor lost it or hung in it).
    fn drop_session(&self, h: CK_SESSION_HANDLE) {
        self.sessions.remove(&h);
    }

    /// A vendor operation that will never be finished (the core dropped it, or its init
    /// half failed) would keep the vendor session busy (`CKR_OPERATION_ACTIVE` at the
    /// next init), and a 2.40 vendor cannot cancel one: the session is replaced. The old
    /// one is closed on a worker, so that a hung vendor does not hold the caller.
    fn abandon(&self, h: CK_SESSION_HANDLE, vs: CK_SESSION_HANDLE) {
        self.sessions.remove_if(&h, |_, v| *v == vs);
        if let Ok(lib) = &self.lib {
            let lib = Lib(lib.clone());
            self.workers.detach(move || {
                vcall!(lib, C_CloseSession(vs));
            });
        }
    }

    /// Runs an `*Init` on hsmux session `h`'s vendor session; a session left busy by an
    /// earlier operation is replaced once.
    fn init<R: Send + 'static>(
        &self,
        what: &str,
        h: CK_SESSION_HANDLE,
        f: impl Fn(Lib, CK_SESSION_HANDLE) -> Result<R> + Send + Sync + Clone + 'static,
    ) -> Result<(CK_SESSION_HANDLE, R)> {
        for attempt in 0..2 {
            let vs = self.session(h)?;
            let g = f.clone();
            match self.run(what, move |lib| g(lib, vs)) {
                Ok(r) => return Ok((vs, r)),
                Err(e) if e.rv() == CKR_OPERATION_ACTIVE && attempt == 0 => {
                    log::info!(
                        "replica {}: {what}: a vendor session was still busy; replaced",
                        self.name
                    );
                    self.abandon(h, vs);
                }
                Err(e) => {
                    note_failure(self, h, &e);
                    return Err(e);
                }
            }
        }
        Err(err(CKR_OPERATION_ACTIVE))
    }

    fn anchor(&self) -> Result<CK_SESSION_HANDLE> {
        let mut a = self.anchor.lock();
        if let Some(v) = *a {
            return Ok(v);
        }
        let v = self.open_vendor_session(false)?;
        *a = Some(v);
        Ok(v)
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
        match &self.health {
            Some(health) => health(),
            None => Ok(()),
        }
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

    fn open_session(&self, session: CK_SESSION_HANDLE, rw: bool) -> Result<()> {
        let v = self.inner.open_vendor_session(rw)?;
        self.inner.sessions.insert(session, v);
        Ok(())
    }

    fn close_session(&self, session: CK_SESSION_HANDLE) -> Vec<ObjectId> {
        if let Some((_, v)) = self.inner.sessions.remove(&session) {
            let _ = self.inner.run("C_CloseSession", move |lib| {
                check(vcall!(lib, C_CloseSession(v)))
            });
        }
        Vec::new()
    }

    fn login(&self, who: Login, pin: &[u8]) -> Result<()> {
        let a = self.inner.anchor()?;
        let user = if who == Login::So { CKU_SO } else { CKU_USER };
        let pin = zeroize::Zeroizing::new(pin.to_vec());
        self.inner.run("C_Login", move |lib| {
            let mut pin = pin;
            match vcall!(
                lib,
                C_Login(a, user, pin.as_mut_ptr(), pin.len() as CK_ULONG)
            ) {
                CKR_OK | CKR_USER_ALREADY_LOGGED_IN => Ok(()),
                rv => Err(Error::new(rv)),
            }
        })
    }

    fn logout(&self) {
        let a = self.inner.anchor.lock().take();
        if let Some(a) = a {
            let _ = self.inner.run("C_Logout", move |lib| {
                vcall!(lib, C_Logout(a));
                check(vcall!(lib, C_CloseSession(a)))
            });
        }
    }

    fn find_objects(&self, ctx: &Ctx, template: &[Attr]) -> Result<Vec<ObjectId>> {
        let vs = self.inner.session(ctx.session)?;
        let mut t = OwnedTemplate::new(template);
        self.inner.run("C_FindObjects", move |lib| {
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
        let vs = self.inner.session(ctx.session)?;
        let types = types.to_vec();
        self.inner.run("C_GetAttributeValue", move |lib| {
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
        let vs = self.inner.session(ctx.session)?;
        let mut t = OwnedTemplate::new(template);
        self.inner.run("C_SetAttributeValue", move |lib| {
            check(vcall!(
                lib,
                C_SetAttributeValue(vs, obj as CK_OBJECT_HANDLE, t.as_ptr(), t.len())
            ))
        })
    }

    fn create_object(&self, ctx: &Ctx, template: &[Attr]) -> Result<ObjectId> {
        let vs = self.inner.session(ctx.session)?;
        let mut t = OwnedTemplate::new(template);
        self.inner.run("C_CreateObject", move |lib| {
            let mut h = 0;
            check(vcall!(lib, C_CreateObject(vs, t.as_ptr(), t.len(), &mut h)))?;
            Ok(h as ObjectId)
        })
    }

    fn copy_object(&self, ctx: &Ctx, obj: ObjectId, template: &[Attr]) -> Result<ObjectId> {
        let vs = self.inner.session(ctx.session)?;
        let mut t = OwnedTemplate::new(template);
        self.inner.run("C_CopyObject", move |lib| {
            let mut h = 0;
            check(vcall!(
                lib,
                C_CopyObject(vs, obj as CK_OBJECT_HANDLE, t.as_ptr(), t.len(), &mut h)
            ))?;
            Ok(h as ObjectId)
        })
    }

    fn destroy_object(&self, ctx: &Ctx, obj: ObjectId) -> Result<()> {
        let vs = self.inner.session(ctx.session)?;
        self.inner.run("C_DestroyObject", move |lib| {
            check(vcall!(lib, C_DestroyObject(vs, obj as CK_OBJECT_HANDLE)))
        })
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
        let (vs, ()) = self
            .inner
            .init("C_VerifyInit", ctx.session, move |lib, vs| {
                let mut m = OwnedMechanism::new(&mech);
                check(vcall!(
                    lib,
                    C_VerifyInit(vs, m.as_ptr(), key as CK_OBJECT_HANDLE)
                ))
            })?;
        Ok(Box::new(VendorVerifier {
            inner: self.inner.clone(),
            vs,
            session: ctx.session,
            done: false,
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
        let vs = self.inner.session(ctx.session)?;
        let mut m = OwnedMechanism::new(mech);
        let (mut tp, mut ts) = (OwnedTemplate::new(public), OwnedTemplate::new(private));
        self.inner.run("C_GenerateKeyPair", move |lib| {
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
        })
    }

    fn wrap_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        wrapping: ObjectId,
        key: ObjectId,
    ) -> Result<Vec<u8>> {
        let vs = self.inner.session(ctx.session)?;
        let mut m = OwnedMechanism::new(mech);
        self.inner.run("C_WrapKey", move |lib| {
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
        let a = self.inner.anchor()?;
        let n = out.len();
        let bytes = self.inner.run("C_GenerateRandom", move |lib| {
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
        let vs = self.inner.session(ctx.session)?;
        let mut m = OwnedMechanism::new(mech);
        let mut t = OwnedTemplate::new(template);
        self.inner.run(what, move |lib| {
            let mut h = 0;
            check(call(&lib, vs, m.as_ptr(), &mut t, &mut h))?;
            Ok(h as ObjectId)
        })
    }

    fn cipher(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        key: ObjectId,
        encrypt: bool,
    ) -> Result<Box<dyn Cipher>> {
        let mech = Arc::new(mech.clone());
        let what = if encrypt {
            "C_EncryptInit"
        } else {
            "C_DecryptInit"
        };
        let (vs, ()) = self.inner.init(what, ctx.session, move |lib, vs| {
            let mut m = OwnedMechanism::new(&mech);
            let k = key as CK_OBJECT_HANDLE;
            check(if encrypt {
                vcall!(lib, C_EncryptInit(vs, m.as_ptr(), k))
            } else {
                vcall!(lib, C_DecryptInit(vs, m.as_ptr(), k))
            })
        })?;
        Ok(Box::new(VendorCipher {
            inner: self.inner.clone(),
            vs,
            session: ctx.session,
            encrypt,
            done: false,
        }))
    }

    /// A signature (`key` given) or a digest; its length is asked now (a length query
    /// keeps the operation), as the core needs it before the data comes.
    fn signer(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        key: Option<ObjectId>,
    ) -> Result<Box<dyn Signer>> {
        let mech = Arc::new(mech.clone());
        let what = if key.is_some() {
            "C_SignInit"
        } else {
            "C_DigestInit"
        };
        let (vs, len) = self.inner.init(what, ctx.session, move |lib, vs| {
            let mut m = OwnedMechanism::new(&mech);
            match key {
                Some(k) => check(vcall!(
                    lib,
                    C_SignInit(vs, m.as_ptr(), k as CK_OBJECT_HANDLE)
                ))?,
                None => check(vcall!(lib, C_DigestInit(vs, m.as_ptr())))?,
            }
            let mut probe = [0u8; 32];
            let mut n: CK_ULONG = 0;
            let rv = match key {
                Some(_) => vcall!(
                    lib,
                    C_Sign(vs, probe.as_mut_ptr(), 32, std::ptr::null_mut(), &mut n)
                ),
                None => vcall!(
                    lib,
                    C_Digest(vs, probe.as_mut_ptr(), 32, std::ptr::null_mut(), &mut n)
                ),
            };
            // The init half succeeded: an error here leaves the operation active, which
            // the caller's abandon() clears (the code says so: OPERATION_ACTIVE next time).
            check(rv).map(|()| Some(n as usize)).or_else(|e| {
                if device_error(&e) {
                    Err(e)
                } else {
                    Ok(None)
                }
            })
        })?;
        let Some(len) = len else {
            self.inner.abandon(ctx.session, vs);
            return Err(err(CKR_FUNCTION_FAILED));
        };
        Ok(Box::new(VendorSigner {
            inner: self.inner.clone(),
            vs,
            session: ctx.session,
            len,
            digest: key.is_none(),
            done: false,
        }))
    }
}

/// A failed call on a vendor session: a session the vendor no longer knows is forgotten,
/// so that the next use opens a new one.
fn note_failure(inner: &Inner, session: CK_SESSION_HANDLE, e: &Error) {
    if matches!(
        e.rv(),
        CKR_SESSION_HANDLE_INVALID | CKR_SESSION_CLOSED | TIMED_OUT | CKR_DEVICE_REMOVED
    ) {
        inner.drop_session(session);
    }
}

/// A device-class failure (the replica, not the request): the vendor session may be
/// unusable, and a failed init half is no reason to replace the session then.
fn device_error(e: &Error) -> bool {
    crate::core::token::device_class(e.rv())
}

// The vendor operations (after `vcall!`, which they use).
mod ops;
use ops::{VendorCipher, VendorSigner, VendorVerifier};
