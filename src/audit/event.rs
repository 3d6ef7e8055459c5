//! One audited call, as the calling thread saw it, and its JSON line. Field names follow
//! what operators already query in CloudTrail (`eventName`, `keyId`, `signingAlgorithm`
//! style, camelCase). A line never holds key material, PINs, data or signatures: only
//! their lengths, and a key's label and `CKA_ID`.

#![allow(clippy::unnecessary_cast)] // CK_ULONG is u32 on some targets

use crate::core::{mechname, rv};
use cryptoki_sys::*;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How the trail names a key: hsmux's handle, its label and `CKA_ID` (read once per
/// handle), and its class.
#[derive(Debug, Default)]
pub struct KeyIdentity {
    pub handle: CK_OBJECT_HANDLE,
    pub label: Option<String>,
    pub id: Option<Vec<u8>>,
    pub class: Option<CK_OBJECT_CLASS>,
}

/// One audited call.
pub struct Event {
    pub time: SystemTime,
    pub function: &'static str,
    /// Configuration index of the slot.
    pub slot: Option<usize>,
    /// The replica that served (metrics index: 1, 2, ...; 0 = the slot itself).
    pub replica: usize,
    pub mechanism: Option<CK_MECHANISM_TYPE>,
    pub key: Option<Arc<KeyIdentity>>,
    /// The key a call made (`C_GenerateKey`, `C_UnwrapKey`, ...).
    pub new_key: Option<Arc<KeyIdentity>>,
    /// The key `C_WrapKey` wraps.
    pub target: Option<Arc<KeyIdentity>>,
    pub user: Option<CK_USER_TYPE>,
    pub data_len: Option<u64>,
    pub rv: CK_RV,
    pub duration: Duration,
    /// Free text for events that are not calls (a failover's cause).
    pub detail: Option<String>,
}

impl Event {
    pub fn new(function: &'static str, slot: Option<usize>) -> Event {
        Event {
            time: SystemTime::now(),
            function,
            slot,
            replica: 0,
            mechanism: None,
            key: None,
            new_key: None,
            target: None,
            user: None,
            data_len: None,
            rv: CKR_OK,
            duration: Duration::ZERO,
            detail: None,
        }
    }
}

/// The labels and ids the lines name slots and replicas by (from the configuration).
#[derive(Default)]
pub struct Names {
    pub slots: Vec<SlotName>,
}

pub struct SlotName {
    pub label: String,
    pub id: CK_SLOT_ID,
    /// Replica names by metrics index - 1 (configuration order).
    pub replicas: Vec<String>,
}

/// Appends `"key":` and `value` as a JSON string.
pub(super) fn field_str(out: &mut String, key: &str, value: &str) {
    let _ = write!(out, ",\"{key}\":");
    // serde_json escapes control characters, quotes and backslashes.
    out.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into()));
}

pub(super) fn field_num(out: &mut String, key: &str, value: u64) {
    let _ = write!(out, ",\"{key}\":{value}");
}

pub(super) fn time(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).map_or_else(|_| String::new(), |ts| format!("{ts:.6}"))
}

fn user_name(u: CK_USER_TYPE) -> &'static str {
    match u {
        CKU_SO => "CKU_SO",
        CKU_USER => "CKU_USER",
        CKU_CONTEXT_SPECIFIC => "CKU_CONTEXT_SPECIFIC",
        _ => "unknown",
    }
}

fn class_name(c: CK_OBJECT_CLASS) -> &'static str {
    match c {
        CKO_PRIVATE_KEY => "privateKey",
        CKO_PUBLIC_KEY => "publicKey",
        CKO_SECRET_KEY => "secretKey",
        CKO_CERTIFICATE => "certificate",
        CKO_DATA => "data",
        _ => "other",
    }
}

fn key_fields(out: &mut String, prefix: &str, k: &KeyIdentity) {
    let _ = write!(out, ",\"{prefix}Handle\":{}", k.handle);
    if let Some(l) = &k.label {
        let _ = write!(out, ",\"{prefix}Label\":");
        out.push_str(&serde_json::to_string(l).unwrap_or_else(|_| "\"\"".into()));
    }
    if let Some(id) = &k.id {
        let _ = write!(out, ",\"{prefix}Id\":\"{}\"", hex::encode(id));
    }
    if let Some(c) = k.class {
        let _ = write!(out, ",\"{prefix}Class\":\"{}\"", class_name(c));
    }
}

impl Event {
    /// The event's fields after the chain's (`time`, `chain`, `seq`) and the process's,
    /// each starting with a comma.
    pub(super) fn render_fields(&self, out: &mut String, names: &Names) {
        field_str(out, "eventName", self.function);
        if let Some(s) = self.slot.and_then(|i| names.slots.get(i)) {
            field_str(out, "slot", &s.label);
            field_num(out, "slotId", s.id as u64);
            if let Some(r) = self.replica.checked_sub(1).and_then(|i| s.replicas.get(i)) {
                field_str(out, "replica", r);
            }
        }
        if let Some(m) = self.mechanism {
            match mechname::name(m) {
                Some(n) => field_str(out, "mechanism", n),
                None => field_str(out, "mechanism", &format!("0x{m:08x}")),
            }
        }
        if let Some(k) = &self.key {
            key_fields(out, "key", k);
        }
        if let Some(k) = &self.new_key {
            key_fields(out, "newKey", k);
        }
        if let Some(k) = &self.target {
            key_fields(out, "targetKey", k);
        }
        if let Some(u) = self.user {
            field_str(out, "userType", user_name(u));
        }
        if let Some(n) = self.data_len {
            field_num(out, "dataLength", n);
        }
        field_str(out, "result", rv::name(self.rv));
        field_num(out, "durationUs", self.duration.as_micros() as u64);
        if let Some(d) = &self.detail {
            field_str(out, "detail", d);
        }
    }
}
