//! `backend = "cloudhsm"` replicas: the "CloudHSM client library" is SoftHSMv2 (one token
//! per replica, each holding its own EC key under the same CKA_ID, so that a signature
//! tells which replica made it), and each replica's cluster lives in the CloudHSM v2 test
//! server of conformance/aws/cloudhsm_server.py, whose HSM states the test changes. When
//! the first cluster shows no ACTIVE HSM the prober takes that replica down and signing
//! continues on the other (every signature verified with p256); when its HSMs are ACTIVE
//! again it comes back. `hsmux check` prints each HSM with its EniIp and State.

#![allow(clippy::macro_metavars_in_unsafe)]
mod aws_servers;
mod common;
use aws_servers::*;
use common::*;
use cryptoki_sys::*;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const CLUSTER_A: &str = "cluster-aaaaaa2bcde";
const CLUSTER_B: &str = "cluster-bbbbbb2bcde";

/// An EC key made outside the token and put into it as `sig`.
fn provision(direct: &Module, token: &str, scalar: [u8; 32]) -> p256::ecdsa::VerifyingKey {
    let sk = p256::ecdsa::SigningKey::from_bytes(&scalar.into()).unwrap();
    let vk = *sk.verifying_key();
    let point = vk.to_encoded_point(false);
    let mut point_der = vec![0x04, point.as_bytes().len() as u8];
    point_der.extend_from_slice(point.as_bytes());
    let slot = slot_labelled(direct, token, true);
    let h = open(direct, slot, true);
    assert_eq!(login(direct, h, CKU_USER, PIN), CKR_OK);
    let mut o = 0;
    let mut private = Template::new()
        .ulong(CKA_CLASS, CKO_PRIVATE_KEY)
        .ulong(CKA_KEY_TYPE, CKK_EC)
        .bool(CKA_TOKEN, true)
        .bool(CKA_PRIVATE, true)
        .bool(CKA_SIGN, true)
        .bytes(CKA_EC_PARAMS, P256_PARAMS)
        .bytes(CKA_VALUE, &sk.to_bytes())
        .bytes(CKA_ID, b"sig")
        .bytes(CKA_LABEL, b"sig");
    assert_rv!(
        ck!(
            direct,
            C_CreateObject(h, private.ptr(), private.len(), &mut o)
        ),
        CKR_OK
    );
    let mut public = Template::new()
        .ulong(CKA_CLASS, CKO_PUBLIC_KEY)
        .ulong(CKA_KEY_TYPE, CKK_EC)
        .bool(CKA_TOKEN, true)
        .bool(CKA_VERIFY, true)
        .bytes(CKA_EC_PARAMS, P256_PARAMS)
        .bytes(CKA_EC_POINT, &point_der)
        .bytes(CKA_ID, b"sig")
        .bytes(CKA_LABEL, b"sig");
    assert_rv!(
        ck!(
            direct,
            C_CreateObject(h, public.ptr(), public.len(), &mut o)
        ),
        CKR_OK
    );
    assert_eq!(ck!(direct, C_CloseSession(h)), CKR_OK);
    vk
}

fn replica(name: &str, token: &str, cluster: &str, endpoint: &str) -> String {
    format!(
        "  [[slot.replica]]\n  name = \"{name}\"\n  backend = \"cloudhsm\"\n  library = \"{SOFTHSM}\"\n  token = \"{token}\"\n  cluster_id = \"{cluster}\"\n  region = \"us-east-1\"\n  endpoint = \"{endpoint}\"\n  access_key_id = \"AKIDTEST\"\n  secret_access_key = \"test-secret\"\n  timeout_ms = 2000\n"
    )
}

/// Which replica's key made the signature over `digest` (`None`: neither).
fn signer(keys: &[(&str, p256::ecdsa::VerifyingKey)], digest: &[u8], sig: &[u8]) -> Option<String> {
    let sig = p256::ecdsa::Signature::from_slice(sig).ok()?;
    keys.iter()
        .find(|(_, k)| k.verify_prehash(digest, &sig).is_ok())
        .map(|(n, _)| n.to_string())
}

