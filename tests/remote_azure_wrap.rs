//! The azure-kv backend's wrapping and the ciphers beyond AES-GCM and RSA-OAEP, through the
//! built module against conformance/azurekv_server.py: `C_WrapKey`/`C_UnwrapKey` and
//! `C_Encrypt`/`C_Decrypt` of raw key bytes with A128/192/256KW (checked by the aes-kw
//! crate with the HSM's key bytes), RSA wrapping with RSA-OAEP(-256) and RSA1_5 (checked by
//! the rsa crate), RSA1_5 decryption, A*CBCPAD with the caller's IV (checked by the aes
//! crate), P-521 keys signing ES512 (checked by the p521 crate), session keys made by an
//! unwrap used locally (the transit-KEK pattern), and what Key Vault (no oct-HSM) offers.
//! Also: a key disabled after it was listed fails cleanly and leaves the object list.

#![allow(clippy::macro_metavars_in_unsafe)]
mod azure_server;
mod common;
mod contract;
use azure_server::{secret_auth, Seed, Server, SECRET};
use common::*;
use contract::*;
use cryptoki_sys::*;
use std::sync::OnceLock;

const MHSM_KEYS: &[Seed] = &[
    ("kek256", "oct-HSM", "256", 1, &[]),
    ("kek128", "oct-HSM", "128", 1, &[]),
    ("kek192", "oct-HSM", "192", 1, &[]),
    ("rsa", "RSA-HSM", "2048", 1, &[]),
    ("ec521", "EC-HSM", "P-521", 1, &[]),
    ("fading", "oct-HSM", "256", 1, &[]),
];

const KV_KEYS: &[Seed] = &[("rsa-soft", "RSA", "2048", 1, &[])];

struct Env {
    m: Module,
    mhsm: Server,
    _kv: Server,
}

static ENV: OnceLock<Env> = OnceLock::new();

fn env() -> &'static Env {
    ENV.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hsmux-azure-wrap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        remove_at_exit(&dir);
        let mhsm = Server::start(&dir, "mhsm", "managedhsm", MHSM_KEYS, &[]);
        let kv = Server::start(&dir, "kv", "keyvault", KV_KEYS, &[]);
        let good = secret_auth(SECRET);
        let mut cfg = mhsm.slot("mhsm", &good, "");
        cfg += &kv.slot("kv", &good, "");
        std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
        let m = load();
        assert_rv!(initialize(&m), CKR_OK);
        Env { m, mhsm, _kv: kv }
    })
}

fn key(h: CK_SESSION_HANDLE, class: CK_OBJECT_CLASS, label: &str) -> CK_OBJECT_HANDLE {
    first(&env().m, h, class, label)
}

/// The key bytes of an oct-HSM key object, from the server.
fn material(h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> Vec<u8> {
    env().mhsm.material(&id_text(&env().m, h, o))
}

/// RFC 3394 wrap by the aes-kw crate.
fn kw_wrap(kek: &[u8], data: &[u8]) -> Vec<u8> {
    match kek.len() {
        16 => aes_kw::KekAes128::from(<[u8; 16]>::try_from(kek).unwrap()).wrap_vec(data),
        24 => aes_kw::KekAes192::from(<[u8; 24]>::try_from(kek).unwrap()).wrap_vec(data),
        _ => aes_kw::KekAes256::from(<[u8; 32]>::try_from(kek).unwrap()).wrap_vec(data),
    }
    .unwrap()
}

/// A session AES key with `value`, extractable and readable.
fn session_aes(h: CK_SESSION_HANDLE, value: &[u8]) -> CK_OBJECT_HANDLE {
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bytes(CKA_VALUE, value)
        .bool(CKA_TOKEN, false)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true)
        .bool(CKA_ENCRYPT, true)
        .bool(CKA_DECRYPT, true);
    let mut o = 0;
    assert_rv!(
        ck!(env().m, C_CreateObject(h, t.ptr(), t.len(), &mut o)),
        CKR_OK
    );
    o
}

