//! Side-by-side benchmark through the PKCS#11 C ABI: two modules loaded in one process and
//! driven by the same code, each operation for 1 and 2 threads. By default module A is
//! hsmux's soft token and module B is SoftHSMv2; set BENCH_MODULE_A / BENCH_MODULE_B to
//! other paths, BENCH_SECS for the time per cell (default 1).
//!
//! Run: `cargo bench --bench c_abi` (after `cargo build --release`).

use cryptoki_sys::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SO_PIN: &[u8] = b"12345678";
const PIN: &[u8] = b"1234";

struct Module {
    name: String,
    f: &'static CK_FUNCTION_LIST,
    _lib: libloading::Library,
    slot: CK_SLOT_ID,
    keys: Keys,
}

#[derive(Default, Clone, Copy)]
struct Keys {
    ec: CK_OBJECT_HANDLE,
    ec_pub: CK_OBJECT_HANDLE,
    rsa: CK_OBJECT_HANDLE,
    aes: CK_OBJECT_HANDLE,
    hmac: CK_OBJECT_HANDLE,
}

macro_rules! ck {
    ($m:expr, $f:ident ( $($a:expr),* $(,)? )) => {
        unsafe { ($m.f.$f.unwrap())($($a),*) }
    };
}

fn ok(rv: CK_RV, what: &str) {
    assert_eq!(rv, CKR_OK, "{what}: rv 0x{rv:x}");
}

fn attr<T>(ty: CK_ATTRIBUTE_TYPE, v: &T) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: ty,
        pValue: v as *const T as *mut _,
        ulValueLen: std::mem::size_of::<T>() as CK_ULONG,
    }
}

fn attr_bytes(ty: CK_ATTRIBUTE_TYPE, v: &[u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: ty,
        pValue: v.as_ptr() as *mut _,
        ulValueLen: v.len() as CK_ULONG,
    }
}

fn mech(t: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: t,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    }
}

const TRUE: CK_BBOOL = 1;
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

