//! The soft store as an attacker or a careless operator meets it (issue: hardening):
//! PIN guesses counted across processes, private file modes whatever the umask, a store
//! others can write refused, temporary files of dead writers removed, relative store paths
//! taken from the config file's directory, and the CLI's answers about all of it (log file,
//! PIN state, help).
//!
//! Each test has its own config, given to `C_Initialize` in `pReserved`; the module is one
//! per process, so the tests take turns (`SERIAL`). Other processes are this test binary
//! started again in a child mode, or the `hsmux` CLI.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());
const CHILD: &str = "HSMUX_STORE_HARDENING_CHILD";
const CHILD_CONFIG: &str = "HSMUX_STORE_HARDENING_CONFIG";

fn module() -> &'static Module {
    static M: std::sync::OnceLock<Module> = std::sync::OnceLock::new();
    M.get_or_init(load)
}

/// A fresh directory holding `hsmux.toml` with `body`; `{dir}` in it is the directory.
fn config(tag: &str, body: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "hsmux-hard-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hsmux.toml");
    std::fs::write(&file, body.replace("{dir}", &dir.display().to_string())).unwrap();
    remove_at_exit(&dir);
    (dir, file)
}

const ONE_SOFT_SLOT: &str =
    "[[slot]]\nlabel = \"t\"\nbackend = \"soft\"\npath = \"{dir}/store\"\nkdf_iterations = 1000\n";

fn initialize_with(m: &Module, file: &Path) -> CK_RV {
    let path = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).unwrap();
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: path.as_ptr() as *mut _,
    };
    unsafe { (m.f.C_Initialize.unwrap())(&mut args as *mut _ as *mut _) }
}

fn finalize(m: &Module) {
    assert_rv!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
}

