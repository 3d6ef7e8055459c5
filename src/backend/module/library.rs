//! A vendor PKCS#11 library: loaded once per path, `C_Initialize`d once however many slots
//! use it, finalized when the last of them goes (p11-kit's reference counting).
//!
//! A library is never `dlclose`d: vendor libraries leave atexit handlers and thread-local
//! destructors behind (SoftHSM's OpenSSL among them), which would then run in unmapped code.

use crate::config::{ModuleConfig, TokenSelector};
use crate::core::instance::fork_epoch;
use cryptoki_sys::*;
use libloading::os::unix::{Library as DlLibrary, RTLD_LOCAL, RTLD_NOW};
use parking_lot::Mutex;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The libraries loaded in this process, by path. Entries of an older fork epoch belong to
/// the parent process: a child initializes the library again for itself.
static LOADED: Mutex<Vec<(PathBuf, u64, Weak<Library>)>> = Mutex::new(Vec::new());

/// Libraries that failed to load in this `C_Initialize` (cleared by the next one), so that
/// several slots naming one bad library probe it once.
static FAILED: Mutex<Vec<(PathBuf, u64, String)>> = Mutex::new(Vec::new());

/// Forgets earlier failures: a new `C_Initialize` tries every library again.
pub fn forget_failures() {
    FAILED.lock().clear();
}

pub struct Library {
    pub path: PathBuf,
    /// The 2.40 function table (every vendor has one).
    pub fl: &'static CK_FUNCTION_LIST,
    /// The 3.0 table when the vendor offers the "PKCS 11" 3.x interface.
    pub fl3: Option<&'static CK_FUNCTION_LIST_3_0>,
    /// The 3.2 table when the vendor offers the "PKCS 11" 3.2 interface (key encapsulation,
    /// `C_VerifySignature*`); asked for by version, as a 3.0 vendor's default stays 3.0.
    pub fl32: Option<&'static CK_FUNCTION_LIST_3_2>,
    /// Did our `C_Initialize` start the library (so that our `C_Finalize` may end it)? Not
    /// when it answered `CKR_CRYPTOKI_ALREADY_INITIALIZED`: someone else in the process uses
    /// it and will finalize it.
    we_initialized: bool,
    epoch: u64,
    /// What the first slot gave as `init_args` (later slots share the initialized library).
    pub(super) init_args: Option<String>,
    /// Re-initialisation (`reinit.rs`): who uses the library, the gate every vendor call
    /// of a module token passes, and how many times it was re-initialised.
    pub(super) users: super::reinit::Users,
}

// The function tables are immutable C data the vendor keeps for the library's lifetime
// (forever, as hsmux never unloads it); PKCS#11 libraries initialized with
// CKF_OS_LOCKING_OK are callable from any thread.
unsafe impl Send for Library {}
unsafe impl Sync for Library {}

impl Drop for Library {
    fn drop(&mut self) {
        let live = self
            .users
            .initialized
            .load(std::sync::atomic::Ordering::SeqCst);
        if self.we_initialized && live && self.epoch == fork_epoch() {
            if let Some(f) = self.fl.C_Finalize {
                // SAFETY: the library is initialized by us and nobody else holds it.
                let rv = unsafe { f(std::ptr::null_mut()) };
                log::debug!("{}: C_Finalize -> 0x{rv:x}", self.path.display());
            }
        }
    }
}

impl Library {
    /// The library a module configuration names, opened as [`Library::open`] does (in a
    /// child process first when `probe_init` asks for it, within `timeout_ms`).
    pub fn open_configured(cfg: &ModuleConfig) -> Result<Arc<Library>, String> {
        let probe = cfg
            .probe_init
            .then(|| Duration::from_millis(cfg.timeout_ms));
        Library::open(&cfg.library, cfg.init_args.as_deref(), probe)
    }

