//! PKCS#11 semantics of libhsmux.so seen through its C ABI: slots and tokens, sessions and
//! login, objects and attribute templates, operation state. Each test owns one slot of the
//! shared module, so they run in parallel.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;

#[test]
fn function_list_is_complete_and_interfaces_are_offered() {
    let m = shared();
    assert_eq!((m.f.version.major, m.f.version.minor), (2, 40));
    // Every entry of the 2.40 table is present (the struct is version + 68 pointers).
    let n = std::mem::size_of::<CK_FUNCTION_LIST>() / std::mem::size_of::<usize>();
    let words: &[usize] = unsafe { std::slice::from_raw_parts(m.f as *const _ as *const usize, n) };
    assert_eq!(n, 69);
    assert!(
        words[1..].iter().all(|w| *w != 0),
        "a NULL entry in the function list"
    );
    let mut info: CK_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(ck!(m, C_GetInfo(&mut info)), CKR_OK);
    assert_eq!(&info.manufacturerID[..5], b"hsmux");
    assert_eq!(initialize(m), CKR_CRYPTOKI_ALREADY_INITIALIZED);
}

#[test]
fn slots_and_token_info() {
    let m = shared();
    let mut n: CK_ULONG = 0;
    assert_eq!(
        ck!(m, C_GetSlotList(1, std::ptr::null_mut(), &mut n)),
        CKR_OK
    );
    assert_eq!(n, SHARED_SLOTS as CK_ULONG);
    let mut small = [0 as CK_SLOT_ID; 3];
    let mut n3: CK_ULONG = 3;
    assert_eq!(
        ck!(m, C_GetSlotList(1, small.as_mut_ptr(), &mut n3)),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(n3, SHARED_SLOTS as CK_ULONG);
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(ck!(m, C_GetTokenInfo(1, &mut ti)), CKR_OK);
    assert_eq!(
        ti.flags & CKF_TOKEN_INITIALIZED,
        0,
        "a new soft token starts uninitialized"
    );
    assert_eq!(&ti.label[..2], b"t1");
    assert!(
        ti.label[2..].iter().all(|b| *b == b' '),
        "labels are blank padded"
    );
    let mut h = 0;
    assert_eq!(
        ck!(
            m,
            C_OpenSession(1, CKF_SERIAL_SESSION, std::ptr::null_mut(), None, &mut h)
        ),
        CKR_TOKEN_NOT_RECOGNIZED
    );
    init_slot(m, 1);
    assert_eq!(ck!(m, C_GetTokenInfo(1, &mut ti)), CKR_OK);
    assert_ne!(ti.flags & CKF_TOKEN_INITIALIZED, 0);
    assert_ne!(ti.flags & CKF_USER_PIN_INITIALIZED, 0);
    assert_eq!(&ti.label[..4], b"test");
    assert_eq!(ck!(m, C_GetTokenInfo(99, &mut ti)), CKR_SLOT_ID_INVALID);
    // Re-initialization needs the SO PIN and no open session.
    let s = open(m, 1, false);
    let mut label = [b' '; 32];
    assert_eq!(
        ck!(
            m,
            C_InitToken(1, SO_PIN.as_ptr() as *mut _, 8, label.as_mut_ptr())
        ),
        CKR_SESSION_EXISTS
    );
    assert_eq!(ck!(m, C_CloseSession(s)), CKR_OK);
    assert_eq!(
        ck!(
            m,
            C_InitToken(1, b"87654321".as_ptr() as *mut _, 8, label.as_mut_ptr())
        ),
        CKR_PIN_INCORRECT
    );
    // Mechanisms: the list tells the truth about what C_GetMechanismInfo knows.
    let mut mn: CK_ULONG = 0;
    assert_eq!(
        ck!(m, C_GetMechanismList(1, std::ptr::null_mut(), &mut mn)),
        CKR_OK
    );
    let mut mechs = vec![0 as CK_MECHANISM_TYPE; mn as usize];
    assert_eq!(
        ck!(m, C_GetMechanismList(1, mechs.as_mut_ptr(), &mut mn)),
        CKR_OK
    );
    for mt in [
        CKM_AES_GCM,
        CKM_ECDSA,
        CKM_RSA_PKCS_OAEP,
        CKM_SHA256_HMAC,
        CKM_EDDSA,
        CKM_ECDH1_DERIVE,
    ] {
        assert!(mechs.contains(&mt), "0x{mt:x} listed");
    }
    let mut mi: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
    for mt in &mechs {
        assert_eq!(ck!(m, C_GetMechanismInfo(1, *mt, &mut mi)), CKR_OK);
    }
    assert_eq!(
        ck!(m, C_GetMechanismInfo(1, CKM_RSA_PKCS_OAEP, &mut mi)),
        CKR_OK
    );
    assert_eq!((mi.ulMinKeySize, mi.ulMaxKeySize), (2048, 4096));
    assert_eq!(
        ck!(m, C_GetMechanismInfo(1, 0x7fff_fff0, &mut mi)),
        CKR_MECHANISM_INVALID
    );
}

#[test]
fn login_state_is_shared_by_the_sessions_of_a_slot() {
    let m = shared();
    init_slot(m, 2);
    let a = open(m, 2, true);
    let b = open(m, 2, false);
    let state = |h| {
        let mut si: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
        assert_eq!(ck!(m, C_GetSessionInfo(h, &mut si)), CKR_OK);
        si.state
    };
    assert_eq!(
        (state(a), state(b)),
        (CKS_RW_PUBLIC_SESSION, CKS_RO_PUBLIC_SESSION)
    );
    assert_eq!(ck!(m, C_Logout(a)), CKR_USER_NOT_LOGGED_IN);
    assert_eq!(login(m, a, CKU_SO, SO_PIN), CKR_SESSION_READ_ONLY_EXISTS);
    assert_eq!(login(m, a, CKU_USER, b"9999"), CKR_PIN_INCORRECT);
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(ck!(m, C_GetTokenInfo(2, &mut ti)), CKR_OK);
    assert_ne!(
        ti.flags & CKF_USER_PIN_COUNT_LOW,
        0,
        "a wrong PIN shows in the token flags"
    );
    assert_eq!(login(m, a, CKU_USER, PIN), CKR_OK);
    assert_eq!(ck!(m, C_GetTokenInfo(2, &mut ti)), CKR_OK);
    assert_eq!(
        ti.flags & CKF_USER_PIN_COUNT_LOW,
        0,
        "a right PIN clears it"
    );
    assert_eq!(
        (state(a), state(b)),
        (CKS_RW_USER_FUNCTIONS, CKS_RO_USER_FUNCTIONS),
        "login covers every session"
    );
    assert_eq!(login(m, b, CKU_USER, PIN), CKR_USER_ALREADY_LOGGED_IN);
    assert_eq!(
        login(m, b, CKU_SO, SO_PIN),
        CKR_USER_ANOTHER_ALREADY_LOGGED_IN
    );
    assert_eq!(login(m, b, 77, PIN), CKR_USER_TYPE_INVALID);
    // C_SetPIN changes the user PIN; the old one stops working.
    assert_eq!(
        ck!(
            m,
            C_SetPIN(a, PIN.as_ptr() as *mut _, 4, b"5678".as_ptr() as *mut _, 4)
        ),
        CKR_OK
    );
    assert_eq!(
        ck!(
            m,
            C_SetPIN(b, PIN.as_ptr() as *mut _, 4, b"5678".as_ptr() as *mut _, 4)
        ),
        CKR_SESSION_READ_ONLY
    );
    assert_eq!(ck!(m, C_Logout(b)), CKR_OK);
    assert_eq!(state(a), CKS_RW_PUBLIC_SESSION);
    assert_eq!(login(m, a, CKU_USER, PIN), CKR_PIN_INCORRECT);
    assert_eq!(login(m, a, CKU_USER, b"5678"), CKR_OK);
    assert_eq!(
        ck!(
            m,
            C_SetPIN(
                a,
                b"5678".as_ptr() as *mut _,
                4,
                b"12".as_ptr() as *mut _,
                2
            )
        ),
        CKR_PIN_LEN_RANGE
    );
    // Closing every session logs the application out.
    assert_eq!(ck!(m, C_CloseAllSessions(2)), CKR_OK);
    assert_eq!(
        ck!(
            m,
            C_GetSessionInfo(a, &mut std::mem::zeroed::<CK_SESSION_INFO>())
        ),
        CKR_SESSION_HANDLE_INVALID
    );
    let c = open(m, 2, true);
    assert_eq!(state(c), CKS_RW_PUBLIC_SESSION);
    // An RO session cannot be opened while the SO is logged in.
    assert_eq!(login(m, c, CKU_SO, SO_PIN), CKR_OK);
    let mut h = 0;
    assert_eq!(
        ck!(
            m,
            C_OpenSession(2, CKF_SERIAL_SESSION, std::ptr::null_mut(), None, &mut h)
        ),
        CKR_SESSION_READ_WRITE_SO_EXISTS
    );
    assert_eq!(
        ck!(m, C_OpenSession(2, 0, std::ptr::null_mut(), None, &mut h)),
        CKR_SESSION_PARALLEL_NOT_SUPPORTED
    );
    assert_eq!(ck!(m, C_CloseSession(c)), CKR_OK);
    assert_eq!(ck!(m, C_CloseSession(c)), CKR_SESSION_HANDLE_INVALID);
}

#[test]
fn objects_visibility_and_lifetime() {
    let m = shared();
    let h = user_session(m, 3);
    let mut data = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_TOKEN, true)
        .bytes(CKA_LABEL, b"public-data")
        .bytes(CKA_APPLICATION, b"app")
        .bytes(CKA_VALUE, b"hello");
    let mut o = 0;
    assert_eq!(
        ck!(m, C_CreateObject(h, data.ptr(), data.len(), &mut o)),
        CKR_OK
    );
    let mut secret = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_TOKEN, true)
        .bool(CKA_PRIVATE, true)
        .bytes(CKA_LABEL, b"private-data")
        .bytes(CKA_APPLICATION, b"app");
    let mut p = 0;
    assert_eq!(
        ck!(m, C_CreateObject(h, secret.ptr(), secret.len(), &mut p)),
        CKR_OK
    );
    let mut session_obj = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bytes(CKA_APPLICATION, b"app");
    let s2 = open(m, 3, true);
    let mut so = 0;
    assert_eq!(
        ck!(
            m,
            C_CreateObject(s2, session_obj.ptr(), session_obj.len(), &mut so)
        ),
        CKR_OK
    );
    let mut by_app = Template::new().bytes(CKA_APPLICATION, b"app");
    assert_eq!(find(m, h, &mut by_app).len(), 3);
    assert_eq!(ck!(m, C_CloseSession(s2)), CKR_OK);
    assert_eq!(
        find(m, h, &mut by_app).len(),
        2,
        "a session object goes with its session"
    );
    assert_eq!(
        get_attr(m, h, so, CKA_CLASS),
        Err(CKR_OBJECT_HANDLE_INVALID)
    );
    assert_eq!(ck!(m, C_Logout(h)), CKR_OK);
    assert_eq!(
        find(m, h, &mut by_app),
        vec![o],
        "private objects are hidden before login"
    );
    assert_eq!(get_attr(m, h, p, CKA_LABEL), Err(CKR_OBJECT_HANDLE_INVALID));
    assert_eq!(login(m, h, CKU_USER, PIN), CKR_OK);
    assert_eq!(
        get_attr(m, h, p, CKA_LABEL).unwrap(),
        b"private-data",
        "the same handle after a new login"
    );
    // A read-only session cannot make token objects.
    let ro = open(m, 3, false);
    let mut t2 = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_TOKEN, true);
    let mut x = 0;
    assert_eq!(
        ck!(m, C_CreateObject(ro, t2.ptr(), t2.len(), &mut x)),
        CKR_SESSION_READ_ONLY
    );
    assert_eq!(ck!(m, C_DestroyObject(ro, o)), CKR_SESSION_READ_ONLY);
    // Copy, then destroy.
    let mut ct = Template::new().bytes(CKA_LABEL, b"copy");
    let mut c = 0;
    assert_eq!(
        ck!(m, C_CopyObject(h, o, ct.ptr(), ct.len(), &mut c)),
        CKR_OK
    );
    assert_eq!(get_attr(m, h, c, CKA_VALUE).unwrap(), b"hello");
    assert_eq!(ck!(m, C_DestroyObject(h, c)), CKR_OK);
    assert_eq!(ck!(m, C_DestroyObject(h, c)), CKR_OBJECT_HANDLE_INVALID);
    // Template errors.
    let mut no_class = Template::new().bytes(CKA_LABEL, b"x");
    assert_eq!(
        ck!(m, C_CreateObject(h, no_class.ptr(), no_class.len(), &mut x)),
        CKR_TEMPLATE_INCOMPLETE
    );
    let mut bad_bool = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bytes(CKA_TOKEN, &[1, 1]);
    assert_eq!(
        ck!(m, C_CreateObject(h, bad_bool.ptr(), bad_bool.len(), &mut x)),
        CKR_ATTRIBUTE_VALUE_INVALID
    );
    let mut foreign = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bytes(CKA_MODULUS, &[1]);
    assert_eq!(
        ck!(m, C_CreateObject(h, foreign.ptr(), foreign.len(), &mut x)),
        CKR_ATTRIBUTE_TYPE_INVALID
    );
    let mut no_type = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .bytes(CKA_VALUE, &[0; 16]);
    assert_eq!(
        ck!(m, C_CreateObject(h, no_type.ptr(), no_type.len(), &mut x)),
        CKR_TEMPLATE_INCOMPLETE
    );
    // A second find while one is active.
    assert_eq!(
        ck!(m, C_FindObjectsInit(h, by_app.ptr(), by_app.len())),
        CKR_OK
    );
    assert_eq!(
        ck!(m, C_FindObjectsInit(h, by_app.ptr(), by_app.len())),
        CKR_OPERATION_ACTIVE
    );
    assert_eq!(ck!(m, C_FindObjectsFinal(h)), CKR_OK);
    assert_eq!(ck!(m, C_FindObjectsFinal(h)), CKR_OPERATION_NOT_INITIALIZED);
}

