//! RemoteToken over an in-process service whose keys are real (p256, AES-GCM, HMAC):
//! the object model, mechanism planning, the GCM IV contract, local verification, and
//! what happens when a service answers with the wrong shapes.

use super::*;
use crate::core::attr::{self, Attr, AttrValue};
use crate::core::mechanism::{MechParam, Mechanism};
use crate::core::token::{Ctx, Login, Token};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use parking_lot::Mutex;

/// What the fake service does wrong, when told to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    ShortSignature,
    ShortIv,
    /// Every crypto request fails with this service code.
    Refused(CK_RV),
}

struct Fake {
    ec: p256::ecdsa::SigningKey,
    aes: [u8; 32],
    hmac: [u8; 32],
    fault: Mutex<Fault>,
    logins: Mutex<u32>,
    /// Offers key creation (which then answers the fault, if any).
    creates: bool,
}

fn version(label: &str, n: u32, primary: bool, alg: KeyAlg, spki: Option<Vec<u8>>) -> KeyVersion {
    KeyVersion {
        label: label.into(),
        id: format!("fake/{label}/v{n}"),
        locator: n.to_string(),
        primary,
        alg,
        usage: Usage {
            sign: !matches!(alg, KeyAlg::AesGcm { .. }),
            decrypt: matches!(alg, KeyAlg::AesGcm { .. }),
            encrypt: matches!(alg, KeyAlg::AesGcm { .. }),
            sign_schemes: Vec::new(),
            oaep_hashes: Vec::new(),
        },
        public_spki: spki,
        hardware: Some(n != 9),
    }
}

impl Fake {
    fn new() -> Fake {
        Fake {
            ec: p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap(),
            aes: [7; 32],
            hmac: [9; 32],
            fault: Mutex::new(Fault::None),
            logins: Mutex::new(0),
            creates: false,
        }
    }
    fn refused(&self) -> Result<()> {
        match *self.fault.lock() {
            Fault::Refused(rv) => Err(err(rv)),
            _ => Ok(()),
        }
    }
    fn spki(&self) -> Vec<u8> {
        use p256::pkcs8::EncodePublicKey;
        self.ec
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec()
    }
}

impl KeyService for Fake {
    fn can_generate(&self) -> bool {
        self.creates
    }
    fn generate(&self, _key: &NewKey) -> Result<()> {
        self.refused()?;
        Err(err(CKR_DEVICE_ERROR))
    }
    fn info(&self) -> ServiceInfo {
        ServiceInfo {
            manufacturer: "test".into(),
            model: "fake".into(),
            serial: "0123456789abcdef-too-long".into(),
            location: "memory".into(),
        }
    }
    fn login(&self) -> Result<()> {
        *self.logins.lock() += 1;
        Ok(())
    }
    fn probe(&self) -> Result<()> {
        Ok(())
    }
    fn list_keys(&self) -> Result<Vec<KeyVersion>> {
        self.refused()?;
        let ec = KeyAlg::Ec {
            curve: EcCurve::P256,
        };
        Ok(vec![
            version("sig", 2, true, ec, Some(self.spki())),
            version("sig", 1, false, ec, Some(self.spki())),
            version("seal", 1, true, KeyAlg::AesGcm { bits: 256 }, None),
            version(
                "mac",
                1,
                true,
                KeyAlg::Hmac {
                    hash: Some(HashAlg::Sha256),
                    bits: 256,
                },
                None,
            ),
            // Software-protected: hidden by hsm_only.
            version("soft", 9, true, KeyAlg::AesGcm { bits: 256 }, None),
        ])
    }
    fn sign(&self, key: &KeyVersion, scheme: SignScheme, input: SignInput<'_>) -> Result<Vec<u8>> {
        self.refused()?;
        match (scheme, input) {
            (SignScheme::Ecdsa(_), SignInput::Digest(d)) => {
                assert!(key.label == "sig");
                let sig: p256::ecdsa::Signature = self.ec.sign_prehash(d).unwrap();
                let mut raw = sig.to_bytes().to_vec();
                if *self.fault.lock() == Fault::ShortSignature {
                    raw.pop();
                }
                Ok(raw)
            }
            (SignScheme::Hmac(HashAlg::Sha256), SignInput::Message(m)) => {
                let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.hmac);
                Ok(aws_lc_rs::hmac::sign(&k, m).as_ref().to_vec())
            }
            other => panic!("unexpected request {other:?}"),
        }
    }
    fn gcm_encrypt(&self, _key: &KeyVersion, pt: &[u8], aad: &[u8]) -> Result<GcmSealed> {
        self.refused()?;
        let iv = [0xA5u8; 12];
        let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.aes).unwrap());
        let mut buf = pt.to_vec();
        k.seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut buf)
            .unwrap();
        let iv_len = if *self.fault.lock() == Fault::ShortIv {
            11
        } else {
            12
        };
        Ok(GcmSealed {
            iv: iv[..iv_len].to_vec(),
            ciphertext_and_tag: buf,
        })
    }
    fn gcm_decrypt(&self, _key: &KeyVersion, iv: &[u8], ct: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.refused()?;
        let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.aes).unwrap());
        let mut buf = ct.to_vec();
        let nonce =
            Nonce::try_assume_unique_for_key(iv).map_err(|_| err(CKR_MECHANISM_PARAM_INVALID))?;
        let pt = k
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| err(CKR_ENCRYPTED_DATA_INVALID))?;
        Ok(pt.to_vec())
    }
}

