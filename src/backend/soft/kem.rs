//! Key encapsulation on the soft token (PKCS#11 3.2 `C_EncapsulateKey`,
//! `C_DecapsulateKey` with `CKM_ML_KEM`): the shared secret becomes a secret key object
//! made from the caller's template, as a derived key is.

use super::crypto::Key;
use super::SoftToken;
use crate::core::attr::{self, Attr, Attrs, AttrsExt};
use crate::core::error::{err, Result};
use crate::core::template::{self, Op};
use crate::core::token::{Ctx, ObjectId};
use cryptoki_sys::*;
use std::sync::OnceLock;

impl SoftToken {
    /// The attributes of a key made from a secret (`C_DeriveKey`, `C_EncapsulateKey`,
    /// `C_DecapsulateKey`): a secret key unless the template says otherwise, checked for
    /// the session before any secret is computed.
    pub(super) fn derived_template(ctx: &Ctx, tpl: &[Attr]) -> Result<Attrs> {
        // Built once: the secret-key class a template without CKA_CLASS gets.
        static SECRET: OnceLock<Attrs> = OnceLock::new();
        static NONE: Attrs = Attrs::EMPTY;
        let fixed = if attr::find(tpl, CKA_CLASS).is_none() {
            SECRET.get_or_init(|| Self::fixed(CKO_SECRET_KEY, None))
        } else {
            &NONE
        };
        let attrs = template::new_object(Op::Derive, tpl, fixed)?;
        Self::check_access(ctx, &attrs)?;
        Ok(attrs)
    }

    /// `C_EncapsulateKey` / `C_DecapsulateKey` (the trait methods are in `mod.rs`, which
    /// look up and check the KEM key `k`): the new secret key made from the template, with
    /// the values `compute` adds to it, stored.
    pub(super) fn kem_key(
        &self,
        ctx: &Ctx,
        k: &Key,
        tpl: &[Attr],
        compute: impl FnOnce(&Key, &mut Attrs) -> Result<()>,
    ) -> Result<ObjectId> {
        let mut attrs = Self::derived_template(ctx, tpl)?;
        if attrs.ulong(CKA_CLASS) != Some(CKO_SECRET_KEY) {
            return Err(err(CKR_TEMPLATE_INCONSISTENT));
        }
        compute(k, &mut attrs)?;
        self.insert(ctx, attrs)
    }
}
