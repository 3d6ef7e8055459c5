//! Chaos soak of a replica group (a long-running tool, not a timed test): three SoftHSMv2
//! tokens holding the same keys, each reached through its own copy of the fault-injecting
//! wrapper (conformance/faultwrap), behind one `balance` slot of hsmux. A chaos thread sets
//! random faults ([`FAULTS`]) on random replicas for random short periods, never on all
//! three at once; 4 worker threads run mixed load, and every result is checked by an
//! independent implementation (p256, rsa, aes-gcm, aes, hmac, sha2):
//!   ECDSA P-256 and RSA-2048 (SHA256-RSA-PKCS) signatures, AES-GCM encryption with a
//!   caller IV decrypted outside and through hsmux, AES-CBC multi-part encryption (three
//!   updates) decrypted outside, HMAC-SHA256 and SHA-256 multi-part, C_FindObjects.
//! It prints operations, failed operations (by return value and by the step that failed;
//! hsmux's own reasons from its log), wrong results, failovers and hedges (from /metrics),
//! and p50/p99/max latency per operation. Exit status 1 on any wrong result.
//!
//! Run: `cargo build --release && CHAOS_SECS=600 cargo bench --bench chaos`
//! (CHAOS_SECS: how long the load runs, default 600; CHAOS_SEED: the random seed;
//! CHAOS_HEDGE_MS: the slot's `hedge_ms`, absent = automatic; CHAOS_LOG: a file to keep
//! hsmux's log in).

mod common;
use common::*;
use cryptoki_sys::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const REPLICAS: [&str; 3] = ["c0", "c1", "c2"];
const DEADLINE_MS: u64 = 500;
/// The faults the chaos thread picks from (faultwrap ctl words). `removed` joins when the
/// wrapper knows it ([`faults`]).
const FAULTS: &[&str] = &["error", "hang", "gone", "slow 50", "stale"];
const AES_KEY: [u8; 32] = [0x3c; 32];
const HMAC_KEY: [u8; 32] = [0x4d; 32];
const EC_SCALAR: [u8; 32] = [0x21; 32];
/// What hsmux's log says when an operation could not continue, and the category counted.
const LOG_REASONS: &[(&str, &str)] = &[
    (
        "a multi-part operation lost replica",
        "multi-part operation cut (not replayed)",
    ),
    ("not replayable", "not replayable"),
    ("cannot be replayed", "not replayable"),
    ("no replica could serve it", "no replica could serve it"),
];

/// The fault list, with the wrapper's `removed` mode when this faultwrap.c has it.
fn faults() -> Vec<&'static str> {
    let mut v = FAULTS.to_vec();
    if include_str!("../conformance/faultwrap/faultwrap.c").contains("IS(\"removed\")") {
        v.push("removed");
    }
    v
}

/// A small xorshift generator: the soak needs variety, not cryptographic randomness.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The keys every replica holds (the same values, the same CKA_IDs).
struct Material {
    ec: p256::ecdsa::VerifyingKey,
    rsa: rsa::RsaPublicKey,
}

fn create(m: &Module, h: CK_SESSION_HANDLE, t: &mut [CK_ATTRIBUTE]) {
    let mut o = 0;
    let rv = ck!(
        m,
        C_CreateObject(h, t.as_mut_ptr(), t.len() as CK_ULONG, &mut o)
    );
    ok(rv, "C_CreateObject");
}

