//! ECDSA on P-256/P-384 (RFC 6979's published signatures, RustCrypto's p256/p384), ECDH
//! (RFC 5903), Ed25519 (RFC 8032, ed25519-dalek), EC key generation and import.

use super::super::der::{self, Curve};
use super::*;

const P256: &[u8] = der::OID_P256;
const P384: &[u8] = der::OID_P384;
const ED25519: &[u8] = der::OID_ED25519;

fn params(p: &[u8]) -> Attrs {
    let mut a = Attrs::new();
    a.insert(CKA_EC_PARAMS, p.to_vec());
    a
}

/// The raw point inside CKA_EC_POINT, which must be a DER OCTET STRING.
fn point(public: &Attrs) -> Vec<u8> {
    let v = public.bytes(CKA_EC_POINT).unwrap();
    assert_eq!(v[0], 0x04, "OCTET STRING");
    let raw = der::ec_point(v, Curve::P256)
        .or_else(|_| der::ec_point(v, Curve::P384))
        .unwrap();
    assert_eq!(der::octet_string(&raw), v);
    raw
}

fn ec_private(p: &[u8], scalar: &[u8]) -> Arc<Key> {
    let mut a = params(p);
    a.insert(CKA_VALUE, scalar.to_vec());
    key_of(&object(CKO_PRIVATE_KEY, CKK_EC, a))
}

fn ec_public(p: &[u8], pt: &[u8]) -> Arc<Key> {
    let mut a = params(p);
    a.insert(CKA_EC_POINT, pt.to_vec());
    key_of(&object(CKO_PUBLIC_KEY, CKK_EC, a))
}

#[test]
fn p256_signatures_verify_with_rustcrypto() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::ecdsa::signature::Verifier;
    use sha2::Digest;
    let (public, private) = pair(CKM_EC_KEY_PAIR_GEN, CKK_EC, params(P256));
    assert_eq!(
        private.bytes(CKA_VALUE).unwrap().len(),
        32,
        "scalar, field length"
    );
    let raw = point(&public);
    assert_eq!(raw.len(), 65);
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&raw).unwrap();
    let (sk, pk) = (key_of(&private), key_of(&public));
    let msg = b"signed by the soft token";

    let sig = sign(&mech(CKM_ECDSA_SHA256), &sk, msg).unwrap();
    assert_eq!(sig.len(), 64, "raw r||s");
    vk.verify(msg, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
        .unwrap();
    assert_eq!(verify(&mech(CKM_ECDSA_SHA256), &pk, msg, &sig), CKR_OK);

    // Raw ECDSA over hashes of every length: shorter ones are left-padded, longer ones
    // keep their leftmost bytes (RustCrypto's verify_prehash does the same, per SEC 1).
    for h in [
        sha1::Sha1::digest(msg).to_vec(),
        sha2::Sha224::digest(msg).to_vec(),
        sha2::Sha256::digest(msg).to_vec(),
        sha2::Sha384::digest(msg).to_vec(),
        sha2::Sha512::digest(msg).to_vec(),
    ] {
        let sig = sign(&mech(CKM_ECDSA), &sk, &h).unwrap();
        vk.verify_prehash(&h, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
            .unwrap_or_else(|_| panic!("{}-byte hash", h.len()));
        assert_eq!(verify(&mech(CKM_ECDSA), &pk, &h, &sig), CKR_OK);
    }
    // Hash-then-sign with each hash, multi-part.
    for m in [
        CKM_ECDSA_SHA1,
        CKM_ECDSA_SHA224,
        CKM_ECDSA_SHA384,
        CKM_ECDSA_SHA512,
    ] {
        let mut s = super::super::sign_init(&mech(m), &sk).unwrap();
        assert_eq!(s.output_len(), 64);
        s.update(&msg[..5]).unwrap();
        s.update(&msg[5..]).unwrap();
        let sig = s.finish().unwrap();
        assert_eq!(verify(&mech(m), &pk, msg, &sig), CKR_OK, "0x{m:x}");
    }

    let mut bad = sig.clone();
    bad[3] ^= 1;
    assert_eq!(
        verify(&mech(CKM_ECDSA_SHA256), &pk, msg, &bad),
        CKR_SIGNATURE_INVALID
    );
    assert_eq!(
        verify(&mech(CKM_ECDSA_SHA256), &pk, msg, &sig[..63]),
        CKR_SIGNATURE_LEN_RANGE
    );
    assert_eq!(
        verify(
            &mech(CKM_ECDSA_SHA256),
            &pk,
            msg,
            &[sig.clone(), vec![0]].concat()
        ),
        CKR_SIGNATURE_LEN_RANGE
    );
    // Keys used the wrong way round.
    assert_eq!(
        rv(super::super::sign_init(&mech(CKM_ECDSA), &pk)),
        CKR_KEY_TYPE_INCONSISTENT
    );
    assert_eq!(
        rv(super::super::verify_init(&mech(CKM_ECDSA), &sk)),
        CKR_KEY_TYPE_INCONSISTENT
    );
}

#[test]
fn p384_signatures_verify_with_rustcrypto() {
    use p384::ecdsa::signature::Verifier;
    let (public, private) = pair(CKM_EC_KEY_PAIR_GEN, CKK_EC, params(P384));
    assert_eq!(private.bytes(CKA_VALUE).unwrap().len(), 48);
    let raw = point(&public);
    assert_eq!(raw.len(), 97);
    let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&raw).unwrap();
    let sk = key_of(&private);
    let sig = sign(&mech(CKM_ECDSA_SHA384), &sk, b"p-384").unwrap();
    assert_eq!(sig.len(), 96);
    vk.verify(b"p-384", &p384::ecdsa::Signature::from_slice(&sig).unwrap())
        .unwrap();
    assert_eq!(
        verify(&mech(CKM_ECDSA_SHA384), &key_of(&public), b"p-384", &sig),
        CKR_OK
    );
}

