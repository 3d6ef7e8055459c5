//! The issue 19 rules as a parity scenario (the steps of tests/spec_rules.rs whose
//! SoftHSM answer is informative): `tests/softhsm_parity.rs` runs it against hsmux and
//! SoftHSMv2 and lists where they differ, with the spec rule. Values derived or encrypted
//! are recorded as 1 when they equal RustCrypto's AES, so that the comparison says whether
//! each module computes the spec's value. `pReserved` and a 2^32 template count are left
//! out: SoftHSM 2.6.1 dereferences both (tests/init_reserved.rs, tests/bad_input.rs).
#![allow(dead_code)]

use crate::ck;
use crate::common::*;
use crate::parity::Rec;
use aes::cipher::{BlockEncrypt, KeyInit};
use cryptoki_sys::*;

fn aes128(key: &[u8; 16], block: [u8; 16]) -> [u8; 16] {
    let mut b = aes::Block::from(block);
    aes::Aes128::new(key.into()).encrypt_block(&mut b);
    b.into()
}

fn create(m: &Module, h: CK_SESSION_HANDLE, mut t: Template) -> (CK_RV, CK_OBJECT_HANDLE) {
    let mut o = 0;
    (ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut o)), o)
}

fn aes_template(value: &[u8]) -> Template {
    Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bytes(CKA_VALUE, value)
        .bool(CKA_DERIVE, true)
        .bool(CKA_EXTRACTABLE, true)
}

/// C_DeriveKey of a 16-byte generic secret; its value, or the return value.
fn derive16(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mc: &mut CK_MECHANISM,
    base: CK_OBJECT_HANDLE,
) -> Result<Vec<u8>, CK_RV> {
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .ulong(CKA_VALUE_LEN, 16)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true);
    let mut k = 0;
    match ck!(m, C_DeriveKey(h, mc, base, t.ptr(), t.len(), &mut k)) {
        CKR_OK => get_attr(m, h, k, CKA_VALUE),
        rv => Err(rv),
    }
}

fn rv_of<T>(r: &Result<T, CK_RV>) -> CK_RV {
    r.as_ref().err().copied().unwrap_or(CKR_OK)
}

