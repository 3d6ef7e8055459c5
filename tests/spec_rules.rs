//! PKCS#11 3.0 rules that strict consumers and conformance suites check (issue 19), each
//! test naming its rule, through the C ABI of libhsmux.so. Derived and encrypted values are
//! checked against an independent AES (RustCrypto's `aes`).
//!
//! `C_Initialize`'s `pReserved` is in tests/init_reserved.rs (it needs a process of its own).

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use aes::cipher::{BlockEncrypt, KeyInit};
use common::*;
use cryptoki_sys::*;

const NULL: *mut u8 = std::ptr::null_mut();

/// ECB encryption of whole blocks by RustCrypto's AES (128 or 256-bit keys).
fn ref_ecb(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    for b in out.chunks_mut(16) {
        let block = aes::Block::from_mut_slice(b);
        match key.len() {
            16 => aes::Aes128::new_from_slice(key)
                .unwrap()
                .encrypt_block(block),
            32 => aes::Aes256::new_from_slice(key)
                .unwrap()
                .encrypt_block(block),
            n => panic!("no {n}-byte AES here"),
        }
    }
    out
}

/// CBC encryption (no padding) built from [`ref_ecb`].
fn ref_cbc(key: &[u8], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let mut chain = *iv;
    let mut out = Vec::new();
    for b in data.chunks(16) {
        let x: Vec<u8> = b.iter().zip(chain).map(|(a, c)| a ^ c).collect();
        let c = ref_ecb(key, &x);
        chain.copy_from_slice(&c);
        out.extend(c);
    }
    out
}

/// CTR encryption whose counter is the low `bits` bits of the counter block, wrapping
/// within them (NIST SP 800-38A B.1, the standard incrementing function).
fn ref_ctr(key: &[u8], cb: &[u8; 16], bits: u32, data: &[u8]) -> Vec<u8> {
    let mask = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    let mut c = u128::from_be_bytes(*cb);
    let mut out = Vec::new();
    for b in data.chunks(16) {
        let ks = ref_ecb(key, &c.to_be_bytes());
        out.extend(b.iter().zip(ks).map(|(a, k)| a ^ k));
        c = (c & !mask) | (c.wrapping_add(1) & mask);
    }
    out
}

/// A session-object AES key of `value` whose value can be read back.
fn aes_key(m: &Module, h: CK_SESSION_HANDLE, value: &[u8]) -> CK_OBJECT_HANDLE {
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bytes(CKA_VALUE, value)
        .bool(CKA_DERIVE, true)
        .bool(CKA_EXTRACTABLE, true);
    let mut k = 0;
    assert_rv!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut k)), CKR_OK);
    k
}

