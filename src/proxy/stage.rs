//! Job-owned copies of what a vendor call reads and writes. A call that overruns its
//! deadline is abandoned while the vendor still runs (`deadline.rs`); by the time it
//! returns the consumer may have freed its buffers. So the vendor gets our memory: inputs
//! are copied in before the call, outputs are copied back to the consumer's pointers only
//! when the call completed in time. NULL stays NULL and every length word is the
//! consumer's, so the vendor answers length queries, `CKR_BUFFER_TOO_SMALL` and bad
//! arguments as it would to the consumer directly.
//!
//! Every constructor is `unsafe`: its pointers are the consumer's, valid as PKCS#11 requires
//! of the function being forwarded (and bounded by `ffi::bounds` before we get here).
#![allow(clippy::missing_safety_doc)]

use cryptoki_sys::*;
use std::mem::size_of;

/// The most a staged output buffer takes (a consumer may claim a larger capacity; no
/// vendor output comes near it).
const MAX_OUT: usize = 1 << 30;

/// Makes a job's staged data movable to the worker thread: it holds raw pointers into
/// memory the job itself owns (and, for the few fields we cannot stage, the consumer's).
pub struct Owned<T>(pub T);
// SAFETY: see above; the worker is the only one using the value while the call runs.
unsafe impl<T> Send for Owned<T> {}

// Through Deref, a closure that uses the value captures the whole `Owned` (not the field).
impl<T> std::ops::Deref for Owned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}
impl<T> std::ops::DerefMut for Owned<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// The vendor's `CK_RV` when the staging itself fails.
pub type Staged<T> = Result<T, CK_RV>;

fn alloc<T: Default + Clone>(n: usize) -> Staged<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| CKR_HOST_MEMORY)?;
    v.resize(n, T::default());
    Ok(v)
}

/// Uninitialized capacity for the vendor to write into (zeroing a large output buffer
/// on every call would cost more than the call). The thread's last output buffer is
/// reused: consumers pass large buffers (64 KiB for a 1 KiB result), whose allocation and
/// release each call would cost more than the call itself.
fn capacity(n: usize) -> Staged<Vec<u8>> {
    let mut v = SCRATCH.with(|s| s.take());
    v.clear();
    v.try_reserve_exact(n).map_err(|_| CKR_HOST_MEMORY)?;
    Ok(v)
}

/// Output buffers kept for reuse up to this size.
const KEEP: usize = 1 << 20;

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// An input byte buffer (`pData`, `ulDataLen`).
pub struct In {
    buf: Vec<u8>,
    null: bool,
    len: CK_ULONG,
}

impl In {
    pub unsafe fn new(p: *const u8, len: CK_ULONG) -> Staged<In> {
        if p.is_null() || len == 0 {
            return Ok(In {
                buf: Vec::new(),
                null: p.is_null(),
                len,
            });
        }
        let n = usize::try_from(len).map_err(|_| CKR_ARGUMENTS_BAD)?;
        let mut buf = Vec::new();
        buf.try_reserve_exact(n).map_err(|_| CKR_HOST_MEMORY)?;
        buf.extend_from_slice(std::slice::from_raw_parts(p, n));
        Ok(In {
            buf,
            null: false,
            len,
        })
    }
    pub fn ptr(&mut self) -> *mut u8 {
        if self.null {
            std::ptr::null_mut()
        } else {
            // A non-NULL pointer even for 0 bytes, as the consumer gave one.
            self.buf.as_mut_ptr()
        }
    }
    pub fn len(&self) -> CK_ULONG {
        self.len
    }
    /// Clears a secret (a PIN) once the vendor has it.
    pub fn wipe(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.buf);
    }
}

/// An output byte buffer with its length word (`pOut`, `pulOutLen`).
pub struct Out {
    buf: Vec<u8>,
    /// What the consumer's buffer holds (the most ever copied back).
    cap: usize,
    len: CK_ULONG,
    null_buf: bool,
    null_len: bool,
}

