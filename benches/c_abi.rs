//! Side-by-side benchmark through the PKCS#11 C ABI: two modules loaded in one process and
//! driven by the same code, each operation for 1 and 2 threads. By default module A is
//! hsmux's soft token and module B is SoftHSMv2; set BENCH_MODULE_A / BENCH_MODULE_B to
//! other paths, BENCH_SECS for the time per cell (default 1).
//!
//! Run: `cargo bench --bench c_abi` (after `cargo build --release`).

mod common;
use common::*;

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
    std::env::set_var("SOFTHSM2_CONF", tmp.join("softhsm2.conf"));
    std::env::set_var("HSMUX_CONFIG", tmp.join("hsmux.toml"));
    let a_path = std::env::var("BENCH_MODULE_A")
        .unwrap_or_else(|_| format!("{root}/target/release/libhsmux.so"));
    let b_path = std::env::var("BENCH_MODULE_B")
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
    let secs = bench_secs();
    let a: &'static Module = Box::leak(Box::new(Module::load("A", &a_path)));
    let b: &'static Module = Box::leak(Box::new(Module::load("B", &b_path)));
    check_signature(a);
    check_signature(b);
    println!(
        "A = {a_path}\nB = {b_path}\n{secs} s per cell, {} cores\n",
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
        "| operation | threads | A ops/s | B ops/s | A/B |\n|---|---:|---:|---:|---:|\n",
    );
    println!(
        "{:<36} {:>7} {:>12} {:>12} {:>7}",
        "operation", "threads", "A ops/s", "B ops/s", "A/B"
    );
    for op in ops {
        for threads in [1, 2] {
            let ra = measure(a, op, threads, secs);
            let rb = measure(b, op, threads, secs);
            println!(
                "{:<36} {:>7} {:>12.0} {:>12.0} {:>6.2}x",
                op.name(),
                threads,
                ra,
                rb,
                ra / rb
            );
            md += &format!(
                "| {} | {} | {:.0} | {:.0} | {:.2}x |\n",
                op.name(),
                threads,
                ra,
                rb,
                ra / rb
            );
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
    println!("\n{md}");
    let _ = std::fs::remove_dir_all(&tmp);
}