#[test]
fn get_attribute_value_follows_the_spec_buffer_rules() {
    let m = shared();
    let h = user_session(m, 4);
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_SENSITIVE, true)
        .bytes(CKA_LABEL, b"aes-label")
        .bytes(CKA_VALUE, &[7u8; 32]);
    let mut k = 0;
    assert_eq!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut k)), CKR_OK);
    let mut small = [0u8; 3];
    let mut label_buf = [0u8; 64];
    let mut attrs = [
        CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        },
        CK_ATTRIBUTE {
            type_: CKA_VALUE,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        },
        CK_ATTRIBUTE {
            type_: CKA_MODULUS,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        },
        CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: small.as_mut_ptr() as *mut _,
            ulValueLen: 3,
        },
        CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: label_buf.as_mut_ptr() as *mut _,
            ulValueLen: 64,
        },
    ];
    let rv = ck!(
        m,
        C_GetAttributeValue(h, k, attrs.as_mut_ptr(), attrs.len() as CK_ULONG)
    );
    assert!(
        matches!(
            rv,
            CKR_ATTRIBUTE_SENSITIVE | CKR_ATTRIBUTE_TYPE_INVALID | CKR_BUFFER_TOO_SMALL
        ),
        "rv 0x{rv:x}"
    );
    assert_eq!(attrs[0].ulValueLen, 9, "NULL pValue answers the length");
    assert_eq!(attrs[1].ulValueLen, CK_UNAVAILABLE_INFORMATION, "sensitive");
    assert_eq!(
        attrs[2].ulValueLen, CK_UNAVAILABLE_INFORMATION,
        "not an attribute of a secret key"
    );
    assert_eq!(attrs[3].ulValueLen, CK_UNAVAILABLE_INFORMATION, "too small");
    assert_eq!(attrs[4].ulValueLen, 9);
    assert_eq!(
        &label_buf[..9],
        b"aes-label",
        "the rest of the template is still processed"
    );
    assert_eq!(get_attr(m, h, k, CKA_VALUE), Err(CKR_ATTRIBUTE_SENSITIVE));
    assert_eq!(
        get_attr(m, h, k, CKA_VALUE_LEN).unwrap(),
        32u64.to_ne_bytes()
    );
    // C_SetAttributeValue: sensitive is one-way, unmodifiable objects refuse changes.
    let mut unsens = Template::new().bool(CKA_SENSITIVE, false);
    assert_eq!(
        ck!(m, C_SetAttributeValue(h, k, unsens.ptr(), unsens.len())),
        CKR_ATTRIBUTE_READ_ONLY
    );
    let mut relabel = Template::new().bytes(CKA_LABEL, b"renamed");
    assert_eq!(
        ck!(m, C_SetAttributeValue(h, k, relabel.ptr(), relabel.len())),
        CKR_OK
    );
    assert_eq!(get_attr(m, h, k, CKA_LABEL).unwrap(), b"renamed");
    let mut frozen = Template::new().bool(CKA_MODIFIABLE, false);
    assert_eq!(
        ck!(m, C_SetAttributeValue(h, k, frozen.ptr(), frozen.len())),
        CKR_OK
    );
    assert_eq!(
        ck!(m, C_SetAttributeValue(h, k, relabel.ptr(), relabel.len())),
        CKR_ACTION_PROHIBITED
    );
}

