//! AWS KMS (`backend = "aws-kms"`) through the AWS SDK: ECDSA (P-256, P-384) and RSA
//! (2048-4096, PKCS#1 v1.5 and PSS) signatures over digests hsmux computes (`MessageType
//! = DIGEST`), RSA-OAEP decryption (SHA-1, SHA-256), HMAC (`GenerateMac`/`VerifyMac`),
//! keys named in the config or listed (`ListKeys` + `ListAliases`), and new keys
//! (`CreateKey` + `CreateAlias` named by `CKA_LABEL`). ML-DSA keys (`ML_DSA_44/65/87`) sign
//! with `ML_DSA_SHAKE_256`: messages of 1 to 4096 bytes as `RAW`, anything else (and any
//! context string) as the 64-byte μ computed here (`EXTERNAL_MU`, the same signature).
//!
//! No raw AES-GCM: KMS's symmetric keys encrypt into KMS's own ciphertext format, which
//! PKCS#11 cannot present, so such keys are not shown and `CKM_AES_GCM` is not offered.
//!
//! The client is built on the module's runtime by the first call that needs it;
//! [`AwsKms::new`] touches no network and no credential.

pub mod cloudhsm;
pub mod cluster;
pub mod errors;
pub mod keys;
pub mod sdk;

use crate::backend::remote::{
    self, rt, HashAlg, KeyAlg, KeyService, KeyVersion, NewKey, RemoteToken, ServiceInfo, SignInput,
    SignScheme,
};
use crate::backend::soft::crypto::der as sder;
use crate::config::AwsKmsConfig;
use crate::core::error::{err, Error, Result};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    EncryptionAlgorithmSpec, KeySpec, KeyUsageType, MacAlgorithmSpec, MessageType,
    SigningAlgorithmSpec,
};
use aws_sdk_kms::Client;
use cryptoki_sys::*;
use errors::During;
use parking_lot::Mutex;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The token of an AWS KMS slot or replica named `name` ([`remote::token`]).
pub fn open(name: &str, cfg: &AwsKmsConfig, gated: bool) -> RemoteToken {
    remote::token(name, AwsKms::new(name, cfg), &cfg.common, false, gated)
}

pub struct AwsKms {
    slot: String,
    target: sdk::Target,
    /// Key ids, ARNs or `alias/..` names from the config (empty: every key is listed).
    keys: Vec<String>,
    /// ARNs of keys this slot created while `keys` names others: shown with them.
    created: Mutex<Vec<String>>,
    client: Arc<Mutex<Option<Client>>>,
    info: ServiceInfo,
}

/// Keys described at once while listing.
const LIST_PARALLEL: usize = 8;

impl AwsKms {
    pub fn new(slot: &str, cfg: &AwsKmsConfig) -> std::result::Result<AwsKms, String> {
        if cfg.region.is_empty() {
            return Err("key `region` is empty".into());
        }
        let target = sdk::Target {
            region: cfg.region.clone(),
            endpoint: cfg.endpoint.clone(),
            credentials: cfg.credentials.clone(),
            deadline: Duration::from_millis(cfg.common.timeout_ms),
        };
        let info = ServiceInfo {
            manufacturer: "Amazon Web Services".into(),
            model: "AWS KMS".into(),
            serial: serial(cfg),
            location: sdk::location("kms", &target),
        };
        Ok(AwsKms {
            slot: slot.to_string(),
            target,
            keys: cfg.keys.clone(),
            created: Mutex::new(Vec::new()),
            client: Arc::new(Mutex::new(None)),
            info,
        })
    }

    /// Runs `f` with the slot's client on the runtime, within the slot's deadline.
    fn run<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send,
    {
        let cell = self.client.clone();
        let target = self.target.clone();
        let what_owned = format!("slot {}: {what}", self.slot);
        rt::call(&what_owned, self.target.deadline, async move {
            let c = cached_client(&cell, &target, Client::new).await?;
            f(c).await
        })
    }

