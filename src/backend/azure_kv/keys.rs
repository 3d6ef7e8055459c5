//! The vault's keys as hsmux's key versions: names from config or the vault's (paged) key
//! list, each name's versions, each version's JSON Web Key turned into what PKCS#11 shows
//! (kind, usage, public key as SubjectPublicKeyInfo), and key creation (a new name, or a
//! new version of a name that exists: Key Vault's rotation).
//!
//! `CKA_ID` of a version is its `kid` without the vault (`{name}/{version}`). The current
//! version (the newest usable one) comes first; disabled, expired and not-yet-valid
//! versions are left out with a log line, as are key types hsmux cannot serve (P-256K
//! and keys that may neither sign nor decrypt).

use super::errors::{sdk, Call};
use super::Inner;
use crate::backend::remote::{public, EcCurve, HashAlg, KeyAlg, KeyVersion, NewKey, Usage};
use crate::backend::soft::crypto::der;
use crate::core::error::{Error, Result};
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, CurveName, JsonWebKey, KeyAttributes, KeyClientGetKeyOptions,
    KeyClientListKeyPropertiesOptions, KeyOperation, KeyProperties, KeyType,
};
use cryptoki_sys::*;
use futures::StreamExt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most versions read for one key name (a key rotated daily for years has thousands).
const MAX_VERSIONS: usize = 100;
/// Most pages followed in one listing.
const MAX_PAGES: usize = 100;

/// What decides whether a version may be used now (Unix seconds).
#[derive(Default, Clone)]
pub struct Attributes {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: Option<i64>,
}

impl Attributes {
    fn of(a: Option<&KeyAttributes>) -> Attributes {
        let Some(a) = a else {
            return Attributes::default();
        };
        Attributes {
            enabled: a.enabled,
            nbf: a.not_before.map(|t| t.unix_timestamp()),
            exp: a.expires.map(|t| t.unix_timestamp()),
            created: a.created.map(|t| t.unix_timestamp()),
        }
    }

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

/// A listed version: its kid and attributes.
struct Item {
    kid: String,
    attributes: Attributes,
}

impl Item {
    fn of(what: &str, p: KeyProperties) -> Result<Item> {
        Ok(Item {
            kid: p.kid.ok_or_else(|| bad(what, "a listed key without kid"))?,
            attributes: Attributes::of(p.attributes.as_ref()),
        })
    }
}

/// The public part of a version's JSON Web Key, as hsmux reads it (the SDK has decoded
/// the base64url fields).
#[derive(Clone, Default)]
pub struct Jwk {
    pub kid: String,
    pub kty: String,
    pub key_ops: Vec<String>,
    pub n: Option<Vec<u8>>,
    pub e: Option<Vec<u8>>,
    pub crv: Option<String>,
    pub x: Option<Vec<u8>>,
    pub y: Option<Vec<u8>>,
}

impl Jwk {
    fn of(what: &str, k: Option<JsonWebKey>) -> Result<Jwk> {
        let k = k.ok_or_else(|| bad(what, "no `key`"))?;
        Ok(Jwk {
            kid: k.kid.ok_or_else(|| bad(what, "no `kid`"))?,
            kty: k
                .kty
                .as_ref()
                .map(|t| <&str>::from(t).to_string())
                .ok_or_else(|| bad(what, "no `kty`"))?,
            key_ops: k.key_ops.unwrap_or_default(),
            n: k.n,
            e: k.e,
            crv: k.crv.as_ref().map(|c| <&str>::from(c).to_string()),
            x: k.x,
            y: k.y,
        })
    }
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

/// A field a JWK must have.
fn field<'a>(what: &str, name: &str, v: &'a Option<Vec<u8>>) -> Result<&'a [u8]> {
    v.as_deref()
        .ok_or_else(|| bad(what, format!("no `{name}`")))
}

