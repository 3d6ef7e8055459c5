//! The calls of a module slot, forwarded to the vendor library with hsmux's handles
//! swapped for the vendor's (and back). Each call is staged (`stage.rs`): the vendor reads
//! and writes copies owned by the call, which go back to the consumer's pointers once it
//! returned within the slot's deadline (`ModuleSlot::call`). NULL stays NULL and lengths
//! stay the consumer's, so the vendor checks the arguments, answers length queries and
//! `CKR_BUFFER_TOO_SMALL` exactly as it would when loaded directly.
//!
//! Here: the one shape of a staged call ([`ModuleSlot::forward_in`] /
//! [`ModuleSlot::forward_out`]) and the macros for the C signatures that many functions
//! share. By family:
//! - `token.rs`: slot and token information, mechanisms, `C_InitToken`, the vendor's
//!   sessions;
//! - `session.rs`: PINs, login and logout, session info and operation state;
//! - `objects.rs`: object management and search;
//! - `crypto.rs`: encryption, decryption, digests, signatures (single- and multi-part),
//!   random numbers;
//! - `keys.rs`: generating, wrapping, unwrapping and deriving keys;
//! - `message.rs`: the 3.0 message functions a vendor with the 3.0 interface runs itself;
//! - `v32.rs`: the 3.2 functions (key encapsulation, `C_VerifySignature*`) of a vendor
//!   with the 3.2 interface.
//!
//! Every function here is `unsafe`: its pointer arguments are the consumer's, valid as
//! PKCS#11 requires of the corresponding C function.
#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

use super::session::PassSession;
use super::slot::ModuleSlot;
use super::stage::Val;
use cryptoki_sys::*;

/// The vendor function `$f` of the 2.40 table, or the code that the call answers.
macro_rules! vf {
    ($slot:expr, $f:ident) => {
        match $slot.library() {
            Err(rv) => return rv,
            Ok(lib) => match lib.fl.$f {
                Some(f) => f,
                None => return CKR_FUNCTION_NOT_SUPPORTED,
            },
        }
    };
}

/// The same from the 3.0 table; a 2.40 vendor does not have the function.
macro_rules! vf3 {
    ($slot:expr, $f:ident) => {
        match $slot.library() {
            Err(rv) => return rv,
            Ok(lib) => match lib.fl3.and_then(|t| t.$f) {
                Some(f) => f,
                None => return CKR_FUNCTION_NOT_SUPPORTED,
            },
        }
    };
}

/// The same from the 3.2 table; a vendor without the 3.2 interface does not have it.
macro_rules! vf32 {
    ($slot:expr, $f:ident) => {
        match $slot.library() {
            Err(rv) => return rv,
            Ok(lib) => match lib.fl32.and_then(|t| t.$f) {
                Some(f) => f,
                None => return CKR_FUNCTION_NOT_SUPPORTED,
            },
        }
    };
}

/// The value, or the call answers the error: a staging's (`CKR_HOST_MEMORY`), or why our
/// token has no vendor slot.
macro_rules! try_rv {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(rv) => return rv,
        }
    };
}

/// Calls with nothing but scalars after the session handle.
macro_rules! plain {
    ($tbl:ident: $( $name:ident => $f:ident ( $($a:ident : $t:ty),* ); )*) => {
        $(
            pub unsafe fn $name(&self, $($a: $t),*) -> CK_RV {
                let f = $tbl!(self.slot, $f);
                self.forward_in(stringify!($f), (), move |vh, _| unsafe { f(vh $(, $a)*) })
            }
        )*
    };
}

/// `(pData, ulDataLen)`: input only.
macro_rules! data_in {
    ($tbl:ident: $( $name:ident => $f:ident; )*) => {
        $(
            pub unsafe fn $name(&self, d: *mut CK_BYTE, n: CK_ULONG) -> CK_RV {
                let f = $tbl!(self.slot, $f);
                let i = try_rv!(In::new(d, n));
                self.forward_in(stringify!($f), i, move |vh, i| unsafe { f(vh, i.ptr(), i.len()) })
            }
        )*
    };
}

/// `(pOut, pulOutLen)`: output only.
macro_rules! data_out {
    ($tbl:ident: $( $name:ident => $f:ident; )*) => {
        $(
            pub unsafe fn $name(&self, o: *mut CK_BYTE, on: *mut CK_ULONG) -> CK_RV {
                let f = $tbl!(self.slot, $f);
                let out = try_rv!(Out::new(o, on));
                self.forward_out(
                    stringify!($f),
                    out,
                    move |vh, out| unsafe { f(vh, out.ptr(), out.len_ptr()) },
                    |rv, out| out.back(rv, o, on),
                )
            }
        )*
    };
}