    /// A cheap authenticated read: `DescribeKey` of the first configured key, else
    /// `ListKeys` of one key. A key that is missing or refused still proves that the
    /// service answered and took the credentials.
    fn check(&self, during: During) -> Result<()> {
        let first = self.keys.first().cloned();
        let slot = self.slot.clone();
        self.run("credentials check", move |c| async move {
            let r = match first {
                Some(k) => c
                    .describe_key()
                    .key_id(k)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        let code = errors::service_code(&e);
                        (code, errors::map("DescribeKey", e, during))
                    }),
                None => c
                    .list_keys()
                    .limit(1)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        let code = errors::service_code(&e);
                        (code, errors::map("ListKeys", e, during))
                    }),
            };
            match r {
                Ok(()) => Ok(()),
                Err((Some(code), e))
                    if matches!(
                        code.as_str(),
                        "NotFoundException" | "AccessDeniedException" | "KMSInvalidStateException"
                    ) =>
                {
                    log::debug!(
                        "slot {slot}: the service answered {code} ({e}): credentials accepted"
                    );
                    Ok(())
                }
                Err((_, e)) => Err(e),
            }
        })
    }
}

/// The slot's client of an AWS service (KMS here, CloudHSM's in `cluster.rs`), built once
/// by `new` (a race builds two, one of which is dropped).
pub(crate) async fn cached_client<C: Clone>(
    cell: &Mutex<Option<C>>,
    target: &sdk::Target,
    new: fn(&aws_config::SdkConfig) -> C,
) -> Result<C> {
    if let Some(c) = cell.lock().clone() {
        return Ok(c);
    }
    let conf = sdk::load(target).await?;
    let c = new(&conf);
    *cell.lock() = Some(c.clone());
    Ok(c)
}

/// `CK_TOKEN_INFO.serialNumber`: stable across restarts and known before any request.
/// The account and region when a configured key names its account (an ARN); else a hash
/// of what the slot points at (endpoint, region and keys).
fn serial(cfg: &AwsKmsConfig) -> String {
    use aws_lc_rs::digest;
    let region_tag = |r: &str| {
        let d = digest::digest(&digest::SHA256, r.as_bytes());
        hex::encode(&d.as_ref()[..2])
    };
    if cfg.endpoint.is_none() {
        if let Some(acct) = cfg.keys.iter().find_map(|k| keys::arn_account(k)) {
            return format!(
                "{}{}",
                acct.chars().take(12).collect::<String>(),
                region_tag(&cfg.region)
            );
        }
    }
    let mut what = format!("{}|{}", cfg.endpoint.as_deref().unwrap_or(""), cfg.region);
    for k in &cfg.keys {
        what.push('|');
        what.push_str(k);
    }
    let d = digest::digest(&digest::SHA256, what.as_bytes());
    hex::encode(&d.as_ref()[..8])
}

/// The label a configured key name gives: an alias without `alias/`, else `None` (the
/// key id is used).
fn alias_label(name: &str) -> Option<String> {
    let tail = name.rsplit(':').next().unwrap_or(name);
    tail.strip_prefix("alias/").map(str::to_string)
}

/// One key to look at while listing: the name to describe it by and, when known, its
/// label.
struct Entry {
    name: String,
    label: Option<String>,
}

/// Describes one key and fetches its public key. `Ok(None)`: the key is not shown (why is
/// logged).
async fn describe(c: Client, slot: String, e: Entry) -> Result<Option<KeyVersion>> {
    let out = match c.describe_key().key_id(&e.name).send().await {
        Ok(o) => o,
        Err(err) => {
            let code = errors::service_code(&err);
            let mapped = errors::map(&format!("DescribeKey {}", e.name), err, During::Call);
            return match code.as_deref() {
                Some("NotFoundException") | Some("AccessDeniedException") => {
                    log::warn!("slot {slot}: key {} is not shown ({mapped})", e.name);
                    Ok(None)
                }
                _ => Err(mapped),
            };
        }
    };
    let m = out.key_metadata().ok_or_else(|| {
        Error::logged(
            CKR_DEVICE_ERROR,
            format!("DescribeKey {}: no KeyMetadata", e.name),
        )
    })?;
    let (alg, usage) = match keys::kind(m) {
        Ok(k) => k,
        Err(keys::Skip::State(s)) => {
            log::info!("slot {slot}: key {} is {s}: not shown", e.name);
            return Ok(None);
        }
        Err(keys::Skip::Unsupported(why)) => {
            log::debug!("slot {slot}: key {} is not shown: {why}", e.name);
            return Ok(None);
        }
    };
    // Requests name the key by its id; a key named by ARN (maybe another account's) by
    // its ARN.
    let locator = if e.name.starts_with("arn:") && !e.name.contains(":alias/") {
        e.name.clone()
    } else {
        m.key_id().to_string()
    };
    let spki = if alg.is_asymmetric() {
        let p = c
            .get_public_key()
            .key_id(&locator)
            .send()
            .await
            .map_err(|err| errors::map(&format!("GetPublicKey {}", e.name), err, During::Call))?;
        Some(
            p.public_key()
                .ok_or_else(|| {
                    Error::logged(
                        CKR_DEVICE_ERROR,
                        format!("GetPublicKey {}: no PublicKey", e.name),
                    )
                })?
                .as_ref()
                .to_vec(),
        )
    } else {
        None
    };
    let label = e.label.unwrap_or_else(|| m.key_id().to_string());
    keys::version(m, label, locator, alg, usage, spki).map(Some)
}

