//! The crypto calls on a key version: `sign` (the digest computed locally, sent as
//! `value`), `decrypt` (RSA-OAEP / RSA-OAEP-256 / RSA1_5), `wrapKey`/`unwrapKey` (RSA, and
//! A*KW on oct-HSM keys) and, on Managed HSM oct-HSM keys, AES-GCM `encrypt`/`decrypt`
//! with the HSM's IV and A*CBCPAD with the caller's. Every answer is checked (base64url,
//! lengths, the kid it names) before it is believed.

use super::keys::{bad, unb64, B64URL};
use super::rest::Call;
use super::Inner;
use crate::backend::remote::{
    EcCurve, GcmCall, GcmSealed, HashAlg, KeyAlg, KeyVersion, SignScheme, Transform, WrapAlg,
};
use crate::core::error::{Error, Result};
use base64::Engine as _;
use cryptoki_sys::*;
use serde::Deserialize;
use zeroize::Zeroizing;

#[derive(Deserialize)]
struct OpResult {
    kid: Option<String>,
    value: Option<String>,
    iv: Option<String>,
    tag: Option<String>,
}

impl Drop for OpResult {
    fn drop(&mut self) {
        if let Some(v) = self.value.as_mut() {
            zeroize::Zeroize::zeroize(v);
        }
    }
}

/// The JWA name of a signature scheme (`Err`: one Key Vault does not make).
pub fn sign_alg(key: &KeyVersion, scheme: SignScheme) -> Result<&'static str> {
    let refuse = || {
        Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            format!(
                "{}: Key Vault signs with RS/PS/ES 256, 384 and 512 (PSS salt = hash length), not {scheme:?}",
                key.id
            ),
        )
    };
    Ok(match (key.alg, scheme) {
        (
            KeyAlg::Ec {
                curve: EcCurve::P256,
            },
            SignScheme::Ecdsa(_),
        ) => "ES256",
        (
            KeyAlg::Ec {
                curve: EcCurve::P384,
            },
            SignScheme::Ecdsa(_),
        ) => "ES384",
        (
            KeyAlg::Ec {
                curve: EcCurve::P521,
            },
            SignScheme::Ecdsa(_),
        ) => "ES512",
        (KeyAlg::Rsa { .. }, SignScheme::Pkcs1(HashAlg::Sha256)) => "RS256",
        (KeyAlg::Rsa { .. }, SignScheme::Pkcs1(HashAlg::Sha384)) => "RS384",
        (KeyAlg::Rsa { .. }, SignScheme::Pkcs1(HashAlg::Sha512)) => "RS512",
        (KeyAlg::Rsa { .. }, SignScheme::Pss(h, salt)) if salt == h.len() => match h {
            HashAlg::Sha256 => "PS256",
            HashAlg::Sha384 => "PS384",
            HashAlg::Sha512 => "PS512",
            _ => return Err(refuse()),
        },
        _ => return Err(refuse()),
    })
}

/// The digest length ES256/384/512 take: the curve's, except P-521's SHA-512 (a digest of
/// 64 bytes is the same number as its 66-byte zero extension).
fn es_digest_len(curve: EcCurve) -> usize {
    match curve {
        EcCurve::P521 => 64,
        c => c.field_len(),
    }
}

/// ECDSA uses the leftmost field-length bytes of any digest (or the digest as a number
/// when shorter), so a SHA-1 or SHA-512 digest on P-256 is the same signature as its
/// truncated / zero-extended 32 bytes under ES256, which is all Key Vault takes.
fn ecdsa_input(digest: &[u8], field: usize) -> Vec<u8> {
    if digest.len() >= field {
        digest[..field].to_vec()
    } else {
        let mut v = vec![0u8; field - digest.len()];
        v.extend_from_slice(digest);
        v
    }
}

/// The AES key sizes tried for an oct-HSM key, the likeliest first (the JWK does not tell
/// the size; an algorithm of the wrong size is a BadParameter answer).
const AES_BITS: &[u32] = &[256, 128, 192];

/// The JWA name of an RSA wrap or decryption (`Err`: one Key Vault does not have).
fn rsa_alg(alg: WrapAlg) -> Result<&'static str> {
    match alg {
        WrapAlg::RsaOaep(HashAlg::Sha1) => Ok("RSA-OAEP"),
        WrapAlg::RsaOaep(HashAlg::Sha256) => Ok("RSA-OAEP-256"),
        WrapAlg::RsaPkcs1 => Ok("RSA1_5"),
        _ => Err(Error::logged(
            CKR_MECHANISM_PARAM_INVALID,
            "Key Vault's RSA-OAEP hashes are SHA-1 and SHA-256",
        )),
    }
}

