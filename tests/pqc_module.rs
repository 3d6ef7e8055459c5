//! PKCS#11 3.2 through a module slot: the vendor library is a second copy of libhsmux.so
//! (a real 3.2 library) with its own configuration (one soft token), given as the slot's
//! `init_args`. ML-DSA-65 and ML-KEM-768 driven through the outer hsmux's 3.2 function
//! list reach the inner token: signatures verified by RustCrypto's `ml-dsa` and by
//! `C_VerifySignature*` through the slot, ciphertexts opened by RustCrypto's `ml-kem`, the
//! length query of `C_EncapsulateKey` and the new keys' handles translated. A second
//! module slot on SoftHSMv2 (no 3.2 interface) answers the 3.2 calls with
//! `CKR_FUNCTION_NOT_SUPPORTED`.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use ml_dsa::MlDsa65;
use rsa::rand_core::RngCore;
use std::sync::OnceLock;

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Slot ids of the outer configuration.
const INNER: CK_SLOT_ID = 0;
const SOFTHSM_SLOT: CK_SLOT_ID = 1;

struct Outer {
    m: Module,
    v32: &'static CK_FUNCTION_LIST_3_2,
}

/// The outer module: slot 0 the inner hsmux copy, slot 1 SoftHSM; initialized once, the
/// inner token initialized through the outer one.
fn outer() -> &'static Outer {
    static OUTER: OnceLock<Outer> = OnceLock::new();
    OUTER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hsmux-pqc-module-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        remove_at_exit(&dir);
        // A copy at another path: dlopen of the same path would hand back the outer
        // library itself.
        let inner_lib = dir.join("libhsmux-inner.so");
        std::fs::copy(module_path(), &inner_lib).unwrap();
        let inner_cfg = dir.join("inner.toml");
        std::fs::write(
            &inner_cfg,
            format!(
                "[[slot]]\nlabel = \"inner\"\nbackend = \"soft\"\npath = \"{}\"\nkdf_iterations = 1000\n",
                dir.join("inner-store").display()
            ),
        )
        .unwrap();
        let softhsm_conf = softhsm_token(&dir.join("softhsm"), "classic", "12345678", "1234");
        std::env::set_var("SOFTHSM2_CONF", &softhsm_conf);
        let outer_cfg = dir.join("outer.toml");
        std::fs::write(
            &outer_cfg,
            format!(
                "[[slot]]\nlabel = \"pqc-vendor\"\nbackend = \"module\"\nlibrary = \"{}\"\n\
                 init_args = \"{}\"\nslot = 0\n\n\
                 [[slot]]\nlabel = \"softhsm\"\nbackend = \"module\"\nlibrary = \"{SOFTHSM}\"\n\
                 token = \"classic\"\n",
                inner_lib.display(),
                inner_cfg.display()
            ),
        )
        .unwrap();
        std::env::set_var("HSMUX_CONFIG", &outer_cfg);
        let m = load();
        assert_eq!(initialize(&m), CKR_OK);
        let v32 = interface_32(&module_path());
        init_slot(&m, INNER);
        // The user's login holds for every session the tests open (PKCS#11 login state
        // is the application's); this session keeps it.
        let h = open(&m, INNER, true);
        assert_eq!(login(&m, h, CKU_USER, PIN), CKR_OK);
        Outer { m, v32 }
    })
}

macro_rules! ck32 {
    ($o:expr, $f:ident ( $($a:expr),* $(,)? )) => {
        unsafe { ($o.v32.$f.expect(stringify!($f)))($($a),*) }
    };
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rsa::rand_core::OsRng.fill_bytes(&mut b);
    b
}

fn value(m: &Module, h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> Vec<u8> {
    get_attr(m, h, o, CKA_VALUE).expect("CKA_VALUE")
}

fn secret_template() -> Template {
    Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true)
}

struct SignContext {
    _context: Vec<u8>,
    raw: CK_SIGN_ADDITIONAL_CONTEXT,
}

fn sign_context(context: &[u8]) -> Box<SignContext> {
    let mut c = Box::new(SignContext {
        _context: context.to_vec(),
        raw: CK_SIGN_ADDITIONAL_CONTEXT {
            hedgeVariant: CKH_HEDGE_REQUIRED,
            pContext: std::ptr::null_mut(),
            ulContextLen: context.len() as CK_ULONG,
        },
    });
    c.raw.pContext = c._context.as_mut_ptr();
    c
}

