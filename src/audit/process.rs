//! Who is calling: the process's id, name, executable and user, read once per chain (as
//! well as Linux tells them without privileges: `/proc/self`).

use super::event::{field_num, field_str};
use std::os::unix::fs::MetadataExt;

/// The process fields of every line, rendered once: `,"pid":..,"process":..,...`.
pub fn fields() -> String {
    let mut out = String::new();
    field_num(&mut out, "pid", std::process::id() as u64);
    if let Ok(comm) = std::fs::read_to_string("/proc/self/comm") {
        field_str(&mut out, "process", comm.trim_end());
    }
    if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
        field_str(&mut out, "exe", &exe.to_string_lossy());
    }
    // /proc/self belongs to the process's effective user.
    if let Ok(m) = std::fs::metadata("/proc/self") {
        field_num(&mut out, "uid", m.uid() as u64);
    }
    out
}
