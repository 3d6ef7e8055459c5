//! `hsmux keys`, `hsmux key create|rotate|destroy|public` and `hsmux sign` as a user runs
//! them (the built binary), on three kinds of slot of one configuration: the soft token,
//! a SoftHSMv2 module slot and an OpenBao transit slot (`bao server -dev` from the venv).
//! Results are checked outside hsmux: `--json` parsed, PEM public keys parsed and ECDSA
//! signatures verified by the openssl CLI, and a ciphertext made with the old key before
//! a rotation decrypted after it by a consumer of libhsmux.so (the cryptoki crate).

mod common;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The configuration, its directory and the bao dev server behind the transit slot.
struct Fixture {
    dir: PathBuf,
    config: PathBuf,
    softhsm_conf: PathBuf,
    bao: Mutex<Option<Child>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(mut c) = self.bao.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The bao dev server's pid, for [`stop_bao`].
static BAO_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn stop_bao() {
    let pid = BAO_PID.load(std::sync::atomic::Ordering::SeqCst);
    if pid != 0 {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `bao` CLI against the dev server at `addr` (it speaks HTTP for the test).
fn bao(addr: &str, args: &[&str]) -> Output {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/bao");
    Command::new(if bin.exists() { bin } else { "bao".into() })
        .args(args)
        .env("BAO_ADDR", addr)
        .env("BAO_TOKEN", "cli-keys-root")
        .output()
        .expect("OpenBao's bao (scripts/deps.sh puts it in .venv)")
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hsmux-cli-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        common::remove_at_exit(&dir);
        std::fs::write(dir.join("pin"), "1234\n").unwrap();
        std::fs::write(dir.join("so-pin"), "12345678\n").unwrap();
        let softhsm_conf = common::softhsm_token(&dir, "cli-hsm", "12345678", "1234");
        let port = free_port();
        let addr = format!("http://127.0.0.1:{port}");
        let child = Command::new(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/bao"),
        )
        .args(["server", "-dev", "-dev-root-token-id=cli-keys-root"])
        .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
        .env("HOME", &dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("bao.log")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bao server -dev");
        BAO_PID.store(child.id(), std::sync::atomic::Ordering::SeqCst);
        // The fixture is a static, never dropped: the server is stopped at exit.
        unsafe { libc::atexit(stop_bao) };
        let bao_child = Mutex::new(Some(child));
        // Ready when the transit engine can be mounted (the dev server unseals itself).
        let mut tries = 0;
        while !bao(&addr, &["secrets", "enable", "transit"]).status.success() {
            tries += 1;
            assert!(tries < 600, "bao dev server on {port} did not come up");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let config = dir.join("hsmux.toml");
        std::fs::write(
            &config,
            format!(
                "[[slot]]\nlabel = \"cli-soft\"\nbackend = \"soft\"\npath = \"{}\"\nkdf_iterations = 1000\n\n\
                 [[slot]]\nlabel = \"cli-hsm\"\nbackend = \"module\"\nlibrary = \"{SOFTHSM}\"\ntoken = \"cli-hsm\"\n\n\
                 [[slot]]\nlabel = \"cli-transit\"\nbackend = \"vault\"\naddress = \"{addr}\"\n\
                 auth = {{ method = \"token\", token = \"cli-keys-root\" }}\n",
                dir.join("soft-store").display()
            ),
        )
        .unwrap();
        std::env::set_var("SOFTHSM2_CONF", &softhsm_conf);
        std::env::set_var("HSMUX_CONFIG", &config);
        let f = Fixture {
            dir,
            config,
            softhsm_conf,
            bao: bao_child,
        };
        // The soft token is set up with `hsmux init`, PINs from files.
        let so_pin = format!("--so-pin-source=file:{}", f.dir.join("so-pin").display());
        ok(&run(&f, &["init", "--slot", "0", "--label", "cli-soft", &so_pin], &[]));
        f
    })
}

/// Runs `hsmux VERB.. --config C` with stdin closed (no terminal).
fn run(f: &Fixture, args: &[&str], more: &[&str]) -> Output {
    let pin = f.dir.join("pin");
    let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    argv.push(format!("--config={}", f.config.display()));
    if !args.contains(&"--no-pin") {
        argv.push(format!("--pin-source=file:{}", pin.display()));
    } else {
        argv.retain(|a| a != "--no-pin");
    }
    argv.extend(more.iter().map(|s| s.to_string()));
    Command::new(env!("CARGO_BIN_EXE_hsmux"))
        .args(&argv)
        .env("SOFTHSM2_CONF", &f.softhsm_conf)
        // The module of this build (`cargo test` leaves target/release's stale).
        .env("HSMUX_MODULE", common::module_path())
        .env_remove("HSMUX_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run hsmux")
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// `hsmux keys --json URI`: the versions of the one key it lists.
fn versions(f: &Fixture, uri: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(&ok(&run(f, &["keys", "--json", uri], &[]))).unwrap();
    let slots = v["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 1, "{uri} selects one token: {v}");
    let keys = slots[0]["keys"].as_array().unwrap();
    match keys.as_slice() {
        [] => Vec::new(),
        [k] => k["versions"].as_array().unwrap().clone(),
        _ => panic!("{uri} lists one key: {v}"),
    }
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl")
}

/// One token's lifecycle: create, list, public key, sign (verified by openssl), rotate,
/// the old version still usable, destroy.
fn lifecycle(token: &str, name: &str, destroys: bool) {
    let f = fixture();
    let work = f.dir.join(token);
    std::fs::create_dir_all(&work).unwrap();
    let file = |n: &str| work.join(n).display().to_string();
    let enc: String = percent(name);
    let key = format!("pkcs11:token={token};object={enc}");

    // Create; a second create of the same name is refused (rotation is its own verb).
    ok(&run(f, &["key", "create", &key, "--type", "ec:p256"], &[]));
    let o = run(f, &["key", "create", &key, "--type", "ec:p256"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("key rotate"));
    let v1 = versions(f, &key);
    assert_eq!(v1.len(), 1, "{v1:?}");
    let objects = v1[0]["objects"].as_array().unwrap();
    let mut types: Vec<&str> = objects
        .iter()
        .map(|o| o["type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, ["private", "public"]);
    for o in objects {
        assert_eq!(o["label"], name);
        assert_eq!(
            (o["key_type"].as_str(), o["curve"].as_str()),
            (Some("ec"), Some("p256"))
        );
        // Each object's URI selects exactly that object.
        let uri = o["uri"].as_str().unwrap();
        let one = versions(f, uri);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0]["objects"].as_array().unwrap().len(), 1, "{uri}");
    }

    // The public key parses in openssl; a signature of hsmux's verifies there.
    std::fs::write(file("data"), b"signed by hsmux sign\n").unwrap();
    ok(&run(
        f,
        &["key", "public", &key, "--out", &file("v1.pem")],
        &[],
    ));
    let t = openssl(&["pkey", "-pubin", "-in", &file("v1.pem"), "-noout", "-text"]);
    assert!(t.status.success() && String::from_utf8_lossy(&t.stdout).contains("NIST CURVE: P-256"));
    ok(&run(
        f,
        &[
            "sign",
            &key,
            "--in",
            &file("data"),
            "--out",
            &file("v1.sig"),
            "--mechanism",
            "ecdsa-sha256",
        ],
        &[],
    ));
    let verify = |pem: &str, sig: &str| {
        openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            &file(pem),
            "-signature",
            &file(sig),
            &file("data"),
        ])
        .status
        .success()
    };
    assert!(verify("v1.pem", "v1.sig"));
    std::fs::write(file("bad"), b"other data").unwrap();
    assert!(!openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &file("v1.pem"),
        "-signature",
        &file("v1.sig"),
        &file("bad")
    ])
    .status
    .success());

    // Rotate: a second version, newest first, with its own public key; the old one kept.
    let r: Value =
        serde_json::from_str(&ok(&run(f, &["key", "rotate", "--json", &key], &[]))).unwrap();
    let new_id = r["rotated"][0]["id"].as_str().unwrap().to_string();
    let v2 = versions(f, &key);
    assert_eq!(v2.len(), 2, "{v2:?}");
    assert_eq!(v2[0]["id"], new_id.as_str());
    assert_eq!(v2[1]["id"], v1[0]["id"]);
    ok(&run(
        f,
        &["key", "public", &key, "--out", &file("v2.pem")],
        &[],
    ));
    assert_ne!(
        std::fs::read(file("v1.pem")).unwrap(),
        std::fs::read(file("v2.pem")).unwrap()
    );
    ok(&run(
        f,
        &[
            "sign",
            &key,
            "--in",
            &file("data"),
            "--out",
            &file("v2.sig"),
            "--mechanism",
            "ecdsa-sha256",
        ],
        &[],
    ));
    assert!(verify("v2.pem", "v2.sig") && !verify("v1.pem", "v2.sig"));
    // The old version is named by its id and still signs.
    let old = format!("{key};id={}", hex_pct(v1[0]["id"].as_str().unwrap()));
    ok(&run(
        f,
        &["key", "public", &old, "--out", &file("old.pem")],
        &[],
    ));
    assert_eq!(
        std::fs::read(file("v1.pem")).unwrap(),
        std::fs::read(file("old.pem")).unwrap()
    );

    // Destroy: refused without a terminal and without --yes (nothing destroyed).
    let o = run(f, &["key", "destroy", &old], &[]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(versions(f, &key).len(), 2);
    let o = run(f, &["key", "destroy", "--yes", &old], &[]);
    if destroys {
        ok(&o);
        let left = versions(f, &key);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0]["id"], new_id.as_str());
    } else {
        // A remote service's versions are destroyed in the service.
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("C_DestroyObject"));
    }
}

