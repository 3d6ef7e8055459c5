//! Unit tests of the soft token's cryptography, one file per mechanism family. Each
//! mechanism is checked twice: a round trip through this module, and against a published
//! vector (NIST, RFC) or an independent implementation (RustCrypto, or aws-lc-rs's own
//! verification fed only with the public bytes this module exports).

mod aes;
mod ec;
mod hash;

use super::Key;
use crate::core::attr::{Attrs, AttrsExt};
use crate::core::error::Result;
use crate::core::mechanism::{MechParam, Mechanism};
use cryptoki_sys::*;
use std::sync::Arc;

pub fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).expect("test vector is hex")
}

/// The return value of a result, `CKR_OK` for success (the values need not be `Debug`).
pub fn rv<T>(r: Result<T>) -> CK_RV {
    match r {
        Ok(_) => CKR_OK,
        Err(e) => e.rv(),
    }
}

pub fn mech(m: CK_MECHANISM_TYPE) -> Mechanism {
    Mechanism::new(m)
}

pub fn mech_with(m: CK_MECHANISM_TYPE, p: MechParam) -> Mechanism {
    Mechanism::with(m, p)
}

/// A key object's attributes with its class and type set.
pub fn object(class: CK_OBJECT_CLASS, kt: CK_KEY_TYPE, mut a: Attrs) -> Attrs {
    a.set_ulong(CKA_CLASS, class);
    a.set_ulong(CKA_KEY_TYPE, kt);
    a
}

pub fn key_of(a: &Attrs) -> Arc<Key> {
    Arc::new(Key::from_attrs(a).expect("key parses"))
}

pub fn secret(kt: CK_KEY_TYPE, value: &[u8]) -> Arc<Key> {
    let mut a = Attrs::new();
    a.insert(CKA_VALUE, value.to_vec());
    key_of(&object(CKO_SECRET_KEY, kt, a))
}

/// A generated key pair: (public attributes, private attributes), both complete objects.
pub fn pair(gen: CK_MECHANISM_TYPE, kt: CK_KEY_TYPE, public: Attrs) -> (Attrs, Attrs) {
    let (p, s) = super::generate_key_pair(&mech(gen), &public, &Attrs::new()).expect("keygen");
    (
        object(CKO_PUBLIC_KEY, kt, p),
        object(CKO_PRIVATE_KEY, kt, s),
    )
}

/// A secret key of `len` bytes (`CKA_VALUE_LEN`) generated with `gen`.
pub fn generate(gen: CK_MECHANISM_TYPE, len: CK_ULONG) -> Result<Attrs> {
    let mut t = Attrs::new();
    t.set_ulong(CKA_VALUE_LEN, len);
    super::generate_key(&mech(gen), &t)
}

/// [`generate`] that must succeed, with a value of the length asked for.
pub fn generated(gen: CK_MECHANISM_TYPE, len: CK_ULONG) -> Attrs {
    let a = generate(gen, len).unwrap();
    assert_eq!(a.bytes(CKA_VALUE).map(|v| v.len()), Some(len as usize));
    a
}

pub fn encrypt(m: &Mechanism, k: &Arc<Key>, data: &[u8]) -> Result<Vec<u8>> {
    super::encrypt_init(m, k)?.oneshot(data)
}

pub fn decrypt(m: &Mechanism, k: &Arc<Key>, data: &[u8]) -> Result<Vec<u8>> {
    super::decrypt_init(m, k)?.oneshot(data)
}

pub fn sign(m: &Mechanism, k: &Arc<Key>, data: &[u8]) -> Result<Vec<u8>> {
    super::sign_init(m, k)?.oneshot(data)
}

pub fn verify(m: &Mechanism, k: &Arc<Key>, data: &[u8], sig: &[u8]) -> CK_RV {
    rv(super::verify_init(m, k).and_then(|mut v| v.oneshot(data, sig)))
}

/// Multi-part encryption or decryption fed in `chunk`-byte pieces; checks that each
/// update's output fits the length the operation announced before it.
pub fn multipart(
    m: &Mechanism,
    k: &Arc<Key>,
    encrypting: bool,
    data: &[u8],
    chunk: usize,
) -> Result<Vec<u8>> {
    let mut op = if encrypting {
        super::encrypt_init(m, k)?
    } else {
        super::decrypt_init(m, k)?
    };
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        let announced = op.update_len(piece.len());
        let got = op.update(piece)?;
        assert!(got.len() <= announced, "update output fits update_len");
        out.extend_from_slice(&got);
    }
    let announced = op.final_len();
    let last = op.finish()?;
    assert!(last.len() <= announced, "final output fits final_len");
    out.extend_from_slice(&last);
    Ok(out)
}

#[test]
fn every_listed_mechanism_has_consistent_info() {
    let list = super::mechanisms();
    for (i, (m, info)) in list.iter().enumerate() {
        assert!(list[..i].iter().all(|(o, _)| o != m), "0x{m:x} listed once");
        assert!(info.flags != 0, "0x{m:x} has flags");
        assert!(info.ulMinKeySize <= info.ulMaxKeySize, "0x{m:x} sizes");
    }
}