/// Signs until replica `to` serves (every signature checked on the way), within `limit`.
fn moves_to(sign_once: &mut impl FnMut() -> String, to: &str, limit: Duration, why: &str) {
    let start = Instant::now();
    while sign_once() != to {
        assert!(start.elapsed() < limit, "{why}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn hsmux_check(config: &Path, softhsm_conf: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hsmux"))
        .args(["check", "--config"])
        .arg(config)
        .env("SOFTHSM2_CONF", softhsm_conf)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run hsmux check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_cluster_without_active_hsms_takes_its_replica_down_and_back() {
    use sha2::Digest;
    assert!(
        Path::new(SOFTHSM).exists(),
        "SoftHSMv2 missing (scripts/deps.sh)"
    );
    let dir: PathBuf = std::env::temp_dir().join(format!("hsmux-cloudhsm-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    remove_at_exit(&dir);
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    for t in ["ch-a", "ch-b"] {
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                t,
                "--so-pin",
                "12345678",
                "--pin",
                "1234",
            ])
            .output()
            .expect("softhsm2-util");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let direct = load_from(Path::new(SOFTHSM));
    assert_eq!(initialize(&direct), CKR_OK);
    let keys = [
        ("a", provision(&direct, "ch-a", [0x31; 32])),
        ("b", provision(&direct, "ch-b", [0x42; 32])),
    ];
    std::mem::forget(direct); // hsmux shares this SoftHSM instance (same library)
    let server = python_server(
        "cloudhsm_server.py",
        &[
            "--access-key",
            "AKIDTEST",
            "--cluster",
            &format!("{CLUSTER_A}=10.0.0.11,10.0.1.11"),
            "--cluster",
            &format!("{CLUSTER_B}=10.1.0.11"),
        ],
    );
    let cfg = format!(
        "[[slot]]\nlabel = \"chsm\"\npolicy = \"failover\"\n{}{}",
        replica("a", "ch-a", CLUSTER_A, &server.url()),
        replica("b", "ch-b", CLUSTER_B, &server.url())
    );
    let cfg_path = dir.join("hsmux.toml");
    std::fs::write(&cfg_path, cfg).unwrap();

    // hsmux check: every HSM with its EniIp and State.
    let (ok, out) = hsmux_check(&cfg_path, &conf);
    assert!(ok, "hsmux check: {out}");
    for want in [
        format!("cluster {CLUSTER_A}"),
        "EniIp 10.0.0.11 State ACTIVE".to_string(),
        "EniIp 10.0.1.11 State ACTIVE".to_string(),
        "EniIp 10.1.0.11 State ACTIVE".to_string(),
    ] {
        assert!(out.contains(&want), "hsmux check shows {want:?}: {out}");
    }

    std::env::set_var("HSMUX_CONFIG", &cfg_path);
    let m = load();
    assert_eq!(initialize(&m), CKR_OK);
    let h = open(&m, slot_labelled(&m, "chsm", true), true);
    assert_rv!(login(&m, h, CKU_USER, PIN), CKR_OK);
    let found = find(
        &m,
        h,
        &mut Template::new()
            .ulong(CKA_CLASS, CKO_PRIVATE_KEY)
            .bytes(CKA_ID, b"sig"),
    );
    assert_eq!(found.len(), 1);
    let key = found[0];
    let mut n = 0u32;
    let mut sign_once = || {
        n += 1;
        let digest = sha2::Sha256::digest(format!("message {n}"));
        let sig = sign(&m, h, mech(CKM_ECDSA), key, &digest)
            .unwrap_or_else(|rv| panic!("signature {n} failed: {}", rv_name(rv)));
        signer(&keys, &digest, &sig)
            .unwrap_or_else(|| panic!("signature {n} verifies with neither key"))
    };
    assert_eq!(sign_once(), "a", "replica a serves first");

    // Cluster A's HSMs are no longer ACTIVE: the prober (every 5 s for a healthy replica)
    // takes a down; signing goes on, on b, without a failed call.
    control(
        server.port,
        "/__hsms",
        json!({"cluster": CLUSTER_A, "state": "DEGRADED"}),
    );
    moves_to(
        &mut sign_once,
        "b",
        Duration::from_secs(60),
        "replica a still serves 60 s after its cluster degraded",
    );
    for _ in 0..5 {
        assert_eq!(
            sign_once(),
            "b",
            "replica b serves while cluster A has no ACTIVE HSM"
        );
    }
    let (ok, out) = hsmux_check(&cfg_path, &conf);
    assert!(
        !ok,
        "hsmux check reports the cluster without ACTIVE HSM: {out}"
    );
    assert!(out.contains("EniIp 10.0.0.11 State DEGRADED"), "{out}");
    assert!(out.contains("no ACTIVE HSM"), "{out}");

    // ACTIVE again: a passes its probes and serves again (fail-back).
    control(
        server.port,
        "/__hsms",
        json!({"cluster": CLUSTER_A, "state": "ACTIVE"}),
    );
    moves_to(
        &mut sign_once,
        "a",
        Duration::from_secs(90),
        "replica a not back 90 s after its cluster recovered",
    );
    assert_eq!(sign_once(), "a");
    assert_rv!(ck!(m, C_CloseSession(h)), CKR_OK);
    assert_rv!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
}