    /// The library at `path`, initialized: shared with the other slots that use it.
    pub fn open(
        path: &Path,
        init_args: Option<&str>,
        probe: Option<Duration>,
    ) -> Result<Arc<Library>, String> {
        let epoch = fork_epoch();
        let mut loaded = LOADED.lock();
        loaded.retain(|(_, e, w)| *e == epoch && w.strong_count() > 0);
        if let Some(lib) = loaded
            .iter()
            .find(|(p, _, _)| p == path)
            .and_then(|(_, _, w)| w.upgrade())
        {
            if lib.init_args.as_deref() != init_args {
                log::warn!(
                    "{}: already loaded and initialized with other init_args; this slot's are not used",
                    path.display()
                );
            }
            return Ok(lib);
        }
        if let Some((_, _, why)) = FAILED
            .lock()
            .iter()
            .find(|(p, e, _)| p == path && *e == epoch)
        {
            return Err(why.clone());
        }
        let args = match init_args {
            Some(a) => {
                Some(CString::new(a).map_err(|_| "init_args contains a NUL byte".to_string())?)
            }
            None => None,
        };
        let lib = match probe
            .map_or(Ok(()), |timeout| {
                probe_in_child(path, args.as_ref(), timeout)
            })
            .and_then(|()| load(path, args.as_ref(), epoch))
        {
            Ok(mut lib) => {
                lib.init_args = init_args.map(str::to_string);
                lib.users.opened();
                Arc::new(lib)
            }
            Err(why) => {
                FAILED.lock().push((path.to_path_buf(), epoch, why.clone()));
                return Err(why);
            }
        };
        loaded.push((path.to_path_buf(), epoch, Arc::downgrade(&lib)));
        Ok(lib)
    }
}

impl Library {
    /// Did hsmux's `C_Initialize` (in this process, not a parent's) start the library?
    pub(super) fn we_initialized(&self) -> bool {
        self.we_initialized && self.epoch == fork_epoch()
    }

    /// `C_WaitForSlotEvent(CKF_DONT_BLOCK)`: the vendor slot with an event, `None` for no
    /// event, or the vendor's error (`CKR_FUNCTION_NOT_SUPPORTED` for most).
    pub fn poll_slot_event(&self) -> Result<Option<CK_SLOT_ID>, CK_RV> {
        let f = self
            .fl
            .C_WaitForSlotEvent
            .ok_or(CKR_FUNCTION_NOT_SUPPORTED)?;
        let mut slot: CK_SLOT_ID = 0;
        // SAFETY: a non-blocking call with our own output variable.
        match unsafe { f(CKF_DONT_BLOCK, &mut slot, std::ptr::null_mut()) } {
            CKR_OK => Ok(Some(slot)),
            CKR_NO_EVENT => Ok(None),
            rv => Err(rv),
        }
    }

    /// A blocking `C_WaitForSlotEvent`: the vendor slot with an event, or the vendor's error.
    pub fn wait_slot_event(&self) -> Result<CK_SLOT_ID, CK_RV> {
        let f = self
            .fl
            .C_WaitForSlotEvent
            .ok_or(CKR_FUNCTION_NOT_SUPPORTED)?;
        let mut slot: CK_SLOT_ID = 0;
        // SAFETY: the vendor blocks until an event or its C_Finalize.
        match unsafe { f(0, &mut slot, std::ptr::null_mut()) } {
            CKR_OK => Ok(slot),
            rv => Err(rv),
        }
    }
}

pub(super) fn init_args_for(args: Option<&CString>) -> CK_C_INITIALIZE_ARGS {
    CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: args.map_or(std::ptr::null_mut(), |a| a.as_ptr() as *mut _),
    }
}