/// `(pData, ulDataLen, pOut, pulOutLen)`.
macro_rules! data_in_out {
    ($tbl:ident: $( $name:ident => $f:ident; )*) => {
        $(
            pub unsafe fn $name(&self, d: *mut CK_BYTE, n: CK_ULONG, o: *mut CK_BYTE, on: *mut CK_ULONG) -> CK_RV {
                let f = $tbl!(self.slot, $f);
                let i = try_rv!(In::new(d, n));
                let out = try_rv!(Out::new(o, on));
                self.forward_out(
                    stringify!($f),
                    (i, out),
                    move |vh, (i, out)| unsafe { f(vh, i.ptr(), i.len(), out.ptr(), out.len_ptr()) },
                    |rv, (_, out)| out.back(rv, o, on),
                )
            }
        )*
    };
}

/// `*Init(pMechanism, hKey)` with the key and any handles in the mechanism translated.
macro_rules! init_with_key {
    ($tbl:ident: $( $name:ident => $f:ident; )*) => {
        $(
            pub unsafe fn $name(&self, mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) -> CK_RV {
                let f = $tbl!(self.slot, $f);
                let key = self.slot.to_vendor(key);
                let m = Owned(try_rv!(VendorMech::new(&*self.slot, mech)));
                self.forward_out(
                    stringify!($f),
                    m,
                    move |vh, m| unsafe { f(vh, m.ptr(), key) },
                    |rv, m| m.back(&*self.slot, mech, rv),
                )
            }
        )*
    };
}

mod crypto;
mod keys;
mod message;
mod objects;
mod session;
mod token;
mod v32;

impl ModuleSlot {
    /// Vendor call `name` on `h` (the vendor's slot id of our token, or a vendor session
    /// handle) and the staged inputs `s`, with the slot's deadline: the vendor's code, or
    /// the deadline's. The inputs go with the job.
    fn forward_in<S: Send + 'static>(
        &self,
        name: &'static str,
        h: CK_ULONG,
        mut s: S,
        call: impl FnOnce(CK_ULONG, &mut S) -> CK_RV + Send + 'static,
    ) -> CK_RV {
        self.call(name, move || call(h, &mut s))
            .unwrap_or_else(|rv| rv)
    }

    /// The same for a call that writes: `back` copies the staged outputs to the consumer's
    /// pointers, only when the call finished within the deadline.
    fn forward_out<S: Send + 'static>(
        &self,
        name: &'static str,
        h: CK_ULONG,
        mut s: S,
        call: impl FnOnce(CK_ULONG, &mut S) -> CK_RV + Send + 'static,
        back: impl FnOnce(CK_RV, &mut S),
    ) -> CK_RV {
        match self.call(name, move || (call(h, &mut s), s)) {
            Ok((rv, mut s)) => {
                back(rv, &mut s);
                rv
            }
            Err(rv) => rv,
        }
    }
}

impl PassSession {
    /// [`ModuleSlot::forward_in`] on this session.
    fn forward_in<S: Send + 'static>(
        &self,
        name: &'static str,
        s: S,
        call: impl FnOnce(CK_SESSION_HANDLE, &mut S) -> CK_RV + Send + 'static,
    ) -> CK_RV {
        self.slot.forward_in(name, self.vh, s, call)
    }

    /// [`ModuleSlot::forward_out`] on this session.
    fn forward_out<S: Send + 'static>(
        &self,
        name: &'static str,
        s: S,
        call: impl FnOnce(CK_SESSION_HANDLE, &mut S) -> CK_RV + Send + 'static,
        back: impl FnOnce(CK_RV, &mut S),
    ) -> CK_RV {
        self.slot.forward_out(name, self.vh, s, call, back)
    }

    /// A handle the vendor wrote for a new object goes back as hsmux's (the vendor's
    /// word as it was otherwise, as the consumer would have seen it).
    unsafe fn handle_back(
        &self,
        rv: CK_RV,
        out: &mut Val<CK_OBJECT_HANDLE>,
        ph: *mut CK_OBJECT_HANDLE,
    ) {
        if rv == CKR_OK {
            if let Some(h) = out.get() {
                out.set(self.slot.to_hsmux(h));
            }
        }
        out.back(ph);
    }
}