/// PKCS#11 3.0 §5.2 and the text of each function: C_Encrypt, C_Decrypt, C_Digest,
/// C_Sign, C_Verify, their *Final and an erroring *Update end the operation on every
/// result except CKR_BUFFER_TOO_SMALL and a successful length query; a call refused for
/// its arguments (CKR_ARGUMENTS_BAD) too.
#[test]
fn every_failing_call_ends_its_operation() {
    let m = shared();
    let h = user_session(m, 0);
    let key = aes_key(m, h, &[7u8; 16]);
    let mut hk = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bytes(CKA_VALUE, &[9u8; 32]);
    let mut hmac = 0;
    assert_rv!(
        ck!(m, C_CreateObject(h, hk.ptr(), hk.len(), &mut hmac)),
        CKR_OK
    );
    let mut buf = [0u8; 64];
    let bp = buf.as_mut_ptr();
    let mut n: CK_ULONG = 64;
    type Call<'a> = (&'a str, Box<dyn Fn(&mut CK_ULONG, *mut u8) -> CK_RV + 'a>);
    // Each call with NULL data of length 16 (or NULL pulLen for a *Final).
    let ecb_init = || {
        let mut mc = mech(CKM_AES_ECB);
        assert_rv!(ck!(m, C_EncryptInit(h, &mut mc, key)), CKR_OK);
        assert_rv!(ck!(m, C_DecryptInit(h, &mut mc, key)), CKR_OK);
        let mut mc = mech(CKM_SHA256);
        assert_rv!(ck!(m, C_DigestInit(h, &mut mc)), CKR_OK);
        let mut mc = mech(CKM_SHA256_HMAC);
        assert_rv!(ck!(m, C_SignInit(h, &mut mc, hmac)), CKR_OK);
        assert_rv!(ck!(m, C_VerifyInit(h, &mut mc, hmac)), CKR_OK);
    };
    let calls: Vec<Call> = vec![
        (
            "C_Encrypt",
            Box::new(|n, d| ck!(m, C_Encrypt(h, d, 16, bp, n))),
        ),
        (
            "C_EncryptUpdate",
            Box::new(|n, d| ck!(m, C_EncryptUpdate(h, d, 16, bp, n))),
        ),
        (
            "C_Decrypt",
            Box::new(|n, d| ck!(m, C_Decrypt(h, d, 16, bp, n))),
        ),
        (
            "C_DecryptUpdate",
            Box::new(|n, d| ck!(m, C_DecryptUpdate(h, d, 16, bp, n))),
        ),
        (
            "C_Digest",
            Box::new(|n, d| ck!(m, C_Digest(h, d, 16, bp, n))),
        ),
        (
            "C_DigestUpdate",
            Box::new(|_, d| ck!(m, C_DigestUpdate(h, d, 16))),
        ),
        ("C_Sign", Box::new(|n, d| ck!(m, C_Sign(h, d, 16, bp, n)))),
        (
            "C_SignUpdate",
            Box::new(|_, d| ck!(m, C_SignUpdate(h, d, 16))),
        ),
        (
            "C_Verify",
            Box::new(|_, d| ck!(m, C_Verify(h, d, 16, bp, 32))),
        ),
        (
            "C_VerifyUpdate",
            Box::new(|_, d| ck!(m, C_VerifyUpdate(h, d, 16))),
        ),
    ];
    for (name, call) in &calls {
        ecb_init();
        assert_rv!(
            call(&mut n, NULL),
            CKR_ARGUMENTS_BAD,
            "{name} with NULL data"
        );
        n = 64;
        assert_rv!(
            call(&mut n, bp),
            CKR_OPERATION_NOT_INITIALIZED,
            "{name} after its CKR_ARGUMENTS_BAD"
        );
        // A NULL mechanism cancels whatever is left (3.0 §5.8-§5.13).
        let none = std::ptr::null_mut();
        ck!(m, C_EncryptInit(h, none, key));
        ck!(m, C_DecryptInit(h, none, key));
        ck!(m, C_DigestInit(h, none));
        ck!(m, C_SignInit(h, none, hmac));
        ck!(m, C_VerifyInit(h, none, hmac));
    }
    // The *Final calls with a NULL pulLen (C_VerifyFinal: NULL signature with a length).
    ecb_init();
    let np: *mut CK_ULONG = std::ptr::null_mut();
    let out = bp;
    let finals: [(&str, CK_RV, CK_RV); 5] = [
        (
            "C_EncryptFinal",
            ck!(m, C_EncryptFinal(h, out, np)),
            ck!(m, C_EncryptFinal(h, out, &mut n)),
        ),
        (
            "C_DecryptFinal",
            ck!(m, C_DecryptFinal(h, out, np)),
            ck!(m, C_DecryptFinal(h, out, &mut n)),
        ),
        (
            "C_DigestFinal",
            ck!(m, C_DigestFinal(h, out, np)),
            ck!(m, C_DigestFinal(h, out, &mut n)),
        ),
        (
            "C_SignFinal",
            ck!(m, C_SignFinal(h, out, np)),
            ck!(m, C_SignFinal(h, out, &mut n)),
        ),
        (
            "C_VerifyFinal",
            ck!(m, C_VerifyFinal(h, NULL, 32)),
            ck!(m, C_VerifyFinal(h, out, 32)),
        ),
    ];
    for (name, first, second) in finals {
        assert_rv!(first, CKR_ARGUMENTS_BAD, "{name} with a NULL pointer");
        assert_rv!(
            second,
            CKR_OPERATION_NOT_INITIALIZED,
            "{name} after its CKR_ARGUMENTS_BAD"
        );
    }
    // CKR_BUFFER_TOO_SMALL keeps the operation.
    ecb_init();
    let data = [1u8; 32];
    let mut small: CK_ULONG = 8;
    assert_rv!(
        ck!(
            m,
            C_Encrypt(h, data.as_ptr() as *mut _, 32, out, &mut small)
        ),
        CKR_BUFFER_TOO_SMALL
    );
    assert_eq!(small, 32);
    n = 64;
    assert_rv!(
        ck!(m, C_Encrypt(h, data.as_ptr() as *mut _, 32, out, &mut n)),
        CKR_OK
    );
    assert_eq!(buf[..32], ref_ecb(&[7u8; 16], &data)[..]);
}

