//! The bad-input table (issue 17): malformed single calls through the C ABI, each with the
//! return value PKCS#11 gives it, against hsmux's soft token and a SoftHSMv2 token behind
//! a module slot (`backend = "module"`), with libhsmux.so loaded by dlopen as any
//! consumer loads it.
//!
//! Every row is also run against SoftHSMv2 loaded directly, each in a child process of
//! its own (this binary again, `direct_row` selected), because some of these inputs crash
//! SoftHSM: the table then says so, and hsmux must still answer with a spec code. The
//! direct answers are reported, not asserted: they are SoftHSM's business.
//!
//! Lengths tried: 0, one short, one long, 2^32, 2^40 and (CK_ULONG)-1, on buffers that are
//! really a few bytes long: a module that reads `ulLen` bytes before checking `ulLen`
//! faults (or aborts on the allocation), one that checks first answers.

#![allow(clippy::macro_metavars_in_unsafe)]

mod common;

use common::*;
use cryptoki_sys::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const ROW_ENV: &str = "HSMUX_BAD_INPUT_ROW";
const CONF_ENV: &str = "HSMUX_BAD_INPUT_SOFTHSM_CONF";

const L32: CK_ULONG = 1 << 32;
const L40: CK_ULONG = 1 << 40;
const LMAX: CK_ULONG = CK_ULONG::MAX;
const INVALID: CK_ULONG = 0x7fff_fff0;
const UL: CK_ULONG = std::mem::size_of::<CK_ULONG>() as CK_ULONG;

/// What a row runs on: a RW user session with an AES key and a P-256 key pair.
struct Ctx<'a> {
    m: &'a Module,
    slot: CK_SLOT_ID,
    h: CK_SESSION_HANDLE,
    /// A read-only public session of the same slot.
    ro: CK_SESSION_HANDLE,
    aes: CK_OBJECT_HANDLE,
    ec_pub: CK_OBJECT_HANDLE,
    ec_priv: CK_OBJECT_HANDLE,
}

type RowFn = fn(&Ctx) -> CK_RV;

/// One malformed call: `want` holds the spec's answers (more than one where the spec
/// lets two errors apply); `module` overrides it for the SoftHSM module slot when the
/// vendor's own (spec-conforming) choice is passed through.
struct Row {
    name: &'static str,
    run: RowFn,
    want: &'static [CK_RV],
    module: Option<&'static [CK_RV]>,
}

const fn row(name: &'static str, run: RowFn, want: &'static [CK_RV]) -> Row {
    Row {
        name,
        run,
        want,
        module: None,
    }
}

const fn row_m(
    name: &'static str,
    run: RowFn,
    want: &'static [CK_RV],
    module: &'static [CK_RV],
) -> Row {
    Row {
        name,
        run,
        want,
        module: Some(module),
    }
}

const NULL: *mut std::ffi::c_void = std::ptr::null_mut();

fn null<T>() -> *mut T {
    std::ptr::null_mut()
}

// ---- calls used by the rows -------------------------------------------------------------

fn login_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let pin = [b'1'; 300];
    // A fresh session logged out, so that a PIN check is reached at all.
    let h = open(c.m, c.slot, false);
    let _ = ck!(c.m, C_Logout(h));
    let rv = ck!(c.m, C_Login(h, CKU_USER, pin.as_ptr() as *mut _, len));
    if rv == CKR_OK {
        let _ = ck!(c.m, C_Logout(h));
    }
    let _ = ck!(c.m, C_CloseSession(h));
    // Back to the row's logged-in state for the next rows.
    let _ = login(c.m, c.h, CKU_USER, PIN);
    rv
}

fn set_pin_old_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let pin = [b'1'; 16];
    ck!(
        c.m,
        C_SetPIN(c.h, pin.as_ptr() as *mut _, len, pin.as_ptr() as *mut _, 4)
    )
}

fn init_pin_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let pin = [b'1'; 16];
    ck!(c.m, C_InitPIN(c.h, pin.as_ptr() as *mut _, len))
}

fn init_token_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let pin = [b'1'; 16];
    let mut label = [b' '; 32];
    ck!(
        c.m,
        C_InitToken(c.slot, pin.as_ptr() as *mut _, len, label.as_mut_ptr())
    )
}

/// C_CreateObject of a session data object whose attribute `ty` claims `len` bytes of an
/// 8-byte buffer; the handle is destroyed when the call succeeds.
fn create_with(c: &Ctx, ty: CK_ATTRIBUTE_TYPE, len: CK_ULONG) -> CK_RV {
    let mut class = CKO_DATA.to_ne_bytes();
    let mut f = [0u8; 8];
    let mut label = *b"badinput";
    let mut t = vec![
        CK_ATTRIBUTE {
            type_: CKA_CLASS,
            pValue: class.as_mut_ptr() as *mut _,
            ulValueLen: UL,
        },
        CK_ATTRIBUTE {
            type_: CKA_TOKEN,
            pValue: f.as_mut_ptr() as *mut _,
            ulValueLen: 1,
        },
        CK_ATTRIBUTE {
            type_: CKA_LABEL,
            pValue: label.as_mut_ptr() as *mut _,
            ulValueLen: 8,
        },
    ];
    let a = t.iter_mut().find(|a| a.type_ == ty).expect("attribute");
    a.ulValueLen = len;
    let mut o = 0;
    let rv = ck!(c.m, C_CreateObject(c.h, t.as_mut_ptr(), 3, &mut o));
    if rv == CKR_OK {
        ck!(c.m, C_DestroyObject(c.h, o));
    }
    rv
}

fn create_count(c: &Ctx, n: CK_ULONG) -> CK_RV {
    let mut class = CKO_DATA.to_ne_bytes();
    let mut t = [CK_ATTRIBUTE {
        type_: CKA_CLASS,
        pValue: class.as_mut_ptr() as *mut _,
        ulValueLen: UL,
    }];
    let mut o = 0;
    ck!(c.m, C_CreateObject(c.h, t.as_mut_ptr(), n, &mut o))
}

fn secret_with_date(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bool(CKA_TOKEN, false)
        .bytes(CKA_VALUE, &[7u8; 16])
        .bytes(CKA_START_DATE, b"20260101");
    t.attrs[4].ulValueLen = len;
    let mut o = 0;
    let rv = ck!(c.m, C_CreateObject(c.h, t.ptr(), t.len(), &mut o));
    if rv == CKR_OK {
        ck!(c.m, C_DestroyObject(c.h, o));
    }
    rv
}

