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
    assert_eq!((mi.ulMinKeySize, mi.ulMaxKeySize), (1024, 4096));
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
    // Each error alone, with its exact code and CK_UNAVAILABLE_INFORMATION.
    let one = |ty, buf: Option<usize>| {
        let mut v = vec![0u8; buf.unwrap_or(0)];
        let mut a = CK_ATTRIBUTE {
            type_: ty,
            pValue: if buf.is_some() {
                v.as_mut_ptr() as *mut _
            } else {
                std::ptr::null_mut()
            },
            ulValueLen: v.len() as CK_ULONG,
        };
        let rv = ck!(m, C_GetAttributeValue(h, k, &mut a, 1));
        (rv, a.ulValueLen)
    };
    assert_eq!(one(CKA_LABEL, None), (CKR_OK, 7));
    assert_eq!(one(CKA_LABEL, Some(7)), (CKR_OK, 7), "an exact fit");
    assert_eq!(
        one(CKA_LABEL, Some(6)),
        (CKR_BUFFER_TOO_SMALL, CK_UNAVAILABLE_INFORMATION)
    );
    assert_eq!(
        one(CKA_MODULUS, None),
        (CKR_ATTRIBUTE_TYPE_INVALID, CK_UNAVAILABLE_INFORMATION)
    );
    assert_eq!(
        one(CKA_VALUE, Some(32)),
        (CKR_ATTRIBUTE_SENSITIVE, CK_UNAVAILABLE_INFORMATION)
    );
    assert_eq!(one(CKA_CLASS, Some(8)), (CKR_OK, 8));
    // A NULL template with a count, a handle of nothing.
    assert_rv!(
        ck!(m, C_GetAttributeValue(h, k, std::ptr::null_mut(), 1)),
        CKR_ARGUMENTS_BAD
    );
    let mut a = CK_ATTRIBUTE {
        type_: CKA_LABEL,
        pValue: std::ptr::null_mut(),
        ulValueLen: 0,
    };
    assert_rv!(
        ck!(m, C_GetAttributeValue(h, 0xdead_beef, &mut a, 1)),
        CKR_OBJECT_HANDLE_INVALID
    );
    // A non-extractable (but not sensitive) key hides its value as well.
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, false)
        .bytes(CKA_VALUE, &[1u8; 20]);
    let mut ne = 0;
    assert_eq!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut ne)), CKR_OK);
    assert_eq!(get_attr(m, h, ne, CKA_VALUE), Err(CKR_ATTRIBUTE_SENSITIVE));
    // Extractable and not sensitive: readable; CKA_SENSITIVE may then go FALSE -> TRUE only.
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bool(CKA_EXTRACTABLE, true)
        .bytes(CKA_VALUE, &[2u8; 20]);
    let mut open_key = 0;
    assert_eq!(
        ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut open_key)),
        CKR_OK
    );
    assert_eq!(get_attr(m, h, open_key, CKA_VALUE).unwrap(), vec![2u8; 20]);
    let mut sens = Template::new().bool(CKA_SENSITIVE, true);
    assert_rv!(
        ck!(m, C_SetAttributeValue(h, open_key, sens.ptr(), sens.len())),
        CKR_OK
    );
    assert_eq!(
        get_attr(m, h, open_key, CKA_VALUE),
        Err(CKR_ATTRIBUTE_SENSITIVE)
    );
    assert_eq!(
        get_attr(m, h, open_key, CKA_ALWAYS_SENSITIVE).unwrap(),
        vec![0],
        "an imported key was never always sensitive"
    );
    let mut unextract = Template::new().bool(CKA_EXTRACTABLE, false);
    assert_rv!(
        ck!(
            m,
            C_SetAttributeValue(h, open_key, unextract.ptr(), unextract.len())
        ),
        CKR_OK,
        "CKA_EXTRACTABLE may go TRUE -> FALSE"
    );
    let mut extract = Template::new().bool(CKA_EXTRACTABLE, true);
    assert_rv!(
        ck!(
            m,
            C_SetAttributeValue(h, open_key, extract.ptr(), extract.len())
        ),
        CKR_ATTRIBUTE_READ_ONLY
    );
}

