//! Any [`KeyService`] as a [`Token`]: the kmsp11-style objects of its key versions,
//! mechanisms mapped onto its operations, verification and public-key operations done
//! locally with the service's public key (exact, and no round trip).

use super::ops::{self, GcmDecrypt, GcmEncrypt, OaepDecrypt, Plan, RemoteMacVerify, RemoteSign};
use super::{public, EcCurve, HashAlg, KeyAlg, KeyService, KeyVersion, NewKey, SignScheme};
use crate::backend::soft::crypto as soft;
use crate::core::attr::{self, Attr, AttrValue, Attrs, AttrsExt};
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{is_rsa_pss, MechParam, Mechanism, RSA_SIGN};
use crate::core::op::{Cipher, Signer, Verifier};
use crate::core::template::{self, Usage};
use crate::core::token::{Ctx, Encapsulated, Login, ObjectId, Token, TokenInfo};
use cryptoki_sys::*;
use dashmap::DashMap;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod catalog;
mod pqc;
mod wrap;

/// One PKCS#11 object of a key version.
struct Object {
    class: CK_OBJECT_CLASS,
    key: Arc<KeyVersion>,
    attrs: Attrs,
}

/// The objects as last listed, in the order `C_FindObjects` gives them.
#[derive(Default)]
struct Catalog {
    fetched: Option<Instant>,
    order: Vec<ObjectId>,
    objects: BTreeMap<ObjectId, Arc<Object>>,
}

pub struct RemoteToken {
    slot: String,
    service: Arc<dyn KeyService>,
    gcm_service_iv: bool,
    hsm_only: bool,
    list_ttl: Duration,
    /// `user_pin` is configured: nothing reaches the service before `C_Login`.
    gate: bool,
    logged_in: AtomicBool,
    catalog: RwLock<Catalog>,
    /// Stable object ids: (class, version id) -> id, never reused.
    ids: DashMap<(CK_OBJECT_CLASS, String), ObjectId>,
    next_id: AtomicU64,
    /// Session secret keys (what `C_WrapKey` wraps and `C_UnwrapKey` makes, `wrap.rs`).
    session_keys: DashMap<ObjectId, wrap::SessionKey>,
}

/// Mechanisms of a remote slot, with what they do (`C_GetMechanismInfo`).
pub(crate) const SIGN_EC: &[CK_MECHANISM_TYPE] = &[
    CKM_ECDSA,
    CKM_ECDSA_SHA1,
    CKM_ECDSA_SHA224,
    CKM_ECDSA_SHA256,
    CKM_ECDSA_SHA384,
    CKM_ECDSA_SHA512,
];
pub(crate) const SIGN_RSA: &[CK_MECHANISM_TYPE] = &RSA_SIGN;
const HMACS: &[CK_MECHANISM_TYPE] = &[
    CKM_SHA_1_HMAC,
    CKM_SHA224_HMAC,
    CKM_SHA256_HMAC,
    CKM_SHA384_HMAC,
    CKM_SHA512_HMAC,
];
const KEYGEN: &[CK_MECHANISM_TYPE] = &[
    CKM_AES_KEY_GEN,
    CKM_GENERIC_SECRET_KEY_GEN,
    CKM_EC_KEY_PAIR_GEN,
    CKM_EC_EDWARDS_KEY_PAIR_GEN,
    CKM_RSA_PKCS_KEY_PAIR_GEN,
];

fn info(min: CK_ULONG, max: CK_ULONG, flags: CK_FLAGS) -> CK_MECHANISM_INFO {
    CK_MECHANISM_INFO {
        ulMinKeySize: min,
        ulMaxKeySize: max,
        flags,
    }
}

