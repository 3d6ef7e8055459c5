//! The servers the AWS tests run against, started by the test on 127.0.0.1 and killed (by
//! their own process id) when dropped: moto's server (real for what moto does faithfully)
//! and the faithful test servers of conformance/aws/ (Python with `cryptography`). A
//! missing tool fails the test with what to run, never skips it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The servers started by this test process, killed at exit: the tests keep theirs in
/// statics, which are never dropped.
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

extern "C" fn kill_children() {
    if let Ok(pids) = CHILDREN.lock() {
        for pid in pids.iter() {
            unsafe {
                libc::kill(*pid as i32, libc::SIGCONT);
                libc::kill(*pid as i32, libc::SIGKILL);
            }
        }
    }
}

fn adopt(child: &Child) {
    let mut c = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    if c.is_empty() {
        unsafe { libc::atexit(kill_children) };
    }
    c.push(child.id());
}

pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    /// SIGSTOP / SIGCONT: a server that accepts connections (the kernel's backlog) and
    /// never answers, and back.
    pub fn pause(&self, stop: bool) {
        let sig = if stop { libc::SIGSTOP } else { libc::SIGCONT };
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        CHILDREN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != self.child.id());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
        }
        self.stop();
    }
}

fn venv_tool(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/deps.sh (it creates .venv from scripts/requirements.txt)",
        p.display()
    );
    p
}

/// A conformance/aws/ server: it binds 127.0.0.1:0 and prints `listening <port>`.
pub fn python_server(script: &str, args: &[&str]) -> Server {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("conformance/aws")
        .join(script);
    let mut child = Command::new(venv_tool("python"))
        .arg(&script)
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
    adopt(&child);
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{} did not start", script.display()));
    let port = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{}: unexpected first line {line:?}", script.display()));
    Server { child, port }
}

/// A free port on 127.0.0.1 (bound and released: the server takes it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// moto's server on a free port, once it answers.
pub fn moto() -> Server {
    let port = free_port();
    let child = Command::new(venv_tool("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    adopt(&child);
    let s = Server { child, port };
    let start = Instant::now();
    loop {
        if let Ok((200..=499, _)) = raw(port, "GET", "/moto-api/", &[], b"") {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "moto_server did not answer on port {port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
pub fn raw(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, out[split + 4..].to_vec()))
}

/// A KMS (`TrentService`) or CloudHSM (`BaldrApiService`) request with a SigV4-shaped
/// Authorization header for `access_key` (the servers check the key id only).
pub fn api(
    port: u16,
    target: &str,
    access_key: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/20260101/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"
    );
    let (status, b) = raw(
        port,
        "POST",
        "/",
        &[
            ("X-Amz-Target", target),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("Authorization", &auth),
            ("X-Amz-Date", "20260101T000000Z"),
        ],
        body.to_string().as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{target}: {e}"));
    let v = serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null);
    (status, v)
}

/// A control request of a conformance/aws/ server (`/__ctl`, `/__import`, `/__hsms`).
pub fn control(port: u16, path: &str, body: serde_json::Value) -> serde_json::Value {
    let (status, b) = raw(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

/// `/__stats` of a conformance/aws/ server.
pub fn stats(port: u16) -> serde_json::Value {
    let (_, b) = raw(port, "GET", "/__stats", &[], b"").unwrap();
    serde_json::from_slice(&b).unwrap()
}
