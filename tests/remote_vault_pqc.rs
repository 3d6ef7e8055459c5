//! ML-DSA keys of a transit slot (OpenBao 2.7's `mldsa-44/65/87` key types) through the
//! built module, against the real `bao server -dev` from the venv: signatures verified by
//! RustCrypto's `ml-dsa` with the public key the slot shows (transit signs pure ML-DSA
//! with an empty context), every version of a rotated key, key creation, and what transit
//! does not offer (context strings, SLH-DSA, ML-KEM).

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
mod contract;
use common::*;
use contract::bao::Bao;
use contract::pqc::*;
use contract::*;
use cryptoki_sys::*;
use serde_json::json;
use std::sync::OnceLock;

struct Env {
    m: Module,
    bao: Bao,
}
unsafe impl Sync for Env {}
unsafe impl Send for Env {}

static ENV: OnceLock<Env> = OnceLock::new();

const KEYS: [(&str, &str, CK_ULONG); 3] = [
    ("mldsa44", "mldsa-44", CKP_ML_DSA_44),
    ("mldsa65", "mldsa-65", CKP_ML_DSA_65),
    ("mldsa87", "mldsa-87", CKP_ML_DSA_87),
];

fn env() -> &'static Env {
    ENV.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hsmux-vault-pqc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        remove_at_exit(&dir);
        let bao = Bao::start("pqc", None);
        bao.ok("POST", "sys/mounts/transit", json!({"type": "transit"}));
        for (name, kind, _) in KEYS {
            bao.ok("POST", &format!("transit/keys/{name}"), json!({"type": kind}));
        }
        bao.ok("POST", "transit/keys/rotated", json!({"type": "mldsa-44"}));
        bao.ok("POST", "transit/keys/rotated/rotate", serde_json::Value::Null);
        let cfg = format!(
            "[[slot]]\nlabel = \"vault\"\nbackend = \"vault\"\naddress = \"{}\"\nauth = {{ method = \"token\", token = \"{}\" }}\ntransit = {{ path = \"transit\" }}\ntimeout_ms = 10000\n",
            bao.addr(),
            bao.token
        );
        std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
        let m = load();
        assert_rv!(initialize(&m), CKR_OK);
        Env { m, bao }
    })
}

fn pair(h: CK_SESSION_HANDLE, private: CK_OBJECT_HANDLE) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    (private, public_of(&env().m, h, private))
}

#[test]
fn transit_ml_dsa_keys_of_every_parameter_set_sign() {
    let m = &env().m;
    let h = logged_in(m, "vault");
    let long: Vec<u8> = (0..100_000).map(|i| (i % 251) as u8).collect();
    for (name, _, set) in KEYS {
        let k = first(m, h, CKO_PRIVATE_KEY, name);
        check_ml_dsa(m, h, pair(h, k), set, &[b"signed by OpenBao", &long]);
    }
}

#[test]
fn every_version_of_a_rotated_key_signs_with_its_own_key() {
    let m = &env().m;
    let h = logged_in(m, "vault");
    let versions = objects(m, h, CKO_PRIVATE_KEY, "rotated");
    assert_eq!(versions.len(), 2, "two versions, newest first");
    let ids: Vec<String> = versions.iter().map(|k| id_text(m, h, *k)).collect();
    assert_eq!(ids, ["transit/keys/rotated/v2", "transit/keys/rotated/v1"]);
    let pks: Vec<Vec<u8>> = versions
        .iter()
        .map(|k| get_attr(m, h, public_of(m, h, *k), CKA_VALUE).unwrap())
        .collect();
    assert_ne!(pks[0], pks[1]);
    for (k, pk) in versions.iter().zip(&pks) {
        let sig = sign(m, h, mech(CKM_ML_DSA), *k, b"versioned").unwrap();
        assert!(ml_dsa_valid(CKP_ML_DSA_44, pk, b"versioned", b"", &sig));
    }
}

#[test]
fn contexts_are_refused_and_keys_are_created() {
    let env = env();
    let m = &env.m;
    let h = logged_in(m, "vault");
    let k = first(m, h, CKO_PRIVATE_KEY, "mldsa65");
    let mut c = SignContext::new(CKH_HEDGE_PREFERRED, b"ctx");
    let mut mc = c.mech(CKM_ML_DSA);
    assert_rv!(
        ck!(m, C_SignInit(h, &mut mc, k)),
        CKR_MECHANISM_PARAM_INVALID
    );
    // An empty context in the parameter is the plain signature.
    let mut empty = SignContext::new(CKH_HEDGE_REQUIRED, b"");
    let (_, p) = pair(h, k);
    let pk = get_attr(m, h, p, CKA_VALUE).unwrap();
    let sig = sign(m, h, empty.mech(CKM_ML_DSA), k, b"m").unwrap();
    assert!(ml_dsa_valid(CKP_ML_DSA_65, &pk, b"m", b"", &sig));
    let slot = slot_labelled(m, "vault", true);
    let mut info: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
    for absent in [CKM_SLH_DSA, CKM_ML_KEM] {
        assert_rv!(
            ck!(m, C_GetMechanismInfo(slot, absent, &mut info)),
            CKR_MECHANISM_INVALID
        );
    }
    let mut public = Template::new().ulong(CKA_PARAMETER_SET, CKP_ML_DSA_87);
    let mut private = Template::new().bytes(CKA_LABEL, b"gen-mldsa87");
    let (rv, p, s) = try_keypair(m, h, CKM_ML_DSA_KEY_PAIR_GEN, &mut public, &mut private);
    assert_rv!(rv, CKR_OK);
    let read = env
        .bao
        .ok("GET", "transit/keys/gen-mldsa87", serde_json::Value::Null);
    assert_eq!(read["data"]["type"], "mldsa-87");
    check_ml_dsa(m, h, (s, p), CKP_ML_DSA_87, &[b"made through PKCS#11"]);
}

#[test]
fn hsmux_check_names_the_parameter_sets() {
    env();
    let cfg = std::env::var("HSMUX_CONFIG").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hsmux"))
        .args(["check", "--config", &cfg])
        .env("HSMUX_NO_METRICS", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for (name, _, set) in KEYS {
        let fips = match set {
            CKP_ML_DSA_44 => "ML-DSA-44",
            CKP_ML_DSA_65 => "ML-DSA-65",
            _ => "ML-DSA-87",
        };
        let line =
            format!("key \"{name}\" transit/keys/{name}/v1 {fips} primary mechanisms: ML_DSA");
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
}
