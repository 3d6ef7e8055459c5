//! Module life cycle in one process (so these run one after another): calls before
//! C_Initialize, concurrent C_Initialize, finalize and re-initialize, fork, bad
//! configurations and damaged stores.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn module() -> &'static Module {
    static M: std::sync::OnceLock<Module> = std::sync::OnceLock::new();
    M.get_or_init(load)
}

fn slot_count(m: &Module) -> Result<CK_ULONG, CK_RV> {
    let mut n = 0;
    match ck!(m, C_GetSlotList(1, std::ptr::null_mut(), &mut n)) {
        CKR_OK => Ok(n),
        rv => Err(rv),
    }
}

#[test]
fn not_initialized_then_concurrent_initialize_then_reinitialize() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = module();
    let _ = ck!(m, C_Finalize(std::ptr::null_mut()));
    assert_eq!(slot_count(m), Err(CKR_CRYPTOKI_NOT_INITIALIZED));
    assert_eq!(
        ck!(m, C_Finalize(std::ptr::null_mut())),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );
    let dir = write_config(2);
    let rvs: Vec<CK_RV> = (0..8)
        .map(|_| std::thread::spawn(|| initialize(module())))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(rvs.iter().filter(|r| **r == CKR_OK).count(), 1, "{rvs:?}");
    assert_eq!(
        rvs.iter()
            .filter(|r| **r == CKR_CRYPTOKI_ALREADY_INITIALIZED)
            .count(),
        7
    );
    assert_eq!(slot_count(m), Ok(2));
    // A token object survives C_Finalize / C_Initialize.
    init_slot(m, 0);
    let h = open(m, 0, true);
    assert_eq!(login(m, h, CKU_USER, PIN), CKR_OK);
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_TOKEN, true)
        .bool(CKA_PRIVATE, true)
        .bytes(CKA_LABEL, b"kept");
    let mut o = 0;
    assert_eq!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut o)), CKR_OK);
    // A wrong PIN entered before the restart still counts after it.
    let other = open(m, 0, true);
    assert_eq!(ck!(m, C_Logout(other)), CKR_OK);
    assert_eq!(login(m, other, CKU_USER, b"0000"), CKR_PIN_INCORRECT);
    assert_eq!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
    assert_eq!(
        ck!(
            m,
            C_GetSessionInfo(h, &mut std::mem::zeroed::<CK_SESSION_INFO>())
        ),
        CKR_CRYPTOKI_NOT_INITIALIZED
    );
    assert_eq!(initialize(m), CKR_OK);
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(ck!(m, C_GetTokenInfo(0, &mut ti)), CKR_OK);
    assert_ne!(
        ti.flags & CKF_USER_PIN_COUNT_LOW,
        0,
        "the wrong-PIN count persists across C_Finalize/C_Initialize"
    );
    let h = open(m, 0, true);
    assert_eq!(login(m, h, CKU_USER, PIN), CKR_OK);
    assert_eq!(ck!(m, C_GetTokenInfo(0, &mut ti)), CKR_OK);
    assert_eq!(ti.flags & CKF_USER_PIN_COUNT_LOW, 0);
    let mut q = Template::new().bytes(CKA_LABEL, b"kept");
    assert_eq!(find(m, h, &mut q).len(), 1);
    // On disk the private object is sealed: its label is not in the file in clear.
    let files: Vec<_> = std::fs::read_dir(dir.join("t0/objects"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(files.len(), 1);
    let bytes = std::fs::read(files[0].path()).unwrap();
    assert!(
        !bytes.windows(4).any(|w| w == b"kept"),
        "private objects are encrypted at rest"
    );
    assert_eq!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
}

#[test]
fn fork_child_must_initialize_again() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = module();
    let _ = ck!(m, C_Finalize(std::ptr::null_mut()));
    write_config(1);
    assert_eq!(initialize(m), CKR_OK);
    // The parent: a logged-in session, a token key, a session object.
    let h = user_session(m, 0);
    let key = secret(
        m,
        h,
        CKM_GENERIC_SECRET_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bool(CKA_TOKEN, true)
            .bool(CKA_SIGN, true)
            .bytes(CKA_LABEL, b"forked"),
    );
    let mac = sign(m, h, mech(CKM_SHA256_HMAC), key, b"data").unwrap();
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bytes(CKA_LABEL, b"parent's");
    let mut so = 0;
    assert_eq!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut so)), CKR_OK);
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // The child reports each check in its exit code: 0 when all hold, else the number
        // of the first that failed.
        let info = |h| {
            let mut si: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
            ck!(m, C_GetSessionInfo(h, &mut si))
        };
        let checks: [&dyn Fn() -> bool; 7] = [
            &|| slot_count(m) == Err(CKR_CRYPTOKI_NOT_INITIALIZED),
            &|| info(h) == CKR_CRYPTOKI_NOT_INITIALIZED,
            &|| initialize(m) == CKR_OK,
            &|| slot_count(m) == Ok(1),
            &|| info(h) == CKR_SESSION_HANDLE_INVALID,
            // The child logs in for itself and uses the token key from the store.
            &|| {
                let c = open(m, 0, true);
                if login(m, c, CKU_USER, PIN) != CKR_OK {
                    return false;
                }
                let found = find(m, c, &mut Template::new().bytes(CKA_LABEL, b"forked"));
                found.len() == 1
                    && sign(m, c, mech(CKM_SHA256_HMAC), found[0], b"data").ok()
                        == Some(mac.clone())
            },
            &|| {
                find(
                    m,
                    open(m, 0, false),
                    &mut Template::new().bytes(CKA_LABEL, b"parent's"),
                )
                .is_empty()
            },
        ];
        let code = checks
            .iter()
            .position(|c| !c())
            .map(|i| i as i32 + 1)
            .unwrap_or(0);
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "the child crashed");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "child check #{} failed",
        libc::WEXITSTATUS(status)
    );
    // The parent is unaffected: same session, same login, same objects.
    assert_eq!(slot_count(m), Ok(1));
    let mut si: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(ck!(m, C_GetSessionInfo(h, &mut si)), CKR_OK);
    assert_eq!(si.state, CKS_RW_USER_FUNCTIONS);
    assert_eq!(get_attr(m, h, so, CKA_LABEL).unwrap(), b"parent's");
    assert_eq!(
        sign(m, h, mech(CKM_SHA256_HMAC), key, b"data").unwrap(),
        mac
    );
    assert_eq!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
}

