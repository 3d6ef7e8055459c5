//! Digests (FIPS 180 "abc" examples), HMAC (RFC 4231, RFC 2202, RustCrypto's hmac) and
//! generic secret key generation.

use super::*;

fn digest(m: CK_MECHANISM_TYPE, data: &[u8]) -> Vec<u8> {
    let mut d = super::super::digest_init(&mech(m)).unwrap();
    let n = d.output_len();
    let out = d.oneshot(data).unwrap();
    assert_eq!(out.len(), n);
    out
}

#[test]
fn sha_abc() {
    for (m, h) in [
        (CKM_SHA_1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (
            CKM_SHA224,
            "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
        ),
        (
            CKM_SHA256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            CKM_SHA384,
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7",
        ),
        (
            CKM_SHA512,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
    ] {
        assert_eq!(digest(m, b"abc"), hex(h), "0x{m:x}");
        // Multi-part gives the same.
        let mut d = super::super::digest_init(&mech(m)).unwrap();
        d.update(b"a").unwrap();
        d.update(b"").unwrap();
        d.update(b"bc").unwrap();
        assert_eq!(d.finish().unwrap(), hex(h));
    }
    assert_eq!(
        rv(super::super::digest_init(&mech(CKM_MD5))),
        CKR_MECHANISM_INVALID
    );
}

#[test]
fn hmac_rfc4231_and_rfc2202() {
    let k1 = secret(CKK_GENERIC_SECRET, &[0x0b; 20]);
    let jefe = secret(CKK_GENERIC_SECRET, b"Jefe");
    let cases: [(&Arc<Key>, &[u8], CK_MECHANISM_TYPE, &str); 6] = [
        (
            &k1,
            b"Hi There",
            CKM_SHA_1_HMAC,
            "b617318655057264e28bc0b6fb378c8ef146be00",
        ),
        (
            &k1,
            b"Hi There",
            CKM_SHA224_HMAC,
            "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22",
        ),
        (
            &k1,
            b"Hi There",
            CKM_SHA256_HMAC,
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            &k1,
            b"Hi There",
            CKM_SHA384_HMAC,
            "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
             faea9ea9076ede7f4af152e8b2fa9cb6",
        ),
        (
            &k1,
            b"Hi There",
            CKM_SHA512_HMAC,
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
             daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
        ),
        (
            &jefe,
            b"what do ya want for nothing?",
            CKM_SHA256_HMAC,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
    ];
    for (k, data, m, mac) in cases {
        assert_eq!(sign(&mech(m), k, data).unwrap(), hex(mac), "0x{m:x}");
        assert_eq!(verify(&mech(m), k, data, &hex(mac)), CKR_OK);
        // Multi-part.
        let mut s = super::super::sign_init(&mech(m), k).unwrap();
        assert_eq!(s.output_len(), hex(mac).len());
        for piece in data.chunks(3) {
            s.update(piece).unwrap();
        }
        assert_eq!(s.finish().unwrap(), hex(mac));
        let mut wrong = hex(mac);
        wrong[0] ^= 0x80;
        assert_eq!(verify(&mech(m), k, data, &wrong), CKR_SIGNATURE_INVALID);
        assert_eq!(
            verify(&mech(m), k, data, &wrong[1..]),
            CKR_SIGNATURE_LEN_RANGE
        );
    }
}

#[test]
fn hmac_general_truncates_rfc4231_case_5() {
    let k = secret(CKK_SHA256_HMAC, &[0x0c; 20]);
    let m = mech_with(CKM_SHA256_HMAC_GENERAL, MechParam::Ulong(16));
    let mac = hex("a3b6167473100ee06e0c796c2955552b");
    assert_eq!(sign(&m, &k, b"Test With Truncation").unwrap(), mac);
    assert_eq!(verify(&m, &k, b"Test With Truncation", &mac), CKR_OK);
    for bad in [0, 33] {
        let m = mech_with(CKM_SHA256_HMAC_GENERAL, MechParam::Ulong(bad));
        assert_eq!(
            rv(super::super::sign_init(&m, &k)),
            CKR_MECHANISM_PARAM_INVALID
        );
    }
}

#[test]
fn hmac_agrees_with_rustcrypto_and_checks_key_types() {
    use hmac::Mac;
    let value = [0x17u8; 64];
    let k = secret(CKK_GENERIC_SECRET, &value);
    let data = b"a message of some length, MACed twice";
    let mut theirs = hmac::Hmac::<sha2::Sha512>::new_from_slice(&value).unwrap();
    theirs.update(data);
    let theirs = theirs.finalize().into_bytes().to_vec();
    assert_eq!(sign(&mech(CKM_SHA512_HMAC), &k, data).unwrap(), theirs);
    let aes = secret(CKK_AES, &[1u8; 16]);
    assert_eq!(
        rv(super::super::sign_init(&mech(CKM_SHA256_HMAC), &aes)),
        CKR_KEY_TYPE_INCONSISTENT
    );
}

#[test]
fn generic_secret_generation() {
    for n in [1, 32, 512] {
        let a = generated(CKM_GENERIC_SECRET_KEY_GEN, n);
        assert_eq!(a.ulong(CKA_VALUE_LEN), Some(n));
        let k = key_of(&object(CKO_SECRET_KEY, CKK_GENERIC_SECRET, a));
        let mac = sign(&mech(CKM_SHA256_HMAC), &k, b"x").unwrap();
        assert_eq!(verify(&mech(CKM_SHA256_HMAC), &k, b"x", &mac), CKR_OK);
    }
    for n in [0, 513] {
        assert_eq!(
            rv(generate(CKM_GENERIC_SECRET_KEY_GEN, n)),
            CKR_KEY_SIZE_RANGE
        );
    }
    // Two generated keys differ (the generator is not stuck).
    let a = generate(CKM_GENERIC_SECRET_KEY_GEN, 32).unwrap();
    let b = generate(CKM_GENERIC_SECRET_KEY_GEN, 32).unwrap();
    assert_ne!(a.bytes(CKA_VALUE), b.bytes(CKA_VALUE));
}
