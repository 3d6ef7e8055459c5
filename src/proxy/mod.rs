//! The module-slot passthrough: a `backend = "module"` slot is the vendor library's own
//! token, presented pointer for pointer (the p11-kit proxy's model). hsmux does not run its
//! PKCS#11 rules there: the vendor implements them, and consumers rely on its exact
//! behaviour (return codes, vendor mechanisms and attributes, multi-part and operation
//! state). hsmux only puts its own numbers on slots, sessions and objects, and gives every
//! vendor call a deadline.
//!
//! What lives here:
//! - [`Proxy`], the running state (the module slots and their sessions), in its own global
//!   with the core's fork-epoch rule; [`start`] / [`stop`] are called by the composition
//!   root with `C_Initialize` / `C_Finalize`, and `ffi`'s one dispatch point asks
//!   [`session`] / [`slot`] whether a handle is ours;
//! - `slot.rs`: [`ModuleSlot`] (library, token selector, PIN options, health);
//! - `forward/`: the forwarded calls, one file per family (token, session, objects,
//!   crypto, keys, 3.0 messages), all through one staged-call shape; `message.rs`:
//!   message-based AES-GCM for a 2.40 vendor; `params.rs`: handles inside mechanism
//!   parameters;
//! - `deadline.rs`: each vendor call on the consumer thread's worker, with `timeout_ms`;
//!   `stage.rs`: the memory the vendor reads and writes, owned by the call.
//!
//! Session handles come from the core's counter (`core::handles::new_session_handle`) and
//! object handles from the shared `HandleTable`, so no handle is both a core's and ours.
#![allow(unsafe_code)]

mod deadline;
mod forward;
mod message;
mod params;
mod session;
mod slot;
mod stage;

pub use session::PassSession;
pub use slot::{ModuleSlot, ModuleSlotSpec};

use crate::backend::module::library::Library;
use crate::core::handles::HandleTable;
use crate::core::instance::Live;
use arc_swap::ArcSwapOption;
use cryptoki_sys::*;
use dashmap::DashMap;
use std::sync::Arc;

/// The module slots and their sessions between `C_Initialize` and `C_Finalize`. Empty
/// (`None`) when no module slot is configured: then every lookup is one atomic load.
static PROXY: ArcSwapOption<Proxy> = ArcSwapOption::const_empty();

pub struct Proxy {
    /// The module slots, in configuration order.
    pub slots: Vec<Arc<ModuleSlot>>,
    sessions: DashMap<CK_SESSION_HANDLE, Arc<PassSession>>,
    epoch: u64,
}

/// Starts the module slots (each loads its library, shared with the others that name
/// it). Called by `C_Initialize` after the core's slots are built; `objects` is the shared
/// handle table.
pub fn start(slots: Vec<ModuleSlotSpec>, objects: Arc<HandleTable>) {
    if slots.is_empty() {
        PROXY.store(None);
        return;
    }
    let slots = slots
        .into_iter()
        .map(|s| Arc::new(ModuleSlot::new(s, objects.clone())))
        .collect();
    PROXY.store(Some(Arc::new(Proxy {
        slots,
        sessions: DashMap::new(),
        epoch: crate::core::instance::fork_epoch(),
    })));
}

/// `C_Finalize`: closes our sessions at the vendors (a library shared with another user
/// in the process is not finalized by us), then lets the libraries go.
pub fn stop() {
    let Some(p) = PROXY.swap(None) else { return };
    if p.epoch != crate::core::instance::fork_epoch() {
        // The parent's (inherited through fork()): its threads and locks are not ours.
        std::mem::forget(p);
        return;
    }
    let open: Vec<_> = p
        .sessions
        .iter()
        .map(|e| (*e.key(), e.value().clone()))
        .collect();
    for (h, s) in open {
        p.close_session(h, &s);
    }
}

/// Forgets the parent's state in a forked child's `C_Initialize`.
pub fn forget_parent() {
    if let Some(p) = PROXY.load_full() {
        if p.epoch != crate::core::instance::fork_epoch() {
            std::mem::forget(PROXY.swap(None));
            std::mem::forget(p);
        }
    }
}

/// The live proxy, if any module slot is configured (and we are initialized, in this
/// process).
#[inline]
pub fn get() -> Option<Live<Proxy>> {
    Live::load(&PROXY, |p| p.epoch == crate::core::instance::fork_epoch())
}

/// The module session behind handle `h`, if it is one.
#[inline]
pub fn session(h: CK_SESSION_HANDLE) -> Option<Arc<PassSession>> {
    get()?.sessions.get(&h).map(|s| s.clone())
}

/// The module slot with id `id`, if it is one.
#[inline]
pub fn slot(id: CK_SLOT_ID) -> Option<Arc<ModuleSlot>> {
    get()?.slots.iter().find(|m| m.id == id).cloned()
}

