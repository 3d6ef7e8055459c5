//! libhsmux.so used through the cryptoki crate, as any Rust program would: one `Pkcs11`
//! for the whole test binary (cryptoki takes the default interface of `C_GetInterface`),
//! a configuration of several soft slots, one slot per test so that tests run in parallel.
//! Every cryptographic result is checked by an independent implementation (RustCrypto), in
//! both directions where the operation has two.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use sha2::Digest;
use std::sync::OnceLock;

const SLOTS: usize = 14;

/// The one context of this test binary.
fn pkcs11() -> &'static Pkcs11 {
    static P: OnceLock<Pkcs11> = OnceLock::new();
    P.get_or_init(|| {
        common::write_config(SLOTS);
        let p = Pkcs11::new(common::module_path()).expect("load libhsmux.so");
        p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .expect("C_Initialize");
        p
    })
}

fn slot(i: usize) -> Slot {
    let slots = pkcs11().get_all_slots().unwrap();
    assert_eq!(slots.len(), SLOTS);
    slots[i]
}

fn so_pin() -> AuthPin {
    AuthPin::from("12345678")
}

fn user_pin() -> AuthPin {
    AuthPin::from("1234")
}

/// The PKCS#11 code inside a cryptoki error.
fn rv<T: std::fmt::Debug>(r: cryptoki::error::Result<T>) -> RvError {
    match r {
        Err(Error::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS#11 error, got {other:?}"),
    }
}

/// Initializes the token of slot `i` (label `c<i>`) and returns a logged-in RW session.
fn user_session(i: usize) -> Session {
    let p = pkcs11();
    let s = slot(i);
    p.init_token(s, &so_pin(), &format!("c{i}")).unwrap();
    {
        let so = p.open_rw_session(s).unwrap();
        so.login(UserType::So, Some(&so_pin())).unwrap();
        so.init_pin(&user_pin()).unwrap();
    }
    let session = p.open_rw_session(s).unwrap();
    session.login(UserType::User, Some(&user_pin())).unwrap();
    session
}

fn attr_bytes(session: &Session, o: ObjectHandle, t: AttributeType) -> Vec<u8> {
    match session.get_attributes(o, &[t]).unwrap().pop() {
        Some(
            Attribute::EcPoint(v)
            | Attribute::Modulus(v)
            | Attribute::PublicExponent(v)
            | Attribute::Value(v)
            | Attribute::Label(v)
            | Attribute::Id(v),
        ) => v,
        other => panic!("attribute {t:?}: {other:?}"),
    }
}

/// The point inside CKA_EC_POINT (a DER OCTET STRING).
fn ec_point(session: &Session, o: ObjectHandle) -> Vec<u8> {
    let der = attr_bytes(session, o, AttributeType::EcPoint);
    assert_eq!(der[0], 0x04, "CKA_EC_POINT is DER-wrapped");
    let (len, off) = if der[1] & 0x80 == 0 {
        (der[1] as usize, 2)
    } else {
        (der[2] as usize, 3)
    };
    assert_eq!(der.len(), off + len);
    der[off..].to_vec()
}

fn ec_pair(session: &Session, params: &[u8], id: &[u8]) -> (ObjectHandle, ObjectHandle) {
    session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(params.to_vec()),
                Attribute::Verify(true),
                Attribute::Id(id.to_vec()),
            ],
            &[
                Attribute::Sign(true),
                Attribute::Derive(true),
                Attribute::Sensitive(true),
                Attribute::Id(id.to_vec()),
            ],
        )
        .unwrap()
}

fn rsa_pair(session: &Session, bits: u64) -> (ObjectHandle, ObjectHandle) {
    session
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::ModulusBits(bits.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Encrypt(true),
                Attribute::Verify(true),
            ],
            &[
                Attribute::Decrypt(true),
                Attribute::Sign(true),
                Attribute::Sensitive(true),
            ],
        )
        .unwrap()
}

fn rsa_public(session: &Session, pubk: ObjectHandle) -> rsa::RsaPublicKey {
    rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&attr_bytes(session, pubk, AttributeType::Modulus)),
        rsa::BigUint::from_bytes_be(&attr_bytes(session, pubk, AttributeType::PublicExponent)),
    )
    .unwrap()
}

fn secret_from(session: &Session, kt: KeyType, value: &[u8]) -> ObjectHandle {
    session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(kt),
            Attribute::Value(value.to_vec()),
            Attribute::Sensitive(true),
        ])
        .unwrap()
}

#[test]
fn cryptoki_loads_the_3_0_interface_and_reads_library_info() {
    let p = pkcs11();
    // C_LoginUser exists only in the 3.0 table: cryptoki took the interface C_GetInterface
    // offered by default rather than falling back to C_GetFunctionList.
    assert!(p.is_fn_supported(Function::LoginUser));
    assert!(p.is_fn_supported(Function::GetInterface));
    let info = p.get_library_info().unwrap();
    assert_eq!(
        (
            info.cryptoki_version().major(),
            info.cryptoki_version().minor()
        ),
        (3, 0)
    );
    assert_eq!(info.manufacturer_id(), "hsmux");
    assert_eq!(
        rv(p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))),
        RvError::CryptokiAlreadyInitialized
    );
    // Slot info: a token is always present; slot ids are the config order.
    let slots = p.get_slots_with_token().unwrap();
    assert_eq!(slots.len(), SLOTS);
    assert_eq!(
        slots.iter().map(|s| s.id()).collect::<Vec<_>>(),
        (0..SLOTS as u64).collect::<Vec<_>>()
    );
    assert!(p.get_slot_info(slots[0]).unwrap().token_present());
}

