//! The failover decisions of a replica group, against scripted in-test tokens: which
//! return values move the group and which reach the caller unchanged, what is replayed on
//! the next replica, the order replicas are tried in, `balance`, the health state machine
//! and the prober that re-admits replicas, and members that start unavailable;
//! `tests/replay.rs`: multi-part replay and session objects made again on the next
//! replica. docs/failover.md ("Replica groups") and the comments of `mod.rs`, `ops.rs`,
//! `health.rs` and `prober.rs` are what is checked.

use super::health::{Change, Health, State, FIRST_BACKOFF, HEALTHY_PROBE_EVERY, MAX_BACKOFF};
use super::*;
use std::collections::HashMap;
use std::time::Duration;

mod fake;
mod hedging;
mod replay;
mod sessions;
use fake::{Handle, Times};

// ---------------------------------------------------------------- helpers

const SESSION: CK_SESSION_HANDLE = 7;
const CTX: Ctx = Ctx {
    session: SESSION,
    rw: false,
    login: Login::User,
};
const KEY_ID: &[u8] = b"k1";

/// A group over replicas named `names` (file order), each holding the private key
/// `k1`/`sig` under its own object id; `pins[i]`: replica i's configured PIN.
fn group(policy: Policy, names: &[&str], pins: &[Option<&str>]) -> (ReplicaGroup, Vec<Handle>) {
    let hs: Vec<Handle> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let h = Handle::new(n, 100 * (i as u64 + 1));
            h.key(CKO_PRIVATE_KEY, KEY_ID, b"sig");
            h
        })
        .collect();
    let g = group_of(policy, &hs, pins);
    (g, hs)
}

fn group_of(policy: Policy, hs: &[Handle], pins: &[Option<&str>]) -> ReplicaGroup {
    let members = hs
        .iter()
        .enumerate()
        .map(|(i, h)| Member {
            name: h.0.lock().name.clone(),
            pin: pins
                .get(i)
                .copied()
                .flatten()
                .map(|p| Secret::Literal(p.to_string())),
            token: h.token(),
        })
        .collect();
    let g = ReplicaGroup::new("scripted", policy, members);
    // The failover decisions are tested without hedging (its timing would make the
    // serving replica depend on the machine's load); `tests/hedging.rs` turns it on.
    g.set_hedge(Some(0));
    g
}

/// A consumer session, logged in with PIN "1234", and its key `k1`.
/// A session on the group, the user logged in.
fn log_in(g: &ReplicaGroup) {
    g.open_session(SESSION, false).expect("C_OpenSession");
    g.login(Login::User, b"1234").expect("C_Login");
}

fn start(g: &ReplicaGroup) -> ObjectId {
    log_in(g);
    the_key(g)
}

/// Replicas "a" and "b", empty until `provision` gives them objects, in a failover group
/// with a session and the user logged in.
fn a_and_b(provision: impl FnOnce(&Handle, &Handle)) -> (ReplicaGroup, Handle, Handle) {
    let (a, b) = (Handle::new("a", 100), Handle::new("b", 200));
    provision(&a, &b);
    let g = group_of(Policy::Failover, &[a.clone(), b.clone()], &[]);
    log_in(&g);
    (g, a, b)
}

fn the_key(g: &ReplicaGroup) -> ObjectId {
    let t = [
        Attr::ulong(CKA_CLASS, CKO_PRIVATE_KEY),
        Attr::new(CKA_ID, KEY_ID.to_vec()),
    ];
    let found = g.find_objects(&CTX, &t).expect("C_FindObjects");
    assert_eq!(
        found.len(),
        1,
        "one group object for the key on every replica"
    );
    found[0]
}

fn ecdsa() -> Mechanism {
    Mechanism::new(CKM_ECDSA)
}

/// C_SignInit + C_Sign through the group: the signer's replica name, or the error.
fn sign(g: &ReplicaGroup, key: ObjectId) -> std::result::Result<String, CK_RV> {
    let mut s = g.sign_init(&CTX, &ecdsa(), key).map_err(|e| e.rv())?;
    let sig = s.oneshot(b"data").map_err(|e| e.rv())?;
    let text = String::from_utf8(sig).unwrap();
    assert!(text.ends_with(":data"), "{text}");
    Ok(text.split(':').next().unwrap().to_string())
}

fn state(g: &ReplicaGroup, i: usize) -> State {
    g.replicas()[i].state().0
}