/// Every key of the account and region, labelled by its first alias.
async fn every_key(c: &Client) -> Result<Vec<Entry>> {
    let mut ids = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = c
            .list_keys()
            .limit(1000)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| errors::map("ListKeys", e, During::Call))?;
        ids.extend(
            out.keys()
                .iter()
                .filter_map(|k| k.key_id().map(str::to_string)),
        );
        match (out.truncated(), out.next_marker()) {
            (true, Some(m)) => marker = Some(m.to_string()),
            _ => break,
        }
    }
    let mut aliases: std::collections::BTreeMap<String, String> = Default::default();
    let mut marker: Option<String> = None;
    loop {
        let out = c
            .list_aliases()
            .limit(100)
            .set_marker(marker.take())
            .send()
            .await
            .map_err(|e| errors::map("ListAliases", e, During::Call))?;
        for a in out.aliases() {
            let (Some(name), Some(target)) = (a.alias_name(), a.target_key_id()) else {
                continue;
            };
            // AWS-managed aliases (alias/aws/...) name service keys, never PKCS#11 keys.
            let Some(label) = name
                .strip_prefix("alias/")
                .filter(|l| !l.starts_with("aws/"))
            else {
                continue;
            };
            let e = aliases
                .entry(target.to_string())
                .or_insert_with(|| label.to_string());
            if label < e.as_str() {
                *e = label.to_string();
            }
        }
        match (out.truncated(), out.next_marker()) {
            (true, Some(m)) => marker = Some(m.to_string()),
            _ => break,
        }
    }
    Ok(ids
        .into_iter()
        .map(|id| Entry {
            label: aliases.get(&id).cloned(),
            name: id,
        })
        .collect())
}

async fn list(c: Client, slot: String, named: Vec<String>) -> Result<Vec<KeyVersion>> {
    let entries = if named.is_empty() {
        every_key(&c).await?
    } else {
        named
            .into_iter()
            .map(|n| Entry {
                label: alias_label(&n),
                name: n,
            })
            .collect()
    };
    let mut found: Vec<KeyVersion> = Vec::new();
    let mut entries = entries.into_iter().peekable();
    while entries.peek().is_some() {
        let mut set = tokio::task::JoinSet::new();
        for (i, e) in entries.by_ref().take(LIST_PARALLEL).enumerate() {
            let (c, slot) = (c.clone(), slot.clone());
            set.spawn(async move { (i, describe(c, slot, e).await) });
        }
        let mut batch = Vec::new();
        while let Some(r) = set.join_next().await {
            let (i, v) =
                r.map_err(|e| Error::general(format!("listing keys: task failed: {e}")))?;
            batch.push((i, v?));
        }
        batch.sort_by_key(|(i, _)| *i);
        for (_, v) in batch {
            if let Some(v) = v {
                if !found.iter().any(|f| f.id == v.id) {
                    found.push(v);
                }
            }
        }
    }
    Ok(found)
}

/// The largest message KMS signs as `MessageType = RAW`.
const RAW_MAX: usize = 4096;

