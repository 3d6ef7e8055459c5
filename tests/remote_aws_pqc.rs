//! ML-DSA keys of an AWS KMS slot (PKCS#11 3.2 `CKM_ML_DSA`) through the built module,
//! against the faithful KMS test server (conformance/aws/kms_server.py: `ML_DSA_44/65/87`
//! keys, `ML_DSA_SHAKE_256` with `MessageType` RAW up to 4096 bytes and `EXTERNAL_MU`, real
//! ML-DSA; moto has no ML-DSA key specs). Every signature is verified by RustCrypto's
//! `ml-dsa` with the public key the slot shows; the server's statistics tell which message
//! type each request used.

#![allow(clippy::macro_metavars_in_unsafe)]
mod aws_servers;
mod common;
mod contract;
use aws_servers::*;
use common::*;
use contract::pqc::*;
use contract::*;
use cryptoki_sys::*;
use serde_json::json;
use std::sync::{Mutex, MutexGuard, OnceLock};

const AK: &str = "AKIDTEST";

struct Setup {
    m: Module,
    kms: Server,
}
unsafe impl Sync for Setup {}
unsafe impl Send for Setup {}

static SETUP: OnceLock<Setup> = OnceLock::new();
/// The server's fault settings and statistics are shared: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn make_key(port: u16, spec: &str, alias: &str) {
    let (st, v) = api(
        port,
        "TrentService.CreateKey",
        AK,
        json!({"KeySpec": spec, "KeyUsage": "SIGN_VERIFY"}),
    );
    assert_eq!(st, 200, "CreateKey {spec}: {v}");
    let id = v["KeyMetadata"]["KeyId"].as_str().unwrap();
    let (st, v) = api(
        port,
        "TrentService.CreateAlias",
        AK,
        json!({"AliasName": format!("alias/{alias}"), "TargetKeyId": id}),
    );
    assert_eq!(st, 200, "CreateAlias {alias}: {v}");
}

fn setup() -> &'static Setup {
    SETUP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hsmux-aws-pqc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        remove_at_exit(&dir);
        let kms = python_server("kms_server.py", &["--access-key", AK]);
        for (spec, alias) in [
            ("ML_DSA_44", "mldsa44"),
            ("ML_DSA_65", "mldsa65"),
            ("ML_DSA_87", "mldsa87"),
            ("ECC_NIST_P256", "ec256"),
        ] {
            make_key(kms.port, spec, alias);
        }
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        let cfg = format!(
            "[[slot]]\nlabel = \"aws\"\nbackend = \"aws-kms\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\naccess_key_id = \"{AK}\"\nsecret_access_key = \"x\"\ntimeout_ms = 10000\n",
            kms.url()
        );
        std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
        let m = load();
        assert_rv!(initialize(&m), CKR_OK);
        Setup { m, kms }
    })
}

fn pair(h: CK_SESSION_HANDLE, label: &str) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let m = &setup().m;
    let private = first(m, h, CKO_PRIVATE_KEY, label);
    (private, public_of(m, h, private))
}