/// Waits (at most `limit`) until replica `i` is in `want`.
fn wait_state(g: &ReplicaGroup, i: usize, want: State, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if state(g, i) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    state(g, i) == want
}

const DEVICE_CLASS: [CK_RV; 8] = [
    CKR_DEVICE_ERROR,
    CKR_DEVICE_REMOVED,
    CKR_DEVICE_MEMORY,
    CKR_TOKEN_NOT_PRESENT,
    CKR_TOKEN_NOT_RECOGNIZED,
    CKR_SESSION_HANDLE_INVALID,
    CKR_SESSION_CLOSED,
    CKR_CRYPTOKI_NOT_INITIALIZED,
];

/// Answers about the request or the key, not the key store.
const REQUEST_CLASS: [CK_RV; 12] = [
    CKR_SIGNATURE_INVALID,
    CKR_SIGNATURE_LEN_RANGE,
    CKR_KEY_HANDLE_INVALID,
    CKR_OBJECT_HANDLE_INVALID,
    CKR_FUNCTION_FAILED,
    CKR_FUNCTION_REJECTED,
    CKR_DATA_LEN_RANGE,
    CKR_MECHANISM_INVALID,
    CKR_KEY_FUNCTION_NOT_PERMITTED,
    CKR_PIN_INCORRECT,
    CKR_USER_NOT_LOGGED_IN,
    CKR_GENERAL_ERROR,
];

// ---------------------------------------------------------------- which errors fail over

#[test]
fn device_class_is_exactly_the_readme_list() {
    for rv in DEVICE_CLASS {
        assert!(device_class(rv), "{rv:#x} is device-class");
    }
    for rv in REQUEST_CLASS {
        assert!(!device_class(rv), "{rv:#x} is not device-class");
    }
    assert!(!device_class(CKR_OK));
}

#[test]
fn every_device_class_answer_moves_a_single_part_call_to_the_next_replica() {
    for rv in DEVICE_CLASS {
        let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
        let key = start(&g);
        h[0].fail("sign", rv, Times::Always);
        assert_eq!(sign(&g, key), Ok("b".into()), "after {rv:#x}");
        assert_eq!(state(&g, 0), State::Down, "{rv:#x} marks a down");
        assert_eq!(state(&g, 1), State::Healthy);
        // The next operation starts on b at once: a is not asked again.
        h[0].clear();
        assert_eq!(sign(&g, key), Ok("b".into()));
        assert_eq!(h[0].count("sign_init"), 0, "{:?}", h[0].calls());
    }
}

#[test]
fn every_device_class_answer_at_init_moves_the_init() {
    for rv in DEVICE_CLASS {
        let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
        let key = start(&g);
        h[0].fail("sign_init", rv, Times::Always);
        assert_eq!(sign(&g, key), Ok("b".into()), "after {rv:#x}");
        assert_eq!(state(&g, 0), State::Down);
    }
}

#[test]
fn request_class_answers_reach_the_caller_unchanged_and_do_not_move_the_group() {
    for rv in REQUEST_CLASS {
        let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
        let key = start(&g);
        h[1].clear();
        h[0].fail("sign", rv, Times::Always);
        assert_eq!(sign(&g, key), Err(rv), "C_Sign answered {rv:#x}");
        assert_eq!(state(&g, 0), State::Healthy, "{rv:#x} keeps a healthy");
        assert_eq!(h[1].count("sign_init"), 0, "b not asked after {rv:#x}");
        assert_eq!(h[1].count("sign"), 0);
        h[0].heal("sign");
        assert_eq!(sign(&g, key), Ok("a".into()));
    }
}

#[test]
fn an_invalid_signature_is_the_callers_answer_not_a_failover() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    let key = start(&g);
    let mut v = g.verify_init(&CTX, &ecdsa(), key).unwrap();
    assert_eq!(v.oneshot(b"data", b"a:1:data").map_err(|e| e.rv()), Ok(()));
    let mut v = g.verify_init(&CTX, &ecdsa(), key).unwrap();
    assert_eq!(
        v.oneshot(b"data", b"a:1:other").map_err(|e| e.rv()),
        Err(CKR_SIGNATURE_INVALID)
    );
    assert_eq!(state(&g, 0), State::Healthy);
    assert_eq!(h[1].count("verify"), 0);
    assert_eq!(h[1].count("verify_init"), 0);
}

