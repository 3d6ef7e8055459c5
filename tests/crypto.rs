//! Every soft-token mechanism family, each result checked by an independent implementation
//! (RustCrypto): signatures verified outside the module, ciphertexts decrypted outside it,
//! and outside ciphertexts decrypted inside.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use sha2::Digest;

#[test]
fn ecdsa_p256_signatures_verify_with_rustcrypto() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::ecdsa::signature::Verifier;
    let m = shared();
    let h = user_session(m, 0);
    let (pubk, privk) = keypair(
        m,
        h,
        CKM_EC_KEY_PAIR_GEN,
        Template::new().bytes(CKA_EC_PARAMS, P256_PARAMS),
        Template::new(),
        b"ec",
    );
    let point = ec_point(&get_attr(m, h, pubk, CKA_EC_POINT).unwrap());
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    let msg = b"message signed by hsmux";
    let sig = sign(m, h, mech(CKM_ECDSA_SHA256), privk, msg).unwrap();
    assert_eq!(sig.len(), 64, "raw r||s");
    vk.verify(msg, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("CKM_ECDSA_SHA256 verifies");
    let digest = sha2::Sha256::digest(msg);
    let sig = sign(m, h, mech(CKM_ECDSA), privk, &digest).unwrap();
    vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("CKM_ECDSA verifies");
    assert_eq!(verify(m, h, mech(CKM_ECDSA), pubk, &digest, &sig), CKR_OK);
    let mut bad = sig.clone();
    bad[10] ^= 1;
    assert_eq!(
        verify(m, h, mech(CKM_ECDSA), pubk, &digest, &bad),
        CKR_SIGNATURE_INVALID
    );
    // A signature made outside verifies inside.
    let sk = p256::ecdsa::SigningKey::random(&mut rand_core());
    let outside: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&sk, msg);
    let mut imp = Template::new()
        .ulong(CKA_CLASS, CKO_PUBLIC_KEY)
        .ulong(CKA_KEY_TYPE, CKK_EC)
        .bytes(CKA_EC_PARAMS, P256_PARAMS)
        .bytes(
            CKA_EC_POINT,
            sk.verifying_key().to_encoded_point(false).as_bytes(),
        );
    let mut ik = 0;
    assert_eq!(
        ck!(m, C_CreateObject(h, imp.ptr(), imp.len(), &mut ik)),
        CKR_OK
    );
    assert_eq!(
        verify(m, h, mech(CKM_ECDSA_SHA256), ik, msg, &outside.to_bytes()),
        CKR_OK
    );
}

fn rand_core() -> rsa::rand_core::OsRng {
    rsa::rand_core::OsRng
}

#[test]
fn ed25519_signatures_verify_with_dalek() {
    let m = shared();
    let h = user_session(m, 1);
    let (pubk, privk) = keypair(
        m,
        h,
        CKM_EC_EDWARDS_KEY_PAIR_GEN,
        Template::new().bytes(CKA_EC_PARAMS, ED25519_PARAMS),
        Template::new(),
        b"ed",
    );
    let point = ec_point(&get_attr(m, h, pubk, CKA_EC_POINT).unwrap());
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&point.try_into().unwrap()).unwrap();
    let msg = b"ed25519 through hsmux";
    let sig = sign(m, h, mech(CKM_EDDSA), privk, msg).unwrap();
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_slice(&sig).unwrap())
        .expect("EdDSA verifies");
    assert_eq!(verify(m, h, mech(CKM_EDDSA), pubk, msg, &sig), CKR_OK);
}

fn rsa_public(m: &Module, h: CK_SESSION_HANDLE, k: CK_OBJECT_HANDLE) -> rsa::RsaPublicKey {
    let n = rsa::BigUint::from_bytes_be(&get_attr(m, h, k, CKA_MODULUS).unwrap());
    let e = rsa::BigUint::from_bytes_be(&get_attr(m, h, k, CKA_PUBLIC_EXPONENT).unwrap());
    rsa::RsaPublicKey::new(n, e).unwrap()
}

