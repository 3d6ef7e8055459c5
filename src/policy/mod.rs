//! The key-use policy (`[policy]` and the per-slot keys; `docs/policy.md`): each slot's
//! rules, built once at `C_Initialize` from the configuration, and the decisions they
//! make. The C boundary (`ffi::policy`) asks them before every call on a slot, module
//! slots included, so no backend enforces anything of its own.
//!
//! - `hardware_only`: a slot whose keys live in software refuses private and secret key
//!   use (and key generation) with `CKR_FUNCTION_REJECTED`; public-key operations stay.
//! - `approved_mechanisms = "fips"`: only [`fips::TABLE`]'s mechanisms, for its functions,
//!   with approved key sizes and curves.
//! - `read_only`: no object or token change (`CKR_TOKEN_WRITE_PROTECTED`).
//! - `allow`: the key uses the slot offers (`CKR_KEY_FUNCTION_NOT_PERMITTED`).

pub mod fips;

use crate::config::policy::{Approved, Protection, Use};
use crate::config::{BackendConfig, Config, SlotConfig};
use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One slot's rules.
#[derive(Debug, Clone)]
pub struct Rules {
    pub label: String,
    pub protection: Protection,
    /// Why hsmux judged the protection level so (for logs and `hsmux check`).
    pub why: String,
    pub hardware_only: bool,
    pub fips: bool,
    /// `fips_extra`: conditional rows the key store is validated for.
    pub extra: Vec<CK_MECHANISM_TYPE>,
    pub read_only: bool,
    pub allow: Option<Vec<Use>>,
}

/// What the policy needs to know of a key (read by the caller from the key store; `None`
/// where the store does not say).
#[derive(Debug, Clone, Default)]
pub struct KeyFacts {
    pub class: Option<CK_OBJECT_CLASS>,
    pub key_type: Option<CK_KEY_TYPE>,
    /// RSA: the modulus length in bits.
    pub modulus_bits: Option<u64>,
    /// EC: the DER `CKA_EC_PARAMS`.
    pub ec_params: Option<Vec<u8>>,
    /// Secret keys: `CKA_VALUE_LEN` in bytes.
    pub value_len: Option<u64>,
}

/// Where the keys of a slot with this configuration live, and why hsmux says so.
pub fn protection(slot: &SlotConfig) -> (Protection, String) {
    if let Some(p) = slot.policy.protection {
        return (p, "set by `protection` in the slot".into());
    }
    of_backend(&slot.backend)
}

fn of_backend(b: &BackendConfig) -> (Protection, String) {
    use Protection::*;
    let (p, why): (Protection, &str) = match b {
        BackendConfig::Soft { .. } => (Software, "hsmux's soft token keeps its keys in software"),
        BackendConfig::Module(_) => (
            Hardware,
            "a vendor PKCS#11 library is taken for an HSM (set `protection = \"software\"` for a software one)",
        ),
        BackendConfig::CloudHsm(_) => (Hardware, "AWS CloudHSM keys live in its HSMs"),
        BackendConfig::AwsKms(_) => (
            Hardware,
            "AWS KMS keeps keys in its FIPS 140-3 validated HSMs",
        ),
        BackendConfig::GcpKms(c) if c.hsm_only => (Hardware, "hsm_only = true: only HSM keys are shown"),
        BackendConfig::GcpKms(_) => (Software, "hsm_only is not set: SOFTWARE keys may be shown"),
        BackendConfig::AzureKv(c) if c.hsm_only => (Hardware, "hsm_only = true: only HSM keys are shown"),
        BackendConfig::AzureKv(_) => (Software, "hsm_only is not set: software keys may be shown"),
        BackendConfig::Vault(_) => (
            Software,
            "transit keys are not known to be HSM-backed (set `protection = \"hardware\"` if they are)",
        ),
        BackendConfig::Replicas { replicas, .. } => {
            // A group is as weak as its weakest replica.
            return replicas
                .iter()
                .map(|r| of_backend(&r.backend))
                .find(|(p, _)| *p == Software)
                .map(|(p, why)| (p, format!("a replica: {why}")))
                .unwrap_or((Hardware, "every replica keeps its keys in hardware".into()));
        }
    };
    (p, why.into())
}

