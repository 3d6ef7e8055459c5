//! The gcp-kms backend through the built module, against conformance/gcpkms_server.py (the
//! Cloud KMS REST v1 API and Google's token endpoint, with real cryptography): every
//! mechanism checked by independent crates, the OpenBao seal's sequence on raw AES-GCM,
//! key listing and creation, the error mapping, injected faults, token refresh, and a dead
//! endpoint that neither blocks `C_Initialize` nor the other slots.
//!
//! One module instance serves every test (PKCS#11 allows one `C_Initialize` per process);
//! each group of tests has its own slot so that logins and listings do not interfere, and
//! the tests that inject faults share one server and take turns (`FAULTS`).

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
mod contract;
mod gcp_server;
use common::*;
use contract::*;
use cryptoki_sys::*;
use gcp_server::*;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

// ---- the module and its slots ------------------------------------------------------------

struct Env {
    m: Module,
    main: Server,
    faults: Server,
    refresh: Server,
    dead: Silent,
}

static ENV: OnceLock<Env> = OnceLock::new();
/// The fault tests take turns on the fault server.
static FAULTS: Mutex<()> = Mutex::new(());

fn env() -> &'static Env {
    ENV.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hsmux-gcp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        remove_at_exit(&dir);
        let main = Server::start(&dir, "main", RING_MAIN, MAIN_KEYS, &[]);
        let faults = Server::start(
            &dir,
            "faults",
            RING_FAULTS,
            &[
                ("ec256", "EC_SIGN_P256_SHA256", "HSM", 1, &[]),
                ("aes", "AES_256_GCM", "HSM", 1, &[]),
                ("rsa-oaep", "RSA_DECRYPT_OAEP_2048_SHA256", "HSM", 1, &[]),
                ("hmac", "HMAC_SHA256", "HSM", 1, &[]),
            ],
            &[],
        );
        // Tokens live 25 s: gcp_auth renews 20 s before the end, so after 5 s.
        let refresh = Server::start(
            &dir,
            "refresh",
            RING_REFRESH,
            &[("hmac", "HMAC_SHA256", "HSM", 1, &[])],
            &["--expires-in", "25"],
        );
        let dead = Silent::start();
        let slot = |label: &str, s: &Server, ring: &str, extra: &str| {
            format!(
                "[[slot]]\nlabel = \"{label}\"\nbackend = \"gcp-kms\"\nkey_ring = \"{ring}\"\ncredentials = \"{}\"\nendpoint = \"{}\"\n{extra}\n",
                s.dir.join("sa.json").display(),
                s.url()
            )
        };
        let mut cfg = String::new();
        cfg += &slot("gcp", &main, RING_MAIN, "timeout_ms = 10000");
        cfg += &slot("gcp-named", &main, RING_MAIN, "keys = [\"ec256\", \"aes-hsm\"]");
        cfg += &slot("gcp-hsm", &main, RING_MAIN, "hsm_only = true");
        cfg += &slot("gcp-seal", &main, RING_MAIN, "keys = [\"seal-aes\"]");
        cfg += &slot("gcp-siv", &main, RING_MAIN, "keys = [\"seal-aes\"]\ngcm_iv = \"service\"");
        cfg += &slot("gcp-errors", &main, RING_MAIN, "keys = [\"doomed\", \"disabled-later\", \"denied\"]");
        cfg += &slot("gcp-gen", &main, RING_MAIN, "keys = [\"gen-ec\", \"gen-aes\", \"gen-rsa\"]");
        cfg += &format!(
            "[[slot]]\nlabel = \"gcp-rogue\"\nbackend = \"gcp-kms\"\nkey_ring = \"{RING_MAIN}\"\ncredentials = \"{}\"\nendpoint = \"{}\"\n",
            main.dir.join("rogue.json").display(),
            main.url()
        );
        cfg += &slot("gcp-faults", &faults, RING_FAULTS, "timeout_ms = 1500");
        cfg += &slot("gcp-refresh", &refresh, RING_REFRESH, "");
        cfg += &format!(
            "[[slot]]\nlabel = \"gcp-dead\"\nbackend = \"gcp-kms\"\nkey_ring = \"{RING_MAIN}\"\ncredentials = \"{}\"\nendpoint = \"http://127.0.0.1:{}\"\ntimeout_ms = 1000\n",
            main.dir.join("sa.json").display(),
            dead.port
        );
        std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
        let m = load();
        assert_rv!(initialize(&m), CKR_OK);
        Env {
            m,
            main,
            faults,
            refresh,
            dead,
        }
    })
}

