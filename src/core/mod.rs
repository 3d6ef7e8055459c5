//! PKCS#11 semantics in safe Rust: slots, sessions, login state, object handles, operation
//! state machines and attribute templates.

pub mod api;
pub mod attr;
pub mod attr_map;
pub mod error;
pub mod handles;
pub mod instance;
pub mod int_hash;
pub mod keyname;
pub mod limits;
pub mod mechanism;
pub mod mechname;
pub mod op;
pub mod out;
pub mod rv;
pub mod session;
pub mod slot;
pub mod template;
pub mod text;
pub mod token;
