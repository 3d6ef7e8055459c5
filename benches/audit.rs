//! The audit trail's cost: ECDSA P-256 sign (C_SignInit + C_Sign) on the soft token with
//! `[audit]` off, on (`on_failure = "log"`, the line queued to the writer thread) and on
//! with `on_failure = "refuse"` (each C_Sign waits for its line to be written), for 1 and 2
//! threads. Three copies of libhsmux.so are loaded in one process, each with its own
//! configuration. Each round runs one cell of each, back to back, in an order that turns
//! from round to round; a ratio is taken within each round (on/off of the same round) and
//! the table shows its median over the rounds, with the middle half of the rounds' ratios
//! beside it. On a shared machine whose speed drifts from second to second (this
//! project's 2-core VM: ±10 % between cells a few seconds apart), a ratio of cells run
//! side by side moves far less than a ratio of each variant's median.
//!
//! Beside ops/s (wall clock), each cell's process CPU time (getrusage: the signing threads,
//! the writer thread, the kernel) per operation: on a shared machine that figure moves much
//! less than the wall-clock one, and with two signing threads on two cores it is what the
//! throughput ratio follows.
//!
//! Run: `cargo bench --bench audit` (after `cargo build --release`); BENCH_SECS per cell
//! (default 0.5), BENCH_ROUNDS (default 15).

mod common;
use common::*;

/// The `q` quantile of `v` (0.5: the median), the nearest rank.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// "median [first quartile-third quartile]".
fn spread(v: &[f64]) -> String {
    let at = |q| quantile(v, q);
    format!("{:.3} [{:.3}-{:.3}]", at(0.5), at(0.25), at(0.75))
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
    let secs: f64 = env_or("BENCH_SECS", 0.5);
    let rounds: usize = env_or("BENCH_ROUNDS", 15);
    println!(
        "{secs} s per cell, {rounds} rounds, {} cores; ops/s: median of the rounds; ratios: median of the rounds' own ratios [middle half]\n",
        cores()
    );
    println!(
        "| threads | off ops/s | on ops/s | on/off | refuse ops/s | refuse/off | CPU µs/op off | on | CPU off/on |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for threads in [1, 2] {
        let mut ops = vec![Vec::new(); modules.len()];
        let mut cpu = vec![Vec::new(); modules.len()];
        for round in 0..rounds {
            for k in 0..modules.len() {
                let i = (k + round) % modules.len();
                let before = cpu_time();
                let (n, t) = measure_count_warm(modules[i], Op::Ecdsa, threads, secs);
                // The writer's last batch of the cell: written within its linger.
                std::thread::sleep(std::time::Duration::from_millis(20));
                cpu[i].push((cpu_time() - before) * 1e6 / n as f64);
                ops[i].push(n as f64 / t.as_secs_f64());
            }
        }
        let paired =
            |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x / y).collect() };
        let on_off = paired(&ops[1], &ops[0]);
        let refuse_off = paired(&ops[2], &ops[0]);
        let cpu_off_on = paired(&cpu[0], &cpu[1]);
        let [off, on, refuse] = [0, 1, 2].map(|i| median(&ops[i]));
        let [c_off, c_on] = [0, 1].map(|i| median(&cpu[i]));
        println!(
            "| {threads} | {off:.0} | {on:.0} | {} | {refuse:.0} | {} | {c_off:.2} | {c_on:.2} | {} |",
            spread(&on_off),
            spread(&refuse_off),
            spread(&cpu_off_on),
        );
    }
    let trail = std::fs::read_to_string(tmp.join("audit-on.jsonl")).unwrap_or_default();
    let lines = trail.lines().count();
    println!(
        "\n{lines} lines in the 'on' trail, {} bytes each on average; its last:\n{}",
        trail.len() / lines.max(1),
        trail.lines().last().unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
