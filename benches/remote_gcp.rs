//! The gcp-kms backend's cost: each operation through hsmux (C ABI -> core -> remote token
//! -> gcp-kms client -> HTTP) against a direct keep-alive reqwest client sending the same
//! Cloud KMS requests (same JSON, same CRC32C fields, same token) to the same test server
//! (conformance/gcpkms_server.py), p50 of each; then ECDSA throughput with 1 and 8 threads.
//! The server is Python and bounds both columns; the ratio is what hsmux adds.
//!
//! `cargo bench --bench remote_gcp` (needs .venv: scripts/deps.sh).

use base64::Engine as _;
use cryptoki_sys::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const RING: &str = "projects/bench/locations/us-east1/keyRings/bench";
const ITERATIONS: usize = 300;
const THROUGHPUT_TIME: Duration = Duration::from_secs(3);

macro_rules! ck {
    ($f:expr, $name:ident ( $($a:expr),* $(,)? )) => {
        unsafe { ($f.$name.unwrap())($($a),*) }
    };
}

fn ok(rv: CK_RV, what: &str) {
    assert_eq!(rv, CKR_OK, "{what}: rv 0x{rv:x}");
}

// ---- the server -------------------------------------------------------------------------

struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server() -> Server {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/deps.sh",
        python.display()
    );
    let dir = std::env::temp_dir().join(format!("hsmux-bench-gcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = serde_json::json!({
        "keyRings": [RING],
        "keys": [
            {"name": format!("{RING}/cryptoKeys/ec"), "algorithm": "EC_SIGN_P256_SHA256", "protectionLevel": "HSM"},
            {"name": format!("{RING}/cryptoKeys/mac"), "algorithm": "HMAC_SHA256", "protectionLevel": "HSM"},
            {"name": format!("{RING}/cryptoKeys/aes"), "algorithm": "AES_256_GCM", "protectionLevel": "HSM"},
        ]
    });
    std::fs::write(dir.join("seed.json"), seed.to_string()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(python)
        .arg(root.join("conformance/gcpkms_server.py"))
        .args(["--port", &port.to_string()])
        .arg("--sa-out")
        .arg(dir.join("sa.json"))
        .arg("--seed")
        .arg(dir.join("seed.json"))
        .stdout(Stdio::null())
        .spawn()
        .expect("gcpkms_server.py");
    let t0 = Instant::now();
    while !(dir.join("sa.json").exists()
        && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the server did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, port, dir }
}

// ---- hsmux --------------------------------------------------------------------------------

struct Hsmux {
    f: &'static CK_FUNCTION_LIST,
    _lib: libloading::Library,
    slot: CK_SLOT_ID,
}

