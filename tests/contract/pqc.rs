//! Post-quantum keys of remote slots (PKCS#11 3.2), the checks the AWS KMS, Cloud KMS and
//! transit tests share: ML-DSA signatures verified by RustCrypto's `ml-dsa` with the
//! public key the slot shows, SLH-DSA by RustCrypto's `slh-dsa`, ML-KEM shared secrets
//! matched against RustCrypto's `ml-kem` encapsulating to that public key. The 3.2
//! functions (`C_EncapsulateKey`, `C_DecapsulateKey`) are called through the 3.2 function
//! list, as a 3.2 consumer gets it from `C_GetInterface("PKCS 11", {3, 2})`.

use crate::common::*;
use crate::{assert_rv, ck};
use cryptoki_sys::*;
use ml_dsa::MlDsaParams;
use std::sync::OnceLock;

/// The 3.2 function list of the module the test loaded (the same library, so the same
/// initialized state).
pub fn v32() -> &'static CK_FUNCTION_LIST_3_2 {
    static LIST: OnceLock<usize> = OnceLock::new();
    let addr = *LIST.get_or_init(|| {
        let lib = unsafe { libloading::Library::new(module_path()) }.unwrap();
        let get: libloading::Symbol<CK_C_GetInterface> =
            unsafe { lib.get(b"C_GetInterface") }.unwrap();
        let mut name = *b"PKCS 11\0";
        let mut version = CK_VERSION { major: 3, minor: 2 };
        let mut iface: *mut CK_INTERFACE = std::ptr::null_mut();
        let rv = unsafe { get.unwrap()(name.as_mut_ptr(), &mut version, &mut iface, 0) };
        assert_eq!(rv, CKR_OK);
        std::mem::forget(lib);
        unsafe { (*iface).pFunctionList as usize }
    });
    unsafe { &*(addr as *const CK_FUNCTION_LIST_3_2) }
}

/// ML-DSA signature lengths (FIPS 204 table 2).
pub const ML_DSA: [(CK_ULONG, usize); 3] = [
    (CKP_ML_DSA_44, 2420),
    (CKP_ML_DSA_65, 3309),
    (CKP_ML_DSA_87, 4627),
];

pub fn ulong_attr(
    m: &Module,
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    t: CK_ATTRIBUTE_TYPE,
) -> CK_ULONG {
    let v = get_attr(m, h, o, t).unwrap_or_else(|rv| panic!("attribute 0x{t:x}: {}", rv_name(rv)));
    CK_ULONG::from_ne_bytes(v.try_into().expect("a CK_ULONG"))
}

/// A `CK_SIGN_ADDITIONAL_CONTEXT` kept alive with its context bytes.
pub struct SignContext {
    context: Vec<u8>,
    raw: CK_SIGN_ADDITIONAL_CONTEXT,
}

impl SignContext {
    pub fn new(hedge: CK_ULONG, context: &[u8]) -> Box<SignContext> {
        let mut c = Box::new(SignContext {
            context: context.to_vec(),
            raw: CK_SIGN_ADDITIONAL_CONTEXT {
                hedgeVariant: hedge,
                pContext: std::ptr::null_mut(),
                ulContextLen: 0,
            },
        });
        c.raw.pContext = c.context.as_mut_ptr();
        c.raw.ulContextLen = c.context.len() as CK_ULONG;
        c
    }
    pub fn mech(&mut self, m: CK_MECHANISM_TYPE) -> CK_MECHANISM {
        mech_with(m, &mut self.raw)
    }
}

/// RustCrypto's verdict on an ML-DSA signature of `msg` in context `ctx`.
pub fn ml_dsa_valid(set: CK_ULONG, pk: &[u8], msg: &[u8], ctx: &[u8], sig: &[u8]) -> bool {
    fn with<P: MlDsaParams>(pk: &[u8], msg: &[u8], ctx: &[u8], sig: &[u8]) -> bool {
        let vk = ml_dsa::VerifyingKey::<P>::decode(pk.try_into().expect("public key length"));
        let Ok(enc) = sig.try_into() else {
            return false;
        };
        ml_dsa::Signature::<P>::decode(enc).is_some_and(|s| vk.verify_with_context(msg, ctx, &s))
    }
    match set {
        CKP_ML_DSA_44 => with::<ml_dsa::MlDsa44>(pk, msg, ctx, sig),
        CKP_ML_DSA_65 => with::<ml_dsa::MlDsa65>(pk, msg, ctx, sig),
        CKP_ML_DSA_87 => with::<ml_dsa::MlDsa87>(pk, msg, ctx, sig),
        other => panic!("not an ML-DSA parameter set: {other}"),
    }
}