/// What an ML-DSA signature sends: the message itself as `RAW` when KMS takes it (1 to
/// 4096 bytes, no context string: KMS's RAW is pure ML-DSA with an empty context), else
/// μ as `EXTERNAL_MU` (FIPS 204's message representative, computed from the key's public
/// key, the context and the message; KMS signs it into the same signature).
fn ml_dsa_request(
    key: &KeyVersion,
    message: &[u8],
    context: &[u8],
) -> Result<(Vec<u8>, MessageType)> {
    if context.is_empty() && (1..=RAW_MAX).contains(&message.len()) {
        return Ok((message.to_vec(), MessageType::Raw));
    }
    let spki = key
        .public_spki
        .as_ref()
        .ok_or_else(|| Error::logged(CKR_DEVICE_ERROR, format!("{}: no public key", key.id)))?;
    let public_key = remote::pqc::raw_public_key(spki)?;
    let mu = remote::pqc::ml_dsa_mu(&public_key, context, message)?;
    Ok((mu.to_vec(), MessageType::ExternalMu))
}

/// A digest and the scheme it is signed with. `CKM_RSA_PKCS` hands over a DigestInfo
/// (the service signs digests, not arbitrary blocks): its hash picks the algorithm.
fn digest_and_scheme<'a>(
    key: &KeyVersion,
    scheme: SignScheme,
    d: &'a [u8],
) -> Result<(SignScheme, &'a [u8])> {
    let (scheme, digest) = match scheme {
        SignScheme::Pkcs1(h) if d.len() != h.len() => {
            let (m, inner) = sder::split_digest_info(d).ok_or_else(|| {
                Error::logged(
                    CKR_DATA_INVALID,
                    format!(
                        "{}: CKM_RSA_PKCS signs a DigestInfo here (AWS KMS signs digests only)",
                        key.id
                    ),
                )
            })?;
            let h = HashAlg::from_ckm(m).ok_or_else(|| err(CKR_DATA_INVALID))?;
            (SignScheme::Pkcs1(h), inner)
        }
        s => (s, d),
    };
    let hash = match scheme {
        SignScheme::Ecdsa(h) | SignScheme::Pkcs1(h) | SignScheme::Pss(h, _) => h,
        _ => return Err(err(CKR_MECHANISM_INVALID)),
    };
    if digest.len() != hash.len() {
        return Err(err(CKR_DATA_LEN_RANGE));
    }
    if !key.usage.sign_schemes.is_empty() && !key.usage.sign_schemes.contains(&scheme) {
        return Err(Error::logged(
            CKR_MECHANISM_INVALID,
            format!(
                "{}: the key signs with {:?} only, not {scheme:?}",
                key.id, key.usage.sign_schemes
            ),
        ));
    }
    Ok((scheme, digest))
}

impl AwsKms {
    /// `Sign` of `message` (a digest, a message or μ, as `kind` says): the signature's
    /// bytes as KMS gives them.
    fn kms_sign(
        &self,
        key: &KeyVersion,
        message: Vec<u8>,
        kind: MessageType,
        alg: &'static str,
    ) -> Result<Vec<u8>> {
        let (locator, id) = (key.locator.clone(), key.id.clone());
        let message = Blob::new(message);
        self.run("Sign", move |c| async move {
            let out = c
                .sign()
                .key_id(locator)
                .message(message)
                .message_type(kind)
                .signing_algorithm(SigningAlgorithmSpec::from(alg))
                .send()
                .await
                .map_err(|e| errors::map(&format!("Sign {id}"), e, During::Call))?;
            let sig = out.signature().ok_or_else(|| {
                Error::logged(CKR_DEVICE_ERROR, format!("Sign {id}: no Signature"))
            })?;
            Ok(sig.as_ref().to_vec())
        })
    }
}

impl KeyService for AwsKms {
    fn info(&self) -> ServiceInfo {
        self.info.clone()
    }

    fn login(&self) -> Result<()> {
        self.check(During::Login)
    }

    fn probe(&self) -> Result<()> {
        self.check(During::Call)
    }

    fn list_keys(&self) -> Result<Vec<KeyVersion>> {
        let mut named = self.keys.clone();
        if !named.is_empty() {
            named.extend(self.created.lock().iter().cloned());
        }
        let slot = self.slot.clone();
        self.run("listing keys", move |c| list(c, slot, named))
    }

