//! The audit trail (`[audit]`, docs/audit.md) through the C ABI: the exact fields of
//! each listed call's line on the soft token and on a SoftHSMv2 module slot, chains that
//! `hsmux audit verify` checks (and breaks it finds and names), two processes on one file,
//! rotation by rename and by copytruncate, a full disk (a file size limit in the child)
//! under each `on_full` / `on_failure`, and no PIN, key or data byte in the file at any
//! level. Each scenario runs in a child process (this binary started again), since a
//! process has one configuration.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const CHILD: &str = "HSMUX_AUDIT_CHILD";
const SO: &[u8] = b"so-PIN-xyzzy";
const USER: &[u8] = b"user-PIN-plugh";
const NEW_USER: &[u8] = b"user-PIN-quux";
/// 32 bytes of data whose text must never reach the trail.
const DATA: &[u8] = b"DATA-MARKER-0123456789-abcdefghi";
const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// A fresh directory for a test, or `None` in a child process (where the tests other than
/// `child` do nothing).
fn parent_dir() -> Option<PathBuf> {
    (!in_child()).then(temp)
}

fn metrics_table(port: u16) -> String {
    format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n")
}

/// The chain of the last process that wrote to the trail.
fn last_chain(rs: &[Value]) -> Value {
    rs.iter()
        .rev()
        .find(|r| r["eventName"] == "audit.start")
        .unwrap()["chain"]
        .clone()
}

fn temp() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "hsmux-audit-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A config with `[audit] file = dir/audit.jsonl` plus `audit`, one soft slot `a`, and
/// `extra` (more slots, `[metrics]`).
fn config(dir: &Path, audit: &str, extra: &str) -> PathBuf {
    let p = dir.join("hsmux.toml");
    std::fs::write(
        &p,
        format!(
            "[audit]\nfile = \"{d}/audit.jsonl\"\n{audit}\n\n[[slot]]\nlabel = \"a\"\nbackend = \"soft\"\npath = \"{d}/soft\"\nkdf_iterations = 1000\n{extra}",
            d = dir.display()
        ),
    )
    .unwrap();
    p
}

/// Runs scenario `what` in a child process with the config in `dir`; returns its stdout.
fn run_child(dir: &Path, what: &str) -> String {
    child_with(dir, what, &[])
}

fn child_with(dir: &Path, what: &str, env: &[(&str, String)]) -> String {
    let out = spawn(dir, what, env).wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains("child done"),
        "child {what} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn spawn(dir: &Path, what: &str, env: &[(&str, String)]) -> std::process::Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, what)
        .env("HSMUX_CONFIG", dir.join("hsmux.toml"))
        .env("AUDIT_DIR", dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// `key=value` printed by a child.
fn said(out: &str, key: &str) -> String {
    // The first line comes after the harness's "test child ... ".
    out.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}="))
                .or_else(|| l.split_once(&format!(" ... {key}=")).map(|(_, v)| v))
        })
        .unwrap_or_else(|| panic!("the child did not say {key}:\n{out}"))
        .to_string()
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn named<'a>(rs: &'a [Value], event: &str) -> Vec<&'a Value> {
    rs.iter().filter(|r| r["eventName"] == event).collect()
}

fn check_trail(
    files: &[&Path],
) -> Result<hsmux::audit::verify::Report, hsmux::audit::verify::Broken> {
    hsmux::audit::verify::verify_files(files)
}

#[path = "audit/scenarios.rs"]
mod scenarios;
use scenarios::*;
#[path = "audit/exit.rs"]
mod exit;
#[path = "audit/transit.rs"]
mod transit;

