//! General-purpose, slot and token functions (PKCS#11 §5.4, §5.5).

use crate::core::error::{err, Error, Result};
use crate::core::instance;
use crate::core::token::TokenInfo;
use cryptoki_sys::*;
use std::sync::atomic::Ordering;

pub const MANUFACTURER: &str = "hsmux";
pub const LIBRARY_DESCRIPTION: &str = "hsmux PKCS#11 multiplexer";

/// Slot ids, in configuration order. Core slots always have their token; another slot (a
/// module slot, which the core does not run) has it when `present(id)` says so.
pub fn slot_list(
    token_present: bool,
    present: impl Fn(CK_SLOT_ID) -> bool,
) -> Result<Vec<CK_SLOT_ID>> {
    let inst = instance::get()?;
    Ok(inst
        .all_slots
        .iter()
        .filter(|id| !token_present || inst.slots.iter().any(|s| s.id == **id) || present(**id))
        .copied()
        .collect())
}

pub struct SlotInfo {
    pub description: String,
    pub manufacturer: String,
    pub flags: CK_FLAGS,
}

pub fn slot_info(slot: CK_SLOT_ID) -> Result<SlotInfo> {
    let inst = instance::get()?;
    let s = inst.slot(slot)?;
    Ok(SlotInfo {
        description: s.token.slot_description(),
        manufacturer: MANUFACTURER.into(),
        flags: CKF_TOKEN_PRESENT,
    })
}

/// Token info plus the session counts the core keeps.
pub fn token_info(slot: CK_SLOT_ID) -> Result<(TokenInfo, CK_ULONG, CK_ULONG)> {
    let inst = instance::get()?;
    let s = inst.slot(slot)?;
    let info = s.token.token_info()?;
    let all = s.sessions.load(Ordering::Relaxed) as CK_ULONG;
    let ro = s.ro_sessions.load(Ordering::Relaxed) as CK_ULONG;
    Ok((info, all, all.saturating_sub(ro)))
}

pub fn mechanism_list(slot: CK_SLOT_ID) -> Result<Vec<CK_MECHANISM_TYPE>> {
    let inst = instance::get()?;
    Ok(inst.slot(slot)?.token.mechanisms())
}

pub fn mechanism_info(slot: CK_SLOT_ID, mech: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO> {
    let inst = instance::get()?;
    inst.slot(slot)?.token.mechanism_info(mech)
}

/// `C_InitToken`: refused while any session is open on the slot.
pub fn init_token(slot: CK_SLOT_ID, so_pin: &[u8], label: &[u8; 32]) -> Result<()> {
    let inst = instance::get()?;
    let s = inst.slot(slot)?;
    if s.sessions.load(Ordering::SeqCst) > 0 {
        return Err(Error::logged(
            CKR_SESSION_EXISTS,
            "C_InitToken: close all sessions of the slot first",
        ));
    }
    // 32 bytes blank-padded; a consumer that NUL-terminates it (a C string) means it to
    // end there, whatever follows (other modules read it the same way).
    let label = &label[..label.iter().position(|b| *b == 0).unwrap_or(label.len())];
    let label = std::str::from_utf8(label).map_err(|_| err(CKR_ARGUMENTS_BAD))?;
    s.token.init_token(so_pin, label.trim_end())?;
    let mut login = s.login.lock();
    s.set_login(&mut login, crate::core::token::Login::Public);
    Ok(())
}
