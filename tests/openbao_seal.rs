//! OpenBao's `pkcs11` seal, replayed call for call (shared/CONSUMERS.md) against the soft
//! token: an AES-GCM key and an RSA-OAEP key made beforehand as an operator would, a seal
//! (encrypt) and an unseal (decrypt) for each, then a new process decrypts the blobs again.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use std::path::Path;

const CHILD_ENV: &str = "HSMUX_SEAL_CHILD_DIR";

fn label_of(info: &CK_TOKEN_INFO) -> String {
    String::from_utf8_lossy(&info.label).trim_end().to_string()
}

/// The seal's start-up: slot list twice, token info per slot until the label matches.
fn find_slot(m: &Module, want: &str) -> CK_SLOT_ID {
    let mut n: CK_ULONG = 0;
    assert_eq!(
        ck!(m, C_GetSlotList(1, std::ptr::null_mut(), &mut n)),
        CKR_OK
    );
    let mut slots = vec![0; n as usize];
    assert_eq!(ck!(m, C_GetSlotList(1, slots.as_mut_ptr(), &mut n)), CKR_OK);
    for s in slots {
        let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
        assert_eq!(ck!(m, C_GetTokenInfo(s, &mut ti)), CKR_OK);
        if label_of(&ti) == want {
            return s;
        }
    }
    panic!("token {want} not found");
}

/// Login on one session, find the key on a second one, operate on a third.
/// How the seal's stanza names the key: `key_label`, `key_id`, or both.
#[derive(Clone, Copy)]
enum Sel<'a> {
    Label(&'a [u8]),
    Id(&'a [u8]),
    Both(&'a [u8], &'a [u8]),
}

fn with_key<T>(
    m: &Module,
    slot: CK_SLOT_ID,
    sel: Sel,
    f: impl FnOnce(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_KEY_TYPE) -> T,
) -> T {
    let p = open(m, slot, true);
    assert_eq!(login(m, p, CKU_USER, PIN), CKR_OK);
    let s1 = open(m, slot, true);
    let (mut t, label) = match sel {
        Sel::Label(l) => (Template::new().bytes(CKA_LABEL, l), l),
        Sel::Id(i) => (Template::new().bytes(CKA_ID, i), i),
        Sel::Both(i, l) => (Template::new().bytes(CKA_ID, i).bytes(CKA_LABEL, l), l),
    };
    assert_eq!(ck!(m, C_FindObjectsInit(s1, t.ptr(), t.len())), CKR_OK);
    let mut found = [0 as CK_OBJECT_HANDLE; 2];
    let mut n = 0;
    assert_eq!(
        ck!(m, C_FindObjects(s1, found.as_mut_ptr(), 2, &mut n)),
        CKR_OK
    );
    assert_eq!(ck!(m, C_FindObjectsFinal(s1)), CKR_OK);
    assert_eq!(
        n,
        1,
        "exactly one key labelled {}",
        String::from_utf8_lossy(label)
    );
    let key = found[0];
    let mut class: CK_ULONG = 0;
    let mut kt: CK_ULONG = 0;
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
    assert_eq!(
        ck!(m, C_GetAttributeValue(s1, key, attrs.as_mut_ptr(), 2)),
        CKR_OK
    );
    assert_eq!((attrs[0].ulValueLen, attrs[1].ulValueLen), (8, 8));
    attrs[0].pValue = &mut class as *mut _ as *mut _;
    attrs[1].pValue = &mut kt as *mut _ as *mut _;
    assert_eq!(
        ck!(m, C_GetAttributeValue(s1, key, attrs.as_mut_ptr(), 2)),
        CKR_OK
    );
    assert!(class == CKO_SECRET_KEY || class == CKO_PRIVATE_KEY);
    assert_eq!(ck!(m, C_CloseSession(s1)), CKR_OK);
    let s2 = open(m, slot, true);
    let out = f(s2, key, kt);
    assert_eq!(ck!(m, C_CloseSession(s2)), CKR_OK);
    assert_eq!(ck!(m, C_Logout(p)), CKR_OK);
    assert_eq!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
    out
}

fn aes_seal(m: &Module, slot: CK_SLOT_ID, sel: Sel, plaintext: &[u8]) -> Vec<u8> {
    with_key(m, slot, sel, |s, key, kt| {
        assert_eq!(kt, CKK_AES);
        let mut iv = [0u8; 12];
        assert_eq!(ck!(m, C_GenerateRandom(s, iv.as_mut_ptr(), 12)), CKR_OK);
        let drawn = iv;
        let mut gcm = gcm_params(&mut iv, &mut [], 128);
        let ct = encrypt(m, s, mech_with(CKM_AES_GCM, &mut gcm), key, plaintext).unwrap();
        assert_eq!(
            ct.len(),
            plaintext.len() + 16,
            "ct || 128-bit tag, no IV appended"
        );
        // OpenBao 2.7 re-reads pIv after C_Encrypt and stores what it finds there: the soft
        // token uses the caller's IV as given, so it must be unchanged.
        assert_eq!(gcm.pIv, iv.as_mut_ptr());
        assert_eq!((gcm.ulIvLen, gcm.ulIvBits), (12, 96));
        assert_eq!(iv, drawn, "the IV in pIv is the one the seal drew");
        [iv.to_vec(), ct].concat()
    })
}

fn aes_unseal(m: &Module, slot: CK_SLOT_ID, sel: Sel, blob: &[u8]) -> Vec<u8> {
    with_key(m, slot, sel, |s, key, _| {
        let mut iv: [u8; 12] = blob[..12].try_into().unwrap();
        let mut gcm = gcm_params(&mut iv, &mut [], 128);
        decrypt(m, s, mech_with(CKM_AES_GCM, &mut gcm), key, &blob[12..]).unwrap()
    })
}

/// RSA: the seal encrypts in software from the public key found by class, type and id.
fn rsa_seal(m: &Module, slot: CK_SLOT_ID, sel: Sel, plaintext: &[u8]) -> Vec<u8> {
    with_key(m, slot, sel, |s, key, kt| {
        assert_eq!(kt, CKK_RSA);
        let id = get_attr(m, s, key, CKA_ID).unwrap();
        let mut t = Template::new()
            .ulong(CKA_CLASS, CKO_PUBLIC_KEY)
            .ulong(CKA_KEY_TYPE, CKK_RSA)
            .bytes(CKA_ID, &id);
        let found = find(m, s, &mut t);
        assert_eq!(found.len(), 1);
        let n = rsa::BigUint::from_bytes_be(&get_attr(m, s, found[0], CKA_MODULUS).unwrap());
        let e =
            rsa::BigUint::from_bytes_be(&get_attr(m, s, found[0], CKA_PUBLIC_EXPONENT).unwrap());
        let pk = rsa::RsaPublicKey::new(n, e).unwrap();
        pk.encrypt(
            &mut rsa::rand_core::OsRng,
            rsa::Oaep::new::<sha2::Sha256>(),
            plaintext,
        )
        .unwrap()
    })
}

fn rsa_unseal(m: &Module, slot: CK_SLOT_ID, sel: Sel, blob: &[u8]) -> Vec<u8> {
    with_key(m, slot, sel, |s, key, _| {
        let mut oaep = CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            source: CKZ_DATA_SPECIFIED,
            pSourceData: std::ptr::null_mut(),
            ulSourceDataLen: 0,
        };
        decrypt(m, s, mech_with(CKM_RSA_PKCS_OAEP, &mut oaep), key, blob).unwrap()
    })
}