/// The hash a `CKM_SHA*_...` signature mechanism names.
fn mech_hash(m: CK_MECHANISM_TYPE) -> Option<HashAlg> {
    Some(match m {
        CKM_ECDSA_SHA1 | CKM_SHA1_RSA_PKCS | CKM_SHA1_RSA_PKCS_PSS | CKM_SHA_1_HMAC => {
            HashAlg::Sha1
        }
        CKM_ECDSA_SHA224 | CKM_SHA224_RSA_PKCS | CKM_SHA224_RSA_PKCS_PSS | CKM_SHA224_HMAC => {
            HashAlg::Sha224
        }
        CKM_ECDSA_SHA256 | CKM_SHA256_RSA_PKCS | CKM_SHA256_RSA_PKCS_PSS | CKM_SHA256_HMAC => {
            HashAlg::Sha256
        }
        CKM_ECDSA_SHA384 | CKM_SHA384_RSA_PKCS | CKM_SHA384_RSA_PKCS_PSS | CKM_SHA384_HMAC => {
            HashAlg::Sha384
        }
        CKM_ECDSA_SHA512 | CKM_SHA512_RSA_PKCS | CKM_SHA512_RSA_PKCS_PSS | CKM_SHA512_HMAC => {
            HashAlg::Sha512
        }
        _ => return None,
    })
}

fn ulong_list(ms: &[CK_MECHANISM_TYPE]) -> Vec<u8> {
    ms.iter().flat_map(|m| attr::ulong_bytes(*m)).collect()
}

fn param_invalid(why: impl std::fmt::Display) -> Error {
    Error::logged(CKR_MECHANISM_PARAM_INVALID, why)
}

fn hash_index(h: HashAlg) -> usize {
    match h {
        HashAlg::Sha1 => 0,
        HashAlg::Sha224 => 1,
        HashAlg::Sha256 => 2,
        HashAlg::Sha384 => 3,
        HashAlg::Sha512 => 4,
    }
}

fn scheme_hash(s: SignScheme) -> Option<HashAlg> {
    match s {
        SignScheme::Ecdsa(h)
        | SignScheme::Pkcs1(h)
        | SignScheme::Pss(h, _)
        | SignScheme::Hmac(h) => Some(h),
        SignScheme::Ed25519 | SignScheme::MlDsa | SignScheme::SlhDsa => None,
    }
}

/// The 16-character serial of `CK_TOKEN_INFO`.
fn serial16(s: &str) -> String {
    s.chars().take(16).collect()
}

impl Token for RemoteToken {
    fn slot_description(&self) -> String {
        let i = self.service.info();
        format!("{} {}", i.model, i.location)
    }

    fn token_info(&self) -> Result<TokenInfo> {
        // No request: consumers ask for this often (and before any login).
        let i = self.service.info();
        let mut flags =
            CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_LOGIN_REQUIRED | CKF_RNG;
        if !self.service.can_generate() {
            flags |= CKF_WRITE_PROTECTED;
        }
        Ok(TokenInfo {
            label: self.slot.clone(),
            manufacturer: i.manufacturer,
            model: i.model,
            serial: serial16(&i.serial),
            flags,
            max_pin_len: 255,
            min_pin_len: 0,
            total_public_memory: CK_UNAVAILABLE_INFORMATION,
            free_public_memory: CK_UNAVAILABLE_INFORMATION,
            total_private_memory: CK_UNAVAILABLE_INFORMATION,
            free_private_memory: CK_UNAVAILABLE_INFORMATION,
            hardware_version: (1, 0),
            firmware_version: (1, 0),
            utc_time: String::new(),
        })
    }

    fn mechanisms(&self) -> Vec<CK_MECHANISM_TYPE> {
        let mut v = vec![CKM_AES_GCM];
        v.extend_from_slice(SIGN_EC);
        v.push(CKM_EDDSA);
        v.extend_from_slice(SIGN_RSA);
        v.push(CKM_RSA_PKCS_OAEP);
        v.extend_from_slice(HMACS);
        if self.service.can_generate() {
            v.extend_from_slice(KEYGEN);
        }
        let allowed = self.service.mechanisms();
        if !allowed.is_empty() {
            v.retain(|m| allowed.contains(m));
        }
        for (m, _) in self.service.transforms() {
            if !v.contains(&m) {
                v.push(m);
            }
        }
        v.extend(self.pqc_mechanisms());
        v
    }

