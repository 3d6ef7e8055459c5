//! A session of a module slot: hsmux's handle stands for the vendor's, plus the state of
//! the message-based AES-GCM that hsmux runs itself for a 2.40 vendor (`message.rs`).

use super::slot::ModuleSlot;
use cryptoki_sys::*;
use std::sync::Arc;

pub struct PassSession {
    pub slot: Arc<ModuleSlot>,
    pub vh: CK_SESSION_HANDLE,
    pub(super) messages: parking_lot::Mutex<Messages>,
}

impl PassSession {
    pub fn new(slot: Arc<ModuleSlot>, vh: CK_SESSION_HANDLE) -> PassSession {
        PassSession {
            slot,
            vh,
            messages: Default::default(),
        }
    }
}

/// The emulated message operations in progress on one session.
#[derive(Default)]
pub struct Messages {
    pub(super) encrypt: Option<MessageKey>,
    pub(super) decrypt: Option<MessageKey>,
}

pub(super) struct MessageKey {
    /// The vendor's handle of the AES key.
    pub(super) key: CK_OBJECT_HANDLE,
    /// Messages encrypted so far, for the counter IV generators.
    pub(super) counter: u64,
}
