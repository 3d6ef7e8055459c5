//! AWS KMS slots through the built module against moto's server (real: key listing,
//! metadata, public keys, HMAC, key creation, errors) and against the faithful KMS test
//! server of conformance/aws/kms_server.py where moto is not faithful (moto's `Sign` hashes
//! a `MessageType=DIGEST` digest again, its RSA-OAEP is not RSA, its PSS salt is the
//! maximum): signatures over digests, PSS with the digest-length salt, real OAEP, wrong
//! MACs, disabled and pending-deletion keys, wrong credentials, faults (5xx, throttling,
//! delays, malformed and wrong-length answers) and a server that stops answering.
//! Every signature is checked with p256/p384/rsa against the public key the server gave
//! (fetched here, not through hsmux); MACs with hmac over known key material.

#![allow(clippy::macro_metavars_in_unsafe)]
mod aws_servers;
mod common;
mod contract;
use aws_servers::*;
use base64::Engine as _;
use common::*;
use contract::*;
use cryptoki_sys::*;
use serde_json::json;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

const AK: &str = "AKIDTEST";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const MAC256: [u8; 32] = [0x5a; 32];
const MAC512: [u8; 64] = [0x6b; 64];

struct Setup {
    m: Module,
    faithful: Server,
    faulty: Server,
    dead: Mutex<Server>,
    moto: Server,
    /// Key ids by alias (without `alias/`) per server.
    f_keys: std::collections::HashMap<String, String>,
    x_keys: std::collections::HashMap<String, String>,
    m_keys: std::collections::HashMap<String, String>,
    _blackhole: std::net::TcpListener,
}
unsafe impl Sync for Setup {}
unsafe impl Send for Setup {}

static SETUP: OnceLock<Setup> = OnceLock::new();
/// The servers' fault settings and statistics are shared: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn make_key(port: u16, spec: &str, usage: &str, alias: Option<&str>) -> String {
    let (st, v) = api(
        port,
        "TrentService.CreateKey",
        AK,
        json!({"KeySpec": spec, "KeyUsage": usage}),
    );
    assert_eq!(st, 200, "CreateKey {spec}: {v}");
    let id = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    if let Some(a) = alias {
        let (st, v) = api(
            port,
            "TrentService.CreateAlias",
            AK,
            json!({"AliasName": format!("alias/{a}"), "TargetKeyId": id}),
        );
        assert_eq!(st, 200, "CreateAlias {a}: {v}");
    }
    id
}

fn import_mac(port: u16, spec: &str, material: &[u8], alias: &str) -> String {
    let v = control(
        port,
        "/__import",
        json!({"spec": spec, "usage": "GENERATE_VERIFY_MAC", "material": B64.encode(material), "alias": format!("alias/{alias}")}),
    );
    v["KeyId"].as_str().unwrap().to_string()
}

fn slot(label: &str, endpoint: &str, extra: &str) -> String {
    format!("[[slot]]\nlabel = \"{label}\"\nbackend = \"aws-kms\"\nregion = \"us-east-1\"\nendpoint = \"{endpoint}\"\n{extra}\n")
}

