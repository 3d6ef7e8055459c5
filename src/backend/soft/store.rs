//! The software token's files: `token.json` (label, serial, PIN records, failure counters)
//! and one file per token object under `objects/`.
//!
//! Private objects are sealed with AES-256-GCM under the token's master key, which is itself
//! wrapped under a key derived from each PIN (see `pin.rs`); public objects are stored in
//! clear with a SHA-256 checksum so that damage is detected. Every write goes to a temporary
//! file in the same directory, is fsync'ed, then renamed over the old one, and the
//! directory is fsync'ed: a crash leaves either the old or the new file, never half of one.
//! Writes happen only under the store's cross-process lock (`lock.rs`), which is also what
//! lets a later holder remove the temporary files of a writer that died. Files are created
//! 0600 and directories 0700 (`perms.rs`). A file that fails its checks is reported and
//! left untouched.

use super::lock::{StoreLock, LOCK_FILE, TMP_PREFIX};
use super::perms;
use crate::core::attr::Attrs;
use crate::core::error::{err, Error, Result};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use cryptoki_sys::*;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const OBJ_MAGIC: &[u8; 8] = b"HSMUXO01";
pub const FORMAT: &str = "hsmux-soft-1";
const KIND_PUBLIC: u8 = 0;
const KIND_PRIVATE: u8 = 1;

/// A PIN's record: the master key wrapped under PBKDF2(PIN, salt).
#[derive(Clone, Serialize, Deserialize)]
pub struct PinRecord {
    pub salt: String,
    pub iterations: u32,
    /// hex(nonce || AES-256-GCM(kek, master key)); with `sealed`, the master key in it
    /// is itself the transit ciphertext of the master key (`[slot.seal]`).
    pub wrapped: String,
    /// The PIN wraps the transit-sealed master key rather than the key itself.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sealed: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `[slot.seal]` facts kept with the token: which transit key sealed it, and a transit
/// HMAC (`vault:v<N>:..`) of the token's seal context that tells a different key.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Debug)]
pub struct SealRecord {
    pub backend: String,
    pub key: String,
    pub check: String,
}

/// `token.json`.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenMeta {
    pub format: String,
    pub label: String,
    pub serial: String,
    pub so: PinRecord,
    pub user: Option<PinRecord>,
    #[serde(default)]
    pub so_failures: u32,
    #[serde(default)]
    pub user_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<SealRecord>,
}

/// What is on disk at a token path. One per read of `token.json`: the size of the
/// `Meta` variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Loaded {
    /// Nothing yet: the token is not initialized.
    Empty,
    Meta(TokenMeta),
}

pub fn meta_path(dir: &Path) -> PathBuf {
    dir.join("token.json")
}

pub fn objects_dir(dir: &Path) -> PathBuf {
    dir.join("objects")
}

/// Reads `token.json`; a damaged or foreign file is an error naming it.
pub fn load_meta(dir: &Path) -> std::result::Result<Loaded, String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "soft token path {} is not a directory",
            dir.display()
        ));
    }
    let p = meta_path(dir);
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A directory that holds something else is not ours to initialize over (the
            // store's own lock file aside: a lock may be taken before the first write).
            if let Ok(entries) = fs::read_dir(dir) {
                let mut others = entries
                    .flatten()
                    .filter(|e| e.file_name() != std::ffi::OsStr::new(LOCK_FILE));
                if let Some(e) = others.next() {
                    return Err(format!(
                        "soft token path {} is not empty but has no token.json (found {:?}); refusing to use it",
                        dir.display(),
                        e.file_name()
                    ));
                }
            }
            return Ok(Loaded::Empty);
        }
        Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
    };
    let meta: TokenMeta = serde_json::from_str(&text)
        .map_err(|e| format!("{} is damaged or not an hsmux token file: {e}", p.display()))?;
    if meta.format != FORMAT {
        return Err(format!(
            "{} has format {:?}, expected {FORMAT:?}",
            p.display(),
            meta.format
        ));
    }
    Ok(Loaded::Meta(meta))
}

pub fn save_meta(lock: &StoreLock, dir: &Path, meta: &TokenMeta) -> Result<()> {
    save_meta_steps(lock, dir, meta, &mut |_| {})
}