/// `MessageType` of the server's last `Sign` request.
fn last_message_type() -> String {
    stats(setup().kms.port)["last"]["Sign"]["MessageType"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn every_parameter_set_signs_raw_up_to_4_kib_and_external_mu_beyond() {
    let _g = serial();
    let m = &setup().m;
    let h = logged_in(m, "aws");
    for (set, label) in [
        (CKP_ML_DSA_44, "mldsa44"),
        (CKP_ML_DSA_65, "mldsa65"),
        (CKP_ML_DSA_87, "mldsa87"),
    ] {
        let keys = pair(h, label);
        check_ml_dsa(m, h, keys, set, &[b"to be signed", &pattern(9000)]);
        let pk = get_attr(m, h, keys.1, CKA_VALUE).unwrap();
        // The message type each length travels as; the signature is the same either way.
        for (msg, kind) in [
            (pattern(1), "RAW"),
            (pattern(4096), "RAW"),
            (pattern(4097), "EXTERNAL_MU"),
            (Vec::new(), "EXTERNAL_MU"),
        ] {
            let sig = sign(m, h, mech(CKM_ML_DSA), keys.0, &msg).unwrap();
            assert_eq!(last_message_type(), kind, "{} bytes", msg.len());
            assert!(
                ml_dsa_valid(set, &pk, &msg, b"", &sig),
                "{} bytes",
                msg.len()
            );
        }
    }
}

#[test]
fn context_strings_are_bound_through_external_mu() {
    let _g = serial();
    let m = &setup().m;
    let h = logged_in(m, "aws");
    let (private, public) = pair(h, "mldsa65");
    let pk = get_attr(m, h, public, CKA_VALUE).unwrap();
    let msg = b"short, but with a context";
    let mut c = SignContext::new(CKH_HEDGE_PREFERRED, b"hsmux context");
    let sig = sign(m, h, c.mech(CKM_ML_DSA), private, msg).unwrap();
    assert_eq!(last_message_type(), "EXTERNAL_MU");
    assert!(ml_dsa_valid(
        CKP_ML_DSA_65,
        &pk,
        msg,
        b"hsmux context",
        &sig
    ));
    assert!(!ml_dsa_valid(CKP_ML_DSA_65, &pk, msg, b"", &sig));
    assert_rv!(verify(m, h, c.mech(CKM_ML_DSA), public, msg, &sig), CKR_OK);
    let mut other = SignContext::new(CKH_HEDGE_PREFERRED, b"another context");
    assert_rv!(
        verify(m, h, other.mech(CKM_ML_DSA), public, msg, &sig),
        CKR_SIGNATURE_INVALID
    );
    // Without its context the signature does not verify.
    assert_rv!(
        verify(m, h, mech(CKM_ML_DSA), public, msg, &sig),
        CKR_SIGNATURE_INVALID
    );
    let mut det = SignContext::new(CKH_DETERMINISTIC_REQUIRED, b"");
    let mut mc = det.mech(CKM_ML_DSA);
    assert_rv!(
        ck!(m, C_SignInit(h, &mut mc, private)),
        CKR_MECHANISM_PARAM_INVALID
    );
}

#[test]
fn wrong_mechanisms_parameter_sets_and_answers_are_refused() {
    let _g = serial();
    let m = &setup().m;
    let h = logged_in(m, "aws");
    let (k44, p44) = pair(h, "mldsa44");
    let (_, p65) = pair(h, "mldsa65");
    let msg = b"parameter sets";
    let sig44 = sign(m, h, mech(CKM_ML_DSA), k44, msg).unwrap();
    // A signature of the 44 set checked with a 65 key: not even its length.
    assert_rv!(
        verify(m, h, mech(CKM_ML_DSA), p65, msg, &sig44),
        CKR_SIGNATURE_LEN_RANGE
    );
    assert_rv!(verify(m, h, mech(CKM_ML_DSA), p44, msg, &sig44), CKR_OK);
    assert_rv!(
        sign(m, h, mech(CKM_ECDSA_SHA256), k44, msg).unwrap_err(),
        CKR_MECHANISM_INVALID
    );
    let ec = first(m, h, CKO_PRIVATE_KEY, "ec256");
    assert_rv!(
        sign(m, h, mech(CKM_ML_DSA), ec, msg).unwrap_err(),
        CKR_MECHANISM_INVALID
    );
    // What the slot lists: ML-DSA only (no SLH-DSA, no ML-KEM in AWS KMS).
    let slot = slot_labelled(m, "aws", true);
    let mut info: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(
        ck!(m, C_GetMechanismInfo(slot, CKM_ML_DSA, &mut info)),
        CKR_OK
    );
    assert_eq!((info.ulMinKeySize, info.ulMaxKeySize), (1312, 2592));
    assert_eq!(info.flags & (CKF_SIGN | CKF_VERIFY), CKF_SIGN | CKF_VERIFY);
    for absent in [CKM_ML_KEM, CKM_SLH_DSA, CKM_ML_KEM_KEY_PAIR_GEN] {
        assert_rv!(
            ck!(m, C_GetMechanismInfo(slot, absent, &mut info)),
            CKR_MECHANISM_INVALID
        );
    }
    // A signature one byte short from the service is a device error, never handed on.
    control(
        setup().kms.port,
        "/__ctl",
        json!({"fault": "bad-answer", "count": 1, "ops": ["Sign"]}),
    );
    assert_rv!(
        sign(m, h, mech(CKM_ML_DSA), k44, msg).unwrap_err(),
        CKR_DEVICE_ERROR
    );
    control(setup().kms.port, "/__ctl", json!({"fault": "none"}));
}

#[test]
fn ml_dsa_key_pairs_are_created_in_kms() {
    let _g = serial();
    let m = &setup().m;
    let h = logged_in(m, "aws");
    let gen = |set: CK_ULONG, label: &str| {
        let mut public = Template::new().ulong(CKA_PARAMETER_SET, set);
        let mut private = Template::new()
            .bytes(CKA_LABEL, label.as_bytes())
            .bool(CKA_SIGN, true)
            .bool(CKA_TOKEN, true);
        try_keypair(m, h, CKM_ML_DSA_KEY_PAIR_GEN, &mut public, &mut private)
    };
    let (rv, public, private) = gen(CKP_ML_DSA_87, "gen-mldsa87");
    assert_rv!(rv, CKR_OK);
    let last = &stats(setup().kms.port)["last"]["CreateKey"];
    assert_eq!(last["KeySpec"], "ML_DSA_87");
    assert_eq!(last["KeyUsage"], "SIGN_VERIFY");
    check_ml_dsa(m, h, (private, public), CKP_ML_DSA_87, &[b"a new key"]);
    assert_rv!(gen(0x99, "gen-bad").0, CKR_ATTRIBUTE_VALUE_INVALID);
    let mut public = Template::new().ulong(CKA_PARAMETER_SET, CKP_ML_KEM_768);
    let mut private = Template::new().bytes(CKA_LABEL, b"gen-kem");
    assert_rv!(
        try_keypair(m, h, CKM_ML_KEM_KEY_PAIR_GEN, &mut public, &mut private).0,
        CKR_MECHANISM_INVALID
    );
}
