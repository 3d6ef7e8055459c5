//! Side-by-side benchmark through the PKCS#11 C ABI: hsmux's soft token, SoftHSMv2 and
//! kryoptic (the Rust soft token) loaded in one process and driven by the same code, each
//! operation for 1 and 2 threads; and, for RSA-2048 and ECDSA P-256, the crypto library
//! (aws-lc-rs) called directly in the same run, the limit any module on this machine has.
//!
//! Module A is hsmux, B SoftHSMv2, C kryoptic; BENCH_MODULE_A / _B / _C name other
//! libraries. Kryoptic is built by this bench (`kryoptic.rs`) unless BENCH_MODULE_C is set;
//! when it cannot be built, its column is left out and the reason printed. BENCH_SECS sets
//! the time per cell (default 1).
//!
//! Run: `cargo bench --bench c_abi` (after `cargo build --release`).

mod common;
#[path = "common/kryoptic.rs"]
mod kryoptic;
use aws_lc_rs::{digest, rand, rsa, signature};
use common::*;
use std::time::{Duration, Instant};

/// The operations measured directly against aws-lc-rs.
#[derive(Clone, Copy)]
enum Direct {
    Rsa,
    Ecdsa,
}

/// Signatures per second made by `threads` threads calling aws-lc-rs directly, as the soft
/// token does for the same rows (RSA-2048 PKCS#1 v1.5 SHA-256 over 32 bytes; ECDSA P-256
/// over a 32-byte digest). The keys are made before the clock starts.
fn direct(op: Direct, threads: usize, secs: f64) -> f64 {
    let rng = rand::SystemRandom::new();
    let rsa = signature::RsaKeyPair::generate(rsa::KeySize::Rsa2048).unwrap();
    let ec =
        signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let data = [0x5au8; 32];
    let d = digest::Digest::import_less_safe(&data, &digest::SHA256).unwrap();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let total: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut sig = vec![0u8; rsa.public_modulus_len()];
                    let mut n = 0u64;
                    while Instant::now() < end {
                        match op {
                            Direct::Rsa => rsa
                                .sign(&signature::RSA_PKCS1_SHA256, &rng, &data, &mut sig)
                                .unwrap(),
                            Direct::Ecdsa => drop(ec.sign_digest(&d).unwrap()),
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    if listing() {
        return; // `cargo bench -- --list` asks which benches exist
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = temp_dir();
    write_softhsm_conf(&tmp.join("softhsm2.conf"), &tmp.join("softhsm"));
    std::fs::write(
        tmp.join("hsmux.toml"),
        format!(
            "[[slot]]\nlabel = \"bench\"\nbackend = \"soft\"\npath = \"{}/soft\"\n",
            tmp.display()
        ),
    )
    .unwrap();
    kryoptic::write_conf(&tmp);
    std::env::set_var("SOFTHSM2_CONF", tmp.join("softhsm2.conf"));
    std::env::set_var("HSMUX_CONFIG", tmp.join("hsmux.toml"));
    let a_path = std::env::var("BENCH_MODULE_A")
        .unwrap_or_else(|_| format!("{root}/target/release/libhsmux.so"));
    let b_path = std::env::var("BENCH_MODULE_B")
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
    let c_path = std::env::var("BENCH_MODULE_C").or_else(|_| kryoptic::build(root));
    let secs = bench_secs();
    let a: &'static Module = Box::leak(Box::new(Module::load("A", &a_path)));
    let b: &'static Module = Box::leak(Box::new(Module::load("B", &b_path)));
    check_signature(a);
    check_signature(b);
    let c: Option<&'static Module> = match &c_path {
        Ok(p) => {
            let c: &'static Module = Box::leak(Box::new(Module::load("C", p)));
            check_signature(c);
            Some(c)
        }
        Err(why) => {
            println!("kryoptic: not measured: {why}\n");
            None
        }
    };
    println!(
        "A = {a_path}\nB = {b_path}\nC = {}\n{secs} s per cell, {} cores\n",
        c_path.as_deref().unwrap_or("-"),
        cores()
    );
    let ops = [
        Op::Ecdsa,
        Op::Gcm(1024),
        Op::Gcm(64 * 1024),
        Op::Hmac,
        Op::Rsa,
        Op::Random,
        Op::SessionInfo,
        Op::Find,
    ];
    let mut md = String::from(
        "| operation | threads | hsmux ops/s | SoftHSM ops/s | kryoptic ops/s | hsmux/SoftHSM | hsmux/kryoptic |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut limits = String::from(
        "| operation | threads | aws-lc-rs direct ops/s | hsmux ops/s | hsmux/direct |\n|---|---:|---:|---:|---:|\n",
    );
    println!(
        "{:<36} {:>7} {:>12} {:>12} {:>12} {:>7} {:>7}",
        "operation", "threads", "A ops/s", "B ops/s", "C ops/s", "A/B", "A/C"
    );
    for op in ops {
        for threads in [1, 2] {
            let ra = measure(a, op, threads, secs);
            let rb = measure(b, op, threads, secs);
            let rc = c.map(|c| measure(c, op, threads, secs));
            let (c_ops, a_c) = match rc {
                Some(rc) => (format!("{rc:.0}"), format!("{:.2}x", ra / rc)),
                None => ("-".into(), "-".into()),
            };
            println!(
                "{:<36} {:>7} {:>12.0} {:>12.0} {:>12} {:>6.2}x {:>7}",
                op.name(),
                threads,
                ra,
                rb,
                c_ops,
                ra / rb,
                a_c
            );
            md += &format!(
                "| {} | {threads} | {ra:.0} | {rb:.0} | {c_ops} | {:.2}x | {a_c} |\n",
                op.name(),
                ra / rb
            );
            let limit = match op {
                Op::Rsa => Some(Direct::Rsa),
                Op::Ecdsa => Some(Direct::Ecdsa),
                _ => None,
            };
            if let Some(d) = limit {
                let rd = direct(d, threads, secs);
                println!(
                    "{:<36} {:>7} {:>12.0} {:>12} {:>12} {:>6.2}x  (hsmux / aws-lc-rs direct)",
                    "  aws-lc-rs direct",
                    threads,
                    rd,
                    "",
                    "",
                    ra / rd
                );
                limits += &format!(
                    "| {} | {threads} | {rd:.0} | {ra:.0} | {:.2}x |\n",
                    op.name(),
                    ra / rd
                );
            }
            if matches!(op, Op::SessionInfo) && threads == 1 {
                println!(
                    "{:<36} {:>7} {:>10.3}us {:>10.3}us",
                    "  (per call)",
                    "",
                    1e6 / ra,
                    1e6 / rb
                );
            }
        }
    }
    println!("\n{md}\n{limits}");
    let _ = std::fs::remove_dir_all(&tmp);
}