/// RFC 6979 A.2.5: the P-256 key and its deterministic signatures of "sample".
const RFC6979_X: &str = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";
const RFC6979_U: &str = "0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6\
                         7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299";

#[test]
fn rfc6979_signatures_verify() {
    let public = ec_public(P256, &der::octet_string(&hex(RFC6979_U)));
    for (m, r, s) in [
        (
            CKM_ECDSA_SHA1,
            "61340c88c3aaebeb4f6d667f672ca9759a6ccaa9fa8811313039ee4a35471d32",
            "6d7f147dac089441bb2e2fe8f7a3fa264b9c475098fdcf6e00d7c996e1b8b7eb",
        ),
        (
            CKM_ECDSA_SHA256,
            "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716",
            "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8",
        ),
        (
            CKM_ECDSA_SHA512,
            "8496a60b5e9b47c825488827e0495b0e3fa109ec4568fd3f8d1097678eb97f00",
            "2362ab1adbe2b8adf9cb9edab740ea6049c028114f2460f96554f61fae3302fe",
        ),
    ] {
        let sig = [hex(r), hex(s)].concat();
        assert_eq!(
            verify(&mech(m), &public, b"sample", &sig),
            CKR_OK,
            "0x{m:x}"
        );
        assert_eq!(
            verify(&mech(m), &public, b"samplf", &sig),
            CKR_SIGNATURE_INVALID
        );
    }
    // The public point the module computes from the scalar is RFC 6979's, and a raw
    // (not OCTET STRING) point is accepted on import.
    let private = ec_private(P256, &hex(RFC6979_X));
    let sig = sign(&mech(CKM_ECDSA_SHA256), &private, b"sample").unwrap();
    let raw_public = ec_public(P256, &hex(RFC6979_U));
    assert_eq!(
        verify(&mech(CKM_ECDSA_SHA256), &raw_public, b"sample", &sig),
        CKR_OK
    );
    // aws-lc-rs's own verifier, fed only the point bytes, agrees.
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        hex(RFC6979_U),
    )
    .verify(b"sample", &sig)
    .unwrap();
    // A short scalar is left-padded and a leading zero byte ignored (PKCS#11 big
    // integers come either way): the scalar 1 signs for the generator.
    let g = hex(
        "046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296\
                 4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
    );
    for one in [vec![1u8], [vec![0u8; 32], vec![1]].concat()] {
        let sig = sign(&mech(CKM_ECDSA_SHA256), &ec_private(P256, &one), b"one").unwrap();
        assert_eq!(
            verify(&mech(CKM_ECDSA_SHA256), &ec_public(P256, &g), b"one", &sig),
            CKR_OK
        );
    }
}

