//! Transit keys as key versions: every version from `min_decryption_version` to
//! `latest_version` is an object, the latest is the primary; public keys come from the
//! key read. A named key whose read the policy forbids (the least-privilege sealing
//! policy: encrypt/decrypt/hmac only) is taken as an aes256-gcm96 key whose latest
//! version an encryption tells, or, when encryption is refused too (hmac only), as an
//! HMAC key whose latest version an HMAC tells.

use super::client::{parse_versioned, Body, Inner, KeyMeta, On400};
use crate::backend::remote::http::Retry;
use crate::backend::remote::{pqc, public, EcCurve, HashAlg, KeyAlg, KeyVersion, NewKey, Usage};
use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use reqwest::Method;
use std::collections::BTreeMap;

/// `GET <mount>/keys/<name>`, the parts used here.
#[derive(serde::Deserialize)]
pub struct KeyRead {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub keys: BTreeMap<String, serde_json::Value>,
    pub latest_version: u32,
    #[serde(default)]
    pub min_decryption_version: u32,
    #[serde(default)]
    pub key_size: Option<u32>,
}

/// The PKCS#11 kind of a transit key type (`None`: not presented, e.g. chacha20).
pub fn alg_of(kind: &str, key_size: Option<u32>) -> Option<KeyAlg> {
    Some(match kind {
        "aes256-gcm96" => KeyAlg::AesGcm { bits: 256 },
        "aes128-gcm96" => KeyAlg::AesGcm { bits: 128 },
        "hmac" => KeyAlg::Hmac {
            hash: None,
            bits: key_size.unwrap_or(32) * 8,
        },
        "ecdsa-p256" => KeyAlg::Ec {
            curve: EcCurve::P256,
        },
        "ecdsa-p384" => KeyAlg::Ec {
            curve: EcCurve::P384,
        },
        "ed25519" => KeyAlg::Ed25519,
        "rsa-2048" => KeyAlg::Rsa { bits: 2048 },
        "rsa-3072" => KeyAlg::Rsa { bits: 3072 },
        "rsa-4096" => KeyAlg::Rsa { bits: 4096 },
        // OpenBao 2.7's post-quantum signing keys (pure ML-DSA, empty context).
        "mldsa-44" => KeyAlg::MlDsa { set: CKP_ML_DSA_44 },
        "mldsa-65" => KeyAlg::MlDsa { set: CKP_ML_DSA_65 },
        "mldsa-87" => KeyAlg::MlDsa { set: CKP_ML_DSA_87 },
        _ => return None,
    })
}

/// The transit key type that makes `alg`.
pub fn type_of(alg: KeyAlg) -> Result<&'static str> {
    Ok(match alg {
        KeyAlg::AesGcm { bits: 256 } => "aes256-gcm96",
        KeyAlg::AesGcm { bits: 128 } => "aes128-gcm96",
        KeyAlg::Hmac { .. } => "hmac",
        KeyAlg::Ec {
            curve: EcCurve::P256,
        } => "ecdsa-p256",
        KeyAlg::Ec {
            curve: EcCurve::P384,
        } => "ecdsa-p384",
        KeyAlg::Ed25519 => "ed25519",
        KeyAlg::Rsa { bits: 2048 } => "rsa-2048",
        KeyAlg::Rsa { bits: 3072 } => "rsa-3072",
        KeyAlg::Rsa { bits: 4096 } => "rsa-4096",
        KeyAlg::MlDsa { set: CKP_ML_DSA_44 } => "mldsa-44",
        KeyAlg::MlDsa { set: CKP_ML_DSA_65 } => "mldsa-65",
        KeyAlg::MlDsa { set: CKP_ML_DSA_87 } => "mldsa-87",
        other => {
            return Err(Error::logged(
                CKR_KEY_SIZE_RANGE,
                format!("transit has no key type for {other:?}"),
            ))
        }
    })
}