fn setup() -> &'static Setup {
    SETUP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hsmux-aws-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        remove_at_exit(&dir);
        let faithful = python_server("kms_server.py", &["--access-key", AK]);
        let faulty = python_server("kms_server.py", &["--access-key", AK]);
        let dead = python_server("kms_server.py", &["--access-key", AK]);
        let moto = moto();
        let mut f_keys = std::collections::HashMap::new();
        for (a, spec, usage) in [
            ("ec256", "ECC_NIST_P256", "SIGN_VERIFY"),
            ("ec384", "ECC_NIST_P384", "SIGN_VERIFY"),
            ("rsa-sign", "RSA_2048", "SIGN_VERIFY"),
            ("rsa-dec", "RSA_3072", "ENCRYPT_DECRYPT"),
            ("disabled", "ECC_NIST_P256", "SIGN_VERIFY"),
            ("pending", "ECC_NIST_P256", "SIGN_VERIFY"),
            ("sym", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"),
            ("later-disabled", "ECC_NIST_P256", "SIGN_VERIFY"),
        ] {
            f_keys.insert(a.to_string(), make_key(faithful.port, spec, usage, Some(a)));
        }
        f_keys.insert("noalias".into(), make_key(faithful.port, "ECC_NIST_P256", "SIGN_VERIFY", None));
        f_keys.insert("mac256".into(), import_mac(faithful.port, "HMAC_256", &MAC256, "mac256"));
        f_keys.insert("mac512".into(), import_mac(faithful.port, "HMAC_512", &MAC512, "mac512"));
        let (st, _) = api(faithful.port, "TrentService.DisableKey", AK, json!({"KeyId": f_keys["disabled"]}));
        assert_eq!(st, 200);
        let (st, _) = api(
            faithful.port,
            "TrentService.ScheduleKeyDeletion",
            AK,
            json!({"KeyId": f_keys["pending"], "PendingWindowInDays": 7}),
        );
        assert_eq!(st, 200);
        let mut x_keys = std::collections::HashMap::new();
        x_keys.insert("ec".into(), make_key(faulty.port, "ECC_NIST_P256", "SIGN_VERIFY", Some("ec")));
        x_keys.insert("rsa".into(), make_key(faulty.port, "RSA_2048", "SIGN_VERIFY", Some("rsa")));
        x_keys.insert("dec".into(), make_key(faulty.port, "RSA_2048", "ENCRYPT_DECRYPT", Some("dec")));
        x_keys.insert("mac".into(), import_mac(faulty.port, "HMAC_256", &MAC256, "mac"));
        make_key(dead.port, "ECC_NIST_P256", "SIGN_VERIFY", Some("ec"));
        let mut m_keys = std::collections::HashMap::new();
        for (a, spec, usage) in [
            ("m-ec", "ECC_NIST_P256", "SIGN_VERIFY"),
            ("m-rsa", "RSA_2048", "SIGN_VERIFY"),
            ("m-mac", "HMAC_256", "GENERATE_VERIFY_MAC"),
            ("m-disabled", "ECC_NIST_P256", "SIGN_VERIFY"),
        ] {
            m_keys.insert(a.to_string(), make_key(moto.port, spec, usage, Some(a)));
        }
        let (st, v) = api(moto.port, "TrentService.DisableKey", AK, json!({"KeyId": m_keys["m-disabled"]}));
        assert_eq!(st, 200, "moto DisableKey: {v}");
        // A profile in a shared credentials file (the SDK reads it at the first request).
        let creds = dir.join("credentials");
        std::fs::write(&creds, format!("[hsmux-test]\naws_access_key_id = {AK}\naws_secret_access_key = profile-secret\n")).unwrap();
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &creds);
        std::env::set_var("AWS_CONFIG_FILE", dir.join("config-absent"));
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        // A port that takes connections and never answers: nothing may wait on it at
        // C_Initialize (its deadline is ten minutes).
        let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let bh = format!("http://127.0.0.1:{}", blackhole.local_addr().unwrap().port());
        let keys = "access_key_id = \"AKIDTEST\"\nsecret_access_key = \"config-secret\"";
        let rsa_dec_arn = format!("arn:aws:kms:us-east-1:111122223333:key/{}", f_keys["rsa-dec"]);
        let cfg = [
            slot("aws-f", &faithful.url(), &format!("{keys}\ntimeout_ms = 5000")),
            slot(
                "aws-named",
                &faithful.url(),
                &format!("profile = \"hsmux-test\"\nkeys = [\"alias/ec256\", \"alias/missing\", \"{rsa_dec_arn}\"]"),
            ),
            slot("aws-moto", &moto.url(), "access_key_id = \"testing\"\nsecret_access_key = \"testing\""),
            slot("aws-wrong", &faithful.url(), "access_key_id = \"AKIDWRONG\"\nsecret_access_key = \"x\""),
            slot("aws-faulty", &faulty.url(), &format!("{keys}\ntimeout_ms = 2000")),
            slot("aws-dead", &dead.url(), &format!("{keys}\ntimeout_ms = 1500")),
            slot("aws-blackhole", &bh, &format!("{keys}\ntimeout_ms = 600000")),
        ]
        .concat();
        std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
        let m = load();
        // C_Initialize and C_GetTokenInfo of the black-hole slot must not wait on it.
        let (tx, rx) = std::sync::mpsc::channel();
        let f = m.f as *const CK_FUNCTION_LIST as usize;
        std::thread::spawn(move || {
            let f = unsafe { &*(f as *const CK_FUNCTION_LIST) };
            let mut args = CK_C_INITIALIZE_ARGS {
                CreateMutex: None,
                DestroyMutex: None,
                LockMutex: None,
                UnlockMutex: None,
                flags: CKF_OS_LOCKING_OK,
                pReserved: std::ptr::null_mut(),
            };
            let rv = unsafe { (f.C_Initialize.unwrap())(&mut args as *mut _ as *mut _) };
            let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
            let ti_rv = unsafe { (f.C_GetTokenInfo.unwrap())(6, &mut ti) };
            let _ = tx.send((rv, ti_rv));
        });
        let (rv, ti_rv) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("C_Initialize or C_GetTokenInfo waited on a service that does not answer");
        assert_eq!(rv, CKR_OK);
        assert_eq!(ti_rv, CKR_OK);
        Setup {
            m,
            faithful,
            faulty,
            dead: Mutex::new(dead),
            moto,
            f_keys,
            x_keys,
            m_keys,
            _blackhole: blackhole,
        }
    })
}

fn user(s: &Setup, label: &str) -> CK_SESSION_HANDLE {
    let h = open(&s.m, slot_labelled(&s.m, label, true), true);
    let rv = login(&s.m, h, CKU_USER, b"any");
    // A test that failed before closing its sessions leaves the slot logged in.
    assert!(
        rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
        "C_Login on {label}: {}",
        rv_name(rv)
    );
    h
}

