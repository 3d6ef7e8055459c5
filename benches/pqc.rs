//! ML-DSA-65 and ML-KEM-768 on the soft token through the C ABI (the 3.2 function list for
//! encapsulation) against the same operation called directly on aws-lc-rs, in one run.
//! Prints a table of microseconds per operation and hsmux's speed relative to direct
//! (target ≥ 0.9x). BENCH_ITERS sets the operations per row (default 300). hsmux's and the
//! direct runs alternate in batches, and each side's CPU time (the calling thread's) is
//! shown next to the wall-clock ratio: on a busy machine the wall clock also counts the
//! other processes' time slices, which fall unevenly on the two sides.
//!
//! BENCH_ROWS=kem (any part of a row's name, case-insensitive) runs only the matching
//! rows, e.g. to profile one operation with `perf record`.
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

/// This thread's CPU time in microseconds: what a row costs with other processes taking
/// turns on the cores (wall time counts their slices too).
fn cpu_us() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e6 + t.tv_nsec as f64 / 1e3
}

/// One row: `n` runs of hsmux's operation and `n` of the direct one, in alternating
/// batches (so that a change of machine load falls on both), after a warm-up run of each.
/// Mean microseconds per operation, CPU and wall: (hsmux, direct) each.
struct Row {
    name: &'static str,
    cpu: (f64, f64),
    wall: (f64, f64),
}

/// Whether BENCH_ROWS (absent: every row) selects the row `name`.
fn selected(name: &str) -> bool {
    std::env::var("BENCH_ROWS")
        .map(|f| name.to_lowercase().contains(&f.to_lowercase()))
        .unwrap_or(true)
}

fn compare(
    name: &'static str,
    n: usize,
    mut hsmux: impl FnMut(),
    mut direct: impl FnMut(),
) -> Option<Row> {
    const BATCH: usize = 25;
    if !selected(name) {
        return None;
    }
    hsmux();
    direct();
    let (mut cpu, mut wall) = ((0.0, 0.0), (0.0, 0.0));
    let mut done = 0;
    while done < n {
        let k = BATCH.min(n - done);
        for (f, c, w) in [
            (&mut hsmux as &mut dyn FnMut(), &mut cpu.0, &mut wall.0),
            (&mut direct as &mut dyn FnMut(), &mut cpu.1, &mut wall.1),
        ] {
            let (c0, w0) = (cpu_us(), Instant::now());
            for _ in 0..k {
                f();
            }
            *c += cpu_us() - c0;
            *w += w0.elapsed().as_secs_f64() * 1e6;
        }
        done += k;
    }
    let per = |(a, b): (f64, f64)| (a / n as f64, b / n as f64);
    Some(Row {
        name,
        cpu: per(cpu),
        wall: per(wall),
    })
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
    let l = interface_32(&module_path());
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
    let pk = direct.public_key().as_ref().to_vec();
    // Made before the rows, so that BENCH_ROWS=verify has a signature to check.
    let mut sig = sign(m, h, mech(CKM_ML_DSA), privk, &msg).unwrap();
    let mut dsig = vec![0u8; 3309];
    direct.sign(&msg, &mut dsig).unwrap();
    rows.push(compare(
        "ML-DSA-65 sign",
        n,
        || sig = sign(m, h, mech(CKM_ML_DSA), privk, &msg).unwrap(),
        || {
            direct.sign(&msg, &mut dsig).unwrap();
        },
    ));
    rows.push(compare(
        "ML-DSA-65 verify",
        n,
        || assert_eq!(verify(m, h, mech(CKM_ML_DSA), pubk, &msg, &sig), CKR_OK),
        || {
            UnparsedPublicKey::new(&ML_DSA_65, &pk)
                .verify(&msg, &dsig)
                .unwrap()
        },
    ));

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
    let dk = DecapsulationKey::generate(&ML_KEM_768).unwrap();
    let ek = dk.encapsulation_key().unwrap();
    let mut dct = Vec::new();
    let mut encapsulate = || {
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
    };
    let mut direct_encapsulate = || {
        let (c, ss) = ek.encapsulate().unwrap();
        dct = c.as_ref().to_vec();
        std::hint::black_box(ss);
    };
    // Once before the rows, so that BENCH_ROWS=decapsulate has ciphertexts to open.
    encapsulate();
    direct_encapsulate();
    rows.push(compare(
        "ML-KEM-768 encapsulate",
        n,
        &mut encapsulate,
        &mut direct_encapsulate,
    ));
    rows.push(compare(
        "ML-KEM-768 decapsulate",
        n,
        || {
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
        },
        || {
            std::hint::black_box(dk.decapsulate(Ciphertext::from(dct.as_slice())).unwrap());
        },
    ));
    for k in made {
        ck!(m, C_DestroyObject(h, k));
    }

    println!("{n} operations per row (alternating batches of 25), message 256 bytes\n");
    println!("| operation | hsmux µs/op (CPU) | aws-lc-rs µs/op (CPU) | hsmux/direct (CPU) | hsmux/direct (wall) |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows.into_iter().flatten() {
        println!(
            "| {} | {:.1} | {:.1} | {:.2}x | {:.2}x |",
            r.name,
            r.cpu.0,
            r.cpu.1,
            r.cpu.1 / r.cpu.0,
            r.wall.1 / r.wall.0
        );
    }
}
