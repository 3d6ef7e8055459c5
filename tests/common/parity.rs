//! The parity scenario: one long PKCS#11 call sequence that records every return value
//! and the lengths, states and flags it sees. `tests/softhsm_parity.rs` runs it against
//! hsmux's soft token and SoftHSMv2; `softhsm-compat/` against SoftHSMv2 directly and
//! SoftHSMv2 behind hsmux's module backend.
#![allow(dead_code)]

use crate::ck;
use crate::common::*;
use cryptoki_sys::*;

/// Records (step, value, is a return code) triples.
#[derive(Default)]
pub struct Rec(pub Vec<(String, u64, bool)>);

impl Rec {
    pub fn rv(&mut self, step: &str, rv: CK_RV) -> CK_RV {
        self.0.push((step.to_string(), rv, true));
        rv
    }
    /// Records a value that is not a return code (a length, a state, a flag as 0/1).
    pub fn val(&mut self, step: &str, v: u64) {
        self.0.push((step.to_string(), v, false));
    }
}

pub fn show(v: u64, is_rv: bool) -> String {
    if is_rv {
        rv_name(v)
    } else if v == CK_UNAVAILABLE_INFORMATION {
        "CK_UNAVAILABLE_INFORMATION".into()
    } else {
        v.to_string()
    }
}

/// C_GetAttributeValue of one attribute into a buffer of `buf` bytes (None: NULL pValue);
/// records the return value and the ulValueLen it leaves.
fn long_data() -> [u8; 100] {
    [0x22u8; 100]
}

fn one(
    r: &mut Rec,
    m: &Module,
    h: CK_SESSION_HANDLE,
    step: &str,
    obj: CK_OBJECT_HANDLE,
    ty: CK_ATTRIBUTE_TYPE,
    buf: Option<usize>,
) {
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
    r.rv(step, ck!(m, C_GetAttributeValue(h, obj, &mut a, 1)));
    r.val(&format!("{step}: ulValueLen"), a.ulValueLen);
}

fn token_flags(m: &Module, slot: CK_SLOT_ID) -> CK_FLAGS {
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(ck!(m, C_GetTokenInfo(slot, &mut ti)), CKR_OK);
    ti.flags
}

fn create(m: &Module, h: CK_SESSION_HANDLE, t: &mut Template, o: &mut CK_OBJECT_HANDLE) -> CK_RV {
    ck!(m, C_CreateObject(h, t.ptr(), t.len(), o))
}

fn set(m: &Module, h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE, mut t: Template) -> CK_RV {
    ck!(m, C_SetAttributeValue(h, o, t.ptr(), t.len()))
}

fn session_state(m: &Module, h: CK_SESSION_HANDLE) -> u64 {
    let mut si: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    match ck!(m, C_GetSessionInfo(h, &mut si)) {
        CKR_OK => si.state,
        rv => 0x1000_0000 + rv,
    }
}

