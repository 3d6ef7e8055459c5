//! The cryptographic requests: `sign`, `hmac`, `encrypt`, `decrypt` of a transit mount.
//! Answers are checked (prefix, version, base64, lengths) and anything unexpected is a
//! malformed answer (`CKR_DEVICE_ERROR`), never a wrong result.

use super::client::{parse_versioned, Body, Inner, On400};
use crate::backend::remote::http::{self, Retry};
use crate::backend::remote::ops::{GCM_IV, GCM_TAG};
use crate::backend::remote::{public, GcmSealed, HashAlg, KeyAlg, KeyVersion, SignScheme};
use crate::core::error::{err, Error, Result};
use cryptoki_sys::*;
use reqwest::Method;
use zeroize::Zeroizing;

/// Vault's name of a hash (`hash_algorithm` of a signature, `algorithm` of an HMAC).
pub fn vault_hash(h: HashAlg) -> &'static str {
    match h {
        HashAlg::Sha1 => "sha1",
        HashAlg::Sha224 => "sha2-224",
        HashAlg::Sha256 => "sha2-256",
        HashAlg::Sha384 => "sha2-384",
        HashAlg::Sha512 => "sha2-512",
    }
}

fn version_of(key: &KeyVersion) -> Option<u64> {
    key.locator.parse().ok()
}

impl Inner {
    /// A signature or HMAC in PKCS#11 form.
    pub async fn sign(
        &self,
        key: &KeyVersion,
        scheme: SignScheme,
        data: &[u8],
        is_digest: bool,
    ) -> Result<Vec<u8>> {
        let name = &key.label;
        if let SignScheme::Hmac(h) = scheme {
            return self.hmac(key, h, data).await;
        }
        let what = format!("signing with {}", key.id);
        let mut body = Body::new();
        let mut input = data;
        match scheme {
            SignScheme::Ecdsa(h) => {
                body = body
                    .bool("prehashed", true)
                    .str("hash_algorithm", vault_hash(h));
            }
            SignScheme::Pkcs1(h) => {
                let h = if data.len() == h.len() {
                    h
                } else {
                    let (dh, digest) = HashAlg::split_digest_info(data).ok_or_else(|| {
                        Error::logged(
                            CKR_DATA_INVALID,
                            format!("{what}: CKM_RSA_PKCS input is not a DigestInfo (transit signs digests only)"),
                        )
                    })?;
                    input = digest;
                    dh
                };
                body = body
                    .bool("prehashed", true)
                    .str("hash_algorithm", vault_hash(h))
                    .str("signature_algorithm", "pkcs1v15");
            }
            SignScheme::Pss(h, salt) => {
                if salt == 0 {
                    // Transit hands the number to Go's crypto/rsa, where 0 means "auto"
                    // (the longest salt): an empty salt cannot be asked for.
                    return Err(Error::logged(
                        CKR_MECHANISM_PARAM_INVALID,
                        format!(
                            "{what}: transit cannot make RSA-PSS signatures with an empty salt"
                        ),
                    ));
                }
                body = body
                    .bool("prehashed", true)
                    .str("hash_algorithm", vault_hash(h))
                    .str("signature_algorithm", "pss")
                    .str("salt_length", &salt.to_string());
            }
            // Transit signs the message itself: pure ML-DSA with an empty context.
            SignScheme::Ed25519 | SignScheme::MlDsa => {}
            SignScheme::SlhDsa => return Err(err(CKR_MECHANISM_INVALID)),
            SignScheme::Hmac(_) => unreachable!("handled above"),
        }
        debug_assert_eq!(
            is_digest,
            !matches!(scheme, SignScheme::Ed25519 | SignScheme::MlDsa)
        );
        body = body.b64("input", input);
        if let Some(v) = version_of(key) {
            body = body.num("key_version", v);
        }
        let body = body.finish();
        #[derive(serde::Deserialize)]
        struct Signed {
            signature: String,
        }
        let path = self.mount_path(&format!("sign/{name}"));
        let s: Signed = self
            .post(
                &what,
                &path,
                &body,
                Retry::Idempotent,
                On400(CKR_FUNCTION_FAILED),
            )
            .await?;
        let (_, sig) = parse_versioned(&what, &s.signature)?;
        match (scheme, key.alg) {
            (SignScheme::Ecdsa(_), KeyAlg::Ec { curve }) => public::ecdsa_der_to_raw(&sig, curve),
            _ => Ok(sig),
        }
    }

