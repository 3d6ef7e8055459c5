//! Edwards and Montgomery curves through the C ABI of libhsmux.so (issue 19): Ed25519ctx,
//! Ed25519ph, Ed448 and Ed448ph (CKM_EDDSA with a CK_EDDSA_PARAMS, PKCS#11 3.0's CKM_EDDSA
//! scheme table) against RFC 8032's test vectors; Ed448 signatures of generated keys and
//! X25519 / X448 ECDH (CKK_EC_MONTGOMERY) against the openssl CLI; the ECDH1 KDFs against
//! RustCrypto's SHA-256.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

const ED448_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x71];
const X25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6e];
const X448_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6f];

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// Imports an Edwards key pair from its RFC 8032 private value and public point.
fn import_ed(
    m: &Module,
    h: CK_SESSION_HANDLE,
    params: &[u8],
    private: &[u8],
    public: &[u8],
) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let mut point = vec![0x04, public.len() as u8];
    point.extend_from_slice(public);
    let mut pt = Template::new()
        .ulong(CKA_CLASS, CKO_PUBLIC_KEY)
        .ulong(CKA_KEY_TYPE, CKK_EC_EDWARDS)
        .bytes(CKA_EC_PARAMS, params)
        .bytes(CKA_EC_POINT, &point)
        .bool(CKA_VERIFY, true);
    let mut st = Template::new()
        .ulong(CKA_CLASS, CKO_PRIVATE_KEY)
        .ulong(CKA_KEY_TYPE, CKK_EC_EDWARDS)
        .bytes(CKA_EC_PARAMS, params)
        .bytes(CKA_VALUE, private)
        .bool(CKA_SIGN, true);
    let (mut p, mut s) = (0, 0);
    assert_rv!(
        ck!(m, C_CreateObject(h, pt.ptr(), pt.len(), &mut p)),
        CKR_OK
    );
    assert_rv!(
        ck!(m, C_CreateObject(h, st.ptr(), st.len(), &mut s)),
        CKR_OK
    );
    (p, s)
}

/// A CK_EDDSA_PARAMS over `context` (kept alive by the caller).
fn eddsa(ph: bool, context: &mut [u8]) -> CK_EDDSA_PARAMS {
    CK_EDDSA_PARAMS {
        phFlag: ph as CK_BBOOL,
        ulContextDataLen: context.len() as CK_ULONG,
        pContextData: context.as_mut_ptr(),
    }
}

/// Signs `msg` under `scheme` (None: no parameter) and checks the signature verifies,
/// and fails under the other context; returns it.
fn sign_check(
    m: &Module,
    h: CK_SESSION_HANDLE,
    keys: (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE),
    scheme: Option<(bool, &[u8])>,
    msg: &[u8],
) -> Vec<u8> {
    let (pubk, privk) = keys;
    let Some((ph, ctx)) = scheme else {
        let sig = sign(m, h, mech(CKM_EDDSA), privk, msg).unwrap();
        assert_rv!(verify(m, h, mech(CKM_EDDSA), pubk, msg, &sig), CKR_OK);
        return sig;
    };
    let mut c = ctx.to_vec();
    let mut p = eddsa(ph, &mut c);
    let sig = sign(m, h, mech_with(CKM_EDDSA, &mut p), privk, msg).unwrap();
    assert_rv!(
        verify(m, h, mech_with(CKM_EDDSA, &mut p), pubk, msg, &sig),
        CKR_OK
    );
    let mut other = b"another context".to_vec();
    let mut p = eddsa(ph, &mut other);
    assert_rv!(
        verify(m, h, mech_with(CKM_EDDSA, &mut p), pubk, msg, &sig),
        CKR_SIGNATURE_INVALID,
        "a signature under context {ctx:?} verifies under another"
    );
    sig
}

