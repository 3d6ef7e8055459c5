//! One module slot: its vendor library and token, hsmux's handles for the vendor's
//! objects, the configured PIN, and its health: every vendor call runs through
//! [`ModuleSlot::call`] with the slot's deadline (`timeout_ms`). A call that overruns
//! answers `CKR_DEVICE_ERROR` and marks the slot down; while it is down, calls answer
//! `CKR_DEVICE_ERROR` at once, until the stuck call returns or a probe (`C_GetSlotInfo`,
//! at most once per `timeout_ms`) gets an answer.

use super::deadline;
use crate::backend::module::library::{find_token, Library};
use crate::config::{ModuleConfig, PinCheck, Secret, TokenSelector};
use crate::core::handles::HandleTable;
use cryptoki_sys::*;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What configures one module slot (built by the composition root from `[[slot]]`).
pub struct ModuleSlotSpec {
    /// hsmux's slot id.
    pub id: CK_SLOT_ID,
    /// Position in the configuration (the metrics' slot index).
    pub index: usize,
    pub label: String,
    /// This slot's key in the shared object handle table (distinct from every core slot's).
    pub key: usize,
    pub config: ModuleConfig,
    pub user_pin: Option<PinCheck>,
}

/// Whether the vendor answers: shared with the hook of a call that overran.
#[derive(Default)]
struct Health {
    down: AtomicBool,
    /// When a down slot may be probed next.
    next_probe: Mutex<Option<Instant>>,
}

const UNRESOLVED: u64 = u64::MAX;

/// One configured module slot.
pub struct ModuleSlot {
    /// hsmux's slot id and the token label consumers see.
    pub id: CK_SLOT_ID,
    /// Position in the configuration (the metrics' slot index).
    pub index: usize,
    pub label: String,
    /// This slot's key in the shared object handle table.
    pub key: usize,
    pub objects: Arc<HandleTable>,
    /// The loaded library, or why the slot is disabled.
    lib: Result<Arc<Library>, String>,
    select: TokenSelector,
    /// The vendor's slot id once the selector matched a token (`UNRESOLVED` before).
    vendor_slot: AtomicU64,
    pin: Option<Secret>,
    user_pin: Option<PinCheck>,
    library_path: String,
    /// Every vendor call's deadline (`timeout_ms`).
    timeout: Duration,
    health: Arc<Health>,
}

impl ModuleSlot {
    /// Loads the library (shared with other slots that name it) and looks for the token.
    /// A library that cannot be loaded disables this slot only, with a log line.
    pub fn new(spec: ModuleSlotSpec, objects: Arc<HandleTable>) -> ModuleSlot {
        let ModuleSlotSpec {
            id,
            index,
            label,
            key,
            config,
            user_pin,
        } = spec;
        let (cfg, label) = (&config, label.as_str());
        let lib = Library::open_configured(cfg);
        if let Err(why) = &lib {
            log::error!(
                "slot {id} ({label}): vendor library {}: {why}; the slot is disabled (token not present), the other slots work",
                cfg.library.display()
            );
        }
        if cfg.pin.is_some() && user_pin.is_none() {
            log::warn!(
                "slot {id} ({label}): `pin` is configured without `user_pin`: any PIN a consumer gives logs in"
            );
        }
        let slot = ModuleSlot {
            id,
            index,
            label: label.to_string(),
            key,
            objects,
            lib,
            select: cfg.select.clone(),
            vendor_slot: AtomicU64::new(UNRESOLVED),
            pin: cfg.pin.clone(),
            user_pin,
            library_path: cfg.library.display().to_string(),
            timeout: Duration::from_millis(cfg.timeout_ms),
            health: Arc::default(),
        };
        if slot.lib.is_ok() {
            if let Err(rv) = slot.vendor_slot() {
                log::warn!(
                    "slot {id} ({label}): no token matches {:?} in {} yet ({}); looked for again on use",
                    slot.select,
                    slot.library_path,
                    crate::core::rv::name(rv)
                );
            }
        }
        slot
    }

    /// The shared library handle (to tell two slots of one library apart from others).
    pub fn shared_library(&self) -> Option<&Arc<Library>> {
        self.lib.as_ref().ok()
    }

    /// The library, or `CKR_TOKEN_NOT_PRESENT` for a disabled slot.
    pub fn library(&self) -> Result<&Library, CK_RV> {
        self.lib.as_deref().map_err(|_| CKR_TOKEN_NOT_PRESENT)
    }

