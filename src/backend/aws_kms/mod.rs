//! PLACEHOLDER: being written.

use crate::backend::remote::{KeyService, KeyVersion, ServiceInfo, SignInput, SignScheme};
use crate::config::AwsKmsConfig;
use crate::core::error::{err, Result};
use cryptoki_sys::*;

pub struct AwsKms;

impl AwsKms {
    pub fn new(_slot: &str, _cfg: &AwsKmsConfig) -> std::result::Result<AwsKms, String> {
        Err("not built yet".into())
    }
}

impl KeyService for AwsKms {
    fn info(&self) -> ServiceInfo {
        ServiceInfo::default()
    }
    fn login(&self) -> Result<()> {
        Err(err(CKR_DEVICE_ERROR))
    }
    fn probe(&self) -> Result<()> {
        Err(err(CKR_DEVICE_ERROR))
    }
    fn list_keys(&self) -> Result<Vec<KeyVersion>> {
        Err(err(CKR_DEVICE_ERROR))
    }
    fn sign(&self, _: &KeyVersion, _: SignScheme, _: SignInput<'_>) -> Result<Vec<u8>> {
        Err(err(CKR_DEVICE_ERROR))
    }
}

pub mod cloudhsm;