fn wrap(
    h: CK_SESSION_HANDLE,
    mut mc: CK_MECHANISM,
    kek: CK_OBJECT_HANDLE,
    target: CK_OBJECT_HANDLE,
) -> Result<Vec<u8>, CK_RV> {
    two_call(|p, n| ck!(env().m, C_WrapKey(h, &mut mc, kek, target, p, n)))
}

/// C_UnwrapKey into a readable session AES key; its value.
fn unwrap(
    h: CK_SESSION_HANDLE,
    mut mc: CK_MECHANISM,
    kek: CK_OBJECT_HANDLE,
    wrapped: &[u8],
) -> Result<(CK_OBJECT_HANDLE, Vec<u8>), CK_RV> {
    let m = &env().m;
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_TOKEN, false)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true)
        .bool(CKA_ENCRYPT, true);
    let mut o = 0;
    let rv = ck!(
        m,
        C_UnwrapKey(
            h,
            &mut mc,
            kek,
            wrapped.as_ptr() as *mut _,
            wrapped.len() as CK_ULONG,
            t.ptr(),
            t.len(),
            &mut o
        )
    );
    if rv != CKR_OK {
        return Err(rv);
    }
    Ok((o, get_attr(m, h, o, CKA_VALUE).unwrap()))
}

#[test]
fn aes_key_wrap_as_wrap_key_and_as_encrypt_checked_by_aes_kw() {
    let m = &env().m;
    let h = logged_in(m, "mhsm");
    let dek: Vec<u8> = (0..32u8).map(|b| b ^ 0x3c).collect();
    for label in ["kek256", "kek128", "kek192"] {
        let kek = key(h, CKO_SECRET_KEY, label);
        let theirs = kw_wrap(&material(h, kek), &dek);
        // C_Encrypt/C_Decrypt of raw key bytes (AES-KW is deterministic: the same bytes).
        let ct = encrypt(m, h, mech(CKM_AES_KEY_WRAP), kek, &dek).unwrap();
        assert_eq!(ct, theirs, "{label}: C_Encrypt with CKM_AES_KEY_WRAP");
        assert_eq!(
            decrypt(m, h, mech(CKM_AES_KEY_WRAP), kek, &ct).unwrap(),
            dek
        );
        // C_WrapKey of a session key, C_UnwrapKey back into one.
        let target = session_aes(h, &dek);
        assert_eq!(
            wrap(h, mech(CKM_AES_KEY_WRAP), kek, target).unwrap(),
            theirs,
            "{label}: C_WrapKey"
        );
        let (_, value) = unwrap(h, mech(CKM_AES_KEY_WRAP), kek, &theirs).unwrap();
        assert_eq!(value, dek, "{label}: C_UnwrapKey");
        // A tampered blob fails the integrity check.
        let mut bad = theirs.clone();
        bad[3] ^= 1;
        assert_eq!(
            unwrap(h, mech(CKM_AES_KEY_WRAP), kek, &bad).unwrap_err(),
            CKR_WRAPPED_KEY_INVALID
        );
        assert_eq!(
            decrypt(m, h, mech(CKM_AES_KEY_WRAP), kek, &bad).unwrap_err(),
            CKR_ENCRYPTED_DATA_INVALID
        );
    }
    let kek = key(h, CKO_SECRET_KEY, "kek256");
    // Not a multiple of 8 bytes: refused before any request.
    assert_eq!(
        encrypt(m, h, mech(CKM_AES_KEY_WRAP), kek, &[1u8; 20]).unwrap_err(),
        CKR_DATA_LEN_RANGE
    );
    // A service key never leaves the service.
    let other = key(h, CKO_SECRET_KEY, "kek128");
    assert_eq!(
        wrap(h, mech(CKM_AES_KEY_WRAP), kek, other).unwrap_err(),
        CKR_KEY_UNEXTRACTABLE
    );
    // Session keys go with their session.
    let h2 = open(m, slot_labelled(m, "mhsm", true), true);
    let target = session_aes(h2, &dek);
    assert_rv!(ck!(m, C_CloseSession(h2)), CKR_OK);
    assert_eq!(
        wrap(h, mech(CKM_AES_KEY_WRAP), kek, target).unwrap_err(),
        CKR_KEY_HANDLE_INVALID
    );
}

