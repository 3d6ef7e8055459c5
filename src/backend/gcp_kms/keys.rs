//! The slot's keys: listing a ring's (or the named) crypto keys and their ENABLED
//! versions, with each asymmetric version's public key; and creating keys and versions for
//! `C_GenerateKey*`.

use super::api::{self, CryptoKey, CryptoKeyVersion, ListCryptoKeys, ListVersions, PublicKey};
use super::rest::Call;
use super::{alg, crc, Inner};
use crate::backend::remote::http::malformed;
use crate::backend::remote::{pqc, public, KeyVersion, NewKey};
use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use std::sync::Arc;
use std::time::Duration;

/// Page size of the list calls (the service's maximum is 1000).
const PAGE: u32 = 1000;

/// The number at the end of a version's name (`.../cryptoKeyVersions/3`).
fn version_number(name: &str) -> u64 {
    name.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The last path segment: a crypto key's short name, its `CKA_LABEL`.
fn short_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

impl Inner {
    /// The crypto keys the slot shows: the ring's, or the ones named in the config (a
    /// named key that does not exist is left out with a log line).
    async fn crypto_keys(&self) -> Result<Vec<CryptoKey>> {
        if !self.keys.is_empty() {
            let mut out = Vec::new();
            for k in &self.keys {
                let path = format!("{}/cryptoKeys/{k}", self.key_ring);
                let what = format!("Cloud KMS get {path}");
                match self.rest.get_maybe::<CryptoKey>(&what, &path).await? {
                    Some(key) => out.push(key),
                    None => log::warn!("slot {}: key {k} is not in {}", self.slot, self.key_ring),
                }
            }
            return Ok(out);
        }
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut path = format!("{}/cryptoKeys?pageSize={PAGE}", self.key_ring);
            if !token.is_empty() {
                path += &format!("&pageToken={}", urlencode(&token));
            }
            let page: ListCryptoKeys = self
                .rest
                .get(
                    &format!("Cloud KMS list {}/cryptoKeys", self.key_ring),
                    &path,
                )
                .await?;
            out.extend(page.crypto_keys);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    /// The ENABLED versions of a key (the filter is the service's; the state is checked
    /// again here).
    async fn enabled_versions(&self, key: &str) -> Result<Vec<CryptoKeyVersion>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut path =
                format!("{key}/cryptoKeyVersions?pageSize={PAGE}&filter=state%3DENABLED");
            if !token.is_empty() {
                path += &format!("&pageToken={}", urlencode(&token));
            }
            let page: ListVersions = self
                .rest
                .get(&format!("Cloud KMS list {key}/cryptoKeyVersions"), &path)
                .await?;
            out.extend(
                page.crypto_key_versions
                    .into_iter()
                    .filter(|v| v.state == "ENABLED"),
            );
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    /// A version's public key (SubjectPublicKeyInfo DER), checked against its checksum and
    /// name; fetched once per version (a version's key never changes).
    async fn public_key(&self, version: &CryptoKeyVersion) -> Result<Vec<u8>> {
        if let Some(spki) = self.public_keys.lock().get(&version.name) {
            return Ok(spki.clone());
        }
        let what = format!("Cloud KMS getPublicKey {}", version.name);
        // Post-quantum keys come in the NIST format only (no PEM).
        let pq = alg::describe(&version.algorithm)
            .map(|(kind, _)| kind)
            .filter(|kind| kind.is_pqc());
        let path = match pq {
            Some(_) => format!("{}/publicKey?publicKeyFormat=NIST_PQC", version.name),
            None => format!("{}/publicKey", version.name),
        };
        let pk: PublicKey = self.rest.get(&what, &path).await?;
        if pq.is_none() {
            crc::check(&what, "pemCrc32c", pk.pem_crc32c, pk.pem.as_bytes())?;
        }
        if pk.name != version.name {
            return Err(malformed(&what, format!("the answer is for {:?}", pk.name)));
        }
        if !pk.algorithm.is_empty() && pk.algorithm != version.algorithm {
            return Err(malformed(
                &what,
                format!(
                    "public key of {}, the version is {}",
                    pk.algorithm, version.algorithm
                ),
            ));
        }
        let spki = match pq {
            Some(kind) => {
                let data = pk
                    .public_key
                    .filter(|_| pk.public_key_format == "NIST_PQC")
                    .ok_or_else(|| malformed(&what, "no NIST_PQC publicKey"))?;
                let raw =
                    api::checked_bytes(&what, "publicKey.data", &data.data, data.crc32c_checksum)?;
                pqc::spki(kind, &raw)?
            }
            None => public::pem_to_der(&pk.pem)?,
        };
        self.public_keys
            .lock()
            .insert(version.name.clone(), spki.clone());
        Ok(spki)
    }

    /// The usable versions of one key, the primary first, then the others newest first.
    async fn versions_of(&self, key: CryptoKey) -> Result<Vec<KeyVersion>> {
        let mut versions = self.enabled_versions(&key.name).await?;
        versions.sort_by_key(|v| std::cmp::Reverse(version_number(&v.name)));
        // A key with a primary (purpose ENCRYPT_DECRYPT) names it; any other key's newest
        // ENABLED version is the one new signatures and encryptions use.
        let primary = key
            .primary
            .as_ref()
            .map(|p| p.name.clone())
            .filter(|p| versions.iter().any(|v| &v.name == p))
            .or_else(|| versions.first().map(|v| v.name.clone()));
        let label = short_name(&key.name).to_string();
        let mut out = Vec::new();
        for v in versions {
            let Some((kind, usage)) = alg::describe(&v.algorithm) else {
                log::info!(
                    "slot {}: {} has algorithm {} which hsmux does not serve: left out",
                    self.slot,
                    v.name,
                    v.algorithm
                );
                continue;
            };
            let public_spki = if kind.is_asymmetric() {
                match self.public_key(&v).await {
                    Ok(spki) => Some(spki),
                    // Disabled or destroyed since it was listed.
                    Err(e) if e.rv() == CKR_KEY_HANDLE_INVALID => {
                        log::warn!("slot {}: {} is gone: left out", self.slot, v.name);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            out.push(KeyVersion {
                label: label.clone(),
                id: v.name.clone(),
                locator: v.name.clone(),
                primary: primary.as_deref() == Some(v.name.as_str()),
                alg: kind,
                usage,
                public_spki,
                hardware: Some(v.protection_level == "HSM"),
            });
        }
        out.sort_by_key(|k| !k.primary);
        Ok(out)
    }

    /// Every usable version of the slot's keys, primary versions first. The keys are
    /// looked at concurrently (one list call and the public keys each).
    pub async fn list(self: Arc<Self>) -> Result<Vec<KeyVersion>> {
        let keys = self.crypto_keys().await?;
        let tasks: Vec<_> = keys
            .into_iter()
            .map(|k| {
                let me = self.clone();
                tokio::spawn(async move { me.versions_of(k).await })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            let vs = t.await.map_err(|e| {
                Error::general(format!("slot {}: key listing task: {e}", self.slot))
            })??;
            all.extend(vs);
        }
        // Stable: each key's order is kept, primaries of all keys come first.
        all.sort_by_key(|k| !k.primary);
        Ok(all)
    }

    /// Creates the key `k.label` (HSM protection) or, when it exists with the same purpose
    /// and algorithm, a new version of it; returns once the new version is ENABLED.
    pub async fn generate(self: Arc<Self>, k: NewKey) -> Result<()> {
        let (purpose, algorithm) = alg::for_new(&k).map_err(|why| {
            Error::logged(
                CKR_TEMPLATE_INCONSISTENT,
                format!("slot {}: {why}", self.slot),
            )
        })?;
        let key = format!("{}/cryptoKeys/{}", self.key_ring, k.label);
        let existing: Option<CryptoKey> = self
            .rest
            .get_maybe(&format!("Cloud KMS get {key}"), &key)
            .await?;
        let version = match existing {
            Some(ck) => {
                let have = ck
                    .version_template
                    .as_ref()
                    .map(|t| t.algorithm.as_str())
                    .unwrap_or("");
                if ck.purpose != purpose || have != algorithm {
                    return Err(Error::logged(
                        CKR_TEMPLATE_INCONSISTENT,
                        format!(
                            "slot {}: {key} exists as {} {have}; a new version would not be {purpose} {algorithm}",
                            self.slot, ck.purpose
                        ),
                    ));
                }
                let what = format!("Cloud KMS create version of {key}");
                let v: CryptoKeyVersion = self
                    .rest
                    .post(
                        &what,
                        &format!("{key}/cryptoKeyVersions"),
                        &serde_json::json!({}),
                        Call::Create,
                    )
                    .await?;
                v
            }
            None => {
                let what = format!("Cloud KMS create {key}");
                let body = api::NewCryptoKey {
                    purpose,
                    version_template: api::NewTemplate {
                        algorithm: &algorithm,
                        protection_level: "HSM",
                    },
                };
                let path = format!(
                    "{}/cryptoKeys?cryptoKeyId={}",
                    self.key_ring,
                    urlencode(&k.label)
                );
                let _: CryptoKey = self.rest.post(&what, &path, &body, Call::Create).await?;
                // The first version is made with the key; asymmetric and HSM keys are
                // generated asynchronously (PENDING_GENERATION first).
                self.newest_version(&key).await?
            }
        };
        self.wait_enabled(version).await
    }

    /// The newest version of a key, whatever its state.
    async fn newest_version(&self, key: &str) -> Result<CryptoKeyVersion> {
        let what = format!("Cloud KMS list {key}/cryptoKeyVersions");
        let page: ListVersions = self
            .rest
            .get(&what, &format!("{key}/cryptoKeyVersions?pageSize={PAGE}"))
            .await?;
        page.crypto_key_versions
            .into_iter()
            .max_by_key(|v| version_number(&v.name))
            .ok_or_else(|| malformed(&what, "a new key without versions"))
    }

    /// Polls a new version until the service has generated it.
    async fn wait_enabled(&self, mut v: CryptoKeyVersion) -> Result<()> {
        let mut delay = Duration::from_millis(100);
        loop {
            match v.state.as_str() {
                "ENABLED" => return Ok(()),
                "PENDING_GENERATION" | "PENDING_IMPORT" => {}
                other => {
                    return Err(Error::logged(
                        CKR_DEVICE_ERROR,
                        format!("slot {}: new version {} is {other}", self.slot, v.name),
                    ))
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            v = self
                .rest
                .get(&format!("Cloud KMS get {}", v.name), &v.name)
                .await?;
        }
    }
}

/// Percent-encodes a query value (page tokens are opaque and may hold `+`, `/`, `=`).
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_query_values() {
        assert_eq!(
            version_number("projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/12"),
            12
        );
        assert_eq!(
            short_name("projects/p/locations/l/keyRings/r/cryptoKeys/seal-key"),
            "seal-key"
        );
        assert_eq!(urlencode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
    }
}