#[test]
fn rsa_pkcs1_pss_and_oaep_agree_with_rustcrypto() {
    let m = shared();
    let h = user_session(m, 2);
    let (pubk, privk) = keypair(
        m,
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        Template::new()
            .ulong(CKA_MODULUS_BITS, 2048)
            .bytes(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
        Template::new(),
        b"rsa",
    );
    assert_eq!(
        get_attr(m, h, privk, CKA_PRIVATE_EXPONENT),
        Err(CKR_ATTRIBUTE_SENSITIVE)
    );
    let pk = rsa_public(m, h, pubk);
    let msg = b"rsa message";
    let hash = sha2::Sha256::digest(msg);
    // PKCS#1 v1.5 with SHA-256.
    let sig = sign(m, h, mech(CKM_SHA256_RSA_PKCS), privk, msg).unwrap();
    pk.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &hash, &sig)
        .expect("SHA256-RSA-PKCS verifies");
    // CKM_RSA_PKCS over a DigestInfo and over raw data.
    let mut di = vec![
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    di.extend_from_slice(&hash);
    let sig2 = sign(m, h, mech(CKM_RSA_PKCS), privk, &di).unwrap();
    assert_eq!(sig, sig2, "PKCS#1 v1.5 is deterministic");
    let raw = sign(m, h, mech(CKM_RSA_PKCS), privk, b"raw tls-style data").unwrap();
    pk.verify(
        rsa::Pkcs1v15Sign::new_unprefixed(),
        b"raw tls-style data",
        &raw,
    )
    .expect("raw PKCS#1 verifies");
    assert_eq!(
        verify(m, h, mech(CKM_RSA_PKCS), pubk, b"raw tls-style data", &raw),
        CKR_OK
    );
    // PSS, salt = hash length.
    let mut pss = CK_RSA_PKCS_PSS_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        sLen: 32,
    };
    let sig = sign(
        m,
        h,
        mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut pss),
        privk,
        msg,
    )
    .unwrap();
    pk.verify(rsa::Pss::new::<sha2::Sha256>(), &hash, &sig)
        .expect("PSS verifies");
    let sig = sign(m, h, mech_with(CKM_RSA_PKCS_PSS, &mut pss), privk, &hash).unwrap();
    pk.verify(rsa::Pss::new::<sha2::Sha256>(), &hash, &sig)
        .expect("raw PSS verifies");
    // Other salt lengths (0, the maximum), and one too long for the modulus.
    for salt in [0usize, 222] {
        let mut p = CK_RSA_PKCS_PSS_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            sLen: salt as CK_ULONG,
        };
        let sig = sign(m, h, mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut p), privk, msg).unwrap();
        pk.verify(rsa::Pss::new_with_salt::<sha2::Sha256>(salt), &hash, &sig)
            .expect("PSS with a custom salt verifies");
        assert_eq!(
            verify(
                m,
                h,
                mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut p),
                pubk,
                msg,
                &sig
            ),
            CKR_OK
        );
    }
    let mut pss_bad = CK_RSA_PKCS_PSS_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        sLen: 223,
    };
    assert_eq!(
        sign(
            m,
            h,
            mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut pss_bad),
            privk,
            msg
        ),
        Err(CKR_MECHANISM_PARAM_INVALID)
    );
    // OAEP SHA-256 and SHA-1: encrypted outside, decrypted inside, and the reverse.
    let mut rng = rand_core();
    for (hash_alg, mgf) in [(CKM_SHA256, CKG_MGF1_SHA256), (CKM_SHA_1, CKG_MGF1_SHA1)] {
        let mut label = *b"lbl";
        let mut oaep = CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: hash_alg,
            mgf,
            source: CKZ_DATA_SPECIFIED,
            pSourceData: label.as_mut_ptr() as *mut _,
            ulSourceDataLen: 3,
        };
        if hash_alg == CKM_SHA256 {
            let ct = pk
                .encrypt(
                    &mut rng,
                    rsa::Oaep::new_with_label::<sha2::Sha256, _>("lbl"),
                    b"a sealing key",
                )
                .unwrap();
            assert_eq!(
                decrypt(m, h, mech_with(CKM_RSA_PKCS_OAEP, &mut oaep), privk, &ct).unwrap(),
                b"a sealing key"
            );
        }
        let ct = encrypt(
            m,
            h,
            mech_with(CKM_RSA_PKCS_OAEP, &mut oaep),
            pubk,
            b"round trip",
        )
        .unwrap();
        assert_eq!(
            decrypt(m, h, mech_with(CKM_RSA_PKCS_OAEP, &mut oaep), privk, &ct).unwrap(),
            b"round trip"
        );
        let mut bad = ct.clone();
        bad[5] ^= 1;
        assert_eq!(
            decrypt(m, h, mech_with(CKM_RSA_PKCS_OAEP, &mut oaep), privk, &bad),
            Err(CKR_ENCRYPTED_DATA_INVALID)
        );
    }
}