/// The fixture, this test's turn on the shared servers, and a user session on `label`.
fn begin(label: &str) -> (&'static Setup, MutexGuard<'static, ()>, CK_SESSION_HANDLE) {
    let s = setup();
    let g = serial();
    let h = user(s, label);
    (s, g, h)
}

fn close(s: &Setup, h: CK_SESSION_HANDLE) {
    assert_rv!(ck!(s.m, C_CloseSession(h)), CKR_OK);
}

/// C_GenerateKeyPair templates of a labelled EC signing key on the curve `params`.
fn ec_templates(params: &[u8], label: &[u8]) -> (Template, Template) {
    (
        Template::new()
            .bytes(CKA_EC_PARAMS, params)
            .bytes(CKA_LABEL, label),
        Template::new().bool(CKA_SIGN, true).bytes(CKA_LABEL, label),
    )
}

fn find_key(
    s: &Setup,
    h: CK_SESSION_HANDLE,
    class: CK_OBJECT_CLASS,
    label: &str,
) -> CK_OBJECT_HANDLE {
    let found = find(
        &s.m,
        h,
        &mut Template::new()
            .ulong(CKA_CLASS, class)
            .bytes(CKA_LABEL, label.as_bytes()),
    );
    assert_eq!(found.len(), 1, "one object {label} of class {class}");
    found[0]
}

fn labels(s: &Setup, h: CK_SESSION_HANDLE, class: CK_OBJECT_CLASS) -> Vec<String> {
    let mut v: Vec<String> = find(&s.m, h, &mut Template::new().ulong(CKA_CLASS, class))
        .into_iter()
        .map(|o| String::from_utf8(get_attr(&s.m, h, o, CKA_LABEL).unwrap()).unwrap())
        .collect();
    v.sort();
    v
}

/// The public key the server gives for `key_id` (SubjectPublicKeyInfo DER), asked here
/// directly: the reference the module's signatures are checked against.
fn server_spki(port: u16, key_id: &str) -> Vec<u8> {
    let (st, v) = api(
        port,
        "TrentService.GetPublicKey",
        AK,
        json!({"KeyId": key_id}),
    );
    assert_eq!(st, 200, "GetPublicKey: {v}");
    B64.decode(v["PublicKey"].as_str().unwrap()).unwrap()
}

fn p256_key(spki: &[u8]) -> p256::ecdsa::VerifyingKey {
    // A named-curve SPKI ends with its uncompressed point.
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&spki[spki.len() - 65..]).unwrap()
}

fn p384_key(spki: &[u8]) -> p384::ecdsa::VerifyingKey {
    p384::ecdsa::VerifyingKey::from_sec1_bytes(&spki[spki.len() - 97..]).unwrap()
}

fn rsa_key(spki: &[u8]) -> rsa::RsaPublicKey {
    use rsa::pkcs8::DecodePublicKey;
    rsa::RsaPublicKey::from_public_key_der(spki).unwrap()
}

fn last_request(port: u16, op: &str) -> serde_json::Value {
    stats(port)["last"][op].clone()
}

fn requests(port: u16, op: &str) -> u64 {
    stats(port)["requests"][op].as_u64().unwrap_or(0)
}

#[test]
fn token_info_and_mechanisms_say_aws_kms_without_aes_gcm() {
    let s = setup();
    let _g = serial();
    let slot = slot_labelled(&s.m, "aws-f", true);
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(ck!(s.m, C_GetTokenInfo(slot, &mut ti)), CKR_OK);
    assert_eq!(
        String::from_utf8_lossy(&ti.manufacturerID).trim_end(),
        "Amazon Web Services"
    );
    assert_eq!(String::from_utf8_lossy(&ti.model).trim_end(), "AWS KMS");
    let serial = String::from_utf8_lossy(&ti.serialNumber)
        .trim_end()
        .to_string();
    assert!(!serial.is_empty());
    let mut n = 0;
    assert_rv!(
        ck!(s.m, C_GetMechanismList(slot, std::ptr::null_mut(), &mut n)),
        CKR_OK
    );
    let mut mechs = vec![0; n as usize];
    assert_rv!(
        ck!(s.m, C_GetMechanismList(slot, mechs.as_mut_ptr(), &mut n)),
        CKR_OK
    );
    for m in [
        CKM_ECDSA_SHA256,
        CKM_SHA256_RSA_PKCS_PSS,
        CKM_RSA_PKCS_OAEP,
        CKM_SHA256_HMAC,
        CKM_EC_KEY_PAIR_GEN,
    ] {
        assert!(mechs.contains(&m), "0x{m:x} offered");
    }
    for m in [CKM_AES_GCM, CKM_EDDSA, CKM_SHA1_RSA_PKCS, CKM_SHA_1_HMAC] {
        assert!(!mechs.contains(&m), "0x{m:x} not offered");
    }
}

