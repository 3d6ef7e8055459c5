//! Remote key services through hsmux vs the same service called directly, in one run:
//! per operation the p50/p99 latency of hsmux (PKCS#11 through the built libhsmux.so)
//! and of a direct keep-alive reqwest client to the same server, their p50 ratio (target
//! <= 1.10), and throughput with 1 and 8 threads.
//!
//! Each service is a [`Section`]: it starts its server, writes its hsmux slot, and gives
//! its operations as pairs (the hsmux call, the direct REST call). Vault/OpenBao transit
//! is here; AWS KMS (moto server) and the GCP test server can be added as further
//! sections with the same shape.
//!
//! `cargo build --release && cargo bench --bench remote`; `BENCH_SECS` (default 1) is the
//! length of each throughput cell, `BENCH_SAMPLES` (default 300) the latency samples per
//! side, `BENCH_HSMUX` the module path.

mod common;
use common::{ck, mech, ok, padded_label, Module};
use cryptoki_sys::*;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// One operation: what hsmux does for it and what the direct client does.
/// One operation through hsmux on a session.
type HsmuxOp = Box<dyn Fn(&Module, CK_SESSION_HANDLE) + Send + Sync>;
/// A request body made from the input.
type BodyFn = Box<dyn Fn(&[u8]) -> String + Send + Sync>;

struct Case {
    name: &'static str,
    /// One operation through hsmux on the given session.
    hsmux: HsmuxOp,
    /// The same operation straight to the service.
    direct: Box<dyn Fn() + Send + Sync>,
}