/// RFC 8032 §7.2 (Ed25519ctx, context "foo") and §7.3 (Ed25519ph): the signatures of the
/// RFC's keys are the RFC's, byte for byte; Ed25519ph also verifies with ed25519-dalek.
#[test]
fn ed25519ctx_and_ed25519ph_sign_rfc_8032_vectors() {
    let m = shared();
    let h = user_session(m, 0);
    let keys = import_ed(
        m,
        h,
        ED25519_PARAMS,
        &hex("0305334e381af78f141cb666f6199f57bc3495335a256a95bd2a55bf546663f6"),
        &hex("dfc9425e4f968f7f0c29f0259cf5f9aed6851c2bb4ad8bfb860cfee0ab248292"),
    );
    let sig = sign_check(
        m,
        h,
        keys,
        Some((false, b"foo")),
        &hex("f726936d19c800494e3fdaff20b276a8"),
    );
    assert_eq!(
        hex::encode(sig),
        "55a4cc2f70a54e04288c5f4cd1e45a7bb520b36292911876cada7323198dd87a\
         8b36950b95130022907a7fb7c4e9b2d5f6cca685a587b4b21f4b888e4e7edb0d"
    );

    let public = hex("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf");
    let keys = import_ed(
        m,
        h,
        ED25519_PARAMS,
        &hex("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42"),
        &public,
    );
    let sig = sign_check(m, h, keys, Some((true, b"")), b"abc");
    assert_eq!(
        hex::encode(&sig),
        "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41\
         31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406"
    );
    // Ed25519ph with a context, checked by ed25519-dalek's prehashed verification.
    let sig = sign_check(m, h, keys, Some((true, b"context")), b"message");
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public.try_into().unwrap()).unwrap();
    let mut pre = sha2::Sha512::new();
    pre.update(b"message");
    vk.verify_prehashed(
        pre,
        Some(b"context"),
        &ed25519_dalek::Signature::from_slice(&sig).unwrap(),
    )
    .expect("ed25519-dalek verifies hsmux's Ed25519ph signature");
}

/// RFC 8032 §7.4 (Ed448, with and without context) and §7.5 (Ed448ph): the RFC's
/// signatures. CKM_EDDSA without a parameter on an Ed448 key is Ed448 with an empty context.
#[test]
fn ed448_and_ed448ph_sign_rfc_8032_vectors() {
    let m = shared();
    let h = user_session(m, 1);
    let keys = import_ed(
        m,
        h,
        ED448_PARAMS,
        &hex("c4eab05d357007c632f3dbb48489924d552b08fe0c353a0d4a1f00acda2c463afbea67c5e8d2877c5e3bc397a659949ef8021e954e0a12274e"),
        &hex("43ba28f430cdff456ae531545f7ecd0ac834a55d9358c0372bfa0c6c6798c0866aea01eb00742802b8438ea4cb82169c235160627b4c3a9480"),
    );
    let sig = sign_check(m, h, keys, None, &[0x03]);
    assert_eq!(hex::encode(sig), "26b8f91727bd62897af15e41eb43c377efb9c610d48f2335cb0bd0087810f4352541b143c4b981b7e18f62de8ccdf633fc1bf037ab7cd779805e0dbcc0aae1cbcee1afb2e027df36bc04dcecbf154336c19f0af7e0a6472905e799f1953d2a0ff3348ab21aa4adafd1d234441cf807c03a00");
    let sig = sign_check(m, h, keys, Some((false, b"foo")), &[0x03]);
    assert_eq!(hex::encode(sig), "d4f8f6131770dd46f40867d6fd5d5055de43541f8c5e35abbcd001b32a89f7d2151f7647f11d8ca2ae279fb842d607217fce6e042f6815ea000c85741de5c8da1144a6a1aba7f96de42505d7a7298524fda538fccbbb754f578c1cad10d54d0d5428407e85dcbc98a49155c13764e66c3c00");
    let keys = import_ed(
        m,
        h,
        ED448_PARAMS,
        &hex("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42ef7822e0d5104127dc05d6dbefde69e3ab2cec7c867c6e2c49"),
        &hex("259b71c19f83ef77a7abd26524cbdb3161b590a48f7d17de3ee0ba9c52beb743c09428a131d6b1b57303d90d8132c276d5ed3d5d01c0f53880"),
    );
    let sig = sign_check(m, h, keys, Some((true, b"")), b"abc");
    assert_eq!(hex::encode(sig), "822f6901f7480f3d5f562c592994d9693602875614483256505600bbc281ae381f54d6bce2ea911574932f52a4e6cadd78769375ec3ffd1b801a0d9b3f4030cd433964b6457ea39476511214f97469b57dd32dbc560a9a94d00bff07620464a3ad203df7dc7ce360c3cd3696d9d9fab90f00");
}