#[test]
fn listing_shows_usable_keys_and_hides_disabled_pending_and_kms_symmetric() {
    let (s, _g, h) = begin("aws-f");
    // (Keys made by the generation test may be listed too.)
    let private = labels(s, h, CKO_PRIVATE_KEY);
    let noalias = s.f_keys["noalias"].clone();
    for want in [
        "ec256",
        "ec384",
        "later-disabled",
        "rsa-dec",
        "rsa-sign",
        noalias.as_str(),
    ] {
        assert!(
            private.iter().any(|l| l == want),
            "{want} listed: {private:?}"
        );
    }
    for hidden in ["disabled", "pending", "sym"] {
        assert!(
            !private.iter().any(|l| l == hidden),
            "{hidden} hidden: {private:?}"
        );
    }
    let secret = labels(s, h, CKO_SECRET_KEY);
    for want in ["mac256", "mac512"] {
        assert!(
            secret.iter().any(|l| l == want),
            "{want} listed: {secret:?}"
        );
    }
    assert!(
        !secret.iter().any(|l| l == "sym"),
        "KMS's own symmetric keys are not shown"
    );
    // CKA_ID is the key ARN; the public key is the server's.
    let k = find_key(s, h, CKO_PUBLIC_KEY, "ec256");
    let id = String::from_utf8(get_attr(&s.m, h, k, CKA_ID).unwrap()).unwrap();
    assert_eq!(
        id,
        format!(
            "arn:aws:kms:us-east-1:111122223333:key/{}",
            s.f_keys["ec256"]
        )
    );
    let spki = server_spki(s.faithful.port, &s.f_keys["ec256"]);
    assert_eq!(
        ec_point(&get_attr(&s.m, h, k, CKA_EC_POINT).unwrap()),
        spki[spki.len() - 65..].to_vec()
    );
    assert_rv!(
        get_attr(&s.m, h, find_key(s, h, CKO_PRIVATE_KEY, "ec256"), CKA_VALUE).unwrap_err(),
        CKR_ATTRIBUTE_SENSITIVE
    );
    // Named keys (profile credentials): a missing one is left out, an ARN is labelled by id.
    let h2 = user(s, "aws-named");
    assert_eq!(labels(s, h2, CKO_PRIVATE_KEY), {
        let mut v = vec!["ec256".to_string(), s.f_keys["rsa-dec"].clone()];
        v.sort();
        v
    });
    close(s, h);
    assert_rv!(ck!(s.m, C_CloseSession(h2)), CKR_OK);
}

#[test]
fn ecdsa_p256_and_p384_sign_digests_verified_with_p256_and_p384() {
    use sha2::Digest;
    let (s, _g, h) = begin("aws-f");
    let msg = b"hsmux signs through AWS KMS";
    // Checked against the public key the server gives, fetched here (not through hsmux).
    let k = find_key(s, h, CKO_PRIVATE_KEY, "ec256");
    let pubk = find_key(s, h, CKO_PUBLIC_KEY, "ec256");
    check_key_pair(&s.m, h, k, pubk);
    let spki = server_spki(s.faithful.port, &s.f_keys["ec256"]);
    check_ecdsa_p256(&s.m, h, k, pubk, &spki[spki.len() - 65..], msg);
    // What went to the service: the digest itself, as a digest (CKM_ECDSA_SHA256 and
    // CKM_ECDSA over a digest made here alike); verification through the module is local.
    let last = last_request(s.faithful.port, "Sign");
    assert_eq!(last["MessageType"], "DIGEST");
    assert_eq!(last["SigningAlgorithm"], "ECDSA_SHA_256");
    assert_eq!(
        B64.decode(last["Message"].as_str().unwrap()).unwrap(),
        sha2::Sha256::digest(msg).to_vec()
    );
    // P-384 signs with SHA-384 only (its SigningAlgorithms).
    let k384 = find_key(s, h, CKO_PRIVATE_KEY, "ec384");
    let pub384 = find_key(s, h, CKO_PUBLIC_KEY, "ec384");
    check_key_pair(&s.m, h, k384, pub384);
    let spki = server_spki(s.faithful.port, &s.f_keys["ec384"]);
    check_ecdsa_p384(&s.m, h, k384, pub384, &spki[spki.len() - 97..], msg);
    let mut mc = mech(CKM_ECDSA_SHA256);
    assert_rv!(
        ck!(s.m, C_SignInit(h, &mut mc, k384)),
        CKR_MECHANISM_INVALID
    );
    close(s, h);
}