#[test]
fn bad_configuration_fails_cleanly_and_reserved_path_wins() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = module();
    let _ = ck!(m, C_Finalize(std::ptr::null_mut()));
    let dir = write_config(1);
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[slot]]\nlabel = \"x\"\nbackend = \"soft\"\npath = \"/tmp/x\"\nunknown_key = 1\n",
    )
    .unwrap();
    std::env::set_var("HSMUX_CONFIG", &bad);
    assert_eq!(initialize(m), CKR_GENERAL_ERROR);
    assert_eq!(
        slot_count(m),
        Err(CKR_CRYPTOKI_NOT_INITIALIZED),
        "nothing half-started"
    );
    // A config path in pReserved wins over HSMUX_CONFIG.
    let good = dir.join("hsmux.toml");
    let mut path = good.to_str().unwrap().as_bytes().to_vec();
    path.push(0);
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: path.as_mut_ptr() as *mut _,
    };
    assert_eq!(ck!(m, C_Initialize(&mut args as *mut _ as *mut _)), CKR_OK);
    assert_eq!(slot_count(m), Ok(1));
    assert_eq!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
    // Half the mutex callbacks is an argument error.
    extern "C" fn create(_: *mut *mut std::ffi::c_void) -> CK_RV {
        CKR_OK
    }
    args.CreateMutex = Some(create);
    assert_eq!(
        ck!(m, C_Initialize(&mut args as *mut _ as *mut _)),
        CKR_ARGUMENTS_BAD
    );
    std::env::set_var("HSMUX_CONFIG", &good);
}

#[test]
fn damaged_store_files_are_reported_and_left_alone() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = module();
    let _ = ck!(m, C_Finalize(std::ptr::null_mut()));
    let dir = write_config(2);
    assert_eq!(initialize(m), CKR_OK);
    init_slot(m, 0);
    init_slot(m, 1);
    let h = open(m, 1, true);
    assert_eq!(login(m, h, CKU_USER, PIN), CKR_OK);
    for label in [&b"one"[..], b"two"] {
        let mut t = Template::new()
            .ulong(CKA_CLASS, CKO_DATA)
            .bool(CKA_TOKEN, true)
            .bool(CKA_PRIVATE, false)
            .bytes(CKA_LABEL, label);
        let mut o = 0;
        assert_eq!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut o)), CKR_OK);
    }
    assert_eq!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
    // Slot 0: token.json replaced by garbage. Slot 1: one object file flipped.
    let meta = dir.join("t0/token.json");
    std::fs::write(&meta, b"{ not json").unwrap();
    let obj = std::fs::read_dir(dir.join("t1/objects"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&obj).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&obj, &bytes).unwrap();
    assert_eq!(
        initialize(m),
        CKR_OK,
        "one damaged slot does not stop the module"
    );
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(ck!(m, C_GetTokenInfo(0, &mut ti)), CKR_DEVICE_ERROR);
    let mut label = [b' '; 32];
    assert_eq!(
        ck!(
            m,
            C_InitToken(0, SO_PIN.as_ptr() as *mut _, 8, label.as_mut_ptr())
        ),
        CKR_DEVICE_ERROR
    );
    assert_eq!(
        std::fs::read(&meta).unwrap(),
        b"{ not json",
        "the damaged file is not overwritten"
    );
    assert_eq!(ck!(m, C_GetTokenInfo(1, &mut ti)), CKR_OK);
    let h = open(m, 1, false);
    assert_eq!(
        find(m, h, &mut Template::new().ulong(CKA_CLASS, CKO_DATA)).len(),
        1,
        "the intact object is still there"
    );
    assert_eq!(
        std::fs::read(&obj).unwrap(),
        bytes,
        "the damaged object file is left as it was"
    );
    assert_eq!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
}