#[test]
fn token_life_cycle_and_login_rules() {
    let p = pkcs11();
    let s = slot(0);
    let before = p.get_token_info(s).unwrap();
    assert!(!before.token_initialized());
    assert!(!before.user_pin_initialized());
    assert_eq!(
        before.label(),
        "t0",
        "the configured label, trimmed by cryptoki"
    );
    assert!(!p.get_slots_with_initialized_token().unwrap().contains(&s));
    assert_eq!(rv(p.open_rw_session(s)), RvError::TokenNotRecognized);

    p.init_token(s, &so_pin(), "life cycle").unwrap();
    let after = p.get_token_info(s).unwrap();
    assert!(after.token_initialized());
    assert!(!after.user_pin_initialized());
    assert_eq!(after.label(), "life cycle");
    assert!(p.get_slots_with_initialized_token().unwrap().contains(&s));
    {
        let so = p.open_rw_session(s).unwrap();
        assert_eq!(
            rv(so.login(UserType::User, Some(&user_pin()))),
            RvError::UserPinNotInitialized
        );
        assert_eq!(rv(so.init_pin(&user_pin())), RvError::UserNotLoggedIn);
        so.login(UserType::So, Some(&so_pin())).unwrap();
        assert_eq!(
            so.get_session_info().unwrap().session_state(),
            SessionState::RwSecurityOfficer
        );
        assert_eq!(rv(so.init_pin(&AuthPin::from("12"))), RvError::PinLenRange);
        so.init_pin(&user_pin()).unwrap();
        assert_eq!(
            rv(p.init_token(s, &so_pin(), "again")),
            RvError::SessionExists
        );
    }
    assert!(p.get_token_info(s).unwrap().user_pin_initialized());

    // Login state belongs to the slot: one login covers every session.
    let a = p.open_rw_session(s).unwrap();
    let b = p.open_ro_session(s).unwrap();
    assert_eq!(rv(a.logout()), RvError::UserNotLoggedIn);
    assert_eq!(
        rv(a.login(UserType::So, Some(&so_pin()))),
        RvError::SessionReadOnlyExists
    );
    assert_eq!(
        rv(a.login(UserType::User, Some(&AuthPin::from("0000")))),
        RvError::PinIncorrect
    );
    assert!(p.get_token_info(s).unwrap().user_pin_count_low());
    a.login(UserType::User, Some(&user_pin())).unwrap();
    assert!(!p.get_token_info(s).unwrap().user_pin_count_low());
    assert_eq!(
        b.get_session_info().unwrap().session_state(),
        SessionState::RoUser
    );
    assert_eq!(
        rv(b.login(UserType::User, Some(&user_pin()))),
        RvError::UserAlreadyLoggedIn
    );
    assert_eq!(
        rv(b.login(UserType::So, Some(&so_pin()))),
        RvError::UserAnotherAlreadyLoggedIn
    );
    let info = p.get_token_info(s).unwrap();
    assert_eq!(
        (info.session_count(), info.rw_session_count()),
        (Some(2), Some(1))
    );
    // C_SetPIN: RO session refused; the old PIN stops working.
    assert_eq!(
        rv(b.set_pin(&user_pin(), &AuthPin::from("5678"))),
        RvError::SessionReadOnly
    );
    a.set_pin(&user_pin(), &AuthPin::from("5678")).unwrap();
    b.logout().unwrap();
    assert_eq!(
        a.get_session_info().unwrap().session_state(),
        SessionState::RwPublic
    );
    assert_eq!(
        rv(a.login(UserType::User, Some(&user_pin()))),
        RvError::PinIncorrect
    );
    a.login(UserType::User, Some(&AuthPin::from("5678")))
        .unwrap();
    // Closing the last session logs the slot out.
    drop(a);
    drop(b);
    let c = p.open_ro_session(s).unwrap();
    assert_eq!(
        c.get_session_info().unwrap().session_state(),
        SessionState::RoPublic
    );
    drop(c);
    // Re-initialization: wrong SO PIN refused; the right one wipes objects and the user PIN.
    assert_eq!(
        rv(p.init_token(s, &AuthPin::from("87654321"), "x")),
        RvError::PinIncorrect
    );
    assert!(p.get_token_info(s).unwrap().so_pin_count_low());
    p.init_token(s, &so_pin(), "wiped").unwrap();
    let info = p.get_token_info(s).unwrap();
    assert!(!info.user_pin_initialized());
    assert!(!info.so_pin_count_low(), "a right SO PIN clears the count");
    assert_eq!(info.label(), "wiped");
}

#[test]
fn mechanism_list_and_info_tell_the_truth() {
    let p = pkcs11();
    let s = slot(1);
    let list = p.get_mechanism_list(s).unwrap();
    for m in [
        MechanismType::AES_KEY_GEN,
        MechanismType::AES_GCM,
        MechanismType::AES_CBC,
        MechanismType::AES_CBC_PAD,
        MechanismType::AES_ECB,
        MechanismType::AES_KEY_WRAP,
        MechanismType::AES_KEY_WRAP_PAD,
        MechanismType::ECC_KEY_PAIR_GEN,
        MechanismType::ECDSA,
        MechanismType::ECDSA_SHA256,
        MechanismType::ECDSA_SHA384,
        MechanismType::ECDH1_DERIVE,
        MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
        MechanismType::EDDSA,
        MechanismType::RSA_PKCS_KEY_PAIR_GEN,
        MechanismType::RSA_PKCS,
        MechanismType::SHA256_RSA_PKCS,
        MechanismType::RSA_PKCS_PSS,
        MechanismType::SHA256_RSA_PKCS_PSS,
        MechanismType::RSA_PKCS_OAEP,
        MechanismType::GENERIC_SECRET_KEY_GEN,
        MechanismType::SHA256_HMAC,
        MechanismType::SHA384_HMAC,
        MechanismType::SHA512_HMAC,
        MechanismType::SHA256,
        MechanismType::SHA384,
        MechanismType::SHA512,
    ] {
        assert!(list.contains(&m), "{m} is listed");
    }
    let gcm = p.get_mechanism_info(s, MechanismType::AES_GCM).unwrap();
    assert!(gcm.encrypt() && gcm.decrypt());
    assert_eq!((gcm.min_key_size(), gcm.max_key_size()), (16, 32));
    let ec = p
        .get_mechanism_info(s, MechanismType::ECC_KEY_PAIR_GEN)
        .unwrap();
    assert!(ec.generate_key_pair());
    assert_eq!((ec.min_key_size(), ec.max_key_size()), (256, 521));
    let ecdsa = p.get_mechanism_info(s, MechanismType::ECDSA).unwrap();
    assert!(ecdsa.sign() && ecdsa.verify() && !ecdsa.encrypt());
    let rsa = p
        .get_mechanism_info(s, MechanismType::RSA_PKCS_KEY_PAIR_GEN)
        .unwrap();
    assert_eq!((rsa.min_key_size(), rsa.max_key_size()), (1024, 4096));
    let wrap = p
        .get_mechanism_info(s, MechanismType::AES_KEY_WRAP)
        .unwrap();
    assert!(wrap.wrap() && wrap.unwrap());
    let derive = p
        .get_mechanism_info(s, MechanismType::ECDH1_DERIVE)
        .unwrap();
    assert!(derive.derive());
    for m in &list {
        p.get_mechanism_info(s, *m)
            .unwrap_or_else(|e| panic!("{m} is listed but has no info: {e}"));
    }
    assert_eq!(
        rv(p.get_mechanism_info(s, MechanismType::AES_CFB128)),
        RvError::MechanismInvalid
    );
}