#[test]
fn aes_gcm_agrees_with_rustcrypto_both_ways() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let m = shared();
    let h = user_session(m, 3);
    let value = [0x42u8; 32];
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bytes(CKA_VALUE, &value)
        .bool(CKA_SENSITIVE, true);
    let mut key = 0;
    assert_eq!(
        ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut key)),
        CKR_OK
    );
    let theirs = aes_gcm::Aes256Gcm::new_from_slice(&value).unwrap();
    let mut iv = [3u8; 12];
    let mut aad = *b"associated";
    let mut gcm = CK_GCM_PARAMS {
        pIv: iv.as_mut_ptr(),
        ulIvLen: 12,
        ulIvBits: 96,
        pAAD: aad.as_mut_ptr(),
        ulAADLen: 10,
        ulTagBits: 128,
    };
    let msg = b"gcm plaintext of some length";
    let ct = encrypt(m, h, mech_with(CKM_AES_GCM, &mut gcm), key, msg).unwrap();
    let pt = theirs
        .decrypt(
            (&iv).into(),
            Payload {
                msg: &ct,
                aad: &aad,
            },
        )
        .expect("RustCrypto opens hsmux's GCM");
    assert_eq!(pt, msg);
    let ct2 = theirs
        .encrypt(
            (&iv).into(),
            Payload {
                msg: b"from outside",
                aad: &aad,
            },
        )
        .unwrap();
    assert_eq!(
        decrypt(m, h, mech_with(CKM_AES_GCM, &mut gcm), key, &ct2).unwrap(),
        b"from outside"
    );
    let mut tampered = ct2.clone();
    tampered[0] ^= 1;
    assert_eq!(
        decrypt(m, h, mech_with(CKM_AES_GCM, &mut gcm), key, &tampered),
        Err(CKR_ENCRYPTED_DATA_INVALID)
    );
    // Multi-part gives the same bytes as single-part.
    let mut mc = mech_with(CKM_AES_GCM, &mut gcm);
    assert_eq!(ck!(m, C_EncryptInit(h, &mut mc, key)), CKR_OK);
    let mut out = Vec::new();
    for part in msg.chunks(5) {
        let r = two_call(|p, n| {
            ck!(
                m,
                C_EncryptUpdate(h, part.as_ptr() as *mut _, part.len() as CK_ULONG, p, n)
            )
        })
        .unwrap();
        out.extend(r);
    }
    out.extend(two_call(|p, n| ck!(m, C_EncryptFinal(h, p, n))).unwrap());
    assert_eq!(out, ct);
}

#[test]
fn hmac_and_digests_agree_with_rustcrypto() {
    use hmac::Mac;
    let m = shared();
    let h = user_session(m, 4);
    let value = [9u8; 32];
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bytes(CKA_VALUE, &value)
        .bool(CKA_SIGN, true)
        .bool(CKA_VERIFY, true);
    let mut key = 0;
    assert_eq!(
        ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut key)),
        CKR_OK
    );
    let data = vec![0x5au8; 1024];
    let mac = sign(m, h, mech(CKM_SHA256_HMAC), key, &data).unwrap();
    let mut theirs = hmac::Hmac::<sha2::Sha256>::new_from_slice(&value).unwrap();
    theirs.update(&data);
    theirs.verify_slice(&mac).expect("HMAC-SHA256 matches");
    let mut mc = mech(CKM_SHA256);
    assert_eq!(ck!(m, C_DigestInit(h, &mut mc)), CKR_OK);
    let d = two_call(|p, n| {
        ck!(
            m,
            C_Digest(h, data.as_ptr() as *mut _, data.len() as CK_ULONG, p, n)
        )
    })
    .unwrap();
    assert_eq!(d, sha2::Sha256::digest(&data).to_vec());
    let mut mc = mech(CKM_SHA512);
    assert_eq!(ck!(m, C_DigestInit(h, &mut mc)), CKR_OK);
    for part in data.chunks(100) {
        assert_eq!(
            ck!(
                m,
                C_DigestUpdate(h, part.as_ptr() as *mut _, part.len() as CK_ULONG)
            ),
            CKR_OK
        );
    }
    let d = two_call(|p, n| ck!(m, C_DigestFinal(h, p, n))).unwrap();
    assert_eq!(d, sha2::Sha512::digest(&data).to_vec());
}

