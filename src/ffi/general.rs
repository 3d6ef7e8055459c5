//! General-purpose, slot and token functions (PKCS#11 §5.4, §5.5).

use super::{ck_fn, version, write_list};
use crate::core::api::general as api;
use crate::core::error::{err, Error};
use crate::core::instance;
use crate::core::text::padded;
use cryptoki_sys::*;
use std::sync::Once;

static ATFORK: Once = Once::new();

extern "C" fn child_after_fork() {
    instance::note_fork();
}

ck_fn!(C_Initialize(p_init_args: CK_VOID_PTR) {
    let mut config = None;
    if !p_init_args.is_null() {
        let args = &*(p_init_args as *const CK_C_INITIALIZE_ARGS);
        let given = [
            args.CreateMutex.is_some(),
            args.DestroyMutex.is_some(),
            args.LockMutex.is_some(),
            args.UnlockMutex.is_some(),
        ];
        // All four mutex callbacks or none (PKCS#11 §5.4). hsmux always uses its own
        // (OS) locking, which is what CKF_OS_LOCKING_OK or supplied callbacks permit.
        if given.iter().any(|g| *g) && !given.iter().all(|g| *g) {
            return Err(Error::logged(CKR_ARGUMENTS_BAD, "C_Initialize: give all four mutex functions or none"));
        }
        if args.flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS != 0 {
            log::info!("C_Initialize: consumer forbids OS threads; hsmux's soft token starts none");
        }
        if !args.pReserved.is_null() {
            // p11-kit's `x-init-reserved` and other loaders pass hsmux its config path here;
            // read without trusting the pointer (reserved.rs).
            config = super::reserved::config_path(args.pReserved)?;
        }
    }
    ATFORK.call_once(|| {
        libc::pthread_atfork(None, None, Some(child_after_fork));
    });
    super::audit::flush_at_exit();
    crate::setup::initialize(config.as_deref())
});

ck_fn!(C_Finalize(p_reserved: CK_VOID_PTR) {
    if !p_reserved.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    crate::setup::finalize()
});

ck_fn!(C_GetInfo(p_info: *mut CK_INFO) {
    instance::get()?;
    if p_info.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    *p_info = CK_INFO {
        cryptokiVersion: version(3, 0),
        manufacturerID: padded(api::MANUFACTURER),
        flags: 0,
        libraryDescription: padded(api::LIBRARY_DESCRIPTION),
        libraryVersion: version(
            env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0),
            env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0),
        ),
    };
    Ok(())
});

ck_fn!(C_GetSlotList(token_present: CK_BBOOL, p_slot_list: *mut CK_SLOT_ID, pul_count: *mut CK_ULONG) {
    let slots = api::slot_list(token_present != 0, |id| {
        crate::proxy::slot(id).is_some_and(|m| m.token_present())
    })?;
    write_list(&slots, p_slot_list, pul_count)
});

ck_fn!(C_GetSlotInfo(slot: CK_SLOT_ID, p_info: *mut CK_SLOT_INFO) {
    let info = api::slot_info(slot)?;
    if p_info.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    *p_info = CK_SLOT_INFO {
        slotDescription: padded(&info.description),
        manufacturerID: padded(&info.manufacturer),
        flags: info.flags,
        hardwareVersion: version(0, 0),
        firmwareVersion: version(0, 0),
    };
    Ok(())
});

ck_fn!(C_GetTokenInfo(slot: CK_SLOT_ID, p_info: *mut CK_TOKEN_INFO) {
    let (t, sessions, rw) = api::token_info(slot)?;
    if p_info.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    *p_info = CK_TOKEN_INFO {
        label: padded(&t.label),
        manufacturerID: padded(&t.manufacturer),
        model: padded(&t.model),
        serialNumber: padded(&t.serial),
        flags: t.flags,
        ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
        ulSessionCount: sessions,
        ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
        ulRwSessionCount: rw,
        ulMaxPinLen: t.max_pin_len,
        ulMinPinLen: t.min_pin_len,
        ulTotalPublicMemory: t.total_public_memory,
        ulFreePublicMemory: t.free_public_memory,
        ulTotalPrivateMemory: t.total_private_memory,
        ulFreePrivateMemory: t.free_private_memory,
        hardwareVersion: version(t.hardware_version.0, t.hardware_version.1),
        firmwareVersion: version(t.firmware_version.0, t.firmware_version.1),
        utcTime: padded(&t.utc_time),
    };
    Ok(())
});

ck_fn!(C_GetMechanismList(slot: CK_SLOT_ID, p_list: *mut CK_MECHANISM_TYPE, pul_count: *mut CK_ULONG) {
    let mechs = api::mechanism_list(slot)?;
    write_list(&mechs, p_list, pul_count)
});

ck_fn!(C_GetMechanismInfo(slot: CK_SLOT_ID, mech: CK_MECHANISM_TYPE, p_info: *mut CK_MECHANISM_INFO) {
    let info = api::mechanism_info(slot, mech)?;
    if p_info.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    *p_info = info;
    Ok(())
});

ck_fn!(C_InitToken(slot: CK_SLOT_ID, p_pin: *mut CK_UTF8CHAR, ul_pin_len: CK_ULONG, p_label: *mut CK_UTF8CHAR) {
    instance::get()?;
    if p_pin.is_null() || p_label.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    let n = super::bounds::pin_len(ul_pin_len, crate::core::api::session::max_pin_len_of_slot(slot)?)?;
    let pin = std::slice::from_raw_parts(p_pin, n);
    let label = &*(p_label as *const [u8; 32]);
    api::init_token(slot, pin, label)
});

ck_fn!(C_WaitForSlotEvent(flags: CK_FLAGS, p_slot: *mut CK_SLOT_ID, p_reserved: CK_VOID_PTR) {
    instance::get()?;
    if p_slot.is_null() || !p_reserved.is_null() {
        return Err(err(CKR_ARGUMENTS_BAD));
    }
    // hsmux's own slots are fixed by the configuration; vendor libraries behind module
    // slots may report token events, passed on under hsmux's slot ids.
    let proxy = crate::proxy::get().ok_or_else(|| err(CKR_FUNCTION_NOT_SUPPORTED))?;
    let event = if flags & CKF_DONT_BLOCK != 0 {
        proxy.poll_slot_events().map_err(err)?.ok_or_else(|| err(CKR_NO_EVENT))?
    } else {
        proxy.wait_slot_event().map_err(err)?
    };
    *p_slot = event;
    Ok(())
});

ck_fn!(C_GetFunctionStatus(_h: CK_SESSION_HANDLE) {
    instance::get()?;
    Err(err(CKR_FUNCTION_NOT_PARALLEL))
});

ck_fn!(C_CancelFunction(_h: CK_SESSION_HANDLE) {
    instance::get()?;
    Err(err(CKR_FUNCTION_NOT_PARALLEL))
});
