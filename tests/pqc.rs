//! Post-quantum keys of the soft token through the C ABI (PKCS#11 3.2): ML-DSA-44/65/87 and
//! ML-KEM-512/768/1024. What hsmux signs is verified by RustCrypto's `ml-dsa`, what it
//! encapsulates is opened by RustCrypto's `ml-kem`, and the reverse; keys made from the same
//! seed in both must be the same key (FIPS 203/204 key generation is deterministic, so this
//! is the known-answer check of the seed path); wrong contexts, tampered signatures and
//! mismatched parameter sets fail with the spec's codes. The 3.2 functions are called
//! through the 3.2 function list, as a 3.2 consumer fetches it with `C_GetInterface`.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use ml_dsa::{MlDsa44, MlDsa65, MlDsa87, MlDsaParams};
use rsa::rand_core::RngCore;
use std::sync::OnceLock;

/// The 3.2 function list of the shared module (`C_GetInterface("PKCS 11", {3, 2})`).
pub fn v32() -> &'static CK_FUNCTION_LIST_3_2 {
    static LIST: OnceLock<usize> = OnceLock::new();
    let addr = *LIST.get_or_init(|| {
        shared();
        // The same path as the shared module: dlopen hands back the loaded library.
        interface_32(&module_path()) as *const CK_FUNCTION_LIST_3_2 as usize
    });
    unsafe { &*(addr as *const CK_FUNCTION_LIST_3_2) }
}

#[macro_export]
macro_rules! ck32 {
    ($f:ident ( $($a:expr),* $(,)? )) => {
        unsafe { (v32().$f.expect(stringify!($f)))($($a),*) }
    };
}

/// A template for a key object of a PQC key type and parameter set.
pub fn pqc_key(class: CK_OBJECT_CLASS, kt: CK_KEY_TYPE, set: CK_ULONG) -> Template {
    Template::new()
        .ulong(CKA_CLASS, class)
        .ulong(CKA_KEY_TYPE, kt)
        .ulong(CKA_PARAMETER_SET, set)
}

pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rsa::rand_core::OsRng.fill_bytes(&mut b);
    b
}

struct Ctx {
    hedge: CK_ULONG,
    context: Vec<u8>,
    raw: CK_SIGN_ADDITIONAL_CONTEXT,
}

impl Ctx {
    fn new(hedge: CK_ULONG, context: &[u8]) -> Box<Ctx> {
        let mut c = Box::new(Ctx {
            hedge,
            context: context.to_vec(),
            raw: CK_SIGN_ADDITIONAL_CONTEXT {
                hedgeVariant: 0,
                pContext: std::ptr::null_mut(),
                ulContextLen: 0,
            },
        });
        c.raw = CK_SIGN_ADDITIONAL_CONTEXT {
            hedgeVariant: c.hedge,
            pContext: c.context.as_mut_ptr(),
            ulContextLen: c.context.len() as CK_ULONG,
        };
        c
    }
    fn mech(&mut self) -> CK_MECHANISM {
        mech_with(CKM_ML_DSA, &mut self.raw)
    }
}

/// Verifies `sig` over `msg` with context `ctx` with RustCrypto, for the parameter set
/// `set` and public key `pk`.
fn outside_verify(set: CK_ULONG, pk: &[u8], msg: &[u8], ctx: &[u8], sig: &[u8]) -> bool {
    fn with<P: MlDsaParams>(pk: &[u8], msg: &[u8], ctx: &[u8], sig: &[u8]) -> bool {
        let vk = ml_dsa::VerifyingKey::<P>::decode(pk.try_into().expect("public key length"));
        let Ok(enc) = sig.try_into() else {
            return false;
        };
        ml_dsa::Signature::<P>::decode(enc).is_some_and(|s| vk.verify_with_context(msg, ctx, &s))
    }
    match set {
        CKP_ML_DSA_44 => with::<MlDsa44>(pk, msg, ctx, sig),
        CKP_ML_DSA_65 => with::<MlDsa65>(pk, msg, ctx, sig),
        _ => with::<MlDsa87>(pk, msg, ctx, sig),
    }
}

/// RustCrypto's key for seed ξ: (expanded private key, public key, a signature of `msg`
/// with context `ctx`).
fn outside_key(
    set: CK_ULONG,
    seed: &[u8; 32],
    msg: &[u8],
    ctx: &[u8],
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    fn with<P: MlDsaParams>(
        seed: &[u8; 32],
        msg: &[u8],
        ctx: &[u8],
    ) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let sk = ml_dsa::SigningKey::<P>::from_seed(&(*seed).into());
        let ex = sk.expanded_key();
        #[allow(deprecated)]
        let expanded = ex.to_expanded().to_vec();
        let pk = ex.verifying_key().encode().to_vec();
        let sig = ex.sign_deterministic(msg, ctx).unwrap().encode().to_vec();
        (expanded, pk, sig)
    }
    match set {
        CKP_ML_DSA_44 => with::<MlDsa44>(seed, msg, ctx),
        CKP_ML_DSA_65 => with::<MlDsa65>(seed, msg, ctx),
        _ => with::<MlDsa87>(seed, msg, ctx),
    }
}

