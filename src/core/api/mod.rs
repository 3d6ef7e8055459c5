//! The PKCS#11 functions in safe Rust, grouped as the spec groups them. The FFI layer
//! converts pointers to these arguments and these results back.

pub mod crypto;
pub mod general;
pub mod keys;
pub mod message;
pub mod object;
pub mod session;

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
    crate::metrics::note_slot(guard.slot.index);
    f(&inst, &mut guard)
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
