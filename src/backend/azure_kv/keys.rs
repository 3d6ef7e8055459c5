//! The vault's keys as hsmux's key versions: names from config or the vault's (paged) key
//! list, each name's versions, each version's JSON Web Key turned into what PKCS#11 shows
//! (kind, usage, public key as SubjectPublicKeyInfo), and key creation (a new name, or a
//! new version of a name that exists: Key Vault's rotation).
//!
//! `CKA_ID` of a version is its `kid` without the vault (`{name}/{version}`). The current
//! version (the newest usable one) comes first; disabled, expired and not-yet-valid
//! versions are left out with a log line, as are key types hsmux cannot serve (P-256K
//! and keys that may neither sign nor decrypt).

use super::rest::Call;
use super::Inner;
use crate::backend::remote::{public, EcCurve, HashAlg, KeyAlg, KeyVersion, NewKey, Usage};
use crate::backend::soft::crypto::der;
use crate::core::error::{Error, Result};
use base64::Engine as _;
use cryptoki_sys::*;
use serde::Deserialize;
use std::time::{SystemTime, UNIX_EPOCH};

pub const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Most versions read for one key name (a key rotated daily for years has thousands).
const MAX_VERSIONS: usize = 100;
/// Most pages followed in one listing.
const MAX_PAGES: usize = 100;

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct Attributes {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: Option<i64>,
}

impl Attributes {
    /// Why the version may not be used now (`None`: it may).
    fn unusable(&self) -> Option<&'static str> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if self.enabled == Some(false) {
            Some("disabled")
        } else if self.exp.is_some_and(|e| e <= now) {
            Some("expired")
        } else if self.nbf.is_some_and(|n| n > now) {
            Some("not valid yet")
        } else {
            None
        }
    }
}

#[derive(Deserialize)]
struct Item {
    kid: String,
    #[serde(default)]
    attributes: Attributes,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<Item>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize, Clone)]
pub struct Jwk {
    pub kid: String,
    pub kty: String,
    #[serde(default)]
    pub key_ops: Vec<String>,
    pub n: Option<String>,
    pub e: Option<String>,
    pub crv: Option<String>,
    pub x: Option<String>,
    pub y: Option<String>,
}

#[derive(Deserialize, Clone)]
pub struct Bundle {
    pub key: Jwk,
}

/// A key or version name as Key Vault allows it (letters, digits, dashes): anything else
/// in an answer is refused rather than put into a URL.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 127 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `(name, version)` of a kid under this vault.
fn split_kid<'a>(vault: &str, kid: &'a str) -> Option<(&'a str, Option<&'a str>)> {
    let rest = kid.strip_prefix(vault)?.strip_prefix("/keys/")?;
    let (name, version) = match rest.split_once('/') {
        Some((n, v)) => (n, Some(v)),
        None => (rest, None),
    };
    (valid_name(name) && version.is_none_or(valid_name)).then_some((name, version))
}

pub fn bad(what: &str, why: impl std::fmt::Display) -> Error {
    crate::backend::remote::http::malformed(what, why)
}

/// base64url bytes of a JWK or an answer; anything else is a malformed answer.
pub fn unb64(what: &str, field: &str, v: Option<&str>) -> Result<Vec<u8>> {
    let v = v.ok_or_else(|| bad(what, format!("no `{field}`")))?;
    B64URL
        .decode(v.trim_end_matches('='))
        .map_err(|_| bad(what, format!("`{field}` is not base64url")))
}