fn load_hsmux(server: &Server) -> Hsmux {
    let cfg = format!(
        "[[slot]]\nlabel = \"gcp\"\nbackend = \"gcp-kms\"\nkey_ring = \"{RING}\"\ncredentials = \"{}\"\nendpoint = \"http://127.0.0.1:{}\"\n",
        server.dir.join("sa.json").display(),
        server.port
    );
    std::fs::write(server.dir.join("hsmux.toml"), cfg).unwrap();
    std::env::set_var("HSMUX_CONFIG", server.dir.join("hsmux.toml"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/libhsmux.so");
    let lib = unsafe { libloading::Library::new(&path) }
        .unwrap_or_else(|e| panic!("{}: {e} (cargo build --release first)", path.display()));
    let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
    unsafe {
        let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
            lib.get(b"C_GetFunctionList").unwrap();
        ok(get(&mut list), "C_GetFunctionList");
    }
    let f: &'static CK_FUNCTION_LIST = unsafe { &*list };
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: std::ptr::null_mut(),
    };
    ok(
        ck!(f, C_Initialize(&mut args as *mut _ as *mut _)),
        "C_Initialize",
    );
    let mut slot = 0;
    let mut n = 1;
    ok(ck!(f, C_GetSlotList(1, &mut slot, &mut n)), "C_GetSlotList");
    Hsmux { f, _lib: lib, slot }
}

impl Hsmux {
    fn session(&self) -> CK_SESSION_HANDLE {
        let mut h = 0;
        ok(
            ck!(
                self.f,
                C_OpenSession(
                    self.slot,
                    CKF_SERIAL_SESSION | CKF_RW_SESSION,
                    std::ptr::null_mut(),
                    None,
                    &mut h
                )
            ),
            "C_OpenSession",
        );
        let rv = ck!(self.f, C_Login(h, CKU_USER, b"x".as_ptr() as *mut _, 1));
        assert!(
            rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
            "C_Login 0x{rv:x}"
        );
        h
    }

    fn find(&self, h: CK_SESSION_HANDLE, class: CK_OBJECT_CLASS, label: &str) -> CK_OBJECT_HANDLE {
        let mut t = [
            CK_ATTRIBUTE {
                type_: CKA_CLASS,
                pValue: &class as *const _ as *mut _,
                ulValueLen: std::mem::size_of::<CK_OBJECT_CLASS>() as CK_ULONG,
            },
            CK_ATTRIBUTE {
                type_: CKA_LABEL,
                pValue: label.as_ptr() as *mut _,
                ulValueLen: label.len() as CK_ULONG,
            },
        ];
        ok(
            ck!(self.f, C_FindObjectsInit(h, t.as_mut_ptr(), 2)),
            "C_FindObjectsInit",
        );
        let mut o = 0;
        let mut n = 0;
        ok(
            ck!(self.f, C_FindObjects(h, &mut o, 1, &mut n)),
            "C_FindObjects",
        );
        ok(ck!(self.f, C_FindObjectsFinal(h)), "C_FindObjectsFinal");
        assert_eq!(n, 1, "key {label}");
        o
    }

    fn sign(
        &self,
        h: CK_SESSION_HANDLE,
        m: CK_MECHANISM_TYPE,
        k: CK_OBJECT_HANDLE,
        data: &[u8],
    ) -> usize {
        let mut mc = CK_MECHANISM {
            mechanism: m,
            pParameter: std::ptr::null_mut(),
            ulParameterLen: 0,
        };
        ok(ck!(self.f, C_SignInit(h, &mut mc, k)), "C_SignInit");
        let mut out = [0u8; 128];
        let mut n = out.len() as CK_ULONG;
        ok(
            ck!(
                self.f,
                C_Sign(
                    h,
                    data.as_ptr() as *mut _,
                    data.len() as CK_ULONG,
                    out.as_mut_ptr(),
                    &mut n
                )
            ),
            "C_Sign",
        );
        n as usize
    }

    fn gcm(
        &self,
        h: CK_SESSION_HANDLE,
        k: CK_OBJECT_HANDLE,
        encrypt: bool,
        iv: &mut [u8; 12],
        data: &[u8],
    ) -> Vec<u8> {
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
        let mut out = vec![0u8; data.len() + 16];
        let mut n = out.len() as CK_ULONG;
        if encrypt {
            ok(ck!(self.f, C_EncryptInit(h, &mut mc, k)), "C_EncryptInit");
            ok(
                ck!(
                    self.f,
                    C_Encrypt(
                        h,
                        data.as_ptr() as *mut _,
                        data.len() as CK_ULONG,
                        out.as_mut_ptr(),
                        &mut n
                    )
                ),
                "C_Encrypt",
            );
        } else {
            ok(ck!(self.f, C_DecryptInit(h, &mut mc, k)), "C_DecryptInit");
            ok(
                ck!(
                    self.f,
                    C_Decrypt(
                        h,
                        data.as_ptr() as *mut _,
                        data.len() as CK_ULONG,
                        out.as_mut_ptr(),
                        &mut n
                    )
                ),
                "C_Decrypt",
            );
        }
        out.truncate(n as usize);
        out
    }
}

// ---- the direct client ----------------------------------------------------------------------

/// The same requests hsmux makes, with a keep-alive reqwest client and a token from the
/// same service-account file; checks what it needs to be a fair comparison (status, the
/// returned checksum).
struct Direct {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    bearer: String,
}

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

fn crc(d: &[u8]) -> String {
    crc32c::crc32c(d).to_string()
}

impl Direct {
    fn new(server: &Server) -> Direct {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sa = server.dir.join("sa.json");
        let bearer = rt.block_on(async move {
            use gcp_auth::TokenProvider;
            let p = gcp_auth::CustomServiceAccount::from_file(sa).unwrap();
            let t = p
                .token(&["https://www.googleapis.com/auth/cloudkms"])
                .await
                .unwrap();
            format!("Bearer {}", t.as_str())
        });
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .unwrap();
        Direct {
            rt,
            http,
            base: format!("http://127.0.0.1:{}/v1", server.port),
            bearer,
        }
    }

    async fn call(
        http: reqwest::Client,
        url: String,
        bearer: String,
        body: serde_json::Value,
        crc_field: &'static str,
        field: &'static str,
    ) {
        let r = http
            .post(url)
            .header("authorization", bearer)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "direct call: HTTP {}", r.status());
        let v: serde_json::Value = r.json().await.unwrap();
        let data = base64::engine::general_purpose::STANDARD
            .decode(v[field].as_str().unwrap_or(""))
            .unwrap();
        assert_eq!(v[crc_field].as_str().unwrap(), crc(&data));
    }

    fn request(
        &self,
        op: Op,
        version: &str,
        arg: &[u8],
    ) -> (String, serde_json::Value, &'static str, &'static str) {
        match op {
            Op::Ecdsa => {
                use sha2::Digest;
                let d = sha2::Sha256::digest(arg);
                (
                    format!("{}/{version}:asymmetricSign", self.base),
                    serde_json::json!({"digest": {"sha256": b64(&d)}, "digestCrc32c": crc(&d)}),
                    "signatureCrc32c",
                    "signature",
                )
            }
            Op::Hmac => (
                format!("{}/{version}:macSign", self.base),
                serde_json::json!({"data": b64(arg), "dataCrc32c": crc(arg)}),
                "macCrc32c",
                "mac",
            ),
            Op::GcmEncrypt => (
                format!("{}/{version}:rawEncrypt", self.base),
                serde_json::json!({"plaintext": b64(arg), "plaintextCrc32c": crc(arg)}),
                "ciphertextCrc32c",
                "ciphertext",
            ),
            Op::GcmDecrypt => {
                let (iv, ct) = arg.split_at(12);
                (
                    format!("{}/{version}:rawDecrypt", self.base),
                    serde_json::json!({
                        "ciphertext": b64(ct), "ciphertextCrc32c": crc(ct),
                        "initializationVector": b64(iv), "initializationVectorCrc32c": crc(iv),
                        "tagLength": 16
                    }),
                    "plaintextCrc32c",
                    "plaintext",
                )
            }
        }
    }

    fn once(&self, op: Op, version: &str, arg: &[u8]) {
        let (url, body, c, f) = self.request(op, version, arg);
        self.rt.block_on(Self::call(
            self.http.clone(),
            url,
            self.bearer.clone(),
            body,
            c,
            f,
        ));
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Ecdsa,
    Hmac,
    GcmEncrypt,
    GcmDecrypt,
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn timed(mut f: impl FnMut()) -> Duration {
    for _ in 0..20 {
        f(); // warm the connections and caches
    }
    let mut v = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        f();
        v.push(t.elapsed());
    }
    p50(v)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks for the list
    }
    let server = start_server();
    let hx = load_hsmux(&server);
    let h = hx.session();
    let ec = hx.find(h, CKO_PRIVATE_KEY, "ec");
    let mac = hx.find(h, CKO_SECRET_KEY, "mac");
    let aes = hx.find(h, CKO_SECRET_KEY, "aes");
    let version = |k: &str| format!("{RING}/cryptoKeys/{k}/cryptoKeyVersions/1");
    let direct = Direct::new(&server);
    let msg = [0x5au8; 32];
    let mut iv = [0u8; 12];
    let sealed = hx.gcm(h, aes, true, &mut iv, &msg);
    let blob = [iv.to_vec(), sealed.clone()].concat();

    println!("gcp-kms backend vs a direct reqwest client, same test server, p50 of {ITERATIONS}");
    println!(
        "{:<22} {:>12} {:>12} {:>8}",
        "operation", "hsmux µs", "direct µs", "ratio"
    );
    let ops: [(Op, &str); 4] = [
        (Op::Ecdsa, "ECDSA P-256 sign"),
        (Op::Hmac, "HMAC-SHA256 sign"),
        (Op::GcmEncrypt, "AES-GCM encrypt 32 B"),
        (Op::GcmDecrypt, "AES-GCM decrypt 32 B"),
    ];
    for (op, name) in ops {
        let via_hsmux = match op {
            Op::Ecdsa => timed(|| {
                hx.sign(h, CKM_ECDSA_SHA256, ec, &msg);
            }),
            Op::Hmac => timed(|| {
                hx.sign(h, CKM_SHA256_HMAC, mac, &msg);
            }),
            Op::GcmEncrypt => timed(|| {
                hx.gcm(h, aes, true, &mut [0u8; 12], &msg);
            }),
            Op::GcmDecrypt => timed(|| {
                let mut iv2 = iv;
                hx.gcm(h, aes, false, &mut iv2, &sealed);
            }),
        };
        let (key, arg): (&str, &[u8]) = match op {
            Op::Ecdsa => ("ec", &msg),
            Op::Hmac => ("mac", &msg),
            Op::GcmEncrypt => ("aes", &msg),
            Op::GcmDecrypt => ("aes", &blob),
        };
        let v = version(key);
        let via_direct = timed(|| direct.once(op, &v, arg));
        println!(
            "{name:<22} {:>12.0} {:>12.0} {:>8.2}",
            us(via_hsmux),
            us(via_direct),
            via_hsmux.as_secs_f64() / via_direct.as_secs_f64()
        );
    }

    println!();
    println!("ECDSA P-256 throughput for {} s", THROUGHPUT_TIME.as_secs());
    println!(
        "{:<10} {:>14} {:>14} {:>8}",
        "threads", "hsmux ops/s", "direct ops/s", "ratio"
    );
    for threads in [1usize, 8] {
        let a = throughput_hsmux(&hx, threads);
        let b = throughput_direct(&direct, threads, &version("ec"));
        println!("{threads:<10} {a:>14.0} {b:>14.0} {:>8.2}", a / b);
    }
    ok(ck!(hx.f, C_Finalize(std::ptr::null_mut())), "C_Finalize");
}

fn throughput_hsmux(hx: &Hsmux, threads: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(threads));
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (done, start) = (done.clone(), start.clone());
            s.spawn(move || {
                let h = hx.session();
                let k = hx.find(h, CKO_PRIVATE_KEY, "ec");
                start.wait();
                let t0 = Instant::now();
                while t0.elapsed() < THROUGHPUT_TIME {
                    hx.sign(h, CKM_ECDSA_SHA256, k, b"throughput");
                    done.fetch_add(1, Ordering::Relaxed);
                }
                ck!(hx.f, C_CloseSession(h));
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / THROUGHPUT_TIME.as_secs_f64()
}

fn throughput_direct(d: &Direct, threads: usize, version: &str) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    d.rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..threads {
            let (url, body, c, f) = d.request(Op::Ecdsa, version, b"throughput");
            let (http, bearer, done) = (d.http.clone(), d.bearer.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let t0 = Instant::now();
                while t0.elapsed() < THROUGHPUT_TIME {
                    Direct::call(
                        http.clone(),
                        url.clone(),
                        bearer.clone(),
                        body.clone(),
                        c,
                        f,
                    )
                    .await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    done.load(Ordering::Relaxed) as f64 / THROUGHPUT_TIME.as_secs_f64()
}
