//! hsmux's object handles: the numbers consumers see, each standing for one object of one
//! slot's backend (a soft-token id, a vendor module's handle). Shared by all slots, so that
//! two backends that hand out the same number never clash.

use crate::core::int_hash::IntHash;
use crate::core::token::ObjectId;
use cryptoki_sys::*;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// hsmux's object handles and the (slot, backend object) each one stands for. A handle is
/// never reused while the module is initialized, and one backend object keeps one handle.
#[derive(Default)]
pub struct HandleTable {
    by_handle: DashMap<CK_OBJECT_HANDLE, (usize, ObjectId), IntHash>,
    by_object: DashMap<(usize, ObjectId), CK_OBJECT_HANDLE, IntHash>,
    next: AtomicU64,
}

impl HandleTable {
    pub fn handle_for(&self, slot: usize, id: ObjectId) -> CK_OBJECT_HANDLE {
        if let Some(h) = self.by_object.get(&(slot, id)) {
            return *h;
        }
        self.handle_for_new(slot, id)
    }

    /// [`Self::handle_for`] for an object the token has just made: the same answer, without
    /// first looking for a handle on the read path, which misses for a new object (perf: a
    /// twentieth of `C_EncapsulateKey`'s own time went to that miss).
    pub fn handle_for_new(&self, slot: usize, id: ObjectId) -> CK_OBJECT_HANDLE {
        *self.by_object.entry((slot, id)).or_insert_with(|| {
            let h = self.next.fetch_add(1, Ordering::Relaxed) + 1;
            self.by_handle.insert(h, (slot, id));
            h
        })
    }

    pub fn resolve(&self, h: CK_OBJECT_HANDLE) -> Option<(usize, ObjectId)> {
        self.by_handle.get(&h).map(|v| *v)
    }

    pub fn forget(&self, slot: usize, id: ObjectId) {
        if let Some((_, h)) = self.by_object.remove(&(slot, id)) {
            self.by_handle.remove(&h);
        }
    }
}

/// Session handles, shared by the core's sessions and the module-slot passthrough's, so
/// that no handle is both.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// A new session handle (never 0, never one handed out since the last reset).
pub fn new_session_handle() -> CK_SESSION_HANDLE {
    NEXT_SESSION.fetch_add(1, Ordering::Relaxed)
}

/// `C_Initialize`: handles start again at 1.
pub fn reset_session_handles() {
    NEXT_SESSION.store(1, Ordering::Relaxed);
}