/// Every byte but unreserved characters as %XX (what a user writes into a URI).
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn hex_pct(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|c| format!("%{}", std::str::from_utf8(c).unwrap()))
        .collect()
}

#[test]
fn key_lifecycle_on_the_soft_token() {
    lifecycle("cli-soft", "ca signing; 50% é", true);
}

#[test]
fn key_lifecycle_on_a_softhsm_module_slot() {
    lifecycle("cli-hsm", "hsm=key?&", true);
}

#[test]
fn key_lifecycle_on_a_transit_slot() {
    lifecycle("cli-transit", "transit-signing", false);
}

/// An AES-GCM ciphertext made with a key before `hsmux key rotate` decrypts with that
/// version afterwards (through libhsmux.so), and on the soft token and module slots the new
/// version is another key.
fn rotation_keeps_old_ciphertexts(token: &str, name: &str) {
    let f = fixture();
    let key = format!("pkcs11:token={token};object={name}");
    ok(&run(f, &["key", "create", &key, "--type", "aes:256"], &[]));
    let old_id = hex::decode(versions(f, &key)[0]["id"].as_str().unwrap()).unwrap();
    let consumer = || {
        let p = Pkcs11::new(common::module_path()).unwrap();
        p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        p
    };
    // Zero bytes: the transit slot writes the IV the service chose into them.
    let (mut iv, aad, pt) = (
        [0u8; 12],
        b"header".to_vec(),
        b"sealed before the rotation".to_vec(),
    );
    let crypt = |p: &Pkcs11, id: &[u8], iv: &mut [u8; 12], data: &[u8], enc: bool| {
        let slot = p
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| p.get_token_info(*s).unwrap().label() == token)
            .unwrap();
        let s = p.open_ro_session(slot).unwrap();
        s.login(UserType::User, Some(&AuthPin::from("1234")))
            .unwrap();
        let k = s
            .find_objects(&[
                Attribute::Label(name.as_bytes().to_vec()),
                Attribute::Id(id.to_vec()),
            ])
            .unwrap();
        assert_eq!(k.len(), 1);
        let m = Mechanism::AesGcm(GcmParams::new(iv, &aad, 128.into()).unwrap());
        if enc {
            s.encrypt(&m, k[0], data)
        } else {
            s.decrypt(&m, k[0], data)
        }
    };
    let ct = {
        let p = consumer();
        let ct = crypt(&p, &old_id, &mut iv, &pt, true).unwrap();
        p.finalize().unwrap();
        ct
    };
    ok(&run(f, &["key", "rotate", &key], &[]));
    let v = versions(f, &key);
    assert_eq!(v.len(), 2);
    let new_id = hex::decode(v[0]["id"].as_str().unwrap()).unwrap();
    assert_ne!(new_id, old_id);
    let p = consumer();
    assert_eq!(crypt(&p, &old_id, &mut iv, &ct, false).unwrap(), pt);
    // A transit slot opens a ciphertext with whichever version of the key does (the
    // service's blobs name their version; hsmux's raw ones do not).
    if !token.contains("transit") {
        assert!(
            crypt(&p, &new_id, &mut iv, &ct, false).is_err(),
            "{token}: the new version is another key"
        );
    }
    p.finalize().unwrap();
}

