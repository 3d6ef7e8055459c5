//! The crypto calls on a key version: `sign` (the digest computed locally, sent as
//! `value`), `decrypt` (RSA-OAEP / RSA-OAEP-256 / RSA1_5), `wrapKey`/`unwrapKey` (RSA, and
//! A*KW on oct-HSM keys) and, on Managed HSM oct-HSM keys, AES-GCM `encrypt`/`decrypt`
//! with the HSM's IV and A*CBCPAD with the caller's. Every answer is checked (base64url,
//! lengths, the kid it names) before it is believed.

use super::errors::{sdk, Call};
use super::keys::bad;
use super::rest::Verb;
use super::Inner;
use crate::backend::remote::{
    EcCurve, GcmCall, GcmSealed, HashAlg, KeyAlg, KeyVersion, SignScheme, Transform, WrapAlg,
};
use crate::core::error::{Error, Result};
use azure_core::http::{RequestContent, Response};
use azure_core::Bytes;
use azure_security_keyvault_keys::models::{
    KeyClientEncryptOptions, KeyClientSignOptions, KeyClientWrapKeyOptions, KeyOperationParameters,
    KeyOperationResult, SignParameters,
};
use cryptoki_sys::*;
use zeroize::{Zeroize, Zeroizing};

/// The key operations hsmux asks for.
#[derive(Clone, Copy, Debug)]
enum KeyOp {
    Encrypt,
    Decrypt,
    Wrap,
    Unwrap,
}

/// An operation's checked answer.
struct Answer {
    value: Zeroizing<Vec<u8>>,
    iv: Option<Vec<u8>>,
    tag: Option<Vec<u8>>,
}

/// A request body as JSON in a buffer that is wiped when the SDK or the transport have
/// let go of it (a plaintext or key may be in it).
fn json<T: serde::Serialize>(what: &str, p: &T, hint: usize) -> Result<Bytes> {
    let mut json = Zeroizing::new(Vec::with_capacity(hint * 4 / 3 + 512));
    serde_json::to_writer(&mut *json, p).map_err(|e| Error::general(format!("{what}: {e}")))?;
    Ok(Bytes::from_owner(json))
}

/// The body `json` as the SDK's request content.
fn content<T>(json: &Bytes) -> RequestContent<T> {
    azure_core::http::Body::Bytes(json.clone()).into()
}

