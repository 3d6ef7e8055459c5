//! The crypto calls on a key version: asymmetricSign, macSign/macVerify,
//! asymmetricDecrypt, decapsulate, rawEncrypt/rawDecrypt. Each sends the CRC32C of what it sends and
//! checks the service's `verified*` flags, the checksums of what comes back, the version
//! named in the answer and the lengths; any mismatch is `CKR_DEVICE_ERROR` and the answer
//! is not used.

use super::api::{self, b64, checked_bytes};
use super::rest::Call;
use super::{crc, Inner};
use crate::backend::remote::http::malformed;
use crate::backend::remote::ops::{GCM_IV, GCM_TAG};
use crate::backend::remote::{public, GcmSealed, HashAlg, KeyAlg, KeyVersion, SignScheme};
use crate::core::error::{Error, Result};
use cryptoki_sys::*;
use zeroize::Zeroizing;

/// Raw encryption limits: 64 KiB of plaintext (and of AAD) for any key, 8 KiB of
/// plaintext and AAD together for an HSM key.
const RAW_MAX: usize = 64 * 1024;
const RAW_HSM_MAX: usize = 8 * 1024;

fn same_name(what: &str, got: &str, want: &str) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(malformed(
            what,
            format!("the answer is for {got:?}, not {want:?}"),
        ))
    }
}

impl Inner {
    /// A signature (ECDSA raw r||s, RSA, Ed25519, ML-DSA, SLH-DSA) or HMAC tag. `data` is
    /// the digest for ECDSA and RSA, the message for the others.
    pub async fn sign(
        &self,
        key: KeyVersion,
        scheme: SignScheme,
        data: Zeroizing<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        if let SignScheme::Hmac(_) = scheme {
            return self.mac_sign(&key, &data).await;
        }
        let what = format!("Cloud KMS asymmetricSign {}", key.locator);
        let req = match scheme {
            SignScheme::Ed25519 | SignScheme::MlDsa | SignScheme::SlhDsa => {
                api::SignRequest::Data {
                    data: b64(&data),
                    data_crc32c: crc::field(&data),
                }
            }
            SignScheme::Ecdsa(h) | SignScheme::Pkcs1(h) | SignScheme::Pss(h, _) => {
                if data.len() != h.len() {
                    return Err(Error::logged(
                        CKR_DATA_LEN_RANGE,
                        format!("{what}: a {}-byte digest for {}", data.len(), h.name()),
                    ));
                }
                let digest = match h {
                    HashAlg::Sha256 => api::Digest::Sha256(b64(&data)),
                    HashAlg::Sha384 => api::Digest::Sha384(b64(&data)),
                    HashAlg::Sha512 => api::Digest::Sha512(b64(&data)),
                    other => {
                        return Err(Error::logged(
                            CKR_MECHANISM_INVALID,
                            format!(
                                "{what}: Cloud KMS signs SHA-256/384/512 digests, not {}",
                                other.name()
                            ),
                        ))
                    }
                };
                api::SignRequest::Digest {
                    digest,
                    digest_crc32c: crc::field(&data),
                }
            }
            SignScheme::Hmac(_) => unreachable!("handled above"),
        };
        let path = format!("{}:asymmetricSign", key.locator);
        let r: api::SignResponse = self.rest.post(&what, &path, &req, Call::Crypto).await?;
        same_name(&what, &r.name, &key.locator)?;
        if let api::SignRequest::Digest { .. } = req {
            crc::verified(&what, "verifiedDigestCrc32c", r.verified_digest_crc32c)?;
        } else {
            crc::verified(&what, "verifiedDataCrc32c", r.verified_data_crc32c)?;
        }
        let sig = checked_bytes(&what, "signature", &r.signature, r.signature_crc32c)?.to_vec();
        match key.alg {
            KeyAlg::Ec { curve } => public::ecdsa_der_to_raw(&sig, curve),
            KeyAlg::Ed25519 if sig.len() != 64 => Err(malformed(
                &what,
                format!("an Ed25519 signature of {} bytes", sig.len()),
            )),
            KeyAlg::Rsa { bits } if sig.len() != (bits as usize).div_ceil(8) => Err(malformed(
                &what,
                format!(
                    "an RSA signature of {} bytes for a {bits}-bit key",
                    sig.len()
                ),
            )),
            _ => Ok(sig),
        }
    }

