//! Replica groups: failover time and the throughput of `balance`.
//!
//! Three SoftHSMv2 tokens hold the same HMAC and EC keys; each replica reaches its token
//! through its own copy of the fault-injecting wrapper (conformance/faultwrap), built here.
//!  - Failover time: a thread runs single-part HMAC operations back to back; 20 faults are
//!    injected into the replica serving them (10 x `error`, 10 x `hang` past the 500 ms
//!    deadline); the time from the fault to the first successful operation that started
//!    after it is measured. After each fault the replica is revived and re-admitted.
//!  - Balance: ECDSA P-256 signatures per second from 2 and 4 threads on a `balance` slot
//!    of one replica and one of two replicas, in the same run.
//!  - A hung replica under load: 4 threads sign (ECDSA) on a 2-replica `failover` slot
//!    while its serving replica hangs for 1 s, 3 times (re-admitted in between); the
//!    latency of every call started during a hang, with hedging automatic and off
//!    (`hedge_ms = 0`: the 500 ms deadline, then the failover). Target: p99 < 50 ms on.
//!    Slot `ha` (the failover-time rows) hedges automatically, as every slot by default.
//!
//! Run: `cargo build --release && cargo bench --bench failover` (BENCH_SECS per cell, 2).

mod common;
use common::*;
use cryptoki_sys::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const DEADLINE_MS: u64 = 500;

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn create(m: &Module, h: CK_SESSION_HANDLE, t: &mut [CK_ATTRIBUTE]) {
    let mut o = 0;
    ok(
        ck!(
            m,
            C_CreateObject(h, t.as_mut_ptr(), t.len() as CK_ULONG, &mut o)
        ),
        "C_CreateObject",
    );
}

/// The same HMAC key and EC key pair on every token, through SoftHSM loaded directly.
fn provision(direct: &Module, tokens: &[&str]) {
    let hmac = [0x5eu8; 32];
    let scalar = [0x33u8; 32];
    let sk = p256::ecdsa::SigningKey::from_bytes(&scalar.into()).unwrap();
    let point = sk.verifying_key().to_encoded_point(false);
    let mut point_der = vec![0x04, point.as_bytes().len() as u8];
    point_der.extend_from_slice(point.as_bytes());
    for t in tokens {
        let slot = direct.find_slot(t).expect("token");
        let mut h = 0;
        ok(
            ck!(
                direct,
                C_OpenSession(
                    slot,
                    CKF_SERIAL_SESSION | CKF_RW_SESSION,
                    std::ptr::null_mut(),
                    None,
                    &mut h
                )
            ),
            "open",
        );
        ok(
            ck!(
                direct,
                C_Login(h, CKU_USER, PIN.as_ptr() as *mut _, PIN.len() as CK_ULONG)
            ),
            "login",
        );
        let (sec, gen, prv, pubk, ec) = (
            CKO_SECRET_KEY,
            CKK_GENERIC_SECRET,
            CKO_PRIVATE_KEY,
            CKO_PUBLIC_KEY,
            CKK_EC,
        );
        create(
            direct,
            h,
            &mut [
                attr(CKA_CLASS, &sec),
                attr(CKA_KEY_TYPE, &gen),
                attr(CKA_TOKEN, &TRUE),
                attr(CKA_SIGN, &TRUE),
                attr_bytes(CKA_VALUE, &hmac),
                attr_bytes(CKA_ID, b"hmac"),
            ],
        );
        create(
            direct,
            h,
            &mut [
                attr(CKA_CLASS, &prv),
                attr(CKA_KEY_TYPE, &ec),
                attr(CKA_TOKEN, &TRUE),
                attr(CKA_SIGN, &TRUE),
                attr_bytes(CKA_EC_PARAMS, P256),
                attr_bytes(CKA_VALUE, &scalar),
                attr_bytes(CKA_ID, b"ec"),
            ],
        );
        create(
            direct,
            h,
            &mut [
                attr(CKA_CLASS, &pubk),
                attr(CKA_KEY_TYPE, &ec),
                attr(CKA_TOKEN, &TRUE),
                attr(CKA_VERIFY, &TRUE),
                attr_bytes(CKA_EC_PARAMS, P256),
                attr_bytes(CKA_EC_POINT, &point_der),
                attr_bytes(CKA_ID, b"ec"),
            ],
        );
        ok(ck!(direct, C_CloseSession(h)), "close");
    }
}

