//! `bao server -dev` processes for the tests (OpenBao from `.venv/bin/bao`, made by
//! scripts/deps.sh): each on a port the test picks, with its own root token and home,
//! killed when the test process exits; a small HTTP/1.0 client for its REST API.

use super::{forget_child, kill_at_exit};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The `bao` binary: the venv's (scripts/deps.sh), else PATH. Missing is a failure.
pub fn bao_bin() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/bao");
    if venv.exists() {
        return venv;
    }
    if let Some(p) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&p) {
            if d.join("bao").is_file() {
                return d.join("bao");
            }
        }
    }
    panic!(
        "OpenBao's `bao` is missing: neither {} nor `bao` on PATH; run scripts/deps.sh",
        venv.display()
    );
}

/// A port whose successor is free too (a dev server also listens on port + 1).
pub fn free_port_pair() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 65000 && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    hex::encode(b)
}

pub struct Bao {
    child: Mutex<Option<Child>>,
    pub port: u16,
    pub token: String,
}

impl Bao {
    /// A dev server; `audit`: a file audit device writing there (OpenBao takes audit
    /// devices from its config file only).
    pub fn start(tag: &str, audit: Option<&std::path::Path>) -> Bao {
        let port = free_port_pair();
        let token = format!("root-{}", random_hex(12));
        let home =
            std::env::temp_dir().join(format!("hsmux-bao-{}-{tag}-{port}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        let log = std::fs::File::create(home.join("bao.log")).unwrap();
        let mut args = vec![
            "server".to_string(),
            "-dev".to_string(),
            format!("-dev-root-token-id={token}"),
            format!("-dev-listen-address=127.0.0.1:{port}"),
        ];
        if let Some(file) = audit {
            let hcl = home.join("audit.hcl");
            std::fs::write(
                &hcl,
                format!(
                    "audit \"file\" \"log\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                    file.display()
                ),
            )
            .unwrap();
            args.push(format!("-config={}", hcl.display()));
        }
        let child = Command::new(bao_bin())
            .args(&args)
            // The dev server writes its token helper file into $HOME: keep it ours.
            .env("HOME", &home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start bao server -dev");
        kill_at_exit(child.id());
        let b = Bao {
            child: Mutex::new(Some(child)),
            port,
            token,
        };
        let t = Instant::now();
        loop {
            if let Ok((200, _)) = b.try_req("GET", "sys/health", None, "") {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "bao dev server {tag} did not answer on {port}; see {}",
                home.join("bao.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        b
    }

    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A request with the root token (or `token`), optionally in a namespace.
    pub fn try_req(
        &self,
        method: &str,
        path: &str,
        ns: Option<&str>,
        body: &str,
    ) -> std::io::Result<(u16, Value)> {
        self.req_as(&self.token.clone(), method, path, ns, body)
    }

    pub fn req_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        ns: Option<&str>,
        body: &str,
    ) -> std::io::Result<(u16, Value)> {
        let (status, text) = http(self.port, method, &format!("/v1/{path}"), token, ns, body)?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A request that must succeed; its JSON answer.
    pub fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        self.ok_ns(method, path, None, body)
    }

    pub fn ok_ns(&self, method: &str, path: &str, ns: Option<&str>, body: Value) -> Value {
        let b = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (s, v) = self.try_req(method, path, ns, &b).unwrap();
        assert!((200..300).contains(&s), "{method} {path}: HTTP {s}: {v}");
        v
    }

    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
            forget_child(c.id());
        }
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal HTTP/1.0 client (the dev server is plain HTTP; 1.0 keeps answers unchunked).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    ns: Option<&str>,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nX-Vault-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(n) = ns {
        req += &format!("X-Vault-Namespace: {n}\r\n");
    }
    req += "\r\n";
    req += body;
    s.write_all(req.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}
