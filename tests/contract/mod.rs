//! The remote-service contract: the checks every remote key service behind hsmux must pass
//! (Vault/OpenBao transit, Google Cloud KMS, AWS KMS), written once and called by each
//! service's test file with that service's slot, keys and reference material:
//!
//! - the object model: a key pair's halves share `CKA_ID`, the private half is sensitive
//!   and never extractable, versions are listed newest first;
//! - every mechanism, each result checked by an independent implementation (p256, p384,
//!   ed25519-dalek, rsa, hmac, aes-gcm) against the service's public key or key material;
//! - OpenBao's `pkcs11` seal sequence (shared/CONSUMERS.md): login on one session, find by
//!   label on a second, the operation on a third, AES-GCM with the IV written back;
//! - errors: refused credentials at `C_Login`;
//! - faults: a server that is down or silent answers `CKR_DEVICE_ERROR` within the slot's
//!   deadline, and the test servers' processes are killed when the test process exits.
//!
//! What one service alone does (transit's REST decryption, Cloud KMS's CRC32C answers,
//! KMS's request fields) stays in that service's file.
#![allow(dead_code)]

pub mod bao;
pub mod pqc;
pub mod pyserver;

use crate::common::*;
use crate::{assert_rv, ck};
use cryptoki_sys::*;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- test servers

/// Process ids of the servers this test process started, killed at exit (the fixtures
/// holding them are statics, never dropped).
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

extern "C" fn kill_children() {
    if let Ok(c) = CHILDREN.lock() {
        for pid in c.iter() {
            unsafe {
                libc::kill(*pid as i32, libc::SIGCONT);
                libc::kill(*pid as i32, libc::SIGKILL);
            }
        }
    }
}

/// Kills `pid` when the test process exits.
pub fn kill_at_exit(pid: u32) {
    let mut c = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    if c.is_empty() {
        unsafe { libc::atexit(kill_children) };
    }
    c.push(pid);
}

/// A server stopped by its test: no longer killed at exit.
pub fn forget_child(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

/// A free port on 127.0.0.1 (bound and released: the server takes it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An address that takes connections and never answers: a service that hangs, where only
/// deadlines end calls.
pub struct Silent {
    pub port: u16,
    pub accepted: Arc<AtomicUsize>,
}

impl Silent {
    pub fn start() -> Silent {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in l.incoming().flatten() {
                n.fetch_add(1, Ordering::SeqCst);
                held.push(c);
            }
        });
        Silent { port, accepted }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// One request to a test server's control endpoint `/__control/<what>` on `port` (plain
/// HTTP/1.1; the body read to its Content-Length, as servers may keep the connection
/// open): the JSON of a 200 answer.
pub fn control_request(
    port: u16,
    method: &str,
    what: &str,
    body: &str,
) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        c,
        "{method} /__control/{what} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = c.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(usize::MAX);
            if body.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

/// The venv's python (scripts/deps.sh makes it), which the Python test servers need for
/// `needs` (their packages).
pub fn venv_python(needs: &str) -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/deps.sh (the test server needs the venv's {needs})",
        p.display()
    );
    p
}

