//! softhsm-compat: the same scenarios against SoftHSMv2 loaded directly and SoftHSMv2 behind
//! hsmux's module backend. The results must be identical: return codes (errors included),
//! attribute values and lengths, object counts, outputs of deterministic mechanisms; and
//! signatures made on one side verify on the other.
//!
//! SoftHSM keeps its state per loaded library, and `dlopen` of one path gives one library:
//! hsmux therefore loads copies of libsofthsm2.so (`behind-b.so`, `behind-c.so`), each a
//! SoftHSM of its own with the token directory its `SOFTHSM2_CONF` named when it was
//! initialized. Copy C is initialized by the test before hsmux is, so hsmux meets
//! `CKR_CRYPTOKI_ALREADY_INITIALIZED` there and must share it.
//!
//! Slots of the hsmux configuration (all tokens made with softhsm2-util beforehand):
//!   0 "parity"  copy B, token "parity"   the parity scenario
//!   1 "cross"   copy B, token "cross"    deterministic outputs, cross verification
//!   2 "threads" copy B, token "threads"  three tokens at once
//!   3 "second"  copy C, token "second"   (a second token directory)
//!   4 "soft"    hsmux's soft token
//! The direct SoftHSM (the system library) has tokens "parity" and "cross" in directory A.

#![allow(
    clippy::macro_metavars_in_unsafe,
    clippy::type_complexity,
    clippy::too_many_arguments
)]
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/parity.rs"]
mod parity;
use common::*;
use cryptoki_sys::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

struct Setup {
    direct: Module,
    hsmux: Module,
    _second: Module,
}

// The modules' function tables are immutable C data; both libraries are thread-safe
// (initialized with CKF_OS_LOCKING_OK).
unsafe impl Sync for Setup {}
unsafe impl Send for Setup {}

static SETUP: OnceLock<Setup> = OnceLock::new();

