//! Key wrapping on a remote token, and the service ciphers beyond AES-GCM and RSA-OAEP
//! ([`Transform`]: AES key wrap, AES-CBC-PAD, RSA PKCS#1 v1.5 decryption) where the
//! service offers them ([`KeyService::transforms`]).
//!
//! A remote key never leaves its service, so what `C_WrapKey` wraps and `C_UnwrapKey`
//! makes is a *session* secret key held here: created with `C_CreateObject` (or by an
//! unwrap), visible to its application until its session closes, usable for local
//! encryption (the transit-KEK pattern: unwrap a data key with the service's key, then
//! encrypt locally with it). The same service operations serve `C_Encrypt`/`C_Decrypt` of
//! raw key bytes (the OpenBao seal's way of wrapping).

use super::*;
use crate::backend::remote::ops::Transformed;
use crate::backend::remote::{Transform, WrapAlg};
use crate::core::template::Op;

/// A session secret key: its attributes (with `CKA_VALUE`) and owner.
pub(super) struct SessionKey {
    pub session: CK_SESSION_HANDLE,
    pub attrs: Attrs,
}

/// The key type a transform mechanism works with.
fn mech_key_type(m: CK_MECHANISM_TYPE) -> CK_KEY_TYPE {
    match m {
        CKM_AES_KEY_WRAP | CKM_AES_CBC_PAD => CKK_AES,
        _ => CKK_RSA,
    }
}

impl RemoteToken {
    /// The functions the service serves `m` for through [`KeyService::transform`].
    pub(super) fn transform_flags(&self, m: CK_MECHANISM_TYPE) -> CK_FLAGS {
        self.service
            .transforms()
            .iter()
            .filter(|(t, _)| *t == m)
            .fold(0, |f, (_, g)| f | g)
    }

    /// The transform mechanisms that fit a version (for `CKA_ALLOWED_MECHANISMS`).
    pub(super) fn key_transforms(&self, k: &KeyVersion) -> Vec<CK_MECHANISM_TYPE> {
        let wanted = match k.alg {
            KeyAlg::AesGcm { .. } => CKK_AES,
            KeyAlg::Rsa { .. } if k.usage.decrypt => CKK_RSA,
            _ => return Vec::new(),
        };
        self.service
            .transforms()
            .into_iter()
            .map(|(m, _)| m)
            .filter(|m| mech_key_type(*m) == wanted)
            .collect()
    }

    /// Whether a version's objects may wrap / unwrap (`CKA_WRAP`, `CKA_UNWRAP`).
    pub(super) fn can_wrap(&self, k: &KeyVersion) -> (bool, bool) {
        let f = self
            .key_transforms(k)
            .iter()
            .fold(0, |f, m| f | self.transform_flags(*m));
        (f & CKF_WRAP != 0, f & CKF_UNWRAP != 0)
    }

    /// The [`Transform`] `mech` asks of `o` for `usage`, if the service offers it
    /// (`None`: not a transform; the caller's own match decides).
    fn transform_of(
        &self,
        o: &Object,
        mech: &Mechanism,
        usage: Usage,
    ) -> Result<Option<Transform>> {
        let flag = match usage {
            Usage::Encrypt => CKF_ENCRYPT,
            Usage::Decrypt => CKF_DECRYPT,
            Usage::Wrap => CKF_WRAP,
            Usage::Unwrap => CKF_UNWRAP,
            _ => return Ok(None),
        };
        if self.transform_flags(mech.mech) & flag == 0 {
            return Ok(None);
        }
        if usage == Usage::Encrypt && mech_key_type(mech.mech) == CKK_RSA {
            // Exact in software with the public key: no request (token.rs).
            return Ok(None);
        }
        if mech_key_type(mech.mech) != o.key.alg.key_type() {
            return Err(err(CKR_KEY_TYPE_INCONSISTENT));
        }
        let inward = matches!(usage, Usage::Decrypt | Usage::Unwrap);
        let t = match mech.mech {
            CKM_AES_KEY_WRAP => {
                let default_iv = match &mech.param {
                    MechParam::None => true,
                    MechParam::Bytes(b) => b.is_empty() || b[..] == [0xa6; 8],
                    _ => false,
                };
                if !default_iv {
                    return Err(param_invalid("AES key wrap here takes the default IV only"));
                }
                if inward {
                    Transform::Unwrap(WrapAlg::AesKw)
                } else {
                    Transform::Wrap(WrapAlg::AesKw)
                }
            }
            CKM_AES_CBC_PAD => {
                let iv: [u8; 16] = match &mech.param {
                    MechParam::Bytes(b) => b.as_slice().try_into().ok(),
                    _ => None,
                }
                .ok_or_else(|| param_invalid("CKM_AES_CBC_PAD needs a 16-byte IV"))?;
                if inward {
                    Transform::CbcPadDecrypt(iv)
                } else {
                    Transform::CbcPadEncrypt(iv)
                }
            }
            CKM_RSA_PKCS if usage == Usage::Decrypt => Transform::Pkcs1Decrypt,
            CKM_RSA_PKCS => wrap_dir(inward, WrapAlg::RsaPkcs1),
            CKM_RSA_PKCS_OAEP => {
                let p = mech
                    .oaep()
                    .ok_or_else(|| param_invalid("RSA-OAEP needs CK_RSA_PKCS_OAEP_PARAMS"))?;
                let h =
                    HashAlg::from_ckm(p.hash).ok_or_else(|| param_invalid("OAEP: unknown hash"))?;
                if p.mgf != h.mgf() || !p.source_data.is_empty() {
                    return Err(param_invalid(
                        "OAEP: services use MGF1 with the OAEP hash and no label",
                    ));
                }
                wrap_dir(inward, WrapAlg::RsaOaep(h))
            }
            _ => return Ok(None),
        };
        Ok(Some(t))
    }

