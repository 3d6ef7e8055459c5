//! `CK_C_INITIALIZE_ARGS.pReserved`: the spec says it must be NULL (else
//! `CKR_ARGUMENTS_BAD`); p11-kit's `x-init-reserved` and other loaders pass hsmux its config
//! path there as a C string. A consumer may pass any other pointer, so the string is read
//! without ever dereferencing it: the bytes are copied with `process_vm_readv` on this
//! process (which answers `EFAULT` for an unreadable page instead of faulting), or where
//! that call is not allowed, with a `write` of them to a pipe (same answer). Only a
//! NUL-terminated, printable UTF-8 string of at most [`MAX_PATH`] bytes is taken; anything
//! else is `CKR_ARGUMENTS_BAD` with a log line (issue 19, defect 1).

use crate::core::error::{Error, Result};
use cryptoki_sys::CKR_ARGUMENTS_BAD;
use std::path::PathBuf;

/// The longest string read from `pReserved`, NUL included (Linux's PATH_MAX).
const MAX_PATH: usize = 4096;

fn bad(why: &str) -> Error {
    Error::logged(
        CKR_ARGUMENTS_BAD,
        format!("C_Initialize: pReserved {why}; it must be NULL or a config path"),
    )
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// Copies `len` bytes at `addr` of this process, or `None` if any of them is unreadable.
/// `len` stays within one page and at most [`MAX_PATH`].
fn copy_own(addr: usize, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: the kernel reads the remote range and reports EFAULT rather than faulting;
    // the local one is our buffer of `len` bytes.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n == len as isize {
        return Some(buf);
    }
    let errno = std::io::Error::last_os_error().raw_os_error();
    if n < 0 && matches!(errno, Some(libc::ENOSYS | libc::EPERM)) {
        // A seccomp filter or a policy forbids the call: the pipe does the same check.
        return copy_via_pipe(addr, len);
    }
    None
}

/// `write(2)` of the range to a pipe fails with EFAULT, without a fault, when the range is
/// unreadable; what was written is read back. `len` is far below a pipe's capacity.
fn copy_via_pipe(addr: usize, len: usize) -> Option<Vec<u8>> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    let mut buf = vec![0u8; len];
    // SAFETY: the kernel checks the source range (EFAULT); buf is ours, of `len` bytes.
    let ok = unsafe {
        libc::write(fds[1], addr as *const libc::c_void, len) == len as isize
            && libc::read(fds[0], buf.as_mut_ptr().cast(), len) == len as isize
    };
    // SAFETY: both descriptors were opened above and are closed once.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    ok.then_some(buf)
}

/// The C string at `p`, read page by page up to its NUL without faulting.
fn read_c_string(p: *const libc::c_void) -> Result<Vec<u8>> {
    let page = page_size();
    let mut addr = p as usize;
    if addr < page {
        return Err(bad("points into the first page"));
    }
    let mut out = Vec::new();
    while out.len() < MAX_PATH {
        let to_page_end = page - addr % page;
        let len = to_page_end.min(MAX_PATH - out.len());
        let chunk = copy_own(addr, len).ok_or_else(|| bad("is not readable memory"))?;
        if let Some(end) = chunk.iter().position(|b| *b == 0) {
            out.extend_from_slice(&chunk[..end]);
            return Ok(out);
        }
        out.extend_from_slice(&chunk);
        addr = addr.checked_add(len).ok_or_else(|| bad("wraps around"))?;
    }
    Err(bad("has no NUL within 4096 bytes"))
}

/// The config path that `pReserved` names, `None` for an empty string. `p` is not NULL.
pub(crate) fn config_path(p: *const libc::c_void) -> Result<Option<PathBuf>> {
    let bytes = read_c_string(p)?;
    let s = std::str::from_utf8(&bytes).map_err(|_| bad("is not a UTF-8 string"))?;
    if s.chars().any(char::is_control) {
        return Err(bad("holds control characters, not a path"));
    }
    let s = s.trim();
    let s = s.strip_prefix("config=").unwrap_or(s).trim();
    Ok((!s.is_empty()).then(|| PathBuf::from(s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki_sys::CK_RV;

    fn rv(p: *const libc::c_void) -> CK_RV {
        config_path(p).map_or_else(|e| e.rv(), |_| 0)
    }

    /// Two pages: the first readable and filled with `fill`, the second PROT_NONE.
    fn guarded(fill: u8) -> (*mut u8, usize) {
        let page = page_size();
        // SAFETY: a fresh anonymous mapping, written within its first page only.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            ) as *mut u8;
            assert_ne!(p as *mut libc::c_void, libc::MAP_FAILED);
            std::ptr::write_bytes(p, fill, page);
            assert_eq!(libc::mprotect(p.add(page).cast(), page, libc::PROT_NONE), 0);
            (p, page)
        }
    }

    #[test]
    fn unreadable_and_unterminated_pointers_are_arguments_bad() {
        assert_eq!(rv(0x10 as *const _), CKR_ARGUMENTS_BAD);
        let (p, page) = guarded(b'a');
        // SAFETY: addresses inside the two-page mapping made above.
        unsafe {
            assert_eq!(rv(p.add(page).cast()), CKR_ARGUMENTS_BAD, "PROT_NONE page");
            assert_eq!(
                rv(p.add(page - 10).cast()),
                CKR_ARGUMENTS_BAD,
                "runs into the PROT_NONE page"
            );
            *p.add(page - 1) = 0;
            assert_eq!(rv(p.add(page - 10).cast()), 0, "ends before the guard page");
            *p.add(page - 5) = 7;
            assert_eq!(rv(p.add(page - 10).cast()), CKR_ARGUMENTS_BAD, "BEL");
            libc::munmap(p.cast(), 2 * page);
        }
    }

    #[test]
    fn a_config_path_and_its_forms() {
        let path = |s: &[u8]| config_path(s.as_ptr().cast()).unwrap();
        assert_eq!(path(b"/etc/hsmux.toml\0"), Some("/etc/hsmux.toml".into()));
        assert_eq!(path(b"config=/a b.toml \0"), Some("/a b.toml".into()));
        assert_eq!(path(b" \0"), None);
        let long = [b'x'; MAX_PATH + 1];
        assert_eq!(
            config_path(long.as_ptr().cast()).unwrap_err().rv(),
            CKR_ARGUMENTS_BAD
        );
        let binary = [0x07u8, 0x01, 0x00];
        assert_eq!(
            config_path(binary.as_ptr().cast()).unwrap_err().rv(),
            CKR_ARGUMENTS_BAD
        );
    }

    #[test]
    fn the_pipe_reads_what_process_vm_readv_reads() {
        let s = b"abc\0";
        assert_eq!(copy_via_pipe(s.as_ptr() as usize, 4).unwrap(), s);
        assert_eq!(copy_via_pipe(0x10, 4), None);
    }
}
