//! RSA keys of 1024 bits on the soft token (issue 19: legacy systems and test suites), which
//! aws-lc-rs will not load and hsmux runs through aws-lc's own RSA (`crypto/rsa_raw.rs`):
//! a generated key pair, and a key RustCrypto made and imported, each checked both ways by
//! RustCrypto's `rsa` (PKCS#1 v1.5 and PSS signatures, PKCS#1 v1.5 and OAEP encryption).

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use sha2::{Digest, Sha256};

fn rsa_public(m: &Module, h: CK_SESSION_HANDLE, k: CK_OBJECT_HANDLE) -> rsa::RsaPublicKey {
    let n = rsa::BigUint::from_bytes_be(&get_attr(m, h, k, CKA_MODULUS).unwrap());
    let e = rsa::BigUint::from_bytes_be(&get_attr(m, h, k, CKA_PUBLIC_EXPONENT).unwrap());
    rsa::RsaPublicKey::new(n, e).unwrap()
}

fn pss(salt: CK_ULONG) -> CK_RSA_PKCS_PSS_PARAMS {
    CK_RSA_PKCS_PSS_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        sLen: salt,
    }
}

/// Signatures made inside verify outside and inside; a tampered one is refused.
fn signatures(m: &Module, h: CK_SESSION_HANDLE, pubk: CK_OBJECT_HANDLE, privk: CK_OBJECT_HANDLE) {
    let pk = rsa_public(m, h, pubk);
    assert_eq!(pk.size(), 128, "a 1024-bit modulus");
    let msg = b"legacy signature";
    let hash = Sha256::digest(msg);
    let sig = sign(m, h, mech(CKM_SHA256_RSA_PKCS), privk, msg).unwrap();
    pk.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &hash, &sig)
        .expect("SHA256-RSA-PKCS verifies");
    assert_rv!(
        verify(m, h, mech(CKM_SHA256_RSA_PKCS), pubk, msg, &sig),
        CKR_OK
    );
    let mut bad = sig.clone();
    bad[9] ^= 1;
    assert_rv!(
        verify(m, h, mech(CKM_SHA256_RSA_PKCS), pubk, msg, &bad),
        CKR_SIGNATURE_INVALID
    );
    let raw = sign(m, h, mech(CKM_RSA_PKCS), privk, b"raw data").unwrap();
    pk.verify(rsa::Pkcs1v15Sign::new_unprefixed(), b"raw data", &raw)
        .expect("raw PKCS#1 verifies");
    // PSS: the hash's length, none, and the most a 1024-bit modulus takes (128 - 32 - 2).
    for salt in [32usize, 0, 94] {
        let mut p = pss(salt as CK_ULONG);
        let sig = sign(m, h, mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut p), privk, msg).unwrap();
        pk.verify(rsa::Pss::new_with_salt::<Sha256>(salt), &hash, &sig)
            .expect("PSS verifies");
        let rv = verify(
            m,
            h,
            mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut p),
            pubk,
            msg,
            &sig,
        );
        assert_rv!(rv, CKR_OK, "PSS salt {salt}");
    }
    let mut too_long = pss(95);
    assert_eq!(
        sign(
            m,
            h,
            mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut too_long),
            privk,
            msg
        ),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
}

/// Encryption inside decrypts inside (and outside when `outside` holds the private key);
/// RustCrypto's ciphertexts decrypt inside.
fn encryption(
    m: &Module,
    h: CK_SESSION_HANDLE,
    pubk: CK_OBJECT_HANDLE,
    privk: CK_OBJECT_HANDLE,
    outside: Option<&rsa::RsaPrivateKey>,
) {
    let pk = rsa_public(m, h, pubk);
    let mut rng = rsa::rand_core::OsRng;
    let mut label = *b"lbl";
    let mut oaep = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: label.as_mut_ptr() as *mut _,
        ulSourceDataLen: 3,
    };
    let ct = pk
        .encrypt(
            &mut rng,
            rsa::Oaep::new_with_label::<Sha256, _>("lbl"),
            b"a key",
        )
        .unwrap();
    let oaep_mech = |o: &mut CK_RSA_PKCS_OAEP_PARAMS| mech_with(CKM_RSA_PKCS_OAEP, o);
    assert_eq!(
        decrypt(m, h, oaep_mech(&mut oaep), privk, &ct).unwrap(),
        b"a key"
    );
    let ct = encrypt(m, h, oaep_mech(&mut oaep), pubk, b"round trip").unwrap();
    assert_eq!(ct.len(), 128);
    assert_eq!(
        decrypt(m, h, oaep_mech(&mut oaep), privk, &ct).unwrap(),
        b"round trip"
    );
    if let Some(sk) = outside {
        let pt = sk
            .decrypt(rsa::Oaep::new_with_label::<Sha256, _>("lbl"), &ct)
            .unwrap();
        assert_eq!(pt, b"round trip");
    }
    let mut bad = ct.clone();
    bad[5] ^= 1;
    assert_eq!(
        decrypt(m, h, oaep_mech(&mut oaep), privk, &bad),
        Err(CKR_ENCRYPTED_DATA_INVALID)
    );
    // OAEP SHA-256 takes at most 128 - 2*32 - 2 = 62 bytes.
    assert_eq!(
        encrypt(m, h, oaep_mech(&mut oaep), pubk, &[1; 63]),
        Err(CKR_DATA_LEN_RANGE)
    );
    // PKCS#1 v1.5.
    let ct = pk.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, b"v1.5").unwrap();
    assert_eq!(
        decrypt(m, h, mech(CKM_RSA_PKCS), privk, &ct).unwrap(),
        b"v1.5"
    );
    let ct = encrypt(m, h, mech(CKM_RSA_PKCS), pubk, b"v1.5 inside").unwrap();
    assert_eq!(
        decrypt(m, h, mech(CKM_RSA_PKCS), privk, &ct).unwrap(),
        b"v1.5 inside"
    );
    if let Some(sk) = outside {
        assert_eq!(
            sk.decrypt(rsa::Pkcs1v15Encrypt, &ct).unwrap(),
            b"v1.5 inside"
        );
    }
    assert_eq!(
        decrypt(m, h, mech(CKM_RSA_PKCS), privk, &ct[1..]),
        Err(CKR_ENCRYPTED_DATA_LEN_RANGE)
    );
}