#[test]
fn bad_ec_keys_are_refused() {
    let mut a = params(&[0x06, 0x03, 0x2b, 0x65, 0x71]); // Ed448: a CKK_EC_EDWARDS curve, not CKK_EC's
    a.insert(CKA_EC_POINT, vec![0x04; 57]);
    assert_eq!(
        rv(Key::from_attrs(&object(CKO_PUBLIC_KEY, CKK_EC, a))),
        CKR_CURVE_NOT_SUPPORTED
    );
    let mut a = params(P256);
    a.insert(CKA_EC_POINT, vec![0x04; 10]);
    assert_eq!(
        rv(Key::from_attrs(&object(CKO_PUBLIC_KEY, CKK_EC, a))),
        CKR_ATTRIBUTE_VALUE_INVALID
    );
    let mut a = params(P256);
    a.insert(CKA_VALUE, vec![0xff; 32]); // above the group order
    assert_eq!(
        rv(Key::from_attrs(&object(CKO_PRIVATE_KEY, CKK_EC, a))),
        CKR_ATTRIBUTE_VALUE_INVALID
    );
    let mut t = params(&[0x06, 0x01, 0x00]);
    t.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
    assert_eq!(
        rv(super::super::generate_key_pair(
            &mech(CKM_EC_KEY_PAIR_GEN),
            &t,
            &Attrs::new()
        )),
        CKR_CURVE_NOT_SUPPORTED
    );
    assert_eq!(
        rv(super::super::generate_key_pair(
            &mech(CKM_EC_KEY_PAIR_GEN),
            &params(ED25519),
            &Attrs::new()
        )),
        CKR_TEMPLATE_INCONSISTENT
    );
    assert_eq!(
        rv(super::super::generate_key_pair(
            &mech(CKM_EC_KEY_PAIR_GEN),
            &Attrs::new(),
            &Attrs::new()
        )),
        CKR_TEMPLATE_INCOMPLETE
    );
}

fn ecdh(public_data: &[u8]) -> Mechanism {
    mech_with(
        CKM_ECDH1_DERIVE,
        MechParam::Ecdh1 {
            kdf: CKD_NULL,
            shared_data: Vec::new(),
            public_data: public_data.to_vec(),
        },
    )
}

fn derive(m: &Mechanism, base: &Arc<Key>, t: &Attrs) -> Result<Attrs> {
    super::super::derive(m, base, None, t)
}

#[test]
fn ecdh_rfc5903_p256() {
    // RFC 5903 §8.1: both sides reach the same x coordinate.
    let i = hex("c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433");
    let gr = hex(
        "04d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63\
                  56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab",
    );
    let gir = hex("d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de");
    let base = ec_private(P256, &i);
    let mut t = Attrs::new();
    t.set_ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET);
    // Raw point and DER OCTET STRING public data alike.
    for pd in [gr.clone(), der::octet_string(&gr)] {
        let a = derive(&ecdh(&pd), &base, &t).unwrap();
        assert_eq!(a.bytes(CKA_VALUE).unwrap(), gir);
        assert_eq!(a.ulong(CKA_VALUE_LEN), Some(32));
    }
    // CKA_VALUE_LEN truncates; an AES key type takes its length.
    t.set_ulong(CKA_VALUE_LEN, 16);
    t.set_ulong(CKA_KEY_TYPE, CKK_AES);
    let a = derive(&ecdh(&gr), &base, &t).unwrap();
    assert_eq!(a.bytes(CKA_VALUE).unwrap(), &gir[..16]);
    t.set_ulong(CKA_VALUE_LEN, 33);
    t.set_ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET);
    assert_eq!(rv(derive(&ecdh(&gr), &base, &t)), CKR_TEMPLATE_INCONSISTENT);
    // A point not on the curve, or of the wrong length.
    let mut off = gr.clone();
    off[40] ^= 1;
    assert_eq!(
        rv(derive(&ecdh(&off), &base, &Attrs::new())),
        CKR_MECHANISM_PARAM_INVALID
    );
    assert_eq!(
        rv(derive(&ecdh(&gr[..64]), &base, &Attrs::new())),
        CKR_MECHANISM_PARAM_INVALID
    );
}