    /// `C_EncryptInit`/`C_DecryptInit` with a transform mechanism on a service key.
    pub(super) fn transform_cipher(
        &self,
        o: &Object,
        mech: &Mechanism,
        usage: Usage,
    ) -> Result<Option<Box<dyn Cipher>>> {
        let Some(t) = self.transform_of(o, mech, usage)? else {
            return Ok(None);
        };
        Ok(Some(Box::new(ops::Collected::new(self.transformed(o, t)))))
    }

    fn transformed(&self, o: &Object, t: Transform) -> Transformed {
        Transformed {
            service: self.service.clone(),
            key: o.key.clone(),
            op: t,
            modulus_len: modulus_len(&o.key),
        }
    }

    /// A session key of this session's application, if `obj` is one.
    pub(super) fn session_key(&self, ctx: &Ctx, obj: ObjectId) -> Option<Attrs> {
        let k = self.session_keys.get(&obj)?;
        (ctx.login == Login::User || !k.attrs.flag_or(CKA_PRIVATE, true)).then(|| k.attrs.clone())
    }

    /// The session keys that match `tpl`.
    pub(super) fn matching_session_keys(&self, ctx: &Ctx, tpl: &[Attr]) -> Vec<ObjectId> {
        let mut v: Vec<ObjectId> = self
            .session_keys
            .iter()
            .filter(|e| ctx.login == Login::User || !e.attrs.flag_or(CKA_PRIVATE, true))
            .filter(|e| attr::matches(&e.attrs, tpl))
            .map(|e| *e.key())
            .collect();
        v.sort_unstable();
        v
    }

    /// Adds a session secret key made of `attrs` (completed: `CKA_VALUE_LEN`, checks).
    pub(super) fn add_session_key(&self, ctx: &Ctx, mut attrs: Attrs) -> Result<ObjectId> {
        if attrs.flag_or(CKA_TOKEN, false) {
            return Err(Error::logged(
                CKR_ATTRIBUTE_VALUE_INVALID,
                format!(
                    "slot {}: only session secret keys can be made here (the service's keys are made with C_GenerateKey)",
                    self.slot
                ),
            ));
        }
        if attrs.ulong(CKA_CLASS) != Some(CKO_SECRET_KEY) {
            return Err(Error::logged(
                CKR_TEMPLATE_INCONSISTENT,
                format!("slot {}: only secret keys can be made here", self.slot),
            ));
        }
        if attrs.flag_or(CKA_PRIVATE, true) && ctx.login != Login::User {
            return Err(err(CKR_USER_NOT_LOGGED_IN));
        }
        let extra = soft::complete_import(&attrs)?;
        attrs.extend(extra);
        // Checks the value fits its key type (an AES key of 16, 24 or 32 bytes).
        soft::Key::from_attrs(&attrs)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.session_keys.insert(
            id,
            SessionKey {
                session: ctx.session,
                attrs,
            },
        );
        Ok(id)
    }

    pub(super) fn create_session_key(&self, ctx: &Ctx, tpl: &[Attr]) -> Result<ObjectId> {
        let attrs = template::new_object(Op::Create, tpl, &Attrs::new())?;
        self.add_session_key(ctx, attrs)
    }

    /// The session keys of a closing session (their ids, for the core to forget).
    pub(super) fn drop_session_keys(&self, session: CK_SESSION_HANDLE) -> Vec<ObjectId> {
        let ids: Vec<ObjectId> = self
            .session_keys
            .iter()
            .filter(|e| e.session == session)
            .map(|e| *e.key())
            .collect();
        for id in &ids {
            self.session_keys.remove(id);
        }
        ids
    }