impl Inner {
    /// Every item of a paged listing (`nextLink` followed only within this vault: the
    /// bearer token goes with each page).
    async fn items(&self, what: &str, first: String) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut url = first;
        for _ in 0..MAX_PAGES {
            let p: Page = self.rest.get(what, &url).await?;
            out.extend(p.value);
            match p.next_link.filter(|l| !l.is_empty()) {
                Some(l) if l.starts_with(&format!("{}/", self.rest.vault)) => url = l,
                Some(l) => return Err(bad(what, format!("nextLink {l:?} leaves the vault"))),
                None => return Ok(out),
            }
        }
        Err(bad(what, "more than 100 pages"))
    }

    /// The key names of the slot: the configured ones, else the vault's.
    async fn names(&self) -> Result<Vec<String>> {
        if !self.keys.is_empty() {
            return Ok(self.keys.clone());
        }
        let what = "Key Vault list keys";
        let items = self.items(what, self.rest.url("keys")).await?;
        let mut names = Vec::new();
        for i in items {
            let (name, _) = split_kid(&self.rest.vault, &i.kid)
                .ok_or_else(|| bad(what, format!("kid {:?} is not a key of this vault", i.kid)))?;
            names.push(name.to_string());
        }
        names.sort();
        Ok(names)
    }

    /// A version's key (cached: a version's key material never changes).
    async fn bundle(&self, name: &str, version: &str) -> Result<Jwk> {
        let cache_key = format!("{name}/{version}");
        if let Some(j) = self.jwks.lock().get(&cache_key) {
            return Ok(j.clone());
        }
        let what = format!("Key Vault get key {name}/{version}");
        let b: Bundle = self
            .rest
            .get(&what, &self.rest.url(&format!("keys/{name}/{version}")))
            .await?;
        if split_kid(&self.rest.vault, &b.key.kid) != Some((name, Some(version))) {
            return Err(bad(
                &what,
                format!("kid {:?} is not the version asked", b.key.kid),
            ));
        }
        self.jwks.lock().insert(cache_key, b.key.clone());
        Ok(b.key)
    }

    pub async fn list(self: std::sync::Arc<Self>) -> Result<Vec<KeyVersion>> {
        let mut primaries = Vec::new();
        let mut others = Vec::new();
        for name in self.names().await? {
            let what = format!("Key Vault list versions of {name}");
            let url = self.rest.url(&format!("keys/{name}/versions"));
            let mut items = match self.items(&what, url).await {
                Ok(i) => i,
                // A named key that does not exist (yet): nothing to show.
                Err(e) if e.rv() == CKR_KEY_HANDLE_INVALID => continue,
                // A key the credentials may not read: the others are still shown.
                Err(e) if e.rv() == CKR_KEY_FUNCTION_NOT_PERMITTED => {
                    log::warn!("slot {}: {name} may not be read: not shown", self.slot);
                    continue;
                }
                Err(e) => return Err(e),
            };
            // The current version (what `GET /keys/{name}` answers) first, then newest
            // first; the first usable one is the primary.
            let current: Bundle = self
                .rest
                .get(&what, &self.rest.url(&format!("keys/{name}")))
                .await?;
            items.sort_by_key(|i| {
                (
                    i.kid != current.key.kid,
                    std::cmp::Reverse(i.attributes.created.unwrap_or(0)),
                )
            });
            let mut first = true;
            for item in items.into_iter().take(MAX_VERSIONS) {
                let Some((_, Some(version))) = split_kid(&self.rest.vault, &item.kid) else {
                    return Err(bad(&what, format!("kid {:?} is not a version", item.kid)));
                };
                if let Some(why) = item.attributes.unusable() {
                    log::debug!("slot {}: {} is {why}: not shown", self.slot, item.kid);
                    continue;
                }
                let jwk = self.bundle(&name, version).await?;
                match version_of(&name, version, &jwk, &what)? {
                    Some(mut v) => {
                        v.primary = first;
                        if first {
                            primaries.push(v);
                        } else {
                            others.push(v);
                        }
                        first = false;
                    }
                    None => log::info!(
                        "slot {}: {} ({}) is not a kind hsmux serves: not shown",
                        self.slot,
                        jwk.kid,
                        jwk.kty
                    ),
                }
            }
        }
        primaries.extend(others);
        Ok(primaries)
    }

    pub async fn generate(self: std::sync::Arc<Self>, key: NewKey) -> Result<()> {
        if !valid_name(&key.label) {
            return Err(Error::logged(
                CKR_ATTRIBUTE_VALUE_INVALID,
                format!(
                    "slot {}: {:?} is not a Key Vault key name (1-127 letters, digits and dashes)",
                    self.slot, key.label
                ),
            ));
        }
        let ops: &[&str] = if key.sign {
            &["sign", "verify"]
        } else {
            &["decrypt", "encrypt", "unwrapKey", "wrapKey"]
        };
        let body = match key.alg {
            KeyAlg::Ec { curve } => serde_json::json!({
                "kty": "EC-HSM",
                "crv": match curve {
                    EcCurve::P256 => "P-256",
                    EcCurve::P384 => "P-384",
                    EcCurve::P521 => "P-521",
                },
                "key_ops": ["sign", "verify"],
            }),
            KeyAlg::Rsa { bits } => {
                serde_json::json!({"kty": "RSA-HSM", "key_size": bits, "key_ops": ops})
            }
            KeyAlg::AesGcm { bits } => serde_json::json!({
                "kty": "oct-HSM", "key_size": bits,
                "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
            }),
            other => {
                return Err(Error::logged(
                    CKR_MECHANISM_INVALID,
                    format!(
                    "slot {}: Key Vault makes RSA, EC (P-256, P-384, P-521) and AES keys, not {other:?}",
                    self.slot
                ),
                ))
            }
        };
        let what = format!("Key Vault create key {}", key.label);
        let b: Bundle = self
            .rest
            .post(
                &what,
                &self.rest.url(&format!("keys/{}/create", key.label)),
                &body,
                Call::Create,
            )
            .await?;
        log::info!("slot {}: created {}", self.slot, b.key.kid);
        Ok(())
    }
}