/// The scenario on a token initialized by `parity::prepare` (user PIN `PIN`).
pub fn rules_scenario(m: &Module, slot: CK_SLOT_ID) -> Rec {
    let mut r = Rec::default();
    let h = open(m, slot, true);
    assert_eq!(login(m, h, CKU_USER, PIN), CKR_OK);
    let kv = [0x2bu8; 16];
    let (rv, key) = create(m, h, aes_template(&kv));
    assert_eq!(rv, CKR_OK);

    // CK_KEY_DERIVATION_STRING_DATA / CK_AES_CBC_ENCRYPT_DATA_PARAMS.
    let mut data = [0x61u8; 16];
    let mut sd = CK_KEY_DERIVATION_STRING_DATA {
        pData: data.as_mut_ptr(),
        ulLen: 16,
    };
    let got = derive16(m, h, &mut mech_with(CKM_AES_ECB_ENCRYPT_DATA, &mut sd), key);
    r.rv("AES_ECB_ENCRYPT_DATA of one block", rv_of(&got));
    r.val(
        "AES_ECB_ENCRYPT_DATA value is AES(data)",
        (got.ok() == Some(aes128(&kv, data).to_vec())) as u64,
    );
    sd.ulLen = 20;
    let got = derive16(m, h, &mut mech_with(CKM_AES_ECB_ENCRYPT_DATA, &mut sd), key);
    r.rv("AES_ECB_ENCRYPT_DATA of 20 bytes", rv_of(&got));
    let mut cp = CK_AES_CBC_ENCRYPT_DATA_PARAMS {
        iv: [0x0f; 16],
        pData: data.as_mut_ptr(),
        length: 16,
    };
    let got = derive16(m, h, &mut mech_with(CKM_AES_CBC_ENCRYPT_DATA, &mut cp), key);
    r.rv("AES_CBC_ENCRYPT_DATA of one block", rv_of(&got));
    let x: Vec<u8> = data.iter().map(|b| b ^ 0x0f).collect();
    r.val(
        "AES_CBC_ENCRYPT_DATA value is AES(data ^ iv)",
        (got.ok() == Some(aes128(&kv, x.try_into().unwrap()).to_vec())) as u64,
    );

    // CKA_ALLOWED_MECHANISMS.
    let allowed: Vec<u8> = CKM_AES_CBC_PAD.to_ne_bytes().to_vec();
    let (rv, limited) = create(
        m,
        h,
        aes_template(&kv).bytes(CKA_ALLOWED_MECHANISMS, &allowed),
    );
    r.rv("C_CreateObject with CKA_ALLOWED_MECHANISMS", rv);
    let mut ecb = mech(CKM_AES_ECB);
    r.rv(
        "C_EncryptInit ECB on a key allowed CBC-PAD only",
        ck!(m, C_EncryptInit(h, &mut ecb, limited)),
    );
    let mut iv = [0u8; 16];
    let pad = mech_with(CKM_AES_CBC_PAD, &mut iv);
    r.rv(
        "C_Encrypt CBC-PAD on that key",
        rv_of(&encrypt(m, h, pad, limited, b"x")),
    );

    // DES3 key values.
    for (len, step) in [
        (24, "CKK_DES3 key of 24 bytes"),
        (16, "CKK_DES3 key of 16 bytes"),
    ] {
        let t = Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_DES3)
            .bytes(CKA_VALUE, &vec![0x5e; len]);
        r.rv(step, create(m, h, t).0);
    }

    // AES-CTR counter bits.
    for (bits, step) in [
        (0, "AES-CTR ulCounterBits 0"),
        (129, "AES-CTR ulCounterBits 129"),
    ] {
        let mut p = CK_AES_CTR_PARAMS {
            ulCounterBits: bits,
            cb: [0; 16],
        };
        let rv = ck!(
            m,
            C_EncryptInit(h, &mut mech_with(CKM_AES_CTR, &mut p), key)
        );
        r.rv(step, rv);
        if rv == CKR_OK {
            // Ends the operation (SoftHSM, a 2.40 module, has no NULL-mechanism cancel).
            let _ = two_call(|o, n| ck!(m, C_Encrypt(h, data.as_mut_ptr(), 16, o, n)));
        }
    }
    let mut cb = [0x77u8; 16];
    cb[15] = 0xff;
    let mut p = CK_AES_CTR_PARAMS {
        ulCounterBits: 8,
        cb,
    };
    let got = encrypt(m, h, mech_with(CKM_AES_CTR, &mut p), key, &[0u8; 32]);
    r.rv("AES-CTR 8-bit counter over its wrap", rv_of(&got));
    let mut wrapped = cb;
    wrapped[15] = 0;
    let want = [aes128(&kv, cb), aes128(&kv, wrapped)].concat();
    r.val(
        "AES-CTR 8-bit counter wraps within its bits",
        (got.ok() == Some(want)) as u64,
    );

    // Digests take no parameter.
    let mut junk = [0u8; 8];
    r.rv(
        "C_DigestInit SHA-256 with a parameter",
        ck!(m, C_DigestInit(h, &mut mech_with(CKM_SHA256, &mut junk))),
    );

    // A session of its own: SoftHSM keeps the digest above active (one operation at a time).
    edwards_and_montgomery(m, open(m, slot, true), &mut r);
    kbkdf_and_rsa_1024(m, open(m, slot, true), &mut r);

    // A NUL-terminated C_InitToken label (last: it wipes the token).
    assert_eq!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
    let mut label = [0u8; 32];
    label[..6].copy_from_slice(b"nulled");
    r.rv(
        "C_InitToken with a NUL-terminated label",
        init_token(m, slot, &mut label),
    );
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    ck!(m, C_GetTokenInfo(slot, &mut ti));
    r.val(
        "the label is read up to the NUL, blank-padded",
        (ti.label[..6] == *b"nulled" && ti.label[6..].iter().all(|b| *b == b' ')) as u64,
    );
    r
}

/// CKM_EDDSA with a CK_EDDSA_PARAMS (phFlag 1: Ed25519ph, checked by ed25519-dalek), and
/// the Ed448 and X25519 key pairs (PKCS#11 3.0 CKM_EDDSA scheme table, CKK_EC_MONTGOMERY).
fn edwards_and_montgomery(m: &Module, h: CK_SESSION_HANDLE, r: &mut Rec) {
    let gen = |mt, params: &[u8]| {
        let mut p = Template::new().bytes(CKA_EC_PARAMS, params);
        let mut s = Template::new().bool(CKA_SIGN, true).bool(CKA_DERIVE, true);
        let (mut a, mut b) = (0, 0);
        let rv = ck!(
            m,
            C_GenerateKeyPair(
                h,
                &mut mech(mt),
                p.ptr(),
                p.len(),
                s.ptr(),
                s.len(),
                &mut a,
                &mut b
            )
        );
        (rv, a, b)
    };
    let (rv, pubk, privk) = gen(CKM_EC_EDWARDS_KEY_PAIR_GEN, ED25519_PARAMS);
    assert_eq!(rv, CKR_OK, "an Ed25519 key pair");
    let mut p = CK_EDDSA_PARAMS {
        phFlag: 1,
        ulContextDataLen: 0,
        pContextData: std::ptr::null_mut(),
    };
    let got = sign(m, h, mech_with(CKM_EDDSA, &mut p), privk, b"prehashed");
    r.rv("CKM_EDDSA with phFlag 1 (Ed25519ph)", rv_of(&got));
    let point = get_attr(m, h, pubk, CKA_EC_POINT).unwrap();
    let vk =
        ed25519_dalek::VerifyingKey::from_bytes(&ec_point(&point).try_into().unwrap()).unwrap();
    let ph_ok = got.ok().is_some_and(|sig| {
        let mut pre = sha2::Sha512::default();
        sha2::Digest::update(&mut pre, b"prehashed");
        ed25519_dalek::Signature::from_slice(&sig)
            .is_ok_and(|s| vk.verify_prehashed(pre, None, &s).is_ok())
    });
    r.val("CKM_EDDSA with phFlag 1 signs Ed25519ph", ph_ok as u64);
    let ed448 = [0x06, 0x03, 0x2b, 0x65, 0x71];
    r.rv(
        "CKM_EC_EDWARDS_KEY_PAIR_GEN on Ed448",
        gen(CKM_EC_EDWARDS_KEY_PAIR_GEN, &ed448).0,
    );
    let x25519 = [0x06, 0x03, 0x2b, 0x65, 0x6e];
    r.rv(
        "CKM_EC_MONTGOMERY_KEY_PAIR_GEN on X25519",
        gen(CKM_EC_MONTGOMERY_KEY_PAIR_GEN, &x25519).0,
    );
}