#[test]
fn generated_1024_bit_keys_sign_and_encrypt_as_rustcrypto_checks() {
    let m = shared();
    let h = user_session(m, 0);
    let (pubk, privk) = keypair(
        m,
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        Template::new()
            .ulong(CKA_MODULUS_BITS, 1024)
            .bool(CKA_ENCRYPT, true),
        Template::new().bool(CKA_DECRYPT, true),
        b"rsa1024",
    );
    assert_eq!(get_attr(m, h, privk, CKA_MODULUS).unwrap().len(), 128);
    signatures(m, h, pubk, privk);
    encryption(m, h, pubk, privk, None);
    // Sizes between the offered ones are refused.
    for bits in [512, 1023, 1536] {
        let mut p = Template::new().ulong(CKA_MODULUS_BITS, bits);
        let (rv, _, _) = try_keypair(
            m,
            h,
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            &mut p,
            &mut Template::new(),
        );
        assert_rv!(rv, CKR_KEY_SIZE_RANGE, "{bits} bits");
    }
}

#[test]
fn an_imported_1024_bit_key_agrees_with_rustcrypto_both_ways() {
    let m = shared();
    let h = user_session(m, 1);
    let mut rng = rsa::rand_core::OsRng;
    let sk = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
    let be = |v: &rsa::BigUint| v.to_bytes_be();
    let [p, q] = [&sk.primes()[0], &sk.primes()[1]];
    let one = rsa::BigUint::from(1u8);
    let dp = sk.d() % (p - &one);
    let dq = sk.d() % (q - &one);
    let qinv = sk.crt_coefficient().unwrap();
    let private = Template::new()
        .ulong(CKA_CLASS, CKO_PRIVATE_KEY)
        .ulong(CKA_KEY_TYPE, CKK_RSA)
        .bytes(CKA_MODULUS, &be(sk.n()))
        .bytes(CKA_PUBLIC_EXPONENT, &be(sk.e()))
        .bytes(CKA_PRIVATE_EXPONENT, &be(sk.d()))
        .bytes(CKA_PRIME_1, &be(p))
        .bytes(CKA_PRIME_2, &be(q))
        .bytes(CKA_EXPONENT_1, &be(&dp))
        .bytes(CKA_EXPONENT_2, &be(&dq))
        .bytes(CKA_COEFFICIENT, &be(&qinv))
        .bool(CKA_SIGN, true)
        .bool(CKA_DECRYPT, true);
    let public = Template::new()
        .ulong(CKA_CLASS, CKO_PUBLIC_KEY)
        .ulong(CKA_KEY_TYPE, CKK_RSA)
        .bytes(CKA_MODULUS, &be(sk.n()))
        .bytes(CKA_PUBLIC_EXPONENT, &be(sk.e()))
        .bool(CKA_VERIFY, true)
        .bool(CKA_ENCRYPT, true);
    let privk = try_create(m, h, private).unwrap();
    let pubk = try_create(m, h, public).unwrap();
    signatures(m, h, pubk, privk);
    encryption(m, h, pubk, privk, Some(&sk));
    // A private key whose values disagree (another prime) is refused on import.
    let wrong = Template::new()
        .ulong(CKA_CLASS, CKO_PRIVATE_KEY)
        .ulong(CKA_KEY_TYPE, CKK_RSA)
        .bytes(CKA_MODULUS, &be(sk.n()))
        .bytes(CKA_PUBLIC_EXPONENT, &be(sk.e()))
        .bytes(CKA_PRIVATE_EXPONENT, &be(sk.d()))
        .bytes(CKA_PRIME_1, &be(&(p + 2u8)))
        .bytes(CKA_PRIME_2, &be(q))
        .bytes(CKA_EXPONENT_1, &be(&dp))
        .bytes(CKA_EXPONENT_2, &be(&dq))
        .bytes(CKA_COEFFICIENT, &be(&qinv))
        .bool(CKA_SIGN, true);
    let k = try_create(m, h, wrong);
    let rv = match k {
        Ok(k) => sign(m, h, mech(CKM_SHA256_RSA_PKCS), k, b"x")
            .err()
            .unwrap_or(CKR_OK),
        Err(rv) => rv,
    };
    assert_ne!(rv, CKR_OK, "an inconsistent RSA-1024 key must not sign");
}