fn find_init_class_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let mut class = CKO_DATA.to_ne_bytes();
    let mut t = [CK_ATTRIBUTE {
        type_: CKA_CLASS,
        pValue: class.as_mut_ptr() as *mut _,
        ulValueLen: len,
    }];
    let rv = ck!(c.m, C_FindObjectsInit(c.h, t.as_mut_ptr(), 1));
    if rv == CKR_OK {
        ck!(c.m, C_FindObjectsFinal(c.h));
    }
    rv
}

fn set_label_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let mut label = *b"x";
    let mut t = [CK_ATTRIBUTE {
        type_: CKA_LABEL,
        pValue: label.as_mut_ptr() as *mut _,
        ulValueLen: len,
    }];
    ck!(c.m, C_SetAttributeValue(c.h, c.aes, t.as_mut_ptr(), 1))
}

fn get_attr_count(c: &Ctx, n: CK_ULONG) -> CK_RV {
    let mut t = [CK_ATTRIBUTE {
        type_: CKA_CLASS,
        pValue: NULL,
        ulValueLen: 0,
    }];
    ck!(c.m, C_GetAttributeValue(c.h, c.aes, t.as_mut_ptr(), n))
}

/// C_EncryptInit with AES-CBC whose IV claims `len` bytes of a 16-byte buffer; a
/// started operation is ended with a NULL-mechanism-free way: one C_Encrypt.
fn cbc_iv_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    // Room for the short and long IVs (a vendor may copy what the length says before it
    // checks it); the 2^32.. lengths are lies about this buffer on purpose.
    let mut iv = [0u8; 32];
    let mut mc = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: iv.as_mut_ptr() as *mut _,
        ulParameterLen: len,
    };
    let rv = ck!(c.m, C_EncryptInit(c.h, &mut mc, c.aes));
    if rv == CKR_OK {
        finish_encrypt(c);
    }
    rv
}

fn cbc_iv_null(c: &Ctx) -> CK_RV {
    let mut mc = CK_MECHANISM {
        mechanism: CKM_AES_CBC,
        pParameter: NULL,
        ulParameterLen: 16,
    };
    let rv = ck!(c.m, C_EncryptInit(c.h, &mut mc, c.aes));
    if rv == CKR_OK {
        finish_encrypt(c);
    }
    rv
}

fn gcm_iv_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let mut iv = [0u8; 12];
    let mut p = CK_GCM_PARAMS {
        pIv: iv.as_mut_ptr(),
        ulIvLen: len,
        ulIvBits: 96,
        pAAD: null(),
        ulAADLen: 0,
        ulTagBits: 128,
    };
    let mut mc = mech_with(CKM_AES_GCM, &mut p);
    let rv = ck!(c.m, C_EncryptInit(c.h, &mut mc, c.aes));
    if rv == CKR_OK {
        finish_encrypt(c);
    }
    rv
}

fn finish_encrypt(c: &Ctx) {
    let data = [0u8; 16];
    let mut out = [0u8; 64];
    let mut n = out.len() as CK_ULONG;
    ck!(
        c.m,
        C_Encrypt(c.h, data.as_ptr() as *mut _, 16, out.as_mut_ptr(), &mut n)
    );
}

fn ecb_init(c: &Ctx) {
    let mut mc = mech(CKM_AES_ECB);
    assert_rv!(ck!(c.m, C_EncryptInit(c.h, &mut mc, c.aes)), CKR_OK);
}

fn encrypt_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    ecb_init(c);
    let data = [0u8; 16];
    let mut out = [0u8; 64];
    let mut n = out.len() as CK_ULONG;
    let rv = ck!(
        c.m,
        C_Encrypt(c.h, data.as_ptr() as *mut _, len, out.as_mut_ptr(), &mut n)
    );
    finish_encrypt(c);
    rv
}

fn sign_init(c: &Ctx) {
    let mut mc = mech(CKM_ECDSA);
    assert_rv!(ck!(c.m, C_SignInit(c.h, &mut mc, c.ec_priv)), CKR_OK);
}

/// A C_Sign that would succeed: ends a sign operation still active, or reports that
/// there is none.
fn sign_ok(c: &Ctx) -> CK_RV {
    let data = [1u8; 32];
    let mut sig = [0u8; 128];
    let mut n = sig.len() as CK_ULONG;
    ck!(
        c.m,
        C_Sign(c.h, data.as_ptr() as *mut _, 32, sig.as_mut_ptr(), &mut n)
    )
}

fn sign_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    sign_init(c);
    let data = [1u8; 32];
    let mut sig = [0u8; 128];
    let mut n = sig.len() as CK_ULONG;
    let rv = ck!(
        c.m,
        C_Sign(c.h, data.as_ptr() as *mut _, len, sig.as_mut_ptr(), &mut n)
    );
    sign_ok(c);
    rv
}

fn verify_sig_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let mut mc = mech(CKM_ECDSA);
    assert_rv!(ck!(c.m, C_VerifyInit(c.h, &mut mc, c.ec_pub)), CKR_OK);
    let data = [1u8; 32];
    let sig = [0u8; 64];
    let rv = ck!(
        c.m,
        C_Verify(
            c.h,
            data.as_ptr() as *mut _,
            32,
            sig.as_ptr() as *mut _,
            len
        )
    );
    // Ends an operation left active.
    ck!(
        c.m,
        C_Verify(c.h, data.as_ptr() as *mut _, 32, sig.as_ptr() as *mut _, 64)
    );
    rv
}

fn digest_update_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let mut mc = mech(CKM_SHA256);
    assert_rv!(ck!(c.m, C_DigestInit(c.h, &mut mc)), CKR_OK);
    let data = [0u8; 16];
    let rv = ck!(c.m, C_DigestUpdate(c.h, data.as_ptr() as *mut _, len));
    let mut out = [0u8; 64];
    let mut n = 64;
    ck!(c.m, C_DigestFinal(c.h, out.as_mut_ptr(), &mut n));
    rv
}

