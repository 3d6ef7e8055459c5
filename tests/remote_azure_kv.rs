//! The azure-kv backend through the built module, against conformance/azurekv_server.py (the
//! Key Vault / Managed HSM keys REST API 7.5, Entra ID's token endpoint and IMDS, with real
//! cryptography, over HTTPS with a CA the server makes): every mechanism checked by
//! independent crates, the OpenBao seal's sequence on an oct-HSM key, the object model and
//! `hsm_only`, key creation and rotation, each auth method, the 401 challenge, refused
//! credentials, the error mapping, injected faults, token refresh, a replica group of two
//! vaults failing over, and a silent endpoint bounded by the deadline.
//!
//! One module instance serves every test; each group of tests has its own slot, and the
//! tests that inject faults share one server and take turns (`FAULTS`).

#![allow(clippy::macro_metavars_in_unsafe)]
mod azure_server;
mod common;
mod contract;
use azure_server::{secret_auth, Seed, Server, CLIENT, MI_CLIENT, SECRET, TENANT};
use common::*;
use contract::*;
use cryptoki_sys::*;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The Managed HSM's keys.
const MHSM_KEYS: &[Seed] = &[
    ("ec256", "EC-HSM", "P-256", 2, &[]),
    ("ec384", "EC-HSM", "P-384", 1, &[]),
    ("rsa", "RSA-HSM", "2048", 1, &[]),
    ("aes", "oct-HSM", "256", 1, &[]),
    ("aes128", "oct-HSM", "128", 1, &[]),
    ("seal", "oct-HSM", "256", 1, &[]),
    ("replicated", "oct-HSM", "256", 1, &[]),
    ("doomed", "EC-HSM", "P-256", 1, &[]),
    ("disabled-later", "EC-HSM", "P-256", 1, &[]),
    ("denied", "EC-HSM", "P-256", 1, &[]),
];

/// The Key Vault's keys (software and HSM ones; Key Vault has no oct-HSM).
const KV_KEYS: &[Seed] = &[
    ("ec-soft", "EC", "P-256", 1, &[]),
    ("rsa-soft", "RSA", "2048", 1, &[]),
    ("ec-hsm", "EC-HSM", "P-256", 2, &[2]),
];

// ---- the module and its slots ------------------------------------------------------------

struct Env {
    m: Module,
    mhsm: Server,
    _kv: Server,
    faults: Server,
    second: Server,
    _silent: Silent,
}

static ENV: OnceLock<Env> = OnceLock::new();
static FAULTS: Mutex<()> = Mutex::new(());