/// Open module sessions on the slot at configuration index `index` (the metrics'
/// `hsmux_sessions` gauge, with the core's).
pub fn open_sessions(index: usize) -> usize {
    get().map_or(0, |p| {
        p.sessions
            .iter()
            .filter(|s| s.value().slot.index == index)
            .count()
    })
}

impl Proxy {
    /// Opens a vendor session on module slot `m` and gives it an hsmux handle. With
    /// `want_handle` false (the consumer passed a NULL `phSession`) the vendor sees the NULL
    /// and answers it; one that still says CKR_OK gets the spec's code.
    pub fn open_session(
        &self,
        m: &Arc<ModuleSlot>,
        flags: CK_FLAGS,
        want_handle: bool,
    ) -> Result<CK_SESSION_HANDLE, CK_RV> {
        let vh = m.open_session(flags, want_handle)?;
        if !want_handle {
            m.close_vendor_session(vh);
            return Err(CKR_ARGUMENTS_BAD);
        }
        let h = crate::core::handles::new_session_handle();
        self.sessions
            .insert(h, Arc::new(PassSession::new(m.clone(), vh)));
        Ok(h)
    }

    /// `C_CloseSession` of a module session: the vendor's answer, and hsmux forgets it
    /// unless the vendor still holds it.
    pub fn close_session(&self, h: CK_SESSION_HANDLE, p: &PassSession) -> CK_RV {
        let rv = p.slot.close_vendor_session(p.vh);
        if matches!(
            rv,
            CKR_OK
                | CKR_SESSION_HANDLE_INVALID
                | CKR_SESSION_CLOSED
                | CKR_CRYPTOKI_NOT_INITIALIZED
                | CKR_DEVICE_REMOVED
        ) {
            self.sessions.remove(&h);
        }
        rv
    }

    /// `C_CloseAllSessions` of a module slot: each of hsmux's sessions there is closed at
    /// the vendor (other users of the vendor's slot keep theirs).
    pub fn close_all_sessions(&self, m: &Arc<ModuleSlot>) -> CK_RV {
        if let Err(rv) = m.vendor_slot() {
            return rv;
        }
        let mine: Vec<(CK_SESSION_HANDLE, Arc<PassSession>)> = self
            .sessions
            .iter()
            .filter(|e| Arc::ptr_eq(&e.value().slot, m))
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        for (h, p) in mine {
            self.close_session(h, &p);
        }
        CKR_OK
    }

    /// The distinct libraries behind the module slots.
    fn libraries(&self) -> Vec<&Arc<Library>> {
        let mut libraries: Vec<&Arc<Library>> = Vec::new();
        for m in &self.slots {
            if let Some(l) = m.shared_library() {
                if !libraries.iter().any(|x| Arc::ptr_eq(x, l)) {
                    libraries.push(l);
                }
            }
        }
        libraries
    }

    /// One round of `C_WaitForSlotEvent(CKF_DONT_BLOCK)` over the vendor libraries:
    /// `Ok(Some(id))` for an event on one of our slots, `Ok(None)` when some vendor could
    /// tell there was none, else the error.
    pub fn poll_slot_events(&self) -> Result<Option<CK_SLOT_ID>, CK_RV> {
        let mut supported = false;
        for lib in self.libraries() {
            match lib.poll_slot_event() {
                Ok(None) => supported = true,
                Ok(Some(vs)) => {
                    supported = true;
                    let mine = self.slots.iter().find(|m| {
                        m.shared_library().is_some_and(|l| Arc::ptr_eq(l, lib))
                            && m.vendor_slot() == Ok(vs)
                    });
                    if let Some(m) = mine {
                        return Ok(Some(m.id));
                    }
                }
                Err(_) => {}
            }
        }
        if supported {
            Ok(None)
        } else {
            Err(CKR_FUNCTION_NOT_SUPPORTED)
        }
    }

    /// A blocking `C_WaitForSlotEvent`: the one vendor library behind the module slots
    /// waits (its own answer, e.g. SoftHSM's CKR_FUNCTION_NOT_SUPPORTED); hsmux cannot
    /// block on several libraries at once, nor on its own fixed slots. No deadline: the
    /// call is meant to block until an event.
    pub fn wait_slot_event(&self) -> Result<CK_SLOT_ID, CK_RV> {
        let libraries = self.libraries();
        let [lib] = libraries.as_slice() else {
            return Err(CKR_FUNCTION_NOT_SUPPORTED);
        };
        loop {
            let vs = lib.wait_slot_event()?;
            let mine = self
                .slots
                .iter()
                .find(|m| m.vendor_slot() == Ok(vs))
                .map(|m| m.id);
            if let Some(id) = mine {
                return Ok(id);
            }
        }
    }
}
