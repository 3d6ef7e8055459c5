//! Kryoptic (the Rust PKCS#11 soft token, crates.io `kryoptic` 1.5) for the C ABI bench:
//! built here against the system OpenSSL, and given a token store of its own.
//!
//! Kryoptic's default features include EdDSA, which turns on its `ossl` crate's `ossl320`
//! feature, and that refuses to build below OpenSSL 3.2 ("OpenSSL 3.2.0 or later is
//! required", from ossl 1.5.4's build script); Debian bookworm has OpenSSL 3.0. So it is
//! built with the default features less EdDSA and Montgomery curves: the sqlite token
//! store, ECDSA/ECDH, hashes and HMAC, RSA, AES (every mechanism the bench rows use). Its
//! build needs libssl-dev and libclang-dev (bindgen), which scripts/deps.sh installs.

use std::path::Path;
use std::process::Command;

const VERSION: &str = "1.5.4";
const FEATURES: &str = r#"["dynamic", "sqlitedb", "ecc_min", "hash_all", "rsa"]"#;

/// Points KRYOPTIC_CONF at a configuration with one slot whose sqlite store is in `tmp`.
pub fn write_conf(tmp: &Path) {
    let conf = tmp.join("kryoptic.toml");
    std::fs::write(
        &conf,
        format!(
            "[[slots]]\nslot = 1\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
            tmp.join("kryoptic.sql").display()
        ),
    )
    .unwrap();
    std::env::set_var("KRYOPTIC_CONF", conf);
}

/// Builds kryoptic's PKCS#11 library (once; later runs are incremental) under
/// `target/kryoptic` of the repository at `root`: its path, or why it could not be built.
pub fn build(root: &str) -> Result<String, String> {
    let dir = Path::new(root).join("target/kryoptic");
    std::fs::create_dir_all(dir.join("src")).map_err(|e| e.to_string())?;
    // A throw-away crate whose dependencies are kryoptic (a cdylib: cargo builds it as one)
    // and kryoptic-lib with the features chosen above (unified into kryoptic's).
    let manifest = format!(
        "[package]\nname = \"kryoptic-bench-build\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         publish = false\n\n[dependencies]\n\
         kryoptic = {{ version = \"={VERSION}\", default-features = false }}\n\
         kryoptic-lib = {{ version = \"={VERSION}\", default-features = false, features = {FEATURES} }}\n\n\
         [workspace]\n"
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("src/lib.rs"), "").map_err(|e| e.to_string())?;
    eprintln!("building kryoptic {VERSION} (the first time takes minutes)...");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(12).collect();
        return Err(format!(
            "kryoptic {VERSION} did not build:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    // A dependency's cdylib keeps cargo's hash in its name: the newest one.
    let deps = dir.join("target/release/deps");
    let so = std::fs::read_dir(&deps)
        .map_err(|e| format!("{}: {e}", deps.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("libkryoptic_pkcs11") && name.ends_with(".so")
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    so.map(|p| p.display().to_string()).ok_or_else(|| {
        format!(
            "no libkryoptic_pkcs11*.so in {} after the build",
            deps.display()
        )
    })
}
