//! Session management and login (PKCS#11 §5.6).

use super::with_session;
use crate::core::error::{err, Error, Result};
use crate::core::instance::{self, Instance};
use crate::core::session::Session;
use crate::core::slot::Slot;
use crate::core::token::Login;
use cryptoki_sys::*;
use parking_lot::Mutex;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub fn open_session(slot: CK_SLOT_ID, flags: CK_FLAGS) -> Result<CK_SESSION_HANDLE> {
    let inst = instance::get()?;
    let s = inst.slot(slot)?.clone();
    if flags & CKF_SERIAL_SESSION == 0 {
        return Err(err(CKR_SESSION_PARALLEL_NOT_SUPPORTED));
    }
    let rw = flags & CKF_RW_SESSION != 0;
    if !rw && s.login_state() == Login::So {
        return Err(err(CKR_SESSION_READ_WRITE_SO_EXISTS));
    }
    let h = inst.new_session_handle();
    s.token.open_session(h, rw)?;
    s.sessions.fetch_add(1, Ordering::SeqCst);
    if !rw {
        s.ro_sessions.fetch_add(1, Ordering::SeqCst);
    }
    inst.sessions
        .insert(h, Arc::new(Mutex::new(Session::new(h, s, rw))));
    Ok(h)
}

/// Ends a session: its session objects go, and the slot logs out with its last session.
fn end_session(inst: &Instance, h: CK_SESSION_HANDLE) -> Result<()> {
    let (_, sess) = inst
        .sessions
        .remove(&h)
        .ok_or_else(|| err(CKR_SESSION_HANDLE_INVALID))?;
    let (slot, rw) = {
        let s = sess.lock();
        (s.slot.clone(), s.rw)
    };
    let pos = inst.slot_position(&slot);
    for id in slot.token.close_session(h) {
        inst.objects.forget(pos, id);
    }
    if !rw {
        slot.ro_sessions.fetch_sub(1, Ordering::SeqCst);
    }
    if slot.sessions.fetch_sub(1, Ordering::SeqCst) == 1 {
        logout_slot(&slot);
    }
    Ok(())
}

fn logout_slot(slot: &Slot) {
    let mut login = slot.login.lock();
    if *login != Login::Public {
        slot.token.logout();
        slot.set_login(&mut login, Login::Public);
    }
}

pub fn close_session(h: CK_SESSION_HANDLE) -> Result<()> {
    let inst = instance::get()?;
    end_session(&inst, h)
}

pub fn close_all_sessions(slot: CK_SLOT_ID) -> Result<()> {
    let inst = instance::get()?;
    let s = inst.slot(slot)?.clone();
    let handles: Vec<CK_SESSION_HANDLE> = inst
        .sessions
        .iter()
        .filter(|e| Arc::ptr_eq(&e.value().lock().slot, &s))
        .map(|e| *e.key())
        .collect();
    for h in handles {
        let _ = end_session(&inst, h);
    }
    Ok(())
}

pub struct SessionInfo {
    pub slot: CK_SLOT_ID,
    pub state: CK_STATE,
    pub flags: CK_FLAGS,
}

pub fn session_info(h: CK_SESSION_HANDLE) -> Result<SessionInfo> {
    with_session(h, |_, s| {
        Ok(SessionInfo {
            slot: s.slot.id as CK_SLOT_ID,
            state: s.state(),
            flags: CKF_SERIAL_SESSION | if s.rw { CKF_RW_SESSION } else { 0 },
        })
    })
}

/// PIN length limit when a token cannot tell its own (its token info failed).
const FALLBACK_MAX_PIN_LEN: usize = 255;

/// The longest PIN the session's token takes (`ulMaxPinLen`), for the FFI edge to check a
/// PIN length against before the PIN is read.
pub fn max_pin_len(h: CK_SESSION_HANDLE) -> Result<usize> {
    let inst = instance::get()?;
    let slot = inst.session(h)?.lock().slot.clone();
    Ok(slot_max_pin_len(&slot))
}