fn find(m: &Module, h: CK_SESSION_HANDLE, class: CK_OBJECT_CLASS, id: &[u8]) -> CK_OBJECT_HANDLE {
    let mut t = [attr(CKA_CLASS, &class), attr_bytes(CKA_ID, id)];
    ok(ck!(m, C_FindObjectsInit(h, t.as_mut_ptr(), 2)), "find init");
    let (mut o, mut n) = (0, 0);
    ok(ck!(m, C_FindObjects(h, &mut o, 1, &mut n)), "find");
    ok(ck!(m, C_FindObjectsFinal(h)), "find final");
    assert_eq!(n, 1, "key {}", String::from_utf8_lossy(id));
    o
}

fn user_session(m: &Module, slot: CK_SLOT_ID) -> CK_SESSION_HANDLE {
    let mut h = 0;
    ok(
        ck!(
            m,
            C_OpenSession(
                slot,
                CKF_SERIAL_SESSION | CKF_RW_SESSION,
                std::ptr::null_mut(),
                None,
                &mut h
            )
        ),
        "open",
    );
    let rv = ck!(
        m,
        C_Login(h, CKU_USER, PIN.as_ptr() as *mut _, PIN.len() as CK_ULONG)
    );
    assert!(
        rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
        "login 0x{rv:x}"
    );
    h
}