/// The rules of every configured slot, in configuration order.
pub fn build(config: &Config) -> std::result::Result<Vec<Rules>, String> {
    config
        .slots
        .iter()
        .map(|s| {
            let (protection, why) = protection(s);
            let extra = s
                .policy
                .fips_extra
                .iter()
                .map(|n| {
                    fips::conditional(n).ok_or_else(|| {
                        format!(
                            "slot {:?}: fips_extra: {n:?} is not a conditional row of the FIPS table (docs/policy.md)",
                            s.label
                        )
                    })
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(Rules {
                label: s.label.clone(),
                protection,
                why,
                hardware_only: s.policy.hardware_only.unwrap_or(config.policy.hardware_only),
                fips: s
                    .policy
                    .approved_mechanisms
                    .unwrap_or(config.policy.approved_mechanisms)
                    == Approved::Fips,
                extra,
                read_only: s.policy.read_only,
                allow: s.policy.allow.clone(),
            })
        })
        .collect()
}

static ACTIVE: AtomicBool = AtomicBool::new(false);
static RULES: RwLock<Option<Vec<Arc<Rules>>>> = RwLock::new(None);

/// Installs the rules of the running instance (`None` at `C_Finalize`); with no slot
/// restricted, the C boundary's check costs one relaxed load.
pub fn install(rules: Option<Vec<Rules>>) {
    let rules = rules.filter(|r| r.iter().any(Rules::restricts));
    ACTIVE.store(rules.is_some(), Ordering::Relaxed);
    *RULES.write() = rules.map(|r| r.into_iter().map(Arc::new).collect());
}

/// Is any slot restricted?
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// The rules of the slot at configuration index `index`, when any slot is restricted.
pub fn of_slot(index: usize) -> Option<Arc<Rules>> {
    if !active() {
        return None;
    }
    RULES.read().as_ref()?.get(index).cloned()
}

/// The `CK_MECHANISM_INFO` function flags the slot offers for the mechanism.
fn use_flags(u: Use) -> CK_FLAGS {
    match u {
        Use::Sign => CKF_SIGN | CKF_SIGN_RECOVER | CKF_MESSAGE_SIGN,
        Use::Verify => CKF_VERIFY | CKF_VERIFY_RECOVER | CKF_MESSAGE_VERIFY,
        Use::Encrypt => CKF_ENCRYPT | CKF_MESSAGE_ENCRYPT,
        Use::Decrypt => CKF_DECRYPT | CKF_MESSAGE_DECRYPT,
        Use::Wrap => CKF_WRAP,
        Use::Unwrap => CKF_UNWRAP,
        Use::Derive => CKF_DERIVE,
    }
}

const KEY_USES: CK_FLAGS = CKF_SIGN
    | CKF_SIGN_RECOVER
    | CKF_MESSAGE_SIGN
    | CKF_VERIFY
    | CKF_VERIFY_RECOVER
    | CKF_MESSAGE_VERIFY
    | CKF_ENCRYPT
    | CKF_MESSAGE_ENCRYPT
    | CKF_DECRYPT
    | CKF_MESSAGE_DECRYPT
    | CKF_WRAP
    | CKF_UNWRAP
    | CKF_DERIVE;

impl Rules {
    /// Does any rule restrict this slot?
    pub fn restricts(&self) -> bool {
        self.fips
            || self.read_only
            || self.allow.is_some()
            || (self.hardware_only && self.protection == Protection::Software)
    }

    /// The mechanism's `CK_MECHANISM_INFO.flags` as the slot offers it (functions the
    /// policy does not allow taken out), or `None` when the slot does not offer it.
    pub fn mechanism_flags(&self, mech: CK_MECHANISM_TYPE, flags: CK_FLAGS) -> Option<CK_FLAGS> {
        let mut f = flags;
        if self.fips {
            f &= !fips::FUNCTIONS | fips::row(mech, &self.extra)?.functions;
        }
        if let Some(allow) = &self.allow {
            let allowed = allow.iter().fold(0, |a, u| a | use_flags(*u));
            f &= !KEY_USES | allowed;
        }
        // A mechanism left with none of the functions it had is not offered.
        (f & fips::FUNCTIONS != 0 || flags & fips::FUNCTIONS == 0).then_some(f)
    }

    fn refuse(&self, rv: CK_RV, what: &str, key: Option<CK_OBJECT_HANDLE>, why: String) -> Error {
        let key = key.map(|k| format!(" key {k}")).unwrap_or_default();
        Error::logged(
            rv,
            format!("policy: slot {:?}: {what}{key} refused: {why}", self.label),
        )
    }

    /// A key use (`*Init`, `C_WrapKey`, `C_UnwrapKey`, `C_DeriveKey`) with `mech` and key
    /// `handle`, whose facts are `facts`; `hash` is a PSS parameter's `hashAlg`.
    pub fn check_use(
        &self,
        what: &str,
        u: Use,
        mech: CK_MECHANISM_TYPE,
        hash: Option<CK_MECHANISM_TYPE>,
        handle: CK_OBJECT_HANDLE,
        facts: &KeyFacts,
    ) -> Result<()> {
        let name = crate::core::mechname::name(mech).unwrap_or("an unknown mechanism");
        if let Some(allow) = &self.allow {
            if !allow.contains(&u) {
                return Err(self.refuse(
                    CKR_KEY_FUNCTION_NOT_PERMITTED,
                    what,
                    Some(handle),
                    format!("the slot allows only {}", names(allow)),
                ));
            }
        }
        let private = matches!(facts.class, Some(CKO_PRIVATE_KEY | CKO_SECRET_KEY));
        if self.hardware_only && self.protection == Protection::Software && private {
            return Err(self.refuse(
                CKR_FUNCTION_REJECTED,
                what,
                Some(handle),
                format!(
                    "hardware_only, and its keys live in software ({})",
                    self.why
                ),
            ));
        }
        if !self.fips {
            return Ok(());
        }
        let flags = use_flags(u);
        let ok = fips::row(mech, &self.extra).is_some_and(|r| r.functions & flags != 0);
        if !ok {
            return Err(self.refuse(
                CKR_MECHANISM_INVALID,
                what,
                None,
                format!("{name} is not FIPS approved to {}", u.name()),
            ));
        }
        if hash == Some(CKM_SHA_1) && matches!(u, Use::Sign) {
            return Err(self.refuse(
                CKR_MECHANISM_PARAM_INVALID,
                what,
                None,
                format!("{name} with SHA-1 is not FIPS approved to sign"),
            ));
        }
        if let Some(why) = key_out_of_range(u, facts) {
            return Err(self.refuse(CKR_KEY_SIZE_RANGE, what, Some(handle), why));
        }
        Ok(())
    }

    /// `C_GenerateKey(Pair)` with `mech` and the (public) template's facts.
    pub fn check_generate(&self, what: &str, mech: CK_MECHANISM_TYPE, t: &KeyFacts) -> Result<()> {
        if self.hardware_only && self.protection == Protection::Software {
            return Err(self.refuse(
                CKR_FUNCTION_REJECTED,
                what,
                None,
                format!(
                    "hardware_only, and its keys live in software ({})",
                    self.why
                ),
            ));
        }
        if !self.fips {
            return Ok(());
        }
        let name = crate::core::mechname::name(mech).unwrap_or("an unknown mechanism");
        let gen = CKF_GENERATE | CKF_GENERATE_KEY_PAIR;
        if fips::row(mech, &self.extra).is_none_or(|r| r.functions & gen == 0) {
            return Err(self.refuse(
                CKR_MECHANISM_INVALID,
                what,
                None,
                format!("{name} is not FIPS approved"),
            ));
        }
        if mech == CKM_EC_KEY_PAIR_GEN {
            if let Some(why) = t.ec_params.as_deref().and_then(curve_not_approved) {
                return Err(self.refuse(CKR_CURVE_NOT_SUPPORTED, what, None, why));
            }
        }
        let bits = |b: Option<u64>, min: u64, unit: &str| {
            b.filter(|b| *b < min)
                .map(|b| format!("{b} {unit} is below the FIPS minimum of {min}"))
        };
        let small = match mech {
            CKM_RSA_PKCS_KEY_PAIR_GEN => bits(t.modulus_bits, fips::RSA_MIN_BITS, "modulus bits"),
            CKM_GENERIC_SECRET_KEY_GEN
            | CKM_SHA_1_KEY_GEN
            | CKM_SHA224_KEY_GEN
            | CKM_SHA256_KEY_GEN
            | CKM_SHA384_KEY_GEN
            | CKM_SHA512_KEY_GEN => bits(t.value_len, fips::HMAC_MIN_BYTES, "key bytes"),
            _ => None,
        };
        match small {
            Some(why) => Err(self.refuse(CKR_KEY_SIZE_RANGE, what, None, why)),
            None => Ok(()),
        }
    }

    /// A call that changes the token (objects, PINs) or opens a R/W session.
    pub fn check_write(&self, what: &str) -> Result<()> {
        if self.read_only {
            return Err(self.refuse(
                CKR_TOKEN_WRITE_PROTECTED,
                what,
                None,
                "the slot is read_only".into(),
            ));
        }
        Ok(())
    }

    /// One line for `hsmux check`.
    pub fn describe(&self) -> String {
        let level = match self.protection {
            Protection::Hardware => "hardware",
            Protection::Software => "software",
        };
        let mut rules = Vec::new();
        if self.hardware_only {
            rules.push("hardware_only".to_string());
        }
        if self.fips {
            rules.push("approved_mechanisms = fips".into());
        }
        if self.read_only {
            rules.push("read_only".into());
        }
        if let Some(a) = &self.allow {
            rules.push(format!("allow = [{}]", names(a)));
        }
        let rules = if rules.is_empty() {
            "none".to_string()
        } else {
            rules.join(", ")
        };
        format!("protection {level} ({}); policy: {rules}", self.why)
    }
}

fn names(uses: &[Use]) -> String {
    uses.iter().map(|u| u.name()).collect::<Vec<_>>().join(", ")
}

/// Why a key of these facts may not be used for `u` under FIPS, if it may not.
fn key_out_of_range(u: Use, k: &KeyFacts) -> Option<String> {
    match k.key_type? {
        CKK_RSA => {
            let min = if u == Use::Verify {
                fips::RSA_MIN_VERIFY_BITS
            } else {
                fips::RSA_MIN_BITS
            };
            let bits = k.modulus_bits?;
            (bits < min).then(|| {
                format!(
                    "an RSA modulus of {bits} bits is below the FIPS minimum of {min} to {}",
                    u.name()
                )
            })
        }
        CKK_EC => match k.ec_params.as_deref() {
            Some(p) => curve_not_approved(p),
            None => Some("its curve cannot be read".into()),
        },
        CKK_GENERIC_SECRET | CKK_SHA_1_HMAC | CKK_SHA224_HMAC | CKK_SHA256_HMAC
        | CKK_SHA384_HMAC | CKK_SHA512_HMAC => {
            let n = k.value_len?;
            (n < fips::HMAC_MIN_BYTES).then(|| {
                format!(
                    "an HMAC key of {n} bytes is below the FIPS minimum of {}",
                    fips::HMAC_MIN_BYTES
                )
            })
        }
        _ => None,
    }
}

fn curve_not_approved(params: &[u8]) -> Option<String> {
    if fips::CURVES.iter().any(|(_, der)| *der == params) {
        None
    } else {
        Some(format!(
            "curve {} is not FIPS approved",
            hex::encode(params)
        ))
    }
}
