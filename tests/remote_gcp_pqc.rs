//! Post-quantum keys of a Cloud KMS slot (PKCS#11 3.2) through the built module, against
//! the Cloud KMS stand-in (conformance/gcpkms_server.py with gcpkms_pqc.py: real ML-DSA,
//! SLH-DSA and ML-KEM, CRC32C on every byte field): `PQ_SIGN_ML_DSA_44/65/87` with
//! `CKM_ML_DSA`, `PQ_SIGN_SLH_DSA_SHA2_128S` with `CKM_SLH_DSA` (verified by RustCrypto's
//! `ml-dsa` and `slh-dsa`), `ML_KEM_768/1024` with `C_DecapsulateKey` (the service's
//! secret matched against RustCrypto's `ml-kem` encapsulation) and `C_EncapsulateKey` (local),
//! key creation, and integrity faults.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
mod contract;
use common::*;
use contract::pqc::*;
use contract::*;
use cryptoki_sys::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

const RING: &str = "projects/p/locations/us-east1/keyRings/pqc";
const KEYS: &[(&str, &str)] = &[
    ("pq44", "PQ_SIGN_ML_DSA_44"),
    ("pq65", "PQ_SIGN_ML_DSA_65"),
    ("pq87", "PQ_SIGN_ML_DSA_87"),
    ("slh", "PQ_SIGN_SLH_DSA_SHA2_128S"),
    ("kem768", "ML_KEM_768"),
    ("kem1024", "ML_KEM_1024"),
    ("ec256", "EC_SIGN_P256_SHA256"),
];

struct Env {
    m: Module,
    port: u16,
    _server: Child,
}
unsafe impl Sync for Env {}
unsafe impl Send for Env {}

static ENV: OnceLock<Env> = OnceLock::new();
/// Faults are the server's state: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// gcpkms_server.py seeded with [`KEYS`] (HSM protection), once it answers.
fn start(dir: &Path) -> (Child, u16) {
    let keys: Vec<serde_json::Value> = KEYS
        .iter()
        .map(|(k, alg)| serde_json::json!({"name": format!("{RING}/cryptoKeys/{k}"), "algorithm": alg}))
        .collect();
    let seed = dir.join("seed.json");
    std::fs::write(&seed, serde_json::json!({ "keys": keys }).to_string()).unwrap();
    let script: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/gcpkms_server.py");
    let port = free_port();
    let mut child = Command::new(venv_python("cryptography, slh-dsa and google-crc32c"))
        .arg(&script)
        .args(["--port", &port.to_string(), "--sa-out"])
        .arg(dir.join("sa.json"))
        .arg("--seed")
        .arg(&seed)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
    kill_at_exit(child.id());
    wait_ready(&mut child, "gcpkms_server.py", || {
        dir.join("sa.json").exists() && control_request(port, "GET", "stats", "").is_some()
    });
    (child, port)
}

fn env() -> &'static Env {
    ENV.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hsmux-gcp-pqc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        remove_at_exit(&dir);
        let (server, port) = start(&dir);
        let cfg = format!(
            "[[slot]]\nlabel = \"gcp\"\nbackend = \"gcp-kms\"\nkey_ring = \"{RING}\"\ncredentials = \"{}\"\nendpoint = \"http://127.0.0.1:{port}\"\ntimeout_ms = 30000\n",
            dir.join("sa.json").display()
        );
        std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
        let m = load();
        assert_rv!(initialize(&m), CKR_OK);
        Env {
            m,
            port,
            _server: server,
        }
    })
}

fn fault(kind: &str, verb: &str) {
    let body = serde_json::json!({"kind": kind, "count": 1, "match": verb}).to_string();
    control_request(env().port, "POST", "fault", &body).expect("fault");
}

fn pair(h: CK_SESSION_HANDLE, label: &str) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let m = &env().m;
    let private = first(m, h, CKO_PRIVATE_KEY, label);
    (private, public_of(m, h, private))
}

#[test]
fn ml_dsa_keys_of_every_parameter_set_sign_with_checksums() {
    let _g = serial();
    let m = &env().m;
    let h = logged_in(m, "gcp");
    let long: Vec<u8> = (0..20000).map(|i| i as u8).collect();
    for (set, label) in [
        (CKP_ML_DSA_44, "pq44"),
        (CKP_ML_DSA_65, "pq65"),
        (CKP_ML_DSA_87, "pq87"),
    ] {
        check_ml_dsa(
            m,
            h,
            pair(h, label),
            set,
            &[b"Cloud HSM, post-quantum", &long],
        );
    }
    // A signature altered on the way (its checksum kept) is caught by the CRC32C check.
    let (k, _) = pair(h, "pq65");
    fault("corrupt_data", "asymmetricSign");
    assert_rv!(
        sign(m, h, mech(CKM_ML_DSA), k, b"x").unwrap_err(),
        CKR_DEVICE_ERROR
    );
    // Cloud KMS signs with an empty context only: a context is refused before any request.
    let mut c = SignContext::new(CKH_HEDGE_PREFERRED, b"ctx");
    let mut mc = c.mech(CKM_ML_DSA);
    assert_rv!(
        ck!(m, C_SignInit(h, &mut mc, k)),
        CKR_MECHANISM_PARAM_INVALID
    );
}

