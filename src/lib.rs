//! hsmux: a PKCS#11 module that puts HSMs, key services and a software token behind one set
//! of slots.
//!
//! Data flows one way: [`ffi`] (the C ABI, unsafe and thin) -> [`core`] (PKCS#11 rules in
//! safe Rust, the running state and the [`core::token::Token`] contract) -> the tokens:
//! [`backend`] (the key stores) and [`replica`] (groups of them). [`setup`] is the
//! composition root that builds them from the [`config`] at `C_Initialize`; [`metrics`]
//! counts and serves `/metrics`. Each layer imports only those below it (nothing imports
//! `ffi`). Module slots bypass the core: [`proxy`] forwards their calls to the vendor
//! library. The layout and the rules of its imports: `docs/ARCHITECTURE.md`; what users
//! see: `shared/DESIGN.md`.
//!
//! `unsafe` is denied here and allowed, module by module, only where C calls hsmux or
//! hsmux calls C: [`ffi`], [`proxy`], the vendor-library calls of `backend::module`, and
//! aws-lc's raw RSA operation in the soft token.
#![deny(unsafe_code)]

pub mod audit;
pub mod backend;
pub mod config;
pub mod core;
#[allow(unsafe_code)]
pub mod ffi;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod proxy; // its own `#![allow(unsafe_code)]`
pub mod replica;
pub mod setup;

pub use crate::core::error::{Error, Result};
