//! A slot: a configured key store with the application's login state on it.

use crate::config::PinCheck;
use crate::core::token::{Login, Token};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Slot {
    pub id: u64,
    /// Position in the configuration (the metrics' slot index).
    pub index: usize,
    /// The label from the config (the soft token may be renamed by C_InitToken).
    pub label: String,
    pub token: Arc<dyn Token>,
    /// Who is logged in: one state for all sessions of this application on the slot.
    /// Changes happen under the mutex; every call reads the atomic copy without locking.
    pub login: Mutex<Login>,
    login_now: AtomicU8,
    pub sessions: AtomicUsize,
    pub ro_sessions: AtomicUsize,
    /// `user_pin = { sha256 }`: checked before the token sees a user PIN.
    pub user_pin: Option<PinCheck>,
}

impl Slot {
    /// The login state, read without a lock.
    pub fn login_state(&self) -> Login {
        match self.login_now.load(Ordering::Acquire) {
            1 => Login::User,
            2 => Login::So,
            _ => Login::Public,
        }
    }

    /// Records a new login state; call with `login` locked.
    pub fn set_login(&self, guard: &mut Login, now: Login) {
        *guard = now;
        self.login_now.store(
            match now {
                Login::Public => 0,
                Login::User => 1,
                Login::So => 2,
            },
            Ordering::Release,
        );
    }

    pub fn new(
        id: u64,
        index: usize,
        label: String,
        token: Arc<dyn Token>,
        user_pin: Option<PinCheck>,
    ) -> Self {
        Slot {
            id,
            index,
            label,
            token,
            login: Mutex::new(Login::Public),
            login_now: AtomicU8::new(0),
            sessions: AtomicUsize::new(0),
            ro_sessions: AtomicUsize::new(0),
            user_pin,
        }
    }
}