fn token_flags(m: &Module) -> Result<CK_FLAGS, CK_RV> {
    let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
    match ck!(m, C_GetTokenInfo(0, &mut info)) {
        CKR_OK => Ok(info.flags),
        rv => Err(rv),
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hsmux"))
        .args(args)
        .env_remove("HSMUX_CONFIG")
        .env_remove("HSMUX_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_child(step: &str, file: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, step)
        .env(CHILD_CONFIG, file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn child_output(c: std::process::Child, step: &str) -> String {
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains(&format!("child step {step} done")),
        "child step {step} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Ten processes guessing the user PIN nine times each, all at once, get ten
/// `CKR_PIN_INCORRECT` answers between them and then `CKR_PIN_LOCKED`: the failure count
/// is the store's, not each process's. (Before the store lock: 90 incorrect, no lock.)
#[test]
fn pin_guesses_are_counted_across_processes() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_dir, file) = config("guess", ONE_SOFT_SLOT);
    let m = module();
    assert_rv!(initialize_with(m, &file), CKR_OK);
    init_slot(m, 0);
    finalize(m);

    let children: Vec<_> = (0..10).map(|_| run_child("guess", &file)).collect();
    let (mut incorrect, mut locked) = (0, 0);
    for c in children {
        let text = child_output(c, "guess");
        let count = |key: &str| -> usize {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {text}"))
        };
        incorrect += count("incorrect=");
        locked += count("locked=");
    }
    assert_eq!(
        (incorrect, locked),
        (10, 80),
        "90 guesses by 10 processes: exactly the token's 10 wrong entries, then locked"
    );
    assert_rv!(initialize_with(m, &file), CKR_OK);
    let flags = token_flags(m).unwrap();
    assert_ne!(
        flags & CKF_USER_PIN_LOCKED,
        0,
        "the token says it is locked"
    );
    let h = open(m, 0, false);
    assert_rv!(login(m, h, CKU_USER, PIN), CKR_PIN_LOCKED);
    finalize(m);
}

/// Whatever the umask, the store is created 0700 and its files 0600; that includes a
/// secret key made with `CKA_PRIVATE=false`, which is stored in clear.
#[test]
fn store_files_are_private_whatever_the_umask() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, file) = config("modes", ONE_SOFT_SLOT);
    // umask is per process: the child sets 0 and makes the store and a public secret key.
    child_output(run_child("umask0", &file), "umask0");
    let store = dir.join("store");
    assert_eq!(mode(&store), 0o700, "store directory");
    assert_eq!(mode(&store.join("objects")), 0o700, "objects directory");
    assert_eq!(mode(&store.join("token.json")), 0o600, "token.json");
    let objects: Vec<_> = std::fs::read_dir(store.join("objects"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "obj"))
        .collect();
    assert!(!objects.is_empty(), "the child made a token object");
    for o in objects {
        assert_eq!(mode(&o), 0o600, "{}", o.display());
    }
    assert!(
        !store.join(".lock").exists() || mode(&store.join(".lock")) == 0o600,
        "lock file"
    );
}

/// A store that others can write is refused (naming the path and the chmod); one they
/// can read works, with a warning that `hsmux check` shows.
#[test]
fn loose_store_modes_are_refused_or_warned_about() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, file) = config("loose", ONE_SOFT_SLOT);
    let m = module();
    assert_rv!(initialize_with(m, &file), CKR_OK);
    init_slot(m, 0);
    finalize(m);
    let store = dir.join("store");

    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_rv!(initialize_with(m, &file), CKR_OK);
    assert_eq!(
        token_flags(m),
        Err(CKR_DEVICE_ERROR),
        "a 0777 store is not used"
    );
    let mut h = 0;
    assert_rv!(
        ck!(
            m,
            C_OpenSession(0, CKF_SERIAL_SESSION, std::ptr::null_mut(), None, &mut h)
        ),
        CKR_DEVICE_ERROR
    );
    finalize(m);
    let (code, out, _) = cli(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("writable by group or others")
            && out.contains(&format!("chmod 700 {}", store.display())),
        "{out}"
    );

    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_rv!(initialize_with(m, &file), CKR_OK);
    assert!(token_flags(m).is_ok(), "a readable store still works");
    finalize(m);
    let (code, out, _) = cli(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 0, "a warning is not a failure: {out}");
    assert!(
        out.contains("WARNING")
            && out.contains("readable by group or others")
            && out.contains(&format!("chmod 700 {}", store.display())),
        "{out}"
    );

    // An object file others can write is not used: it may not be the token's own.
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_rv!(initialize_with(m, &file), CKR_OK);
    let h = open(m, 0, true);
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_TOKEN, true)
        .bool(CKA_PRIVATE, false)
        .bytes(CKA_LABEL, b"planted");
    let mut o = 0;
    assert_rv!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut o)), CKR_OK);
    finalize(m);
    let objects: Vec<PathBuf> = std::fs::read_dir(store.join("objects"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(objects.len(), 1);
    std::fs::set_permissions(&objects[0], std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_rv!(initialize_with(m, &file), CKR_OK);
    let h = open(m, 0, false);
    assert!(
        find(m, h, &mut Template::new().bytes(CKA_LABEL, b"planted")).is_empty(),
        "a world-writable object file is not served"
    );
    finalize(m);
    let (code, out, _) = cli(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("chmod 600 {}", objects[0].display())),
        "{out}"
    );
}

/// Temporary files left by a writer that died are removed when the store is opened, and
/// a copy of `token.json` holding the old PIN's record does not survive `C_SetPIN`.
#[test]
fn stale_temporary_files_do_not_outlive_the_store_opening_or_a_pin_change() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, file) = config("stale", ONE_SOFT_SLOT);
    let m = module();
    assert_rv!(initialize_with(m, &file), CKR_OK);
    init_slot(m, 0);
    finalize(m);
    let store = dir.join("store");
    let meta = std::fs::read(store.join("token.json")).unwrap();
    // What a writer killed between its write and its rename leaves behind.
    let dead_meta = store.join(".tmp-token.json-4194304-17");
    let dead_obj = store.join("objects/.tmp-abc.obj-4194304-18");
    std::fs::write(&dead_meta, &meta).unwrap();
    std::fs::write(&dead_obj, b"HSMUXO01 half an object").unwrap();
    assert_rv!(initialize_with(m, &file), CKR_OK);
    assert!(!dead_meta.exists(), "stale token.json copy removed at open");
    assert!(!dead_obj.exists(), "stale object temp removed at open");

    // A leftover that appears while the store is open (another process's dead writer)
    // is gone once C_SetPIN has completed: the old PIN must not open it.
    std::fs::write(&dead_meta, &meta).unwrap();
    let h = open(m, 0, true);
    assert_rv!(login(m, h, CKU_USER, PIN), CKR_OK);
    assert_rv!(
        ck!(
            m,
            C_SetPIN(h, PIN.as_ptr() as *mut _, 4, b"9876".as_ptr() as *mut _, 4)
        ),
        CKR_OK
    );
    let left: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary files after C_SetPIN: {left:?}");
    let now = std::fs::read_to_string(store.join("token.json")).unwrap();
    assert_ne!(now.as_bytes(), &meta[..], "token.json holds the new record");
    assert_rv!(ck!(m, C_Logout(h)), CKR_OK);
    assert_rv!(login(m, h, CKU_USER, PIN), CKR_PIN_INCORRECT);
    assert_rv!(login(m, h, CKU_USER, b"9876"), CKR_OK);
    finalize(m);
}

/// A relative `path` is the config file's directory's, not the consumer's working
/// directory's.
#[test]
fn a_relative_store_path_is_resolved_against_the_config_file() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, file) = config(
        "relative",
        "[[slot]]\nlabel = \"t\"\nbackend = \"soft\"\npath = \"rel/store\"\nkdf_iterations = 1000\n",
    );
    // The consumer runs elsewhere (the child's working directory is another temp dir).
    let elsewhere = dir.join("cwd");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, "init")
        .env(CHILD_CONFIG, &file)
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        dir.join("rel/store/token.json").exists(),
        "next to the config file"
    );
    assert!(
        !elsewhere.join("rel").exists(),
        "not in the working directory"
    );
}