/// Waits until a test server started as `child` is `ready()`; panics if it exits or does
/// not come up within a minute.
pub fn wait_ready(child: &mut std::process::Child, name: &str, ready: impl Fn() -> bool) {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{name} exited at start: {status}");
        }
        if ready() {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{name} did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A read/write session on the slot labelled `label`, logged in (the login is the slot's,
/// shared with the other tests on it).
pub fn logged_in(m: &Module, label: &str) -> CK_SESSION_HANDLE {
    let h = open(m, slot_labelled(m, label, true), true);
    let rv = login(m, h, CKU_USER, b"any");
    assert!(
        rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
        "C_Login on {label}: {}",
        rv_name(rv)
    );
    h
}

/// CKA_ID of an object, as text (the remote services' ids are names).
pub fn id_text(m: &Module, h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> String {
    String::from_utf8(get_attr(m, h, o, CKA_ID).unwrap()).unwrap()
}

// ---------------------------------------------------------------- independent crypto

pub fn sha256(d: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(d).to_vec()
}

/// The DER DigestInfo prefix of SHA-256, then the digest.
pub fn digest_info_sha256(msg: &[u8]) -> Vec<u8> {
    [
        &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ][..],
        &sha256(msg),
    ]
    .concat()
}

/// The public key of the module's public-key object, from CKA_MODULUS and the exponent.
pub fn rsa_public(m: &Module, h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> rsa::RsaPublicKey {
    let n = rsa::BigUint::from_bytes_be(&get_attr(m, h, o, CKA_MODULUS).unwrap());
    let e = rsa::BigUint::from_bytes_be(&get_attr(m, h, o, CKA_PUBLIC_EXPONENT).unwrap());
    rsa::RsaPublicKey::new(n, e).unwrap()
}

/// The EC point of a public-key object (CKA_EC_POINT unwrapped from its OCTET STRING).
pub fn point_of(m: &Module, h: CK_SESSION_HANDLE, public: CK_OBJECT_HANDLE) -> Vec<u8> {
    ec_point(&get_attr(m, h, public, CKA_EC_POINT).unwrap())
}

/// The tag an HMAC mechanism makes with `key` over `data`, computed by the hmac crate.
pub fn hmac_tag(mech: CK_MECHANISM_TYPE, key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    fn tag<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).unwrap();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
    match mech {
        CKM_SHA256_HMAC => tag::<hmac::Hmac<sha2::Sha256>>(key, data),
        CKM_SHA384_HMAC => tag::<hmac::Hmac<sha2::Sha384>>(key, data),
        CKM_SHA512_HMAC => tag::<hmac::Hmac<sha2::Sha512>>(key, data),
        _ => panic!("no reference HMAC for mechanism 0x{mech:x}"),
    }
}

fn aes256gcm(key: &[u8]) -> aes_gcm::Aes256Gcm {
    use aes_gcm::aead::KeyInit;
    aes_gcm::Aes256Gcm::new_from_slice(key).unwrap()
}

/// aes-gcm's opening of `ct || tag`.
pub fn gcm_open(key: &[u8], iv: &[u8], aad: &[u8], ct: &[u8]) -> Result<Vec<u8>, ()> {
    use aes_gcm::aead::{Aead, Payload};
    aes256gcm(key)
        .decrypt(aes_gcm::Nonce::from_slice(iv), Payload { msg: ct, aad })
        .map_err(|_| ())
}

/// aes-gcm's sealing: `ct || tag`.
pub fn gcm_seal(key: &[u8], iv: &[u8], aad: &[u8], pt: &[u8]) -> Vec<u8> {
    use aes_gcm::aead::{Aead, Payload};
    aes256gcm(key)
        .encrypt(aes_gcm::Nonce::from_slice(iv), Payload { msg: pt, aad })
        .unwrap()
}

/// RSA-OAEP encryption by the rsa crate (SHA-1 or SHA-256, MGF1 of the same hash).
pub fn oaep_encrypt(pk: &rsa::RsaPublicKey, hash: CK_MECHANISM_TYPE, pt: &[u8]) -> Vec<u8> {
    let mut rng = rsa::rand_core::OsRng;
    match hash {
        CKM_SHA_1 => pk.encrypt(&mut rng, rsa::Oaep::new::<sha1::Sha1>(), pt),
        CKM_SHA256 => pk.encrypt(&mut rng, rsa::Oaep::new::<sha2::Sha256>(), pt),
        _ => panic!("no reference OAEP for hash 0x{hash:x}"),
    }
    .unwrap()
}

// ---------------------------------------------------------------- PKCS#11 parameters

pub fn oaep(hash: CK_MECHANISM_TYPE, mgf: CK_ULONG) -> CK_RSA_PKCS_OAEP_PARAMS {
    CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: hash,
        mgf,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: std::ptr::null_mut(),
        ulSourceDataLen: 0,
    }
}

pub fn pss(hash: CK_MECHANISM_TYPE, mgf: CK_ULONG, salt: CK_ULONG) -> CK_RSA_PKCS_PSS_PARAMS {
    CK_RSA_PKCS_PSS_PARAMS {
        hashAlg: hash,
        mgf,
        sLen: salt,
    }
}

/// C_Encrypt with AES-GCM (tag 128); `iv` receives what the module writes back into pIv.
pub fn gcm_encrypt(
    m: &Module,
    h: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    iv: &mut [u8; 12],
    aad: &[u8],
    pt: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    let mut aad = aad.to_vec();
    let mut p = gcm_params(iv, &mut aad, 128);
    encrypt(m, h, mech_with(CKM_AES_GCM, &mut p), key, pt)
}

pub fn gcm_decrypt(
    m: &Module,
    h: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    iv: &[u8],
    aad: &[u8],
    ct: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    let mut iv = iv.to_vec();
    let mut aad = aad.to_vec();
    let mut p = gcm_params(&mut iv, &mut aad, 128);
    decrypt(m, h, mech_with(CKM_AES_GCM, &mut p), key, ct)
}

// ---------------------------------------------------------------- the object model

/// A remote key pair: both halves carry the same CKA_ID (the version's name on the
/// service); the private half is sensitive, never extractable, and its value unreadable.
pub fn check_key_pair(
    m: &Module,
    h: CK_SESSION_HANDLE,
    private: CK_OBJECT_HANDLE,
    public: CK_OBJECT_HANDLE,
) {
    let id = get_attr(m, h, private, CKA_ID).unwrap();
    assert!(!id.is_empty(), "a remote key has a CKA_ID");
    assert_eq!(
        get_attr(m, h, public, CKA_ID).unwrap(),
        id,
        "one CKA_ID on both halves"
    );
    check_remote_secret(m, h, private);
}

/// A private or secret key that lives in the service: sensitive, not extractable.
pub fn check_remote_secret(m: &Module, h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) {
    assert_eq!(get_attr(m, h, key, CKA_SENSITIVE).unwrap(), [1]);
    assert_eq!(get_attr(m, h, key, CKA_EXTRACTABLE).unwrap(), [0]);
    assert_rv!(
        get_attr(m, h, key, CKA_VALUE).unwrap_err(),
        CKR_ATTRIBUTE_SENSITIVE
    );
}

/// The public key with the same CKA_ID as `private` (exactly one).
pub fn public_of(m: &Module, h: CK_SESSION_HANDLE, private: CK_OBJECT_HANDLE) -> CK_OBJECT_HANDLE {
    let id = get_attr(m, h, private, CKA_ID).unwrap();
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_PUBLIC_KEY)
        .bytes(CKA_ID, &id);
    let found = find(m, h, &mut t);
    assert_eq!(found.len(), 1, "one public key per version");
    found[0]
}

