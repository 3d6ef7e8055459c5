//! Multi-part operations, find cursors and session objects across a failover in a replica
//! group, against real parts: SoftHSMv2 tokens holding the same keys, each behind its own
//! copy of the fault-injecting wrapper (conformance/faultwrap, built here with cc). The
//! serving replica is made to fail (`error` or `gone` in its ctl file) between two calls
//! of an operation; the consumer must see success, and every result is checked by an
//! independent implementation (hmac, sha2, rsa, aes, aes-gcm). docs/failover.md
//! ("Multi-part operations", "Session objects") is what is checked.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const AES_KEY: [u8; 32] = [0x5e; 32];
const HMAC_KEY: [u8; 32] = [0x6f; 32];
/// `replay_limit` of the slot "lim".
const SMALL_LIMIT: usize = 64;

struct Setup {
    m: Module,
    dir: PathBuf,
    rsa: rsa::RsaPublicKey,
    port: u16,
}
unsafe impl Sync for Setup {}
unsafe impl Send for Setup {}

static SETUP: OnceLock<Setup> = OnceLock::new();
/// The tests inject faults: one at a time.
static FAULTS: Mutex<()> = Mutex::new(());

/// The parts every multi-part test feeds, of uneven lengths (not block-aligned).
const PARTS: [&[u8]; 5] = [
    b"the first part, ",
    b"a second one of another length, ",
    b"x",
    b"and a fourth part that is rather longer than the three before it, ",
    b"the end.",
];

fn ctl(dir: &Path, name: &str, mode: &str) {
    std::fs::write(dir.join(format!("ctl-{name}")), mode).unwrap();
}

/// The components of an RSA key SoftHSM generates extractable on `token` (then forgotten:
/// a session object), to be imported into every replica.
fn rsa_parts(direct: &Module, token: &str) -> Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)> {
    let h = open(direct, slot_labelled(direct, token, true), true);
    assert_eq!(login(direct, h, CKU_USER, PIN), CKR_OK);
    let mut public = Template::new()
        .ulong(CKA_MODULUS_BITS, 2048)
        .bytes(CKA_PUBLIC_EXPONENT, &[1, 0, 1]);
    let mut private = Template::new()
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true);
    let (rv, _, sk) = try_keypair(
        direct,
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        &mut public,
        &mut private,
    );
    assert_rv!(rv, CKR_OK);
    let parts = [
        CKA_MODULUS,
        CKA_PUBLIC_EXPONENT,
        CKA_PRIVATE_EXPONENT,
        CKA_PRIME_1,
        CKA_PRIME_2,
        CKA_EXPONENT_1,
        CKA_EXPONENT_2,
        CKA_COEFFICIENT,
    ]
    .map(|t| (t, get_attr(direct, h, sk, t).unwrap()));
    assert_eq!(ck!(direct, C_CloseSession(h)), CKR_OK);
    parts.to_vec()
}

