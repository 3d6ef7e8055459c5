//! Session virtualization and self-healing vendor libraries against real parts: SoftHSMv2
//! tokens, each reached through its own copy of the fault-injecting wrapper
//! (conformance/faultwrap, built here with cc) that caps its sessions (`max_sessions=N`),
//! refuses a PIN (`pin`) or gets stuck answering CKR_DEVICE_REMOVED until it is
//! re-initialised (`removed`). Every signature is verified with p256, every MAC with hmac;
//! the pool and re-initialisation figures are read from hsmux's /metrics.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const HMAC_KEY: [u8; 32] = [0x5e; 32];

struct Setup {
    m: Module,
    dir: PathBuf,
    ec: p256::ecdsa::VerifyingKey,
    port: u16,
}
unsafe impl Sync for Setup {}
unsafe impl Send for Setup {}

static SETUP: OnceLock<Setup> = OnceLock::new();

fn ctl(dir: &Path, name: &str, mode: &str) {
    std::fs::write(dir.join(format!("ctl-{name}")), mode).unwrap();
}

/// An EC key pair (the one `sk` is) and a public HMAC key on `token` of the direct SoftHSM.
fn provision(direct: &Module, token: &str, sk: &p256::ecdsa::SigningKey) {
    let slot = slot_labelled(direct, token, true);
    let h = open(direct, slot, true);
    assert_eq!(login(direct, h, CKU_USER, PIN), CKR_OK);
    let point = sk.verifying_key().to_encoded_point(false);
    let mut point_der = vec![0x04, point.as_bytes().len() as u8];
    point_der.extend_from_slice(point.as_bytes());
    let mut o = 0;
    let mut make = |mut t: Template| {
        assert_rv!(
            ck!(direct, C_CreateObject(h, t.ptr(), t.len(), &mut o)),
            CKR_OK
        )
    };
    make(
        Template::new()
            .ulong(CKA_CLASS, CKO_PRIVATE_KEY)
            .ulong(CKA_KEY_TYPE, CKK_EC)
            .bool(CKA_TOKEN, true)
            .bool(CKA_PRIVATE, true)
            .bool(CKA_SIGN, true)
            .bytes(CKA_EC_PARAMS, P256_PARAMS)
            .bytes(CKA_VALUE, &sk.to_bytes())
            .bytes(CKA_ID, b"ec"),
    );
    make(
        Template::new()
            .ulong(CKA_CLASS, CKO_PUBLIC_KEY)
            .ulong(CKA_KEY_TYPE, CKK_EC)
            .bool(CKA_TOKEN, true)
            .bool(CKA_VERIFY, true)
            .bytes(CKA_EC_PARAMS, P256_PARAMS)
            .bytes(CKA_EC_POINT, &point_der)
            .bytes(CKA_ID, b"ec"),
    );
    // Not private: usable without a login (the size-1 pool test logs in nowhere).
    make(
        Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
            .bool(CKA_TOKEN, true)
            .bool(CKA_PRIVATE, false)
            .bool(CKA_SIGN, true)
            .bytes(CKA_VALUE, &HMAC_KEY)
            .bytes(CKA_ID, b"hmac"),
    );
    assert_eq!(ck!(direct, C_CloseSession(h)), CKR_OK);
}