fn digest_param_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let mut p = [0u8; 8];
    let mut mc = CK_MECHANISM {
        mechanism: CKM_SHA256,
        pParameter: p.as_mut_ptr() as *mut _,
        ulParameterLen: len,
    };
    let rv = ck!(c.m, C_DigestInit(c.h, &mut mc));
    if rv == CKR_OK {
        let data = [0u8; 4];
        let mut out = [0u8; 64];
        let mut n = 64;
        ck!(
            c.m,
            C_Digest(c.h, data.as_ptr() as *mut _, 4, out.as_mut_ptr(), &mut n)
        );
    }
    rv
}

fn random_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let mut out = [0u8; 16];
    ck!(c.m, C_GenerateRandom(c.h, out.as_mut_ptr(), len))
}

fn seed_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let seed = [0u8; 16];
    ck!(c.m, C_SeedRandom(c.h, seed.as_ptr() as *mut _, len))
}

fn generate_aes_value_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let mut t = Template::new()
        .ulong(CKA_VALUE_LEN, 16)
        .bool(CKA_TOKEN, false);
    t.attrs[0].ulValueLen = len;
    let mut mc = mech(CKM_AES_KEY_GEN);
    let mut k = 0;
    let rv = ck!(c.m, C_GenerateKey(c.h, &mut mc, t.ptr(), t.len(), &mut k));
    if rv == CKR_OK {
        ck!(c.m, C_DestroyObject(c.h, k));
    }
    rv
}

fn unwrap_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let wrapped = [0u8; 24];
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_TOKEN, false);
    let mut mc = mech(CKM_AES_KEY_WRAP);
    let mut k = 0;
    ck!(
        c.m,
        C_UnwrapKey(
            c.h,
            &mut mc,
            c.aes,
            wrapped.as_ptr() as *mut _,
            len,
            t.ptr(),
            t.len(),
            &mut k
        )
    )
}

fn ecdh_public_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let mut public = [4u8; 65];
    let mut p = CK_ECDH1_DERIVE_PARAMS {
        kdf: CKD_NULL,
        ulSharedDataLen: 0,
        pSharedData: null(),
        ulPublicDataLen: len,
        pPublicData: public.as_mut_ptr(),
    };
    let mut mc = mech_with(CKM_ECDH1_DERIVE, &mut p);
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .ulong(CKA_VALUE_LEN, 32)
        .bool(CKA_TOKEN, false);
    let mut k = 0;
    ck!(
        c.m,
        C_DeriveKey(c.h, &mut mc, c.ec_priv, t.ptr(), t.len(), &mut k)
    )
}

fn set_state_len(c: &Ctx, len: CK_ULONG) -> CK_RV {
    let state = [0u8; 16];
    ck!(
        c.m,
        C_SetOperationState(c.h, state.as_ptr() as *mut _, len, 0, 0)
    )
}

// ---- the table ---------------------------------------------------------------------------

const AVI: &[CK_RV] = &[CKR_ATTRIBUTE_VALUE_INVALID];
const MPI: &[CK_RV] = &[CKR_MECHANISM_PARAM_INVALID];
const BAD: &[CK_RV] = &[CKR_ARGUMENTS_BAD];
const PLR: &[CK_RV] = &[CKR_PIN_LEN_RANGE];
const OK: &[CK_RV] = &[CKR_OK];
const SHI: &[CK_RV] = &[CKR_SESSION_HANDLE_INVALID];
const ONI: &[CK_RV] = &[CKR_OPERATION_NOT_INITIALIZED];
/// An AES-CBC IV of the wrong size but within bounds reaches the vendor, which answers
/// it: SoftHSM 2.6.1 says CKR_MECHANISM_INVALID, or CKR_ARGUMENTS_BAD for an empty one
/// (the softhsm_compat parity test pins that hsmux passes the vendor's answer through).
const CBC_IV_MODULE: &[CK_RV] = &[
    CKR_MECHANISM_PARAM_INVALID,
    CKR_MECHANISM_INVALID,
    CKR_ARGUMENTS_BAD,
];