#[test]
fn ecdsa_p256_and_p384_verify_with_rustcrypto_both_ways() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::ecdsa::signature::{Signer, Verifier};
    let session = user_session(2);
    let msg = b"signed by hsmux, checked by RustCrypto";

    let (pubk, privk) = ec_pair(&session, common::P256_PARAMS, b"p256");
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(&session, pubk)).unwrap();
    let sig = session.sign(&Mechanism::EcdsaSha256, privk, msg).unwrap();
    assert_eq!(sig.len(), 64);
    vk.verify(msg, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("ECDSA-SHA256 P-256");
    let digest = sha2::Sha256::digest(msg);
    let sig = session.sign(&Mechanism::Ecdsa, privk, &digest).unwrap();
    vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("raw ECDSA P-256");
    session
        .verify(&Mechanism::Ecdsa, pubk, &digest, &sig)
        .unwrap();
    // Multi-part gives a signature that verifies too.
    session.sign_init(&Mechanism::EcdsaSha256, privk).unwrap();
    for part in msg.chunks(7) {
        session.sign_update(part).unwrap();
    }
    let sig = session.sign_final().unwrap();
    vk.verify(msg, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("multi-part ECDSA-SHA256");

    let (pubk, privk) = ec_pair(&session, common::P384_PARAMS, b"p384");
    let point = ec_point(&session, pubk);
    assert_eq!(point.len(), 97);
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    let sig = session.sign(&Mechanism::EcdsaSha384, privk, msg).unwrap();
    assert_eq!(sig.len(), 96);
    vk.verify(msg, &p384::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("ECDSA-SHA384 P-384");
    let digest = sha2::Sha384::digest(msg);
    let sig = session.sign(&Mechanism::Ecdsa, privk, &digest).unwrap();
    vk.verify_prehash(&digest, &p384::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("raw ECDSA P-384");
    // ECDSA with SHA-256 on a P-384 key: the hash is shorter than the order; still valid.
    let sig = session.sign(&Mechanism::EcdsaSha256, privk, msg).unwrap();
    vk.verify_prehash(
        &sha2::Sha256::digest(msg),
        &p384::ecdsa::Signature::from_slice(&sig).unwrap(),
    )
    .expect("ECDSA-SHA256 on P-384");

    // Signed outside, verified inside; a flipped bit is CKR_SIGNATURE_INVALID.
    let sk = p384::ecdsa::SigningKey::random(&mut rsa::rand_core::OsRng);
    let outside: p384::ecdsa::Signature = sk.sign(msg);
    let imported = session
        .create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::EcParams(common::P384_PARAMS.to_vec()),
            Attribute::EcPoint(der_octets(
                sk.verifying_key().to_encoded_point(false).as_bytes(),
            )),
            Attribute::Verify(true),
        ])
        .unwrap();
    let mut sig = outside.to_bytes().to_vec();
    session
        .verify(&Mechanism::EcdsaSha384, imported, msg, &sig)
        .expect("RustCrypto's P-384 signature verifies in hsmux");
    sig[5] ^= 1;
    assert_eq!(
        rv(session.verify(&Mechanism::EcdsaSha384, imported, msg, &sig)),
        RvError::SignatureInvalid
    );
    assert_eq!(
        rv(session.verify(&Mechanism::EcdsaSha384, imported, msg, &sig[..95])),
        RvError::SignatureLenRange
    );
}

/// A DER OCTET STRING around `b` (CKA_EC_POINT's encoding).
fn der_octets(b: &[u8]) -> Vec<u8> {
    let mut v = vec![0x04];
    if b.len() < 128 {
        v.push(b.len() as u8);
    } else {
        v.extend([0x81, b.len() as u8]);
    }
    v.extend_from_slice(b);
    v
}

#[test]
fn ed25519_signatures_both_ways() {
    use ed25519_dalek::Signer;
    let session = user_session(3);
    let (pubk, privk) = session
        .generate_key_pair(
            &Mechanism::EccEdwardsKeyPairGen,
            &[
                Attribute::EcParams(common::ED25519_PARAMS.to_vec()),
                Attribute::Verify(true),
            ],
            &[Attribute::Sign(true), Attribute::Sensitive(true)],
        )
        .unwrap();
    let point: [u8; 32] = ec_point(&session, pubk).try_into().unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&point).unwrap();
    let msg = b"pure Ed25519";
    let eddsa = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
    let sig = session.sign(&eddsa, privk, msg).unwrap();
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_slice(&sig).unwrap())
        .expect("hsmux's EdDSA verifies in dalek");
    assert_eq!(
        sig,
        session.sign(&eddsa, privk, msg).unwrap(),
        "Ed25519 is deterministic"
    );
    // Signed by dalek, verified by hsmux.
    let sk = ed25519_dalek::SigningKey::from_bytes(&[0x42; 32]);
    let imported = session
        .create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::EC_EDWARDS),
            Attribute::EcParams(common::ED25519_PARAMS.to_vec()),
            Attribute::EcPoint(der_octets(sk.verifying_key().as_bytes())),
            Attribute::Verify(true),
        ])
        .unwrap();
    let mut outside = sk.sign(msg).to_bytes();
    session
        .verify(&eddsa, imported, msg, &outside)
        .expect("dalek's signature verifies in hsmux");
    outside[0] ^= 1;
    assert_eq!(
        rv(session.verify(&eddsa, imported, msg, &outside)),
        RvError::SignatureInvalid
    );
}

