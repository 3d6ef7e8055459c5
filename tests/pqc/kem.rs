//! ML-KEM-512/768/1024 on the soft token through the 3.2 functions: hsmux's ciphertexts
//! opened by RustCrypto's `ml-kem`, RustCrypto's opened by hsmux, keys from one seed equal
//! in both, and the refusals (key usage, mechanism, ciphertext length).

use super::{ml_dsa_pair, pqc_key, random, v32};
use crate::ck;
use crate::common::*;
use cryptoki_sys::*;

const ML_KEM: [(CK_ULONG, usize); 3] = [
    (CKP_ML_KEM_512, 768),
    (CKP_ML_KEM_768, 1088),
    (CKP_ML_KEM_1024, 1568),
];

/// Runs `$body` with `$P` the RustCrypto ML-KEM type of parameter set `$set` (its trait
/// bounds are private to the crate, so a generic function cannot name them).
macro_rules! with_ml_kem {
    ($set:expr, |$P:ident| $body:expr) => {
        match $set {
            CKP_ML_KEM_512 => {
                type $P = ml_kem::MlKem512;
                $body
            }
            CKP_ML_KEM_768 => {
                type $P = ml_kem::MlKem768;
                $body
            }
            _ => {
                type $P = ml_kem::MlKem1024;
                $body
            }
        }
    };
}

/// ML-KEM.Decaps of a ciphertext with a key held outside hsmux.
type Opener = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// RustCrypto's ML-KEM from seed d‖z: (encapsulation key, decapsulate(ct)).
fn outside_kem(set: CK_ULONG, seed: &[u8; 64]) -> (Vec<u8>, Opener) {
    use ml_kem::{Decapsulate, KeyExport};
    with_ml_kem!(set, |P| {
        let dk = ml_kem::DecapsulationKey::<P>::from_seed((*seed).into());
        let ek = dk.encapsulation_key().to_bytes().to_vec();
        let open: Opener = Box::new(move |ct: &[u8]| {
            dk.decapsulate(ct.try_into().expect("ciphertext length"))
                .to_vec()
        });
        (ek, open)
    })
}

/// RustCrypto's ML-KEM.Encaps to `ek`: (ciphertext, shared secret).
fn outside_encapsulate(set: CK_ULONG, ek: &[u8]) -> (Vec<u8>, Vec<u8>) {
    with_ml_kem!(set, |P| {
        let ek = ml_kem::EncapsulationKey::<P>::new(ek.try_into().expect("key length")).unwrap();
        let (ct, ss) = ek.encapsulate_deterministic(&random::<32>().into());
        (ct.to_vec(), ss.to_vec())
    })
}

/// A readable generic secret template for the shared secret.
fn secret_template() -> Template {
    Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true)
}

/// C_EncapsulateKey in two calls, checking the length query and CKR_BUFFER_TOO_SMALL on
/// the way (neither makes a key).
fn encapsulate(
    h: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    mut t: Template,
) -> Result<(Vec<u8>, CK_OBJECT_HANDLE), CK_RV> {
    let mut mc = mech(CKM_ML_KEM);
    let (mut k, mut n) = (0, 0);
    let mut call = |p: *mut u8, n: &mut CK_ULONG, k: &mut CK_OBJECT_HANDLE| {
        ck32!(C_EncapsulateKey(h, &mut mc, key, t.ptr(), t.len(), p, n, k))
    };
    match call(std::ptr::null_mut(), &mut n, &mut k) {
        CKR_OK => {}
        rv => return Err(rv),
    }
    assert_eq!(k, 0, "a length query makes no key");
    let mut ct = vec![0u8; n as usize];
    let mut small = n - 1;
    assert_eq!(
        call(ct.as_mut_ptr(), &mut small, &mut k),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!((small, k), (n, 0));
    match call(ct.as_mut_ptr(), &mut n, &mut k) {
        CKR_OK => {}
        rv => return Err(rv),
    }
    ct.truncate(n as usize);
    Ok((ct, k))
}

fn decapsulate(
    h: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    mut t: Template,
    ct: &[u8],
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let mut mc = mech(CKM_ML_KEM);
    let mut k = 0;
    let (p, n) = (ct.as_ptr() as *mut _, ct.len() as CK_ULONG);
    match ck32!(C_DecapsulateKey(
        h,
        &mut mc,
        key,
        t.ptr(),
        t.len(),
        p,
        n,
        &mut k
    )) {
        CKR_OK => Ok(k),
        rv => Err(rv),
    }
}

fn kem_pair(
    m: &Module,
    h: CK_SESSION_HANDLE,
    public: Template,
) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    keypair(
        m,
        h,
        CKM_ML_KEM_KEY_PAIR_GEN,
        public,
        Template::new(),
        b"kem",
    )
}