#[test]
fn rsa_unwraps_what_the_rsa_crate_wrapped_and_the_key_encrypts_locally() {
    use aes_gcm::aead::{Aead, KeyInit};
    let m = &env().m;
    let h = logged_in(m, "mhsm");
    let private = key(h, CKO_PRIVATE_KEY, "rsa");
    let public = public_of(m, h, private);
    let pk = rsa_public(m, h, public);
    let dek = [0x42u8; 32];
    let mut rng = rsa::rand_core::OsRng;
    let cases: Vec<(CK_MECHANISM_TYPE, CK_MECHANISM_TYPE, Vec<u8>)> = vec![
        (
            CKM_RSA_PKCS_OAEP,
            CKM_SHA256,
            oaep_encrypt(&pk, CKM_SHA256, &dek),
        ),
        (
            CKM_RSA_PKCS_OAEP,
            CKM_SHA_1,
            oaep_encrypt(&pk, CKM_SHA_1, &dek),
        ),
        (
            CKM_RSA_PKCS,
            0,
            pk.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, &dek).unwrap(),
        ),
    ];
    for (mt, hash, wrapped) in cases {
        let mut p = oaep(
            hash,
            if hash == CKM_SHA_1 {
                CKG_MGF1_SHA1
            } else {
                CKG_MGF1_SHA256
            },
        );
        let mc = if mt == CKM_RSA_PKCS_OAEP {
            mech_with(mt, &mut p)
        } else {
            mech(mt)
        };
        let (dek_key, value) = unwrap(h, mc, private, &wrapped)
            .unwrap_or_else(|rv| panic!("0x{mt:x}/0x{hash:x}: {}", rv_name(rv)));
        assert_eq!(value, dek);
        // The transit-KEK pattern: the unwrapped data key encrypts locally (AES-GCM,
        // opened by the aes-gcm crate).
        let mut iv = [7u8; 12];
        let mut gp = gcm_params(&mut iv, &mut [], 128);
        let ct = encrypt(m, h, mech_with(CKM_AES_GCM, &mut gp), dek_key, b"data").unwrap();
        let opened = aes_gcm::Aes256Gcm::new_from_slice(&dek)
            .unwrap()
            .decrypt(aes_gcm::Nonce::from_slice(&[7u8; 12]), ct.as_slice())
            .unwrap();
        assert_eq!(opened, b"data");
        // And wrapped by the service's key: the modulus length, unwrapped to the same key.
        let target = session_aes(h, &dek);
        let blob = wrap(h, mc, public, target).unwrap();
        assert_eq!(blob.len(), 256);
        assert_eq!(unwrap(h, mc, private, &blob).unwrap().1, dek);
    }
}

#[test]
fn rsa_pkcs1_decrypts_what_the_rsa_crate_encrypted() {
    let m = &env().m;
    let h = logged_in(m, "mhsm");
    let private = key(h, CKO_PRIVATE_KEY, "rsa");
    let pk = rsa_public(m, h, public_of(m, h, private));
    let mut rng = rsa::rand_core::OsRng;
    let ct = pk
        .encrypt(&mut rng, rsa::Pkcs1v15Encrypt, b"RSA1_5 plaintext")
        .unwrap();
    assert_eq!(
        decrypt(m, h, mech(CKM_RSA_PKCS), private, &ct).unwrap(),
        b"RSA1_5 plaintext"
    );
    // A ciphertext of the wrong length, and one that does not decrypt.
    assert_eq!(
        decrypt(m, h, mech(CKM_RSA_PKCS), private, &ct[1..]).unwrap_err(),
        CKR_ENCRYPTED_DATA_LEN_RANGE
    );
    // A tampered one never gives the plaintext: an error, or (OpenSSL's implicit
    // rejection against Bleichenbacher/Marvin, which the server's `cryptography` uses) a
    // stand-in message.
    let mut bad = ct.clone();
    bad[200] ^= 0x01;
    match decrypt(m, h, mech(CKM_RSA_PKCS), private, &bad) {
        Ok(pt) => assert_ne!(pt, b"RSA1_5 plaintext"),
        Err(rv) => assert_eq!(rv, CKR_ENCRYPTED_DATA_INVALID),
    }
}