#[test]
fn modifiable_is_fixed_at_creation_and_enforced() {
    let m = shared();
    let h = user_session(m, 8);
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bytes(CKA_VALUE, &[7u8; 16]);
    let mut k = 0;
    assert_eq!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut k)), CKR_OK);
    let mut relabel = Template::new().bytes(CKA_LABEL, b"renamed");
    // The copy is made first, while the original is still modifiable either way.
    let mut to_frozen = Template::new().bool(CKA_MODIFIABLE, false);
    let mut c = 0;
    assert_rv!(
        ck!(
            m,
            C_CopyObject(h, k, to_frozen.ptr(), to_frozen.len(), &mut c)
        ),
        CKR_OK,
        "C_CopyObject may make the copy unmodifiable"
    );
    assert_rv!(
        ck!(m, C_SetAttributeValue(h, c, relabel.ptr(), relabel.len())),
        CKR_ACTION_PROHIBITED
    );
    assert_rv!(
        ck!(m, C_DestroyObject(h, c)),
        CKR_OK,
        "unmodifiable is still destroyable"
    );
    // CKA_MODIFIABLE is given at creation (or changed by C_CopyObject), not by
    // C_SetAttributeValue (PKCS#11 §4.4; SoftHSM agrees).
    let mut frozen = Template::new().bool(CKA_MODIFIABLE, false);
    assert_rv!(
        ck!(m, C_SetAttributeValue(h, k, frozen.ptr(), frozen.len())),
        CKR_ATTRIBUTE_READ_ONLY
    );
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_MODIFIABLE, false)
        .bytes(CKA_LABEL, b"frozen");
    let mut d = 0;
    assert_eq!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut d)), CKR_OK);
    assert_rv!(
        ck!(m, C_SetAttributeValue(h, d, relabel.ptr(), relabel.len())),
        CKR_ACTION_PROHIBITED
    );
    assert_eq!(get_attr(m, h, d, CKA_LABEL).unwrap(), b"frozen");
    assert_rv!(
        ck!(m, C_SetAttributeValue(h, k, relabel.ptr(), relabel.len())),
        CKR_OK,
        "the original stays modifiable"
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

fn token_info(m: &Module, slot: CK_SLOT_ID) -> CK_TOKEN_INFO {
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(ck!(m, C_GetTokenInfo(slot, &mut ti)), CKR_OK);
    ti
}

fn state(m: &Module, h: CK_SESSION_HANDLE) -> Result<CK_STATE, CK_RV> {
    let mut si: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    match ck!(m, C_GetSessionInfo(h, &mut si)) {
        CKR_OK => Ok(si.state),
        rv => Err(rv),
    }
}

#[test]
fn token_info_fields_are_what_consumers_rely_on() {
    let m = shared();
    init_slot(m, 9);
    let a = token_info(m, 9);
    // OpenBao's seal wants ulMaxSessionCount 0/infinite or ulMaxRwSessionCount >= 2.
    assert_eq!(a.ulMaxSessionCount, CK_EFFECTIVELY_INFINITE);
    assert_eq!(a.ulMaxRwSessionCount, CK_EFFECTIVELY_INFINITE);
    assert_eq!((a.ulSessionCount, a.ulRwSessionCount), (0, 0));
    assert_ne!(a.flags & CKF_RNG, 0);
    assert_ne!(a.flags & CKF_LOGIN_REQUIRED, 0);
    assert_eq!(a.flags & CKF_PROTECTED_AUTHENTICATION_PATH, 0);
    assert_eq!((a.ulMinPinLen, a.ulMaxPinLen), (4, 255));
    for field in [
        &a.manufacturerID[..],
        &a.model[..],
        &a.serialNumber[..],
        &a.label[..],
    ] {
        assert!(
            field.iter().all(|b| b.is_ascii_graphic() || *b == b' '),
            "blank padded text: {:?}",
            String::from_utf8_lossy(field)
        );
    }
    assert!(a.manufacturerID.starts_with(b"hsmux "));
    assert!(a.serialNumber.iter().any(|b| *b != b' '), "a serial number");
    let ro = open(m, 9, false);
    let rw = open(m, 9, true);
    let b = token_info(m, 9);
    assert_eq!((b.ulSessionCount, b.ulRwSessionCount), (2, 1));
    assert_eq!(a.serialNumber, b.serialNumber, "the serial is stable");
    assert_eq!(ck!(m, C_CloseSession(ro)), CKR_OK);
    assert_eq!(ck!(m, C_CloseSession(rw)), CKR_OK);
    // Slot info.
    let mut si: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(ck!(m, C_GetSlotInfo(9, &mut si)), CKR_OK);
    assert_ne!(si.flags & CKF_TOKEN_PRESENT, 0);
    assert_eq!(si.flags & CKF_REMOVABLE_DEVICE, 0);
    assert_rv!(ck!(m, C_GetSlotInfo(999, &mut si)), CKR_SLOT_ID_INVALID);
    // A token label of exactly 32 bytes, and re-initialization keeps the serial number.
    let mut label = *b"exactly thirty-two bytes long!!!";
    assert_rv!(
        ck!(
            m,
            C_InitToken(9, SO_PIN.as_ptr() as *mut _, 8, label.as_mut_ptr())
        ),
        CKR_OK
    );
    let c = token_info(m, 9);
    assert_eq!(&c.label, b"exactly thirty-two bytes long!!!");
    assert_eq!(c.serialNumber, a.serialNumber);
}

#[test]
fn pin_retry_counter_locks_and_the_so_unlocks() {
    let m = shared();
    init_slot(m, 10);
    let h = open(m, 10, true);
    for i in 1..=10u32 {
        let rv = login(m, h, CKU_USER, b"0000");
        assert_rv!(rv, CKR_PIN_INCORRECT, "wrong PIN #{i}");
        let f = token_info(m, 10).flags;
        assert_ne!(f & CKF_USER_PIN_COUNT_LOW, 0, "COUNT_LOW after {i}");
        assert_eq!(
            f & CKF_USER_PIN_FINAL_TRY != 0,
            i == 9,
            "FINAL_TRY after {i} wrong PINs only"
        );
        assert_eq!(f & CKF_USER_PIN_LOCKED != 0, i == 10, "LOCKED after {i}");
        assert_eq!(f & CKF_SO_PIN_COUNT_LOW, 0, "the SO's counter is separate");
    }
    assert_rv!(
        login(m, h, CKU_USER, PIN),
        CKR_PIN_LOCKED,
        "the right PIN no longer works"
    );
    assert_rv!(login(m, h, CKU_USER, b"0000"), CKR_PIN_LOCKED);
    // The SO's own PIN counts separately; C_InitPIN by the SO unlocks the user.
    assert_rv!(login(m, h, CKU_SO, b"00000000"), CKR_PIN_INCORRECT);
    assert_ne!(token_info(m, 10).flags & CKF_SO_PIN_COUNT_LOW, 0);
    assert_rv!(login(m, h, CKU_SO, SO_PIN), CKR_OK);
    assert_eq!(token_info(m, 10).flags & CKF_SO_PIN_COUNT_LOW, 0);
    assert_rv!(ck!(m, C_InitPIN(h, b"2468".as_ptr() as *mut _, 4)), CKR_OK);
    let f = token_info(m, 10).flags;
    assert_eq!(
        f & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED),
        0
    );
    assert_rv!(ck!(m, C_Logout(h)), CKR_OK);
    assert_rv!(login(m, h, CKU_USER, b"2468"), CKR_OK);
}

