//! Loads the built libhsmux.so through its C ABI, as any consumer would, with a
//! configuration of ten soft slots (one per test, so tests run in parallel), and offers
//! thin helpers over the raw function list so that tests can compare exact return values.
#![allow(dead_code, clippy::macro_metavars_in_unsafe)]

use cryptoki_sys::*;
use std::path::PathBuf;
use std::sync::OnceLock;

pub const SO_PIN: &[u8] = b"12345678";
pub const PIN: &[u8] = b"1234";

pub struct Module {
    _lib: libloading::Library,
    pub f: &'static CK_FUNCTION_LIST,
    pub dir: PathBuf,
}

/// The libhsmux.so of this build. `cargo test` compiles the cdylib next to the test
/// executables (target/<profile>/deps/libhsmux.so) but only `cargo build` copies it up to
/// target/<profile>/libhsmux.so, which is therefore stale after a source change tested
/// with `cargo test` alone: the newer of the two is used.
pub fn module_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let candidates = [
        deps.join("libhsmux.so"),
        deps.parent().expect("target/<profile>").join("libhsmux.so"),
    ];
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| {
            panic!(
                "{} is missing: run `cargo build --release` first",
                candidates[1].display()
            )
        })
}

/// Writes a config of `slots` soft slots under a fresh temp dir and points HSMUX_CONFIG at it.
pub fn write_config(slots: usize) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("hsmux-test-{}-{}", std::process::id(), rand_u32()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = String::new();
    for i in 0..slots {
        cfg += &format!("[[slot]]\nlabel = \"t{i}\"\nbackend = \"soft\"\npath = \"{}/t{i}\"\nkdf_iterations = 1000\n", dir.display());
    }
    std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
    std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
    dir
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// Loads the module without initializing it.
pub fn load() -> Module {
    load_from(&module_path())
}

/// Loads any PKCS#11 module (hsmux, or SoftHSMv2 for comparisons) without initializing it.
pub fn load_from(path: &std::path::Path) -> Module {
    let lib = unsafe { libloading::Library::new(path) }
        .unwrap_or_else(|e| panic!("dlopen {}: {e}", path.display()));
    let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
    let rv = unsafe {
        let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
            lib.get(b"C_GetFunctionList").expect("C_GetFunctionList");
        get(&mut list)
    };
    assert_eq!(rv, CKR_OK);
    Module {
        _lib: lib,
        f: unsafe { &*list },
        dir: PathBuf::new(),
    }
}

static SHARED: OnceLock<Module> = OnceLock::new();

/// Slots in the shared module's configuration.
pub const SHARED_SLOTS: usize = 24;

/// The module, initialized once per test binary with slots `t0`..`t23` (ids 0..23).
pub fn shared() -> &'static Module {
    SHARED.get_or_init(|| {
        let dir = write_config(SHARED_SLOTS);
        let mut m = load();
        m.dir = dir;
        assert_eq!(initialize(&m), CKR_OK);
        m
    })
}

pub fn initialize(m: &Module) -> CK_RV {
    initialize_reserved(m, std::ptr::null_mut())
}

/// C_Initialize with OS locking and `pReserved` as given.
pub fn initialize_reserved(m: &Module, reserved: *mut u8) -> CK_RV {
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: reserved.cast(),
    };
    unsafe { (m.f.C_Initialize.unwrap())(&mut args as *mut _ as *mut _) }
}

/// Calls a function of the list: `ck!(m, C_Logout(h))`. The arguments are evaluated inside
/// the unsafe call on purpose: tests pass raw pointers built in place.
#[macro_export]
macro_rules! ck {
    ($m:expr, $f:ident ( $($a:expr),* $(,)? )) => {
        unsafe { ($m.f.$f.expect(stringify!($f)))($($a),*) }
    };
}

/// A template with owned values.
#[derive(Default)]
pub struct Template {
    bufs: Vec<Vec<u8>>,
    pub attrs: Vec<CK_ATTRIBUTE>,
}

impl Template {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn bytes(mut self, ty: CK_ATTRIBUTE_TYPE, v: &[u8]) -> Self {
        self.bufs.push(v.to_vec());
        let b = self.bufs.last_mut().unwrap();
        self.attrs.push(CK_ATTRIBUTE {
            type_: ty,
            pValue: b.as_mut_ptr() as *mut _,
            ulValueLen: b.len() as CK_ULONG,
        });
        self
    }
    pub fn ulong(self, ty: CK_ATTRIBUTE_TYPE, v: CK_ULONG) -> Self {
        self.bytes(ty, &v.to_ne_bytes())
    }
    pub fn bool(self, ty: CK_ATTRIBUTE_TYPE, v: bool) -> Self {
        self.bytes(ty, &[v as u8])
    }
    pub fn ptr(&mut self) -> *mut CK_ATTRIBUTE {
        self.attrs.as_mut_ptr()
    }
    pub fn len(&self) -> CK_ULONG {
        self.attrs.len() as CK_ULONG
    }
}