    fn mechanism_info(&self, m: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO> {
        if !self.mechanisms().contains(&m) {
            return Err(err(CKR_MECHANISM_INVALID));
        }
        let ec = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;
        // What the service's transforms add (wrapping, RSA PKCS#1 v1.5 decryption).
        let extra = self.transform_flags(m);
        let mut i = match m {
            CKM_AES_GCM => info(32, 32, CKF_HW | CKF_ENCRYPT | CKF_DECRYPT),
            CKM_EDDSA => info(256, 256, CKF_HW | CKF_SIGN | CKF_VERIFY),
            CKM_RSA_PKCS_OAEP => info(2048, 4096, CKF_HW | CKF_ENCRYPT | CKF_DECRYPT),
            CKM_AES_KEY_GEN => info(32, 32, CKF_HW | CKF_GENERATE),
            CKM_GENERIC_SECRET_KEY_GEN => info(16, 64, CKF_HW | CKF_GENERATE),
            CKM_EC_KEY_PAIR_GEN => info(256, 521, CKF_HW | CKF_GENERATE_KEY_PAIR | ec),
            CKM_EC_EDWARDS_KEY_PAIR_GEN => info(256, 256, CKF_HW | CKF_GENERATE_KEY_PAIR),
            CKM_RSA_PKCS_KEY_PAIR_GEN => info(2048, 4096, CKF_HW | CKF_GENERATE_KEY_PAIR),
            _ if SIGN_EC.contains(&m) => info(256, 521, CKF_HW | CKF_SIGN | CKF_VERIFY | ec),
            _ if SIGN_RSA.contains(&m) => info(2048, 4096, CKF_HW | CKF_SIGN | CKF_VERIFY),
            _ if HMACS.contains(&m) => info(16, 64, CKF_HW | CKF_SIGN | CKF_VERIFY),
            CKM_AES_KEY_WRAP | CKM_AES_CBC_PAD => info(16, 32, CKF_HW),
            _ => return self.pqc_mechanism_info(m),
        };
        i.flags |= extra;
        Ok(i)
    }

    fn probe(&self) -> Result<()> {
        self.service.probe()
    }

    fn needs_pin(&self) -> bool {
        false
    }

    fn describe_keys(&self) -> Option<Result<Vec<String>>> {
        let run = || {
            self.service.login()?;
            self.refresh(true)?;
            let c = self.catalog.read();
            // What the service turned out to be (Azure: Key Vault or Managed HSM, which a
            // private endpoint's address does not tell before the first answer).
            let i = self.service.info();
            let mut lines = vec![format!("service: {} {}", i.model, i.location)];
            for id in &c.order {
                let o = &c.objects[id];
                if o.class == CKO_PUBLIC_KEY {
                    continue;
                }
                let k = &o.key;
                lines.push(format!(
                    "key {:?} {} {}{}{} mechanisms: {}",
                    k.label,
                    k.id,
                    super::pqc::describe_kind(k.alg),
                    if k.primary { " primary" } else { "" },
                    match k.hardware {
                        Some(true) => " HSM",
                        Some(false) => " software",
                        None => "",
                    },
                    crate::core::mechname::names(&self.key_mechanisms(k)),
                ));
            }
            Ok(lines)
        };
        Some(run())
    }

    fn close_session(&self, session: CK_SESSION_HANDLE) -> Vec<ObjectId> {
        self.drop_session_keys(session)
    }

    fn create_object(&self, ctx: &Ctx, tpl: &[Attr]) -> Result<ObjectId> {
        self.create_session_key(ctx, tpl)
    }

    fn wrap_key(&self, ctx: &Ctx, mech: &Mechanism, w: ObjectId, k: ObjectId) -> Result<Vec<u8>> {
        self.wrap(ctx, mech, [w, k])
    }

    fn unwrap_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        u: ObjectId,
        wrapped: &[u8],
        tpl: &[Attr],
    ) -> Result<ObjectId> {
        self.unwrap(ctx, mech, u, (wrapped, tpl))
    }

