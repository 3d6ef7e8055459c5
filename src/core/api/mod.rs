//! The PKCS#11 functions in safe Rust, grouped as the spec groups them. The FFI layer
//! converts pointers to these arguments and these results back.

pub mod crypto;
pub mod general;
pub mod keys;
pub mod message;
pub mod object;
pub mod session;
pub mod v32;

use crate::core::error::Result;
use crate::core::instance::{self, Instance};
use crate::core::mechanism::{MechParam, Mechanism};
use crate::core::session::Session;
use crate::core::token::Ctx;
use cryptoki_sys::*;

/// Runs `f` on the session `h` (locked for the call), with the instance.
pub(crate) fn with_session<T>(
    h: CK_SESSION_HANDLE,
    f: impl FnOnce(&Instance, &mut Session) -> Result<T>,
) -> Result<T> {
    let inst = instance::get()?;
    let s = inst.session(h)?;
    let mut guard = s.lock();
    f(&inst, &mut guard)
}

/// The configuration index of the slot that core session `h` is on, if it is open: for
/// the caller's bookkeeping, e.g. the metrics' slot label.
pub fn slot_of_session(h: CK_SESSION_HANDLE) -> Option<usize> {
    let inst = instance::get().ok()?;
    let s = inst.sessions.get(&h).map(|s| s.clone())?;
    let index = s.lock().slot.index;
    Some(index)
}

/// The configuration index of slot `id` (of any kind), if it exists.
pub fn slot_of_id(id: CK_SLOT_ID) -> Option<usize> {
    let inst = instance::get().ok()?;
    inst.all_slots.iter().position(|i| *i == id)
}

/// Open core sessions on the slot at configuration index `index`, now: what the metrics'
/// `hsmux_sessions` gauge shows (with the module slots' sessions, `crate::proxy`).
pub fn open_sessions(index: usize) -> usize {
    let Ok(inst) = instance::get() else {
        return 0;
    };
    inst.slots
        .iter()
        .filter(|s| s.index == index)
        .map(|s| s.sessions.load(std::sync::atomic::Ordering::Relaxed))
        .sum()
}

/// The slot index and context of a session.
pub(crate) fn ctx_of(inst: &Instance, s: &Session) -> (usize, Ctx) {
    (inst.slot_position(&s.slot), s.ctx())
}

/// Translates object handles inside a mechanism parameter to backend ids.
pub(crate) fn translate_mech(inst: &Instance, slot: usize, mech: &Mechanism) -> Result<Mechanism> {
    match mech.param {
        MechParam::Key(h) => {
            let id = inst.object(slot, h as CK_OBJECT_HANDLE, CKR_MECHANISM_PARAM_INVALID)?;
            Ok(Mechanism::with(mech.mech, MechParam::Key(id)))
        }
        _ => Ok(mech.clone()),
    }
}