/// The keys of `class` labelled `label`, in the order C_FindObjects gives them (versions:
/// the primary, newest, first).
pub fn objects(
    m: &Module,
    h: CK_SESSION_HANDLE,
    class: CK_OBJECT_CLASS,
    label: &str,
) -> Vec<CK_OBJECT_HANDLE> {
    let mut t = Template::new()
        .ulong(CKA_CLASS, class)
        .bytes(CKA_LABEL, label.as_bytes());
    find(m, h, &mut t)
}

/// The first (primary) key of `class` labelled `label`.
pub fn first(
    m: &Module,
    h: CK_SESSION_HANDLE,
    class: CK_OBJECT_CLASS,
    label: &str,
) -> CK_OBJECT_HANDLE {
    *objects(m, h, class, label)
        .first()
        .unwrap_or_else(|| panic!("no {label} of class {class}"))
}

// ---------------------------------------------------------------- mechanisms

/// C_Verify with `mechanism` (no parameter) accepts `sig` over `msg`, and rejects it with
/// byte `at` damaged.
pub fn check_verify(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_TYPE,
    key: CK_OBJECT_HANDLE,
    msg: &[u8],
    sig: &[u8],
    at: usize,
) {
    assert_rv!(verify(m, h, mech(mechanism), key, msg, sig), CKR_OK);
    let mut bad = sig.to_vec();
    bad[at] ^= 1;
    assert_rv!(
        verify(m, h, mech(mechanism), key, msg, &bad),
        CKR_SIGNATURE_INVALID
    );
}