#[test]
fn aes_key_wrap_and_ecdh_derive() {
    let m = shared();
    let h = user_session(m, 5);
    let kek = secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bool(CKA_WRAP, true)
            .bool(CKA_UNWRAP, true),
    );
    let target = secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bool(CKA_EXTRACTABLE, true),
    );
    let not_extractable = secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        Template::new().ulong(CKA_VALUE_LEN, 32),
    );
    for wm in [CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD] {
        let mut mc = mech(wm);
        let wrapped = two_call(|p, n| ck!(m, C_WrapKey(h, &mut mc, kek, target, p, n))).unwrap();
        assert_eq!(wrapped.len(), 40);
        let mut ut = Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_AES)
            .bool(CKA_ENCRYPT, true)
            .bool(CKA_DECRYPT, true);
        let mut back = 0;
        assert_eq!(
            ck!(
                m,
                C_UnwrapKey(
                    h,
                    &mut mc,
                    kek,
                    wrapped.as_ptr() as *mut _,
                    wrapped.len() as CK_ULONG,
                    ut.ptr(),
                    ut.len(),
                    &mut back
                )
            ),
            CKR_OK
        );
        // The unwrapped key is the same key: what one encrypts the other decrypts.
        let ct = encrypt(m, h, mech(CKM_AES_ECB), target, &[1u8; 32]).unwrap();
        assert_eq!(
            decrypt(m, h, mech(CKM_AES_ECB), back, &ct).unwrap(),
            vec![1u8; 32]
        );
        let mut bad = wrapped.clone();
        bad[3] ^= 1;
        let mut x = 0;
        assert_eq!(
            ck!(
                m,
                C_UnwrapKey(
                    h,
                    &mut mc,
                    kek,
                    bad.as_mut_ptr(),
                    bad.len() as CK_ULONG,
                    ut.ptr(),
                    ut.len(),
                    &mut x
                )
            ),
            CKR_WRAPPED_KEY_INVALID
        );
        assert_eq!(
            two_call(|p, n| ck!(m, C_WrapKey(h, &mut mc, kek, not_extractable, p, n))),
            Err(CKR_KEY_UNEXTRACTABLE)
        );
    }
    // ECDH: both sides derive the same secret.
    let (pa, sa) = keypair(
        m,
        h,
        CKM_EC_KEY_PAIR_GEN,
        Template::new().bytes(CKA_EC_PARAMS, P256_PARAMS),
        Template::new().bool(CKA_DERIVE, true),
        b"a",
    );
    let (pb, sb) = keypair(
        m,
        h,
        CKM_EC_KEY_PAIR_GEN,
        Template::new().bytes(CKA_EC_PARAMS, P256_PARAMS),
        Template::new().bool(CKA_DERIVE, true),
        b"b",
    );
    let derive = |priv_k, peer_pub| {
        let mut point = ec_point(&get_attr(m, h, peer_pub, CKA_EC_POINT).unwrap());
        let mut p = CK_ECDH1_DERIVE_PARAMS {
            kdf: CKD_NULL,
            ulSharedDataLen: 0,
            pSharedData: std::ptr::null_mut(),
            ulPublicDataLen: point.len() as CK_ULONG,
            pPublicData: point.as_mut_ptr(),
        };
        let mut mc = mech_with(CKM_ECDH1_DERIVE, &mut p);
        let mut t = Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
            .bool(CKA_SENSITIVE, false)
            .bool(CKA_EXTRACTABLE, true);
        let mut k = 0;
        assert_eq!(
            ck!(m, C_DeriveKey(h, &mut mc, priv_k, t.ptr(), t.len(), &mut k)),
            CKR_OK
        );
        get_attr(m, h, k, CKA_VALUE).unwrap()
    };
    let ab = derive(sa, pb);
    let ba = derive(sb, pa);
    assert_eq!(ab.len(), 32);
    assert_eq!(ab, ba);
}