    fn login(&self, who: Login, _pin: &[u8]) -> Result<()> {
        if who != Login::User {
            return Err(Error::logged(
                CKR_USER_TYPE_INVALID,
                format!(
                    "slot {}: a remote key service has no security officer",
                    self.slot
                ),
            ));
        }
        // The PIN itself was checked by the core against `user_pin` when one is set; the
        // service is reached with the slot's own credentials.
        self.service.login()?;
        self.logged_in.store(true, Ordering::SeqCst);
        // Not forced: OpenBao's seal logs in for every encryption; the list's own time
        // to live decides.
        if let Err(e) = self.refresh(false) {
            log::warn!(
                "slot {}: listing the keys after login failed: {e}",
                self.slot
            );
        }
        Ok(())
    }

    fn logout(&self) {
        self.logged_in.store(false, Ordering::SeqCst);
    }

    fn find_objects(&self, ctx: &Ctx, tpl: &[Attr]) -> Result<Vec<ObjectId>> {
        if self.gate && ctx.login != Login::User {
            return Ok(Vec::new());
        }
        self.refresh(false).map_err(|e| self.find_failed(e))?;
        let found = self.matching(ctx, tpl);
        // A key the operator made a moment ago: a search that names something and finds
        // nothing lists again (at most once a second) instead of waiting out the cache.
        let stale = self
            .catalog
            .read()
            .fetched
            .is_none_or(|t| t.elapsed() > Duration::from_secs(1));
        // (Certificates and data objects are never here: a consumer looking for those on
        // each operation, as libp11 does, costs no listing.)
        let wants_key = attr::find(tpl, CKA_CLASS)
            .map(attr::parse_ulong)
            .is_none_or(|c| matches!(c, Ok(CKO_PRIVATE_KEY | CKO_PUBLIC_KEY | CKO_SECRET_KEY)));
        let mut found = if found.is_empty() && !tpl.is_empty() && wants_key && stale {
            self.refresh(true).map_err(|e| self.find_failed(e))?;
            self.matching(ctx, tpl)
        } else {
            found
        };
        found.extend(self.matching_session_keys(ctx, tpl));
        Ok(found)
    }