#[test]
fn operation_state_and_length_queries() {
    let m = shared();
    let h = user_session(m, 5);
    let key = secret(
        m,
        h,
        CKM_GENERIC_SECRET_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bool(CKA_SIGN, true),
    );
    let data = b"some data";
    let mut n: CK_ULONG = 0;
    assert_eq!(
        ck!(
            m,
            C_Sign(h, data.as_ptr() as *mut _, 9, std::ptr::null_mut(), &mut n)
        ),
        CKR_OPERATION_NOT_INITIALIZED
    );
    let mut mc = mech(CKM_SHA256_HMAC);
    assert_eq!(ck!(m, C_SignInit(h, &mut mc, key)), CKR_OK);
    assert_eq!(ck!(m, C_SignInit(h, &mut mc, key)), CKR_OPERATION_ACTIVE);
    assert_eq!(
        ck!(
            m,
            C_Sign(h, data.as_ptr() as *mut _, 9, std::ptr::null_mut(), &mut n)
        ),
        CKR_OK
    );
    assert_eq!(
        n, 32,
        "NULL output answers the length and keeps the operation"
    );
    let mut small = [0u8; 8];
    n = 8;
    assert_eq!(
        ck!(
            m,
            C_Sign(h, data.as_ptr() as *mut _, 9, small.as_mut_ptr(), &mut n)
        ),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(n, 32);
    let mut mac = [0u8; 32];
    assert_eq!(
        ck!(
            m,
            C_Sign(h, data.as_ptr() as *mut _, 9, mac.as_mut_ptr(), &mut n)
        ),
        CKR_OK,
        "still alive after BUFFER_TOO_SMALL"
    );
    assert_eq!(
        ck!(
            m,
            C_Sign(h, data.as_ptr() as *mut _, 9, mac.as_mut_ptr(), &mut n)
        ),
        CKR_OPERATION_NOT_INITIALIZED,
        "success ends it"
    );
    // An error ends the operation.
    assert_eq!(
        verify(m, h, mech(CKM_SHA256_HMAC), key, data, &[0u8; 31]),
        CKR_SIGNATURE_LEN_RANGE
    );
    assert_eq!(
        ck!(
            m,
            C_Verify(h, data.as_ptr() as *mut _, 9, mac.as_mut_ptr(), 32)
        ),
        CKR_OPERATION_NOT_INITIALIZED
    );
    assert_eq!(verify(m, h, mech(CKM_SHA256_HMAC), key, data, &mac), CKR_OK);
    let mut bad = mac;
    bad[0] ^= 1;
    assert_eq!(
        verify(m, h, mech(CKM_SHA256_HMAC), key, data, &bad),
        CKR_SIGNATURE_INVALID
    );
    // A key without CKA_ENCRYPT, a mechanism the key cannot do, a handle of nothing.
    assert_eq!(
        encrypt(m, h, mech(CKM_AES_ECB), key, &[0; 16]),
        Err(CKR_KEY_TYPE_INCONSISTENT)
    );
    let no_enc = secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 16)
            .bool(CKA_ENCRYPT, false),
    );
    assert_eq!(
        encrypt(m, h, mech(CKM_AES_ECB), no_enc, &[0; 16]),
        Err(CKR_KEY_FUNCTION_NOT_PERMITTED)
    );
    let mut mc = mech(CKM_SHA256_HMAC);
    assert_eq!(
        ck!(m, C_SignInit(h, &mut mc, 0xdead)),
        CKR_KEY_HANDLE_INVALID
    );
    // Multi-part then single-part is refused; 3.0 lets a NULL mechanism cancel.
    assert_eq!(ck!(m, C_SignInit(h, &mut mc, key)), CKR_OK);
    assert_eq!(ck!(m, C_SignUpdate(h, data.as_ptr() as *mut _, 9)), CKR_OK);
    assert_eq!(ck!(m, C_SignInit(h, std::ptr::null_mut(), key)), CKR_OK);
    assert_eq!(
        ck!(m, C_SignUpdate(h, data.as_ptr() as *mut _, 9)),
        CKR_OPERATION_NOT_INITIALIZED
    );
    // Random numbers.
    let mut r1 = [0u8; 32];
    let mut r2 = [0u8; 32];
    assert_eq!(ck!(m, C_GenerateRandom(h, r1.as_mut_ptr(), 32)), CKR_OK);
    assert_eq!(ck!(m, C_GenerateRandom(h, r2.as_mut_ptr(), 32)), CKR_OK);
    assert_ne!(r1, r2);
    assert_eq!(
        ck!(m, C_GenerateRandom(h, std::ptr::null_mut(), 32)),
        CKR_ARGUMENTS_BAD
    );
}