/// A read/write session on the slot labelled `label`, logged in (the login is the slot's,
/// shared with the other tests on it).
fn session(label: &str) -> CK_SESSION_HANDLE {
    logged_in(&env().m, label)
}

/// The objects of `class` labelled `label`, in the order C_FindObjects gives them.
fn objects(h: CK_SESSION_HANDLE, class: CK_OBJECT_CLASS, label: &str) -> Vec<CK_OBJECT_HANDLE> {
    contract::objects(&env().m, h, class, label)
}

/// The primary (first found) private or secret key labelled `label`.
fn key(h: CK_SESSION_HANDLE, class: CK_OBJECT_CLASS, label: &str) -> CK_OBJECT_HANDLE {
    first(&env().m, h, class, label)
}

fn public_of(h: CK_SESSION_HANDLE, private: CK_OBJECT_HANDLE) -> CK_OBJECT_HANDLE {
    contract::public_of(&env().m, h, private)
}

fn id_of(h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> String {
    id_text(&env().m, h, o)
}

fn rsa_public(h: CK_SESSION_HANDLE, public: CK_OBJECT_HANDLE) -> rsa::RsaPublicKey {
    contract::rsa_public(&env().m, h, public)
}

fn gcm_encrypt(
    h: CK_SESSION_HANDLE,
    k: CK_OBJECT_HANDLE,
    iv: &mut [u8; 12],
    aad: &[u8],
    pt: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    contract::gcm_encrypt(&env().m, h, k, iv, aad, pt)
}

fn gcm_decrypt(
    h: CK_SESSION_HANDLE,
    k: CK_OBJECT_HANDLE,
    iv: &[u8; 12],
    aad: &[u8],
    ct: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    contract::gcm_decrypt(&env().m, h, k, iv, aad, ct)
}

// ---- mechanisms (the contract's checks, and what Cloud KMS's algorithms refuse) -----------

#[test]
fn ecdsa_p256_and_p384_signatures_verify_with_independent_crates() {
    let m = &env().m;
    let h = session("gcp");
    let msg = b"a message signed by Cloud HSM";
    let k = key(h, CKO_PRIVATE_KEY, "ec256");
    let p = public_of(h, k);
    check_key_pair(m, h, k, p);
    check_ecdsa_p256(m, h, k, p, &point_of(m, h, p), msg);
    // The key's algorithm is EC_SIGN_P256_SHA256: SHA-384 is refused before any request.
    assert_eq!(
        sign(m, h, mech(CKM_ECDSA_SHA384), k, msg),
        Err(CKR_MECHANISM_INVALID)
    );
    let k = key(h, CKO_PRIVATE_KEY, "ec384");
    let p = public_of(h, k);
    check_key_pair(m, h, k, p);
    check_ecdsa_p384(m, h, k, p, &point_of(m, h, p), msg);
}

#[test]
fn rsa_pkcs1_and_pss_signatures_verify_with_the_rsa_crate() {
    let m = &env().m;
    let h = session("gcp");
    let msg = b"RSA over a digest";
    let k = key(h, CKO_PRIVATE_KEY, "rsa-pkcs1");
    let p = public_of(h, k);
    check_rsa_pkcs1_sha256(m, h, k, Some(p), &rsa_public(h, p), msg);
    let pss_sign = |k, salt| {
        let mut p = pss(CKM_SHA256, CKG_MGF1_SHA256, salt);
        sign(m, h, mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut p), k, msg)
    };
    // A PKCS#1 key does not do PSS (its algorithm fixes the padding).
    assert_eq!(pss_sign(k, 32), Err(CKR_MECHANISM_INVALID));
    let k = key(h, CKO_PRIVATE_KEY, "rsa-pss");
    let p = public_of(h, k);
    check_rsa_pss_sha256(m, h, k, p, &rsa_public(h, p), 32, msg);
    // Cloud KMS's PSS salt is the digest length: another salt is refused.
    assert_eq!(pss_sign(k, 20), Err(CKR_MECHANISM_INVALID));
}