/// CKM_AES_ECB_ENCRYPT_DATA takes a CK_KEY_DERIVATION_STRING_DATA and
/// CKM_AES_CBC_ENCRYPT_DATA a CK_AES_CBC_ENCRYPT_DATA_PARAMS (PKCS#11 3.0, AES "encrypt
/// data" key derivation): the derived value is the encryption of the data they point to
/// (whole blocks), not of the structure's own bytes.
#[test]
fn aes_encrypt_data_derivation_reads_its_parameter_structures() {
    let m = shared();
    let h = user_session(m, 1);
    for klen in [16usize, 32] {
        let kv: Vec<u8> = (0..klen as u8).collect();
        let base = aes_key(m, h, &kv);
        let mut data: Vec<u8> = (100..132).collect();
        let mut sd = CK_KEY_DERIVATION_STRING_DATA {
            pData: data.as_mut_ptr(),
            ulLen: 32,
        };
        let mut mc = mech_with(CKM_AES_ECB_ENCRYPT_DATA, &mut sd);
        assert_eq!(
            derive(m, h, &mut mc, base, 32).unwrap(),
            ref_ecb(&kv, &data),
            "ECB, {klen}-byte key"
        );
        let mut cp = CK_AES_CBC_ENCRYPT_DATA_PARAMS {
            iv: [0x5a; 16],
            pData: data.as_mut_ptr(),
            length: 32,
        };
        let mut mc = mech_with(CKM_AES_CBC_ENCRYPT_DATA, &mut cp);
        assert_eq!(
            derive(m, h, &mut mc, base, 32).unwrap(),
            ref_cbc(&kv, &[0x5a; 16], &data),
            "CBC, {klen}-byte key"
        );
        // Data that is not whole blocks, and a structure of the wrong size.
        sd.ulLen = 20;
        let mut mc = mech_with(CKM_AES_ECB_ENCRYPT_DATA, &mut sd);
        assert_eq!(
            derive(m, h, &mut mc, base, 16),
            Err(CKR_MECHANISM_PARAM_INVALID)
        );
        let mut mc = mech_with(CKM_AES_ECB_ENCRYPT_DATA, &mut sd);
        mc.ulParameterLen -= 1;
        assert_eq!(
            derive(m, h, &mut mc, base, 16),
            Err(CKR_MECHANISM_PARAM_INVALID)
        );
        cp.length = 17;
        let mut mc = mech_with(CKM_AES_CBC_ENCRYPT_DATA, &mut cp);
        assert_eq!(
            derive(m, h, &mut mc, base, 16),
            Err(CKR_MECHANISM_PARAM_INVALID)
        );
    }
}

fn mech_list(ms: &[CK_MECHANISM_TYPE]) -> Vec<u8> {
    ms.iter().flat_map(|m| m.to_ne_bytes()).collect()
}