const ML_DSA: [(CK_ULONG, usize); 3] = [
    (CKP_ML_DSA_44, 2420),
    (CKP_ML_DSA_65, 3309),
    (CKP_ML_DSA_87, 4627),
];

pub fn ml_dsa_pair(
    m: &Module,
    h: CK_SESSION_HANDLE,
    set: CK_ULONG,
) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    keypair(
        m,
        h,
        CKM_ML_DSA_KEY_PAIR_GEN,
        Template::new().ulong(CKA_PARAMETER_SET, set),
        Template::new(),
        b"mldsa",
    )
}

/// Multi-part C_Sign.
fn sign_parts(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mut mc: CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    parts: &[&[u8]],
) -> Vec<u8> {
    assert_eq!(ck!(m, C_SignInit(h, &mut mc, key)), CKR_OK);
    for p in parts {
        assert_eq!(
            ck!(
                m,
                C_SignUpdate(h, p.as_ptr() as *mut _, p.len() as CK_ULONG)
            ),
            CKR_OK
        );
    }
    two_call(|p, n| ck!(m, C_SignFinal(h, p, n))).unwrap()
}

/// C_VerifySignatureInit .. C_VerifySignature (single part) or Update/Final (parts).
fn verify_signature(
    h: CK_SESSION_HANDLE,
    mut mc: CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    parts: &[&[u8]],
    sig: &[u8],
) -> CK_RV {
    let rv = ck32!(C_VerifySignatureInit(
        h,
        &mut mc,
        key,
        sig.as_ptr() as *mut _,
        sig.len() as CK_ULONG
    ));
    if rv != CKR_OK {
        return rv;
    }
    if let [one] = parts {
        return ck32!(C_VerifySignature(
            h,
            one.as_ptr() as *mut _,
            one.len() as CK_ULONG
        ));
    }
    for p in parts {
        let rv = ck32!(C_VerifySignatureUpdate(
            h,
            p.as_ptr() as *mut _,
            p.len() as CK_ULONG
        ));
        if rv != CKR_OK {
            return rv;
        }
    }
    ck32!(C_VerifySignatureFinal(h))
}

#[test]
fn interfaces_offer_3_2_by_version_and_keep_3_0_as_default() {
    let l = v32();
    assert_eq!((l.version.major, l.version.minor), (3, 2));
    assert!(l.C_EncapsulateKey.is_some() && l.C_UnwrapKeyAuthenticated.is_some());
    let m = shared();
    let lib = unsafe { libloading::Library::new(module_path()) }.unwrap();
    let get: libloading::Symbol<CK_C_GetInterface> = unsafe { lib.get(b"C_GetInterface") }.unwrap();
    let mut iface: *mut CK_INTERFACE = std::ptr::null_mut();
    let rv = unsafe { get.unwrap()(std::ptr::null_mut(), std::ptr::null_mut(), &mut iface, 0) };
    assert_eq!(rv, CKR_OK);
    let default = unsafe { &*((*iface).pFunctionList as *const CK_FUNCTION_LIST_3_0) };
    assert_eq!(
        (default.version.major, default.version.minor),
        (3, 0),
        "the default stays 3.0"
    );
    let list: libloading::Symbol<CK_C_GetInterfaceList> =
        unsafe { lib.get(b"C_GetInterfaceList") }.unwrap();
    let mut n = 0;
    assert_eq!(
        unsafe { list.unwrap()(std::ptr::null_mut(), &mut n) },
        CKR_OK
    );
    let mut all = vec![
        CK_INTERFACE {
            pInterfaceName: std::ptr::null_mut(),
            pFunctionList: std::ptr::null_mut(),
            flags: 0
        };
        n as usize
    ];
    assert_eq!(unsafe { list.unwrap()(all.as_mut_ptr(), &mut n) }, CKR_OK);
    let versions: Vec<(u8, u8)> = all
        .iter()
        .map(|i| unsafe { &*(i.pFunctionList as *const CK_FUNCTION_LIST) }.version)
        .map(|v| (v.major, v.minor))
        .collect();
    assert_eq!(versions, [(3, 0), (2, 40), (3, 2)]);
    // The 3.2 functions hsmux does not offer, and the validation flags it does answer.
    let h = user_session(m, 0);
    let mut id = 0;
    assert_eq!(
        ck32!(C_AsyncGetID(h, c"C_Sign".as_ptr() as *mut _, &mut id)),
        CKR_FUNCTION_NOT_SUPPORTED
    );
    let mut flags = 7;
    assert_eq!(
        ck32!(C_GetSessionValidationFlags(
            h,
            CKS_LAST_VALIDATION_OK,
            &mut flags
        )),
        CKR_OK
    );
    assert_eq!(flags, 0);
    assert_eq!(
        ck32!(C_GetSessionValidationFlags(h, 99, &mut flags)),
        CKR_ARGUMENTS_BAD
    );
    assert_eq!(
        ck32!(C_GetSessionValidationFlags(
            0x7777,
            CKS_LAST_VALIDATION_OK,
            &mut flags
        )),
        CKR_SESSION_HANDLE_INVALID
    );
}