#[test]
fn rsa_oaep_decrypts_what_the_rsa_crate_encrypted() {
    let m = &env().m;
    let h = session("gcp");
    let secret = b"a 32-byte OpenBao root key......";
    let k = key(h, CKO_PRIVATE_KEY, "rsa-oaep");
    let pk = rsa_public(h, public_of(h, k));
    check_rsa_oaep(m, h, k, &pk, CKM_SHA256, secret);
    // Another hash than the key's algorithm: refused before any request.
    let ct = oaep_encrypt(&pk, CKM_SHA256, secret);
    let mut p1 = oaep(CKM_SHA_1, CKG_MGF1_SHA1);
    assert_eq!(
        decrypt(m, h, mech_with(CKM_RSA_PKCS_OAEP, &mut p1), k, &ct),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
    let k = key(h, CKO_PRIVATE_KEY, "rsa-oaep-sha1");
    check_rsa_oaep(m, h, k, &rsa_public(h, public_of(h, k)), CKM_SHA_1, secret);
}

#[test]
fn ed25519_signature_verifies_with_dalek() {
    let m = &env().m;
    let h = session("gcp");
    let k = key(h, CKO_PRIVATE_KEY, "ed25519");
    check_ed25519(
        m,
        h,
        k,
        public_of(h, k),
        b"Ed25519 signs the message itself",
    );
}

#[test]
fn hmac_tags_match_the_hmac_crate_and_verify_in_the_service() {
    let e = env();
    let m = &e.m;
    let h = session("gcp");
    let k = key(h, CKO_SECRET_KEY, "hmac");
    assert_eq!(
        get_attr(m, h, k, CKA_KEY_TYPE).unwrap(),
        (CKK_SHA256_HMAC as CK_ULONG).to_ne_bytes()
    );
    check_remote_secret(m, h, k);
    let data = b"data to authenticate";
    check_hmac(
        m,
        h,
        k,
        CKM_SHA256_HMAC,
        &e.main.material(&id_of(h, k)),
        data,
    );
    // The key is HMAC_SHA256: SHA-512 is not its mechanism.
    assert!(sign(m, h, mech(CKM_SHA512_HMAC), k, data).is_err());
}

#[test]
fn aes_gcm_raw_encryption_with_aad_checked_by_aes_gcm() {
    let e = env();
    let m = &e.m;
    let h = session("gcp");
    let k = key(h, CKO_SECRET_KEY, "aes-soft");
    let pt = b"plaintext under a Cloud KMS raw AES-256-GCM key";
    check_aes_gcm(m, h, k, &e.main.material(&id_of(h, k)), pt, b"header");
    // An empty plaintext works too (proto3 JSON leaves empty fields out).
    let mut iv = [0u8; 12];
    let ct = gcm_encrypt(h, k, &mut iv, b"header", b"").unwrap();
    assert_eq!(gcm_decrypt(h, k, &iv, b"header", &ct).unwrap(), b"");
}

#[test]
fn hsm_raw_encryption_above_8_kib_is_refused_before_any_request() {
    let e = env();
    let h = session("gcp");
    let k = key(h, CKO_SECRET_KEY, "aes-limit");
    let path = format!("{}:rawEncrypt", id_of(h, k));
    let aad = vec![0x61u8; 192];
    let ct =
        gcm_encrypt(h, k, &mut [0u8; 12], &aad, &[0x41u8; 8000]).expect("8000 + 192 = 8 KiB fits");
    assert_eq!(ct.len(), 8016);
    let before = e.main.calls(&path);
    assert_eq!(
        gcm_encrypt(h, k, &mut [0u8; 12], &aad, &[0x41u8; 8001]),
        Err(CKR_DATA_LEN_RANGE)
    );
    assert_eq!(e.main.calls(&path), before, "no request was sent");
    // A software key takes more (up to 64 KiB).
    let soft = key(h, CKO_SECRET_KEY, "aes-soft");
    assert!(gcm_encrypt(h, soft, &mut [0u8; 12], &aad, &[0x41u8; 9000]).is_ok());
}

// ---- the OpenBao seal -----------------------------------------------------------------------

#[test]
fn openbao_seal_sequence_on_raw_aes_gcm() {
    check_seal_sequence(
        &env().m,
        "gcp-seal",
        "gcp-siv",
        "seal-aes",
        b"seal pin",
        Found::One,
    );
}

// ---- keys ----------------------------------------------------------------------------------

fn labels(h: CK_SESSION_HANDLE) -> std::collections::BTreeSet<String> {
    let m = &env().m;
    let mut t = Template::new();
    find(m, h, &mut t)
        .into_iter()
        .map(|o| String::from_utf8(get_attr(m, h, o, CKA_LABEL).unwrap()).unwrap())
        .collect()
}

#[test]
fn the_ring_or_the_named_keys_are_listed_with_primaries_first() {
    let m = &env().m;
    let h = session("gcp");
    let all = labels(h);
    for (name, alg, ..) in MAIN_KEYS
        .iter()
        .filter(|k| !CHANGED_BY_TESTS.contains(&k.0))
    {
        let mapped = !matches!(*alg, "GOOGLE_SYMMETRIC_ENCRYPTION" | "AES_256_CBC");
        assert_eq!(all.contains(*name), mapped, "{name} ({alg})");
    }
    // aes-hsm: versions 1 and 3 (2 is DISABLED), the newest first.
    let aes = objects(h, CKO_SECRET_KEY, "aes-hsm");
    let ids: Vec<String> = aes.iter().map(|o| id_of(h, *o)).collect();
    assert_eq!(
        ids,
        vec![
            format!("{RING_MAIN}/cryptoKeys/aes-hsm/cryptoKeyVersions/3"),
            format!("{RING_MAIN}/cryptoKeys/aes-hsm/cryptoKeyVersions/1"),
        ]
    );
    // An older version still works (decrypt what it encrypted).
    let mut iv = [0u8; 12];
    let ct = gcm_encrypt(h, aes[1], &mut iv, &[], b"old version").unwrap();
    assert_eq!(
        gcm_decrypt(h, aes[1], &iv, &[], &ct).unwrap(),
        b"old version"
    );
    assert_eq!(
        gcm_decrypt(h, aes[0], &iv, &[], &ct),
        Err(CKR_ENCRYPTED_DATA_INVALID)
    );
    let ec = objects(h, CKO_PRIVATE_KEY, "ec256");
    assert_eq!(ec.len(), 2);
    assert!(id_of(h, ec[0]).ends_with("/cryptoKeyVersions/2"));
    // Attributes of a remote key.
    // Every version is a key pair of the contract's object model.
    for k in &ec {
        check_key_pair(m, h, *k, public_of(h, *k));
    }
    assert_eq!(get_attr(m, h, ec[0], CKA_EC_PARAMS).unwrap(), P256_PARAMS);

    let named = labels(session("gcp-named"));
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        vec!["aes-hsm".to_string(), "ec256".to_string()]
    );

    // Token info: no request needed, stable serial per endpoint and ring.
    let ti = token_info(m, slot_labelled(m, "gcp", true));
    assert_eq!(text(&ti.manufacturerID), "Google");
    assert_eq!(text(&ti.model), "Cloud KMS");
    let serial = text(&ti.serialNumber);
    assert_eq!(serial.len(), 16);
    assert!(serial.chars().all(|c| c.is_ascii_hexdigit()));
    let named = token_info(m, slot_labelled(m, "gcp-named", true));
    assert_eq!(
        text(&named.serialNumber),
        serial,
        "same endpoint and ring, same serial"
    );
    let other = token_info(m, slot_labelled(m, "gcp-faults", true));
    assert_ne!(text(&other.serialNumber), serial);
}