    async fn hmac(&self, key: &KeyVersion, h: HashAlg, data: &[u8]) -> Result<Vec<u8>> {
        let what = format!("HMAC-{} with {}", h.name(), key.id);
        let mac = self
            .hmac_raw(
                &what,
                &key.label,
                h,
                data,
                version_of(key),
                On400(CKR_FUNCTION_FAILED),
            )
            .await?;
        let (_, mac) = parse_versioned(&what, &mac)?;
        if mac.len() != h.len() {
            return Err(http::malformed(&what, format!("{}-byte HMAC", mac.len())));
        }
        Ok(mac)
    }

    /// `hmac/<name>` with the hash in the body (`algorithm`), never in the path: the
    /// least-privilege policy grants `update` on `<mount>/hmac/<name>` only, and
    /// `hmac/<name>/<algorithm>` is another path it refuses. Transit's answer as it came
    /// (`vault:v<N>:<base64>`), checked to be of that form.
    pub async fn hmac_raw(
        &self,
        what: &str,
        name: &str,
        h: HashAlg,
        data: &[u8],
        version: Option<u64>,
        on400: On400,
    ) -> Result<String> {
        let mut body = Body::new()
            .b64("input", data)
            .str("algorithm", vault_hash(h));
        if let Some(v) = version {
            body = body.num("key_version", v);
        }
        let body = body.finish();
        #[derive(serde::Deserialize)]
        struct Mac {
            hmac: String,
        }
        let path = self.mount_path(&format!("hmac/{name}"));
        let m: Mac = self
            .post(what, &path, &body, Retry::Idempotent, on400)
            .await?;
        parse_versioned(what, &m.hmac)?;
        Ok(m.hmac)
    }

    /// `encrypt/<name>`: (key version, nonce || ciphertext || tag). `version` None = the
    /// latest (what transit does without `key_version`).
    pub async fn encrypt_raw(
        &self,
        name: &str,
        plaintext: &[u8],
        aad: &[u8],
        version: Option<u64>,
    ) -> Result<(u32, Vec<u8>)> {
        let what = format!("encrypting with {name}");
        let mut body = Body::new().b64("plaintext", plaintext);
        if !aad.is_empty() {
            body = body.b64("associated_data", aad);
        }
        if let Some(v) = version {
            body = body.num("key_version", v);
        }
        let body = body.finish();
        #[derive(serde::Deserialize)]
        struct Sealed {
            ciphertext: String,
            #[serde(default)]
            key_version: Option<u32>,
        }
        let path = self.mount_path(&format!("encrypt/{name}"));
        // Not retried after sending: an encryption is not a read (a repeat would only
        // cost a nonce, but the rule for non-idempotent calls holds).
        let s: Sealed = self
            .post(
                &what,
                &path,
                &body,
                Retry::Never,
                On400(CKR_FUNCTION_FAILED),
            )
            .await?;
        let (v, blob) = parse_versioned(&what, &s.ciphertext)?;
        if s.key_version.is_some_and(|kv| kv != v) {
            return Err(http::malformed(
                &what,
                "key_version differs from the ciphertext's",
            ));
        }
        if blob.len() != GCM_IV + plaintext.len() + GCM_TAG {
            return Err(http::malformed(
                &what,
                format!(
                    "{} bytes of ciphertext for {} of plaintext",
                    blob.len(),
                    plaintext.len()
                ),
            ));
        }
        if let Some(m) = self.keys.lock().get_mut(name) {
            m.latest = m.latest.max(v);
        }
        Ok((v, blob))
    }

    pub async fn gcm_encrypt(&self, key: &KeyVersion, pt: &[u8], aad: &[u8]) -> Result<GcmSealed> {
        let learned = self.keys.lock().get(&key.label).is_some_and(|m| m.learned);
        // A learned key is encrypted with whatever is latest; a read key with the version
        // of its object (the primary, unless the consumer picked an older one).
        let version = if learned { None } else { version_of(key) };
        let (_, mut blob) = self.encrypt_raw(&key.label, pt, aad, version).await?;
        let rest = blob.split_off(GCM_IV);
        Ok(GcmSealed {
            iv: blob,
            ciphertext_and_tag: rest,
        })
    }

    /// The versions to try for a decryption: the object's own, then the other
    /// decryptable ones newest first (the OpenBao seal always picks the primary object,
    /// so a blob made before a rotation arrives with the newest version).
    fn decrypt_candidates(&self, key: &KeyVersion) -> Vec<u32> {
        let own = version_of(key).unwrap_or(0) as u32;
        let mut v = vec![own];
        if let Some(m) = self.keys.lock().get(&key.label) {
            let low = m.min_decryption.max(1).max(m.latest.saturating_sub(63));
            v.extend((low..=m.latest).rev().filter(|n| *n != own));
        }
        v.retain(|n| *n > 0);
        v
    }

