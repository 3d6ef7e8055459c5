//! The C ABI, and nothing else: exported symbols, the function tables, pointer and length
//! checks, panic catching, and conversion to and from the core's Rust types. Every entry
//! point is generated in `exports.rs` from one list: a call on a module slot's handle goes
//! to `crate::proxy`, every other to its core path here (`ck_fn!`), a thin wrapper around a
//! safe function in `core::api`.
#![allow(clippy::missing_safety_doc, non_snake_case)]

mod attr;
pub(crate) mod audit;
pub(crate) mod bounds;
mod crypto;
pub mod exports;
mod general;
mod kbkdf;
mod keys;
mod mech;
mod message;
mod object;
mod panic;
mod policy;
mod reserved;
mod session;
pub mod table;
mod v32;

use crate::core::error::{err, Result};
use crate::core::out::OutBuf;
use cryptoki_sys::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a PKCS#11 call is about, from its first argument: the metrics' slot label.
#[derive(Clone, Copy)]
pub(crate) enum Subject {
    None,
    Session(CK_SESSION_HANDLE),
    Slot(CK_SLOT_ID),
}

impl Subject {
    /// The configuration index of the slot the call was about, asked of the core after
    /// the call (so a closed session's `C_CloseSession` names none), only when metrics
    /// are recorded.
    fn slot_index(self) -> Option<usize> {
        match self {
            Subject::None => None,
            Subject::Session(h) => crate::proxy::session(h)
                .map(|p| p.slot.index)
                .or_else(|| crate::core::api::slot_of_session(h)),
            Subject::Slot(id) => crate::core::api::slot_of_id(id),
        }
    }
}

/// Runs the body of a PKCS#11 function: turns `Err` into its return value and a panic
/// into `CKR_GENERAL_ERROR` with a log line, so that neither crosses the C boundary; and
/// records the call in the metrics under the slot of `subject` (without metrics installed
/// that costs one relaxed load).
#[inline]
pub(crate) fn guard(name: &'static str, subject: Subject, f: impl FnOnce() -> Result<()>) -> CK_RV {
    log::trace!("{name}");
    let timing = crate::metrics::start();
    let rv = run_guarded(name, f);
    crate::metrics::finish(timing, name, rv, || subject.slot_index());
    rv
}

fn run_guarded(name: &'static str, f: impl FnOnce() -> Result<()>) -> CK_RV {
    // A panic inside the call goes to hsmux's log, not to the consumer's stderr.
    panic::install();
    let inside = panic::Guarded::enter();
    let caught = catch_unwind(AssertUnwindSafe(f));
    drop(inside);
    match caught {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(e)) => {
            log::debug!("{name} -> {e}");
            e.rv()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            log::error!("{name}: internal error (panic: {what}); answered CKR_GENERAL_ERROR");
            CKR_GENERAL_ERROR
        }
    }
}

/// Declares the core path of a PKCS#11 function: its body returns `Result<()>`. The
/// exported C symbol that calls it (or the proxy) is generated in `exports.rs`.
macro_rules! ck_fn {
    ($name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $body:block) => {
        #[allow(non_snake_case, unused_unsafe, clippy::missing_safety_doc, clippy::too_many_arguments)]
        pub(crate) unsafe fn $name($($arg: $ty),*) -> $crate::core::error::Result<()> {
            unsafe { $body }
        }
    };
}
pub(crate) use ck_fn;

/// A vendor's return value as the body of an entry point.
#[inline]
pub(crate) fn vendor_rv(rv: CK_RV) -> Result<()> {
    if rv == CKR_OK {
        Ok(())
    } else {
        Err(crate::core::error::Error::new(rv))
    }
}

/// An input buffer; NULL is allowed only with length 0, and the length is bounded by
/// [`crate::core::limits::MAX_DATA_LEN`] before a slice is made of it.
pub(crate) unsafe fn in_bytes<'a>(p: *const CK_BYTE, len: CK_ULONG) -> Result<&'a [u8]> {
    if p.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(crate::core::error::Error::logged(
                CKR_ARGUMENTS_BAD,
                format!("input buffer is NULL with length {len}"),
            ))
        };
    }
    let n = bounds::data_len(len, "input buffer")?;
    Ok(std::slice::from_raw_parts(p, n))
}

/// An output buffer with its length pointer (which must not be NULL). hsmux writes no
/// more than its output into it; a `*len` above [`crate::core::limits::MAX_DATA_LEN`] is taken as
/// that much (no output is larger), so that the slice stays within what Rust allows.
pub(crate) unsafe fn out_buf<'a>(p: *mut CK_BYTE, len: *mut CK_ULONG) -> Result<OutBuf<'a>> {
    if len.is_null() {
        return Err(crate::core::error::Error::logged(
            CKR_ARGUMENTS_BAD,
            "output length pointer is NULL",
        ));
    }
    if p.is_null() {
        Ok(OutBuf::new(None))
    } else {
        let n = usize::try_from(*len)
            .unwrap_or(usize::MAX)
            .min(crate::core::limits::MAX_DATA_LEN);
        Ok(OutBuf::new(Some(std::slice::from_raw_parts_mut(p, n))))
    }
}

/// Runs `f` with an output buffer and stores the length it reports in `*len`, as PKCS#11
/// wants both on success and on `CKR_BUFFER_TOO_SMALL`.
pub(crate) unsafe fn with_out(
    p: *mut CK_BYTE,
    len: *mut CK_ULONG,
    f: impl FnOnce(&mut OutBuf) -> Result<()>,
) -> Result<()> {
    let mut out = out_buf(p, len)?;
    let r = f(&mut out);
    if r.is_ok() || r.as_ref().is_err_and(|e| e.rv() == CKR_BUFFER_TOO_SMALL) {
        *len = out.written as CK_ULONG;
    }
    r
}

/// Writes a list in the two-call style (`C_GetSlotList`, `C_GetMechanismList`, ...).
pub(crate) unsafe fn write_list<T: Copy>(
    items: &[T],
    p: *mut T,
    count: *mut CK_ULONG,
) -> Result<()> {
    if count.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    if p.is_null() {
        *count = items.len() as CK_ULONG;
        return Ok(());
    }
    let cap = *count as usize;
    *count = items.len() as CK_ULONG;
    if cap < items.len() {
        return Err(err(CKR_BUFFER_TOO_SMALL));
    }
    std::ptr::copy_nonoverlapping(items.as_ptr(), p, items.len());
    Ok(())
}

pub(crate) fn version(major: u8, minor: u8) -> CK_VERSION {
    CK_VERSION { major, minor }
}