/// secp521r1 (issue 19): CKM_ECDSA_SHA512 signatures verified by RustCrypto's p521, a
/// p521 signature verified inside, and CKM_ECDSA on a SHA-512 hash.
#[test]
fn ecdsa_p521_signatures_verify_with_rustcrypto() {
    use p521::ecdsa::signature::{hazmat::PrehashVerifier, Signer, Verifier};
    const P521_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
    let m = shared();
    let h = user_session(m, 6);
    let (pubk, privk) = keypair(
        m,
        h,
        CKM_EC_KEY_PAIR_GEN,
        Template::new().bytes(CKA_EC_PARAMS, P521_PARAMS),
        Template::new(),
        b"p521",
    );
    let der = get_attr(m, h, pubk, CKA_EC_POINT).unwrap();
    assert_eq!(
        der[..3],
        [0x04, 0x81, 133],
        "DER OCTET STRING of a 133-byte point"
    );
    let vk = p521::ecdsa::VerifyingKey::from_sec1_bytes(&der[3..]).unwrap();
    let msg = b"message signed by hsmux on P-521";
    let sig = sign(m, h, mech(CKM_ECDSA_SHA512), privk, msg).unwrap();
    assert_eq!(sig.len(), 132, "raw r||s of 66 bytes each");
    vk.verify(msg, &p521::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("CKM_ECDSA_SHA512 on P-521 verifies");
    let digest = sha2::Sha512::digest(msg);
    let sig = sign(m, h, mech(CKM_ECDSA), privk, &digest).unwrap();
    vk.verify_prehash(&digest, &p521::ecdsa::Signature::from_slice(&sig).unwrap())
        .expect("CKM_ECDSA on P-521 verifies");
    let sk = p521::ecdsa::SigningKey::random(&mut rand_core());
    let outside: p521::ecdsa::Signature = sk.sign(msg);
    let vk_out = p521::ecdsa::VerifyingKey::from(&sk);
    let mut imp = Template::new()
        .ulong(CKA_CLASS, CKO_PUBLIC_KEY)
        .ulong(CKA_KEY_TYPE, CKK_EC)
        .bytes(CKA_EC_PARAMS, P521_PARAMS)
        .bytes(CKA_EC_POINT, vk_out.to_encoded_point(false).as_bytes());
    let mut ik = 0;
    assert_eq!(
        ck!(m, C_CreateObject(h, imp.ptr(), imp.len(), &mut ik)),
        CKR_OK
    );
    let out = outside.to_bytes();
    assert_eq!(verify(m, h, mech(CKM_ECDSA_SHA512), ik, msg, &out), CKR_OK);
    let mut bad = out.to_vec();
    bad[70] ^= 1;
    assert_eq!(
        verify(m, h, mech(CKM_ECDSA_SHA512), ik, msg, &bad),
        CKR_SIGNATURE_INVALID
    );
}

/// DES3 (issue 19): CKM_DES3_ECB / _CBC / _CBC_PAD single- and multi-part against
/// RustCrypto's `des`, key generation with odd parity, and a DES3 key wrapping an AES key.
#[test]
fn des3_agrees_with_rustcrypto() {
    use des::cipher::{BlockEncrypt, KeyInit};
    let m = shared();
    let h = user_session(m, 7);
    let kv: Vec<u8> = (1..=24).map(|i| i * 7).collect();
    let tdes = des::TdesEde3::new_from_slice(&kv).unwrap();
    let ecb = |data: &[u8]| -> Vec<u8> {
        let mut out = data.to_vec();
        for b in out.chunks_mut(8) {
            tdes.encrypt_block(des::cipher::generic_array::GenericArray::from_mut_slice(b));
        }
        out
    };
    let cbc = |iv: [u8; 8], data: &[u8]| -> Vec<u8> {
        let mut chain = iv;
        let mut out = Vec::new();
        for b in data.chunks(8) {
            let x: Vec<u8> = b.iter().zip(chain).map(|(a, c)| a ^ c).collect();
            let c = ecb(&x);
            chain.copy_from_slice(&c);
            out.extend(c);
        }
        out
    };
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_DES3)
        .bytes(CKA_VALUE, &kv);
    let mut key = 0;
    assert_eq!(
        ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut key)),
        CKR_OK
    );
    let data: Vec<u8> = (0..43).collect();
    let mut iv = [0x3cu8; 8];
    assert_eq!(
        encrypt(m, h, mech(CKM_DES3_ECB), key, &data[..40]).unwrap(),
        ecb(&data[..40])
    );
    assert_eq!(
        encrypt(m, h, mech_with(CKM_DES3_CBC, &mut iv), key, &data[..40]).unwrap(),
        cbc(iv, &data[..40])
    );
    let mut padded = data.clone();
    padded.extend([5u8; 5]);
    let ct = encrypt(m, h, mech_with(CKM_DES3_CBC_PAD, &mut iv), key, &data).unwrap();
    assert_eq!(ct, cbc(iv, &padded));
    assert_eq!(
        decrypt(m, h, mech_with(CKM_DES3_CBC_PAD, &mut iv), key, &ct).unwrap(),
        data
    );
    // Multi-part in odd pieces gives the same.
    let mut mc = mech_with(CKM_DES3_CBC_PAD, &mut iv);
    assert_eq!(ck!(m, C_EncryptInit(h, &mut mc, key)), CKR_OK);
    let mut got = Vec::new();
    for part in data.chunks(11) {
        let out = two_call(|o, n| {
            ck!(
                m,
                C_EncryptUpdate(h, part.as_ptr() as *mut _, part.len() as CK_ULONG, o, n)
            )
        })
        .unwrap();
        got.extend(out);
    }
    got.extend(two_call(|o, n| ck!(m, C_EncryptFinal(h, o, n))).unwrap());
    assert_eq!(got, ct);
    assert_eq!(
        encrypt(m, h, mech(CKM_DES3_ECB), key, &data),
        Err(CKR_DATA_LEN_RANGE),
        "ECB of 43 bytes"
    );
    // Generated keys: 24 bytes, odd parity.
    let gen = secret(
        m,
        h,
        CKM_DES3_KEY_GEN,
        Template::new().bool(CKA_EXTRACTABLE, true),
    );
    let v = get_attr(m, h, gen, CKA_VALUE).unwrap();
    assert_eq!(v.len(), 24);
    assert!(v.iter().all(|b| b.count_ones() % 2 == 1), "odd parity");
    // A DES3 key wraps an AES key; RustCrypto's DES3 unwraps it.
    let aes = [0x5au8; 16];
    let mut at = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bytes(CKA_VALUE, &aes)
        .bool(CKA_EXTRACTABLE, true);
    let mut target = 0;
    assert_eq!(
        ck!(m, C_CreateObject(h, at.ptr(), at.len(), &mut target)),
        CKR_OK
    );
    let mut mc = mech_with(CKM_DES3_CBC_PAD, &mut iv);
    let wrapped = two_call(|o, n| ck!(m, C_WrapKey(h, &mut mc, key, target, o, n))).unwrap();
    let mut want = aes.to_vec();
    want.extend([8u8; 8]);
    assert_eq!(wrapped, cbc(iv, &want));
    let mut ut = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_EXTRACTABLE, true);
    let mut back = 0;
    assert_eq!(
        ck!(
            m,
            C_UnwrapKey(
                h,
                &mut mc,
                key,
                wrapped.as_ptr() as *mut _,
                wrapped.len() as CK_ULONG,
                ut.ptr(),
                ut.len(),
                &mut back
            )
        ),
        CKR_OK
    );
    assert_eq!(get_attr(m, h, back, CKA_VALUE).unwrap(), aes);
}