/// dlopen (every symbol resolved now, so that a library with a missing dependency fails
/// here rather than crash at its first call), fetch the tables, `C_Initialize`.
fn load(path: &Path, args: Option<&CString>, epoch: u64) -> Result<Library, String> {
    // SAFETY: loading a library runs its constructors; choosing the library is the
    // operator's act (an absolute path in the config).
    let lib = unsafe { DlLibrary::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
        .map_err(|e| format!("cannot load: {e}"))?;
    // SAFETY: the symbols have the PKCS#11 signatures when present.
    let get_list: CK_C_GetFunctionList =
        unsafe { lib.get::<CK_C_GetFunctionList>(b"C_GetFunctionList\0") }
            .map(|s| *s)
            .map_err(|_| {
                "the library has no C_GetFunctionList: it is not a PKCS#11 module".to_string()
            })?;
    let get_interface: CK_C_GetInterface =
        unsafe { lib.get::<CK_C_GetInterface>(b"C_GetInterface\0") }
            .map(|s| *s)
            .unwrap_or(None);
    // Never unloaded (module doc): the tables stay valid for the process's lifetime.
    let _ = lib.into_raw();
    let mut fl: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
    let rv = match get_list {
        Some(f) => unsafe { f(&mut fl) },
        None => CKR_GENERAL_ERROR,
    };
    if rv != CKR_OK || fl.is_null() {
        return Err(format!("C_GetFunctionList failed (rv 0x{rv:x})"));
    }
    // SAFETY: the vendor returned a table it keeps alive.
    let fl: &'static CK_FUNCTION_LIST = unsafe { &*fl };
    // SAFETY: NULL asks for the vendor's default "PKCS 11" interface (3.0 or later).
    let fl3 = unsafe { interface::<CK_FUNCTION_LIST_3_0>(get_interface, None) };
    // SAFETY: the version asked for is the table type's (a 3.2 table begins with 3.0's).
    let fl32 = unsafe {
        interface::<CK_FUNCTION_LIST_3_2>(get_interface, Some(CK_VERSION { major: 3, minor: 2 }))
    };
    let mut ia = init_args_for(args);
    let rv = match fl.C_Initialize {
        Some(f) => unsafe { f(&mut ia as *mut _ as CK_VOID_PTR) },
        None => CKR_FUNCTION_NOT_SUPPORTED,
    };
    let we_initialized = match rv {
        CKR_OK => true,
        CKR_CRYPTOKI_ALREADY_INITIALIZED => {
            log::info!(
                "{}: already initialized by someone else in this process; sharing it",
                path.display()
            );
            false
        }
        rv => {
            return Err(format!(
                "C_Initialize failed: {}",
                crate::core::rv::name(rv)
            ))
        }
    };
    log::info!(
        "{}: loaded, PKCS#11 {}.{}{}",
        path.display(),
        fl.version.major,
        fl.version.minor,
        match (fl3.is_some(), fl32.is_some()) {
            (_, true) => " (3.0 and 3.2 interfaces too)",
            (true, false) => " (3.x interface too)",
            (false, false) => "",
        }
    );
    Ok(Library {
        path: path.to_path_buf(),
        fl,
        fl3,
        fl32,
        we_initialized,
        epoch,
        init_args: None,
        users: super::reinit::Users::default(),
    })
}

/// The vendor's "PKCS 11" interface of `version` (`None`: its default) as a table of type
/// `T`, when it offers one: a table whose version is below the one asked for (or below 3.0
/// for the default) is not taken.
///
/// # Safety
/// `T` is the function table of `version` (or of 3.0 with `None`).
unsafe fn interface<T>(get: CK_C_GetInterface, version: Option<CK_VERSION>) -> Option<&'static T> {
    let f = get?;
    let mut iface: *mut CK_INTERFACE = std::ptr::null_mut();
    let mut name = *b"PKCS 11\0";
    let mut want = version.unwrap_or(CK_VERSION { major: 3, minor: 0 });
    let asked = match version {
        Some(_) => &mut want as *mut CK_VERSION,
        None => std::ptr::null_mut(),
    };
    let rv = f(name.as_mut_ptr(), asked, &mut iface, 0);
    if rv != CKR_OK || iface.is_null() {
        return None;
    }
    let list = (*iface).pFunctionList;
    if list.is_null() {
        return None;
    }
    // Every table begins with its CK_VERSION.
    let got = *(list as *const CK_VERSION);
    ((got.major, got.minor) >= (want.major, want.minor)).then(|| &*(list as *const T))
}