/// C_InitToken + C_InitPIN on `slot`.
pub fn init_slot(m: &Module, slot: CK_SLOT_ID) {
    init_slot_with(m, slot, SO_PIN, PIN);
}

/// The same with other PINs.
pub fn init_slot_with(m: &Module, slot: CK_SLOT_ID, so_pin: &[u8], pin: &[u8]) {
    let mut label = [b' '; 32];
    label[..4].copy_from_slice(b"test");
    assert_eq!(init_token_as(m, slot, so_pin, &mut label), CKR_OK);
    let h = open(m, slot, true);
    assert_eq!(login(m, h, CKU_SO, so_pin), CKR_OK);
    assert_eq!(
        ck!(
            m,
            C_InitPIN(h, pin.as_ptr() as *mut _, pin.len() as CK_ULONG)
        ),
        CKR_OK
    );
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

/// C_InitToken with the SO PIN `SO_PIN` and this label.
pub fn init_token(m: &Module, slot: CK_SLOT_ID, label: &mut [u8; 32]) -> CK_RV {
    init_token_as(m, slot, SO_PIN, label)
}

/// C_InitToken with another SO PIN.
pub fn init_token_as(m: &Module, slot: CK_SLOT_ID, so_pin: &[u8], label: &mut [u8; 32]) -> CK_RV {
    ck!(
        m,
        C_InitToken(
            slot,
            so_pin.as_ptr() as *mut _,
            so_pin.len() as CK_ULONG,
            label.as_mut_ptr()
        )
    )
}

pub fn open(m: &Module, slot: CK_SLOT_ID, rw: bool) -> CK_SESSION_HANDLE {
    let mut h = 0;
    let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
    assert_eq!(
        ck!(
            m,
            C_OpenSession(slot, flags, std::ptr::null_mut(), None, &mut h)
        ),
        CKR_OK
    );
    h
}

pub fn login(m: &Module, h: CK_SESSION_HANDLE, who: CK_USER_TYPE, pin: &[u8]) -> CK_RV {
    ck!(
        m,
        C_Login(h, who, pin.as_ptr() as *mut _, pin.len() as CK_ULONG)
    )
}

/// A user session on a freshly initialized slot.
pub fn user_session(m: &Module, slot: CK_SLOT_ID) -> CK_SESSION_HANDLE {
    init_slot(m, slot);
    let h = open(m, slot, true);
    assert_eq!(login(m, h, CKU_USER, PIN), CKR_OK);
    h
}

pub fn mech(t: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: t,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    }
}

pub fn mech_with<T>(t: CK_MECHANISM_TYPE, p: &mut T) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: t,
        pParameter: p as *mut T as *mut _,
        ulParameterLen: std::mem::size_of::<T>() as CK_ULONG,
    }
}

/// Reads one attribute (two calls: length, then value).
pub fn get_attr(
    m: &Module,
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    ty: CK_ATTRIBUTE_TYPE,
) -> Result<Vec<u8>, CK_RV> {
    let mut a = CK_ATTRIBUTE {
        type_: ty,
        pValue: std::ptr::null_mut(),
        ulValueLen: 0,
    };
    let rv = ck!(m, C_GetAttributeValue(h, o, &mut a, 1));
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut v = vec![0u8; a.ulValueLen as usize];
    a.pValue = v.as_mut_ptr() as *mut _;
    let rv = ck!(m, C_GetAttributeValue(h, o, &mut a, 1));
    if rv != CKR_OK {
        return Err(rv);
    }
    v.truncate(a.ulValueLen as usize);
    Ok(v)
}

