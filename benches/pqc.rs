//! ML-DSA-65 and ML-KEM-768 on the soft token through the C ABI (the 3.2 function list for
//! encapsulation) against the same operation called directly on aws-lc-rs, in one run.
//! Prints a table of microseconds per operation and hsmux's speed relative to direct
//! (target ≥ 0.9x). BENCH_ITERS sets the operations per row (default 300).
//!
//! Run: `cargo bench --bench pqc` (after `cargo build --release`).

#[path = "../tests/common/mod.rs"]
mod common;
use aws_lc_rs::kem::{Ciphertext, DecapsulationKey, ML_KEM_768};
use aws_lc_rs::signature::{
    KeyPair, PqdsaKeyPair, UnparsedPublicKey, ML_DSA_65, ML_DSA_65_SIGNING,
};

use common::*;
use cryptoki_sys::*;
use std::time::Instant;

/// Mean microseconds of `f` over `n` runs (after one warm-up run).
fn time(n: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn v32() -> &'static CK_FUNCTION_LIST_3_2 {
    let lib = unsafe { libloading::Library::new(module_path()) }.unwrap();
    let get: libloading::Symbol<CK_C_GetInterface> = unsafe { lib.get(b"C_GetInterface") }.unwrap();
    let mut name = *b"PKCS 11\0";
    let mut version = CK_VERSION { major: 3, minor: 2 };
    let mut iface: *mut CK_INTERFACE = std::ptr::null_mut();
    let rv = unsafe { get.unwrap()(name.as_mut_ptr(), &mut version, &mut iface, 0) };
    assert_eq!(rv, CKR_OK);
    std::mem::forget(lib);
    unsafe { &*((*iface).pFunctionList as *const CK_FUNCTION_LIST_3_2) }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let m = shared();
    let l = v32();
    let h = user_session(m, 0);
    let msg = [0x5au8; 256];
    let mut rows = Vec::new();

    // ML-DSA-65 sign and verify.
    let dsa = |set| Template::new().ulong(CKA_PARAMETER_SET, set);
    let (pubk, privk) = keypair(
        m,
        h,
        CKM_ML_DSA_KEY_PAIR_GEN,
        dsa(CKP_ML_DSA_65),
        Template::new(),
        b"b",
    );
    let direct = PqdsaKeyPair::generate(&ML_DSA_65_SIGNING).unwrap();
    let mut sig = vec![0u8; 3309];
    let hs = time(n, || {
        sig = sign(m, h, mech(CKM_ML_DSA), privk, &msg).unwrap();
    });
    let mut dsig = vec![0u8; 3309];
    let ds = time(n, || {
        direct.sign(&msg, &mut dsig).unwrap();
    });
    rows.push(("ML-DSA-65 sign", hs, ds));
    let hv = time(n, || {
        assert_eq!(verify(m, h, mech(CKM_ML_DSA), pubk, &msg, &sig), CKR_OK)
    });
    let pk = direct.public_key().as_ref().to_vec();
    let dv = time(n, || {
        UnparsedPublicKey::new(&ML_DSA_65, &pk)
            .verify(&msg, &dsig)
            .unwrap();
    });
    rows.push(("ML-DSA-65 verify", hv, dv));

    // ML-KEM-768 encapsulate and decapsulate (the shared secret becomes a session key).
    let (kpub, kpriv) = keypair(
        m,
        h,
        CKM_ML_KEM_KEY_PAIR_GEN,
        dsa(CKP_ML_KEM_768),
        Template::new(),
        b"k",
    );
    let mut ct = vec![0u8; 1088];
    let mut made = Vec::new();
    let he = time(n, || {
        let mut t = Template::new().ulong(CKA_CLASS, CKO_SECRET_KEY);
        let (mut mc, mut len, mut k) = (mech(CKM_ML_KEM), 1088, 0);
        let rv = unsafe {
            l.C_EncapsulateKey.unwrap()(
                h,
                &mut mc,
                kpub,
                t.ptr(),
                t.len(),
                ct.as_mut_ptr(),
                &mut len,
                &mut k,
            )
        };
        assert_eq!(rv, CKR_OK);
        made.push(k);
    });
    let dk = DecapsulationKey::generate(&ML_KEM_768).unwrap();
    let ek = dk.encapsulation_key().unwrap();
    let mut dct = Vec::new();
    let de = time(n, || {
        let (c, ss) = ek.encapsulate().unwrap();
        dct = c.as_ref().to_vec();
        std::hint::black_box(ss);
    });
    rows.push(("ML-KEM-768 encapsulate", he, de));
    let hd = time(n, || {
        let mut t = Template::new().ulong(CKA_CLASS, CKO_SECRET_KEY);
        let (mut mc, mut k) = (mech(CKM_ML_KEM), 0);
        let rv = unsafe {
            l.C_DecapsulateKey.unwrap()(
                h,
                &mut mc,
                kpriv,
                t.ptr(),
                t.len(),
                ct.as_mut_ptr(),
                1088,
                &mut k,
            )
        };
        assert_eq!(rv, CKR_OK);
        made.push(k);
    });
    let dd = time(n, || {
        std::hint::black_box(dk.decapsulate(Ciphertext::from(dct.as_slice())).unwrap());
    });
    rows.push(("ML-KEM-768 decapsulate", hd, dd));
    for k in made {
        ck!(m, C_DestroyObject(h, k));
    }

    println!("{n} operations per row, message 256 bytes\n");
    println!("| operation | hsmux µs/op | aws-lc-rs µs/op | hsmux/direct speed |");
    println!("|---|---:|---:|---:|");
    for (name, hsmux, direct) in rows {
        println!(
            "| {name} | {hsmux:.1} | {direct:.1} | {:.2}x |",
            direct / hsmux
        );
    }
}