#[test]
fn ml_dsa_through_a_module_slot_whose_vendor_offers_3_2() {
    let o = outer();
    let m = &o.m;
    let h = open(m, INNER, true);
    let (pubk, privk) = keypair(
        m,
        h,
        CKM_ML_DSA_KEY_PAIR_GEN,
        Template::new().ulong(CKA_PARAMETER_SET, CKP_ML_DSA_65),
        Template::new(),
        b"dsa",
    );
    let pk = value(m, h, pubk);
    let msg = b"signed by the vendor's soft token behind a module slot";
    let mut ctx = sign_context(b"module-slot context");
    let mut mc = mech_with(CKM_ML_DSA, &mut ctx.raw);
    let sig = sign(m, h, mc, privk, msg).expect("C_Sign through the module slot");
    assert_eq!(sig.len(), 3309);
    let vk = ml_dsa::VerifyingKey::<MlDsa65>::decode(pk.as_slice().try_into().unwrap());
    let s = ml_dsa::Signature::<MlDsa65>::decode(sig.as_slice().try_into().unwrap()).unwrap();
    assert!(vk.verify_with_context(msg, b"module-slot context", &s));
    assert!(!vk.verify_with_context(msg, b"", &s));

    // C_VerifySignature* of the vendor, the signature given at Init.
    let mut verify_signature = |sig: &[u8], parts: &[&[u8]]| -> CK_RV {
        let rv = ck32!(
            o,
            C_VerifySignatureInit(
                h,
                &mut mc,
                pubk,
                sig.as_ptr() as *mut _,
                sig.len() as CK_ULONG
            )
        );
        if rv != CKR_OK {
            return rv;
        }
        if let [one] = parts {
            return ck32!(
                o,
                C_VerifySignature(h, one.as_ptr() as *mut _, one.len() as CK_ULONG)
            );
        }
        for p in parts {
            let rv = ck32!(
                o,
                C_VerifySignatureUpdate(h, p.as_ptr() as *mut _, p.len() as CK_ULONG)
            );
            if rv != CKR_OK {
                return rv;
            }
        }
        ck32!(o, C_VerifySignatureFinal(h))
    };
    assert_eq!(verify_signature(&sig, &[msg]), CKR_OK);
    assert_eq!(verify_signature(&sig, &[&msg[..10], &msg[10..]]), CKR_OK);
    let mut bad = sig.clone();
    bad[100] ^= 1;
    assert_eq!(verify_signature(&bad, &[msg]), CKR_SIGNATURE_INVALID);
    assert_eq!(
        verify_signature(&sig, &[b"another message"]),
        CKR_SIGNATURE_INVALID
    );
    let mut flags: CK_FLAGS = 99;
    assert_eq!(
        ck32!(
            o,
            C_GetSessionValidationFlags(h, CKS_LAST_VALIDATION_OK, &mut flags)
        ),
        CKR_OK
    );
    assert_eq!(flags, 0, "the inner hsmux's answer, passed through");
}

#[test]
fn ml_kem_through_a_module_slot_whose_vendor_offers_3_2() {
    use ml_kem::{Decapsulate, KeyExport};
    let o = outer();
    let m = &o.m;
    let h = open(m, INNER, true);
    let (pubk, privk) = keypair(
        m,
        h,
        CKM_ML_KEM_KEY_PAIR_GEN,
        Template::new().ulong(CKA_PARAMETER_SET, CKP_ML_KEM_768),
        Template::new(),
        b"kem",
    );
    // The length query makes no key; then the ciphertext and the key.
    let mut mc = mech(CKM_ML_KEM);
    let mut t = secret_template();
    let (mut len, mut key) = (0 as CK_ULONG, CK_INVALID_HANDLE);
    let rv = ck32!(
        o,
        C_EncapsulateKey(
            h,
            &mut mc,
            pubk,
            t.ptr(),
            t.len(),
            std::ptr::null_mut(),
            &mut len,
            &mut key
        )
    );
    assert_eq!((rv, len, key), (CKR_OK, 1088, CK_INVALID_HANDLE));
    let mut ct = vec![0u8; 1088];
    let mut short = 100 as CK_ULONG;
    let rv = ck32!(
        o,
        C_EncapsulateKey(
            h,
            &mut mc,
            pubk,
            t.ptr(),
            t.len(),
            ct.as_mut_ptr(),
            &mut short,
            &mut key
        )
    );
    assert_eq!((rv, short), (CKR_BUFFER_TOO_SMALL, 1088));
    let rv = ck32!(
        o,
        C_EncapsulateKey(
            h,
            &mut mc,
            pubk,
            t.ptr(),
            t.len(),
            ct.as_mut_ptr(),
            &mut len,
            &mut key
        )
    );
    assert_eq!(rv, CKR_OK);
    let sent = value(m, h, key);
    let mut opened = CK_INVALID_HANDLE;
    let rv = ck32!(
        o,
        C_DecapsulateKey(
            h,
            &mut mc,
            privk,
            t.ptr(),
            t.len(),
            ct.as_mut_ptr(),
            len,
            &mut opened
        )
    );
    assert_eq!(rv, CKR_OK);
    assert_ne!(opened, key);
    assert_eq!(
        value(m, h, opened),
        sent,
        "both ends of the slot's KEM agree"
    );
    let rv = ck32!(
        o,
        C_DecapsulateKey(
            h,
            &mut mc,
            privk,
            t.ptr(),
            t.len(),
            ct.as_mut_ptr(),
            1000,
            &mut opened
        )
    );
    assert_eq!(rv, CKR_ENCRYPTED_DATA_LEN_RANGE);

    // RustCrypto's key pair: the slot encapsulates to its public key, RustCrypto opens it.
    let dk = ml_kem::DecapsulationKey::<ml_kem::MlKem768>::from_seed(random::<64>().into());
    let ek = dk.encapsulation_key().to_bytes().to_vec();
    let theirs = try_create(
        m,
        h,
        Template::new()
            .ulong(CKA_CLASS, CKO_PUBLIC_KEY)
            .ulong(CKA_KEY_TYPE, CKK_ML_KEM)
            .ulong(CKA_PARAMETER_SET, CKP_ML_KEM_768)
            .bytes(CKA_VALUE, &ek)
            .bool(CKA_ENCAPSULATE, true),
    )
    .expect("an ML-KEM public key created through the slot");
    let rv = ck32!(
        o,
        C_EncapsulateKey(
            h,
            &mut mc,
            theirs,
            t.ptr(),
            t.len(),
            ct.as_mut_ptr(),
            &mut len,
            &mut key
        )
    );
    assert_eq!(rv, CKR_OK);
    let ss = dk.decapsulate(ct.as_slice().try_into().unwrap());
    assert_eq!(
        value(m, h, key),
        ss.to_vec(),
        "RustCrypto opens the vendor's ciphertext"
    );
}

