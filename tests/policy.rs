//! The key-use policy (docs/policy.md) through the C ABI on each kind of slot: the soft
//! token, SoftHSMv2 behind module slots and OpenBao transit (`bao server -dev`). Phase one
//! runs without a policy: tokens are set up, keys made, signatures taken and each slot's
//! mechanism list and flags recorded. The module is then finalized and initialized again
//! on the same stores with `[policy] hardware_only = true` and per-slot rules, and every
//! test checks refusals and their codes, the mechanism lists under `fips` against
//! `hsmux::policy::fips::TABLE` (the table docs/policy.md shows), `read_only` and `allow`.
//! Allowed signatures are verified with p256, outside the module.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use hsmux::policy::fips;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const MSG: &[u8; 32] = b"policy test message, 32 bytes.!!";

/// Each slot's label, backend table and its policy keys in phase two.
const SLOTS: &[(&str, &str, &str)] = &[
    ("soft-hw", "soft", ""),
    (
        "soft-fips",
        "soft",
        "hardware_only = false\napproved_mechanisms = \"fips\"",
    ),
    (
        "soft-ro",
        "soft",
        "hardware_only = false\nread_only = true\nallow = [\"sign\", \"verify\"]",
    ),
    ("hsm-sw", "module", "protection = \"software\""),
    (
        "hsm-fips",
        "module",
        "approved_mechanisms = \"fips\"\nread_only = true\nallow = [\"sign\", \"verify\"]",
    ),
    ("transit-sw", "vault", ""),
    (
        "transit-fips",
        "vault",
        "protection = \"hardware\"\napproved_mechanisms = \"fips\"\nallow = [\"sign\", \"verify\"]",
    ),
    (
        "transit-ro",
        "vault",
        "protection = \"hardware\"\nread_only = true",
    ),
];

struct World {
    m: Module,
    dir: PathBuf,
    /// Slot ids by label.
    slot: HashMap<&'static str, CK_SLOT_ID>,
    /// Phase one's mechanisms and their info flags, by label.
    before: HashMap<&'static str, Vec<(CK_MECHANISM_TYPE, CK_FLAGS)>>,
    /// Phase one's ECDSA signature of `MSG` with each slot's `ec` key.
    sig: HashMap<&'static str, Vec<u8>>,
}

fn config(dir: &Path, port: u16, policy: bool) -> PathBuf {
    let mut c = format!(
        "[log]\nlevel = \"warn\"\nfile = \"{}/hsmux.log\"\n\n",
        dir.display()
    );
    if policy {
        c += "[policy]\nhardware_only = true\n\n";
    }
    for (label, backend, rules) in SLOTS {
        let b = match *backend {
            "soft" => format!("path = \"{}/{label}\"\nkdf_iterations = 1000", dir.display()),
            "module" => format!("library = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken = \"{label}\""),
            _ => format!(
                "address = \"http://127.0.0.1:{port}\"\nauth = {{ method = \"token\", token = \"{}\" }}",
                bao::ROOT
            ),
        };
        let rules = if policy { rules } else { "" };
        c += &format!("[[slot]]\nlabel = \"{label}\"\nbackend = \"{backend}\"\n{b}\n{rules}\n\n");
    }
    let p = dir.join(if policy { "policy.toml" } else { "open.toml" });
    std::fs::write(&p, c).unwrap();
    p
}

fn mechanisms(m: &Module, slot: CK_SLOT_ID) -> Vec<(CK_MECHANISM_TYPE, CK_FLAGS)> {
    let mut n: CK_ULONG = 0;
    assert_rv!(
        ck!(m, C_GetMechanismList(slot, std::ptr::null_mut(), &mut n)),
        CKR_OK
    );
    let mut v = vec![0; n as usize];
    assert_rv!(
        ck!(m, C_GetMechanismList(slot, v.as_mut_ptr(), &mut n)),
        CKR_OK
    );
    assert_eq!(n as usize, v.len(), "the length query and the list agree");
    v.into_iter()
        .map(|mt| {
            let mut i: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
            assert_rv!(ck!(m, C_GetMechanismInfo(slot, mt, &mut i)), CKR_OK);
            (mt, i.flags)
        })
        .collect()
}

