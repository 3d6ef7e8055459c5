//! `hsmux init`: what `pkcs11-tool --init-token` and `--init-pin` do, in one command,
//! through the same core calls a consumer makes (C_InitToken, an SO session, C_InitPIN).

use crate::cli::InitArgs;
use crate::pins;
use cryptoki_sys::*;
use hsmux::core::api::{general, session};
use hsmux::core::instance;
use hsmux::setup;
use std::process::ExitCode;

pub fn init(args: &InitArgs) -> ExitCode {
    match run(args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("hsmux init: {why}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &InitArgs) -> Result<String, String> {
    // The PINs first: a typing mistake costs nothing yet.
    let so_pin = pins::read("SO PIN", args.so_pin_source.as_ref())?;
    let user_pin = pins::read("user PIN", args.pin_source.as_ref())?;
    setup::without_metrics();
    setup::initialize(args.config.config.as_deref())
        .map_err(|e| format!("cannot initialize: {e} (see the log line above)"))?;
    let done = init_slot(args, so_pin.as_bytes(), user_pin.as_bytes());
    let _ = setup::finalize();
    done
}

fn init_slot(args: &InitArgs, so_pin: &[u8], user_pin: &[u8]) -> Result<String, String> {
    let inst = instance::get().map_err(|e| e.to_string())?;
    let slot = match args.slot {
        Some(s) => s as CK_SLOT_ID,
        None => *inst.all_slots.first().ok_or("no slot is configured")?,
    };
    if !inst.slots.iter().any(|s| s.id == slot) {
        return Err(format!(
            "slot {slot} is not a slot hsmux initialises (not configured, or a module slot: \
             initialise those with the vendor's tools)"
        ));
    }
    let configured = inst.config.slots.iter().find(|s| s.id == Some(slot as u64));
    let label = match (&args.label, configured) {
        (Some(l), _) => l.clone(),
        (None, Some(c)) => c.label.clone(),
        (None, None) => return Err(format!("slot {slot}: give --label")),
    };
    if label.is_empty() || label.len() > 32 {
        return Err(format!("label {label:?} must be 1 to 32 bytes"));
    }
    let mut padded = [b' '; 32];
    padded[..label.len()].copy_from_slice(label.as_bytes());
    let fail = |what: &str, e: hsmux::core::error::Error| format!("{what}: {e}");
    general::init_token(slot, so_pin, &padded).map_err(|e| fail("C_InitToken", e))?;
    let h = session::open_session(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION)
        .map_err(|e| fail("C_OpenSession", e))?;
    let done = session::login(h, CKU_SO, so_pin)
        .map_err(|e| fail("C_Login (SO)", e))
        .and_then(|_| session::init_pin(h, user_pin).map_err(|e| fail("C_InitPIN", e)));
    let _ = session::close_session(h);
    done?;
    Ok(format!(
        "slot {slot}: token {label:?} initialised, SO PIN and user PIN set"
    ))
}