fn env() -> &'static Env {
    ENV.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hsmux-azure-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        remove_at_exit(&dir);
        let mhsm = Server::start(&dir, "mhsm", "managedhsm", MHSM_KEYS, &[]);
        let kv = Server::start(&dir, "kv", "keyvault", KV_KEYS, &[]);
        // Tokens of 4 s: renewed after 2 s (half their life).
        let faults = Server::start(
            &dir,
            "faults",
            "managedhsm",
            &[("ec256", "EC-HSM", "P-256", 1, &[]), ("aes", "oct-HSM", "256", 1, &[])],
            &["--expires-in", "4"],
        );
        // The second region: "replicated" is restored into it from the first (backup/
        // restore keeps the key's name and version ids).
        let second = Server::start(&dir, "second", "managedhsm", &[], &[]);
        let blob = mhsm.ctl("backup", serde_json::json!({"name": "replicated"}));
        second.ctl("restore", blob);
        let silent = Silent::start();

        let slot = |label: &str, s: &Server, auth: &str, extra: &str| s.slot(label, auth, extra);
        let good = secret_auth(SECRET);
        let mut cfg = String::new();
        cfg += &slot("mhsm", &mhsm, &good, "");
        cfg += &slot("mhsm-seal", &mhsm, &good, "keys = [\"seal\"]");
        cfg += &slot("mhsm-siv", &mhsm, &good, "keys = [\"seal\"]\ngcm_iv = \"service\"");
        cfg += &slot("mhsm-gen", &mhsm, &good, "keys = [\"gen-ec\", \"gen-aes\", \"gen-rsa\"]");
        cfg += &slot(
            "mhsm-errors",
            &mhsm,
            &good,
            "keys = [\"doomed\", \"disabled-later\", \"denied\"]",
        );
        cfg += &slot("mhsm-badsecret", &mhsm, &secret_auth("wrong"), "");
        let cert = |label: &str, file: &str| {
            slot(
                label,
                &mhsm,
                &format!("auth = {{ method = \"certificate\", tenant = \"{TENANT}\", client_id = \"{CLIENT}\", certificate = \"{}\", authority_host = \"{{host}}\" }}", mhsm.file(file)),
                "keys = [\"ec256\"]",
            )
        };
        cfg += &cert("mhsm-cert", "client.pem");
        cfg += &cert("mhsm-cert-rogue", "rogue.pem");
        let wi = |label: &str, file: &str| {
            slot(
                label,
                &mhsm,
                &format!("auth = {{ method = \"workload_identity\", tenant = \"{TENANT}\", client_id = \"{CLIENT}\", token_file = \"{}\", authority_host = \"{{host}}\" }}", mhsm.file(file)),
                "keys = [\"ec256\"]",
            )
        };
        cfg += &wi("mhsm-wi", "federated.jwt");
        cfg += &wi("mhsm-wi-rogue", "federated-rogue.jwt");
        cfg += &slot(
            "mhsm-mi",
            &mhsm,
            &format!("auth = {{ method = \"managed_identity\", client_id = \"{MI_CLIENT}\", endpoint = \"{}\" }}", mhsm.imds()),
            "keys = [\"ec256\"]",
        );
        cfg += &slot(
            "mhsm-mi-other",
            &mhsm,
            &format!("auth = {{ method = \"managed_identity\", client_id = \"not-mine\", endpoint = \"{}\" }}", mhsm.imds()),
            "keys = [\"ec256\"]",
        );
        // No ca_file: the system's roots do not know the test CA.
        cfg += &format!(
            "[[slot]]\nlabel = \"mhsm-noca\"\nbackend = \"azure-kv\"\nvault = \"{}\"\ntimeout_ms = 3000\n{}\n",
            mhsm.url(),
            good.replace("{host}", &mhsm.url())
        );
        cfg += &slot("kv", &kv, &good, "");
        cfg += &slot("kv-hsm", &kv, &good, "hsm_only = true");
        cfg += &slot("faults", &faults, &good, "timeout_ms = 3000");
        cfg += &format!(
            "[[slot]]\nlabel = \"silent\"\nbackend = \"azure-kv\"\nvault = \"https://127.0.0.1:{}\"\ntimeout_ms = 1000\n{}\n",
            silent.port,
            good.replace("{host}", &mhsm.url())
        );
        // A replica group over two vaults holding the same key.
        let replica = |name: &str, s: &Server| {
            format!(
                "[[slot.replica]]\nname = \"{name}\"\nbackend = \"azure-kv\"\nvault = \"{}\"\nca_file = \"{}\"\nkeys = [\"replicated\"]\ntimeout_ms = 3000\n{}\n",
                s.url(),
                s.file("ca.pem"),
                good.replace("{host}", &s.url())
            )
        };
        cfg += "[[slot]]\nlabel = \"regions\"\npolicy = \"failover\"\n";
        cfg += &replica("west", &mhsm);
        cfg += &replica("east", &second);
        std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
        let m = load();
        assert_rv!(initialize(&m), CKR_OK);
        Env {
            m,
            mhsm,
            _kv: kv,
            faults,
            second,
            _silent: silent,
        }
    })
}

fn session(label: &str) -> CK_SESSION_HANDLE {
    logged_in(&env().m, label)
}

fn objects(h: CK_SESSION_HANDLE, class: CK_OBJECT_CLASS, label: &str) -> Vec<CK_OBJECT_HANDLE> {
    contract::objects(&env().m, h, class, label)
}

