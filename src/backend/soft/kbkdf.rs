//! C_DeriveKey with the SP 800-108 KDFs on the soft token: the main key and the
//! additional keys of the parameter's `CK_DERIVED_KEY`s, all made or none (§2.42).

use super::crypto;
use super::SoftToken;
use crate::core::attr::{self, Attr, Attrs, AttrsExt};
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{MechParam, Mechanism};
use crate::core::template::{self, Usage};
use crate::core::token::{Ctx, ObjectId};
use cryptoki_sys::*;

/// Usage flags a KBKDF key has only when its template sets them.
const USAGE: [CK_ATTRIBUTE_TYPE; 7] = [
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_SIGN,
    CKA_VERIFY,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_DERIVE,
];

impl SoftToken {
    /// The attributes of one derived key before its value: a secret key, usage only as
    /// asked, CKA_SENSITIVE / CKA_EXTRACTABLE from the base key unless the template sets
    /// them (§2.42 "Key Derivation Attribute Rules").
    fn kbkdf_template(ctx: &Ctx, tpl: &[Attr], base: &Attrs) -> Result<Attrs> {
        let mut a = Self::derived_template(ctx, tpl)?;
        if a.ulong(CKA_CLASS) != Some(CKO_SECRET_KEY) {
            return Err(Error::logged(
                CKR_TEMPLATE_INCONSISTENT,
                "SP 800-108 derives secret keys only",
            ));
        }
        // A KDF that makes several keys makes them for distinct purposes (an encryption
        // key, a MAC key): each may do only what its template says, as kryoptic does and
        // the cryptoki crate's suite expects.
        for t in USAGE {
            if attr::find(tpl, t).is_none() {
                a.set_flag(t, false);
            }
        }
        for t in [CKA_SENSITIVE, CKA_EXTRACTABLE] {
            if attr::find(tpl, t).is_none() {
                a.set_flag(t, base.flag_or(t, false));
            }
        }
        let (sensitive, extractable) = (
            a.flag_or(CKA_SENSITIVE, false),
            a.flag_or(CKA_EXTRACTABLE, false),
        );
        a.set_flag(
            CKA_ALWAYS_SENSITIVE,
            base.flag_or(CKA_ALWAYS_SENSITIVE, false) && sensitive,
        );
        a.set_flag(
            CKA_NEVER_EXTRACTABLE,
            base.flag_or(CKA_NEVER_EXTRACTABLE, false) && !extractable,
        );
        Ok(a)
    }

    /// `CKM_SP800_108_*`: the ids of the main key (`tpl`) and of the additional keys, in
    /// order. Nothing is stored unless every key could be made.
    pub(super) fn kbkdf_keys(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        base: ObjectId,
        tpl: &[Attr],
    ) -> Result<Vec<ObjectId>> {
        Self::mechanism_known(mech.mech)?;
        let MechParam::Kbkdf(p) = &mech.param else {
            return Err(err(CKR_MECHANISM_PARAM_INVALID));
        };
        let bk = self
            .object(ctx, base)
            .map_err(|_| err(CKR_KEY_HANDLE_INVALID))?;
        template::check_usage(&bk.attrs, Usage::Derive, mech.mech)?;
        let mut keys = std::iter::once(tpl)
            .chain(p.additional.iter().map(Vec::as_slice))
            .map(|t| Self::kbkdf_template(ctx, t, &bk.attrs))
            .collect::<Result<Vec<_>>>()?;
        let lens = keys
            .iter()
            .map(crypto::kbkdf::key_len)
            .collect::<Result<Vec<_>>>()?;
        let values = crypto::kbkdf::derive(mech.mech, p, &bk.key()?, &lens)?;
        for (a, v) in keys.iter_mut().zip(values) {
            let made = crypto::finish_derived(a, &v)?;
            a.extend(made);
        }
        let mut ids = Vec::with_capacity(keys.len());
        for a in keys {
            match self.insert(ctx, a) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    for id in ids {
                        let _ = crate::core::token::Token::destroy_object(self, ctx, id);
                    }
                    return Err(e);
                }
            }
        }
        Ok(ids)
    }
}