/// Runs a child scenario; only when started by a test below.
#[test]
fn child() {
    let Ok(what) = std::env::var(CHILD) else {
        return;
    };
    let dir = PathBuf::from(std::env::var("AUDIT_DIR").unwrap());
    let file = dir.join("audit.jsonl");
    let m = load();
    if what == "full" {
        // The audit file may grow by `AUDIT_ROOM` bytes more; past that, writes are short
        // and then fail (EFBIG), as on a full disk; SIGXFSZ is ignored, as a daemon would.
        let room: u64 = std::env::var("AUDIT_ROOM").unwrap().parse().unwrap();
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: size + room,
                rlim_max: libc::RLIM_INFINITY,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        }
    }
    assert_rv!(initialize(&m), CKR_OK);
    match what.as_str() {
        "init" => init(&m, 0),
        "soft" => soft_calls(&m),
        "transit" => transit::calls(&m),
        "exit" => exit::signs_and_exits(&m),
        "module" => {
            let slot = slot_labelled(&m, "shsm", true);
            if std::env::var_os("AUDIT_MAKE_PAIR").is_some() {
                let h = open(&m, slot, true);
                assert_rv!(login_as(&m, h, CKU_USER, USER), CKR_OK);
                ec_pair(&m, h);
                assert_rv!(ck!(&m, C_CloseSession(h)), CKR_OK);
            }
            let (h, private, public) = ready(&m, slot, USER);
            let sig = sign(&m, h, mech(CKM_ECDSA), private, DATA).unwrap();
            assert_rv!(verify_sig(&m, h, public, &sig), CKR_OK);
            assert_rv!(ck!(&m, C_Logout(h)), CKR_OK);
            println!("PRIVATE={private}");
        }
        "sign" => {
            let n: usize = std::env::var("AUDIT_N").unwrap().parse().unwrap();
            let (h, private, _) = ready(&m, 0, USER);
            for _ in 0..n {
                assert_rv!(sign_once(&m, h, private), CKR_OK);
            }
        }
        "rename" | "copytruncate" => {
            let (h, private, _) = ready(&m, 0, USER);
            for _ in 0..5 {
                assert_rv!(sign_once(&m, h, private), CKR_OK);
            }
            let old = dir.join("audit.jsonl.1");
            if what == "rename" {
                std::fs::rename(&file, &old).unwrap();
            } else {
                std::fs::copy(&file, &old).unwrap();
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&file)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
            for _ in 0..5 {
                assert_rv!(sign_once(&m, h, private), CKR_OK);
            }
        }
        "full" => {
            let (h, private, _) = ready(&m, 0, USER);
            let (mut ok, mut first_err, mut after) = (0, CKR_OK, Vec::new());
            for _ in 0..200 {
                let rv = sign_once(&m, h, private);
                if rv == CKR_OK && first_err == CKR_OK {
                    ok += 1;
                } else if first_err == CKR_OK {
                    first_err = rv;
                } else {
                    after.push(rv);
                }
            }
            println!("OK={ok}");
            println!("FIRST_ERR={first_err}");
            println!(
                "AFTER_ALL_DEVICE_ERROR={}",
                !after.is_empty() && after.iter().all(|rv| *rv == CKR_DEVICE_ERROR)
            );
            // Let the writer try (and fail) what is queued before reading the counter.
            std::thread::sleep(std::time::Duration::from_millis(300));
            let port = std::env::var("AUDIT_PORT").unwrap();
            println!(
                "WRITE_ERRORS={}",
                metrics_counter(&port, "hsmux_audit_write_errors_total")
            );
        }
        "drop" => {
            let (_, private, _) = ready(&m, 0, USER);
            let total = std::sync::atomic::AtomicU64::new(0);
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        let h = open(&m, 0, false);
                        for _ in 0..500 {
                            assert_rv!(sign_once(&m, h, private), CKR_OK);
                            total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    });
                }
            });
            let port = std::env::var("AUDIT_PORT").unwrap();
            println!("SIGNS={}", total.into_inner());
            println!(
                "DROPPED={}",
                metrics_counter(&port, "hsmux_audit_dropped_total")
            );
        }
        other => panic!("unknown child scenario {other}"),
    }
    assert_rv!(ck!(&m, C_Finalize(std::ptr::null_mut())), CKR_OK);
    println!("child done");
}

// ---- the tests -----------------------------------------------------------------------------