#[test]
fn rotation_keeps_old_ciphertexts_on_every_kind_of_slot() {
    // One test: the consumer's module instance is process-wide.
    rotation_keeps_old_ciphertexts("cli-soft", "data-key");
    rotation_keeps_old_ciphertexts("cli-hsm", "data-key");
    rotation_keeps_old_ciphertexts("cli-transit", "data-key");
}

#[test]
fn bad_uris_and_missing_pins_are_usage_errors() {
    let f = fixture();
    for (uri, why) in [
        ("pkcs11:object=k;colour=blue", "unknown attribute `colour`"),
        ("pkcs11:object=k;object=j", "given twice"),
        ("pkcs11:object=a b", "percent-encoded"),
        ("pkcs11:id=%zz", "two hex digits"),
    ] {
        let o = run(f, &["keys", uri], &[]);
        assert_eq!(o.status.code(), Some(2), "{uri}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(why), "{uri}");
    }
    // No PIN anywhere and no terminal: the verb says how to give one.
    let o = run(
        f,
        &[
            "key",
            "rotate",
            "--no-pin",
            "pkcs11:token=cli-soft;object=x",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--pin-source"));
    // The URI's own pin-source works in its place.
    let pin = f.dir.join("pin");
    let uri = format!("pkcs11:token=cli-soft?pin-source=file:{}", pin.display());
    ok(&run(f, &["keys", "--no-pin", &uri], &[]));
}