fn usage_of(alg: KeyAlg) -> Usage {
    match alg {
        // Transit makes HMACs with any key: an AES key also signs (CKM_SHA*_HMAC).
        KeyAlg::AesGcm { .. } => Usage {
            sign: true,
            encrypt: true,
            decrypt: true,
            ..Usage::default()
        },
        KeyAlg::Hmac { .. } | KeyAlg::Ec { .. } | KeyAlg::Ed25519 | KeyAlg::MlDsa { .. } => Usage {
            sign: true,
            ..Usage::default()
        },
        // Transit's RSA decryption is OAEP with SHA-256 (hash and MGF1), no label.
        KeyAlg::Rsa { .. } => Usage {
            sign: true,
            decrypt: true,
            oaep_hashes: vec![HashAlg::Sha256],
            ..Usage::default()
        },
        // Not transit key types (alg_of never gives them).
        KeyAlg::SlhDsa { .. } | KeyAlg::MlKem { .. } => Usage::default(),
    }
}

/// The versions of one key read, newest (primary) first.
pub fn versions(mount: &str, name: &str, k: &KeyRead) -> Result<Vec<KeyVersion>> {
    let what = format!("key {name}");
    let alg = alg_of(&k.kind, k.key_size).ok_or_else(|| {
        Error::logged(
            CKR_KEY_TYPE_INCONSISTENT,
            format!("{what}: transit key type {:?} is not presented", k.kind),
        )
    })?;
    let min = k.min_decryption_version.max(1);
    if k.latest_version < min {
        return Err(crate::backend::remote::http::malformed(
            &what,
            format!(
                "latest_version {} below min_decryption_version {min}",
                k.latest_version
            ),
        ));
    }
    let mut out = Vec::new();
    for v in (min..=k.latest_version).rev() {
        let public_spki = if alg.is_asymmetric() {
            let Some(pk) = k
                .keys
                .get(&v.to_string())
                .and_then(|e| e.get("public_key"))
                .and_then(|p| p.as_str())
            else {
                // Trimmed (below min_available_version) or not answered: not usable.
                log::debug!("{what}: version {v} has no public key: left out");
                continue;
            };
            // Ed25519 and ML-DSA public keys are the raw key in base64, the others PEM.
            let raw = || {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(pk.trim().as_bytes())
                    .map_err(|e| {
                        crate::backend::remote::http::malformed(
                            &what,
                            format!("{alg:?} public key: {e}"),
                        )
                    })
            };
            Some(match alg {
                KeyAlg::Ed25519 => public::ed25519_spki(&raw()?)?,
                KeyAlg::MlDsa { .. } => pqc::spki(alg, &raw()?)?,
                _ => public::pem_to_der(pk)?,
            })
        } else {
            None
        };
        out.push(KeyVersion {
            label: name.to_string(),
            id: format!("{mount}/keys/{name}/v{v}"),
            locator: v.to_string(),
            primary: v == k.latest_version,
            alg,
            usage: usage_of(alg),
            public_spki,
            hardware: None,
        });
    }
    Ok(out)
}

/// What a key read came to.
enum Read {
    Found(KeyRead),
    Missing,
    Forbidden,
}

impl Inner {
    async fn read_key(&self, name: &str) -> Result<Read> {
        let what = format!("reading key {name}");
        let path = self.mount_path(&format!("keys/{name}"));
        let reply = self
            .send(&what, Method::GET, &path, None, Retry::Read)
            .await?;
        match reply.status {
            404 => Ok(Read::Missing),
            403 => Ok(Read::Forbidden),
            _ => self
                .parse::<KeyRead>(&what, reply, On400(CKR_FUNCTION_FAILED))
                .map(Read::Found),
        }
    }

    /// The key names: those of the config (and created here), else the mount's list.
    async fn names(&self) -> Result<Vec<String>> {
        let mut names = self.cfg.keys.clone();
        if names.is_empty() {
            #[derive(serde::Deserialize)]
            struct List {
                keys: Vec<String>,
            }
            let path = self.mount_path("keys?list=true");
            let reply = self
                .send("listing keys", Method::GET, &path, None, Retry::Read)
                .await?;
            // Vault answers 404 for a mount without keys.
            if reply.status != 404 {
                names = self
                    .parse::<List>("listing keys", reply, On400(CKR_FUNCTION_FAILED))?
                    .keys;
            }
        }
        for g in self.generated.lock().iter() {
            if !names.contains(g) {
                names.push(g.clone());
            }
        }
        Ok(names)
    }