/// The object labelled `label` of class `class`.
fn object(
    m: &Module,
    h: CK_SESSION_HANDLE,
    label: &str,
    class: CK_OBJECT_CLASS,
) -> CK_OBJECT_HANDLE {
    let mut t = Template::new()
        .bytes(CKA_LABEL, label.as_bytes())
        .ulong(CKA_CLASS, class);
    let found = find(m, h, &mut t);
    assert_eq!(found.len(), 1, "one {label} of class {class}");
    found[0]
}

/// Phase one on a soft or module slot: the keys `ec`, `rsa` (of `bits`) and `aes`.
fn make_keys(m: &Module, h: CK_SESSION_HANDLE, bits: CK_ULONG) {
    let label = |t: Template, l: &str| t.bytes(CKA_LABEL, l.as_bytes());
    keypair(
        m,
        h,
        CKM_EC_KEY_PAIR_GEN,
        label(
            Template::new()
                .bytes(CKA_EC_PARAMS, P256_PARAMS)
                .bool(CKA_VERIFY, true),
            "ec",
        ),
        label(Template::new().bool(CKA_SIGN, true), "ec"),
        b"ec",
    );
    keypair(
        m,
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        label(
            Template::new()
                .ulong(CKA_MODULUS_BITS, bits)
                .bool(CKA_VERIFY, true)
                .bool(CKA_ENCRYPT, true),
            "rsa",
        ),
        label(
            Template::new().bool(CKA_SIGN, true).bool(CKA_DECRYPT, true),
            "rsa",
        ),
        b"rsa",
    );
    secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        label(
            Template::new()
                .ulong(CKA_VALUE_LEN, 32)
                .bool(CKA_TOKEN, true)
                .bool(CKA_ENCRYPT, true)
                .bool(CKA_DECRYPT, true),
            "aes",
        ),
    );
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hsmux-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        remove_at_exit(&dir);
        for (label, backend, _) in SLOTS {
            if *backend == "module" {
                let conf = softhsm_token(&dir, label, "12345678", "1234");
                std::env::set_var("SOFTHSM2_CONF", conf);
            }
        }
        let port = bao::start(
            &dir,
            &[
                ("ec", "ecdsa-p256"),
                ("aes", "aes256-gcm96"),
                ("ed", "ed25519"),
            ],
        );
        std::env::set_var("HSMUX_CONFIG", config(&dir, port, false));
        let m = load();
        assert_rv!(initialize(&m), CKR_OK);
        let mut slot = HashMap::new();
        let mut before = HashMap::new();
        let mut sig = HashMap::new();
        for (i, (label, backend, _)) in SLOTS.iter().enumerate() {
            let s = i as CK_SLOT_ID;
            slot.insert(*label, s);
            let h = match *backend {
                "soft" => user_session(&m, s),
                _ => {
                    let h = open(&m, s, true);
                    assert_rv!(login(&m, h, CKU_USER, PIN), CKR_OK, "{label}");
                    h
                }
            };
            // The soft slots' RSA key is 2048 bits (the fips rules checked below); SoftHSM's
            // 1024, for the legacy rules.
            match *backend {
                "soft" => make_keys(&m, h, 2048),
                "module" => make_keys(&m, h, 1024),
                _ => {}
            }
            let k = object(&m, h, "ec", CKO_PRIVATE_KEY);
            sig.insert(*label, sign(&m, h, mech(CKM_ECDSA), k, MSG).unwrap());
            before.insert(*label, mechanisms(&m, s));
            assert_rv!(ck!(m, C_CloseSession(h)), CKR_OK);
        }
        assert_rv!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
        std::env::set_var("HSMUX_CONFIG", config(&dir, port, true));
        assert_rv!(initialize(&m), CKR_OK);
        World {
            m,
            dir,
            slot,
            before,
            sig,
        }
    })
}

/// A logged-in read-only session on slot `label`.
fn session(w: &World, label: &str) -> CK_SESSION_HANDLE {
    let h = open(&w.m, w.slot[label], false);
    let rv = login(&w.m, h, CKU_USER, PIN);
    assert!(
        rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
        "{label}: {}",
        rv_name(rv)
    );
    h
}

/// Verifies an ECDSA P-256 signature of `MSG` outside the module.
fn p256_verifies(w: &World, h: CK_SESSION_HANDLE, sig: &[u8]) -> bool {
    let pubkey = object(&w.m, h, "ec", CKO_PUBLIC_KEY);
    let point = ec_point(&get_attr(&w.m, h, pubkey, CKA_EC_POINT).unwrap());
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(sig).unwrap();
    vk.verify_prehash(MSG, &sig).is_ok()
}