pub fn find(m: &Module, h: CK_SESSION_HANDLE, t: &mut Template) -> Vec<CK_OBJECT_HANDLE> {
    assert_eq!(ck!(m, C_FindObjectsInit(h, t.ptr(), t.len())), CKR_OK);
    let mut out = Vec::new();
    loop {
        let mut buf = [0 as CK_OBJECT_HANDLE; 7];
        let mut n = 0;
        assert_eq!(
            ck!(
                m,
                C_FindObjects(h, buf.as_mut_ptr(), buf.len() as CK_ULONG, &mut n)
            ),
            CKR_OK
        );
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    assert_eq!(ck!(m, C_FindObjectsFinal(h)), CKR_OK);
    out
}

/// Runs a two-call output function (NULL for the length, then the buffer).
pub fn two_call(mut f: impl FnMut(*mut u8, *mut CK_ULONG) -> CK_RV) -> Result<Vec<u8>, CK_RV> {
    let mut n: CK_ULONG = 0;
    let rv = f(std::ptr::null_mut(), &mut n);
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut out = vec![0u8; n as usize];
    let rv = f(out.as_mut_ptr(), &mut n);
    if rv != CKR_OK {
        return Err(rv);
    }
    out.truncate(n as usize);
    Ok(out)
}

pub fn sign(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mut mc: CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    let rv = ck!(m, C_SignInit(h, &mut mc, key));
    if rv != CKR_OK {
        return Err(rv);
    }
    two_call(|p, n| {
        ck!(
            m,
            C_Sign(h, data.as_ptr() as *mut _, data.len() as CK_ULONG, p, n)
        )
    })
}

pub fn verify(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mut mc: CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
    sig: &[u8],
) -> CK_RV {
    let rv = ck!(m, C_VerifyInit(h, &mut mc, key));
    if rv != CKR_OK {
        return rv;
    }
    ck!(
        m,
        C_Verify(
            h,
            data.as_ptr() as *mut _,
            data.len() as CK_ULONG,
            sig.as_ptr() as *mut _,
            sig.len() as CK_ULONG
        )
    )
}

pub fn encrypt(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mut mc: CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    let rv = ck!(m, C_EncryptInit(h, &mut mc, key));
    if rv != CKR_OK {
        return Err(rv);
    }
    two_call(|p, n| {
        ck!(
            m,
            C_Encrypt(h, data.as_ptr() as *mut _, data.len() as CK_ULONG, p, n)
        )
    })
}

pub fn decrypt(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mut mc: CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    let rv = ck!(m, C_DecryptInit(h, &mut mc, key));
    if rv != CKR_OK {
        return Err(rv);
    }
    two_call(|p, n| {
        ck!(
            m,
            C_Decrypt(h, data.as_ptr() as *mut _, data.len() as CK_ULONG, p, n)
        )
    })
}

pub const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// C_GenerateKeyPair with the templates as given: its return value and the two handles.
pub fn try_keypair(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mt: CK_MECHANISM_TYPE,
    public: &mut Template,
    private: &mut Template,
) -> (CK_RV, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let (mut p, mut s) = (0, 0);
    let mut mc = mech(mt);
    let rv = ck!(
        m,
        C_GenerateKeyPair(
            h,
            &mut mc,
            public.ptr(),
            public.len(),
            private.ptr(),
            private.len(),
            &mut p,
            &mut s
        )
    );
    (rv, p, s)
}

/// C_GenerateKeyPair with token objects labelled `label` and id `id`.
pub fn keypair(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mt: CK_MECHANISM_TYPE,
    mut public: Template,
    mut private: Template,
    id: &[u8],
) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    public = public.bytes(CKA_ID, id).bool(CKA_TOKEN, true);
    private = private
        .bytes(CKA_ID, id)
        .bool(CKA_TOKEN, true)
        .bool(CKA_SENSITIVE, true);
    let (rv, p, s) = try_keypair(m, h, mt, &mut public, &mut private);
    assert_eq!(rv, CKR_OK, "C_GenerateKeyPair 0x{mt:x}");
    (p, s)
}

/// C_CreateObject: the new handle or the return value.
pub fn try_create(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mut t: Template,
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let mut o = 0;
    match ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut o)) {
        CKR_OK => Ok(o),
        rv => Err(rv),
    }
}

pub fn secret(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mt: CK_MECHANISM_TYPE,
    mut t: Template,
) -> CK_OBJECT_HANDLE {
    let mut k = 0;
    let mut mc = mech(mt);
    assert_eq!(
        ck!(m, C_GenerateKey(h, &mut mc, t.ptr(), t.len(), &mut k)),
        CKR_OK,
        "C_GenerateKey 0x{mt:x}"
    );
    k
}

/// C_DeriveKey of an extractable generic secret of `len` bytes: its value.
pub fn derive(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mc: &mut CK_MECHANISM,
    base: CK_OBJECT_HANDLE,
    len: CK_ULONG,
) -> Result<Vec<u8>, CK_RV> {
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .ulong(CKA_VALUE_LEN, len)
        .bool(CKA_EXTRACTABLE, true);
    let mut k = 0;
    match ck!(m, C_DeriveKey(h, mc, base, t.ptr(), t.len(), &mut k)) {
        CKR_OK => Ok(get_attr(m, h, k, CKA_VALUE).unwrap()),
        rv => Err(rv),
    }
}