#[test]
fn ecdh_generated_p384_keys_agree_with_rustcrypto() {
    let (public, private) = pair(CKM_EC_KEY_PAIR_GEN, CKK_EC, params(P384));
    let other = p384::SecretKey::random(&mut rsa::rand_core::OsRng);
    let other_point = other.public_key().to_sec1_bytes();
    let a = derive(&ecdh(&other_point), &key_of(&private), &Attrs::new()).unwrap();
    let theirs = p384::ecdh::diffie_hellman(
        other.to_nonzero_scalar(),
        p384::PublicKey::from_sec1_bytes(&point(&public))
            .unwrap()
            .as_affine(),
    );
    assert_eq!(
        a.bytes(CKA_VALUE).unwrap(),
        theirs.raw_secret_bytes().as_slice()
    );
}

/// RFC 8032 §7.1, TEST 1 and TEST 2.
const ED_VECTORS: [(&str, &str, &str, &str); 2] = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
         5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
         085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
];

#[test]
fn ed25519_rfc8032() {
    for (seed, public, msg, sig) in ED_VECTORS {
        let mut a = params(ED25519);
        a.insert(CKA_VALUE, hex(seed));
        let sk = key_of(&object(CKO_PRIVATE_KEY, CKK_EC_EDWARDS, a));
        let mut s = super::super::sign_init(&mech(CKM_EDDSA), &sk).unwrap();
        assert_eq!(s.output_len(), 64);
        assert_eq!(s.oneshot(&hex(msg)).unwrap(), hex(sig));
        let mut a = params(ED25519);
        a.insert(CKA_EC_POINT, der::octet_string(&hex(public)));
        let pk = key_of(&object(CKO_PUBLIC_KEY, CKK_EC_EDWARDS, a));
        assert_eq!(verify(&mech(CKM_EDDSA), &pk, &hex(msg), &hex(sig)), CKR_OK);
        assert_eq!(
            verify(&mech(CKM_EDDSA), &pk, b"other", &hex(sig)),
            CKR_SIGNATURE_INVALID
        );
        assert_eq!(
            verify(&mech(CKM_EDDSA), &pk, &hex(msg), &hex(sig)[..63]),
            CKR_SIGNATURE_LEN_RANGE
        );
    }
}

#[test]
fn ed25519_generated_keys_verify_with_dalek() {
    use ed25519_dalek::Verifier;
    // Both ways of naming the curve.
    for p in [ED25519, b"\x13\x0cedwards25519".as_slice()] {
        let (public, private) = pair(CKM_EC_EDWARDS_KEY_PAIR_GEN, CKK_EC_EDWARDS, params(p));
        assert_eq!(private.bytes(CKA_VALUE).unwrap().len(), 32, "the seed");
        let v = public.bytes(CKA_EC_POINT).unwrap();
        let raw: [u8; 32] = der::ec_point(v, Curve::Ed25519)
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(der::octet_string(&raw), v, "DER OCTET STRING");
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&raw).unwrap();
        let sk = key_of(&private);
        // EdDSA buffers: a multi-part message signs as one.
        let mut s = super::super::sign_init(&mech(CKM_EDDSA), &sk).unwrap();
        s.update(b"pure ").unwrap();
        s.update(b"Ed25519").unwrap();
        let sig: [u8; 64] = s.finish().unwrap().try_into().unwrap();
        vk.verify(b"pure Ed25519", &ed25519_dalek::Signature::from_bytes(&sig))
            .unwrap();
        assert_eq!(
            verify(&mech(CKM_EDDSA), &key_of(&public), b"pure Ed25519", &sig),
            CKR_OK
        );
    }
    assert_eq!(
        rv(super::super::generate_key_pair(
            &mech(CKM_EC_EDWARDS_KEY_PAIR_GEN),
            &params(P256),
            &Attrs::new()
        )),
        CKR_TEMPLATE_INCONSISTENT
    );
}