/// A SubjectPublicKeyInfo (RFC 8410) around a raw Edwards / Montgomery public value.
fn spki(params: &[u8], public: &[u8]) -> Vec<u8> {
    let mut alg = vec![0x30, params.len() as u8];
    alg.extend_from_slice(params);
    let mut bits = vec![0x03, public.len() as u8 + 1, 0x00];
    bits.extend_from_slice(public);
    let mut out = vec![0x30, (alg.len() + bits.len()) as u8];
    out.extend(alg);
    out.extend(bits);
    out
}

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A scratch directory for the openssl CLI's files, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let d = std::env::temp_dir().join(format!("hsmux-curves-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

/// A generated Ed448 key pair signs (pure and with a context); the openssl CLI verifies
/// the pure signature with the public key read from CKA_EC_POINT.
#[test]
fn generated_ed448_keys_sign_what_openssl_verifies() {
    let m = shared();
    let h = user_session(m, 2);
    // The curve by name, as the cryptoki suite and SoftHSM's tests give it.
    let keys = keypair(
        m,
        h,
        CKM_EC_EDWARDS_KEY_PAIR_GEN,
        Template::new().bytes(CKA_EC_PARAMS, b"\x13\x0aedwards448"),
        Template::new(),
        b"ed448",
    );
    let point = ec_point(&get_attr(m, h, keys.0, CKA_EC_POINT).unwrap());
    assert_eq!(point.len(), 57);
    let sig = sign_check(m, h, keys, None, b"signed by hsmux");
    assert_eq!(sig.len(), 114);
    sign_check(m, h, keys, Some((false, b"ctx")), b"signed by hsmux");
    sign_check(m, h, keys, Some((true, b"ctx")), b"signed by hsmux");
    let dir = scratch("ed448");
    std::fs::write(dir.path().join("pub.der"), spki(ED448_PARAMS, &point)).unwrap();
    std::fs::write(dir.path().join("msg"), b"signed by hsmux").unwrap();
    std::fs::write(dir.path().join("sig"), &sig).unwrap();
    let out = openssl(
        dir.path(),
        &[
            "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", "pub.der", "-rawin",
            "-in", "msg", "-sigfile", "sig",
        ],
    );
    assert!(String::from_utf8_lossy(&out).contains("Verified Successfully"));
}