fn setup() -> &'static Setup {
    SETUP.get_or_init(|| {
        assert!(Path::new(SOFTHSM).exists(), "SoftHSMv2 missing (scripts/deps.sh)");
        let dir = std::env::temp_dir().join(format!("hsmux-pool-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tokens")).unwrap();
        remove_at_exit(&dir);
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n", dir.display()),
        )
        .unwrap();
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let tokens = ["pool", "heal", "pin", "one", "lost"];
        for t in tokens {
            let out = Command::new("softhsm2-util")
                .args(["--init-token", "--free", "--label", t, "--so-pin", "12345678", "--pin", "1234"])
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
        assert!(out.status.success(), "faultwrap build: {}", String::from_utf8_lossy(&out.stderr));
        let wrapper = dir.join("libfaultwrap.so");
        let sk = p256::ecdsa::SigningKey::from_bytes(&[0x33u8; 32].into()).unwrap();
        // SoftHSM is initialized here first, so that no wrapper copy owns (and finalizes) it
        // when it is itself re-initialised.
        let direct = load_from(Path::new(SOFTHSM));
        assert_eq!(initialize(&direct), CKR_OK);
        for t in tokens {
            provision(&direct, t, &sk);
        }
        std::mem::forget(direct);
        // One slot per case, each a one-replica group over its own wrapper copy.
        let group = |slot: &str, name: &str, wrap_args: &str, keys: &str| {
            let lib = dir.join(format!("w-{name}.so"));
            std::fs::copy(&wrapper, &lib).unwrap();
            ctl(&dir, name, "ok");
            format!(
                "[[slot]]\nlabel = \"{slot}\"\npolicy = \"failover\"\n  [[slot.replica]]\n  name = \"{name}\"\n  backend = \"module\"\n  library = \"{}\"\n  token = \"{slot}\"\n  init_args = \"target={SOFTHSM} ctl={}/ctl-{name}{wrap_args}\"\n{keys}\n",
                lib.display(),
                dir.display()
            )
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = format!(
            "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n{}{}{}{}{}",
            group("pool", "p", " max_sessions=16", "  max_sessions = 16\n  timeout_ms = 10000\n"),
            group("heal", "h", "", "  timeout_ms = 1000\n"),
            group("pin", "q", "", "  pin = \"1234\"\n  timeout_ms = 1000\n"),
            group("one", "o", " max_sessions=1", "  max_sessions = 1\n  timeout_ms = 300\n"),
            group("lost", "l", "", "  timeout_ms = 1000\n"),
        );
        std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
        let m = load();
        assert_eq!(initialize(&m), CKR_OK);
        Setup {
            m,
            dir,
            ec: *sk.verifying_key(),
            port,
        }
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

/// An ECDSA signature of `msg` from session `h`, checked with p256.
fn ecdsa(s: &Setup, h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE, msg: &[u8]) -> Result<(), String> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(msg);
    let sig = sign(&s.m, h, mech(CKM_ECDSA), key, &digest)
        .map_err(|rv| format!("ECDSA sign: {}", rv_name(rv)))?;
    let sig = p256::ecdsa::Signature::from_slice(&sig).map_err(|e| e.to_string())?;
    s.ec.verify_prehash(&digest, &sig)
        .map_err(|e| format!("the signature does not verify: {e}"))
}

fn hmac_of(msg: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&HMAC_KEY).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// GET /metrics (the 0.0.4 text) from hsmux's listener.
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
    openmetrics_parser::prometheus::parse_prometheus(body)
        .unwrap_or_else(|e| panic!("{e:?} in:\n{body}"));
    body.to_string()
}

/// The value of `name{slot="..",replica=".."}` in `text`.
fn value(text: &str, name: &str, slot: &str, replica: &str) -> Option<f64> {
    let series = format!("{name}{{slot=\"{slot}\",replica=\"{replica}\"}}");
    text.lines()
        .find_map(|l| l.strip_prefix(&series).and_then(|v| v.trim().parse().ok()))
}

/// A user session on slot `label`.
fn user_session(s: &Setup, label: &str) -> CK_SESSION_HANDLE {
    let h = open(&s.m, slot_labelled(&s.m, label, true), true);
    let rv = login(&s.m, h, CKU_USER, PIN);
    assert!(
        rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
        "{}",
        rv_name(rv)
    );
    h
}

#[test]
fn ten_thousand_sessions_sign_through_a_replica_capped_at_16_sessions() {
    let s = setup();
    let m = &s.m;
    let slot = slot_labelled(m, "pool", true);
    let first = user_session(s, "pool");
    let ec = find_one(m, first, CKO_PRIVATE_KEY, b"ec");
    let hmac = find_one(m, first, CKO_SECRET_KEY, b"hmac");
    let mut sessions = vec![first];
    while sessions.len() < 10_000 {
        sessions.push(open(m, slot, false));
    }
    // 12 multi-part MACs left running hold 12 of the 16 vendor sessions (the login holds
    // one more): the signing threads share the other 3, and must wait for them.
    let held = &sessions[..12];
    for (i, &h) in held.iter().enumerate() {
        let mut mc = mech(CKM_SHA256_HMAC);
        assert_rv!(ck!(m, C_SignInit(h, &mut mc, hmac)), CKR_OK);
        let part = format!("held {i}");
        assert_rv!(
            ck!(
                m,
                C_SignUpdate(h, part.as_ptr() as *mut _, part.len() as CK_ULONG)
            ),
            CKR_OK
        );
    }
    let next = AtomicUsize::new(12);
    let failures = Mutex::new(Vec::<String>::new());
    let signed = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&h) = sessions.get(i) else { return };
                match ecdsa(s, h, ec, format!("session {i}").as_bytes()) {
                    Ok(()) => {
                        signed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(format!("session {i}: {e}")),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} signatures failed; first: {:?}",
        failures.len(),
        sessions.len() - 12,
        &failures[..failures.len().min(5)]
    );
    assert_eq!(signed.load(Ordering::Relaxed), sessions.len() - 12);
    for (i, &h) in held.iter().enumerate() {
        let mut out = [0u8; 32];
        let mut len: CK_ULONG = 32;
        assert_rv!(ck!(m, C_SignFinal(h, out.as_mut_ptr(), &mut len)), CKR_OK);
        assert_eq!(
            &out[..len as usize],
            hmac_of(format!("held {i}").as_bytes())
        );
    }
    let text = scrape(s.port);
    assert_eq!(
        value(&text, "hsmux_replica_pool_sessions", "pool", "p"),
        Some(16.0),
        "{text}"
    );
    let waits = value(&text, "hsmux_replica_pool_waits_total", "pool", "p").unwrap_or(0.0);
    assert!(waits > 0.0, "signers waited for a vendor session:\n{text}");
    assert_eq!(
        value(&text, "hsmux_replica_pool_wait_timeouts_total", "pool", "p"),
        Some(0.0)
    );
    // Only the login's session is lent now.
    assert_eq!(
        value(&text, "hsmux_replica_pool_in_use", "pool", "p"),
        Some(1.0),
        "{text}"
    );
    println!(
        "{} ECDSA signatures over 10,000 sessions, {waits} waits for one of 16 vendor sessions",
        sessions.len() - 12
    );
    assert_eq!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
}

