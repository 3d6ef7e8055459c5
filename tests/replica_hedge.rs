//! Hedged calls against real parts: two SoftHSMv2 tokens holding the same EC key, each
//! reached through its own copy of the fault-injecting wrapper (conformance/faultwrap).
//! When the replica serving a slot hangs, signatures still come back (each verified with
//! p256) because the call is sent to the other replica as well, and `/metrics` counts the
//! hedges; calls that change state (C_CreateObject, C_GenerateKey) are never sent twice.
//! The deadline is long (5 s) so that a call that waited for it instead of a hedge would
//! be slow, but nothing here measures time: the counters say what happened.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

struct Setup {
    m: Module,
    /// SoftHSM loaded directly (the same instance the wrappers forward to).
    direct: Module,
    dir: PathBuf,
    ec: p256::ecdsa::VerifyingKey,
    port: u16,
}
unsafe impl Sync for Setup {}
unsafe impl Send for Setup {}

static SETUP: OnceLock<Setup> = OnceLock::new();
/// The tests inject faults into the same replicas: one at a time.
static FAULTS: Mutex<()> = Mutex::new(());

fn ctl(dir: &Path, name: &str, mode: &str) {
    std::fs::write(dir.join(format!("ctl-{name}")), mode).unwrap();
}

fn setup() -> &'static Setup {
    SETUP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hsmux-hedge-{}", std::process::id()));
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
        for t in ["h0", "h1"] {
            let out = Command::new("softhsm2-util")
                .args(["--init-token", "--free", "--label", t])
                .args(["--so-pin", "12345678", "--pin", "1234"])
                .output()
                .expect("softhsm2-util");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let root = env!("CARGO_MANIFEST_DIR");
        let out = Command::new("bash")
            .arg(format!("{root}/conformance/faultwrap/build.sh"))
            .arg(&dir)
            .output()
            .expect("build the fault wrapper");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let sk = p256::ecdsa::SigningKey::from_bytes(&[0x42u8; 32].into()).unwrap();
        let direct = load_from(Path::new(SOFTHSM));
        assert_eq!(initialize(&direct), CKR_OK);
        for t in ["h0", "h1"] {
            let h = open(&direct, slot_labelled(&direct, t, true), true);
            assert_eq!(login(&direct, h, CKU_USER, PIN), CKR_OK);
            let key = Template::new()
                .ulong(CKA_CLASS, CKO_PRIVATE_KEY)
                .ulong(CKA_KEY_TYPE, CKK_EC)
                .bool(CKA_TOKEN, true)
                .bool(CKA_PRIVATE, true)
                .bool(CKA_SIGN, true)
                .bytes(CKA_EC_PARAMS, P256_PARAMS)
                .bytes(CKA_VALUE, &sk.to_bytes())
                .bytes(CKA_ID, b"ec");
            assert!(try_create(&direct, h, key).is_ok(), "provision {t}");
            assert_eq!(ck!(direct, C_CloseSession(h)), CKR_OK);
        }
        let replica = |name: &str| {
            let lib = dir.join(format!("w-{name}.so"));
            std::fs::copy(dir.join("libfaultwrap.so"), &lib).unwrap();
            ctl(&dir, name, "ok");
            format!(
                "  [[slot.replica]]\n  name = \"{name}\"\n  backend = \"module\"\n  library = \"{}\"\n  token = \"{name}\"\n  init_args = \"target={SOFTHSM} ctl={}/ctl-{name}\"\n  timeout_ms = 5000\n",
                lib.display(),
                dir.display()
            )
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[[slot]]\nlabel = \"hedged\"\npolicy = \"failover\"\nhedge_ms = 20\n{}{}",
            replica("h0"),
            replica("h1"),
        );
        std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
        let m = load();
        assert_eq!(initialize(&m), CKR_OK);
        Setup {
            m,
            direct,
            dir,
            ec: *sk.verifying_key(),
            port,
        }
    })
}

/// A logged-in read/write session on the hedged slot.
fn session(s: &Setup) -> CK_SESSION_HANDLE {
    let h = open(&s.m, slot_labelled(&s.m, "hedged", true), true);
    let rv = login(&s.m, h, CKU_USER, PIN);
    assert!(
        rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
        "{}",
        rv_name(rv)
    );
    h
}

/// The value of `name{slot="hedged",replica="r"}` in hsmux's `/metrics` (0 if absent).
fn counter(s: &Setup, name: &str, replica: &str) -> f64 {
    sample(
        s,
        &format!("{name}{{slot=\"hedged\",replica=\"{replica}\"}}"),
    )
}