#[test]
fn bad_arguments_are_refused_not_crashed_on() {
    let m = shared();
    let h = user_session(m, 6);
    assert_eq!(
        ck!(
            m,
            C_GetSlotList(1, std::ptr::null_mut(), std::ptr::null_mut())
        ),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        ck!(m, C_GetTokenInfo(6, std::ptr::null_mut())),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        ck!(
            m,
            C_OpenSession(
                6,
                CKF_SERIAL_SESSION,
                std::ptr::null_mut(),
                None,
                std::ptr::null_mut()
            )
        ),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        ck!(m, C_Login(h, CKU_USER, std::ptr::null_mut(), 4)),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        ck!(m, C_FindObjectsInit(h, std::ptr::null_mut(), 3)),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        ck!(
            m,
            C_Encrypt(
                h,
                std::ptr::null_mut(),
                4,
                std::ptr::null_mut(),
                std::ptr::null_mut()
            )
        ),
        CKR_ARGUMENTS_BAD
    );
    // A GCM parameter of the wrong size.
    let key = secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        Template::new().ulong(CKA_VALUE_LEN, 32),
    );
    let mut junk = [0u8; 3];
    let mut mc = CK_MECHANISM {
        mechanism: CKM_AES_GCM,
        pParameter: junk.as_mut_ptr() as *mut _,
        ulParameterLen: 3,
    };
    assert_eq!(
        ck!(m, C_EncryptInit(h, &mut mc, key)),
        CKR_MECHANISM_PARAM_INVALID
    );
    assert_eq!(
        ck!(m, C_GetOperationState(h, std::ptr::null_mut(), &mut 0)),
        CKR_FUNCTION_NOT_SUPPORTED
    );
    assert_eq!(
        ck!(
            m,
            C_GetSessionInfo(0xffff_ffff, &mut std::mem::zeroed::<CK_SESSION_INFO>())
        ),
        CKR_SESSION_HANDLE_INVALID
    );
}

