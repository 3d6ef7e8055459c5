//! Replica groups against real parts: three SoftHSMv2 tokens holding the same keys
//! (imported with the same CKA_ID), each reached through its own copy of the fault-
//! injecting wrapper module (conformance/faultwrap, built here with cc), which a test can
//! tell to fail (`error`), hang past the deadline (`hang`) or disappear (`gone`) while
//! traffic runs. The consumer must see no failed operation; every signature is verified
//! with p256, every ciphertext decrypted with aes-gcm, every MAC recomputed with hmac.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const AES_KEY: [u8; 32] = [0x3c; 32];
const HMAC_KEY: [u8; 32] = [0x4d; 32];

struct Setup {
    m: Module,
    dir: PathBuf,
    ec: p256::ecdsa::VerifyingKey,
    port: u16,
}
unsafe impl Sync for Setup {}
unsafe impl Send for Setup {}

static SETUP: OnceLock<Setup> = OnceLock::new();
/// Tests that inject faults into the "ha" slot run one at a time.
static FAULTS: Mutex<()> = Mutex::new(());

fn ctl(dir: &Path, name: &str, mode: &str) {
    std::fs::write(dir.join(format!("ctl-{name}")), mode).unwrap();
}

/// The same keys on `token` of the directly loaded SoftHSM.
fn provision(
    direct: &Module,
    token: &str,
    ec_scalar: &[u8],
    ec_point_der: &[u8],
    extra_only_here: bool,
) {
    let slot = slot_labelled(direct, token, true);
    let h = open(direct, slot, true);
    assert_eq!(login(direct, h, CKU_USER, PIN), CKR_OK);
    let mut o = 0;
    let mut make = |mut t: Template| {
        assert_rv!(
            ck!(direct, C_CreateObject(h, t.ptr(), t.len(), &mut o)),
            CKR_OK
        )
    };
    let secret = |kt: CK_KEY_TYPE, v: &[u8], id: &[u8]| {
        Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, kt)
            .bool(CKA_TOKEN, true)
            .bool(CKA_PRIVATE, true)
            .bytes(CKA_VALUE, v)
            .bytes(CKA_ID, id)
            .bytes(CKA_LABEL, id)
            .bool(CKA_ENCRYPT, true)
            .bool(CKA_DECRYPT, true)
            .bool(CKA_SIGN, true)
            .bool(CKA_VERIFY, true)
    };
    make(secret(CKK_AES, &AES_KEY, b"aes"));
    make(secret(CKK_GENERIC_SECRET, &HMAC_KEY, b"hmac"));
    make(
        Template::new()
            .ulong(CKA_CLASS, CKO_PRIVATE_KEY)
            .ulong(CKA_KEY_TYPE, CKK_EC)
            .bool(CKA_TOKEN, true)
            .bool(CKA_PRIVATE, true)
            .bool(CKA_SIGN, true)
            .bytes(CKA_EC_PARAMS, P256_PARAMS)
            .bytes(CKA_VALUE, ec_scalar)
            .bytes(CKA_ID, b"ec")
            .bytes(CKA_LABEL, b"ec"),
    );
    make(
        Template::new()
            .ulong(CKA_CLASS, CKO_PUBLIC_KEY)
            .ulong(CKA_KEY_TYPE, CKK_EC)
            .bool(CKA_TOKEN, true)
            .bool(CKA_VERIFY, true)
            .bytes(CKA_EC_PARAMS, P256_PARAMS)
            .bytes(CKA_EC_POINT, ec_point_der)
            .bytes(CKA_ID, b"ec")
            .bytes(CKA_LABEL, b"ec"),
    );
    if extra_only_here {
        make(secret(CKK_AES, &[0x77; 16], b"only-r2"));
    }
    assert_eq!(ck!(direct, C_CloseSession(h)), CKR_OK);
}