fn softhsm_conf(dir: &Path, name: &str) -> PathBuf {
    let tokens = dir.join(format!("tokens-{name}"));
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join(format!("softhsm2-{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    conf
}

fn init_token(conf: &Path, label: &str) {
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", conf)
        .args(["--init-token", "--free", "--label", label])
        .args(["--so-pin", "12345678", "--pin", "1234"])
        .output()
        .expect("softhsm2-util (scripts/deps.sh installs softhsm2)");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token {label}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn setup() -> &'static Setup {
    SETUP.get_or_init(|| {
        assert!(
            Path::new(SOFTHSM).exists(),
            "{SOFTHSM} is missing: install SoftHSMv2 (scripts/deps.sh)"
        );
        let dir = std::env::temp_dir().join(format!("hsmux-compat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        remove_at_exit(&dir);
        let (a, b, c) = (
            softhsm_conf(&dir, "a"),
            softhsm_conf(&dir, "b"),
            softhsm_conf(&dir, "c"),
        );
        for l in ["parity", "cross"] {
            init_token(&a, l);
        }
        for l in ["parity", "cross", "threads"] {
            init_token(&b, l);
        }
        init_token(&c, "second");
        let copy_b = dir.join("behind-b.so");
        let copy_c = dir.join("behind-c.so");
        std::fs::copy(SOFTHSM, &copy_b).unwrap();
        std::fs::copy(SOFTHSM, &copy_c).unwrap();

        std::env::set_var("SOFTHSM2_CONF", &a);
        let direct = load_from(Path::new(SOFTHSM));
        assert_eq!(initialize(&direct), CKR_OK);
        std::env::set_var("SOFTHSM2_CONF", &c);
        let second = load_from(&copy_c);
        assert_eq!(initialize(&second), CKR_OK);
        std::env::set_var("SOFTHSM2_CONF", &b);

        let module = |label: &str, lib: &Path, token: &str| {
            format!(
                "[[slot]]\nlabel = \"{label}\"\nbackend = \"module\"\nlibrary = \"{}\"\ntoken = \"{token}\"\n\n",
                lib.display()
            )
        };
        let cfg = module("parity", &copy_b, "parity")
            + &module("cross", &copy_b, "cross")
            + &module("threads", &copy_b, "threads")
            + &module("second", &copy_c, "second")
            + &format!(
                "[[slot]]\nlabel = \"soft\"\nbackend = \"soft\"\npath = \"{}/soft\"\nkdf_iterations = 1000\n",
                dir.display()
            );
        std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
        let hsmux = load();
        assert_eq!(initialize(&hsmux), CKR_OK);
        Setup {
            direct,
            hsmux,
            _second: second,
        }
    })
}

#[test]
fn parity_scenario_gives_identical_results() {
    let s = setup();
    let theirs = parity::scenario(&s.direct, slot_labelled(&s.direct, "parity", true));
    let ours = parity::scenario(&s.hsmux, slot_labelled(&s.hsmux, "parity", true));
    assert_eq!(
        ours.0.len(),
        theirs.0.len(),
        "the scenario took another path"
    );
    assert!(
        theirs.0.len() > 200,
        "the scenario ran ({} steps)",
        theirs.0.len()
    );
    let mut table = String::new();
    let mut differ = 0;
    for ((step, got, is_rv), (_, want, _)) in ours.0.iter().zip(&theirs.0) {
        let mark = if got == want { "  " } else { "!!" };
        differ += (got != want) as usize;
        table += &format!(
            "{mark} {step:<55} behind hsmux {:<40} direct {}\n",
            parity::show(*got, *is_rv),
            parity::show(*want, *is_rv)
        );
    }
    println!("{table}");
    assert_eq!(differ, 0, "{differ} steps differ:\n{table}");
}

#[test]
fn token_slot_and_mechanism_info_are_the_vendors() {
    let s = setup();
    let (d, h) = (
        slot_labelled(&s.direct, "cross", true),
        slot_labelled(&s.hsmux, "cross", true),
    );
    let (mut td, mut th): (CK_TOKEN_INFO, CK_TOKEN_INFO) = unsafe { std::mem::zeroed() };
    assert_eq!(ck!(s.direct, C_GetTokenInfo(d, &mut td)), CKR_OK);
    assert_eq!(ck!(s.hsmux, C_GetTokenInfo(h, &mut th)), CKR_OK);
    assert_eq!(td.label, th.label, "hsmux's label is the token's here");
    assert_eq!(td.manufacturerID, th.manufacturerID);
    assert_eq!(td.model, th.model);
    assert_eq!(td.flags, th.flags);
    assert_eq!(
        (td.ulMinPinLen, td.ulMaxPinLen),
        (th.ulMinPinLen, th.ulMaxPinLen)
    );
    assert_eq!(td.ulMaxSessionCount, th.ulMaxSessionCount);
    assert_eq!(td.hardwareVersion.major, th.hardwareVersion.major);
    let (mut sd, mut sh): (CK_SLOT_INFO, CK_SLOT_INFO) = unsafe { std::mem::zeroed() };
    assert_eq!(ck!(s.direct, C_GetSlotInfo(d, &mut sd)), CKR_OK);
    assert_eq!(ck!(s.hsmux, C_GetSlotInfo(h, &mut sh)), CKR_OK);
    assert_eq!(sd.flags, sh.flags);
    assert_eq!(sd.manufacturerID, sh.manufacturerID);

    let list = |m: &Module, slot| {
        let mut n: CK_ULONG = 0;
        assert_eq!(
            ck!(m, C_GetMechanismList(slot, std::ptr::null_mut(), &mut n)),
            CKR_OK
        );
        let mut v = vec![0; n as usize];
        // One entry short: the vendor's CKR_BUFFER_TOO_SMALL and count come through.
        let mut short = n - 1;
        assert_eq!(
            ck!(m, C_GetMechanismList(slot, v.as_mut_ptr(), &mut short)),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(short, n);
        assert_eq!(
            ck!(m, C_GetMechanismList(slot, v.as_mut_ptr(), &mut n)),
            CKR_OK
        );
        v
    };
    let (ld, lh) = (list(&s.direct, d), list(&s.hsmux, h));
    assert_eq!(ld, lh, "the vendor's mechanisms, all of them and only them");
    assert!(ld.len() > 50, "SoftHSM lists its mechanisms ({})", ld.len());
    for mt in ld.iter().copied().chain([0x8000_1234, CKM_AES_XTS]) {
        let (mut id, mut ih): (CK_MECHANISM_INFO, CK_MECHANISM_INFO) =
            unsafe { std::mem::zeroed() };
        let rd = ck!(s.direct, C_GetMechanismInfo(d, mt, &mut id));
        let rh = ck!(s.hsmux, C_GetMechanismInfo(h, mt, &mut ih));
        assert_eq!(rd, rh, "C_GetMechanismInfo 0x{mt:x}");
        assert_eq!(
            (id.ulMinKeySize, id.ulMaxKeySize, id.flags),
            (ih.ulMinKeySize, ih.ulMaxKeySize, ih.flags),
            "mechanism 0x{mt:x}"
        );
    }
}

/// A user session on the "cross" token of each side.
fn cross_sessions(s: &Setup) -> (CK_SESSION_HANDLE, CK_SESSION_HANDLE) {
    let d = open(&s.direct, slot_labelled(&s.direct, "cross", true), true);
    let h = open(&s.hsmux, slot_labelled(&s.hsmux, "cross", true), true);
    for (m, sh) in [(&s.direct, d), (&s.hsmux, h)] {
        let rv = login(m, sh, CKU_USER, PIN);
        assert!(
            rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
            "{}",
            rv_name(rv)
        );
    }
    (d, h)
}

fn create(m: &Module, h: CK_SESSION_HANDLE, mut t: Template) -> CK_OBJECT_HANDLE {
    let mut o = 0;
    assert_rv!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut o)), CKR_OK);
    o
}

fn aes_key(value: &[u8]) -> Template {
    Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bytes(CKA_VALUE, value)
        .bool(CKA_ENCRYPT, true)
        .bool(CKA_DECRYPT, true)
        .bool(CKA_WRAP, true)
        .bool(CKA_UNWRAP, true)
        .bool(CKA_SIGN, true)
        .bool(CKA_VERIFY, true)
        .bool(CKA_EXTRACTABLE, true)
        .bool(CKA_SENSITIVE, false)
        .bytes(CKA_LABEL, b"compat-aes")
}

/// Runs a multi-part cipher: `Init`, `Update` per chunk, `Final`; returns the bytes.
fn multipart(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mut mc: CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
    encrypt: bool,
) -> Vec<u8> {
    let rv = if encrypt {
        ck!(m, C_EncryptInit(h, &mut mc, key))
    } else {
        ck!(m, C_DecryptInit(h, &mut mc, key))
    };
    assert_rv!(rv, CKR_OK);
    let mut out = Vec::new();
    for chunk in data.chunks(37) {
        let mut buf = vec![0u8; chunk.len() + 64];
        let mut n = buf.len() as CK_ULONG;
        let rv = if encrypt {
            ck!(
                m,
                C_EncryptUpdate(
                    h,
                    chunk.as_ptr() as *mut _,
                    chunk.len() as CK_ULONG,
                    buf.as_mut_ptr(),
                    &mut n
                )
            )
        } else {
            ck!(
                m,
                C_DecryptUpdate(
                    h,
                    chunk.as_ptr() as *mut _,
                    chunk.len() as CK_ULONG,
                    buf.as_mut_ptr(),
                    &mut n
                )
            )
        };
        assert_rv!(rv, CKR_OK);
        out.extend_from_slice(&buf[..n as usize]);
    }
    let mut buf = vec![0u8; 64];
    let mut n = buf.len() as CK_ULONG;
    let rv = if encrypt {
        ck!(m, C_EncryptFinal(h, buf.as_mut_ptr(), &mut n))
    } else {
        ck!(m, C_DecryptFinal(h, buf.as_mut_ptr(), &mut n))
    };
    assert_rv!(rv, CKR_OK);
    out.extend_from_slice(&buf[..n as usize]);
    out
}

#[test]
fn deterministic_mechanisms_give_identical_bytes() {
    let s = setup();
    let (d, h) = cross_sessions(s);
    let key = [0x5au8; 32];
    let kd = create(&s.direct, d, aes_key(&key));
    let kh = create(&s.hsmux, h, aes_key(&key));
    let data: Vec<u8> = (0..250u8).collect();
    let block = &data[..240];
    let iv = [7u8; 16];
    let ctr = CK_AES_CTR_PARAMS {
        ulCounterBits: 128,
        cb: [3u8; 16],
    };
    let both =
        |f: &dyn Fn(&Module, CK_SESSION_HANDLE, CK_OBJECT_HANDLE) -> Result<Vec<u8>, CK_RV>,
         what: &str| {
            let a = f(&s.direct, d, kd);
            let b = f(&s.hsmux, h, kh);
            assert_eq!(a, b, "{what}: direct and behind hsmux differ");
            assert!(
                a.is_ok(),
                "{what}: {:?}",
                a.as_ref().err().map(|rv| rv_name(*rv))
            );
            a
        };
    let ecb = both(
        &|m, sh, k| encrypt(m, sh, mech(CKM_AES_ECB), k, block),
        "AES-ECB",
    );
    assert_eq!(ecb.as_ref().map(|v| v.len()), Ok(240));
    both(
        &|m, sh, k| encrypt(m, sh, mech_with(CKM_AES_CBC, &mut iv.clone()), k, block),
        "AES-CBC",
    )
    .unwrap();
    let pad = both(
        &|m, sh, k| encrypt(m, sh, mech_with(CKM_AES_CBC_PAD, &mut iv.clone()), k, &data),
        "AES-CBC-PAD",
    )
    .unwrap();
    both(
        &|m, sh, k| decrypt(m, sh, mech_with(CKM_AES_CBC_PAD, &mut iv.clone()), k, &pad),
        "AES-CBC-PAD decrypt",
    )
    .map(|p| assert_eq!(p, data))
    .unwrap();
    both(
        &|m, sh, k| encrypt(m, sh, mech_with(CKM_AES_CTR, &mut ctr.clone()), k, &data),
        "AES-CTR",
    )
    .unwrap();
    let gcm = both(
        &|m, sh, k| {
            let (mut iv12, mut aad) = ([9u8; 12], *b"header");
            let mut p = gcm_params(&mut iv12, &mut aad, 128);
            encrypt(m, sh, mech_with(CKM_AES_GCM, &mut p), k, &data)
        },
        "AES-GCM",
    )
    .unwrap();
    assert_eq!(gcm.len(), data.len() + 16);
    both(
        &|m, sh, k| sign(m, sh, mech(CKM_AES_CMAC), k, &data),
        "AES-CMAC",
    )
    .unwrap();
    // Multi-part equals single-part, on both sides.
    for (m, sh, k) in [(&s.direct, d, kd), (&s.hsmux, h, kh)] {
        assert_eq!(
            multipart(
                m,
                sh,
                mech_with(CKM_AES_CBC_PAD, &mut iv.clone()),
                k,
                &data,
                true
            ),
            pad
        );
        assert_eq!(
            multipart(
                m,
                sh,
                mech_with(CKM_AES_CBC_PAD, &mut iv.clone()),
                k,
                &pad,
                false
            ),
            data
        );
    }

    // HMAC over the same generic secret.
    let hmac = |v: &[u8]| {
        Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
            .bytes(CKA_VALUE, v)
            .bool(CKA_SIGN, true)
            .bool(CKA_VERIFY, true)
    };
    // 64 bytes: SoftHSM wants at least the hash's output size for SHA-384/512.
    let hd = create(&s.direct, d, hmac(&[0x42; 64]));
    let hh = create(&s.hsmux, h, hmac(&[0x42; 64]));
    for mt in [
        CKM_SHA_1_HMAC,
        CKM_SHA256_HMAC,
        CKM_SHA384_HMAC,
        CKM_SHA512_HMAC,
    ] {
        let a = sign(&s.direct, d, mech(mt), hd, &data);

        let b = sign(&s.hsmux, h, mech(mt), hh, &data);
        assert_eq!(a, b, "HMAC 0x{mt:x}");
        assert!(a.is_ok(), "HMAC 0x{mt:x}");
        assert_rv!(
            verify(&s.hsmux, h, mech(mt), hh, &data, &a.unwrap()),
            CKR_OK
        );
    }
    // Digests, single- and multi-part.
    for mt in [
        CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384, CKM_SHA512, CKM_MD5,
    ] {
        let dig = |m: &Module, sh| {
            let mut mc = mech(mt);
            assert_rv!(ck!(m, C_DigestInit(sh, &mut mc)), CKR_OK);
            two_call(|p, n| {
                ck!(
                    m,
                    C_Digest(sh, data.as_ptr() as *mut _, data.len() as CK_ULONG, p, n)
                )
            })
        };
        let a = dig(&s.direct, d);
        assert!(a.is_ok(), "digest 0x{mt:x}");
        assert_eq!(a, dig(&s.hsmux, h), "digest 0x{mt:x}");
    }

    // Wrap on one side, unwrap on the other: the unwrapped key encrypts alike.
    let target = |v: &[u8]| aes_key(v).bytes(CKA_ID, b"target");
    let td = create(&s.direct, d, target(&[0x11; 16]));
    let th = create(&s.hsmux, h, target(&[0x11; 16]));
    let wrap = |m: &Module, sh, w, k| {
        two_call(|p, n| {
            let mut mc = mech(CKM_AES_KEY_WRAP);
            ck!(m, C_WrapKey(sh, &mut mc, w, k, p, n))
        })
    };
    let wd = wrap(&s.direct, d, kd, td).unwrap();
    let wh = wrap(&s.hsmux, h, kh, th).unwrap();
    assert_eq!(wd, wh, "AES key wrap (RFC 3394 is deterministic)");
    let mut unwrapped = 0;
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_ENCRYPT, true);
    let mut mc = mech(CKM_AES_KEY_WRAP);
    assert_rv!(
        ck!(
            s.hsmux,
            C_UnwrapKey(
                h,
                &mut mc,
                kh,
                wd.as_ptr() as *mut _,
                wd.len() as CK_ULONG,
                t.ptr(),
                t.len(),
                &mut unwrapped
            )
        ),
        CKR_OK
    );
    assert_eq!(
        encrypt(&s.hsmux, h, mech(CKM_AES_ECB), unwrapped, &[0u8; 16]),
        encrypt(&s.direct, d, mech(CKM_AES_ECB), td, &[0u8; 16])
    );
    for (m, sh) in [(&s.direct, d), (&s.hsmux, h)] {
        assert_rv!(ck!(m, C_CloseSession(sh)), CKR_OK);
    }
}

/// Generates a key pair on the direct side with its private half extractable, reads the
/// private key's attributes and creates the same key behind hsmux.
fn same_keypair(
    s: &Setup,
    d: CK_SESSION_HANDLE,
    h: CK_SESSION_HANDLE,
    mt: CK_MECHANISM_TYPE,
    public: Template,
    private_attrs: &[CK_ATTRIBUTE_TYPE],
    base: impl Fn() -> Template,
    id: &[u8],
) -> [(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE); 2] {
    let mut public = public.bytes(CKA_ID, id).bool(CKA_VERIFY, true);
    let mut private = Template::new()
        .bytes(CKA_ID, id)
        .bool(CKA_SIGN, true)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true);
    let (mut pd, mut sd) = (0, 0);
    let mut mc = mech(mt);
    assert_rv!(
        ck!(
            s.direct,
            C_GenerateKeyPair(
                d,
                &mut mc,
                public.ptr(),
                public.len(),
                private.ptr(),
                private.len(),
                &mut pd,
                &mut sd
            )
        ),
        CKR_OK
    );
    let mut priv_t = base()
        .ulong(CKA_CLASS, CKO_PRIVATE_KEY)
        .bytes(CKA_ID, id)
        .bool(CKA_SIGN, true);
    for a in private_attrs {
        priv_t = priv_t.bytes(*a, &get_attr(&s.direct, d, sd, *a).unwrap());
    }
    let sh = create(&s.hsmux, h, priv_t);
    let mut pub_t = base()
        .ulong(CKA_CLASS, CKO_PUBLIC_KEY)
        .bytes(CKA_ID, id)
        .bool(CKA_VERIFY, true);
    let public_attrs: &[CK_ATTRIBUTE_TYPE] = if mt == CKM_EC_KEY_PAIR_GEN {
        &[CKA_EC_PARAMS, CKA_EC_POINT]
    } else {
        &[CKA_MODULUS, CKA_PUBLIC_EXPONENT]
    };
    for a in public_attrs {
        pub_t = pub_t.bytes(*a, &get_attr(&s.direct, d, pd, *a).unwrap());
    }
    let ph = create(&s.hsmux, h, pub_t);
    [(pd, sd), (ph, sh)]
}