/// ECDSA P-256: CKM_ECDSA_SHA256 and CKM_ECDSA over a digest made here, both raw r || s
/// and verified by p256 with the service's point; C_Verify accepts the signature and
/// rejects a damaged one.
pub fn check_ecdsa_p256(
    m: &Module,
    h: CK_SESSION_HANDLE,
    private: CK_OBJECT_HANDLE,
    public: CK_OBJECT_HANDLE,
    point: &[u8],
    msg: &[u8],
) {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::ecdsa::signature::Verifier;
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).unwrap();
    let sig = sign(m, h, mech(CKM_ECDSA_SHA256), private, msg).unwrap();
    assert_eq!(sig.len(), 64, "raw r || s");
    vk.verify(msg, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("CKM_ECDSA_SHA256 verifies with p256");
    let digest = sha256(msg);
    let pre = sign(m, h, mech(CKM_ECDSA), private, &digest).unwrap();
    assert_eq!(pre.len(), 64);
    vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&pre).unwrap())
        .expect("CKM_ECDSA over a digest verifies with p256");
    check_verify(m, h, CKM_ECDSA_SHA256, public, msg, &sig, 10);
    check_verify(m, h, CKM_ECDSA_SHA256, public, msg, &pre, 10);
}

/// ECDSA P-384 with SHA-384, verified by p384; C_Verify accepts it and rejects a damaged
/// one.
pub fn check_ecdsa_p384(
    m: &Module,
    h: CK_SESSION_HANDLE,
    private: CK_OBJECT_HANDLE,
    public: CK_OBJECT_HANDLE,
    point: &[u8],
    msg: &[u8],
) {
    use p384::ecdsa::signature::Verifier;
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(point).unwrap();
    let sig = sign(m, h, mech(CKM_ECDSA_SHA384), private, msg).unwrap();
    assert_eq!(sig.len(), 96);
    vk.verify(msg, &p384::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("CKM_ECDSA_SHA384 verifies with p384");
    check_verify(m, h, CKM_ECDSA_SHA384, public, msg, &sig, 10);
}

/// Ed25519 over the message itself, verified by ed25519-dalek (strict); C_Verify accepts
/// it and rejects a damaged one.
pub fn check_ed25519(
    m: &Module,
    h: CK_SESSION_HANDLE,
    private: CK_OBJECT_HANDLE,
    public: CK_OBJECT_HANDLE,
    msg: &[u8],
) {
    let point: [u8; 32] = point_of(m, h, public).try_into().unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&point).unwrap();
    let sig = sign(m, h, mech(CKM_EDDSA), private, msg).unwrap();
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_slice(&sig).unwrap())
        .expect("Ed25519 verifies with ed25519-dalek");
    check_verify(m, h, CKM_EDDSA, public, msg, &sig, 0);
}

/// RSA PKCS#1 v1.5 with SHA-256 (2048-bit), verified by rsa; C_Verify rejects a damaged
/// signature. Returns the signature.
pub fn check_rsa_pkcs1_sha256(
    m: &Module,
    h: CK_SESSION_HANDLE,
    private: CK_OBJECT_HANDLE,
    public: Option<CK_OBJECT_HANDLE>,
    pk: &rsa::RsaPublicKey,
    msg: &[u8],
) -> Vec<u8> {
    let sig = sign(m, h, mech(CKM_SHA256_RSA_PKCS), private, msg).unwrap();
    assert_eq!(sig.len(), 256);
    pk.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &sha256(msg), &sig)
        .expect("PKCS#1 v1.5 SHA-256 verifies with rsa");
    if let Some(public) = public {
        check_verify(m, h, CKM_SHA256_RSA_PKCS, public, msg, &sig, 5);
    }
    sig
}

/// RSA-PSS with SHA-256, MGF1-SHA-256 and `salt`, verified by rsa; C_Verify accepts it.
pub fn check_rsa_pss_sha256(
    m: &Module,
    h: CK_SESSION_HANDLE,
    private: CK_OBJECT_HANDLE,
    public: CK_OBJECT_HANDLE,
    pk: &rsa::RsaPublicKey,
    salt: usize,
    msg: &[u8],
) {
    let mut p = pss(CKM_SHA256, CKG_MGF1_SHA256, salt as CK_ULONG);
    let sig = sign(
        m,
        h,
        mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut p),
        private,
        msg,
    )
    .unwrap();
    pk.verify(
        rsa::Pss::new_with_salt::<sha2::Sha256>(salt),
        &sha256(msg),
        &sig,
    )
    .unwrap_or_else(|e| panic!("PSS salt {salt} verifies with rsa: {e}"));
    let mut p = pss(CKM_SHA256, CKG_MGF1_SHA256, salt as CK_ULONG);
    assert_rv!(
        verify(
            m,
            h,
            mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut p),
            public,
            msg,
            &sig
        ),
        CKR_OK
    );
}