fn setup() -> &'static Setup {
    SETUP.get_or_init(|| {
        assert!(Path::new(SOFTHSM).exists(), "SoftHSMv2 missing (scripts/deps.sh)");
        let dir = std::env::temp_dir().join(format!("hsmux-replica-{}", std::process::id()));
        remove_at_exit(&dir);
        let tokens = ["r0", "r1", "r2", "p0", "p1", "b0", "b1"];
        // The wrapper, built from source, one copy per replica (each its own instance).
        let wrapper = faultwrap::tokens_behind_faultwrap(&dir, &tokens);
        // One EC key for every replica, made outside the tokens.
        let sk = p256::ecdsa::SigningKey::from_bytes(&[0x21u8; 32].into()).unwrap();
        let vk = *sk.verifying_key();
        let point = vk.to_encoded_point(false);
        let mut point_der = vec![0x04, point.as_bytes().len() as u8];
        point_der.extend_from_slice(point.as_bytes());
        let direct = load_from(Path::new(SOFTHSM));
        assert_eq!(initialize(&direct), CKR_OK);
        for t in tokens {
            provision(&direct, t, &sk.to_bytes(), &point_der, t == "r2" || t == "p1");
        }
        std::mem::forget(direct); // the wrappers share this SoftHSM instance
        let replica = |name: &str, token: &str, extra: &str| {
            faultwrap::replica_table(&dir, &wrapper, SOFTHSM, name, token, extra)
        };
        // A free port for the metrics listener (taken back by hsmux right after).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[audit]\nfile = \"{}/audit.jsonl\"\n\n[[slot]]\nlabel = \"ha\"\npolicy = \"failover\"\n{}{}{}\n[[slot]]\nlabel = \"pinned\"\n{}{}\n[[slot]]\nlabel = \"bal\"\npolicy = \"balance\"\n{}{}",
            dir.display(),
            replica("r0", "r0", ""),
            replica("r1", "r1", ""),
            replica("r2", "r2", ""),
            replica("p0", "p0", "  pin = \"1234\"\n"),
            replica("p1", "p1", "  pin = \"1234\"\n"),
            replica("b0", "b0", ""),
            replica("b1", "b1", ""),
        );
        std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
        let m = load();
        assert_eq!(initialize(&m), CKR_OK);
        Setup { m, dir, ec: vk, port }
    })
}

fn find_one(
    m: &Module,
    h: CK_SESSION_HANDLE,
    class: CK_OBJECT_CLASS,
    id: &[u8],
) -> CK_OBJECT_HANDLE {
    let found = find(
        m,
        h,
        &mut Template::new().ulong(CKA_CLASS, class).bytes(CKA_ID, id),
    );
    assert_eq!(found.len(), 1, "one object {}", String::from_utf8_lossy(id));
    found[0]
}

struct Keys {
    aes: CK_OBJECT_HANDLE,
    hmac: CK_OBJECT_HANDLE,
    ec: CK_OBJECT_HANDLE,
}

fn keys(m: &Module, h: CK_SESSION_HANDLE) -> Keys {
    Keys {
        aes: find_one(m, h, CKO_SECRET_KEY, b"aes"),
        hmac: find_one(m, h, CKO_SECRET_KEY, b"hmac"),
        ec: find_one(m, h, CKO_PRIVATE_KEY, b"ec"),
    }
}

/// One round of the three operations, each result checked outside the module. `Err` names
/// the failed step and its return value.
fn round(s: &Setup, h: CK_SESSION_HANDLE, k: &Keys, n: u64) -> Result<(), String> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use hmac::Mac;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let m = &s.m;
    let msg = format!("message {n}").into_bytes();
    // ECDSA over a SHA-256 digest (SoftHSM offers raw CKM_ECDSA).
    let digest = sha2::Sha256::digest(&msg);
    let sig = sign(m, h, mech(CKM_ECDSA), k.ec, &digest)
        .map_err(|rv| format!("ECDSA sign: {}", rv_name(rv)))?;
    s.ec.verify_prehash(
        &digest,
        &p256::ecdsa::Signature::from_slice(&sig).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("ECDSA signature does not verify: {e}"))?;
    // AES-GCM: encrypted by the token, decrypted by aes-gcm and by the token.
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(&n.to_be_bytes());
    let (mut aad, mut iv1, mut iv2) = (*b"aad", iv, iv);
    let mut p = gcm_params(&mut iv1, &mut aad, 128);
    let ct = encrypt(m, h, mech_with(CKM_AES_GCM, &mut p), k.aes, &msg)
        .map_err(|rv| format!("GCM encrypt: {}", rv_name(rv)))?;
    let plain = aes_gcm::Aes256Gcm::new_from_slice(&AES_KEY)
        .unwrap()
        .decrypt(
            (&iv).into(),
            Payload {
                msg: &ct,
                aad: b"aad",
            },
        )
        .map_err(|_| "GCM ciphertext does not decrypt with aes-gcm".to_string())?;
    if plain != msg {
        return Err("GCM plaintext differs".into());
    }
    let mut p = gcm_params(&mut iv2, &mut aad, 128);
    let back = decrypt(m, h, mech_with(CKM_AES_GCM, &mut p), k.aes, &ct)
        .map_err(|rv| format!("GCM decrypt: {}", rv_name(rv)))?;
    if back != msg {
        return Err("GCM decrypt through hsmux differs".into());
    }
    // HMAC-SHA256 against the hmac crate.
    let mac = sign(m, h, mech(CKM_SHA256_HMAC), k.hmac, &msg)
        .map_err(|rv| format!("HMAC: {}", rv_name(rv)))?;
    let mut want = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&HMAC_KEY).unwrap();
    want.update(&msg);
    if mac != want.finalize().into_bytes().as_slice() {
        return Err("HMAC differs".into());
    }
    Ok(())
}

