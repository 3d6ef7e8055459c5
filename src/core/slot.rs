//! A slot: a configured key store with the application's login state on it.

use crate::backend::{Login, Token};
use parking_lot::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

pub struct Slot {
    pub id: u64,
    /// The label from the config (the soft token may be renamed by C_InitToken).
    pub label: String,
    pub token: Arc<dyn Token>,
    /// Who is logged in: one state for all sessions of this application on the slot.
    pub login: Mutex<Login>,
    pub sessions: AtomicUsize,
    pub ro_sessions: AtomicUsize,
}

impl Slot {
    pub fn new(id: u64, label: String, token: Arc<dyn Token>) -> Self {
        Slot {
            id,
            label,
            token,
            login: Mutex::new(Login::Public),
            sessions: AtomicUsize::new(0),
            ro_sessions: AtomicUsize::new(0),
        }
    }
}
