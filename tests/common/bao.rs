//! An OpenBao dev server (`bao server -dev` from the venv, scripts/deps.sh) with transit
//! keys, for tests that need a transit slot but not the REST details of tests/remote_vault.rs:
//! it is set up with the `bao` CLI and stopped when the test process exits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// The dev server's root token.
pub const ROOT: &str = "root";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/bao")
}

/// Runs `bao ARGS` against the server on `port`; did it succeed?
pub fn cli(dir: &Path, port: u16, args: &[&str]) -> bool {
    Command::new(bin())
        .args(args)
        .env("BAO_ADDR", format!("http://127.0.0.1:{port}"))
        .env("BAO_TOKEN", ROOT)
        .env("HOME", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

static SERVERS: Mutex<Vec<Child>> = Mutex::new(Vec::new());

extern "C" fn stop_servers() {
    for c in SERVERS.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Starts a dev server (log and home under `dir`) with transit mounted and `keys`
/// (`(name, type)`, e.g. `("ec", "ecdsa-p256")`); returns its port.
pub fn start(dir: &Path, keys: &[(&str, &str)]) -> u16 {
    // A dev server also listens on port + 1.
    let port = loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 65000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    let log = std::fs::File::create(dir.join("bao.log")).unwrap();
    let child = Command::new(bin())
        .args(["server", "-dev", &format!("-dev-root-token-id={ROOT}")])
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("bao from the venv (scripts/deps.sh)");
    let mut servers = SERVERS.lock().unwrap();
    if servers.is_empty() {
        unsafe { libc::atexit(stop_servers) };
    }
    servers.push(child);
    drop(servers);
    let t = std::time::Instant::now();
    while !cli(dir, port, &["status"]) {
        assert!(
            t.elapsed().as_secs() < 60,
            "bao did not start: {dir:?}/bao.log"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(cli(dir, port, &["secrets", "enable", "transit"]));
    for (k, ty) in keys {
        let path = format!("transit/keys/{k}");
        assert!(cli(
            dir,
            port,
            &["write", "-f", &path, &format!("type={ty}")]
        ));
    }
    port
}