/// `[log] file` is where the module logs; one that cannot be opened is said on stderr and
/// makes `hsmux check` fail.
#[test]
fn the_log_file_is_used_and_an_unopenable_one_is_reported() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let (dir, file) = config(
        "log",
        &format!("[log]\nlevel = \"info\"\nfile = \"{{dir}}/hsmux.log\"\n{ONE_SOFT_SLOT}"),
    );
    let (code, out, err) = cli(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    let log = std::fs::read_to_string(dir.join("hsmux.log")).unwrap_or_default();
    assert!(
        log.contains("initialized from"),
        "the log file has the module's lines: {log:?}"
    );

    let (_, bad) = config(
        "badlog",
        &format!("[log]\nfile = \"/nonexistent-hsmux-dir/x/hsmux.log\"\n{ONE_SOFT_SLOT}"),
    );
    let (code, out, err) = cli(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("PROBLEM") && out.contains("/nonexistent-hsmux-dir/x/hsmux.log"),
        "{out}"
    );
    assert!(
        err.contains("cannot open log file"),
        "the module says so on stderr: {err}"
    );
}

/// `hsmux status`/`check` show the PIN's state and fail on a locked PIN.
#[test]
fn status_shows_the_pin_state_and_fails_on_a_locked_pin() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (_dir, file) = config("pinstate", ONE_SOFT_SLOT);
    let f = file.to_str().unwrap();
    let m = module();
    assert_rv!(initialize_with(m, &file), CKR_OK);
    init_slot(m, 0);
    let h = open(m, 0, false);
    for _ in 0..9 {
        assert_rv!(login(m, h, CKU_USER, b"0000"), CKR_PIN_INCORRECT);
    }
    let (code, out, _) = cli(&["status", "--config", f]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("user PIN: FINAL TRY"), "{out}");
    assert_rv!(login(m, h, CKU_USER, b"0000"), CKR_PIN_INCORRECT);
    finalize(m);
    for verb in ["status", "check"] {
        let (code, out, _) = cli(&[verb, "--config", f]);
        assert_eq!(code, 1, "{verb}: {out}");
        assert!(out.contains("user PIN LOCKED"), "{verb}: {out}");
    }
}

#[test]
fn help_is_a_success_on_stdout() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    for arg in ["--help", "-h", "help"] {
        let (code, out, err) = cli(&[arg]);
        assert_eq!(code, 0, "{arg}");
        // clap's help: the usage line and every verb, on stdout.
        assert!(out.contains("Usage: hsmux <COMMAND>"), "{arg}: {out}");
        assert!(
            out.contains("check") && out.contains("status"),
            "{arg}: {out}"
        );
        assert!(err.is_empty(), "{arg}: {err}");
    }
    let (code, out, err) = cli(&["frobnicate"]);
    assert_eq!(code, 2, "a usage error stays 2");
    assert!(out.is_empty() && err.contains("Usage:"), "{err}");
}

/// The other processes; runs only when started by the tests above.
#[test]
fn child() {
    let Ok(step) = std::env::var(CHILD) else {
        return;
    };
    let file = PathBuf::from(std::env::var_os(CHILD_CONFIG).unwrap());
    if step == "umask0" {
        // SAFETY: umask only changes this (child) process's file creation mask.
        unsafe { libc::umask(0) };
    }
    let m = load();
    assert_rv!(initialize_with(&m, &file), CKR_OK);
    match step.as_str() {
        "guess" => {
            let h = open(&m, 0, false);
            let (mut incorrect, mut locked) = (0, 0);
            for _ in 0..9 {
                match login(&m, h, CKU_USER, b"0000") {
                    CKR_PIN_INCORRECT => incorrect += 1,
                    CKR_PIN_LOCKED => locked += 1,
                    rv => panic!("unexpected {}", rv_name(rv)),
                }
            }
            println!("\nincorrect={incorrect}\nlocked={locked}");
        }
        "umask0" => {
            init_slot(&m, 0);
            let h = open(&m, 0, true);
            assert_rv!(login(&m, h, CKU_USER, PIN), CKR_OK);
            let mut t = Template::new()
                .ulong(CKA_CLASS, CKO_SECRET_KEY)
                .ulong(CKA_KEY_TYPE, CKK_AES)
                .ulong(CKA_VALUE_LEN, 32)
                .bool(CKA_TOKEN, true)
                .bool(CKA_PRIVATE, false);
            let mut mech = mech(CKM_AES_KEY_GEN);
            let mut k = 0;
            assert_rv!(
                ck!(&m, C_GenerateKey(h, &mut mech, t.ptr(), t.len(), &mut k)),
                CKR_OK
            );
        }
        "init" => init_slot(&m, 0),
        other => panic!("unknown step {other}"),
    }
    assert_rv!(ck!(&m, C_Finalize(std::ptr::null_mut())), CKR_OK);
    println!("child step {step} done");
}