#[test]
fn rsa_keys_of_each_size_sign_pkcs1_and_pss() {
    let session = user_session(4);
    let msg = b"RSA through cryptoki";
    for bits in [2048u64, 3072, 4096] {
        let (pubk, privk) = rsa_pair(&session, bits);
        let pk = rsa_public(&session, pubk);
        assert_eq!(rsa::traits::PublicKeyParts::size(&pk) * 8, bits as usize);
        assert_eq!(
            attr_bytes(&session, pubk, AttributeType::PublicExponent),
            vec![1, 0, 1]
        );
        let sig = session.sign(&Mechanism::Sha256RsaPkcs, privk, msg).unwrap();
        pk.verify(
            rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            &sha2::Sha256::digest(msg),
            &sig,
        )
        .unwrap_or_else(|e| panic!("SHA256-RSA-PKCS {bits}: {e}"));
        session
            .verify(&Mechanism::Sha256RsaPkcs, pubk, msg, &sig)
            .unwrap();
        let pss = PkcsPssParams {
            hash_alg: MechanismType::SHA384,
            mgf: PkcsMgfType::MGF1_SHA384,
            s_len: 48.into(),
        };
        let sig = session
            .sign(&Mechanism::Sha384RsaPkcsPss(pss), privk, msg)
            .unwrap();
        pk.verify(
            rsa::Pss::new::<sha2::Sha384>(),
            &sha2::Sha384::digest(msg),
            &sig,
        )
        .unwrap_or_else(|e| panic!("SHA384-RSA-PSS {bits}: {e}"));
        session
            .verify(&Mechanism::Sha384RsaPkcsPss(pss), pubk, msg, &sig)
            .unwrap();
    }
    // Private key material never leaves; the public half is readable.
    let (pubk, privk) = rsa_pair(&session, 2048);
    let info = session
        .get_attribute_info(
            privk,
            &[
                AttributeType::PrivateExponent,
                AttributeType::Prime1,
                AttributeType::Modulus,
                AttributeType::EcPoint,
            ],
        )
        .unwrap();
    assert_eq!(
        dbg(info),
        dbg(vec![
            AttributeInfo::Sensitive,
            AttributeInfo::Sensitive,
            AttributeInfo::Available(256),
            AttributeInfo::TypeInvalid
        ])
    );
    assert_eq!(
        dbg(session
            .get_attribute_info(pubk, &[AttributeType::Modulus])
            .unwrap()),
        dbg(vec![AttributeInfo::Available(256)])
    );
    // A size outside the mechanism's range (1024 to 4096 bits).
    assert_eq!(
        rv(session.generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[Attribute::ModulusBits(512.into())],
            &[],
        )),
        RvError::KeySizeRange
    );
}

/// PSS salt lengths other than the hash length: 0 (deterministic PSS) and the maximum
/// (k - hLen - 2), the default of OpenSSL 3 and of Vault/OpenBao transit signatures.
/// SoftHSM signs and verifies all of them.
#[test]
fn rsa_pss_with_salt_lengths_zero_and_maximum() {
    let session = user_session(13);
    let (pubk, privk) = rsa_pair(&session, 2048);
    let pk = rsa_public(&session, pubk);
    let msg = b"PSS with another salt length";
    let hash = sha2::Sha256::digest(msg);
    for salt in [0usize, 256 - 32 - 2] {
        let pss = PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: (salt as u64).into(),
        };
        let sig = session
            .sign(&Mechanism::Sha256RsaPkcsPss(pss), privk, msg)
            .unwrap_or_else(|e| panic!("SHA256-RSA-PSS, salt {salt}: {e}"));
        pk.verify(rsa::Pss::new_with_salt::<sha2::Sha256>(salt), &hash, &sig)
            .unwrap_or_else(|e| panic!("RustCrypto verifies salt {salt}: {e}"));
        session
            .verify(&Mechanism::RsaPkcsPss(pss), pubk, &hash, &sig)
            .unwrap_or_else(|e| panic!("hsmux verifies salt {salt}: {e}"));
    }
}

#[test]
fn rsa_encryption_agrees_with_rustcrypto() {
    let session = user_session(5);
    let (pubk, privk) = rsa_pair(&session, 2048);
    let pk = rsa_public(&session, pubk);
    let mut rng = rsa::rand_core::OsRng;
    let secret = b"a data encryption key, 32 bytes";
    // OAEP SHA-1 and SHA-256, label empty and given: RustCrypto encrypts, hsmux decrypts.
    for label in [&b""[..], b"context"] {
        let source = if label.is_empty() {
            PkcsOaepSource::empty()
        } else {
            PkcsOaepSource::data_specified(label)
        };
        let l = String::from_utf8(label.to_vec()).unwrap();
        let sha1 = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
            MechanismType::SHA1,
            PkcsMgfType::MGF1_SHA1,
            source,
        ));
        let ct = pk
            .encrypt(
                &mut rng,
                rsa::Oaep::new_with_label::<sha1::Sha1, _>(l.clone()),
                secret,
            )
            .unwrap();
        assert_eq!(session.decrypt(&sha1, privk, &ct).unwrap(), secret);
        let sha256 = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
            MechanismType::SHA256,
            PkcsMgfType::MGF1_SHA256,
            source,
        ));
        let ct = pk
            .encrypt(
                &mut rng,
                rsa::Oaep::new_with_label::<sha2::Sha256, _>(l),
                secret,
            )
            .unwrap();
        assert_eq!(session.decrypt(&sha256, privk, &ct).unwrap(), secret);
        // hsmux encrypts with the public key; a second decrypt gives the same bytes.
        let ct = session.encrypt(&sha256, pubk, secret).unwrap();
        assert_eq!(ct.len(), 256);
        assert_eq!(session.decrypt(&sha256, privk, &ct).unwrap(), secret);
        // The wrong label does not open it.
        let other = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
            MechanismType::SHA256,
            PkcsMgfType::MGF1_SHA256,
            PkcsOaepSource::data_specified(b"other"),
        ));
        assert_eq!(
            rv(session.decrypt(&other, privk, &ct)),
            RvError::EncryptedDataInvalid
        );
    }
    // PKCS#1 v1.5 encryption, both ways.
    let ct = pk.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, secret).unwrap();
    assert_eq!(
        session.decrypt(&Mechanism::RsaPkcs, privk, &ct).unwrap(),
        secret
    );
    let ct = session.encrypt(&Mechanism::RsaPkcs, pubk, secret).unwrap();
    assert_eq!(
        session.decrypt(&Mechanism::RsaPkcs, privk, &ct).unwrap(),
        secret
    );
    // Too long for OAEP-SHA256 with a 2048-bit key (at most 256 - 2*32 - 2 = 190 bytes).
    let oaep = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::empty(),
    ));
    assert_eq!(
        rv(session.encrypt(&oaep, pubk, &[0u8; 191])),
        RvError::DataLenRange
    );
    session.encrypt(&oaep, pubk, &[0u8; 190]).unwrap();
}