/// A service under test.
struct Section {
    title: String,
    /// The hsmux slot's token label.
    label: String,
    cases: Vec<Case>,
    /// Keeps the server alive for the section (killed on drop).
    _server: Box<dyn std::any::Any>,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let module = std::env::var("BENCH_HSMUX")
        .unwrap_or_else(|_| format!("{root}/target/release/libhsmux.so"));
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let samples: usize = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let tmp = std::env::temp_dir().join(format!("hsmux-bench-remote-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();

    // Every section's server first: the module's config names them all.
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    let (vault, vault_slot) = vault_section(&tmp, rt.clone());
    let sections = vec![vault];
    let config = tmp.join("hsmux.toml");
    std::fs::write(&config, vault_slot).unwrap();
    std::env::set_var("HSMUX_CONFIG", &config);
    let m: &'static Module = Box::leak(Box::new(Module::open("hsmux", &module)));

    println!("hsmux = {module}");
    println!(
        "{} cores, {samples} latency samples per side (interleaved), {secs} s per throughput cell",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    for s in &sections {
        let slot = find_slot(m, &s.label);
        println!("\n## {}\n", s.title);
        println!("| operation | hsmux p50 | hsmux p99 | direct p50 | direct p99 | p50 ratio | hsmux 1 thr | hsmux 8 thr | direct 1 thr | direct 8 thr |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let h = session(m, slot);
        for c in &s.cases {
            // Warm both paths (connections, key lists).
            for _ in 0..20 {
                (c.hsmux)(m, h);
                (c.direct)();
            }
            let mut a = Vec::with_capacity(samples);
            let mut b = Vec::with_capacity(samples);
            for _ in 0..samples {
                let t = Instant::now();
                (c.hsmux)(m, h);
                a.push(t.elapsed());
                let t = Instant::now();
                (c.direct)();
                b.push(t.elapsed());
            }
            let (a50, a99) = percentiles(&mut a);
            let (b50, b99) = percentiles(&mut b);
            let t_h1 = throughput(secs, 1, || {
                let h = session(m, slot);
                move || (c.hsmux)(m, h)
            });
            let t_h8 = throughput(secs, 8, || {
                let h = session(m, slot);
                move || (c.hsmux)(m, h)
            });
            let t_d1 = throughput(secs, 1, || || (c.direct)());
            let t_d8 = throughput(secs, 8, || || (c.direct)());
            println!(
                "| {} | {} | {} | {} | {} | {:.2} | {:.0}/s | {:.0}/s | {:.0}/s | {:.0}/s |",
                c.name,
                ms(a50),
                ms(a99),
                ms(b50),
                ms(b99),
                a50.as_secs_f64() / b50.as_secs_f64(),
                t_h1,
                t_h8,
                t_d1,
                t_d8
            );
        }
    }
    println!(
        "\nratio = hsmux p50 / direct p50 (target <= 1.10); throughput in operations per second."
    );
    ck!(m, C_Finalize(std::ptr::null_mut()));
    drop(sections);
    let _ = std::fs::remove_dir_all(&tmp);
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn percentiles(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99))
}

/// Operations per second over `secs` with `threads` threads, each running what `make`
/// builds for it (made before the clock starts).
fn throughput<F, G>(secs: f64, threads: usize, make: G) -> f64
where
    G: Fn() -> F + Sync,
    F: FnMut() + Send,
{
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let start = Barrier::new(threads + 1);
    let elapsed = std::thread::scope(|s| {
        for _ in 0..threads {
            let mut op = make();
            let (stop, count, start) = (&stop, &count, &start);
            s.spawn(move || {
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    op();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        start.wait();
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        t.elapsed()
    });
    count.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()
}

fn find_slot(m: &Module, label: &str) -> CK_SLOT_ID {
    let want = padded_label(label);
    let mut n = 0;
    ok(
        ck!(m, C_GetSlotList(1, std::ptr::null_mut(), &mut n)),
        "C_GetSlotList",
    );
    let mut v = vec![0; n as usize];
    ok(
        ck!(m, C_GetSlotList(1, v.as_mut_ptr(), &mut n)),
        "C_GetSlotList",
    );
    v.into_iter()
        .find(|s| {
            let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
            ck!(m, C_GetTokenInfo(*s, &mut ti)) == CKR_OK && ti.label == want
        })
        .unwrap_or_else(|| panic!("no slot {label}"))
}

/// A logged-in session (remote slots share the login state of the slot).
fn session(m: &Module, slot: CK_SLOT_ID) -> CK_SESSION_HANDLE {
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
        "C_OpenSession",
    );
    let rv = ck!(m, C_Login(h, CKU_USER, b"0000".as_ptr() as *mut _, 4));
    assert!(
        rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
        "C_Login: 0x{rv:x}"
    );
    h
}

/// The first object labelled `label` of `class`.
fn object(
    m: &Module,
    h: CK_SESSION_HANDLE,
    label: &str,
    class: CK_OBJECT_CLASS,
) -> CK_OBJECT_HANDLE {
    let mut t = [
        common::attr_bytes(CKA_LABEL, label.as_bytes()),
        common::attr(CKA_CLASS, &class),
    ];
    ok(
        ck!(m, C_FindObjectsInit(h, t.as_mut_ptr(), 2)),
        "C_FindObjectsInit",
    );
    let mut o = 0;
    let mut n = 0;
    ok(ck!(m, C_FindObjects(h, &mut o, 1, &mut n)), "C_FindObjects");
    ok(ck!(m, C_FindObjectsFinal(h)), "C_FindObjectsFinal");
    assert_eq!(n, 1, "object {label}");
    o
}

// ---------------------------------------------------------------- Vault / OpenBao

struct Bao(Child);

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 65000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn bao_bin() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/bao");
    if venv.exists() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("bao"))
                .find(|b| b.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "`bao` is missing ({} or PATH): run scripts/deps.sh",
                venv.display()
            )
        })
}

/// The direct client: one keep-alive reqwest client, called from the bench threads
/// through a runtime as hsmux does.
#[derive(Clone)]
struct Direct {
    rt: Arc<tokio::runtime::Runtime>,
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Direct {
    /// POSTs `body` and returns the answer's `data.<field>`, decoded from `vault:vN:b64`
    /// (the same work hsmux does with an answer).
    fn call(&self, path: &str, body: String, field: &str) -> Vec<u8> {
        let url = format!("{}/v1/{path}", self.base);
        let fut = self
            .http
            .post(url)
            .header("X-Vault-Token", &self.token)
            .header("Content-Type", "application/json")
            .body(body)
            .send();
        let bytes = self.rt.block_on(async move {
            let r = fut.await.expect("direct request");
            assert!(r.status().is_success(), "direct: HTTP {}", r.status());
            r.bytes().await.expect("direct answer")
        });
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let s = v["data"][field].as_str().unwrap();
        let b64 = s.splitn(3, ':').nth(2).unwrap();
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }
}

fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn sha256(d: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, d)
        .as_ref()
        .to_vec()
}

/// A bao dev server with transit keys, the slot's TOML, and the four operations.
fn vault_section(tmp: &std::path::Path, rt: Arc<tokio::runtime::Runtime>) -> (Section, String) {
    let port = free_port();
    let mut tok = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut tok)
        .unwrap();
    let token = format!("root-{}", hex::encode(tok));
    let home = tmp.join("bao-home");
    std::fs::create_dir_all(&home).unwrap();
    let log = std::fs::File::create(tmp.join("bao.log")).unwrap();
    let child = Command::new(bao_bin())
        .args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={token}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
        ])
        .env("HOME", &home)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start bao server -dev");
    let server = Bao(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let d = Direct {
        rt,
        http,
        base: base.clone(),
        token: token.clone(),
    };
    let admin = |method: reqwest::Method, path: &str, body: &str| -> u16 {
        let r = d.rt.block_on(
            d.http
                .request(method, format!("{base}/v1/{path}"))
                .header("X-Vault-Token", &token)
                .body(body.to_string())
                .send(),
        );
        r.map(|r| r.status().as_u16()).unwrap_or(0)
    };
    let t = Instant::now();
    while admin(reqwest::Method::GET, "sys/health", "") != 200 {
        assert!(t.elapsed() < Duration::from_secs(60), "bao did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        admin(
            reqwest::Method::POST,
            "sys/mounts/transit",
            r#"{"type":"transit"}"#
        ) < 300
    );
    for (k, ty) in [
        ("aes", "aes256-gcm96"),
        ("hm", "hmac"),
        ("ec", "ecdsa-p256"),
        ("rsa", "rsa-2048"),
    ] {
        let body = if ty == "hmac" {
            format!(r#"{{"type":"{ty}","key_size":32}}"#)
        } else {
            format!(r#"{{"type":"{ty}"}}"#)
        };
        assert!(admin(reqwest::Method::POST, &format!("transit/keys/{k}"), &body) < 300);
    }
    let slot = format!(
        "[[slot]]\nlabel = \"transit\"\nbackend = \"vault\"\naddress = \"{base}\"\nauth = {{ method = \"token\", token = \"{token}\" }}\ntransit = {{ keys = [\"aes\", \"hm\", \"ec\", \"rsa\"] }}\n"
    );

    let kib = vec![0x42u8; 1024];
    let msg = b"a 32-byte message to be signed..".to_vec();
    let mut cases = Vec::new();
    {
        let (d, kib) = (d.clone(), kib.clone());
        let kib2 = kib.clone();
        let aes_key = std::sync::OnceLock::new();
        cases.push(Case {
            name: "AES-GCM encrypt 1 KiB",
            hsmux: Box::new(move |m, h| {
                // Found once, as a consumer would (handles are the module's, not a session's).
                let k = *aes_key.get_or_init(|| object(m, h, "aes", CKO_SECRET_KEY));
                let mut iv = [0u8; 12];
                let mut p = CK_GCM_PARAMS {
                    pIv: iv.as_mut_ptr(),
                    ulIvLen: 12,
                    ulIvBits: 96,
                    pAAD: std::ptr::null_mut(),
                    ulAADLen: 0,
                    ulTagBits: 128,
                };
                let mut mc = CK_MECHANISM {
                    mechanism: CKM_AES_GCM,
                    pParameter: &mut p as *mut _ as *mut _,
                    ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as CK_ULONG,
                };
                ok(ck!(m, C_EncryptInit(h, &mut mc, k)), "C_EncryptInit");
                let mut out = vec![0u8; kib2.len() + 16];
                let mut n = out.len() as CK_ULONG;
                ok(
                    ck!(
                        m,
                        C_Encrypt(
                            h,
                            kib2.as_ptr() as *mut _,
                            kib2.len() as CK_ULONG,
                            out.as_mut_ptr(),
                            &mut n
                        )
                    ),
                    "C_Encrypt",
                );
            }),
            direct: Box::new(move || {
                let ct = d.call(
                    "transit/encrypt/aes",
                    format!(r#"{{"plaintext":"{}"}}"#, b64(&kib)),
                    "ciphertext",
                );
                assert_eq!(ct.len(), 1024 + 28);
            }),
        });
    }
    let sign_case = |name: &'static str,
                     label: &'static str,
                     class: CK_OBJECT_CLASS,
                     mt: CK_MECHANISM_TYPE,
                     out_len: usize,
                     path: &'static str,
                     body: BodyFn,
                     field: &'static str| {
        let (d, msg, msg2) = (d.clone(), msg.clone(), msg.clone());
        let key = std::sync::OnceLock::new();
        Case {
            name,
            hsmux: Box::new(move |m, h| {
                let k = *key.get_or_init(|| object(m, h, label, class));
                let mut mc = mech(mt);
                ok(ck!(m, C_SignInit(h, &mut mc, k)), "C_SignInit");
                let mut out = vec![0u8; out_len];
                let mut n = out.len() as CK_ULONG;
                ok(
                    ck!(
                        m,
                        C_Sign(
                            h,
                            msg2.as_ptr() as *mut _,
                            msg2.len() as CK_ULONG,
                            out.as_mut_ptr(),
                            &mut n
                        )
                    ),
                    "C_Sign",
                );
            }),
            direct: Box::new(move || {
                d.call(path, body(&msg), field);
            }),
        }
    };
    cases.push(sign_case(
        "HMAC-SHA256",
        "hm",
        CKO_SECRET_KEY,
        CKM_SHA256_HMAC,
        32,
        "transit/hmac/hm/sha2-256",
        Box::new(|m| format!(r#"{{"input":"{}"}}"#, b64(m))),
        "hmac",
    ));
    cases.push(sign_case(
        "ECDSA P-256 sign",
        "ec",
        CKO_PRIVATE_KEY,
        CKM_ECDSA_SHA256,
        64,
        "transit/sign/ec",
        Box::new(|m| {
            format!(
                r#"{{"input":"{}","prehashed":true,"hash_algorithm":"sha2-256"}}"#,
                b64(&sha256(m))
            )
        }),
        "signature",
    ));
    cases.push(sign_case(
        "RSA-2048 sign (PKCS#1)",
        "rsa",
        CKO_PRIVATE_KEY,
        CKM_SHA256_RSA_PKCS,
        256,
        "transit/sign/rsa",
        Box::new(|m| {
            format!(
                r#"{{"input":"{}","prehashed":true,"hash_algorithm":"sha2-256","signature_algorithm":"pkcs1v15"}}"#,
                b64(&sha256(m))
            )
        }),
        "signature",
    ));
    (
        Section {
            title: "Vault / OpenBao transit (bao server -dev, 127.0.0.1)".into(),
            label: "transit".into(),
            cases,
            _server: Box::new(server),
        },
        slot,
    )
}
