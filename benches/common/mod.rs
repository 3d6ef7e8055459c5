//! What the C ABI benchmarks share (`c_abi`, `passthrough`): a PKCS#11 module loaded by
//! path and driven through its function table, its token set up with the same keys and
//! 1,000 data objects, the operations, and the timed multi-thread cells.
#![allow(dead_code)]

use cryptoki_sys::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

pub const SO_PIN: &[u8] = b"12345678";
pub const PIN: &[u8] = b"1234";
/// The token label both benchmarks give (and look for).
pub const LABEL: &str = "bench";

pub struct Module {
    pub name: String,
    pub f: &'static CK_FUNCTION_LIST,
    _lib: libloading::Library,
    pub slot: CK_SLOT_ID,
    pub keys: Keys,
}

#[derive(Default, Clone, Copy)]
pub struct Keys {
    pub ec: CK_OBJECT_HANDLE,
    pub ec_pub: CK_OBJECT_HANDLE,
    pub rsa: CK_OBJECT_HANDLE,
    pub rsa_pub: CK_OBJECT_HANDLE,
    pub aes: CK_OBJECT_HANDLE,
    pub hmac: CK_OBJECT_HANDLE,
}

macro_rules! ck {
    ($m:expr, $f:ident ( $($a:expr),* $(,)? )) => {
        unsafe { ($m.f.$f.unwrap())($($a),*) }
    };
}
#[allow(unused_imports)]
pub(crate) use ck;

pub fn ok(rv: CK_RV, what: &str) {
    assert_eq!(rv, CKR_OK, "{what}: rv 0x{rv:x}");
}

pub fn attr<T>(ty: CK_ATTRIBUTE_TYPE, v: &T) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: ty,
        pValue: v as *const T as *mut _,
        ulValueLen: std::mem::size_of::<T>() as CK_ULONG,
    }
}

pub fn attr_bytes(ty: CK_ATTRIBUTE_TYPE, v: &[u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: ty,
        pValue: v.as_ptr() as *mut _,
        ulValueLen: v.len() as CK_ULONG,
    }
}

pub fn mech(t: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: t,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    }
}

pub const TRUE: CK_BBOOL = 1;
pub const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A token label as PKCS#11 stores it: 32 bytes, blank padded.
pub fn padded_label(label: &str) -> [u8; 32] {
    let mut l = [b' '; 32];
    l[..label.len()].copy_from_slice(label.as_bytes());
    l
}

impl Module {
    /// Loads the module and calls `C_Initialize`, then sets up its first slot's token
    /// ([`Module::setup`]).
    pub fn load(name: &str, path: &str) -> Module {
        let mut m = Module::open(name, path);
        m.setup();
        m
    }

