//! A process that has just loaded libhsmux.so and never initialized it: what answers before
//! C_Initialize, eight threads racing to C_Initialize, then the PIN key derivation at its
//! default strength. One test only, so that nothing else touches the module first.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use std::ffi::CStr;

type GetInterface = unsafe extern "C" fn(
    *mut CK_UTF8CHAR,
    *mut CK_VERSION,
    *mut *mut CK_INTERFACE,
    CK_FLAGS,
) -> CK_RV;
type GetInterfaceList = unsafe extern "C" fn(*mut CK_INTERFACE, *mut CK_ULONG) -> CK_RV;

fn interfaces(lib: &libloading::Library) {
    let get: libloading::Symbol<GetInterface> =
        unsafe { lib.get(b"C_GetInterface") }.expect("C_GetInterface is exported");
    let list: libloading::Symbol<GetInterfaceList> =
        unsafe { lib.get(b"C_GetInterfaceList") }.expect("C_GetInterfaceList is exported");
    // The default interface: "PKCS 11" 3.0, every entry of its table filled.
    let mut iface: *mut CK_INTERFACE = std::ptr::null_mut();
    assert_rv!(
        unsafe { get(std::ptr::null_mut(), std::ptr::null_mut(), &mut iface, 0) },
        CKR_OK
    );
    let i = unsafe { &*iface };
    assert_eq!(
        unsafe { CStr::from_ptr(i.pInterfaceName as *const _) }.to_bytes(),
        b"PKCS 11"
    );
    let f30 = unsafe { &*(i.pFunctionList as *const CK_FUNCTION_LIST_3_0) };
    assert_eq!((f30.version.major, f30.version.minor), (3, 0));
    let n = std::mem::size_of::<CK_FUNCTION_LIST_3_0>() / std::mem::size_of::<usize>();
    let words: &[usize] = unsafe { std::slice::from_raw_parts(f30 as *const _ as *const usize, n) };
    assert!(
        words[1..].iter().all(|w| *w != 0),
        "a NULL entry in the 3.0 function list"
    );
    assert_eq!(n, 93, "version + 92 functions in the 3.0 table");
    // By name and version: 3.0, 2.40 and 3.2; other versions are not offered.
    let mut name = *b"PKCS 11\0";
    for (major, minor) in [(3u8, 0u8), (2, 40), (3, 2)] {
        let mut v = CK_VERSION { major, minor };
        let mut p: *mut CK_INTERFACE = std::ptr::null_mut();
        assert_rv!(
            unsafe { get(name.as_mut_ptr(), &mut v, &mut p, 0) },
            CKR_OK,
            "interface {major}.{minor}"
        );
        let fl = unsafe { &*((*p).pFunctionList as *const CK_FUNCTION_LIST) };
        assert_eq!((fl.version.major, fl.version.minor), (major, minor));
    }
    let mut v = CK_VERSION { major: 3, minor: 1 };
    let mut p: *mut CK_INTERFACE = std::ptr::null_mut();
    assert_ne!(unsafe { get(name.as_mut_ptr(), &mut v, &mut p, 0) }, CKR_OK);
    let mut other = *b"Vendor X\0";
    assert_ne!(
        unsafe { get(other.as_mut_ptr(), std::ptr::null_mut(), &mut p, 0) },
        CKR_OK,
        "no interface of another name"
    );
    assert_rv!(
        unsafe {
            get(
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        },
        CKR_ARGUMENTS_BAD
    );
    // The list: count first, then the entries.
    let mut count: CK_ULONG = 0;
    assert_rv!(unsafe { list(std::ptr::null_mut(), &mut count) }, CKR_OK);
    assert_eq!(count, 3);
    let mut small: [CK_INTERFACE; 1] = unsafe { std::mem::zeroed() };
    let mut one: CK_ULONG = 1;
    assert_rv!(
        unsafe { list(small.as_mut_ptr(), &mut one) },
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(one, 3);
    let mut all: [CK_INTERFACE; 3] = unsafe { std::mem::zeroed() };
    assert_rv!(unsafe { list(all.as_mut_ptr(), &mut count) }, CKR_OK);
    let versions: Vec<(u8, u8)> = all
        .iter()
        .map(|i| {
            let f = unsafe { &*(i.pFunctionList as *const CK_FUNCTION_LIST) };
            (f.version.major, f.version.minor)
        })
        .collect();
    assert_eq!(versions, vec![(3, 0), (2, 40), (3, 2)]);
}

/// Every function that needs the library initialized says so.
fn everything_is_not_initialized(m: &Module) {
    let mut n: CK_ULONG = 0;
    let mut info: CK_INFO = unsafe { std::mem::zeroed() };
    let mut si: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    let mut mi: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
    let mut sess: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    let mut h: CK_SESSION_HANDLE = 0;
    let mut label = [b' '; 32];
    let mut buf = [0u8; 16];
    let mut mc = mech(CKM_SHA256);
    let mut t = Template::new().ulong(CKA_CLASS, CKO_DATA);
    let mut o = 0;
    let calls: Vec<(&str, CK_RV)> = vec![
        ("C_GetInfo", ck!(m, C_GetInfo(&mut info))),
        (
            "C_GetSlotList",
            ck!(m, C_GetSlotList(0, std::ptr::null_mut(), &mut n)),
        ),
        ("C_GetSlotInfo", ck!(m, C_GetSlotInfo(0, &mut si))),
        ("C_GetTokenInfo", ck!(m, C_GetTokenInfo(0, &mut ti))),
        (
            "C_GetMechanismList",
            ck!(m, C_GetMechanismList(0, std::ptr::null_mut(), &mut n)),
        ),
        (
            "C_GetMechanismInfo",
            ck!(m, C_GetMechanismInfo(0, CKM_SHA256, &mut mi)),
        ),
        (
            "C_InitToken",
            ck!(
                m,
                C_InitToken(0, SO_PIN.as_ptr() as *mut _, 8, label.as_mut_ptr())
            ),
        ),
        (
            "C_OpenSession",
            ck!(
                m,
                C_OpenSession(0, CKF_SERIAL_SESSION, std::ptr::null_mut(), None, &mut h)
            ),
        ),
        ("C_CloseSession", ck!(m, C_CloseSession(1))),
        ("C_CloseAllSessions", ck!(m, C_CloseAllSessions(0))),
        ("C_GetSessionInfo", ck!(m, C_GetSessionInfo(1, &mut sess))),
        (
            "C_Login",
            ck!(m, C_Login(1, CKU_USER, PIN.as_ptr() as *mut _, 4)),
        ),
        ("C_Logout", ck!(m, C_Logout(1))),
        (
            "C_CreateObject",
            ck!(m, C_CreateObject(1, t.ptr(), t.len(), &mut o)),
        ),
        (
            "C_FindObjectsInit",
            ck!(m, C_FindObjectsInit(1, t.ptr(), t.len())),
        ),
        ("C_DigestInit", ck!(m, C_DigestInit(1, &mut mc))),
        (
            "C_GenerateRandom",
            ck!(m, C_GenerateRandom(1, buf.as_mut_ptr(), 16)),
        ),
        (
            "C_WaitForSlotEvent",
            ck!(
                m,
                C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut h, std::ptr::null_mut())
            ),
        ),
        ("C_Finalize", ck!(m, C_Finalize(std::ptr::null_mut()))),
    ];
    for (name, rv) in calls {
        assert_rv!(
            rv,
            CKR_CRYPTOKI_NOT_INITIALIZED,
            "{name} before C_Initialize"
        );
    }
    // C_GetFunctionList works at any time.
    let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
    assert_rv!(ck!(m, C_GetFunctionList(&mut list)), CKR_OK);
    assert_eq!(list as *const _, m.f as *const _);
}

#[test]
fn a_fresh_process_initializes_once_then_works() {
    // Slot 0 with a fast KDF, slot 1 with the default one.
    let dir = std::env::temp_dir().join(format!("hsmux-fresh-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hsmux.toml"),
        format!(
            "[[slot]]\nlabel = \"fast\"\nbackend = \"soft\"\npath = \"{0}/fast\"\nkdf_iterations = 1000\n\n\
             [[slot]]\nlabel = \"default\"\nbackend = \"soft\"\npath = \"{0}/default\"\n",
            dir.display()
        ),
    )
    .unwrap();
    std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));

    let lib = unsafe { libloading::Library::new(module_path()) }.unwrap();
    interfaces(&lib);
    let m: &'static Module = Box::leak(Box::new(load()));
    everything_is_not_initialized(m);

    // Eight threads call C_Initialize at once: one wins, the others are told it is done.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let rvs: Vec<CK_RV> = (0..8)
        .map(|_| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                initialize(m)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("no crash in C_Initialize"))
        .collect();
    assert_eq!(rvs.iter().filter(|r| **r == CKR_OK).count(), 1, "{rvs:x?}");
    assert!(
        rvs.iter()
            .all(|r| *r == CKR_OK || *r == CKR_CRYPTOKI_ALREADY_INITIALIZED),
        "{rvs:x?}"
    );
    let mut info: CK_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(ck!(m, C_GetInfo(&mut info)), CKR_OK);
    assert_eq!(
        (info.cryptokiVersion.major, info.cryptokiVersion.minor),
        (3, 0)
    );
    assert!(info.manufacturerID.starts_with(b"hsmux"));
    assert!(info.manufacturerID[5..].iter().all(|b| *b == b' '));
    assert_rv!(
        ck!(m, C_Finalize(&mut info as *mut _ as *mut _)),
        CKR_ARGUMENTS_BAD,
        "pReserved of C_Finalize must be NULL"
    );

    // The default PIN key derivation: 200,000 PBKDF2 rounds recorded for both PINs, next to
    // the configured 1,000 of the other slot; PINs work the same with either.
    let start = std::time::Instant::now();
    init_slot(m, 1);
    let slow = start.elapsed();
    let start = std::time::Instant::now();
    init_slot(m, 0);
    let fast = start.elapsed();
    for (slot, want) in [("default", 200_000u64), ("fast", 1_000)] {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(slot).join("token.json")).unwrap())
                .unwrap();
        let text = meta.to_string();
        for who in ["so", "user"] {
            assert_eq!(
                meta[who]["iterations"].as_u64(),
                Some(want),
                "{slot} slot, {who} PIN record: {text}"
            );
        }
        assert!(
            !text.contains("12345678") && !text.contains("\"1234\""),
            "no PIN in clear in token.json"
        );
    }
    // (How long each took is printed, not asserted: a timing comparison fails on a busy
    // machine; the recorded iteration counts above are what matters.)
    println!("PIN set-up: default KDF {slow:?}, 1,000 rounds {fast:?}");
    let h = open(m, 1, true);
    assert_rv!(login(m, h, CKU_USER, b"0000"), CKR_PIN_INCORRECT);
    assert_rv!(login(m, h, CKU_USER, PIN), CKR_OK);
    assert_rv!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
    assert_rv!(
        ck!(
            m,
            C_GetSessionInfo(h, &mut std::mem::zeroed::<CK_SESSION_INFO>())
        ),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );
    // Initialize with no arguments at all (a single-threaded application) works as well.
    assert_rv!(ck!(m, C_Initialize(std::ptr::null_mut())), CKR_OK);
    assert_rv!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
    let _ = std::fs::remove_dir_all(dir);
}