    fn get_attributes(
        &self,
        ctx: &Ctx,
        obj: ObjectId,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<AttrValue>> {
        if let Some(a) = self.session_key(ctx, obj) {
            return Ok(template::read(&a, types));
        }
        let o = self.object(ctx, obj)?;
        Ok(template::read(&o.attrs, types))
    }

    fn set_attributes(&self, ctx: &Ctx, obj: ObjectId, _template: &[Attr]) -> Result<()> {
        self.object(ctx, obj)?;
        Err(Error::logged(
            CKR_ATTRIBUTE_READ_ONLY,
            format!("slot {}: remote keys are not modifiable", self.slot),
        ))
    }

    fn destroy_object(&self, ctx: &Ctx, obj: ObjectId) -> Result<()> {
        if self.session_key(ctx, obj).is_some() {
            self.session_keys.remove(&obj);
            return Ok(());
        }
        self.object(ctx, obj)?;
        Err(Error::logged(
            CKR_ACTION_PROHIBITED,
            format!(
                "slot {}: remote keys are destroyed in the service, not through PKCS#11",
                self.slot
            ),
        ))
    }

    fn encrypt_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>> {
        if let Some(a) = self.session_key(ctx, key) {
            return self.session_cipher(&a, mech, Usage::Encrypt);
        }
        let o = self.key(ctx, key, Usage::Encrypt, mech)?;
        if let Some(c) = self.transform_cipher(&o, mech, Usage::Encrypt)? {
            return Ok(c);
        }
        match (o.class, o.key.alg, mech.mech) {
            (CKO_SECRET_KEY, KeyAlg::AesGcm { .. }, CKM_AES_GCM) => {
                let (iv, iv_bits, aad) = gcm_param(mech)?;
                self.check_encrypt_iv(iv, iv_bits)?;
                Ok(Box::new(GcmEncrypt::new(
                    self.service.clone(),
                    o.key.clone(),
                    aad.to_vec(),
                )))
            }
            (CKO_PUBLIC_KEY, KeyAlg::Rsa { .. }, CKM_RSA_PKCS_OAEP | CKM_RSA_PKCS) => {
                // Exact in software with the service's public key.
                soft::encrypt_init(mech, &self.public_key_of(&o)?)
            }
            (_, _, CKM_AES_GCM | CKM_RSA_PKCS_OAEP | CKM_RSA_PKCS) => {
                Err(err(CKR_KEY_TYPE_INCONSISTENT))
            }
            _ => Err(err(CKR_MECHANISM_INVALID)),
        }
    }

    fn decrypt_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>> {
        if let Some(a) = self.session_key(ctx, key) {
            return self.session_cipher(&a, mech, Usage::Decrypt);
        }
        let o = self.key(ctx, key, Usage::Decrypt, mech)?;
        if let Some(c) = self.transform_cipher(&o, mech, Usage::Decrypt)? {
            return Ok(c);
        }
        match (o.class, o.key.alg, mech.mech) {
            (CKO_SECRET_KEY, KeyAlg::AesGcm { .. }, CKM_AES_GCM) => {
                let (iv, iv_bits, aad) = gcm_param(mech)?;
                if iv.len() != ops::GCM_IV || !(iv_bits == 96 || iv_bits == 0) {
                    return Err(param_invalid("the services' AES-GCM IVs are 12 bytes"));
                }
                Ok(Box::new(GcmDecrypt::new(
                    self.service.clone(),
                    o.key.clone(),
                    iv.to_vec(),
                    aad.to_vec(),
                )))
            }
            (CKO_PRIVATE_KEY, KeyAlg::Rsa { bits }, CKM_RSA_PKCS_OAEP) => {
                let Some(p) = mech.oaep() else {
                    return Err(param_invalid("RSA-OAEP needs CK_RSA_PKCS_OAEP_PARAMS"));
                };
                let h =
                    HashAlg::from_ckm(p.hash).ok_or_else(|| param_invalid("OAEP: unknown hash"))?;
                if p.mgf != h.mgf() {
                    return Err(param_invalid("OAEP: services use MGF1 with the OAEP hash"));
                }
                if !p.source_data.is_empty() || (p.source != 0 && p.source != CKZ_DATA_SPECIFIED) {
                    return Err(param_invalid("OAEP: services take no label"));
                }
                if !o.key.usage.oaep_hashes.is_empty() && !o.key.usage.oaep_hashes.contains(&h) {
                    return Err(param_invalid(format!(
                        "{}: the service's key decrypts OAEP with {:?} only",
                        o.key.id, o.key.usage.oaep_hashes
                    )));
                }
                Ok(Box::new(OaepDecrypt::new(
                    self.service.clone(),
                    o.key.clone(),
                    h,
                    (bits as usize).div_ceil(8),
                )))
            }
            (_, _, CKM_AES_GCM | CKM_RSA_PKCS_OAEP) => Err(err(CKR_KEY_TYPE_INCONSISTENT)),
            _ => Err(err(CKR_MECHANISM_INVALID)),
        }
    }

    fn sign_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Signer>> {
        let o = self.key(ctx, key, Usage::Sign, mech)?;
        if o.class == CKO_PUBLIC_KEY {
            return Err(err(CKR_KEY_TYPE_INCONSISTENT));
        }
        let plan = self.sign_plan(&o, mech)?;
        self.service.check_sign_scheme(&o.key, plan.scheme)?;
        let signer = RemoteSign::new(self.service.clone(), o.key.clone(), plan);
        if o.key.alg.is_pqc() {
            return Ok(Box::new(
                signer.with_context(&self.pqc_context(&o.key, mech)?),
            ));
        }
        Ok(Box::new(signer))
    }

    fn verify_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Verifier>> {
        if mech.mech == CKM_SLH_DSA {
            // Local verification needs SLH-DSA, which aws-lc does not have.
            return Err(Error::logged(
                CKR_MECHANISM_INVALID,
                "SLH-DSA signatures are made by the service and not verified here",
            ));
        }
        let o = self.key(ctx, key, Usage::Verify, mech)?;
        if matches!(o.key.alg, KeyAlg::Hmac { .. } | KeyAlg::AesGcm { .. }) {
            let plan = self.sign_plan(&o, mech)?;
            let SignScheme::Hmac(h) = plan.scheme else {
                return Err(err(CKR_KEY_TYPE_INCONSISTENT));
            };
            return Ok(Box::new(RemoteMacVerify::new(
                self.service.clone(),
                o.key.clone(),
                h,
            )));
        }
        if !o.key.alg.is_asymmetric() {
            return Err(err(CKR_KEY_TYPE_INCONSISTENT));
        }
        // Checked as the service would sign (same key type and parameter rules), then
        // verified here with the service's public key.
        self.sign_plan(&o, mech)?;
        soft::verify_init(mech, &self.public_key_of(&o)?)
    }

    fn generate_key(&self, ctx: &Ctx, mech: &Mechanism, tpl: &[Attr]) -> Result<ObjectId> {
        if !self.service.can_generate() {
            return Err(err(CKR_FUNCTION_NOT_SUPPORTED));
        }
        let label = new_key_checks(ctx, tpl, &[])?;
        let len = attr::find(tpl, CKA_VALUE_LEN)
            .map(attr::parse_ulong)
            .transpose()?;
        let alg = match mech.mech {
            CKM_AES_KEY_GEN => {
                match len {
                    Some(32) => {}
                    None => return Err(err(CKR_TEMPLATE_INCOMPLETE)),
                    Some(_) => {
                        return Err(Error::logged(
                            CKR_ATTRIBUTE_VALUE_INVALID,
                            "remote AES keys are 256-bit (CKA_VALUE_LEN 32)",
                        ))
                    }
                }
                KeyAlg::AesGcm { bits: 256 }
            }
            CKM_GENERIC_SECRET_KEY_GEN => {
                let hash = match attr::find(tpl, CKA_KEY_TYPE)
                    .map(attr::parse_ulong)
                    .transpose()?
                {
                    None | Some(CKK_GENERIC_SECRET) => None,
                    Some(CKK_SHA_1_HMAC) => Some(HashAlg::Sha1),
                    Some(CKK_SHA224_HMAC) => Some(HashAlg::Sha224),
                    Some(CKK_SHA256_HMAC) => Some(HashAlg::Sha256),
                    Some(CKK_SHA384_HMAC) => Some(HashAlg::Sha384),
                    Some(CKK_SHA512_HMAC) => Some(HashAlg::Sha512),
                    Some(_) => return Err(err(CKR_TEMPLATE_INCONSISTENT)),
                };
                let bytes = len.ok_or_else(|| err(CKR_TEMPLATE_INCOMPLETE))?;
                KeyAlg::Hmac {
                    hash,
                    bits: bytes as u32 * 8,
                }
            }
            _ => return Err(err(CKR_MECHANISM_INVALID)),
        };
        let class = CKO_SECRET_KEY;
        if let Some(c) = attr::find(tpl, CKA_CLASS) {
            if attr::parse_ulong(c)? != class {
                return Err(err(CKR_TEMPLATE_INCONSISTENT));
            }
        }
        self.service
            .generate(&NewKey {
                label: label.clone(),
                alg,
                sign: matches!(alg, KeyAlg::Hmac { .. }),
                decrypt: matches!(alg, KeyAlg::AesGcm { .. }),
            })
            .map_err(generate_refusal)?;
        self.newest(&label, class)
    }

    fn generate_key_pair(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        public_tpl: &[Attr],
        private_tpl: &[Attr],
    ) -> Result<(ObjectId, ObjectId)> {
        if !self.service.can_generate() {
            return Err(err(CKR_FUNCTION_NOT_SUPPORTED));
        }
        let label = new_key_checks(ctx, private_tpl, public_tpl)?;
        let alg = match mech.mech {
            CKM_EC_KEY_PAIR_GEN => {
                let p = attr::find(public_tpl, CKA_EC_PARAMS)
                    .ok_or_else(|| err(CKR_TEMPLATE_INCOMPLETE))?;
                let curve = match p {
                    crate::backend::soft::crypto::der::OID_P256 => EcCurve::P256,
                    crate::backend::soft::crypto::der::OID_P384 => EcCurve::P384,
                    crate::backend::soft::crypto::der::OID_P521 => EcCurve::P521,
                    _ => {
                        return Err(Error::logged(
                            CKR_CURVE_NOT_SUPPORTED,
                            "remote EC keys are P-256, P-384 or P-521",
                        ))
                    }
                };
                KeyAlg::Ec { curve }
            }
            CKM_EC_EDWARDS_KEY_PAIR_GEN => KeyAlg::Ed25519,
            CKM_RSA_PKCS_KEY_PAIR_GEN => {
                let bits = attr::find(public_tpl, CKA_MODULUS_BITS)
                    .map(attr::parse_ulong)
                    .transpose()?
                    .ok_or_else(|| err(CKR_TEMPLATE_INCOMPLETE))?;
                if !matches!(bits, 2048 | 3072 | 4096) {
                    return Err(Error::logged(
                        CKR_KEY_SIZE_RANGE,
                        "remote RSA keys are 2048, 3072 or 4096 bits",
                    ));
                }
                if let Some(e) = attr::find(public_tpl, CKA_PUBLIC_EXPONENT) {
                    if crate::backend::soft::crypto::der::trim(e) != [1, 0, 1] {
                        return Err(Error::logged(
                            CKR_ATTRIBUTE_VALUE_INVALID,
                            "remote RSA keys have the public exponent 65537",
                        ));
                    }
                }
                KeyAlg::Rsa { bits: bits as u32 }
            }
            CKM_ML_DSA_KEY_PAIR_GEN | CKM_SLH_DSA_KEY_PAIR_GEN | CKM_ML_KEM_KEY_PAIR_GEN => {
                self.pqc_new_kind(mech, public_tpl, private_tpl)?
            }
            _ => return Err(err(CKR_MECHANISM_INVALID)),
        };
        let flag = |t| attr::find(private_tpl, t).map(attr::parse_bool).transpose();
        let kem = matches!(alg, KeyAlg::MlKem { .. });
        let decrypt = flag(CKA_DECRYPT)?.unwrap_or(false);
        let sign = flag(CKA_SIGN)?.unwrap_or(!decrypt && !kem);
        if (decrypt && !matches!(alg, KeyAlg::Rsa { .. })) || (sign && kem) {
            return Err(err(CKR_TEMPLATE_INCONSISTENT));
        }
        self.service
            .generate(&NewKey {
                label: label.clone(),
                alg,
                sign,
                decrypt,
            })
            .map_err(generate_refusal)?;
        let private = self.newest(&label, CKO_PRIVATE_KEY)?;
        let public = self.newest(&label, CKO_PUBLIC_KEY)?;
        Ok((public, private))
    }

    fn encapsulate_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        key: ObjectId,
        tpl: &[Attr],
        out: &mut [u8],
    ) -> Result<Encapsulated> {
        self.kem_encapsulate(ctx, mech, key, tpl, out)
    }

