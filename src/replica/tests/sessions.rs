//! Which replica holds a consumer's session: opened where a call lands, closed everywhere
//! it was opened.

use super::*;

#[test]
fn closing_a_session_closes_it_on_the_replica_that_opened_it() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    log_in(&g);
    let on_a_and_b = |op| (h[0].count(op), h[1].count(op));
    assert_eq!(on_a_and_b("open_session"), (1, 0), "failover opens on one");
    g.close_session(SESSION);
    assert_eq!(on_a_and_b("close_session"), (1, 0));
}

/// A call that moves to another replica opens the consumer's session there, and closing
/// the session closes it there too. (It used to rely on ModuleToken opening a vendor
/// session lazily, which nothing closed: a vendor session leaked per moved session.)
#[test]
fn a_call_moved_to_another_replica_opens_the_session_there_and_closes_it() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    let key = start(&g);
    // A second session, opened on "a" only; its signing moves to "b".
    const LATER: CK_SESSION_HANDLE = SESSION + 1;
    g.open_session(LATER, true).unwrap();
    let later = Ctx {
        session: LATER,
        rw: true,
        ..CTX
    };
    let opens = |x: &Handle| {
        x.calls()
            .iter()
            .filter(|c| c.starts_with("open_session(8,"))
            .count()
    };
    assert_eq!((opens(&h[0]), opens(&h[1])), (1, 0));
    h[0].fail("sign", CKR_DEVICE_ERROR, Times::Always);
    let mut s = g.sign_init(&later, &ecdsa(), key).unwrap();
    assert!(s.oneshot(b"data").unwrap().starts_with(b"b:"));
    assert_eq!(
        h[1].calls()
            .iter()
            .filter(|c| *c == "open_session(8,rw=true)")
            .count(),
        1
    );
    g.close_session(LATER);
    assert_eq!(
        h[1].calls()
            .iter()
            .filter(|c| *c == "close_session(8)")
            .count(),
        1,
        "{:?}",
        h[1].calls()
    );
}