impl Inner {
    /// Every version of a listing (`None`: the vault's key names, else the versions of
    /// that name); the SDK follows `nextLink` (to this vault only: the transport refuses
    /// any other address).
    async fn items(&self, what: &str, name: Option<&str>) -> Result<Vec<Item>> {
        let pager = match name {
            None => self.client.list_key_properties(None),
            Some(n) => self.client.list_key_properties_versions(n, None),
        };
        let mut pages = sdk(what, Call::Read, pager)?.into_pages();
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let Some(page) = pages.next().await else {
                return Ok(out);
            };
            let page = sdk(what, Call::Read, page.and_then(|p| p.into_model()))?;
            for p in page.value {
                out.push(Item::of(what, p)?);
            }
        }
        Err(bad(what, "more than 100 pages"))
    }

    /// A cheap read that needs a token: the first named key, or the first page of the
    /// key list.
    pub async fn read_one(&self) -> Result<()> {
        let what = "Key Vault read";
        match self.keys.first() {
            Some(k) => sdk(what, Call::Read, self.client.get_key(k, None).await).map(|_| ()),
            None => {
                let opts = KeyClientListKeyPropertiesOptions {
                    maxresults: Some(1),
                    ..Default::default()
                };
                let pager = sdk(
                    what,
                    Call::Read,
                    self.client.list_key_properties(Some(opts)),
                )?;
                match pager.into_pages().next().await {
                    Some(page) => sdk(what, Call::Read, page).map(|_| ()),
                    None => Ok(()),
                }
            }
        }
    }

    /// The key names of the slot: the configured ones, else the vault's.
    async fn names(&self) -> Result<Vec<String>> {
        if !self.keys.is_empty() {
            return Ok(self.keys.clone());
        }
        let what = "Key Vault list keys";
        let items = self.items(what, None).await?;
        let mut names = Vec::new();
        for i in items {
            let (name, _) = split_kid(&self.vault, &i.kid)
                .ok_or_else(|| bad(what, format!("kid {:?} is not a key of this vault", i.kid)))?;
            names.push(name.to_string());
        }
        names.sort();
        Ok(names)
    }

    /// A key's current version (`version` empty) or a given one.
    async fn get_key(&self, what: &str, name: &str, version: &str) -> Result<Jwk> {
        let opts = (!version.is_empty()).then(|| KeyClientGetKeyOptions {
            key_version: Some(version.to_string()),
            ..Default::default()
        });
        let key = sdk(
            what,
            Call::Read,
            self.client
                .get_key(name, opts)
                .await
                .and_then(|r| r.into_model()),
        )?;
        Jwk::of(what, key.key)
    }

    /// A version's key (cached: a version's key material never changes).
    async fn bundle(&self, name: &str, version: &str) -> Result<Jwk> {
        let cache_key = format!("{name}/{version}");
        if let Some(j) = self.jwks.lock().get(&cache_key) {
            return Ok(j.clone());
        }
        let what = format!("Key Vault get key {name}/{version}");
        let jwk = self.get_key(&what, name, version).await?;
        if split_kid(&self.vault, &jwk.kid) != Some((name, Some(version))) {
            return Err(bad(
                &what,
                format!("kid {:?} is not the version asked", jwk.kid),
            ));
        }
        self.jwks.lock().insert(cache_key, jwk.clone());
        Ok(jwk)
    }

    pub async fn list(self: std::sync::Arc<Self>) -> Result<Vec<KeyVersion>> {
        let mut primaries = Vec::new();
        let mut others = Vec::new();
        for name in self.names().await? {
            let what = format!("Key Vault list versions of {name}");
            let mut items = match self.items(&what, Some(&name)).await {
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
            let current = self.get_key(&what, &name, "").await?;
            items.sort_by_key(|i| {
                (
                    i.kid != current.kid,
                    std::cmp::Reverse(i.attributes.created.unwrap_or(0)),
                )
            });
            let mut first = true;
            for item in items.into_iter().take(MAX_VERSIONS) {
                let Some((_, Some(version))) = split_kid(&self.vault, &item.kid) else {
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

    /// Creates a key, or a new version of a name that exists (Key Vault's create does
    /// both; the SDK's `rotate_key` would instead follow the key's rotation policy).
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
        use KeyOperation as Op;
        let mut p = CreateKeyParameters::default();
        match key.alg {
            KeyAlg::Ec { curve } => {
                p.kty = Some(KeyType::EcHsm);
                p.curve = Some(match curve {
                    EcCurve::P256 => CurveName::P256,
                    EcCurve::P384 => CurveName::P384,
                    EcCurve::P521 => CurveName::P521,
                });
                p.key_ops = Some(vec![Op::Sign, Op::Verify]);
            }
            KeyAlg::Rsa { bits } => {
                p.kty = Some(KeyType::RsaHsm);
                p.key_size = Some(bits as i32);
                p.key_ops = Some(if key.sign {
                    vec![Op::Sign, Op::Verify]
                } else {
                    vec![Op::Decrypt, Op::Encrypt, Op::UnwrapKey, Op::WrapKey]
                });
            }
            KeyAlg::AesGcm { bits } => {
                p.kty = Some(KeyType::OctHsm);
                p.key_size = Some(bits as i32);
                p.key_ops = Some(vec![Op::Encrypt, Op::Decrypt, Op::WrapKey, Op::UnwrapKey]);
            }
            other => {
                return Err(Error::logged(
                    CKR_MECHANISM_INVALID,
                    format!(
                    "slot {}: Key Vault makes RSA, EC (P-256, P-384, P-521) and AES keys, not {other:?}",
                    self.slot
                ),
                ))
            }
        }
        let what = format!("Key Vault create key {}", key.label);
        let body = sdk(&what, Call::Create, p.try_into())?;
        let created = sdk(
            &what,
            Call::Create,
            self.client
                .create_key(&key.label, body, None)
                .await
                .and_then(|r| r.into_model()),
        )?;
        let jwk = Jwk::of(&what, created.key)?;
        log::info!("slot {}: created {}", self.slot, jwk.kid);
        Ok(())
    }
}

/// The key version a JWK describes (`None`: a kind hsmux does not serve).
pub fn version_of(name: &str, version: &str, jwk: &Jwk, what: &str) -> Result<Option<KeyVersion>> {
    let op = |o: &str| jwk.key_ops.is_empty() || jwk.key_ops.iter().any(|k| k == o);
    let hardware = jwk.kty.ends_with("-HSM");
    let (alg, usage, spki) = match jwk.kty.trim_end_matches("-HSM") {
        "RSA" => {
            let n = field(what, "n", &jwk.n)?;
            let e = field(what, "e", &jwk.e)?;
            let spki = der::rsa_spki(n, e).map_err(|_| bad(what, "bad RSA n/e"))?;
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
            let x = field(what, "x", &jwk.x)?;
            let y = field(what, "y", &jwk.y)?;
            if x.len() != len || y.len() != len {
                return Err(bad(what, "EC x/y of the wrong length"));
            }
            let usage = Usage {
                sign: op("sign"),
                ..Usage::default()
            };
            (None, usage, Some(ec_spki(len, x, y)))
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
        use base64::Engine as _;
        let b64 = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
        };
        let jwk = Jwk {
            kid: "https://v/keys/k/1".into(),
            kty: "EC-HSM".into(),
            key_ops: vec!["sign".into(), "verify".into()],
            crv: Some("P-256".into()),
            x: Some(b64("gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0")),
            y: Some(b64("SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps")),
            ..Jwk::default()
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
        // secp256k1 is not served; a bad or missing coordinate is a malformed answer.
        let k256 = Jwk {
            crv: Some("P-256K".into()),
            ..jwk.clone()
        };
        assert!(version_of("k", "1", &k256, "t").unwrap().is_none());
        let short = Jwk {
            x: Some(vec![0; 3]),
            ..jwk.clone()
        };
        assert_eq!(
            version_of("k", "1", &short, "t").unwrap_err().rv(),
            CKR_DEVICE_ERROR
        );
        let missing = Jwk { y: None, ..jwk };
        assert_eq!(
            version_of("k", "1", &missing, "t").unwrap_err().rv(),
            CKR_DEVICE_ERROR
        );
    }
}
