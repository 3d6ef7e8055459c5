//! One error type that carries its PKCS#11 return value.
//!
//! Every fallible function in the core and the backends returns [`Result`]; the FFI layer
//! turns an `Err` into its `CK_RV`. The message, when there is one, is for the log only and
//! never holds a secret.

use cryptoki_sys::*;
use std::fmt;

/// A PKCS#11 failure: the return value a consumer will see.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    rv: CK_RV,
    /// The key store is busy (no free session within the deadline), not failing: a
    /// replica group tries another replica and does not mark this one down.
    overload: bool,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub const fn new(rv: CK_RV) -> Self {
        Error {
            rv,
            overload: false,
        }
    }

    /// `rv` because the key store is busy, not failing (see the field).
    pub const fn overloaded(rv: CK_RV) -> Self {
        Error { rv, overload: true }
    }

    pub const fn is_overload(&self) -> bool {
        self.overload
    }

    /// The return value handed to the consumer.
    pub const fn rv(&self) -> CK_RV {
        self.rv
    }

    /// A failure whose cause the consumer cannot see in the return value: log why.
    pub fn general(why: impl fmt::Display) -> Self {
        log::error!("{why}");
        Error::new(CKR_GENERAL_ERROR)
    }

    /// An error with a log line at `warn` that names the cause.
    pub fn logged(rv: CK_RV, why: impl fmt::Display) -> Self {
        log::warn!("{} ({})", why, crate::core::rv::name(rv));
        Error::new(rv)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", crate::core::rv::name(self.rv))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", crate::core::rv::name(self.rv))
    }
}

impl std::error::Error for Error {}

impl From<CK_RV> for Error {
    fn from(rv: CK_RV) -> Self {
        Error::new(rv)
    }
}

/// Shorthand: `Err(err(CKR_X))`.
pub const fn err(rv: CK_RV) -> Error {
    Error::new(rv)
}