fn sign_init(
    w: &World,
    h: CK_SESSION_HANDLE,
    mt: CK_MECHANISM_TYPE,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    let mut mc = mech(mt);
    ck!(w.m, C_SignInit(h, &mut mc, key))
}

/// `C_EncryptInit` with AES-GCM (a zero IV: the token's choice on transit).
fn gcm_encrypt_init(w: &World, h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> CK_RV {
    let (mut iv, mut aad) = ([0u8; 12], [0u8; 0]);
    let mut p = gcm_params(&mut iv, &mut aad, 128);
    ck!(
        w.m,
        C_EncryptInit(h, &mut mech_with(CKM_AES_GCM, &mut p), key)
    )
}

fn log_text(w: &World) -> String {
    std::fs::read_to_string(w.dir.join("hsmux.log")).unwrap_or_default()
}

#[test]
fn hardware_only_refuses_private_and_secret_keys_of_software_slots_only() {
    let w = world();
    for label in ["soft-hw", "hsm-sw", "transit-sw"] {
        let h = session(w, label);
        let private = object(&w.m, h, "ec", CKO_PRIVATE_KEY);
        assert_rv!(
            sign_init(w, h, CKM_ECDSA, private),
            CKR_FUNCTION_REJECTED,
            "{label}"
        );
        let log = log_text(w);
        assert!(
            log.lines().any(|l| l.contains(&format!(
                "slot {label:?}: C_SignInit key {private} refused: hardware_only"
            )) && l.contains("CKR_FUNCTION_REJECTED")),
            "{label}: no log line naming the slot, key and reason in\n{log}"
        );
        // Verifying with the public key stays allowed, and still checks.
        let public = object(&w.m, h, "ec", CKO_PUBLIC_KEY);
        let good = &w.sig[label];
        assert_rv!(
            verify(&w.m, h, mech(CKM_ECDSA), public, MSG, good),
            CKR_OK,
            "{label}"
        );
        let mut bad = good.clone();
        bad[5] ^= 1;
        assert_rv!(
            verify(&w.m, h, mech(CKM_ECDSA), public, MSG, &bad),
            CKR_SIGNATURE_INVALID
        );
        // A secret key is refused for any use.
        let aes = object(&w.m, h, "aes", CKO_SECRET_KEY);
        let rv = gcm_encrypt_init(w, h, aes);
        assert_rv!(rv, CKR_FUNCTION_REJECTED, "{label}: AES");
        assert_rv!(ck!(w.m, C_CloseSession(h)), CKR_OK);
    }
    // Generation would make a software key.
    let h = open(&w.m, w.slot["soft-hw"], true);
    let mut t = Template::new().ulong(CKA_VALUE_LEN, 32);
    let (mut k, mut mc) = (0, mech(CKM_AES_KEY_GEN));
    let rv = ck!(w.m, C_GenerateKey(h, &mut mc, t.ptr(), t.len(), &mut k));
    assert_rv!(rv, CKR_FUNCTION_REJECTED);
    // A hardware slot under the same [policy] signs, and p256 accepts the signature.
    for label in ["hsm-fips", "transit-fips"] {
        let h = session(w, label);
        let private = object(&w.m, h, "ec", CKO_PRIVATE_KEY);
        let s = sign(&w.m, h, mech(CKM_ECDSA), private, MSG).unwrap();
        assert!(p256_verifies(w, h, &s), "{label}");
    }
}

/// The mechanisms a slot offers under `fips` with `allow`, from phase one's list and the
/// table: a mechanism stays when it has a row and keeps one of its functions.
fn expected(before: &[(CK_MECHANISM_TYPE, CK_FLAGS)], allow: CK_FLAGS) -> Vec<CK_MECHANISM_TYPE> {
    before
        .iter()
        .filter(|(mt, flags)| {
            fips::TABLE
                .iter()
                .any(|r| r.mech == *mt && !r.conditional && flags & r.functions & allow != 0)
        })
        .map(|(mt, _)| *mt)
        .collect()
}

#[test]
fn fips_slots_offer_exactly_the_tables_mechanisms() {
    let w = world();
    let sign_verify = CKF_SIGN | CKF_VERIFY | CKF_GENERATE | CKF_GENERATE_KEY_PAIR | CKF_DIGEST;
    for (label, allow) in [
        ("soft-fips", fips::FUNCTIONS),
        ("hsm-fips", sign_verify),
        ("transit-fips", sign_verify),
    ] {
        // Logged in, as in phase one (a remote slot lists key generation once it knows
        // its credentials allow it).
        let _h = session(w, label);
        let before = &w.before[label];
        let now: Vec<_> = mechanisms(&w.m, w.slot[label])
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        let want = expected(before, allow);
        assert!(
            !want.is_empty() && want.len() < before.len(),
            "{label}: {want:?}"
        );
        assert_eq!(now, want, "{label}: the mechanism list under fips");
        for (mt, _) in before.iter().filter(|(mt, _)| !want.contains(mt)) {
            let mut i: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
            let rv = ck!(w.m, C_GetMechanismInfo(w.slot[label], *mt, &mut i));
            assert_rv!(rv, CKR_MECHANISM_INVALID, "{label}: 0x{mt:x}");
        }
    }
    // Without fips the list is the key store's.
    for label in ["soft-hw", "hsm-sw", "transit-sw"] {
        let _h = session(w, label);
        assert_eq!(mechanisms(&w.m, w.slot[label]), w.before[label], "{label}");
    }
    // CKM_RSA_PKCS signs but does not encrypt under fips.
    let mut i: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(
        ck!(
            w.m,
            C_GetMechanismInfo(w.slot["soft-fips"], CKM_RSA_PKCS, &mut i)
        ),
        CKR_OK
    );
    assert_eq!(
        i.flags & (CKF_ENCRYPT | CKF_DECRYPT | CKF_WRAP | CKF_UNWRAP),
        0
    );
    assert_ne!(i.flags & CKF_SIGN, 0);
}

#[test]
fn docs_show_the_fips_table() {
    let page = include_str!("../docs/policy.md");
    let table = fips::markdown();
    assert!(
        page.contains(&table),
        "docs/policy.md should hold:\n{table}"
    );
}

/// `C_GenerateKeyPair` with this public template (and a private one that signs).
fn generate_pair(
    w: &World,
    h: CK_SESSION_HANDLE,
    mt: CK_MECHANISM_TYPE,
    mut public: Template,
) -> CK_RV {
    let mut private = Template::new().bool(CKA_SIGN, true);
    try_keypair(&w.m, h, mt, &mut public, &mut private).0
}

#[test]
fn fips_refuses_unapproved_mechanisms_parameters_and_sizes() {
    let w = world();
    let secp256k1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
    let h = open(&w.m, w.slot["soft-fips"], true);
    // The tests share the module: another one may have logged in on this slot already.
    let rv = login(&w.m, h, CKU_USER, PIN);
    assert!(
        rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
        "{}",
        rv_name(rv)
    );
    let rsa = object(&w.m, h, "rsa", CKO_PRIVATE_KEY);
    let rsa_pub = object(&w.m, h, "rsa", CKO_PUBLIC_KEY);
    let ec = object(&w.m, h, "ec", CKO_PRIVATE_KEY);
    assert_rv!(sign_init(w, h, CKM_ECDSA_SHA1, ec), CKR_MECHANISM_INVALID);
    assert_rv!(
        sign_init(w, h, CKM_SHA1_RSA_PKCS, rsa),
        CKR_MECHANISM_INVALID
    );
    let mut pss = CK_RSA_PKCS_PSS_PARAMS {
        hashAlg: CKM_SHA_1,
        mgf: CKG_MGF1_SHA1,
        sLen: 20,
    };
    let rv = ck!(
        w.m,
        C_SignInit(h, &mut mech_with(CKM_RSA_PKCS_PSS, &mut pss), rsa)
    );
    assert_rv!(rv, CKR_MECHANISM_PARAM_INVALID);
    let rv = ck!(w.m, C_EncryptInit(h, &mut mech(CKM_RSA_PKCS), rsa_pub));
    assert_rv!(rv, CKR_MECHANISM_INVALID, "PKCS#1 v1.5 encryption");
    let s = sign(&w.m, h, mech(CKM_SHA256_RSA_PKCS), rsa, MSG).unwrap();
    assert_rv!(
        verify(&w.m, h, mech(CKM_SHA256_RSA_PKCS), rsa_pub, MSG, &s),
        CKR_OK
    );
    // RSA-1024 generation (which the soft token offers) is refused by the policy.
    let small = Template::new().ulong(CKA_MODULUS_BITS, 1024);
    assert_rv!(
        generate_pair(w, h, CKM_RSA_PKCS_KEY_PAIR_GEN, small),
        CKR_KEY_SIZE_RANGE
    );
    assert!(log_text(w).contains("slot \"soft-fips\": C_GenerateKeyPair refused: 1024 modulus bits is below the FIPS minimum of 2048"));
    let k1 = Template::new().bytes(CKA_EC_PARAMS, secp256k1);
    assert_rv!(
        generate_pair(w, h, CKM_EC_KEY_PAIR_GEN, k1),
        CKR_CURVE_NOT_SUPPORTED
    );
    let ed = Template::new().bytes(CKA_EC_PARAMS, ED25519_PARAMS);
    assert_rv!(
        generate_pair(w, h, CKM_EC_EDWARDS_KEY_PAIR_GEN, ed),
        CKR_MECHANISM_INVALID
    );
    let p256 = Template::new().bytes(CKA_EC_PARAMS, P256_PARAMS);
    assert_rv!(generate_pair(w, h, CKM_EC_KEY_PAIR_GEN, p256), CKR_OK);
    let s = sign(&w.m, h, mech(CKM_ECDSA), ec, MSG).unwrap();
    assert!(p256_verifies(w, h, &s));
    // The module slot: the vendor's RSA-1024 key, SHA-1 ECDSA.
    let h = session(w, "hsm-fips");
    let rsa = object(&w.m, h, "rsa", CKO_PRIVATE_KEY);
    assert_rv!(
        sign_init(w, h, CKM_SHA256_RSA_PKCS, rsa),
        CKR_KEY_SIZE_RANGE
    );
    let ec = object(&w.m, h, "ec", CKO_PRIVATE_KEY);
    assert_rv!(sign_init(w, h, CKM_ECDSA_SHA1, ec), CKR_MECHANISM_INVALID);
    // Transit: Ed25519 is not offered without `fips_extra`.
    let h = session(w, "transit-fips");
    let ed = object(&w.m, h, "ed", CKO_PRIVATE_KEY);
    assert_rv!(sign_init(w, h, CKM_EDDSA, ed), CKR_MECHANISM_INVALID);
}

#[test]
fn read_only_and_allow_on_soft_module_and_transit_slots() {
    let w = world();
    for label in ["soft-ro", "hsm-fips", "transit-ro"] {
        let s = w.slot[label];
        let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
        assert_rv!(ck!(w.m, C_GetTokenInfo(s, &mut ti)), CKR_OK);
        assert_ne!(ti.flags & CKF_WRITE_PROTECTED, 0, "{label}");
        let mut h = 0;
        let rw = CKF_SERIAL_SESSION | CKF_RW_SESSION;
        let rv = ck!(
            w.m,
            C_OpenSession(s, rw, std::ptr::null_mut(), None, &mut h)
        );
        assert_rv!(rv, CKR_TOKEN_WRITE_PROTECTED, "{label}: R/W session");
        let h = session(w, label);
        let mut data = Template::new()
            .ulong(CKA_CLASS, CKO_DATA)
            .bytes(CKA_VALUE, b"x");
        let mut o = 0;
        let rv = ck!(w.m, C_CreateObject(h, data.ptr(), data.len(), &mut o));
        assert_rv!(rv, CKR_TOKEN_WRITE_PROTECTED, "{label}: C_CreateObject");
        let public = object(&w.m, h, "ec", CKO_PUBLIC_KEY);
        let mut t = Template::new().bytes(CKA_LABEL, b"renamed");
        let rv = ck!(w.m, C_SetAttributeValue(h, public, t.ptr(), t.len()));
        assert_rv!(
            rv,
            CKR_TOKEN_WRITE_PROTECTED,
            "{label}: C_SetAttributeValue"
        );
        assert_rv!(
            ck!(w.m, C_DestroyObject(h, public)),
            CKR_TOKEN_WRITE_PROTECTED
        );
        let mut gen = Template::new()
            .bytes(CKA_LABEL, b"new")
            .ulong(CKA_VALUE_LEN, 32);
        let mut k = 0;
        let rv = ck!(
            w.m,
            C_GenerateKey(h, &mut mech(CKM_AES_KEY_GEN), gen.ptr(), gen.len(), &mut k)
        );
        assert_rv!(rv, CKR_TOKEN_WRITE_PROTECTED, "{label}: C_GenerateKey");
        if label != "transit-ro" {
            // allow = ["sign", "verify"]: AES is neither.
            let aes = object(&w.m, h, "aes", CKO_SECRET_KEY);
            let rv = ck!(w.m, C_DecryptInit(h, &mut mech(CKM_AES_ECB), aes));
            assert_rv!(rv, CKR_KEY_FUNCTION_NOT_PERMITTED, "{label}: decrypt");
        }
        let ec = object(&w.m, h, "ec", CKO_PRIVATE_KEY);
        let sig = sign(&w.m, h, mech(CKM_ECDSA), ec, MSG).unwrap();
        assert!(p256_verifies(w, h, &sig), "{label}");
        assert_eq!(object(&w.m, h, "ec", CKO_PUBLIC_KEY), public, "still there");
    }
    let h = session(w, "transit-fips");
    let aes = object(&w.m, h, "aes", CKO_SECRET_KEY);
    let rv = gcm_encrypt_init(w, h, aes);
    assert_rv!(rv, CKR_KEY_FUNCTION_NOT_PERMITTED, "transit: encrypt");
    // An unrestricted slot is writable.
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(ck!(w.m, C_GetTokenInfo(w.slot["soft-hw"], &mut ti)), CKR_OK);
    assert_eq!(ti.flags & CKF_WRITE_PROTECTED, 0);
}

#[test]
fn hsmux_check_shows_each_slots_protection_and_policy() {
    let w = world();
    let out = Command::new(env!("CARGO_BIN_EXE_hsmux"))
        .args(["check", "--config"])
        .arg(w.dir.join("policy.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "protection software (hsmux's soft token keeps its keys in software); policy: hardware_only\n",
        "protection software (set by `protection` in the slot); policy: hardware_only\n",
        "protection hardware (a vendor PKCS#11 library is taken for an HSM (set `protection = \"software\"` for a software one)); policy: hardware_only, approved_mechanisms = fips, read_only, allow = [sign, verify]\n",
        "protection software (transit keys are not known to be HSM-backed (set `protection = \"hardware\"` if they are)); policy: hardware_only\n",
        "protection software (hsmux's soft token keeps its keys in software); policy: approved_mechanisms = fips\n",
        "protection software (hsmux's soft token keeps its keys in software); policy: read_only, allow = [sign, verify]\n",
        "protection hardware (set by `protection` in the slot); policy: hardware_only, approved_mechanisms = fips, allow = [sign, verify]\n",
    ] {
        assert!(text.contains(want), "hsmux check lacks {want:?}:\n{text}");
    }
}

#[test]
fn policy_keys_are_checked_when_the_file_is_read() {
    use hsmux::config::Config;
    let soft = "[[slot]]\nlabel = \"s\"\nbackend = \"soft\"\npath = \"/tmp/x\"\n";
    let err = |extra: &str| Config::parse(&format!("{soft}{extra}"), "t").unwrap_err().0;
    assert!(err("protection = \"hardware\"\n").contains("a soft token's keys live in software"));
    assert!(err("allow = [\"sigh\"]\n").contains("unknown variant `sigh`"));
    assert!(err("approved_mechanisms = \"fips-ish\"\n").contains("unknown variant"));
    let c = Config::parse(&format!("{soft}fips_extra = [\"CKM_ECDSA\"]\n"), "t").unwrap();
    let e = hsmux::policy::build(&c).unwrap_err();
    assert!(e.contains("\"CKM_ECDSA\" is not a conditional row"), "{e}");
    let c = Config::parse(&format!("[policy]\nhardware_only = true\n{soft}fips_extra = [\"CKM_EDDSA\"]\napproved_mechanisms = \"fips\"\n"), "t").unwrap();
    let r = &hsmux::policy::build(&c).unwrap()[0];
    assert!(r.hardware_only && r.fips && r.extra == [CKM_EDDSA]);
    assert!(fips::row(CKM_EDDSA, &r.extra).is_some() && fips::row(CKM_EDDSA, &[]).is_none());
}
