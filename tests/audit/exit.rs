//! A process that exits without `C_Finalize`: the lines the writer still held in memory
//! (it takes a batch every few milliseconds) are written by the trail's `atexit` handler,
//! and the chain ends with its stop record.

use super::*;

const SIGNS: usize = 25;

/// The child: signs, then exits at once (its last lines are still queued).
pub(crate) fn signs_and_exits(m: &Module) -> ! {
    let (h, private, _) = ready(m, 0, USER);
    for _ in 0..SIGNS {
        assert_rv!(sign_once(m, h, private), CKR_OK);
    }
    println!("child done");
    std::process::exit(0);
}

#[test]
fn lines_still_queued_at_exit_are_written() {
    let Some(dir) = parent_dir() else {
        return;
    };
    config(&dir, "", "");
    run_child(&dir, "init");
    run_child(&dir, "exit");
    let file = dir.join("audit.jsonl");
    let report = check_trail(&[&file]).unwrap_or_else(|b| panic!("{b}"));
    assert_eq!(report.chains, 2);
    assert!(report.open.is_empty(), "a chain without its stop record");
    let rs = records(&file);
    assert_eq!(named(&rs, "C_Sign").len(), SIGNS);
    assert_eq!(named(&rs, "audit.stop").len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