    /// `C_EncryptInit`/`C_DecryptInit` with a session key: local, with the soft token's code.
    pub(super) fn session_cipher(
        &self,
        attrs: &Attrs,
        mech: &Mechanism,
        usage: Usage,
    ) -> Result<Box<dyn Cipher>> {
        template::check_usage(attrs, usage, mech.mech)?;
        let key = Arc::new(soft::Key::from_attrs(attrs)?);
        if usage == Usage::Encrypt {
            soft::encrypt_init(mech, &key)
        } else {
            soft::decrypt_init(mech, &key)
        }
    }

    /// The service key of a wrap or unwrap, checked for the usage and mechanism.
    fn wrapping_key(
        &self,
        ctx: &Ctx,
        obj: ObjectId,
        usage: Usage,
        mech: &Mechanism,
        bad: CK_RV,
    ) -> Result<(Arc<Object>, Transform)> {
        let o = self.object(ctx, obj).map_err(|_| err(bad))?;
        template::check_usage(&o.attrs, usage, mech.mech)?;
        let t = self
            .transform_of(&o, mech, usage)?
            .ok_or_else(|| err(CKR_MECHANISM_INVALID))?;
        Ok((o, t))
    }

    /// `C_WrapKey`: `[wrapping key, key to wrap]`.
    pub(super) fn wrap(&self, ctx: &Ctx, mech: &Mechanism, keys: [ObjectId; 2]) -> Result<Vec<u8>> {
        let [wrapping, key] = keys;
        let target = match self.session_key(ctx, key) {
            Some(a) => a,
            None if self.object(ctx, key).is_ok() => {
                return Err(Error::logged(
                    CKR_KEY_UNEXTRACTABLE,
                    "a service's key never leaves the service",
                ))
            }
            None => return Err(err(CKR_KEY_HANDLE_INVALID)),
        };
        if !target.flag_or(CKA_EXTRACTABLE, false) {
            return Err(Error::logged(
                CKR_KEY_UNEXTRACTABLE,
                "the key to wrap is not extractable",
            ));
        }
        if target.flag_or(CKA_WRAP_WITH_TRUSTED, false) {
            return Err(err(CKR_KEY_NOT_WRAPPABLE));
        }
        let (o, t) = self.wrapping_key(
            ctx,
            wrapping,
            Usage::Wrap,
            mech,
            CKR_WRAPPING_KEY_HANDLE_INVALID,
        )?;
        let value = target
            .bytes(CKA_VALUE)
            .ok_or_else(|| err(CKR_KEY_NOT_WRAPPABLE))?;
        self.transformed(&o, t)
            .run(value)
            .map_err(|e| match e.rv() {
                CKR_DATA_LEN_RANGE => err(CKR_KEY_SIZE_RANGE),
                CKR_KEY_FUNCTION_NOT_PERMITTED | CKR_KEY_HANDLE_INVALID => {
                    Error::logged(CKR_FUNCTION_FAILED, "the service refused the wrap")
                }
                _ => e,
            })
    }

    /// `C_UnwrapKey`: the unwrapping key, then the wrapped bytes with the new key's template.
    pub(super) fn unwrap(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        unwrapping: ObjectId,
        (wrapped, tpl): (&[u8], &[Attr]),
    ) -> Result<ObjectId> {
        let (o, t) = self.wrapping_key(
            ctx,
            unwrapping,
            Usage::Unwrap,
            mech,
            CKR_UNWRAPPING_KEY_HANDLE_INVALID,
        )?;
        let mut attrs = template::new_object(Op::Unwrap, tpl, &Attrs::new())?;
        let value =
            zeroize::Zeroizing::new(self.transformed(&o, t).run(wrapped).map_err(
                |e| match e.rv() {
                    CKR_ENCRYPTED_DATA_LEN_RANGE => err(CKR_WRAPPED_KEY_LEN_RANGE),
                    CKR_ENCRYPTED_DATA_INVALID | CKR_DATA_INVALID => err(CKR_WRAPPED_KEY_INVALID),
                    CKR_KEY_FUNCTION_NOT_PERMITTED | CKR_KEY_HANDLE_INVALID => {
                        Error::logged(CKR_FUNCTION_FAILED, "the service refused the unwrap")
                    }
                    _ => e,
                },
            )?);
        if let Some(n) = attrs.ulong(CKA_VALUE_LEN) {
            if n as usize != value.len() {
                return Err(err(CKR_TEMPLATE_INCONSISTENT));
            }
            attrs.remove(&CKA_VALUE_LEN);
        }
        attrs.insert(CKA_VALUE, value.to_vec());
        self.add_session_key(ctx, attrs)
    }
}

fn wrap_dir(inward: bool, alg: WrapAlg) -> Transform {
    if inward {
        Transform::Unwrap(alg)
    } else {
        Transform::Wrap(alg)
    }
}

fn modulus_len(k: &KeyVersion) -> usize {
    match k.alg {
        KeyAlg::Rsa { bits } => (bits as usize).div_ceil(8),
        _ => 0,
    }
}