impl Inner {
    fn op_url(&self, key: &KeyVersion, op: &str) -> String {
        self.rest.url(&format!("keys/{}/{op}", key.locator))
    }

    /// The answer's `value`, from the version asked.
    fn value(&self, what: &str, key: &KeyVersion, r: &OpResult) -> Result<Zeroizing<Vec<u8>>> {
        if let Some(kid) = &r.kid {
            let want = format!("{}/keys/{}", self.rest.vault, key.locator);
            if kid != &want {
                return Err(bad(what, format!("answered for {kid:?}, not {want}")));
            }
        }
        Ok(Zeroizing::new(unb64(what, "value", r.value.as_deref())?))
    }

    pub async fn sign(
        &self,
        key: KeyVersion,
        scheme: SignScheme,
        digest: Zeroizing<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let alg = sign_alg(&key, scheme)?;
        let (value, out_len) = match key.alg {
            KeyAlg::Ec { curve } => (
                ecdsa_input(&digest, es_digest_len(curve)),
                2 * curve.field_len(),
            ),
            KeyAlg::Rsa { bits } => (digest.to_vec(), (bits as usize).div_ceil(8)),
            _ => return Err(Error::new(CKR_KEY_TYPE_INCONSISTENT)),
        };
        let what = format!("Key Vault sign {alg} with {}", key.locator);
        let body = serde_json::json!({"alg": alg, "value": B64URL.encode(&value)});
        let r: OpResult = self
            .rest
            .post(&what, &self.op_url(&key, "sign"), &body, Call::Crypto)
            .await?;
        let sig = self.value(&what, &key, &r)?;
        if sig.len() != out_len {
            return Err(bad(
                &what,
                format!("a signature of {} bytes, not {out_len}", sig.len()),
            ));
        }
        Ok(sig.to_vec())
    }

    pub async fn rsa_decrypt(
        &self,
        key: KeyVersion,
        hash: HashAlg,
        ct: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let alg = match hash {
            HashAlg::Sha1 => "RSA-OAEP",
            HashAlg::Sha256 => "RSA-OAEP-256",
            _ => return Err(Error::new(CKR_MECHANISM_PARAM_INVALID)),
        };
        let what = format!("Key Vault decrypt {alg} with {}", key.locator);
        let body = serde_json::json!({"alg": alg, "value": B64URL.encode(&ct)});
        let r: OpResult = self
            .rest
            .post(&what, &self.op_url(&key, "decrypt"), &body, Call::Decrypt)
            .await?;
        let pt = self.value(&what, &key, &r)?;
        let max = match key.alg {
            KeyAlg::Rsa { bits } => (bits as usize).div_ceil(8) - 2 * hash.len() - 2,
            _ => 0,
        };
        if pt.len() > max {
            return Err(bad(&what, "a plaintext longer than OAEP allows"));
        }
        Ok(pt.to_vec())
    }

    /// Runs an AES request with the key's size: the learned one, else each size in turn
    /// until the HSM takes one (then remembered for the version). A decryption's
    /// BadParameter may also be a wrong tag or padding, so sizes are learned by the
    /// requests that succeed.
    async fn with_aes_bits<T, F, Fut>(&self, key: &KeyVersion, f: F) -> Result<T>
    where
        F: Fn(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let learned = self.aes_bits.lock().get(&key.id).copied();
        if let Some(bits) = learned {
            return f(bits).await;
        }
        let mut last = None;
        for bits in AES_BITS {
            match f(*bits).await {
                Ok(v) => {
                    self.aes_bits.lock().insert(key.id.clone(), *bits);
                    return Ok(v);
                }
                Err(e) if matches!(e.rv(), CKR_DATA_INVALID | CKR_ENCRYPTED_DATA_INVALID) => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::new(CKR_DEVICE_ERROR)))
    }

