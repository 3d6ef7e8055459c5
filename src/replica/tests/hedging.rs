//! Hedged calls (`hedge.rs`) against scripted replicas that stall: which calls are sent to
//! a second replica when the first is silent, which never are, and how a replica with a
//! call left behind is tried last until that call ends.

use super::*;

const SLOW: Duration = Duration::from_millis(800);

/// A failover group of "a" and "b" with the user logged in, hedging after 20 ms.
fn hedged() -> (ReplicaGroup, Vec<Handle>, ObjectId) {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    let key = start(&g);
    g.set_hedge(Some(20));
    (g, h, key)
}

#[test]
fn a_silent_replica_is_hedged_on_the_next_and_the_first_answer_wins() {
    let (g, h, key) = hedged();
    h[0].stall("sign", SLOW);
    h[1].clear();
    assert_eq!(sign(&g, key), Ok("b".into()), "b answered first");
    assert_eq!(h[1].count("sign_init"), 1, "{:?}", h[1].calls());
    assert_eq!(h[0].count("sign"), 1, "a got the call first");
    // a was slow, not failed: it stays healthy, and while its call is out it is tried
    // last (no second hedge).
    assert_eq!(state(&g, 0), State::Healthy);
    h[0].clear();
    assert_eq!(sign(&g, key), Ok("b".into()));
    assert_eq!(h[0].count("sign_init"), 0, "{:?}", h[0].calls());
    // Once that call has ended, a (first in file order) serves again.
    h[0].heal("sign");
    std::thread::sleep(SLOW + Duration::from_millis(200));
    assert_eq!(sign(&g, key), Ok("a".into()));
}

#[test]
fn an_init_that_does_not_answer_is_hedged_too() {
    let (g, h, key) = hedged();
    h[0].stall("sign_init", SLOW);
    assert_eq!(sign(&g, key), Ok("b".into()));
    assert_eq!(h[1].count("sign_init"), 1);
}

#[test]
fn a_replica_failure_during_the_hedge_is_still_a_failure_of_that_replica() {
    let (g, h, key) = hedged();
    // a hangs and then fails (its deadline): b answers meanwhile; a is marked down when
    // its call returns, as any failed call marks it.
    h[0].stall("sign", Duration::from_millis(300));
    h[0].fail("sign", CKR_DEVICE_ERROR, Times::N(1));
    assert_eq!(sign(&g, key), Ok("b".into()));
    assert!(wait_state(&g, 0, State::Down, Duration::from_secs(3)));
}

#[test]
fn object_creation_is_never_hedged() {
    let (g, h, _) = hedged();
    h[0].stall("create_object", Duration::from_millis(300));
    let template = [
        Attr::ulong(CKA_CLASS, CKO_DATA),
        Attr::new(CKA_ID, b"d1".to_vec()),
    ];
    g.create_object(&CTX, &template)
        .expect("C_CreateObject on a");
    assert_eq!(h[0].count("create_object"), 1);
    assert_eq!(h[1].count("create_object"), 0, "{:?}", h[1].calls());
}

#[test]
fn an_aead_encryption_is_never_hedged_but_its_decryption_is() {
    let (g, h, key) = hedged();
    let gcm = Mechanism::with(
        CKM_AES_GCM,
        MechParam::Gcm {
            iv: vec![7; 12],
            iv_bits: 96,
            aad: Vec::new(),
            tag_bits: 128,
        },
    );
    h[0].stall("encrypt", Duration::from_millis(300));
    h[1].clear();
    let mut c = g.encrypt_init(&CTX, &gcm, key).unwrap();
    assert!(c.oneshot(b"data").is_ok());
    assert_eq!(h[1].count("encrypt_init"), 0, "{:?}", h[1].calls());
    // The fake decrypts with the same call ("encrypt"): decryption is hedged.
    let mut d = g.decrypt_init(&CTX, &gcm, key).unwrap();
    assert!(d.oneshot(b"data").is_ok());
    assert_eq!(h[1].count("encrypt_init"), 1, "{:?}", h[1].calls());
}

#[test]
fn with_hedging_off_the_call_waits_for_its_replica() {
    let (g, h, key) = hedged();
    g.set_hedge(Some(0));
    h[0].stall("sign", Duration::from_millis(200));
    h[1].clear();
    assert_eq!(sign(&g, key), Ok("a".into()));
    assert_eq!(h[1].count("sign_init"), 0);
}