#[test]
fn signatures_verify_both_ways() {
    let s = setup();
    let (d, h) = cross_sessions(s);
    let msg = b"signed on one side, verified on the other";
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(msg).to_vec()
    };
    // ECDSA P-256 (randomized): each side verifies the other's signature; p256 checks both.
    let ec = || Template::new().ulong(CKA_KEY_TYPE, CKK_EC);
    let [(pd, sd), (ph, sh)] = same_keypair(
        s,
        d,
        h,
        CKM_EC_KEY_PAIR_GEN,
        Template::new().bytes(CKA_EC_PARAMS, P256_PARAMS),
        &[CKA_EC_PARAMS, CKA_VALUE],
        ec,
        b"ec-cross",
    );
    let point = ec_point(&get_attr(&s.hsmux, h, ph, CKA_EC_POINT).unwrap());
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    for (signer, verifier) in [
        ((&s.direct, d, sd), (&s.hsmux, h, ph)),
        ((&s.hsmux, h, sh), (&s.direct, d, pd)),
    ] {
        // SoftHSM offers raw CKM_ECDSA only: the SHA-256 is taken here.
        let sig = sign(signer.0, signer.1, mech(CKM_ECDSA), signer.2, &digest).unwrap();
        assert_eq!(sig.len(), 64);
        assert_rv!(
            verify(
                verifier.0,
                verifier.1,
                mech(CKM_ECDSA),
                verifier.2,
                &digest,
                &sig
            ),
            CKR_OK
        );
        let mut bad = sig.clone();
        bad[5] ^= 1;
        assert_rv!(
            verify(
                verifier.0,
                verifier.1,
                mech(CKM_ECDSA),
                verifier.2,
                &digest,
                &bad
            ),
            CKR_SIGNATURE_INVALID
        );
        use p256::ecdsa::signature::Verifier;
        vk.verify(msg, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
            .expect("p256 verifies the token's signature");
    }
    // RSA-2048 PKCS#1 v1.5 (deterministic): the same bytes; PSS verifies across.
    let rsa = || Template::new().ulong(CKA_KEY_TYPE, CKK_RSA);
    let [(pd, sd), (ph, sh)] = same_keypair(
        s,
        d,
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        Template::new()
            .ulong(CKA_MODULUS_BITS, 2048)
            .bytes(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
        &[
            CKA_MODULUS,
            CKA_PUBLIC_EXPONENT,
            CKA_PRIVATE_EXPONENT,
            CKA_PRIME_1,
            CKA_PRIME_2,
            CKA_EXPONENT_1,
            CKA_EXPONENT_2,
            CKA_COEFFICIENT,
        ],
        rsa,
        b"rsa-cross",
    );
    let a = sign(&s.direct, d, mech(CKM_SHA256_RSA_PKCS), sd, msg).unwrap();
    let b = sign(&s.hsmux, h, mech(CKM_SHA256_RSA_PKCS), sh, msg).unwrap();
    assert_eq!(a, b, "RSA PKCS#1 v1.5 signatures of one key are equal");
    assert_rv!(
        verify(&s.hsmux, h, mech(CKM_SHA256_RSA_PKCS), ph, msg, &a),
        CKR_OK
    );
    let n = get_attr(&s.hsmux, h, ph, CKA_MODULUS).unwrap();
    let pk = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&n),
        rsa::BigUint::from(65537u32),
    )
    .unwrap();
    use sha2::Digest;
    pk.verify(
        rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        &sha2::Sha256::digest(msg),
        &b,
    )
    .expect("rsa crate verifies hsmux's signature");
    let mut pss = CK_RSA_PKCS_PSS_PARAMS {
        hashAlg: CKM_SHA256,
        mgf: CKG_MGF1_SHA256,
        sLen: 32,
    };
    for (signer, verifier) in [
        ((&s.direct, d, sd), (&s.hsmux, h, ph)),
        ((&s.hsmux, h, sh), (&s.direct, d, pd)),
    ] {
        let sig = sign(
            signer.0,
            signer.1,
            mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut pss),
            signer.2,
            msg,
        )
        .unwrap();
        assert_rv!(
            verify(
                verifier.0,
                verifier.1,
                mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut pss),
                verifier.2,
                msg,
                &sig
            ),
            CKR_OK
        );
    }
    // OAEP: encrypted directly, decrypted behind hsmux.
    let mut oaep = CK_RSA_PKCS_OAEP_PARAMS {
        hashAlg: CKM_SHA_1,
        mgf: CKG_MGF1_SHA1,
        source: CKZ_DATA_SPECIFIED,
        pSourceData: std::ptr::null_mut(),
        ulSourceDataLen: 0,
    };
    let mut t = Template::new().bool(CKA_DECRYPT, true);
    assert_rv!(
        ck!(s.hsmux, C_SetAttributeValue(h, sh, t.ptr(), t.len())),
        CKR_OK
    );
    let ct = encrypt(
        &s.direct,
        d,
        mech_with(CKM_RSA_PKCS_OAEP, &mut oaep),
        pd,
        b"key material",
    )
    .unwrap();
    assert_eq!(
        decrypt(
            &s.hsmux,
            h,
            mech_with(CKM_RSA_PKCS_OAEP, &mut oaep),
            sh,
            &ct
        )
        .unwrap(),
        b"key material"
    );
    for (m, sh) in [(&s.direct, d), (&s.hsmux, h)] {
        assert_rv!(ck!(m, C_CloseSession(sh)), CKR_OK);
    }
}

