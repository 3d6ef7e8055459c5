//! AWS SDK failures as PKCS#11 return values, with the service's own code and message in
//! the log (never a credential: the SDK's errors do not carry them).
//!
//! The mapping follows the KMS API reference's error lists: a key that does not exist or
//! is not usable in its state is a key handle that is no longer valid; a refusal by the
//! key policy or IAM is a key function that is not permitted; refused credentials are a
//! wrong PIN at `C_Login` and "not logged in" afterwards; throttling, 5xx, transport
//! failures and timeouts are device errors (so that a replica group fails over); an answer
//! that does not parse is a device error too.

use crate::core::error::Error;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use cryptoki_sys::*;

/// Where the failed request was sent from: `C_Login` maps refused credentials to
/// `CKR_PIN_INCORRECT`, every other call to `CKR_USER_NOT_LOGGED_IN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum During {
    Login,
    Call,
}

/// Error codes of refused credentials (the request's signature or key id).
const CREDENTIALS: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "IncompleteSignatureException",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "ExpiredToken",
    "SignatureDoesNotMatch",
];

/// The PKCS#11 code of a service error `code` with HTTP `status`.
pub fn code_rv(code: &str, status: u16, during: During) -> CK_RV {
    if CREDENTIALS.contains(&code) {
        return match during {
            During::Login => CKR_PIN_INCORRECT,
            During::Call => CKR_USER_NOT_LOGGED_IN,
        };
    }
    match code {
        "NotFoundException" | "DisabledException" | "KMSInvalidStateException" => {
            CKR_KEY_HANDLE_INVALID
        }
        "AccessDeniedException" | "InvalidKeyUsageException" | "InvalidGrantTokenException" => {
            CKR_KEY_FUNCTION_NOT_PERMITTED
        }
        "InvalidCiphertextException" | "IncorrectKeyException" => CKR_ENCRYPTED_DATA_INVALID,
        "KMSInvalidSignatureException" | "KMSInvalidMacException" => CKR_SIGNATURE_INVALID,
        "AlreadyExistsException" => CKR_ATTRIBUTE_VALUE_INVALID,
        // Transient on the service's side: worth failing over.
        "ThrottlingException"
        | "ThrottlingError"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "KMSInternalException"
        | "KeyUnavailableException"
        | "DependencyTimeoutException"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "InternalFailure" => CKR_DEVICE_ERROR,
        _ if status == 429 || status >= 500 => CKR_DEVICE_ERROR,
        // ValidationException, LimitExceededException, CustomKeyStore*, DryRun...: the
        // request was understood and refused.
        _ => CKR_FUNCTION_FAILED,
    }
}

/// The error code of a service error, when the failure was one (`None` otherwise).
pub fn service_code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<String> {
    match e {
        SdkError::ServiceError(se) => se.err().code().map(str::to_string),
        _ => None,
    }
}

/// Any SDK failure of the request `what` as an [`Error`], logged.
pub fn map<E>(
    what: &str,
    e: SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
    during: During,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let message = se.err().message().unwrap_or("");
            if code.is_empty() && (200..300).contains(&status) {
                // A success status whose body did not parse.
                return Error::logged(
                    CKR_DEVICE_ERROR,
                    format!("{what}: malformed answer (HTTP {status}): {}", chain(&e)),
                );
            }
            let rv = code_rv(code, status, during);
            let shown = if code.is_empty() {
                chain(&e).to_string()
            } else {
                format!("{code}: {}", clip(message))
            };
            Error::logged(rv, format!("{what}: HTTP {status}: {shown}"))
        }
        SdkError::TimeoutError(_) => Error::logged(CKR_DEVICE_ERROR, format!("{what}: timed out")),
        SdkError::DispatchFailure(d) => {
            // Includes credentials that could not be found or loaded (the default chain
            // with nothing configured): the service was not reached either way.
            let kind = if d.is_timeout() {
                "timed out"
            } else if d.is_io() {
                "transport failure"
            } else {
                "not sent"
            };
            Error::logged(CKR_DEVICE_ERROR, format!("{what}: {kind}: {}", chain(&e)))
        }
        SdkError::ResponseError(_) => Error::logged(
            CKR_DEVICE_ERROR,
            format!("{what}: malformed answer: {}", chain(&e)),
        ),
        _ => Error::logged(
            CKR_DEVICE_ERROR,
            format!("{what}: request not made: {}", chain(&e)),
        ),
    }
}

/// An error and its causes, by their `Display` texts only: the SDK's `Debug` (and its
/// `DisplayErrorContext`, which appends it) prints the raw response, body included, and a
/// body can hold a plaintext.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    clip(&crate::backend::remote::http::describe(e)).to_string()
}

/// Longest service message copied into a log line.
const MESSAGE_MAX: usize = 300;

fn clip(m: &str) -> &str {
    let mut end = m.len().min(MESSAGE_MAX);
    while !m.is_char_boundary(end) {
        end -= 1;
    }
    &m[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_codes_map_as_documented() {
        let cases = [
            (
                "NotFoundException",
                400,
                During::Call,
                CKR_KEY_HANDLE_INVALID,
            ),
            (
                "KMSInvalidStateException",
                400,
                During::Call,
                CKR_KEY_HANDLE_INVALID,
            ),
            (
                "DisabledException",
                400,
                During::Call,
                CKR_KEY_HANDLE_INVALID,
            ),
            (
                "AccessDeniedException",
                400,
                During::Call,
                CKR_KEY_FUNCTION_NOT_PERMITTED,
            ),
            (
                "InvalidCiphertextException",
                400,
                During::Call,
                CKR_ENCRYPTED_DATA_INVALID,
            ),
            ("ThrottlingException", 400, During::Call, CKR_DEVICE_ERROR),
            ("KMSInternalException", 500, During::Call, CKR_DEVICE_ERROR),
            ("Whatever", 503, During::Call, CKR_DEVICE_ERROR),
            (
                "ValidationException",
                400,
                During::Call,
                CKR_FUNCTION_FAILED,
            ),
            (
                "UnrecognizedClientException",
                400,
                During::Login,
                CKR_PIN_INCORRECT,
            ),
            (
                "UnrecognizedClientException",
                400,
                During::Call,
                CKR_USER_NOT_LOGGED_IN,
            ),
        ];
        for (code, status, during, rv) in cases {
            assert_eq!(
                code_rv(code, status, during),
                rv,
                "{code} {status} {during:?}"
            );
        }
    }
}
