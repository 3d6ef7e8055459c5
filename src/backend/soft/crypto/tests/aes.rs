//! AES: ECB, CBC, CBC-PAD, CTR (NIST SP 800-38A), GCM (the GCM spec's test cases and
//! RustCrypto's aes-gcm), CMAC (RFC 4493), key generation.

use super::*;

const K128: &str = "2b7e151628aed2a6abf7158809cf4f3c";
const K256: &str = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
/// SP 800-38A F.1-F.5: the four plaintext blocks every mode encrypts.
const PT: &str = "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
                  30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";
const IV: &str = "000102030405060708090a0b0c0d0e0f";

fn aes(k: &str) -> Arc<Key> {
    secret(CKK_AES, &hex(k))
}

fn cbc(m: CK_MECHANISM_TYPE) -> Mechanism {
    mech_with(m, MechParam::Bytes(hex(IV)))
}

fn ctr(counter_bits: CK_ULONG, cb: &[u8]) -> Mechanism {
    let mut p = counter_bits.to_ne_bytes().to_vec();
    p.extend_from_slice(cb);
    mech_with(CKM_AES_CTR, MechParam::Bytes(p))
}

/// Checks one-shot and multi-part (in several chunk sizes) against `expected`, both ways.
fn known_answer(m: &Mechanism, k: &Arc<Key>, pt: &[u8], expected: &[u8]) {
    assert_eq!(encrypt(m, k, pt).unwrap(), expected, "encrypt");
    assert_eq!(decrypt(m, k, expected).unwrap(), pt, "decrypt");
    for chunk in [1, 5, 16, 17, 33, 64] {
        assert_eq!(
            multipart(m, k, true, pt, chunk).unwrap(),
            expected,
            "multi-part encrypt, {chunk}-byte pieces"
        );
        assert_eq!(
            multipart(m, k, false, expected, chunk).unwrap(),
            pt,
            "multi-part decrypt, {chunk}-byte pieces"
        );
    }
}

/// SP 800-38A F.1.1 (ECB-AES128), F.2.1 (CBC-AES128) and F.2.5 (CBC-AES256).
#[test]
fn sp800_38a_known_answers() {
    let cases = [
        (
            mech(CKM_AES_ECB),
            K128,
            "3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf\
             43b1cd7f598ece23881b00e3ed0306887b0c785e27e8ad3f8223207104725dd4",
        ),
        (
            cbc(CKM_AES_CBC),
            K128,
            "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2\
             73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7",
        ),
        (
            cbc(CKM_AES_CBC),
            K256,
            "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d\
             39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
        ),
    ];
    for (m, key, expected) in cases {
        known_answer(&m, &aes(key), &hex(PT), &hex(expected));
    }
}

#[test]
fn cbc_pad_is_cbc_plus_one_pkcs7_block() {
    // With whole blocks of input, PKCS#7 adds a block of 0x10 bytes: the first four
    // ciphertext blocks are SP 800-38A's, the fifth is that padding block encrypted.
    let k = aes(K128);
    let pt = hex(PT);
    let unpadded = encrypt(&cbc(CKM_AES_CBC), &k, &pt).unwrap();
    let mut padded_pt = pt.clone();
    padded_pt.extend_from_slice(&[16u8; 16]);
    let expected = encrypt(&cbc(CKM_AES_CBC), &k, &padded_pt).unwrap();
    assert_eq!(expected[..64], unpadded[..]);
    known_answer(&cbc(CKM_AES_CBC_PAD), &k, &pt, &expected);
    // Every length from 0 to 40 round-trips, one-shot and in pieces.
    for n in 0..=40 {
        let data = vec![n as u8; n];
        let ct = encrypt(&cbc(CKM_AES_CBC_PAD), &k, &data).unwrap();
        assert_eq!(ct.len(), (n / 16 + 1) * 16);
        let e = super::super::encrypt_init(&cbc(CKM_AES_CBC_PAD), &k).unwrap();
        assert_eq!(e.output_len(n), ct.len(), "exact encrypt length");
        for chunk in [1, 7, 16] {
            assert_eq!(
                multipart(&cbc(CKM_AES_CBC_PAD), &k, true, &data, chunk).unwrap(),
                ct
            );
            assert_eq!(
                multipart(&cbc(CKM_AES_CBC_PAD), &k, false, &ct, chunk).unwrap(),
                data
            );
        }
    }
}