/// The scenario. `slot` holds an initialized token (SO PIN `SO_PIN`, user PIN `PIN`) with
/// no session open.
pub fn scenario(m: &Module, slot: CK_SLOT_ID) -> Rec {
    let mut r = Rec::default();
    let ro = open(m, slot, false);
    let rw = open(m, slot, true);
    r.val("state RO public", session_state(m, ro));
    r.val("state RW public", session_state(m, rw));

    // --- login state
    r.rv("logout while nobody is logged in", ck!(m, C_Logout(rw)));
    r.rv(
        "SO login with an RO session open",
        login(m, rw, CKU_SO, SO_PIN),
    );
    r.rv("user login, wrong PIN", login(m, rw, CKU_USER, b"9999"));
    r.val(
        "USER_PIN_COUNT_LOW after a wrong PIN",
        (token_flags(m, slot) & CKF_USER_PIN_COUNT_LOW != 0) as u64,
    );
    r.rv("user login, too short PIN", login(m, rw, CKU_USER, b"1"));
    r.rv("user login, right PIN", login(m, rw, CKU_USER, PIN));
    r.val(
        "USER_PIN_COUNT_LOW cleared by a right PIN",
        (token_flags(m, slot) & CKF_USER_PIN_COUNT_LOW != 0) as u64,
    );
    r.val("state RO after user login", session_state(m, ro));
    r.val("state RW after user login", session_state(m, rw));
    r.rv("user login again", login(m, ro, CKU_USER, PIN));
    r.rv("SO login while user is in", login(m, ro, CKU_SO, SO_PIN));
    r.rv("login with user type 77", login(m, ro, 77, PIN));
    r.rv(
        "C_InitPIN as the user",
        ck!(m, C_InitPIN(rw, b"4321".as_ptr() as *mut _, 4)),
    );
    r.rv(
        "C_SetPIN in an RO session",
        ck!(
            m,
            C_SetPIN(ro, PIN.as_ptr() as *mut _, 4, b"4321".as_ptr() as *mut _, 4)
        ),
    );
    r.rv(
        "C_SetPIN with a wrong old PIN",
        ck!(
            m,
            C_SetPIN(
                rw,
                b"0000".as_ptr() as *mut _,
                4,
                b"4321".as_ptr() as *mut _,
                4
            )
        ),
    );
    r.rv(
        "C_SetPIN to a 2-byte PIN",
        ck!(
            m,
            C_SetPIN(rw, PIN.as_ptr() as *mut _, 4, b"43".as_ptr() as *mut _, 2)
        ),
    );
    r.rv(
        "C_SetPIN to 4321",
        ck!(
            m,
            C_SetPIN(rw, PIN.as_ptr() as *mut _, 4, b"4321".as_ptr() as *mut _, 4)
        ),
    );
    r.rv(
        "C_SetPIN back to 1234",
        ck!(
            m,
            C_SetPIN(rw, b"4321".as_ptr() as *mut _, 4, PIN.as_ptr() as *mut _, 4)
        ),
    );

    // --- objects
    let mut o = 0;
    let data = || {
        Template::new()
            .ulong(CKA_CLASS, CKO_DATA)
            .bool(CKA_PRIVATE, false)
            .bytes(CKA_LABEL, b"parity")
            .bytes(CKA_VALUE, b"value")
    };
    r.rv(
        "token data object in an RO session",
        create(m, ro, &mut data().bool(CKA_TOKEN, true), &mut o),
    );
    let mut sess_obj = 0;
    r.rv(
        "session data object in an RO session",
        create(m, ro, &mut data(), &mut sess_obj),
    );
    let mut tok_obj = 0;
    r.rv(
        "token data object in an RW session",
        create(m, rw, &mut data().bool(CKA_TOKEN, true), &mut tok_obj),
    );
    r.rv(
        "object without CKA_CLASS",
        create(m, rw, &mut Template::new().bytes(CKA_LABEL, b"x"), &mut o),
    );
    r.rv(
        "CKA_TOKEN of two bytes",
        create(
            m,
            rw,
            &mut Template::new()
                .ulong(CKA_CLASS, CKO_DATA)
                .bytes(CKA_TOKEN, &[1, 1]),
            &mut o,
        ),
    );
    r.rv(
        "secret key without CKA_KEY_TYPE",
        create(
            m,
            rw,
            &mut Template::new()
                .ulong(CKA_CLASS, CKO_SECRET_KEY)
                .bytes(CKA_VALUE, &[0; 16]),
            &mut o,
        ),
    );
    r.rv(
        "object of an unknown class",
        create(m, rw, &mut Template::new().ulong(CKA_CLASS, 0x7777), &mut o),
    );
    r.rv(
        "same attribute twice with two values",
        create(
            m,
            rw,
            &mut Template::new()
                .ulong(CKA_CLASS, CKO_DATA)
                .bytes(CKA_LABEL, b"a")
                .bytes(CKA_LABEL, b"b"),
            &mut o,
        ),
    );
    let mut aes = 0;
    r.rv(
        "AES key, sensitive, from a value",
        create(
            m,
            rw,
            &mut Template::new()
                .ulong(CKA_CLASS, CKO_SECRET_KEY)
                .ulong(CKA_KEY_TYPE, CKK_AES)
                .bool(CKA_TOKEN, false)
                .bool(CKA_SENSITIVE, true)
                .bool(CKA_ENCRYPT, true)
                .bool(CKA_DECRYPT, true)
                .bool(CKA_SIGN, false)
                .bytes(CKA_LABEL, b"aes")
                .bytes(CKA_VALUE, &[7; 32]),
            &mut aes,
        ),
    );

    // C_GetAttributeValue, one attribute at a time.
    one(
        &mut r,
        m,
        rw,
        "label length (NULL pValue)",
        tok_obj,
        CKA_LABEL,
        None,
    );
    one(
        &mut r,
        m,
        rw,
        "label into 3 bytes",
        tok_obj,
        CKA_LABEL,
        Some(3),
    );
    one(
        &mut r,
        m,
        rw,
        "label into 64 bytes",
        tok_obj,
        CKA_LABEL,
        Some(64),
    );
    one(
        &mut r,
        m,
        rw,
        "CKA_MODULUS of a data object",
        tok_obj,
        CKA_MODULUS,
        None,
    );
    one(
        &mut r,
        m,
        rw,
        "CKA_VALUE of a sensitive key",
        aes,
        CKA_VALUE,
        None,
    );
    one(
        &mut r,
        m,
        rw,
        "CKA_VALUE_LEN of a key",
        aes,
        CKA_VALUE_LEN,
        None,
    );
    one(
        &mut r,
        m,
        rw,
        "a vendor attribute nobody set",
        tok_obj,
        CKA_VENDOR_DEFINED | 0x55,
        None,
    );

    // C_SetAttributeValue rules.
    r.rv(
        "CKA_SENSITIVE true -> false",
        set(m, rw, aes, Template::new().bool(CKA_SENSITIVE, false)),
    );
    r.rv(
        "CKA_EXTRACTABLE false -> true",
        set(m, rw, aes, Template::new().bool(CKA_EXTRACTABLE, true)),
    );
    r.rv(
        "change CKA_CLASS",
        set(m, rw, aes, Template::new().ulong(CKA_CLASS, CKO_DATA)),
    );
    r.rv(
        "change CKA_KEY_TYPE",
        set(m, rw, aes, Template::new().ulong(CKA_KEY_TYPE, CKK_DES3)),
    );
    r.rv(
        "relabel a token object in an RO session",
        set(m, ro, tok_obj, Template::new().bytes(CKA_LABEL, b"y")),
    );
    r.rv(
        "relabel a token object in an RW session",
        set(m, rw, tok_obj, Template::new().bytes(CKA_LABEL, b"y")),
    );
    // PKCS#11 §4.4: CKA_MODIFIABLE (like CKA_TOKEN and CKA_PRIVATE) can be given at
    // creation and changed by C_CopyObject, not by C_SetAttributeValue.
    r.rv(
        "set CKA_MODIFIABLE false",
        set(m, rw, tok_obj, Template::new().bool(CKA_MODIFIABLE, false)),
    );
    let mut frozen = 0;
    r.rv(
        "data object with CKA_MODIFIABLE false",
        create(m, rw, &mut data().bool(CKA_MODIFIABLE, false), &mut frozen),
    );
    r.rv(
        "relabel an unmodifiable object",
        set(m, rw, frozen, Template::new().bytes(CKA_LABEL, b"z")),
    );
    let mut to_frozen = Template::new().bool(CKA_MODIFIABLE, false);
    let mut frozen_copy = 0;
    r.rv(
        "copy with CKA_MODIFIABLE false",
        ck!(
            m,
            C_CopyObject(
                rw,
                tok_obj,
                to_frozen.ptr(),
                to_frozen.len(),
                &mut frozen_copy
            )
        ),
    );
    r.rv(
        "relabel the unmodifiable copy",
        set(m, rw, frozen_copy, Template::new().bytes(CKA_LABEL, b"z")),
    );
    r.rv(
        "destroy the unmodifiable copy",
        ck!(m, C_DestroyObject(rw, frozen_copy)),
    );
    let mut uncopyable = 0;
    r.rv(
        "data object with CKA_COPYABLE false",
        create(
            m,
            rw,
            &mut data()
                .bool(CKA_COPYABLE, false)
                .bool(CKA_DESTROYABLE, false),
            &mut uncopyable,
        ),
    );
    let mut t = Template::new();
    r.rv(
        "copy an uncopyable object",
        ck!(m, C_CopyObject(rw, uncopyable, t.ptr(), 0, &mut o)),
    );
    r.rv(
        "destroy an undestroyable object",
        ck!(m, C_DestroyObject(rw, uncopyable)),
    );
    r.rv(
        "destroy a token object in an RO session",
        ck!(m, C_DestroyObject(ro, tok_obj)),
    );
    let mut copy = 0;
    let mut ct = Template::new().bool(CKA_TOKEN, false);
    r.rv(
        "copy a token object to a session object",
        ck!(m, C_CopyObject(rw, sess_obj, ct.ptr(), ct.len(), &mut copy)),
    );
    r.rv(
        "destroy the session copy in an RO session",
        ck!(m, C_DestroyObject(ro, copy)),
    );
    r.rv("destroy it again", ck!(m, C_DestroyObject(ro, copy)));

    // --- find
    let mut by_label = Template::new().bytes(CKA_LABEL, b"parity");
    let mut found = [0 as CK_OBJECT_HANDLE; 8];
    let mut n = 0;
    r.rv(
        "C_FindObjects before C_FindObjectsInit",
        ck!(m, C_FindObjects(rw, found.as_mut_ptr(), 8, &mut n)),
    );
    r.rv(
        "C_FindObjectsFinal before C_FindObjectsInit",
        ck!(m, C_FindObjectsFinal(rw)),
    );
    r.rv(
        "C_FindObjectsInit",
        ck!(m, C_FindObjectsInit(rw, by_label.ptr(), by_label.len())),
    );
    r.rv(
        "C_FindObjectsInit again",
        ck!(m, C_FindObjectsInit(rw, by_label.ptr(), by_label.len())),
    );
    r.rv(
        "C_FindObjects",
        ck!(m, C_FindObjects(rw, found.as_mut_ptr(), 8, &mut n)),
    );
    r.val("objects labelled parity", n);
    r.rv("C_FindObjectsFinal", ck!(m, C_FindObjectsFinal(rw)));

    // --- operation state
    let mut iv = [1u8; 16];
    let mut buf = [0u8; 64];
    let mut len: CK_ULONG = 64;
    let msg = [5u8; 32];
    r.rv(
        "C_Encrypt before C_EncryptInit",
        ck!(
            m,
            C_Encrypt(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), &mut len)
        ),
    );
    let mut ecb = mech(CKM_AES_ECB);
    r.rv(
        "C_EncryptInit AES-ECB",
        ck!(m, C_EncryptInit(rw, &mut ecb, aes)),
    );
    r.rv(
        "C_EncryptInit while one is active",
        ck!(m, C_EncryptInit(rw, &mut ecb, aes)),
    );
    len = 0;
    r.rv(
        "C_Encrypt length query",
        ck!(
            m,
            C_Encrypt(
                rw,
                msg.as_ptr() as *mut _,
                32,
                std::ptr::null_mut(),
                &mut len
            )
        ),
    );
    r.val("C_Encrypt length", len);
    len = 16;
    r.rv(
        "C_Encrypt into 16 bytes",
        ck!(
            m,
            C_Encrypt(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), &mut len)
        ),
    );
    r.val("C_Encrypt too small: length", len);
    len = 64;
    r.rv(
        "C_Encrypt into 64 bytes",
        ck!(
            m,
            C_Encrypt(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), &mut len)
        ),
    );
    r.val("C_Encrypt: length", len);
    r.rv(
        "C_Encrypt after the operation ended",
        ck!(
            m,
            C_Encrypt(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), &mut len)
        ),
    );
    r.rv(
        "AES-ECB init for a NULL length",
        ck!(m, C_EncryptInit(rw, &mut ecb, aes)),
    );
    r.rv(
        "C_Encrypt with a NULL length pointer",
        ck!(
            m,
            C_Encrypt(
                rw,
                msg.as_ptr() as *mut _,
                32,
                buf.as_mut_ptr(),
                std::ptr::null_mut()
            )
        ),
    );
    len = 64;
    r.rv(
        "C_Encrypt after CKR_ARGUMENTS_BAD",
        ck!(
            m,
            C_Encrypt(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), &mut len)
        ),
    );
    r.rv(
        "AES-ECB init again",
        ck!(m, C_EncryptInit(rw, &mut ecb, aes)),
    );
    len = 64;
    r.rv(
        "AES-ECB over 15 bytes",
        ck!(
            m,
            C_Encrypt(rw, msg.as_ptr() as *mut _, 15, buf.as_mut_ptr(), &mut len)
        ),
    );
    r.rv(
        "C_Encrypt after an error",
        ck!(
            m,
            C_Encrypt(rw, msg.as_ptr() as *mut _, 16, buf.as_mut_ptr(), &mut len)
        ),
    );
    let mut cbc = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: 16,
    };
    r.rv(
        "AES-CBC decrypt init",
        ck!(m, C_DecryptInit(rw, &mut cbc, aes)),
    );
    len = 64;
    r.rv(
        "AES-CBC decrypt of 17 bytes",
        ck!(
            m,
            C_Decrypt(rw, msg.as_ptr() as *mut _, 17, buf.as_mut_ptr(), &mut len)
        ),
    );
    let mut bad_iv = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: 7,
    };
    r.rv(
        "AES-CBC with a 7-byte IV",
        ck!(m, C_EncryptInit(rw, &mut bad_iv, aes)),
    );
    r.rv(
        "C_EncryptInit with an unknown mechanism",
        ck!(m, C_EncryptInit(rw, &mut mech(0x7fff_0001), aes)),
    );
    r.rv(
        "C_EncryptInit with a key handle of nothing",
        ck!(m, C_EncryptInit(rw, &mut mech(CKM_AES_ECB), 0xdead_beef)),
    );
    r.rv(
        "C_SignInit HMAC with an AES key",
        ck!(m, C_SignInit(rw, &mut mech(CKM_SHA256_HMAC), aes)),
    );
    r.rv(
        "C_SignInit AES-CMAC on a key with CKA_SIGN false",
        ck!(m, C_SignInit(rw, &mut mech(CKM_AES_CMAC), aes)),
    );
    let mut hmac_key = 0;
    r.rv(
        "generic secret for HMAC",
        create(
            m,
            rw,
            &mut Template::new()
                .ulong(CKA_CLASS, CKO_SECRET_KEY)
                .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
                .bool(CKA_SIGN, true)
                .bool(CKA_VERIFY, true)
                .bytes(CKA_VALUE, &[3; 32]),
            &mut hmac_key,
        ),
    );
    r.rv(
        "C_EncryptInit AES-ECB with a generic secret",
        ck!(m, C_EncryptInit(rw, &mut mech(CKM_AES_ECB), hmac_key)),
    );
    let mut hm = mech(CKM_SHA256_HMAC);
    r.rv("C_SignInit HMAC", ck!(m, C_SignInit(rw, &mut hm, hmac_key)));
    r.rv(
        "C_SignInit again",
        ck!(m, C_SignInit(rw, &mut hm, hmac_key)),
    );
    len = 0;
    r.rv(
        "C_Sign length query",
        ck!(
            m,
            C_Sign(
                rw,
                msg.as_ptr() as *mut _,
                32,
                std::ptr::null_mut(),
                &mut len
            )
        ),
    );
    r.val("C_Sign length", len);
    len = 31;
    r.rv(
        "C_Sign into 31 bytes",
        ck!(
            m,
            C_Sign(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), &mut len)
        ),
    );
    r.val("C_Sign too small: length", len);
    len = 64;
    r.rv(
        "C_Sign",
        ck!(
            m,
            C_Sign(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), &mut len)
        ),
    );
    r.rv(
        "C_Sign after it ended",
        ck!(
            m,
            C_Sign(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), &mut len)
        ),
    );
    r.rv(
        "C_VerifyInit HMAC",
        ck!(m, C_VerifyInit(rw, &mut hm, hmac_key)),
    );
    r.rv(
        "C_Verify with a 31-byte MAC",
        ck!(
            m,
            C_Verify(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), 31)
        ),
    );
    r.rv(
        "C_Verify after that error",
        ck!(
            m,
            C_Verify(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), 32)
        ),
    );
    r.rv(
        "C_VerifyInit HMAC again",
        ck!(m, C_VerifyInit(rw, &mut hm, hmac_key)),
    );
    buf[0] ^= 1;
    r.rv(
        "C_Verify with a wrong MAC",
        ck!(
            m,
            C_Verify(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), 32)
        ),
    );
    r.rv(
        "C_SignInit HMAC multi-part",
        ck!(m, C_SignInit(rw, &mut hm, hmac_key)),
    );
    r.rv(
        "C_SignUpdate",
        ck!(m, C_SignUpdate(rw, msg.as_ptr() as *mut _, 32)),
    );
    len = 64;
    r.rv(
        "C_Sign after C_SignUpdate",
        ck!(
            m,
            C_Sign(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), &mut len)
        ),
    );
    r.rv(
        "C_SignFinal after that",
        ck!(m, C_SignFinal(rw, buf.as_mut_ptr(), &mut len)),
    );
    let mut dg = mech(CKM_SHA256);
    r.rv("C_DigestInit", ck!(m, C_DigestInit(rw, &mut dg)));
    r.rv("C_DigestInit again", ck!(m, C_DigestInit(rw, &mut dg)));
    len = 0;
    r.rv(
        "C_Digest length query",
        ck!(
            m,
            C_Digest(
                rw,
                msg.as_ptr() as *mut _,
                32,
                std::ptr::null_mut(),
                &mut len
            )
        ),
    );
    r.val("C_Digest length", len);
    len = 64;
    r.rv(
        "C_Digest",
        ck!(
            m,
            C_Digest(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), &mut len)
        ),
    );
    r.rv(
        "C_GenerateRandom into NULL",
        ck!(m, C_GenerateRandom(rw, std::ptr::null_mut(), 16)),
    );
    r.rv(
        "C_GenerateRandom 16",
        ck!(m, C_GenerateRandom(rw, buf.as_mut_ptr(), 16)),
    );

    // --- key generation templates
    let mut k = 0;
    let gen =
        |step: &str, mt: CK_MECHANISM_TYPE, mut t: Template, r: &mut Rec| -> CK_OBJECT_HANDLE {
            let mut k = 0;
            r.rv(
                step,
                ck!(
                    m,
                    C_GenerateKey(rw, &mut mech(mt), t.ptr(), t.len(), &mut k)
                ),
            );
            k
        };
    gen(
        "AES key gen without CKA_VALUE_LEN",
        CKM_AES_KEY_GEN,
        Template::new(),
        &mut r,
    );
    gen(
        "AES key gen of 15 bytes",
        CKM_AES_KEY_GEN,
        Template::new().ulong(CKA_VALUE_LEN, 15),
        &mut r,
    );
    gen(
        "AES key gen with CKA_CLASS data",
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 16)
            .ulong(CKA_CLASS, CKO_DATA),
        &mut r,
    );
    gen(
        "AES key gen with CKA_KEY_TYPE generic",
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 16)
            .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
        &mut r,
    );
    gen(
        "AES key gen with CKA_LOCAL",
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 16)
            .bool(CKA_LOCAL, true),
        &mut r,
    );
    let genk = gen(
        "AES key gen, 32 bytes, sensitive",
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bool(CKA_SENSITIVE, true)
            .bool(CKA_EXTRACTABLE, true),
        &mut r,
    );
    for (name, ty) in [
        ("CKA_LOCAL", CKA_LOCAL),
        ("CKA_ALWAYS_SENSITIVE", CKA_ALWAYS_SENSITIVE),
        ("CKA_NEVER_EXTRACTABLE", CKA_NEVER_EXTRACTABLE),
        ("CKA_KEY_GEN_MECHANISM", CKA_KEY_GEN_MECHANISM),
    ] {
        let mut v = [0u8; 8];
        let mut a = CK_ATTRIBUTE {
            type_: ty,
            pValue: v.as_mut_ptr() as *mut _,
            ulValueLen: 8,
        };
        r.rv(
            &format!("generated key: {name}"),
            ck!(m, C_GetAttributeValue(rw, genk, &mut a, 1)),
        );
        let value = if a.ulValueLen == 1 {
            v[0] as u64
        } else {
            u64::from_ne_bytes(v)
        };
        r.val(&format!("generated key: {name} value"), value);
    }
    gen(
        "generic secret gen without CKA_VALUE_LEN",
        CKM_GENERIC_SECRET_KEY_GEN,
        Template::new(),
        &mut r,
    );
    let kp = |step: &str, mut public: Template, r: &mut Rec| {
        let (mut a, mut b) = (0, 0);
        let mut private = Template::new().bool(CKA_SIGN, true);
        r.rv(
            step,
            ck!(
                m,
                C_GenerateKeyPair(
                    rw,
                    &mut mech(CKM_EC_KEY_PAIR_GEN),
                    public.ptr(),
                    public.len(),
                    private.ptr(),
                    private.len(),
                    &mut a,
                    &mut b
                )
            ),
        );
    };
    kp(
        "EC key pair gen without CKA_EC_PARAMS",
        Template::new(),
        &mut r,
    );
    kp(
        "EC key pair gen on secp256k1",
        Template::new().bytes(CKA_EC_PARAMS, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]),
        &mut r,
    );
    kp(
        "EC key pair gen with garbage CKA_EC_PARAMS",
        Template::new().bytes(CKA_EC_PARAMS, &[0x01, 0x02, 0x03]),
        &mut r,
    );
    kp(
        "EC key pair gen with a CKA_EC_POINT given",
        Template::new()
            .bytes(CKA_EC_PARAMS, P256_PARAMS)
            .bytes(CKA_EC_POINT, &[0x04, 0x01, 0x00]),
        &mut r,
    );
    kp(
        "EC key pair gen P-256",
        Template::new().bytes(CKA_EC_PARAMS, P256_PARAMS),
        &mut r,
    );
    r.rv(
        "C_GenerateKey with a key-pair mechanism",
        ck!(
            m,
            C_GenerateKey(
                rw,
                &mut mech(CKM_EC_KEY_PAIR_GEN),
                std::ptr::null_mut(),
                0,
                &mut k
            )
        ),
    );
    // GCM: tampered tag, and a decrypt whose output buffer is too small.
    let mut iv12 = [4u8; 12];
    let mut gcm = gcm_params(&mut iv12, &mut [], 128);
    let mut gm = mech_with(CKM_AES_GCM, &mut gcm);
    r.rv("GCM encrypt init", ck!(m, C_EncryptInit(rw, &mut gm, aes)));
    len = 64;
    r.rv(
        "GCM encrypt 32 bytes",
        ck!(
            m,
            C_Encrypt(rw, msg.as_ptr() as *mut _, 32, buf.as_mut_ptr(), &mut len)
        ),
    );
    r.val("GCM ciphertext length", len);
    let mut ct = buf[..48].to_vec();
    r.rv("GCM decrypt init", ck!(m, C_DecryptInit(rw, &mut gm, aes)));
    let mut out = [0u8; 64];
    len = 0;
    r.rv(
        "GCM decrypt length query",
        ck!(
            m,
            C_Decrypt(rw, ct.as_mut_ptr(), 48, std::ptr::null_mut(), &mut len)
        ),
    );
    let upper = len;
    r.val("GCM decrypt length query >= 32", (upper >= 32) as u64);
    len = 31;
    r.rv(
        "GCM decrypt into 31 bytes",
        ck!(
            m,
            C_Decrypt(rw, ct.as_mut_ptr(), 48, out.as_mut_ptr(), &mut len)
        ),
    );
    len = 64;
    r.rv(
        "GCM decrypt into 64 bytes",
        ck!(
            m,
            C_Decrypt(rw, ct.as_mut_ptr(), 48, out.as_mut_ptr(), &mut len)
        ),
    );
    r.val("GCM plaintext length", len);
    ct[47] ^= 1;
    r.rv(
        "GCM decrypt init again",
        ck!(m, C_DecryptInit(rw, &mut gm, aes)),
    );
    len = 64;
    r.rv(
        "GCM decrypt with a bad tag",
        ck!(
            m,
            C_Decrypt(rw, ct.as_mut_ptr(), 48, out.as_mut_ptr(), &mut len)
        ),
    );
    r.rv(
        "C_Decrypt after the bad tag",
        ck!(
            m,
            C_Decrypt(rw, ct.as_mut_ptr(), 48, out.as_mut_ptr(), &mut len)
        ),
    );
    // Multi-part GCM decryption with a bad tag: no plaintext may come out before the tag is
    // checked.
    r.rv(
        "GCM multi-part decrypt init",
        ck!(m, C_DecryptInit(rw, &mut gm, aes)),
    );
    let mut released = 0;
    for part in ct.chunks_mut(16) {
        len = 64;
        r.rv(
            "GCM C_DecryptUpdate",
            ck!(
                m,
                C_DecryptUpdate(
                    rw,
                    part.as_mut_ptr(),
                    part.len() as CK_ULONG,
                    out.as_mut_ptr(),
                    &mut len
                )
            ),
        );
        released += len;
    }
    r.val(
        "GCM plaintext released by C_DecryptUpdate with a bad tag",
        released,
    );
    len = 64;
    r.rv(
        "GCM C_DecryptFinal with a bad tag",
        ck!(m, C_DecryptFinal(rw, out.as_mut_ptr(), &mut len)),
    );
    let mut gcm_bad_tag = gcm_params(&mut iv12, &mut [], 130);
    r.rv(
        "GCM with 130 tag bits",
        ck!(
            m,
            C_EncryptInit(rw, &mut mech_with(CKM_AES_GCM, &mut gcm_bad_tag), aes)
        ),
    );
    // Wrapping.
    let mut wm = mech(CKM_AES_KEY_WRAP);
    r.rv(
        "wrap a non-extractable key",
        ck!(
            m,
            C_WrapKey(rw, &mut wm, genk, aes, std::ptr::null_mut(), &mut len)
        ),
    );
    r.rv(
        "wrap with a key handle of nothing",
        ck!(
            m,
            C_WrapKey(
                rw,
                &mut wm,
                0xdead_beef,
                genk,
                std::ptr::null_mut(),
                &mut len
            )
        ),
    );
    len = 0;
    r.rv(
        "wrap length query",
        ck!(
            m,
            C_WrapKey(rw, &mut wm, genk, genk, std::ptr::null_mut(), &mut len)
        ),
    );
    r.val("wrapped length", len);
    let mut ut = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES);
    let mut junk = [7u8; 40];
    r.rv(
        "unwrap garbage",
        ck!(
            m,
            C_UnwrapKey(
                rw,
                &mut wm,
                genk,
                junk.as_mut_ptr(),
                40,
                ut.ptr(),
                ut.len(),
                &mut k
            )
        ),
    );
    r.rv(
        "unwrap 20 bytes with AES-KW",
        ck!(
            m,
            C_UnwrapKey(
                rw,
                &mut wm,
                genk,
                junk.as_mut_ptr(),
                20,
                ut.ptr(),
                ut.len(),
                &mut k
            )
        ),
    );

    // --- more attribute rules
    r.rv(
        "set CKA_PRIVATE on a session object",
        set(m, rw, sess_obj, Template::new().bool(CKA_PRIVATE, true)),
    );
    r.rv(
        "set CKA_TOKEN on a session object",
        set(m, rw, sess_obj, Template::new().bool(CKA_TOKEN, true)),
    );
    let mut cp = 0;
    let mut unsens = Template::new().bool(CKA_SENSITIVE, false);
    r.rv(
        "copy a sensitive key as not sensitive",
        ck!(
            m,
            C_CopyObject(rw, aes, unsens.ptr(), unsens.len(), &mut cp)
        ),
    );
    let mut to_token = Template::new().bool(CKA_TOKEN, true);
    r.rv(
        "copy to a token object in an RO session",
        ck!(
            m,
            C_CopyObject(ro, sess_obj, to_token.ptr(), to_token.len(), &mut cp)
        ),
    );
    let mut bad_attr = Template::new().bytes(CKA_MODULUS, &[1]);
    r.rv(
        "copy with an attribute data objects lack",
        ck!(
            m,
            C_CopyObject(rw, sess_obj, bad_attr.ptr(), bad_attr.len(), &mut cp)
        ),
    );
    let mut default_private = 0;
    r.rv(
        "data object without CKA_PRIVATE",
        create(
            m,
            rw,
            &mut Template::new()
                .ulong(CKA_CLASS, CKO_DATA)
                .bytes(CKA_LABEL, b"default-private"),
            &mut default_private,
        ),
    );
    let mut pv = [0u8; 1];
    let mut a = CK_ATTRIBUTE {
        type_: CKA_PRIVATE,
        pValue: pv.as_mut_ptr() as *mut _,
        ulValueLen: 1,
    };
    r.rv(
        "CKA_PRIVATE of that data object",
        ck!(m, C_GetAttributeValue(rw, default_private, &mut a, 1)),
    );
    r.val("CKA_PRIVATE of a data object by default", pv[0] as u64);

    // --- CKU_CONTEXT_SPECIFIC and CKA_ALWAYS_AUTHENTICATE
    r.rv(
        "context-specific login without an operation",
        login(m, rw, CKU_CONTEXT_SPECIFIC, PIN),
    );
    let (mut ecpub, mut ecpriv) = (0, 0);
    let mut pubt = Template::new().bytes(CKA_EC_PARAMS, P256_PARAMS);
    let mut privt = Template::new()
        .bool(CKA_SIGN, true)
        .bool(CKA_PRIVATE, true)
        .bool(CKA_ALWAYS_AUTHENTICATE, true);
    r.rv(
        "EC key pair with CKA_ALWAYS_AUTHENTICATE",
        ck!(
            m,
            C_GenerateKeyPair(
                rw,
                &mut mech(CKM_EC_KEY_PAIR_GEN),
                pubt.ptr(),
                pubt.len(),
                privt.ptr(),
                privt.len(),
                &mut ecpub,
                &mut ecpriv
            )
        ),
    );
    let digest = [0x11u8; 32];
    r.rv(
        "C_SignInit with an always-authenticate key",
        ck!(m, C_SignInit(rw, &mut mech(CKM_ECDSA), ecpriv)),
    );
    len = 64;
    r.rv(
        "C_Sign without the context-specific login",
        ck!(
            m,
            C_Sign(
                rw,
                digest.as_ptr() as *mut _,
                32,
                buf.as_mut_ptr(),
                &mut len
            )
        ),
    );
    r.rv(
        "C_SignInit again",
        ck!(m, C_SignInit(rw, &mut mech(CKM_ECDSA), ecpriv)),
    );
    r.rv(
        "context-specific login, wrong PIN",
        login(m, rw, CKU_CONTEXT_SPECIFIC, b"0000"),
    );
    r.rv(
        "C_SignInit after a failed context login",
        ck!(m, C_SignInit(rw, &mut mech(CKM_ECDSA), ecpriv)),
    );
    r.rv(
        "context-specific login",
        login(m, rw, CKU_CONTEXT_SPECIFIC, PIN),
    );
    len = 64;
    r.rv(
        "C_Sign after the context-specific login",
        ck!(
            m,
            C_Sign(
                rw,
                digest.as_ptr() as *mut _,
                32,
                buf.as_mut_ptr(),
                &mut len
            )
        ),
    );

    // --- key usage, key types, data lengths
    let keypair = |mt: CK_MECHANISM_TYPE,
                   mut public: Template,
                   mut private: Template,
                   r: &mut Rec,
                   step: &str| {
        let (mut a, mut b) = (0, 0);
        r.rv(
            step,
            ck!(
                m,
                C_GenerateKeyPair(
                    rw,
                    &mut mech(mt),
                    public.ptr(),
                    public.len(),
                    private.ptr(),
                    private.len(),
                    &mut a,
                    &mut b
                )
            ),
        );
        (a, b)
    };
    let (ecpub2, ecpriv2) = keypair(
        CKM_EC_KEY_PAIR_GEN,
        Template::new()
            .bytes(CKA_EC_PARAMS, P256_PARAMS)
            .bool(CKA_VERIFY, true),
        Template::new().bool(CKA_SIGN, true).bool(CKA_DERIVE, false),
        &mut r,
        "EC P-256 key pair",
    );
    r.rv(
        "C_SignInit ECDSA with the public key",
        ck!(m, C_SignInit(rw, &mut mech(CKM_ECDSA), ecpub2)),
    );
    r.rv(
        "C_VerifyInit ECDSA with the private key",
        ck!(m, C_VerifyInit(rw, &mut mech(CKM_ECDSA), ecpriv2)),
    );
    r.rv(
        "C_EncryptInit ECDSA",
        ck!(m, C_EncryptInit(rw, &mut mech(CKM_ECDSA), ecpub2)),
    );
    r.rv(
        "C_SignInit HMAC with an EC key",
        ck!(m, C_SignInit(rw, &mut mech(CKM_SHA256_HMAC), ecpriv2)),
    );
    r.rv(
        "C_SignInit RSA-PKCS with an EC key",
        ck!(m, C_SignInit(rw, &mut mech(CKM_RSA_PKCS), ecpriv2)),
    );
    // SoftHSM accepts the init above and fails at C_Sign: end its operation, unrecorded.
    len = 64;
    let _ = ck!(
        m,
        C_Sign(
            rw,
            long_data().as_ptr() as *mut _,
            32,
            buf.as_mut_ptr(),
            &mut len
        )
    );
    let mut peer = [0x04u8; 65];
    let mut ecdh = CK_ECDH1_DERIVE_PARAMS {
        kdf: CKD_NULL,
        ulSharedDataLen: 0,
        pSharedData: std::ptr::null_mut(),
        ulPublicDataLen: 65,
        pPublicData: peer.as_mut_ptr(),
    };
    let mut dt = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET);
    r.rv(
        "ECDH with a key whose CKA_DERIVE is false",
        ck!(
            m,
            C_DeriveKey(
                rw,
                &mut mech_with(CKM_ECDH1_DERIVE, &mut ecdh),
                ecpriv2,
                dt.ptr(),
                dt.len(),
                &mut k
            )
        ),
    );
    let long = [0x22u8; 100];
    r.rv(
        "C_SignInit ECDSA",
        ck!(m, C_SignInit(rw, &mut mech(CKM_ECDSA), ecpriv2)),
    );
    len = 64;
    r.rv(
        "raw ECDSA over 100 bytes",
        ck!(
            m,
            C_Sign(rw, long.as_ptr() as *mut _, 100, buf.as_mut_ptr(), &mut len)
        ),
    );
    r.rv(
        "C_VerifyInit ECDSA",
        ck!(m, C_VerifyInit(rw, &mut mech(CKM_ECDSA), ecpub2)),
    );
    r.rv(
        "ECDSA verify of a 70-byte signature",
        ck!(
            m,
            C_Verify(rw, long.as_ptr() as *mut _, 32, long.as_ptr() as *mut _, 70)
        ),
    );
    r.rv(
        "C_VerifyInit ECDSA again",
        ck!(m, C_VerifyInit(rw, &mut mech(CKM_ECDSA), ecpub2)),
    );
    r.rv(
        "ECDSA verify of a zero signature",
        ck!(
            m,
            C_Verify(
                rw,
                long.as_ptr() as *mut _,
                32,
                [0u8; 64].as_ptr() as *mut _,
                64
            )
        ),
    );
    keypair(
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        Template::new(),
        Template::new(),
        &mut r,
        "RSA key pair without CKA_MODULUS_BITS",
    );
    let (rsapub, rsapriv) = keypair(
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        Template::new()
            .ulong(CKA_MODULUS_BITS, 2048)
            .bytes(CKA_PUBLIC_EXPONENT, &[1, 0, 1])
            .bool(CKA_ENCRYPT, true)
            .bool(CKA_VERIFY, true),
        Template::new().bool(CKA_SIGN, true).bool(CKA_DECRYPT, true),
        &mut r,
        "RSA 2048 key pair",
    );
    r.rv(
        "C_SignInit RSA-PKCS",
        ck!(m, C_SignInit(rw, &mut mech(CKM_RSA_PKCS), rsapriv)),
    );
    let mut sig = [0u8; 512];
    len = 512;
    r.rv(
        "RSA-PKCS sign of 246 bytes (k - 10)",
        ck!(
            m,
            C_Sign(rw, long.as_ptr() as *mut _, 100, sig.as_mut_ptr(), &mut len)
        ),
    );
    let big = [0x33u8; 246];
    r.rv(
        "C_SignInit RSA-PKCS again",
        ck!(m, C_SignInit(rw, &mut mech(CKM_RSA_PKCS), rsapriv)),
    );
    len = 512;
    r.rv(
        "RSA-PKCS sign of 246 bytes",
        ck!(
            m,
            C_Sign(rw, big.as_ptr() as *mut _, 246, sig.as_mut_ptr(), &mut len)
        ),
    );
    // PSS with the salt lengths consumers use: the hash length, 0 (deterministic) and the
    // maximum (k - hLen - 2, OpenSSL's and Vault transit's default).
    let digest = [0x44u8; 32];
    for slen in [32u64, 0, 222] {
        let mut pss = CK_RSA_PKCS_PSS_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            sLen: slen,
        };
        r.rv(
            &format!("PSS sign init, salt {slen}"),
            ck!(
                m,
                C_SignInit(rw, &mut mech_with(CKM_RSA_PKCS_PSS, &mut pss), rsapriv)
            ),
        );
        len = 512;
        let rv = r.rv(
            &format!("PSS sign, salt {slen}"),
            ck!(
                m,
                C_Sign(
                    rw,
                    digest.as_ptr() as *mut _,
                    32,
                    sig.as_mut_ptr(),
                    &mut len
                )
            ),
        );
        let _ = rv; // a failed sign leaves garbage to verify: recorded all the same
        r.rv(
            &format!("PSS verify init, salt {slen}"),
            ck!(
                m,
                C_VerifyInit(rw, &mut mech_with(CKM_RSA_PKCS_PSS, &mut pss), rsapub)
            ),
        );
        r.rv(
            &format!("PSS verify, salt {slen}"),
            ck!(
                m,
                C_Verify(rw, digest.as_ptr() as *mut _, 32, sig.as_mut_ptr(), len)
            ),
        );
    }
    // SoftHSM's OAEP takes SHA-1 only.
    let mut oaep = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA_1,
        mgf: CKG_MGF1_SHA1,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: std::ptr::null_mut(),
        ulSourceDataLen: 0,
    };
    r.rv(
        "OAEP encrypt init with the private key",
        ck!(
            m,
            C_EncryptInit(rw, &mut mech_with(CKM_RSA_PKCS_OAEP, &mut oaep), rsapriv)
        ),
    );
    r.rv(
        "OAEP decrypt init",
        ck!(
            m,
            C_DecryptInit(rw, &mut mech_with(CKM_RSA_PKCS_OAEP, &mut oaep), rsapriv)
        ),
    );
    len = 512;
    r.rv(
        "OAEP decrypt of 245 bytes",
        ck!(
            m,
            C_Decrypt(rw, big.as_ptr() as *mut _, 245, sig.as_mut_ptr(), &mut len)
        ),
    );
    let mut oaep_bad = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA_1,
        mgf: CKG_MGF1_SHA256,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: std::ptr::null_mut(),
        ulSourceDataLen: 0,
    };
    r.rv(
        "OAEP with SHA-1 and MGF1-SHA256",
        ck!(
            m,
            C_DecryptInit(
                rw,
                &mut mech_with(CKM_RSA_PKCS_OAEP, &mut oaep_bad),
                rsapriv
            )
        ),
    );
    r.rv(
        "C_EncryptInit OAEP",
        ck!(
            m,
            C_EncryptInit(rw, &mut mech_with(CKM_RSA_PKCS_OAEP, &mut oaep), rsapub)
        ),
    );
    len = 512;
    r.rv(
        "OAEP encrypt of 200 bytes",
        ck!(
            m,
            C_Encrypt(rw, big.as_ptr() as *mut _, 200, sig.as_mut_ptr(), &mut len)
        ),
    );
    r.rv(
        "C_DigestInit then C_DigestKey of a sensitive AES key",
        ck!(m, C_DigestInit(rw, &mut mech(CKM_SHA256))),
    );
    r.rv("C_DigestKey", ck!(m, C_DigestKey(rw, aes)));
    len = 64;
    r.rv(
        "C_DigestFinal",
        ck!(m, C_DigestFinal(rw, buf.as_mut_ptr(), &mut len)),
    );
    r.rv(
        "C_DigestInit for a key pair's private key",
        ck!(m, C_DigestInit(rw, &mut mech(CKM_SHA256))),
    );
    r.rv(
        "C_DigestKey of an EC private key",
        ck!(m, C_DigestKey(rw, ecpriv2)),
    );
    // Whether that error ends the operation the spec does not say: end it, unrecorded.
    len = 64;
    let _ = ck!(m, C_DigestFinal(rw, buf.as_mut_ptr(), &mut len));
    let mut ut2 = Template::new().ulong(CKA_KEY_TYPE, CKK_AES);
    let mut wrapped = [0u8; 40];
    len = 40;
    r.rv(
        "wrap an extractable key",
        ck!(
            m,
            C_WrapKey(rw, &mut wm, genk, genk, wrapped.as_mut_ptr(), &mut len)
        ),
    );
    r.rv(
        "unwrap without CKA_CLASS",
        ck!(
            m,
            C_UnwrapKey(
                rw,
                &mut wm,
                genk,
                wrapped.as_mut_ptr(),
                40,
                ut2.ptr(),
                ut2.len(),
                &mut k
            )
        ),
    );

    // --- private objects and logout
    let mut private = 0;
    r.rv(
        "private session object",
        create(
            m,
            rw,
            &mut Template::new()
                .ulong(CKA_CLASS, CKO_DATA)
                .bool(CKA_PRIVATE, true)
                .bytes(CKA_LABEL, b"parity"),
            &mut private,
        ),
    );
    r.rv("logout", ck!(m, C_Logout(ro)));
    r.val("state RW after logout", session_state(m, rw));
    one(
        &mut r,
        m,
        rw,
        "label of a private object after logout",
        private,
        CKA_LABEL,
        None,
    );
    r.rv(
        "private session object while logged out",
        create(
            m,
            rw,
            &mut Template::new()
                .ulong(CKA_CLASS, CKO_DATA)
                .bool(CKA_PRIVATE, true),
            &mut o,
        ),
    );
    r.rv(
        "C_FindObjectsInit logged out",
        ck!(m, C_FindObjectsInit(rw, by_label.ptr(), by_label.len())),
    );
    r.rv(
        "C_FindObjects logged out",
        ck!(m, C_FindObjects(rw, found.as_mut_ptr(), 8, &mut n)),
    );
    r.val("public objects labelled parity", n);
    r.rv(
        "C_FindObjectsFinal logged out",
        ck!(m, C_FindObjectsFinal(rw)),
    );
    let mut dp = Template::new().bytes(CKA_LABEL, b"default-private");
    r.rv(
        "find the default-private data object logged out",
        ck!(m, C_FindObjectsInit(rw, dp.ptr(), dp.len())),
    );
    r.rv(
        "C_FindObjects for it",
        ck!(m, C_FindObjects(rw, found.as_mut_ptr(), 8, &mut n)),
    );
    r.val("default-private data objects visible logged out", n);
    r.rv("C_FindObjectsFinal for it", ck!(m, C_FindObjectsFinal(rw)));
    r.rv(
        "C_EncryptInit with a private key while logged out",
        ck!(m, C_EncryptInit(rw, &mut mech(CKM_AES_ECB), aes)),
    );

    // --- sessions and the SO
    r.rv("close the RO session", ck!(m, C_CloseSession(ro)));
    r.rv("close it again", ck!(m, C_CloseSession(ro)));
    r.rv("SO login, RW sessions only", login(m, rw, CKU_SO, SO_PIN));
    r.val("state RW SO", session_state(m, rw));
    let mut h = 0;
    r.rv(
        "open an RO session while the SO is in",
        ck!(
            m,
            C_OpenSession(slot, CKF_SERIAL_SESSION, std::ptr::null_mut(), None, &mut h)
        ),
    );
    r.rv(
        "open a session without CKF_SERIAL_SESSION",
        ck!(
            m,
            C_OpenSession(slot, CKF_RW_SESSION, std::ptr::null_mut(), None, &mut h)
        ),
    );
    r.rv(
        "SO creates a private object",
        create(
            m,
            rw,
            &mut Template::new()
                .ulong(CKA_CLASS, CKO_DATA)
                .bool(CKA_PRIVATE, true),
            &mut o,
        ),
    );
    r.rv(
        "SO creates a public token object",
        create(m, rw, &mut data().bool(CKA_TOKEN, true), &mut o),
    );
    r.rv(
        "C_SetPIN as the SO (SO PIN)",
        ck!(
            m,
            C_SetPIN(
                rw,
                SO_PIN.as_ptr() as *mut _,
                8,
                SO_PIN.as_ptr() as *mut _,
                8
            )
        ),
    );
    r.rv(
        "C_InitPIN by the SO",
        ck!(m, C_InitPIN(rw, PIN.as_ptr() as *mut _, 4)),
    );
    let mut label = [b' '; 32];
    r.rv(
        "C_InitToken with a session open",
        ck!(
            m,
            C_InitToken(slot, SO_PIN.as_ptr() as *mut _, 8, label.as_mut_ptr())
        ),
    );
    r.rv("C_CloseAllSessions", ck!(m, C_CloseAllSessions(slot)));
    r.val("state of a closed session", session_state(m, rw));
    let again = open(m, slot, false);
    r.val(
        "a new session after all closed (logged out)",
        session_state(m, again),
    );
    r.rv("close the last session", ck!(m, C_CloseSession(again)));
    label[..6].copy_from_slice(b"parity");
    r.rv(
        "C_InitToken with a wrong SO PIN",
        ck!(
            m,
            C_InitToken(slot, b"87654321".as_ptr() as *mut _, 8, label.as_mut_ptr())
        ),
    );
    r.rv(
        "C_InitToken with a 3-byte SO PIN",
        ck!(
            m,
            C_InitToken(slot, b"123".as_ptr() as *mut _, 3, label.as_mut_ptr())
        ),
    );
    r.rv(
        "C_InitToken with the right SO PIN",
        ck!(
            m,
            C_InitToken(slot, SO_PIN.as_ptr() as *mut _, 8, label.as_mut_ptr())
        ),
    );
    let flags = token_flags(m, slot);
    r.val(
        "re-initialized: TOKEN_INITIALIZED",
        (flags & CKF_TOKEN_INITIALIZED != 0) as u64,
    );
    r.val(
        "re-initialized: USER_PIN_INITIALIZED",
        (flags & CKF_USER_PIN_INITIALIZED != 0) as u64,
    );
    let h = open(m, slot, true);
    r.rv(
        "user login after re-initialization",
        login(m, h, CKU_USER, PIN),
    );
    r.rv(
        "C_FindObjectsInit after re-initialization",
        ck!(m, C_FindObjectsInit(h, by_label.ptr(), by_label.len())),
    );
    r.rv(
        "C_FindObjects after re-initialization",
        ck!(m, C_FindObjects(h, found.as_mut_ptr(), 8, &mut n)),
    );
    r.val("objects left after re-initialization", n);
    r.rv("C_FindObjectsFinal", ck!(m, C_FindObjectsFinal(h)));
    r.rv("C_CloseSession", ck!(m, C_CloseSession(h)));
    r
}

