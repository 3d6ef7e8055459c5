//! SoftHSMv2 tokens behind the fault-injecting wrapper (conformance/faultwrap), as the
//! replica group tests set them up.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Initialises the SoftHSM tokens `labels` (SO PIN 12345678, user PIN 1234) in a store
/// under `dir`, points `SOFTHSM2_CONF` at it, and builds the wrapper from source there:
/// its path (copy it once per replica, so that each copy is its own instance).
pub fn tokens_behind_faultwrap(dir: &Path, labels: &[&str]) -> PathBuf {
    let conf = super::softhsm_token(dir, labels[0], "12345678", "1234");
    std::env::set_var("SOFTHSM2_CONF", &conf);
    for t in &labels[1..] {
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", t])
            .args(["--so-pin", "12345678", "--pin", "1234"])
            .output()
            .expect("softhsm2-util");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/conformance/faultwrap/build.sh"))
        .arg(dir)
        .output()
        .expect("build the fault wrapper");
    assert!(
        out.status.success(),
        "faultwrap build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("libfaultwrap.so")
}

/// One `[[slot.replica]]` table: replica `name` reaching SoftHSM's token `token` (at
/// `softhsm`) through its own copy of `wrapper`, with its ctl file `dir/ctl-<name>` set to
/// `ok` and a 400 ms deadline; `extra`: more keys, each line indented by two blanks.
pub fn replica_table(
    dir: &Path,
    wrapper: &Path,
    softhsm: &str,
    name: &str,
    token: &str,
    extra: &str,
) -> String {
    let lib = dir.join(format!("w-{name}.so"));
    std::fs::copy(wrapper, &lib).unwrap();
    std::fs::write(dir.join(format!("ctl-{name}")), "ok").unwrap();
    format!(
        "  [[slot.replica]]\n  name = \"{name}\"\n  backend = \"module\"\n  library = \"{}\"\n  token = \"{token}\"\n  init_args = \"target={softhsm} ctl={}/ctl-{name}\"\n  timeout_ms = 400\n{extra}",
        lib.display(),
        dir.display()
    )
}
