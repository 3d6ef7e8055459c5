//! The cross-process lock of a soft store, and what only its holder may do.
//!
//! Several processes may load hsmux on one store (a CLI next to a server, forked workers).
//! Every read-modify-write of the store (the PIN failure counters, PIN records, object
//! files) happens while this process holds an advisory `flock` on `<store>/.lock`, so that N
//! processes guessing PINs together get exactly the configured number of guesses, and so
//! that a temporary file seen by the lock holder can only belong to a writer that died.
//!
//! The lock is held for one update, never across calls. Taking it waits at most
//! [`LOCK_WAIT`]: a process stopped while holding it (SIGSTOP, a debugger) costs the others
//! a `CKR_DEVICE_ERROR` naming the store, not a hang.

use super::perms;
use crate::core::error::{Error, Result};
use cryptoki_sys::CKR_DEVICE_ERROR;
use std::fs::{self, File};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a caller waits for another process's update to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The lock file's name in the store directory.
pub const LOCK_FILE: &str = ".lock";
/// The prefix of the temporary files `store::write_atomic` renames into place.
pub const TMP_PREFIX: &str = ".tmp-";

/// Proof that this process holds the store's lock; released when dropped (the `flock` goes
/// with the file descriptor).
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock of the store at `dir`, creating the directory (private) if needed.
    pub fn acquire(dir: &Path) -> Result<StoreLock> {
        perms::create_private_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        let file = perms::open_private_file(&path, false).map_err(|e| {
            Error::logged(
                CKR_DEVICE_ERROR,
                format!(
                    "soft token: cannot open the lock file {}: {e}",
                    path.display()
                ),
            )
        })?;
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            // std's file lock is flock(2) on Linux: per open file description, so it
            // also excludes other threads of this process that opened the file themselves.
            match file.try_lock() {
                Ok(()) => return Ok(StoreLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => {
                    return Err(Error::logged(
                        CKR_DEVICE_ERROR,
                        format!("soft token: cannot lock {}: {e}", path.display()),
                    ))
                }
            }
            if start.elapsed() >= LOCK_WAIT {
                return Err(Error::logged(
                    CKR_DEVICE_ERROR,
                    format!(
                        "soft token: another process has held the lock {} for over {} s; is it stopped?",
                        path.display(),
                        LOCK_WAIT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Removes the temporary files that writers which died before their rename left in
    /// `dir` (the store or its `objects/`). Under the lock no writer is at work, so every
    /// such file is stale. A leftover `token.json` may hold the master key wrapped under a
    /// PIN that has since been changed: its bytes are overwritten before it is unlinked.
    pub fn remove_stale_temps(&self, dir: &Path) -> usize {
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(TMP_PREFIX) || !e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let path = e.path();
            if let Ok(len) = e.metadata().map(|m| m.len()) {
                overwrite(&path, len);
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed += 1;
                    log::info!(
                        "soft token: removed {}, left by a writer that stopped before finishing",
                        path.display()
                    );
                }
                Err(e) => log::warn!("soft token: cannot remove stale {}: {e}", path.display()),
            }
        }
        removed
    }
}

/// Best effort: zeroes a file's bytes in place before it is unlinked, so that a PIN record
/// in it does not stay readable in the file system's free blocks through this inode.
fn overwrite(path: &Path, len: u64) {
    use std::io::Write;
    let Ok(mut f) = fs::OpenOptions::new().write(true).open(path) else {
        return;
    };
    let zeros = [0u8; 4096];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        if f.write_all(&zeros[..n]).is_err() {
            return;
        }
        left -= n as u64;
    }
    let _ = f.sync_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("hsmux-lock-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_second_holder_waits_for_the_first() {
        let d = tmp_dir("wait");
        let first = StoreLock::acquire(&d).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let d2 = d.clone();
        let t = std::thread::spawn(move || {
            // A separate open file description: flock conflicts as between processes.
            let _second = StoreLock::acquire(&d2).unwrap();
            tx.send(Instant::now()).unwrap();
        });
        std::thread::sleep(Duration::from_millis(100));
        let released = Instant::now();
        drop(first);
        let got = rx.recv().unwrap();
        assert!(
            got >= released,
            "the second holder got the lock while the first held it"
        );
        t.join().unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stale_temporary_files_are_zeroed_and_removed_others_kept() {
        let d = tmp_dir("stale");
        let lock = StoreLock::acquire(&d).unwrap();
        fs::write(
            d.join(".tmp-token.json-1-2"),
            b"{\"so\":\"old pin record\"}",
        )
        .unwrap();
        fs::write(d.join("token.json"), b"{}").unwrap();
        assert_eq!(lock.remove_stale_temps(&d), 1);
        assert!(!d.join(".tmp-token.json-1-2").exists());
        assert!(d.join("token.json").exists());
        assert!(d.join(LOCK_FILE).exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