#[test]
fn rsa_pkcs1_and_pss_with_digest_length_salt_verified_with_rsa() {
    use rsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let (s, _g, h) = begin("aws-f");
    let k = find_key(s, h, CKO_PRIVATE_KEY, "rsa-sign");
    let pk = rsa_key(&server_spki(s.faithful.port, &s.f_keys["rsa-sign"]));
    let msg = b"an RSA message";
    let pubk = find_key(s, h, CKO_PUBLIC_KEY, "rsa-sign");
    check_key_pair(&s.m, h, k, pubk);
    check_rsa_pkcs1_sha256(&s.m, h, k, Some(pubk), &pk, msg);
    // PSS-SHA256, salt 32 = the digest length.
    check_rsa_pss_sha256(&s.m, h, k, pubk, &pk, 32, msg);
    // PSS-SHA384, salt 48 = the digest length (what AWS uses).
    let mut p = pss(CKM_SHA384, CKG_MGF1_SHA384, 48);
    let sig = sign(&s.m, h, mech_with(CKM_SHA384_RSA_PKCS_PSS, &mut p), k, msg).unwrap();
    assert_eq!(
        last_request(s.faithful.port, "Sign")["SigningAlgorithm"],
        "RSASSA_PSS_SHA_384"
    );
    rsa::pss::VerifyingKey::<sha2::Sha384>::new(pk.clone())
        .verify_prehash(
            &sha2::Sha384::digest(msg),
            &rsa::pss::Signature::try_from(&sig[..]).unwrap(),
        )
        .unwrap();
    let mut p = pss(CKM_SHA384, CKG_MGF1_SHA384, 48);
    assert_rv!(
        verify(
            &s.m,
            h,
            mech_with(CKM_SHA384_RSA_PKCS_PSS, &mut p),
            pubk,
            msg,
            &sig
        ),
        CKR_OK
    );
    // A salt AWS does not use is refused before any request.
    let before = requests(s.faithful.port, "Sign");
    let mut p = pss(CKM_SHA256, CKG_MGF1_SHA256, 20);
    let mut mc = mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut p);
    assert_rv!(ck!(s.m, C_SignInit(h, &mut mc, k)), CKR_MECHANISM_INVALID);
    assert_eq!(requests(s.faithful.port, "Sign"), before);
    // CKM_RSA_PKCS over a SHA-512 DigestInfo: signed as RSASSA_PKCS1_V1_5_SHA_512.
    let d = sha2::Sha512::digest(msg);
    let mut di = vec![
        0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
        0x05, 0x00, 0x04, 0x40,
    ];
    di.extend_from_slice(&d);
    let sig = sign(&s.m, h, mech(CKM_RSA_PKCS), k, &di).unwrap();
    assert_eq!(
        last_request(s.faithful.port, "Sign")["SigningAlgorithm"],
        "RSASSA_PKCS1_V1_5_SHA_512"
    );
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(pk)
        .verify_prehash(&d, &rsa::pkcs1v15::Signature::try_from(&sig[..]).unwrap())
        .unwrap();
    assert_rv!(
        sign(&s.m, h, mech(CKM_RSA_PKCS), k, b"not a DigestInfo").unwrap_err(),
        CKR_DATA_INVALID
    );
    close(s, h);
}

#[test]
fn rsa_oaep_sha1_and_sha256_decrypt_what_rsa_encrypted() {
    let (s, _g, h) = begin("aws-f");
    let k = find_key(s, h, CKO_PRIVATE_KEY, "rsa-dec");
    let pk = rsa_key(&server_spki(s.faithful.port, &s.f_keys["rsa-dec"]));
    check_rsa_oaep(&s.m, h, k, &pk, CKM_SHA256, b"seal key");
    assert_eq!(
        last_request(s.faithful.port, "Decrypt")["EncryptionAlgorithm"],
        "RSAES_OAEP_SHA_256"
    );
    check_rsa_oaep(&s.m, h, k, &pk, CKM_SHA_1, b"legacy");
    // Encryption with the public key is local and the service decrypts it.
    let pubk = find_key(s, h, CKO_PUBLIC_KEY, "rsa-dec");
    let mut p = oaep(CKM_SHA256, CKG_MGF1_SHA256);
    let ct = encrypt(
        &s.m,
        h,
        mech_with(CKM_RSA_PKCS_OAEP, &mut p),
        pubk,
        b"round trip",
    )
    .unwrap();
    let mut p = oaep(CKM_SHA256, CKG_MGF1_SHA256);
    assert_eq!(
        decrypt(&s.m, h, mech_with(CKM_RSA_PKCS_OAEP, &mut p), k, &ct).unwrap(),
        b"round trip"
    );
    // A ciphertext that is not one: InvalidCiphertextException.
    let mut p = oaep(CKM_SHA256, CKG_MGF1_SHA256);
    assert_rv!(
        decrypt(
            &s.m,
            h,
            mech_with(CKM_RSA_PKCS_OAEP, &mut p),
            k,
            &vec![0x17; 384]
        )
        .unwrap_err(),
        CKR_ENCRYPTED_DATA_INVALID
    );
    // SHA-384 OAEP is not among the key's EncryptionAlgorithms.
    let mut p = oaep(CKM_SHA384, CKG_MGF1_SHA384);
    let mut mc = mech_with(CKM_RSA_PKCS_OAEP, &mut p);
    assert_rv!(
        ck!(s.m, C_DecryptInit(h, &mut mc, k)),
        CKR_MECHANISM_PARAM_INVALID
    );
    close(s, h);
}