#[test]
fn slh_dsa_signatures_verify_with_rustcrypto() {
    let _g = serial();
    let m = &env().m;
    let h = logged_in(m, "gcp");
    let keys = pair(h, "slh");
    let pk = pqc_public_key(m, h, keys, CKK_SLH_DSA, CKP_SLH_DSA_SHA2_128S);
    assert_eq!(pk.len(), 32);
    let msg = b"stateless hash-based";
    let sig = sign(m, h, mech(CKM_SLH_DSA), keys.0, msg).unwrap();
    assert_eq!(sig.len(), 7856);
    assert!(slh_dsa_valid(&pk, msg, &sig));
    assert!(!slh_dsa_valid(&pk, b"another message", &sig));
    // Not verified here (no SLH-DSA in aws-lc): said by the mechanism info and C_VerifyInit.
    let slot = slot_labelled(m, "gcp", true);
    let mut info: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(
        ck!(m, C_GetMechanismInfo(slot, CKM_SLH_DSA, &mut info)),
        CKR_OK
    );
    assert_eq!(info.flags & (CKF_SIGN | CKF_VERIFY), CKF_SIGN);
    assert_eq!((info.ulMinKeySize, info.ulMaxKeySize), (32, 32));
    assert_rv!(
        verify(m, h, mech(CKM_SLH_DSA), keys.1, msg, &sig),
        CKR_MECHANISM_INVALID
    );
    assert_rv!(
        sign(m, h, mech(CKM_ML_DSA), keys.0, msg).unwrap_err(),
        CKR_MECHANISM_INVALID
    );
}

#[test]
fn ml_kem_keys_decapsulate_in_the_service() {
    let _g = serial();
    let m = &env().m;
    let h = logged_in(m, "gcp");
    check_ml_kem(m, h, pair(h, "kem768"), CKP_ML_KEM_768);
    check_ml_kem(m, h, pair(h, "kem1024"), CKP_ML_KEM_1024);
    let slot = slot_labelled(m, "gcp", true);
    let mut info: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(
        ck!(m, C_GetMechanismInfo(slot, CKM_ML_KEM, &mut info)),
        CKR_OK
    );
    assert_eq!(
        info.flags & (CKF_ENCAPSULATE | CKF_DECAPSULATE),
        CKF_ENCAPSULATE | CKF_DECAPSULATE
    );
    // A shared secret altered on the way is caught by its checksum.
    let (private, public) = pair(h, "kem768");
    let (ct, _) = encapsulate(h, public, secret_template()).unwrap();
    fault("corrupt_data", "decapsulate");
    assert_rv!(
        decapsulate(h, private, secret_template(), &ct).unwrap_err(),
        CKR_DEVICE_ERROR
    );
    // The KEM keys neither sign nor decrypt; a signing key does not decapsulate.
    assert_eq!(get_attr(m, h, private, CKA_SIGN).unwrap(), [0]);
    let (ec, _) = pair(h, "ec256");
    assert!(decapsulate(h, ec, secret_template(), &ct).is_err());
}

#[test]
fn post_quantum_keys_are_created_in_the_key_ring() {
    let _g = serial();
    let m = &env().m;
    let h = logged_in(m, "gcp");
    let gen = |mt: CK_MECHANISM_TYPE, set: CK_ULONG, label: &str| {
        let mut public = Template::new().ulong(CKA_PARAMETER_SET, set);
        let mut private = Template::new().bytes(CKA_LABEL, label.as_bytes());
        let (rv, p, s) = try_keypair(m, h, mt, &mut public, &mut private);
        (rv, (s, p))
    };
    let (rv, keys) = gen(CKM_ML_DSA_KEY_PAIR_GEN, CKP_ML_DSA_44, "gen-pq44");
    assert_rv!(rv, CKR_OK);
    check_ml_dsa(m, h, keys, CKP_ML_DSA_44, &[b"new"]);
    let (rv, keys) = gen(CKM_ML_KEM_KEY_PAIR_GEN, CKP_ML_KEM_1024, "gen-kem");
    assert_rv!(rv, CKR_OK);
    check_ml_kem(m, h, keys, CKP_ML_KEM_1024);
    let (rv, keys) = gen(CKM_SLH_DSA_KEY_PAIR_GEN, CKP_SLH_DSA_SHA2_128S, "gen-slh");
    assert_rv!(rv, CKR_OK);
    let pk = pqc_public_key(m, h, keys, CKK_SLH_DSA, CKP_SLH_DSA_SHA2_128S);
    let sig = sign(m, h, mech(CKM_SLH_DSA), keys.0, b"new").unwrap();
    assert!(slh_dsa_valid(&pk, b"new", &sig));
    // Cloud KMS has no ML-KEM-512; a set no service knows is an invalid attribute value.
    assert_rv!(
        gen(CKM_ML_KEM_KEY_PAIR_GEN, CKP_ML_KEM_512, "gen-kem512").0,
        CKR_TEMPLATE_INCONSISTENT
    );
    assert_rv!(
        gen(CKM_ML_DSA_KEY_PAIR_GEN, 0x99, "gen-bad").0,
        CKR_ATTRIBUTE_VALUE_INVALID
    );
}