/// Loads and initializes the library in a child process first: a library that crashes or
/// hangs there would have taken the consumer down with it. The child only calls dlopen,
/// the two PKCS#11 functions, writes one byte to a pipe and leaves with `_exit`. The pipe,
/// not `waitpid`, tells the outcome: a consumer that ignores SIGCHLD (daemons do) or reaps
/// children itself would leave `waitpid` nothing to report.
fn probe_in_child(path: &Path, args: Option<&CString>, timeout: Duration) -> Result<(), String> {
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| "library path contains a NUL byte".to_string())?;
    let sym = b"C_GetFunctionList\0";
    let mut ia = init_args_for(args);
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: plain system calls on our own descriptors and child.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        log::warn!(
            "{}: cannot make a pipe to probe the library; loading it directly",
            path.display()
        );
        return Ok(());
    }
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: the child runs only the code below and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        unsafe {
            libc::close(rd);
            libc::close(wr);
        }
        log::warn!(
            "{}: cannot fork to probe the library; loading it directly",
            path.display()
        );
        return Ok(());
    }
    if pid == 0 {
        unsafe {
            libc::close(rd);
            let done = |code: u8| {
                libc::write(wr, &code as *const u8 as *const libc::c_void, 1);
                libc::_exit(0);
            };
            let h = libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if h.is_null() {
                done(b'F');
            }
            let f = libc::dlsym(h, sym.as_ptr() as *const _);
            if f.is_null() {
                done(b'F');
            }
            let get: unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV =
                std::mem::transmute(f);
            let mut fl: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
            if get(&mut fl) != CKR_OK || fl.is_null() {
                done(b'F');
            }
            let rv = match (*fl).C_Initialize {
                Some(init) => init(&mut ia as *mut _ as CK_VOID_PTR),
                None => CKR_FUNCTION_NOT_SUPPORTED,
            };
            done(if rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED {
                b'0'
            } else {
                b'F'
            });
        }
    }
    unsafe { libc::close(wr) };
    let deadline = Instant::now() + timeout;
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: rd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd of ours.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if r <= 0 {
            break None; // the deadline passed
        }
        let mut b = 0u8;
        let n = unsafe { libc::read(rd, &mut b as *mut u8 as *mut libc::c_void, 1) };
        break Some(if n == 1 { Some(b) } else { None });
    };
    let mut status = 0;
    unsafe {
        libc::close(rd);
        if outcome.is_none() {
            libc::kill(pid, libc::SIGKILL);
        }
        // Reap it (fails harmlessly when the consumer ignores SIGCHLD).
        libc::waitpid(pid, &mut status, 0);
    }
    match outcome {
        None => Err(format!(
            "C_Initialize did not return within {} ms (probed in a child process)",
            timeout.as_millis()
        )),
        Some(None) => Err(if libc::WIFSIGNALED(status) {
            format!(
                "the library crashed (signal {}) while loading or in C_Initialize (probed in a child process)",
                libc::WTERMSIG(status)
            )
        } else {
            "the library crashed or exited while loading or in C_Initialize (probed in a child process)".to_string()
        }),
        // A clean failure is described precisely by the real load that follows.
        Some(Some(_)) => Ok(()),
    }
}

/// Walks the vendor's slots with a token and returns the one the selector names.
pub fn find_token(lib: &Library, select: &TokenSelector) -> Result<CK_SLOT_ID, CK_RV> {
    let get_list = lib.fl.C_GetSlotList.ok_or(CKR_FUNCTION_NOT_SUPPORTED)?;
    let get_info = lib.fl.C_GetTokenInfo.ok_or(CKR_FUNCTION_NOT_SUPPORTED)?;
    let present = !matches!(select, TokenSelector::Slot(_));
    let mut n: CK_ULONG = 0;
    // SAFETY: the two-call slot list, into a buffer of the size the vendor gave.
    let rv = unsafe { get_list(present as CK_BBOOL, std::ptr::null_mut(), &mut n) };
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut ids = vec![0 as CK_SLOT_ID; n as usize];
    let rv = unsafe { get_list(present as CK_BBOOL, ids.as_mut_ptr(), &mut n) };
    if rv != CKR_OK {
        return Err(rv);
    }
    ids.truncate(n as usize);
    if let TokenSelector::Slot(want) = select {
        return ids
            .into_iter()
            .find(|s| s == want)
            .ok_or(CKR_TOKEN_NOT_PRESENT);
    }
    for id in ids {
        // SAFETY: CK_TOKEN_INFO is plain data the vendor fills.
        let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
        if unsafe { get_info(id, &mut info) } != CKR_OK {
            continue;
        }
        let hit = match select {
            TokenSelector::Label(l) => trimmed(&info.label) == l.as_bytes(),
            TokenSelector::Serial(s) => trimmed(&info.serialNumber) == s.as_bytes(),
            TokenSelector::Slot(_) => false,
        };
        if hit {
            return Ok(id);
        }
    }
    Err(CKR_TOKEN_NOT_PRESENT)
}

fn trimmed(field: &[u8]) -> &[u8] {
    let end = field
        .iter()
        .rposition(|b| *b != b' ' && *b != 0)
        .map_or(0, |i| i + 1);
    &field[..end]
}
