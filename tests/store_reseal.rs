//! `hsmux store reseal` against a real OpenBao dev server (`bao server -dev` from the venv):
//! a soft store moved between PIN sealing and `[slot.seal]` transit sealing both ways, with
//! the CLI SIGKILLed at 20 points inside the operation (the test-only pause variable stops
//! it at a chosen step; each of the 8 steps is hit at least twice). After every kill the
//! store opens sealed exactly as before (killed before the rename) or as after (killed
//! after it), through the built module: both PINs log in, the EC key pair signs (checked
//! with p256) and the AES key decrypts what aes-gcm encrypted outside. Wrong PINs, an
//! unreachable transit and a missing `[slot.seal]` are refused clearly, the sealing
//! untouched. With `[audit]`, each re-seal is a `storeReseal` line of a valid chain.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
mod contract;
use common::*;
use contract::bao::Bao;
use cryptoki_sys::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const AES_KEY: [u8; 32] = *b"reseal test AES-256 key, 32 B..!";
const MESSAGE: &[u8] = b"what the store's keys must still do after any kill";

struct Fixture {
    m: Module,
    _bao: Bao,
    dir: PathBuf,
    config: PathBuf,
    audit: PathBuf,
}
unsafe impl Sync for Fixture {}
unsafe impl Send for Fixture {}

/// The slots of store `s`: sealed (with [slot.seal]), plain (without), dead (a [slot.seal]
/// whose server does not listen). Ids: 10*s + 1, 2, 3.
fn slot_id(store: u64, view: &str) -> CK_SLOT_ID {
    10 * store
        + match view {
            "sealed" => 1,
            "plain" => 2,
            _ => 3,
        }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let bao = Bao::start("reseal", None);
        bao.ok("POST", "sys/mounts/transit", json!({"type": "transit"}));
        bao.ok("POST", "transit/keys/store-seal", json!({"type": "aes256-gcm96"}));
        let dir = std::env::temp_dir().join(format!("hsmux-reseal-{}", std::process::id()));
        remove_at_exit(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let dead = contract::free_port();
        let audit = dir.join("audit.jsonl");
        let mut cfg = format!("[audit]\nfile = \"{}\"\n\n", audit.display());
        for store in [1u64, 2] {
            for (view, addr) in [
                ("sealed", Some(bao.addr())),
                ("plain", None),
                ("dead", Some(format!("http://127.0.0.1:{dead}"))),
            ] {
                cfg += &format!(
                    "[[slot]]\nid = {}\nlabel = \"s{store}-{view}\"\nbackend = \"soft\"\npath = \"{}/store{store}\"\nkdf_iterations = 1000\n",
                    slot_id(store, view),
                    dir.display()
                );
                if let Some(a) = addr {
                    cfg += &format!(
                        "  [slot.seal]\n  backend = \"vault\"\n  key = \"store-seal\"\n  address = \"{a}\"\n  auth = {{ method = \"token\", token = \"{}\" }}\n",
                        bao.token
                    );
                }
                cfg += "\n";
            }
        }
        let config = dir.join("hsmux.toml");
        std::fs::write(&config, cfg).unwrap();
        std::fs::write(dir.join("so.pin"), [SO_PIN, b"\n"].concat()).unwrap();
        std::fs::write(dir.join("user.pin"), [PIN, b"\n"].concat()).unwrap();
        std::fs::write(dir.join("wrong.pin"), b"99999999\n").unwrap();
        std::env::set_var("HSMUX_CONFIG", &config);
        let m = load();
        assert_rv!(initialize(&m), CKR_OK);
        Fixture {
            m,
            _bao: bao,
            dir,
            config,
            audit,
        }
    })
}

/// Store `store` initialized PIN-sealed, with an EC P-256 key pair and an AES key.
fn make_store(f: &Fixture, store: u64) {
    let m = &f.m;
    let slot = slot_id(store, "plain");
    init_slot(m, slot);
    let h = open(m, slot, true);
    assert_rv!(login(m, h, CKU_USER, PIN), CKR_OK);
    let params = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let public = Template::new()
        .bytes(CKA_EC_PARAMS, &params)
        .bool(CKA_VERIFY, true)
        .bytes(CKA_LABEL, b"ec");
    let private = Template::new().bool(CKA_SIGN, true).bytes(CKA_LABEL, b"ec");
    keypair(m, h, CKM_EC_KEY_PAIR_GEN, public, private, b"ec1");
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_TOKEN, true)
        .bool(CKA_PRIVATE, true)
        .bool(CKA_SENSITIVE, true)
        .bool(CKA_DECRYPT, true)
        .bytes(CKA_LABEL, b"aes")
        .bytes(CKA_VALUE, &AES_KEY);
    let mut o = 0;
    assert_rv!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut o)), CKR_OK);
    assert_eq!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sealing {
    Pin,
    Transit,
}