    async fn mac_sign(&self, key: &KeyVersion, data: &[u8]) -> Result<Vec<u8>> {
        let what = format!("Cloud KMS macSign {}", key.locator);
        let req = api::MacSignRequest {
            data: b64(data),
            data_crc32c: crc::field(data),
        };
        let path = format!("{}:macSign", key.locator);
        let r: api::MacSignResponse = self.rest.post(&what, &path, &req, Call::Crypto).await?;
        same_name(&what, &r.name, &key.locator)?;
        crc::verified(&what, "verifiedDataCrc32c", r.verified_data_crc32c)?;
        let mac = checked_bytes(&what, "mac", &r.mac, r.mac_crc32c)?.to_vec();
        if let KeyAlg::Hmac { hash: Some(h), .. } = key.alg {
            if mac.len() != h.len() {
                return Err(malformed(
                    &what,
                    format!("a {}-byte HMAC-{}", mac.len(), h.name()),
                ));
            }
        }
        Ok(mac)
    }

    /// The service's HMAC check, with its own integrity flag on the verdict.
    pub async fn mac_verify(
        &self,
        key: KeyVersion,
        data: Zeroizing<Vec<u8>>,
        tag: Vec<u8>,
    ) -> Result<bool> {
        let what = format!("Cloud KMS macVerify {}", key.locator);
        let req = api::MacVerifyRequest {
            data: b64(&data),
            data_crc32c: crc::field(&data),
            mac: b64(&tag),
            mac_crc32c: crc::field(&tag),
        };
        let path = format!("{}:macVerify", key.locator);
        let r: api::MacVerifyResponse = self.rest.post(&what, &path, &req, Call::Crypto).await?;
        same_name(&what, &r.name, &key.locator)?;
        crc::verified(&what, "verifiedDataCrc32c", r.verified_data_crc32c)?;
        crc::verified(&what, "verifiedMacCrc32c", r.verified_mac_crc32c)?;
        // The service sets verifiedSuccessIntegrity equal to success; a difference means
        // the verdict was altered on the way.
        if r.verified_success_integrity != r.success {
            return Err(malformed(
                &what,
                "verifiedSuccessIntegrity differs from success",
            ));
        }
        Ok(r.success)
    }

    /// ML-KEM decapsulation: the shared secret (checked against its CRC32C).
    pub async fn decapsulate(
        &self,
        key: KeyVersion,
        ciphertext: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let what = format!("Cloud KMS decapsulate {}", key.locator);
        let req = api::DecryptRequest {
            ciphertext: b64(&ciphertext),
            ciphertext_crc32c: crc::field(&ciphertext),
        };
        let path = format!("{}:decapsulate", key.locator);
        let r: api::DecapsulateResponse = self.rest.post(&what, &path, &req, Call::Decrypt).await?;
        let secret = checked_bytes(
            &what,
            "sharedSecret",
            &r.shared_secret,
            r.shared_secret_crc32c,
        );
        drop(Zeroizing::new(r.shared_secret));
        same_name(&what, &r.name, &key.locator)?;
        crc::verified(
            &what,
            "verifiedCiphertextCrc32c",
            r.verified_ciphertext_crc32c,
        )?;
        secret
    }

    pub async fn rsa_decrypt(&self, key: KeyVersion, ciphertext: Vec<u8>) -> Result<Vec<u8>> {
        let what = format!("Cloud KMS asymmetricDecrypt {}", key.locator);
        let req = api::DecryptRequest {
            ciphertext: b64(&ciphertext),
            ciphertext_crc32c: crc::field(&ciphertext),
        };
        let path = format!("{}:asymmetricDecrypt", key.locator);
        let r: api::DecryptResponse = self.rest.post(&what, &path, &req, Call::Decrypt).await?;
        crc::verified(
            &what,
            "verifiedCiphertextCrc32c",
            r.verified_ciphertext_crc32c,
        )?;
        let pt = checked_bytes(&what, "plaintext", &r.plaintext, r.plaintext_crc32c);
        drop(Zeroizing::new(r.plaintext));
        let pt = pt?;
        Ok(pt.to_vec())
    }