#[test]
fn a_key_handle_the_replica_no_longer_knows_is_looked_up_once_more() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    let key = start(&g);
    assert_eq!(sign(&g, key), Ok("a".into()));
    // The vendor restarted: its ids changed; the group finds the key again by identity.
    h[0].renumber();
    h[0].clear();
    assert_eq!(sign(&g, key), Ok("a".into()));
    assert_eq!(h[0].count("sign_init"), 2, "{:?}", h[0].calls());
    assert_eq!(h[0].count("find_objects"), 1);
    // A key handle refused again after the lookup is the caller's answer, on a alone.
    h[0].fail("sign_init", CKR_KEY_HANDLE_INVALID, Times::Always);
    h[0].clear();
    h[1].clear();
    assert_eq!(sign(&g, key), Err(CKR_KEY_HANDLE_INVALID));
    assert_eq!(h[0].count("sign_init"), 2, "one retry, not more");
    assert_eq!(h[1].count("sign_init"), 0, "b not asked");
    assert_eq!(state(&g, 0), State::Healthy);
}

// ---------------------------------------------------------------- what is replayed

#[test]
fn the_replay_logs_in_finds_the_key_by_id_reinits_and_retries() {
    let h = [Handle::new("a", 100), Handle::new("b", 200)];
    h[0].key(CKO_PRIVATE_KEY, KEY_ID, b"sig");
    let g = group_of(Policy::Failover, &h, &[]);
    // Login goes to every reachable replica with the consumer's PIN (none configured).
    let key = start(&g);
    // Provisioned on b after the listing: b is asked for it by identity at the replay.
    h[1].key(CKO_PRIVATE_KEY, KEY_ID, b"other label");
    assert_eq!(h[0].count("login"), 1);
    assert_eq!(
        h[1].calls()
            .iter()
            .filter(|c| *c == "login(User,1234)")
            .count(),
        1
    );
    let mut s = g.sign_init(&CTX, &ecdsa(), key).unwrap();
    assert_eq!(h[0].count("sign_init"), 1);
    h[1].clear();
    h[0].fail("sign", CKR_DEVICE_ERROR, Times::N(1));
    let sig = s.oneshot(b"data").expect("the consumer sees success");
    assert!(sig.starts_with(b"b:"), "{}", String::from_utf8_lossy(&sig));
    // On b: the key found by CKA_CLASS + CKA_ID, the *Init with b's id, the call.
    let calls = h[1].calls();
    let find = calls
        .iter()
        .position(|c| {
            c.starts_with("find_objects(") && c.contains("class=3") && c.contains("id=k1")
        })
        .unwrap_or_else(|| panic!("the key looked up by class + id on b: {calls:?}"));
    let init = calls
        .iter()
        .position(|c| c == &format!("sign_init(session={SESSION},key=201,mech={CKM_ECDSA:#x})"))
        .unwrap_or_else(|| panic!("sign_init replayed on b with b's id: {calls:?}"));
    let call = calls.iter().position(|c| c == "sign(key=201)").unwrap();
    assert!(find < init && init < call, "{calls:?}");
}

#[test]
fn a_replica_reached_later_is_logged_in_with_its_own_pin() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[None, Some("b-pin")]);
    g.open_session(SESSION, false).unwrap();
    // b unreachable at C_Login: logged in when first used.
    h[1].fail("login", CKR_DEVICE_ERROR, Times::N(1));
    g.login(Login::User, b"1234").unwrap();
    assert_eq!(state(&g, 1), State::Down);
    let key = the_key(&g);
    assert!(h[0].calls().contains(&"login(User,1234)".to_string()));
    // a fails; b is probed (probe-before-reuse), logged in with its own PIN, serves.
    h[0].fail("sign", CKR_DEVICE_ERROR, Times::Always);
    h[0].fail("probe", CKR_DEVICE_ERROR, Times::Always);
    h[1].clear();
    assert_eq!(sign(&g, key), Ok("b".into()));
    let calls = h[1].calls();
    assert!(
        calls.contains(&"login(User,b-pin)".to_string()),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.contains("1234")),
        "the consumer's PIN not sent to b"
    );
}

#[test]
fn login_uses_each_replicas_pin_or_the_consumers() {
    let (g, h) = group(
        Policy::Failover,
        &["a", "b", "c"],
        &[Some("pa"), None, Some("pc")],
    );
    start(&g);
    assert!(h[0].calls().contains(&"login(User,pa)".to_string()));
    assert!(h[1].calls().contains(&"login(User,1234)".to_string()));
    assert!(h[2].calls().contains(&"login(User,pc)".to_string()));
    g.logout();
    for x in &h {
        assert_eq!(x.count("logout"), 1);
    }
}