#[test]
fn hmac_sha256_and_sha512_match_hmac_and_wrong_tags_fail() {
    let (s, _g, h) = begin("aws-f");
    let msg = b"mac me";
    let k = find_key(s, h, CKO_SECRET_KEY, "mac256");
    check_remote_secret(&s.m, h, k);
    check_hmac(&s.m, h, k, CKM_SHA256_HMAC, &MAC256, msg);
    assert!(requests(s.faithful.port, "VerifyMac") > 0);
    let k512 = find_key(s, h, CKO_SECRET_KEY, "mac512");
    check_hmac(&s.m, h, k512, CKM_SHA512_HMAC, &MAC512, msg);
    // The key spec binds the hash.
    let mut mc = mech(CKM_SHA384_HMAC);
    assert_ne!(ck!(s.m, C_SignInit(h, &mut mc, k)), CKR_OK);
    close(s, h);
}

#[test]
fn a_key_disabled_after_listing_fails_with_function_failed() {
    let (s, _g, h) = begin("aws-f");
    let k = find_key(s, h, CKO_PRIVATE_KEY, "later-disabled");
    assert!(sign(&s.m, h, mech(CKM_ECDSA_SHA256), k, b"x").is_ok());
    let (st, _) = api(
        s.faithful.port,
        "TrentService.DisableKey",
        AK,
        json!({"KeyId": s.f_keys["later-disabled"]}),
    );
    assert_eq!(st, 200);
    // DisabledException: CKR_KEY_HANDLE_INVALID is C_SignInit's code, not C_Sign's.
    assert_rv!(
        sign(&s.m, h, mech(CKM_ECDSA_SHA256), k, b"x").unwrap_err(),
        CKR_FUNCTION_FAILED
    );
    let (st, _) = api(
        s.faithful.port,
        "TrentService.EnableKey",
        AK,
        json!({"KeyId": s.f_keys["later-disabled"]}),
    );
    assert_eq!(st, 200);
    close(s, h);
}

#[test]
fn wrong_credentials_are_a_wrong_pin_at_login() {
    let s = setup();
    let _g = serial();
    let h = check_refused_login(&s.m, "aws-wrong");
    // Listing (public keys need no login) is refused by the service the same way:
    // "not logged in", not a device error (a replica group would fail over for that).
    let mut t = Template::new().ulong(CKA_CLASS, CKO_PUBLIC_KEY);
    assert_rv!(
        ck!(s.m, C_FindObjectsInit(h, t.ptr(), t.len())),
        CKR_USER_NOT_LOGGED_IN
    );
    close(s, h);
}

#[test]
fn generated_key_pair_and_hmac_key_are_created_named_and_usable() {
    use p384::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let (s, _g, h) = begin("aws-f");
    let (public, private) = ec_templates(P384_PARAMS, b"gen-p384");
    let (pubk, k) = keypair(&s.m, h, CKM_EC_KEY_PAIR_GEN, public, private, b"ignored");
    let (st, v) = api(
        s.faithful.port,
        "TrentService.DescribeKey",
        AK,
        json!({"KeyId": "alias/gen-p384"}),
    );
    assert_eq!(st, 200, "alias made: {v}");
    assert_eq!(v["KeyMetadata"]["KeySpec"], "ECC_NIST_P384");
    let key_id = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    let point = ec_point(&get_attr(&s.m, h, pubk, CKA_EC_POINT).unwrap());
    let spki = server_spki(s.faithful.port, &key_id);
    assert_eq!(point, spki[spki.len() - 97..].to_vec());
    let sig = sign(&s.m, h, mech(CKM_ECDSA_SHA384), k, b"fresh").unwrap();
    p384_key(&spki)
        .verify_prehash(
            &sha2::Sha384::digest(b"fresh"),
            &p384::ecdsa::Signature::from_slice(&sig).unwrap(),
        )
        .unwrap();
    // The name is taken now: AWS keys have no versions.
    let (mut pt, mut st_) = ec_templates(P384_PARAMS, b"gen-p384");
    let (mut o1, mut o2) = (0, 0);
    let mut mc = mech(CKM_EC_KEY_PAIR_GEN);
    assert_rv!(
        ck!(
            s.m,
            C_GenerateKeyPair(
                h,
                &mut mc,
                pt.ptr(),
                pt.len(),
                st_.ptr(),
                st_.len(),
                &mut o1,
                &mut o2
            )
        ),
        CKR_ATTRIBUTE_VALUE_INVALID
    );
    // An HMAC-SHA256 key: CreateKey HMAC_256.
    let t = Template::new()
        .ulong(CKA_KEY_TYPE, CKK_SHA256_HMAC)
        .ulong(CKA_VALUE_LEN, 32)
        .bytes(CKA_LABEL, b"gen-mac")
        .bool(CKA_SIGN, true);
    let mk = secret(&s.m, h, CKM_GENERIC_SECRET_KEY_GEN, t);
    let tag = sign(&s.m, h, mech(CKM_SHA256_HMAC), mk, b"m").unwrap();
    assert_eq!(tag.len(), 32);
    assert_rv!(
        verify(&s.m, h, mech(CKM_SHA256_HMAC), mk, b"m", &tag),
        CKR_OK
    );
    let (_, v) = api(
        s.faithful.port,
        "TrentService.DescribeKey",
        AK,
        json!({"KeyId": "alias/gen-mac"}),
    );
    assert_eq!(v["KeyMetadata"]["KeySpec"], "HMAC_256");
    close(s, h);
}

