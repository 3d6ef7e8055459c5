//! Re-initialising a vendor library that got into a bad state (its connection to the
//! appliance died, it answers `CKR_DEVICE_REMOVED` forever): `C_Finalize` + `C_Initialize`
//! with the same init args, asked for by a module token whose replica keeps failing its
//! probes (`crate::replica`'s prober decides when, with back-off).
//!
//! A library is loaded once per path and shared (`library.rs`), so a re-initialisation
//! ends every session of every user of it. It is done only when that harms nobody who
//! still works:
//! - hsmux initialized the library itself (not someone else in the process);
//! - no plain module slot (the pointer passthrough, whose calls hsmux cannot hold back)
//!   uses it;
//! - every module token using it asked for it (each of their replicas is failing); while
//!   one still works, the others wait, logged once.
//!
//! PKCS#11 leaves `C_Finalize` undefined while other calls run in the library, so every
//! vendor call of a module token passes a gate (a read lock) that the re-initialisation
//! takes for writing: new calls wait, running ones are waited for within a grace period;
//! a call still running after it (hung in the vendor) puts the re-initialisation off.
//! Each one bumps the library's generation: tokens then forget their vendor sessions,
//! login and slot id (the handles of the old generation mean nothing, or someone else's
//! session, to the new one).

use super::library::{init_args_for, Library};
use crate::core::rv::name as rv_name;
use cryptoki_sys::*;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Who uses a library and its re-initialisation state.
pub struct Users {
    /// `Library::open` calls that returned this library (slots, replicas).
    opens: AtomicUsize,
    /// The module tokens among them: name and "asks for a re-initialisation".
    tokens: Mutex<Vec<(String, Arc<AtomicBool>)>>,
    gate: RwLock<()>,
    generation: AtomicU64,
    /// False between a `C_Finalize` and a successful `C_Initialize`.
    pub(super) initialized: AtomicBool,
}

impl Default for Users {
    fn default() -> Users {
        Users {
            opens: AtomicUsize::new(0),
            tokens: Mutex::new(Vec::new()),
            gate: RwLock::new(()),
            generation: AtomicU64::new(0),
            initialized: AtomicBool::new(true),
        }
    }
}

impl Users {
    pub(super) fn opened(&self) {
        self.opens.fetch_add(1, Ordering::SeqCst);
    }
}

/// A module token's registration with its library (dropped with the token).
pub struct Registration {
    lib: Arc<Library>,
    name: String,
    wants: Arc<AtomicBool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut tokens = self.lib.users.tokens.lock();
        tokens.retain(|(_, w)| !Arc::ptr_eq(w, &self.wants));
        self.lib.users.opens.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What [`Registration::restart`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Finalized and initialized again.
    Done,
    /// Not now (the reason is logged); asked again later.
    NotNow(String),
}

impl Library {
    /// Registers module token `name` (which opened the library) as one of its users.
    pub fn register(self: &Arc<Library>, name: &str) -> Registration {
        let wants = Arc::new(AtomicBool::new(false));
        self.users
            .tokens
            .lock()
            .push((name.to_string(), wants.clone()));
        Registration {
            lib: self.clone(),
            name: name.to_string(),
            wants,
        }
    }

    /// Passes the gate for one vendor call (held for the call's length).
    pub fn enter(&self) -> RwLockReadGuard<'_, ()> {
        self.users.gate.read()
    }

    /// Bumped by every re-initialisation: vendor sessions, logins and slot ids of an
    /// older generation are gone.
    pub fn generation(&self) -> u64 {
        self.users.generation.load(Ordering::Acquire)
    }
}

impl Registration {
    /// This token's replica works again: it no longer asks for a re-initialisation.
    pub fn working(&self) {
        self.wants.store(false, Ordering::SeqCst);
    }

    /// Asks for a re-initialisation of the library (see the module doc for when it is
    /// done); waits at most `grace` for running calls. Runs the vendor's `C_Finalize` and
    /// `C_Initialize` on the calling thread: call it where a hang costs no consumer.
    pub fn restart(&self, grace: Duration) -> Result<Outcome, CK_RV> {
        let lib = &self.lib;
        let path = lib.path.display();
        if !lib.we_initialized() {
            return Ok(self.not_now(format!(
                "{path} was initialized by someone else in this process: hsmux does not finalize it"
            )));
        }
        self.wants.store(true, Ordering::SeqCst);
        let tokens = lib.users.tokens.lock();
        if lib.users.opens.load(Ordering::SeqCst) > tokens.len() {
            return Ok(self.not_now(format!(
                "{path} is also used by a plain module slot (passthrough): not re-initialised"
            )));
        }
        if let Some((other, _)) = tokens.iter().find(|(_, w)| !w.load(Ordering::SeqCst)) {
            return Ok(self.not_now(format!(
                "{path} is also used by {other}, which still works: not re-initialised"
            )));
        }
        let Some(_held) = lib.users.gate.try_write_for(grace) else {
            return Ok(self.not_now(format!(
                "a call into {path} has not returned within {} ms: not re-initialised",
                grace.as_millis()
            )));
        };
        let args = lib
            .init_args
            .as_deref()
            .map(CString::new)
            .transpose()
            .map_err(|_| CKR_ARGUMENTS_BAD)?;
        lib.users.initialized.store(false, Ordering::SeqCst);
        lib.users.generation.fetch_add(1, Ordering::AcqRel);
        let fin = match lib.fl.C_Finalize {
            // SAFETY: no call of ours runs in the library (the gate is held for writing).
            Some(f) => unsafe { f(std::ptr::null_mut()) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        };
        let mut ia = init_args_for(args.as_ref());
        let init = match lib.fl.C_Initialize {
            // SAFETY: the same arguments as the first C_Initialize; `args` outlives it.
            Some(f) => unsafe { f(&mut ia as *mut _ as CK_VOID_PTR) },
            None => CKR_FUNCTION_NOT_SUPPORTED,
        };
        log::warn!(
            "{path}: re-initialised for {} (C_Finalize {}, C_Initialize {})",
            self.name,
            rv_name(fin),
            rv_name(init)
        );
        if init != CKR_OK && init != CKR_CRYPTOKI_ALREADY_INITIALIZED {
            return Err(init);
        }
        lib.users.initialized.store(true, Ordering::SeqCst);
        for (_, w) in tokens.iter() {
            w.store(false, Ordering::SeqCst);
        }
        Ok(Outcome::Done)
    }

    fn not_now(&self, why: String) -> Outcome {
        log::info!("{}: {why}", self.name);
        Outcome::NotNow(why)
    }
}