#[test]
fn aes_gcm_cbc_and_ecb_agree_with_rustcrypto() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::aes::cipher::{BlockDecrypt, BlockEncrypt};
    let session = user_session(6);
    for len in [16usize, 24, 32] {
        let value: Vec<u8> = (0..len as u8).collect();
        let key = secret_from(&session, KeyType::AES, &value);
        // GCM with AAD, 96-bit IV, 128-bit tag (AES-256 checked by aes-gcm; the others by
        // round trip and tag tampering).
        let mut iv = [9u8; 12];
        let aad = b"header";
        let msg = b"AES-GCM plaintext, not a multiple of 16";
        let ct = session
            .encrypt(
                &Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into()).unwrap()),
                key,
                msg,
            )
            .unwrap();
        assert_eq!(ct.len(), msg.len() + 16);
        if len == 32 {
            let theirs = aes_gcm::Aes256Gcm::new_from_slice(&value).unwrap();
            let pt = theirs
                .decrypt((&iv).into(), Payload { msg: &ct, aad })
                .expect("aes-gcm opens hsmux's ciphertext");
            assert_eq!(pt, msg);
            let outside = theirs
                .encrypt(
                    (&iv).into(),
                    Payload {
                        msg: b"from aes-gcm",
                        aad,
                    },
                )
                .unwrap();
            assert_eq!(
                session
                    .decrypt(
                        &Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into()).unwrap()),
                        key,
                        &outside,
                    )
                    .unwrap(),
                b"from aes-gcm"
            );
        }
        if len == 16 {
            let theirs = aes_gcm::Aes128Gcm::new_from_slice(&value).unwrap();
            let pt = theirs
                .decrypt((&iv).into(), Payload { msg: &ct, aad })
                .expect("aes-gcm opens hsmux's AES-128-GCM");
            assert_eq!(pt, msg);
        }
        let mut bad = ct.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(
            rv(session.decrypt(
                &Mechanism::AesGcm(GcmParams::new(&mut iv, aad, 128.into()).unwrap()),
                key,
                &bad,
            )),
            RvError::EncryptedDataInvalid
        );
        assert_eq!(
            rv(session.decrypt(
                &Mechanism::AesGcm(GcmParams::new(&mut iv, b"other", 128.into()).unwrap()),
                key,
                &ct,
            )),
            RvError::EncryptedDataInvalid,
            "other AAD"
        );

        // ECB and CBC checked block by block with the aes crate.
        let blocks: Vec<u8> = (0..48u8).map(|b| b.wrapping_mul(7)).collect();
        let ecb = session.encrypt(&Mechanism::AesEcb, key, &blocks).unwrap();
        let cbc_iv = [0x5au8; 16];
        let cbc = session
            .encrypt(&Mechanism::AesCbc(cbc_iv), key, &blocks)
            .unwrap();
        let cbc_pad = session
            .encrypt(&Mechanism::AesCbcPad(cbc_iv), key, &blocks[..20])
            .unwrap();
        assert_eq!(cbc_pad.len(), 32, "PKCS#7 padding to the next block");
        let enc = |b: &[u8]| -> [u8; 16] {
            let mut blk = aes_gcm::aes::Block::clone_from_slice(b);
            match len {
                16 => aes_gcm::aes::Aes128::new_from_slice(&value)
                    .unwrap()
                    .encrypt_block(&mut blk),
                24 => aes_gcm::aes::Aes192::new_from_slice(&value)
                    .unwrap()
                    .encrypt_block(&mut blk),
                _ => aes_gcm::aes::Aes256::new_from_slice(&value)
                    .unwrap()
                    .encrypt_block(&mut blk),
            }
            blk.into()
        };
        let mut prev = cbc_iv;
        for (i, chunk) in blocks.chunks(16).enumerate() {
            assert_eq!(
                &ecb[i * 16..i * 16 + 16],
                enc(chunk),
                "ECB block {i}, AES-{}",
                len * 8
            );
            let x: Vec<u8> = chunk.iter().zip(prev).map(|(a, b)| a ^ b).collect();
            prev = enc(&x);
            assert_eq!(
                &cbc[i * 16..i * 16 + 16],
                prev,
                "CBC block {i}, AES-{}",
                len * 8
            );
        }
        let mut last = blocks[16..20].to_vec();
        last.extend([12u8; 12]);
        let first = enc(&blocks[..16]
            .iter()
            .zip(cbc_iv)
            .map(|(a, b)| a ^ b)
            .collect::<Vec<_>>());
        let second = enc(&last
            .iter()
            .zip(first)
            .map(|(a, b)| a ^ b)
            .collect::<Vec<_>>());
        assert_eq!(
            cbc_pad,
            [first, second].concat(),
            "CBC-PAD, AES-{}",
            len * 8
        );
        // And back.
        assert_eq!(
            session.decrypt(&Mechanism::AesEcb, key, &ecb).unwrap(),
            blocks
        );
        assert_eq!(
            session
                .decrypt(&Mechanism::AesCbc(cbc_iv), key, &cbc)
                .unwrap(),
            blocks
        );
        assert_eq!(
            session
                .decrypt(&Mechanism::AesCbcPad(cbc_iv), key, &cbc_pad)
                .unwrap(),
            &blocks[..20]
        );
        let _ = <aes_gcm::aes::Aes128 as BlockDecrypt>::decrypt_block;
    }
    assert_eq!(
        rv(session.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(vec![0; 15]),
        ])),
        RvError::AttributeValueInvalid,
        "an AES key of 15 bytes"
    );
}