#[test]
fn faults_retried_where_transient_and_device_errors_otherwise() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let s = setup();
    let _g = serial();
    let port = s.faulty.port;
    let fault = |f: serde_json::Value| {
        control(port, "/__ctl", f);
    };
    let h = user(s, "aws-faulty");
    let ec = find_key(s, h, CKO_PRIVATE_KEY, "ec");
    let rsa = find_key(s, h, CKO_PRIVATE_KEY, "rsa");
    let dec = find_key(s, h, CKO_PRIVATE_KEY, "dec");
    let mac = find_key(s, h, CKO_SECRET_KEY, "mac");
    let vk = p256_key(&server_spki(port, &s.x_keys["ec"]));
    let check = |sig: &[u8]| {
        vk.verify_prehash(
            &sha2::Sha256::digest(b"m"),
            &p256::ecdsa::Signature::from_slice(sig).unwrap(),
        )
        .unwrap()
    };
    // One 500 and one throttling answer: retried, the consumer sees a good signature.
    for kind in ["500", "throttle"] {
        let before = requests(port, "Sign");
        fault(json!({"fault": kind, "count": 1, "ops": ["Sign"]}));
        check(&sign(&s.m, h, mech(CKM_ECDSA_SHA256), ec, b"m").expect(kind));
        assert_eq!(requests(port, "Sign"), before + 2, "{kind}: one retry");
    }
    // 500 on every attempt: a device error after the retries.
    let before = requests(port, "Sign");
    fault(json!({"fault": "500", "count": -1, "ops": ["Sign"]}));
    assert_rv!(
        sign(&s.m, h, mech(CKM_ECDSA_SHA256), ec, b"m").unwrap_err(),
        CKR_DEVICE_ERROR
    );
    assert_eq!(requests(port, "Sign"), before + 3, "three attempts");
    // A body that is not JSON, and answers of the wrong shape.
    fault(json!({"fault": "malformed", "count": -1}));
    assert_rv!(
        sign(&s.m, h, mech(CKM_ECDSA_SHA256), ec, b"m").unwrap_err(),
        CKR_DEVICE_ERROR
    );
    fault(json!({"fault": "bad-answer", "count": -1}));
    assert_rv!(
        sign(&s.m, h, mech(CKM_ECDSA_SHA256), ec, b"m").unwrap_err(),
        CKR_DEVICE_ERROR,
        "ECDSA not DER"
    );
    assert_rv!(
        sign(&s.m, h, mech(CKM_SHA256_RSA_PKCS), rsa, b"m").unwrap_err(),
        CKR_DEVICE_ERROR,
        "RSA short"
    );
    assert_rv!(
        sign(&s.m, h, mech(CKM_SHA256_HMAC), mac, b"m").unwrap_err(),
        CKR_DEVICE_ERROR,
        "MAC short"
    );
    fault(json!({"fault": "none"}));
    let pk = rsa_key(&server_spki(port, &s.x_keys["dec"]));
    let ct = oaep_encrypt(&pk, CKM_SHA256, b"k");
    fault(json!({"fault": "bad-answer", "count": -1}));
    let mut p = oaep(CKM_SHA256, CKG_MGF1_SHA256);
    assert_rv!(
        decrypt(&s.m, h, mech_with(CKM_RSA_PKCS_OAEP, &mut p), dec, &ct).unwrap_err(),
        CKR_DEVICE_ERROR,
        "plaintext too long"
    );
    // Answers slower than the slot's deadline (2 s).
    fault(json!({"fault": "delay", "delay_ms": 5000, "count": -1}));
    assert_rv!(
        sign(&s.m, h, mech(CKM_ECDSA_SHA256), ec, b"m").unwrap_err(),
        CKR_DEVICE_ERROR
    );
    fault(json!({"fault": "none"}));
    check(&sign(&s.m, h, mech(CKM_ECDSA_SHA256), ec, b"m").unwrap());
    let mut p = oaep(CKM_SHA256, CKG_MGF1_SHA256);
    assert_eq!(
        decrypt(&s.m, h, mech_with(CKM_RSA_PKCS_OAEP, &mut p), dec, &ct).unwrap(),
        b"k"
    );
    close(s, h);
}

