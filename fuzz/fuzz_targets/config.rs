//! The TOML configuration parser and validator (`Config::parse`), on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The config is read with read_to_string: only UTF-8 reaches the parser.
    if let Ok(text) = std::str::from_utf8(data) {
        hsmux::fuzzing::config(text);
    }
});