fn table() -> Vec<Row> {
    vec![
        // -- general and slot functions
        row("C_GetInfo(NULL)", |c| ck!(c.m, C_GetInfo(null())), BAD),
        row(
            "C_GetSlotList(NULL pulCount)",
            |c| ck!(c.m, C_GetSlotList(CK_TRUE, null(), null())),
            BAD,
        ),
        row(
            "C_GetSlotList(count one short)",
            |c| {
                let mut n: CK_ULONG = 0;
                let mut one: [CK_SLOT_ID; 1] = [0];
                ck!(c.m, C_GetSlotList(CK_FALSE, one.as_mut_ptr(), &mut n))
            },
            &[CKR_BUFFER_TOO_SMALL],
        ),
        row(
            "C_GetSlotInfo(NULL)",
            |c| ck!(c.m, C_GetSlotInfo(c.slot, null())),
            BAD,
        ),
        row(
            "C_GetSlotInfo(invalid slot)",
            |c| {
                let mut i: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
                ck!(c.m, C_GetSlotInfo(INVALID, &mut i))
            },
            &[CKR_SLOT_ID_INVALID],
        ),
        row(
            "C_GetTokenInfo(NULL)",
            |c| ck!(c.m, C_GetTokenInfo(c.slot, null())),
            BAD,
        ),
        row(
            "C_GetMechanismList(NULL pulCount)",
            |c| ck!(c.m, C_GetMechanismList(c.slot, null(), null())),
            BAD,
        ),
        row(
            "C_GetMechanismInfo(NULL)",
            |c| ck!(c.m, C_GetMechanismInfo(c.slot, CKM_SHA256, null())),
            BAD,
        ),
        row(
            "C_GetMechanismInfo(invalid mechanism)",
            |c| {
                let mut i: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
                ck!(c.m, C_GetMechanismInfo(c.slot, 0x7fff_0000, &mut i))
            },
            &[CKR_MECHANISM_INVALID],
        ),
        row(
            "C_InitToken(ulPinLen 2^32)",
            |c| init_token_len(c, L32),
            PLR,
        ),
        row(
            "C_InitToken(ulPinLen 2^40)",
            |c| init_token_len(c, L40),
            PLR,
        ),
        row("C_InitToken(ulPinLen -1)", |c| init_token_len(c, LMAX), PLR),
        // -- sessions and login
        row(
            "C_OpenSession(NULL phSession)",
            |c| {
                ck!(
                    c.m,
                    C_OpenSession(c.slot, CKF_SERIAL_SESSION, NULL, None, null())
                )
            },
            BAD,
        ),
        row(
            "C_OpenSession(invalid slot)",
            |c| {
                let mut h = 0;
                ck!(
                    c.m,
                    C_OpenSession(INVALID, CKF_SERIAL_SESSION, NULL, None, &mut h)
                )
            },
            &[CKR_SLOT_ID_INVALID],
        ),
        row(
            "C_OpenSession(no CKF_SERIAL_SESSION)",
            |c| {
                let mut h = 0;
                ck!(c.m, C_OpenSession(c.slot, 0, NULL, None, &mut h))
            },
            &[CKR_SESSION_PARALLEL_NOT_SUPPORTED],
        ),
        row(
            "C_CloseSession(invalid handle)",
            |c| ck!(c.m, C_CloseSession(INVALID)),
            SHI,
        ),
        row(
            "C_GetSessionInfo(NULL)",
            |c| ck!(c.m, C_GetSessionInfo(c.h, null())),
            BAD,
        ),
        row(
            "C_GetSessionInfo(invalid handle)",
            |c| {
                let mut i: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
                ck!(c.m, C_GetSessionInfo(INVALID, &mut i))
            },
            SHI,
        ),
        row(
            "C_Login(NULL pPin, 4)",
            |c| ck!(c.m, C_Login(c.h, CKU_USER, null(), 4)),
            // Already logged in: the spec lets either error apply.
            &[CKR_ARGUMENTS_BAD, CKR_USER_ALREADY_LOGGED_IN],
        ),
        row(
            "C_Login(invalid user type)",
            |c| login(c.m, c.h, 7, PIN),
            &[CKR_USER_TYPE_INVALID, CKR_USER_ALREADY_LOGGED_IN],
        ),
        row(
            "C_Login(logged in already)",
            |c| login(c.m, c.h, CKU_USER, PIN),
            &[CKR_USER_ALREADY_LOGGED_IN],
        ),
        row(
            "C_Login(ulPinLen 0)",
            |c| login_len(c, 0),
            &[CKR_PIN_INCORRECT, CKR_PIN_LEN_RANGE],
        ),
        row(
            "C_Login(ulPinLen one short)",
            |c| login_len(c, 3),
            &[CKR_PIN_INCORRECT],
        ),
        row(
            "C_Login(ulPinLen one long: 256)",
            |c| login_len(c, 256),
            PLR,
        ),
        row("C_Login(ulPinLen 2^32)", |c| login_len(c, L32), PLR),
        row("C_Login(ulPinLen 2^40)", |c| login_len(c, L40), PLR),
        row("C_Login(ulPinLen -1)", |c| login_len(c, LMAX), PLR),
        row(
            "C_Login(invalid handle)",
            |c| login(c.m, INVALID, CKU_USER, PIN),
            SHI,
        ),
        row("C_InitPIN(ulPinLen 2^32)", |c| init_pin_len(c, L32), PLR),
        row("C_InitPIN(ulPinLen -1)", |c| init_pin_len(c, LMAX), PLR),
        row(
            "C_InitPIN(as the user: wrong state)",
            |c| init_pin_len(c, 4),
            &[CKR_USER_NOT_LOGGED_IN],
        ),
        row("C_SetPIN(ulOldLen 2^32)", |c| set_pin_old_len(c, L32), PLR),
        row("C_SetPIN(ulOldLen 2^40)", |c| set_pin_old_len(c, L40), PLR),
        row(
            "C_SetPIN(NULL pOldPin)",
            |c| {
                let p = *b"1234";
                ck!(c.m, C_SetPIN(c.h, null(), 4, p.as_ptr() as *mut _, 4))
            },
            BAD,
        ),
        // -- objects: fixed-size attributes with lying lengths
        row(
            "C_CreateObject(CKA_CLASS len 0)",
            |c| create_with(c, CKA_CLASS, 0),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_CLASS one short)",
            |c| create_with(c, CKA_CLASS, UL - 1),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_CLASS one long)",
            |c| create_with(c, CKA_CLASS, UL + 1),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_CLASS 2^32)",
            |c| create_with(c, CKA_CLASS, L32),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_CLASS 2^40)",
            |c| create_with(c, CKA_CLASS, L40),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_CLASS -1)",
            |c| create_with(c, CKA_CLASS, LMAX),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_TOKEN len 0)",
            |c| create_with(c, CKA_TOKEN, 0),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_TOKEN one long)",
            |c| create_with(c, CKA_TOKEN, 2),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_TOKEN 2^32)",
            |c| create_with(c, CKA_TOKEN, L32),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_TOKEN 2^34)",
            |c| create_with(c, CKA_TOKEN, 1 << 34),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_TOKEN -1)",
            |c| create_with(c, CKA_TOKEN, LMAX),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_LABEL 0)",
            |c| create_with(c, CKA_LABEL, 0),
            OK,
        ),
        row(
            "C_CreateObject(CKA_LABEL 2^32)",
            |c| create_with(c, CKA_LABEL, L32),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_LABEL 2^40)",
            |c| create_with(c, CKA_LABEL, L40),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_LABEL -1)",
            |c| create_with(c, CKA_LABEL, LMAX),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_START_DATE one short)",
            |c| secret_with_date(c, 7),
            AVI,
        ),
        row(
            "C_CreateObject(CKA_START_DATE 2^40)",
            |c| secret_with_date(c, L40),
            AVI,
        ),
        row(
            "C_CreateObject(NULL pValue with a length)",
            |c| {
                let mut t = [CK_ATTRIBUTE {
                    type_: CKA_CLASS,
                    pValue: NULL,
                    ulValueLen: UL,
                }];
                let mut o = 0;
                ck!(c.m, C_CreateObject(c.h, t.as_mut_ptr(), 1, &mut o))
            },
            AVI,
        ),
        row(
            "C_CreateObject(ulCount 2^32)",
            |c| create_count(c, L32),
            BAD,
        ),
        row(
            "C_CreateObject(ulCount 2^40)",
            |c| create_count(c, L40),
            BAD,
        ),
        row("C_CreateObject(ulCount -1)", |c| create_count(c, LMAX), BAD),
        row(
            "C_CreateObject(NULL pTemplate)",
            |c| {
                let mut o = 0;
                ck!(c.m, C_CreateObject(c.h, null(), 3, &mut o))
            },
            BAD,
        ),
        row(
            "C_CreateObject(NULL phObject)",
            |c| {
                let mut t = Template::new()
                    .ulong(CKA_CLASS, CKO_DATA)
                    .bool(CKA_TOKEN, false);
                ck!(c.m, C_CreateObject(c.h, t.ptr(), t.len(), null()))
            },
            BAD,
        ),
        row(
            "C_CreateObject(token object in a RO session)",
            |c| {
                let mut t = Template::new()
                    .ulong(CKA_CLASS, CKO_DATA)
                    .bool(CKA_TOKEN, true);
                let mut o = 0;
                ck!(c.m, C_CreateObject(c.ro, t.ptr(), t.len(), &mut o))
            },
            &[CKR_SESSION_READ_ONLY],
        ),
        row(
            "C_CopyObject(invalid object)",
            |c| {
                let mut t = Template::new().bool(CKA_TOKEN, false);
                let mut o = 0;
                ck!(c.m, C_CopyObject(c.h, INVALID, t.ptr(), t.len(), &mut o))
            },
            &[CKR_OBJECT_HANDLE_INVALID],
        ),
        row(
            "C_DestroyObject(invalid object)",
            |c| ck!(c.m, C_DestroyObject(c.h, INVALID)),
            &[CKR_OBJECT_HANDLE_INVALID],
        ),
        row(
            "C_GetObjectSize(NULL pulSize)",
            |c| ck!(c.m, C_GetObjectSize(c.h, c.aes, null())),
            BAD,
        ),
        row(
            "C_GetAttributeValue(NULL pTemplate)",
            |c| ck!(c.m, C_GetAttributeValue(c.h, c.aes, null(), 1)),
            BAD,
        ),
        row(
            "C_GetAttributeValue(ulCount 2^40)",
            |c| get_attr_count(c, L40),
            BAD,
        ),
        row(
            "C_GetAttributeValue(ulCount -1)",
            |c| get_attr_count(c, LMAX),
            BAD,
        ),
        row(
            "C_GetAttributeValue(invalid object)",
            |c| {
                let mut t = [CK_ATTRIBUTE {
                    type_: CKA_CLASS,
                    pValue: NULL,
                    ulValueLen: 0,
                }];
                ck!(c.m, C_GetAttributeValue(c.h, INVALID, t.as_mut_ptr(), 1))
            },
            &[CKR_OBJECT_HANDLE_INVALID],
        ),
        row(
            "C_SetAttributeValue(CKA_LABEL 2^40)",
            |c| set_label_len(c, L40),
            AVI,
        ),
        row(
            "C_SetAttributeValue(CKA_LABEL -1)",
            |c| set_label_len(c, LMAX),
            AVI,
        ),
        row(
            "C_FindObjectsInit(CKA_CLASS one long)",
            |c| find_init_class_len(c, UL + 1),
            AVI,
        ),
        row(
            "C_FindObjectsInit(CKA_CLASS 2^40)",
            |c| find_init_class_len(c, L40),
            AVI,
        ),
        row(
            "C_FindObjects(not initialized)",
            |c| {
                let mut hs = [0; 4];
                let mut n = 0;
                ck!(c.m, C_FindObjects(c.h, hs.as_mut_ptr(), 4, &mut n))
            },
            ONI,
        ),
        row(
            "C_FindObjectsFinal(not initialized)",
            |c| ck!(c.m, C_FindObjectsFinal(c.h)),
            ONI,
        ),
        // -- mechanism parameters
        row_m(
            "C_EncryptInit(AES-CBC IV 0)",
            |c| cbc_iv_len(c, 0),
            MPI,
            CBC_IV_MODULE,
        ),
        row_m(
            "C_EncryptInit(AES-CBC IV one short)",
            |c| cbc_iv_len(c, 15),
            MPI,
            CBC_IV_MODULE,
        ),
        row_m(
            "C_EncryptInit(AES-CBC IV one long)",
            |c| cbc_iv_len(c, 17),
            MPI,
            CBC_IV_MODULE,
        ),
        row(
            "C_EncryptInit(AES-CBC IV 2^32)",
            |c| cbc_iv_len(c, L32),
            MPI,
        ),
        row(
            "C_EncryptInit(AES-CBC IV 2^34)",
            |c| cbc_iv_len(c, 1 << 34),
            MPI,
        ),
        row(
            "C_EncryptInit(AES-CBC IV 2^40)",
            |c| cbc_iv_len(c, L40),
            MPI,
        ),
        row("C_EncryptInit(AES-CBC IV -1)", |c| cbc_iv_len(c, LMAX), MPI),
        row("C_EncryptInit(AES-CBC NULL IV, 16)", cbc_iv_null, MPI),
        row(
            "C_EncryptInit(AES-GCM ulIvLen 2^40)",
            |c| gcm_iv_len(c, L40),
            MPI,
        ),
        row(
            "C_EncryptInit(AES-GCM ulIvLen -1)",
            |c| gcm_iv_len(c, LMAX),
            MPI,
        ),
        row(
            "C_EncryptInit(invalid key)",
            |c| {
                let mut mc = mech(CKM_AES_ECB);
                ck!(c.m, C_EncryptInit(c.h, &mut mc, INVALID))
            },
            &[CKR_KEY_HANDLE_INVALID, CKR_OBJECT_HANDLE_INVALID],
        ),
        row(
            "C_EncryptInit(invalid mechanism)",
            |c| {
                let mut mc = mech(0x7fff_0000);
                ck!(c.m, C_EncryptInit(c.h, &mut mc, c.aes))
            },
            &[CKR_MECHANISM_INVALID],
        ),
        row(
            "C_DigestInit(SHA-256 param 2^40)",
            |c| digest_param_len(c, L40),
            MPI,
        ),
        row(
            "C_DigestInit(SHA-256 param -1)",
            |c| digest_param_len(c, LMAX),
            MPI,
        ),
        row(
            "C_DeriveKey(ECDH1 ulPublicDataLen 2^40)",
            |c| ecdh_public_len(c, L40),
            MPI,
        ),
        row(
            "C_DeriveKey(ECDH1 ulPublicDataLen -1)",
            |c| ecdh_public_len(c, LMAX),
            MPI,
        ),
        row(
            "C_GenerateKey(CKA_VALUE_LEN one short)",
            |c| generate_aes_value_len(c, UL - 1),
            AVI,
        ),
        row(
            "C_GenerateKey(CKA_VALUE_LEN 2^40)",
            |c| generate_aes_value_len(c, L40),
            AVI,
        ),
        row(
            "C_GenerateKey(NULL pMechanism)",
            |c| {
                let mut t = Template::new().ulong(CKA_VALUE_LEN, 16);
                let mut k = 0;
                ck!(c.m, C_GenerateKey(c.h, null(), t.ptr(), t.len(), &mut k))
            },
            BAD,
        ),
        // -- data lengths
        row(
            "C_Encrypt(not initialized)",
            |c| {
                let d = [0u8; 16];
                let mut o = [0u8; 16];
                let mut n = 16;
                ck!(
                    c.m,
                    C_Encrypt(c.h, d.as_ptr() as *mut _, 16, o.as_mut_ptr(), &mut n)
                )
            },
            ONI,
        ),
        row("C_Encrypt(ulDataLen 2^32)", |c| encrypt_len(c, L32), BAD),
        row("C_Encrypt(ulDataLen 2^40)", |c| encrypt_len(c, L40), BAD),
        row("C_Encrypt(ulDataLen -1)", |c| encrypt_len(c, LMAX), BAD),
        row(
            "C_Encrypt(NULL pData, 16)",
            |c| {
                ecb_init(c);
                let mut o = [0u8; 16];
                let mut n = 16;
                let rv = ck!(c.m, C_Encrypt(c.h, null(), 16, o.as_mut_ptr(), &mut n));
                finish_encrypt(c);
                rv
            },
            BAD,
        ),
        row(
            "C_Encrypt(NULL pulEncryptedDataLen)",
            |c| {
                ecb_init(c);
                let d = [0u8; 16];
                let mut o = [0u8; 16];
                let rv = ck!(
                    c.m,
                    C_Encrypt(c.h, d.as_ptr() as *mut _, 16, o.as_mut_ptr(), null())
                );
                finish_encrypt(c);
                rv
            },
            BAD,
        ),
        row(
            "C_DigestUpdate(ulPartLen 2^40)",
            |c| digest_update_len(c, L40),
            BAD,
        ),
        row(
            "C_DigestUpdate(ulPartLen -1)",
            |c| digest_update_len(c, LMAX),
            BAD,
        ),
        row("C_Sign(ulDataLen 2^32)", |c| sign_len(c, L32), BAD),
        row("C_Sign(ulDataLen 2^40)", |c| sign_len(c, L40), BAD),
        row(
            "C_Sign(NULL pulSignatureLen)",
            |c| {
                sign_init(c);
                let d = [1u8; 32];
                let rv = ck!(c.m, C_Sign(c.h, d.as_ptr() as *mut _, 32, null(), null()));
                sign_ok(c);
                rv
            },
            BAD,
        ),
        row(
            "C_Verify(ulSignatureLen 2^40)",
            |c| verify_sig_len(c, L40),
            BAD,
        ),
        row(
            "C_Verify(ulSignatureLen -1)",
            |c| verify_sig_len(c, LMAX),
            BAD,
        ),
        row(
            "C_VerifyFinal(not initialized)",
            |c| {
                let s = [0u8; 64];
                ck!(c.m, C_VerifyFinal(c.h, s.as_ptr() as *mut _, 64))
            },
            ONI,
        ),
        row(
            "C_GenerateRandom(NULL, 16)",
            |c| ck!(c.m, C_GenerateRandom(c.h, null(), 16)),
            BAD,
        ),
        row(
            "C_GenerateRandom(ulRandomLen 2^32)",
            |c| random_len(c, L32),
            BAD,
        ),
        row(
            "C_GenerateRandom(ulRandomLen 2^40)",
            |c| random_len(c, L40),
            BAD,
        ),
        row(
            "C_GenerateRandom(ulRandomLen -1)",
            |c| random_len(c, LMAX),
            BAD,
        ),
        row("C_SeedRandom(ulSeedLen 2^40)", |c| seed_len(c, L40), BAD),
        row(
            "C_UnwrapKey(ulWrappedKeyLen 2^40)",
            |c| unwrap_len(c, L40),
            BAD,
        ),
        row(
            "C_UnwrapKey(ulWrappedKeyLen -1)",
            |c| unwrap_len(c, LMAX),
            BAD,
        ),
        row(
            "C_WrapKey(NULL pulWrappedKeyLen)",
            |c| {
                let mut mc = mech(CKM_AES_KEY_WRAP);
                ck!(c.m, C_WrapKey(c.h, &mut mc, c.aes, c.aes, null(), null()))
            },
            // SoftHSM refuses wrapping a key that is not extractable first.
            &[
                CKR_ARGUMENTS_BAD,
                CKR_KEY_UNEXTRACTABLE,
                CKR_KEY_NOT_WRAPPABLE,
            ],
        ),
        row_m(
            "C_SetOperationState(ulOperationStateLen 2^40)",
            |c| set_state_len(c, L40),
            // hsmux's tokens have no operation state and never read it; the vendor would.
            &[CKR_FUNCTION_NOT_SUPPORTED],
            BAD,
        ),
        row(
            "C_GetOperationState(NULL pulOperationStateLen)",
            |c| ck!(c.m, C_GetOperationState(c.h, null(), null())),
            &[CKR_ARGUMENTS_BAD, CKR_FUNCTION_NOT_SUPPORTED],
        ),
    ]
}

