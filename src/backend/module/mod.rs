//! `backend = "module"` as a `Token`: a vendor PKCS#11 library (Luna, nShield, Utimaco, the
//! CloudHSM client, SoftHSMv2) behind hsmux's own PKCS#11 rules, as a replica or the
//! `cloudhsm` backend ([`token::ModuleToken`], each call with a deadline on `worker.rs`'s
//! threads). Loading and initializing a vendor library ([`library`]) is shared with the
//! plain module slots, whose pointer-for-pointer passthrough lives in `crate::proxy`.

mod encode;
pub mod library;
pub mod reinit;
pub mod token;
pub(crate) mod worker;