#[test]
fn ctr_sp800_38a() {
    let expected = hex(
        "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff\
                        5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee",
    );
    let m = ctr(128, &hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"));
    known_answer(&m, &aes(K128), &hex(PT), &expected);
    // Not a whole number of blocks: the keystream is cut, in one piece or many.
    known_answer(&m, &aes(K128), &hex(PT)[..37], &expected[..37]);
}

#[test]
fn ctr_counter_carries_across_32_bits_in_pieces() {
    // A counter about to wrap its low 32 bits: pieces must continue the same keystream.
    let k = aes(K256);
    let m = ctr(128, &hex("000000000000000000000000fffffffe"));
    let data = vec![0x5au8; 100];
    let whole = encrypt(&m, &k, &data).unwrap();
    for chunk in [1, 15, 16, 31, 48] {
        assert_eq!(multipart(&m, &k, true, &data, chunk).unwrap(), whole);
    }
}

/// Multi-part block modes stream (PKCS#11 3.0 §5.8/5.9 and the AES mechanism tables): each
/// update returns every whole block it can, exactly as many bytes as its length query
/// announced, and CBC-PAD decryption holds back only the last block.
#[test]
fn block_modes_return_whole_blocks_at_each_update() {
    let k = aes(K128);
    let data = hex(PT); // 64 bytes
    let cases: [(Mechanism, usize); 4] = [
        (mech(CKM_AES_ECB), 0),
        (cbc(CKM_AES_CBC), 0),
        (cbc(CKM_AES_CBC_PAD), 0),
        (ctr(128, &hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")), 0),
    ];
    for (m, _) in cases {
        let mut e = super::super::encrypt_init(&m, &k).unwrap();
        // 20 bytes in: one whole block out now, 4 bytes kept.
        assert_eq!(e.update_len(20), 16, "{:#x}: length query", m.mech);
        let first = e.update(&data[..20]).unwrap();
        assert_eq!(first.len(), 16, "{:#x}: first update streams", m.mech);
        // 44 more: 64 in all, 48 more out.
        assert_eq!(e.update_len(44), 48, "{:#x}", m.mech);
        let second = e.update(&data[20..]).unwrap();
        assert_eq!(second.len(), 48, "{:#x}", m.mech);
        let last = e.finish().unwrap();
        let mut ct = first;
        ct.extend_from_slice(&second);
        ct.extend_from_slice(&last);
        assert_eq!(
            ct,
            encrypt(&m, &k, &data).unwrap(),
            "{:#x}: same as one-shot",
            m.mech
        );

        let mut d = super::super::decrypt_init(&m, &k).unwrap();
        let held = if m.mech == CKM_AES_CBC_PAD { 16 } else { 0 };
        assert_eq!(d.update_len(64), 64 - held, "{:#x}: decrypt query", m.mech);
        let got = d.update(&ct[..64]).unwrap();
        assert_eq!(got.len(), 64 - held, "{:#x}: decrypt streams", m.mech);
        assert_eq!(&got[..], &data[..64 - held]);
    }
}

#[test]
fn unpadded_modes_refuse_partial_blocks() {
    let k = aes(K128);
    for m in [mech(CKM_AES_ECB), cbc(CKM_AES_CBC)] {
        assert_eq!(rv(encrypt(&m, &k, &[0u8; 15])), CKR_DATA_LEN_RANGE);
        assert_eq!(
            rv(decrypt(&m, &k, &[0u8; 17])),
            CKR_ENCRYPTED_DATA_LEN_RANGE
        );
        assert_eq!(
            rv(multipart(&m, &k, true, &[0u8; 33], 16)),
            CKR_DATA_LEN_RANGE
        );
        assert_eq!(
            rv(multipart(&m, &k, false, &[0u8; 33], 16)),
            CKR_ENCRYPTED_DATA_LEN_RANGE
        );
    }
    assert_eq!(
        rv(decrypt(&cbc(CKM_AES_CBC_PAD), &k, &[0u8; 20])),
        CKR_ENCRYPTED_DATA_LEN_RANGE
    );
    // A last block whose padding is not PKCS#7.
    let bad = encrypt(&cbc(CKM_AES_CBC), &k, &[0u8; 32]).unwrap();
    assert_eq!(
        rv(decrypt(&cbc(CKM_AES_CBC_PAD), &k, &bad)),
        CKR_ENCRYPTED_DATA_INVALID
    );
}

#[test]
fn block_mode_parameters_and_key_types() {
    let k = aes(K128);
    assert_eq!(
        rv(super::super::encrypt_init(&mech(CKM_AES_CBC), &k)),
        CKR_MECHANISM_PARAM_INVALID
    );
    assert_eq!(
        rv(super::super::encrypt_init(
            &mech_with(CKM_AES_CBC, MechParam::Bytes(vec![0; 8])),
            &k
        )),
        CKR_MECHANISM_PARAM_INVALID
    );
    let hmac_key = secret(CKK_GENERIC_SECRET, &[1u8; 16]);
    assert_eq!(
        rv(super::super::encrypt_init(&mech(CKM_AES_ECB), &hmac_key)),
        CKR_KEY_TYPE_INCONSISTENT
    );
}

fn gcm(iv: &[u8], aad: &[u8], tag_bits: CK_ULONG) -> Mechanism {
    mech_with(
        CKM_AES_GCM,
        MechParam::Gcm {
            iv: iv.to_vec(),
            iv_bits: iv.len() as CK_ULONG * 8,
            aad: aad.to_vec(),
            tag_bits,
        },
    )
}

#[test]
fn gcm_spec_test_cases_4_and_16() {
    // McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 4 and 16.
    let pt = hex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                  1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    );
    let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let iv = hex("cafebabefacedbaddecaf888");
    let cases = [
        (
            "feffe9928665731c6d6a8f9467308308",
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e\
             21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
            "5bc94fbc3221a5db94fae95ae7121a47",
        ),
        (
            "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            "76fc6ece0f4e1768cddf8853bb2d551b",
        ),
    ];
    for (k, ct, tag) in cases {
        let k = aes(k);
        let mut expected = hex(ct);
        expected.extend_from_slice(&hex(tag));
        let m = gcm(&iv, &aad, 128);
        assert_eq!(encrypt(&m, &k, &pt).unwrap(), expected);
        assert_eq!(decrypt(&m, &k, &expected).unwrap(), pt);
        assert_eq!(multipart(&m, &k, true, &pt, 7).unwrap(), expected);
        assert_eq!(multipart(&m, &k, false, &expected, 7).unwrap(), pt);
        // A truncated tag is the leftmost bytes of the full one.
        let short = gcm(&iv, &aad, 96);
        let ct96 = encrypt(&short, &k, &pt).unwrap();
        assert_eq!(ct96[..], expected[..expected.len() - 4]);
        assert_eq!(decrypt(&short, &k, &ct96).unwrap(), pt);
    }
}

#[test]
fn gcm_agrees_with_rustcrypto_and_checks_lengths() {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let key = [0x42u8; 32];
    let iv = [7u8; 12];
    let k = secret(CKK_AES, &key);
    let m = gcm(&iv, b"aad", 128);
    let msg = b"sealed by the soft token, opened by RustCrypto";
    let ct = encrypt(&m, &k, msg).unwrap();
    let rc = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
    let opened = rc
        .decrypt(
            (&iv).into(),
            Payload {
                msg: &ct,
                aad: b"aad",
            },
        )
        .unwrap();
    assert_eq!(opened, msg);
    let theirs = rc
        .encrypt(
            (&iv).into(),
            Payload {
                msg: b"the other way round",
                aad: b"aad",
            },
        )
        .unwrap();
    assert_eq!(decrypt(&m, &k, &theirs).unwrap(), b"the other way round");

    let e = super::super::encrypt_init(&m, &k).unwrap();
    assert_eq!(e.output_len(10), 26, "ciphertext + tag");
    let d = super::super::decrypt_init(&m, &k).unwrap();
    assert_eq!(d.output_len(26), 10, "ciphertext - tag");
    assert_eq!(
        rv(decrypt(&m, &k, &[0u8; 15])),
        CKR_ENCRYPTED_DATA_LEN_RANGE
    );
    let mut bad = ct.clone();
    bad[0] ^= 1;
    assert_eq!(rv(decrypt(&m, &k, &bad)), CKR_ENCRYPTED_DATA_INVALID);
    assert_eq!(
        rv(decrypt(&gcm(&iv, b"other aad", 128), &k, &ct)),
        CKR_ENCRYPTED_DATA_INVALID
    );
    for bits in [0, 8, 100, 136] {
        assert_eq!(
            rv(super::super::encrypt_init(&gcm(&iv, b"", bits), &k)),
            CKR_MECHANISM_PARAM_INVALID,
            "tag of {bits} bits"
        );
    }
    assert_eq!(
        rv(super::super::encrypt_init(&gcm(&[], b"", 128), &k)),
        CKR_MECHANISM_PARAM_INVALID,
        "empty IV"
    );
    assert_eq!(
        rv(super::super::encrypt_init(&mech(CKM_AES_GCM), &k)),
        CKR_MECHANISM_PARAM_INVALID
    );
}

#[test]
fn cmac_rfc4493() {
    let k = aes(K128);
    let pt = hex(PT);
    for (len, tag) in [
        (0, "bb1d6929e95937287fa37d129b756746"),
        (16, "070a16b46b4d4144f79bdd9dd04a287c"),
        (64, "51f0bebf7e3b9d92fc49741779363cfe"),
    ] {
        let data = &pt[..len];
        assert_eq!(sign(&mech(CKM_AES_CMAC), &k, data).unwrap(), hex(tag));
        assert_eq!(verify(&mech(CKM_AES_CMAC), &k, data, &hex(tag)), CKR_OK);
        let general = mech_with(CKM_AES_CMAC_GENERAL, MechParam::Ulong(8));
        assert_eq!(sign(&general, &k, data).unwrap(), hex(tag)[..8]);
        assert_eq!(verify(&general, &k, data, &hex(tag)[..8]), CKR_OK);
    }
    assert_eq!(
        verify(&mech(CKM_AES_CMAC), &k, b"x", &[0u8; 16]),
        CKR_SIGNATURE_INVALID
    );
    assert_eq!(
        verify(&mech(CKM_AES_CMAC), &k, b"x", &[0u8; 15]),
        CKR_SIGNATURE_LEN_RANGE
    );
}

#[test]
fn aes_key_generation() {
    for n in [16, 24, 32] {
        let a = generated(CKM_AES_KEY_GEN, n);
        let k = key_of(&object(CKO_SECRET_KEY, CKK_AES, a));
        let m = gcm(&[1u8; 12], b"", 128);
        let ct = encrypt(&m, &k, b"round trip").unwrap();
        assert_eq!(decrypt(&m, &k, &ct).unwrap(), b"round trip");
    }
    assert_eq!(rv(generate(CKM_AES_KEY_GEN, 20)), CKR_KEY_SIZE_RANGE);
    assert_eq!(
        rv(super::super::generate_key(
            &mech(CKM_AES_KEY_GEN),
            &Attrs::new()
        )),
        CKR_TEMPLATE_INCOMPLETE
    );
}
