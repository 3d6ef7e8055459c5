//! `CK_C_INITIALIZE_ARGS.pReserved` (PKCS#11 3.0 §5.4: reserved, must be NULL, else
//! CKR_ARGUMENTS_BAD), in a process of its own: hsmux keeps p11-kit's `x-init-reserved`
//! convention (a config path as a C string) but never dereferences a pointer it cannot
//! show is a readable, NUL-terminated, plausible path. Before issue 19 any other pointer
//! crashed the consumer.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;

fn init_with(m: &Module, reserved: *mut u8) -> CK_RV {
    initialize_reserved(m, reserved)
}

#[test]
fn preserved_is_read_safely_or_refused() {
    let m = load();
    // Not a readable address at all, a struct rather than a string, a string with no NUL
    // before an unmapped page: answered, not crashed on.
    assert_rv!(init_with(&m, 0x10 as *mut u8), CKR_ARGUMENTS_BAD, "0x10");
    assert_rv!(
        init_with(&m, 0xdead_0000_0000 as *mut u8),
        CKR_ARGUMENTS_BAD,
        "an unmapped address"
    );
    let mut not_a_string: [CK_ULONG; 2] = [7, 0];
    assert_rv!(
        init_with(&m, not_a_string.as_mut_ptr().cast()),
        CKR_ARGUMENTS_BAD,
        "a CK_ULONG array"
    );
    let page = 4096;
    // SAFETY: a fresh two-page mapping, its second page made unreadable.
    let p = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            2 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        ) as *mut u8;
        assert_ne!(p.cast(), libc::MAP_FAILED);
        std::ptr::write_bytes(p, b'/', page);
        assert_eq!(libc::mprotect(p.add(page).cast(), page, libc::PROT_NONE), 0);
        p
    };
    assert_rv!(
        init_with(&m, unsafe { p.add(page - 8) }),
        CKR_ARGUMENTS_BAD,
        "no NUL before an unreadable page"
    );
    assert_rv!(
        init_with(&m, unsafe { p.add(page) }),
        CKR_ARGUMENTS_BAD,
        "an unreadable page"
    );

    // The p11-kit convention still works: a config path, with or without "config=".
    let dir = std::env::temp_dir().join(format!("hsmux-reserved-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("hsmux.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[slot]]\nlabel = \"from-reserved\"\nbackend = \"soft\"\npath = \"{}/s\"\n",
            dir.display()
        ),
    )
    .unwrap();
    std::env::remove_var("HSMUX_CONFIG");
    let mut path = format!("config={}\0", cfg.display()).into_bytes();
    assert_rv!(init_with(&m, path.as_mut_ptr()), CKR_OK);
    let mut n: CK_ULONG = 0;
    assert_rv!(
        ck!(m, C_GetSlotList(CK_FALSE, std::ptr::null_mut(), &mut n)),
        CKR_OK
    );
    assert_eq!(n, 1, "the one slot of the config named by pReserved");
    let mut si: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
    assert_rv!(ck!(m, C_GetSlotInfo(0, &mut si)), CKR_OK);
    assert_rv!(ck!(m, C_Finalize(std::ptr::null_mut())), CKR_OK);
    let _ = std::fs::remove_dir_all(&dir);
}