#[test]
fn a_vendor_without_3_2_answers_function_not_supported() {
    let o = outer();
    let m = &o.m;
    let h = open(m, SOFTHSM_SLOT, true);
    assert_eq!(login(m, h, CKU_USER, b"1234"), CKR_OK);
    let mut mc = mech(CKM_ML_KEM);
    let mut t = secret_template();
    let (mut len, mut key) = (0 as CK_ULONG, CK_INVALID_HANDLE);
    let mut ct = [0u8; 16];
    assert_eq!(
        ck32!(
            o,
            C_EncapsulateKey(
                h,
                &mut mc,
                1,
                t.ptr(),
                t.len(),
                std::ptr::null_mut(),
                &mut len,
                &mut key
            )
        ),
        CKR_FUNCTION_NOT_SUPPORTED
    );
    assert_eq!(
        ck32!(
            o,
            C_DecapsulateKey(
                h,
                &mut mc,
                1,
                t.ptr(),
                t.len(),
                ct.as_mut_ptr(),
                16,
                &mut key
            )
        ),
        CKR_FUNCTION_NOT_SUPPORTED
    );
    let mut ec = mech(CKM_ECDSA);
    assert_eq!(
        ck32!(o, C_VerifySignatureInit(h, &mut ec, 1, ct.as_mut_ptr(), 16)),
        CKR_FUNCTION_NOT_SUPPORTED
    );
    assert_eq!(
        ck32!(o, C_VerifySignature(h, ct.as_mut_ptr(), 16)),
        CKR_FUNCTION_NOT_SUPPORTED
    );
    let mut flags: CK_FLAGS = 0;
    assert_eq!(
        ck32!(
            o,
            C_GetSessionValidationFlags(h, CKS_LAST_VALIDATION_OK, &mut flags)
        ),
        CKR_FUNCTION_NOT_SUPPORTED
    );
    // Its mechanism list (the vendor's own) has no KEM mechanism to mislead a consumer.
    let mut n: CK_ULONG = 0;
    assert_eq!(
        ck!(
            m,
            C_GetMechanismList(SOFTHSM_SLOT, std::ptr::null_mut(), &mut n)
        ),
        CKR_OK
    );
    let mut list = vec![0 as CK_MECHANISM_TYPE; n as usize];
    assert_eq!(
        ck!(
            m,
            C_GetMechanismList(SOFTHSM_SLOT, list.as_mut_ptr(), &mut n)
        ),
        CKR_OK
    );
    assert!(!list.contains(&CKM_ML_KEM));
}

#[test]
fn the_slot_lists_the_vendors_pqc_mechanisms() {
    let o = outer();
    let m = &o.m;
    let mut n: CK_ULONG = 0;
    assert_eq!(
        ck!(m, C_GetMechanismList(INNER, std::ptr::null_mut(), &mut n)),
        CKR_OK
    );
    let mut list = vec![0 as CK_MECHANISM_TYPE; n as usize];
    assert_eq!(
        ck!(m, C_GetMechanismList(INNER, list.as_mut_ptr(), &mut n)),
        CKR_OK
    );
    for want in [
        CKM_ML_DSA,
        CKM_ML_DSA_KEY_PAIR_GEN,
        CKM_ML_KEM,
        CKM_ML_KEM_KEY_PAIR_GEN,
    ] {
        assert!(list.contains(&want), "0x{want:x} in {list:x?}");
    }
    let mut info: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(
        ck!(m, C_GetMechanismInfo(INNER, CKM_ML_KEM, &mut info)),
        CKR_OK
    );
    assert_eq!(
        info.flags & (CKF_ENCAPSULATE | CKF_DECAPSULATE),
        CKF_ENCAPSULATE | CKF_DECAPSULATE
    );
}
