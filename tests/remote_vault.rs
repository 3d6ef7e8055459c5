//! The Vault/OpenBao transit backend against real `bao server -dev` processes started
//! here (OpenBao from `.venv/bin/bao`, made by scripts/deps.sh), through the built module
//! as a consumer loads it. Signatures are verified with p256/p384/ed25519-dalek/rsa,
//! ciphertexts opened with aes-gcm and with transit's own REST API, MACs recomputed with
//! hmac from exported key material.
//!
//! One module instance serves every test (PKCS#11 state is per process); each test has
//! its own slot so that one test's C_Logout does not log another out.
//! Kubernetes auth needs a Kubernetes TokenReview API, which cannot run here: its test
//! checks the login request's shape against a listener that answers like Vault's login
//! endpoint (it is not a fake Kubernetes).

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
mod contract;
use common::*;
use contract::bao::*;
use contract::*;
use cryptoki_sys::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

fn b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

// ---------------------------------------------------------------- the fixture

struct Fixture {
    m: Module,
    a: Bao,
    dead: Bao,
    r1: Bao,
    r2: Bao,
    metrics_port: u16,
    soft_dir: PathBuf,
    init_took: Duration,
    k8s_seen: &'static Mutex<Vec<String>>,
}
unsafe impl Sync for Fixture {}
unsafe impl Send for Fixture {}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// The transit policy a key manager is given for a sealing key: exactly `update` on
/// encrypt, decrypt and hmac of the key, no glob, no read, no list.
fn three_path_policy(prefix: &str, key: &str) -> String {
    ["encrypt", "decrypt", "hmac"]
        .iter()
        .map(|op| {
            format!("path \"{prefix}transit/{op}/{key}\" {{ capabilities = [\"update\"] }}\n")
        })
        .collect()
}

/// Reads the keys and MACs with them, but neither signs, encrypts nor decrypts: every
/// refusal hsmux can meet at C_Sign, C_Encrypt, C_Decrypt and C_Verify time.
const PARTIAL_POLICY: &str = r#"
path "transit/keys/ec256" { capabilities = ["read"] }
path "transit/keys/aes" { capabilities = ["read"] }
path "transit/keys/hm" { capabilities = ["read"] }
path "transit/hmac/aes" { capabilities = ["update"] }
"#;

const TRANSIT_POLICY: &str = r#"
path "transit/*" { capabilities = ["create", "read", "update", "list"] }
"#;

fn key(b: &Bao, name: &str, kind: &str) {
    let mut body = json!({"type": kind, "exportable": true, "allow_plaintext_backup": true});
    if kind == "hmac" {
        body["key_size"] = json!(32);
    }
    b.ok("POST", &format!("transit/keys/{name}"), body);
}

/// A listener that records each request and answers like Vault's login endpoint (for
/// the shape of the Kubernetes login only).
fn vault_login_listener() -> (u16, &'static Mutex<Vec<String>>) {
    let seen: &'static Mutex<Vec<String>> = Box::leak(Box::new(Mutex::new(Vec::new())));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + len {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let text = String::from_utf8_lossy(&buf).into_owned();
            let first = text.lines().next().unwrap_or("").to_string();
            seen.lock().unwrap().push(text);
            let body = if first.contains("/login") {
                r#"{"auth":{"client_token":"s.from-login","lease_duration":3600,"renewable":false}}"#
            } else {
                r#"{"data":{"capabilities":["deny"]}}"#
            };
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

/// What the module logged (to stderr, which is copied here and still shown).
static STDERR: Mutex<String> = Mutex::new(String::new());

/// Copies this process's stderr (where hsmux logs) into [`STDERR`] while still writing
/// it to the original stderr.
fn tee_stderr() {
    unsafe {
        let mut fds = [0i32; 2];
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let original = libc::dup(2);
        assert!(original >= 0);
        assert!(libc::dup2(fds[1], 2) >= 0);
        libc::close(fds[1]);
        let (read_end, original) = (fds[0], original);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::read(read_end, buf.as_mut_ptr() as *mut _, buf.len());
                if n <= 0 {
                    break;
                }
                let chunk = &buf[..n as usize];
                libc::write(original, chunk.as_ptr() as *const _, chunk.len());
                STDERR
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(chunk));
            }
        });
    }
}