impl Module {
    fn load(name: &str, path: &str) -> Module {
        let lib = unsafe { libloading::Library::new(path) }
            .unwrap_or_else(|e| panic!("load {path}: {e}"));
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        unsafe {
            let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
                lib.get(b"C_GetFunctionList").unwrap();
            ok(get(&mut list), "C_GetFunctionList");
        }
        let mut m = Module {
            name: name.into(),
            f: unsafe { &*list },
            _lib: lib,
            slot: 0,
            keys: Keys::default(),
        };
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: None,
            DestroyMutex: None,
            LockMutex: None,
            UnlockMutex: None,
            flags: CKF_OS_LOCKING_OK,
            pReserved: std::ptr::null_mut(),
        };
        ok(
            ck!(m, C_Initialize(&mut args as *mut _ as *mut _)),
            "C_Initialize",
        );
        m.setup();
        m
    }

    fn slots(&self) -> Vec<CK_SLOT_ID> {
        let mut n = 0;
        ok(
            ck!(self, C_GetSlotList(1, std::ptr::null_mut(), &mut n)),
            "C_GetSlotList",
        );
        let mut v = vec![0; n as usize];
        ok(
            ck!(self, C_GetSlotList(1, v.as_mut_ptr(), &mut n)),
            "C_GetSlotList",
        );
        v.truncate(n as usize);
        v
    }

    /// Initializes the first slot's token (SoftHSM moves it to a new slot id), sets the
    /// user PIN, and makes the keys and 1,000 data objects.
    fn setup(&mut self) {
        let slot = self.slots()[0];
        let mut label = [b' '; 32];
        label[..5].copy_from_slice(b"bench");
        ok(
            ck!(
                self,
                C_InitToken(
                    slot,
                    SO_PIN.as_ptr() as *mut _,
                    SO_PIN.len() as CK_ULONG,
                    label.as_mut_ptr()
                )
            ),
            "C_InitToken",
        );
        self.slot = *self
            .slots()
            .iter()
            .find(|s| {
                let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
                ck!(self, C_GetTokenInfo(**s, &mut ti)) == CKR_OK && ti.label == label
            })
            .expect("initialized token");
        let h = self.session();
        ok(
            ck!(
                self,
                C_Login(
                    h,
                    CKU_SO,
                    SO_PIN.as_ptr() as *mut _,
                    SO_PIN.len() as CK_ULONG
                )
            ),
            "SO login",
        );
        ok(
            ck!(
                self,
                C_InitPIN(h, PIN.as_ptr() as *mut _, PIN.len() as CK_ULONG)
            ),
            "C_InitPIN",
        );
        ok(ck!(self, C_Logout(h)), "C_Logout");
        ok(
            ck!(
                self,
                C_Login(h, CKU_USER, PIN.as_ptr() as *mut _, PIN.len() as CK_ULONG)
            ),
            "user login",
        );
        let k = &mut self.keys;
        let (mut p, mut s) = (0, 0);
        let mut pt = [attr_bytes(CKA_EC_PARAMS, P256), attr(CKA_VERIFY, &TRUE)];
        let mut st = [attr(CKA_SIGN, &TRUE), attr(CKA_SENSITIVE, &TRUE)];
        let mut mc = mech(CKM_EC_KEY_PAIR_GEN);
        ok(
            ck!(
                self,
                C_GenerateKeyPair(
                    h,
                    &mut mc,
                    pt.as_mut_ptr(),
                    2,
                    st.as_mut_ptr(),
                    2,
                    &mut p,
                    &mut s
                )
            ),
            "EC keygen",
        );
        (k.ec, k.ec_pub) = (s, p);
        let bits: CK_ULONG = 2048;
        let exp = [1u8, 0, 1];
        let mut pt = [
            attr(CKA_MODULUS_BITS, &bits),
            attr_bytes(CKA_PUBLIC_EXPONENT, &exp),
            attr(CKA_VERIFY, &TRUE),
        ];
        let mut mc = mech(CKM_RSA_PKCS_KEY_PAIR_GEN);
        ok(
            ck!(
                self,
                C_GenerateKeyPair(
                    h,
                    &mut mc,
                    pt.as_mut_ptr(),
                    3,
                    st.as_mut_ptr(),
                    2,
                    &mut p,
                    &mut s
                )
            ),
            "RSA keygen",
        );
        k.rsa = s;
        let len32: CK_ULONG = 32;
        let mut at = [
            attr(CKA_VALUE_LEN, &len32),
            attr(CKA_ENCRYPT, &TRUE),
            attr(CKA_DECRYPT, &TRUE),
        ];
        let mut mc = mech(CKM_AES_KEY_GEN);
        ok(
            ck!(
                self,
                C_GenerateKey(h, &mut mc, at.as_mut_ptr(), 3, &mut k.aes)
            ),
            "AES keygen",
        );
        let mut ht = [
            attr(CKA_VALUE_LEN, &len32),
            attr(CKA_SIGN, &TRUE),
            attr(CKA_VERIFY, &TRUE),
        ];
        let mut mc = mech(CKM_GENERIC_SECRET_KEY_GEN);
        ok(
            ck!(
                self,
                C_GenerateKey(h, &mut mc, ht.as_mut_ptr(), 3, &mut k.hmac)
            ),
            "HMAC keygen",
        );
        let class = CKO_DATA;
        for i in 0..1000 {
            let label = format!("bench-obj-{i}");
            let mut t = [
                attr(CKA_CLASS, &class),
                attr_bytes(CKA_LABEL, label.as_bytes()),
                attr_bytes(CKA_APPLICATION, b"bench"),
            ];
            let mut o = 0;
            ok(
                ck!(self, C_CreateObject(h, t.as_mut_ptr(), 3, &mut o)),
                "C_CreateObject",
            );
        }
        // The setup session stays open: it keeps the user logged in and owns the objects.
    }

    fn session(&self) -> CK_SESSION_HANDLE {
        let mut h = 0;
        ok(
            ck!(
                self,
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
        h
    }
}

#[derive(Clone, Copy)]
enum Op {
    Ecdsa,
    Gcm(usize),
    Hmac,
    Rsa,
    Random,
    SessionInfo,
    Find,
}

impl Op {
    fn name(self) -> String {
        match self {
            Op::Ecdsa => "ECDSA P-256 sign".into(),
            Op::Gcm(n) => format!("AES-GCM encrypt {} KiB", n / 1024),
            Op::Hmac => "HMAC-SHA256 1 KiB".into(),
            Op::Rsa => "RSA-2048 sign (SHA256-RSA-PKCS)".into(),
            Op::Random => "C_GenerateRandom 32 B".into(),
            Op::SessionInfo => "C_GetSessionInfo".into(),
            Op::Find => "C_FindObjects over 1,000 objects".into(),
        }
    }

    /// One operation; panics on any error (the numbers would be meaningless).
    fn run(self, m: &Module, h: CK_SESSION_HANDLE, buf: &mut [u8], data: &[u8]) {
        let k = m.keys;
        match self {
            Op::Ecdsa => {
                let mut mc = mech(CKM_ECDSA);
                ok(ck!(m, C_SignInit(h, &mut mc, k.ec)), "C_SignInit");
                let mut n = buf.len() as CK_ULONG;
                ok(
                    ck!(
                        m,
                        C_Sign(h, data.as_ptr() as *mut _, 32, buf.as_mut_ptr(), &mut n)
                    ),
                    "C_Sign",
                );
            }
            Op::Gcm(len) => {
                let mut iv = [7u8; 12];
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
                ok(ck!(m, C_EncryptInit(h, &mut mc, k.aes)), "C_EncryptInit");
                let mut n = buf.len() as CK_ULONG;
                ok(
                    ck!(
                        m,
                        C_Encrypt(
                            h,
                            data.as_ptr() as *mut _,
                            len as CK_ULONG,
                            buf.as_mut_ptr(),
                            &mut n
                        )
                    ),
                    "C_Encrypt",
                );
            }
            Op::Hmac => {
                let mut mc = mech(CKM_SHA256_HMAC);
                ok(ck!(m, C_SignInit(h, &mut mc, k.hmac)), "C_SignInit");
                let mut n = buf.len() as CK_ULONG;
                ok(
                    ck!(
                        m,
                        C_Sign(h, data.as_ptr() as *mut _, 1024, buf.as_mut_ptr(), &mut n)
                    ),
                    "C_Sign",
                );
            }
            Op::Rsa => {
                let mut mc = mech(CKM_SHA256_RSA_PKCS);
                ok(ck!(m, C_SignInit(h, &mut mc, k.rsa)), "C_SignInit");
                let mut n = buf.len() as CK_ULONG;
                ok(
                    ck!(
                        m,
                        C_Sign(h, data.as_ptr() as *mut _, 32, buf.as_mut_ptr(), &mut n)
                    ),
                    "C_Sign",
                );
            }
            Op::Random => ok(
                ck!(m, C_GenerateRandom(h, buf.as_mut_ptr(), 32)),
                "C_GenerateRandom",
            ),
            Op::SessionInfo => {
                let mut si: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
                ok(ck!(m, C_GetSessionInfo(h, &mut si)), "C_GetSessionInfo");
            }
            Op::Find => {
                let class = CKO_DATA;
                let mut t = [
                    attr(CKA_CLASS, &class),
                    attr_bytes(CKA_APPLICATION, b"bench"),
                ];
                ok(
                    ck!(m, C_FindObjectsInit(h, t.as_mut_ptr(), 2)),
                    "C_FindObjectsInit",
                );
                let mut found = vec![0 as CK_OBJECT_HANDLE; 1000];
                let mut n = 0;
                ok(
                    ck!(m, C_FindObjects(h, found.as_mut_ptr(), 1000, &mut n)),
                    "C_FindObjects",
                );
                assert_eq!(n, 1000, "{}: found {n} objects", m.name);
                ok(ck!(m, C_FindObjectsFinal(h)), "C_FindObjectsFinal");
            }
        }
    }
}

/// Operations per second for `threads` threads, each on its own session.
fn measure(m: &'static Module, op: Op, threads: usize, secs: f64) -> f64 {
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let total = total.clone();
            std::thread::spawn(move || {
                let h = m.session();
                let data = vec![0x5au8; 64 * 1024];
                let mut buf = vec![0u8; 64 * 1024 + 64];
                for _ in 0..3 {
                    op.run(m, h, &mut buf, &data); // warm-up
                }
                let mut n = 0u64;
                while Instant::now() < end {
                    for _ in 0..8 {
                        op.run(m, h, &mut buf, &data);
                    }
                    n += 8;
                }
                total.fetch_add(n, Ordering::Relaxed);
                ck!(m, C_CloseSession(h));
            })
        })
        .collect();
    for h in handles {
        h.join().expect("bench thread");
    }
    total.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// A signature made in the loop is real: sign once and verify it.
