//! Post-quantum keys on a remote token (PKCS#11 3.2): what the services offer of
//! `CKM_ML_DSA`, `CKM_SLH_DSA` and `CKM_ML_KEM` ([`KeyService::pqc_mechanisms`]), the
//! attributes the 3.2 key types add, the signature plan and its context string, key pair
//! generation templates, and ML-KEM: `C_EncapsulateKey` is done here with the service's
//! public key (exact, no request), `C_DecapsulateKey` by the service. The shared secret
//! becomes a session secret key of the caller's template, as an unwrapped key does
//! (`wrap.rs`).

use super::*;
use crate::backend::remote::pqc;
use crate::core::template::Op;
use zeroize::Zeroizing;

fn is_keygen(m: CK_MECHANISM_TYPE) -> bool {
    matches!(
        m,
        CKM_ML_DSA_KEY_PAIR_GEN | CKM_SLH_DSA_KEY_PAIR_GEN | CKM_ML_KEM_KEY_PAIR_GEN
    )
}

/// The smallest and largest public key (bytes: the 3.2 rule for these mechanisms) among
/// the sets of the key type `m` works with.
fn sizes(m: CK_MECHANISM_TYPE) -> (CK_ULONG, CK_ULONG) {
    let fits = |alg: KeyAlg| match m {
        CKM_ML_DSA | CKM_ML_DSA_KEY_PAIR_GEN => matches!(alg, KeyAlg::MlDsa { .. }),
        CKM_SLH_DSA | CKM_SLH_DSA_KEY_PAIR_GEN => matches!(alg, KeyAlg::SlhDsa { .. }),
        _ => matches!(alg, KeyAlg::MlKem { .. }),
    };
    let lens = pqc::SETS
        .iter()
        .filter(|s| fits(s.alg))
        .map(|s| s.public_len);
    let min = lens.clone().min().unwrap_or(0);
    (min as CK_ULONG, lens.max().unwrap_or(0) as CK_ULONG)
}

impl RemoteToken {
    /// The 3.2 mechanisms the service serves (key generation where it can create keys).
    pub(super) fn pqc_mechanisms(&self) -> Vec<CK_MECHANISM_TYPE> {
        let served = self.service.pqc_mechanisms();
        let generate = self.service.can_generate();
        pqc::MECHANISMS
            .iter()
            .copied()
            .filter(|m| served.contains(m) && (generate || !is_keygen(*m)))
            .collect()
    }