/// The same AES, HMAC and RSA keys on `token` of the directly loaded SoftHSM.
fn provision(direct: &Module, token: &str, rsa: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)]) {
    let h = open(direct, slot_labelled(direct, token, true), true);
    assert_eq!(login(direct, h, CKU_USER, PIN), CKR_OK);
    let key = |class: CK_OBJECT_CLASS, kt: CK_KEY_TYPE, id: &[u8]| {
        Template::new()
            .ulong(CKA_CLASS, class)
            .ulong(CKA_KEY_TYPE, kt)
            .bool(CKA_TOKEN, true)
            .bytes(CKA_ID, id)
            .bytes(CKA_LABEL, id)
    };
    let secret = |kt, v: &[u8], id: &[u8]| {
        key(CKO_SECRET_KEY, kt, id)
            .bool(CKA_PRIVATE, true)
            .bytes(CKA_VALUE, v)
            .bool(CKA_ENCRYPT, true)
            .bool(CKA_DECRYPT, true)
            .bool(CKA_SIGN, true)
            .bool(CKA_VERIFY, true)
    };
    let mut private = key(CKO_PRIVATE_KEY, CKK_RSA, b"rsa")
        .bool(CKA_PRIVATE, true)
        .bool(CKA_SIGN, true);
    for (t, v) in rsa {
        private = private.bytes(*t, v);
    }
    let public = key(CKO_PUBLIC_KEY, CKK_RSA, b"rsa")
        .bool(CKA_VERIFY, true)
        .bytes(CKA_MODULUS, &rsa[0].1)
        .bytes(CKA_PUBLIC_EXPONENT, &rsa[1].1);
    for t in [
        secret(CKK_AES, &AES_KEY, b"aes"),
        secret(CKK_GENERIC_SECRET, &HMAC_KEY, b"hmac"),
        private,
        public,
    ] {
        try_create(direct, h, t).expect("C_CreateObject");
    }
    assert_eq!(ck!(direct, C_CloseSession(h)), CKR_OK);
}

fn setup() -> &'static Setup {
    SETUP.get_or_init(|| {
        assert!(Path::new(SOFTHSM).exists(), "SoftHSMv2 missing (scripts/deps.sh)");
        let dir = std::env::temp_dir().join(format!("hsmux-replay-{}", std::process::id()));
        remove_at_exit(&dir);
        let tokens = ["q0", "q1", "q2", "l0", "l1"];
        let wrapper = faultwrap::tokens_behind_faultwrap(&dir, &tokens);
        let direct = load_from(Path::new(SOFTHSM));
        assert_eq!(initialize(&direct), CKR_OK);
        let rsa = rsa_parts(&direct, "q0");
        for t in tokens {
            provision(&direct, t, &rsa);
        }
        std::mem::forget(direct); // the wrappers share this SoftHSM instance
        let replica =
            |name: &str| faultwrap::replica_table(&dir, &wrapper, SOFTHSM, name, name, "");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Hedging off: each test cuts the replica that serves, which must be the first in
        // file order (with hedging a slow moment of the machine can move a call on).
        let cfg = format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[[slot]]\nlabel = \"rp\"\npolicy = \"failover\"\nhedge_ms = 0\n{}{}{}\n[[slot]]\nlabel = \"lim\"\nreplay_limit = {SMALL_LIMIT}\nhedge_ms = 0\n{}{}",
            replica("q0"),
            replica("q1"),
            replica("q2"),
            replica("l0"),
            replica("l1"),
        );
        std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
        let m = load();
        assert_eq!(initialize(&m), CKR_OK);
        let n = rsa::BigUint::from_bytes_be(&rsa[0].1);
        let e = rsa::BigUint::from_bytes_be(&rsa[1].1);
        let rsa = rsa::RsaPublicKey::new(n, e).unwrap();
        Setup { m, dir, rsa, port }
    })
}

/// Whether the metrics show replica `r` of `slot` up.
fn up(s: &Setup, slot: &str, r: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", s.port)) else {
        return false;
    };
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let _ = c.read_to_string(&mut text);
    let series = format!("hsmux_replica_up{{slot=\"{slot}\",replica=\"{r}\"}} 1");
    text.lines().any(|l| l.trim() == series)
}

/// The setup, once replica `first` of `slot` is up: under the failover policy it serves
/// the next operation, so that failing it fails the operation's replica.
fn serving(slot: &str, first: &str) -> (&'static Setup, MutexGuard<'static, ()>) {
    let g = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    let t = Instant::now();
    while !up(s, slot, first) {
        assert!(t.elapsed() < Duration::from_secs(60), "{first} not back up");
        std::thread::sleep(Duration::from_millis(100));
    }
    (s, g)
}

