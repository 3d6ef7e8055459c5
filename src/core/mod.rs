//! PKCS#11 semantics in safe Rust: slots, sessions, login state, object handles, operation
//! state machines and attribute templates.

pub mod attr;
pub mod error;
pub mod mechanism;
pub mod op;
pub mod rv;
