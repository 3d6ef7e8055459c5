//! The largest lengths hsmux accepts from a caller, shared by the C ABI checks
//! (`ffi/bounds.rs`) and the layers that read mechanism parameters themselves.

/// Largest data buffer hsmux reads or writes in one call: `i32::MAX` bytes, the most the
/// crypto library under the soft token takes in one call (OpenSSL/aws-lc EVP lengths are
/// `int`) and far more than any HSM or key service accepts in one request.
pub const MAX_DATA_LEN: usize = i32::MAX as usize;

/// Largest mechanism parameter (or buffer inside one: IV, AAD, OAEP label, KDF data)
/// hsmux reads: 1 MiB.
pub const MAX_PARAM_LEN: usize = 1 << 20;

/// Most attributes in one template: 4096, many times the number of attribute types an
/// object can have.
pub const MAX_TEMPLATE_ATTRS: usize = 4096;