/// The module's log so far (lines reach the pipe at once; the copy may lag a moment).
fn module_log(until: impl Fn(&str) -> bool) -> String {
    let t = Instant::now();
    loop {
        let log = STDERR.lock().unwrap().clone();
        if until(&log) || t.elapsed() > Duration::from_secs(5) {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        tee_stderr();
        let dir = std::env::temp_dir().join(format!("hsmux-vault-{}-{}", std::process::id(), random_hex(4)));
        std::fs::create_dir_all(&dir).unwrap();
        remove_at_exit(&dir);
        // Four servers, started side by side.
        let tags = ["a", "dead", "r1", "r2"];
        let mut servers: Vec<Bao> = std::thread::scope(|s| {
            let audit = dir.join("audit-a.log");
            let hs: Vec<_> = tags
                .iter()
                .map(|t| {
                    let audit = (*t == "a").then(|| audit.clone());
                    s.spawn(move || Bao::start(t, audit.as_deref()))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let r2 = servers.pop().unwrap();
        let r1 = servers.pop().unwrap();
        let dead = servers.pop().unwrap();
        let a = servers.pop().unwrap();
        for b in [&a, &dead, &r1, &r2] {
            b.ok("POST", "sys/mounts/transit", json!({"type": "transit"}));
        }
        for (n, k) in [
            ("ec256", "ecdsa-p256"),
            ("ec384", "ecdsa-p384"),
            ("ed", "ed25519"),
            ("rsa2048", "rsa-2048"),
            ("hm", "hmac"),
            ("aes", "aes256-gcm96"),
            ("seal-aes", "aes256-gcm96"),
            ("rot", "aes256-gcm96"),
            ("seal-lp", "aes256-gcm96"),
            ("store-seal", "aes256-gcm96"),
            ("other-seal", "aes256-gcm96"),
        ] {
            key(&a, n, k);
        }
        key(&dead, "ec256", "ecdsa-p256");
        // The replicas hold the same keys: made on r1, restored on r2 from its backup.
        for (n, k) in [("ha-ec", "ecdsa-p256"), ("ha-aes", "aes256-gcm96")] {
            key(&r1, n, k);
            let backup = r1.ok("GET", &format!("transit/backup/{n}"), Value::Null);
            let backup = backup["data"]["backup"].as_str().unwrap().to_string();
            r2.ok("POST", &format!("transit/restore/{n}"), json!({ "backup": backup }));
        }
        // Policies, a least-privilege token, a short-lived token, AppRole at a custom path.
        let token_with = |policy: &str| {
            let t = a.ok("POST", "auth/token/create", json!({"policies": [policy], "ttl": "1h"}));
            t["auth"]["client_token"].as_str().unwrap().to_string()
        };
        let lp_policy = three_path_policy("", "seal-lp");
        assert!(!lp_policy.contains('*') && lp_policy.lines().count() == 3);
        a.ok("PUT", "sys/policies/acl/lp", json!({ "policy": lp_policy }));
        a.ok("PUT", "sys/policies/acl/seal-store", json!({ "policy": three_path_policy("", "store-seal") }));
        a.ok("PUT", "sys/policies/acl/partial", json!({ "policy": PARTIAL_POLICY }));
        a.ok(
            "PUT",
            "sys/policies/acl/mac-only",
            json!({ "policy": "path \"transit/hmac/hm\" { capabilities = [\"update\"] }\n" }),
        );
        a.ok("PUT", "sys/policies/acl/transit-all", json!({ "policy": TRANSIT_POLICY }));
        let lp_token = token_with("lp");
        let seal_token = token_with("seal-store");
        let partial_token = token_with("partial");
        let mac_token = token_with("mac-only");
        // The least-privilege policy through AppRole (its own mount: its logins are
        // counted in the audit log).
        a.ok("POST", "sys/auth/ar-lp", json!({"type": "approle"}));
        a.ok("POST", "auth/ar-lp/role/lp", json!({"token_policies": ["lp"], "token_ttl": "1h"}));
        let lp_role = a.ok("GET", "auth/ar-lp/role/lp/role-id", Value::Null)["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_string();
        let lp_secret = a.ok("POST", "auth/ar-lp/role/lp/secret-id", json!({}))["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_string();
        a.ok("POST", "sys/auth/ar-custom", json!({"type": "approle"}));
        a.ok(
            "POST",
            "auth/ar-custom/role/hsmux",
            json!({"token_policies": ["transit-all"], "token_ttl": "2s", "token_max_ttl": "4s"}),
        );
        let role_id = a.ok("GET", "auth/ar-custom/role/hsmux/role-id", Value::Null)["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_string();
        let secret_id = a.ok("POST", "auth/ar-custom/role/hsmux/secret-id", json!({}))["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_string();
        // A namespace with its own transit mount and key.
        a.ok("POST", "sys/namespaces/ns1", json!({}));
        a.ok_ns("POST", "sys/mounts/transit", Some("ns1"), json!({"type": "transit"}));
        a.ok_ns("POST", "transit/keys/nsk", Some("ns1"), json!({"type": "ecdsa-p256"}));
        // Two namespaces as a key manager keeps them: AppRole in `org`, the transit
        // mount in its child `org/kms`, the three-path policy written in `org` (where
        // the token lives) for the child's paths.
        a.ok("POST", "sys/namespaces/org", json!({}));
        a.ok_ns("POST", "sys/namespaces/kms", Some("org"), json!({}));
        a.ok_ns("POST", "sys/mounts/transit", Some("org/kms"), json!({"type": "transit"}));
        a.ok_ns("POST", "transit/keys/nk", Some("org/kms"), json!({"type": "aes256-gcm96"}));
        a.ok_ns("POST", "sys/auth/approle", Some("org"), json!({"type": "approle"}));
        a.ok_ns(
            "PUT",
            "sys/policies/acl/km",
            Some("org"),
            json!({ "policy": three_path_policy("kms/", "nk") }),
        );
        a.ok_ns(
            "POST",
            "auth/approle/role/km",
            Some("org"),
            json!({"token_policies": ["km"], "token_ttl": "1h"}),
        );
        let km_role = a.ok_ns("GET", "auth/approle/role/km/role-id", Some("org"), Value::Null)["data"]["role_id"]
            .as_str()
            .unwrap()
            .to_string();
        let km_secret = a.ok_ns("POST", "auth/approle/role/km/secret-id", Some("org"), json!({}))["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_string();

        // The short-lived token is made by its test (its 3 s start then); read at login.
        std::fs::write(dir.join("short-token"), "not-yet").unwrap();
        key(&r2, "store-seal", "aes256-gcm96");
        let (k8s_port, k8s_seen) = vault_login_listener();
        std::fs::write(dir.join("jwt"), "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl\n").unwrap();
        let metrics_port = free_port();
        let soft_dir = dir.join("sealed");
        let root = |b: &Bao| format!("auth = {{ method = \"token\", token = \"{}\" }}", b.token);
        let vault = |label: &str, b: &Bao, auth: String, extra: &str| {
            format!(
                "[[slot]]\nlabel = \"{label}\"\nbackend = \"vault\"\naddress = \"{}\"\n{auth}\n{extra}\n\n",
                b.addr()
            )
        };
        let mut cfg = format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n");
        cfg += &vault(
            "vault",
            &a,
            root(&a),
            "transit = { path = \"transit\", keys = [\"ec256\", \"ec384\", \"ed\", \"rsa2048\", \"hm\", \"aes\"] }",
        );
        cfg += &vault("vault-gen", &a, root(&a), "");
        cfg += &vault("vault-seal", &a, root(&a), "transit = { keys = [\"seal-aes\"] }");
        cfg += &vault(
            "vault-svc",
            &a,
            root(&a),
            "transit = { keys = [\"seal-aes\"] }\ngcm_iv = \"service\"",
        );
        cfg += &vault("vault-rot", &a, root(&a), "transit = { keys = [\"rot\"] }");
        cfg += &vault(
            "vault-lp",
            &a,
            format!("auth = {{ method = \"token\", token = \"{lp_token}\" }}"),
            "transit = { keys = [\"seal-lp\"] }",
        );
        cfg += &vault(
            "vault-lp-approle",
            &a,
            format!("auth = {{ method = \"approle\", path = \"ar-lp\", role_id = \"{lp_role}\", secret_id = \"{lp_secret}\" }}"),
            "transit = { keys = [\"seal-lp\"] }",
        );
        cfg += &vault(
            "vault-partial",
            &a,
            format!("auth = {{ method = \"token\", token = \"{partial_token}\" }}"),
            "transit = { keys = [\"ec256\", \"aes\", \"hm\"] }",
        );
        cfg += &vault(
            "vault-mac-only",
            &a,
            format!("auth = {{ method = \"token\", token = \"{mac_token}\" }}"),
            "transit = { keys = [\"hm\"] }",
        );
        // The two namespaces: the slot's `namespace` for one, overridden for the other.
        let km_auth = |ns: &str| {
            format!("auth = {{ method = \"approle\", role_id = \"{km_role}\", secret_id = \"{km_secret}\"{ns} }}")
        };
        cfg += &vault(
            "vault-ns-transit",
            &a,
            km_auth(""),
            "namespace = \"org\"\ntransit = { keys = [\"nk\"], namespace = \"org/kms\" }",
        );
        cfg += &vault(
            "vault-ns-auth",
            &a,
            km_auth(", namespace = \"org\""),
            "namespace = \"org/kms\"\ntransit = { keys = [\"nk\"] }",
        );
        cfg += &vault(
            "vault-short",
            &a,
            format!("auth = {{ method = \"token\", token = {{ file = \"{}\" }} }}", dir.join("short-token").display()),
            "transit = { keys = [\"ec256\"] }",
        );
        cfg += &vault(
            "vault-approle",
            &a,
            format!("auth = {{ method = \"approle\", path = \"ar-custom\", role_id = \"{role_id}\", secret_id = \"{secret_id}\" }}"),
            "transit = { keys = [\"ec256\", \"aes\"] }",
        );
        cfg += &vault("vault-ns", &a, root(&a), "namespace = \"ns1\"\ntransit = { keys = [\"nsk\"] }");
        cfg += &vault(
            "vault-dead",
            &dead,
            root(&dead),
            "transit = { keys = [\"ec256\"] }\ntimeout_ms = 2000",
        );
        // An address that takes connections and never answers: only deadlines end calls.
        let silent = Box::leak(Box::new(Silent::start()));
        cfg += &format!(
            "[[slot]]\nlabel = \"vault-nowhere\"\nbackend = \"vault\"\naddress = \"{}\"\nauth = {{ method = \"token\", token = \"x\" }}\ntimeout_ms = 3000\n\n",
            silent.url()
        );
        cfg += &format!(
            "[[slot]]\nlabel = \"vault-k8s\"\nbackend = \"vault\"\naddress = \"http://127.0.0.1:{k8s_port}\"\nnamespace = \"team-a\"\nauth = {{ method = \"kubernetes\", path = \"k8s-custom\", role = \"hsmux-role\", jwt = {{ file = \"{}\" }} }}\ntransit = {{ keys = [\"none\"] }}\n\n",
            dir.join("jwt").display()
        );
        cfg += &format!(
            "[[slot]]\nlabel = \"soft\"\nbackend = \"soft\"\npath = \"{}/soft\"\nkdf_iterations = 1000\n\n",
            dir.display()
        );
        // "sealed-wrong": a transit key of the same name on another server.
        // "sealed" with the three-path policy on its key, nothing more.
        let seal_auth = format!("auth = {{ method = \"token\", token = \"{seal_token}\" }}");
        for (label, b, auth) in [("sealed", &a, seal_auth), ("sealed-wrong", &r2, root(&r2))] {
            let k = "store-seal";
            cfg += &format!(
                "[[slot]]\nlabel = \"{label}\"\nbackend = \"soft\"\npath = \"{}\"\nkdf_iterations = 1000\n  [slot.seal]\n  backend = \"vault\"\n  key = \"{k}\"\n  address = \"{}\"\n  {}\n\n",
                soft_dir.display(),
                b.addr(),
                auth
            );
        }
        cfg += "[[slot]]\nlabel = \"ha\"\npolicy = \"failover\"\n";
        for (n, b) in [("r1", &r1), ("r2", &r2)] {
            cfg += &format!(
                "  [[slot.replica]]\n  name = \"{n}\"\n  backend = \"vault\"\n  address = \"{}\"\n  {}\n  transit = {{ keys = [\"ha-ec\", \"ha-aes\"] }}\n  timeout_ms = 1500\n",
                b.addr(),
                root(b)
            );
        }
        let path = dir.join("hsmux.toml");
        std::fs::write(&path, cfg).unwrap();
        std::env::set_var("HSMUX_CONFIG", &path);
        let mut m = load();
        m.dir = dir.clone();
        let t = Instant::now();
        assert_rv!(initialize(&m), CKR_OK);
        let init_took = t.elapsed();
        Fixture {
            m,
            a,
            dead,
            r1,
            r2,
            metrics_port,
            soft_dir,
            init_took,
            k8s_seen,
        }
    })
}

// ---------------------------------------------------------------- helpers

/// A user session on slot `label`.
fn session(f: &Fixture, label: &str) -> (CK_SLOT_ID, CK_SESSION_HANDLE) {
    let slot = slot_labelled(&f.m, label, true);
    let h = open(&f.m, slot, true);
    assert_rv!(login(&f.m, h, CKU_USER, PIN), CKR_OK, "C_Login on {label}");
    (slot, h)
}

/// The fixture, its module and a user session on slot `label`.
fn begin(
    label: &str,
) -> (
    &'static Fixture,
    &'static Module,
    CK_SLOT_ID,
    CK_SESSION_HANDLE,
) {
    let f = fixture();
    let (slot, h) = session(f, label);
    (f, &f.m, slot, h)
}

/// Logs the slot out and closes its sessions.
fn end(m: &Module, slot: CK_SLOT_ID, h: CK_SESSION_HANDLE) {
    assert_eq!(ck!(m, C_Logout(h)), CKR_OK);
    assert_eq!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
}

/// One round of the load tests put on a slot: an ECDSA P-256 signature by `ec` checked
/// by p256 with `vk`, and an AES-GCM round trip with `ak` through the module. Returns the
/// IV and ciphertext for the caller's own checks.
fn sign_and_seal(
    m: &Module,
    h: CK_SESSION_HANDLE,
    (ec, vk): (CK_OBJECT_HANDLE, &p256::ecdsa::VerifyingKey),
    ak: CK_OBJECT_HANDLE,
    msg: &str,
) -> ([u8; 12], Vec<u8>) {
    use p256::ecdsa::signature::Verifier;
    let sig = sign(m, h, mech(CKM_ECDSA_SHA256), ec, msg.as_bytes())
        .unwrap_or_else(|rv| panic!("{msg}: sign: {}", rv_name(rv)));
    vk.verify(
        msg.as_bytes(),
        &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
    )
    .unwrap_or_else(|e| panic!("{msg}: the signature verifies: {e}"));
    let mut iv = [0u8; 12];
    let ct = gcm_encrypt(m, h, ak, &mut iv, b"", msg.as_bytes())
        .unwrap_or_else(|rv| panic!("{msg}: encrypt: {}", rv_name(rv)));
    let pt = gcm_decrypt(m, h, ak, &iv, b"", &ct)
        .unwrap_or_else(|rv| panic!("{msg}: decrypt: {}", rv_name(rv)));
    assert_eq!(pt, msg.as_bytes());
    (iv, ct)
}

fn find_all(
    m: &Module,
    h: CK_SESSION_HANDLE,
    label: &str,
    class: CK_OBJECT_CLASS,
) -> Vec<CK_OBJECT_HANDLE> {
    let mut t = Template::new()
        .bytes(CKA_LABEL, label.as_bytes())
        .ulong(CKA_CLASS, class);
    find(m, h, &mut t)
}

/// The first (primary) object labelled `label` of `class`.
fn obj(m: &Module, h: CK_SESSION_HANDLE, label: &str, class: CK_OBJECT_CLASS) -> CK_OBJECT_HANDLE {
    *find_all(m, h, label, class)
        .first()
        .unwrap_or_else(|| panic!("no {label} of class {class}"))
}

fn export(b: &Bao, kind: &str, name: &str, version: u32) -> Vec<u8> {
    let v = b.ok(
        "GET",
        &format!("transit/export/{kind}/{name}/{version}"),
        Value::Null,
    );
    unb64(v["data"]["keys"][version.to_string()].as_str().unwrap())
}

// ---------------------------------------------------------------- mechanisms

#[test]
fn every_mechanism_works_and_is_verified_independently() {
    let (f, m, _, h) = begin("vault");
    let msg = b"the quick brown fox jumps over the lazy dog";

    // ECDSA P-256 (raw digest and hashed here) and P-384, key pairs of the contract's
    // object model.
    let ec = obj(m, h, "ec256", CKO_PRIVATE_KEY);
    let ecp = obj(m, h, "ec256", CKO_PUBLIC_KEY);
    check_key_pair(m, h, ec, ecp);
    check_ecdsa_p256(m, h, ec, ecp, &point_of(m, h, ecp), msg);
    // The object's CKA_ID is the version's full name.
    assert_eq!(
        get_attr(m, h, ec, CKA_ID).unwrap(),
        b"transit/keys/ec256/v1"
    );
    let ec = obj(m, h, "ec384", CKO_PRIVATE_KEY);
    let ecp = obj(m, h, "ec384", CKO_PUBLIC_KEY);
    check_key_pair(m, h, ec, ecp);
    check_ecdsa_p384(m, h, ec, ecp, &point_of(m, h, ecp), msg);

    // Ed25519.
    let ed = obj(m, h, "ed", CKO_PRIVATE_KEY);
    let edp = obj(m, h, "ed", CKO_PUBLIC_KEY);
    check_key_pair(m, h, ed, edp);
    check_ed25519(m, h, ed, edp, msg);

    // RSA: PKCS#1 v1.5 (hashed here, and a DigestInfo given), PSS with the caller's salt.
    let rk = obj(m, h, "rsa2048", CKO_PRIVATE_KEY);
    let rp = obj(m, h, "rsa2048", CKO_PUBLIC_KEY);
    check_key_pair(m, h, rk, rp);
    let pk = rsa_public(m, h, rp);
    check_rsa_pkcs1_sha256(m, h, rk, Some(rp), &pk, msg);
    let sig2 = sign(m, h, mech(CKM_RSA_PKCS), rk, &digest_info_sha256(msg)).unwrap();
    pk.verify(
        rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        &sha256(msg),
        &sig2,
    )
    .expect("CKM_RSA_PKCS over a DigestInfo verifies");
    for salt in [32usize, 20] {
        check_rsa_pss_sha256(m, h, rk, rp, &pk, salt, msg);
    }
    // An empty salt transit cannot make (it reads 0 as "auto"): refused at C_SignInit,
    // since C_Sign cannot return CKR_MECHANISM_PARAM_INVALID.
    let mut p0 = pss(CKM_SHA256, CKG_MGF1_SHA256, 0);
    let mut mc = mech_with(CKM_SHA256_RSA_PKCS_PSS, &mut p0);
    assert_rv!(
        ck!(m, C_SignInit(h, &mut mc, rk)),
        CKR_MECHANISM_PARAM_INVALID
    );
    let mut p = pss(CKM_SHA256, CKG_MGF1_SHA256, 32);
    let sig = sign(m, h, mech_with(CKM_RSA_PKCS_PSS, &mut p), rk, &sha256(msg)).unwrap();
    pk.verify(
        rsa::Pss::new_with_salt::<sha2::Sha256>(32),
        &sha256(msg),
        &sig,
    )
    .expect("CKM_RSA_PKCS_PSS over a digest verifies");

    // RSA-OAEP (SHA-256) decryption of data encrypted with the rsa crate.
    check_rsa_oaep(
        m,
        h,
        rk,
        &pk,
        CKM_SHA256,
        b"a sealing key of 32 bytes......!",
    );

    // HMAC: an hmac key (checked with its exported value) and an AES key.
    let hk = obj(m, h, "hm", CKO_SECRET_KEY);
    check_remote_secret(m, h, hk);
    let raw = export(&f.a, "hmac-key", "hm", 1);
    for mt in [CKM_SHA256_HMAC, CKM_SHA512_HMAC] {
        check_hmac(m, h, hk, mt, &raw, msg);
    }
    let ak = obj(m, h, "aes", CKO_SECRET_KEY);
    let tag = sign(m, h, mech(CKM_SHA256_HMAC), ak, msg).unwrap();
    let rest = f.a.ok(
        "POST",
        "transit/hmac/aes/sha2-256",
        json!({ "input": b64(msg) }),
    );
    let rest = rest["data"]["hmac"].as_str().unwrap();
    assert_eq!(
        rest,
        format!("vault:v1:{}", b64(&tag)),
        "an AES key's HMAC is transit's"
    );

    // AES-GCM with AAD: the service's IV comes back in pIv; aes-gcm opens the result.
    check_aes_gcm(
        m,
        h,
        ak,
        &export(&f.a, "encryption-key", "aes", 1),
        msg,
        b"header",
    );
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

// ---------------------------------------------------------------- the OpenBao seal

fn seal_encrypt(m: &Module, slot: CK_SLOT_ID, label: &str, pt: &[u8], random_iv: bool) -> Vec<u8> {
    contract::seal_encrypt(m, slot, label, PIN, Found::AtLeastOne, pt, random_iv)
}

fn seal_decrypt(m: &Module, slot: CK_SLOT_ID, label: &str, blob: &[u8]) -> Result<Vec<u8>, CK_RV> {
    contract::seal_decrypt(m, slot, label, PIN, Found::AtLeastOne, blob)
}

/// transit's own decryption of a seal blob made with key version `v`.
fn rest_decrypt(b: &Bao, key: &str, v: u32, blob: &[u8]) -> Vec<u8> {
    let r = b.ok(
        "POST",
        &format!("transit/decrypt/{key}"),
        json!({ "ciphertext": format!("vault:v{v}:{}", b64(blob)) }),
    );
    unb64(r["data"]["plaintext"].as_str().unwrap())
}

#[test]
fn the_openbao_seal_sequence_works_on_transit_with_zero_and_service_ivs() {
    let f = fixture();
    let m = &f.m;
    check_seal_sequence(
        m,
        "vault-seal",
        "vault-svc",
        "seal-aes",
        PIN,
        Found::AtLeastOne,
    );
    // transit's REST opens the blobs too (`vault:v1:` + the blob).
    let root_key = b"0123456789abcdef0123456789abcdef";
    let slot = slot_labelled(m, "vault-seal", true);
    let blob = seal_encrypt(m, slot, "seal-aes", root_key, false);
    assert_eq!(rest_decrypt(&f.a, "seal-aes", 1, &blob), root_key);
    let svc = slot_labelled(m, "vault-svc", true);
    let blob2 = seal_encrypt(m, svc, "seal-aes", root_key, true);
    assert_eq!(rest_decrypt(&f.a, "seal-aes", 1, &blob2), root_key);
    // A damaged blob is CKR_ENCRYPTED_DATA_INVALID.
    let mut bad = blob.clone();
    bad[20] ^= 1;
    assert_rv!(
        seal_decrypt(m, slot, "seal-aes", &bad).unwrap_err(),
        CKR_ENCRYPTED_DATA_INVALID
    );
}

#[test]
fn after_a_rotation_the_primary_is_found_first_and_old_blobs_still_decrypt() {
    let f = fixture();
    let m = &f.m;
    let slot = slot_labelled(m, "vault-rot", true);
    let old = seal_encrypt(m, slot, "rot", b"before the rotation", false);
    f.a.ok("POST", "transit/keys/rot/rotate", json!({}));
    // The key list is cached (list_ttl); a search by the new version's CKA_ID that finds
    // nothing lists again (once a second at most).
    std::thread::sleep(Duration::from_millis(1100));
    let p = open(m, slot, true);
    assert_rv!(login(m, p, CKU_USER, PIN), CKR_OK);
    let mut t = Template::new().bytes(CKA_ID, b"transit/keys/rot/v2");
    assert_eq!(find(m, p, &mut t).len(), 1, "the new version is listed");
    let found = find_all(m, p, "rot", CKO_SECRET_KEY);
    assert_eq!(found.len(), 2, "one object per version");
    assert_eq!(
        get_attr(m, p, found[0], CKA_ID).unwrap(),
        b"transit/keys/rot/v2",
        "primary first"
    );
    assert_eq!(
        get_attr(m, p, found[1], CKA_ID).unwrap(),
        b"transit/keys/rot/v1"
    );
    // The old version's own object opens the old blob too.
    assert_eq!(
        gcm_decrypt(m, p, found[1], &old[..12], b"", &old[12..]).unwrap(),
        b"before the rotation"
    );
    assert_eq!(ck!(m, C_Logout(p)), CKR_OK);
    assert_eq!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
    // Through the primary (what the seal uses): the old blob, and a new one made with v2.
    assert_eq!(
        seal_decrypt(m, slot, "rot", &old).unwrap(),
        b"before the rotation"
    );
    let new = seal_encrypt(m, slot, "rot", b"after the rotation", false);
    assert_eq!(rest_decrypt(&f.a, "rot", 2, &new), b"after the rotation");
    assert_eq!(
        seal_decrypt(m, slot, "rot", &new).unwrap(),
        b"after the rotation"
    );
    // Another rotation hsmux has not listed yet, and a blob made elsewhere with it: the
    // decryption asks transit for the newer version.
    f.a.ok("POST", "transit/keys/rot/rotate", json!({}));
    let r = f.a.ok(
        "POST",
        "transit/encrypt/rot",
        json!({ "plaintext": b64(b"made elsewhere") }),
    );
    let ct = r["data"]["ciphertext"].as_str().unwrap();
    let blob = unb64(ct.strip_prefix("vault:v3:").expect("made with v3"));
    assert_eq!(
        seal_decrypt(m, slot, "rot", &blob).unwrap(),
        b"made elsewhere"
    );
}

#[test]
fn the_least_privilege_policy_serves_a_named_key() {
    let f = fixture();
    let m = &f.m;
    let slot = slot_labelled(m, "vault-lp", true);
    let blob = seal_encrypt(m, slot, "seal-lp", b"least privilege", false);
    assert_eq!(
        seal_decrypt(m, slot, "seal-lp", &blob).unwrap(),
        b"least privilege"
    );
    assert_eq!(rest_decrypt(&f.a, "seal-lp", 1, &blob), b"least privilege");
    // The key, presented as AES without a read: its version from the encryption.
    let (_, h) = session(f, "vault-lp");
    let k = obj(m, h, "seal-lp", CKO_SECRET_KEY);
    assert_eq!(
        get_attr(m, h, k, CKA_ID).unwrap(),
        b"transit/keys/seal-lp/v1"
    );
    // HMAC (any hash) is allowed by the policy, which has no `hmac/seal-lp/*`: the
    // hash travels in the body. The tags equal transit's, and C_Verify (an HMAC made
    // again and compared: `verify/seal-lp` is not granted either) takes them.
    for (mt, alg) in [(CKM_SHA256_HMAC, "sha2-256"), (CKM_SHA512_HMAC, "sha2-512")] {
        let tag = sign(m, h, mech(mt), k, b"data")
            .unwrap_or_else(|rv| panic!("HMAC {alg} under the three-path policy: {}", rv_name(rv)));
        let rest = f.a.ok(
            "POST",
            "transit/hmac/seal-lp",
            json!({ "input": b64(b"data"), "algorithm": alg }),
        );
        assert_eq!(
            rest["data"]["hmac"].as_str().unwrap(),
            format!("vault:v1:{}", b64(&tag)),
            "{alg}"
        );
        assert_rv!(verify(m, h, mech(mt), k, b"data", &tag), CKR_OK);
        let mut bad = tag.clone();
        bad[3] ^= 1;
        assert_rv!(
            verify(m, h, mech(mt), k, b"data", &bad),
            CKR_SIGNATURE_INVALID
        );
    }
    // Creating keys is not: the slot is write-protected and has no key generation.
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(ck!(m, C_GetTokenInfo(slot, &mut ti)), CKR_OK);
    assert_ne!(ti.flags & CKF_WRITE_PROTECTED, 0);
    let mut k2 = 0;
    let mut t = Template::new()
        .ulong(CKA_VALUE_LEN, 32)
        .bytes(CKA_LABEL, b"nope")
        .bool(CKA_TOKEN, true);
    let mut mc = mech(CKM_AES_KEY_GEN);
    assert_ne!(
        ck!(m, C_GenerateKey(h, &mut mc, t.ptr(), t.len(), &mut k2)),
        CKR_OK
    );
    end(m, slot, h);
}

/// Requests to `path` in the audit log of server `a` (request entries only).
fn audited(f: &Fixture, path: &str) -> usize {
    let audit = std::fs::read_to_string(f.m.dir.join("audit-a.log")).unwrap();
    audit
        .lines()
        .filter(|l| {
            l.contains("\"type\":\"request\"") && l.contains(&format!("\"path\":\"{path}\""))
        })
        .count()
}

#[test]
fn the_least_privilege_policy_through_approle_logs_in_once() {
    // The same three-path policy, on a token AppRole gives: the key's read is refused
    // (403) at every listing, which is the policy's answer, not an expired token's, so
    // it must not cost a new login (a token minted per refused read).
    let (f, m, slot, h) = begin("vault-lp-approle");
    let k = obj(m, h, "seal-lp", CKO_SECRET_KEY);
    let mut iv = [0u8; 12];
    let ct = gcm_encrypt(m, h, k, &mut iv, b"aad", b"under approle").unwrap();
    assert_eq!(
        gcm_decrypt(m, h, k, &iv, b"aad", &ct).unwrap(),
        b"under approle"
    );
    let tag = sign(m, h, mech(CKM_SHA384_HMAC), k, b"mac me").unwrap();
    assert_rv!(
        verify(m, h, mech(CKM_SHA384_HMAC), k, b"mac me", &tag),
        CKR_OK
    );
    // A search for a key that is not there lists again (at most once a second), and
    // each listing reads the key again: refused each time.
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(1100));
        assert!(find_all(m, h, "not-there", CKO_SECRET_KEY).is_empty());
    }
    assert!(sign(m, h, mech(CKM_SHA256_HMAC), k, b"still").is_ok());
    assert_eq!(audited(f, "auth/ar-lp/login"), 1, "one AppRole login");
    assert!(
        audited(f, "transit/keys/seal-lp") >= 3,
        "the key's read was asked (and refused)"
    );
    // hsmux never names the hash in the path (`hmac/<key>/<alg>`, refused by the policy).
    let audit = std::fs::read_to_string(f.m.dir.join("audit-a.log")).unwrap();
    assert!(!audit.contains("\"path\":\"transit/hmac/seal-lp/"));
    assert!(!audit.contains("\"path\":\"transit/hmac/store-seal/"));
    end(m, slot, h);
}

#[test]
fn a_key_the_policy_only_lets_mac_is_an_hmac_key() {
    // `update` on `transit/hmac/hm` and nothing else: no read, no encryption.
    let (f, m, slot, h) = begin("vault-mac-only");
    let k = obj(m, h, "hm", CKO_SECRET_KEY);
    assert_eq!(get_attr(m, h, k, CKA_ID).unwrap(), b"transit/keys/hm/v1");
    assert_eq!(
        get_attr(m, h, k, CKA_KEY_TYPE).unwrap(),
        CKK_GENERIC_SECRET.to_ne_bytes()
    );
    use hmac::Mac;
    let raw = export(&f.a, "hmac-key", "hm", 1);
    let mut want = <hmac::Hmac<sha2::Sha512> as Mac>::new_from_slice(&raw).unwrap();
    want.update(b"only a mac");
    let tag = sign(m, h, mech(CKM_SHA512_HMAC), k, b"only a mac").unwrap();
    assert_eq!(tag, want.finalize().into_bytes().to_vec());
    assert_rv!(
        verify(m, h, mech(CKM_SHA512_HMAC), k, b"only a mac", &tag),
        CKR_OK
    );
    let mut iv = [0u8; 12];
    assert!(gcm_encrypt(m, h, k, &mut iv, b"", b"no").is_err());
    end(m, slot, h);
}

#[test]
fn a_refusal_at_call_time_is_a_code_each_function_may_return() {
    // The policy reads the keys and lets the AES key MAC, nothing else.
    let (_, m, slot, h) = begin("vault-partial");
    let ec = obj(m, h, "ec256", CKO_PRIVATE_KEY);
    let ak = obj(m, h, "aes", CKO_SECRET_KEY);
    let hk = obj(m, h, "hm", CKO_SECRET_KEY);
    // C_Sign: CKR_FUNCTION_REJECTED (never CKR_KEY_FUNCTION_NOT_PERMITTED, which C_Sign
    // cannot return), for a signature and for an HMAC.
    assert_rv!(
        sign(m, h, mech(CKM_ECDSA_SHA256), ec, b"refused").unwrap_err(),
        CKR_FUNCTION_REJECTED
    );
    assert_rv!(
        sign(m, h, mech(CKM_SHA256_HMAC), hk, b"refused").unwrap_err(),
        CKR_FUNCTION_REJECTED
    );
    // C_Verify of an HMAC (made by transit): CKR_FUNCTION_FAILED.
    assert_rv!(
        verify(m, h, mech(CKM_SHA256_HMAC), hk, b"refused", &[0u8; 32]),
        CKR_FUNCTION_FAILED
    );
    // C_Encrypt and C_Decrypt: CKR_FUNCTION_FAILED.
    let mut iv = [0u8; 12];
    assert_rv!(
        gcm_encrypt(m, h, ak, &mut iv, b"", b"refused").unwrap_err(),
        CKR_FUNCTION_FAILED
    );
    assert_rv!(
        gcm_decrypt(m, h, ak, &[1u8; 12], b"", &[2u8; 32]).unwrap_err(),
        CKR_FUNCTION_FAILED
    );
    // What the policy grants still works with the same token: a refusal is final and
    // does not throw the token away.
    let tag = sign(m, h, mech(CKM_SHA256_HMAC), ak, b"allowed").unwrap();
    assert_rv!(
        verify(m, h, mech(CKM_SHA256_HMAC), ak, b"allowed", &tag),
        CKR_OK
    );
    // The service's own message is in the log, with the code the consumer got.
    let log = module_log(|l| l.contains("signing with transit/keys/ec256"));
    let line = log
        .lines()
        .find(|l| l.contains("vault-partial") && l.contains("signing with transit/keys/ec256"))
        .unwrap_or_else(|| panic!("no log line for the refused signature:\n{log}"));
    assert!(
        line.contains("HTTP 403") && line.contains("permission denied"),
        "{line}"
    );
    assert!(log.contains("CKR_FUNCTION_REJECTED"), "{log}");
    end(m, slot, h);
}

// ---------------------------------------------------------------- auth

#[test]
fn approle_with_short_ttls_keeps_working_across_renewals_and_relogins() {
    let (f, m, _, h) = begin("vault-approle");
    let ec = obj(m, h, "ec256", CKO_PRIVATE_KEY);
    let ecp = obj(m, h, "ec256", CKO_PUBLIC_KEY);
    let point = ec_point(&get_attr(m, h, ecp, CKA_EC_POINT).unwrap());
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    let ak = obj(m, h, "aes", CKO_SECRET_KEY);
    // token_ttl 2 s, token_max_ttl 4 s: 10 s of calls cross several renewals and
    // several expiries at max TTL (403, then a new login).
    let until = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    while Instant::now() < until {
        sign_and_seal(m, h, (ec, &vk), ak, &format!("message {n}"));
        n += 1;
        std::thread::sleep(Duration::from_millis(700));
    }
    assert!(n >= 5);
    // Vault's audit log: the token was renewed and, at max TTL, replaced by new logins.
    let audit = std::fs::read_to_string(f.m.dir.join("audit-a.log")).unwrap();
    let requests = |path: &str| {
        audit
            .lines()
            .filter(|l| {
                l.contains("\"type\":\"request\"") && l.contains(&format!("\"path\":\"{path}\""))
            })
            .count()
    };
    let logins = requests("auth/ar-custom/login");
    let renewals = requests("auth/token/renew-self");
    assert!(
        logins >= 3,
        "{logins} AppRole logins in 10 s of 4 s max TTL"
    );
    assert!(renewals >= 1, "no renew-self");
}

#[test]
fn a_token_given_outright_fails_clearly_once_expired() {
    let f = fixture();
    let m = &f.m;
    let short = f.a.ok(
        "POST",
        "auth/token/create",
        json!({"policies": ["transit-all"], "ttl": "3s", "explicit_max_ttl": "3s", "renewable": false}),
    );
    let token = short["auth"]["client_token"].as_str().unwrap();
    std::fs::write(f.m.dir.join("short-token"), token).unwrap();
    let (slot, h) = session(f, "vault-short");
    let ec = obj(m, h, "ec256", CKO_PRIVATE_KEY);
    assert!(sign(m, h, mech(CKM_ECDSA_SHA256), ec, b"while valid").is_ok());
    // Past its TTL (3 s) Vault answers 403; the token cannot log in again.
    std::thread::sleep(Duration::from_secs(4));
    let rv = sign(m, h, mech(CKM_ECDSA_SHA256), ec, b"expired").unwrap_err();
    assert_rv!(rv, CKR_FUNCTION_REJECTED);
    assert_eq!(ck!(m, C_Logout(h)), CKR_OK);
    assert_rv!(login(m, h, CKU_USER, PIN), CKR_PIN_INCORRECT);
    assert_eq!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
}

#[test]
fn a_namespace_is_sent_in_x_vault_namespace() {
    let f = fixture();
    let m = &f.m;
    // The key exists only inside ns1.
    let (s, _) = f.a.try_req("GET", "transit/keys/nsk", None, "").unwrap();
    assert_eq!(s, 404);
    let (_, h) = session(f, "vault-ns");
    let k = obj(m, h, "nsk", CKO_PRIVATE_KEY);
    let kp = obj(m, h, "nsk", CKO_PUBLIC_KEY);
    let sig = sign(m, h, mech(CKM_ECDSA_SHA256), k, b"in a namespace").unwrap();
    let point = ec_point(&get_attr(m, h, kp, CKA_EC_POINT).unwrap());
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    use p256::ecdsa::signature::Verifier;
    vk.verify(
        b"in a namespace",
        &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
    )
    .unwrap();
    // And it is the namespace's key.
    let rest =
        f.a.ok_ns("GET", "transit/keys/nsk", Some("ns1"), Value::Null);
    let pem = rest["data"]["keys"]["1"]["public_key"].as_str().unwrap();
    use p256::pkcs8::DecodePublicKey;
    assert_eq!(
        p256::ecdsa::VerifyingKey::from_public_key_pem(pem).unwrap(),
        vk
    );
}

#[test]
fn login_and_transit_in_two_namespaces() {
    // AppRole lives in `org`, the key in `org/kms` only; the token's policy is `org`'s
    // three paths for `kms/transit/...`. Configured with `transit.namespace` under a
    // slot `namespace`, and with `auth.namespace` under a slot `namespace`.
    let f = fixture();
    let m = &f.m;
    for ns in [None, Some("org")] {
        let (st, _) = f.a.try_req("GET", "transit/keys/nk", ns, "").unwrap();
        assert_ne!(st, 200, "nk exists only in org/kms, not in {ns:?}");
    }
    for label in ["vault-ns-transit", "vault-ns-auth"] {
        let (slot, h) = session(f, label);
        let k = obj(m, h, "nk", CKO_SECRET_KEY);
        let msg = format!("two namespaces via {label}");
        let mut iv = [0u8; 12];
        let ct = gcm_encrypt(m, h, k, &mut iv, b"", msg.as_bytes())
            .unwrap_or_else(|rv| panic!("{label}: encrypt: {}", rv_name(rv)));
        assert_eq!(gcm_decrypt(m, h, k, &iv, b"", &ct).unwrap(), msg.as_bytes());
        // transit in org/kms opens it.
        let blob = [&iv[..], &ct].concat();
        let r = f.a.ok_ns(
            "POST",
            "transit/decrypt/nk",
            Some("org/kms"),
            json!({ "ciphertext": format!("vault:v1:{}", b64(&blob)) }),
        );
        assert_eq!(
            unb64(r["data"]["plaintext"].as_str().unwrap()),
            msg.as_bytes()
        );
        let tag = sign(m, h, mech(CKM_SHA256_HMAC), k, msg.as_bytes()).unwrap();
        let r = f.a.ok_ns(
            "POST",
            "transit/hmac/nk",
            Some("org/kms"),
            json!({ "input": b64(msg.as_bytes()), "algorithm": "sha2-256" }),
        );
        assert_eq!(
            r["data"]["hmac"].as_str().unwrap(),
            format!("vault:v1:{}", b64(&tag))
        );
        assert_rv!(
            verify(m, h, mech(CKM_SHA256_HMAC), k, msg.as_bytes(), &tag),
            CKR_OK
        );
        assert_eq!(ck!(m, C_Logout(h)), CKR_OK);
        assert_eq!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
    }
    // Each request went to its namespace: the logins to org, transit to org/kms.
    let audit = std::fs::read_to_string(f.m.dir.join("audit-a.log")).unwrap();
    let reqs: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "request")
        .collect();
    let ns_of = |path: &str| -> Vec<String> {
        reqs.iter()
            .filter(|v| v["request"]["path"] == path)
            .map(|v| {
                v["request"]["namespace"]["path"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    let logins = ns_of("auth/approle/login");
    assert!(
        !logins.is_empty() && logins.iter().all(|n| n == "org/"),
        "{logins:?}"
    );
    for p in [
        "transit/encrypt/nk",
        "transit/decrypt/nk",
        "transit/hmac/nk",
    ] {
        let ns = ns_of(p);
        assert!(
            !ns.is_empty() && ns.iter().all(|n| n == "org/kms/"),
            "{p}: {ns:?}"
        );
    }
}

#[test]
fn kubernetes_login_request_has_the_documented_shape() {
    // No Kubernetes TokenReview API here: this checks what hsmux sends to Vault only.
    let f = fixture();
    let m = &f.m;
    let slot = slot_labelled(m, "vault-k8s", true);
    let h = open(m, slot, true);
    assert_rv!(login(m, h, CKU_USER, PIN), CKR_OK);
    let seen = f.k8s_seen.lock().unwrap().clone();
    let req = seen
        .iter()
        .find(|r| r.contains("/login"))
        .expect("a login request was sent");
    assert!(
        req.starts_with("POST /v1/auth/k8s-custom/login HTTP/1.1\r\n"),
        "{req}"
    );
    let lower = req.to_lowercase();
    assert!(lower.contains("\r\nx-vault-namespace: team-a\r\n"), "{req}");
    assert!(
        !lower.contains("x-vault-token"),
        "a login carries no token: {req}"
    );
    let body: Value = serde_json::from_str(req.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(
        body,
        json!({"role": "hsmux-role", "jwt": "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"})
    );
    // Later requests carry the token the login gave.
    let later: Vec<&String> = seen.iter().filter(|r| !r.contains("/login")).collect();
    assert!(!later.is_empty());
    assert!(later
        .iter()
        .all(|r| r.to_lowercase().contains("x-vault-token: s.from-login")));
    assert_eq!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
}

// ---------------------------------------------------------------- key creation

#[test]
fn generated_keys_appear_in_transit_and_a_second_generation_rotates() {
    let (f, m, slot, h) = begin("vault-gen");
    let mut ti: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    assert_eq!(ck!(m, C_GetTokenInfo(slot, &mut ti)), CKR_OK);
    assert_eq!(
        ti.flags & CKF_WRITE_PROTECTED,
        0,
        "the root token may create keys"
    );
    let name = format!("gen-aes-{}", random_hex(3));
    let k = secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bytes(CKA_LABEL, name.as_bytes())
            .bool(CKA_TOKEN, true)
            .bool(CKA_ENCRYPT, true)
            .bool(CKA_DECRYPT, true),
    );
    let rest = f.a.ok("GET", &format!("transit/keys/{name}"), Value::Null);
    assert_eq!(rest["data"]["type"], "aes256-gcm96");
    let mut iv = [0u8; 12];
    let ct = gcm_encrypt(m, h, k, &mut iv, b"", b"new key").unwrap();
    assert_eq!(
        rest_decrypt(&f.a, &name, 1, &[iv.to_vec(), ct].concat()),
        b"new key"
    );

    let ec_name = format!("gen-ec-{}", random_hex(3));
    let gen_ec = || {
        keypair(
            m,
            h,
            CKM_EC_KEY_PAIR_GEN,
            Template::new()
                .bytes(CKA_EC_PARAMS, P256_PARAMS)
                .bytes(CKA_LABEL, ec_name.as_bytes()),
            Template::new()
                .bool(CKA_SIGN, true)
                .bytes(CKA_LABEL, ec_name.as_bytes()),
            ec_name.as_bytes(),
        )
    };
    let (pubk, _privk) = gen_ec();
    let rest =
        f.a.ok("GET", &format!("transit/keys/{ec_name}"), Value::Null);
    assert_eq!(rest["data"]["type"], "ecdsa-p256");
    use p256::pkcs8::DecodePublicKey;
    let pem = rest["data"]["keys"]["1"]["public_key"].as_str().unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_public_key_pem(pem).unwrap();
    let point = ec_point(&get_attr(m, h, pubk, CKA_EC_POINT).unwrap());
    assert_eq!(
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap(),
        vk
    );
    // Again with the same name and type: a new version, which is the new primary.
    let (pub2, priv2) = gen_ec();
    let rest =
        f.a.ok("GET", &format!("transit/keys/{ec_name}"), Value::Null);
    assert_eq!(rest["data"]["latest_version"], 2);
    let id = format!("transit/keys/{ec_name}/v2");
    assert_eq!(get_attr(m, h, priv2, CKA_ID).unwrap(), id.as_bytes());
    assert_eq!(get_attr(m, h, pub2, CKA_ID).unwrap(), id.as_bytes());
    let sig = sign(m, h, mech(CKM_ECDSA_SHA256), priv2, b"v2").unwrap();
    assert_rv!(
        verify(m, h, mech(CKM_ECDSA_SHA256), pub2, b"v2", &sig),
        CKR_OK
    );

    let ed_name = format!("gen-ed-{}", random_hex(3));
    let (edp, eds) = keypair(
        m,
        h,
        CKM_EC_EDWARDS_KEY_PAIR_GEN,
        Template::new()
            .bytes(CKA_EC_PARAMS, ED25519_PARAMS)
            .bytes(CKA_LABEL, ed_name.as_bytes()),
        Template::new()
            .bool(CKA_SIGN, true)
            .bytes(CKA_LABEL, ed_name.as_bytes()),
        ed_name.as_bytes(),
    );
    assert_eq!(
        f.a.ok("GET", &format!("transit/keys/{ed_name}"), Value::Null)["data"]["type"],
        "ed25519"
    );
    let sig = sign(m, h, mech(CKM_EDDSA), eds, b"ed").unwrap();
    assert_rv!(verify(m, h, mech(CKM_EDDSA), edp, b"ed", &sig), CKR_OK);

    let rsa_name = format!("gen-rsa-{}", random_hex(3));
    let (rp, rs) = keypair(
        m,
        h,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        Template::new()
            .ulong(CKA_MODULUS_BITS, 2048)
            .bytes(CKA_LABEL, rsa_name.as_bytes()),
        Template::new()
            .bool(CKA_SIGN, true)
            .bytes(CKA_LABEL, rsa_name.as_bytes()),
        rsa_name.as_bytes(),
    );
    assert_eq!(
        f.a.ok("GET", &format!("transit/keys/{rsa_name}"), Value::Null)["data"]["type"],
        "rsa-2048"
    );
    let sig = sign(m, h, mech(CKM_SHA256_RSA_PKCS), rs, b"rsa").unwrap();
    rsa_public(m, h, rp)
        .verify(
            rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            &sha256(b"rsa"),
            &sig,
        )
        .unwrap();
    // Another type under an existing name is refused, not rotated.
    let mut o = 0;
    let mut t = Template::new()
        .ulong(CKA_VALUE_LEN, 32)
        .bytes(CKA_LABEL, ec_name.as_bytes())
        .bool(CKA_TOKEN, true);
    let mut mc = mech(CKM_AES_KEY_GEN);
    assert_rv!(
        ck!(m, C_GenerateKey(h, &mut mc, t.ptr(), t.len(), &mut o)),
        CKR_TEMPLATE_INCONSISTENT
    );
    assert_eq!(ck!(m, C_CloseSession(h)), CKR_OK);
}

// ---------------------------------------------------------------- failures

#[test]
fn a_stopped_server_fails_within_the_deadline_while_the_soft_slot_works() {
    let f = fixture();
    let m = &f.m;
    // C_Initialize built every slot, the unreachable one included, without a request.
    assert!(
        f.init_took < Duration::from_secs(3),
        "C_Initialize waited {:?} (the unreachable slot's deadline is 3 s)",
        f.init_took
    );
    let nowhere = slot_labelled(m, "vault-nowhere", true);
    let hn = open(m, nowhere, true);
    check_device_error_within("C_Login on a silent server", Duration::from_secs(7), || {
        login(m, hn, CKU_USER, PIN)
    });

    let (_, h) = session(f, "vault-dead");
    let ec = obj(m, h, "ec256", CKO_PRIVATE_KEY);
    assert!(sign(m, h, mech(CKM_ECDSA_SHA256), ec, b"up").is_ok());
    f.dead.stop();
    // The slot's deadline is 2 s; the margin is for a loaded machine, not a speed check.
    check_device_error_within("C_Sign on a stopped server", Duration::from_secs(6), || {
        sign(m, h, mech(CKM_ECDSA_SHA256), ec, b"down").unwrap_err()
    });
    let (sslot, _) = (slot_labelled(m, "soft", true), ());
    let hs = user_session(m, sslot);
    let k = secret(
        m,
        hs,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bool(CKA_ENCRYPT, true)
            .bool(CKA_DECRYPT, true),
    );
    let mut iv = [3u8; 12];
    let ct = gcm_encrypt(m, hs, k, &mut iv, b"", b"soft still works").unwrap();
    assert_eq!(
        gcm_decrypt(m, hs, k, &iv, b"", &ct).unwrap(),
        b"soft still works"
    );
}

// ---------------------------------------------------------------- [slot.seal]

/// PBKDF2-HMAC-SHA256, here so that the test reads the store's PIN layer itself.
fn pbkdf2(pin: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    use hmac::Mac;
    let prf = || hmac::Hmac::<sha2::Sha256>::new_from_slice(pin).unwrap();
    let mut u = {
        let mut p = prf();
        p.update(salt);
        p.update(&1u32.to_be_bytes());
        p.finalize().into_bytes()
    };
    let mut t = u;
    for _ in 1..iterations {
        let mut p = prf();
        p.update(&u);
        u = p.finalize().into_bytes();
        for (a, b) in t.iter_mut().zip(u.iter()) {
            *a ^= b;
        }
    }
    t.into()
}

#[test]
fn a_sealed_soft_token_round_trips_and_refuses_another_transit_key() {
    let f = fixture();
    let m = &f.m;
    // Both slots share the store: once initialized they show its label, so they are
    // looked up first.
    let slot = slot_labelled(m, "sealed", true);
    let wrong = slot_labelled(m, "sealed-wrong", true);
    let h = user_session(m, slot);
    let marker = [0x5au8; 32];
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .bool(CKA_TOKEN, true)
        .bool(CKA_PRIVATE, true)
        .bool(CKA_SENSITIVE, false)
        .bool(CKA_EXTRACTABLE, true)
        .bytes(CKA_LABEL, b"kept")
        .bytes(CKA_VALUE, &marker);
    let mut o = 0;
    assert_rv!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut o)), CKR_OK);
    assert_eq!(ck!(m, C_Logout(h)), CKR_OK);

    // The files: no key value in clear, and the PIN opens only transit's ciphertext.
    let mut files = vec![f.soft_dir.join("token.json")];
    for e in std::fs::read_dir(f.soft_dir.join("objects")).unwrap() {
        files.push(e.unwrap().path());
    }
    for p in &files {
        let b = std::fs::read(p).unwrap();
        assert!(
            !b.windows(32).any(|w| w == marker),
            "{} holds the key value",
            p.display()
        );
    }
    let meta: Value =
        serde_json::from_slice(&std::fs::read(f.soft_dir.join("token.json")).unwrap()).unwrap();
    assert_eq!(meta["seal"]["key"], "store-seal");
    assert!(meta["seal"]["check"]
        .as_str()
        .unwrap()
        .starts_with("vault:v1:"));
    let user = &meta["user"];
    assert_eq!(user["sealed"], true);
    let kek = pbkdf2(
        PIN,
        &hex::decode(user["salt"].as_str().unwrap()).unwrap(),
        user["iterations"].as_u64().unwrap() as u32,
    );
    let wrapped = hex::decode(user["wrapped"].as_str().unwrap()).unwrap();
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let layer = aes_gcm::Aes256Gcm::new_from_slice(&kek)
        .unwrap()
        .decrypt(
            aes_gcm::Nonce::from_slice(&wrapped[..12]),
            Payload {
                msg: &wrapped[12..],
                aad: b"hsmux-soft master key",
            },
        )
        .expect("the PIN opens its layer");
    let layer = String::from_utf8(layer).expect("the PIN layer is transit's ciphertext, not a key");
    assert!(layer.starts_with("vault:v1:"), "{layer}");
    // transit (with the seal's associated data) gives the 32-byte master key.
    let r = f.a.ok(
        "POST",
        "transit/decrypt/store-seal",
        json!({ "ciphertext": layer, "associated_data": b64(b"hsmux-soft master key seal") }),
    );
    assert_eq!(unb64(r["data"]["plaintext"].as_str().unwrap()).len(), 32);

    // The same files under another transit key: refused at C_Login, clearly.
    let hw = open(m, wrong, true);
    assert_rv!(login(m, hw, CKU_USER, PIN), CKR_DEVICE_ERROR);
    // Under the right key again: the object is there with its value.
    let h = open(m, slot, true);
    assert_rv!(login(m, h, CKU_USER, PIN), CKR_OK);
    let found = find_all(m, h, "kept", CKO_SECRET_KEY);
    assert_eq!(found.len(), 1);
    assert_eq!(get_attr(m, h, found[0], CKA_VALUE).unwrap(), marker);
    // A wrong PIN is still a wrong PIN.
    assert_eq!(ck!(m, C_Logout(h)), CKR_OK);
    assert_rv!(login(m, h, CKU_USER, b"9999"), CKR_PIN_INCORRECT);
    assert_eq!(ck!(m, C_CloseAllSessions(slot)), CKR_OK);
}

// ---------------------------------------------------------------- replicas

fn metrics(port: u16) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("the metrics listener");
    c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

#[test]
fn a_replica_killed_under_load_fails_no_single_part_operation() {
    let (f, m, slot, h) = begin("ha");
    let ecp = obj(m, h, "ha-ec", CKO_PUBLIC_KEY);
    let point = ec_point(&get_attr(m, h, ecp, CKA_EC_POINT).unwrap());
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
    assert_eq!(
        get_attr(m, h, ecp, CKA_ID).unwrap(),
        b"transit/keys/ha-ec/v1"
    );
    let aes_raw = export(&f.r2, "encryption-key", "ha-aes", 1);
    let done = std::sync::atomic::AtomicU64::new(0);
    let stop_at = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (done, stop_at, vk, aes_raw) = (&done, &stop_at, &vk, &aes_raw);
            s.spawn(move || {
                let h = open(m, slot, true);
                let ec = obj(m, h, "ha-ec", CKO_PRIVATE_KEY);
                let ak = obj(m, h, "ha-aes", CKO_SECRET_KEY);
                let mut i = 0;
                while !stop_at.load(std::sync::atomic::Ordering::Relaxed) {
                    let msg = format!("thread {t} op {i}");
                    let (iv, ct) = sign_and_seal(m, h, (ec, vk), ak, &msg);
                    assert_eq!(
                        gcm_open(aes_raw, &iv, b"", &ct).expect("aes-gcm opens it"),
                        msg.as_bytes()
                    );
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        // Let the load run on r1, kill it, keep the load on r2 for a while.
        let t = Instant::now();
        while done.load(std::sync::atomic::Ordering::Relaxed) < 40
            && t.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        f.r1.stop();
        let before = done.load(std::sync::atomic::Ordering::Relaxed);
        let t = Instant::now();
        while done.load(std::sync::atomic::Ordering::Relaxed) < before + 80
            && t.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop_at.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let n = done.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n >= 120, "only {n} rounds");
    let text = metrics(f.metrics_port);
    let failovers: f64 = text
        .lines()
        .filter(|l| l.starts_with("hsmux_failovers_total{") && l.contains("slot=\"ha\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(failovers >= 1.0, "no failover counted:\n{text}");
    let r1_up = text
        .lines()
        .find(|l| {
            l.starts_with("hsmux_replica_up{")
                && l.contains("slot=\"ha\"")
                && l.contains("replica=\"r1\"")
        })
        .unwrap_or_else(|| panic!("no hsmux_replica_up for r1:\n{text}"));
    assert!(r1_up.ends_with(" 0"), "{r1_up}");
}