#[test]
fn object_handles_of_two_vendor_instances_never_clash() {
    let s = setup();
    let m = &s.hsmux;
    let a = open(m, slot_labelled(m, "threads", true), true);
    let b = open(m, slot_labelled(m, "second", true), true);
    let data = |label: &[u8]| {
        Template::new()
            .ulong(CKA_CLASS, CKO_DATA)
            .bool(CKA_PRIVATE, false)
            .bytes(CKA_LABEL, label)
            .bytes(CKA_VALUE, label)
    };
    // Two SoftHSM instances number their objects alike; hsmux's handles differ.
    let (mut ha, mut hb) = (Vec::new(), Vec::new());
    for i in 0..5u8 {
        ha.push(create(m, a, data(&[b'a', i])));
        hb.push(create(m, b, data(&[b'b', i])));
    }
    for x in &ha {
        assert!(!hb.contains(x), "handle {x} is used by both slots");
        // A handle of the other slot is no object of this one (SoftHSM's own code for it).
        assert_eq!(
            get_attr(m, b, *x, CKA_LABEL),
            Err(CKR_OBJECT_HANDLE_INVALID)
        );
    }
    assert_eq!(get_attr(m, a, ha[3], CKA_VALUE).unwrap(), b"a\x03");
    assert_eq!(get_attr(m, b, hb[3], CKA_VALUE).unwrap(), b"b\x03");
    // Found objects carry the same handles as created ones; destroyed ones are gone.
    let found = find(m, a, &mut Template::new().ulong(CKA_CLASS, CKO_DATA));
    for x in &ha {
        assert!(found.contains(x));
    }
    assert_rv!(ck!(m, C_DestroyObject(a, ha[0])), CKR_OK);
    assert_eq!(
        get_attr(m, a, ha[0], CKA_LABEL),
        Err(CKR_OBJECT_HANDLE_INVALID)
    );
    assert_rv!(ck!(m, C_DestroyObject(b, ha[1])), CKR_OBJECT_HANDLE_INVALID);
    assert_eq!(get_attr(m, a, ha[1], CKA_VALUE).unwrap(), b"a\x01");
    // Session handles: the slot id in the session info is hsmux's.
    let mut si: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(ck!(m, C_GetSessionInfo(b, &mut si)), CKR_OK);
    assert_eq!(si.slotID, slot_labelled(m, "second", true));
    assert_eq!(si.state, CKS_RW_PUBLIC_SESSION);
    for h in [a, b] {
        assert_rv!(ck!(m, C_CloseSession(h)), CKR_OK);
        assert_rv!(ck!(m, C_CloseSession(h)), CKR_SESSION_HANDLE_INVALID);
    }
}

