//! Key Vault's errors as PKCS#11 codes: the SDK's answer errors carry the status and the
//! body `{"error": {"code", "message", "innererror"}}`, whose code and message go into the
//! log line; the transport's and the credential's errors are hsmux's own (already logged)
//! and come back out unchanged.

use crate::backend::remote::http::{self, Reply};
use crate::core::error::{Error, Result};
use azure_core::error::ErrorKind;
use cryptoki_sys::*;

pub use crate::backend::remote::http::Call;

/// hsmux's error for a failed SDK call `what` of kind `call`.
pub fn from_sdk(what: &str, call: Call, e: azure_core::Error) -> Error {
    // The transport's or the credential's own error, perhaps under SDK context.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(ours) = c.downcast_ref::<Error>() {
            return ours.clone();
        }
        cause = c.source();
    }
    match e.kind() {
        ErrorKind::HttpResponse {
            status,
            raw_response: Some(raw),
            ..
        } => failed(what, call, &Reply::new(u16::from(*status), raw.body())),
        ErrorKind::HttpResponse { status, .. } => Error::logged(
            http::status_rv(u16::from(*status)),
            format!("{what}: HTTP {}", u16::from(*status)),
        ),
        // An answer that is not the JSON the API defines (bad JSON, bad base64url).
        ErrorKind::DataConversion | ErrorKind::Io => http::malformed(what, &e),
        _ => Error::logged(CKR_DEVICE_ERROR, format!("{what}: {e}")),
    }
}

/// hsmux's error for the unsuccessful answer `reply` to the call `what` of kind `call`.
pub fn failed(what: &str, call: Call, reply: &Reply) -> Error {
    Error::logged(
        rv_of(reply, call),
        format!("{what}: HTTP {}: {}", reply.status, describe(reply)),
    )
}

/// The SDK call's result with hsmux's error.
pub fn sdk<T>(what: &str, call: Call, r: azure_core::Result<T>) -> Result<T> {
    r.map_err(|e| from_sdk(what, call, e))
}

/// Key Vault's error body.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    error: ErrorInner,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ErrorInner {
    code: String,
    message: String,
    innererror: Option<Box<ErrorInner>>,
}

/// `code[/inner code]: message` of an error answer (its body's start if it is not Key
/// Vault's JSON).
pub fn describe(reply: &Reply) -> String {
    match serde_json::from_slice::<ErrorBody>(&reply.body) {
        Ok(b) if !b.error.code.is_empty() => {
            let inner = b
                .error
                .innererror
                .map(|i| format!("/{}", i.code))
                .unwrap_or_default();
            let m: String = b
                .error
                .message
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            format!(
                "{}{inner}: {}",
                b.error.code,
                m.chars().take(300).collect::<String>()
            )
        }
        _ => http::error_message(&reply.body),
    }
}

/// The PKCS#11 code of a failed answer.
pub fn rv_of(reply: &Reply, call: Call) -> CK_RV {
    let code = serde_json::from_slice::<ErrorBody>(&reply.body)
        .map(|b| b.error.code)
        .unwrap_or_default();
    match (reply.status, code.as_str()) {
        (401, _) => CKR_USER_NOT_LOGGED_IN,
        (403, _) => CKR_KEY_FUNCTION_NOT_PERMITTED,
        (404, _) => CKR_KEY_HANDLE_INVALID,
        (400, _) if call == Call::Decrypt => CKR_ENCRYPTED_DATA_INVALID,
        (400, _) if call == Call::Crypto => CKR_DATA_INVALID,
        (429, _) | (500..=599, _) => CKR_DEVICE_ERROR,
        _ => CKR_FUNCTION_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply::new(status, body.as_bytes())
    }

    #[test]
    fn key_vault_errors_map_to_pkcs11_codes() {
        let r = reply(
            403,
            r#"{"error":{"code":"Forbidden","message":"Operation decrypt is not allowed on a disabled key.","innererror":{"code":"KeyDisabled"}}}"#,
        );
        assert_eq!(rv_of(&r, Call::Crypto), CKR_KEY_FUNCTION_NOT_PERMITTED);
        assert_eq!(
            describe(&r),
            "Forbidden/KeyDisabled: Operation decrypt is not allowed on a disabled key."
        );
        let r = reply(400, r#"{"error":{"code":"BadParameter","message":"x"}}"#);
        assert_eq!(rv_of(&r, Call::Decrypt), CKR_ENCRYPTED_DATA_INVALID);
        assert_eq!(rv_of(&r, Call::Crypto), CKR_DATA_INVALID);
        assert_eq!(rv_of(&r, Call::Read), CKR_FUNCTION_FAILED);
        let r = reply(404, r#"{"error":{"code":"KeyNotFound","message":"no"}}"#);
        assert_eq!(rv_of(&r, Call::Crypto), CKR_KEY_HANDLE_INVALID);
        assert_eq!(rv_of(&reply(503, "<html>"), Call::Read), CKR_DEVICE_ERROR);
        assert_eq!(describe(&reply(503, "<html>")), "<html>");
        assert_eq!(rv_of(&reply(429, ""), Call::Crypto), CKR_DEVICE_ERROR);
    }

    #[test]
    fn sdk_errors_keep_the_answer_and_hsmux_own_codes() {
        use azure_core::http::{headers::Headers, RawResponse, StatusCode};
        let answer = |status: u16, body: &'static str| {
            azure_core::Error::with_message(
                ErrorKind::HttpResponse {
                    status: StatusCode::from(status),
                    error_code: None,
                    raw_response: Some(Box::new(RawResponse::from_bytes(
                        StatusCode::from(status),
                        Headers::new(),
                        body,
                    ))),
                },
                "x",
            )
        };
        let bad = r#"{"error":{"code":"BadParameter","message":"bad tag"}}"#;
        assert_eq!(
            from_sdk("t", Call::Decrypt, answer(400, bad)).rv(),
            CKR_ENCRYPTED_DATA_INVALID
        );
        assert_eq!(
            from_sdk("t", Call::Read, answer(404, "{}")).rv(),
            CKR_KEY_HANDLE_INVALID
        );
        // The transport's or the credential's error comes back out, under SDK context too.
        let ours = azure_core::Error::new(ErrorKind::Io, Error::new(CKR_USER_NOT_LOGGED_IN));
        assert_eq!(
            from_sdk("t", Call::Read, ours.with_context("policy")).rv(),
            CKR_USER_NOT_LOGGED_IN
        );
        let conversion = azure_core::Error::with_message(ErrorKind::DataConversion, "base64");
        assert_eq!(
            from_sdk("t", Call::Crypto, conversion).rv(),
            CKR_DEVICE_ERROR
        );
    }
}