/// The key version a JWK describes (`None`: a kind hsmux does not serve).
pub fn version_of(name: &str, version: &str, jwk: &Jwk, what: &str) -> Result<Option<KeyVersion>> {
    let op = |o: &str| jwk.key_ops.is_empty() || jwk.key_ops.iter().any(|k| k == o);
    let hardware = jwk.kty.ends_with("-HSM");
    let (alg, usage, spki) = match jwk.kty.trim_end_matches("-HSM") {
        "RSA" => {
            let n = unb64(what, "n", jwk.n.as_deref())?;
            let e = unb64(what, "e", jwk.e.as_deref())?;
            let spki = der::rsa_spki(&n, &e).map_err(|_| bad(what, "bad RSA n/e"))?;
            let usage = Usage {
                sign: op("sign"),
                decrypt: op("decrypt") || op("unwrapKey"),
                encrypt: op("encrypt") || op("wrapKey"),
                sign_schemes: Vec::new(),
                oaep_hashes: vec![HashAlg::Sha1, HashAlg::Sha256],
            };
            (None, usage, Some(spki))
        }
        "EC" => {
            let len = match jwk.crv.as_deref() {
                Some("P-256") => 32,
                Some("P-384") => 48,
                Some("P-521") => 66,
                _ => return Ok(None),
            };
            let x = unb64(what, "x", jwk.x.as_deref())?;
            let y = unb64(what, "y", jwk.y.as_deref())?;
            if x.len() != len || y.len() != len {
                return Err(bad(what, "EC x/y of the wrong length"));
            }
            let usage = Usage {
                sign: op("sign"),
                ..Usage::default()
            };
            (None, usage, Some(ec_spki(len, &x, &y)))
        }
        "oct" => {
            // The JWK of a secret key carries neither material nor size: it is shown as
            // AES-256 (what Managed HSM creates by default and the seals use); the crypto
            // calls learn a 128/192-bit key's algorithm on first use (crypto.rs).
            let usage = Usage {
                encrypt: op("encrypt") || op("wrapKey"),
                decrypt: op("decrypt") || op("unwrapKey"),
                ..Usage::default()
            };
            (Some(KeyAlg::AesGcm { bits: 256 }), usage, None)
        }
        _ => return Ok(None),
    };
    let alg = match (alg, &spki) {
        (Some(a), _) => a,
        (None, Some(spki)) => public::describe(spki)?.0,
        (None, None) => return Ok(None),
    };
    if !(usage.sign || usage.decrypt || usage.encrypt) {
        return Ok(None);
    }
    Ok(Some(KeyVersion {
        label: name.to_string(),
        // The kid without the vault's address: a key restored into a second vault (the
        // replica of another region) keeps its name and version ids, so the replicas'
        // objects have one CKA_ID and a replica group finds the key again on failover.
        id: format!("{name}/{version}"),
        locator: format!("{name}/{version}"),
        primary: false,
        alg,
        usage,
        public_spki: spki,
        hardware: Some(hardware),
    }))
}

