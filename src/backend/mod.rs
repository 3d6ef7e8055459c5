//! The key stores behind hsmux's slots, each behind the [`Token`] contract of
//! [`crate::core::token`].
//!
//! A backend sees Rust types only (no FFI pointers) and its own object ids; the core owns
//! the handles consumers see, the session table, the login state of each slot and the
//! operation state machines, and calls the backend for everything that touches keys.

pub mod aws_kms;
pub mod gcp_kms;
pub mod module;
pub mod remote;
pub mod soft;
pub mod vault;