#[test]
fn init_pin_and_set_pin_rules() {
    let m = shared();
    init_slot(m, 11);
    let rw = open(m, 11, true);
    // C_InitPIN only in the R/W SO state.
    assert_rv!(
        ck!(m, C_InitPIN(rw, b"4321".as_ptr() as *mut _, 4)),
        CKR_USER_NOT_LOGGED_IN
    );
    // C_SetPIN in a R/W public session changes the user PIN.
    assert_rv!(
        ck!(
            m,
            C_SetPIN(rw, PIN.as_ptr() as *mut _, 4, b"4321".as_ptr() as *mut _, 4)
        ),
        CKR_OK
    );
    assert_rv!(login(m, rw, CKU_USER, b"4321"), CKR_OK);
    assert_rv!(ck!(m, C_Logout(rw)), CKR_OK);
    // The SO changes the SO PIN while logged in as SO.
    assert_rv!(login(m, rw, CKU_SO, SO_PIN), CKR_OK);
    assert_rv!(
        ck!(
            m,
            C_SetPIN(
                rw,
                b"00000000".as_ptr() as *mut _,
                8,
                b"87654321".as_ptr() as *mut _,
                8
            )
        ),
        CKR_PIN_INCORRECT
    );
    assert_rv!(
        ck!(
            m,
            C_SetPIN(
                rw,
                SO_PIN.as_ptr() as *mut _,
                8,
                b"87654321".as_ptr() as *mut _,
                8
            )
        ),
        CKR_OK
    );
    assert_rv!(
        ck!(m, C_InitPIN(rw, b"12".as_ptr() as *mut _, 2)),
        CKR_PIN_LEN_RANGE
    );
    let long = [b'7'; 256];
    assert_rv!(
        ck!(m, C_InitPIN(rw, long.as_ptr() as *mut _, 256)),
        CKR_PIN_LEN_RANGE
    );
    assert_rv!(ck!(m, C_InitPIN(rw, PIN.as_ptr() as *mut _, 4)), CKR_OK);
    assert_rv!(ck!(m, C_Logout(rw)), CKR_OK);
    assert_rv!(
        login(m, rw, CKU_SO, SO_PIN),
        CKR_PIN_INCORRECT,
        "the old SO PIN"
    );
    assert_rv!(login(m, rw, CKU_SO, b"87654321"), CKR_OK);
    assert_rv!(ck!(m, C_Logout(rw)), CKR_OK);
    assert_rv!(login(m, rw, CKU_USER, PIN), CKR_OK, "the PIN C_InitPIN set");
    // C_InitToken needs the new SO PIN.
    assert_rv!(ck!(m, C_CloseSession(rw)), CKR_OK);
    let mut label = [b' '; 32];
    assert_rv!(
        ck!(
            m,
            C_InitToken(11, SO_PIN.as_ptr() as *mut _, 8, label.as_mut_ptr())
        ),
        CKR_PIN_INCORRECT
    );
    assert_rv!(
        ck!(
            m,
            C_InitToken(11, b"87654321".as_ptr() as *mut _, 8, label.as_mut_ptr())
        ),
        CKR_OK
    );
    assert_rv!(
        ck!(
            m,
            C_InitToken(11, b"123".as_ptr() as *mut _, 3, label.as_mut_ptr())
        ),
        CKR_PIN_INCORRECT,
        "an initialized token checks the SO PIN, whatever its length"
    );
}

