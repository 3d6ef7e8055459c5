//! The azure-kv backend's cost: ECDSA P-256 signing and AES-256-GCM encryption through
//! hsmux (C ABI -> core -> remote token -> Key Vault request -> HTTPS) against a direct
//! keep-alive reqwest client sending the same Key Vault requests (same JSON body, same
//! headers, same token source, same TLS roots) to the same test server
//! (conformance/azurekv_server.py playing a Managed HSM): p50 of each, measured call by call
//! interleaved, their ratio, and the CPU time per call of this process and of the server
//! (from separate runs of calls in a row). The Python server bounds both columns; the ratio
//! is what hsmux adds.
//!
//! `cargo bench --bench remote_azure` (needs .venv: scripts/deps.sh); `BENCH_ITERATIONS`
//! sets the calls per column (default 300). The direct client runs on a two-worker runtime
//! with the caller blocking on each request, as hsmux does; `HSMUX_BENCH_DIRECT=
//! current_thread` gives it a single-thread runtime instead.

mod common;
use base64::Engine as _;
use common::{Module, Op};
use cryptoki_sys::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Timed calls per column (`BENCH_ITERATIONS`, default 300).
fn iterations() -> usize {
    std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}
const TENANT: &str = "00000000-0000-0000-0000-0000000000aa";
const CLIENT: &str = "11111111-1111-1111-1111-1111111111bb";
const SECRET: &str = "test-client-secret";

