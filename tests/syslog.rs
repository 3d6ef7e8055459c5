//! `[log] syslog = true`: a consumer that throws stderr away still finds why
//! `C_Initialize` failed in syslog. The test binds the datagram socket itself, as the
//! syslog daemon binds /dev/log, and reads back what hsmux sent.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn initialize_failure_reaches_syslog_with_stderr_discarded() {
    let dir = std::env::temp_dir().join(format!("hsmux-syslog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("log.sock");
    let daemon = UnixDatagram::bind(&sock).unwrap();
    daemon
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // A soft token whose store path is a regular file: C_Initialize cannot open it.
    let not_a_dir = dir.join("not-a-directory");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let cfg = dir.join("hsmux.toml");
    std::fs::write(
        &cfg,
        format!(
            "[log]\nsyslog = true\nsyslog_socket = \"{}\"\n\n[[slot]]\nlabel = \"s\"\nbackend = \"soft\"\npath = \"{}\"\n",
            sock.display(),
            not_a_dir.display()
        ),
    )
    .unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_hsmux"))
        .args(["status", "--config", cfg.to_str().unwrap()])
        .env_remove("HSMUX_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    // Everything logged before the process ended is queued on the socket.
    daemon.set_nonblocking(true).unwrap();
    let mut lines = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = daemon.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    let error = lines
        .iter()
        .find(|l| l.starts_with("<11>hsmux[") && l.contains("not-a-directory"));
    assert!(
        error.is_some(),
        "an error-level line (user.err) naming the store: {lines:?}"
    );
    assert!(lines.iter().all(|l| !l.ends_with('\n')), "{lines:?}");
}
