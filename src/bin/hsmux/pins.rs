//! PINs for `hsmux init` and the key verbs: from a file (its first line), an environment variable, or the
//! terminal without echo (asked twice). Held in `Zeroizing` buffers, never printed.

use crate::cli::PinSource;
use zeroize::Zeroizing;

/// The PIN named `what` ("SO PIN", "user PIN") from `source`, or from the terminal.
pub fn read(what: &str, source: Option<&PinSource>) -> Result<Zeroizing<String>, String> {
    let pin = match source {
        Some(s) => from_source(what, s)?,
        None => prompt(what)?,
    };
    if pin.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(pin)
}

/// The PIN named `what` from a file (its first line) or an environment variable.
pub fn from_source(what: &str, source: &PinSource) -> Result<Zeroizing<String>, String> {
    Ok(match source {
        PinSource::File(p) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("{what}: cannot read {}: {e}", p.display()))?,
            );
            Zeroizing::new(text.lines().next().unwrap_or("").to_string())
        }
        PinSource::Env(v) => Zeroizing::new(
            std::env::var(v).map_err(|_| format!("{what}: environment variable {v} is not set"))?,
        ),
    })
}

/// An existing PIN, asked once on the terminal (`hsmux key ...` logging in).
pub fn ask_once(what: &str) -> Result<Zeroizing<String>, String> {
    rpassword::prompt_password(format!("{what}: "))
        .map(Zeroizing::new)
        .map_err(|e| format!("{what}: no terminal to ask on ({e}); give --pin-source"))
}

/// Asks on the terminal (not stdin: a PIN is typed by a person), twice.
fn prompt(what: &str) -> Result<Zeroizing<String>, String> {
    let ask = |q: &str| {
        rpassword::prompt_password(q)
            .map(Zeroizing::new)
            .map_err(|e| {
                format!("{what}: no terminal to ask on ({e}); give it with a --*pin-source option")
            })
    };
    let first = ask(&format!("{what}: "))?;
    let again = ask(&format!("{what} again: "))?;
    if *first != *again {
        return Err(format!("{what}: the two entries differ"));
    }
    Ok(first)
}