#[test]
fn closing_the_last_session_of_a_slot_logs_it_out_and_slots_are_independent() {
    let m = shared();
    init_slot(m, 12);
    init_slot(m, 13);
    let a = open(m, 12, true);
    let b = open(m, 12, false);
    let other = open(m, 13, true);
    assert_rv!(login(m, a, CKU_USER, PIN), CKR_OK);
    assert_rv!(login(m, other, CKU_USER, PIN), CKR_OK);
    assert_rv!(ck!(m, C_CloseSession(a)), CKR_OK);
    assert_eq!(
        state(m, b),
        Ok(CKS_RO_USER_FUNCTIONS),
        "b still holds the login"
    );
    assert_rv!(ck!(m, C_CloseSession(b)), CKR_OK);
    let c = open(m, 12, true);
    assert_eq!(
        state(m, c),
        Ok(CKS_RW_PUBLIC_SESSION),
        "the last close logged out"
    );
    assert_eq!(
        state(m, other),
        Ok(CKS_RW_USER_FUNCTIONS),
        "another slot keeps its login"
    );
    assert_rv!(ck!(m, C_CloseAllSessions(12)), CKR_OK);
    assert_eq!(state(m, c), Err(CKR_SESSION_HANDLE_INVALID));
    assert_eq!(state(m, other), Ok(CKS_RW_USER_FUNCTIONS));
    assert_rv!(
        ck!(m, C_CloseAllSessions(12)),
        CKR_OK,
        "nothing left to close"
    );
    assert_rv!(ck!(m, C_CloseAllSessions(999)), CKR_SLOT_ID_INVALID);
    // A session handle is tied to its slot: a handle of slot 13 used for an object of 12.
    let d = open(m, 12, true);
    assert_rv!(login(m, d, CKU_USER, PIN), CKR_OK);
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_PRIVATE, false);
    let mut o = 0;
    assert_rv!(ck!(m, C_CreateObject(d, t.ptr(), t.len(), &mut o)), CKR_OK);
    assert_eq!(
        get_attr(m, other, o, CKA_CLASS),
        Err(CKR_OBJECT_HANDLE_INVALID)
    );
    assert_eq!(
        find(m, other, &mut Template::new().ulong(CKA_CLASS, CKO_DATA)).len(),
        0
    );
    let mut si: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(ck!(m, C_GetSessionInfo(d, &mut si)), CKR_OK);
    assert_eq!(si.slotID, 12);
    assert_eq!(si.flags, CKF_SERIAL_SESSION | CKF_RW_SESSION);
    assert_eq!(si.ulDeviceError, 0);
}

#[test]
fn session_objects_belong_to_the_application_and_private_ones_to_the_user() {
    let m = shared();
    let a = user_session(m, 14);
    let b = open(m, 14, false);
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_PRIVATE, true)
        .bytes(CKA_LABEL, b"mine")
        .bytes(CKA_VALUE, b"v");
    let mut o = 0;
    assert_rv!(ck!(m, C_CreateObject(a, t.ptr(), t.len(), &mut o)), CKR_OK);
    // Visible and usable from the other (read-only) session of the application.
    assert_eq!(get_attr(m, b, o, CKA_LABEL).unwrap(), b"mine");
    assert_eq!(
        find(m, b, &mut Template::new().bytes(CKA_LABEL, b"mine")),
        vec![o]
    );
    let mut relabel = Template::new().bytes(CKA_LABEL, b"ours");
    assert_rv!(
        ck!(m, C_SetAttributeValue(b, o, relabel.ptr(), relabel.len())),
        CKR_OK,
        "an RO session may change session objects"
    );
    let mut size = 0;
    assert_rv!(ck!(m, C_GetObjectSize(b, o, &mut size)), CKR_OK);
    assert!(size > 0);
    // Hidden after logout, back with the same handle after login.
    assert_rv!(ck!(m, C_Logout(b)), CKR_OK);
    assert_eq!(get_attr(m, a, o, CKA_LABEL), Err(CKR_OBJECT_HANDLE_INVALID));
    assert_rv!(ck!(m, C_DestroyObject(a, o)), CKR_OBJECT_HANDLE_INVALID);
    assert_rv!(login(m, b, CKU_USER, PIN), CKR_OK);
    assert_eq!(get_attr(m, a, o, CKA_LABEL).unwrap(), b"ours");
    // It goes with the session that made it, not with the other one.
    assert_rv!(ck!(m, C_CloseSession(b)), CKR_OK);
    assert_eq!(get_attr(m, a, o, CKA_LABEL).unwrap(), b"ours");
    let c = open(m, 14, true);
    assert_rv!(ck!(m, C_CloseSession(a)), CKR_OK);
    assert_eq!(state(m, c), Ok(CKS_RW_USER_FUNCTIONS), "c kept the login");
    assert_eq!(get_attr(m, c, o, CKA_LABEL), Err(CKR_OBJECT_HANDLE_INVALID));
    // Token objects stay; handles are not reused for other objects.
    let mut tok = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_TOKEN, true)
        .bytes(CKA_LABEL, b"kept");
    let mut k = 0;
    assert_rv!(
        ck!(m, C_CreateObject(c, tok.ptr(), tok.len(), &mut k)),
        CKR_OK
    );
    assert_ne!(k, o, "a handle is not reused");
    assert_rv!(ck!(m, C_CloseSession(c)), CKR_OK);
    let d = open(m, 14, false);
    assert_rv!(login(m, d, CKU_USER, PIN), CKR_OK);
    assert_eq!(
        find(m, d, &mut Template::new().bytes(CKA_LABEL, b"kept")),
        vec![k]
    );
}