#[test]
fn the_consumers_wrong_pin_is_the_consumers_answer() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    g.open_session(SESSION, false).unwrap();
    for x in &h {
        x.fail("login", CKR_PIN_INCORRECT, Times::Always);
    }
    assert_eq!(
        g.login(Login::User, b"bad").map_err(|e| e.rv()),
        Err(CKR_PIN_INCORRECT)
    );
    assert_eq!(state(&g, 0), State::Healthy);
    assert_eq!(state(&g, 1), State::Healthy);
}

#[test]
fn a_refused_configured_pin_takes_the_replica_down_and_is_not_tried_again() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[Some("stale"), None]);
    g.open_session(SESSION, false).unwrap();
    h[0].fail("login", CKR_PIN_INCORRECT, Times::Always);
    g.login(Login::User, b"1234").expect("b logs in");
    assert_eq!(state(&g, 0), State::Down);
    assert!(g.replicas()[0].health.lock().bad_pin.is_some());
    let key = the_key(&g);
    // b fails too: a answers its probe but its PIN is never sent again.
    h[1].fail("sign", CKR_DEVICE_ERROR, Times::Always);
    h[1].fail("probe", CKR_DEVICE_ERROR, Times::Always);
    assert_eq!(sign(&g, key), Err(CKR_DEVICE_ERROR));
    std::thread::sleep(FIRST_BACKOFF + Duration::from_millis(400));
    assert_eq!(sign(&g, key), Err(CKR_DEVICE_ERROR));
    assert_eq!(h[0].count("login"), 1, "{:?}", h[0].calls());
    assert_eq!(state(&g, 0), State::Down);
}

#[test]
fn a_key_without_cka_id_is_found_again_by_label_and_never_matches_one_with_an_id() {
    let (g, a, b) = a_and_b(|a, _| {
        a.key(CKO_SECRET_KEY, b"", b"mac");
    });
    let t = [
        Attr::ulong(CKA_CLASS, CKO_SECRET_KEY),
        Attr::new(CKA_LABEL, b"mac".to_vec()),
    ];
    let found = g.find_objects(&CTX, &t).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let key = found[0];
    // Provisioned on b afterwards: first an object with the same label but an id (not the
    // same key), then the key itself; b has not been asked for it yet.
    b.key(CKO_SECRET_KEY, b"other", b"mac");
    let right = b.key(CKO_SECRET_KEY, b"", b"mac");
    a.fail("sign", CKR_DEVICE_ERROR, Times::Always);
    let mut s = g.sign_init(&CTX, &ecdsa(), key).unwrap();
    let sig = String::from_utf8(s.oneshot(b"data").unwrap()).unwrap();
    assert_eq!(sig, format!("b:{right}:data"));
    assert!(
        b.calls()
            .iter()
            .any(|c| c.starts_with("find_objects(") && c.contains("label=mac")),
        "{:?}",
        b.calls()
    );
}

#[test]
fn a_key_on_one_replica_only_is_found_and_served_there() {
    let (g, _, _) = a_and_b(|_, b| {
        b.key(CKO_PRIVATE_KEY, b"new", b"rotated");
    });
    let t = [Attr::ulong(CKA_CLASS, CKO_PRIVATE_KEY)];
    let found = g.find_objects(&CTX, &t).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(sign(&g, found[0]), Ok("b".into()));
    // a lacks it: not a fault of a.
    assert_eq!(state(&g, 0), State::Healthy);
}

#[test]
fn a_single_part_encryption_is_replayed_too() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    let key = start(&g);
    let mut c = g
        .encrypt_init(&CTX, &Mechanism::new(CKM_AES_GCM), key)
        .unwrap();
    h[0].fail("encrypt", CKR_DEVICE_REMOVED, Times::Always);
    assert_eq!(c.oneshot(b"pt").unwrap(), vec![b'p' ^ 0x5a, b't' ^ 0x5a]);
    assert_eq!(h[1].count("encrypt_init"), 1);
    assert_eq!(h[1].count("encrypt"), 1);
}