    /// Every version of every key, primaries first.
    pub async fn list_keys(&self) -> Result<Vec<KeyVersion>> {
        let mut primaries = Vec::new();
        let mut older = Vec::new();
        for name in self.names().await? {
            let vs = match self.read_key(&name).await? {
                Read::Found(k) => {
                    let vs = match versions(&self.cfg.mount, &name, &k) {
                        Ok(vs) => vs,
                        Err(_) => continue,
                    };
                    self.keys.lock().insert(
                        name.clone(),
                        KeyMeta {
                            min_decryption: k.min_decryption_version.max(1),
                            latest: k.latest_version,
                            learned: false,
                            mac_only: false,
                        },
                    );
                    vs
                }
                Read::Missing => {
                    log::warn!(
                        "slot {}: key {name} does not exist in {}",
                        self.slot,
                        self.cfg.mount
                    );
                    continue;
                }
                Read::Forbidden => match self.learned_key(&name).await {
                    Ok(v) => vec![v],
                    Err(_) => continue,
                },
            };
            for v in vs {
                if v.primary {
                    primaries.push(v);
                } else {
                    older.push(v);
                }
            }
        }
        primaries.extend(older);
        Ok(primaries)
    }

    /// A named key the policy does not let us read: an aes256-gcm96 key (what such
    /// policies are written for) whose latest version an empty encryption tells; when
    /// encryption is refused too (a policy with `hmac/<k>` only), an HMAC key
    /// (`CKK_GENERIC_SECRET`, 256 bits assumed) whose latest version an empty HMAC tells.
    async fn learned_key(&self, name: &str) -> Result<KeyVersion> {
        if self.read_refused_logged.lock().insert(name.to_string()) {
            log::info!(
                "slot {}: reading key {name} is not permitted; it is presented as an aes256-gcm96 key whose version encryptions tell",
                self.slot
            );
        }
        let known_mac_only = self.keys.lock().get(name).is_some_and(|m| m.mac_only);
        let (latest, mac_only) = if known_mac_only {
            (self.mac_version(name).await?, true)
        } else {
            match self.encrypt_raw(name, b"", b"", None).await {
                Ok((v, _)) => (v, false),
                Err(refused) => match self.mac_version(name).await {
                    Ok(v) => {
                        log::info!(
                            "slot {}: key {name} may not encrypt here but may MAC: it is presented as an HMAC key (CKK_GENERIC_SECRET) whose version HMACs tell",
                            self.slot
                        );
                        (v, true)
                    }
                    Err(_) => return Err(refused),
                },
            }
        };
        {
            let mut keys = self.keys.lock();
            let e = keys.entry(name.to_string()).or_insert(KeyMeta {
                min_decryption: 1,
                latest,
                learned: true,
                mac_only,
            });
            e.latest = e.latest.max(latest);
            e.mac_only = mac_only;
        }
        let alg = if mac_only {
            KeyAlg::Hmac {
                hash: None,
                bits: 256,
            }
        } else {
            KeyAlg::AesGcm { bits: 256 }
        };
        Ok(KeyVersion {
            label: name.to_string(),
            id: format!("{}/keys/{name}/v{latest}", self.cfg.mount),
            locator: latest.to_string(),
            primary: true,
            alg,
            usage: usage_of(alg),
            public_spki: None,
            hardware: None,
        })
    }

    /// The latest version of `name` as an HMAC of nothing tells it.
    async fn mac_version(&self, name: &str) -> Result<u32> {
        let what = format!("HMAC with {name} (its version)");
        let mac = self
            .hmac_raw(
                &what,
                name,
                HashAlg::Sha256,
                b"",
                None,
                On400(CKR_FUNCTION_FAILED),
            )
            .await?;
        Ok(parse_versioned(&what, &mac)?.0)
    }

