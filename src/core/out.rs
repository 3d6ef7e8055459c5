//! The caller's output buffer: PKCS#11's "NULL means tell me the length" convention.

use crate::core::error::{err, Result};
use cryptoki_sys::*;

/// Where an output goes. `buf` is `None` when the consumer passed a NULL pointer (a length
/// query); `written` is what the FFI layer stores in `*pulLen` afterwards, whether the call
/// succeeded or answered `CKR_BUFFER_TOO_SMALL`.
pub struct OutBuf<'a> {
    pub buf: Option<&'a mut [u8]>,
    pub written: usize,
}

impl<'a> OutBuf<'a> {
    pub fn new(buf: Option<&'a mut [u8]>) -> Self {
        OutBuf { buf, written: 0 }
    }

    pub fn is_query(&self) -> bool {
        self.buf.is_none()
    }

    /// True when `n` bytes fit.
    pub fn fits(&self, n: usize) -> bool {
        self.buf.as_ref().is_some_and(|b| b.len() >= n)
    }

    /// The caller's buffer to write into directly (empty for a length query); the writer
    /// then [`report`](Self::report)s how much it wrote.
    pub fn space(&mut self) -> &mut [u8] {
        self.buf.as_deref_mut().unwrap_or_default()
    }

    /// Answers a length query with `n`, or says how much was written into [`Self::space`].
    pub fn report(&mut self, n: usize) {
        self.written = n;
    }

    /// Copies `data` out, or answers `CKR_BUFFER_TOO_SMALL` with the length needed.
    pub fn put(&mut self, data: &[u8]) -> Result<()> {
        self.written = data.len();
        match self.buf.as_deref_mut() {
            None => Ok(()),
            Some(b) if b.len() >= data.len() => {
                b[..data.len()].copy_from_slice(data);
                Ok(())
            }
            Some(_) => Err(err(CKR_BUFFER_TOO_SMALL)),
        }
    }
}