#[test]
fn ml_dsa_every_parameter_set_verifies_with_rustcrypto() {
    let m = shared();
    let h = user_session(m, 1);
    for (set, sig_len) in ML_DSA {
        let (pubk, privk) = ml_dsa_pair(m, h, set);
        assert_eq!(
            get_attr(m, h, privk, CKA_SEED),
            Err(CKR_ATTRIBUTE_SENSITIVE),
            "CKA_SEED is sensitive"
        );
        assert_eq!(
            get_attr(m, h, privk, CKA_PARAMETER_SET).unwrap(),
            set.to_ne_bytes()
        );
        let pk = get_attr(m, h, pubk, CKA_VALUE).unwrap();
        let msg = b"a message signed with ML-DSA by hsmux";
        // No parameter: the empty context, hedged.
        let sig = sign(m, h, mech(CKM_ML_DSA), privk, msg).unwrap();
        assert_eq!(sig.len(), sig_len);
        assert!(
            outside_verify(set, &pk, msg, b"", &sig),
            "set {set}: plain signature"
        );
        assert_eq!(verify(m, h, mech(CKM_ML_DSA), pubk, msg, &sig), CKR_OK);
        // A context string, hedging required; multi-part.
        let mut c = Ctx::new(CKH_HEDGE_REQUIRED, b"hsmux context");
        let sig = sign_parts(m, h, c.mech(), privk, &[b"a message ", b"in ", b"parts"]);
        assert!(outside_verify(
            set,
            &pk,
            b"a message in parts",
            b"hsmux context",
            &sig
        ));
        assert!(
            !outside_verify(set, &pk, b"a message in parts", b"", &sig),
            "the context is signed"
        );
        assert_eq!(
            verify(m, h, c.mech(), pubk, b"a message in parts", &sig),
            CKR_OK
        );
        assert_eq!(
            verify_signature(h, c.mech(), pubk, &[b"a message in parts"], &sig),
            CKR_OK
        );
        assert_eq!(
            verify_signature(h, c.mech(), pubk, &[b"a message ", b"in parts"], &sig),
            CKR_OK
        );
        // A wrong context, a tampered signature, a wrong length.
        let mut other = Ctx::new(CKH_HEDGE_PREFERRED, b"another context");
        assert_eq!(
            verify(m, h, other.mech(), pubk, b"a message in parts", &sig),
            CKR_SIGNATURE_INVALID
        );
        assert_eq!(
            verify(m, h, mech(CKM_ML_DSA), pubk, b"a message in parts", &sig),
            CKR_SIGNATURE_INVALID
        );
        let mut bad = sig.clone();
        bad[100] ^= 1;
        assert_eq!(
            verify(m, h, c.mech(), pubk, b"a message in parts", &bad),
            CKR_SIGNATURE_INVALID
        );
        assert_eq!(
            verify_signature(h, c.mech(), pubk, &[b"a message in parts"], &bad),
            CKR_SIGNATURE_INVALID
        );
        assert_eq!(
            verify(m, h, c.mech(), pubk, b"a message in parts", &sig[1..]),
            CKR_SIGNATURE_LEN_RANGE
        );
        // Verification ignores the hedging; signing cannot promise a deterministic signature.
        let mut det = Ctx::new(CKH_DETERMINISTIC_REQUIRED, b"hsmux context");
        assert_eq!(
            verify(m, h, det.mech(), pubk, b"a message in parts", &sig),
            CKR_OK
        );
        let mut dm = det.mech();
        assert_eq!(
            ck!(m, C_SignInit(h, &mut dm, privk)),
            CKR_MECHANISM_PARAM_INVALID
        );
        // A context longer than FIPS 204's 255 bytes.
        let mut long = Ctx::new(CKH_HEDGE_PREFERRED, &[7u8; 256]);
        let mut lm = long.mech();
        assert_eq!(
            ck!(m, C_SignInit(h, &mut lm, privk)),
            CKR_MECHANISM_PARAM_INVALID
        );
    }
}

