//! File modes of a soft store: what hsmux creates is private to its owner whatever the
//! umask (directories 0700, files 0600), and a store that others may change is refused.
//!
//! Why: public objects (and secret keys made with `CKA_PRIVATE=false`, pkcs11-tool's
//! `--keygen` default) are stored in clear, and the PIN records are an offline-guessing
//! target; a store that another user can write lets that user swap in keys of their own.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::core::error::{Error, Result};
use cryptoki_sys::CKR_DEVICE_ERROR;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parents with mode 0700 (set explicitly: `mkdir` applies
/// the umask). An existing directory is left as it is; [`audit`] reports on it.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut p = Some(dir);
    while let Some(d) = p {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        p = d.parent();
    }
    for d in missing.iter().rev() {
        let made = fs::DirBuilder::new().mode(DIR_MODE).create(d);
        match made {
            Ok(()) => fs::set_permissions(d, Permissions::from_mode(DIR_MODE)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => Ok(()),
            Err(e) => Err(e),
        }
        .map_err(|e| {
            Error::logged(
                CKR_DEVICE_ERROR,
                format!("soft token: cannot create directory {}: {e}", d.display()),
            )
        })?;
    }
    Ok(())
}

/// Opens `path` for writing, creating it with mode 0600 (set explicitly after creation).
/// With `new`, the file must not exist yet.
pub fn open_private_file(path: &Path, new: bool) -> io::Result<File> {
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path);
    match created {
        Ok(f) => {
            f.set_permissions(Permissions::from_mode(FILE_MODE))?;
            Ok(f)
        }
        Err(e) if !new && e.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().write(true).open(path)
        }
        Err(e) => Err(e),
    }
}

/// What [`audit`] found.
#[derive(Default, Debug)]
pub struct Audit {
    /// Group or others can change these: the store must not be used.
    pub refused: Vec<String>,
    /// Group or others can read these: a warning with the fix.
    pub warnings: Vec<String>,
}

/// Checks the modes of the store at `dir`: the directory, `objects/`, `token.json`, and
/// with `objects` each object file too (the token checks those one by one as it reads
/// them, see [`check`]). Each finding names the path and the `chmod` that fixes it.
pub fn audit(dir: &Path, objects: bool) -> Audit {
    let mut out = Audit::default();
    let objdir = dir.join("objects");
    let mut paths = vec![dir.to_path_buf(), objdir.clone(), dir.join("token.json")];
    if objects {
        if let Ok(entries) = fs::read_dir(&objdir) {
            paths.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "obj")),
            );
        }
    }
    for p in paths {
        let Ok(meta) = fs::metadata(&p) else { continue };
        match check(&p, &meta) {
            Finding::Writable(why) => out.refused.push(why),
            Finding::Readable(why) => out.warnings.push(why),
            Finding::Private => {}
        }
    }
    out
}

/// What the mode of one store path allows others.
pub enum Finding {
    Private,
    /// Group or others can read it: the text says so and how to fix it.
    Readable(String),
    /// Group or others can change it.
    Writable(String),
}

/// The finding for one path of the store, from its metadata.
pub fn check(p: &Path, meta: &fs::Metadata) -> Finding {
    let mode = meta.permissions().mode() & 0o777;
    let (want, what) = if meta.is_dir() {
        (DIR_MODE, "directory")
    } else {
        (FILE_MODE, "file")
    };
    if mode & 0o022 != 0 {
        Finding::Writable(format!(
            "soft store {what} {} is writable by group or others (mode {mode:04o}): another user could replace its keys; refusing to use it. Fix: chmod {want:o} {}",
            p.display(),
            p.display()
        ))
    } else if mode & 0o044 != 0 {
        Finding::Readable(format!(
            "soft store {what} {} is readable by group or others (mode {mode:04o}): its public objects and PIN records are exposed. Fix: chmod {want:o} {}",
            p.display(),
            p.display()
        ))
    } else {
        Finding::Private
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_dirs_and_files_are_private_and_loose_modes_are_reported() {
        let base = std::env::temp_dir().join(format!("hsmux-perms-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let store = base.join("a/b");
        create_private_dir(&store).unwrap();
        assert_eq!(mode(&base), 0o700);
        assert_eq!(mode(&store), 0o700);
        let f = store.join("token.json");
        drop(open_private_file(&f, true).unwrap());
        assert_eq!(mode(&f), 0o600);
        assert!(open_private_file(&f, true).is_err(), "new means new");
        let a = audit(&store, true);
        assert!(a.refused.is_empty() && a.warnings.is_empty(), "{a:?}");

        fs::set_permissions(&f, Permissions::from_mode(0o644)).unwrap();
        let a = audit(&store, true);
        assert!(a.refused.is_empty());
        assert_eq!(a.warnings.len(), 1);
        assert!(
            a.warnings[0].contains(&format!("chmod 600 {}", f.display())),
            "{:?}",
            a.warnings
        );

        fs::set_permissions(&store, Permissions::from_mode(0o777)).unwrap();
        let a = audit(&store, true);
        assert_eq!(a.refused.len(), 1);
        assert!(
            a.refused[0].contains(&format!("chmod 700 {}", store.display())),
            "{:?}",
            a.refused
        );
        fs::remove_dir_all(&base).unwrap();
    }
}