impl Out {
    pub unsafe fn new(p: *mut u8, len: *mut CK_ULONG) -> Staged<Out> {
        let null_len = len.is_null();
        let given = if null_len { 0 } else { *len };
        let null_buf = p.is_null();
        let cap = if null_buf {
            0
        } else {
            usize::try_from(given).unwrap_or(usize::MAX).min(MAX_OUT)
        };
        Ok(Out {
            buf: capacity(cap)?,
            cap,
            len: if null_buf {
                given
            } else {
                given.min(cap as CK_ULONG)
            },
            null_buf,
            null_len,
        })
    }
    /// A buffer of exactly `n` bytes without a length word (`C_GenerateRandom`).
    pub unsafe fn exact(p: *mut u8, n: CK_ULONG) -> Staged<Out> {
        let cap = usize::try_from(n).unwrap_or(usize::MAX).min(MAX_OUT);
        let cap = if p.is_null() { 0 } else { cap };
        Ok(Out {
            buf: capacity(cap)?,
            cap,
            len: n,
            null_buf: p.is_null(),
            null_len: true,
        })
    }
    pub fn ptr(&mut self) -> *mut u8 {
        if self.null_buf {
            std::ptr::null_mut()
        } else {
            self.buf.as_mut_ptr()
        }
    }
    pub fn len_ptr(&mut self) -> *mut CK_ULONG {
        if self.null_len {
            std::ptr::null_mut()
        } else {
            &mut self.len
        }
    }
    /// The length word always (the vendor sets it on success and on
    /// `CKR_BUFFER_TOO_SMALL`, and leaves the consumer's value otherwise); the bytes on
    /// success, as many as the vendor says it wrote.
    pub unsafe fn back(&self, rv: CK_RV, p: *mut u8, len: *mut CK_ULONG) {
        if !self.null_len {
            *len = self.len;
        }
        if rv == CKR_OK && !self.null_buf {
            let n = (self.len as usize).min(self.cap);
            std::ptr::copy_nonoverlapping(self.buf.as_ptr(), p, n);
        }
    }
    /// For [`Out::exact`]: all `n` bytes on success.
    pub unsafe fn back_exact(&self, rv: CK_RV, p: *mut u8) {
        if rv == CKR_OK && !self.null_buf {
            let n = (self.len as usize).min(self.cap);
            std::ptr::copy_nonoverlapping(self.buf.as_ptr(), p, n);
        }
    }
}

impl Drop for Out {
    /// The buffer goes back to the thread for its next call (a worker's, when the call was
    /// abandoned: that thread ends soon after).
    fn drop(&mut self) {
        if self.buf.capacity() > 0 && self.buf.capacity() <= KEEP {
            let buf = std::mem::take(&mut self.buf);
            let _ = SCRATCH.try_with(|s| {
                let old = s.take();
                s.set(if old.capacity() >= buf.capacity() {
                    old
                } else {
                    buf
                });
            });
        }
    }
}

/// A value the vendor writes (`CK_SESSION_INFO`, a handle, a count): `None` for NULL.
pub struct Val<T: Copy>(Option<T>);

impl<T: Copy> Val<T> {
    /// The consumer's current value is the starting point (for in/out words like
    /// `pulCount`, and so that a vendor that writes nothing leaves what was there).
    pub unsafe fn new(p: *mut T) -> Val<T> {
        Val(if p.is_null() {
            None
        } else {
            Some(std::ptr::read_unaligned(p))
        })
    }
    pub fn ptr(&mut self) -> *mut T {
        match &mut self.0 {
            Some(v) => v,
            None => std::ptr::null_mut(),
        }
    }
    pub fn get(&self) -> Option<T> {
        self.0
    }
    pub fn set(&mut self, v: T) {
        if let Some(x) = &mut self.0 {
            *x = v;
        }
    }
    pub unsafe fn back(&self, p: *mut T) {
        if let Some(v) = self.0 {
            std::ptr::write_unaligned(p, v);
        }
    }
}

/// A list the vendor fills (`C_FindObjects`, `C_GetMechanismList`): room for `max`
/// entries, uninitialized (a consumer may claim a huge `ulMaxObjectCount`; untouched pages
/// of a large allocation cost nothing).
pub struct List<T: Copy + Default> {
    buf: Vec<T>,
    cap: usize,
    null: bool,
}

impl<T: Copy + Default> List<T> {
    pub unsafe fn new(p: *mut T, max: CK_ULONG) -> Staged<List<T>> {
        let n = if p.is_null() {
            0
        } else {
            usize::try_from(max)
                .unwrap_or(usize::MAX)
                .min(MAX_OUT / size_of::<T>())
        };
        let mut buf = Vec::new();
        buf.try_reserve_exact(n).map_err(|_| CKR_HOST_MEMORY)?;
        Ok(List {
            buf,
            cap: n,
            null: p.is_null(),
        })
    }
    pub fn ptr(&mut self) -> *mut T {
        if self.null {
            std::ptr::null_mut()
        } else {
            self.buf.as_mut_ptr()
        }
    }
    /// The first `n` entries (what the vendor says it wrote), each through `map`.
    pub unsafe fn back(&self, p: *mut T, n: CK_ULONG, map: impl Fn(T) -> T) {
        if self.null {
            return;
        }
        // The first `n` entries are the vendor's (never more than our room).
        let n = (n as usize).min(self.cap);
        for i in 0..n {
            std::ptr::write_unaligned(p.add(i), map(std::ptr::read(self.buf.as_ptr().add(i))));
        }
    }
}

/// A template: our copy of the `CK_ATTRIBUTE` array with our copies of the values, nested
/// templates (`CKF_ARRAY_ATTRIBUTE` values such as `CKA_WRAP_TEMPLATE`) copied the same way.
pub struct Template {
    attrs: Vec<CK_ATTRIBUTE>,
    /// The value buffers `attrs` point into (u64 for the alignment of a nested array).
    values: Vec<Vec<u64>>,
    nested: Vec<(usize, Template)>,
    null: bool,
    count: CK_ULONG,
}

/// Nesting depth of array attributes we follow (PKCS#11 has one level in practice).
const MAX_DEPTH: u32 = 4;

