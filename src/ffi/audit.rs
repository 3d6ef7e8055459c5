//! The audit trail at the C boundary (`crate::audit`): every exported function's body
//! runs through [`guard`], which, with a trail installed, classifies the call, remembers
//! each operation's mechanism and key from its `*Init` (read from the consumer's
//! arguments, for core and module slots alike), times the call and hands its line to the
//! trail. Without a trail it is `super::guard` after one relaxed load.
//!
//! Under `on_failure = "refuse"` a call that touches a key or the token is refused with
//! `CKR_DEVICE_ERROR` while the trail cannot be written, and a logged call answers
//! `CKR_DEVICE_ERROR` unless its line reached the file.

#![allow(clippy::unnecessary_cast)] // CK_ULONG is u32 on some targets

use super::Subject;
use crate::audit::calls::{self, Op, Role};
use crate::audit::{Event, KeyIdentity, Trail};
use crate::config::audit::AuditLevel;
use crate::core::error::Result;
use cryptoki_sys::*;
use std::sync::Arc;
use std::time::SystemTime;

/// The arguments of a call the trail reads, by their names in `exports.rs` (filled by
/// `exports!(@args ..)`; pointers are read only with a trail installed).
#[derive(Clone, Copy)]
pub(crate) struct Args {
    pub mech: *const CK_MECHANISM,
    /// The key the call uses (`hKey`, `hWrappingKey`, `hBaseKey`, ...).
    pub key: Option<CK_OBJECT_HANDLE>,
    /// The object the call is about (`C_DestroyObject`, the key `C_WrapKey` wraps).
    pub obj: Option<CK_OBJECT_HANDLE>,
    pub len: Option<CK_ULONG>,
    /// The output buffer, when the call has one (NULL: a length query).
    pub out: Option<*const u8>,
    /// Where the call writes the handle of an object it makes.
    pub new: *const CK_ULONG,
    pub user: Option<CK_USER_TYPE>,
    /// A key generation's (public) template, for the key-use policy (`super::policy`).
    pub template: *const CK_ATTRIBUTE,
    pub template_len: CK_ULONG,
    /// `C_OpenSession`'s flags.
    pub flags: CK_FLAGS,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            mech: std::ptr::null(),
            key: None,
            obj: None,
            len: None,
            out: None,
            new: std::ptr::null(),
            user: None,
            template: std::ptr::null(),
            template_len: 0,
            flags: 0,
        }
    }
}

/// Runs an exported function's body under `super::guard`, and under the audit trail when
/// one is installed.
#[inline(always)]
pub(crate) fn guard(
    name: &'static str,
    subject: Subject,
    args: Args,
    f: impl FnOnce() -> Result<()>,
) -> CK_RV {
    if !crate::audit::enabled() {
        return super::guard(name, subject, f);
    }
    // Inlined into each exported function with its own name, the lookup folds to a
    // constant: no string matching per call.
    audited(name, calls::role(name), subject, args, f)
}