#[test]
fn two_softhsm_directories_and_the_soft_token_from_threads() {
    let s = setup();
    let m = &s.hsmux;
    let soft = slot_labelled(m, "soft", false);
    init_slot(m, soft);
    let slots = [
        slot_labelled(m, "threads", true),
        slot_labelled(m, "second", true),
        soft,
    ];
    std::thread::scope(|scope| {
        for (i, slot) in slots.iter().copied().enumerate() {
            for t in 0..2 {
                scope.spawn(move || {
                    let h = open(m, slot, true);
                    let rv = login(m, h, CKU_USER, PIN);
                    assert!(
                        rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
                        "{}",
                        rv_name(rv)
                    );
                    let id = [i as u8, t as u8];
                    let mut public = Template::new()
                        .bytes(CKA_EC_PARAMS, P256_PARAMS)
                        .bytes(CKA_ID, &id)
                        .bool(CKA_VERIFY, true);
                    let mut private = Template::new().bytes(CKA_ID, &id).bool(CKA_SIGN, true);
                    let (mut p, mut k) = (0, 0);
                    let mut mc = mech(CKM_EC_KEY_PAIR_GEN);
                    assert_rv!(
                        ck!(
                            m,
                            C_GenerateKeyPair(
                                h,
                                &mut mc,
                                public.ptr(),
                                public.len(),
                                private.ptr(),
                                private.len(),
                                &mut p,
                                &mut k
                            )
                        ),
                        CKR_OK
                    );
                    let point = ec_point(&get_attr(m, h, p, CKA_EC_POINT).unwrap());
                    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
                    for n in 0..40u32 {
                        let msg = format!("slot {slot} thread {t} message {n}");
                        let digest = {
                            use sha2::Digest;
                            sha2::Sha256::digest(msg.as_bytes())
                        };
                        let sig = sign(m, h, mech(CKM_ECDSA), k, &digest).unwrap();
                        use p256::ecdsa::signature::Verifier;
                        vk.verify(
                            msg.as_bytes(),
                            &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
                        )
                        .expect("signature verifies");
                        let mut rnd = [0u8; 32];
                        assert_rv!(ck!(m, C_GenerateRandom(h, rnd.as_mut_ptr(), 32)), CKR_OK);
                    }
                    assert_rv!(ck!(m, C_CloseSession(h)), CKR_OK);
                });
            }
        }
    });
}
