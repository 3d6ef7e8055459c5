//! The AWS SDK configuration shared by the KMS and CloudHSM backends: region, endpoint
//! override, credentials (explicit keys from the config, a named profile, or the SDK's
//! default chain), per-attempt timeouts and the retry policy.
//!
//! Nothing here runs at `C_Initialize`: [`load`] is awaited on the module's runtime by the
//! first call that needs a client, and the result is kept for the life of the slot.

use crate::config::{AwsCredentials, Secret};
use crate::core::error::{Error, Result};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use cryptoki_sys::*;
use std::time::Duration;

/// Attempts per request (the first and two retries) and the first back-off.
pub const ATTEMPTS: u32 = 3;
pub const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// What a client needs to be built.
#[derive(Clone, Debug)]
pub struct Target {
    pub region: String,
    pub endpoint: Option<String>,
    pub credentials: AwsCredentials,
    /// The deadline of one PKCS#11 call (all attempts of its requests together).
    pub deadline: Duration,
}

fn secret_string(s: &Secret, what: &str) -> Result<String> {
    let v = s
        .resolve()
        .map_err(|e| Error::logged(CKR_DEVICE_ERROR, format!("{what}: {e}")))?;
    // The copy moves into the SDK's credentials, which zeroize it on drop; `v` is
    // zeroized here.
    String::from_utf8(v.to_vec())
        .map_err(|_| Error::logged(CKR_DEVICE_ERROR, format!("{what} is not UTF-8")))
}

/// The SDK configuration of `t` (reads a profile file when one is named; no request).
pub async fn load(t: &Target) -> Result<SdkConfig> {
    let attempt = t.deadline / 2;
    let timeouts = TimeoutConfig::builder()
        // One attempt may use half the deadline, so that a retry after a lost answer
        // still fits; the whole operation ends at the deadline (rt::call ends it too).
        .operation_attempt_timeout(attempt.max(Duration::from_millis(100)))
        .operation_timeout(t.deadline)
        .connect_timeout(t.deadline.min(Duration::from_secs(3)))
        .build();
    // Standard mode: retries throttling, 5xx and transport failures with jittered
    // exponential back-off. Every KMS operation hsmux sends more than once is a read or an
    // idempotent cryptographic operation; the key-creating calls turn retries off for
    // themselves (`no_retry`).
    let retry = RetryConfig::standard()
        .with_max_attempts(ATTEMPTS)
        .with_initial_backoff(FIRST_BACKOFF)
        .with_max_backoff(Duration::from_secs(1));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(t.region.clone()))
        .timeout_config(timeouts)
        .retry_config(retry);
    if let Some(e) = &t.endpoint {
        loader = loader.endpoint_url(e.clone());
    }
    let c = &t.credentials;
    if let (Some(id), Some(key)) = (&c.access_key_id, &c.secret_access_key) {
        let token = c
            .session_token
            .as_ref()
            .map(|s| secret_string(s, "session_token"))
            .transpose()?;
        loader = loader.credentials_provider(aws_sdk_kms::config::Credentials::new(
            secret_string(id, "access_key_id")?,
            secret_string(key, "secret_access_key")?,
            token,
            None,
            "hsmux-config",
        ));
    } else if let Some(p) = &c.profile {
        loader = loader.profile_name(p.clone());
    }
    Ok(loader.load().await)
}

/// Retries off for one request (a call that creates something must not run twice).
pub fn no_retry() -> RetryConfig {
    RetryConfig::disabled()
}

/// Where a client points, for logs and `hsmux check`.
pub fn location(service: &str, t: &Target) -> String {
    match &t.endpoint {
        Some(e) => format!("{e} (region {})", t.region),
        None => format!("https://{service}.{}.amazonaws.com", t.region),
    }
}
