//! `[policy]` and the per-slot policy keys, as written in the file: what key uses the
//! module allows (`crate::policy` turns them into each slot's rules; `docs/policy.md`).

use serde::Deserialize;

/// `approved_mechanisms`: which mechanisms a slot offers and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Approved {
    /// Every mechanism the key store has.
    #[default]
    All,
    /// Only the FIPS 140-3 approved mechanisms and parameters of `docs/policy.md`.
    Fips,
}

/// Where a slot's private and secret keys live, as `hardware_only` judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protection {
    Hardware,
    Software,
}

/// A key use a slot can offer (`allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Use {
    Sign,
    Verify,
    Encrypt,
    Decrypt,
    Wrap,
    Unwrap,
    Derive,
}

impl Use {
    pub fn name(self) -> &'static str {
        match self {
            Use::Sign => "sign",
            Use::Verify => "verify",
            Use::Encrypt => "encrypt",
            Use::Decrypt => "decrypt",
            Use::Wrap => "wrap",
            Use::Unwrap => "unwrap",
            Use::Derive => "derive",
        }
    }
}

/// `[policy]`: the defaults of every slot.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Slots whose keys live in software refuse private and secret key use.
    #[serde(default)]
    pub hardware_only: bool,
    #[serde(default)]
    pub approved_mechanisms: Approved,
}

/// The policy keys of one `[[slot]]` (each absent one takes `[policy]`'s value).
#[derive(Debug, Clone, Default)]
pub struct SlotPolicy {
    pub hardware_only: Option<bool>,
    pub approved_mechanisms: Option<Approved>,
    /// No object creation, destruction or attribute change; read-only sessions only.
    pub read_only: bool,
    /// The key uses the slot offers; `None`: all.
    pub allow: Option<Vec<Use>>,
    /// Overrides the protection level hsmux infers from the backend.
    pub protection: Option<Protection>,
    /// Mechanisms (spec names) the key store's own FIPS validation covers beyond the
    /// table's unconditional rows (e.g. `CKM_EDDSA`).
    pub fips_extra: Vec<String>,
}