#[test]
fn hmac_and_digests_agree_with_rustcrypto() {
    use hmac::Mac;
    let session = user_session(7);
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 31) as u8).collect();
    let key = session
        .generate_key(
            &Mechanism::GenericSecretKeyGen,
            &[
                Attribute::ValueLen(48.into()),
                Attribute::Sign(true),
                Attribute::Verify(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ],
        )
        .unwrap();
    let value = attr_bytes(&session, key, AttributeType::Value);
    assert_eq!(value.len(), 48);
    let mac256 = session.sign(&Mechanism::Sha256Hmac, key, &data).unwrap();
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&value).unwrap();
    m.update(&data);
    m.verify_slice(&mac256).expect("HMAC-SHA256");
    let mac384 = session.sign(&Mechanism::Sha384Hmac, key, &data).unwrap();
    let mut m = hmac::Hmac::<sha2::Sha384>::new_from_slice(&value).unwrap();
    m.update(&data);
    m.verify_slice(&mac384).expect("HMAC-SHA384");
    let mac512 = session.sign(&Mechanism::Sha512Hmac, key, &data).unwrap();
    let mut m = hmac::Hmac::<sha2::Sha512>::new_from_slice(&value).unwrap();
    m.update(&data);
    m.verify_slice(&mac512).expect("HMAC-SHA512");
    // Multi-part HMAC equals single-part; verify accepts it and refuses a changed one.
    session.sign_init(&Mechanism::Sha512Hmac, key).unwrap();
    for part in data.chunks(333) {
        session.sign_update(part).unwrap();
    }
    assert_eq!(session.sign_final().unwrap(), mac512);
    session
        .verify(&Mechanism::Sha384Hmac, key, &data, &mac384)
        .unwrap();
    let mut bad = mac384.clone();
    bad[47] ^= 0x80;
    assert_eq!(
        rv(session.verify(&Mechanism::Sha384Hmac, key, &data, &bad)),
        RvError::SignatureInvalid
    );
    // An HMAC key made from RustCrypto's side.
    let outside_key = [0x0bu8; 20];
    let imported = session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Value(outside_key.to_vec()),
            Attribute::Verify(true),
        ])
        .unwrap();
    // RFC 4231 test case 1.
    let expected = hex_decode("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    session
        .verify(&Mechanism::Sha256Hmac, imported, b"Hi There", &expected)
        .expect("RFC 4231 test case 1");
    // Digests, single- and multi-part.
    assert_eq!(
        session.digest(&Mechanism::Sha256, &data).unwrap(),
        sha2::Sha256::digest(&data).to_vec()
    );
    assert_eq!(
        session.digest(&Mechanism::Sha384, &data).unwrap(),
        sha2::Sha384::digest(&data).to_vec()
    );
    assert_eq!(
        session.digest(&Mechanism::Sha512, &data).unwrap(),
        sha2::Sha512::digest(&data).to_vec()
    );
    assert_eq!(
        session.digest(&Mechanism::Sha256, b"").unwrap(),
        sha2::Sha256::digest(b"").to_vec()
    );
    session.digest_init(&Mechanism::Sha384).unwrap();
    for part in data.chunks(1000) {
        session.digest_update(part).unwrap();
    }
    assert_eq!(
        session.digest_final().unwrap(),
        sha2::Sha384::digest(&data).to_vec()
    );
}

/// AttributeInfo has no PartialEq: compare the Debug text.
fn dbg<T: std::fmt::Debug>(v: T) -> String {
    format!("{v:?}")
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn aes_key(session: &Session, value: &[u8]) -> ObjectHandle {
    session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(value.to_vec()),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
        ])
        .unwrap()
}

fn extractable(session: &Session, kt: KeyType, value: &[u8]) -> ObjectHandle {
    session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(kt),
            Attribute::Value(value.to_vec()),
            Attribute::Extractable(true),
            Attribute::Sensitive(true),
        ])
        .unwrap()
}

fn unwrap_value(
    session: &Session,
    m: &Mechanism,
    kek: ObjectHandle,
    wrapped: &[u8],
    kt: KeyType,
) -> Vec<u8> {
    let back = session
        .unwrap_key(
            m,
            kek,
            wrapped,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(kt),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ],
        )
        .unwrap();
    attr_bytes(session, back, AttributeType::Value)
}

#[test]
fn aes_key_wrap_matches_rfc_3394_and_the_aes_kw_crate() {
    let session = user_session(8);
    // RFC 3394 §4.1 (128-bit KEK, 128-bit key data) and §4.6 (256-bit KEK and key data).
    for (kek, data, expected) in [
        (
            "000102030405060708090A0B0C0D0E0F",
            "00112233445566778899AABBCCDDEEFF",
            "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5",
        ),
        (
            "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
            "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
            "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21",
        ),
    ] {
        let k = aes_key(&session, &hex_decode(kek));
        let target = extractable(&session, KeyType::AES, &hex_decode(data));
        let wrapped = session.wrap_key(&Mechanism::AesKeyWrap, k, target).unwrap();
        assert_eq!(
            wrapped,
            hex_decode(expected),
            "RFC 3394, {}-bit KEK",
            kek.len() * 4
        );
        assert_eq!(
            unwrap_value(&session, &Mechanism::AesKeyWrap, k, &wrapped, KeyType::AES),
            hex_decode(data)
        );
        let mut bad = wrapped.clone();
        bad[9] ^= 1;
        assert_eq!(
            rv(session.unwrap_key(
                &Mechanism::AesKeyWrap,
                k,
                &bad,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES)
                ],
            )),
            RvError::WrappedKeyInvalid
        );
    }
    // With padding (RFC 5649), 128- and 256-bit KEKs, key data of 1..=33 bytes: the same
    // bytes as the aes-kw crate, and back.
    let kek128: [u8; 16] = std::array::from_fn(|i| i as u8 * 3);
    let kek256: [u8; 32] = std::array::from_fn(|i| 0xa0 ^ i as u8);
    let (h128, h256) = (aes_key(&session, &kek128), aes_key(&session, &kek256));
    for n in [1usize, 7, 8, 16, 20, 24, 33] {
        let data: Vec<u8> = (0..n as u8).map(|b| b ^ 0x5c).collect();
        let target = extractable(&session, KeyType::GENERIC_SECRET, &data);
        let padded = data.len().div_ceil(8) * 8 + 8;
        let mut theirs128 = vec![0u8; padded];
        aes_kw::KekAes128::from(kek128)
            .wrap_with_padding(&data, &mut theirs128)
            .unwrap();
        let mut theirs256 = vec![0u8; padded];
        aes_kw::KekAes256::from(kek256)
            .wrap_with_padding(&data, &mut theirs256)
            .unwrap();
        assert_eq!(
            session
                .wrap_key(&Mechanism::AesKeyWrapPad, h128, target)
                .unwrap(),
            theirs128,
            "KWP, 128-bit KEK, {n} bytes"
        );
        assert_eq!(
            session
                .wrap_key(&Mechanism::AesKeyWrapPad, h256, target)
                .unwrap(),
            theirs256,
            "KWP, 256-bit KEK, {n} bytes"
        );
        assert_eq!(
            unwrap_value(
                &session,
                &Mechanism::AesKeyWrapPad,
                h256,
                &theirs256,
                KeyType::GENERIC_SECRET
            ),
            data
        );
        let mut bad = theirs128.clone();
        bad[0] ^= 1;
        assert_eq!(
            rv(session.unwrap_key(
                &Mechanism::AesKeyWrapPad,
                h128,
                &bad,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET)
                ],
            )),
            RvError::WrappedKeyInvalid
        );
    }
    // Plain KW takes multiples of 8 bytes only; a non-extractable key is not wrapped; a
    // KEK without CKA_WRAP is refused.
    let odd = extractable(&session, KeyType::GENERIC_SECRET, &[1; 20]);
    assert_eq!(
        rv(session.wrap_key(&Mechanism::AesKeyWrap, h256, odd)),
        RvError::KeySizeRange
    );
    let locked = secret_from(&session, KeyType::AES, &[2; 32]);
    assert_eq!(
        rv(session.wrap_key(&Mechanism::AesKeyWrap, h256, locked)),
        RvError::KeyUnextractable
    );
    let no_wrap = session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(vec![3; 32]),
            Attribute::Wrap(false),
        ])
        .unwrap();
    let fine = extractable(&session, KeyType::AES, &[4; 32]);
    assert_eq!(
        rv(session.wrap_key(&Mechanism::AesKeyWrap, no_wrap, fine)),
        RvError::KeyFunctionNotPermitted
    );
    assert_eq!(
        rv(session.wrap_key(&Mechanism::AesKeyWrap, fine, no_wrap)),
        RvError::KeyUnextractable
    );
}

