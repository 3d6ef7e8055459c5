//! The Cloud KMS REST v1 shapes hsmux sends and reads (proto3 JSON: camelCase names, bytes
//! as base64, `Int64Value` checksums as decimal strings, default values left out, so every
//! field read here may be absent).

use super::crc;
use crate::backend::remote::http::malformed;
use crate::core::error::Result;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Bytes as proto3 JSON writes them (standard base64; the URL-safe alphabet is accepted
/// too, as Google's own parsers do).
pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn unb64(what: &str, field: &str, s: &str) -> Result<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .map_err(|e| malformed(what, format!("{field} is not base64: {e}")))
}

/// A bytes field of an answer (`field`, base64) with its CRC32C (`<field>Crc32c`), checked.
/// Zeroized when dropped (a decryption's plaintext is one).
pub fn checked_bytes(
    what: &str,
    field: &str,
    b64: &str,
    crc32c: Option<u32>,
) -> Result<Zeroizing<Vec<u8>>> {
    let data = Zeroizing::new(unb64(what, field, b64)?);
    crc::check(what, &format!("{field}Crc32c"), crc32c, &data)?;
    Ok(data)
}

impl Aad {
    /// `None` for no AAD (the field is then left out).
    pub fn of(aad: &[u8]) -> Option<Aad> {
        (!aad.is_empty()).then(|| Aad {
            additional_authenticated_data: b64(aad),
            additional_authenticated_data_crc32c: crc::field(aad),
        })
    }
}

// ---- resources -------------------------------------------------------------------------

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct CryptoKeyVersion {
    pub name: String,
    pub state: String,
    pub protection_level: String,
    pub algorithm: String,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct VersionTemplate {
    pub protection_level: String,
    pub algorithm: String,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct CryptoKey {
    pub name: String,
    /// Only keys of purpose ENCRYPT_DECRYPT have one.
    pub primary: Option<CryptoKeyVersion>,
    pub purpose: String,
    pub version_template: Option<VersionTemplate>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ListCryptoKeys {
    pub crypto_keys: Vec<CryptoKey>,
    pub next_page_token: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ListVersions {
    pub crypto_key_versions: Vec<CryptoKeyVersion>,
    pub next_page_token: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyRing {
    pub name: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct PublicKey {
    pub pem: String,
    pub algorithm: String,
    #[serde(deserialize_with = "crc::de_opt")]
    pub pem_crc32c: Option<u32>,
    pub name: String,
    pub protection_level: String,
    /// Asked for with `publicKeyFormat` (`NIST_PQC`: the raw FIPS 203/204/205 encoding,
    /// which post-quantum keys need): the key is then in `public_key`, not `pem`.
    pub public_key_format: String,
    pub public_key: Option<ChecksummedData>,
}

/// Bytes with their CRC32C (`ChecksummedData`).
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ChecksummedData {
    pub data: String,
    #[serde(deserialize_with = "crc::de_opt")]
    pub crc32c_checksum: Option<u32>,
}

/// `cryptoKeys.create` body.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct NewCryptoKey<'a> {
    pub purpose: &'a str,
    pub version_template: NewTemplate<'a>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct NewTemplate<'a> {
    pub algorithm: &'a str,
    pub protection_level: &'a str,
}

// ---- crypto calls ------------------------------------------------------------------------

/// `asymmetricSign`: a digest (ECDSA, RSA) or the data itself (Ed25519).
#[derive(Serialize, Debug)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum SignRequest {
    Digest {
        digest: Digest,
        digest_crc32c: String,
    },
    Data {
        data: String,
        data_crc32c: String,
    },
}

/// A `Digest`: `{"sha256": <base64>}` and so on, exactly one hash.
#[derive(Serialize, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Digest {
    Sha256(String),
    Sha384(String),
    Sha512(String),
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct SignResponse {
    pub signature: String,
    #[serde(deserialize_with = "crc::de_opt")]
    pub signature_crc32c: Option<u32>,
    pub verified_digest_crc32c: bool,
    pub verified_data_crc32c: bool,
    pub name: String,
}

/// `asymmetricDecrypt`, and `decapsulate` (the same two fields).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct DecryptRequest {
    pub ciphertext: String,
    pub ciphertext_crc32c: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct DecryptResponse {
    pub plaintext: String,
    #[serde(deserialize_with = "crc::de_opt")]
    pub plaintext_crc32c: Option<u32>,
    pub verified_ciphertext_crc32c: bool,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct DecapsulateResponse {
    pub name: String,
    pub shared_secret: String,
    #[serde(deserialize_with = "crc::de_opt")]
    pub shared_secret_crc32c: Option<u32>,
    pub verified_ciphertext_crc32c: bool,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct MacSignRequest {
    pub data: String,
    pub data_crc32c: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MacSignResponse {
    pub name: String,
    pub mac: String,
    #[serde(deserialize_with = "crc::de_opt")]
    pub mac_crc32c: Option<u32>,
    pub verified_data_crc32c: bool,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct MacVerifyRequest {
    pub data: String,
    pub data_crc32c: String,
    pub mac: String,
    pub mac_crc32c: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MacVerifyResponse {
    pub name: String,
    pub success: bool,
    pub verified_data_crc32c: bool,
    pub verified_mac_crc32c: bool,
    /// The service's own check that `success` was not flipped in transit: it equals
    /// `success` when the answer is intact.
    pub verified_success_integrity: bool,
}

/// `rawEncrypt`: the service draws the IV (none is sent).
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RawEncryptRequest {
    pub plaintext: String,
    pub plaintext_crc32c: String,
    /// Absent when there is none.
    #[serde(flatten)]
    pub aad: Option<Aad>,
}

/// The additional authenticated data of a raw AES-GCM call, with its checksum.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Aad {
    pub additional_authenticated_data: String,
    pub additional_authenticated_data_crc32c: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct RawEncryptResponse {
    /// `ciphertext || tag`.
    pub ciphertext: String,
    pub initialization_vector: String,
    pub tag_length: i64,
    #[serde(deserialize_with = "crc::de_opt")]
    pub ciphertext_crc32c: Option<u32>,
    #[serde(deserialize_with = "crc::de_opt")]
    pub initialization_vector_crc32c: Option<u32>,
    pub verified_plaintext_crc32c: bool,
    pub verified_additional_authenticated_data_crc32c: bool,
    pub name: String,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RawDecryptRequest {
    pub ciphertext: String,
    pub ciphertext_crc32c: String,
    pub initialization_vector: String,
    pub initialization_vector_crc32c: String,
    pub tag_length: i64,
    #[serde(flatten)]
    pub aad: Option<Aad>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct RawDecryptResponse {
    pub plaintext: String,
    #[serde(deserialize_with = "crc::de_opt")]
    pub plaintext_crc32c: Option<u32>,
    pub verified_ciphertext_crc32c: bool,
    pub verified_additional_authenticated_data_crc32c: bool,
    pub verified_initialization_vector_crc32c: bool,
}

/// `{"error": {"code", "message", "status"}}`.
#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
pub struct ErrorDetail {
    pub code: i64,
    pub message: String,
    pub status: String,
}