/// Rows about operations ended by failing calls (defect 9): after the failure, a valid
/// call must find no operation (`CKR_OPERATION_NOT_INITIALIZED`), on hsmux's own tokens.
/// The module slot passes SoftHSM's own behaviour through; it is printed.
fn ended_rows() -> Vec<(&'static str, RowFn, CK_RV)> {
    const ENDED: CK_RV = CKR_OPERATION_NOT_INITIALIZED;
    vec![
        (
            "C_Sign(NULL pulSignatureLen) then C_Sign",
            |c| {
                sign_init(c);
                let d = [1u8; 32];
                assert_rv!(
                    ck!(c.m, C_Sign(c.h, d.as_ptr() as *mut _, 32, null(), null())),
                    CKR_ARGUMENTS_BAD
                );
                sign_ok(c)
            },
            ENDED,
        ),
        (
            "C_Sign(NULL pData, 32) then C_Sign",
            |c| {
                sign_init(c);
                let mut s = [0u8; 128];
                let mut n = 128;
                assert_rv!(
                    ck!(c.m, C_Sign(c.h, null(), 32, s.as_mut_ptr(), &mut n)),
                    CKR_ARGUMENTS_BAD
                );
                sign_ok(c)
            },
            ENDED,
        ),
        (
            "C_Encrypt(NULL pulEncryptedDataLen) then C_Encrypt",
            |c| {
                ecb_init(c);
                let d = [0u8; 16];
                assert_rv!(
                    ck!(
                        c.m,
                        C_Encrypt(c.h, d.as_ptr() as *mut _, 16, null(), null())
                    ),
                    CKR_ARGUMENTS_BAD
                );
                let mut o = [0u8; 16];
                let mut n = 16;
                ck!(
                    c.m,
                    C_Encrypt(c.h, d.as_ptr() as *mut _, 16, o.as_mut_ptr(), &mut n)
                )
            },
            ENDED,
        ),
        (
            "C_DecryptUpdate(NULL pulPartLen) then C_DecryptFinal",
            |c| {
                let mut mc = mech(CKM_AES_ECB);
                assert_rv!(ck!(c.m, C_DecryptInit(c.h, &mut mc, c.aes)), CKR_OK);
                let d = [0u8; 16];
                assert_rv!(
                    ck!(
                        c.m,
                        C_DecryptUpdate(c.h, d.as_ptr() as *mut _, 16, null(), null())
                    ),
                    CKR_ARGUMENTS_BAD
                );
                let mut o = [0u8; 16];
                let mut n = 16;
                ck!(c.m, C_DecryptFinal(c.h, o.as_mut_ptr(), &mut n))
            },
            ENDED,
        ),
        (
            "C_Digest(NULL pulDigestLen) then C_Digest",
            |c| {
                let mut mc = mech(CKM_SHA256);
                assert_rv!(ck!(c.m, C_DigestInit(c.h, &mut mc)), CKR_OK);
                let d = [0u8; 16];
                assert_rv!(
                    ck!(c.m, C_Digest(c.h, d.as_ptr() as *mut _, 16, null(), null())),
                    CKR_ARGUMENTS_BAD
                );
                let mut o = [0u8; 32];
                let mut n = 32;
                ck!(
                    c.m,
                    C_Digest(c.h, d.as_ptr() as *mut _, 16, o.as_mut_ptr(), &mut n)
                )
            },
            ENDED,
        ),
        (
            "C_DigestUpdate(NULL pPart, 16) then C_DigestFinal",
            |c| {
                let mut mc = mech(CKM_SHA256);
                assert_rv!(ck!(c.m, C_DigestInit(c.h, &mut mc)), CKR_OK);
                assert_rv!(ck!(c.m, C_DigestUpdate(c.h, null(), 16)), CKR_ARGUMENTS_BAD);
                let mut o = [0u8; 32];
                let mut n = 32;
                ck!(c.m, C_DigestFinal(c.h, o.as_mut_ptr(), &mut n))
            },
            ENDED,
        ),
        (
            "C_SignFinal(NULL pulSignatureLen) then C_SignFinal",
            |c| {
                sign_init(c);
                let d = [1u8; 32];
                let rv = ck!(c.m, C_SignUpdate(c.h, d.as_ptr() as *mut _, 32));
                if rv != CKR_OK {
                    // ECDSA without a hash is single-part only in SoftHSM.
                    sign_ok(c);
                    return CKR_OPERATION_NOT_INITIALIZED;
                }
                assert_rv!(
                    ck!(c.m, C_SignFinal(c.h, null(), null())),
                    CKR_ARGUMENTS_BAD
                );
                let mut s = [0u8; 128];
                let mut n = 128;
                ck!(c.m, C_SignFinal(c.h, s.as_mut_ptr(), &mut n))
            },
            ENDED,
        ),
        (
            "C_Verify(NULL pData, 32) then C_Verify",
            |c| {
                let mut mc = mech(CKM_ECDSA);
                assert_rv!(ck!(c.m, C_VerifyInit(c.h, &mut mc, c.ec_pub)), CKR_OK);
                let s = [0u8; 64];
                assert_rv!(
                    ck!(c.m, C_Verify(c.h, null(), 32, s.as_ptr() as *mut _, 64)),
                    CKR_ARGUMENTS_BAD
                );
                let d = [1u8; 32];
                ck!(
                    c.m,
                    C_Verify(c.h, d.as_ptr() as *mut _, 32, s.as_ptr() as *mut _, 64)
                )
            },
            ENDED,
        ),
        (
            "C_Sign(length query) keeps the operation: C_Sign",
            |c| {
                sign_init(c);
                let d = [1u8; 32];
                let mut n = 0;
                assert_rv!(
                    ck!(c.m, C_Sign(c.h, d.as_ptr() as *mut _, 32, null(), &mut n)),
                    CKR_OK
                );
                // Not ended: the valid call that follows succeeds.
                sign_ok(c)
            },
            CKR_OK,
        ),
    ]
}