/// RSA-OAEP (`hash`, MGF1 of the same hash): C_Decrypt opens what the rsa crate encrypted
/// to the public key; a damaged ciphertext is CKR_ENCRYPTED_DATA_INVALID.
pub fn check_rsa_oaep(
    m: &Module,
    h: CK_SESSION_HANDLE,
    private: CK_OBJECT_HANDLE,
    pk: &rsa::RsaPublicKey,
    hash: CK_MECHANISM_TYPE,
    secret: &[u8],
) {
    let mgf = if hash == CKM_SHA_1 {
        CKG_MGF1_SHA1
    } else {
        CKG_MGF1_SHA256
    };
    let ct = oaep_encrypt(pk, hash, secret);
    let mut p = oaep(hash, mgf);
    assert_eq!(
        decrypt(m, h, mech_with(CKM_RSA_PKCS_OAEP, &mut p), private, &ct).unwrap(),
        secret,
        "OAEP 0x{hash:x} opens what rsa encrypted"
    );
    let mut bad = ct.clone();
    bad[100] ^= 0x40;
    let mut p = oaep(hash, mgf);
    assert_rv!(
        decrypt(m, h, mech_with(CKM_RSA_PKCS_OAEP, &mut p), private, &bad).unwrap_err(),
        CKR_ENCRYPTED_DATA_INVALID
    );
}

/// An HMAC mechanism: the tag equals the hmac crate's over the key material; C_Verify
/// accepts it and rejects a damaged one.
pub fn check_hmac(
    m: &Module,
    h: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    mechanism: CK_MECHANISM_TYPE,
    material: &[u8],
    msg: &[u8],
) -> Vec<u8> {
    let tag = sign(m, h, mech(mechanism), key, msg).unwrap();
    assert_eq!(
        tag,
        hmac_tag(mechanism, material, msg),
        "HMAC 0x{mechanism:x}: the tag the hmac crate computes"
    );
    check_verify(m, h, mechanism, key, msg, &tag, 0);
    tag
}

/// AES-256-GCM with AAD on a service that picks the IV: the IV comes back in pIv, aes-gcm
/// opens the result with the key material, the module opens it too, wrong AAD and damaged
/// ciphertexts are CKR_ENCRYPTED_DATA_INVALID, what aes-gcm sealed elsewhere opens through
/// the service, and a caller's IV is refused (the slot's gcm_iv is not "service").
pub fn check_aes_gcm(
    m: &Module,
    h: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    material: &[u8],
    msg: &[u8],
    aad: &[u8],
) {
    let mut iv = [0u8; 12];
    let ct = gcm_encrypt(m, h, key, &mut iv, aad, msg).unwrap();
    assert_eq!(ct.len(), msg.len() + 16, "ct || tag");
    assert_ne!(iv, [0u8; 12], "the service's IV is written back into pIv");
    assert_eq!(
        gcm_open(material, &iv, aad, &ct).expect("aes-gcm opens the service's ciphertext"),
        msg
    );
    assert_eq!(gcm_decrypt(m, h, key, &iv, aad, &ct).unwrap(), msg);
    assert_rv!(
        gcm_decrypt(m, h, key, &iv, b"other!", &ct).unwrap_err(),
        CKR_ENCRYPTED_DATA_INVALID
    );
    for at in [3, ct.len() - 1] {
        let mut bad = ct.clone();
        bad[at] ^= 1;
        assert_rv!(
            gcm_decrypt(m, h, key, &iv, aad, &bad).unwrap_err(),
            CKR_ENCRYPTED_DATA_INVALID
        );
    }
    let mine = gcm_seal(material, &[7u8; 12], aad, b"sealed outside");
    assert_eq!(
        gcm_decrypt(m, h, key, &[7u8; 12], aad, &mine).unwrap(),
        b"sealed outside"
    );
    assert_rv!(
        gcm_encrypt(m, h, key, &mut [1u8; 12], aad, msg).unwrap_err(),
        CKR_MECHANISM_PARAM_INVALID
    );
}