/// What an operator does first (pkcs11-tool --init-token, --init-pin, --keygen, --keypairgen).
fn operator_setup(m: &Module) {
    init_slot(m, 0);
    let h = open(m, 0, true);
    assert_eq!(login(m, h, CKU_USER, PIN), CKR_OK);
    secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bool(CKA_TOKEN, true)
            .bool(CKA_SENSITIVE, true)
            .bytes(CKA_LABEL, b"bao-aes")
            .bytes(CKA_ID, b"\x01"),
    );
    keypair(
        m,
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        Template::new()
            .ulong(CKA_MODULUS_BITS, 2048)
            .bytes(CKA_LABEL, b"bao-rsa-public"),
        Template::new().bytes(CKA_LABEL, b"bao-rsa"),
        b"\x02",
    );
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

#[test]
fn seal_unseal_and_unseal_again_in_a_new_process() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return; // the child runs `child_unseals` only
    }
    let dir = write_config(1);
    let m = load();
    assert_eq!(initialize(&m), CKR_OK);
    operator_setup(&m);
    let slot = find_slot(&m, "test");
    let root_key = b"a 32-byte OpenBao root key......";
    let (aes, rsa) = (Sel::Label(b"bao-aes"), Sel::Label(b"bao-rsa"));
    let aes_blob = aes_seal(&m, slot, aes, root_key);
    assert_eq!(aes_unseal(&m, slot, aes, &aes_blob), root_key);
    let rsa_blob = rsa_seal(&m, slot, rsa, root_key);
    assert_eq!(rsa_unseal(&m, slot, rsa, &rsa_blob), root_key);
    // The key named by key_id, or by both: the same key.
    assert_eq!(aes_unseal(&m, slot, Sel::Id(b"\x01"), &aes_blob), root_key);
    assert_eq!(
        rsa_unseal(&m, slot, Sel::Both(b"\x02", b"bao-rsa"), &rsa_blob),
        root_key
    );
    // Many rounds, as the periodic health check does: no state leaks between them (the
    // seal logs out and closes every session each time). A fresh IV every time.
    let mut ivs = std::collections::HashSet::new();
    for i in 0..20 {
        let msg = format!("seal write {i}");
        let blob = aes_seal(&m, slot, aes, msg.as_bytes());
        assert!(ivs.insert(blob[..12].to_vec()), "IV reused");
        assert_eq!(aes_unseal(&m, slot, aes, &blob), msg.as_bytes());
        let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
        assert_eq!(ck!(m, C_GetTokenInfo(slot, &mut ti)), CKR_OK);
        assert_eq!(ti.ulSessionCount, 0, "round {i} left a session open");
    }
    assert_eq!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
    std::fs::write(dir.join("aes.blob"), &aes_blob).unwrap();
    std::fs::write(dir.join("rsa.blob"), &rsa_blob).unwrap();

    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_unseals",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &dir)
        .env("HSMUX_CONFIG", dir.join("hsmux.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("child unsealed both blobs"),
        "child did not run: {text}"
    );
}

/// Runs only in the child process started above.
#[test]
fn child_unseals() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let m = load();
    assert_eq!(initialize(&m), CKR_OK);
    let slot = find_slot(&m, "test");
    let root_key = b"a 32-byte OpenBao root key......";
    let aes_blob = std::fs::read(dir.join("aes.blob")).unwrap();
    assert_eq!(
        aes_unseal(&m, slot, Sel::Label(b"bao-aes"), &aes_blob),
        root_key
    );
    let rsa_blob = std::fs::read(dir.join("rsa.blob")).unwrap();
    assert_eq!(
        rsa_unseal(&m, slot, Sel::Label(b"bao-rsa"), &rsa_blob),
        root_key
    );
    // And seals anew after the restart.
    let again = aes_seal(&m, slot, Sel::Label(b"bao-aes"), root_key);
    assert_eq!(
        aes_unseal(&m, slot, Sel::Label(b"bao-aes"), &again),
        root_key
    );
    println!("child unsealed both blobs");
}