#[test]
fn when_every_replica_fails_the_call_is_a_device_error() {
    let (g, h) = group(Policy::Failover, &["a", "b", "c"], &[]);
    let key = start(&g);
    for x in &h {
        x.fail("sign", CKR_DEVICE_ERROR, Times::Always);
        x.fail("probe", CKR_DEVICE_ERROR, Times::Always);
    }
    assert_eq!(sign(&g, key), Err(CKR_DEVICE_ERROR));
    // Each replica tried once for the call (no endless loop).
    for x in &h {
        assert_eq!(x.count("sign"), 1, "{:?}", x.calls());
    }
}

// ---------------------------------------------------------------- order and policies

#[test]
fn failover_tries_replicas_in_file_order() {
    let (g, h) = group(Policy::Failover, &["a", "b", "c"], &[]);
    let key = start(&g);
    for _ in 0..4 {
        assert_eq!(sign(&g, key), Ok("a".into()), "failover stays on the first");
    }
    h[0].fail("sign", CKR_DEVICE_ERROR, Times::Always);
    assert_eq!(sign(&g, key), Ok("b".into()), "b before c");
    assert_eq!(h[2].count("sign"), 0);
    h[1].fail("sign", CKR_DEVICE_ERROR, Times::Always);
    assert_eq!(sign(&g, key), Ok("c".into()));
}

#[test]
fn balance_spreads_sessions_and_single_part_work_over_the_replicas() {
    let (g, h) = group(Policy::Balance, &["a", "b", "c"], &[]);
    let key = start(&g);
    let mut who = HashMap::new();
    for _ in 0..9 {
        *who.entry(sign(&g, key).unwrap()).or_insert(0) += 1;
    }
    assert_eq!(who.len(), 3, "{who:?}");
    assert!(who.values().all(|n| *n == 3), "{who:?}");
    // New sessions rotate too (counted from here: the signing opened the first one on
    // every replica it reached).
    let before: Vec<usize> = h.iter().map(|x| x.count("open_session")).collect();
    for s in 20..26 {
        g.open_session(s, false).unwrap();
    }
    let opened: Vec<usize> = h
        .iter()
        .zip(&before)
        .map(|(x, b)| x.count("open_session") - b)
        .collect();
    assert_eq!(opened.iter().sum::<usize>(), 6, "{opened:?}");
    assert!(opened.iter().all(|n| *n >= 2), "{opened:?}");
    // A down replica drops out of the rotation.
    h[1].fail("sign", CKR_DEVICE_ERROR, Times::Always);
    h[1].fail("probe", CKR_DEVICE_ERROR, Times::Always);
    let mut who = HashMap::new();
    for _ in 0..6 {
        *who.entry(sign(&g, key).unwrap()).or_insert(0) += 1;
    }
    assert_eq!(who.get("b"), None, "{who:?}");
}

// ---------------------------------------------------------------- health and return

#[test]
fn health_moves_down_degraded_healthy_and_backs_off() {
    let mut h = Health::new();
    assert_eq!(h.state, State::Healthy);
    let t = Instant::now();
    assert!(h.next_probe >= t + HEALTHY_PROBE_EVERY - Duration::from_millis(100));
    assert_eq!(
        h.probe_ok(),
        Change::None,
        "a healthy probe changes nothing"
    );
    assert_eq!(h.call_ok(), Change::None);
    assert_eq!(h.failed("x"), Change::WentDown);
    assert!(!h.usable());
    assert_eq!(h.failed("y"), Change::None, "already down");
    assert_eq!(h.cause, "y");
    let second = h.next_probe - Instant::now();
    assert!(
        second > FIRST_BACKOFF && second <= FIRST_BACKOFF * 2,
        "{second:?}"
    );
    assert_eq!(h.probe_ok(), Change::Degraded);
    assert!(h.usable());
    assert!(h.next_probe - Instant::now() <= Duration::from_millis(200));
    // A failure while degraded is down again with the first back-off.
    assert_eq!(h.failed("z"), Change::WentDown);
    assert!(h.next_probe - Instant::now() <= FIRST_BACKOFF);
    // A call that succeeds on a degraded replica counts like a probe.
    assert_eq!(h.probe_ok(), Change::Degraded);
    assert_eq!(h.call_ok(), Change::Readmitted);
    assert_eq!(h.state, State::Healthy);
    // The back-off starts again from 1 s after a re-admission.
    h.failed("again");
    h.failed("again");
    assert!(h.next_probe - Instant::now() <= FIRST_BACKOFF * 2);
    for _ in 0..20 {
        h.failed("again");
    }
    assert!(h.next_probe - Instant::now() <= MAX_BACKOFF);
    assert!(!h.probe_due(Instant::now()));
    assert!(h.probe_due(h.next_probe));
}