// ---- set-up ------------------------------------------------------------------------------

fn softhsm_conf(dir: &Path) -> PathBuf {
    softhsm_token(dir, "bad", "12345678", "1234")
}

/// A user session with the fixtures every row may use.
fn fixtures(m: &Module, slot: CK_SLOT_ID) -> Ctx<'_> {
    let h = open(m, slot, true);
    assert_rv!(login(m, h, CKU_USER, PIN), CKR_OK);
    let ro = open(m, slot, false);
    let aes = secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 16)
            .bool(CKA_TOKEN, false)
            // Public session objects: rows that log the slot out and in keep them.
            .bool(CKA_PRIVATE, false)
            .bool(CKA_ENCRYPT, true)
            .bool(CKA_DECRYPT, true)
            .bool(CKA_WRAP, true)
            .bool(CKA_UNWRAP, true),
    );
    let (mut p, mut s) = (0, 0);
    let mut mc = mech(CKM_EC_KEY_PAIR_GEN);
    let mut pt = Template::new()
        .bytes(CKA_EC_PARAMS, P256_PARAMS)
        .bool(CKA_TOKEN, false)
        .bool(CKA_VERIFY, true);
    let mut st = Template::new()
        .bool(CKA_TOKEN, false)
        .bool(CKA_PRIVATE, false)
        .bool(CKA_SIGN, true)
        .bool(CKA_DERIVE, true);
    assert_rv!(
        ck!(
            m,
            C_GenerateKeyPair(
                h,
                &mut mc,
                pt.ptr(),
                pt.len(),
                st.ptr(),
                st.len(),
                &mut p,
                &mut s
            )
        ),
        CKR_OK
    );
    Ctx {
        m,
        slot,
        h,
        ro,
        aes,
        ec_pub: p,
        ec_priv: s,
    }
}

