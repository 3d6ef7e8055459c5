//! A bad configuration: C_Initialize answers CKR_GENERAL_ERROR and the log says which file,
//! line and key is wrong (shared/DESIGN.md, "Loading"). Each case runs in a child process
//! (this test binary started again) whose stderr is read.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;

const CHILD: &str = "HSMUX_CONFIG_ERROR_CHILD";

/// (file name, contents, what the log must contain besides the file's path)
const CASES: &[(&str, &str, &[&str])] = &[
    (
        "unknown-key.toml",
        "[[slot]]\nlabel = \"x\"\nbackend = \"soft\"\npath = \"/tmp/x\"\nunknown_key = 1\n",
        &["unknown_key", "line 5"],
    ),
    (
        "wrong-type.toml",
        "[[slot]]\nlabel = \"x\"\nbackend = \"soft\"\nkdf_iterations = \"many\"\npath = \"/tmp/x\"\n",
        &["kdf_iterations", "line 4"],
    ),
    (
        "unknown-backend.toml",
        "[[slot]]\nlabel = \"x\"\nbackend = \"sofft\"\npath = \"/tmp/x\"\n",
        &["sofft", "line 3"],
    ),
    (
        "third-slot.toml",
        "[[slot]]\nlabel = \"a\"\nbackend = \"soft\"\npath = \"/tmp/a\"\n\n\
         [[slot]]\nlabel = \"b\"\nbackend = \"soft\"\npath = \"/tmp/b\"\n\n\
         [[slot]]\nlabel = \"c\"\nbackend = \"soft\"\npath = \"/tmp/c\"\nkdf_iterations = -5\n",
        &["kdf_iterations", "line 15"],
    ),
    (
        // (a soft slot without `path` is valid: the per-user default store)
        "soft-with-module-key.toml",
        "[log]\nlevel = \"warn\"\n\n[[slot]]\nlabel = \"x\"\nbackend = \"soft\"\nlibrary = \"/x.so\"\n",
        &["library", "line 4"],
    ),
    (
        "syntax.toml",
        "[[slot]]\nlabel = \"x\nbackend = \"soft\"\npath = \"/tmp/x\"\n",
        &["line 2"],
    ),
    (
        "long-label.toml",
        "[[slot]]\nlabel = \"this label is much longer than thirty-two bytes\"\nbackend = \"soft\"\npath = \"/tmp/x\"\n",
        &["label", "32"],
    ),
    (
        "same-id.toml",
        "[[slot]]\nlabel = \"x\"\nbackend = \"soft\"\npath = \"/tmp/x\"\nid = 1\n\n\
         [[slot]]\nlabel = \"y\"\nbackend = \"soft\"\npath = \"/tmp/y\"\nid = 1\n",
        &["id 1"],
    ),
    // HSMUX_CONFIG names a file that is not there: an error, not the embedded default.
    ("absent.toml", "", &["absent.toml"]),
];

#[test]
fn bad_configurations_are_reported_with_file_line_and_key() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("hsmux-config-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for (name, text, wanted) in CASES {
        let path = dir.join(name);
        if !text.is_empty() {
            std::fs::write(&path, text).unwrap();
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("HSMUX_CONFIG", &path)
            .env("HSMUX_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("child answered CKR_GENERAL_ERROR"),
            "{name}: C_Initialize did not answer CKR_GENERAL_ERROR:\n{stdout}\n{stderr}"
        );
        let path_text = path.display().to_string();
        for w in std::iter::once(&path_text.as_str()).chain(wanted.iter()) {
            if !stderr.contains(w) {
                failures.push(format!("{name}: the log lacks {w:?}; it says:\n{stderr}"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs only in the children started above.
#[test]
fn child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let m = load();
    let rv = initialize(&m);
    let mut n = 0;
    assert_rv!(
        ck!(m, C_GetSlotList(0, std::ptr::null_mut(), &mut n)),
        CKR_CRYPTOKI_NOT_INITIALIZED,
        "nothing is half-started"
    );
    if rv == CKR_GENERAL_ERROR {
        println!("child answered CKR_GENERAL_ERROR");
    } else {
        println!("child answered {}", rv_name(rv));
    }
}
