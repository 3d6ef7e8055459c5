//! AWS CloudHSM (`backend = "cloudhsm"`): the CloudHSM PKCS#11 client library is a vendor
//! module and does every key operation; beside it the cluster's `DescribeClusters` answer
//! adds what the library does not tell: whether any HSM of the cluster is ACTIVE (the
//! health probe of a replica fails when none is, so a replica group moves to another
//! cluster before calls start failing) and where the HSMs are (`EniIp`, logged on change
//! and shown by `hsmux check`/`hsmux status`).

use super::cluster::ClusterWatch;
use crate::backend::module::token::ModuleToken;
use crate::config::CloudHsmConfig;
use crate::core::attr::{Attr, AttrValue};
use crate::core::error::Result;
use crate::core::mechanism::Mechanism;
use crate::core::op::{Cipher, Signer, Verifier};
use crate::core::token::{Ctx, Login, ObjectId, Token, TokenInfo};
use cryptoki_sys::*;
use std::sync::Arc;

/// The vendor module's token with the cluster's health.
pub struct CloudHsmToken {
    module: ModuleToken,
    cluster: Arc<ClusterWatch>,
}

impl CloudHsmToken {
    pub fn new(name: &str, cfg: &CloudHsmConfig) -> CloudHsmToken {
        // A library that does not load is logged by the module token itself.
        let module = ModuleToken::new(name, &cfg.module);
        CloudHsmToken {
            module,
            cluster: ClusterWatch::new(name, cfg),
        }
    }

    pub fn cluster(&self) -> &Arc<ClusterWatch> {
        &self.cluster
    }
}

pub fn slot_token(label: &str, cfg: &CloudHsmConfig) -> Arc<dyn Token> {
    Arc::new(CloudHsmToken::new(label, cfg))
}

pub fn replica_token(name: &str, cfg: &CloudHsmConfig) -> Box<dyn Token> {
    Box::new(CloudHsmToken::new(name, cfg))
}

/// Everything is the vendor module's, except the probe.
impl Token for CloudHsmToken {
    fn unavailable(&self) -> Option<String> {
        self.module.unavailable()
    }
    fn probe(&self) -> Result<()> {
        // The library first (cheap, local); then the cluster: no ACTIVE HSM is a device
        // error even while the library still answers from its cache.
        self.module.probe()?;
        self.cluster.check()
    }

    fn slot_description(&self) -> String {
        self.module.slot_description()
    }
    fn token_info(&self) -> Result<TokenInfo> {
        self.module.token_info()
    }
    fn mechanisms(&self) -> Vec<CK_MECHANISM_TYPE> {
        self.module.mechanisms()
    }
    fn mechanism_info(&self, mech: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO> {
        self.module.mechanism_info(mech)
    }
    fn open_session(&self, session: CK_SESSION_HANDLE, rw: bool) -> Result<()> {
        self.module.open_session(session, rw)
    }
    fn close_session(&self, session: CK_SESSION_HANDLE) -> Vec<ObjectId> {
        self.module.close_session(session)
    }
    fn init_token(&self, so_pin: &[u8], label: &str) -> Result<()> {
        self.module.init_token(so_pin, label)
    }
    fn login(&self, who: Login, pin: &[u8]) -> Result<()> {
        self.module.login(who, pin)
    }
    fn logout(&self) {
        self.module.logout()
    }
    fn init_pin(&self, pin: &[u8]) -> Result<()> {
        self.module.init_pin(pin)
    }
    fn set_pin(&self, who: Login, old: &[u8], new: &[u8]) -> Result<()> {
        self.module.set_pin(who, old, new)
    }
    fn find_objects(&self, ctx: &Ctx, template: &[Attr]) -> Result<Vec<ObjectId>> {
        self.module.find_objects(ctx, template)
    }
    fn get_attributes(
        &self,
        ctx: &Ctx,
        obj: ObjectId,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<AttrValue>> {
        self.module.get_attributes(ctx, obj, types)
    }
    fn set_attributes(&self, ctx: &Ctx, obj: ObjectId, template: &[Attr]) -> Result<()> {
        self.module.set_attributes(ctx, obj, template)
    }
    fn create_object(&self, ctx: &Ctx, template: &[Attr]) -> Result<ObjectId> {
        self.module.create_object(ctx, template)
    }
    fn copy_object(&self, ctx: &Ctx, obj: ObjectId, template: &[Attr]) -> Result<ObjectId> {
        self.module.copy_object(ctx, obj, template)
    }
    fn destroy_object(&self, ctx: &Ctx, obj: ObjectId) -> Result<()> {
        self.module.destroy_object(ctx, obj)
    }
    fn object_size(&self, ctx: &Ctx, obj: ObjectId) -> Result<CK_ULONG> {
        self.module.object_size(ctx, obj)
    }
    fn encrypt_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>> {
        self.module.encrypt_init(ctx, mech, key)
    }
    fn decrypt_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>> {
        self.module.decrypt_init(ctx, mech, key)
    }
    fn sign_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Signer>> {
        self.module.sign_init(ctx, mech, key)
    }
    fn verify_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Verifier>> {
        self.module.verify_init(ctx, mech, key)
    }
    fn digest_init(&self, ctx: &Ctx, mech: &Mechanism) -> Result<Box<dyn Signer>> {
        self.module.digest_init(ctx, mech)
    }
    fn generate_key(&self, ctx: &Ctx, mech: &Mechanism, template: &[Attr]) -> Result<ObjectId> {
        self.module.generate_key(ctx, mech, template)
    }
    fn generate_key_pair(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        public: &[Attr],
        private: &[Attr],
    ) -> Result<(ObjectId, ObjectId)> {
        self.module.generate_key_pair(ctx, mech, public, private)
    }
    fn wrap_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        wrapping: ObjectId,
        key: ObjectId,
    ) -> Result<Vec<u8>> {
        self.module.wrap_key(ctx, mech, wrapping, key)
    }
    fn unwrap_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        unwrapping: ObjectId,
        wrapped: &[u8],
        template: &[Attr],
    ) -> Result<ObjectId> {
        self.module
            .unwrap_key(ctx, mech, unwrapping, wrapped, template)
    }
    fn derive_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        base: ObjectId,
        template: &[Attr],
    ) -> Result<ObjectId> {
        self.module.derive_key(ctx, mech, base, template)
    }
    fn generate_random(&self, out: &mut [u8]) -> Result<()> {
        self.module.generate_random(out)
    }
    fn digest_key_value(&self, ctx: &Ctx, key: ObjectId) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        self.module.digest_key_value(ctx, key)
    }
    fn seed_random(&self, seed: &[u8]) -> Result<()> {
        self.module.seed_random(seed)
    }
}