    fn sign(&self, key: &KeyVersion, scheme: SignScheme, input: SignInput<'_>) -> Result<Vec<u8>> {
        let locator = key.locator.clone();
        let id = key.id.clone();
        match (scheme, input) {
            (SignScheme::Hmac(h), SignInput::Message(m)) => {
                let alg = keys::mac_algorithm(h).ok_or_else(|| err(CKR_MECHANISM_INVALID))?;
                let msg = Blob::new(m.to_vec());
                self.run("GenerateMac", move |c| async move {
                    let out = c
                        .generate_mac()
                        .key_id(locator)
                        .message(msg)
                        .mac_algorithm(MacAlgorithmSpec::from(alg))
                        .send()
                        .await
                        .map_err(|e| errors::map(&format!("GenerateMac {id}"), e, During::Call))?;
                    let mac = out.mac().ok_or_else(|| {
                        Error::logged(CKR_DEVICE_ERROR, format!("GenerateMac {id}: no Mac"))
                    })?;
                    Ok(mac.as_ref().to_vec())
                })
            }
            (s, SignInput::Digest(d)) => {
                let (scheme, digest) = digest_and_scheme(key, s, d)?;
                let alg =
                    keys::signing_algorithm(scheme).ok_or_else(|| err(CKR_MECHANISM_INVALID))?;
                let sig = self.kms_sign(key, digest.to_vec(), MessageType::Digest, alg)?;
                match key.alg {
                    // KMS answers ECDSA as DER; PKCS#11 wants r || s.
                    KeyAlg::Ec { curve } => {
                        crate::backend::remote::public::ecdsa_der_to_raw(&sig, curve)
                    }
                    _ => Ok(sig),
                }
            }
            (SignScheme::MlDsa, SignInput::Pure { message, context }) => {
                let (msg, kind) = ml_dsa_request(key, message, context)?;
                self.kms_sign(key, msg, kind, "ML_DSA_SHAKE_256")
            }
            _ => Err(err(CKR_MECHANISM_INVALID)),
        }
    }

    fn mac_verify(&self, key: &KeyVersion, hash: HashAlg, data: &[u8], tag: &[u8]) -> Result<bool> {
        let alg = keys::mac_algorithm(hash).ok_or_else(|| err(CKR_MECHANISM_INVALID))?;
        let (locator, id) = (key.locator.clone(), key.id.clone());
        let (msg, mac) = (Blob::new(data.to_vec()), Blob::new(tag.to_vec()));
        self.run("VerifyMac", move |c| async move {
            match c
                .verify_mac()
                .key_id(locator)
                .message(msg)
                .mac(mac)
                .mac_algorithm(MacAlgorithmSpec::from(alg))
                .send()
                .await
            {
                Ok(out) => Ok(out.mac_valid()),
                // A wrong MAC is an error answer in KMS, not MacValid = false.
                Err(e) if errors::service_code(&e).as_deref() == Some("KMSInvalidMacException") => {
                    Ok(false)
                }
                Err(e) => Err(errors::map(&format!("VerifyMac {id}"), e, During::Call)),
            }
        })
    }

    fn rsa_decrypt(&self, key: &KeyVersion, hash: HashAlg, ciphertext: &[u8]) -> Result<Vec<u8>> {
        let alg = keys::oaep_algorithm(hash).ok_or_else(|| err(CKR_MECHANISM_PARAM_INVALID))?;
        let (locator, id) = (key.locator.clone(), key.id.clone());
        let ct = Blob::new(ciphertext.to_vec());
        self.run("Decrypt", move |c| async move {
            let out = c
                .decrypt()
                .key_id(locator)
                .ciphertext_blob(ct)
                .encryption_algorithm(EncryptionAlgorithmSpec::from(alg))
                .send()
                .await
                .map_err(|e| errors::map(&format!("Decrypt {id}"), e, During::Call))?;
            let pt = out.plaintext().ok_or_else(|| {
                Error::logged(CKR_DEVICE_ERROR, format!("Decrypt {id}: no Plaintext"))
            })?;
            Ok(pt.as_ref().to_vec())
        })
    }