/// Calls that replica `name`'s wrapper failed on purpose (its counter 2).
fn injected(s: &Setup, name: &str) -> CK_ULONG {
    let lib = unsafe { libloading::Library::new(s.dir.join(format!("w-{name}.so"))) }.unwrap();
    unsafe {
        let f: libloading::Symbol<unsafe extern "C" fn(i32) -> CK_ULONG> =
            lib.get(b"faultwrap_counter").unwrap();
        f(2)
    }
}

/// Puts a replica back to `ok` when the test ends, whatever happened.
struct Heal<'a>(&'a Setup, &'static str);
impl Drop for Heal<'_> {
    fn drop(&mut self) {
        ctl(&self.0.dir, self.1, "ok");
    }
}

/// Feeds `PARTS` to `update`, making `victim` fail (`mode`) before part `cut`; checks that
/// the victim was really asked and failed. The outputs, concatenated.
fn cut_between_parts<'a>(
    s: &'a Setup,
    victim: &'static str,
    mode: &str,
    cut: usize,
    mut update: impl FnMut(&[u8]) -> Result<Vec<u8>, CK_RV>,
) -> (Heal<'a>, Vec<u8>) {
    let heal = Heal(s, victim);
    let before = injected(s, victim);
    let mut out = Vec::new();
    for (n, part) in PARTS.iter().enumerate() {
        if n == cut {
            ctl(&s.dir, victim, mode);
        }
        out.extend(update(part).unwrap_or_else(|rv| panic!("part {n}: {}", rv_name(rv))));
    }
    assert!(injected(s, victim) > before, "{victim} served and failed");
    (heal, out)
}

/// A logged-in session on `label`.
fn session(s: &Setup, label: &str) -> CK_SESSION_HANDLE {
    let h = open(&s.m, slot_labelled(&s.m, label, true), true);
    let rv = login(&s.m, h, CKU_USER, PIN);
    assert!(
        rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
        "{}",
        rv_name(rv)
    );
    h
}

fn key(s: &Setup, h: CK_SESSION_HANDLE, class: CK_OBJECT_CLASS, id: &[u8]) -> CK_OBJECT_HANDLE {
    let t = &mut Template::new().ulong(CKA_CLASS, class).bytes(CKA_ID, id);
    let found = find(&s.m, h, t);
    assert_eq!(found.len(), 1, "{}", String::from_utf8_lossy(id));
    found[0]
}

fn rv(rv: CK_RV) -> Result<Vec<u8>, CK_RV> {
    if rv == CKR_OK {
        Ok(Vec::new())
    } else {
        Err(rv)
    }
}

/// An Update or Final with output (`C_EncryptUpdate`, ...), into a generous buffer.
fn with_output(
    f: impl FnOnce(*mut u8, *mut CK_ULONG) -> CK_RV,
    room: usize,
) -> Result<Vec<u8>, CK_RV> {
    let mut out = vec![0u8; room];
    let mut n = room as CK_ULONG;
    rv(f(out.as_mut_ptr(), &mut n))?;
    out.truncate(n as usize);
    Ok(out)
}

fn sign_update(m: &Module, h: CK_SESSION_HANDLE, d: &[u8]) -> Result<Vec<u8>, CK_RV> {
    rv(ck!(
        m,
        C_SignUpdate(h, d.as_ptr() as *mut _, d.len() as CK_ULONG)
    ))
}

fn sign_final(m: &Module, h: CK_SESSION_HANDLE) -> Result<Vec<u8>, CK_RV> {
    with_output(|p, n| ck!(m, C_SignFinal(h, p, n)), 512)
}

/// A multi-part signature or MAC of `PARTS` whose replica fails (`mode`) in the middle.
fn sign_cut(s: &Setup, mech_type: CK_MECHANISM_TYPE, k: CK_OBJECT_HANDLE, mode: &str) -> Vec<u8> {
    let (m, h) = (&s.m, session(s, "rp"));
    let mut mc = mech(mech_type);
    assert_rv!(ck!(m, C_SignInit(h, &mut mc, k)), CKR_OK);
    let _heal = cut_between_parts(s, "q0", mode, 2, |d| sign_update(m, h, d));
    let sig = sign_final(m, h).expect("C_SignFinal after the failover");
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
    sig
}