fn no_secrets(path: &Path, out: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    for secret in [SO, USER, NEW_USER, b"wrong-PIN-grue".as_slice(), DATA] {
        let s = String::from_utf8_lossy(secret);
        assert!(!text.contains(&*s), "{s} is in the trail");
        assert!(
            !text.contains(&hex::encode(secret)),
            "{s} (hex) is in the trail"
        );
    }
    for what in ["KEY", "SIG", "CT"] {
        let v = said(out, what);
        assert!(!text.contains(&v), "the {what} bytes are in the trail");
        // Any 8-byte window of them, in hex.
        for w in (0..v.len().saturating_sub(16)).step_by(16) {
            assert!(
                !text.contains(&v[w..w + 16]),
                "part of {what} is in the trail"
            );
        }
    }
}

#[test]
fn soft_token_calls_have_their_exact_fields_and_no_secret() {
    let Some(dir) = parent_dir() else {
        return;
    };
    config(&dir, "", "");
    let out = run_child(&dir, "soft");
    let file = dir.join("audit.jsonl");
    let rs = records(&file);
    let pid = rs[0]["pid"].as_u64().unwrap();
    assert_eq!(rs[0]["eventName"], "audit.start");
    assert_eq!(rs[0]["seq"], 0);
    assert_eq!(rs[0]["level"], "keys");
    let uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    for r in &rs {
        assert_eq!(r["pid"].as_u64(), Some(pid));
        assert_eq!(r["uid"].as_u64(), Some(uid as u64));
        assert!(r["exe"].as_str().unwrap().ends_with(
            &*std::env::current_exe()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
        ));
        let t = r["time"].as_str().unwrap();
        assert!(
            t.len() == 27 && t.ends_with('Z') && t.as_bytes()[19] == b'.',
            "RFC 3339 with µs: {t}"
        );
    }
    // Level "keys": no pure reads, no *Init that succeeded, no length query.
    assert!(named(&rs, "C_GetSlotList").is_empty());
    assert!(named(&rs, "C_SignInit").is_empty());
    assert!(named(&rs, "C_FindObjectsInit").is_empty());
    let sign = named(&rs, "C_Sign");
    assert_eq!(
        sign.len(),
        1,
        "one line per signature, not per length query"
    );
    let s = sign[0];
    let private: u64 = said(&out, "PRIVATE").parse().unwrap();
    assert_eq!(s["slot"], "a");
    assert_eq!(s["slotId"], 0);
    assert_eq!(s["mechanism"], "CKM_ECDSA");
    assert_eq!(s["keyHandle"].as_u64(), Some(private));
    assert_eq!(s["keyLabel"], "audit-ec");
    assert_eq!(s["keyId"], "0102");
    assert_eq!(s["keyClass"], "privateKey");
    assert_eq!(s["dataLength"], DATA.len());
    assert_eq!(s["result"], "CKR_OK");
    assert!(s["durationUs"].is_u64());
    assert!(s.get("replica").is_none());
    let v = named(&rs, "C_Verify");
    assert_eq!(
        (v[0]["keyClass"].as_str(), v[0]["mechanism"].as_str()),
        (Some("publicKey"), Some("CKM_ECDSA"))
    );
    assert_eq!(v[0]["result"], "CKR_OK");
    let logins: Vec<_> = named(&rs, "C_Login")
        .iter()
        .map(|r| {
            (
                r["userType"].as_str().unwrap(),
                r["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        logins,
        [
            ("CKU_SO", "CKR_OK"),
            ("CKU_USER", "CKR_OK"),
            ("CKU_USER", "CKR_PIN_INCORRECT"),
            ("CKU_USER", "CKR_OK")
        ]
    );
    assert_eq!(named(&rs, "C_InitToken")[0]["slotId"], 0);
    assert_eq!(named(&rs, "C_InitPIN")[0]["result"], "CKR_OK");
    assert_eq!(named(&rs, "C_SetPIN")[0]["result"], "CKR_OK");
    assert_eq!(named(&rs, "C_Logout").len(), 1);
    let pair = named(&rs, "C_GenerateKeyPair");
    assert_eq!(
        (
            pair[0]["mechanism"].as_str(),
            pair[0]["newKeyLabel"].as_str(),
            pair[0]["newKeyId"].as_str()
        ),
        (Some("CKM_EC_KEY_PAIR_GEN"), Some("audit-ec"), Some("0102"))
    );
    let gen = named(&rs, "C_GenerateKey");
    assert_eq!(
        (
            gen[0]["newKeyLabel"].as_str(),
            gen[0]["newKeyClass"].as_str()
        ),
        (Some("audit-aes"), Some("secretKey"))
    );
    for (f, label) in [("C_Encrypt", "audit-aes"), ("C_Decrypt", "audit-aes")] {
        let r = named(&rs, f);
        assert_eq!(r.len(), 1, "{f}");
        assert_eq!(
            (
                r[0]["mechanism"].as_str(),
                r[0]["keyLabel"].as_str(),
                r[0]["keyId"].as_str()
            ),
            (Some("CKM_AES_GCM"), Some(label), Some("03"))
        );
    }
    assert_eq!(named(&rs, "C_Encrypt")[0]["dataLength"], DATA.len());
    assert_eq!(named(&rs, "C_Decrypt")[0]["dataLength"], DATA.len() + 16);
    // The attribute change names the key as it was; the destruction as it was renamed.
    assert_eq!(
        named(&rs, "C_SetAttributeValue")[0]["keyLabel"],
        "audit-aes"
    );
    assert_eq!(
        named(&rs, "C_DestroyObject")[0]["keyLabel"],
        "audit-aes-renamed"
    );
    assert_eq!(rs.last().unwrap()["eventName"], "audit.stop");
    let report = check_trail(&[&file]).unwrap();
    assert_eq!(
        (report.lines, report.chains, report.open.len()),
        (rs.len(), 1, 0)
    );
    no_secrets(&file, &out);

    // Level "all": the reads too, still no secret.
    let dir2 = temp();
    config(&dir2, "level = \"all\"", "");
    let out = run_child(&dir2, "soft");
    let file2 = dir2.join("audit.jsonl");
    let rs = records(&file2);
    assert_eq!(named(&rs, "C_GetSlotList").len(), 1);
    assert_eq!(named(&rs, "C_SignInit")[0]["keyLabel"], "audit-ec");
    assert_eq!(named(&rs, "C_Sign").len(), 2, "the length query too");
    assert!(check_trail(&[&file2]).is_ok());
    no_secrets(&file2, &out);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

/// A trail of two chains (two processes one after the other) with 10 signatures each.
fn two_runs(dir: &Path) -> PathBuf {
    config(dir, "", "");
    run_child(dir, "init");
    child_with(dir, "sign", &[("AUDIT_N", "10".into())]);
    dir.join("audit.jsonl")
}

fn edited(file: &Path, f: impl FnOnce(&mut Vec<String>)) -> PathBuf {
    let mut lines: Vec<String> = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    f(&mut lines);
    let out = file.with_extension("edited");
    std::fs::write(&out, lines.join("\n") + "\n").unwrap();
    out
}

#[test]
fn verify_finds_and_names_an_edited_deleted_or_moved_line() {
    let Some(dir) = parent_dir() else {
        return;
    };
    let file = two_runs(&dir);
    let report = check_trail(&[&file]).unwrap();
    assert_eq!((report.chains, report.open.len()), (2, 0));
    let rs = records(&file);
    // Line numbers (1-based) of the second process's C_Sign lines.
    let chain2 = last_chain(&rs);
    let signs: Vec<usize> = rs
        .iter()
        .enumerate()
        .filter(|(_, r)| r["chain"] == chain2 && r["eventName"] == "C_Sign")
        .map(|(i, _)| i + 1)
        .collect();
    let k = signs[4];

    let e = edited(&file, |l| {
        l[k - 1] = l[k - 1].replace("\"dataLength\":32", "\"dataLength\":33")
    });
    let b = check_trail(&[&e]).unwrap_err();
    assert_eq!(b.line, k, "{b}");
    assert!(b.reason.contains("edited"), "{b}");

    let e = edited(&file, |l| {
        l.remove(k - 1);
    });
    let b = check_trail(&[&e]).unwrap_err();
    assert_eq!(b.line, k, "the line after the gap: {b}");
    assert!(b.reason.contains("deleted"), "{b}");

    let e = edited(&file, |l| l.swap(k - 1, signs[5] - 1));
    let b = check_trail(&[&e]).unwrap_err();
    assert_eq!(b.line, k, "{b}");

    // The start record removed: the chain's next line is named.
    let start = rs
        .iter()
        .position(|r| r["chain"] == chain2 && r["eventName"] == "audit.start")
        .unwrap()
        + 1;
    let e = edited(&file, |l| {
        l.remove(start - 1);
    });
    assert_eq!(check_trail(&[&e]).unwrap_err().line, start);

    // The CLI: exit 1 and the line named; exit 0 on the intact file.
    let bin = env!("CARGO_BIN_EXE_hsmux");
    let out = Command::new(bin)
        .args(["audit", "verify"])
        .arg(&e)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!(":{start}:")));
    let out = Command::new(bin)
        .args(["audit", "verify"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new(bin)
        .args(["audit", "tail", "--key", "audit-ec", "--slot", "a"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(" C_Sign CKM_ECDSA key=\"audit-ec\" id=0102"))
            .count(),
        10,
        "{text}"
    );
    assert!(!text.contains("audit.start"), "filtered by key: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_processes_write_one_file() {
    let Some(dir) = parent_dir() else {
        return;
    };
    config(&dir, "", "");
    run_child(&dir, "init");
    let n = 300;
    let env = [("AUDIT_N", n.to_string())];
    let (a, b) = (spawn(&dir, "sign", &env), spawn(&dir, "sign", &env));
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let file = dir.join("audit.jsonl");
    let report = check_trail(&[&file]).unwrap();
    assert_eq!(report.chains, 3);
    let rs = records(&file);
    assert_eq!(named(&rs, "C_Sign").len(), 2 * n);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rotation_by_rename_and_by_copytruncate() {
    if in_child() {
        return;
    }
    for (how, why) in [("rename", "renamed"), ("copytruncate", "truncated")] {
        let dir = temp();
        // refuse: each C_Sign returns once its line is written, so the rotation falls
        // between the fifth and the sixth line.
        config(&dir, "on_failure = \"refuse\"", "");
        run_child(&dir, "init");
        run_child(&dir, how);
        let (old, new) = (dir.join("audit.jsonl.1"), dir.join("audit.jsonl"));
        let rn = records(&new);
        assert_eq!(rn[0]["eventName"], "audit.reopen", "{how}");
        assert_eq!(rn[0]["detail"], why);
        assert_eq!(named(&rn, "C_Sign").len(), 5, "{how}");
        assert_eq!(named(&records(&old), "C_Sign").len(), 5, "{how}");
        let r = check_trail(&[&old, &new]).unwrap_or_else(|b| panic!("{how}: {b}"));
        assert_eq!(r.open.len(), 0);
        // The new file alone checks too (its chain starts at the reopen record).
        check_trail(&[&new]).unwrap_or_else(|b| panic!("{how}: {b}"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_full_disk_under_each_on_full_and_on_failure() {
    if in_child() {
        return;
    }
    for on_full in ["block", "drop"] {
        for on_failure in ["log", "refuse"] {
            let dir = temp();
            let port = free_port();
            config(
                &dir,
                &format!("on_full = \"{on_full}\"\non_failure = \"{on_failure}\""),
                &metrics_table(port),
            );
            run_child(&dir, "init");
            let out = child_with(
                &dir,
                "full",
                &[
                    ("AUDIT_ROOM", "6000".into()),
                    ("AUDIT_PORT", port.to_string()),
                ],
            );
            let what = format!("on_full={on_full} on_failure={on_failure}");
            let file = dir.join("audit.jsonl");
            // No torn line: every line is a record and the chains hold.
            check_trail(&[&file]).unwrap_or_else(|b| panic!("{what}: {b}"));
            let written = named(&records(&file), "C_Sign")
                .iter()
                .filter(|r| r["result"] == "CKR_OK")
                .count();
            let ok: usize = said(&out, "OK").parse().unwrap();
            assert!(
                said(&out, "WRITE_ERRORS").parse::<u64>().unwrap() > 0,
                "{what}"
            );
            if on_failure == "refuse" {
                // No unaudited use: every signature that succeeded has its line.
                assert_eq!(ok, written, "{what}");
                assert_eq!(
                    said(&out, "FIRST_ERR"),
                    CKR_DEVICE_ERROR.to_string(),
                    "{what}"
                );
                assert_eq!(said(&out, "AFTER_ALL_DEVICE_ERROR"), "true", "{what}");
            } else {
                assert_eq!(ok, 200, "{what}: the disk error does not stop key use");
                assert!(written < ok, "{what}");
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[test]
fn dropped_lines_are_counted() {
    let Some(dir) = parent_dir() else {
        return;
    };
    let port = free_port();
    config(&dir, "on_full = \"drop\"\nqueue = 1", &metrics_table(port));
    run_child(&dir, "init");
    let out = child_with(&dir, "drop", &[("AUDIT_PORT", port.to_string())]);
    let file = dir.join("audit.jsonl");
    check_trail(&[&file]).unwrap();
    let rs = records(&file);
    let signs: usize = said(&out, "SIGNS").parse().unwrap();
    let dropped: usize = said(&out, "DROPPED").parse().unwrap();
    assert_eq!(named(&rs, "C_Sign").len() + dropped, signs);
    // The records of the signing process's chain (the init child's queue dropped some too).
    let chain = last_chain(&rs);
    let reported: u64 = named(&rs, "audit.dropped")
        .iter()
        .filter(|r| r["chain"] == chain)
        .map(|r| r["lines"].as_u64().unwrap())
        .sum();
    assert_eq!(
        reported as usize, dropped,
        "the trail says how many lines it lacks"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_softhsm_module_slot_is_audited_like_the_others() {
    let Some(dir) = parent_dir() else {
        return;
    };
    let conf = softhsm_token(&dir, "vendor", "so-PIN-xyzzy", "user-PIN-plugh");
    // The key pair, made through the module slot itself (its lines are checked below).
    config(&dir, "", &format!("\n[[slot]]\nlabel = \"shsm\"\nbackend = \"module\"\nlibrary = \"{SOFTHSM}\"\ntoken = \"vendor\"\n"));
    let env = [("SOFTHSM2_CONF", conf.display().to_string())];
    let out = child_with(&dir, "module", &env_with_pair(&env));
    let rs = records(&dir.join("audit.jsonl"));
    let s = named(&rs, "C_Sign");
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0]["slot"].as_str(), s[0]["slotId"].as_u64()),
        (Some("shsm"), Some(1))
    );
    assert_eq!(
        (
            s[0]["mechanism"].as_str(),
            s[0]["keyLabel"].as_str(),
            s[0]["keyId"].as_str()
        ),
        (Some("CKM_ECDSA"), Some("audit-ec"), Some("0102"))
    );
    assert_eq!(
        s[0]["keyHandle"].as_u64(),
        Some(said(&out, "PRIVATE").parse().unwrap())
    );
    assert_eq!(
        (s[0]["dataLength"].as_u64(), s[0]["result"].as_str()),
        (Some(DATA.len() as u64), Some("CKR_OK"))
    );
    assert_eq!(named(&rs, "C_Verify")[0]["keyClass"], "publicKey");
    assert_eq!(
        named(&rs, "C_GenerateKeyPair")[0]["newKeyLabel"],
        "audit-ec"
    );
    assert_eq!(named(&rs, "C_Login")[0]["slot"], "shsm");
    check_trail(&[&dir.join("audit.jsonl")]).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The module scenario makes its key pair first (`AUDIT_MAKE_PAIR`).
fn env_with_pair(env: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut v = env.to_vec();
    v.push(("AUDIT_MAKE_PAIR", "1".into()));
    v
}

#[test]
fn syslog_gets_every_line_as_written() {
    let Some(dir) = parent_dir() else {
        return;
    };
    let sock_path = dir.join("log.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    config(
        &dir,
        &format!("syslog = true\nsyslog_socket = \"{}\"", sock_path.display()),
        "",
    );
    run_child(&dir, "init");
    let file = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let pid = records(&dir.join("audit.jsonl"))[0]["pid"]
        .as_u64()
        .unwrap();
    for line in file.lines() {
        let mut buf = vec![0u8; 65536];
        let n = sock.recv(&mut buf).expect("a syslog datagram per line");
        // facility authpriv (10), severity info (6)
        assert_eq!(
            String::from_utf8_lossy(&buf[..n]),
            format!("<86>hsmux[{pid}]: {line}")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