/// A user session on `label` with the keys found.
fn session(s: &Setup, label: &str) -> (CK_SESSION_HANDLE, Keys) {
    let h = open(&s.m, slot_labelled(&s.m, label, true), true);
    let rv = login(&s.m, h, CKU_USER, PIN);
    assert!(
        rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
        "{}",
        rv_name(rv)
    );
    let k = keys(&s.m, h);
    (h, k)
}

#[test]
fn replicas_die_and_return_under_load_with_no_failed_operation() {
    let s = setup();
    let _g = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    all_up(s);
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let (stop, done, failures) = (&stop, &done, &failures);
            scope.spawn(move || {
                let (h, k) = session(s, "ha");
                let mut n = t << 32;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    match round(s, h, &k, n) {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                }
                assert_eq!(ck!(s.m, C_CloseSession(h)), CKR_OK);
            });
        }
        // The fault script: kill the active replica (r0); bring it back (it is not re-
        // admitted yet, r1 serves); kill that other one by hanging it past the deadline;
        // revive it; make the active one disappear; bring it back.
        let steps: &[(&str, &str, u64)] = &[
            ("r0", "error", 1500),
            ("r0", "ok", 400),
            ("r1", "hang", 1500),
            ("r1", "ok", 2500),
            ("r0", "gone", 1500),
            ("r0", "ok", 2500),
        ];
        // The load stops whatever happens here (a failed assertion must not leave the
        // threads running forever).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _stop = Stop(&stop);
        let t0 = Instant::now();
        while done.load(Ordering::Relaxed) < 20
            && failures.lock().unwrap().is_empty()
            && t0.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            done.load(Ordering::Relaxed) >= 20,
            "traffic runs before the first fault: {:?}",
            failures.lock().unwrap().first()
        );
        for (name, mode, wait) in steps {
            println!(
                "{:>6} ms: {name} -> {mode} ({} rounds so far)",
                t0.elapsed().as_millis(),
                done.load(Ordering::Relaxed)
            );
            ctl(&s.dir, name, mode);
            std::thread::sleep(Duration::from_millis(*wait));
        }
    });
    let failures = failures.into_inner().unwrap();
    let n = done.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {} rounds failed; first: {:?}",
        failures.len(),
        n + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    assert!(n > 40, "only {n} rounds (3 operations each) completed");
    println!("{n} rounds of ECDSA + AES-GCM + HMAC, all verified, through 6 faults");
}