/// [`save_meta`], telling `on` each step of the write as it is done (a re-seal reports
/// them).
pub fn save_meta_steps(
    lock: &StoreLock,
    dir: &Path,
    meta: &TokenMeta,
    on: &mut dyn FnMut(WriteStep),
) -> Result<()> {
    let text = zeroize::Zeroizing::new(serde_json::to_vec_pretty(meta).map_err(Error::general)?);
    write_atomic_steps(lock, dir, "token.json", &text, on)
}

/// The steps of [`write_atomic_steps`], in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteStep {
    /// The new content is in a temporary file, fsync'ed; the old file is still in place.
    Written,
    /// The temporary file has replaced the old one (not yet durable: the directory).
    Renamed,
    /// The directory is fsync'ed: the new file survives a power cut.
    Durable,
}

/// Writes `name` in `dir` so that a crash leaves the old or the new content. The caller
/// holds the store's lock.
pub fn write_atomic(lock: &StoreLock, dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    write_atomic_steps(lock, dir, name, data, &mut |_| {})
}

/// [`write_atomic`], telling `on` each [`WriteStep`] as it is done.
pub fn write_atomic_steps(
    _lock: &StoreLock,
    dir: &Path,
    name: &str,
    data: &[u8],
    on: &mut dyn FnMut(WriteStep),
) -> Result<()> {
    let io = |what: &str, e: std::io::Error| {
        Error::logged(
            CKR_DEVICE_ERROR,
            format!("soft token {}: {what}: {e}", dir.display()),
        )
    };
    perms::create_private_dir(dir)?;
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{name}-{}-{}",
        std::process::id(),
        rand_u64()
    ));
    let result = (|| {
        let mut f = perms::open_private_file(&tmp, true).map_err(|e| io("create", e))?;
        f.write_all(data).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("fsync", e))?;
        on(WriteStep::Written);
        fs::rename(&tmp, dir.join(name)).map_err(|e| io("rename", e))?;
        on(WriteStep::Renamed);
        sync_dir(dir);
        on(WriteStep::Durable);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes `name` from `dir`; the caller holds the store's lock.
pub fn remove(_lock: &StoreLock, dir: &Path, name: &str) -> Result<()> {
    match fs::remove_file(dir.join(name)) {
        Ok(()) => {
            sync_dir(dir);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::logged(
            CKR_DEVICE_ERROR,
            format!(
                "soft token: cannot remove {}: {e}",
                dir.join(name).display()
            ),
        )),
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u64::from_ne_bytes(b)
}

/// Serializes attributes: count, then (type, length, bytes) each, little-endian.
pub fn encode_attrs(attrs: &Attrs) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + attrs.values().map(|v| v.len() + 12).sum::<usize>());
    out.extend_from_slice(&(attrs.len() as u32).to_le_bytes());
    for (ty, v) in attrs {
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

pub fn decode_attrs(mut b: &[u8]) -> Option<Attrs> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Some(h)
    }
    let count = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?);
    let mut attrs = Attrs::new();
    for _ in 0..count {
        let ty = u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
        let len = u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
        attrs.insert(ty as CK_ATTRIBUTE_TYPE, take(&mut b, len)?.to_vec());
    }
    b.is_empty().then_some(attrs)
}

fn gcm_key(key: &[u8; 32]) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| err(CKR_GENERAL_ERROR))
}

/// Seals `plain` under `key` with a fresh nonce: nonce || ciphertext || tag.
pub fn seal(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    let k = gcm_key(key)?;
    let mut nonce = [0u8; 12];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| err(CKR_FUNCTION_FAILED))?;
    let mut buf = plain.to_vec();
    k.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .map_err(|_| err(CKR_GENERAL_ERROR))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    buf.iter_mut().for_each(|b| *b = 0);
    Ok(out)
}

/// Opens what [`seal`] made; `None` when the key is wrong or the data damaged.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    if sealed.len() < 12 + 16 {
        return None;
    }
    let k = gcm_key(key).ok()?;
    let nonce = Nonce::try_assume_unique_for_key(&sealed[..12]).ok()?;
    let mut buf = zeroize::Zeroizing::new(sealed[12..].to_vec());
    let n = k.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?.len();
    buf.truncate(n);
    Some(buf)
}