#[test]
fn hsm_only_hides_software_versions() {
    let hsm = labels(session("gcp-hsm"));
    for (name, alg, prot, ..) in MAIN_KEYS
        .iter()
        .filter(|k| !CHANGED_BY_TESTS.contains(&k.0))
    {
        let mapped = !matches!(*alg, "GOOGLE_SYMMETRIC_ENCRYPTION" | "AES_256_CBC");
        assert_eq!(
            hsm.contains(*name),
            mapped && *prot == "HSM",
            "{name} ({prot})"
        );
    }
    assert!(
        labels(session("gcp")).contains("aes-soft"),
        "shown where hsm_only is off"
    );
}

#[test]
fn generate_creates_keys_then_new_versions() {
    use p256::ecdsa::signature::Verifier;
    let m = &env().m;
    let h = session("gcp-gen");
    let pair = |label: &str| {
        keypair(
            m,
            h,
            CKM_EC_KEY_PAIR_GEN,
            Template::new()
                .bytes(CKA_EC_PARAMS, P256_PARAMS)
                .bytes(CKA_LABEL, label.as_bytes()),
            Template::new()
                .bytes(CKA_LABEL, label.as_bytes())
                .bool(CKA_SIGN, true),
            label.as_bytes(),
        )
    };
    let (public, private) = pair("gen-ec");
    assert!(id_of(h, private).ends_with("/cryptoKeys/gen-ec/cryptoKeyVersions/1"));
    let point = ec_point(&get_attr(m, h, public, CKA_EC_POINT).unwrap());
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    let sig = sign(m, h, mech(CKM_ECDSA_SHA256), private, b"new key").unwrap();
    vk.verify(
        b"new key",
        &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
    )
    .unwrap();
    // The same label again: a new version, which becomes the one found first.
    let (_, second) = pair("gen-ec");
    assert!(id_of(h, second).ends_with("/cryptoKeys/gen-ec/cryptoKeyVersions/2"));
    let found = objects(h, CKO_PRIVATE_KEY, "gen-ec");
    assert_eq!(found.len(), 2);
    assert_eq!(found[0], second);

    let aes = secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bytes(CKA_LABEL, b"gen-aes")
            .bool(CKA_TOKEN, true),
    );
    let mut iv = [0u8; 12];
    let ct = gcm_encrypt(h, aes, &mut iv, &[], b"with a new key").unwrap();
    assert_eq!(
        gcm_decrypt(h, aes, &iv, &[], &ct).unwrap(),
        b"with a new key"
    );

    let (rpub, rpriv) = keypair(
        m,
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        Template::new()
            .ulong(CKA_MODULUS_BITS, 2048)
            .bytes(CKA_LABEL, b"gen-rsa"),
        Template::new()
            .bytes(CKA_LABEL, b"gen-rsa")
            .bool(CKA_DECRYPT, true),
        b"gen-rsa",
    );
    let ct = oaep_encrypt(&rsa_public(h, rpub), CKM_SHA256, b"to the new key");
    let mut p = oaep(CKM_SHA256, CKG_MGF1_SHA256);
    assert_eq!(
        decrypt(m, h, mech_with(CKM_RSA_PKCS_OAEP, &mut p), rpriv, &ct).unwrap(),
        b"to the new key"
    );

    // An AES key under the name of the EC key: refused, nothing created.
    let mut k = 0;
    let mut mc = mech(CKM_AES_KEY_GEN);
    let mut t = Template::new()
        .ulong(CKA_VALUE_LEN, 32)
        .bytes(CKA_LABEL, b"gen-ec");
    assert_rv!(
        ck!(m, C_GenerateKey(h, &mut mc, t.ptr(), t.len(), &mut k)),
        CKR_TEMPLATE_INCONSISTENT
    );
}