fn provision(direct: &Module, rsa_key: &rsa::RsaPrivateKey) -> Material {
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    let sk = p256::ecdsa::SigningKey::from_bytes(&EC_SCALAR.into()).unwrap();
    let point = sk.verifying_key().to_encoded_point(false);
    let mut point_der = vec![0x04, point.as_bytes().len() as u8];
    point_der.extend_from_slice(point.as_bytes());
    let be = |b: &rsa::BigUint| b.to_bytes_be();
    let (n, e, d) = (be(rsa_key.n()), be(rsa_key.e()), be(rsa_key.d()));
    let (p, q) = (be(&rsa_key.primes()[0]), be(&rsa_key.primes()[1]));
    let (sec, prv, aes, gen, ec, rsak) = (
        CKO_SECRET_KEY,
        CKO_PRIVATE_KEY,
        CKK_AES,
        CKK_GENERIC_SECRET,
        CKK_EC,
        CKK_RSA,
    );
    for t in REPLICAS {
        let slot = direct.find_slot(t).expect("token");
        let mut h = 0;
        let flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
        ok(
            ck!(
                direct,
                C_OpenSession(slot, flags, std::ptr::null_mut(), None, &mut h)
            ),
            "open",
        );
        let rv = ck!(
            direct,
            C_Login(h, CKU_USER, PIN.as_ptr() as *mut _, PIN.len() as CK_ULONG)
        );
        ok(rv, "login");
        for (kt, value, id) in [(aes, &AES_KEY, &b"aes"[..]), (gen, &HMAC_KEY, b"hmac")] {
            create(
                direct,
                h,
                &mut [
                    attr(CKA_CLASS, &sec),
                    attr(CKA_KEY_TYPE, &kt),
                    attr(CKA_TOKEN, &TRUE),
                    attr(CKA_ENCRYPT, &TRUE),
                    attr(CKA_DECRYPT, &TRUE),
                    attr(CKA_SIGN, &TRUE),
                    attr_bytes(CKA_VALUE, value),
                    attr_bytes(CKA_ID, id),
                ],
            );
        }
        create(
            direct,
            h,
            &mut [
                attr(CKA_CLASS, &prv),
                attr(CKA_KEY_TYPE, &ec),
                attr(CKA_TOKEN, &TRUE),
                attr(CKA_SIGN, &TRUE),
                attr_bytes(CKA_EC_PARAMS, P256),
                attr_bytes(CKA_VALUE, &EC_SCALAR),
                attr_bytes(CKA_ID, b"ec"),
            ],
        );
        create(
            direct,
            h,
            &mut [
                attr(CKA_CLASS, &prv),
                attr(CKA_KEY_TYPE, &rsak),
                attr(CKA_TOKEN, &TRUE),
                attr(CKA_SIGN, &TRUE),
                attr_bytes(CKA_MODULUS, &n),
                attr_bytes(CKA_PUBLIC_EXPONENT, &e),
                attr_bytes(CKA_PRIVATE_EXPONENT, &d),
                attr_bytes(CKA_PRIME_1, &p),
                attr_bytes(CKA_PRIME_2, &q),
                attr_bytes(CKA_ID, b"rsa"),
            ],
        );
        ok(ck!(direct, C_CloseSession(h)), "close");
    }
    Material {
        ec: *sk.verifying_key(),
        rsa: rsa_key.to_public_key(),
    }
}

/// What one worker observed.
#[derive(Default)]
struct Tally {
    /// operation -> latencies of its successful runs.
    done: BTreeMap<&'static str, Vec<Duration>>,
    /// (operation, failed step, return value) -> count.
    failed: BTreeMap<(&'static str, &'static str, CK_RV), u64>,
    /// Descriptions of wrong results.
    wrong: Vec<String>,
}

/// A step of an operation that failed: which, and its return value.
type Step = (&'static str, CK_RV);

fn call(step: &'static str, rv: CK_RV) -> Result<(), Step> {
    if rv == CKR_OK {
        Ok(())
    } else {
        Err((step, rv))
    }
}

/// What a check found: `Ok(None)` right, `Ok(Some(why))` a wrong result, `Err` a failed step.
type Outcome = Result<Option<String>, Step>;

struct Worker<'a> {
    m: &'a Module,
    h: CK_SESSION_HANDLE,
    keys: BTreeMap<&'static str, CK_OBJECT_HANDLE>,
    mat: &'a Material,
    n: u64,
}

#[path = "chaos/ops.rs"]
mod ops;

/// The operations a worker runs, in turn.
const OPERATIONS: &[&str] = &["ecdsa", "rsa", "gcm", "cbc", "hmac", "digest", "find"];

impl Worker<'_> {
    fn run(&mut self, op: &'static str) -> Outcome {
        self.n += 1;
        match op {
            "ecdsa" => self.ecdsa(),
            "rsa" => self.rsa(),
            "gcm" => self.gcm(),
            "cbc" => self.cbc(),
            "hmac" => self.hmac(),
            "digest" => self.digest(),
            _ => self.find(),
        }
    }
}