/// The parameters of an encrypt/decrypt/wrap/unwrap.
fn params(alg: &str, value: &[u8]) -> KeyOperationParameters {
    let mut p = KeyOperationParameters::default();
    let Ok(a) = alg.parse();
    p.algorithm = Some(a);
    p.value = Some(value.to_vec());
    p
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

/// `(name, version)` of a key version's locator.
fn name_version(key: &KeyVersion) -> (&str, &str) {
    key.locator
        .split_once('/')
        .unwrap_or((key.locator.as_str(), ""))
}

impl Inner {
    /// The answer's `value`, from the version asked.
    fn answer(
        &self,
        what: &str,
        key: &KeyVersion,
        r: Result<KeyOperationResult>,
    ) -> Result<Answer> {
        let mut r = r?;
        let value = Zeroizing::new(r.result.take().ok_or_else(|| bad(what, "no `value`"))?);
        if let Some(kid) = &r.kid {
            let want = format!("{}/keys/{}", self.vault, key.locator);
            if kid != &want {
                return Err(bad(what, format!("answered for {kid:?}, not {want}")));
            }
        }
        Ok(Answer {
            value,
            iv: r.iv.take(),
            tag: r.authentication_tag.take(),
        })
    }

    /// The operation `verb` with the JSON `body`: by [`rest`](super::rest) once the vault's
    /// resource is known, else through the SDK's `KeyClient` (`sdk_call`).
    async fn operate<F>(
        &self,
        what: &str,
        key: &KeyVersion,
        verb: Verb,
        body: &Bytes,
        call: Call,
        sdk_call: impl FnOnce() -> F,
    ) -> Result<Answer>
    where
        F: std::future::Future<Output = azure_core::Result<Response<KeyOperationResult>>>,
    {
        let r = match self.post_op(what, &key.locator, verb, body, call).await {
            Some(r) => r,
            None => sdk(what, call, sdk_call().await.and_then(|r| r.into_model())),
        };
        self.answer(what, key, r)
    }

    /// Sends an encrypt, decrypt, wrapKey or unwrapKey of the key version; `p.value` is
    /// wiped once it is in the request body.
    async fn key_op(
        &self,
        what: &str,
        key: &KeyVersion,
        op: KeyOp,
        mut p: KeyOperationParameters,
    ) -> Result<Answer> {
        let hint = p.value.as_ref().map_or(0, Vec::len);
        let body = json(what, &p, hint);
        if let Some(v) = p.value.as_mut() {
            v.zeroize();
        }
        let body = body?;
        let (name, version) = name_version(key);
        let c = &self.client;
        let (verb, call) = match op {
            KeyOp::Encrypt => (Verb::Encrypt, Call::Crypto),
            KeyOp::Wrap => (Verb::WrapKey, Call::Crypto),
            KeyOp::Decrypt => (Verb::Decrypt, Call::Decrypt),
            KeyOp::Unwrap => (Verb::UnwrapKey, Call::Decrypt),
        };
        self.operate(what, key, verb, &body, call, || async {
            match op {
                KeyOp::Encrypt => {
                    let o = KeyClientEncryptOptions {
                        key_version: Some(version.to_string()),
                        ..Default::default()
                    };
                    c.encrypt(name, content(&body), Some(o)).await
                }
                KeyOp::Wrap => {
                    let o = KeyClientWrapKeyOptions {
                        key_version: Some(version.to_string()),
                        ..Default::default()
                    };
                    c.wrap_key(name, content(&body), Some(o)).await
                }
                KeyOp::Decrypt => c.decrypt(name, version, content(&body), None).await,
                KeyOp::Unwrap => c.unwrap_key(name, version, content(&body), None).await,
            }
        })
        .await
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
        let mut p = SignParameters::default();
        let Ok(a) = alg.parse();
        p.algorithm = Some(a);
        p.value = Some(value);
        let body = json(&what, &p, 64)?;
        let (name, version) = name_version(&key);
        let sig = self
            .operate(&what, &key, Verb::Sign, &body, Call::Crypto, || {
                let o = KeyClientSignOptions {
                    key_version: Some(version.to_string()),
                    ..Default::default()
                };
                self.client.sign(name, content(&body), Some(o))
            })
            .await?
            .value;
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
        let pt = self
            .key_op(&what, &key, KeyOp::Decrypt, params(alg, &ct))
            .await?
            .value;
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
        let op = match t {
            Transform::Wrap(_) => KeyOp::Wrap,
            Transform::Unwrap(_) => KeyOp::Unwrap,
            Transform::CbcPadEncrypt(_) => KeyOp::Encrypt,
            Transform::CbcPadDecrypt(_) | Transform::Pkcs1Decrypt => KeyOp::Decrypt,
        };
        let what = format!("Key Vault {op:?} {t:?} with {}", key.locator);
        let request = |alg: String| {
            let (what, key, input) = (&what, &key, &input);
            async move {
                let mut p = params(&alg, input);
                if let Transform::CbcPadEncrypt(iv) | Transform::CbcPadDecrypt(iv) = t {
                    p.iv = Some(iv.to_vec());
                }
                Ok(self.key_op(what, key, op, p).await?.value.to_vec())
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
                let mut p = params(&format!("A{bits}GCM"), pt);
                if !aad.is_empty() {
                    p.additional_authenticated_data = Some(aad.to_vec());
                }
                let a = self.key_op(what, key, KeyOp::Encrypt, p).await?;
                let iv = a.iv.unwrap_or_default();
                let tag = a.tag.unwrap_or_default();
                let mut ct = a.value.to_vec();
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
                let mut p = params(&format!("A{bits}GCM"), body_ct);
                p.iv = Some(iv.to_vec());
                p.authentication_tag = Some(tag.to_vec());
                if !aad.is_empty() {
                    p.additional_authenticated_data = Some(aad.to_vec());
                }
                let pt = self.key_op(what, key, KeyOp::Decrypt, p).await?.value;
                if pt.len() != body_ct.len() {
                    return Err(bad(what, "a plaintext of the wrong length"));
                }
                Ok(pt.to_vec())
            }
        })
        .await
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