    /// Loads the module and calls `C_Initialize` (OS locking); nothing else.
    pub fn open(name: &str, path: &str) -> Module {
        let lib = unsafe { libloading::Library::new(path) }
            .unwrap_or_else(|e| panic!("load {path}: {e}"));
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        unsafe {
            let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
                lib.get(b"C_GetFunctionList").unwrap();
            ok(get(&mut list), "C_GetFunctionList");
        }
        let m = Module {
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
        m
    }

    pub fn slots(&self) -> Vec<CK_SLOT_ID> {
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

    /// The slot whose token is labelled `label`.
    pub fn find_slot(&self, label: &str) -> Option<CK_SLOT_ID> {
        let label = padded_label(label);
        self.slots().into_iter().find(|s| {
            let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
            ck!(self, C_GetTokenInfo(*s, &mut ti)) == CKR_OK && ti.label == label
        })
    }

    /// Initializes the first slot's token (SoftHSM moves it to a new slot id), sets the
    /// user PIN, and makes the keys and 1,000 data objects.
    pub fn setup(&mut self) {
        let h = self.init_token();
        self.login_and_make_keys(h);
    }

    /// `C_InitToken` on the first slot with label [`LABEL`], then `C_InitPIN` as the SO.
    /// Returns the session it used (logged out).
    pub fn init_token(&mut self) -> CK_SESSION_HANDLE {
        let slot = self.slots()[0];
        let mut label = padded_label(LABEL);
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
        self.slot = self.find_slot(LABEL).expect("initialized token");
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
        h
    }

    /// Logs the user in on session `h` of `self.slot` and makes the keys (session objects:
    /// an EC P-256 and an RSA-2048 pair, AES-256, a 256-bit HMAC key) and 1,000 data objects.
    pub fn login_and_make_keys(&mut self, h: CK_SESSION_HANDLE) {
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
        (k.rsa, k.rsa_pub) = (s, p);
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

    pub fn session(&self) -> CK_SESSION_HANDLE {
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

    /// An attribute's value (two-call style).
    pub fn attribute(
        &self,
        h: CK_SESSION_HANDLE,
        o: CK_OBJECT_HANDLE,
        ty: CK_ATTRIBUTE_TYPE,
    ) -> Vec<u8> {
        let mut a = CK_ATTRIBUTE {
            type_: ty,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        };
        ok(
            ck!(self, C_GetAttributeValue(h, o, &mut a, 1)),
            "C_GetAttributeValue (length)",
        );
        let mut v = vec![0u8; a.ulValueLen as usize];
        a.pValue = v.as_mut_ptr() as *mut _;
        ok(
            ck!(self, C_GetAttributeValue(h, o, &mut a, 1)),
            "C_GetAttributeValue",
        );
        v.truncate(a.ulValueLen as usize);
        v
    }
}

#[derive(Clone, Copy)]
pub enum Op {
    Ecdsa,
    Gcm(usize),
    Hmac,
    Rsa,
    Random,
    SessionInfo,
    Find,
}

impl Op {
    pub fn name(self) -> String {
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

    /// One operation; panics on any error (the numbers would be meaningless). Returns the
    /// length of the output (bytes written, or objects found; 0 for `C_GetSessionInfo`).
    pub fn run(self, m: &Module, h: CK_SESSION_HANDLE, buf: &mut [u8], data: &[u8]) -> usize {
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
                n as usize
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
                n as usize
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
                n as usize
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
                n as usize
            }
            Op::Random => {
                ok(
                    ck!(m, C_GenerateRandom(h, buf.as_mut_ptr(), 32)),
                    "C_GenerateRandom",
                );
                32
            }
            Op::SessionInfo => {
                let mut si: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
                ok(ck!(m, C_GetSessionInfo(h, &mut si)), "C_GetSessionInfo");
                0
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
                n as usize
            }
        }
    }
}

/// Operations done by `threads` threads, each on its own session, in `secs` seconds, and
/// the time they took (from before the threads start to after the last one ends).
pub fn measure_count(m: &'static Module, op: Op, threads: usize, secs: f64) -> (u64, Duration) {
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
    (total.load(Ordering::Relaxed), start.elapsed())
}

/// Like [`measure_count`], but the clock starts once every thread has opened its session
/// and warmed up, so that only the timed loop is counted (which matters for slow
/// operations and short cells).
pub fn measure_count_warm(
    m: &'static Module,
    op: Op,
    threads: usize,
    secs: f64,
) -> (u64, Duration) {
    let total = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (total, ready) = (total.clone(), ready.clone());
            std::thread::spawn(move || {
                let h = m.session();
                let data = vec![0x5au8; 64 * 1024];
                let mut buf = vec![0u8; 64 * 1024 + 64];
                for _ in 0..3 {
                    op.run(m, h, &mut buf, &data); // warm-up
                }
                ready.wait();
                let end = Instant::now() + Duration::from_secs_f64(secs);
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
    ready.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("bench thread");
    }
    (total.load(Ordering::Relaxed), start.elapsed())
}

/// Operations per second for `threads` threads, each on its own session.
pub fn measure(m: &'static Module, op: Op, threads: usize, secs: f64) -> f64 {
    let (n, t) = measure_count(m, op, threads, secs);
    n as f64 / t.as_secs_f64()
}

/// A signature made in the loop is real: sign once and verify it.
pub fn check_signature(m: &Module) {
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

/// `BENCH_SECS`, seconds per cell (default 1).
pub fn bench_secs() -> f64 {
    env_or("BENCH_SECS", 1.0)
}

/// The environment variable `name` parsed, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `cargo bench -- --list` asks which benches exist: answer nothing and leave.
pub fn listing() -> bool {
    std::env::args().any(|a| a == "--list")
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A fresh directory for one run's token stores and configuration files.
pub fn temp_dir() -> PathBuf {
    let tmp = std::env::temp_dir().join(format!("hsmux-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    tmp
}

/// Writes a SoftHSMv2 configuration at `conf` whose (file) token store is `tokendir`,
/// which it creates.
pub fn write_softhsm_conf(conf: &Path, tokendir: &Path) {
    std::fs::create_dir_all(tokendir).unwrap();
    std::fs::write(
        conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokendir.display()
        ),
    )
    .unwrap();
}