#[test]
fn token_keys_of_every_kind_survive_a_restart() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let m = module();
    let _ = ck!(m, C_Finalize(std::ptr::null_mut()));
    write_config(1);
    assert_eq!(initialize(m), CKR_OK);
    let h = user_session(m, 0);
    let msg = b"signed before and after the restart";
    let pairs = [
        (
            CKM_EC_KEY_PAIR_GEN,
            P384_PARAMS,
            CKM_ECDSA_SHA384,
            &b"ec384"[..],
        ),
        (CKM_EC_KEY_PAIR_GEN, P256_PARAMS, CKM_ECDSA_SHA256, b"ec256"),
        (
            CKM_EC_EDWARDS_KEY_PAIR_GEN,
            ED25519_PARAMS,
            CKM_EDDSA,
            b"ed25519",
        ),
    ];
    let mut points = Vec::new();
    for (gen, params, _, id) in pairs {
        let (p, _) = keypair(
            m,
            h,
            gen,
            Template::new().bytes(CKA_EC_PARAMS, params),
            Template::new(),
            id,
        );
        points.push(get_attr(m, h, p, CKA_EC_POINT).unwrap());
    }
    let (rp, _) = keypair(
        m,
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        Template::new().ulong(CKA_MODULUS_BITS, 2048),
        Template::new(),
        b"rsa",
    );
    let modulus = get_attr(m, h, rp, CKA_MODULUS).unwrap();
    let hmac = secret(
        m,
        h,
        CKM_GENERIC_SECRET_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bool(CKA_TOKEN, true)
            .bool(CKA_SIGN, true)
            .bytes(CKA_ID, b"hmac"),
    );
    let mac = sign(m, h, mech(CKM_SHA256_HMAC), hmac, msg).unwrap();
    assert_eq!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);

    assert_eq!(initialize(m), CKR_OK);
    let h = open(m, 0, true);
    // Before login: public keys are found (consumers list them first), private ones are not.
    let by = |id: &[u8], class| {
        find(
            m,
            h,
            &mut Template::new().bytes(CKA_ID, id).ulong(CKA_CLASS, class),
        )
    };
    for (i, (_, _, _, id)) in pairs.iter().enumerate() {
        let public = by(id, CKO_PUBLIC_KEY);
        assert_eq!(public.len(), 1, "public key {:?} before login", id);
        assert_eq!(get_attr(m, h, public[0], CKA_EC_POINT).unwrap(), points[i]);
        assert!(
            by(id, CKO_PRIVATE_KEY).is_empty(),
            "private key hidden before login"
        );
    }
    assert_eq!(
        get_attr(m, h, by(b"rsa", CKO_PUBLIC_KEY)[0], CKA_MODULUS).unwrap(),
        modulus
    );
    assert_eq!(login(m, h, CKU_USER, PIN), CKR_OK);
    for (_, _, sm, id) in pairs {
        let private = by(id, CKO_PRIVATE_KEY);
        assert_eq!(private.len(), 1);
        let public = by(id, CKO_PUBLIC_KEY)[0];
        let sig = sign(m, h, mech(sm), private[0], msg).unwrap();
        assert_eq!(
            verify(m, h, mech(sm), public, msg, &sig),
            CKR_OK,
            "{:?} signs after the restart",
            String::from_utf8_lossy(id)
        );
        assert_eq!(
            get_attr(m, h, private[0], CKA_VALUE),
            Err(CKR_ATTRIBUTE_SENSITIVE),
            "still sensitive after the restart"
        );
    }
    let private = by(b"rsa", CKO_PRIVATE_KEY)[0];
    let sig = sign(m, h, mech(CKM_SHA256_RSA_PKCS), private, msg).unwrap();
    assert_eq!(
        verify(
            m,
            h,
            mech(CKM_SHA256_RSA_PKCS),
            by(b"rsa", CKO_PUBLIC_KEY)[0],
            msg,
            &sig
        ),
        CKR_OK
    );
    let hmac = by(b"hmac", CKO_SECRET_KEY)[0];
    assert_eq!(sign(m, h, mech(CKM_SHA256_HMAC), hmac, msg).unwrap(), mac);
    assert_eq!(get_attr(m, h, hmac, CKA_LOCAL).unwrap(), vec![1]);
    assert_eq!(
        get_attr(m, h, hmac, CKA_KEY_GEN_MECHANISM).unwrap(),
        CKM_GENERIC_SECRET_KEY_GEN.to_ne_bytes()
    );
    assert_eq!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
}