/// AES-192 keys are AES keys like the others (C_GenerateKey makes them and
/// C_GetMechanismInfo(CKM_AES_KEY_WRAP*) announces 16..32-byte keys), and the RFCs' own
/// vectors use them.
#[test]
fn aes_key_wrap_with_a_192_bit_kek_matches_rfc_3394_and_rfc_5649() {
    let session = user_session(12);
    // RFC 3394 §4.2: 192-bit KEK, 128-bit key data.
    let kek = aes_key(
        &session,
        &hex_decode("000102030405060708090A0B0C0D0E0F1011121314151617"),
    );
    let target = extractable(
        &session,
        KeyType::AES,
        &hex_decode("00112233445566778899AABBCCDDEEFF"),
    );
    assert_eq!(
        session
            .wrap_key(&Mechanism::AesKeyWrap, kek, target)
            .unwrap(),
        hex_decode("96778B25AE6CA435F92B5B97C050AED2468AB8A17AD84E5D"),
        "RFC 3394 4.2"
    );
    // RFC 5649 §6: 20 bytes and 7 bytes of key data.
    let kek = aes_key(
        &session,
        &hex_decode("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8"),
    );
    for (key, expected) in [
        (
            "c37b7e6492584340bed12207808941155068f738",
            "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a",
        ),
        ("466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"),
    ] {
        let secret = extractable(&session, KeyType::GENERIC_SECRET, &hex_decode(key));
        let wrapped = session
            .wrap_key(&Mechanism::AesKeyWrapPad, kek, secret)
            .unwrap();
        assert_eq!(
            wrapped,
            hex_decode(expected),
            "RFC 5649, {} bytes",
            key.len() / 2
        );
        assert_eq!(
            unwrap_value(
                &session,
                &Mechanism::AesKeyWrapPad,
                kek,
                &wrapped,
                KeyType::GENERIC_SECRET
            ),
            hex_decode(key)
        );
    }
}

#[test]
fn ecdh_derive_matches_rustcrypto() {
    let session = user_session(9);
    let (pubk, privk) = ec_pair(&session, common::P256_PARAMS, b"ecdh");
    let ours = ec_point(&session, pubk);
    // The peer lives outside.
    let peer = p256::SecretKey::random(&mut rsa::rand_core::OsRng);
    let peer_point = p256::EncodedPoint::from(peer.public_key());
    let shared = session
        .derive_key(
            &Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), peer_point.as_bytes())),
            privk,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::ValueLen(32.into()),
            ],
        )
        .unwrap();
    let inside = attr_bytes(&session, shared, AttributeType::Value);
    // What the peer computes: x of (its scalar * our point).
    let our_pk = p256::PublicKey::from_sec1_bytes(&ours).unwrap();
    let product = (our_pk.to_projective() * *peer.to_nonzero_scalar()).to_affine();
    let x = p256::EncodedPoint::from(product);
    assert_eq!(
        inside,
        x.x().unwrap().to_vec(),
        "both sides hold the same secret"
    );
    // A derived AES key from the same exchange.
    let aes = session
        .derive_key(
            &Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), peer_point.as_bytes())),
            privk,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(16.into()),
                Attribute::Encrypt(true),
                Attribute::Extractable(true),
            ],
        )
        .unwrap();
    let v = attr_bytes(&session, aes, AttributeType::Value);
    assert_eq!(v.len(), 16);
    // A point not on the curve is refused.
    let mut off_curve = peer_point.as_bytes().to_vec();
    off_curve[40] ^= 1;
    let r = session.derive_key(
        &Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), &off_curve)),
        privk,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
        ],
    );
    assert!(
        matches!(
            r,
            Err(Error::Pkcs11(
                RvError::MechanismParamInvalid | RvError::DomainParamsInvalid,
                _
            ))
        ),
        "{r:?}"
    );
}