    /// A function of the vendor's table, or `CKR_FUNCTION_NOT_SUPPORTED` where it has none.
    pub fn vendor_fn<F>(
        &self,
        pick: impl FnOnce(&CK_FUNCTION_LIST) -> Option<F>,
    ) -> Result<F, CK_RV> {
        pick(self.library()?.fl).ok_or(CKR_FUNCTION_NOT_SUPPORTED)
    }

    pub fn disabled_reason(&self) -> Option<&str> {
        self.lib.as_ref().err().map(|s| s.as_str())
    }

    pub fn library_path(&self) -> &str {
        &self.library_path
    }

    pub fn selector(&self) -> &TokenSelector {
        &self.select
    }

    /// The vendor's slot id of our token, found on first need and then remembered.
    pub fn vendor_slot(&self) -> Result<CK_SLOT_ID, CK_RV> {
        let v = self.vendor_slot.load(Ordering::Acquire);
        if v != UNRESOLVED {
            return Ok(v);
        }
        let lib = self.shared_library().ok_or(CKR_TOKEN_NOT_PRESENT)?.clone();
        let select = self.select.clone();
        let found = self.call("C_GetSlotList/C_GetTokenInfo", move || {
            find_token(&lib, &select)
        })??;
        self.vendor_slot.store(found, Ordering::Release);
        log::info!(
            "slot {} ({}): token {:?} is vendor slot {found} of {}",
            self.id,
            self.label,
            self.select,
            self.library_path
        );
        Ok(found)
    }

    /// Is the token there (for `C_GetSlotList(TRUE)`)?
    pub fn token_present(&self) -> bool {
        self.vendor_slot().is_ok()
    }

    /// The PIN to give the vendor for a `C_Login` of `user_type` with the consumer's `pin`:
    /// the configured one for the user (after the `user_pin` check), else the consumer's.
    pub fn login_pin(
        &self,
        user_type: CK_USER_TYPE,
        pin: &[u8],
    ) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, CK_RV> {
        if user_type == CKU_SO {
            return Ok(None);
        }
        if let Some(check) = &self.user_pin {
            if !check.matches(pin) {
                log::warn!(
                    "slot {} ({}): C_Login: the PIN does not match `user_pin`",
                    self.id,
                    self.label
                );
                return Err(CKR_PIN_INCORRECT);
            }
        }
        match &self.pin {
            None => Ok(None),
            Some(secret) => secret.resolve().map(Some).map_err(|e| {
                log::error!(
                    "slot {} ({}): C_Login: the configured pin: {e}",
                    self.id,
                    self.label
                );
                CKR_GENERAL_ERROR
            }),
        }
    }

    /// The longest PIN the vendor's token takes (`ulMaxPinLen`; 255 when its token info
    /// cannot be read). hsmux refuses a longer PIN itself: a vendor library may read a
    /// lying `ulPinLen` before it checks it (SoftHSMv2 copies it in `C_Login`).
    pub fn max_pin_len(&self) -> usize {
        self.vendor_token_info()
            .ok()
            .and_then(|t| usize::try_from(t.ulMaxPinLen).ok())
            .filter(|n| *n > 0)
            .unwrap_or(255)
    }

    /// `CKR_PIN_LEN_RANGE` (with a log line) for a PIN longer than [`Self::max_pin_len`].
    pub fn check_pin_len(&self, len: CK_ULONG) -> Result<(), CK_RV> {
        let max = self.max_pin_len();
        if len as u128 > max as u128 {
            log::warn!(
                "slot {} ({}): PIN length {len} is larger than the token's maximum of {max} (CKR_PIN_LEN_RANGE)",
                self.id,
                self.label
            );
            return Err(CKR_PIN_LEN_RANGE);
        }
        Ok(())
    }

    /// The vendor's token info (label as the vendor has it), for `hsmux check`.
    pub fn vendor_token_info(&self) -> Result<CK_TOKEN_INFO, CK_RV> {
        let vs = self.vendor_slot()?;
        let f = self.vendor_fn(|fl| fl.C_GetTokenInfo)?;
        self.call("C_GetTokenInfo", move || {
            // SAFETY: CK_TOKEN_INFO is plain data the vendor fills, owned by the job.
            let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
            match unsafe { f(vs, &mut info) } {
                CKR_OK => Ok(info),
                rv => Err(rv),
            }
        })?
    }