    fn decapsulate_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        key: ObjectId,
        ciphertext: &[u8],
        tpl: &[Attr],
    ) -> Result<ObjectId> {
        self.kem_decapsulate(ctx, mech, key, (ciphertext, tpl))
    }

    fn generate_random(&self, out: &mut [u8]) -> Result<()> {
        use aws_lc_rs::rand::SecureRandom;
        aws_lc_rs::rand::SystemRandom::new()
            .fill(out)
            .map_err(|_| Error::general("random generator failed"))
    }
}

/// Common checks of a key-generation template: a label, a token object, sensitive and
/// not extractable (a remote key cannot be anything else). Returns the label.
fn new_key_checks(ctx: &Ctx, main: &[Attr], other: &[Attr]) -> Result<String> {
    if ctx.login != Login::User {
        return Err(err(CKR_USER_NOT_LOGGED_IN));
    }
    if !ctx.rw {
        return Err(err(CKR_SESSION_READ_ONLY));
    }
    let label = attr::find(main, CKA_LABEL)
        .or_else(|| attr::find(other, CKA_LABEL))
        .ok_or_else(|| {
            Error::logged(
                CKR_TEMPLATE_INCOMPLETE,
                "a remote key needs CKA_LABEL (its name)",
            )
        })?;
    let label = String::from_utf8(label.to_vec()).map_err(|_| err(CKR_ATTRIBUTE_VALUE_INVALID))?;
    let ok_name = !label.is_empty()
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok_name {
        return Err(Error::logged(
            CKR_ATTRIBUTE_VALUE_INVALID,
            format!("key name {label:?}: services take letters, digits, '-' and '_'"),
        ));
    }
    for t in main.iter().chain(other) {
        let refuse = match t.ty {
            CKA_TOKEN => t.value == [0],
            CKA_EXTRACTABLE => t.value == [1],
            CKA_SENSITIVE => t.value == [0],
            _ => false,
        };
        if refuse {
            return Err(Error::logged(
                CKR_ATTRIBUTE_VALUE_INVALID,
                "remote keys are token objects, sensitive and never extractable",
            ));
        }
    }
    Ok(label)
}