    /// `C_GetMechanismInfo` of a 3.2 mechanism this slot lists. SLH-DSA signatures are
    /// made by the service and not verified here (no SLH-DSA in aws-lc).
    pub(super) fn pqc_mechanism_info(&self, m: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO> {
        if !self.pqc_mechanisms().contains(&m) {
            return Err(err(CKR_MECHANISM_INVALID));
        }
        let flags = match m {
            CKM_ML_DSA => CKF_SIGN | CKF_VERIFY,
            CKM_SLH_DSA => CKF_SIGN,
            CKM_ML_KEM => CKF_ENCAPSULATE | CKF_DECAPSULATE,
            _ => CKF_GENERATE_KEY_PAIR,
        };
        let (min, max) = sizes(m);
        Ok(info(min, max, CKF_HW | flags))
    }

    /// The 3.2 attributes of a PQC version's two objects: `CKA_PARAMETER_SET` on the
    /// private key too, the KEM usage flags, the (sensitive) seed; an SLH-DSA public key
    /// does not verify here.
    pub(super) fn pqc_attrs(&self, k: &KeyVersion, private: &mut Attrs, public: &mut Attrs) {
        if let Some(set) = public.ulong(CKA_PARAMETER_SET) {
            private.set_ulong(CKA_PARAMETER_SET, set);
        }
        let kem = matches!(k.alg, KeyAlg::MlKem { .. });
        private.set_flag(CKA_DECAPSULATE, kem);
        public.set_flag(CKA_ENCAPSULATE, kem);
        if matches!(k.alg, KeyAlg::SlhDsa { .. }) {
            public.set_flag(CKA_VERIFY, false);
        } else {
            // Present but never revealed, as CKA_VALUE (PKCS#11 3.2 ML-DSA/ML-KEM keys).
            private.insert(CKA_SEED, Vec::new());
        }
    }

    /// The plan of an ML-DSA or SLH-DSA signature with `o` (checked for verification too).
    pub(super) fn pqc_sign_plan(&self, o: &Object, mech: &Mechanism) -> Result<Plan> {
        let k = &o.key;
        let scheme = match (k.alg, mech.mech) {
            (KeyAlg::MlDsa { .. }, CKM_ML_DSA) => SignScheme::MlDsa,
            (KeyAlg::SlhDsa { .. }, CKM_SLH_DSA) => SignScheme::SlhDsa,
            _ => {
                return Err(Error::logged(
                    CKR_KEY_TYPE_INCONSISTENT,
                    format!(
                        "mechanism 0x{:x} does not fit {} ({:?})",
                        mech.mech, k.id, k.alg
                    ),
                ))
            }
        };
        match &mech.param {
            MechParam::None | MechParam::SignContext { .. } => {}
            MechParam::Bytes(b) if b.is_empty() => {}
            _ => {
                return Err(param_invalid(
                    "CKM_ML_DSA/CKM_SLH_DSA take a CK_SIGN_ADDITIONAL_CONTEXT or no parameter",
                ))
            }
        }
        let out_len = pqc::of(k.alg).map_or(0, |s| s.output_len);
        Ok(Plan {
            scheme,
            hash_here: None,
            out_len,
        })
    }

    /// The context string of a signature the service is to make. The services sign hedged
    /// (or say nothing), so `CKH_DETERMINISTIC_REQUIRED` is refused; a context string only
    /// where the service can bind one ([`KeyService::sign_context`]).
    pub(super) fn pqc_context(&self, k: &KeyVersion, mech: &Mechanism) -> Result<Vec<u8>> {
        let MechParam::SignContext { hedge, context } = &mech.param else {
            return Ok(Vec::new());
        };
        match *hedge {
            CKH_HEDGE_PREFERRED | CKH_HEDGE_REQUIRED => {}
            CKH_DETERMINISTIC_REQUIRED => {
                return Err(param_invalid(format!(
                    "slot {}: the service does not promise deterministic signatures",
                    self.slot
                )))
            }
            _ => {
                return Err(param_invalid(
                    "CK_SIGN_ADDITIONAL_CONTEXT: unknown hedgeVariant",
                ))
            }
        }
        if context.len() > 255 {
            return Err(param_invalid("a context string has at most 255 bytes"));
        }
        if !context.is_empty()
            && (!self.service.sign_context() || !matches!(k.alg, KeyAlg::MlDsa { .. }))
        {
            return Err(param_invalid(format!(
                "slot {}: {} signs with an empty context string only",
                self.slot, k.id
            )));
        }
        Ok(context.clone())
    }

    /// The key kind a PQC key pair generation asks for: the parameter set from the public
    /// template (or the private one; both must agree).
    pub(super) fn pqc_new_kind(
        &self,
        mech: &Mechanism,
        public_tpl: &[Attr],
        private_tpl: &[Attr],
    ) -> Result<KeyAlg> {
        if !self.mechanisms().contains(&mech.mech) {
            return Err(Error::logged(
                CKR_MECHANISM_INVALID,
                format!("slot {}: the service makes no such keys", self.slot),
            ));
        }
        let read = |tpl: &[Attr]| {
            attr::find(tpl, CKA_PARAMETER_SET)
                .map(attr::parse_ulong)
                .transpose()
        };
        let set = match (read(public_tpl)?, read(private_tpl)?) {
            (Some(a), Some(b)) if a != b => return Err(err(CKR_TEMPLATE_INCONSISTENT)),
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => {
                return Err(Error::logged(
                    CKR_TEMPLATE_INCOMPLETE,
                    "PQC key generation needs CKA_PARAMETER_SET",
                ))
            }
        };
        let key_type = match mech.mech {
            CKM_ML_DSA_KEY_PAIR_GEN => CKK_ML_DSA,
            CKM_SLH_DSA_KEY_PAIR_GEN => CKK_SLH_DSA,
            _ => CKK_ML_KEM,
        };
        pqc::kind(key_type, set).ok_or_else(|| {
            Error::logged(
                CKR_ATTRIBUTE_VALUE_INVALID,
                format!("CKA_PARAMETER_SET 0x{set:x}: not a parameter set the services offer"),
            )
        })
    }

    /// The ML-KEM key of an encapsulation or decapsulation, checked for usage.
    fn kem_key(
        &self,
        ctx: &Ctx,
        obj: ObjectId,
        usage: Usage,
        mech: &Mechanism,
    ) -> Result<Arc<Object>> {
        if mech.mech != CKM_ML_KEM || !self.pqc_mechanisms().contains(&CKM_ML_KEM) {
            return Err(err(CKR_MECHANISM_INVALID));
        }
        if !matches!(mech.param, MechParam::None) {
            return Err(param_invalid("CKM_ML_KEM takes no parameter"));
        }
        let o = self.key(ctx, obj, usage, mech)?;
        if !matches!(o.key.alg, KeyAlg::MlKem { .. }) {
            return Err(err(CKR_KEY_TYPE_INCONSISTENT));
        }
        Ok(o)
    }

    /// `C_EncapsulateKey`: ML-KEM.Encaps with the service's public key, here, into `out`
    /// (only the ciphertext's length when it does not fit).
    pub(super) fn kem_encapsulate(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        key: ObjectId,
        tpl: &[Attr],
        out: &mut [u8],
    ) -> Result<Encapsulated> {
        let o = self.kem_key(ctx, key, Usage::Encapsulate, mech)?;
        let n = pqc::of(o.key.alg).map_or(0, |s| s.output_len);
        let Some(out) = out.get_mut(..n) else {
            return Ok(Encapsulated::NeedsRoom(n));
        };
        let mut attrs = secret_template(tpl)?;
        soft::pqc::encapsulate(mech, &*self.public_key_of(&o)?, &mut attrs, out)?;
        let key = self.add_session_key(ctx, attrs)?;
        Ok(Encapsulated::Key { len: n, key })
    }

    /// `C_DecapsulateKey`: ML-KEM.Decaps by the service.
    pub(super) fn kem_decapsulate(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        key: ObjectId,
        (ciphertext, tpl): (&[u8], &[Attr]),
    ) -> Result<ObjectId> {
        let o = self.kem_key(ctx, key, Usage::Decapsulate, mech)?;
        let mut attrs = secret_template(tpl)?;
        let want = pqc::of(o.key.alg).map_or(0, |s| s.output_len);
        if ciphertext.len() != want {
            return Err(Error::logged(
                CKR_ENCRYPTED_DATA_LEN_RANGE,
                format!(
                    "ML-KEM ciphertext of {} bytes ({want} expected)",
                    ciphertext.len()
                ),
            ));
        }
        let secret = self
            .service
            .decapsulate(&o.key, ciphertext)
            .map_err(|e| ops::CryptoCall::Decrypt.map_err(&o.key, e))?;
        if secret.len() != pqc::SHARED_SECRET_LEN {
            return Err(Error::logged(
                CKR_DEVICE_ERROR,
                format!("{}: a shared secret of {} bytes", o.key.id, secret.len()),
            ));
        }
        attrs.extend(secret_value(&attrs, &secret)?);
        self.add_session_key(ctx, attrs)
    }
}

/// The new secret key's attributes from the caller's template (a secret key when the
/// template names no class, as the soft token makes them).
fn secret_template(tpl: &[Attr]) -> Result<Attrs> {
    let mut fixed = Attrs::new();
    if attr::find(tpl, CKA_CLASS).is_none() {
        fixed.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
    }
    template::new_object(Op::Derive, tpl, &fixed)
}

/// The value attributes of the secret key a shared secret makes: `CKA_VALUE_LEN` from the
/// template (at most the secret's 32 bytes) or all of it, AES keys 16, 24 or 32 bytes; the
/// key type from the template, else a generic secret (as the soft token's KEM keys).
fn secret_value(tpl: &Attrs, secret: &Zeroizing<Vec<u8>>) -> Result<Attrs> {
    let kt = tpl.ulong(CKA_KEY_TYPE).unwrap_or(CKK_GENERIC_SECRET);
    let len = tpl
        .ulong(CKA_VALUE_LEN)
        .map_or(secret.len(), |n| n as usize);
    if len == 0 || len > secret.len() || (kt == CKK_AES && ![16, 24, 32].contains(&len)) {
        return Err(Error::logged(
            CKR_TEMPLATE_INCONSISTENT,
            "the shared secret does not make a key of that length",
        ));
    }
    let mut a = Attrs::new();
    a.set_ulong(CKA_KEY_TYPE, kt);
    a.set_ulong(CKA_VALUE_LEN, len as CK_ULONG);
    a.insert(CKA_VALUE, secret[..len].to_vec());
    Ok(a)
}