fn check_signature(m: &Module) {
    let h = m.session();
    let hash = [1u8; 32];
    let mut sig = [0u8; 64];
    let mut n = 64;
    let mut mc = mech(CKM_ECDSA);
    ok(ck!(m, C_SignInit(h, &mut mc, m.keys.ec)), "C_SignInit");
    ok(
        ck!(
            m,
            C_Sign(h, hash.as_ptr() as *mut _, 32, sig.as_mut_ptr(), &mut n)
        ),
        "C_Sign",
    );
    ok(
        ck!(m, C_VerifyInit(h, &mut mc, m.keys.ec_pub)),
        "C_VerifyInit",
    );
    ok(
        ck!(
            m,
            C_Verify(h, hash.as_ptr() as *mut _, 32, sig.as_mut_ptr(), n)
        ),
        "C_Verify",
    );
    ck!(m, C_CloseSession(h));
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks which benches exist
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = std::env::temp_dir().join(format!("hsmux-bench-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("softhsm")).unwrap();
    std::fs::write(
        tmp.join("softhsm2.conf"),
        format!(
            "directories.tokendir = {}/softhsm\nobjectstore.backend = file\n",
            tmp.display()
        ),
    )
    .unwrap();
    std::fs::write(
        tmp.join("hsmux.toml"),
        format!(
            "[[slot]]\nlabel = \"bench\"\nbackend = \"soft\"\npath = \"{}/soft\"\n",
            tmp.display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", tmp.join("softhsm2.conf"));
    std::env::set_var("HSMUX_CONFIG", tmp.join("hsmux.toml"));
    let a_path = std::env::var("BENCH_MODULE_A")
        .unwrap_or_else(|_| format!("{root}/target/release/libhsmux.so"));
    let b_path = std::env::var("BENCH_MODULE_B")
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let a: &'static Module = Box::leak(Box::new(Module::load("A", &a_path)));
    let b: &'static Module = Box::leak(Box::new(Module::load("B", &b_path)));
    check_signature(a);
    check_signature(b);
    println!(
        "A = {a_path}\nB = {b_path}\n{secs} s per cell, {} cores\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let ops = [
        Op::Ecdsa,
        Op::Gcm(1024),
        Op::Gcm(64 * 1024),
        Op::Hmac,
        Op::Rsa,
        Op::Random,
        Op::SessionInfo,
        Op::Find,
    ];
    let mut md = String::from(
        "| operation | threads | A ops/s | B ops/s | A/B |\n|---|---:|---:|---:|---:|\n",
    );
    println!(
        "{:<36} {:>7} {:>12} {:>12} {:>7}",
        "operation", "threads", "A ops/s", "B ops/s", "A/B"
    );
    for op in ops {
        for threads in [1, 2] {
            let ra = measure(a, op, threads, secs);
            let rb = measure(b, op, threads, secs);
            println!(
                "{:<36} {:>7} {:>12.0} {:>12.0} {:>6.2}x",
                op.name(),
                threads,
                ra,
                rb,
                ra / rb
            );
            md += &format!(
                "| {} | {} | {:.0} | {:.0} | {:.2}x |\n",
                op.name(),
                threads,
                ra,
                rb,
                ra / rb
            );
            if matches!(op, Op::SessionInfo) && threads == 1 {
                println!(
                    "{:<36} {:>7} {:>10.3}us {:>10.3}us",
                    "  (per call)",
                    "",
                    1e6 / ra,
                    1e6 / rb
                );
            }
        }
    }
    println!("\n{md}");
    let _ = std::fs::remove_dir_all(&tmp);
}