// ---- errors ----------------------------------------------------------------------------------

#[test]
fn service_errors_map_to_pkcs11_codes() {
    let e = env();
    let m = &e.m;
    let h = session("gcp-errors");
    let doomed = key(h, CKO_SECRET_KEY, "doomed");
    let disabled = key(h, CKO_SECRET_KEY, "disabled-later");
    let denied = key(h, CKO_SECRET_KEY, "denied");
    for k in [doomed, disabled, denied] {
        assert!(sign(m, h, mech(CKM_SHA256_HMAC), k, b"x").is_ok());
    }
    // Only codes C_Sign and C_Verify may return (CKR_KEY_HANDLE_INVALID and
    // CKR_KEY_FUNCTION_NOT_PERMITTED are their Init's, not theirs).
    // NOT_FOUND (the key was deleted after the listing).
    e.main.ctl(
        "delete",
        serde_json::json!({ "name": format!("{RING_MAIN}/cryptoKeys/doomed") }),
    );
    assert_eq!(
        sign(m, h, mech(CKM_SHA256_HMAC), doomed, b"x"),
        Err(CKR_FUNCTION_FAILED)
    );
    // FAILED_PRECONDITION (the version was disabled).
    e.main.ctl(
        "state",
        serde_json::json!({ "name": id_of(h, disabled), "state": "DISABLED" }),
    );
    assert_eq!(
        sign(m, h, mech(CKM_SHA256_HMAC), disabled, b"x"),
        Err(CKR_FUNCTION_FAILED)
    );
    // PERMISSION_DENIED: the signature request is rejected.
    e.main
        .ctl("deny", serde_json::json!({ "name": id_of(h, denied) }));
    assert_eq!(
        sign(m, h, mech(CKM_SHA256_HMAC), denied, b"x"),
        Err(CKR_FUNCTION_REJECTED)
    );
    assert_rv!(
        verify(m, h, mech(CKM_SHA256_HMAC), denied, b"x", &[0u8; 32]),
        CKR_FUNCTION_FAILED
    );
}

