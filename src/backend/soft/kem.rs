//! Key encapsulation on the soft token (PKCS#11 3.2 `C_EncapsulateKey`,
//! `C_DecapsulateKey` with `CKM_ML_KEM`): the shared secret becomes a secret key object
//! made from the caller's template, as a derived key is.

use super::crypto::Key;
use super::SoftToken;
use crate::core::attr::{self, Attr, Attrs, AttrsExt};
use crate::core::error::{err, Result};
use crate::core::mechanism::Mechanism;
use crate::core::template::{self, Op, Usage};
use crate::core::token::{Ctx, ObjectId};
use cryptoki_sys::*;

impl SoftToken {
    /// The attributes of a key made from a secret (`C_DeriveKey`, `C_EncapsulateKey`,
    /// `C_DecapsulateKey`): a secret key unless the template says otherwise, checked for
    /// the session before any secret is computed.
    pub(super) fn derived_template(ctx: &Ctx, tpl: &[Attr]) -> Result<Attrs> {
        let fixed = if attr::find(tpl, CKA_CLASS).is_none() {
            Self::fixed(CKO_SECRET_KEY, None)
        } else {
            Attrs::new()
        };
        let attrs = template::new_object(Op::Derive, tpl, &fixed)?;
        Self::check_access(ctx, &attrs)?;
        Ok(attrs)
    }

    /// `C_EncapsulateKey` / `C_DecapsulateKey` (the trait methods are in `mod.rs`): the KEM
    /// key checked for `usage`, the new secret key made from the template and the values
    /// `compute` gives, stored; with what else `compute` returns (the ciphertext).
    pub(super) fn kem_key<T>(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        (key, usage): (ObjectId, Usage),
        tpl: &[Attr],
        compute: impl FnOnce(&Key, &Attrs) -> Result<(T, Attrs)>,
    ) -> Result<(T, ObjectId)> {
        let k = self.key_for(ctx, key, usage, mech)?;
        let mut attrs = Self::derived_template(ctx, tpl)?;
        if attrs.ulong(CKA_CLASS) != Some(CKO_SECRET_KEY) {
            return Err(err(CKR_TEMPLATE_INCONSISTENT));
        }
        let (extra, values) = compute(&k, &attrs)?;
        attrs.extend(values);
        Ok((extra, self.insert(ctx, attrs)?))
    }
}