use crate::core::error::err;

fn user() -> Ctx {
    Ctx {
        session: 1,
        rw: true,
        login: Login::User,
    }
}

fn public() -> Ctx {
    Ctx {
        session: 1,
        rw: false,
        login: Login::Public,
    }
}

fn setup(service_iv: bool, hsm_only: bool, gate: bool) -> (Arc<Fake>, RemoteToken) {
    let fake = Arc::new(Fake::new());
    let t = RemoteToken::new("t", fake.clone(), service_iv, hsm_only, gate);
    (fake, t)
}

fn label(t: &RemoteToken, ctx: &Ctx, l: &str) -> Vec<u64> {
    t.find_objects(ctx, &[Attr::new(CKA_LABEL, l.as_bytes())])
        .unwrap()
}

fn value(t: &RemoteToken, ctx: &Ctx, id: u64, ty: CK_ATTRIBUTE_TYPE) -> AttrValue {
    t.get_attributes(ctx, id, &[ty]).unwrap().remove(0)
}

fn gcm(iv: [u8; 12], tag_bits: CK_ULONG) -> Mechanism {
    Mechanism::with(
        CKM_AES_GCM,
        MechParam::Gcm {
            iv: iv.to_vec(),
            iv_bits: 96,
            aad: b"aad".to_vec(),
            tag_bits,
        },
    )
}

#[test]
fn versions_are_objects_primary_first_private_before_public() {
    let (_, t) = setup(false, false, false);
    let ids = label(&t, &user(), "sig");
    assert_eq!(ids.len(), 4, "two versions, a key pair each");
    let class = |id| value(&t, &user(), id, CKA_CLASS);
    let id_of = |id| value(&t, &user(), id, CKA_ID);
    assert_eq!(
        class(ids[0]),
        AttrValue::Value(attr::ulong_bytes(CKO_PRIVATE_KEY))
    );
    assert_eq!(
        class(ids[1]),
        AttrValue::Value(attr::ulong_bytes(CKO_PUBLIC_KEY))
    );
    assert_eq!(id_of(ids[0]), AttrValue::Value(b"fake/sig/v2".to_vec()));
    assert_eq!(id_of(ids[1]), id_of(ids[0]), "a pair shares CKA_ID");
    assert_eq!(id_of(ids[2]), AttrValue::Value(b"fake/sig/v1".to_vec()));
    // Private side: sensitive, never extractable, its value hidden.
    assert_eq!(value(&t, &user(), ids[0], CKA_VALUE), AttrValue::Sensitive);
    assert_eq!(
        value(&t, &user(), ids[0], CKA_EXTRACTABLE),
        AttrValue::Value(vec![0])
    );
    assert_eq!(
        value(&t, &user(), ids[0], CKA_SENSITIVE),
        AttrValue::Value(vec![1])
    );
    // Public side: the service's point, as an OCTET STRING.
    let AttrValue::Value(point) = value(&t, &user(), ids[1], CKA_EC_POINT) else {
        panic!("no EC point")
    };
    let want = t_point(&t);
    assert_eq!(point, want);
    // Ids are stable across listings.
    t.refresh(true).unwrap();
    assert_eq!(label(&t, &user(), "sig"), ids);
    // Without login only public keys are seen; a private id is not there.
    let seen = label(&t, &public(), "sig");
    assert_eq!(seen, vec![ids[1], ids[3]]);
    assert_eq!(
        t.get_attributes(&public(), ids[0], &[CKA_CLASS])
            .unwrap_err()
            .rv(),
        CKR_OBJECT_HANDLE_INVALID
    );
}