#[test]
fn refused_credentials_are_pin_incorrect() {
    check_refused_login(&env().m, "gcp-rogue");
}

// ---- faults ---------------------------------------------------------------------------------

fn faults() -> std::sync::MutexGuard<'static, ()> {
    let g = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    env().faults.ctl("clear", serde_json::json!({}));
    g
}

/// The fault slot's keys: (session, EC private key, its verifying key, AES key, RSA key, HMAC key).
struct FaultKeys {
    h: CK_SESSION_HANDLE,
    ec: CK_OBJECT_HANDLE,
    vk: p256::ecdsa::VerifyingKey,
    aes: CK_OBJECT_HANDLE,
    rsa: CK_OBJECT_HANDLE,
    rsa_pub: rsa::RsaPublicKey,
    hmac: CK_OBJECT_HANDLE,
}

fn fault_keys() -> FaultKeys {
    let m = &env().m;
    let h = session("gcp-faults");
    let ec = key(h, CKO_PRIVATE_KEY, "ec256");
    let point = ec_point(&get_attr(m, h, public_of(h, ec), CKA_EC_POINT).unwrap());
    let rsa = key(h, CKO_PRIVATE_KEY, "rsa-oaep");
    FaultKeys {
        h,
        ec,
        vk: p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap(),
        aes: key(h, CKO_SECRET_KEY, "aes"),
        rsa_pub: rsa_public(h, public_of(h, rsa)),
        rsa,
        hmac: key(h, CKO_SECRET_KEY, "hmac"),
    }
}

fn ec_sign_ok(k: &FaultKeys) -> Result<(), CK_RV> {
    use p256::ecdsa::signature::Verifier;
    let sig = sign(&env().m, k.h, mech(CKM_ECDSA_SHA256), k.ec, b"under faults")?;
    k.vk.verify(
        b"under faults",
        &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
    )
    .expect("a signature that is returned verifies");
    Ok(())
}

#[test]
fn unavailable_is_retried_and_persistent_unavailable_is_device_error() {
    let _g = faults();
    let e = env();
    let k = fault_keys();
    let path = format!("{}:asymmetricSign", id_of(k.h, k.ec));
    let before = e.faults.calls(&path);
    e.faults.fault("unavailable", 2, ":asymmetricSign");
    ec_sign_ok(&k).expect("two 503s, then the third attempt succeeds");
    assert_eq!(e.faults.calls(&path), before + 3);

    e.faults.fault("unavailable", 1000, ":asymmetricSign");
    assert_eq!(ec_sign_ok(&k), Err(CKR_DEVICE_ERROR));
    e.faults.fault("internal", 1000, ":rawEncrypt");
    assert_eq!(
        gcm_encrypt(k.h, k.aes, &mut [0u8; 12], &[], b"x"),
        Err(CKR_DEVICE_ERROR)
    );
    e.faults.ctl("clear", serde_json::json!({}));
    ec_sign_ok(&k).expect("the service is back");
}