#[test]
fn an_hmac_cut_between_updates_matches_an_independent_hmac() {
    use hmac::Mac;
    let (s, _g) = serving("rp", "q0");
    let h = session(s, "rp");
    let k = key(s, h, CKO_SECRET_KEY, b"hmac");
    let mac = sign_cut(s, CKM_SHA256_HMAC, k, "error");
    let mut want = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&HMAC_KEY).unwrap();
    want.update(&PARTS.concat());
    assert_eq!(mac, want.finalize().into_bytes().as_slice());
    assert_eq!(ck!(s.m, C_CloseSession(h)), CKR_OK);
}

#[test]
fn an_rsa_signature_cut_between_updates_verifies_with_rustcrypto() {
    use sha2::Digest;
    let (s, _g) = serving("rp", "q0");
    let h = session(s, "rp");
    let k = key(s, h, CKO_PRIVATE_KEY, b"rsa");
    let sig = sign_cut(s, CKM_SHA256_RSA_PKCS, k, "gone");
    let hash = sha2::Sha256::digest(PARTS.concat());
    s.rsa
        .verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &hash, &sig)
        .expect("the signature verifies");
    assert_eq!(ck!(s.m, C_CloseSession(h)), CKR_OK);
}

#[test]
fn a_digest_cut_between_updates_equals_sha256() {
    use sha2::Digest;
    let (s, _g) = serving("rp", "q0");
    let (m, h) = (&s.m, session(s, "rp"));
    let mut mc = mech(CKM_SHA256);
    assert_rv!(ck!(m, C_DigestInit(h, &mut mc)), CKR_OK);
    let _heal = cut_between_parts(s, "q0", "error", 3, |d| {
        rv(ck!(
            m,
            C_DigestUpdate(h, d.as_ptr() as *mut _, d.len() as CK_ULONG)
        ))
    });
    let got = with_output(|p, n| ck!(m, C_DigestFinal(h, p, n)), 64).unwrap();
    assert_eq!(got, sha2::Sha256::digest(PARTS.concat()).as_slice());
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

/// A multi-part encryption (or decryption) of `input` in `PARTS`-sized pieces whose
/// replica fails in the middle: everything the consumer got, final included.
fn crypt_cut(s: &Setup, mut mc: CK_MECHANISM, encrypt: bool, input: &[u8]) -> Vec<u8> {
    let (m, h) = (&s.m, session(s, "rp"));
    let k = key(s, h, CKO_SECRET_KEY, b"aes");
    let init = if encrypt {
        ck!(m, C_EncryptInit(h, &mut mc, k))
    } else {
        ck!(m, C_DecryptInit(h, &mut mc, k))
    };
    assert_rv!(init, CKR_OK);
    // The same cut points as PARTS, over `input` (longer by a tag or padding when it is
    // ciphertext: the rest goes with the last part).
    let mut offsets = Vec::new();
    let mut at = 0;
    for p in &PARTS {
        offsets.push(at);
        at += p.len();
    }
    let mut next = 0;
    let heal = cut_between_parts(s, "q0", "error", 2, |p| {
        let from = offsets[next];
        next += 1;
        let to = if next == PARTS.len() {
            input.len()
        } else {
            from + p.len()
        };
        let d = &input[from..to];
        with_output(
            |o, n| {
                let (dp, dl) = (d.as_ptr() as *mut _, d.len() as CK_ULONG);
                if encrypt {
                    ck!(m, C_EncryptUpdate(h, dp, dl, o, n))
                } else {
                    ck!(m, C_DecryptUpdate(h, dp, dl, o, n))
                }
            },
            d.len() + 64,
        )
    });
    let mut out = heal.1;
    out.extend(
        with_output(
            |o, n| {
                if encrypt {
                    ck!(m, C_EncryptFinal(h, o, n))
                } else {
                    ck!(m, C_DecryptFinal(h, o, n))
                }
            },
            64,
        )
        .expect("the final call after the failover"),
    );
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
    out
}

fn aes_block(block: &mut [u8; 16], decrypt: bool) {
    use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
    let c = aes::Aes256::new_from_slice(&AES_KEY).unwrap();
    let b = GenericArray::from_mut_slice(block);
    if decrypt {
        c.decrypt_block(b)
    } else {
        c.encrypt_block(b)
    }
}

/// AES-256-CBC with PKCS#7 padding, computed here.
fn cbc_pad(iv: [u8; 16], data: &[u8], decrypt: bool) -> Vec<u8> {
    let mut prev = iv;
    let mut out = Vec::new();
    if decrypt {
        for c in data.chunks(16) {
            let mut b: [u8; 16] = c.try_into().unwrap();
            aes_block(&mut b, true);
            out.extend(b.iter().zip(prev).map(|(x, y)| x ^ y));
            prev = c.try_into().unwrap();
        }
        let pad = *out.last().unwrap() as usize;
        out.truncate(out.len() - pad);
        return out;
    }
    let pad = 16 - data.len() % 16;
    let padded = [data, &vec![pad as u8; pad]].concat();
    for p in padded.chunks(16) {
        let mut b = [0u8; 16];
        for (i, x) in b.iter_mut().enumerate() {
            *x = p[i] ^ prev[i];
        }
        aes_block(&mut b, false);
        out.extend_from_slice(&b);
        prev = b;
    }
    out
}

#[test]
fn aes_cbc_ctr_and_gcm_encryptions_cut_between_updates_decrypt_outside() {
    let plain = PARTS.concat();
    // CBC-PAD.
    let (s, g) = serving("rp", "q0");
    let mut iv = [7u8; 16];
    let ct = crypt_cut(s, mech_with(CKM_AES_CBC_PAD, &mut iv), true, &plain);
    assert_eq!(cbc_pad([7; 16], &ct, true), plain, "CBC-PAD");
    drop(g);
    // CTR, a 128-bit big-endian counter.
    let (s, g) = serving("rp", "q0");
    let cb = [0xf0u8; 16];
    let mut p = CK_AES_CTR_PARAMS {
        ulCounterBits: 128,
        cb,
    };
    let ct = crypt_cut(s, mech_with(CKM_AES_CTR, &mut p), true, &plain);
    let mut counter = u128::from_be_bytes(cb);
    let mut back = Vec::new();
    for c in ct.chunks(16) {
        let mut ks = counter.to_be_bytes();
        aes_block(&mut ks, false);
        back.extend(c.iter().zip(ks).map(|(x, k)| x ^ k));
        counter = counter.wrapping_add(1);
    }
    assert_eq!(back, plain, "CTR");
    drop(g);
    // GCM with the caller's IV.
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let (s, _g) = serving("rp", "q0");
    let (mut iv, mut aad) = ([9u8; 12], *b"aad");
    let mut p = gcm_params(&mut iv, &mut aad, 128);
    let ct = crypt_cut(s, mech_with(CKM_AES_GCM, &mut p), true, &plain);
    let back = aes_gcm::Aes256Gcm::new_from_slice(&AES_KEY)
        .unwrap()
        .decrypt(
            (&[9u8; 12]).into(),
            Payload {
                msg: &ct,
                aad: b"aad",
            },
        )
        .expect("the GCM ciphertext and tag check out");
    assert_eq!(back, plain, "GCM");
}

#[test]
fn a_cbc_decryption_cut_between_updates_gives_each_byte_once() {
    let (s, _g) = serving("rp", "q0");
    let plain = PARTS.concat();
    let ct = cbc_pad([3; 16], &plain, false);
    let mut iv = [3u8; 16];
    let back = crypt_cut(s, mech_with(CKM_AES_CBC_PAD, &mut iv), false, &ct);
    assert_eq!(back, plain);
}

#[test]
fn a_verification_cut_between_updates_gives_the_right_answer() {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&HMAC_KEY).unwrap();
    mac.update(&PARTS.concat());
    let good = mac.finalize().into_bytes().to_vec();
    let mut bad = good.clone();
    bad[0] ^= 1;
    for (sig, want) in [(good, CKR_OK), (bad, CKR_SIGNATURE_INVALID)] {
        let (s, _g) = serving("rp", "q0");
        let (m, h) = (&s.m, session(s, "rp"));
        let k = key(s, h, CKO_SECRET_KEY, b"hmac");
        let mut mc = mech(CKM_SHA256_HMAC);
        assert_rv!(ck!(m, C_VerifyInit(h, &mut mc, k)), CKR_OK);
        let _heal = cut_between_parts(s, "q0", "error", 1, |d| {
            rv(ck!(
                m,
                C_VerifyUpdate(h, d.as_ptr() as *mut _, d.len() as CK_ULONG)
            ))
        });
        let got = ck!(
            m,
            C_VerifyFinal(h, sig.as_ptr() as *mut _, sig.len() as CK_ULONG)
        );
        assert_rv!(got, want);
        assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
    }
}