fn t_point(_t: &RemoteToken) -> Vec<u8> {
    let p = Fake::new().ec.verifying_key().to_encoded_point(false);
    let mut v = vec![0x04, 65];
    v.extend_from_slice(p.as_bytes());
    v
}

#[test]
fn ecdsa_signs_remotely_and_verifies_locally() {
    let (fake, t) = setup(false, false, false);
    let ids = label(&t, &user(), "sig");
    let vk = *fake.ec.verifying_key();
    let msg = b"message to sign";
    // Hashed here, signed by the service, in several parts.
    let mut s = t
        .sign_init(&user(), &Mechanism::new(CKM_ECDSA_SHA256), ids[0])
        .unwrap();
    assert_eq!(s.output_len(), 64);
    s.update(&msg[..5]).unwrap();
    s.update(&msg[5..]).unwrap();
    let sig = s.finish().unwrap();
    let digest = HashAlg::Sha256.digest(msg);
    let parsed = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    vk.verify_prehash(&digest, &parsed).unwrap();
    // CKM_ECDSA takes the digest; its length picks the hash; other lengths are refused.
    let mut s = t
        .sign_init(&user(), &Mechanism::new(CKM_ECDSA), ids[0])
        .unwrap();
    let sig2 = s.oneshot(&digest).unwrap();
    vk.verify_prehash(&digest, &p256::ecdsa::Signature::from_slice(&sig2).unwrap())
        .unwrap();
    let mut s = t
        .sign_init(&user(), &Mechanism::new(CKM_ECDSA), ids[0])
        .unwrap();
    assert_eq!(s.oneshot(&[1u8; 33]).unwrap_err().rv(), CKR_DATA_LEN_RANGE);
    // Verification with the public key, locally: good and bad.
    let mut v = t
        .verify_init(&user(), &Mechanism::new(CKM_ECDSA_SHA256), ids[1])
        .unwrap();
    v.oneshot(msg, &sig).unwrap();
    let mut bad = sig.clone();
    bad[10] ^= 1;
    let mut v = t
        .verify_init(&user(), &Mechanism::new(CKM_ECDSA_SHA256), ids[1])
        .unwrap();
    assert_eq!(
        v.oneshot(msg, &bad).unwrap_err().rv(),
        CKR_SIGNATURE_INVALID
    );
    // Wrong key type / usage.
    assert_eq!(
        t.sign_init(&user(), &Mechanism::new(CKM_SHA256_RSA_PKCS), ids[0])
            .err()
            .unwrap()
            .rv(),
        CKR_MECHANISM_INVALID,
        "not in CKA_ALLOWED_MECHANISMS"
    );
    assert_eq!(
        t.sign_init(&user(), &Mechanism::new(CKM_ECDSA_SHA256), ids[1])
            .err()
            .unwrap()
            .rv(),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "a public key does not sign"
    );
}

#[test]
fn a_service_answer_of_the_wrong_shape_is_a_device_error() {
    let (fake, t) = setup(false, false, false);
    let ids = label(&t, &user(), "sig");
    *fake.fault.lock() = Fault::ShortSignature;
    let mut s = t
        .sign_init(&user(), &Mechanism::new(CKM_ECDSA_SHA256), ids[0])
        .unwrap();
    assert_eq!(s.oneshot(b"x").unwrap_err().rv(), CKR_DEVICE_ERROR);
    *fake.fault.lock() = Fault::ShortIv;
    let k = label(&t, &user(), "seal")[0];
    let mut c = t.encrypt_init(&user(), &gcm([0; 12], 128), k).unwrap();
    assert_eq!(c.oneshot(b"secret").unwrap_err().rv(), CKR_DEVICE_ERROR);
    assert_eq!(c.produced_iv(), None);
}