/// SP 800-108 in counter mode (PKCS#11 3.0 §2.42) on NIST CAVP's KDFCTR vector
/// (HMAC-SHA256, 32-bit counter before the fixed input, COUNT=0), and an RSA-1024 key
/// pair whose SHA256-RSA-PKCS signature RustCrypto's `rsa` verifies.
fn kbkdf_and_rsa_1024(m: &Module, h: CK_SESSION_HANDLE, r: &mut Rec) {
    let ki =
        hex::decode("dd1d91b7d90b2bd3138533ce92b272fbf8a369316aefe242e659cc0ae238afe0").unwrap();
    let mut fixed = hex::decode(
        "01322b96b30acd197979444e468e1c5c6859bf1b1cf951b7e725303e237e46b864a145fab25e517b08f8683d0315bb2911d80a0e8aba17f3b413faac",
    )
    .unwrap();
    let base = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bytes(CKA_VALUE, &ki)
        .bool(CKA_DERIVE, true);
    let (rv, key) = create(m, h, base);
    assert_eq!(rv, CKR_OK);
    let mut counter = CK_SP800_108_COUNTER_FORMAT {
        bLittleEndian: 0,
        ulWidthInBits: 32,
    };
    let mut data = [
        CK_PRF_DATA_PARAM {
            type_: CK_SP800_108_ITERATION_VARIABLE,
            pValue: &mut counter as *mut _ as *mut _,
            ulValueLen: std::mem::size_of::<CK_SP800_108_COUNTER_FORMAT>() as CK_ULONG,
        },
        CK_PRF_DATA_PARAM {
            type_: CK_SP800_108_BYTE_ARRAY,
            pValue: fixed.as_mut_ptr() as *mut _,
            ulValueLen: fixed.len() as CK_ULONG,
        },
    ];
    let mut p = CK_SP800_108_KDF_PARAMS {
        prfType: CKM_SHA256_HMAC,
        ulNumberOfDataParams: 2,
        pDataParams: data.as_mut_ptr(),
        ulAdditionalDerivedKeys: 0,
        pAdditionalDerivedKeys: std::ptr::null_mut(),
    };
    let got = derive16(m, h, &mut mech_with(CKM_SP800_108_COUNTER_KDF, &mut p), key);
    r.rv("CKM_SP800_108_COUNTER_KDF (HMAC-SHA256)", rv_of(&got));
    let want = hex::decode("10621342bfb0fd40046c0e29f2cfdbf0").unwrap();
    r.val(
        "CKM_SP800_108_COUNTER_KDF value is NIST's",
        (got.ok() == Some(want)) as u64,
    );

    let mut pt = Template::new()
        .ulong(CKA_MODULUS_BITS, 1024)
        .bool(CKA_VERIFY, true);
    let mut st = Template::new().bool(CKA_SIGN, true);
    let (mut pubk, mut privk) = (0, 0);
    let rv = ck!(
        m,
        C_GenerateKeyPair(
            h,
            &mut mech(CKM_RSA_PKCS_KEY_PAIR_GEN),
            pt.ptr(),
            pt.len(),
            st.ptr(),
            st.len(),
            &mut pubk,
            &mut privk
        )
    );
    r.rv("RSA-1024 key pair", rv);
    let sig = sign(m, h, mech(CKM_SHA256_RSA_PKCS), privk, b"legacy");
    r.rv("RSA-1024 SHA256-RSA-PKCS signature", rv_of(&sig));
    let verified = sig.ok().is_some_and(|sig| {
        let n = get_attr(m, h, pubk, CKA_MODULUS).unwrap();
        let e = get_attr(m, h, pubk, CKA_PUBLIC_EXPONENT).unwrap();
        let k = rsa::RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(&n),
            rsa::BigUint::from_bytes_be(&e),
        )
        .unwrap();
        let digest = <sha2::Sha256 as sha2::Digest>::digest(b"legacy");
        k.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, &sig)
            .is_ok()
    });
    r.val("RSA-1024 signature verified by RustCrypto", verified as u64);
}