#[test]
fn find_objects_by_template_in_batches() {
    let m = shared();
    let h = user_session(m, 15);
    for i in 0..25u8 {
        let mut t = Template::new()
            .ulong(CKA_CLASS, CKO_DATA)
            .bool(CKA_TOKEN, i < 5)
            .bool(CKA_PRIVATE, i % 2 == 1)
            .bytes(CKA_APPLICATION, b"batch")
            .bytes(CKA_LABEL, format!("obj{i}").as_bytes());
        let mut o = 0;
        assert_rv!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut o)), CKR_OK);
    }
    let mut all = Template::new().bytes(CKA_APPLICATION, b"batch");
    assert_rv!(ck!(m, C_FindObjectsInit(h, all.ptr(), all.len())), CKR_OK);
    let mut counts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    loop {
        let mut buf = [0 as CK_OBJECT_HANDLE; 7];
        let mut n = 99;
        assert_rv!(
            ck!(m, C_FindObjects(h, buf.as_mut_ptr(), 7, &mut n)),
            CKR_OK
        );
        counts.push(n);
        for o in &buf[..n as usize] {
            assert!(seen.insert(*o), "handle {o} returned twice");
        }
        if n == 0 {
            break;
        }
    }
    assert_eq!(counts, vec![7, 7, 7, 4, 0]);
    let mut n = 99;
    assert_rv!(
        ck!(m, C_FindObjects(h, std::ptr::null_mut(), 0, &mut n)),
        CKR_OK,
        "a search that is over keeps answering 0"
    );
    assert_eq!(n, 0);
    assert_rv!(ck!(m, C_FindObjectsFinal(h)), CKR_OK);
    assert_eq!(
        find(m, h, &mut Template::new().bool(CKA_TOKEN, true)).len(),
        5
    );
    assert_eq!(
        find(
            m,
            h,
            &mut Template::new()
                .bytes(CKA_APPLICATION, b"batch")
                .bool(CKA_PRIVATE, false)
        )
        .len(),
        13
    );
    assert_eq!(
        find(m, h, &mut Template::new().bytes(CKA_LABEL, b"obj17")).len(),
        1
    );
    assert_eq!(
        find(m, h, &mut Template::new().bytes(CKA_LABEL, b"obj1")).len(),
        1,
        "labels match exactly, not by prefix"
    );
    assert_eq!(
        find(m, h, &mut Template::new().bytes(CKA_MODULUS, &[1])).len(),
        0,
        "an attribute no object has matches nothing"
    );
    assert_eq!(
        find(m, h, &mut Template::new()).len(),
        25,
        "the empty template matches all"
    );
    // Logged out, the private half is gone from every search.
    assert_rv!(ck!(m, C_Logout(h)), CKR_OK);
    assert_eq!(find(m, h, &mut all).len(), 13);
    assert_eq!(find(m, h, &mut Template::new()).len(), 13);
}

#[test]
fn operations_are_per_session_and_per_kind() {
    let m = shared();
    let a = user_session(m, 16);
    let b = open(m, 16, true);
    let aes = secret(
        m,
        a,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 16)
            .bool(CKA_SIGN, true),
    );
    let mut ecb = mech(CKM_AES_ECB);
    // Another session has its own operation state; other kinds run side by side.
    assert_rv!(ck!(m, C_EncryptInit(a, &mut ecb, aes)), CKR_OK);
    assert_rv!(ck!(m, C_EncryptInit(b, &mut ecb, aes)), CKR_OK);
    assert_rv!(ck!(m, C_DecryptInit(a, &mut ecb, aes)), CKR_OK);
    assert_rv!(ck!(m, C_DigestInit(a, &mut mech(CKM_SHA256))), CKR_OK);
    assert_rv!(ck!(m, C_SignInit(a, &mut mech(CKM_AES_CMAC), aes)), CKR_OK);
    assert_rv!(
        ck!(m, C_FindObjectsInit(a, std::ptr::null_mut(), 0)),
        CKR_OK
    );
    let block = [3u8; 16];
    let ct = two_call(|p, n| ck!(m, C_Encrypt(a, block.as_ptr() as *mut _, 16, p, n))).unwrap();
    let pt = two_call(|p, n| ck!(m, C_Decrypt(a, ct.as_ptr() as *mut _, 16, p, n))).unwrap();
    assert_eq!(pt, block);
    let ct_b = two_call(|p, n| ck!(m, C_Encrypt(b, block.as_ptr() as *mut _, 16, p, n))).unwrap();
    assert_eq!(ct, ct_b);
    assert_eq!(
        two_call(|p, n| ck!(m, C_Digest(a, block.as_ptr() as *mut _, 16, p, n)))
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        two_call(|p, n| ck!(m, C_Sign(a, block.as_ptr() as *mut _, 16, p, n)))
            .unwrap()
            .len(),
        16
    );
    assert_rv!(ck!(m, C_FindObjectsFinal(a)), CKR_OK);
    // Multi-part CBC-PAD with output buffers too small at each step: the operation lives on.
    let mut iv = [9u8; 16];
    let mut cbc = CK_MECHANISM {
        mechanism: CKM_AES_CBC_PAD,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: 16,
    };
    let data: Vec<u8> = (0..40u8).collect();
    assert_rv!(ck!(m, C_EncryptInit(a, &mut cbc, aes)), CKR_OK);
    let mut out = Vec::new();
    for part in data.chunks(13) {
        // First into one byte: either it fits (a block-less update) or the call says how
        // much it needs and keeps the result for the retry.
        let mut tiny = [0u8; 1];
        let mut n: CK_ULONG = 1;
        let rv = ck!(
            m,
            C_EncryptUpdate(
                a,
                part.as_ptr() as *mut _,
                part.len() as CK_ULONG,
                tiny.as_mut_ptr(),
                &mut n
            )
        );
        if rv == CKR_OK {
            out.extend_from_slice(&tiny[..n as usize]);
            continue;
        }
        assert_rv!(rv, CKR_BUFFER_TOO_SMALL);
        assert!(n > 1);
        let r = two_call(|p, n| {
            ck!(
                m,
                C_EncryptUpdate(a, part.as_ptr() as *mut _, part.len() as CK_ULONG, p, n)
            )
        })
        .unwrap();
        out.extend(r);
    }
    let mut tiny = [0u8; 1];
    let mut n: CK_ULONG = 1;
    assert_rv!(
        ck!(m, C_EncryptFinal(a, tiny.as_mut_ptr(), &mut n)),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(
        n as usize,
        48 - out.len(),
        "what is left of 40 bytes padded to 48"
    );
    out.extend(two_call(|p, n| ck!(m, C_EncryptFinal(a, p, n))).unwrap());
    assert_eq!(out.len(), 48);
    assert_rv!(
        ck!(m, C_EncryptFinal(a, tiny.as_mut_ptr(), &mut n)),
        CKR_OPERATION_NOT_INITIALIZED
    );
    // Decrypting it back in one go; then a bad padding ends the operation.
    assert_rv!(ck!(m, C_DecryptInit(a, &mut cbc, aes)), CKR_OK);
    assert_eq!(
        two_call(|p, n| ck!(m, C_Decrypt(a, out.as_ptr() as *mut _, 48, p, n))).unwrap(),
        data
    );
    let mut bad = out.clone();
    bad[47] ^= 0xff;
    bad[46] ^= 0x13;
    assert_rv!(ck!(m, C_DecryptInit(a, &mut cbc, aes)), CKR_OK);
    let mut buf = [0u8; 64];
    let mut n: CK_ULONG = 64;
    assert_rv!(
        ck!(
            m,
            C_Decrypt(a, bad.as_mut_ptr(), 48, buf.as_mut_ptr(), &mut n)
        ),
        CKR_ENCRYPTED_DATA_INVALID
    );
    assert_rv!(
        ck!(
            m,
            C_Decrypt(a, out.as_mut_ptr(), 48, buf.as_mut_ptr(), &mut n)
        ),
        CKR_OPERATION_NOT_INITIALIZED
    );
    // Closing a session with operations active is fine; the key outlives it.
    assert_rv!(ck!(m, C_EncryptInit(b, &mut ecb, aes)), CKR_OK);
    assert_rv!(ck!(m, C_CloseSession(b)), CKR_OK);
    // A session object key is gone with its session: its operations refuse the handle.
    let c = open(m, 16, true);
    let k2 = secret(
        m,
        c,
        CKM_AES_KEY_GEN,
        Template::new().ulong(CKA_VALUE_LEN, 16),
    );
    assert_rv!(ck!(m, C_CloseSession(c)), CKR_OK);
    assert_rv!(
        ck!(m, C_EncryptInit(a, &mut ecb, k2)),
        CKR_KEY_HANDLE_INVALID
    );
}