pub fn label32(s: &[u8]) -> [u8; 32] {
    let mut l = [b' '; 32];
    l[..s.len()].copy_from_slice(s);
    l
}

/// Initializes the token of `slot` with `SO_PIN`/`PIN`; returns the slot id the token has
/// afterwards (SoftHSM moves a newly initialized token to a new slot id).
pub fn prepare(m: &Module, slot: CK_SLOT_ID, label: &[u8]) -> CK_SLOT_ID {
    let mut l = label32(label);
    assert_eq!(
        ck!(
            m,
            C_InitToken(slot, SO_PIN.as_ptr() as *mut _, 8, l.as_mut_ptr())
        ),
        CKR_OK
    );
    let mut n: CK_ULONG = 0;
    assert_eq!(
        ck!(m, C_GetSlotList(1, std::ptr::null_mut(), &mut n)),
        CKR_OK
    );
    let mut slots = vec![0; n as usize];
    assert_eq!(ck!(m, C_GetSlotList(1, slots.as_mut_ptr(), &mut n)), CKR_OK);
    let slot = slots
        .into_iter()
        .find(|s| {
            let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
            ck!(m, C_GetTokenInfo(*s, &mut ti)) == CKR_OK && ti.label == l
        })
        .expect("the initialized token");
    let h = open(m, slot, true);
    assert_eq!(login(m, h, CKU_SO, SO_PIN), CKR_OK);
    assert_eq!(ck!(m, C_InitPIN(h, PIN.as_ptr() as *mut _, 4)), CKR_OK);
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
    slot
}
