//! The audit trail's cost: ECDSA P-256 sign (C_SignInit + C_Sign) on the soft token with
//! `[audit]` off, on (`on_failure = "log"`, the line queued to the writer thread) and on
//! with `on_failure = "refuse"` (each C_Sign waits for its line to be written), for 1 and 2
//! threads. Three copies of libhsmux.so are loaded in one process, each with its own
//! configuration; the cells alternate between them over several rounds and the table
//! shows the median of each, so that the load of a shared machine falls on all three.
//!
//! Beside ops/s (wall clock), each cell's process CPU time (getrusage: the signing threads,
//! the writer thread, the kernel) per operation: on a shared machine that figure moves much
//! less than the wall-clock one, and with two signing threads on two cores it is what the
//! throughput ratio follows.
//!
//! Run: `cargo bench --bench audit` (after `cargo build --release`); BENCH_SECS per cell
//! (default 1), BENCH_ROUNDS (default 5).

mod common;
use common::*;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The process's CPU time so far (user + system, every thread).
fn cpu_time() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn main() {
    if listing() {
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = temp_dir();
    let built = format!("{root}/target/release/libhsmux.so");
    let variants = [
        ("off", ""),
        ("on", "[audit]\nfile = \"{t}/audit-on.jsonl\"\n"),
        (
            "refuse",
            "[audit]\nfile = \"{t}/audit-refuse.jsonl\"\non_failure = \"refuse\"\n",
        ),
    ];
    let mut modules: Vec<&'static Module> = Vec::new();
    for (name, audit) in variants {
        // A copy per configuration: dlopen of another path is another instance.
        let lib = tmp.join(format!("libhsmux-{name}.so"));
        std::fs::copy(&built, &lib).unwrap();
        let conf = tmp.join(format!("hsmux-{name}.toml"));
        std::fs::write(
            &conf,
            format!(
                "{}[[slot]]\nlabel = \"bench\"\nbackend = \"soft\"\npath = \"{}/soft-{name}\"\n",
                audit.replace("{t}", &tmp.display().to_string()),
                tmp.display()
            ),
        )
        .unwrap();
        std::env::set_var("HSMUX_CONFIG", &conf);
        let m: &'static Module = Box::leak(Box::new(Module::load(name, &lib.to_string_lossy())));
        check_signature(m);
        modules.push(m);
    }
    let secs = bench_secs();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!(
        "{secs} s per cell, {rounds} rounds, {} cores; median ops/s\n",
        cores()
    );
    println!(
        "| threads | off | on | on/off | refuse | refuse/off | CPU µs/op off | on | refuse | CPU off/on |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for threads in [1, 2] {
        let mut cells = vec![Vec::new(); modules.len()];
        let mut cpu = vec![Vec::new(); modules.len()];
        for _ in 0..rounds {
            for (i, m) in modules.iter().enumerate() {
                let before = cpu_time();
                let (n, t) = measure_count_warm(m, Op::Ecdsa, threads, secs);
                // The writer's last batch of the cell: written within its linger.
                std::thread::sleep(std::time::Duration::from_millis(20));
                cpu[i].push((cpu_time() - before) * 1e6 / n as f64);
                cells[i].push(n as f64 / t.as_secs_f64());
            }
        }
        let [off, on, refuse] = [0, 1, 2].map(|i| median(cells[i].clone()));
        let [c_off, c_on, c_refuse] = [0, 1, 2].map(|i| median(cpu[i].clone()));
        println!(
            "| {threads} | {off:.0} | {on:.0} | {:.3} | {refuse:.0} | {:.3} | {c_off:.2} | {c_on:.2} | {c_refuse:.2} | {:.3} |",
            on / off,
            refuse / off,
            c_off / c_on
        );
    }
    let lines =
        std::fs::read_to_string(tmp.join("audit-on.jsonl")).map_or(0, |t| t.lines().count());
    println!("\n{lines} lines in the 'on' trail");
    let _ = std::fs::remove_dir_all(&tmp);
}