fn key(h: CK_SESSION_HANDLE, class: CK_OBJECT_CLASS, label: &str) -> CK_OBJECT_HANDLE {
    first(&env().m, h, class, label)
}

fn public_of(h: CK_SESSION_HANDLE, private: CK_OBJECT_HANDLE) -> CK_OBJECT_HANDLE {
    contract::public_of(&env().m, h, private)
}

fn id_of(h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> String {
    id_text(&env().m, h, o)
}

fn p256_key(h: CK_SESSION_HANDLE, private: CK_OBJECT_HANDLE) -> p256::ecdsa::VerifyingKey {
    let point = point_of(&env().m, h, public_of(h, private));
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap()
}

/// C_Sign with CKM_ECDSA_SHA256 verified by p256.
fn ec_sign_ok(h: CK_SESSION_HANDLE, private: CK_OBJECT_HANDLE) -> Result<(), CK_RV> {
    use p256::ecdsa::signature::Verifier;
    let sig = sign(&env().m, h, mech(CKM_ECDSA_SHA256), private, b"azure")?;
    p256_key(h, private)
        .verify(b"azure", &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("a signature that is returned verifies");
    Ok(())
}

// ---- mechanisms ------------------------------------------------------------------------------

#[test]
fn ecdsa_p256_and_p384_verify_with_independent_crates_for_every_hash() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let m = &env().m;
    let h = session("mhsm");
    let ec = key(h, CKO_PRIVATE_KEY, "ec256");
    let public = public_of(h, ec);
    check_key_pair(m, h, ec, public);
    let point = point_of(m, h, public);
    check_ecdsa_p256(m, h, ec, public, &point, b"to sign");
    let ec384 = key(h, CKO_PRIVATE_KEY, "ec384");
    let p384_public = public_of(h, ec384);
    let p384_point = point_of(m, h, p384_public);
    check_ecdsa_p384(m, h, ec384, p384_public, &p384_point, b"to sign");
    // Key Vault takes ES256 over 32 bytes only; other hashes are fitted to the curve as
    // ECDSA does, and p256 (which does the same) verifies them.
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    for (mech_type, digest) in [
        (CKM_ECDSA_SHA1, {
            use sha1::Digest;
            sha1::Sha1::digest(b"msg").to_vec()
        }),
        (CKM_ECDSA_SHA512, {
            use sha2::Digest;
            sha2::Sha512::digest(b"msg").to_vec()
        }),
    ] {
        let sig = sign(m, h, mech(mech_type), ec, b"msg").unwrap();
        vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
            .unwrap_or_else(|e| panic!("0x{mech_type:x} verifies with p256: {e}"));
        check_verify(m, h, mech_type, public, b"msg", &sig, 3);
    }
}

/// What pkcs11-tool's public-key export asks for, the way it asks: one length query for the
/// whole template, then buffers of exactly those lengths. Each fill must answer the length its
/// query gave and write nothing past ulValueLen (guard bytes after each buffer); a buffer one
/// byte short gets CKR_BUFFER_TOO_SMALL with CK_UNAVAILABLE_INFORMATION and no byte past it.
/// (Written while chasing pkcs11-tool's "cannot create EVP_PKEY" on this slot, which turned
/// out to be pkcs11-tool 0.23.0 reading memory it had freed; this pins the module's side.)
#[test]
fn ec_public_key_attributes_fill_exactly_the_length_their_query_gave() {
    const GUARD: u8 = 0xA5;
    const SPARE: usize = 16;
    let m = &env().m;
    let h = session("mhsm");
    let public = public_of(h, key(h, CKO_PRIVATE_KEY, "ec256"));
    let types = [CKA_KEY_TYPE, CKA_EC_PARAMS, CKA_EC_POINT, CKA_ID, CKA_LABEL];
    let mut t: Vec<CK_ATTRIBUTE> = types
        .iter()
        .map(|&type_| CK_ATTRIBUTE {
            type_,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        })
        .collect();
    assert_rv!(
        ck!(m, C_GetAttributeValue(h, public, t.as_mut_ptr(), 5)),
        CKR_OK
    );
    let queried: Vec<usize> = t.iter().map(|a| a.ulValueLen as usize).collect();
    assert!(
        queried.iter().all(|&n| n > 0 && n < 4096),
        "lengths {queried:?}"
    );
    for short in [false, true] {
        let mut bufs: Vec<Vec<u8>> = queried.iter().map(|&n| vec![GUARD; n + SPARE]).collect();
        for (a, (buf, &n)) in t.iter_mut().zip(bufs.iter_mut().zip(&queried)) {
            a.pValue = buf.as_mut_ptr() as *mut _;
            a.ulValueLen = (n - usize::from(short)) as CK_ULONG;
        }
        let rv = ck!(m, C_GetAttributeValue(h, public, t.as_mut_ptr(), 5));
        assert_rv!(rv, if short { CKR_BUFFER_TOO_SMALL } else { CKR_OK });
        for ((a, buf), &n) in t.iter().zip(&bufs).zip(&queried) {
            let given = n - usize::from(short);
            let want = if short {
                CK_UNAVAILABLE_INFORMATION
            } else {
                n as CK_ULONG
            };
            assert_eq!(
                a.ulValueLen, want,
                "0x{:x}: fill answers the queried length",
                a.type_
            );
            assert!(
                buf[given..].iter().all(|&b| b == GUARD),
                "0x{:x}: written past",
                a.type_
            );
        }
        if !short {
            assert_eq!(
                bufs[1][..queried[1]],
                [6, 8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 3, 1, 7]
            );
            let point = ec_point(&bufs[2][..queried[2]]);
            p256::PublicKey::from_sec1_bytes(&point).expect("CKA_EC_POINT is a P-256 point");
        }
    }
}

#[test]
fn rsa_signatures_verify_with_the_rsa_crate() {
    let m = &env().m;
    let h = session("mhsm");
    let k = key(h, CKO_PRIVATE_KEY, "rsa");
    let public = public_of(h, k);
    check_key_pair(m, h, k, public);
    let pk = rsa_public(m, h, public);
    check_rsa_pkcs1_sha256(m, h, k, Some(public), &pk, b"rs256");
    check_rsa_pss_sha256(m, h, k, public, &pk, 32, b"ps256");
    // RS384 / RS512, and CKM_RSA_PKCS over a DigestInfo.
    for (mech_type, digest) in [
        (CKM_SHA384_RSA_PKCS, {
            use sha2::Digest;
            sha2::Sha384::digest(b"m").to_vec()
        }),
        (CKM_SHA512_RSA_PKCS, {
            use sha2::Digest;
            sha2::Sha512::digest(b"m").to_vec()
        }),
    ] {
        let sig = sign(m, h, mech(mech_type), k, b"m").unwrap();
        let scheme = if mech_type == CKM_SHA384_RSA_PKCS {
            rsa::Pkcs1v15Sign::new::<sha2::Sha384>()
        } else {
            rsa::Pkcs1v15Sign::new::<sha2::Sha512>()
        };
        pk.verify(scheme, &digest, &sig)
            .expect("RS384/RS512 verify");
    }
    let sig = sign(m, h, mech(CKM_RSA_PKCS), k, &digest_info_sha256(b"raw")).unwrap();
    pk.verify(
        rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        &sha256(b"raw"),
        &sig,
    )
    .expect("CKM_RSA_PKCS over a DigestInfo verifies");
    // PSS with another salt than the hash length: refused at C_SignInit.
    let mut p = pss(CKM_SHA256, CKG_MGF1_SHA256, 20);
    let mut mc = mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut p);
    assert_rv!(
        ck!(m, C_SignInit(h, &mut mc, k)),
        CKR_MECHANISM_PARAM_INVALID
    );
    // No RS1 in Key Vault.
    let mut mc = mech(CKM_SHA1_RSA_PKCS);
    assert_rv!(ck!(m, C_SignInit(h, &mut mc, k)), CKR_MECHANISM_INVALID);
}