/// AES-CBC with PKCS#7 padding by the aes crate's block cipher.
fn cbc_pad(key: &[u8], iv: &[u8; 16], pt: &[u8]) -> Vec<u8> {
    use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
    let n = 16 - pt.len() % 16;
    let mut data = pt.to_vec();
    data.extend(std::iter::repeat_n(n as u8, n));
    let mut prev = *iv;
    let mut out = Vec::new();
    for chunk in data.chunks(16) {
        let mut block = GenericArray::clone_from_slice(chunk);
        for (b, p) in block.iter_mut().zip(prev) {
            *b ^= p;
        }
        match key.len() {
            16 => aes::Aes128::new_from_slice(key)
                .unwrap()
                .encrypt_block(&mut block),
            24 => aes::Aes192::new_from_slice(key)
                .unwrap()
                .encrypt_block(&mut block),
            _ => aes::Aes256::new_from_slice(key)
                .unwrap()
                .encrypt_block(&mut block),
        }
        prev.copy_from_slice(&block);
        out.extend_from_slice(&block);
    }
    out
}

#[test]
fn aes_cbc_pad_with_the_callers_iv_checked_by_aes() {
    let m = &env().m;
    let h = logged_in(m, "mhsm");
    for label in ["kek256", "kek128"] {
        let k = key(h, CKO_SECRET_KEY, label);
        let material = material(h, k);
        for n in [0usize, 5, 16, 33] {
            let pt: Vec<u8> = (0..n as u8).collect();
            let mut iv: [u8; 16] = std::array::from_fn(|i| i as u8 * 11);
            let mut mc = mech(CKM_AES_CBC_PAD);
            mc.pParameter = iv.as_mut_ptr() as *mut _;
            mc.ulParameterLen = 16;
            let ct = encrypt(m, h, mc, k, &pt).unwrap();
            assert_eq!(ct, cbc_pad(&material, &iv, &pt), "{label}, {n} bytes");
            assert_eq!(decrypt(m, h, mc, k, &ct).unwrap(), pt);
        }
        // The IV is the caller's: none is a parameter error.
        assert_eq!(
            encrypt(m, h, mech(CKM_AES_CBC_PAD), k, b"x").unwrap_err(),
            CKR_MECHANISM_PARAM_INVALID
        );
    }
}