/// Runs the call under the installed trail, or without one if the trail went away since
/// `guard` looked.
#[inline(never)]
fn audited(
    name: &'static str,
    role: Role,
    subject: Subject,
    args: Args,
    f: impl FnOnce() -> Result<()>,
) -> CK_RV {
    let mut body = Some(f);
    let audited = crate::audit::with_current(|t| {
        let Some(f) = body.take() else {
            return CKR_GENERAL_ERROR;
        };
        let level = t.level();
        let bookkeeping = matches!(role, Role::Init(_) | Role::Update(_) | Role::Close);
        if !bookkeeping && !role.logged(level, true) {
            return super::guard(name, subject, f);
        }
        let session = match subject {
            Subject::Session(h) => Some(h),
            _ => None,
        };
        // An operation's slot is the session's, kept by the trail from its first `*Init`
        // (looking it up costs two map lookups per call).
        let slot = match role {
            Role::Init(_) | Role::Use(_) if session.is_some() => None,
            _ => subject.slot_index(),
        };
        if role.guarded() && t.refusing() {
            log::error!(
                "{name}: refused with CKR_DEVICE_ERROR: the audit trail cannot be written (on_failure = \"refuse\")"
            );
            return CKR_DEVICE_ERROR;
        }
        // What the call is about, read before it runs (an object it destroys is gone after).
        let changed = args
            .obj
            .filter(|_| role == Role::Change)
            .map(|o| identity(t, session, o));
        // One clock read before the call (its time) and one after, only if it gets a line
        // (its duration, on the same clock, never negative).
        let mut ev = Event::new(name, slot);
        ev.key = changed;
        crate::metrics::clear_served();
        let rv = super::guard(name, subject, f);
        ev.replica = crate::metrics::served();
        ev.rv = rv;
        let ok = rv == CKR_OK;
        let mech = || unsafe { args.mech.as_ref() }.map(|m| m.mechanism);
        let mut query = false;
        match role {
            Role::Init(op) => {
                ev.mechanism = mech();
                match session {
                    Some(h) => {
                        let started = ok.then_some(ev.mechanism);
                        let resolve = |k| read_identity(Some(h), k);
                        let slot_of = || subject.slot_index();
                        let logged = level == AuditLevel::All;
                        (ev.slot, ev.key) =
                            t.init_op(h, slot_of, op, started, args.key, resolve, logged);
                    }
                    None => ev.key = args.key.map(|k| identity(t, session, k)),
                }
            }
            Role::Update(op) => {
                if let Some(h) = session {
                    match rv {
                        CKR_OK => t.add_len(h, op, args.len.unwrap_or(0) as u64),
                        CKR_BUFFER_TOO_SMALL => {}
                        _ => t.end_op(h, op),
                    }
                }
                ev.data_len = args.len.map(|n| n as u64);
            }
            Role::Use(op) => {
                query = !matches!(op, Op::Verify | Op::MessageVerify)
                    && args.out.is_some_and(|p| p.is_null());
                let ends = calls::ends_op(op, rv, query);
                let (r, slot) = session.map_or((None, None), |h| t.op(h, op, ends));
                ev.slot = slot.or_else(|| subject.slot_index());
                let r = r.unwrap_or_default();
                ev.mechanism = r.mechanism;
                ev.key = r.key;
                ev.data_len = Some(r.data_len + args.len.unwrap_or(0) as u64);
            }
            Role::UseKey | Role::UseKeyCreating | Role::Create => {
                query = args.out.is_some_and(|p| p.is_null());
                ev.mechanism = mech();
                ev.key = args.key.or(args.obj).map(|k| identity(t, session, k));
                ev.data_len = args.len.map(|n| n as u64);
                if args.key.is_some() {
                    ev.target = args.obj.map(|o| identity(t, session, o)); // what C_WrapKey wraps
                }
                if ok && !args.new.is_null() {
                    let h = unsafe { *args.new };
                    ev.new_key = Some(identity(t, session, h));
                }
            }
            Role::Change => {
                if let Some(o) = args.obj {
                    t.forget_key(o);
                }
            }
            Role::Auth => ev.user = args.user,
            Role::Close => match subject {
                Subject::Session(h) => t.close_session(h),
                Subject::Slot(_) => {
                    if let Some(i) = slot {
                        t.close_slot(i);
                    }
                }
                Subject::None => {}
            },
            Role::Read => {}
        }
        let skipped = level == AuditLevel::Keys && (query || rv == CKR_BUFFER_TOO_SMALL);
        if skipped || !role.logged(level, ok) {
            return rv;
        }
        ev.duration = SystemTime::now()
            .duration_since(ev.time)
            .unwrap_or_default();
        if !t.submit(ev) && t.strict() && role.guarded() {
            log::error!(
                "{name}: answered CKR_DEVICE_ERROR: its audit line could not be written (on_failure = \"refuse\")"
            );
            return CKR_DEVICE_ERROR;
        }
        rv
    });
    match (audited, body) {
        (Some(rv), _) => rv,
        (None, Some(f)) => super::guard(name, subject, f),
        (None, None) => CKR_GENERAL_ERROR,
    }
}

/// Registers (once per process) the `atexit` handler that writes what the trail holds
/// when the process exits without `C_Finalize` (`crate::audit::at_exit`).
pub(crate) fn flush_at_exit() {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    extern "C" fn at_exit() {
        crate::audit::at_exit();
    }
    AT_EXIT.call_once(|| {
        // SAFETY: registers a handler that takes no arguments and does not unwind
        // (`crate::audit::at_exit` only closes a queue and joins a thread).
        unsafe { libc::atexit(at_exit) };
    });
}

/// The label, `CKA_ID` and class of `obj` as session `session` sees it (cached per handle).
fn identity(
    t: &Trail,
    session: Option<CK_SESSION_HANDLE>,
    obj: CK_OBJECT_HANDLE,
) -> Arc<KeyIdentity> {
    t.key(obj, || read_identity(session, obj))
}

/// The label, `CKA_ID` and class of `obj`, read from the key store through `session`.
fn read_identity(session: Option<CK_SESSION_HANDLE>, obj: CK_OBJECT_HANDLE) -> KeyIdentity {
    let mut k = KeyIdentity::default();
    k.handle = obj;
    let Some(h) = session else { return k };
    let values = unsafe { super::policy::attributes(h, obj, &[CKA_LABEL, CKA_ID, CKA_CLASS]) };
    let mut it = values.into_iter();
    k.label = it
        .next()
        .flatten()
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    k.id = it.next().flatten();
    k.class = it
        .next()
        .flatten()
        .and_then(|v| <[u8; std::mem::size_of::<CK_ULONG>()]>::try_from(v.as_slice()).ok())
        .map(CK_ULONG::from_ne_bytes);
    k
}