#[test]
fn threads_share_the_module_safely() {
    let m = shared();
    let h0 = user_session(m, 7);
    let key = secret(
        m,
        h0,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bool(CKA_TOKEN, true),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let m = shared();
                for i in 0..50u32 {
                    let h = open(m, 7, true);
                    let mut iv = [0u8; 12];
                    iv[..4].copy_from_slice(&(t * 1000 + i).to_be_bytes());
                    let mut gcm = CK_GCM_PARAMS {
                        pIv: iv.as_mut_ptr(),
                        ulIvLen: 12,
                        ulIvBits: 96,
                        pAAD: std::ptr::null_mut(),
                        ulAADLen: 0,
                        ulTagBits: 128,
                    };
                    let msg = format!("thread {t} message {i}");
                    let ct = encrypt(m, h, mech_with(CKM_AES_GCM, &mut gcm), key, msg.as_bytes())
                        .unwrap();
                    let pt = decrypt(m, h, mech_with(CKM_AES_GCM, &mut gcm), key, &ct).unwrap();
                    assert_eq!(pt, msg.as_bytes());
                    let mut r = [0u8; 16];
                    assert_eq!(ck!(m, C_GenerateRandom(h, r.as_mut_ptr(), 16)), CKR_OK);
                    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no thread panics");
    }
}
