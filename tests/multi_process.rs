//! Two processes on one soft token directory (docs/backends.md: "Several processes may share one
//! token directory"): what one creates, changes or destroys, the other sees at its next
//! search; a PIN changed by one is the PIN for the other; both writing at once loses
//! nothing. The second process is this test binary started again in a child mode.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;

const CHILD: &str = "HSMUX_MULTI_PROCESS_CHILD";

fn data(label: &[u8], private: bool) -> Template {
    Template::new()
        .ulong(CKA_CLASS, CKO_DATA)
        .bool(CKA_TOKEN, true)
        .bool(CKA_PRIVATE, private)
        .bytes(CKA_APPLICATION, b"shared")
        .bytes(CKA_LABEL, label)
}

fn by_label(m: &Module, h: CK_SESSION_HANDLE, label: &[u8]) -> Vec<CK_OBJECT_HANDLE> {
    find(m, h, &mut Template::new().bytes(CKA_LABEL, label))
}

fn create(m: &Module, h: CK_SESSION_HANDLE, mut t: Template) -> CK_OBJECT_HANDLE {
    let mut o = 0;
    assert_rv!(ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut o)), CKR_OK);
    o
}

fn run_child(step: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, step)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(c: std::process::Child, step: &str) {
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("child step {step} done")),
        "child step {step} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_processes_share_one_token() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    write_config(1); // HSMUX_CONFIG is inherited by the children
    let m = load();
    assert_rv!(initialize(&m), CKR_OK);
    init_slot(&m, 0);
    let h = open(&m, 0, true);
    assert_rv!(login(&m, h, CKU_USER, PIN), CKR_OK);
    let public = create(&m, h, data(b"parent-public", false));
    create(&m, h, data(b"parent-private", true));

    // The child sees both, renames one, destroys the other, adds its own, changes the PIN.
    finish(run_child("edit"), "edit");
    assert_eq!(
        by_label(&m, h, b"child-private").len(),
        1,
        "the child's new object"
    );
    assert_eq!(
        by_label(&m, h, b"parent-private").len(),
        0,
        "destroyed by the child"
    );
    assert_eq!(
        by_label(&m, h, b"parent-public").len(),
        0,
        "renamed by the child"
    );
    let renamed = by_label(&m, h, b"renamed-by-child");
    assert_eq!(renamed.len(), 1);
    assert_eq!(renamed[0], public, "the same object keeps its handle");
    assert_eq!(
        get_attr(&m, h, public, CKA_LABEL).unwrap(),
        b"renamed-by-child"
    );
    // The PIN the child set is the PIN now.
    assert_rv!(ck!(&m, C_Logout(h)), CKR_OK);
    assert_rv!(login(&m, h, CKU_USER, PIN), CKR_PIN_INCORRECT);
    assert_rv!(login(&m, h, CKU_USER, b"5678"), CKR_OK);
    assert_eq!(
        get_attr(&m, h, by_label(&m, h, b"child-private")[0], CKA_APPLICATION).unwrap(),
        b"shared",
        "a private object written by the child opens here"
    );

    // Both write at the same time: 2 x 30 objects, none lost, none damaged.
    let child = run_child("burst");
    for i in 0..30 {
        create(&m, h, data(format!("parent-{i}").as_bytes(), i % 2 == 0));
    }
    finish(child, "burst");
    let all = find(
        &m,
        h,
        &mut Template::new().bytes(CKA_APPLICATION, b"shared"),
    );
    assert_eq!(all.len(), 2 + 60, "every object of both processes");
    for o in all {
        assert!(get_attr(&m, h, o, CKA_LABEL).is_ok());
    }
    assert_rv!(ck!(&m, C_Finalize(std::ptr::null_mut())), CKR_OK);
}

/// The second process; runs only when started by the test above.
#[test]
fn child() {
    let Ok(step) = std::env::var(CHILD) else {
        return;
    };
    let m = load();
    assert_rv!(initialize(&m), CKR_OK);
    let h = open(&m, 0, true);
    match step.as_str() {
        "edit" => {
            assert_rv!(login(&m, h, CKU_USER, PIN), CKR_OK);
            let p = by_label(&m, h, b"parent-public");
            assert_eq!(p.len(), 1);
            let q = by_label(&m, h, b"parent-private");
            assert_eq!(q.len(), 1, "a private object from the other process opens");
            let mut t = Template::new().bytes(CKA_LABEL, b"renamed-by-child");
            assert_rv!(
                ck!(&m, C_SetAttributeValue(h, p[0], t.ptr(), t.len())),
                CKR_OK
            );
            assert_rv!(ck!(&m, C_DestroyObject(h, q[0])), CKR_OK);
            create(&m, h, data(b"child-private", true));
            assert_rv!(
                ck!(
                    &m,
                    C_SetPIN(h, PIN.as_ptr() as *mut _, 4, b"5678".as_ptr() as *mut _, 4)
                ),
                CKR_OK
            );
        }
        "burst" => {
            assert_rv!(login(&m, h, CKU_USER, b"5678"), CKR_OK);
            for i in 0..30 {
                create(&m, h, data(format!("child-{i}").as_bytes(), i % 2 == 1));
            }
        }
        other => panic!("unknown step {other}"),
    }
    assert_rv!(ck!(&m, C_Finalize(std::ptr::null_mut())), CKR_OK);
    println!("child step {step} done");
}