#[test]
fn ml_kem_every_parameter_set_opens_with_rustcrypto_and_back() {
    let m = shared();
    let h = user_session(m, 4);
    for (set, ct_len) in ML_KEM {
        // A private key from its seed: hsmux's public key must be RustCrypto's for it.
        let seed = random::<64>();
        let (ek, open) = outside_kem(set, &seed);
        let t = pqc_key(CKO_PRIVATE_KEY, CKK_ML_KEM, set).bytes(CKA_SEED, &seed);
        let privk = try_create(m, h, t).unwrap();
        let pt = pqc_key(CKO_PUBLIC_KEY, CKK_ML_KEM, set).bytes(CKA_VALUE, &ek);
        let pubk = try_create(m, h, pt).unwrap();
        // hsmux encapsulates; RustCrypto opens it to the same secret.
        let (ct, k) = encapsulate(h, pubk, secret_template()).unwrap();
        assert_eq!(ct.len(), ct_len);
        let ss = get_attr(m, h, k, CKA_VALUE).unwrap();
        assert_eq!(ss.len(), 32);
        assert_eq!(
            open(&ct),
            ss,
            "set {set}: RustCrypto opens hsmux's ciphertext"
        );
        // hsmux's private key from the same seed opens it too.
        let k2 = decapsulate(h, privk, secret_template(), &ct).unwrap();
        assert_eq!(get_attr(m, h, k2, CKA_VALUE).unwrap(), ss);
        // RustCrypto encapsulates to a key pair hsmux generated; hsmux opens it.
        let (gpub, gpriv) = kem_pair(m, h, Template::new().ulong(CKA_PARAMETER_SET, set));
        assert_eq!(
            get_attr(m, h, gpriv, CKA_SEED),
            Err(CKR_ATTRIBUTE_SENSITIVE)
        );
        let gek = get_attr(m, h, gpub, CKA_VALUE).unwrap();
        let (oct, oss) = outside_encapsulate(set, &gek);
        let k3 = decapsulate(h, gpriv, secret_template(), &oct).unwrap();
        assert_eq!(get_attr(m, h, k3, CKA_VALUE).unwrap(), oss);
        // A tampered ciphertext gives another secret (implicit rejection); a short one fails.
        let mut bad = oct.clone();
        bad[5] ^= 1;
        let k4 = decapsulate(h, gpriv, secret_template(), &bad).unwrap();
        assert_ne!(get_attr(m, h, k4, CKA_VALUE).unwrap(), oss);
        assert_eq!(
            decapsulate(h, gpriv, secret_template(), &oct[1..]),
            Err(CKR_ENCRYPTED_DATA_LEN_RANGE)
        );
        // An AES key of 16 bytes takes the secret's first 16 bytes.
        let aes = Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_AES)
            .ulong(CKA_VALUE_LEN, 16)
            .bool(CKA_SENSITIVE, false)
            .bool(CKA_EXTRACTABLE, true);
        let k5 = decapsulate(h, gpriv, aes, &oct).unwrap();
        assert_eq!(get_attr(m, h, k5, CKA_VALUE).unwrap(), oss[..16]);
    }
}

#[test]
fn ml_kem_refuses_the_wrong_keys_and_mechanisms() {
    let m = shared();
    let h = user_session(m, 5);
    let (pubk, privk) = kem_pair(
        m,
        h,
        Template::new().ulong(CKA_PARAMETER_SET, CKP_ML_KEM_768),
    );
    // Encapsulation needs the public key, decapsulation the private one.
    let refused = Err(CKR_KEY_FUNCTION_NOT_PERMITTED);
    assert_eq!(encapsulate(h, privk, secret_template()).map(drop), refused);
    assert_eq!(
        decapsulate(h, pubk, secret_template(), &[0; 1088]).map(drop),
        refused
    );
    // A key that refuses encapsulation.
    let no = Template::new()
        .ulong(CKA_PARAMETER_SET, CKP_ML_KEM_512)
        .bool(CKA_ENCAPSULATE, false);
    let (npub, _) = kem_pair(m, h, no);
    assert_eq!(encapsulate(h, npub, secret_template()).map(drop), refused);
    // Another mechanism; a key of another type.
    let mut mc = mech(CKM_ML_DSA);
    let (mut k, mut n) = (0, 0);
    let mut t = secret_template();
    let null = std::ptr::null_mut();
    assert_eq!(
        ck32!(C_EncapsulateKey(
            h,
            &mut mc,
            pubk,
            t.ptr(),
            t.len(),
            null,
            &mut n,
            &mut k
        )),
        CKR_MECHANISM_INVALID
    );
    let (dsa_pub, _) = ml_dsa_pair(m, h, CKP_ML_DSA_44);
    assert_eq!(
        encapsulate(h, dsa_pub, secret_template()).map(drop),
        refused
    );
    // The mechanism list tells the truth.
    let mut info = CK_MECHANISM_INFO {
        ulMinKeySize: 0,
        ulMaxKeySize: 0,
        flags: 0,
    };
    assert_eq!(ck!(m, C_GetMechanismInfo(5, CKM_ML_KEM, &mut info)), CKR_OK);
    assert_eq!((info.ulMinKeySize, info.ulMaxKeySize), (800, 1568));
    assert_eq!(info.flags, CKF_ENCAPSULATE | CKF_DECAPSULATE);
    assert_eq!(ck!(m, C_GetMechanismInfo(5, CKM_ML_DSA, &mut info)), CKR_OK);
    let sv = CKF_SIGN | CKF_VERIFY;
    assert_eq!(
        (info.ulMinKeySize, info.ulMaxKeySize, info.flags),
        (1312, 2592, sv)
    );
}