fn user_session(m: &Module, slot: CK_SLOT_ID) -> Result<CK_SESSION_HANDLE, CK_RV> {
    let mut h = 0;
    let flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    let rv = ck!(
        m,
        C_OpenSession(slot, flags, std::ptr::null_mut(), None, &mut h)
    );
    if rv != CKR_OK {
        return Err(rv);
    }
    match ck!(
        m,
        C_Login(h, CKU_USER, PIN.as_ptr() as *mut _, PIN.len() as CK_ULONG)
    ) {
        CKR_OK | CKR_USER_ALREADY_LOGGED_IN => Ok(h),
        rv => Err(rv),
    }
}

fn worker(
    m: &'static Module,
    slot: CK_SLOT_ID,
    mat: &Material,
    stop: &AtomicBool,
    seed: u64,
) -> Tally {
    let mut tally = Tally::default();
    let mut rng = Rng(seed | 1);
    let mut w: Option<Worker> = None;
    while !stop.load(Ordering::Relaxed) {
        if w.is_none() {
            // A session and the keys' handles (again after the session was lost).
            match user_session(m, slot).and_then(|h| ops::keys(m, h).map(|k| (h, k))) {
                Ok((h, keys)) => {
                    w = Some(Worker {
                        m,
                        h,
                        keys,
                        mat,
                        n: seed << 32,
                    })
                }
                Err(rv) => {
                    *tally
                        .failed
                        .entry(("session", "open/login/find", rv))
                        .or_default() += 1;
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        let wk = w.as_mut().unwrap();
        let op = OPERATIONS[rng.below(OPERATIONS.len() as u64) as usize];
        let t = Instant::now();
        match wk.run(op) {
            Ok(None) => tally.done.entry(op).or_default().push(t.elapsed()),
            Ok(Some(why)) => tally.wrong.push(format!("{op}: {why}")),
            Err((step, rv)) => {
                *tally.failed.entry((op, step, rv)).or_default() += 1;
                if matches!(
                    rv,
                    CKR_SESSION_HANDLE_INVALID | CKR_SESSION_CLOSED | CKR_USER_NOT_LOGGED_IN
                ) {
                    let _ = ck!(m, C_CloseSession(wk.h));
                    w = None;
                }
            }
        }
    }
    if let Some(wk) = w {
        let _ = ck!(m, C_CloseSession(wk.h));
    }
    tally
}

/// The chaos thread: random faults on random replicas, at most two at a time. A
/// `removed` library stays broken after its ctl file says ok again, until hsmux
/// re-initialises it; until then it still counts as one of the two (else the thread would
/// break the other two and leave no replica that could serve, which no group survives).
fn chaos(dir: &Path, port: u16, stop: &AtomicBool, seed: u64) -> BTreeMap<String, u64> {
    let faults = faults();
    let mut rng = Rng(seed.rotate_left(17) | 1);
    let mut injected = BTreeMap::new();
    // replica -> when its fault ends, and whether it was `removed`.
    let mut active: BTreeMap<usize, (Instant, bool)> = BTreeMap::new();
    let set = |i: usize, mode: &str| {
        std::fs::write(dir.join(format!("ctl-{}", REPLICAS[i])), mode).unwrap()
    };
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let ended: Vec<usize> = active
            .iter()
            .filter(|(_, (until, _))| *until <= now)
            .map(|(&i, _)| i)
            .collect();
        for i in ended {
            let removed = active[&i].1;
            if !removed {
                set(i, "ok");
                active.remove(&i);
            } else if !replica_healing(dir, port, i) {
                active.remove(&i);
            }
        }
        if active.len() < REPLICAS.len() - 1 && rng.below(4) == 0 {
            let free: Vec<usize> = (0..REPLICAS.len())
                .filter(|i| !active.contains_key(i))
                .collect();
            let i = free[rng.below(free.len() as u64) as usize];
            let fault = faults[rng.below(faults.len() as u64) as usize];
            set(i, fault);
            *injected.entry(fault.to_string()).or_default() += 1;
            let until = now + Duration::from_millis(200 + rng.below(2800));
            active.insert(i, (until, fault == "removed"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..REPLICAS.len() {
        set(i, "ok");
    }
    injected
}

/// After a `removed` fault's time: says ok in its ctl file (once) and tells whether the
/// replica is still out (hsmux has not re-admitted it yet: it shows 0 in
/// `hsmux_replica_up`, or shows 1 but has not answered twice in a row since).
fn replica_healing(dir: &Path, port: u16, i: usize) -> bool {
    let ctl = dir.join(format!("ctl-{}", REPLICAS[i]));
    if std::fs::read_to_string(&ctl).unwrap_or_default() != "ok" {
        std::fs::write(&ctl, "ok").unwrap();
        return true;
    }
    let family = format!(
        "hsmux_replica_up{{slot=\"chaos\",replica=\"{}\"}}",
        REPLICAS[i]
    );
    let up = || metric_sum(port, &family) == 1.0;
    !(up() && {
        std::thread::sleep(Duration::from_millis(100));
        up()
    })
}

/// GET /metrics: the sum of every sample of `family` (0 if none).
fn metric_sum(port: u16, family: &str) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return f64::NAN;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    resp.lines()
        .filter(|l| {
            // `family` is a metric name (every sample) or a name with its labels.
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>()
        .abs()
}

fn rv_name(rv: CK_RV) -> String {
    match rv {
        CKR_DEVICE_ERROR => "CKR_DEVICE_ERROR".into(),
        CKR_DEVICE_REMOVED => "CKR_DEVICE_REMOVED".into(),
        CKR_SESSION_HANDLE_INVALID => "CKR_SESSION_HANDLE_INVALID".into(),
        CKR_OBJECT_HANDLE_INVALID => "CKR_OBJECT_HANDLE_INVALID".into(),
        CKR_KEY_HANDLE_INVALID => "CKR_KEY_HANDLE_INVALID".into(),
        CKR_OPERATION_NOT_INITIALIZED => "CKR_OPERATION_NOT_INITIALIZED".into(),
        CKR_USER_NOT_LOGGED_IN => "CKR_USER_NOT_LOGGED_IN".into(),
        CKR_FUNCTION_FAILED => "CKR_FUNCTION_FAILED".into(),
        CKR_GENERAL_ERROR => "CKR_GENERAL_ERROR".into(),
        rv => format!("0x{rv:x}"),
    }
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn setup(dir: &Path) -> (u16, Material) {
    let conf = dir.join("softhsm2.conf");
    write_softhsm_conf(&conf, &dir.join("tokens"));
    std::env::set_var("SOFTHSM2_CONF", &conf);
    for t in REPLICAS {
        run_ok(
            Command::new("softhsm2-util")
                .args(["--init-token", "--free", "--label", t])
                .args(["--so-pin", "12345678", "--pin", "1234"]),
            "softhsm2-util",
        );
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let build = format!("{root}/conformance/faultwrap/build.sh");
    run_ok(Command::new("bash").arg(build).arg(dir), "build faultwrap");
    let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
    let direct = Module::open("direct", SOFTHSM);
    let mat = provision(&direct, &rsa_key);
    std::mem::forget(direct); // the wrappers share this SoftHSM instance
    let mut cfg = String::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cfg.push_str(&format!(
        "[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n[log]\nlevel = \"warn\"\nfile = \"{}/hsmux.log\"\n\n[[slot]]\nlabel = \"chaos\"\npolicy = \"balance\"\n{}",
        dir.display(),
        // CHAOS_HEDGE_MS: the slot's `hedge_ms` (absent: automatic).
        std::env::var("CHAOS_HEDGE_MS").map(|v| format!("hedge_ms = {v}\n")).unwrap_or_default()
    ));
    for name in REPLICAS {
        let lib = dir.join(format!("w-{name}.so"));
        std::fs::copy(dir.join("libfaultwrap.so"), &lib).unwrap();
        std::fs::write(dir.join(format!("ctl-{name}")), "ok").unwrap();
        cfg.push_str(&format!(
            "  [[slot.replica]]\n  name = \"{name}\"\n  backend = \"module\"\n  library = \"{}\"\n  token = \"{name}\"\n  init_args = \"target={SOFTHSM} ctl={}/ctl-{name} shared=1\"\n  timeout_ms = {DEADLINE_MS}\n",
            lib.display(),
            dir.display()
        ));
    }
    std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
    std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
    (port, mat)
}

fn main() {
    if listing() {
        return;
    }
    let secs: u64 = std::env::var("CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let dir: PathBuf = temp_dir();
    let (port, mat) = setup(&dir);
    let mat: &'static Material = Box::leak(Box::new(mat));
    let root = env!("CARGO_MANIFEST_DIR");
    let hx: &'static Module = Box::leak(Box::new(Module::open(
        "hsmux",
        &format!("{root}/target/release/libhsmux.so"),
    )));
    let slot = hx.find_slot("chaos").expect("slot chaos");
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4u64)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || worker(hx, slot, mat, &stop, seed.wrapping_add(i * 7919)))
        })
        .collect();
    let chaos_thread = {
        let (stop, dir) = (stop.clone(), dir.clone());
        std::thread::spawn(move || chaos(&dir, port, &stop, seed))
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    let injected = chaos_thread.join().unwrap();
    let mut all = Tally::default();
    for w in workers {
        let t = w.join().unwrap();
        for (op, mut v) in t.done {
            all.done.entry(op).or_default().append(&mut v);
        }
        for (k, n) in t.failed {
            *all.failed.entry(k).or_default() += n;
        }
        all.wrong.extend(t.wrong);
    }
    let log = std::fs::read_to_string(dir.join("hsmux.log")).unwrap_or_default();
    report(&all, &injected, &log, port, secs, seed);
    let wrong = all.wrong.len();
    if let Ok(keep) = std::env::var("CHAOS_LOG") {
        let _ = std::fs::write(keep, &log);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if wrong > 0 {
        std::process::exit(1);
    }
}

fn report(
    all: &Tally,
    injected: &BTreeMap<String, u64>,
    log: &str,
    port: u16,
    secs: u64,
    seed: u64,
) {
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    println!("## Chaos soak: {secs} s, 3 replicas (balance, {DEADLINE_MS} ms deadline), 4 threads, seed {seed}, {} cores\n", cores());
    let faults: Vec<String> = injected.iter().map(|(f, n)| format!("{f} x{n}")).collect();
    println!("Faults injected: {}\n", faults.join(", "));
    println!("| operation | done | failed | wrong | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut every = Vec::new();
    let failed_of = |op: &str| {
        all.failed
            .iter()
            .filter(|((o, _, _), _)| *o == op)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let wrong_of = |op: &str| {
        all.wrong
            .iter()
            .filter(|w| w.starts_with(&format!("{op}:")))
            .count()
    };
    for op in OPERATIONS {
        let mut v = all.done.get(op).cloned().unwrap_or_default();
        every.extend_from_slice(&v);
        let (p50, p99, max) = if v.is_empty() {
            ("-".into(), "-".into(), "-".into())
        } else {
            (
                ms(percentile(&mut v, 0.5)),
                ms(percentile(&mut v, 0.99)),
                ms(*v.iter().max().unwrap()),
            )
        };
        println!(
            "| {op} | {} | {} | {} | {p50} | {p99} | {max} |",
            v.len(),
            failed_of(op),
            wrong_of(op)
        );
    }
    let failed: u64 = all.failed.values().sum();
    if !every.is_empty() {
        let max = *every.iter().max().unwrap();
        println!(
            "| all | {} | {failed} | {} | {} | {} | {} |",
            every.len(),
            all.wrong.len(),
            ms(percentile(&mut every, 0.5)),
            ms(percentile(&mut every, 0.99)),
            ms(max)
        );
    }
    println!("\nFailed operations by step and return value:");
    for ((op, step, rv), n) in &all.failed {
        println!("- {op}, {step}: {} x{n}", rv_name(*rv));
    }
    println!("\nReasons hsmux logged:");
    for (pattern, category) in LOG_REASONS {
        let n = log.lines().filter(|l| l.contains(pattern)).count();
        if n > 0 {
            println!("- {category}: {n} (log lines with \"{pattern}\")");
        }
    }
    println!(
        "\nFailovers: {:.0} (hsmux_failovers_total), {} log lines; hedges sent {:.0}, won {:.0}",
        metric_sum(port, "hsmux_failovers_total"),
        log.lines().filter(|l| l.contains("failover from")).count(),
        metric_sum(port, "hsmux_hedges_total"),
        metric_sum(port, "hsmux_hedges_won_total"),
    );
    println!("Wrong results: {}", all.wrong.len());
    for w in all.wrong.iter().take(20) {
        println!("- WRONG {w}");
    }
}