#[test]
fn random_numbers() {
    let m = shared();
    init_slot(m, 17);
    let h = open(m, 17, false);
    assert_rv!(ck!(m, C_GenerateRandom(h, std::ptr::null_mut(), 0)), CKR_OK);
    let mut big = vec![0u8; 1 << 20];
    assert_rv!(
        ck!(
            m,
            C_GenerateRandom(h, big.as_mut_ptr(), big.len() as CK_ULONG)
        ),
        CKR_OK
    );
    // Crude sanity: every byte value shows up in a MiB of random bytes.
    let mut seen = [false; 256];
    for b in &big {
        seen[*b as usize] = true;
    }
    assert!(seen.iter().all(|s| *s));
    let mut seed = *b"extra entropy";
    assert_rv!(ck!(m, C_SeedRandom(h, seed.as_mut_ptr(), 13)), CKR_OK);
    assert_rv!(
        ck!(m, C_GenerateRandom(0xdead, big.as_mut_ptr(), 1)),
        CKR_SESSION_HANDLE_INVALID
    );
}

#[test]
fn null_pointers_and_bad_lengths_are_refused_never_crash() {
    let m = shared();
    let h = user_session(m, 18);
    let key = secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bool(CKA_EXTRACTABLE, true),
    );
    let mut n: CK_ULONG = 0;
    let mut o: CK_OBJECT_HANDLE = 0;
    let mut t = Template::new().ulong(CKA_CLASS, CKO_DATA);
    let mut data = [0u8; 32];
    let mut aes_ecb = mech(CKM_AES_ECB);
    let mut gen = mech(CKM_AES_KEY_GEN);
    let calls: Vec<(&str, CK_RV)> = vec![
        ("C_GetInfo(NULL)", ck!(m, C_GetInfo(std::ptr::null_mut()))),
        (
            "C_GetSlotInfo(NULL)",
            ck!(m, C_GetSlotInfo(18, std::ptr::null_mut())),
        ),
        (
            "C_GetMechanismList(NULL count)",
            ck!(
                m,
                C_GetMechanismList(18, std::ptr::null_mut(), std::ptr::null_mut())
            ),
        ),
        (
            "C_GetMechanismInfo(NULL)",
            ck!(m, C_GetMechanismInfo(18, CKM_AES_ECB, std::ptr::null_mut())),
        ),
        (
            "C_GetSessionInfo(NULL)",
            ck!(m, C_GetSessionInfo(h, std::ptr::null_mut())),
        ),
        (
            "C_CreateObject(NULL handle)",
            ck!(m, C_CreateObject(h, t.ptr(), t.len(), std::ptr::null_mut())),
        ),
        (
            "C_CreateObject(NULL template)",
            ck!(m, C_CreateObject(h, std::ptr::null_mut(), 1, &mut o)),
        ),
        (
            "C_CopyObject(NULL handle)",
            ck!(
                m,
                C_CopyObject(h, key, std::ptr::null_mut(), 0, std::ptr::null_mut())
            ),
        ),
        (
            "C_GetObjectSize(NULL)",
            ck!(m, C_GetObjectSize(h, key, std::ptr::null_mut())),
        ),
        (
            "C_GetAttributeValue(NULL, 1)",
            ck!(m, C_GetAttributeValue(h, key, std::ptr::null_mut(), 1)),
        ),
        (
            "C_SetAttributeValue(NULL, 1)",
            ck!(m, C_SetAttributeValue(h, key, std::ptr::null_mut(), 1)),
        ),
        (
            "C_EncryptInit(key handle 0)",
            ck!(m, C_EncryptInit(h, &mut aes_ecb, 0)),
        ),
        (
            "C_GenerateKey(NULL mechanism)",
            ck!(
                m,
                C_GenerateKey(h, std::ptr::null_mut(), t.ptr(), t.len(), &mut o)
            ),
        ),
        (
            "C_GenerateKey(NULL handle)",
            ck!(
                m,
                C_GenerateKey(h, &mut gen, t.ptr(), 0, std::ptr::null_mut())
            ),
        ),
        (
            "C_GenerateKeyPair(NULL handles)",
            ck!(
                m,
                C_GenerateKeyPair(
                    h,
                    &mut mech(CKM_EC_KEY_PAIR_GEN),
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut()
                )
            ),
        ),
        (
            "C_WrapKey(NULL length)",
            ck!(
                m,
                C_WrapKey(
                    h,
                    &mut mech(CKM_AES_KEY_WRAP),
                    key,
                    key,
                    std::ptr::null_mut(),
                    std::ptr::null_mut()
                )
            ),
        ),
        (
            "C_UnwrapKey(NULL wrapped, 40)",
            ck!(
                m,
                C_UnwrapKey(
                    h,
                    &mut mech(CKM_AES_KEY_WRAP),
                    key,
                    std::ptr::null_mut(),
                    40,
                    t.ptr(),
                    t.len(),
                    &mut o
                )
            ),
        ),
        (
            "C_DeriveKey(NULL handle)",
            ck!(
                m,
                C_DeriveKey(
                    h,
                    &mut mech(CKM_ECDH1_DERIVE),
                    key,
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut()
                )
            ),
        ),
        (
            "C_SeedRandom(NULL, 8)",
            ck!(m, C_SeedRandom(h, std::ptr::null_mut(), 8)),
        ),
        (
            "C_DigestUpdate(NULL, 8) without init",
            ck!(m, C_DigestUpdate(h, std::ptr::null_mut(), 8)),
        ),
    ];
    let expected_bad =
        |name: &str| !name.starts_with("C_EncryptInit") && !name.contains("without init");
    for (name, rv) in &calls {
        if expected_bad(name) {
            assert_rv!(*rv, CKR_ARGUMENTS_BAD, "{name}");
        }
    }
    assert_rv!(
        calls[11].1,
        CKR_KEY_HANDLE_INVALID,
        "key handle 0 is never valid"
    );
    assert!(
        matches!(
            calls[19].1,
            CKR_ARGUMENTS_BAD | CKR_OPERATION_NOT_INITIALIZED
        ),
        "{}",
        rv_name(calls[19].1)
    );
    // Inside an operation: NULL output lengths, NULL input with a length.
    assert_rv!(ck!(m, C_EncryptInit(h, &mut aes_ecb, key)), CKR_OK);
    assert_rv!(
        ck!(
            m,
            C_Encrypt(
                h,
                data.as_mut_ptr(),
                16,
                data.as_mut_ptr(),
                std::ptr::null_mut()
            )
        ),
        CKR_ARGUMENTS_BAD
    );
    // PKCS#11 §5.2: a single-part call ends the operation on every result but
    // CKR_BUFFER_TOO_SMALL and a successful length query, a call refused for its arguments
    // too (issue 17, defect 9; SoftHSM 2.6.1 keeps the operation): a new one can start.
    assert_rv!(ck!(m, C_EncryptInit(h, &mut aes_ecb, key)), CKR_OK);
    assert_rv!(
        ck!(
            m,
            C_EncryptUpdate(h, std::ptr::null_mut(), 16, data.as_mut_ptr(), &mut n)
        ),
        CKR_ARGUMENTS_BAD
    );
    assert_rv!(
        ck!(m, C_EncryptInit(h, std::ptr::null_mut(), key)),
        CKR_OK,
        "3.0: a NULL mechanism cancels"
    );
    assert_rv!(ck!(m, C_FindObjectsInit(h, t.ptr(), t.len())), CKR_OK);
    assert_rv!(
        ck!(m, C_FindObjects(h, std::ptr::null_mut(), 5, &mut n)),
        CKR_ARGUMENTS_BAD
    );
    assert_rv!(
        ck!(m, C_FindObjects(h, &mut o, 1, std::ptr::null_mut())),
        CKR_ARGUMENTS_BAD
    );
    assert_rv!(ck!(m, C_FindObjectsFinal(h)), CKR_OK);
    // Mechanism parameters with NULL inside and lengths that do not match.
    let mut gcm = CK_GCM_PARAMS {
        pIv: std::ptr::null_mut(),
        ulIvLen: 12,
        ulIvBits: 96,
        pAAD: std::ptr::null_mut(),
        ulAADLen: 0,
        ulTagBits: 128,
    };
    assert_rv!(
        ck!(
            m,
            C_EncryptInit(h, &mut mech_with(CKM_AES_GCM, &mut gcm), key)
        ),
        CKR_MECHANISM_PARAM_INVALID,
        "GCM with pIv NULL and ulIvLen 12"
    );
    let mut iv = [0u8; 12];
    gcm.pIv = iv.as_mut_ptr();
    gcm.ulAADLen = 1 << 20;
    assert_rv!(
        ck!(
            m,
            C_EncryptInit(h, &mut mech_with(CKM_AES_GCM, &mut gcm), key)
        ),
        CKR_MECHANISM_PARAM_INVALID,
        "GCM with pAAD NULL and a length"
    );
    let mut p = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 16,
    };
    assert_rv!(
        ck!(m, C_EncryptInit(h, &mut p, key)),
        CKR_MECHANISM_PARAM_INVALID
    );
    let mut e = CK_ECDH1_DERIVE_PARAMS {
        kdf: CKD_NULL,
        ulSharedDataLen: 0,
        pSharedData: std::ptr::null_mut(),
        ulPublicDataLen: 65,
        pPublicData: std::ptr::null_mut(),
    };
    let mut dt = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET);
    let rv = ck!(
        m,
        C_DeriveKey(
            h,
            &mut mech_with(CKM_ECDH1_DERIVE, &mut e),
            key,
            dt.ptr(),
            dt.len(),
            &mut o
        )
    );
    assert!(
        matches!(
            rv,
            CKR_MECHANISM_PARAM_INVALID
                | CKR_KEY_TYPE_INCONSISTENT
                | CKR_KEY_FUNCTION_NOT_PERMITTED
        ),
        "{}",
        rv_name(rv)
    );
    // An attribute whose pValue is NULL with a length.
    let mut bad = [CK_ATTRIBUTE {
        type_: CKA_LABEL,
        pValue: std::ptr::null_mut(),
        ulValueLen: 10,
    }];
    let rv = ck!(m, C_FindObjectsInit(h, bad.as_mut_ptr(), 1));
    assert!(
        matches!(rv, CKR_ATTRIBUTE_VALUE_INVALID | CKR_ARGUMENTS_BAD),
        "{}",
        rv_name(rv)
    );
    // And the session still works.
    assert_rv!(ck!(m, C_GenerateRandom(h, data.as_mut_ptr(), 32)), CKR_OK);
}