#[test]
fn p521_keys_sign_es512_verified_by_p521() {
    use p521::ecdsa::signature::{hazmat::PrehashVerifier, Verifier};
    let m = &env().m;
    let h = logged_in(m, "mhsm");
    let private = key(h, CKO_PRIVATE_KEY, "ec521");
    let public = public_of(m, h, private);
    check_key_pair(m, h, private, public);
    let vk = p521::ecdsa::VerifyingKey::from_sec1_bytes(&point_of(m, h, public)).unwrap();
    let sig = sign(m, h, mech(CKM_ECDSA_SHA512), private, b"es512").unwrap();
    assert_eq!(sig.len(), 132);
    let sig = p521::ecdsa::Signature::from_slice(&sig).unwrap();
    vk.verify(b"es512", &sig).expect("ES512 verifies with p521");
    check_verify(m, h, CKM_ECDSA_SHA512, public, b"es512", &sig.to_vec(), 3);
    let digest = {
        use sha2::Digest;
        sha2::Sha512::digest(b"prehashed").to_vec()
    };
    let sig = sign(m, h, mech(CKM_ECDSA), private, &digest).unwrap();
    vk.verify_prehash(&digest, &p521::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("CKM_ECDSA over a SHA-512 digest verifies");
    // A P-521 key pair made through the module.
    let p521_params: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
    let (gp, gs) = keypair(
        m,
        h,
        CKM_EC_KEY_PAIR_GEN,
        Template::new()
            .bytes(CKA_EC_PARAMS, p521_params)
            .bytes(CKA_LABEL, b"gen-ec521"),
        Template::new().bytes(CKA_LABEL, b"gen-ec521"),
        b"gen-ec521",
    );
    let vk = p521::ecdsa::VerifyingKey::from_sec1_bytes(&point_of(m, h, gp)).unwrap();
    let sig = sign(m, h, mech(CKM_ECDSA_SHA512), gs, b"new").unwrap();
    vk.verify(b"new", &p521::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("the new P-521 key signs");
}

fn flags(slot: &str, mt: CK_MECHANISM_TYPE) -> Result<CK_FLAGS, CK_RV> {
    let m = &env().m;
    let mut info = CK_MECHANISM_INFO {
        ulMinKeySize: 0,
        ulMaxKeySize: 0,
        flags: 0,
    };
    match ck!(
        m,
        C_GetMechanismInfo(slot_labelled(m, slot, true), mt, &mut info)
    ) {
        CKR_OK => Ok(info.flags),
        rv => Err(rv),
    }
}

#[test]
fn mechanisms_say_what_wraps_and_key_vault_has_no_aes() {
    let m = &env().m;
    logged_in(m, "mhsm");
    let kw = flags("mhsm", CKM_AES_KEY_WRAP).unwrap();
    let all = CKF_WRAP | CKF_UNWRAP | CKF_ENCRYPT | CKF_DECRYPT;
    assert_eq!(kw & all, all);
    assert_ne!(flags("mhsm", CKM_AES_CBC_PAD).unwrap() & CKF_DECRYPT, 0);
    let rsa = flags("mhsm", CKM_RSA_PKCS).unwrap();
    assert_eq!(
        rsa & (CKF_SIGN | CKF_DECRYPT | CKF_UNWRAP),
        CKF_SIGN | CKF_DECRYPT | CKF_UNWRAP
    );
    assert_ne!(flags("mhsm", CKM_RSA_PKCS_OAEP).unwrap() & CKF_UNWRAP, 0);
    // Key Vault (known once it answered): RSA wrapping, no AES.
    let h = logged_in(m, "kv");
    assert_eq!(flags("kv", CKM_AES_KEY_WRAP), Err(CKR_MECHANISM_INVALID));
    assert_eq!(flags("kv", CKM_AES_CBC_PAD), Err(CKR_MECHANISM_INVALID));
    let private = key(h, CKO_PRIVATE_KEY, "rsa-soft");
    let pk = rsa_public(m, h, public_of(m, h, private));
    let ct = oaep_encrypt(&pk, CKM_SHA256, &[9u8; 32]);
    let mut p = oaep(CKM_SHA256, CKG_MGF1_SHA256);
    assert_eq!(
        unwrap(h, mech_with(CKM_RSA_PKCS_OAEP, &mut p), private, &ct)
            .unwrap()
            .1,
        [9u8; 32]
    );
}

#[test]
fn a_key_disabled_after_listing_fails_cleanly_and_leaves_the_list() {
    let e = env();
    let m = &e.m;
    let h = logged_in(m, "mhsm");
    let k = key(h, CKO_SECRET_KEY, "fading");
    let mut iv = [0u8; 12];
    contract::gcm_encrypt(m, h, k, &mut iv, b"", b"before").unwrap();
    e.mhsm.ctl(
        "attrs",
        serde_json::json!({"name": "fading", "enabled": false}),
    );
    // The service's 403 KeyDisabled: a code C_Encrypt may return, and no failover.
    let mut iv = [0u8; 12];
    assert_eq!(
        contract::gcm_encrypt(m, h, k, &mut iv, b"", b"after"),
        Err(CKR_FUNCTION_FAILED)
    );
    // The next search reads the list again: the version is gone (no waiting out the
    // list's time to live).
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .bytes(CKA_LABEL, b"fading");
    assert!(find(m, h, &mut t).is_empty());
    assert!(key(h, CKO_SECRET_KEY, "kek256") != 0);
}