#[test]
fn malformed_or_tampered_answers_are_device_errors_never_results() {
    let _g = faults();
    let e = env();
    let m = &e.m;
    let k = fault_keys();
    let pt = b"a secret the answers must not corrupt";
    let mut iv = [0u8; 12];
    let sealed = gcm_encrypt(k.h, k.aes, &mut iv, &[], pt).unwrap();
    let rsa_ct = oaep_encrypt(&k.rsa_pub, CKM_SHA256, pt);
    let kinds = [
        "corrupt_data",
        "corrupt_crc",
        "unverified",
        "bad_json",
        "wrong_length",
        "wrong_name",
    ];
    for kind in kinds {
        e.faults.fault(kind, 1, ":asymmetricSign");
        assert_eq!(
            ec_sign_ok(&k),
            Err(CKR_DEVICE_ERROR),
            "asymmetricSign with {kind}"
        );

        e.faults.fault(kind, 1, ":macSign");
        assert_eq!(
            sign(m, k.h, mech(CKM_SHA256_HMAC), k.hmac, b"data"),
            Err(CKR_DEVICE_ERROR),
            "macSign with {kind}"
        );

        e.faults.fault(kind, 1, ":rawEncrypt");
        let mut out_iv = [0u8; 12];
        assert_eq!(
            gcm_encrypt(k.h, k.aes, &mut out_iv, &[], pt),
            Err(CKR_DEVICE_ERROR),
            "rawEncrypt with {kind}"
        );
        assert_eq!(
            out_iv, [0u8; 12],
            "no IV handed out from a refused answer ({kind})"
        );

        if kind != "wrong_name" {
            // rawDecrypt and asymmetricDecrypt answers carry no name.
            e.faults.fault(kind, 1, ":rawDecrypt");
            assert_eq!(
                gcm_decrypt(k.h, k.aes, &iv, &[], &sealed),
                Err(CKR_DEVICE_ERROR),
                "rawDecrypt with {kind}"
            );
            e.faults.fault(kind, 1, ":asymmetricDecrypt");
            let mut p = oaep(CKM_SHA256, CKG_MGF1_SHA256);
            assert_eq!(
                decrypt(m, k.h, mech_with(CKM_RSA_PKCS_OAEP, &mut p), k.rsa, &rsa_ct),
                Err(CKR_DEVICE_ERROR),
                "asymmetricDecrypt with {kind}"
            );
        }
    }
    // macVerify answers carry no bytes, only flags: dropped flags, broken JSON, another
    // version's name, and a verdict flipped on the way (verifiedSuccessIntegrity disagrees),
    // for a good tag and for a bad one.
    let tag = sign(m, k.h, mech(CKM_SHA256_HMAC), k.hmac, b"data").unwrap();
    let mut bad_tag = tag.clone();
    bad_tag[0] ^= 1;
    for kind in ["unverified", "bad_json", "wrong_name", "flip_success"] {
        for t in [&tag, &bad_tag] {
            e.faults.fault(kind, 1, ":macVerify");
            assert_rv!(
                verify(m, k.h, mech(CKM_SHA256_HMAC), k.hmac, b"data", t),
                CKR_DEVICE_ERROR,
                "macVerify with {kind}"
            );
        }
    }
    assert_rv!(
        verify(m, k.h, mech(CKM_SHA256_HMAC), k.hmac, b"data", &tag),
        CKR_OK
    );
    assert_rv!(
        verify(m, k.h, mech(CKM_SHA256_HMAC), k.hmac, b"data", &bad_tag),
        CKR_SIGNATURE_INVALID
    );
    // Nothing stuck: every operation works again with the right results.
    ec_sign_ok(&k).unwrap();
    assert_eq!(gcm_decrypt(k.h, k.aes, &iv, &[], &sealed).unwrap(), pt);
    let mut p = oaep(CKM_SHA256, CKG_MGF1_SHA256);
    assert_eq!(
        decrypt(m, k.h, mech_with(CKM_RSA_PKCS_OAEP, &mut p), k.rsa, &rsa_ct).unwrap(),
        pt
    );
}

