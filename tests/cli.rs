//! The `hsmux` command line as a user runs it: help and usage errors with their exit
//! statuses, completions, man pages, and `hsmux init`, whose result is checked by a
//! consumer of the module (the cryptoki crate logging in with the PINs it set).

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use std::path::PathBuf;
use std::process::{Command, Output};

mod common;

fn hsmux(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hsmux"));
    c.args(args).env_remove("HSMUX_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run hsmux")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const VERBS: &[&str] = &[
    "check",
    "status",
    "init",
    "audit",
    "store",
    "keys",
    "key",
    "sign",
    "version",
    "completions",
];

#[test]
fn help_lists_every_verb_and_exits_0() {
    let o = hsmux(&["--help"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for v in VERBS {
        assert!(out.contains(&format!("  {v} ")), "--help lists {v}: {out}");
    }
    assert!(out.contains("Exit status: 0"), "{out}");
    for v in VERBS {
        let o = hsmux(&[v, "--help"], &[]);
        assert_eq!(o.status.code(), Some(0), "{v} --help: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(&format!("Usage: hsmux {v}")),
            "{v} --help: {}",
            text(&o)
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["bogus"],
        &["check", "--bogus"],
        &["check", "--config"],
        &["init", "--pin-source", "nowhere"],
        &["completions", "tcsh"],
    ] {
        let o = hsmux(args, &[]);
        assert_eq!(o.status.code(), Some(2), "hsmux {args:?}: {}", text(&o));
        assert!(o.stdout.is_empty(), "usage goes to stderr: {args:?}");
    }
}

#[test]
fn version_matches_the_package() {
    let want = format!("hsmux {}\n", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["version"]] {
        let o = hsmux(args, &[]);
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&o.stdout), want, "{args:?}");
    }
}

#[test]
fn check_reports_a_bad_config_with_exit_1() {
    let dir = scratch("badcfg");
    let cfg = dir.join("hsmux.toml");
    std::fs::write(&cfg, "[[slot]]\nlabel = \"x\"\nbackend = \"nonesuch\"\n").unwrap();
    for verb in ["check", "status"] {
        let o = hsmux(&[verb, "--config", cfg.to_str().unwrap()], &[]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(
            text(&o).contains("nonesuch"),
            "names the bad value: {}",
            text(&o)
        );
    }
}

#[test]
fn completions_for_bash_zsh_fish_name_the_verbs() {
    for shell in ["bash", "zsh", "fish"] {
        let o = hsmux(&["completions", shell], &[]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains("status") && out.contains("pin-source"),
            "{shell}"
        );
    }
}

#[test]
fn man_pages_render_from_the_same_definitions() {
    let dir = scratch("man");
    let o = hsmux(&["man", dir.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let main = std::fs::read_to_string(dir.join("hsmux.1")).unwrap();
    assert!(
        main.starts_with(".ie") || main.contains(".TH hsmux 1"),
        "{main}"
    );
    assert!(
        main.contains("init") && main.contains("Exit status"),
        "{main}"
    );
    let init = std::fs::read_to_string(dir.join("hsmux-init.1")).unwrap();
    assert!(init.contains("pin\\-source"), "{init}");
    assert!(dir.join("hsmux.toml.5").exists());
}

/// `hsmux init` with both PINs from sources, then a consumer: the user PIN logs in, a
/// wrong one is refused, the SO PIN logs in as SO, and `hsmux status` shows the token ready.
#[test]
fn init_sets_label_and_both_pins() {
    let dir = scratch("init");
    let cfg = dir.join("hsmux.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[slot]]\nlabel = \"cli-test\"\nbackend = \"soft\"\npath = \"{}\"\nkdf_iterations = 1000\n",
            dir.join("soft").display()
        ),
    )
    .unwrap();
    let so_file = dir.join("so.pin");
    std::fs::write(&so_file, "so-secret-1\nignored second line\n").unwrap();
    let c = cfg.to_str().unwrap();
    let so_src = format!("file:{}", so_file.display());

    // A missing variable is a failure of the verb (1), and nothing is initialised.
    let o = hsmux(
        &[
            "init",
            "-c",
            c,
            "--so-pin-source",
            &so_src,
            "--pin-source",
            "env:HSMUX_TEST_NO_SUCH_VAR",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("HSMUX_TEST_NO_SUCH_VAR"), "{}", text(&o));
    assert!(status(c).contains("NOT initialized"), "{}", status(c));

    let o = hsmux(
        &[
            "init",
            "-c",
            c,
            "--label",
            "fresh",
            "--so-pin-source",
            &so_src,
            "--pin-source",
            "env:HSMUX_TEST_USER_PIN",
        ],
        &[("HSMUX_TEST_USER_PIN", "user-secret-2")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        !text(&o).contains("secret"),
        "no PIN is printed: {}",
        text(&o)
    );
    let st = status(c);
    assert!(
        st.contains("token \"fresh\"") && st.contains("user PIN ok"),
        "{st}"
    );

    // An independent consumer of the module checks the PINs.
    std::env::set_var("HSMUX_CONFIG", &cfg);
    let p = Pkcs11::new(common::module_path()).expect("load libhsmux.so");
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = p.get_slots_with_token().unwrap()[0];
    assert_eq!(p.get_token_info(slot).unwrap().label(), "fresh");
    let s = p.open_rw_session(slot).unwrap();
    let wrong = s.login(UserType::User, Some(&AuthPin::from("user-secret-x")));
    assert!(
        matches!(wrong, Err(CkError::Pkcs11(RvError::PinIncorrect, _))),
        "{wrong:?}"
    );
    s.login(UserType::User, Some(&AuthPin::from("user-secret-2")))
        .expect("the user PIN set by hsmux init");
    s.logout().unwrap();
    s.login(UserType::So, Some(&AuthPin::from("so-secret-1")))
        .expect("the SO PIN (first line of the file)");
}

fn status(cfg: &str) -> String {
    text(&hsmux(&["status", "-c", cfg], &[]))
}

fn scratch(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hsmux-cli-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The packaged /etc/hsmux/hsmux.toml behaves as the embedded default: the same slot and
/// the same store, per user under $XDG_DATA_HOME/hsmux/soft (a token initialised through
/// one is the token the other shows).
#[test]
fn packaged_config_is_the_embedded_default() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/hsmux.toml");
    let home = scratch("pkgcfg");
    let data = home.join("data");
    let env = [
        ("HOME", home.to_str().unwrap()),
        ("XDG_CONFIG_HOME", home.to_str().unwrap()),
        ("XDG_DATA_HOME", data.to_str().unwrap()),
        ("HSMUX_TEST_PIN", "123456"),
    ];
    // Both outputs without their first line ("config: <source>").
    let slots = |args: &[&str]| {
        let o = hsmux(args, &env);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        out.lines().skip(1).collect::<Vec<_>>().join("\n")
    };
    let default = slots(&["status"]);
    assert!(default.contains("token \"hsmux-soft\""), "{default}");
    assert_eq!(slots(&["status", "--config", shipped]), default);
    let pin = "env:HSMUX_TEST_PIN";
    let o = hsmux(
        &[
            "init",
            "-c",
            shipped,
            "--so-pin-source",
            pin,
            "--pin-source",
            pin,
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(data.join("hsmux/soft").is_dir(), "the store is per user");
    let after = slots(&["status"]);
    assert!(after.contains("user PIN ok"), "{after}");
    assert_eq!(slots(&["status", "--config", shipped]), after);
}

/// `hsmux check` lists a soft token's keys with their PQC parameter sets (what it shows
/// without the PIN: the public keys, and a count of the private objects), and `hsmux keys`
/// shows the kind as `--type` takes it. The keys are made by `hsmux key create`.
#[test]
fn check_lists_pqc_keys_with_their_parameter_sets() {
    let dir = scratch("pqc-check");
    let cfg = dir.join("hsmux.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[slot]]\nlabel = \"pq\"\nbackend = \"soft\"\npath = \"{}\"\nkdf_iterations = 1000\n",
            dir.join("soft").display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let module = common::module_path();
    let env = [
        ("HSMUX_TEST_PIN", "pq-user-1"),
        ("HSMUX_MODULE", module.to_str().unwrap()),
    ];
    let pin = ["--pin-source", "env:HSMUX_TEST_PIN"];
    let o = hsmux(
        &[
            &["init", "-c", c, "--so-pin-source", "env:HSMUX_TEST_PIN"][..],
            &pin,
        ]
        .concat(),
        &env,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for (name, kind) in [
        ("sig", "ml-dsa:65"),
        ("kem", "ml-kem:768"),
        ("sig44", "ml-dsa:44"),
    ] {
        let uri = format!("pkcs11:token=pq;object={name}");
        let o = hsmux(
            &[&["key", "create", &uri, "--type", kind, "-c", c][..], &pin].concat(),
            &env,
        );
        assert_eq!(o.status.code(), Some(0), "{kind}: {}", text(&o));
    }
    let o = hsmux(&["check", "-c", c], &env);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for want in [
        "key \"sig\" public ML-DSA-65 id ",
        "key \"kem\" public ML-KEM-768 id ",
        "key \"sig44\" public ML-DSA-44 id ",
        "3 private object(s) not listed without the user PIN",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    // `status` stays the slots' states.
    assert!(!status(c).contains("ML-DSA"), "{}", status(c));
    let o = hsmux(
        &[&["keys", "pkcs11:token=pq", "-c", c][..], &pin].concat(),
        &env,
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("ml-dsa:65") && out.contains("ml-kem:768"),
        "{out}"
    );
}