#[test]
fn ml_dsa_seed_import_is_the_same_key_and_outside_signatures_verify() {
    let m = shared();
    let h = user_session(m, 2);
    for (set, _) in ML_DSA {
        let seed = random::<32>();
        let msg = b"signed outside hsmux";
        let (expanded, pk, outside_sig) = outside_key(set, &seed, msg, b"ctx");
        // The private key from its seed alone: hsmux computes the expanded key, which must
        // be RustCrypto's (FIPS 204 ML-DSA.KeyGen_internal is deterministic).
        let t = pqc_key(CKO_PRIVATE_KEY, CKK_ML_DSA, set)
            .bool(CKA_SENSITIVE, false)
            .bool(CKA_EXTRACTABLE, true)
            .bytes(CKA_SEED, &seed);
        let privk = try_create(m, h, t).unwrap();
        assert_eq!(
            get_attr(m, h, privk, CKA_VALUE).unwrap(),
            expanded,
            "set {set}: seed gives RustCrypto's key"
        );
        let sig = sign(m, h, mech(CKM_ML_DSA), privk, msg).unwrap();
        assert!(outside_verify(set, &pk, msg, b"", &sig));
        // A seed with a CKA_VALUE that is not its key is refused.
        let mut wrong = expanded.clone();
        wrong[0] ^= 1;
        let t = pqc_key(CKO_PRIVATE_KEY, CKK_ML_DSA, set)
            .bytes(CKA_SEED, &seed)
            .bytes(CKA_VALUE, &wrong);
        assert_eq!(try_create(m, h, t), Err(CKR_ATTRIBUTE_VALUE_INVALID));
        // The outside signature verifies with the public key imported.
        let pt = pqc_key(CKO_PUBLIC_KEY, CKK_ML_DSA, set).bytes(CKA_VALUE, &pk);
        let pubk = try_create(m, h, pt).unwrap();
        let mut c = Ctx::new(CKH_HEDGE_PREFERRED, b"ctx");
        assert_eq!(verify(m, h, c.mech(), pubk, msg, &outside_sig), CKR_OK);
        assert_eq!(
            verify_signature(h, c.mech(), pubk, &[msg], &outside_sig),
            CKR_OK
        );
        let mut bad = outside_sig.clone();
        *bad.last_mut().unwrap() ^= 0x80;
        assert_eq!(
            verify(m, h, c.mech(), pubk, msg, &bad),
            CKR_SIGNATURE_INVALID
        );
    }
}

#[test]
fn ml_dsa_wrong_parameter_sets_and_key_types_are_refused() {
    let m = shared();
    let h = user_session(m, 3);
    let generate = |mut pt: Template| {
        try_keypair(m, h, CKM_ML_DSA_KEY_PAIR_GEN, &mut pt, &mut Template::new()).0
    };
    assert_eq!(
        generate(Template::new().ulong(CKA_PARAMETER_SET, 9)),
        CKR_ATTRIBUTE_VALUE_INVALID
    );
    assert_eq!(generate(Template::new()), CKR_TEMPLATE_INCOMPLETE);
    // An ML-DSA-65 public value declared as ML-DSA-44.
    let (pubk, privk) = ml_dsa_pair(m, h, CKP_ML_DSA_65);
    let pk = get_attr(m, h, pubk, CKA_VALUE).unwrap();
    let t = pqc_key(CKO_PUBLIC_KEY, CKK_ML_DSA, CKP_ML_DSA_44).bytes(CKA_VALUE, &pk);
    assert_eq!(try_create(m, h, t), Err(CKR_ATTRIBUTE_VALUE_INVALID));
    // An ML-DSA-65 signature checked with an ML-DSA-44 key.
    let (pub44, _) = ml_dsa_pair(m, h, CKP_ML_DSA_44);
    let sig = sign(m, h, mech(CKM_ML_DSA), privk, b"m").unwrap();
    assert_eq!(
        verify(m, h, mech(CKM_ML_DSA), pub44, b"m", &sig),
        CKR_SIGNATURE_LEN_RANGE
    );
    // CKM_ML_DSA with a key of another type, and ECDSA with an ML-DSA key.
    let ec = keypair(
        m,
        h,
        CKM_EC_KEY_PAIR_GEN,
        Template::new().bytes(CKA_EC_PARAMS, P256_PARAMS),
        Template::new(),
        b"ec",
    );
    let mut md = mech(CKM_ML_DSA);
    assert_eq!(
        ck!(m, C_SignInit(h, &mut md, ec.1)),
        CKR_KEY_TYPE_INCONSISTENT
    );
    let mut me = mech(CKM_ECDSA);
    assert_eq!(
        ck!(m, C_SignInit(h, &mut me, privk)),
        CKR_KEY_TYPE_INCONSISTENT
    );
}

// ML-KEM: key encapsulation through C_EncapsulateKey / C_DecapsulateKey.
#[path = "pqc/kem.rs"]
mod kem;