impl RemoteToken {
    /// The listed objects that match `tpl` and that the session may see, in order.
    fn matching(&self, ctx: &Ctx, tpl: &[Attr]) -> Vec<ObjectId> {
        let c = self.catalog.read();
        c.order
            .iter()
            .filter(|id| {
                c.objects.get(id).is_some_and(|o| {
                    (o.class == CKO_PUBLIC_KEY || ctx.login == Login::User)
                        && attr::matches(&o.attrs, tpl)
                })
            })
            .copied()
            .collect()
    }

    /// After a generation: the primary version of `label` of `class`.
    fn newest(&self, label: &str, class: CK_OBJECT_CLASS) -> Result<ObjectId> {
        self.refresh(true)?;
        let c = self.catalog.read();
        c.order
            .iter()
            .find(|id| {
                c.objects
                    .get(id)
                    .is_some_and(|o| o.class == class && o.key.label == label && o.key.primary)
            })
            .copied()
            .ok_or_else(|| {
                Error::general(format!(
                    "slot {}: the service created {label:?} but does not list it",
                    self.slot
                ))
            })
    }
}

/// A service's refusal to create a key (a policy without the create permission), as
/// `C_GenerateKey`/`C_GenerateKeyPair` may answer it: they cannot return
/// `CKR_KEY_FUNCTION_NOT_PERMITTED` or `CKR_KEY_HANDLE_INVALID`.
fn generate_refusal(e: Error) -> Error {
    match e.rv() {
        CKR_KEY_FUNCTION_NOT_PERMITTED | CKR_KEY_HANDLE_INVALID => Error::logged(
            CKR_FUNCTION_FAILED,
            "the service refused to create the key (see the line above); the slot's credentials need the create permission",
        ),
        _ => e,
    }
}

/// The IV, its bit length and the AAD of a `CKM_AES_GCM` parameter the services can run:
/// 128-bit tags only.
fn gcm_param(mech: &Mechanism) -> Result<(&[u8], CK_ULONG, &[u8])> {
    let MechParam::Gcm {
        iv,
        iv_bits,
        aad,
        tag_bits,
    } = &mech.param
    else {
        return Err(param_invalid("CKM_AES_GCM needs CK_GCM_PARAMS"));
    };
    if *tag_bits != 128 {
        return Err(param_invalid("the services' AES-GCM tags are 128 bits"));
    }
    Ok((iv, *iv_bits, aad))
}