impl Sealing {
    fn other(self) -> Sealing {
        match self {
            Sealing::Pin => Sealing::Transit,
            Sealing::Transit => Sealing::Pin,
        }
    }
    fn arg(self) -> &'static str {
        match self {
            Sealing::Pin => "pin",
            Sealing::Transit => "transit",
        }
    }
}

fn meta(f: &Fixture, store: u64) -> Value {
    let p = f.dir.join(format!("store{store}/token.json"));
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// The sealing token.json describes: one of the two, never a mix.
fn sealing(f: &Fixture, store: u64) -> Sealing {
    let m = meta(f, store);
    let sealed = |r: &Value| r["sealed"].as_bool().unwrap_or(false);
    match (
        m["seal"]["key"].as_str(),
        sealed(&m["so"]),
        sealed(&m["user"]),
    ) {
        (Some("store-seal"), true, true) => Sealing::Transit,
        (None, false, false) => Sealing::Pin,
        _ => panic!("store {store} is sealed neither way: {m}"),
    }
}

/// The store opens as `want` says: the plain view only when PIN-sealed, both PINs log
/// in, the three objects are there, the key pair signs and the AES key decrypts.
fn assert_opens(f: &Fixture, store: u64, want: Sealing) {
    let m = &f.m;
    let plain = slot_id(store, "plain");
    let hp = open(m, plain, true);
    let rv = login(m, hp, CKU_USER, PIN);
    match want {
        Sealing::Pin => assert_rv!(rv, CKR_OK),
        Sealing::Transit => assert_rv!(rv, CKR_DEVICE_ERROR),
    }
    assert_eq!(ck!(m, C_CloseAllSessions(plain)), CKR_OK);
    let slot = slot_id(
        store,
        match want {
            Sealing::Pin => "plain",
            Sealing::Transit => "sealed",
        },
    );
    let so = open(m, slot, true);
    assert_rv!(login(m, so, CKU_SO, SO_PIN), CKR_OK);
    assert_eq!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
    let h = open(m, slot, true);
    assert_rv!(login(m, h, CKU_USER, PIN), CKR_OK);
    assert_eq!(
        find(m, h, &mut Template::new()).len(),
        3,
        "every object kept"
    );
    let key = find(
        m,
        h,
        &mut Template::new()
            .ulong(CKA_CLASS, CKO_PRIVATE_KEY)
            .bytes(CKA_LABEL, b"ec"),
    );
    let public = find(
        m,
        h,
        &mut Template::new()
            .ulong(CKA_CLASS, CKO_PUBLIC_KEY)
            .bytes(CKA_LABEL, b"ec"),
    );
    let sig = sign(m, h, mech(CKM_ECDSA_SHA256), key[0], MESSAGE).unwrap();
    let point = ec_point(&get_attr(m, h, public[0], CKA_EC_POINT).unwrap());
    use p256::ecdsa::signature::Verifier;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
        .unwrap()
        .verify(MESSAGE, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("p256 verifies the signature");
    let aes = find(m, h, &mut Template::new().bytes(CKA_LABEL, b"aes"));
    use aes_gcm::aead::{Aead, KeyInit};
    let mut iv = [7u8; 12];
    let ct = aes_gcm::Aes256Gcm::new_from_slice(&AES_KEY)
        .unwrap()
        .encrypt(aes_gcm::Nonce::from_slice(&iv), MESSAGE)
        .unwrap();
    let mut gcm = gcm_params(&mut iv, &mut [], 128);
    let pt = decrypt(m, h, mech_with(CKM_AES_GCM, &mut gcm), aes[0], &ct).unwrap();
    assert_eq!(pt, MESSAGE);
    assert_eq!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
}

fn hsmux(f: &Fixture, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hsmux"));
    c.arg("store")
        .arg("reseal")
        .arg("--config")
        .arg(&f.config)
        .args(args)
        .env_remove("HSMUX_TEST_RESEAL_PAUSE_AT")
        .stdin(Stdio::null());
    c
}

fn pin_args(f: &Fixture, so: &str, user: &str) -> Vec<String> {
    vec![
        format!("--so-pin-source=file:{}", f.dir.join(so).display()),
        format!("--pin-source=file:{}", f.dir.join(user).display()),
    ]
}

fn reseal(f: &Fixture, store: u64, view: &str, to: Sealing, so: &str, user: &str) -> Output {
    let slot = format!("s{store}-{view}");
    let mut args = vec!["--slot", &slot, "--to", to.arg()];
    let pins = pin_args(f, so, user);
    args.extend(pins.iter().map(String::as_str));
    hsmux(f, &args).output().unwrap()
}

/// A small xorshift: the kill points, reproducible from the printed seed.
fn shuffled(mut v: Vec<u32>, mut seed: u64) -> Vec<u32> {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    v
}

#[test]
fn reseal_both_ways_survives_a_sigkill_at_20_points() {
    let f = fixture();
    let store = 1;
    make_store(f, store);
    assert_eq!(sealing(f, store), Sealing::Pin);
    assert_opens(f, store, Sealing::Pin);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    // Each of the 8 steps twice, 4 more at random: 20 kills.
    let mut steps: Vec<u32> = (1..=8).chain(1..=8).collect();
    steps.extend(shuffled((1..=8).collect(), seed).into_iter().take(4));
    let steps = shuffled(steps, seed.rotate_left(17));
    eprintln!("kill points (seed {seed}): {steps:?}");
    let mut moved = [0usize; 2];
    for (run, &step) in steps.iter().enumerate() {
        let before = sealing(f, store);
        let to = before.other();
        let slot = format!("s{store}-sealed");
        let pins = pin_args(f, "so.pin", "user.pin");
        let mut args = vec!["--slot", &slot, "--to", to.arg()];
        args.extend(pins.iter().map(String::as_str));
        let mut child = hsmux(f, &args)
            .env("HSMUX_TEST_RESEAL_PAUSE_AT", step.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        loop {
            let mut line = String::new();
            let n = err.read_line(&mut line).unwrap();
            said += &line;
            assert!(
                n > 0,
                "run {run}: the re-seal ended before step {step}: {said}"
            );
            if line.starts_with(&format!("paused at step {step} ")) {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let after = sealing(f, store);
        // Steps 1-5 are before the rename of the new token.json, 6-8 after it.
        let want = if step <= 5 { before } else { to };
        assert_eq!(
            after, want,
            "run {run}: killed at step {step} ({before:?} -> {to:?})"
        );
        assert_opens(f, store, after);
        moved[usize::from(after == Sealing::Transit)] += usize::from(after != before);
    }
    assert!(
        moved.iter().all(|&n| n > 0),
        "both directions were completed: {moved:?}"
    );
    // Unpaused, both ways; the stale temporary files of the killed runs are gone.
    for to in [sealing(f, store).other(), sealing(f, store).other().other()] {
        let out = reseal(f, store, "sealed", to, "so.pin", "user.pin");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(sealing(f, store), to);
        assert_opens(f, store, to);
    }
    for d in [f.dir.join("store1"), f.dir.join("store1/objects")] {
        for e in std::fs::read_dir(&d).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".tmp-"), "{name} left in {}", d.display());
        }
    }
    // Two unpaused re-seals (and those killed at step 8, after the store was written)...
    let trail = std::fs::read_to_string(&f.audit).unwrap();
    let lines: Vec<&str> = trail
        .lines()
        .filter(|l| {
            l.contains("\"eventName\":\"storeReseal\"") && l.contains("\"slot\":\"s1-sealed\"")
        })
        .collect();
    assert!(lines.len() >= 2, "{trail}");
    assert!(lines
        .iter()
        .any(|l| l.contains("re-sealed to transit key store-seal")));
    assert!(lines.iter().any(|l| l.contains("re-sealed to pin")));
    let verify = Command::new(env!("CARGO_BIN_EXE_hsmux"))
        .args(["audit", "verify"])
        .arg(&f.audit)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// token.json's sealing material: the two PIN records and the seal record.
fn material(f: &Fixture, store: u64) -> Value {
    let m = meta(f, store);
    json!([m["so"], m["user"], m["seal"]])
}

fn refused(out: &Output, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(says), "{says:?} not in: {err}");
}

#[test]
fn wrong_pins_and_an_unreachable_transit_leave_the_sealing_untouched() {
    let f = fixture();
    let store = 2;
    make_store(f, store);
    let pin_sealed = material(f, store);
    let cases = [
        ("sealed", "wrong.pin", "user.pin", "CKR_PIN_INCORRECT"),
        ("sealed", "so.pin", "wrong.pin", "CKR_PIN_INCORRECT"),
        ("dead", "so.pin", "user.pin", "CKR_DEVICE_ERROR"),
        (
            "plain",
            "so.pin",
            "user.pin",
            "needs the slot's [slot.seal]",
        ),
    ];
    for (view, so, user, says) in cases {
        let out = reseal(f, store, view, Sealing::Transit, so, user);
        refused(&out, says);
        assert_eq!(material(f, store), pin_sealed, "{view} {so} {user}");
    }
    // Each wrong PIN was counted as a failed login, and reset by the next right one.
    let out = reseal(f, store, "sealed", Sealing::Pin, "so.pin", "user.pin");
    refused(&out, "already sealed by its PINs alone");
    assert_eq!(meta(f, store)["so_failures"], 0);
    assert_opens(f, store, Sealing::Pin);

    let out = reseal(f, store, "sealed", Sealing::Transit, "so.pin", "user.pin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let transit_sealed = material(f, store);
    let cases = [
        ("sealed", "wrong.pin", "user.pin", "CKR_PIN_INCORRECT"),
        ("dead", "so.pin", "user.pin", "CKR_DEVICE_ERROR"),
        ("plain", "so.pin", "user.pin", "needs its [slot.seal]"),
    ];
    for (view, so, user, says) in cases {
        let out = reseal(f, store, view, Sealing::Pin, so, user);
        refused(&out, says);
        assert_eq!(material(f, store), transit_sealed, "{view} {so} {user}");
    }
    assert_opens(f, store, Sealing::Transit);
}