/// CKA_ALLOWED_MECHANISMS is a common key attribute (PKCS#11 3.0 §4.7): accepted by
/// C_CreateObject, C_CopyObject and C_GenerateKey, readable, and enforced at *Init.
#[test]
fn allowed_mechanisms_are_taken_and_enforced() {
    let m = shared();
    let h = user_session(m, 2);
    let allowed = mech_list(&[CKM_AES_CBC_PAD]);
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bytes(CKA_VALUE, &[3u8; 16])
        .bytes(CKA_ALLOWED_MECHANISMS, &allowed);
    let mut created = 0;
    assert_rv!(
        ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut created)),
        CKR_OK,
        "C_CreateObject with CKA_ALLOWED_MECHANISMS"
    );
    assert_eq!(
        get_attr(m, h, created, CKA_ALLOWED_MECHANISMS).unwrap(),
        allowed
    );
    let generated = secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 16)
            .bytes(CKA_ALLOWED_MECHANISMS, &allowed),
    );
    let mut ct = Template::new().bytes(CKA_ALLOWED_MECHANISMS, &mech_list(&[CKM_AES_ECB]));
    let mut copied = 0;
    assert_rv!(
        ck!(
            m,
            C_CopyObject(h, generated, ct.ptr(), ct.len(), &mut copied)
        ),
        CKR_OK,
        "C_CopyObject with CKA_ALLOWED_MECHANISMS"
    );
    let mut iv = [0u8; 16];
    let mut cbc_pad = || mech_with(CKM_AES_CBC_PAD, &mut iv);
    for (k, name) in [(created, "created"), (generated, "generated")] {
        assert!(encrypt(m, h, cbc_pad(), k, b"x").is_ok(), "{name}: CBC-PAD");
        assert_eq!(
            encrypt(m, h, mech(CKM_AES_ECB), k, &[0u8; 16]),
            Err(CKR_MECHANISM_INVALID),
            "{name}: ECB is not allowed"
        );
    }
    assert!(encrypt(m, h, mech(CKM_AES_ECB), copied, &[0u8; 16]).is_ok());
    assert_eq!(
        encrypt(m, h, cbc_pad(), copied, b"x"),
        Err(CKR_MECHANISM_INVALID)
    );
}

/// A CKK_DES3 key's CKA_VALUE is 24 bytes, a CKK_DES key's 8 (PKCS#11 3.0, DES and
/// DES3 secret key objects); any other length is CKR_ATTRIBUTE_VALUE_INVALID.
#[test]
fn des_key_values_have_their_spec_lengths() {
    let m = shared();
    let h = user_session(m, 3);
    for (kt, len, want) in [
        (CKK_DES3, 24, CKR_OK),
        (CKK_DES3, 16, CKR_ATTRIBUTE_VALUE_INVALID),
        (CKK_DES3, 32, CKR_ATTRIBUTE_VALUE_INVALID),
        (CKK_DES, 8, CKR_OK),
        (CKK_DES, 16, CKR_ATTRIBUTE_VALUE_INVALID),
    ] {
        let mut t = Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, kt)
            .bytes(CKA_VALUE, &vec![0x5eu8; len]);
        let mut k = 0;
        assert_rv!(
            ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut k)),
            want,
            "key type 0x{kt:x}, {len} bytes"
        );
    }
}

fn ctr_params(bits: CK_ULONG, cb: [u8; 16]) -> CK_AES_CTR_PARAMS {
    CK_AES_CTR_PARAMS {
        ulCounterBits: bits,
        cb,
    }
}