    /// A wrap, unwrap, AES-CBC-PAD or RSA1_5 decryption ([`Transform`]).
    pub async fn transform(
        &self,
        key: KeyVersion,
        t: Transform,
        input: Zeroizing<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let (op, call) = match t {
            Transform::Wrap(_) => ("wrapkey", Call::Crypto),
            Transform::Unwrap(_) => ("unwrapkey", Call::Decrypt),
            Transform::CbcPadEncrypt(_) => ("encrypt", Call::Crypto),
            Transform::CbcPadDecrypt(_) | Transform::Pkcs1Decrypt => ("decrypt", Call::Decrypt),
        };
        let what = format!("Key Vault {op} {t:?} with {}", key.locator);
        let request = |alg: String| {
            let (what, key, input) = (&what, &key, &input);
            async move {
                let mut body =
                    serde_json::json!({"alg": alg, "value": B64URL.encode(input.as_slice())});
                if let Transform::CbcPadEncrypt(iv) | Transform::CbcPadDecrypt(iv) = t {
                    body["iv"] = B64URL.encode(iv).into();
                }
                let r: Result<OpResult> = self
                    .rest
                    .post(what, &self.op_url(key, op), &body, call)
                    .await;
                zeroize_json(&mut body);
                Ok(self.value(what, key, &r?)?.to_vec())
            }
        };
        match t {
            Transform::Wrap(WrapAlg::AesKw) | Transform::Unwrap(WrapAlg::AesKw) => {
                self.with_aes_bits(&key, |bits| request(format!("A{bits}KW")))
                    .await
            }
            Transform::CbcPadEncrypt(_) | Transform::CbcPadDecrypt(_) => {
                self.with_aes_bits(&key, |bits| request(format!("A{bits}CBCPAD")))
                    .await
            }
            Transform::Wrap(a) | Transform::Unwrap(a) => request(rsa_alg(a)?.into()).await,
            Transform::Pkcs1Decrypt => request(rsa_alg(WrapAlg::RsaPkcs1)?.into()).await,
        }
    }

    pub async fn gcm_encrypt(&self, c: GcmCall) -> Result<GcmSealed> {
        let what = format!("Key Vault encrypt AES-GCM with {}", c.key.locator);
        self.with_aes_bits(&c.key, |bits| {
            let (what, key, pt, aad) = (&what, &c.key, &c.text, &c.aad);
            async move {
                let alg = format!("A{bits}GCM");
                let mut body =
                    serde_json::json!({"alg": alg, "value": B64URL.encode(pt.as_slice())});
                if !aad.is_empty() {
                    body["aad"] = B64URL.encode(aad).into();
                }
                let r: Result<OpResult> = self
                    .rest
                    .post(what, &self.op_url(key, "encrypt"), &body, Call::Crypto)
                    .await;
                zeroize_json(&mut body);
                let r = r?;
                let mut ct = self.value(what, key, &r)?.to_vec();
                let iv = unb64(what, "iv", r.iv.as_deref())?;
                let tag = unb64(what, "tag", r.tag.as_deref())?;
                if iv.len() != 12 || tag.len() != 16 || ct.len() != pt.len() {
                    return Err(bad(
                        what,
                        "AES-GCM iv, tag or ciphertext of the wrong length",
                    ));
                }
                ct.extend_from_slice(&tag);
                Ok(GcmSealed {
                    iv,
                    ciphertext_and_tag: ct,
                })
            }
        })
        .await
    }

    pub async fn gcm_decrypt(&self, c: GcmCall) -> Result<Vec<u8>> {
        let GcmCall {
            key,
            iv,
            text: ct,
            aad,
        } = c;
        let what = format!("Key Vault decrypt AES-GCM with {}", key.locator);
        if ct.len() < 16 {
            return Err(Error::logged(
                CKR_ENCRYPTED_DATA_LEN_RANGE,
                format!("{what}: shorter than the tag"),
            ));
        }
        let (body_ct, tag) = ct.split_at(ct.len() - 16);
        self.with_aes_bits(&key, |bits| {
            let (what, key, iv, aad) = (&what, &key, &iv, &aad);
            async move {
                let mut body = serde_json::json!({
                    "alg": format!("A{bits}GCM"), "value": B64URL.encode(body_ct),
                    "iv": B64URL.encode(iv), "tag": B64URL.encode(tag),
                });
                if !aad.is_empty() {
                    body["aad"] = B64URL.encode(aad).into();
                }
                let r: OpResult = self
                    .rest
                    .post(what, &self.op_url(key, "decrypt"), &body, Call::Decrypt)
                    .await?;
                let pt = self.value(what, key, &r)?;
                if pt.len() != body_ct.len() {
                    return Err(bad(what, "a plaintext of the wrong length"));
                }
                Ok(pt.to_vec())
            }
        })
        .await
    }
}

/// Overwrites the string values of a request body (a plaintext is in one).
fn zeroize_json(v: &mut serde_json::Value) {
    if let Some(o) = v.as_object_mut() {
        for (_, s) in o.iter_mut() {
            if let serde_json::Value::String(s) = s {
                zeroize::Zeroize::zeroize(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_digests_are_fitted_to_the_curve() {
        let d: Vec<u8> = (1..=64).collect();
        assert_eq!(ecdsa_input(&d, 32), d[..32].to_vec());
        let short = [7u8; 20];
        let fitted = ecdsa_input(&short, 32);
        assert_eq!(&fitted[..12], &[0u8; 12]);
        assert_eq!(&fitted[12..], &short);
    }
}