#[test]
fn rsa_oaep_sha1_and_sha256_decrypt_what_the_rsa_crate_encrypted() {
    let m = &env().m;
    let h = session("mhsm");
    let k = key(h, CKO_PRIVATE_KEY, "rsa");
    let pk = rsa_public(m, h, public_of(h, k));
    check_rsa_oaep(m, h, k, &pk, CKM_SHA_1, b"a wrapped DEK (RSA-OAEP)");
    check_rsa_oaep(m, h, k, &pk, CKM_SHA256, b"a wrapped DEK (RSA-OAEP-256)");
}

#[test]
fn aes_gcm_on_oct_hsm_keys_checked_by_aes_gcm() {
    let e = env();
    let m = &e.m;
    let h = session("mhsm");
    let k = key(h, CKO_SECRET_KEY, "aes");
    check_remote_secret(m, h, k);
    let material = e.mhsm.material(&id_of(h, k));
    check_aes_gcm(
        m,
        h,
        k,
        &material,
        b"a 32-byte OpenBao root key......",
        b"aad",
    );
    // An AES-128 key: its algorithm (A128GCM) is found on first use.
    let k128 = key(h, CKO_SECRET_KEY, "aes128");
    let material = e.mhsm.material(&id_of(h, k128));
    let mut iv = [0u8; 12];
    let ct = contract::gcm_encrypt(m, h, k128, &mut iv, b"", b"short key").unwrap();
    use aes_gcm::aead::{Aead, KeyInit};
    let opened = aes_gcm::Aes128Gcm::new_from_slice(&material)
        .unwrap()
        .decrypt(aes_gcm::Nonce::from_slice(&iv), ct.as_slice())
        .expect("aes-gcm opens the A128GCM ciphertext");
    assert_eq!(opened, b"short key");
    assert_eq!(
        contract::gcm_decrypt(m, h, k128, &iv, b"", &ct).unwrap(),
        b"short key"
    );
}