#[test]
fn a_library_stuck_answering_device_removed_is_reinitialised_and_serves_again() {
    let s = setup();
    let m = &s.m;
    let h = user_session(s, "heal");
    let ec = find_one(m, h, CKO_PRIVATE_KEY, b"ec");
    ecdsa(s, h, ec, b"before").expect("the replica serves");
    ctl(&s.dir, "h", "removed");
    let rv = sign(m, h, mech(CKM_ECDSA), ec, &[7u8; 32]).expect_err("the only replica is stuck");
    assert_rv!(rv, CKR_DEVICE_ERROR);
    // The sticky state outlives the ctl file going back to ok: only a re-initialisation
    // ends it. (The file is left saying "removed": the wrapper forwards again after its
    // C_Finalize + C_Initialize.)
    let t = Instant::now();
    loop {
        let last = match ecdsa(s, h, ec, b"after") {
            Ok(()) => break,
            Err(e) => e,
        };
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the replica did not come back on its own within 60 s: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = scrape(s.port);
    let reinits = value(&text, "hsmux_replica_reinit_total", "heal", "h").unwrap_or(0.0);
    assert!(reinits >= 1.0, "the re-initialisation is counted:\n{text}");
    assert_eq!(
        value(&text, "hsmux_replica_up", "heal", "h"),
        Some(1.0),
        "{text}"
    );
    ctl(&s.dir, "h", "ok");
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

#[test]
fn vendor_sessions_lost_while_pooled_are_replaced_without_failing_a_call() {
    let s = setup();
    let m = &s.m;
    let hs: Vec<_> = (0..4).map(|_| user_session(s, "lost")).collect();
    let ec = find_one(m, hs[0], CKO_PRIVATE_KEY, b"ec");
    // Four operations at once hold four vendor sessions; once they end the pool keeps them.
    let digest = [9u8; 32];
    for &h in &hs {
        assert_rv!(ck!(m, C_SignInit(h, &mut mech(CKM_ECDSA), ec)), CKR_OK);
    }
    for &h in &hs {
        two_call(|p, n| ck!(m, C_Sign(h, digest.as_ptr() as *mut _, 32, p, n))).unwrap();
    }
    // The vendor loses every session it had (faultwrap `stale`): the first call to meet
    // one fails over to the same replica, and the other pooled sessions are checked
    // before they are lent instead of each failing a call.
    ctl(&s.dir, "l", "stale");
    for round in 0..3 {
        for &h in &hs {
            ecdsa(s, h, ec, format!("after {round}").as_bytes())
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
    ctl(&s.dir, "l", "ok");
    for h in hs {
        assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
    }
}

#[test]
fn a_replica_refusing_its_pin_is_neither_retried_nor_reinitialised() {
    let s = setup();
    let m = &s.m;
    ctl(&s.dir, "q", "pin");
    let h = open(m, slot_labelled(m, "pin", true), true);
    // The only replica refuses its configured PIN: the consumer's login fails.
    assert_rv!(login(m, h, CKU_USER, PIN), CKR_DEVICE_ERROR);
    // Several probe periods (down: probed after 1, 2, 4 s), and the consumer trying again.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1500));
        assert_rv!(login(m, h, CKU_USER, PIN), CKR_DEVICE_ERROR);
    }
    let logins = std::fs::read_to_string(s.dir.join("ctl-q.logins")).unwrap_or_default();
    assert_eq!(
        logins.trim(),
        "1",
        "the refused PIN was tried {logins:?} times"
    );
    let text = scrape(s.port);
    assert_eq!(
        value(&text, "hsmux_replica_reinit_total", "pin", "q"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "hsmux_replica_up", "pin", "q"),
        Some(0.0),
        "{text}"
    );
    ctl(&s.dir, "q", "ok");
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

#[test]
fn no_free_vendor_session_within_the_deadline_is_a_device_error_and_not_a_failure() {
    let s = setup();
    let m = &s.m;
    let slot = slot_labelled(m, "one", true);
    let (a, b) = (open(m, slot, false), open(m, slot, false));
    let hmac = find_one(m, a, CKO_SECRET_KEY, b"hmac");
    // A's operation holds the pool's only vendor session until it ends.
    let mut mc = mech(CKM_SHA256_HMAC);
    assert_rv!(ck!(m, C_SignInit(a, &mut mc, hmac)), CKR_OK);
    let before = value(
        &scrape(s.port),
        "hsmux_replica_pool_wait_timeouts_total",
        "one",
        "o",
    );
    let mut mc = mech(CKM_SHA256_HMAC);
    assert_rv!(ck!(m, C_SignInit(b, &mut mc, hmac)), CKR_DEVICE_ERROR);
    let text = scrape(s.port);
    let after = value(&text, "hsmux_replica_pool_wait_timeouts_total", "one", "o");
    assert!(after > before, "{before:?} -> {after:?}:\n{text}");
    assert_eq!(
        value(&text, "hsmux_replica_pool_sessions", "one", "o"),
        Some(1.0),
        "{text}"
    );
    // Busy is not down: the replica stays up and A's operation goes on.
    assert_eq!(
        value(&text, "hsmux_replica_up", "one", "o"),
        Some(1.0),
        "{text}"
    );
    let mut out = [0u8; 32];
    let mut len: CK_ULONG = 32;
    assert_rv!(
        ck!(
            m,
            C_Sign(a, b"one".as_ptr() as *mut _, 3, out.as_mut_ptr(), &mut len)
        ),
        CKR_OK
    );
    assert_eq!(&out[..len as usize], hmac_of(b"one"));
    // The session is free again: B's operation gets it.
    let mac = sign(m, b, mech(CKM_SHA256_HMAC), hmac, b"two").expect("B signs now");
    assert_eq!(mac, hmac_of(b"two"));
    assert_eq!(ck!(m, C_CloseSession(a)), CKR_OK);
    assert_eq!(ck!(m, C_CloseSession(b)), CKR_OK);
}