struct Setup {
    hsmux: Module,
    soft: CK_SLOT_ID,
    shsm: CK_SLOT_ID,
    conf: PathBuf,
}

static SETUP: OnceLock<Setup> = OnceLock::new();

fn setup() -> &'static Setup {
    SETUP.get_or_init(|| {
        assert!(Path::new(SOFTHSM).exists(), "{SOFTHSM} is missing");
        let dir = std::env::temp_dir().join(format!("hsmux-bad-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        remove_at_exit(&dir);
        let conf = softhsm_conf(&dir);
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let behind = dir.join("behind.so");
        std::fs::copy(SOFTHSM, &behind).unwrap();
        let cfg = format!(
            "[[slot]]\nlabel = \"soft\"\nbackend = \"soft\"\npath = \"{}/soft\"\nkdf_iterations = 1000\n\n\
             [[slot]]\nlabel = \"shsm\"\nbackend = \"module\"\nlibrary = \"{}\"\ntoken = \"bad\"\n",
            dir.display(),
            behind.display()
        );
        std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
        let hsmux = load();
        assert_rv!(initialize(&hsmux), CKR_OK);
        let soft = slot_labelled(&hsmux, "soft", false);
        init_slot(&hsmux, soft);
        let shsm = slot_labelled(&hsmux, "shsm", true);
        Setup {
            hsmux,
            soft,
            shsm,
            conf,
        }
    })
}

/// How a row ended against SoftHSM loaded directly.
fn direct(conf: &Path, kind: &str, name: &str) -> String {
    if std::env::var_os("HSMUX_BAD_INPUT_NO_DIRECT").is_some() {
        return "(not run: HSMUX_BAD_INPUT_NO_DIRECT)".into();
    }
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    // SoftHSM may try to copy a lying length: no core file, and at most 4 GiB of address
    // space, so that it fails fast instead of pushing the machine into swap.
    unsafe {
        cmd.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            let four_gib = libc::rlimit {
                rlim_cur: 4 << 30,
                rlim_max: 4 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &four_gib);
            Ok(())
        });
    }
    let out = cmd
        .args(["--exact", "direct_row", "--nocapture", "--test-threads=1"])
        .env(ROW_ENV, format!("{kind}\u{1f}{name}"))
        .env(CONF_ENV, conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some((_, rv)) = stdout.lines().find_map(|l| l.split_once("DIRECT RV ")) {
        return rv.to_string();
    }
    use std::os::unix::process::ExitStatusExt;
    match out.status.signal() {
        Some(sig) => format!("CRASH (signal {sig})"),
        None => format!(
            "CRASH (exit {:?}: {})",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
        ),
    }
}

