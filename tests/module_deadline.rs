//! A module slot whose vendor library hangs (the fault-injecting wrapper of
//! conformance/faultwrap in front of SoftHSMv2, told to `hang`): hsmux's call returns
//! CKR_DEVICE_ERROR within the slot's `timeout_ms`, later calls on that slot answer
//! CKR_DEVICE_ERROR at once until the vendor answers again, another module slot (SoftHSM
//! loaded directly) and a soft slot keep working in the same process meanwhile, the slot
//! serves again once the stuck call returns, and C_Finalize returns although a vendor call
//! is still stuck.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TIMEOUT_MS: u64 = 500;
/// Generous slack over the deadline for a loaded machine (never a tight timing).
const SLACK: Duration = Duration::from_secs(2);

fn hmac_key(m: &Module, h: CK_SESSION_HANDLE) -> CK_OBJECT_HANDLE {
    secret(
        m,
        h,
        CKM_GENERIC_SECRET_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bool(CKA_SIGN, true)
            .bool(CKA_VERIFY, true),
    )
}

fn session_info(m: &Module, h: CK_SESSION_HANDLE) -> CK_RV {
    let mut si: CK_SESSION_INFO = unsafe { std::mem::zeroed() };
    ck!(m, C_GetSessionInfo(h, &mut si))
}

#[test]
fn a_hung_vendor_call_answers_device_error_within_the_deadline_and_the_rest_keeps_working() {
    assert!(
        Path::new(SOFTHSM).exists(),
        "SoftHSMv2 missing (scripts/deps.sh)"
    );
    let dir = std::env::temp_dir().join(format!("hsmux-deadline-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    remove_at_exit(&dir);
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    for t in ["hung", "fine"] {
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                t,
                "--so-pin",
                "12345678",
                "--pin",
                "1234",
            ])
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
        .arg(&dir)
        .output()
        .expect("build the fault wrapper");
    assert!(
        out.status.success(),
        "faultwrap build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ctl = dir.join("ctl");
    std::fs::write(&ctl, "ok").unwrap();
    let cfg = format!(
        "[[slot]]\nlabel = \"hung\"\nbackend = \"module\"\nlibrary = \"{wrap}\"\ntoken = \"hung\"\n\
         init_args = \"target={SOFTHSM} ctl={ctl}\"\ntimeout_ms = {TIMEOUT_MS}\n\n\
         [[slot]]\nlabel = \"fine\"\nbackend = \"module\"\nlibrary = \"{SOFTHSM}\"\ntoken = \"fine\"\n\
         timeout_ms = {TIMEOUT_MS}\n\n\
         [[slot]]\nlabel = \"soft\"\nbackend = \"soft\"\npath = \"{soft}\"\nkdf_iterations = 1000\n",
        wrap = dir.join("libfaultwrap.so").display(),
        ctl = ctl.display(),
        soft = dir.join("soft").display(),
    );
    std::fs::write(dir.join("hsmux.toml"), cfg).unwrap();
    std::env::set_var("HSMUX_CONFIG", dir.join("hsmux.toml"));
    let m = load();
    assert_eq!(initialize(&m), CKR_OK);

    let hung_slot = slot_labelled(&m, "hung", true);
    let fine_slot = slot_labelled(&m, "fine", true);
    let soft_slot = slot_labelled(&m, "soft", false);
    let h = open(&m, hung_slot, true);
    assert_eq!(login(&m, h, CKU_USER, PIN), CKR_OK);
    let key = hmac_key(&m, h);
    let data = b"sign me";
    assert_eq!(
        sign(&m, h, mech(CKM_SHA256_HMAC), key, data).map(|s| s.len()),
        Ok(32),
        "the slot works before the fault"
    );

    // The vendor hangs in C_Sign: hsmux answers within the deadline.
    let mut mc = mech(CKM_SHA256_HMAC);
    assert_eq!(ck!(m, C_SignInit(h, &mut mc, key)), CKR_OK);
    std::fs::write(&ctl, "hang").unwrap();
    let mut sig = vec![0u8; 64];
    let mut n = sig.len() as CK_ULONG;
    let t = Instant::now();
    let rv = ck!(
        m,
        C_Sign(
            h,
            data.as_ptr() as *mut _,
            data.len() as CK_ULONG,
            sig.as_mut_ptr(),
            &mut n
        )
    );
    let took = t.elapsed();
    assert_eq!(rv_name(rv), rv_name(CKR_DEVICE_ERROR));
    assert!(
        took < Duration::from_millis(TIMEOUT_MS) + SLACK,
        "C_Sign on the hung slot took {took:?} (timeout_ms = {TIMEOUT_MS})"
    );
    assert_eq!(
        n, 64,
        "the length word is not touched by a call that timed out"
    );
    assert!(sig.iter().all(|b| *b == 0), "nor the buffer");
    drop(sig); // the abandoned call can never write here: it has its own copy

    // The slot is down: its calls answer CKR_DEVICE_ERROR without waiting for the vendor.
    let t = Instant::now();
    assert_eq!(rv_name(session_info(&m, h)), rv_name(CKR_DEVICE_ERROR));
    assert!(t.elapsed() < Duration::from_millis(TIMEOUT_MS) + SLACK);

    // The other slots work meanwhile, in the same process: another module slot...
    let f = open(&m, fine_slot, true);
    assert_eq!(login(&m, f, CKU_USER, PIN), CKR_OK);
    let fkey = hmac_key(&m, f);
    assert_eq!(
        sign(&m, f, mech(CKM_SHA256_HMAC), fkey, data).map(|s| s.len()),
        Ok(32)
    );
    assert_eq!(session_info(&m, f), CKR_OK);
    // ... and a soft slot.
    let s = user_session(&m, soft_slot);
    let skey = hmac_key(&m, s);
    assert_eq!(
        sign(&m, s, mech(CKM_SHA256_HMAC), skey, data).map(|s| s.len()),
        Ok(32)
    );

    // The vendor answers again: the stuck call returns and the slot serves again.
    std::fs::write(&ctl, "ok").unwrap();
    let t = Instant::now();
    while session_info(&m, h) != CKR_OK {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the slot does not come back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        sign(&m, h, mech(CKM_SHA256_HMAC), key, data).map(|s| s.len()),
        Ok(32)
    );

    // Hung again, then C_Finalize: it returns although a vendor call is stuck.
    assert_eq!(ck!(m, C_SignInit(h, &mut mc, key)), CKR_OK);
    std::fs::write(&ctl, "hang").unwrap();
    let mut sig = vec![0u8; 64];
    let mut n = sig.len() as CK_ULONG;
    let rv = ck!(
        m,
        C_Sign(
            h,
            data.as_ptr() as *mut _,
            data.len() as CK_ULONG,
            sig.as_mut_ptr(),
            &mut n
        )
    );
    assert_eq!(rv_name(rv), rv_name(CKR_DEVICE_ERROR));
    let t = Instant::now();
    assert_eq!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
    assert!(
        t.elapsed() < Duration::from_millis(2 * TIMEOUT_MS) + SLACK,
        "C_Finalize took {:?}",
        t.elapsed()
    );
    // Release the stuck call; it finishes on its own thread, into its own memory.
    std::fs::write(&ctl, "ok").unwrap();
    std::thread::sleep(Duration::from_millis(200));
}