    /// Raw AES-GCM encryption; the service draws the 12-byte IV.
    pub async fn gcm_encrypt(
        &self,
        key: KeyVersion,
        plaintext: Zeroizing<Vec<u8>>,
        aad: Vec<u8>,
    ) -> Result<GcmSealed> {
        let what = format!("Cloud KMS rawEncrypt {}", key.locator);
        if plaintext.len() > RAW_MAX || aad.len() > RAW_MAX {
            return Err(Error::logged(
                CKR_DATA_LEN_RANGE,
                format!(
                    "{what}: raw encryption takes at most {RAW_MAX} bytes of plaintext and of AAD"
                ),
            ));
        }
        if key.hardware == Some(true) && plaintext.len() + aad.len() > RAW_HSM_MAX {
            return Err(Error::logged(
                CKR_DATA_LEN_RANGE,
                format!(
                    "{what}: an HSM key encrypts at most {RAW_HSM_MAX} bytes of plaintext and AAD together ({} given)",
                    plaintext.len() + aad.len()
                ),
            ));
        }
        let with_aad = !aad.is_empty();
        let req = api::RawEncryptRequest {
            plaintext: b64(&plaintext),
            plaintext_crc32c: crc::field(&plaintext),
            aad: api::Aad::of(&aad),
        };
        let path = format!("{}:rawEncrypt", key.locator);
        let r: api::RawEncryptResponse = {
            let r = self.rest.post(&what, &path, &req, Call::Crypto).await;
            drop(Zeroizing::new(req.plaintext));
            r?
        };
        same_name(&what, &r.name, &key.locator)?;
        crc::verified(
            &what,
            "verifiedPlaintextCrc32c",
            r.verified_plaintext_crc32c,
        )?;
        if with_aad {
            crc::verified(
                &what,
                "verifiedAdditionalAuthenticatedDataCrc32c",
                r.verified_additional_authenticated_data_crc32c,
            )?;
        }
        let ct = checked_bytes(&what, "ciphertext", &r.ciphertext, r.ciphertext_crc32c)?.to_vec();
        let iv = checked_bytes(
            &what,
            "initializationVector",
            &r.initialization_vector,
            r.initialization_vector_crc32c,
        )?
        .to_vec();
        if r.tag_length != GCM_TAG as i64
            || iv.len() != GCM_IV
            || ct.len() != plaintext.len() + GCM_TAG
        {
            return Err(malformed(
                &what,
                format!(
                    "tagLength {}, a {}-byte IV and {} bytes of ciphertext for {} of plaintext",
                    r.tag_length,
                    iv.len(),
                    ct.len(),
                    plaintext.len()
                ),
            ));
        }
        Ok(GcmSealed {
            iv,
            ciphertext_and_tag: ct,
        })
    }

    pub async fn gcm_decrypt(
        &self,
        key: KeyVersion,
        iv: Vec<u8>,
        ct: Vec<u8>,
        aad: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let what = format!("Cloud KMS rawDecrypt {}", key.locator);
        let with_aad = !aad.is_empty();
        let req = api::RawDecryptRequest {
            ciphertext: b64(&ct),
            ciphertext_crc32c: crc::field(&ct),
            initialization_vector: b64(&iv),
            initialization_vector_crc32c: crc::field(&iv),
            tag_length: GCM_TAG as i64,
            aad: api::Aad::of(&aad),
        };
        let path = format!("{}:rawDecrypt", key.locator);
        let r: api::RawDecryptResponse = self.rest.post(&what, &path, &req, Call::Decrypt).await?;
        crc::verified(
            &what,
            "verifiedCiphertextCrc32c",
            r.verified_ciphertext_crc32c,
        )?;
        crc::verified(
            &what,
            "verifiedInitializationVectorCrc32c",
            r.verified_initialization_vector_crc32c,
        )?;
        if with_aad {
            crc::verified(
                &what,
                "verifiedAdditionalAuthenticatedDataCrc32c",
                r.verified_additional_authenticated_data_crc32c,
            )?;
        }
        let pt = checked_bytes(&what, "plaintext", &r.plaintext, r.plaintext_crc32c);
        drop(Zeroizing::new(r.plaintext));
        let pt = pt?;
        if pt.len() + GCM_TAG != ct.len() {
            return Err(malformed(
                &what,
                format!(
                    "{} bytes of plaintext for {} of ciphertext",
                    pt.len(),
                    ct.len()
                ),
            ));
        }
        Ok(pt.to_vec())
    }
}