impl Template {
    /// `read`: copy the consumer's values in (an input template, or `C_GetAttributeValue`,
    /// whose buffers are outputs and need only be as large as the consumer's).
    pub unsafe fn new(p: *const CK_ATTRIBUTE, count: CK_ULONG, read: bool) -> Staged<Template> {
        Self::at_depth(p, count, read, 0)
    }

    unsafe fn at_depth(
        p: *const CK_ATTRIBUTE,
        count: CK_ULONG,
        read: bool,
        depth: u32,
    ) -> Staged<Template> {
        let mut t = Template {
            attrs: Vec::new(),
            values: Vec::new(),
            nested: Vec::new(),
            null: p.is_null(),
            count,
        };
        if p.is_null() || count == 0 {
            return Ok(t);
        }
        let n = usize::try_from(count).map_err(|_| CKR_ARGUMENTS_BAD)?;
        t.attrs.try_reserve_exact(n).map_err(|_| CKR_HOST_MEMORY)?;
        for i in 0..n {
            t.attrs.push(std::ptr::read_unaligned(p.add(i)));
        }
        for i in 0..n {
            let a = t.attrs[i];
            if a.pValue.is_null() || a.ulValueLen == CK_UNAVAILABLE_INFORMATION {
                continue;
            }
            let len = usize::try_from(a.ulValueLen)
                .unwrap_or(usize::MAX)
                .min(MAX_OUT);
            let per = size_of::<CK_ATTRIBUTE>();
            if crate::core::attr::holds_template(a.type_) && len % per == 0 && depth < MAX_DEPTH {
                let mut inner = Self::at_depth(
                    a.pValue as *const CK_ATTRIBUTE,
                    (len / per) as CK_ULONG,
                    read,
                    depth + 1,
                )?;
                t.attrs[i].pValue = inner.attrs.as_mut_ptr() as CK_VOID_PTR;
                t.nested.push((i, inner));
                continue;
            }
            // Inputs are copied; output room is left uninitialized (a consumer may claim a
            // large buffer; untouched pages of a large allocation cost nothing).
            let mut v: Vec<u64> = Vec::new();
            v.try_reserve_exact(len.div_ceil(8))
                .map_err(|_| CKR_HOST_MEMORY)?;
            if read {
                std::ptr::copy_nonoverlapping(
                    a.pValue as *const u8,
                    v.as_mut_ptr() as *mut u8,
                    len,
                );
            }
            t.attrs[i].pValue = v.as_mut_ptr() as CK_VOID_PTR;
            t.attrs[i].ulValueLen = len as CK_ULONG;
            t.values.push(v);
        }
        Ok(t)
    }

    pub fn ptr(&mut self) -> *mut CK_ATTRIBUTE {
        if self.null {
            std::ptr::null_mut()
        } else {
            self.attrs.as_mut_ptr()
        }
    }
    pub fn count(&self) -> CK_ULONG {
        self.count
    }

    /// `C_GetAttributeValue`'s results back into the consumer's template: every length
    /// word, and each value the vendor filled (its length fits the consumer's buffer).
    pub unsafe fn back(&self, p: *mut CK_ATTRIBUTE) {
        if self.null {
            return;
        }
        for (i, ours) in self.attrs.iter().enumerate() {
            let theirs = &mut *p.add(i);
            let given = theirs.ulValueLen;
            theirs.ulValueLen = ours.ulValueLen;
            if theirs.pValue.is_null() || ours.ulValueLen == CK_UNAVAILABLE_INFORMATION {
                continue;
            }
            if let Some((_, inner)) = self.nested.iter().find(|(j, _)| *j == i) {
                inner.back(theirs.pValue as *mut CK_ATTRIBUTE);
                continue;
            }
            if ours.ulValueLen <= given {
                std::ptr::copy_nonoverlapping(
                    ours.pValue as *const u8,
                    theirs.pValue as *mut u8,
                    ours.ulValueLen as usize,
                );
            }
        }
    }
}

/// A mechanism parameter we do not know: the structure itself is copied (aligned), and
/// copied back only where the vendor changed it; pointers inside it stay the consumer's.
pub struct Param {
    buf: Vec<u64>,
    len: usize,
}

impl Param {
    pub unsafe fn new(p: *const u8, len: CK_ULONG) -> Staged<Option<Param>> {
        if p.is_null() {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| CKR_ARGUMENTS_BAD)?;
        let len = len.min(crate::core::limits::MAX_PARAM_LEN);
        let mut buf: Vec<u64> = alloc(len.div_ceil(8))?;
        std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr() as *mut u8, len);
        Ok(Some(Param { buf, len }))
    }
    pub fn ptr(&mut self) -> *mut u8 {
        self.buf.as_mut_ptr() as *mut u8
    }
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes of our own buffer.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr() as *const u8, self.len) }
    }
    /// The vendor's changes to the structure (a parameter may be const data of the
    /// consumer's, so nothing is written when nothing changed).
    pub unsafe fn back(&self, p: *mut u8) {
        let theirs = std::slice::from_raw_parts(p as *const u8, self.len);
        if theirs != self.bytes() {
            std::ptr::copy_nonoverlapping(self.bytes().as_ptr(), p, self.len);
        }
    }
}