fn b64u(d: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The p50s of `a` and `b` over `n` calls each, interleaved call by call (a burst of load
/// from elsewhere on the machine hits both columns alike), after 20 untimed calls of each.
fn timed_pair(n: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..20 {
        a();
        b();
    }
    let (mut ta, mut tb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        a();
        ta.push(t.elapsed());
        let t = Instant::now();
        b();
        tb.push(t.elapsed());
    }
    (p50(ta), p50(tb))
}

/// CPU time of this process (every thread: the caller and the runtimes' workers).
fn own_cpu() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU time of process `pid` (the test server), from /proc (clock-tick resolution).
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// CPU per call of `n` calls of `f`: this process's and the server's.
fn cpu_per_call(n: usize, server: u32, mut f: impl FnMut()) -> (Duration, Duration) {
    let (c0, s0) = (own_cpu(), cpu_of(server));
    for _ in 0..n {
        f();
    }
    let (c1, s1) = (own_cpu(), cpu_of(server));
    ((c1 - c0) / n as u32, (s1 - s0) / n as u32)
}

/// The direct client: one keep-alive connection pool, the token fetched once.
struct Direct {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    vault: String,
    token: String,
}

impl Direct {
    fn new(vault: &str, ca: &Path) -> Direct {
        // The same runtime shape as hsmux's (two workers, the caller blocking on the
        // future), as benches/remote_gcp.rs does: HSMUX_BENCH_DIRECT=current_thread
        // measures the single-thread client instead.
        let rt = if std::env::var("HSMUX_BENCH_DIRECT").as_deref() == Ok("current_thread") {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        };
        let pem = std::fs::read(ca).unwrap();
        let mut b = reqwest::Client::builder().tcp_nodelay(true);
        for c in reqwest::Certificate::from_pem_bundle(&pem).unwrap() {
            b = b.add_root_certificate(c);
        }
        let http = b.build().unwrap();
        let form = format!(
            "grant_type=client_credentials&client_id={CLIENT}&client_secret={SECRET}&scope=https%3A%2F%2Fmanagedhsm.azure.net%2F.default"
        );
        let url = format!("{vault}/{TENANT}/oauth2/v2.0/token");
        let token = rt.block_on(async {
            let r: serde_json::Value = http
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["access_token"].as_str().unwrap().to_string()
        });
        Direct {
            rt,
            http,
            vault: vault.to_string(),
            token,
        }
    }

    /// One POST of `body` to `keys/<name>/<version>/<op>` with the headers hsmux sends;
    /// the answer's `value` decoded.
    fn call(&self, key: &str, op: &str, body: &serde_json::Value) -> Vec<u8> {
        let url = format!("{}/keys/{key}/{op}?api-version=7.5", self.vault);
        self.rt.block_on(async {
            let r: serde_json::Value = self
                .http
                .post(&url)
                .bearer_auth(&self.token)
                // The headers hsmux sends besides (the server parses each).
                .header("accept", "application/json")
                .header(
                    "x-ms-client-request-id",
                    azure_core::Uuid::new_v4().to_string(),
                )
                .json(body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(r["value"].as_str().unwrap())
                .unwrap()
        })
    }
}

/// The first key labelled `label` (its CKA_ID, `name/version`, too).
fn find(m: &Module, h: CK_SESSION_HANDLE, label: &str) -> (CK_OBJECT_HANDLE, String) {
    let mut t = [common::attr_bytes(CKA_LABEL, label.as_bytes())];
    common::ok(
        unsafe { (m.f.C_FindObjectsInit.unwrap())(h, t.as_mut_ptr(), 1) },
        "C_FindObjectsInit",
    );
    let mut found = [0; 2];
    let mut n = 0;
    common::ok(
        unsafe { (m.f.C_FindObjects.unwrap())(h, found.as_mut_ptr(), 2, &mut n) },
        "C_FindObjects",
    );
    common::ok(
        unsafe { (m.f.C_FindObjectsFinal.unwrap())(h) },
        "C_FindObjectsFinal",
    );
    assert!(n >= 1, "key {label}");
    let id = m.attribute(h, found[0], CKA_ID);
    (found[0], String::from_utf8(id).unwrap())
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(python.exists(), "{}: run scripts/deps.sh", python.display());
    let dir = common::temp_dir().join(format!("azure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("seed.json"),
        r#"{"keys": [{"name": "ec", "kty": "EC-HSM", "crv": "P-256"}, {"name": "aes", "kty": "oct-HSM", "size": 256}]}"#,
    )
    .unwrap();
    let port = |_: u8| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (p, imds) = (port(0), port(1));
    let mut child = Command::new(python)
        .arg(root.join("conformance/azurekv_server.py"))
        .args(["--port", &p.to_string(), "--imds-port", &imds.to_string()])
        .arg("--dir")
        .arg(&dir)
        .args(["--kind", "managedhsm", "--seed"])
        .arg(dir.join("seed.json"))
        .stdout(Stdio::null())
        .spawn()
        .expect("azurekv_server.py");
    let t0 = Instant::now();
    while !dir.join("ready").exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "server start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let vault = format!("https://127.0.0.1:{p}");
    let ca = dir.join("ca.pem");
    std::fs::write(
        dir.join("hsmux.toml"),
        format!(
            "[[slot]]\nlabel = \"azure\"\nbackend = \"azure-kv\"\nvault = \"{vault}\"\nca_file = \"{}\"\ngcm_iv = \"service\"\nauth = {{ method = \"client_secret\", tenant = \"{TENANT}\", client_id = \"{CLIENT}\", secret = \"{SECRET}\", authority_host = \"{vault}\" }}\n",
            ca.display()
        ),
    )
    .unwrap();
    std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
    let lib = root.join("target/release/libhsmux.so");
    let mut m = Module::open("hsmux", lib.to_str().unwrap());
    m.slot = m.slots()[0];
    let h = m.session();
    common::ok(
        unsafe { (m.f.C_Login.unwrap())(h, CKU_USER, b"x".as_ptr() as *mut _, 1) },
        "C_Login",
    );
    let (ec, ec_id) = find(&m, h, "ec");
    let (aes, aes_id) = find(&m, h, "aes");
    m.keys.ec = ec;
    m.keys.aes = aes;
    let direct = Direct::new(&vault, &ca);

    let digest = [0x5au8; 32];
    let plaintext = [0x41u8; 1024];
    let mut buf = vec![0u8; 4096];
    let n = iterations();
    let server = child.id();
    println!("azure-kv (Managed HSM stand-in over HTTPS), p50 of {n} calls each, one thread, interleaved");
    println!("CPU per call: this process (caller + runtime workers) and the test server, {n} calls in a row");
    println!(
        "{:<28} {:>9} {:>9} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "operation",
        "hsmux µs",
        "direct µs",
        "ratio",
        "hsmux cpu",
        "direct cpu",
        "srv(hsmux)",
        "srv(dir)"
    );
    // (row, the operation through hsmux, its input, the direct request: key, verb, body,
    // length of the answer's value)
    let rows = [
        (
            "ECDSA P-256 sign (ES256)",
            Op::Ecdsa,
            &digest[..],
            (
                &ec_id,
                "sign",
                serde_json::json!({"alg": "ES256", "value": b64u(&digest)}),
                64,
            ),
        ),
        (
            "AES-256-GCM encrypt 1 KiB",
            Op::Gcm(1024),
            &plaintext[..],
            (
                &aes_id,
                "encrypt",
                serde_json::json!({"alg": "A256GCM", "value": b64u(&plaintext)}),
                1024,
            ),
        ),
    ];
    for (name, op, data, (key, verb, body, len)) in rows {
        let mut via_hsmux = || {
            op.run(&m, h, &mut buf, data);
        };
        let via_direct = || assert_eq!(direct.call(key, verb, &body).len(), len);
        let (hx, dx) = timed_pair(n, &mut via_hsmux, via_direct);
        let (hc, hs) = cpu_per_call(n, server, &mut via_hsmux);
        let (dc, ds) = cpu_per_call(n, server, via_direct);
        println!(
            "{:<28} {:>9.0} {:>9.0} {:>6.2} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
            name,
            us(hx),
            us(dx),
            hx.as_secs_f64() / dx.as_secs_f64(),
            us(hc),
            us(dc),
            us(hs),
            us(ds)
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
