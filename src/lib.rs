//! hsmux: a PKCS#11 module that puts HSMs, key services and a software token behind one set
//! of slots.
//!
//! Data flows one way: [`ffi`] (the C ABI, unsafe and thin) -> [`core`] (PKCS#11 rules in
//! safe Rust) -> [`backend`] (the key stores). See `shared/DESIGN.md` in the project.

pub mod backend;
pub mod config;
pub mod core;
pub mod ffi;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod replica;

pub use crate::core::error::{Error, Result};