/// RustCrypto's verdict on an SLH-DSA-SHA2-128s signature (pure, empty context).
pub fn slh_dsa_valid(pk: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    use slh_dsa::{Sha2_128s, Signature, VerifyingKey};
    let vk = VerifyingKey::<Sha2_128s>::try_from(pk).expect("SLH-DSA public key");
    Signature::<Sha2_128s>::try_from(sig)
        .is_ok_and(|s| vk.try_verify_with_context(msg, b"", &s).is_ok())
}

/// The public key's raw FIPS encoding (`CKA_VALUE`), after checking the 3.2 attributes of
/// both halves: key type, parameter set, and the private half sensitive.
pub fn pqc_public_key(
    m: &Module,
    h: CK_SESSION_HANDLE,
    (private, public): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE),
    key_type: CK_KEY_TYPE,
    set: CK_ULONG,
) -> Vec<u8> {
    crate::contract::check_key_pair(m, h, private, public);
    for o in [private, public] {
        assert_eq!(ulong_attr(m, h, o, CKA_KEY_TYPE), key_type);
        assert_eq!(ulong_attr(m, h, o, CKA_PARAMETER_SET), set);
    }
    assert!(
        !get_attr(m, h, public, CKA_PUBLIC_KEY_INFO)
            .unwrap()
            .is_empty(),
        "the public key has its SubjectPublicKeyInfo"
    );
    get_attr(m, h, public, CKA_VALUE).unwrap()
}

/// ML-DSA on a remote key pair: signatures of `messages` (each given whole, and the
/// longest also in three parts) verified by RustCrypto with the public key the slot shows,
/// accepted by C_Verify, and a damaged one refused with `CKR_SIGNATURE_INVALID`.
pub fn check_ml_dsa(
    m: &Module,
    h: CK_SESSION_HANDLE,
    (private, public): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE),
    set: CK_ULONG,
    messages: &[&[u8]],
) {
    let pk = pqc_public_key(m, h, (private, public), CKK_ML_DSA, set);
    let sig_len = ML_DSA.iter().find(|(s, _)| *s == set).unwrap().1;
    for msg in messages {
        let sig = sign(m, h, mech(CKM_ML_DSA), private, msg).expect("C_Sign CKM_ML_DSA");
        assert_eq!(sig.len(), sig_len);
        assert!(
            ml_dsa_valid(set, &pk, msg, b"", &sig),
            "RustCrypto rejects the signature of {} bytes",
            msg.len()
        );
        assert_rv!(verify(m, h, mech(CKM_ML_DSA), public, msg, &sig), CKR_OK);
        let mut bad = sig.clone();
        bad[sig.len() / 2] ^= 1;
        assert_rv!(
            verify(m, h, mech(CKM_ML_DSA), public, msg, &bad),
            CKR_SIGNATURE_INVALID
        );
    }
    let longest = messages.iter().max_by_key(|m| m.len()).unwrap();
    let third = longest.len() / 3;
    let parts = [
        &longest[..third],
        &longest[third..2 * third],
        &longest[2 * third..],
    ];
    let sig = sign_parts(m, h, mech(CKM_ML_DSA), private, &parts);
    assert!(
        ml_dsa_valid(set, &pk, longest, b"", &sig),
        "multi-part signature"
    );
}

/// Multi-part C_Sign.
pub fn sign_parts(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mut mc: CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    parts: &[&[u8]],
) -> Vec<u8> {
    assert_rv!(ck!(m, C_SignInit(h, &mut mc, key)), CKR_OK);
    for p in parts {
        assert_rv!(
            ck!(
                m,
                C_SignUpdate(h, p.as_ptr() as *mut _, p.len() as CK_ULONG)
            ),
            CKR_OK
        );
    }
    two_call(|p, n| ck!(m, C_SignFinal(h, p, n))).unwrap()
}

// ---------------------------------------------------------------- ML-KEM

/// Runs `$body` with `$P` the RustCrypto ML-KEM type of parameter set `$set`.
macro_rules! with_ml_kem {
    ($set:expr, |$P:ident| $body:expr) => {
        match $set {
            CKP_ML_KEM_768 => {
                type $P = ml_kem::MlKem768;
                $body
            }
            CKP_ML_KEM_1024 => {
                type $P = ml_kem::MlKem1024;
                $body
            }
            other => panic!("no remote ML-KEM set {other}"),
        }
    };
}