    /// Asks the service for `name`'s latest version again (a read, or for a key whose
    /// read is refused an empty encryption); whether it is newer than the known one.
    pub async fn newer_versions(&self, name: &str) -> bool {
        let Some(before) = self.keys.lock().get(name).copied() else {
            return false;
        };
        let latest = if before.mac_only {
            match self.mac_version(name).await {
                Ok(v) => v,
                Err(_) => return false,
            }
        } else if before.learned {
            match self.encrypt_raw(name, b"", b"", None).await {
                Ok((v, _)) => v,
                Err(_) => return false,
            }
        } else {
            match self.read_key(name).await {
                Ok(Read::Found(k)) => {
                    if let Some(m) = self.keys.lock().get_mut(name) {
                        m.min_decryption = k.min_decryption_version.max(1);
                        m.latest = m.latest.max(k.latest_version);
                    }
                    k.latest_version
                }
                _ => return false,
            }
        };
        latest > before.latest
    }

    /// `C_GenerateKey*`: a new key, or a new version of an existing key of that type.
    pub async fn generate(&self, k: &NewKey) -> Result<()> {
        let kind = type_of(k.alg)?;
        let name = &k.label;
        match self.read_key(name).await? {
            Read::Found(existing) if existing.kind == kind => {
                let what = format!("rotating key {name}");
                let path = self.mount_path(&format!("keys/{name}/rotate"));
                let reply = self
                    .send(&what, Method::POST, &path, Some(b"{}"), Retry::Never)
                    .await?;
                if !reply.ok() {
                    return Err(self.failure(&what, &reply, On400(CKR_FUNCTION_FAILED)));
                }
                log::info!("slot {}: key {name} rotated", self.slot);
            }
            Read::Found(existing) => {
                return Err(Error::logged(
                    CKR_TEMPLATE_INCONSISTENT,
                    format!(
                        "slot {}: key {name} exists as {}, not {kind}: not rotated",
                        self.slot, existing.kind
                    ),
                ))
            }
            Read::Missing | Read::Forbidden => {
                let what = format!("creating key {name}");
                let path = self.mount_path(&format!("keys/{name}"));
                let mut body = Body::new().str("type", kind);
                if let KeyAlg::Hmac { bits, .. } = k.alg {
                    body = body.num("key_size", (bits / 8) as u64);
                }
                let body = body.finish();
                let reply = self
                    .send(&what, Method::POST, &path, Some(&body), Retry::Never)
                    .await?;
                if !reply.ok() {
                    return Err(self.failure(&what, &reply, On400(CKR_ATTRIBUTE_VALUE_INVALID)));
                }
                log::info!("slot {}: key {name} ({kind}) created", self.slot);
            }
        }
        let mut g = self.generated.lock();
        if !g.contains(name) {
            g.push(name.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> KeyRead {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn versions_run_from_min_decryption_to_latest_newest_first() {
        let k = read(
            r#"{"type":"aes256-gcm96","keys":{"1":1,"2":2,"3":3},"latest_version":3,"min_decryption_version":2}"#,
        );
        let v = versions("transit", "k", &k).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].id.as_str(), v[0].primary),
            ("transit/keys/k/v3", true)
        );
        assert_eq!((v[1].locator.as_str(), v[1].primary), ("2", false));
        assert!(v[0].usage.sign && v[0].usage.encrypt);
    }

    #[test]
    fn ed25519_public_keys_become_spki_and_bad_ones_are_errors() {
        use base64::Engine as _;
        let pk = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let k = read(&format!(
            r#"{{"type":"ed25519","keys":{{"1":{{"public_key":"{pk}"}}}},"latest_version":1,"min_decryption_version":1}}"#
        ));
        let v = versions("transit", "e", &k).unwrap();
        assert_eq!(v[0].public_spki.as_ref().unwrap().len(), 44);
        let bad = read(
            r#"{"type":"ed25519","keys":{"1":{"public_key":"AAAA"}},"latest_version":1,"min_decryption_version":1}"#,
        );
        assert!(versions("transit", "e", &bad).is_err());
        let unknown = read(r#"{"type":"chacha20-poly1305","latest_version":1}"#);
        assert!(versions("transit", "c", &unknown).is_err());
    }
}