// ---------------------------------------------------------------- the OpenBao seal

/// How many keys the seal's search may find: exactly one, or the versions of one key
/// (the seal uses the first, the primary).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Found {
    One,
    AtLeastOne,
}

/// The seal's sequence (CONSUMERS.md): login on P, find by label on S1 (max 2, the first
/// is used), read class and key type (length first), close S1; the operation on S2;
/// close S2, logout, close all.
pub fn seal_sequence<T>(
    m: &Module,
    slot: CK_SLOT_ID,
    label: &str,
    pin: &[u8],
    found: Found,
    f: impl FnOnce(CK_SESSION_HANDLE, CK_OBJECT_HANDLE) -> T,
) -> T {
    let p = open(m, slot, true);
    assert_rv!(login(m, p, CKU_USER, pin), CKR_OK);
    let s1 = open(m, slot, true);
    let mut t = Template::new().bytes(CKA_LABEL, label.as_bytes());
    assert_rv!(ck!(m, C_FindObjectsInit(s1, t.ptr(), t.len())), CKR_OK);
    let mut keys = [0 as CK_OBJECT_HANDLE; 2];
    let mut n = 0;
    assert_rv!(
        ck!(m, C_FindObjects(s1, keys.as_mut_ptr(), 2, &mut n)),
        CKR_OK
    );
    assert_rv!(ck!(m, C_FindObjectsFinal(s1)), CKR_OK);
    match found {
        Found::One => assert_eq!(n, 1, "exactly one key labelled {label}"),
        Found::AtLeastOne => assert!(n >= 1, "{label} is found"),
    }
    let key = keys[0];
    let (mut class, mut kt): (CK_ULONG, CK_ULONG) = (0, 0);
    let mut attrs = [
        CK_ATTRIBUTE {
            type_: CKA_CLASS,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        },
        CK_ATTRIBUTE {
            type_: CKA_KEY_TYPE,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        },
    ];
    assert_rv!(
        ck!(m, C_GetAttributeValue(s1, key, attrs.as_mut_ptr(), 2)),
        CKR_OK
    );
    attrs[0].pValue = &mut class as *mut _ as *mut _;
    attrs[1].pValue = &mut kt as *mut _ as *mut _;
    assert_rv!(
        ck!(m, C_GetAttributeValue(s1, key, attrs.as_mut_ptr(), 2)),
        CKR_OK
    );
    assert_eq!((class, kt), (CKO_SECRET_KEY, CKK_AES));
    assert_rv!(ck!(m, C_CloseSession(s1)), CKR_OK);
    let s2 = open(m, slot, true);
    let out = f(s2, key);
    assert_rv!(ck!(m, C_CloseSession(s2)), CKR_OK);
    assert_rv!(ck!(m, C_Logout(p)), CKR_OK);
    assert_rv!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
    out
}

/// One seal write: the IV the seal passes (`random_iv`: drawn with C_GenerateRandom, what
/// OpenBao does, which needs gcm_iv = "service"; else 12 zero bytes), C_Encrypt, and the
/// blob it stores: pIv as found after C_Encrypt || ct || tag. The service chose the IV.
pub fn seal_encrypt(
    m: &Module,
    slot: CK_SLOT_ID,
    label: &str,
    pin: &[u8],
    found: Found,
    pt: &[u8],
    random_iv: bool,
) -> Vec<u8> {
    seal_sequence(m, slot, label, pin, found, |s, key| {
        let mut iv = [0u8; 12];
        if random_iv {
            assert_rv!(ck!(m, C_GenerateRandom(s, iv.as_mut_ptr(), 12)), CKR_OK);
        }
        let drawn = iv;
        let mut gcm = gcm_params(&mut iv, &mut [], 128);
        let ct = encrypt(m, s, mech_with(CKM_AES_GCM, &mut gcm), key, pt).unwrap();
        assert_eq!(ct.len(), pt.len() + 16, "ct || tag, no IV appended");
        assert_eq!((gcm.ulIvLen, gcm.ulIvBits), (12, 96));
        assert_ne!(iv, drawn, "pIv holds the IV the service chose");
        [iv.to_vec(), ct].concat()
    })
}