/// The uncompressed point inside CKA_EC_POINT's DER OCTET STRING.
pub fn ec_point(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x04, "CKA_EC_POINT is a DER OCTET STRING");
    // A P-521 point (133 bytes) has a long-form length (0x81 0x85).
    let at = if der[1] == 0x81 { 3 } else { 2 };
    der[at..].to_vec()
}

/// The name of a return value, for assertion messages.
pub fn rv_name(rv: CK_RV) -> String {
    format!("{:?} (0x{rv:x})", cryptoki::error::Rv::from(rv))
}

/// Asserts a return value and names both codes when they differ.
#[macro_export]
macro_rules! assert_rv {
    ($got:expr, $want:expr $(, $($msg:tt)+)?) => {{
        let (got, want): (cryptoki_sys::CK_RV, cryptoki_sys::CK_RV) = ($got, $want);
        assert!(
            got == want,
            "expected {}, got {}{}",
            $crate::common::rv_name(want),
            $crate::common::rv_name(got),
            { let _m = String::new(); $( let _m = format!(": {}", format!($($msg)+)); )? _m }
        );
    }};
}

/// CK_GCM_PARAMS over caller-owned IV and AAD buffers.
pub fn gcm_params(iv: &mut [u8], aad: &mut [u8], tag_bits: CK_ULONG) -> CK_GCM_PARAMS {
    CK_GCM_PARAMS {
        pIv: iv.as_mut_ptr(),
        ulIvLen: iv.len() as CK_ULONG,
        ulIvBits: (iv.len() * 8) as CK_ULONG,
        pAAD: if aad.is_empty() {
            std::ptr::null_mut()
        } else {
            aad.as_mut_ptr()
        },
        ulAADLen: aad.len() as CK_ULONG,
        ulTagBits: tag_bits,
    }
}

pub const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// The slot whose token is labelled `label` (trailing blanks ignored); with
/// `token_present` false the slots without a token are looked at too.
pub fn slot_labelled(m: &Module, label: &str, token_present: bool) -> CK_SLOT_ID {
    let mut n: CK_ULONG = 0;
    let present = token_present as CK_BBOOL;
    assert_eq!(
        ck!(m, C_GetSlotList(present, std::ptr::null_mut(), &mut n)),
        CKR_OK
    );
    let mut slots = vec![0; n as usize];
    assert_eq!(
        ck!(m, C_GetSlotList(present, slots.as_mut_ptr(), &mut n)),
        CKR_OK
    );
    slots
        .into_iter()
        .find(|s| {
            let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
            ck!(m, C_GetTokenInfo(*s, &mut ti)) == CKR_OK
                && String::from_utf8_lossy(&ti.label).trim_end() == label
        })
        .unwrap_or_else(|| panic!("no slot with token {label}"))
}

static REMOVE_AT_EXIT: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_dir_at_exit() {
    if let Some(d) = REMOVE_AT_EXIT.get() {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Removes `dir` when the test process exits: for directories that tests running in
/// parallel share, where no single test knows it is the last.
pub fn remove_at_exit(dir: &std::path::Path) {
    if REMOVE_AT_EXIT.set(dir.to_path_buf()).is_ok() {
        unsafe { libc::atexit(remove_dir_at_exit) };
    }
}

/// A SoftHSMv2 configuration under `dir` with one token `label` initialized with these
/// PINs; returns the configuration file (for `SOFTHSM2_CONF`).
pub fn softhsm_token(dir: &std::path::Path, label: &str, so_pin: &str, pin: &str) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", label])
        .args(["--so-pin", so_pin, "--pin", pin])
        .output()
        .expect("softhsm2-util (scripts/deps.sh installs softhsm2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}

pub mod bao;
pub mod faultwrap;

/// `C_GetInterface("PKCS 11", {3, 2})` of the library at `path` (loaded already, or loaded
/// and kept): its 3.2 function list.
pub fn interface_32(path: &std::path::Path) -> &'static CK_FUNCTION_LIST_3_2 {
    let lib = unsafe { libloading::Library::new(path) }.unwrap();
    let get: libloading::Symbol<CK_C_GetInterface> = unsafe { lib.get(b"C_GetInterface") }.unwrap();
    let mut name = *b"PKCS 11\0";
    let mut version = CK_VERSION { major: 3, minor: 2 };
    let mut iface: *mut CK_INTERFACE = std::ptr::null_mut();
    let rv = unsafe { get.unwrap()(name.as_mut_ptr(), &mut version, &mut iface, 0) };
    assert_eq!(rv, CKR_OK);
    std::mem::forget(lib);
    unsafe { &*((*iface).pFunctionList as *const CK_FUNCTION_LIST_3_2) }
}
