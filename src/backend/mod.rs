//! The key stores behind hsmux's slots and replicas, each behind the [`Token`] contract of
//! [`crate::core::token`], and [`open`], the one factory that builds them from their
//! config.
//!
//! - `soft/`: hsmux's own software token (its store, PINs and crypto);
//! - `module/`: vendor PKCS#11 libraries: the library loader, [`module::token::ModuleToken`]
//!   (a vendor token as a `Token`, with deadlines) and the pointer passthrough of a
//!   `backend = "module"` slot;
//! - `remote/`: what every remote key service shares ([`remote::KeyService`], the
//!   [`remote::RemoteToken`] adapter, the runtime and HTTP helpers);
//! - `vault/`, `gcp_kms/`, `aws_kms/`, `azure_kv/`: one key service each (`aws_kms/cloudhsm.rs`: a
//!   CloudHSM client library, a vendor module with the cluster's health).
//!
//! A backend sees Rust types only (no FFI pointers) and its own object ids; the core owns
//! the handles consumers see, the session table, the login state of each slot and the
//! operation state machines, and calls the backend for everything that touches keys.
//! Adding a backend: a folder here, its arm in [`open`], and its config (`config/`).

pub mod aws_kms;
pub mod azure_kv;
pub mod gcp_kms;
// Vendor PKCS#11 libraries are C: loading them and calling into them is `unsafe`.
#[allow(unsafe_code)]
pub mod module;
pub mod remote;
pub mod soft;
pub mod vault;

use crate::config::BackendConfig;
use crate::core::error::{Error, Result};
use crate::core::token::Token;
use cryptoki_sys::CKR_GENERAL_ERROR;

/// The token of the slot or replica `name` (`slot/replica` for a replica; it names the
/// token in log lines). `gated`: the slot checks a `user_pin`, so a remote service is not
/// used before `C_Login`. Nothing here waits on a service or a device: what cannot be set
/// up gives a token that fails its calls and says why ([`Token::unavailable`], the log).
///
/// A `backend = "module"` gives a [`module::token::ModuleToken`] (what a replica is); a
/// plain module slot is the pointer passthrough instead, which the composition root builds.
/// A replica group is not one backend: the composition root makes it of its replicas'
/// tokens.
pub fn open(name: &str, cfg: &BackendConfig, gated: bool) -> Result<Box<dyn Token>> {
    Ok(match cfg {
        BackendConfig::Soft {
            path,
            kdf_iterations,
            seal,
        } => Box::new(soft_token(name, path, *kdf_iterations, seal.as_ref())),
        BackendConfig::Module(m) => Box::new(module::token::ModuleToken::new(name, m)),
        BackendConfig::Vault(c) => Box::new(vault::open(name, c, gated)),
        BackendConfig::GcpKms(c) => Box::new(gcp_kms::open(name, c, gated)),
        BackendConfig::AwsKms(c) => Box::new(aws_kms::open(name, c, gated)),
        BackendConfig::CloudHsm(c) => Box::new(aws_kms::cloudhsm::open(name, c)),
        BackendConfig::AzureKv(c) => Box::new(azure_kv::open(name, c, gated)),
        BackendConfig::Replicas { .. } => {
            return Err(Error::logged(
                CKR_GENERAL_ERROR,
                format!("{name}: a replica group is made of its replicas' tokens, not opened"),
            ))
        }
    })
}

/// The soft token of slot `name` with its `[slot.seal]` (`hsmux store reseal` opens one
/// this way, outside a module instance).
pub fn soft_token(
    name: &str,
    path: &std::path::Path,
    kdf_iterations: Option<u32>,
    seal: Option<&crate::config::SealConfig>,
) -> soft::SoftToken {
    let t = soft::SoftToken::new(path, name, kdf_iterations);
    match seal {
        None => t,
        Some(sc) => t.with_seal(vault::seal::store_seal(name, sc)),
    }
}