    /// The vendor's mechanism list for our token, for `hsmux check`.
    pub fn vendor_mechanisms(&self) -> Result<Vec<CK_MECHANISM_TYPE>, CK_RV> {
        let vs = self.vendor_slot()?;
        let f = self.vendor_fn(|fl| fl.C_GetMechanismList)?;
        self.call("C_GetMechanismList", move || {
            let mut n: CK_ULONG = 0;
            // SAFETY: the two-call list into a buffer of the size the vendor gave.
            let rv = unsafe { f(vs, std::ptr::null_mut(), &mut n) };
            if rv != CKR_OK {
                return Err(rv);
            }
            let mut v = vec![0; n as usize];
            match unsafe { f(vs, v.as_mut_ptr(), &mut n) } {
                CKR_OK => {
                    v.truncate(n as usize);
                    Ok(v)
                }
                rv => Err(rv),
            }
        })?
    }

    /// hsmux's handle for the vendor's object handle `vh` (0 stays 0).
    pub fn to_hsmux(&self, vh: CK_OBJECT_HANDLE) -> CK_OBJECT_HANDLE {
        if vh == CK_INVALID_HANDLE {
            return CK_INVALID_HANDLE;
        }
        self.objects.handle_for(self.key, vh)
    }

    /// The vendor's handle behind hsmux's `h`. A handle that is not one of this slot's
    /// becomes `CK_INVALID_HANDLE`, so that the vendor answers it with its own code.
    pub fn to_vendor(&self, h: CK_OBJECT_HANDLE) -> CK_OBJECT_HANDLE {
        match self.objects.resolve(h) {
            Some((k, vh)) if k == self.key => vh,
            _ => CK_INVALID_HANDLE,
        }
    }
}

impl ModuleSlot {
    /// Runs vendor call `name` with the slot's deadline: its result, or `CKR_DEVICE_ERROR`
    /// when the slot is down or the call overran (the slot is then down).
    pub fn call<R: Send + 'static>(
        &self,
        name: &'static str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, CK_RV> {
        if self.health.down.load(Ordering::Acquire) && !self.probe() {
            return Err(CKR_DEVICE_ERROR);
        }
        self.timed(name, f)
    }

    /// Is the slot up (no vendor call stuck past its deadline)?
    pub fn is_up(&self) -> bool {
        !self.health.down.load(Ordering::Acquire)
    }

    fn timed<R: Send + 'static>(
        &self,
        name: &'static str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, CK_RV> {
        let late = || -> Box<dyn FnOnce() + Send> {
            let health = self.health.clone();
            // The library stays initialized while its call runs (a C_Finalize meanwhile
            // would pull it from under the vendor); the last holder finalizes it.
            let lib = self.shared_library().cloned();
            let (id, label) = (self.id, self.label.clone());
            Box::new(move || {
                log::warn!("slot {id} ({label}): the {name} that overran its deadline has returned; the slot serves again");
                health.down.store(false, Ordering::Release);
                drop(lib);
            })
        };
        match deadline::run(self.timeout, f, late) {
            Some(r) => Ok(r),
            None => {
                log::error!(
                    "slot {} ({}): {name} did not return within {} ms: CKR_DEVICE_ERROR; the slot is down until the vendor answers again",
                    self.id,
                    self.label,
                    self.timeout.as_millis()
                );
                *self.health.next_probe.lock() = Some(Instant::now() + self.timeout);
                self.health.down.store(true, Ordering::Release);
                Err(CKR_DEVICE_ERROR)
            }
        }
    }

    /// A down slot's cheap probe (`C_GetSlotInfo`), at most once per deadline: true when
    /// the vendor answered, and the slot is up again.
    fn probe(&self) -> bool {
        {
            let mut next = self.health.next_probe.lock();
            let now = Instant::now();
            if next.is_some_and(|t| now < t) {
                return false;
            }
            *next = Some(now + self.timeout);
        }
        let vs = self.vendor_slot.load(Ordering::Acquire);
        let Some(lib) = self.shared_library().filter(|_| vs != UNRESOLVED) else {
            return false;
        };
        let Some(f) = lib.fl.C_GetSlotInfo else {
            return false;
        };
        let answered = self.timed("C_GetSlotInfo (probe)", move || {
            // SAFETY: plain data owned by the job.
            let mut info: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
            unsafe { f(vs, &mut info) }
        });
        if answered.is_ok() {
            log::info!(
                "slot {} ({}): the vendor answers again; the slot serves again",
                self.id,
                self.label
            );
            self.health.down.store(false, Ordering::Release);
            return true;
        }
        false
    }
}