#[test]
fn a_stopped_server_fails_calls_with_device_error_while_another_slot_works() {
    let (s, _g, h) = begin("aws-dead");
    let k = find_key(s, h, CKO_PRIVATE_KEY, "ec");
    assert!(sign(&s.m, h, mech(CKM_ECDSA_SHA256), k, b"m").is_ok());
    let other = user(s, "aws-f");
    let ok = find_key(s, other, CKO_PRIVATE_KEY, "ec256");
    // Stopped (SIGSTOP): connections are accepted by the kernel, nothing answers; the
    // slot's deadline (1.5 s) ends the call.
    s.dead.lock().unwrap().pause(true);
    check_device_error_within("C_Sign on a stopped server", Duration::from_secs(8), || {
        sign(&s.m, h, mech(CKM_ECDSA_SHA256), k, b"m").unwrap_err()
    });
    assert!(sign(&s.m, other, mech(CKM_ECDSA_SHA256), ok, b"m").is_ok());
    // Gone: refused connections.
    s.dead.lock().unwrap().pause(false);
    s.dead.lock().unwrap().stop();
    check_device_error_within("C_Sign on a gone server", Duration::from_secs(8), || {
        sign(&s.m, h, mech(CKM_ECDSA_SHA256), k, b"m").unwrap_err()
    });
    assert!(sign(&s.m, other, mech(CKM_ECDSA_SHA256), ok, b"m").is_ok());
    close(s, h);
    assert_rv!(ck!(s.m, C_CloseSession(other)), CKR_OK);
}

#[test]
fn moto_lists_keys_with_its_public_keys_and_hides_disabled_ones() {
    let (s, _g, h) = begin("aws-moto");
    let private = labels(s, h, CKO_PRIVATE_KEY);
    assert!(
        private.contains(&"m-ec".to_string()) && private.contains(&"m-rsa".to_string()),
        "{private:?}"
    );
    assert!(
        !private.contains(&"m-disabled".to_string()),
        "a disabled key is hidden: {private:?}"
    );
    assert_eq!(labels(s, h, CKO_SECRET_KEY), vec!["m-mac"]);
    let k = find_key(s, h, CKO_PUBLIC_KEY, "m-ec");
    let spki = server_spki(s.moto.port, &s.m_keys["m-ec"]);
    assert_eq!(
        ec_point(&get_attr(&s.m, h, k, CKA_EC_POINT).unwrap()),
        spki[spki.len() - 65..].to_vec()
    );
    let k = find_key(s, h, CKO_PUBLIC_KEY, "m-rsa");
    let pk = rsa_key(&server_spki(s.moto.port, &s.m_keys["m-rsa"]));
    use rsa::traits::PublicKeyParts;
    assert_eq!(
        get_attr(&s.m, h, k, CKA_MODULUS).unwrap(),
        pk.n().to_bytes_be()
    );
    close(s, h);
}

#[test]
fn moto_signs_what_hsmux_sends_and_its_macs_match_a_direct_request() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let (s, _g, h) = begin("aws-moto");
    let k = find_key(s, h, CKO_PRIVATE_KEY, "m-ec");
    let msg = b"to moto";
    let sig = sign(&s.m, h, mech(CKM_ECDSA_SHA256), k, msg).unwrap();
    // moto ignores MessageType=DIGEST and hashes the digest again (a known moto gap): its
    // signature is over SHA-256(SHA-256(msg)), which shows hsmux sent the digest.
    let digest = sha2::Sha256::digest(msg);
    let vk = p256_key(&server_spki(s.moto.port, &s.m_keys["m-ec"]));
    vk.verify_prehash(
        &sha2::Sha256::digest(digest),
        &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
    )
    .unwrap();
    // HMAC: moto is faithful; the module's tag equals moto's GenerateMac asked directly.
    let mk = find_key(s, h, CKO_SECRET_KEY, "m-mac");
    let tag = sign(&s.m, h, mech(CKM_SHA256_HMAC), mk, msg).unwrap();
    let (st, v) = api(
        s.moto.port,
        "TrentService.GenerateMac",
        AK,
        json!({"KeyId": s.m_keys["m-mac"], "Message": B64.encode(msg), "MacAlgorithm": "HMAC_SHA_256"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(tag, B64.decode(v["Mac"].as_str().unwrap()).unwrap());
    assert_rv!(
        verify(&s.m, h, mech(CKM_SHA256_HMAC), mk, msg, &tag),
        CKR_OK
    );
    let mut bad = tag.clone();
    bad[3] ^= 1;
    assert_rv!(
        verify(&s.m, h, mech(CKM_SHA256_HMAC), mk, msg, &bad),
        CKR_SIGNATURE_INVALID
    );
    close(s, h);
}

#[test]
fn moto_creates_keys_for_generate_key_pair_with_an_alias() {
    let (s, _g, h) = begin("aws-moto");
    let (public, private) = ec_templates(P256_PARAMS, b"moto-gen");
    let (pubk, _k) = keypair(&s.m, h, CKM_EC_KEY_PAIR_GEN, public, private, b"x");
    let (st, v) = api(s.moto.port, "TrentService.ListAliases", AK, json!({}));
    assert_eq!(st, 200);
    let target = v["Aliases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["AliasName"] == "alias/moto-gen")
        .map(|a| a["TargetKeyId"].as_str().unwrap().to_string())
        .expect("alias/moto-gen in moto");
    let spki = server_spki(s.moto.port, &target);
    assert_eq!(
        ec_point(&get_attr(&s.m, h, pubk, CKA_EC_POINT).unwrap()),
        spki[spki.len() - 65..].to_vec()
    );
    close(s, h);
}