#[test]
fn an_answer_later_than_the_deadline_is_device_error() {
    let _g = faults();
    let e = env();
    let k = fault_keys();
    // The slot's timeout_ms is 1500; the server holds the answer 20 s.
    e.faults.ctl(
        "fault",
        serde_json::json!({"kind": "delay", "count": 1, "match": ":asymmetricSign", "delay_ms": 20000}),
    );
    // Not a speed claim: the call ended at its deadline instead of waiting for the answer.
    check_device_error_within(
        "a sign answered after 20 s",
        Duration::from_secs(10),
        || ec_sign_ok(&k).err().unwrap_or(CKR_OK),
    );
    ec_sign_ok(&k).expect("the next call is answered");
}

#[test]
fn a_refused_token_is_renewed_once_then_not_logged_in() {
    let _g = faults();
    let e = env();
    let k = fault_keys();
    ec_sign_ok(&k).unwrap();
    let grants = e.faults.token_grants();
    // Revoked tokens: the service answers UNAUTHENTICATED, hsmux gets a new token once.
    e.faults.ctl("revoke", serde_json::json!({}));
    ec_sign_ok(&k).expect("a new token, and the call succeeds");
    assert_eq!(e.faults.token_grants(), grants + 1);
    // UNAUTHENTICATED even with a new token: not logged in.
    e.faults.fault("unauthenticated", 2, ":asymmetricSign");
    assert_eq!(ec_sign_ok(&k), Err(CKR_USER_NOT_LOGGED_IN));
    ec_sign_ok(&k).unwrap();
}

#[test]
fn tokens_are_refreshed_before_they_expire() {
    let e = env();
    let m = &e.m;
    let h = session("gcp-refresh");
    let k = key(h, CKO_SECRET_KEY, "hmac");
    sign(m, h, mech(CKM_SHA256_HMAC), k, b"first").unwrap();
    let first = e.refresh.token_grants();
    assert!(first >= 1);
    // Tokens of this server live 25 s and are renewed 20 s before they end.
    std::thread::sleep(Duration::from_secs(6));
    sign(m, h, mech(CKM_SHA256_HMAC), k, b"after renewal").unwrap();
    assert!(
        e.refresh.token_grants() > first,
        "a new token was fetched before the old one expired"
    );
    let again = e.refresh.token_grants();
    sign(m, h, mech(CKM_SHA256_HMAC), k, b"cached").unwrap();
    assert_eq!(
        e.refresh.token_grants(),
        again,
        "a fresh token is reused, not fetched per call"
    );
}

#[test]
fn a_dead_endpoint_blocks_neither_initialize_nor_other_slots() {
    let e = env();
    let m = &e.m;
    // C_Initialize (in env()) and the token info made no connection to it.
    let dead = slot_labelled(m, "gcp-dead", true);
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(ck!(m, C_GetTokenInfo(dead, &mut ti)), CKR_OK);
    assert_eq!(e.dead.accepted(), 0, "no connection before a login");
    let waiting = std::thread::spawn(move || {
        let m = &env().m;
        let h = open(m, dead, true);
        login(m, h, CKU_USER, b"any")
    });
    // While that login waits on the dead service, another slot works.
    let h = session("gcp");
    let k = key(h, CKO_SECRET_KEY, "hmac");
    assert_eq!(
        sign(m, h, mech(CKM_SHA256_HMAC), k, b"meanwhile")
            .unwrap()
            .len(),
        32
    );
    assert_rv!(waiting.join().unwrap(), CKR_DEVICE_ERROR);
    assert!(e.dead.accepted() >= 1, "the login did reach the endpoint");
}