#[test]
fn a_multipart_operation_cut_in_the_middle_fails_once() {
    let s = setup();
    let _g = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    all_up(s);
    let m = &s.m;
    let (h, k) = session(s, "ha");
    // Which replica serves now: the first healthy one in file order.
    let mut mc = mech(CKM_SHA256_HMAC);
    assert_rv!(ck!(m, C_SignInit(h, &mut mc, k.hmac)), CKR_OK);
    assert_rv!(
        ck!(m, C_SignUpdate(h, b"part one".as_ptr() as *mut _, 8)),
        CKR_OK
    );
    for r in ["r0", "r1", "r2"] {
        ctl(&s.dir, r, "error");
    }
    ctl(&s.dir, "r2", "ok");
    let rv = ck!(m, C_SignUpdate(h, b"part two".as_ptr() as *mut _, 8));
    let mut len: CK_ULONG = 64;
    let mut out = [0u8; 64];
    let rv = if rv == CKR_OK {
        // The operation ran on r2, which is fine: then its final must work.
        ck!(m, C_SignFinal(h, out.as_mut_ptr(), &mut len))
    } else {
        assert_rv!(rv, CKR_DEVICE_ERROR);
        // The core ended the operation.
        assert_rv!(
            ck!(m, C_SignFinal(h, out.as_mut_ptr(), &mut len)),
            CKR_OPERATION_NOT_INITIALIZED
        );
        CKR_OK
    };
    assert_rv!(rv, CKR_OK);
    // The next operation works, on r2.
    let mac =
        sign(m, h, mech(CKM_SHA256_HMAC), k.hmac, b"after").expect("the next operation works");
    assert_eq!(mac.len(), 32);
    for r in ["r0", "r1"] {
        ctl(&s.dir, r, "ok");
    }
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

#[test]
fn a_replica_refusing_its_pin_is_down_and_not_asked_again() {
    let s = setup();
    let _g = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    all_up(s);
    let m = &s.m;
    ctl(&s.dir, "p0", "pin");
    let (h, k) = session(s, "pinned");
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(3) {
        n += 1;
        round(s, h, &k, n).expect("the other replica serves");
    }
    let logins = std::fs::read_to_string(s.dir.join("ctl-p0.logins")).unwrap_or_default();
    assert_eq!(
        logins.trim(),
        "1",
        "p0 saw {logins:?} login attempts in 3 s of traffic and probes"
    );
    ctl(&s.dir, "p0", "ok");
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

#[test]
fn a_key_on_one_replica_only_is_served_from_that_one() {
    let s = setup();
    let _g = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    all_up(s);
    let m = &s.m;
    let (h, _) = session(s, "ha");
    let only = find_one(m, h, CKO_SECRET_KEY, b"only-r2");
    let ct = encrypt(m, h, mech(CKM_AES_ECB), only, &[0u8; 16]).expect("served by r2");
    use aes_gcm::aes::cipher::{BlockEncrypt, KeyInit};
    let mut block = aes_gcm::aes::cipher::generic_array::GenericArray::from([0u8; 16]);
    aes_gcm::aes::Aes128::new_from_slice(&[0x77; 16])
        .unwrap()
        .encrypt_block(&mut block);
    assert_eq!(ct, block.as_slice());
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

#[test]
fn balance_uses_both_replicas_and_survives_one() {
    let s = setup();
    let m = &s.m;
    let (h, k) = session(s, "bal");
    for n in 0..20 {
        round(s, h, &k, n).unwrap();
    }
    ctl(&s.dir, "b0", "error");
    for n in 20..60 {
        round(s, h, &k, n).expect("b1 serves alone");
    }
    ctl(&s.dir, "b0", "ok");
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

/// OpenBao's seal sequence (shared/CONSUMERS.md) against the AES key, with the active
/// replica dying between the seal and the unseal.
#[test]
fn the_openbao_seal_keeps_working_while_a_replica_dies() {
    let s = setup();
    let _g = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    all_up(s);
    let m = &s.m;
    let slot = slot_labelled(m, "ha", true);
    let seal = |plain: Option<&[u8]>, blob: Option<&[u8]>| -> Vec<u8> {
        let p = open(m, slot, true);
        let rv = login(m, p, CKU_USER, PIN);
        assert!(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
        let s1 = open(m, slot, true);
        let key = {
            let found = find(m, s1, &mut Template::new().bytes(CKA_LABEL, b"aes"));
            assert_eq!(found.len(), 1);
            found[0]
        };
        assert_eq!(
            get_attr(m, s1, key, CKA_KEY_TYPE).unwrap(),
            CKK_AES.to_ne_bytes()
        );
        assert_eq!(ck!(m, C_CloseSession(s1)), CKR_OK);
        let s2 = open(m, slot, true);
        let out = match (plain, blob) {
            (Some(plain), _) => {
                let mut iv = [0u8; 12];
                assert_eq!(ck!(m, C_GenerateRandom(s2, iv.as_mut_ptr(), 12)), CKR_OK);
                let mut p = gcm_params(&mut iv, &mut [], 128);
                let ct = encrypt(m, s2, mech_with(CKM_AES_GCM, &mut p), key, plain).unwrap();
                [iv.as_slice(), &ct].concat()
            }
            (None, Some(blob)) => {
                let mut iv = blob[..12].to_vec();
                let mut p = gcm_params(&mut iv, &mut [], 128);
                decrypt(m, s2, mech_with(CKM_AES_GCM, &mut p), key, &blob[12..]).unwrap()
            }
            _ => unreachable!(),
        };
        assert_eq!(ck!(m, C_CloseSession(s2)), CKR_OK);
        assert_eq!(ck!(m, C_Logout(p)), CKR_OK);
        assert_eq!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
        out
    };
    let root_key = b"the barrier's root key, 32 bytes";
    let blob = seal(Some(root_key), None);
    ctl(&s.dir, "r0", "error");
    assert_eq!(seal(None, Some(&blob)), root_key);
    let blob2 = seal(Some(root_key), None);
    ctl(&s.dir, "r0", "ok");
    all_up(s);
    assert_eq!(
        seal(None, Some(&blob2)),
        root_key,
        "a blob sealed on r1 unseals after fail-back to r0"
    );
}

/// Waits until every replica is up again (the prober re-admits a recovered replica after
/// two passed probes, and its back-off may have grown under load), so that each test
/// starts from a healthy group whatever the one before it left.
fn all_up(s: &Setup) {
    let series = [
        ("ha", "r0"),
        ("ha", "r1"),
        ("ha", "r2"),
        // p0, once its PIN was refused, stays down by design (its test).
        ("pinned", "p1"),
        ("bal", "b0"),
        ("bal", "b1"),
    ];
    let t = Instant::now();
    loop {
        let text = scrape(s.port);
        let down: Vec<_> = series
            .iter()
            .filter(|(slot, r)| {
                value(
                    &text,
                    &format!("hsmux_replica_up{{slot=\"{slot}\",replica=\"{r}\"}}"),
                ) != Some(1.0)
            })
            .collect();
        if down.is_empty() {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "replicas {down:?} did not come back within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GET /metrics from hsmux's listener; the text must parse as Prometheus exposition.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the metrics listener");
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    openmetrics_parser::prometheus::parse_prometheus(body)
        .unwrap_or_else(|e| panic!("{e:?} in:\n{body}"));
    body.to_string()
}

/// The value of the sample `name{labels}` (labels in the order hsmux writes them).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn metrics_count_calls_failovers_sessions_and_replica_health() {
    let s = setup();
    let _g = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    all_up(s);
    let (h, k) = session(s, "ha");
    round(s, h, &k, 1).unwrap();
    let before = value(
        &scrape(s.port),
        "hsmux_failovers_total{slot=\"ha\",from=\"r0\",to=\"r1\"}",
    )
    .unwrap_or(0.0);
    ctl(&s.dir, "r0", "error");
    round(s, h, &k, 2).expect("r1 serves");
    let text = scrape(s.port);
    let after = value(
        &text,
        "hsmux_failovers_total{slot=\"ha\",from=\"r0\",to=\"r1\"}",
    )
    .unwrap_or(0.0);
    assert!(
        after > before,
        "a failover r0 -> r1 is counted ({before} -> {after}):\n{text}"
    );
    assert_eq!(
        value(&text, "hsmux_replica_up{slot=\"ha\",replica=\"r0\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "hsmux_replica_up{slot=\"ha\",replica=\"r1\"}"),
        Some(1.0),
        "{text}"
    );
    let signs = value(
        &text,
        "hsmux_calls_total{slot=\"ha\",replica=\"r1\",function=\"C_Sign\",rv=\"CKR_OK\"}",
    );
    assert!(
        signs.is_some_and(|n| n >= 1.0),
        "C_Sign served by r1 is counted:\n{text}"
    );
    assert!(
        value(&text, "hsmux_sessions{slot=\"ha\"}").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        text.contains("hsmux_call_duration_seconds_bucket{slot=\"ha\""),
        "{text}"
    );
    ctl(&s.dir, "r0", "ok");
    let t = Instant::now();
    while value(
        &scrape(s.port),
        "hsmux_replica_up{slot=\"ha\",replica=\"r0\"}",
    ) != Some(1.0)
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "r0 comes back up in the metrics"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ck!(s.m, C_CloseSession(h)), CKR_OK);
}

/// The `hsmux_*` names in `text` (a query, a rules file).
fn metric_names(text: &str) -> Vec<String> {
    text.match_indices("hsmux_")
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// The Grafana dashboard (examples/grafana/hsmux.json) has what Grafana's import reads,
/// and it and the alerting rules (examples/prometheus/hsmux-rules.yml) name only series
/// that this module's /metrics exposes: scraped after a failover, with `[audit]`, so that
/// every family has samples.
#[test]
fn the_dashboard_and_the_alerts_query_only_series_metrics_exposes() {
    let s = setup();
    let _g = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    all_up(s);
    let (h, k) = session(s, "ha");
    ctl(&s.dir, "r0", "error");
    round(s, h, &k, 2).expect("r1 serves");
    let text = scrape(s.port);
    ctl(&s.dir, "r0", "ok");
    assert_eq!(ck!(s.m, C_CloseSession(h)), CKR_OK);
    all_up(s);
    let exposed: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for family in [
        "hsmux_calls_total",
        "hsmux_call_duration_seconds_bucket",
        "hsmux_call_duration_seconds_sum",
        "hsmux_call_duration_seconds_count",
        "hsmux_replica_up",
        "hsmux_failovers_total",
        "hsmux_sessions",
        "hsmux_audit_dropped_total",
        "hsmux_audit_write_errors_total",
    ] {
        assert!(exposed.contains(family), "{family} not scraped:\n{text}");
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("grafana/hsmux.json")).unwrap())
            .expect("the dashboard is JSON");
    for field in ["title", "uid"] {
        assert!(d[field].as_str().is_some_and(|v| !v.is_empty()), "{field}");
    }
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(vars.contains(&"datasource"), "{vars:?}");
    let panels = d["panels"].as_array().unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut queried = std::collections::HashSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert!(ids.insert(p["id"].as_u64().unwrap()), "{title}: id reused");
        let g = &p["gridPos"];
        let [x, w] = ["x", "w"].map(|k| g[k].as_u64().unwrap());
        assert!(
            g["h"].as_u64().unwrap() > 0 && w > 0 && x + w <= 24,
            "{title}: {g}"
        );
        assert!(g["y"].is_u64(), "{title}");
        let kind = p["type"].as_str().unwrap();
        if kind == "row" {
            continue;
        }
        assert!(
            ["timeseries", "state-timeline", "stat"].contains(&kind),
            "{title}: {kind}"
        );
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert!(t["refId"].is_string(), "{title}");
            let expr = t["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: {expr} names no hsmux series");
            for n in names {
                assert!(
                    exposed.contains(n.as_str()),
                    "{title}: {n} is not in /metrics:\n{text}"
                );
                queried.insert(n);
            }
            for v in ["$instance", "$slot"] {
                if expr.contains(v) {
                    assert!(vars.contains(&&v[1..]), "{title}: {v} undefined");
                }
            }
        }
    }
    // Calls, errors, latency quantiles, replicas, failovers, audit losses: all shown.
    for family in [
        "hsmux_calls_total",
        "hsmux_call_duration_seconds_bucket",
        "hsmux_replica_up",
        "hsmux_failovers_total",
        "hsmux_audit_dropped_total",
        "hsmux_audit_write_errors_total",
    ] {
        assert!(queried.contains(family), "the dashboard shows no {family}");
    }
    let rules = std::fs::read_to_string(root.join("prometheus/hsmux-rules.yml")).unwrap();
    let names = metric_names(&rules);
    assert!(names.len() >= 6, "{names:?}");
    for n in names {
        assert!(
            exposed.contains(n.as_str()),
            "hsmux-rules.yml: {n} is not in /metrics"
        );
    }
}

/// `hsmux check` on this configuration, in its own process: the replicas' states, the keys
/// each holds (seen with the replicas' configured PINs), and the problems, with exit 1.
#[test]
fn hsmux_check_reports_down_replicas_and_keys_missing_somewhere() {
    let s = setup();
    let _g = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    all_up(s);
    ctl(&s.dir, "r1", "error");
    let out = Command::new(env!("CARGO_BIN_EXE_hsmux"))
        .args(["check", "--config"])
        .arg(s.dir.join("hsmux.toml"))
        .env("HSMUX_LOG", "off")
        .output()
        .expect("hsmux check");
    ctl(&s.dir, "r1", "ok");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "problems make exit status 1:\n{text}"
    );
    assert!(text.contains("replica r0: healthy"), "{text}");
    assert!(
        text.contains("replica r1: PROBLEM"),
        "r1 is reported:\n{text}"
    );
    // The "pinned" group logs in with its replicas' PINs: every key is listed, and the one
    // on p1 only is a problem.
    assert!(
        text.contains("key private id=6563: on every replica"),
        "{text}"
    );
    assert!(
        text.contains("key secret id=6f6e6c792d7232: PROBLEM: only on p1"),
        "{text}"
    );
}