/// The bytes of an object file.
pub fn encode_object(
    name: &str,
    attrs: &Attrs,
    private: bool,
    mk: Option<&[u8; 32]>,
) -> Result<Vec<u8>> {
    let blob = zeroize::Zeroizing::new(encode_attrs(attrs));
    let mut out = OBJ_MAGIC.to_vec();
    if private {
        let mk = mk.ok_or_else(|| err(CKR_USER_NOT_LOGGED_IN))?;
        out.push(KIND_PRIVATE);
        let aad = [&OBJ_MAGIC[..], &[KIND_PRIVATE], name.as_bytes()].concat();
        out.extend_from_slice(&seal(mk, &aad, &blob)?);
    } else {
        out.push(KIND_PUBLIC);
        out.extend_from_slice(&blob);
        let sum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &out);
        out.extend_from_slice(sum.as_ref());
    }
    Ok(out)
}

/// An object file as read back.
pub enum Decoded {
    Public(Attrs),
    /// Private: needs the master key.
    Sealed(Vec<u8>),
}

/// Reads an object file's envelope; the error says what is wrong with it.
pub fn decode_object(bytes: &[u8]) -> std::result::Result<Decoded, &'static str> {
    if bytes.len() < 9 || &bytes[..8] != OBJ_MAGIC {
        return Err("not an hsmux object file (bad magic)");
    }
    match bytes[8] {
        KIND_PUBLIC => {
            if bytes.len() < 9 + 32 {
                return Err("truncated");
            }
            let (body, sum) = bytes.split_at(bytes.len() - 32);
            if aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body).as_ref() != sum {
                return Err("checksum mismatch");
            }
            decode_attrs(&body[9..])
                .map(Decoded::Public)
                .ok_or("malformed attributes")
        }
        KIND_PRIVATE => Ok(Decoded::Sealed(bytes[9..].to_vec())),
        _ => Err("unknown object kind"),
    }
}

/// Opens a sealed private object with the master key.
pub fn open_private(
    name: &str,
    sealed: &[u8],
    mk: &[u8; 32],
) -> std::result::Result<Attrs, &'static str> {
    let aad = [&OBJ_MAGIC[..], &[KIND_PRIVATE], name.as_bytes()].concat();
    let plain = open(mk, &aad, sealed)
        .ok_or("cannot be decrypted with this token's key (damaged or foreign)")?;
    decode_attrs(&plain).ok_or("malformed attributes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::attr::AttrsExt;

    fn sample() -> Attrs {
        let mut a = Attrs::new();
        a.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
        a.insert(CKA_VALUE, vec![1, 2, 3]);
        a
    }

    #[test]
    fn public_objects_round_trip_and_detect_damage() {
        let bytes = encode_object("x.obj", &sample(), false, None).unwrap();
        match decode_object(&bytes).unwrap() {
            Decoded::Public(a) => assert_eq!(a, sample()),
            _ => panic!("kind"),
        }
        let mut bad = bytes.clone();
        bad[12] ^= 1;
        assert_eq!(decode_object(&bad).err(), Some("checksum mismatch"));
        assert!(decode_object(b"garbage").is_err());
    }

    #[test]
    fn private_objects_need_the_right_key_and_name() {
        let mk = [9u8; 32];
        let bytes = encode_object("a.obj", &sample(), true, Some(&mk)).unwrap();
        let Decoded::Sealed(s) = decode_object(&bytes).unwrap() else {
            panic!("kind")
        };
        assert_eq!(open_private("a.obj", &s, &mk).unwrap(), sample());
        assert!(open_private("a.obj", &s, &[8u8; 32]).is_err());
        assert!(
            open_private("b.obj", &s, &mk).is_err(),
            "a file moved to another name is refused"
        );
    }

    #[test]
    fn truncated_attribute_blobs_are_rejected() {
        let blob = encode_attrs(&sample());
        for n in 0..blob.len() {
            assert!(decode_attrs(&blob[..n]).is_none());
        }
    }
}
