//! What a backend hands the core for a cryptographic operation in progress.
//!
//! The core owns the PKCS#11 rules around them (one operation of each kind per session,
//! `CKR_OPERATION_ACTIVE`, the NULL-output length query, `CKR_BUFFER_TOO_SMALL` that keeps
//! the operation alive, an error that ends it); these traits only compute.

use crate::core::error::Result;

/// An encryption or decryption in progress.
pub trait Cipher: Send {
    /// Output length of a single-part call on `input_len` bytes; may be an upper bound.
    fn output_len(&self, input_len: usize) -> usize;
    /// Single-part operation (`C_Encrypt` / `C_Decrypt`).
    fn oneshot(&mut self, input: &[u8]) -> Result<Vec<u8>>;
    /// Output length of an update on `input_len` bytes; may be an upper bound.
    fn update_len(&self, input_len: usize) -> usize;
    fn update(&mut self, input: &[u8]) -> Result<Vec<u8>>;
    /// Output length of the final call; may be an upper bound.
    fn final_len(&self) -> usize;
    fn finish(&mut self) -> Result<Vec<u8>>;
    /// The IV the token chose, once the operation has ended: an AES-GCM encryption by a
    /// service that generates IVs writes it back into the consumer's `pIv` (PKCS#11 3.0
    /// §2.12.3; what OpenBao's seal reads after `C_Encrypt`).
    fn produced_iv(&self) -> Option<Vec<u8>> {
        None
    }
}

/// A signature, MAC or digest in progress.
pub trait Signer: Send {
    /// Length of the signature, MAC or digest.
    fn output_len(&self) -> usize;
    fn update(&mut self, data: &[u8]) -> Result<()>;
    fn finish(&mut self) -> Result<Vec<u8>>;
    /// Single-part operation; the default feeds `update` then `finish`.
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.update(data)?;
        self.finish()
    }
}

/// A verification in progress. A mismatch is `CKR_SIGNATURE_INVALID`, a signature of the
/// wrong length `CKR_SIGNATURE_LEN_RANGE`.
pub trait Verifier: Send {
    fn update(&mut self, data: &[u8]) -> Result<()>;
    fn finish(&mut self, signature: &[u8]) -> Result<()>;
    fn oneshot(&mut self, data: &[u8], signature: &[u8]) -> Result<()> {
        self.update(data)?;
        self.finish(signature)
    }
}
