//! PLACEHOLDER: being written. AWS CloudHSM: the vendor module with DescribeClusters health.

use crate::backend::module::token::ModuleToken;
use crate::backend::Token;
use crate::config::CloudHsmConfig;
use std::sync::Arc;

pub fn slot_token(label: &str, cfg: &CloudHsmConfig) -> Arc<dyn Token> {
    Arc::new(ModuleToken::new(label, &cfg.module))
}

pub fn replica_token(name: &str, cfg: &CloudHsmConfig) -> Box<dyn Token> {
    Box::new(ModuleToken::new(name, &cfg.module))
}