#[test]
fn the_prober_readmits_a_replica_after_two_probes_and_failover_fails_back() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    let key = start(&g);
    h[0].fail("sign", CKR_DEVICE_ERROR, Times::N(1));
    h[0].fail("probe", CKR_DEVICE_ERROR, Times::N(1));
    assert_eq!(sign(&g, key), Ok("b".into()));
    assert_eq!(state(&g, 0), State::Down);
    // First probe (1 s) fails, the next (2 s later) passes: degraded; 200 ms later healthy.
    assert!(wait_state(&g, 0, State::Degraded, Duration::from_secs(5)));
    assert!(wait_state(&g, 0, State::Healthy, Duration::from_secs(2)));
    assert!(h[0].count("probe") >= 3, "{:?}", h[0].calls());
    // Fail-back: a, first in file order, serves again (logged in again first).
    h[0].clear();
    assert_eq!(sign(&g, key), Ok("a".into()));
    assert!(
        h[0].calls().contains(&"login(User,1234)".to_string()),
        "{:?}",
        h[0].calls()
    );
}

#[test]
fn when_no_replica_is_usable_the_down_ones_are_probed_before_giving_up() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    let key = start(&g);
    for x in &h {
        x.fail("sign", CKR_DEVICE_ERROR, Times::N(1));
    }
    assert_eq!(sign(&g, key), Err(CKR_DEVICE_ERROR));
    assert_eq!(state(&g, 0), State::Down);
    assert_eq!(state(&g, 1), State::Down);
    // Both now answer: the next call probes a at once (no waiting for the prober).
    assert_eq!(sign(&g, key), Ok("a".into()));
    assert_ne!(state(&g, 0), State::Down);
}

#[test]
fn a_replica_that_starts_unavailable_starts_down_and_is_not_called() {
    let a = Handle::new("a", 100);
    let b = Handle::new("b", 200);
    for x in [&a, &b] {
        x.key(CKO_PRIVATE_KEY, KEY_ID, b"sig");
    }
    a.0.lock().unavailable = Some("libvendor.so: cannot open".into());
    a.fail("probe", CKR_DEVICE_ERROR, Times::Always);
    let g = group_of(Policy::Failover, &[a.clone(), b.clone()], &[]);
    let (st, cause, _) = g.replicas()[0].state();
    assert_eq!(st, State::Down);
    assert!(cause.contains("cannot open"), "{cause}");
    let key = start(&g);
    assert_eq!(sign(&g, key), Ok("b".into()));
    for c in a.calls() {
        assert!(c.starts_with("probe("), "only probed: {c}");
    }
    // When b fails too, a is probed and the call is a device error.
    b.fail("sign", CKR_DEVICE_ERROR, Times::Always);
    b.fail("probe", CKR_DEVICE_ERROR, Times::Always);
    assert_eq!(sign(&g, key), Err(CKR_DEVICE_ERROR));
}

#[test]
fn the_prober_notices_a_healthy_replica_that_died_while_idle() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    start(&g);
    h[0].fail("probe", CKR_DEVICE_REMOVED, Times::Always);
    // A non-device answer to a probe is no death.
    h[1].fail("probe", CKR_FUNCTION_FAILED, Times::Always);
    let limit = HEALTHY_PROBE_EVERY + Duration::from_secs(2);
    assert!(wait_state(&g, 0, State::Down, limit), "a down by its probe");
    assert_eq!(state(&g, 1), State::Healthy);
}

/// The prober re-probes a healthy replica every `HEALTHY_PROBE_EVERY`; a probe that fails
/// with a non-device answer leaves `next_probe` where it was, so the replica is probed at
/// every tick (10 a second) from then on.
#[test]
fn a_failed_non_device_probe_keeps_the_healthy_pace() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    start(&g);
    h[1].fail("probe", CKR_FUNCTION_FAILED, Times::Always);
    std::thread::sleep(HEALTHY_PROBE_EVERY + Duration::from_millis(1500));
    assert_eq!(state(&g, 1), State::Healthy);
    assert!(h[1].count("probe") <= 2, "{} probes", h[1].count("probe"));
}

