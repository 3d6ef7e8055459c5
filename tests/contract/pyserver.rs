//! A Python test server of conformance/ (azurekv_server.py, gcpkms_server.py) as the tests
//! run it: started with the venv's python, killed when its fixture drops or the test process
//! exits, ready once its files exist and its control endpoint (`/__control/`) answers; the
//! controls the servers share (stats, faults, key material).

use super::{control_request, kill_at_exit, venv_python, wait_ready};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct PyServer {
    child: Child,
    /// The plain-HTTP port of the controls.
    control_port: u16,
}

impl PyServer {
    /// Starts `conformance/{script}` (whose packages, `needs`, the venv must have) with
    /// `args` and waits until `ready()` and the controls on `control_port` answer.
    pub fn start(
        script: &str,
        needs: &str,
        args: &[OsString],
        control_port: u16,
        ready: impl Fn() -> bool,
    ) -> PyServer {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("conformance")
            .join(script);
        let mut child = Command::new(venv_python(needs))
            .arg(&path)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", path.display()));
        kill_at_exit(child.id());
        wait_ready(&mut child, script, || {
            ready() && control_request(control_port, "GET", "stats", "").is_some()
        });
        PyServer {
            child,
            control_port,
        }
    }

    pub fn try_ctl(&self, method: &str, what: &str, body: &str) -> Option<serde_json::Value> {
        control_request(self.control_port, method, what, body)
    }

    pub fn ctl(&self, what: &str, body: serde_json::Value) -> serde_json::Value {
        self.try_ctl("POST", what, &body.to_string())
            .unwrap_or_else(|| panic!("control {what} {body} failed"))
    }

    pub fn stats(&self) -> serde_json::Value {
        self.try_ctl("GET", "stats", "").expect("stats")
    }

    /// The key bytes the `material` control answers for `which` (to check results with
    /// independent implementations).
    pub fn material(&self, which: serde_json::Value) -> Vec<u8> {
        use base64::Engine as _;
        let v = self.ctl("material", which);
        base64::engine::general_purpose::STANDARD
            .decode(v["key"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dir/seed.json` with the keys a server starts with.
pub fn write_seed(dir: &Path, seed: serde_json::Value) -> PathBuf {
    let f = dir.join("seed.json");
    std::fs::write(&f, seed.to_string()).unwrap();
    f
}

/// `--flag value` pairs and plain arguments as the `args` of [`PyServer::start`].
pub fn args(items: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    items.iter().map(|a| a.as_ref().to_os_string()).collect()
}