/// CK_AES_CTR_PARAMS.ulCounterBits is 1..128 (PKCS#11 3.0 AES-CTR), and the counter is
/// those low bits of the counter block: it wraps within them (SP 800-38A B.1).
#[test]
fn aes_ctr_counter_bits_are_checked_and_honoured() {
    let m = shared();
    let h = user_session(m, 4);
    let kv = [0x11u8; 16];
    let key = aes_key(m, h, &kv);
    for bad in [0, 129, 1 << 20] {
        let mut p = ctr_params(bad, [0; 16]);
        assert_eq!(
            encrypt(m, h, mech_with(CKM_AES_CTR, &mut p), key, b"abc"),
            Err(CKR_MECHANISM_PARAM_INVALID),
            "ulCounterBits {bad}"
        );
    }
    let data: Vec<u8> = (0..80).collect();
    let mut cb = [0xabu8; 16];
    cb[15] = 0xfe; // two blocks before an 8-bit counter wraps
    for bits in [8u32, 16, 128] {
        let mut p = ctr_params(bits as CK_ULONG, cb);
        assert_eq!(
            encrypt(m, h, mech_with(CKM_AES_CTR, &mut p), key, &data).unwrap(),
            ref_ctr(&kv, &cb, bits, &data),
            "{bits}-bit counter"
        );
    }
    // The counter may wrap within its bits but not come back to where it started (the
    // key stream would repeat): 2^8 blocks of an 8-bit counter, not one more.
    let mut p = ctr_params(8, cb);
    assert!(encrypt(m, h, mech_with(CKM_AES_CTR, &mut p), key, &[0u8; 256 * 16]).is_ok());
    assert_eq!(
        encrypt(
            m,
            h,
            mech_with(CKM_AES_CTR, &mut p),
            key,
            &[0u8; 256 * 16 + 1]
        ),
        Err(CKR_DATA_LEN_RANGE),
        "257 blocks of an 8-bit counter"
    );
    // Multi-part, split inside the wrap.
    let mut p = ctr_params(8, cb);
    let mut mc = mech_with(CKM_AES_CTR, &mut p);
    assert_rv!(ck!(m, C_EncryptInit(h, &mut mc, key)), CKR_OK);
    let mut got = Vec::new();
    for part in data.chunks(23) {
        let mut out = [0u8; 64];
        let mut n: CK_ULONG = 64;
        assert_rv!(
            ck!(
                m,
                C_EncryptUpdate(
                    h,
                    part.as_ptr() as *mut _,
                    part.len() as CK_ULONG,
                    out.as_mut_ptr(),
                    &mut n
                )
            ),
            CKR_OK
        );
        got.extend_from_slice(&out[..n as usize]);
    }
    let mut out = [0u8; 16];
    let mut n: CK_ULONG = 16;
    assert_rv!(ck!(m, C_EncryptFinal(h, out.as_mut_ptr(), &mut n)), CKR_OK);
    got.extend_from_slice(&out[..n as usize]);
    assert_eq!(got, ref_ctr(&kv, &cb, 8, &data), "multi-part 8-bit counter");
}

/// Digest mechanisms take no parameter: one given is CKR_MECHANISM_PARAM_INVALID
/// (PKCS#11 3.0 §5.10 C_DigestInit; the SHA mechanisms' "no parameter").
#[test]
fn digest_mechanisms_take_no_parameter() {
    let m = shared();
    let h = user_session(m, 5);
    let mut junk = [0u8; 8];
    for mt in [CKM_SHA_1, CKM_SHA256, CKM_SHA512] {
        let mut mc = mech_with(mt, &mut junk);
        assert_rv!(
            ck!(m, C_DigestInit(h, &mut mc)),
            CKR_MECHANISM_PARAM_INVALID,
            "0x{mt:x}"
        );
    }
    let mut mc = mech(CKM_SHA256);
    assert_rv!(ck!(m, C_DigestInit(h, &mut mc)), CKR_OK);
}

/// A template count of 2^32 (or more) is answered at once with CKR_ARGUMENTS_BAD or
/// CKR_HOST_MEMORY, never by reading or allocating that much (PKCS#11 3.0 §5.1: a
/// function may return CKR_HOST_MEMORY; CKR_ARGUMENTS_BAD for arguments it cannot take).
#[test]
fn a_template_count_of_two_to_the_32_is_answered_at_once() {
    let m = shared();
    let h = user_session(m, 6);
    let mut t = Template::new().ulong(CKA_CLASS, CKO_DATA);
    let mut o = 0;
    for count in [1 << 32, CK_ULONG::MAX] {
        let rv = ck!(m, C_FindObjectsInit(h, t.ptr(), count));
        assert!(
            matches!(rv, CKR_ARGUMENTS_BAD | CKR_HOST_MEMORY),
            "C_FindObjectsInit: {}",
            rv_name(rv)
        );
        let rv = ck!(m, C_CreateObject(h, t.ptr(), count, &mut o));
        assert!(
            matches!(rv, CKR_ARGUMENTS_BAD | CKR_HOST_MEMORY),
            "C_CreateObject: {}",
            rv_name(rv)
        );
    }
    assert_rv!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut o)), CKR_OK);
}