fn sign_once(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mt: CK_MECHANISM_TYPE,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
    out: &mut [u8],
) -> CK_RV {
    let mut mc = mech(mt);
    let rv = ck!(m, C_SignInit(h, &mut mc, key));
    if rv != CKR_OK {
        return rv;
    }
    let mut n = out.len() as CK_ULONG;
    ck!(
        m,
        C_Sign(
            h,
            data.as_ptr() as *mut _,
            data.len() as CK_ULONG,
            out.as_mut_ptr(),
            &mut n
        )
    )
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    if listing() {
        return;
    }
    let secs = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let dir: PathBuf = temp_dir();
    let conf = dir.join("softhsm2.conf");
    write_softhsm_conf(&conf, &dir.join("tokens"));
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let tokens = ["f0", "f1", "s0", "d0", "d1", "g0", "g1", "n0", "n1"];
    for t in tokens {
        run_ok(
            Command::new("softhsm2-util").args([
                "--init-token",
                "--free",
                "--label",
                t,
                "--so-pin",
                "12345678",
                "--pin",
                "1234",
            ]),
            "softhsm2-util",
        );
    }
    let root = env!("CARGO_MANIFEST_DIR");
    run_ok(
        Command::new("bash")
            .arg(format!("{root}/conformance/faultwrap/build.sh"))
            .arg(&dir),
        "build faultwrap",
    );
    let direct = Module::open("direct", SOFTHSM);
    provision(&direct, &tokens);
    std::mem::forget(direct);
    let replica = |name: &str| {
        let lib = dir.join(format!("w-{name}.so"));
        std::fs::copy(dir.join("libfaultwrap.so"), &lib).unwrap();
        std::fs::write(dir.join(format!("ctl-{name}")), "ok").unwrap();
        format!(
            "  [[slot.replica]]\n  name = \"{name}\"\n  backend = \"module\"\n  library = \"{}\"\n  token = \"{name}\"\n  init_args = \"target={SOFTHSM} ctl={}/ctl-{name}\"\n  timeout_ms = {DEADLINE_MS}\n",
            lib.display(),
            dir.display()
        )
    };
    let cfg = format!(
        "[[slot]]\nlabel = \"ha\"\npolicy = \"failover\"\n{}{}\n[[slot]]\nlabel = \"single\"\npolicy = \"balance\"\n{}\n[[slot]]\nlabel = \"double\"\npolicy = \"balance\"\n{}{}\n[[slot]]\nlabel = \"hedge-on\"\npolicy = \"failover\"\n{}{}\n[[slot]]\nlabel = \"hedge-off\"\npolicy = \"failover\"\nhedge_ms = 0\n{}{}",
        replica("f0"),
        replica("f1"),
        replica("s0"),
        replica("d0"),
        replica("d1"),
        replica("g0"),
        replica("g1"),
        replica("n0"),
        replica("n1")
    );
    std::fs::write(dir.join("hsmux.toml"), &cfg).unwrap();
    std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
    std::env::set_var(
        "HSMUX_LOG",
        std::env::var("HSMUX_LOG").unwrap_or_else(|_| "error".into()),
    );
    let hx: &'static Module = Box::leak(Box::new(Module::open(
        "hsmux",
        &format!("{root}/target/release/libhsmux.so"),
    )));
    let ctl =
        |name: &str, mode: &str| std::fs::write(dir.join(format!("ctl-{name}")), mode).unwrap();

    // --- failover time
    let ha = hx.find_slot("ha").expect("slot ha");
    let h = user_session(hx, ha);
    let key = find(hx, h, CKO_SECRET_KEY, b"hmac");
    let stop = Arc::new(AtomicBool::new(false));
    let fault_at = Arc::new(Mutex::new(None::<Instant>));
    let measured = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let ops = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, fault_at, measured, failed, ops) = (
            stop.clone(),
            fault_at.clone(),
            measured.clone(),
            failed.clone(),
            ops.clone(),
        );
        std::thread::spawn(move || {
            let mut out = [0u8; 64];
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let pending = *fault_at.lock().unwrap();
                let rv = sign_once(hx, h, CKM_SHA256_HMAC, key, b"failover bench", &mut out);
                if rv != CKR_OK {
                    if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("an operation failed: rv 0x{rv:x}");
                    }
                    continue;
                }
                ops.fetch_add(1, Ordering::Relaxed);
                if let Some(t) = pending {
                    if started >= t {
                        measured.lock().unwrap().push(Instant::now() - t);
                        *fault_at.lock().unwrap() = None;
                    }
                }
            }
        })
    };
    // With policy failover the first healthy replica, f0, serves; each fault hits it, and
    // after it is revived and re-admitted it serves again.
    let mut kinds = Vec::new();
    for i in 0..20 {
        let mode = if i < 10 { "error" } else { "hang" };
        std::thread::sleep(Duration::from_millis(300));
        let before = measured.lock().unwrap().len();
        // The wrapper reads its control file on every call: from here on f0 fails.
        ctl("f0", mode);
        *fault_at.lock().unwrap() = Some(Instant::now());
        let t = Instant::now();
        while measured.lock().unwrap().len() == before && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(2));
        }
        ctl("f0", "ok");
        kinds.push(mode);
        // Re-admission: 1 s back-off, then two passed probes.
        std::thread::sleep(Duration::from_millis(1700));
    }
    stop.store(true, Ordering::SeqCst);
    traffic.join().unwrap();
    let all = measured.lock().unwrap().clone();
    assert_eq!(
        all.len(),
        20,
        "every fault was followed by a successful operation"
    );
    let (mut errs, mut hangs): (Vec<Duration>, Vec<Duration>) =
        (all[..10].to_vec(), all[10..].to_vec());
    let mut every = all.clone();
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    println!(
        "## Failover time (fault to first successful operation started after it), {} ms deadline\n",
        DEADLINE_MS
    );
    println!("| faults | p50 ms | max ms |");
    println!("|---|---:|---:|");
    println!(
        "| 10 x error (device error) | {} | {} |",
        ms(percentile(&mut errs, 0.5)),
        ms(*errs.iter().max().unwrap())
    );
    println!(
        "| 10 x hang (past the deadline) | {} | {} |",
        ms(percentile(&mut hangs, 0.5)),
        ms(*hangs.iter().max().unwrap())
    );
    println!(
        "| all 20 | {} | {} |",
        ms(percentile(&mut every, 0.5)),
        ms(*every.iter().max().unwrap())
    );
    println!(
        "\n{} operations during the faults, {} failed as seen by the consumer; target max < 1000 ms: {}\n",
        ops.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        if *every.iter().max().unwrap() < Duration::from_secs(1) { "met" } else { "MISSED" }
    );

    // --- balance: one replica vs two
    println!(
        "## balance: ECDSA P-256 sign, {secs} s per cell, {} cores\n",
        cores()
    );
    println!("| threads | 1 replica ops/s | 2 replicas ops/s | 2/1 |");
    println!("|---:|---:|---:|---:|");
    for threads in [2usize, 4] {
        let mut rates = Vec::new();
        for label in ["single", "double"] {
            let slot = hx.find_slot(label).unwrap();
            let count = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (count, stop) = (count.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let h = user_session(hx, slot);
                        let key = find(hx, h, CKO_PRIVATE_KEY, b"ec");
                        let digest = [7u8; 32];
                        let mut out = [0u8; 64];
                        while !stop.load(Ordering::Relaxed) {
                            ok(sign_once(hx, h, CKM_ECDSA, key, &digest, &mut out), "ECDSA");
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        ok(ck!(hx, C_CloseSession(h)), "close");
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(300));
            let c0 = count.load(Ordering::Relaxed);
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_secs_f64(secs));
            let rate = (count.load(Ordering::Relaxed) - c0) as f64 / t0.elapsed().as_secs_f64();
            stop.store(true, Ordering::SeqCst);
            for w in workers {
                w.join().unwrap();
            }
            rates.push(rate);
        }
        println!(
            "| {threads} | {:.0} | {:.0} | {:.2}x |",
            rates[0],
            rates[1],
            rates[1] / rates[0]
        );
    }
    hung_under_load(hx, &ctl);
    let _ = Path::new(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The "hung replica under load" rows: hedging automatic (`hedge-on`) and off.
fn hung_under_load(hx: &'static Module, ctl: &dyn Fn(&str, &str)) {
    println!("\n## A hung replica under load: 4 threads of ECDSA P-256 sign, the serving replica hangs 1 s (3 times), {DEADLINE_MS} ms deadline\n");
    println!("| hedging | calls during the hangs | p50 ms | p99 ms | p99.9 ms | max ms | calls >= 100 ms | failed |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (label, first, how) in [("hedge-on", "g0", "automatic"), ("hedge-off", "n0", "off")] {
        let slot = hx.find_slot(label).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // (start, duration) of every call; failed calls counted apart.
        let calls = Arc::new(Mutex::new(Vec::<(Instant, Duration)>::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (stop, calls, failed) = (stop.clone(), calls.clone(), failed.clone());
                std::thread::spawn(move || {
                    let h = user_session(hx, slot);
                    let key = find(hx, h, CKO_PRIVATE_KEY, b"ec");
                    let mut out = [0u8; 64];
                    let mut mine = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        match sign_once(hx, h, CKM_ECDSA, key, &[7u8; 32], &mut out) {
                            CKR_OK => mine.push((t, t.elapsed())),
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    calls.lock().unwrap().extend(mine);
                    let _ = ck!(hx, C_CloseSession(h));
                })
            })
            .collect();
        let mut windows = Vec::new();
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..3 {
            let t = Instant::now();
            ctl(first, "hang");
            std::thread::sleep(Duration::from_secs(1));
            ctl(first, "ok");
            windows.push((t, Instant::now()));
            // Back to healthy: the left-behind calls end, probes re-admit it (1 s back-off,
            // then two probes).
            std::thread::sleep(Duration::from_millis(3000));
        }
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().unwrap();
        }
        let all = calls.lock().unwrap();
        let mut during: Vec<Duration> = all
            .iter()
            .filter(|(t, _)| windows.iter().any(|(a, b)| t >= a && t < b))
            .map(|&(_, d)| d)
            .collect();
        if during.is_empty() {
            println!(
                "| {how} | 0 | - | - | - | - | - | {} |",
                failed.load(Ordering::Relaxed)
            );
            continue;
        }
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
        let slow = during
            .iter()
            .filter(|d| **d >= Duration::from_millis(100))
            .count();
        let max = *during.iter().max().unwrap();
        println!(
            "| {how} | {} | {} | {} | {} | {} | {slow} | {} |",
            during.len(),
            ms(percentile(&mut during, 0.5)),
            ms(percentile(&mut during, 0.99)),
            ms(percentile(&mut during, 0.999)),
            ms(max),
            failed.load(Ordering::Relaxed)
        );
    }
    println!("\nTarget: p99 < 50 ms with hedging on.");
}