/// One seal read of a blob `seal_encrypt` stored.
pub fn seal_decrypt(
    m: &Module,
    slot: CK_SLOT_ID,
    label: &str,
    pin: &[u8],
    found: Found,
    blob: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    seal_sequence(m, slot, label, pin, found, |s, key| {
        let mut iv: [u8; 12] = blob[..12].try_into().unwrap();
        let mut gcm = gcm_params(&mut iv, &mut [], 128);
        decrypt(m, s, mech_with(CKM_AES_GCM, &mut gcm), key, &blob[12..])
    })
}

/// The seal's contract on a service slot pair: zero IVs on `zero_slot`; on `service_slot`
/// (gcm_iv = "service") ten writes with drawn IVs, each replaced by a fresh service IV,
/// each round leaving no session open; a blob from one slot opens on the other (same
/// key); and a caller's random IV refused where gcm_iv is not "service".
pub fn check_seal_sequence(
    m: &Module,
    zero_slot: &str,
    service_slot: &str,
    key: &str,
    pin: &[u8],
    found: Found,
) {
    let zero = slot_labelled(m, zero_slot, true);
    let svc = slot_labelled(m, service_slot, true);
    let root_key = b"a 32-byte OpenBao root key......";
    let blob = seal_encrypt(m, zero, key, pin, found, root_key, false);
    assert_eq!(
        seal_decrypt(m, zero, key, pin, found, &blob).unwrap(),
        root_key
    );
    let mut ivs = std::collections::HashSet::new();
    for i in 0..10 {
        let msg = format!("seal write {i}");
        let blob = seal_encrypt(m, svc, key, pin, found, msg.as_bytes(), true);
        assert!(ivs.insert(blob[..12].to_vec()), "IV reused");
        assert_eq!(
            seal_decrypt(m, svc, key, pin, found, &blob).unwrap(),
            msg.as_bytes()
        );
        assert_eq!(session_count(m, svc), 0, "round {i} left a session open");
    }
    let blob = seal_encrypt(m, svc, key, pin, found, root_key, true);
    assert_eq!(
        seal_decrypt(m, zero, key, pin, found, &blob).unwrap(),
        root_key
    );
    seal_sequence(m, zero, key, pin, found, |s, k| {
        let mut iv = [9u8; 12];
        let mut gcm = gcm_params(&mut iv, &mut [], 128);
        assert_rv!(
            encrypt(m, s, mech_with(CKM_AES_GCM, &mut gcm), k, root_key).unwrap_err(),
            CKR_MECHANISM_PARAM_INVALID
        );
    });
}

/// The slot's open sessions (C_GetTokenInfo).
pub fn session_count(m: &Module, slot: CK_SLOT_ID) -> CK_ULONG {
    token_info(m, slot).ulSessionCount
}

pub fn token_info(m: &Module, slot: CK_SLOT_ID) -> CK_TOKEN_INFO {
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(ck!(m, C_GetTokenInfo(slot, &mut ti)), CKR_OK);
    ti
}

/// A blank-padded CK_TOKEN_INFO text field.
pub fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(field).trim_end().to_string()
}

// ---------------------------------------------------------------- errors and faults

/// Credentials the service refuses are a wrong PIN at C_Login. Returns the session (not
/// logged in) for the service's own further checks.
pub fn check_refused_login(m: &Module, label: &str) -> CK_SESSION_HANDLE {
    let h = open(m, slot_labelled(m, label, true), true);
    assert_rv!(login(m, h, CKU_USER, b"any"), CKR_PIN_INCORRECT);
    h
}

/// `call` answers CKR_DEVICE_ERROR, and within `limit` (the slot's deadline plus slack):
/// a server that is down or does not answer costs at most its deadline.
pub fn check_device_error_within(what: &str, limit: Duration, call: impl FnOnce() -> CK_RV) {
    let t = Instant::now();
    let rv = call();
    let took = t.elapsed();
    assert_rv!(rv, CKR_DEVICE_ERROR, "{what}");
    assert!(took < limit, "{what}: waited {took:?} (limit {limit:?})");
}