    /// Sends one `decrypt/<name>`; `Ok(None)` for a 400 (wrong tag, wrong version).
    async fn decrypt_once(
        &self,
        what: &str,
        name: &str,
        ciphertext: &str,
        aad: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let mut body = Body::new().str("ciphertext", ciphertext);
        if !aad.is_empty() {
            body = body.b64("associated_data", aad);
        }
        let body = body.finish();
        let path = self.mount_path(&format!("decrypt/{name}"));
        let reply = self
            .send(what, Method::POST, &path, Some(&body), Retry::Idempotent)
            .await?;
        // 400: a wrong tag or version. Transit answers a ciphertext that fails RSA-OAEP
        // with HTTP 500 ("failed to RSA decrypt the ciphertext: crypto/rsa: decryption
        // error"): that is the data too, not the device (and must not fail a replica over).
        let data_refused = reply.status == 400
            || (reply.status == 500 && reply.message().contains("decryption error"));
        if data_refused {
            log::debug!("{what}: HTTP {}: {}", reply.status, reply.message());
            return Ok(None);
        }
        #[derive(serde::Deserialize)]
        struct Opened {
            plaintext: String,
        }
        let mut o: Opened = self.parse(what, reply, On400(CKR_ENCRYPTED_DATA_INVALID))?;
        use base64::Engine as _;
        let pt = base64::engine::general_purpose::STANDARD
            .decode(o.plaintext.as_bytes())
            .map(Zeroizing::new)
            .map_err(|e| http::malformed(what, format!("plaintext base64: {e}")));
        zeroize::Zeroize::zeroize(&mut o.plaintext);
        Ok(Some(pt?))
    }

    pub async fn gcm_decrypt(&self, key: &KeyVersion, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        use base64::Engine as _;
        let what = format!("decrypting with {}", key.label);
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(blob));
        let mut tried: Vec<u32> = Vec::new();
        for round in 0..2 {
            let fresh: Vec<u32> = self
                .decrypt_candidates(key)
                .into_iter()
                .filter(|v| !tried.contains(v))
                .collect();
            for v in fresh {
                tried.push(v);
                let ct = Zeroizing::new(format!("vault:v{v}:{}", b64.as_str()));
                if let Some(pt) = self.decrypt_once(&what, &key.label, &ct, aad).await? {
                    if pt.len() + GCM_IV + GCM_TAG != blob.len() {
                        return Err(http::malformed(&what, "plaintext of the wrong length"));
                    }
                    if v.to_string() != key.locator {
                        log::debug!("{what}: opened with version {v}, not {}", key.locator);
                    }
                    return Ok(pt.to_vec());
                }
            }
            // None opened it: the key may have versions newer than the cached list (a
            // rotation another process already encrypts with). Asked once.
            if round == 0 && !self.newer_versions(&key.label).await {
                break;
            }
        }
        Err(Error::logged(
            CKR_ENCRYPTED_DATA_INVALID,
            format!(
                "slot {}: {what}: no decryptable version of the key opens the data",
                self.slot
            ),
        ))
    }

    pub async fn rsa_decrypt(&self, key: &KeyVersion, hash: HashAlg, ct: &[u8]) -> Result<Vec<u8>> {
        if hash != HashAlg::Sha256 {
            return Err(err(CKR_MECHANISM_PARAM_INVALID));
        }
        use base64::Engine as _;
        let what = format!("RSA-OAEP decrypting with {}", key.id);
        let v = version_of(key).unwrap_or(1);
        let s = format!(
            "vault:v{v}:{}",
            base64::engine::general_purpose::STANDARD.encode(ct)
        );
        match self.decrypt_once(&what, &key.label, &s, b"").await? {
            Some(pt) => Ok(pt.to_vec()),
            None => Err(Error::logged(
                CKR_ENCRYPTED_DATA_INVALID,
                format!("slot {}: {what}: transit refused the ciphertext", self.slot),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_infos_are_split_and_others_are_not() {
        let split = HashAlg::split_digest_info;
        let mut di = crate::backend::soft::crypto::der::DIGEST_INFO[2].1.to_vec();
        di.extend_from_slice(&[5u8; 32]);
        assert_eq!(split(&di), Some((HashAlg::Sha256, &[5u8; 32][..])));
        assert!(split(&di[..di.len() - 1]).is_none());
        assert!(split(&[0u8; 51]).is_none());
    }
}