#[test]
fn past_replay_limit_a_cut_operation_fails_once_and_the_next_works() {
    let (s, _g) = serving("lim", "l0");
    let (m, h) = (&s.m, session(s, "lim"));
    let _heal = Heal(s, "l0");
    let k = key(s, h, CKO_SECRET_KEY, b"hmac");
    let mut mc = mech(CKM_SHA256_HMAC);
    assert_rv!(ck!(m, C_SignInit(h, &mut mc, k)), CKR_OK);
    let big = [0x42u8; SMALL_LIMIT / 2 + 1];
    sign_update(m, h, &big).unwrap();
    sign_update(m, h, &big).unwrap();
    ctl(&s.dir, "l0", "error");
    assert_eq!(sign_update(m, h, b"more"), Err(CKR_DEVICE_ERROR));
    assert_eq!(sign_final(m, h), Err(CKR_OPERATION_NOT_INITIALIZED));
    // Once: the next multi-part operation runs (on l1) and is right.
    assert_rv!(ck!(m, C_SignInit(h, &mut mc, k)), CKR_OK);
    sign_update(m, h, &big).unwrap();
    let mac = sign_final(m, h).unwrap();
    assert_eq!(mac, sign(m, h, mech(CKM_SHA256_HMAC), k, &big).unwrap());
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

#[test]
fn a_find_cut_in_the_middle_gives_the_rest_and_every_handle_works() {
    let (s, _g) = serving("rp", "q0");
    let (m, h) = (&s.m, session(s, "rp"));
    let _heal = Heal(s, "q0");
    // The token objects (a session object a test left on a replica it could not close
    // there would be found on that replica only).
    let mut tokens = Template::new().bool(CKA_TOKEN, true);
    assert_rv!(
        ck!(m, C_FindObjectsInit(h, tokens.ptr(), tokens.len())),
        CKR_OK
    );
    let mut found = Vec::new();
    let next = |max: usize| {
        let mut buf = vec![0 as CK_OBJECT_HANDLE; max];
        let mut n = 0;
        let rv = ck!(
            m,
            C_FindObjects(h, buf.as_mut_ptr(), max as CK_ULONG, &mut n)
        );
        assert_rv!(rv, CKR_OK);
        buf.truncate(n as usize);
        buf
    };
    found.extend(next(2));
    assert_eq!(found.len(), 2);
    let before = injected(s, "q0");
    ctl(&s.dir, "q0", "gone");
    loop {
        let more = next(2);
        if more.is_empty() {
            break;
        }
        found.extend(more);
    }
    assert_rv!(ck!(m, C_FindObjectsFinal(h)), CKR_OK);
    let mut seen = Vec::new();
    for o in &found {
        let class = get_attr(m, h, *o, CKA_CLASS).expect("a handle found before works");
        let id = get_attr(m, h, *o, CKA_ID).unwrap();
        seen.push((CK_ULONG::from_ne_bytes(class.try_into().unwrap()), id));
    }
    seen.sort();
    let want = [
        (CKO_PUBLIC_KEY, b"rsa".to_vec()),
        (CKO_PRIVATE_KEY, b"rsa".to_vec()),
        (CKO_SECRET_KEY, b"aes".to_vec()),
        (CKO_SECRET_KEY, b"hmac".to_vec()),
    ];
    assert_eq!(seen.len(), want.len(), "{seen:?}");
    for w in want {
        assert!(seen.contains(&w), "{w:?} in {seen:?}");
    }
    assert!(injected(s, "q0") > before, "q0 served and failed");
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

/// One AES-ECB block under `k` through hsmux.
fn ecb(s: &Setup, h: CK_SESSION_HANDLE, k: CK_OBJECT_HANDLE) -> Result<Vec<u8>, CK_RV> {
    encrypt(&s.m, h, mech(CKM_AES_ECB), k, &[0x33; 16])
}

#[test]
fn a_created_session_object_is_made_again_on_the_next_replica() {
    use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
    let (s, _g) = serving("rp", "q0");
    let (m, h) = (&s.m, session(s, "rp"));
    let heal = Heal(s, "q0");
    let value = [0x11u8; 16];
    let t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_TOKEN, false)
        .bool(CKA_ENCRYPT, true)
        .bytes(CKA_VALUE, &value)
        .bytes(CKA_ID, b"scratch")
        .bytes(CKA_LABEL, b"scratch");
    let k = try_create(m, h, t).expect("C_CreateObject");
    let mut want = GenericArray::from([0x33u8; 16]);
    aes::Aes128::new_from_slice(&value)
        .unwrap()
        .encrypt_block(&mut want);
    assert_eq!(ecb(s, h, k).unwrap(), want.as_slice());
    let before = injected(s, "q0");
    ctl(&s.dir, "q0", "error");
    assert_eq!(
        ecb(s, h, k).expect("the same handle on the next replica"),
        want.as_slice()
    );
    assert!(injected(s, "q0") > before);
    assert_eq!(get_attr(m, h, k, CKA_LABEL).unwrap(), b"scratch");
    assert_eq!(
        key(s, h, CKO_SECRET_KEY, b"scratch"),
        k,
        "found under its handle"
    );
    assert_rv!(ck!(m, C_DestroyObject(h, k)), CKR_OK);
    assert_eq!(ecb(s, h, k), Err(CKR_KEY_HANDLE_INVALID));
    // q0 answers again, so that closing the session there ends its session objects.
    drop(heal);
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

#[test]
fn a_session_key_generated_in_the_dead_replica_is_an_invalid_handle() {
    let (s, _g) = serving("rp", "q0");
    let (m, h) = (&s.m, session(s, "rp"));
    let heal = Heal(s, "q0");
    let k = secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bool(CKA_TOKEN, false)
            .bool(CKA_ENCRYPT, true)
            .bytes(CKA_LABEL, b"generated"),
    );
    ecb(s, h, k).expect("served by the replica that made it");
    ctl(&s.dir, "q0", "error");
    assert_eq!(ecb(s, h, k), Err(CKR_OBJECT_HANDLE_INVALID));
    // Other keys are served by the next replica.
    ecb(s, h, key(s, h, CKO_SECRET_KEY, b"aes")).expect("the token key works");
    // q0 answers again, so that closing the session there ends its session objects.
    drop(heal);
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}
