//! The soft token's file parsers: `token.json` (through the store's own load function, from
//! a file in a temporary directory) with the PIN records unwrapped as C_Login does, object
//! files (envelope, checksum, sealed private objects) and the attribute blob inside them.
//!
//! The first byte picks the parser: 0 token.json, 1 an object file, 2 an attribute blob.
//!
//! `HSMUX_FUZZ_WRITE_SEEDS=DIR` writes the seed corpus (files made by the store's own
//! writers, each with its selector byte) to DIR at the first input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

/// One directory per process, removed at exit.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("hsmux-fuzz-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        extern "C" fn cleanup() {
            if let Some(d) = DIR.get() {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        unsafe { libc::atexit(cleanup) };
        d
    })
}

fn write_seeds(to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("seed dir");
    for (name, bytes) in hsmux::fuzzing::soft_seeds() {
        let kind = match name {
            "token.json" => 0u8,
            "attrs.bin" => 2,
            _ => 1,
        };
        let mut v = vec![kind];
        v.extend_from_slice(&bytes);
        std::fs::write(to.join(format!("seed-{name}")), v).expect("seed file");
    }
}

fuzz_target!(|data: &[u8]| {
    static SEEDS: std::sync::Once = std::sync::Once::new();
    SEEDS.call_once(|| {
        if let Some(to) = std::env::var_os("HSMUX_FUZZ_WRITE_SEEDS") {
            write_seeds(std::path::Path::new(&to));
        }
    });
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => hsmux::fuzzing::soft_token_json(dir(), rest),
        1 => hsmux::fuzzing::soft_object(rest),
        _ => hsmux::fuzzing::soft_attrs(rest),
    }
});