#[test]
fn objects_attributes_and_find_through_cryptoki() {
    let session = user_session(10);
    let p = pkcs11();
    // 25 objects found in batches of 7 (iter_objects_with_cache_size) and all at once.
    for i in 0..25u8 {
        session
            .create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(i % 2 == 0),
                Attribute::Private(false),
                Attribute::Application(b"batch".to_vec()),
                Attribute::Value(vec![i]),
            ])
            .unwrap();
    }
    let template = [Attribute::Application(b"batch".to_vec())];
    let all = session.find_objects(&template).unwrap();
    assert_eq!(all.len(), 25);
    let batched: Vec<ObjectHandle> = session
        .iter_objects_with_cache_size(&template, std::num::NonZeroUsize::new(7).unwrap())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(batched, all);
    let tokens = session
        .find_objects(&[
            Attribute::Application(b"batch".to_vec()),
            Attribute::Token(true),
        ])
        .unwrap();
    assert_eq!(tokens.len(), 13);
    // Session objects are visible from every session of the application.
    let other = p.open_ro_session(slot(10)).unwrap();
    assert_eq!(other.find_objects(&template).unwrap().len(), 25);
    // CKR_OPERATION_ACTIVE while an iterator is open on the session.
    {
        let mut it = session.iter_objects(&template).unwrap();
        assert!(it.next().is_some());
        assert_eq!(
            rv(session.find_objects(&template)),
            RvError::OperationActive
        );
    }
    assert_eq!(session.find_objects(&template).unwrap().len(), 25);
    // Attributes: sizes, sensitive, invalid.
    let key = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(32.into()),
                Attribute::Sensitive(true),
                Attribute::Label(b"aes".to_vec()),
            ],
        )
        .unwrap();
    assert_eq!(
        dbg(session
            .get_attribute_info(
                key,
                &[
                    AttributeType::Label,
                    AttributeType::Value,
                    AttributeType::Modulus,
                    AttributeType::ValueLen,
                    AttributeType::Local,
                ],
            )
            .unwrap()),
        dbg(vec![
            AttributeInfo::Available(3),
            AttributeInfo::Sensitive,
            AttributeInfo::TypeInvalid,
            AttributeInfo::Available(8),
            AttributeInfo::Available(1),
        ])
    );
    let got = session
        .get_attributes(
            key,
            &[
                AttributeType::Local,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
                AttributeType::KeyGenMechanism,
                AttributeType::Private,
            ],
        )
        .unwrap();
    assert_eq!(
        got,
        vec![
            Attribute::Local(true),
            Attribute::AlwaysSensitive(true),
            Attribute::NeverExtractable(true),
            Attribute::KeyGenMechanism(MechanismType::AES_KEY_GEN),
            Attribute::Private(true),
        ]
    );
    // C_SetAttributeValue rules.
    assert_eq!(
        rv(session.update_attributes(key, &[Attribute::Sensitive(false)])),
        RvError::AttributeReadOnly
    );
    assert_eq!(
        rv(session.update_attributes(key, &[Attribute::Extractable(true)])),
        RvError::AttributeReadOnly,
        "CKA_EXTRACTABLE cannot go from FALSE to TRUE"
    );
    assert_eq!(
        rv(session.update_attributes(key, &[Attribute::ValueLen(16.into())])),
        RvError::AttributeReadOnly
    );
    session
        .update_attributes(
            key,
            &[
                Attribute::Label(b"renamed".to_vec()),
                Attribute::Encrypt(false),
            ],
        )
        .unwrap();
    assert_eq!(
        rv(session.encrypt(&Mechanism::AesEcb, key, &[0; 16])),
        RvError::KeyFunctionNotPermitted
    );
    // C_CopyObject: a token copy of a session key keeps its value (same ciphertexts).
    let copy = session
        .copy_object(key, &[Attribute::Token(true), Attribute::Encrypt(true)])
        .unwrap();
    session
        .update_attributes(key, &[Attribute::Encrypt(true)])
        .unwrap();
    assert_eq!(
        session.encrypt(&Mechanism::AesEcb, key, &[1; 16]).unwrap(),
        session.encrypt(&Mechanism::AesEcb, copy, &[1; 16]).unwrap()
    );
    assert_eq!(
        session
            .get_attributes(copy, &[AttributeType::Token])
            .unwrap(),
        vec![Attribute::Token(true)]
    );
    session.destroy_object(copy).unwrap();
    assert_eq!(
        rv(session.destroy_object(copy)),
        RvError::ObjectHandleInvalid
    );
    assert_eq!(
        rv(session.get_attributes(copy, &[AttributeType::Label])),
        RvError::ObjectHandleInvalid
    );
    // A read-only session cannot create token objects, but can create session objects.
    assert_eq!(
        rv(other.create_object(&[Attribute::Class(ObjectClass::DATA), Attribute::Token(true)])),
        RvError::SessionReadOnly
    );
    other
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Private(false),
        ])
        .unwrap();
}

#[test]
fn eight_threads_sign_encrypt_and_draw_random_concurrently() {
    let session = user_session(11);
    let (pubk, privk) = ec_pair(&session, common::P256_PARAMS, b"threads");
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(&session, pubk)).unwrap();
    let aes = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[Attribute::ValueLen(32.into()), Attribute::Token(true)],
        )
        .unwrap();
    let hmac = session
        .generate_key(
            &Mechanism::GenericSecretKeyGen,
            &[Attribute::ValueLen(32.into()), Attribute::Sign(true)],
        )
        .unwrap();
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            std::thread::spawn(move || {
                use p256::ecdsa::signature::Verifier;
                let p = pkcs11();
                for i in 0..40u32 {
                    // A new session now and then, RO and RW mixed; the login is the slot's.
                    let s = if i % 2 == 0 {
                        p.open_rw_session(slot(11)).unwrap()
                    } else {
                        p.open_ro_session(slot(11)).unwrap()
                    };
                    assert_eq!(
                        s.get_session_info().unwrap().session_state(),
                        if i % 2 == 0 {
                            SessionState::RwUser
                        } else {
                            SessionState::RoUser
                        }
                    );
                    let msg = format!("thread {t} round {i}");
                    let sig = s
                        .sign(&Mechanism::EcdsaSha256, privk, msg.as_bytes())
                        .unwrap();
                    vk.verify(
                        msg.as_bytes(),
                        &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
                    )
                    .expect("a signature made under load verifies");
                    let mut iv = [0u8; 12];
                    s.generate_random_slice(&mut iv).unwrap();
                    let ct = s
                        .encrypt(
                            &Mechanism::AesGcm(GcmParams::new(&mut iv, &[], 128.into()).unwrap()),
                            aes,
                            msg.as_bytes(),
                        )
                        .unwrap();
                    let pt = s
                        .decrypt(
                            &Mechanism::AesGcm(GcmParams::new(&mut iv, &[], 128.into()).unwrap()),
                            aes,
                            &ct,
                        )
                        .unwrap();
                    assert_eq!(pt, msg.as_bytes());
                    let mac = s
                        .sign(&Mechanism::Sha256Hmac, hmac, msg.as_bytes())
                        .unwrap();
                    s.verify(&Mechanism::Sha256Hmac, hmac, msg.as_bytes(), &mac)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("no thread panicked");
    }
    // The logged-in session is still logged in: the worker sessions closing did not log
    // the slot out while it had a session left.
    assert_eq!(
        session.get_session_info().unwrap().session_state(),
        SessionState::RwUser
    );
}
