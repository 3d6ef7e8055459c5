//! How the key verbs reach the slots: hsmux's PKCS#11 module (libhsmux.so), loaded
//! in-process through the cryptoki crate. A soft slot, a module
//! slot (forwarded to the vendor library), a remote service and a replica group are then
//! driven by the same calls a consumer makes, with no path of the CLI's own per backend.
//!
//! Here: loading and `C_Initialize`, the tokens a `pkcs11:` URI selects, logging in with
//! the PIN the URI or `--pin-source` names, and the objects a URI selects.

use crate::cli::PinSource;
use crate::pins;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;
use hsmux::config::uri::Pkcs11Uri;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Where libhsmux.so is: `HSMUX_MODULE`, else beside the executable (a build tree's
/// target/release), else where the Debian package puts it relative to /usr/bin.
fn module_path() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("HSMUX_MODULE") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = [
        dir.join("libhsmux.so"),
        dir.join("../lib/x86_64-linux-gnu/pkcs11/libhsmux.so"),
        dir.join("../lib/pkcs11/libhsmux.so"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "libhsmux.so not found beside {} nor in ../lib/*/pkcs11: set HSMUX_MODULE",
                exe.display()
            )
        })
}

/// hsmux's PKCS#11 interface, loaded into this process as any consumer loads it (the
/// module, not the CLI's own copy of the library: a vendor library that libhsmux.so
/// loads must not find hsmux's `C_*` symbols in the executable), initialized with
/// `config` (or the module's own search for one).
pub fn open(config: Option<&Path>) -> Result<Pkcs11, String> {
    // Before any thread is started: C_Initialize reads them.
    if let Some(c) = config {
        std::env::set_var("HSMUX_CONFIG", c);
    }
    // A command serves no /metrics (a running consumer may hold the port).
    std::env::set_var("HSMUX_NO_METRICS", "1");
    let path = module_path()?;
    let p = Pkcs11::new(&path).map_err(|e| format!("loading {}: {e}", path.display()))?;
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| format!("C_Initialize: {e} (see the log line above)"))?;
    Ok(p)
}

/// A token that a URI selects: its slot, what it says of itself, and its own URI.
pub struct Token {
    pub slot: Slot,
    pub info: TokenInfo,
    pub uri: Pkcs11Uri,
}

/// Refuses a URI meant for another module (`module-name`, `module-path`, `library-*`).
fn check_module(p: &Pkcs11, u: &Pkcs11Uri) -> Result<(), String> {
    if let Some(n) = &u.module_name {
        if n != "hsmux" && n != "libhsmux" {
            return Err(format!(
                "module-name={n}: this command reaches hsmux's own slots (module-name=hsmux)"
            ));
        }
    }
    if let Some(m) = &u.module_path {
        let file = Path::new(m)
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("");
        if !file.starts_with("libhsmux") {
            return Err(format!(
                "module-path={m}: this command reaches hsmux's own slots (libhsmux.so)"
            ));
        }
    }
    let info = p
        .get_library_info()
        .map_err(|e| format!("C_GetInfo: {e}"))?;
    let v = info.library_version();
    let differs = |want: &Option<String>, have: &str| want.as_ref().is_some_and(|w| w != have);
    if differs(&u.library_manufacturer, info.manufacturer_id())
        || differs(&u.library_description, info.library_description())
        || u.library_version
            .is_some_and(|w| w != (v.major(), v.minor()))
    {
        return Err("the URI's library-* attributes do not describe hsmux".into());
    }
    Ok(())
}