/// RustCrypto's ML-KEM.Encaps to `ek`: (ciphertext, shared secret).
pub fn outside_encapsulate(set: CK_ULONG, ek: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut m = [0u8; 32];
    rsa::rand_core::RngCore::fill_bytes(&mut rsa::rand_core::OsRng, &mut m);
    with_ml_kem!(set, |P| {
        let ek = ml_kem::EncapsulationKey::<P>::new(ek.try_into().expect("key length")).unwrap();
        let (ct, ss) = ek.encapsulate_deterministic(&m.into());
        (ct.to_vec(), ss.to_vec())
    })
}

/// A readable generic secret for the shared secret (a session object).
pub fn secret_template() -> Template {
    Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true)
}

/// C_EncapsulateKey in two calls (the length query makes no key).
pub fn encapsulate(
    h: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    mut t: Template,
) -> Result<(Vec<u8>, CK_OBJECT_HANDLE), CK_RV> {
    let f = v32().C_EncapsulateKey.unwrap();
    let mut mc = mech(CKM_ML_KEM);
    let (mut k, mut n) = (0, 0);
    let rv = unsafe {
        f(
            h,
            &mut mc,
            key,
            t.ptr(),
            t.len(),
            std::ptr::null_mut(),
            &mut n,
            &mut k,
        )
    };
    if rv != CKR_OK {
        return Err(rv);
    }
    assert_eq!(k, 0, "a length query makes no key");
    let mut ct = vec![0u8; n as usize];
    let rv = unsafe {
        f(
            h,
            &mut mc,
            key,
            t.ptr(),
            t.len(),
            ct.as_mut_ptr(),
            &mut n,
            &mut k,
        )
    };
    if rv != CKR_OK {
        return Err(rv);
    }
    ct.truncate(n as usize);
    Ok((ct, k))
}

pub fn decapsulate(
    h: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    mut t: Template,
    ct: &[u8],
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let f = v32().C_DecapsulateKey.unwrap();
    let mut mc = mech(CKM_ML_KEM);
    let mut k = 0;
    let (p, n) = (ct.as_ptr() as *mut _, ct.len() as CK_ULONG);
    match unsafe { f(h, &mut mc, key, t.ptr(), t.len(), p, n, &mut k) } {
        CKR_OK => Ok(k),
        rv => Err(rv),
    }
}

/// ML-KEM on a remote key pair: a ciphertext RustCrypto made for the slot's public key
/// opens (by the service) to RustCrypto's shared secret; hsmux's own encapsulation (local,
/// with the public key) opens to the secret it gave; a damaged ciphertext opens to another
/// secret (implicit rejection) and a short one is `CKR_ENCRYPTED_DATA_LEN_RANGE`.
pub fn check_ml_kem(
    m: &Module,
    h: CK_SESSION_HANDLE,
    (private, public): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE),
    set: CK_ULONG,
) {
    let pk = pqc_public_key(m, h, (private, public), CKK_ML_KEM, set);
    assert_eq!(get_attr(m, h, public, CKA_ENCAPSULATE).unwrap(), [1]);
    assert_eq!(get_attr(m, h, private, CKA_DECAPSULATE).unwrap(), [1]);
    let value = |k| get_attr(m, h, k, CKA_VALUE).unwrap();
    let (ct, ss) = outside_encapsulate(set, &pk);
    let k = decapsulate(h, private, secret_template(), &ct).expect("C_DecapsulateKey");
    assert_eq!(value(k), ss, "the service's shared secret is RustCrypto's");
    let (ct2, k2) = encapsulate(h, public, secret_template()).expect("C_EncapsulateKey");
    assert_eq!(ct2.len(), ct.len());
    let k3 = decapsulate(h, private, secret_template(), &ct2).unwrap();
    assert_eq!(
        value(k2),
        value(k3),
        "encapsulated here, decapsulated by the service"
    );
    assert_eq!(value(k2).len(), 32);
    let mut bad = ct.clone();
    bad[7] ^= 1;
    let k4 = decapsulate(h, private, secret_template(), &bad).unwrap();
    assert_ne!(value(k4), ss, "a damaged ciphertext gives another secret");
    assert_rv!(
        decapsulate(h, private, secret_template(), &ct[1..]).unwrap_err(),
        CKR_ENCRYPTED_DATA_LEN_RANGE
    );
    // An AES key of 16 bytes from the 32-byte secret.
    let t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .ulong(CKA_VALUE_LEN, 16)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true);
    let k5 = decapsulate(h, private, t, &ct).unwrap();
    assert_eq!(value(k5), ss[..16]);
}