/// X25519 and X448 (CKM_EC_MONTGOMERY_KEY_PAIR_GEN, CKM_ECDH1_DERIVE with CKD_NULL): the
/// shared secret hsmux derives from openssl's public value is the one openssl derives
/// from hsmux's public value.
#[test]
fn x25519_and_x448_agree_with_openssl() {
    let m = shared();
    let h = user_session(m, 3);
    for (alg, params, len) in [("X25519", X25519_PARAMS, 32), ("X448", X448_PARAMS, 56)] {
        let keys = keypair(
            m,
            h,
            CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
            Template::new().bytes(CKA_EC_PARAMS, params),
            Template::new().bool(CKA_DERIVE, true),
            alg.as_bytes(),
        );
        let ours = ec_point(&get_attr(m, h, keys.0, CKA_EC_POINT).unwrap());
        assert_eq!(ours.len(), len, "{alg} public value");
        let dir = scratch(alg);
        openssl(
            dir.path(),
            &["genpkey", "-algorithm", alg, "-out", "peer.pem"],
        );
        let peer_spki = openssl(
            dir.path(),
            &["pkey", "-in", "peer.pem", "-pubout", "-outform", "DER"],
        );
        let mut peer = peer_spki[peer_spki.len() - len..].to_vec();
        std::fs::write(dir.path().join("ours.der"), spki(params, &ours)).unwrap();
        let want = openssl(
            dir.path(),
            &[
                "pkeyutl",
                "-derive",
                "-inkey",
                "peer.pem",
                "-peerform",
                "DER",
                "-peerkey",
                "ours.der",
            ],
        );
        let mut p = CK_ECDH1_DERIVE_PARAMS {
            kdf: CKD_NULL,
            ulSharedDataLen: 0,
            pSharedData: std::ptr::null_mut(),
            ulPublicDataLen: peer.len() as CK_ULONG,
            pPublicData: peer.as_mut_ptr(),
        };
        let got = derive(
            m,
            h,
            &mut mech_with(CKM_ECDH1_DERIVE, &mut p),
            keys.1,
            len as CK_ULONG,
        )
        .unwrap();
        assert_eq!(hex::encode(got), hex::encode(want), "{alg} shared secret");
        // A peer value of small order (u = 0) is refused (RFC 7748 §6: all-zero output).
        let mut zero = vec![0u8; len];
        p.pPublicData = zero.as_mut_ptr();
        assert_rv!(
            derive(m, h, &mut mech_with(CKM_ECDH1_DERIVE, &mut p), keys.1, 16).unwrap_err(),
            CKR_MECHANISM_PARAM_INVALID,
            "{alg} with a small-order peer value"
        );
    }
}

/// CKM_ECDH1_DERIVE's KDFs (PKCS#11 3.0 §2.3.8): CKD_SHA256_KDF is ANSI X9.63,
/// H(Z || counter || SharedInfo); CKD_SHA256_KDF_SP800 is SP 800-56C's one-step KDF,
/// H(counter || Z || OtherInfo); each recomputed here with RustCrypto's SHA-256 over the
/// Z of CKD_NULL, for a key longer than one hash.
#[test]
fn ecdh1_kdfs_are_x963_and_sp800_56c() {
    let m = shared();
    let h = user_session(m, 4);
    let keys = keypair(
        m,
        h,
        CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
        Template::new().bytes(CKA_EC_PARAMS, b"\x13\x0acurve25519"),
        Template::new().bool(CKA_DERIVE, true),
        b"kdf",
    );
    let mut peer = ec_point(&get_attr(m, h, keys.0, CKA_EC_POINT).unwrap());
    let mut info = b"other info".to_vec();
    let mut run = |kdf, info: &mut Vec<u8>, len| {
        let mut p = CK_ECDH1_DERIVE_PARAMS {
            kdf,
            ulSharedDataLen: info.len() as CK_ULONG,
            pSharedData: if info.is_empty() {
                std::ptr::null_mut()
            } else {
                info.as_mut_ptr()
            },
            ulPublicDataLen: peer.len() as CK_ULONG,
            pPublicData: peer.as_mut_ptr(),
        };
        derive(m, h, &mut mech_with(CKM_ECDH1_DERIVE, &mut p), keys.1, len)
    };
    let z = run(CKD_NULL, &mut Vec::new(), 32).unwrap();
    let expand = |counter_first: bool| {
        let mut out = Vec::new();
        for i in 1u32..=2 {
            let mut d = Sha256::new();
            if counter_first {
                d.update(i.to_be_bytes());
                d.update(&z);
            } else {
                d.update(&z);
                d.update(i.to_be_bytes());
            }
            d.update(b"other info");
            out.extend(d.finalize());
        }
        out.truncate(40);
        out
    };
    assert_eq!(run(CKD_SHA256_KDF, &mut info, 40).unwrap(), expand(false));
    assert_eq!(
        run(CKD_SHA256_KDF_SP800, &mut info, 40).unwrap(),
        expand(true)
    );
    assert_rv!(
        run(CKD_NULL, &mut info, 32).unwrap_err(),
        CKR_MECHANISM_PARAM_INVALID,
        "CKD_NULL with shared data"
    );
}
