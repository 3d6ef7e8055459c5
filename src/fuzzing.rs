//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), and for nothing else: thin
//! wrappers that hand fuzzer bytes to the parsers hsmux runs on what it reads from disk and
//! from the network. Hidden from the documentation and not part of the API: no behaviour
//! lives here, every wrapper calls the parser the module itself uses and drops the result.
//!
//! The C ABI target needs nothing from this module: it calls the exported functions through
//! [`crate::ffi::table`].

use crate::backend::gcp_kms::{alg as gcp_alg, api as gcp_api, crc as gcp_crc, rest as gcp_rest};
use crate::backend::remote::http::{error_message, Reply};
use crate::backend::remote::{public, EcCurve};
use crate::backend::soft::{pin, store};
use crate::backend::vault::{client as vault_client, keys as vault_keys};
use std::path::Path;

/// The TOML configuration: parse and validate (`Config::parse`), as `C_Initialize` and
/// `hsmux check` do. Reads no file and no environment variable.
pub fn config(text: &str) {
    match crate::config::Config::parse(text, "fuzz.toml") {
        Ok(cfg) => {
            let _ = format!("{cfg:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The PIN the soft-store target tries on each PIN record it loads.
pub const STORE_PIN: &[u8] = b"fuzz-pin";
/// The master key the soft-store target opens private object files with.
pub const STORE_MASTER_KEY: [u8; 32] = [7u8; 32];
/// The object file name private objects are bound to (their AAD) in the soft-store target.
pub const STORE_OBJECT_NAME: &str = "fz.obj";
/// Records that ask for more PBKDF2 iterations than this are parsed but not tried (an
/// iteration count is the store's own cost setting: a large one is slow, not a defect).
pub const STORE_MAX_TRIED_ITERATIONS: u32 = 2000;

/// `token.json` as the soft token reads it (`store::load_meta` on `dir`, after writing
/// `text` there), then each PIN record unwrapped with [`STORE_PIN`] as `C_Login` does.
pub fn soft_token_json(dir: &Path, text: &[u8]) {
    if std::fs::write(store::meta_path(dir), text).is_err() {
        return;
    }
    let Ok(store::Loaded::Meta(meta)) = store::load_meta(dir) else {
        return;
    };
    let _ = (
        &meta.label,
        &meta.serial,
        meta.so_failures,
        meta.user_failures,
        &meta.seal,
    );
    for rec in std::iter::once(&meta.so).chain(meta.user.as_ref()) {
        if rec.iterations > STORE_MAX_TRIED_ITERATIONS {
            continue;
        }
        if let Ok(layer) = pin::unwrap_pin_layer(rec, STORE_PIN) {
            let _ = pin::master_key(rec, &layer, None);
        }
    }
}

/// An object file's bytes as the soft token reads them: the envelope (`decode_object`),
/// then a private object opened with [`STORE_MASTER_KEY`] under [`STORE_OBJECT_NAME`].
pub fn soft_object(bytes: &[u8]) {
    match store::decode_object(bytes) {
        Ok(store::Decoded::Public(attrs)) => {
            let _ = store::encode_attrs(&attrs);
        }
        Ok(store::Decoded::Sealed(sealed)) => {
            if let Ok(attrs) = store::open_private(STORE_OBJECT_NAME, &sealed, &STORE_MASTER_KEY) {
                let _ = store::encode_attrs(&attrs);
            }
        }
        Err(_) => {}
    }
}

/// The attribute blob inside an object file (`decode_attrs`); what decodes must encode
/// and decode back to the same attributes (the blob's order and repeated types need not
/// survive: attributes are kept sorted by type, the last of a repeated type wins).
pub fn soft_attrs(bytes: &[u8]) {
    if let Some(attrs) = store::decode_attrs(bytes) {
        let again = store::encode_attrs(&attrs);
        assert_eq!(
            store::decode_attrs(&again).as_ref(),
            Some(&attrs),
            "decode_attrs(encode_attrs(a)) != a"
        );
    }
}

fn reply(status: u16, body: &[u8]) -> Reply {
    Reply::new(status, body)
}

fn curve(b: u8) -> EcCurve {
    if b & 1 == 0 {
        EcCurve::P256
    } else {
        EcCurve::P384
    }
}

/// Vault/OpenBao transit answers. `kind` picks the endpoint whose answer `body` is:
/// 0 sign, 1 hmac, 2 encrypt, 3 decrypt, 4 key read, 5 error bodies, 6 a versioned string.
/// Each runs what the backend runs on that answer: the `{"data": ...}` envelope
/// (`Reply::json`), `parse_versioned`, DER signatures to r||s, the key read to key versions
/// (PEM and raw Ed25519 public keys), the service's error message.
pub fn vault_answer(kind: u8, body: &[u8]) {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Envelope<T> {
        data: Option<T>,
    }
    fn data<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
        reply(200, body)
            .json::<Envelope<T>>("fuzz")
            .ok()
            .and_then(|e| e.data)
    }
    #[derive(serde::Deserialize)]
    struct Signed {
        signature: String,
    }
    #[derive(serde::Deserialize)]
    struct Mac {
        hmac: String,
    }
    #[derive(serde::Deserialize)]
    struct Sealed {
        ciphertext: String,
        #[serde(default)]
        key_version: Option<u32>,
    }
    #[derive(serde::Deserialize)]
    struct Opened {
        plaintext: String,
    }
    match kind % 7 {
        0 => {
            if let Some(s) = data::<Signed>(body) {
                if let Ok((_, sig)) = vault_client::parse_versioned("fuzz", &s.signature) {
                    let c = curve(sig.first().copied().unwrap_or(0));
                    let _ = public::ecdsa_der_to_raw(&sig, c);
                }
            }
        }
        1 => {
            if let Some(m) = data::<Mac>(body) {
                let _ = vault_client::parse_versioned("fuzz", &m.hmac);
            }
        }
        2 => {
            if let Some(s) = data::<Sealed>(body) {
                let _ = (
                    s.key_version,
                    vault_client::parse_versioned("fuzz", &s.ciphertext),
                );
            }
        }
        3 => {
            if let Some(o) = data::<Opened>(body) {
                let _ = base64::engine::general_purpose::STANDARD.decode(o.plaintext.as_bytes());
            }
        }
        4 => {
            if let Some(k) = data::<vault_keys::KeyRead>(body) {
                // The backend reads keys whose version range the service chose; a range of
                // millions of versions is the service's to answer, not hsmux's to refuse.
                if k.latest_version.saturating_sub(k.min_decryption_version) <= 4096 {
                    if let Ok(versions) = vault_keys::versions("transit", "fz", &k) {
                        for v in versions {
                            if let Some(spki) = &v.public_spki {
                                let _ = public::describe(spki);
                            }
                        }
                    }
                }
            }
        }
        5 => {
            let _ = error_message(body);
        }
        _ => {
            if let Ok(s) = std::str::from_utf8(body) {
                let _ = vault_client::parse_versioned("fuzz", s);
            }
        }
    }
}

/// Google Cloud KMS answers. `kind` picks the call: 0 asymmetricSign, 1 macSign,
/// 2 asymmetricDecrypt, 3 rawEncrypt, 4 rawDecrypt, 5 getPublicKey, 6 cryptoKeys.list,
/// 7 cryptoKeyVersions.list, 8 an error body, 9 macVerify. Each is deserialized as the
/// backend does, then its checksums, base64 fields, algorithm names and public keys are
/// checked as the backend checks them.
pub fn gcp_answer(kind: u8, body: &[u8]) {
    let r = reply(200, body);
    let what = "fuzz";
    match kind % 10 {
        0 => {
            if let Ok(s) = r.json::<gcp_api::SignResponse>(what) {
                let _ = gcp_crc::verified(what, "verifiedDigestCrc32c", s.verified_digest_crc32c);
                let sig =
                    gcp_api::checked_bytes(what, "signature", &s.signature, s.signature_crc32c);
                if let Ok(sig) = sig {
                    let _ = public::ecdsa_der_to_raw(&sig, curve(s.name.len() as u8));
                }
            }
        }
        1 => {
            if let Ok(m) = r.json::<gcp_api::MacSignResponse>(what) {
                let _ = gcp_api::checked_bytes(what, "mac", &m.mac, m.mac_crc32c);
            }
        }
        2 => {
            if let Ok(d) = r.json::<gcp_api::DecryptResponse>(what) {
                let _ = gcp_api::checked_bytes(what, "plaintext", &d.plaintext, d.plaintext_crc32c);
            }
        }
        3 => {
            if let Ok(e) = r.json::<gcp_api::RawEncryptResponse>(what) {
                let ct =
                    gcp_api::checked_bytes(what, "ciphertext", &e.ciphertext, e.ciphertext_crc32c);
                let iv = gcp_api::checked_bytes(
                    what,
                    "initializationVector",
                    &e.initialization_vector,
                    e.initialization_vector_crc32c,
                );
                if let (Ok(ct), Ok(iv)) = (ct, iv) {
                    let _ = e.tag_length == 16 && iv.len() == 12 && ct.len() >= 16;
                }
            }
        }
        4 => {
            if let Ok(d) = r.json::<gcp_api::RawDecryptResponse>(what) {
                let _ = gcp_api::checked_bytes(what, "plaintext", &d.plaintext, d.plaintext_crc32c);
            }
        }
        5 => {
            if let Ok(pk) = r.json::<gcp_api::PublicKey>(what) {
                let _ = gcp_crc::check(what, "pemCrc32c", pk.pem_crc32c, pk.pem.as_bytes());
                let _ = gcp_alg::describe(&pk.algorithm);
                if let Ok(der) = public::pem_to_der(&pk.pem) {
                    let _ = public::describe(&der);
                }
            }
        }
        6 => {
            if let Ok(l) = r.json::<gcp_api::ListCryptoKeys>(what) {
                for k in l.crypto_keys {
                    if let Some(p) = k.primary {
                        let _ = gcp_alg::describe(&p.algorithm);
                    }
                    if let Some(t) = k.version_template {
                        let _ = gcp_alg::describe(&t.algorithm);
                    }
                }
            }
        }
        7 => {
            if let Ok(l) = r.json::<gcp_api::ListVersions>(what) {
                for v in l.crypto_key_versions {
                    let _ = gcp_alg::describe(&v.algorithm);
                }
            }
        }
        8 => {
            let status = u16::from(body.first().copied().unwrap_or(0)) + 300;
            let _ = gcp_rest::error_of(&reply(status, body));
            let _ = error_message(body);
        }
        _ => {
            let _ = r.json::<gcp_api::MacVerifyResponse>(what);
        }
    }
}

/// The bytes hsmux parses itself from AWS KMS (whose JSON the SDK parses): a `GetPublicKey`
/// SubjectPublicKeyInfo (`kind` even) and an ECDSA `Sign` signature, DER to r||s (`kind`
/// odd; bit 1 picks the curve). Also any service's PEM public key.
pub fn aws_answer(kind: u8, body: &[u8]) {
    match kind % 3 {
        0 => {
            let _ = public::describe(body);
        }
        1 => {
            let c = curve(kind >> 2);
            if let Ok(raw) = public::ecdsa_der_to_raw(body, c) {
                // What converts back must be the same signature (DER is canonical).
                let der = public::ecdsa_raw_to_der(&raw).expect("r||s from DER re-encodes");
                assert_eq!(
                    public::ecdsa_der_to_raw(&der, c).expect("re-encoded DER parses"),
                    raw
                );
            }
        }
        _ => {
            if let Ok(s) = std::str::from_utf8(body) {
                if let Ok(der) = public::pem_to_der(s) {
                    let _ = public::describe(&der);
                }
            }
        }
    }
}

/// Seed files for the soft-store target, made by the store's own writers: a `token.json`
/// whose PIN records open with [`STORE_PIN`] (1000 iterations), a public and a private
/// object file (the private one sealed with [`STORE_MASTER_KEY`] under
/// [`STORE_OBJECT_NAME`]), and the attribute blob inside them. `(name, bytes)` pairs.
pub fn soft_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use crate::core::attr::{Attrs, AttrsExt};
    use cryptoki_sys::*;
    let mk = zeroize::Zeroizing::new(STORE_MASTER_KEY);
    let rec = || pin::make_record_sealed(STORE_PIN, &mk, 1000, None).expect("PIN record");
    let meta = store::TokenMeta {
        format: store::FORMAT.into(),
        label: "fuzz".into(),
        serial: "0123456789abcdef".into(),
        so: rec(),
        user: Some(rec()),
        so_failures: 1,
        user_failures: 0,
        seal: None,
    };
    let mut a = Attrs::new();
    a.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
    a.set_ulong(CKA_KEY_TYPE, CKK_AES);
    a.set_flag(CKA_TOKEN, true);
    a.set_flag(CKA_PRIVATE, true);
    a.insert(CKA_LABEL, b"fz-aes".to_vec());
    a.insert(CKA_VALUE, vec![0x11; 32]);
    vec![
        (
            "token.json",
            serde_json::to_vec_pretty(&meta).expect("json"),
        ),
        (
            "public.obj",
            store::encode_object(STORE_OBJECT_NAME, &a, false, None).expect("public object"),
        ),
        (
            "private.obj",
            store::encode_object(STORE_OBJECT_NAME, &a, true, Some(&STORE_MASTER_KEY))
                .expect("private object"),
        ),
        ("attrs.bin", store::encode_attrs(&a)),
    ]
}