#[test]
fn a_refused_configured_pin_is_tried_again_once_it_changes() {
    let dir = std::env::temp_dir().join(format!("hsmux-replica-pin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a.pin");
    std::fs::write(&file, "stale").unwrap();
    let h = [Handle::new("a", 100), Handle::new("b", 200)];
    for x in &h {
        x.key(CKO_PRIVATE_KEY, KEY_ID, b"sig");
    }
    let members = h
        .iter()
        .enumerate()
        .map(|(i, x)| Member {
            name: x.0.lock().name.clone(),
            pin: (i == 0).then(|| Secret::File { file: file.clone() }),
            token: x.token(),
        })
        .collect();
    let g = ReplicaGroup::new("scripted", Policy::Failover, members);
    g.open_session(SESSION, false).unwrap();
    h[0].fail("login", CKR_PIN_INCORRECT, Times::N(1));
    g.login(Login::User, b"1234").unwrap();
    assert_eq!(state(&g, 0), State::Down);
    let key = the_key(&g);
    // The operator fixes the PIN file; b dies: a is probed, logged in with the new PIN.
    std::fs::write(&file, "fixed").unwrap();
    h[1].fail("sign", CKR_DEVICE_ERROR, Times::Always);
    h[1].fail("probe", CKR_DEVICE_ERROR, Times::Always);
    assert_eq!(sign(&g, key), Ok("a".into()));
    let logins: Vec<String> = h[0]
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("login("))
        .collect();
    assert_eq!(logins, ["login(User,stale)", "login(User,fixed)"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_so_logs_in_on_the_first_replica_that_answers_only() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    g.open_session(SESSION, true).unwrap();
    g.login(Login::So, b"so-pin").unwrap();
    assert_eq!(
        h[0].calls()
            .iter()
            .filter(|c| *c == "login(So,so-pin)")
            .count(),
        1
    );
    assert_eq!(h[1].count("login"), 0);
    // a refuses as a device: the SO moves to b.
    h[0].fail("login", CKR_DEVICE_ERROR, Times::Always);
    g.login(Login::So, b"so-pin").unwrap();
    assert_eq!(h[1].count("login"), 1);
    assert_eq!(state(&g, 0), State::Down);
}

#[test]
fn logout_forgets_the_consumers_pin() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    let key = start(&g);
    g.logout();
    assert!(g.g.login.lock().is_none(), "no PIN kept after C_Logout");
    // A replica reached after the logout is not logged in with the old PIN.
    h[0].fail("sign", CKR_DEVICE_ERROR, Times::Always);
    h[1].clear();
    assert_eq!(sign(&g, key), Ok("b".into()));
    assert_eq!(h[1].count("login"), 0, "{:?}", h[1].calls());
}

#[test]
fn token_info_is_the_last_seen_when_no_replica_answers() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    let first = g.token_info().unwrap();
    assert_eq!(first.label, "scripted", "the slot's label, not a replica's");
    assert_eq!(g.mechanisms(), vec![CKM_ECDSA, CKM_AES_GCM]);
    for x in &h {
        x.fail("token_info", CKR_DEVICE_ERROR, Times::Always);
        x.fail("probe", CKR_DEVICE_ERROR, Times::Always);
    }
    let info = g.token_info().expect("the slot stays listed");
    assert_eq!(info.label, "scripted");
    assert_eq!(state(&g, 0), State::Down);
    assert_eq!(state(&g, 1), State::Down);
    // The mechanism list is the one seen before.
    assert_eq!(g.mechanisms(), vec![CKM_ECDSA, CKM_AES_GCM]);
}

/// `Group::probe` records a failed probe in the health state (down) but leaves the fast
/// `up` flag of a degraded replica set, logs nothing and leaves `hsmux_replica_up` at 1:
/// calls keep going to a replica whose state says down.
#[test]
fn a_degraded_replica_that_fails_a_probe_is_not_used() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    let key = start(&g);
    h[0].fail("sign", CKR_DEVICE_ERROR, Times::N(1));
    assert_eq!(sign(&g, key), Ok("b".into()));
    assert!(wait_state(&g, 0, State::Degraded, Duration::from_secs(3)));
    h[0].fail("probe", CKR_DEVICE_ERROR, Times::Always);
    assert!(wait_state(&g, 0, State::Down, Duration::from_secs(2)));
    h[0].clear();
    assert_eq!(sign(&g, key), Ok("b".into()), "{:?}", h[0].calls());
}