#[test]
fn gcm_follows_the_service_iv_contract() {
    let (_, t) = setup(false, false, false);
    let k = label(&t, &user(), "seal")[0];
    // Zero IV: the service's IV comes back.
    let mut c = t.encrypt_init(&user(), &gcm([0; 12], 128), k).unwrap();
    assert_eq!(c.output_len(6), 22);
    let ct = c.oneshot(b"secret").unwrap();
    let iv: [u8; 12] = c.produced_iv().unwrap().try_into().unwrap();
    assert_eq!(iv, [0xA5; 12]);
    // Decrypt takes the IV from the parameter.
    let mut d = t.decrypt_init(&user(), &gcm(iv, 128), k).unwrap();
    assert_eq!(d.oneshot(&ct).unwrap(), b"secret");
    let mut d = t.decrypt_init(&user(), &gcm([1; 12], 128), k).unwrap();
    assert_eq!(d.oneshot(&ct).unwrap_err().rv(), CKR_ENCRYPTED_DATA_INVALID);
    // A caller IV is not silently replaced; 96-bit tags are not what services make.
    for (m, why) in [
        (gcm([3; 12], 128), "caller IV"),
        (gcm([0; 12], 96), "tag bits"),
    ] {
        assert_eq!(
            t.encrypt_init(&user(), &m, k).err().unwrap().rv(),
            CKR_MECHANISM_PARAM_INVALID,
            "{why}"
        );
    }
    // Opted in: the caller's IV is replaced (and the new one handed back).
    let (_, t) = setup(true, false, false);
    let k = label(&t, &user(), "seal")[0];
    let mut c = t.encrypt_init(&user(), &gcm([3; 12], 128), k).unwrap();
    c.oneshot(b"secret").unwrap();
    assert_eq!(c.produced_iv().unwrap(), vec![0xA5; 12]);
}

#[test]
fn hmac_is_made_by_the_service_and_checked_in_constant_time() {
    let (fake, t) = setup(false, false, false);
    let k = label(&t, &user(), "mac")[0];
    let mut s = t
        .sign_init(&user(), &Mechanism::new(CKM_SHA256_HMAC), k)
        .unwrap();
    let tag = s.oneshot(b"data").unwrap();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &fake.hmac);
    assert_eq!(tag, aws_lc_rs::hmac::sign(&key, b"data").as_ref());
    let mut v = t
        .verify_init(&user(), &Mechanism::new(CKM_SHA256_HMAC), k)
        .unwrap();
    v.oneshot(b"data", &tag).unwrap();
    let mut v = t
        .verify_init(&user(), &Mechanism::new(CKM_SHA256_HMAC), k)
        .unwrap();
    assert_eq!(
        v.oneshot(b"datA", &tag).unwrap_err().rv(),
        CKR_SIGNATURE_INVALID
    );
    // The key is bound to SHA-256.
    assert!(t
        .sign_init(&user(), &Mechanism::new(CKM_SHA384_HMAC), k)
        .is_err());
}

#[test]
fn hsm_only_hides_software_keys_and_the_gate_waits_for_login() {
    let (_, t) = setup(false, false, false);
    assert_eq!(label(&t, &user(), "soft").len(), 1);
    let (_, t) = setup(false, true, false);
    assert!(label(&t, &user(), "soft").is_empty());
    let (fake, t) = setup(false, false, true);
    assert!(
        label(&t, &public(), "sig").is_empty(),
        "nothing before login"
    );
    assert_eq!(*fake.logins.lock(), 0);
    t.login(Login::User, b"any").unwrap();
    assert_eq!(*fake.logins.lock(), 1);
    assert_eq!(label(&t, &user(), "sig").len(), 4);
    assert_eq!(
        t.login(Login::So, b"x").unwrap_err().rv(),
        CKR_USER_TYPE_INVALID
    );
    // Token info needs no request and keeps to the 16-character serial.
    let info = t.token_info().unwrap();
    assert_eq!(info.serial, "0123456789abcdef");
    assert!(
        info.flags & CKF_WRITE_PROTECTED != 0,
        "the fake cannot generate"
    );
}