/// SubjectPublicKeyInfo of an uncompressed P-256 / P-384 / P-521 point.
fn ec_spki(len: usize, x: &[u8], y: &[u8]) -> Vec<u8> {
    let prefix: &[u8] = if len == 66 {
        // SEQUENCE { SEQUENCE { id-ecPublicKey, secp521r1 }, BIT STRING (134 bytes) }
        &[
            0x30, 0x81, 0x9b, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
            0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23, 0x03, 0x81, 0x86, 0x00,
        ]
    } else if len == 32 {
        // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes) }
        &[
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ]
    } else {
        // SEQUENCE { SEQUENCE { id-ecPublicKey, secp384r1 }, BIT STRING (98 bytes) }
        &[
            0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x05, 0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
        ]
    };
    [prefix, &[0x04], x, y].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kids_are_split_within_the_vault_only() {
        let v = "https://v.vault.azure.net";
        assert_eq!(
            split_kid(v, "https://v.vault.azure.net/keys/seal/0123abcd"),
            Some(("seal", Some("0123abcd")))
        );
        assert_eq!(
            split_kid(v, "https://v.vault.azure.net/keys/seal"),
            Some(("seal", None))
        );
        assert_eq!(split_kid(v, "https://w.vault.azure.net/keys/seal"), None);
        assert_eq!(split_kid(v, "https://v.vault.azure.net/keys/../x"), None);
        assert_eq!(split_kid(v, "https://v.vault.azure.net/keys/a/b/c"), None);
    }

    #[test]
    fn jwks_become_versions_with_their_public_keys() {
        let p256_x = "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0";
        let p256_y = "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps";
        let jwk = Jwk {
            kid: "https://v/keys/k/1".into(),
            kty: "EC-HSM".into(),
            key_ops: vec!["sign".into(), "verify".into()],
            n: None,
            e: None,
            crv: Some("P-256".into()),
            x: Some(p256_x.into()),
            y: Some(p256_y.into()),
        };
        let v = version_of("k", "1", &jwk, "t").unwrap().unwrap();
        assert_eq!(
            v.alg,
            KeyAlg::Ec {
                curve: EcCurve::P256
            }
        );
        assert!(v.usage.sign && !v.usage.decrypt);
        assert_eq!(v.hardware, Some(true));
        // secp256k1 is not served; a bad coordinate is a malformed answer.
        let k256 = Jwk {
            crv: Some("P-256K".into()),
            ..jwk.clone()
        };
        assert!(version_of("k", "1", &k256, "t").unwrap().is_none());
        let short = Jwk {
            x: Some("AAAA".into()),
            ..jwk.clone()
        };
        assert_eq!(
            version_of("k", "1", &short, "t").unwrap_err().rv(),
            CKR_DEVICE_ERROR
        );
        let bad64 = Jwk {
            x: Some("***".into()),
            ..jwk
        };
        assert_eq!(
            version_of("k", "1", &bad64, "t").unwrap_err().rv(),
            CKR_DEVICE_ERROR
        );
    }
}
