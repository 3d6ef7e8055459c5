//! conformance/azurekv_server.py as the Azure tests start it: a Key Vault or Managed HSM
//! stand-in seeded with keys, its plain control port (with IMDS), its files (CA, client
//! certificate, federated tokens) and its controls (faults, attributes, backup/restore).
#![allow(dead_code)]

use crate::contract::free_port;
use crate::contract::pyserver::{args, write_seed, PyServer};
use std::path::{Path, PathBuf};

/// A seeded key: (name, kty, size or curve, versions, disabled versions).
pub type Seed<'a> = (&'a str, &'a str, &'a str, u32, &'a [u32]);

/// The identities the server knows.
pub const TENANT: &str = "00000000-0000-0000-0000-0000000000aa";
pub const CLIENT: &str = "11111111-1111-1111-1111-1111111111bb";
pub const MI_CLIENT: &str = "22222222-2222-2222-2222-2222222222cc";
pub const SECRET: &str = "test-client-secret";

/// A client-secret `auth` line (`{host}`: the server's address, filled by [`Server::slot`]).
pub fn secret_auth(secret: &str) -> String {
    format!("auth = {{ method = \"client_secret\", tenant = \"{TENANT}\", client_id = \"{CLIENT}\", secret = \"{secret}\", authority_host = \"{{host}}\" }}")
}

pub struct Server {
    py: PyServer,
    pub port: u16,
    pub imds_port: u16,
    pub dir: PathBuf,
}

/// The shared controls (`ctl`, `try_ctl`, `stats`) are the server process's.
impl std::ops::Deref for Server {
    type Target = PyServer;
    fn deref(&self) -> &PyServer {
        &self.py
    }
}

impl Server {
    pub fn start(dir: &Path, name: &str, kind: &str, keys: &[Seed], extra: &[&str]) -> Server {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let seed: Vec<serde_json::Value> = keys
            .iter()
            .map(|(k, kty, size, n, disabled)| {
                let mut v = serde_json::json!({
                    "name": k, "kty": kty, "versions": n, "disabled": disabled,
                });
                if kty.starts_with("EC") {
                    v["crv"] = (*size).into();
                } else {
                    v["size"] = size.parse::<u32>().unwrap().into();
                }
                v
            })
            .collect();
        let seed_file = write_seed(&dir, serde_json::json!({ "keys": seed }));
        let (port, imds_port) = (free_port(), free_port());
        let mut a = args(&[
            &"--port",
            &port.to_string(),
            &"--imds-port",
            &imds_port.to_string(),
            &"--dir",
            &dir,
            &"--kind",
            &kind,
            &"--seed",
            &seed_file,
        ]);
        a.extend(extra.iter().map(Into::into));
        let ready = dir.join("ready");
        let py = PyServer::start("azurekv_server.py", "cryptography", &a, imds_port, || {
            ready.exists()
        });
        Server {
            py,
            port,
            imds_port,
            dir,
        }
    }

    /// An azure-kv `[[slot]]` on this server, trusting its CA, with `auth` and `extra` lines.
    pub fn slot(&self, label: &str, auth: &str, extra: &str) -> String {
        format!(
            "[[slot]]\nlabel = \"{label}\"\nbackend = \"azure-kv\"\nvault = \"{}\"\nca_file = \"{}\"\n{}\n{extra}\n",
            self.url(),
            self.file("ca.pem"),
            auth.replace("{host}", &self.url())
        )
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn imds(&self) -> String {
        format!("http://127.0.0.1:{}", self.imds_port)
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    pub fn fault(&self, kind: &str, count: u32, path: &str) {
        self.ctl(
            "fault",
            serde_json::json!({"kind": kind, "count": count, "match": path, "delay_ms": 5000, "retry_after": 1}),
        );
    }

    pub fn calls(&self, op: &str) -> u64 {
        self.stats()["calls"][op].as_u64().unwrap_or(0)
    }

    pub fn grants(&self) -> u64 {
        let s = self.stats();
        s["token_grants"].as_u64().unwrap() + s["imds_grants"].as_u64().unwrap()
    }

    /// An oct-HSM version's key bytes (CKA_ID `name/version`).
    pub fn material(&self, id: &str) -> Vec<u8> {
        self.py
            .material(serde_json::json!({ "kid": format!("x/keys/{id}") }))
    }
}