/// The tokens the URI's token and slot attributes select, in slot order.
pub fn tokens(p: &Pkcs11, u: &Pkcs11Uri) -> Result<Vec<Token>, String> {
    check_module(p, u)?;
    let mut out = Vec::new();
    let slots = p
        .get_slots_with_token()
        .map_err(|e| format!("C_GetSlotList: {e}"))?;
    for slot in slots {
        if u.slot_id.is_some_and(|id| id != slot.id()) {
            continue;
        }
        if u.slot_description.is_some() || u.slot_manufacturer.is_some() {
            let s = p
                .get_slot_info(slot)
                .map_err(|e| format!("C_GetSlotInfo: {e}"))?;
            let no = |w: &Option<String>, h: &str| w.as_ref().is_some_and(|w| w != h);
            if no(&u.slot_description, s.slot_description())
                || no(&u.slot_manufacturer, s.manufacturer_id())
            {
                continue;
            }
        }
        let Ok(info) = p.get_token_info(slot) else {
            // A slot whose service cannot be reached now: named by `hsmux status`.
            continue;
        };
        let no = |w: &Option<String>, h: &str| w.as_ref().is_some_and(|w| w != h);
        if no(&u.token, info.label())
            || no(&u.manufacturer, info.manufacturer_id())
            || no(&u.serial, info.serial_number())
            || no(&u.model, info.model())
        {
            continue;
        }
        let uri = Pkcs11Uri {
            token: Some(info.label().to_string()),
            manufacturer: Some(info.manufacturer_id().to_string()),
            serial: Some(info.serial_number().to_string()),
            model: Some(info.model().to_string()),
            ..Pkcs11Uri::default()
        };
        out.push(Token { slot, info, uri });
    }
    Ok(out)
}

/// The one token the URI selects, or why not.
pub fn one_token(p: &Pkcs11, u: &Pkcs11Uri) -> Result<Token, String> {
    let mut all = tokens(p, u)?;
    match all.len() {
        0 => Err(format!("no token matches {u}")),
        1 => Ok(all.remove(0)),
        _ => Err(format!(
            "{} tokens match {u}: name one with token= (or slot-id=): {}",
            all.len(),
            all.iter()
                .map(|t| format!("{:?} (slot-id={})", t.info.label(), t.slot.id()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The PIN: `--pin-source` first, then the URI's `pin-source` or `pin-value`, then the
/// terminal. `None` when there is none to be had and `required` is false.
fn pin(
    u: &Pkcs11Uri,
    cli: Option<&PinSource>,
    required: bool,
) -> Result<Option<zeroize::Zeroizing<String>>, String> {
    let what = "user PIN";
    if let Some(s) = cli {
        return pins::from_source(what, s).map(Some);
    }
    if let Some(s) = &u.pin_source {
        let source: PinSource = s
            .parse()
            .map_err(|e| format!("pin-source={s}: {e} (file:PATH or env:VAR)"))?;
        return pins::from_source(what, &source).map(Some);
    }
    if let Some(v) = &u.pin_value {
        return Ok(Some(zeroize::Zeroizing::new(v.to_string())));
    }
    if std::io::stdin().is_terminal() {
        return pins::ask_once(what).map(Some);
    }
    if required {
        return Err(
            "the token needs a login: give --pin-source file:PATH|env:VAR, or pin-source= in \
             the URI"
                .into(),
        );
    }
    Ok(None)
}

/// A session on `t` (read-write with `rw`), logged in as the user when the token wants a
/// login and a PIN is to be had (always, with `need_login`).
pub fn session(
    p: &Pkcs11,
    t: &Token,
    u: &Pkcs11Uri,
    cli_pin: Option<&PinSource>,
    rw: bool,
    need_login: bool,
) -> Result<Session, String> {
    let s = if rw {
        p.open_rw_session(t.slot)
    } else {
        p.open_ro_session(t.slot)
    }
    .map_err(|e| format!("C_OpenSession on slot {}: {e}", t.slot.id()))?;
    if t.info.login_required() {
        if let Some(pin) = pin(u, cli_pin, need_login)? {
            let pin = AuthPin::new(pin.as_str().into());
            s.login(UserType::User, Some(&pin))
                .map_err(|e| format!("C_Login on token {:?}: {e}", t.info.label()))?;
        }
    }
    Ok(s)
}

/// The template that selects what the URI's object attributes name.
pub fn template(u: &Pkcs11Uri) -> Vec<Attribute> {
    let mut t = Vec::new();
    if let Some(o) = &u.object {
        t.push(Attribute::Label(o.as_bytes().to_vec()));
    }
    if let Some(id) = &u.id {
        t.push(Attribute::Id(id.clone()));
    }
    if let Some(c) = u
        .object_type
        .and_then(|ty| ObjectClass::try_from(ty.class()).ok())
    {
        t.push(Attribute::Class(c));
    }
    t
}

/// The objects the URI selects on a session.
pub fn find(s: &Session, u: &Pkcs11Uri) -> Result<Vec<ObjectHandle>, String> {
    s.find_objects(&template(u))
        .map_err(|e| format!("C_FindObjects: {e}"))
}