    fn generate(&self, key: &NewKey) -> Result<()> {
        let (spec, usage) = keys::create_spec(key.alg, key.decrypt)?;
        let alias = format!("alias/{}", key.label);
        let label = key.label.clone();
        let slot = self.slot.clone();
        let arn = self.run("CreateKey", move |c| async move {
            // AWS keys have no versions: a taken name is refused rather than moved.
            match c.describe_key().key_id(&alias).send().await {
                Ok(_) => {
                    return Err(Error::logged(
                        CKR_ATTRIBUTE_VALUE_INVALID,
                        format!("slot {slot}: {alias} exists; AWS KMS keys have no versions, choose another CKA_LABEL"),
                    ))
                }
                Err(e) if errors::service_code(&e).as_deref() == Some("NotFoundException") => {}
                Err(e) => return Err(errors::map(&format!("DescribeKey {alias}"), e, During::Call)),
            }
            let made = c
                .create_key()
                .key_spec(KeySpec::from(spec))
                .key_usage(KeyUsageType::from(usage))
                .description(format!("hsmux: {label}"))
                .customize()
                .config_override(aws_sdk_kms::config::Builder::default().retry_config(sdk::no_retry()))
                .send()
                .await
                .map_err(|e| errors::map("CreateKey", e, During::Call))?;
            let m = made
                .key_metadata()
                .ok_or_else(|| Error::logged(CKR_DEVICE_ERROR, "CreateKey: no KeyMetadata"))?;
            let key_id = m.key_id().to_string();
            let arn = m.arn().unwrap_or(&key_id).to_string();
            let aliased = c
                .create_alias()
                .alias_name(&alias)
                .target_key_id(&key_id)
                .customize()
                .config_override(aws_sdk_kms::config::Builder::default().retry_config(sdk::no_retry()))
                .send()
                .await;
            if let Err(e) = aliased {
                let e = errors::map(&format!("CreateAlias {alias}"), e, During::Call);
                // A key nobody can name is scheduled for deletion (the shortest window).
                let undo = c.schedule_key_deletion().key_id(&key_id).pending_window_in_days(7).send().await;
                log::warn!(
                    "slot {slot}: key {key_id} was made but could not be named {alias}; deletion scheduled: {}",
                    if undo.is_ok() { "yes" } else { "NO (delete it by hand)" }
                );
                return Err(e);
            }
            log::info!("slot {slot}: created {spec} key {arn} as {alias}");
            Ok(arn)
        })?;
        if !self.keys.is_empty() {
            self.created.lock().push(arn);
        }
        Ok(())
    }

    fn can_generate(&self) -> bool {
        // Whether the credentials may create keys shows at the first try
        // (AccessDeniedException: CKR_KEY_FUNCTION_NOT_PERMITTED).
        true
    }

    fn mechanisms(&self) -> Vec<CK_MECHANISM_TYPE> {
        // What KMS's signing, encryption and MAC algorithms cover: no raw AES-GCM, no
        // EdDSA, no SHA-1/SHA-224 signatures, no HMAC-SHA1.
        vec![
            CKM_ECDSA,
            CKM_ECDSA_SHA256,
            CKM_ECDSA_SHA384,
            CKM_RSA_PKCS,
            CKM_SHA256_RSA_PKCS,
            CKM_SHA384_RSA_PKCS,
            CKM_SHA512_RSA_PKCS,
            CKM_RSA_PKCS_PSS,
            CKM_SHA256_RSA_PKCS_PSS,
            CKM_SHA384_RSA_PKCS_PSS,
            CKM_SHA512_RSA_PKCS_PSS,
            CKM_RSA_PKCS_OAEP,
            CKM_SHA224_HMAC,
            CKM_SHA256_HMAC,
            CKM_SHA384_HMAC,
            CKM_SHA512_HMAC,
            CKM_GENERIC_SECRET_KEY_GEN,
            CKM_EC_KEY_PAIR_GEN,
            CKM_RSA_PKCS_KEY_PAIR_GEN,
        ]
    }

    fn pqc_mechanisms(&self) -> Vec<CK_MECHANISM_TYPE> {
        // ML-DSA only: no SLH-DSA, no ML-KEM in AWS KMS.
        vec![CKM_ML_DSA, CKM_ML_DSA_KEY_PAIR_GEN]
    }

    fn sign_context(&self) -> bool {
        // Through EXTERNAL_MU: μ binds the context string.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_aliases() {
        assert_eq!(
            alias_label("alias/app-signing").as_deref(),
            Some("app-signing")
        );
        assert_eq!(
            alias_label("arn:aws:kms:us-east-1:111122223333:alias/x").as_deref(),
            Some("x")
        );
        assert_eq!(alias_label("1234abcd-12ab-34cd-56ef-1234567890ab"), None);
    }
}