#[test]
fn openbao_seal_sequence_on_an_oct_hsm_key() {
    check_seal_sequence(
        &env().m,
        "mhsm-seal",
        "mhsm-siv",
        "seal",
        b"seal pin",
        Found::One,
    );
}

// ---- keys ----------------------------------------------------------------------------------

fn labels(h: CK_SESSION_HANDLE, class: CK_OBJECT_CLASS) -> std::collections::BTreeSet<String> {
    let m = &env().m;
    let mut t = Template::new().ulong(CKA_CLASS, class);
    find(m, h, &mut t)
        .into_iter()
        .map(|o| String::from_utf8(get_attr(m, h, o, CKA_LABEL).unwrap()).unwrap())
        .collect()
}

#[test]
fn versions_are_objects_current_first_and_unusable_ones_hidden() {
    let m = &env().m;
    let h = session("mhsm");
    let versions = objects(h, CKO_PRIVATE_KEY, "ec256");
    assert_eq!(versions.len(), 2, "both versions of ec256");
    let ids: Vec<String> = versions.iter().map(|o| id_of(h, *o)).collect();
    assert!(ids.iter().all(|i| i.starts_with("ec256/")), "{ids:?}");
    assert_ne!(ids[0], ids[1]);
    for v in &versions {
        ec_sign_ok(h, *v).unwrap();
    }
    // The Key Vault slot: software and HSM keys; ec-hsm's second version is disabled.
    let kv = session("kv");
    assert_eq!(
        labels(kv, CKO_PRIVATE_KEY),
        ["ec-hsm", "ec-soft", "rsa-soft"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(objects(kv, CKO_PRIVATE_KEY, "ec-hsm").len(), 1);
    ec_sign_ok(kv, key(kv, CKO_PRIVATE_KEY, "ec-soft")).unwrap();
    let hsm = session("kv-hsm");
    assert_eq!(
        labels(hsm, CKO_PRIVATE_KEY),
        ["ec-hsm".to_string()].into_iter().collect()
    );
    // The service is told by the challenge (these vaults are at 127.0.0.1).
    let model = |label: &str| text(&token_info(m, slot_labelled(m, label, true)).model);
    assert_eq!(model("mhsm"), "Managed HSM");
    assert_eq!(model("kv"), "Key Vault");
    let ti = token_info(m, slot_labelled(m, "kv", true));
    assert_eq!(text(&ti.manufacturerID), "Microsoft");
}

#[test]
fn generate_creates_keys_then_new_versions() {
    use p256::ecdsa::signature::Verifier;
    let m = &env().m;
    let h = session("mhsm-gen");
    let pair = |label: &str| {
        keypair(
            m,
            h,
            CKM_EC_KEY_PAIR_GEN,
            Template::new()
                .bytes(
                    CKA_EC_PARAMS,
                    &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
                )
                .bytes(CKA_LABEL, label.as_bytes()),
            Template::new()
                .bytes(CKA_LABEL, label.as_bytes())
                .bool(CKA_SIGN, true),
            label.as_bytes(),
        )
    };
    let (public, private) = pair("gen-ec");
    let point = point_of(m, h, public);
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    let sig = sign(m, h, mech(CKM_ECDSA_SHA256), private, b"new key").unwrap();
    vk.verify(
        b"new key",
        &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
    )
    .unwrap();
    // The same name again: Key Vault's rotation, a new version found first.
    let (_, second) = pair("gen-ec");
    let found = objects(h, CKO_PRIVATE_KEY, "gen-ec");
    assert_eq!(found.len(), 2);
    assert_eq!(found[0], second);
    assert_ne!(id_of(h, found[0]), id_of(h, found[1]));

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
    let ct = contract::gcm_encrypt(m, h, aes, &mut iv, &[], b"with a new key").unwrap();
    assert_eq!(
        env().mhsm.material(&id_of(h, aes)).len(),
        32,
        "an AES-256 key was made"
    );
    assert_eq!(
        contract::gcm_decrypt(m, h, aes, &iv, &[], &ct).unwrap(),
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
    check_rsa_oaep(
        m,
        h,
        rpriv,
        &rsa_public(m, h, rpub),
        CKM_SHA256,
        b"to the new key",
    );
}

// ---- auth ------------------------------------------------------------------------------------

#[test]
fn each_auth_method_gets_a_token_that_signs() {
    let e = env();
    for label in ["mhsm-cert", "mhsm-wi", "mhsm-mi"] {
        let imds_before = e.mhsm.stats()["imds_grants"].as_u64().unwrap();
        let h = session(label);
        ec_sign_ok(h, key(h, CKO_PRIVATE_KEY, "ec256"))
            .unwrap_or_else(|rv| panic!("{label}: {}", rv_name(rv)));
        if label == "mhsm-mi" {
            assert!(e.mhsm.stats()["imds_grants"].as_u64().unwrap() > imds_before);
        }
    }
}

#[test]
fn refused_credentials_are_pin_incorrect() {
    let m = &env().m;
    for label in [
        "mhsm-badsecret",
        "mhsm-cert-rogue",
        "mhsm-wi-rogue",
        "mhsm-mi-other",
    ] {
        check_refused_login(m, label);
    }
}

#[test]
fn tls_is_verified_a_vault_with_an_unknown_ca_is_unreachable() {
    let m = &env().m;
    let h = open(m, slot_labelled(m, "mhsm-noca", true), true);
    assert_rv!(login(m, h, CKU_USER, b"any"), CKR_DEVICE_ERROR);
}

#[test]
fn a_silent_vault_costs_at_most_the_deadline() {
    let m = &env().m;
    let h = open(m, slot_labelled(m, "silent", true), true);
    check_device_error_within("login to a silent vault", Duration::from_secs(5), || {
        login(m, h, CKU_USER, b"any")
    });
}

// ---- errors ----------------------------------------------------------------------------------

#[test]
fn service_errors_map_to_pkcs11_codes() {
    let e = env();
    let m = &e.m;
    let h = session("mhsm-errors");
    let doomed = key(h, CKO_PRIVATE_KEY, "doomed");
    let disabled = key(h, CKO_PRIVATE_KEY, "disabled-later");
    let denied = key(h, CKO_PRIVATE_KEY, "denied");
    ec_sign_ok(h, doomed).unwrap();
    // Only codes C_Sign may return (CKR_KEY_HANDLE_INVALID and
    // CKR_KEY_FUNCTION_NOT_PERMITTED are C_SignInit's).
    // 404 KeyNotFound: the key is gone.
    e.mhsm.ctl("delete", serde_json::json!({"name": "doomed"}));
    assert_eq!(
        sign(m, h, mech(CKM_ECDSA_SHA256), doomed, b"x"),
        Err(CKR_FUNCTION_FAILED)
    );
    // 403 Forbidden/KeyDisabled and Forbidden by RBAC: the signature is refused.
    e.mhsm.ctl(
        "attrs",
        serde_json::json!({"name": "disabled-later", "enabled": false}),
    );
    assert_eq!(
        sign(m, h, mech(CKM_ECDSA_SHA256), disabled, b"x"),
        Err(CKR_FUNCTION_REJECTED)
    );
    e.mhsm.ctl("deny", serde_json::json!({"name": "denied"}));
    assert_eq!(
        sign(m, h, mech(CKM_ECDSA_SHA256), denied, b"x"),
        Err(CKR_FUNCTION_REJECTED)
    );
}

// ---- faults ---------------------------------------------------------------------------------

fn faults() -> std::sync::MutexGuard<'static, ()> {
    let g = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    env().faults.ctl("clear", serde_json::json!({}));
    g
}

#[test]
fn throttling_and_unavailability_are_retried_then_device_error() {
    let _g = faults();
    let e = env();
    let h = session("faults");
    let ec = key(h, CKO_PRIVATE_KEY, "ec256");
    ec_sign_ok(h, ec).unwrap();
    let before = e.faults.calls("sign");
    // 429 with Retry-After: 1, twice: waited for, then the third attempt signs.
    e.faults.fault("throttle", 2, "/sign");
    let t = Instant::now();
    ec_sign_ok(h, ec).expect("signs after two 429s");
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "Retry-After honoured"
    );
    assert_eq!(
        e.faults.calls("sign"),
        before + 1,
        "the throttled attempts did not sign"
    );
    e.faults.fault("unavailable", 1, "/sign");
    ec_sign_ok(h, ec).expect("signs after one 503");
    e.faults.fault("unavailable", 1000, "/sign");
    assert_eq!(ec_sign_ok(h, ec), Err(CKR_DEVICE_ERROR));
    e.faults.ctl("clear", serde_json::json!({}));
    ec_sign_ok(h, ec).expect("the service is back");
}

#[test]
fn malformed_answers_are_device_errors_never_results() {
    let _g = faults();
    let e = env();
    let m = &e.m;
    let h = session("faults");
    let ec = key(h, CKO_PRIVATE_KEY, "ec256");
    let aes = key(h, CKO_SECRET_KEY, "aes");
    let mut iv = [0u8; 12];
    let sealed = contract::gcm_encrypt(m, h, aes, &mut iv, &[], b"plaintext").unwrap();
    for kind in ["bad_json", "bad_b64", "wrong_length"] {
        e.faults.fault(kind, 1, "/sign");
        assert_eq!(ec_sign_ok(h, ec), Err(CKR_DEVICE_ERROR), "{kind} on sign");
        e.faults.fault(kind, 1, "/decrypt");
        assert_eq!(
            contract::gcm_decrypt(m, h, aes, &iv, &[], &sealed),
            Err(CKR_DEVICE_ERROR),
            "{kind} on decrypt"
        );
        e.faults.fault(kind, 1, "/encrypt");
        assert_eq!(
            contract::gcm_encrypt(m, h, aes, &mut [0u8; 12], &[], b"x"),
            Err(CKR_DEVICE_ERROR),
            "{kind} on encrypt"
        );
    }
    ec_sign_ok(h, ec).unwrap();
}

#[test]
fn a_hanging_vault_is_device_error_at_the_deadline() {
    let _g = faults();
    let e = env();
    let h = session("faults");
    let ec = key(h, CKO_PRIVATE_KEY, "ec256");
    let before = e.faults.calls("sign");
    e.faults.fault("hang", 1, "/sign");
    check_device_error_within("a hanging sign", Duration::from_millis(4500), || {
        ec_sign_ok(h, ec).err().unwrap_or(CKR_OK)
    });
    ec_sign_ok(h, ec).unwrap();
    // The server finishes the abandoned request later; the other fault tests count
    // signatures, so the lock is kept until it has.
    let t = Instant::now();
    while e.faults.calls("sign") < before + 2 && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_key_creation_slower_than_timeout_ms_completes() {
    let _g = faults();
    let e = env();
    let m = &e.m;
    let h = session("faults");
    // The HSM takes 4 s to make the key; the slot's timeout_ms is 3000: a creation gets
    // 60 s at least (RSA-4096 takes seconds), its HTTP attempt included.
    e.faults.ctl(
        "fault",
        serde_json::json!({"kind": "hang", "count": 1, "match": "/create", "delay_ms": 4000}),
    );
    let t = Instant::now();
    let (_, private) = keypair(
        m,
        h,
        CKM_EC_KEY_PAIR_GEN,
        Template::new()
            .bytes(
                CKA_EC_PARAMS,
                &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            )
            .bytes(CKA_LABEL, b"slow-create"),
        Template::new()
            .bytes(CKA_LABEL, b"slow-create")
            .bool(CKA_SIGN, true),
        b"slow-create",
    );
    assert!(t.elapsed() >= Duration::from_secs(4), "the fault was hit");
    ec_sign_ok(h, private).expect("the new key signs");
}

#[test]
fn tokens_are_renewed_before_expiry_and_after_a_refusal() {
    let _g = faults();
    let e = env();
    let h = session("faults");
    let ec = key(h, CKO_PRIVATE_KEY, "ec256");
    ec_sign_ok(h, ec).unwrap();
    let g0 = e.faults.grants();
    // Tokens live 4 s here and are renewed at half-life: the next call after 2 s gets one.
    std::thread::sleep(Duration::from_millis(2200));
    ec_sign_ok(h, ec).unwrap();
    assert_eq!(e.faults.grants(), g0 + 1, "renewed before it expired");
    // A token the vault forgot: the 401 challenge, one new token, the call succeeds.
    e.faults.ctl("revoke", serde_json::json!({}));
    ec_sign_ok(h, ec).expect("renewed after the 401 challenge");
    assert_eq!(e.faults.grants(), g0 + 2);
    // A vault that refuses every token: one renewal, then not logged in (refused).
    e.faults.fault("unauthorized", 2, "/sign");
    assert_ne!(ec_sign_ok(h, ec), Ok(()));
    ec_sign_ok(h, ec).unwrap();
}

// ---- replicas --------------------------------------------------------------------------------

#[test]
fn a_replica_group_of_two_vaults_fails_over() {
    let e = env();
    let m = &e.m;
    let slot = slot_labelled(m, "regions", true);
    let h = open(m, slot, true);
    assert_rv!(login(m, h, CKU_USER, b"any"), CKR_OK);
    let k = first(m, h, CKO_SECRET_KEY, "replicated");
    let mut iv = [0u8; 12];
    let ct = contract::gcm_encrypt(m, h, k, &mut iv, b"aad", b"in two regions").unwrap();
    let before = e.second.calls("decrypt");
    // The first region stops answering: the second, holding the same key, takes over.
    e.mhsm.fault("unavailable", 1000, "/keys/replicated/");
    let pt = contract::gcm_decrypt(m, h, k, &iv, b"aad", &ct);
    e.mhsm.ctl("clear", serde_json::json!({}));
    assert_eq!(pt.unwrap(), b"in two regions");
    assert!(
        e.second.calls("decrypt") > before,
        "the second vault answered"
    );
}