#[test]
fn each_function_answers_a_service_failure_with_a_code_it_may_return() {
    use ops::CryptoCall::*;
    // The services' codes, as they make them.
    let service = [
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        CKR_KEY_HANDLE_INVALID,
        CKR_USER_NOT_LOGGED_IN,
        CKR_PIN_INCORRECT,
        CKR_DEVICE_ERROR,
        CKR_FUNCTION_FAILED,
        CKR_ENCRYPTED_DATA_INVALID,
        CKR_SIGNATURE_INVALID,
        CKR_DATA_LEN_RANGE,
        CKR_DATA_INVALID,
        CKR_MECHANISM_PARAM_INVALID,
        CKR_ATTRIBUTE_VALUE_INVALID,
    ];
    for call in [Encrypt, Decrypt, Sign, Verify] {
        for rv in service {
            let a = call.answer(rv);
            assert!(call.allows(a), "{call:?}: {rv:#x} -> {a:#x}");
            assert!(a != CKR_KEY_FUNCTION_NOT_PERMITTED && a != CKR_KEY_HANDLE_INVALID);
        }
    }
    // A refusal (403, PERMISSION_DENIED, AccessDenied).
    assert_eq!(
        Sign.answer(CKR_KEY_FUNCTION_NOT_PERMITTED),
        CKR_FUNCTION_REJECTED
    );
    for call in [Encrypt, Decrypt, Verify] {
        assert_eq!(
            call.answer(CKR_KEY_FUNCTION_NOT_PERMITTED),
            CKR_FUNCTION_FAILED
        );
        assert!(!call.allows(CKR_FUNCTION_REJECTED), "{call:?}");
    }
    // Kept where the spec lists them.
    assert_eq!(Sign.answer(CKR_USER_NOT_LOGGED_IN), CKR_USER_NOT_LOGGED_IN);
    assert_eq!(
        Decrypt.answer(CKR_USER_NOT_LOGGED_IN),
        CKR_USER_NOT_LOGGED_IN
    );
    assert_eq!(Encrypt.answer(CKR_USER_NOT_LOGGED_IN), CKR_FUNCTION_FAILED);
    assert_eq!(Verify.answer(CKR_USER_NOT_LOGGED_IN), CKR_FUNCTION_FAILED);
    assert_eq!(
        Decrypt.answer(CKR_ENCRYPTED_DATA_INVALID),
        CKR_ENCRYPTED_DATA_INVALID
    );
    assert_eq!(
        Decrypt.answer(CKR_DATA_LEN_RANGE),
        CKR_ENCRYPTED_DATA_LEN_RANGE
    );
    assert_eq!(Verify.answer(CKR_SIGNATURE_INVALID), CKR_SIGNATURE_INVALID);
    for call in [Encrypt, Decrypt, Sign, Verify] {
        // An outage stays one (a replica group fails over on it); a vanished key does not
        // become one.
        assert_eq!(call.answer(CKR_DEVICE_ERROR), CKR_DEVICE_ERROR);
        assert_eq!(call.answer(CKR_KEY_HANDLE_INVALID), CKR_FUNCTION_FAILED);
    }
}