#[test]
fn closing_sessions_under_other_threads_feet_answers_codes_not_crashes() {
    let m = shared();
    let h0 = user_session(m, 19);
    let key = secret(
        m,
        h0,
        CKM_GENERIC_SECRET_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bool(CKA_TOKEN, true)
            .bool(CKA_SIGN, true),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A watchdog: a deadlock fails the run instead of hanging it.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let done = done.clone();
        std::thread::spawn(move || {
            for _ in 0..600 {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
            }
            eprintln!("deadlock: C_CloseAllSessions stress did not finish in 60 s");
            std::process::abort();
        });
    }
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let m = shared();
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let mut h = 0;
                    let rv = ck!(
                        m,
                        C_OpenSession(
                            19,
                            CKF_SERIAL_SESSION | CKF_RW_SESSION,
                            std::ptr::null_mut(),
                            None,
                            &mut h
                        )
                    );
                    assert_rv!(rv, CKR_OK);
                    let rv = login(m, h, CKU_USER, PIN);
                    seen.insert(rv);
                    let mut mc = mech(CKM_SHA256_HMAC);
                    let rv = ck!(m, C_SignInit(h, &mut mc, key));
                    seen.insert(rv);
                    let mut mac = [0u8; 32];
                    let mut n: CK_ULONG = 32;
                    seen.insert(ck!(
                        m,
                        C_Sign(h, mac.as_mut_ptr(), 32, mac.as_mut_ptr(), &mut n)
                    ));
                    seen.insert(ck!(m, C_CloseSession(h)));
                }
                seen
            })
        })
        .collect();
    for _ in 0..200 {
        assert_rv!(ck!(m, C_CloseAllSessions(19)), CKR_OK);
        std::thread::yield_now();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut all = std::collections::BTreeSet::new();
    for w in workers {
        all.extend(w.join().expect("no worker panicked"));
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let allowed = [
        CKR_OK,
        CKR_SESSION_HANDLE_INVALID,
        CKR_USER_ALREADY_LOGGED_IN,
        CKR_OPERATION_NOT_INITIALIZED,
        CKR_KEY_HANDLE_INVALID,
        CKR_USER_NOT_LOGGED_IN,
    ];
    for rv in &all {
        assert!(allowed.contains(rv), "unexpected {}", rv_name(*rv));
    }
    // The slot is usable afterwards.
    let h = open(m, 19, true);
    let _ = login(m, h, CKU_USER, PIN);
    assert!(sign(m, h, mech(CKM_SHA256_HMAC), key, b"after").is_ok());
}
