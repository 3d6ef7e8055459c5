//! AWS CloudHSM (`backend = "cloudhsm"`): the CloudHSM PKCS#11 client library is a vendor
//! module and does every key operation; beside it the cluster's `DescribeClusters` answer
//! adds what the library does not tell: whether any HSM of the cluster is ACTIVE (the
//! health probe of a replica fails when none is, so a replica group moves to another
//! cluster before calls start failing) and where the HSMs are (`EniIp`, logged on change
//! and shown by `hsmux check`/`hsmux status`).

use super::cluster::ClusterWatch;
use crate::backend::module::token::ModuleToken;
use crate::config::CloudHsmConfig;

/// The vendor module's token, whose probe also asks the cluster's health. A library that
/// does not load is logged by the module token itself.
pub fn open(name: &str, cfg: &CloudHsmConfig) -> ModuleToken {
    let cluster = ClusterWatch::new(name, cfg);
    // No ACTIVE HSM is a device error even while the library still answers from its cache.
    ModuleToken::new(name, &cfg.module).with_health(Box::new(move || cluster.check()))
}
