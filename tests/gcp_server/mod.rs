//! conformance/gcpkms_server.py as the Cloud KMS tests start it: a Cloud KMS REST v1 and
//! token-endpoint stand-in seeded with key rings and keys, its service-account files and
//! its controls (faults, stats, key material, states).
#![allow(dead_code)]

use crate::contract::free_port;
use crate::contract::pyserver::{args, write_seed, PyServer};
use std::path::{Path, PathBuf};

pub const RING_MAIN: &str = "projects/p/locations/us-east1/keyRings/main";
pub const RING_FAULTS: &str = "projects/p/locations/us-east1/keyRings/faults";
pub const RING_REFRESH: &str = "projects/p/locations/us-east1/keyRings/refresh";

/// Cloud KMS's software protection level.
pub const SW: &str = "SOFTWARE";

/// A seeded key: (name, algorithm, protection, versions, disabled versions).
pub type Seed<'a> = (&'a str, &'a str, &'a str, u32, &'a [u32]);

/// The keys of the main ring.
pub const MAIN_KEYS: &[Seed] = &[
    ("ec256", "EC_SIGN_P256_SHA256", "HSM", 2, &[]),
    ("ec384", "EC_SIGN_P384_SHA384", "HSM", 1, &[]),
    ("rsa-pkcs1", "RSA_SIGN_PKCS1_2048_SHA256", "HSM", 1, &[]),
    ("rsa-pss", "RSA_SIGN_PSS_2048_SHA256", "HSM", 1, &[]),
    ("rsa-oaep", "RSA_DECRYPT_OAEP_2048_SHA256", "HSM", 1, &[]),
    ("rsa-oaep-sha1", "RSA_DECRYPT_OAEP_2048_SHA1", SW, 1, &[]),
    ("ed25519", "EC_SIGN_ED25519", "SOFTWARE", 1, &[]),
    ("hmac", "HMAC_SHA256", "HSM", 1, &[]),
    ("aes-hsm", "AES_256_GCM", "HSM", 3, &[2]),
    ("aes-soft", "AES_256_GCM", "SOFTWARE", 1, &[]),
    ("aes-limit", "AES_256_GCM", "HSM", 1, &[]),
    ("seal-aes", "AES_256_GCM", "HSM", 1, &[]),
    ("google-sym", "GOOGLE_SYMMETRIC_ENCRYPTION", SW, 1, &[]),
    ("cbc", "AES_256_CBC", "HSM", 1, &[]),
    ("doomed", "HMAC_SHA256", "HSM", 1, &[]),
    ("disabled-later", "HMAC_SHA256", "HSM", 1, &[]),
    ("denied", "HMAC_SHA256", "HSM", 1, &[]),
];

/// Keys that `service_errors_map_to_pkcs11_codes` deletes, disables or denies while other
/// tests may list the ring.
pub const CHANGED_BY_TESTS: &[&str] = &["doomed", "disabled-later", "denied"];

pub struct Server {
    py: PyServer,
    pub port: u16,
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
    /// Starts the server with the keys of `keys` in `ring` and waits until it answers.
    pub fn start(dir: &Path, name: &str, ring: &str, keys: &[Seed], extra: &[&str]) -> Server {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let seed: Vec<serde_json::Value> = keys
            .iter()
            .map(|(k, alg, prot, n, disabled)| {
                serde_json::json!({
                    "name": format!("{ring}/cryptoKeys/{k}"),
                    "algorithm": alg,
                    "protectionLevel": prot,
                    "versions": n,
                    "disabled": disabled,
                })
            })
            .collect();
        let seed_file = write_seed(
            &dir,
            serde_json::json!({ "keys": seed, "keyRings": [ring] }),
        );
        let port = free_port();
        let (sa, rogue) = (dir.join("sa.json"), dir.join("rogue.json"));
        let mut a = args(&[
            &"--port",
            &port.to_string(),
            &"--sa-out",
            &sa,
            &"--rogue-sa-out",
            &rogue,
            &"--seed",
            &seed_file,
        ]);
        a.extend(extra.iter().map(Into::into));
        let py = PyServer::start(
            "gcpkms_server.py",
            "cryptography and google-crc32c",
            &a,
            port,
            || sa.exists(),
        );
        Server { py, port, dir }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn fault(&self, kind: &str, count: u32, verb: &str) {
        self.ctl(
            "fault",
            serde_json::json!({"kind": kind, "count": count, "match": verb}),
        );
    }

    /// How many requests reached `path` (under /v1/).
    pub fn calls(&self, path: &str) -> u64 {
        self.stats()["calls"][path].as_u64().unwrap_or(0)
    }

    pub fn token_grants(&self) -> u64 {
        self.stats()["token_grants"].as_u64().unwrap()
    }

    /// The key bytes of a symmetric version (to check with independent crates).
    pub fn material(&self, version: &str) -> Vec<u8> {
        self.py.material(serde_json::json!({ "name": version }))
    }
}