#[test]
fn a_service_refusal_reaches_the_consumer_as_the_function_allows() {
    let (fake, t) = setup(false, false, false);
    let sig = label(&t, &user(), "sig")[0];
    let mac = label(&t, &user(), "mac")[0];
    let seal = label(&t, &user(), "seal")[0];
    let failed = CKR_FUNCTION_FAILED;
    // The service's code, then what C_Sign, C_Verify, C_Encrypt and C_Decrypt answer.
    let cases = [
        (
            CKR_KEY_FUNCTION_NOT_PERMITTED,
            [CKR_FUNCTION_REJECTED, failed, failed, failed],
        ),
        (
            CKR_USER_NOT_LOGGED_IN,
            [
                CKR_USER_NOT_LOGGED_IN,
                failed,
                failed,
                CKR_USER_NOT_LOGGED_IN,
            ],
        ),
        (CKR_KEY_HANDLE_INVALID, [failed; 4]),
        (CKR_DEVICE_ERROR, [CKR_DEVICE_ERROR; 4]),
    ];
    for (service, [sign, verify, encrypt, decrypt]) in cases {
        *fake.fault.lock() = Fault::Refused(service);
        let mut s = t
            .sign_init(&user(), &Mechanism::new(CKM_ECDSA_SHA256), sig)
            .unwrap();
        assert_eq!(
            s.oneshot(b"x").unwrap_err().rv(),
            sign,
            "C_Sign, {service:#x}"
        );
        // Multi-part: C_SignFinal answers the same.
        let mut s = t
            .sign_init(&user(), &Mechanism::new(CKM_SHA256_HMAC), mac)
            .unwrap();
        s.update(b"x").unwrap();
        assert_eq!(
            s.finish().unwrap_err().rv(),
            sign,
            "C_SignFinal, {service:#x}"
        );
        let mut v = t
            .verify_init(&user(), &Mechanism::new(CKM_SHA256_HMAC), mac)
            .unwrap();
        assert_eq!(
            v.oneshot(b"x", &[0; 32]).unwrap_err().rv(),
            verify,
            "C_Verify, {service:#x}"
        );
        let mut c = t.encrypt_init(&user(), &gcm([0; 12], 128), seal).unwrap();
        assert_eq!(
            c.oneshot(b"x").unwrap_err().rv(),
            encrypt,
            "C_Encrypt, {service:#x}"
        );
        let mut d = t.decrypt_init(&user(), &gcm([1; 12], 128), seal).unwrap();
        assert_eq!(
            d.oneshot(&[0; 20]).unwrap_err().rv(),
            decrypt,
            "C_Decrypt, {service:#x}"
        );
    }
    *fake.fault.lock() = Fault::None;
    let mut s = t
        .sign_init(&user(), &Mechanism::new(CKM_ECDSA_SHA256), sig)
        .unwrap();
    assert!(s.oneshot(b"x").is_ok());
}

#[test]
fn a_refused_listing_is_a_code_c_find_objects_init_may_return() {
    let (fake, t) = setup(false, false, false);
    *fake.fault.lock() = Fault::Refused(CKR_KEY_FUNCTION_NOT_PERMITTED);
    let e = t.find_objects(&user(), &[]).unwrap_err();
    assert_eq!(e.rv(), CKR_FUNCTION_FAILED);
    *fake.fault.lock() = Fault::Refused(CKR_DEVICE_ERROR);
    assert_eq!(
        t.find_objects(&user(), &[]).unwrap_err().rv(),
        CKR_DEVICE_ERROR
    );
    *fake.fault.lock() = Fault::None;
    assert!(!t.find_objects(&user(), &[]).unwrap().is_empty());
}

/// A policy without the create permission: `C_GenerateKey`/`C_GenerateKeyPair` cannot
/// return `CKR_KEY_FUNCTION_NOT_PERMITTED`; they answer `CKR_FUNCTION_FAILED`.
#[test]
fn a_refused_key_creation_is_a_code_c_generate_key_may_return() {
    let mut f = Fake::new();
    f.creates = true;
    let fake = Arc::new(f);
    let t = RemoteToken::new("t", fake.clone(), false, false, false);
    *fake.fault.lock() = Fault::Refused(CKR_KEY_FUNCTION_NOT_PERMITTED);
    let ctx = user();
    let tpl = [
        Attr::new(CKA_LABEL, &b"new"[..]),
        Attr::new(CKA_TOKEN, [1u8]),
        Attr::new(CKA_VALUE_LEN, 32u64.to_ne_bytes()),
    ];
    let e = t
        .generate_key(&ctx, &Mechanism::new(CKM_AES_KEY_GEN), &tpl)
        .unwrap_err();
    assert_eq!(e.rv(), CKR_FUNCTION_FAILED);
    let public = [
        Attr::new(CKA_LABEL, &b"new"[..]),
        Attr::new(CKA_TOKEN, [1u8]),
        Attr::new(CKA_EC_PARAMS, crate::backend::soft::crypto::der::OID_P256),
    ];
    let private = [
        Attr::new(CKA_LABEL, &b"new"[..]),
        Attr::new(CKA_TOKEN, [1u8]),
    ];
    let e = t
        .generate_key_pair(
            &ctx,
            &Mechanism::new(CKM_EC_KEY_PAIR_GEN),
            &public,
            &private,
        )
        .unwrap_err();
    assert_eq!(e.rv(), CKR_FUNCTION_FAILED);
}