/// C_InitToken's label is 32 bytes, blank-padded (PKCS#11 3.0 §5.5); a consumer that
/// NUL-terminates it inside those 32 bytes (as many do from a C string) gets the label up
/// to the NUL, as other modules answer, whatever follows the NUL.
#[test]
fn init_token_label_ends_at_a_nul() {
    let m = shared();
    for (slot, tail) in [(7, 0u8), (8, 0xff)] {
        let mut label = [tail; 32];
        label[..6].copy_from_slice(b"nulled");
        label[6] = 0;
        assert_rv!(
            init_token(m, slot, &mut label),
            CKR_OK,
            "label followed by 0x{tail:02x}"
        );
        let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
        assert_rv!(ck!(m, C_GetTokenInfo(slot, &mut ti)), CKR_OK);
        let mut want = [b' '; 32];
        want[..6].copy_from_slice(b"nulled");
        assert_eq!(ti.label, want);
    }
}

/// PKCS#11 3.0, CKM_EDDSA's scheme table: a CK_EDDSA_PARAMS present selects Ed25519ctx
/// (phFlag false) or Ed25519ph; only its absence means pure Ed25519. An all-zero parameter
/// is Ed25519ctx with an empty context, which RFC 8032 §5.1 does not allow (its context is
/// 1..255 bytes): refused at init, never signed as pure Ed25519. phFlag 1 with an empty
/// context is Ed25519ph, checked by ed25519-dalek's prehashed verification.
#[test]
fn an_eddsa_parameter_selects_ed25519ctx_or_ph_not_pure_ed25519() {
    let m = shared();
    let h = user_session(m, 9);
    let (pubk, privk) = keypair(
        m,
        h,
        CKM_EC_EDWARDS_KEY_PAIR_GEN,
        Template::new().bytes(CKA_EC_PARAMS, ED25519_PARAMS),
        Template::new(),
        b"ed-params",
    );
    let mut p = CK_EDDSA_PARAMS {
        phFlag: 0,
        ulContextDataLen: 0,
        pContextData: NULL,
    };
    let mut mc = mech_with(CKM_EDDSA, &mut p);
    assert_rv!(
        ck!(m, C_SignInit(h, &mut mc, privk)),
        CKR_MECHANISM_PARAM_INVALID
    );
    let mut mc = mech_with(CKM_EDDSA, &mut p);
    assert_rv!(
        ck!(m, C_VerifyInit(h, &mut mc, pubk)),
        CKR_MECHANISM_PARAM_INVALID
    );
    let point = ec_point(&get_attr(m, h, pubk, CKA_EC_POINT).unwrap());
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&point.try_into().unwrap()).unwrap();
    p.phFlag = 1;
    let sig = sign(m, h, mech_with(CKM_EDDSA, &mut p), privk, b"ph").unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
    let mut pre = sha2::Sha512::default();
    sha2::Digest::update(&mut pre, b"ph");
    vk.verify_prehashed(pre, None, &sig)
        .expect("Ed25519ph verifies");
    assert!(
        vk.verify_strict(b"ph", &sig).is_err(),
        "an Ed25519ph signature is not a pure Ed25519 one"
    );
    // Without a parameter: pure Ed25519, verified by ed25519-dalek.
    let sig = sign(m, h, mech(CKM_EDDSA), privk, b"pure").unwrap();
    vk.verify_strict(
        b"pure",
        &ed25519_dalek::Signature::from_slice(&sig).unwrap(),
    )
    .expect("pure Ed25519 verifies");
}