/// The same for a slot (`C_InitToken`).
pub fn max_pin_len_of_slot(slot: CK_SLOT_ID) -> Result<usize> {
    let inst = instance::get()?;
    Ok(slot_max_pin_len(inst.slot(slot)?))
}

fn slot_max_pin_len(slot: &Slot) -> usize {
    slot.token
        .token_info()
        .ok()
        .and_then(|t| usize::try_from(t.max_pin_len).ok())
        .filter(|n| *n > 0)
        .unwrap_or(FALLBACK_MAX_PIN_LEN)
}

pub fn login(h: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, pin: &[u8]) -> Result<()> {
    let inst = instance::get()?;
    let slot = inst.session(h)?.lock().slot.clone();
    let who = match user_type {
        CKU_SO => Login::So,
        CKU_USER => Login::User,
        CKU_CONTEXT_SPECIFIC => return context_login(h, pin),
        _ => return Err(err(CKR_USER_TYPE_INVALID)),
    };
    let mut state = slot.login.lock();
    match (*state, who) {
        (Login::Public, _) => {}
        (current, wanted) if current == wanted => return Err(err(CKR_USER_ALREADY_LOGGED_IN)),
        _ => return Err(err(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)),
    }
    if who == Login::So && slot.ro_sessions.load(Ordering::SeqCst) > 0 {
        return Err(Error::logged(
            CKR_SESSION_READ_ONLY_EXISTS,
            "SO login needs all sessions of the slot read/write",
        ));
    }
    if who == Login::User && slot.user_pin.as_ref().is_some_and(|c| !c.matches(pin)) {
        return Err(Error::logged(
            CKR_PIN_INCORRECT,
            format!(
                "slot {}: C_Login: the PIN does not match `user_pin`",
                slot.id
            ),
        ));
    }
    slot.token.login(who, pin)?;
    slot.set_login(&mut state, who);
    Ok(())
}

/// `C_Login(CKU_CONTEXT_SPECIFIC)`: authorizes the signature or decryption just
/// initialized with a CKA_ALWAYS_AUTHENTICATE key.
fn context_login(h: CK_SESSION_HANDLE, pin: &[u8]) -> Result<()> {
    with_session(h, |_, s| {
        if s.sign.is_none() && s.decrypt.is_none() {
            return Err(err(CKR_OPERATION_NOT_INITIALIZED));
        }
        if s.slot.login_state() != Login::User {
            return Err(err(CKR_USER_NOT_LOGGED_IN));
        }
        s.slot.token.login(Login::User, pin)?;
        for a in s.sign.iter_mut() {
            a.needs_auth = false;
        }
        for a in s.decrypt.iter_mut() {
            a.needs_auth = false;
        }
        Ok(())
    })
}

pub fn logout(h: CK_SESSION_HANDLE) -> Result<()> {
    let inst = instance::get()?;
    let slot = inst.session(h)?.lock().slot.clone();
    let mut state = slot.login.lock();
    if *state == Login::Public {
        return Err(err(CKR_USER_NOT_LOGGED_IN));
    }
    slot.token.logout();
    slot.set_login(&mut state, Login::Public);
    Ok(())
}

pub fn init_pin(h: CK_SESSION_HANDLE, pin: &[u8]) -> Result<()> {
    with_session(h, |_, s| {
        if s.slot.login_state() != Login::So {
            return Err(err(CKR_USER_NOT_LOGGED_IN));
        }
        if !s.rw {
            return Err(err(CKR_SESSION_READ_ONLY));
        }
        s.slot.token.init_pin(pin)
    })
}

pub fn set_pin(h: CK_SESSION_HANDLE, old: &[u8], new: &[u8]) -> Result<()> {
    with_session(h, |_, s| {
        if !s.rw {
            return Err(err(CKR_SESSION_READ_ONLY));
        }
        let who = match s.slot.login_state() {
            Login::So => Login::So,
            _ => Login::User,
        };
        s.slot.token.set_pin(who, old, new)
    })
}