/// The child's side of [`direct`]: one row against SoftHSM loaded directly.
#[test]
fn direct_row() {
    let Ok(which) = std::env::var(ROW_ENV) else {
        return;
    };
    let (kind, name) = which.split_once('\u{1f}').unwrap();
    std::env::set_var("SOFTHSM2_CONF", std::env::var(CONF_ENV).unwrap());
    let m = load_from(Path::new(SOFTHSM));
    assert_rv!(initialize(&m), CKR_OK);
    let slot = slot_labelled(&m, "bad", true);
    let c = fixtures(&m, slot);
    let f = if kind == "table" {
        table().into_iter().find(|r| r.name == name).unwrap().run
    } else {
        ended_rows().into_iter().find(|r| r.0 == name).unwrap().1
    };
    let rv = f(&c);
    println!("DIRECT RV {}", rv_name(rv));
    use std::io::Write;
    std::io::stdout().flush().unwrap();
}

/// One test: rows log the slot out and in again, which must not race other rows.
#[test]
fn bad_inputs() {
    let s = setup();
    let soft = fixtures(&s.hsmux, s.soft);
    let shsm = fixtures(&s.hsmux, s.shsm);
    every_bad_input_gets_its_spec_code(s, &soft, &shsm);
    a_failed_single_part_or_final_call_ends_the_operation(s, &soft, &shsm);
}

fn every_bad_input_gets_its_spec_code(s: &Setup, soft: &Ctx, shsm: &Ctx) {
    let rows = table();
    assert!(rows.len() > 100, "{} rows", rows.len());
    let mut report = String::new();
    let mut failures = Vec::new();
    let mut crashes = 0;
    for r in &rows {
        let got_soft = (r.run)(soft);
        let got_shsm = (r.run)(shsm);
        let want_m = r.module.unwrap_or(r.want);
        let d = direct(&s.conf, "table", r.name);
        crashes += d.starts_with("CRASH") as usize;
        let ok_soft = r.want.contains(&got_soft);
        let ok_shsm = want_m.contains(&got_shsm);
        report += &format!(
            "{} {:<48} soft {:<32} module {:<32} softhsm-direct {}\n",
            if ok_soft && ok_shsm { "  " } else { "!!" },
            r.name,
            rv_name(got_soft),
            rv_name(got_shsm),
            d
        );
        if !ok_soft {
            failures.push(format!(
                "{} on the soft token: {}",
                r.name,
                rv_name(got_soft)
            ));
        }
        if !ok_shsm {
            failures.push(format!(
                "{} on the module slot: {}",
                r.name,
                rv_name(got_shsm)
            ));
        }
    }
    println!(
        "{report}\n{} rows; SoftHSM loaded directly crashed on {crashes}",
        rows.len()
    );
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
}

fn a_failed_single_part_or_final_call_ends_the_operation(s: &Setup, soft: &Ctx, shsm: &Ctx) {
    let mut report = String::new();
    let mut failures = Vec::new();
    for (name, f, want) in ended_rows() {
        let got = f(soft);
        let got_m = f(shsm);
        let d = direct(&s.conf, "ended", name);
        report += &format!(
            "{:<55} soft {:<40} module {:<40} softhsm-direct {}\n",
            name,
            rv_name(got),
            rv_name(got_m),
            d
        );
        if got != want {
            failures.push(format!(
                "{name}: expected {}, got {}",
                rv_name(want),
                rv_name(got)
            ));
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
}