/// Waits (up to 30 s) until replica `r` is up again: the tests need h0 to serve first.
fn wait_up(s: &Setup, r: &str) {
    let series = format!("hsmux_replica_up{{slot=\"hedged\",replica=\"{r}\"}}");
    for _ in 0..300 {
        if sample(s, &series) == 1.0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("replica {r} did not come back");
}

/// The value of the sample `series` in hsmux's `/metrics` (0 if absent).
fn sample(s: &Setup, series: &str) -> f64 {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).expect("metrics listener");
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let body = resp.split_once("\r\n\r\n").expect("an HTTP response").1;
    openmetrics_parser::prometheus::parse_prometheus(body)
        .unwrap_or_else(|e| panic!("{e:?} in:\n{body}"));
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Waits until every call left behind on h0 has ended and h0 serves again.
fn revive(s: &Setup) {
    ctl(&s.dir, "h0", "ok");
    let h = session(s);
    let key = find(&s.m, h, &mut Template::new().bytes(CKA_ID, b"ec"))[0];
    // A few signatures: each proves the slot answers; h0 re-admits itself meanwhile.
    for _ in 0..3 {
        assert!(sign(&s.m, h, mech(CKM_ECDSA), key, &[1u8; 32]).is_ok());
    }
    assert_eq!(ck!(s.m, C_CloseSession(h)), CKR_OK);
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn a_hung_replica_under_a_sign_loop_costs_no_call_and_is_hedged() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let s = setup();
    let _g = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    wait_up(s, "h0");
    let h = session(s);
    let key = find(&s.m, h, &mut Template::new().bytes(CKA_ID, b"ec"))[0];
    let (sent0, won0) = (
        counter(s, "hsmux_hedges_total", "h1"),
        counter(s, "hsmux_hedges_won_total", "h1"),
    );
    // h0 serves (policy failover); from now on it answers nothing.
    ctl(&s.dir, "h0", "hang");
    for n in 0..20u32 {
        let digest: [u8; 32] = std::array::from_fn(|i| (i as u32 * 7 + n) as u8);
        let sig = sign(&s.m, h, mech(CKM_ECDSA), key, &digest)
            .unwrap_or_else(|rv| panic!("signature {n}: {}", rv_name(rv)));
        let sig = p256::ecdsa::Signature::from_slice(&sig).expect("an r||s signature");
        s.ec.verify_prehash(&digest, &sig)
            .unwrap_or_else(|e| panic!("signature {n} does not verify: {e}"));
    }
    let (sent, won) = (
        counter(s, "hsmux_hedges_total", "h1"),
        counter(s, "hsmux_hedges_won_total", "h1"),
    );
    assert!(sent > sent0, "no hedge was sent to h1 ({sent0} -> {sent})");
    assert!(
        won > won0,
        "no hedge on h1 answered first ({won0} -> {won})"
    );
    assert!(won - won0 <= sent - sent0);
    assert_eq!(ck!(s.m, C_CloseSession(h)), CKR_OK);
    revive(s);
}

/// Objects with `CKA_ID` `id` on token `label`, through SoftHSM directly.
fn count_on(s: &Setup, label: &str, id: &[u8]) -> usize {
    let d = &s.direct;
    let h = open(d, slot_labelled(d, label, true), false);
    let rv = login(d, h, CKU_USER, PIN);
    assert!(
        rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
        "{}",
        rv_name(rv)
    );
    let n = find(d, h, &mut Template::new().bytes(CKA_ID, id)).len();
    assert_eq!(ck!(d, C_CloseSession(h)), CKR_OK);
    n
}

#[test]
fn calls_that_create_objects_are_never_hedged() {
    let s = setup();
    let _g = FAULTS.lock().unwrap_or_else(|e| e.into_inner());
    let h = session(s);
    let sent0 = counter(s, "hsmux_hedges_total", "h1");
    wait_up(s, "h0");
    for (what, id) in [
        ("C_CreateObject", &b"created-once"[..]),
        ("C_GenerateKey", b"generated-once"),
    ] {
        ctl(&s.dir, "h0", "hang");
        let call = std::thread::spawn(move || {
            let m = &s.m;
            let t = Template::new()
                .ulong(CKA_CLASS, CKO_SECRET_KEY)
                .ulong(CKA_KEY_TYPE, CKK_AES)
                .bool(CKA_TOKEN, true)
                .bytes(CKA_ID, id);
            if what == "C_CreateObject" {
                try_create(m, h, t.bytes(CKA_VALUE, &[9u8; 16])).map(|_| ())
            } else {
                let (mut mc, mut t, mut k) = (mech(CKM_AES_KEY_GEN), t.ulong(CKA_VALUE_LEN, 16), 0);
                match ck!(m, C_GenerateKey(h, &mut mc, t.ptr(), t.len(), &mut k)) {
                    CKR_OK => Ok(()),
                    rv => Err(rv),
                }
            }
        });
        // Many hedge delays (20 ms) pass while h0 holds the call: h1 must not get it.
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(
            count_on(s, "h1", id),
            0,
            "{what} was sent to h1 while h0 hung"
        );
        // h0 answers before its deadline: the call succeeds there, once.
        ctl(&s.dir, "h0", "ok");
        let rv = call.join().unwrap();
        assert_eq!(rv, Ok(()), "{what}");
        assert_eq!(
            count_on(s, "h0", id) + count_on(s, "h1", id),
            1,
            "{what}: one object"
        );
    }
    assert_eq!(
        counter(s, "hsmux_hedges_total", "h1"),
        sent0,
        "no hedge was sent"
    );
    assert_eq!(ck!(s.m, C_CloseSession(h)), CKR_OK);
    revive(s);
}
