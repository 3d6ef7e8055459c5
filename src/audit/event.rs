//! One audited call, as the calling thread saw it, and its JSON line. Field names follow
//! what operators already query in CloudTrail (`eventName`, `keyId`, `signingAlgorithm`
//! style, camelCase). A line never holds key material, PINs, data or signatures: only
//! their lengths, and a key's label and `CKA_ID`.

#![allow(clippy::unnecessary_cast)] // CK_ULONG is u32 on some targets

use crate::core::{mechname, rv};
use cryptoki_sys::*;
use std::fmt::Write;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// How the trail names a key: hsmux's handle, its label and `CKA_ID` (read once per
/// handle), and its class.
#[derive(Debug, Default, Clone)]
pub struct KeyIdentity {
    pub handle: CK_OBJECT_HANDLE,
    pub label: Option<String>,
    pub id: Option<Vec<u8>>,
    pub class: Option<CK_OBJECT_CLASS>,
    /// Its fields as the `key` of a line, rendered by the writer the first time it needs
    /// them (each session has its own copy of the identity of the key it uses).
    pub(super) json: OnceLock<String>,
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
    /// `,"slot":..,"slotId":..` and each replica's `,"replica":..`, rendered once.
    json: String,
    replicas_json: Vec<String>,
}

impl SlotName {
    pub fn new(label: String, id: CK_SLOT_ID, replicas: Vec<String>) -> SlotName {
        let mut json = String::new();
        field_str(&mut json, "slot", &label);
        field_num(&mut json, "slotId", id as u64);
        let replicas_json = replicas
            .iter()
            .map(|r| {
                let mut out = String::new();
                field_str(&mut out, "replica", r);
                out
            })
            .collect();
        SlotName {
            label,
            id,
            replicas,
            json,
            replicas_json,
        }
    }
}

/// Appends `"key":` and `value` as a JSON string.
pub(super) fn field_str(out: &mut String, key: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
    json_str(out, value);
}

/// Appends `value` as a JSON string. Names, labels and codes rarely need escaping: those
/// go in as they are, without the allocation of a general serializer (the writer thread
/// renders every line of a busy process, on a core the signers share).
pub(super) fn json_str(out: &mut String, value: &str) {
    if value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        // serde_json escapes control characters, quotes and backslashes.
        out.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into()));
    } else {
        out.push('"');
        out.push_str(value);
        out.push('"');
    }
}

/// Appends `"key":` and `value`, a name of hsmux's own (a function, a `CKM_*` or `CKR_*`
/// name) that needs no escaping.
fn field_name(out: &mut String, key: &str, value: &str) {
    debug_assert!(!value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'));
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":\"");
    out.push_str(value);
    out.push('"');
}

pub(super) fn field_num(out: &mut String, key: &str, value: u64) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
    out.push_str(itoa::Buffer::new().format(value));
}

/// A line's time, RFC 3339 in UTC with microseconds (`2026-12-07T09:21:12.123456Z`). The
/// part up to the second is formatted once per second and kept; the writer thread is its
/// only user.
#[derive(Default)]
pub(super) struct Clock {
    second: Option<u64>,
    prefix: String,
}

impl Clock {
    pub(super) fn push(&mut self, out: &mut String, t: SystemTime) {
        let Ok(since) = t.duration_since(std::time::UNIX_EPOCH) else {
            return;
        };
        let secs = since.as_secs();
        if self.second != Some(secs) {
            let whole = std::time::UNIX_EPOCH + Duration::from_secs(secs);
            self.prefix = jiff::Timestamp::try_from(whole)
                .map_or_else(|_| String::new(), |ts| format!("{ts:.0}"));
            // "...:SSZ" without fractional digits: the micros go before the 'Z'.
            self.prefix.pop();
            self.second = Some(secs);
        }
        out.push_str(&self.prefix);
        let micros = since.subsec_micros();
        out.push('.');
        let digits = itoa::Buffer::new().format(micros).len();
        for _ in digits..6 {
            out.push('0');
        }
        out.push_str(itoa::Buffer::new().format(micros));
        out.push('Z');
    }
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
        json_str(out, l);
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
        field_name(out, "eventName", self.function);
        if let Some(s) = self.slot.and_then(|i| names.slots.get(i)) {
            out.push_str(&s.json);
            if let Some(r) = self
                .replica
                .checked_sub(1)
                .and_then(|i| s.replicas_json.get(i))
            {
                out.push_str(r);
            }
        }
        if let Some(m) = self.mechanism {
            match mechname::name(m) {
                Some(n) => field_name(out, "mechanism", n),
                None => field_str(out, "mechanism", &format!("0x{m:08x}")),
            }
        }
        if let Some(k) = &self.key {
            out.push_str(k.json.get_or_init(|| {
                let mut json = String::new();
                key_fields(&mut json, "key", k);
                json
            }));
        }
        if let Some(k) = &self.new_key {
            key_fields(out, "newKey", k);
        }
        if let Some(k) = &self.target {
            key_fields(out, "targetKey", k);
        }
        if let Some(u) = self.user {
            field_name(out, "userType", user_name(u));
        }
        if let Some(n) = self.data_len {
            field_num(out, "dataLength", n);
        }
        field_name(out, "result", rv::name(self.rv));
        field_num(out, "durationUs", self.duration.as_micros() as u64);
        if let Some(d) = &self.detail {
            field_str(out, "detail", d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_second_and_the_micros_give_the_full_rfc3339_time() {
        let mut clock = Clock::default();
        let base = std::time::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        for micros in [0u64, 7, 120, 999_999, 1_000_000, 1_000_001, 86_400_000_123] {
            let t = base + Duration::from_micros(micros);
            let mut out = String::new();
            clock.push(&mut out, t);
            let want = format!("{:.6}", jiff::Timestamp::try_from(t).unwrap());
            assert_eq!(out, want, "{micros} us after the base");
        }
    }

    #[test]
    fn strings_that_need_it_are_escaped_and_the_others_go_in_as_they_are() {
        for s in [
            "plain label",
            "quo\"te",
            "back\\slash",
            "tab\there",
            "nl\n",
            "é ü",
        ] {
            let mut out = String::new();
            json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
        }
    }
}
