//! Multi-part operations replayed on the next replica (`replay.rs`) and session objects
//! made again there (`objects.rs`), against the scripted tokens.

use super::*;
use crate::replica::objects::Made;

#[test]
fn a_multi_part_operation_cut_in_the_middle_is_replayed_unless_replay_is_off() {
    let (g, h) = group(Policy::Failover, &["a", "b", "c"], &[]);
    let key = start(&g);
    let mut s = g.sign_init(&CTX, &ecdsa(), key).unwrap();
    s.update(b"da").unwrap();
    h[0].fail("sign_update", CKR_DEVICE_ERROR, Times::Always);
    s.update(b"ta").unwrap();
    assert_eq!(h[1].count("sign_update"), 2, "the kept part, then the call");
    assert_eq!(state(&g, 0), State::Down);
    let sig = String::from_utf8(s.finish().unwrap()).unwrap();
    assert!(sig.starts_with("b:") && sig.ends_with(":data"), "{sig}");
    // replay_limit = 0: answered CKR_DEVICE_ERROR once, and the next operation works.
    g.set_replay_limit(0);
    let mut s = g.sign_init(&CTX, &ecdsa(), key).unwrap();
    s.update(b"da").unwrap();
    h[1].fail("sign_update", CKR_DEVICE_ERROR, Times::Always);
    assert_eq!(s.update(b"ta").map_err(|e| e.rv()), Err(CKR_DEVICE_ERROR));
    assert_eq!(h[2].count("sign_update"), 0, "no replay");
    let mut s = g.sign_init(&CTX, &ecdsa(), key).unwrap();
    s.update(b"data").unwrap();
    assert!(s.finish().unwrap().starts_with(b"c:"));
}

#[test]
fn a_multi_part_encryption_hands_out_each_byte_once_across_a_failover() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    let key = start(&g);
    let mut c = g
        .encrypt_init(&CTX, &Mechanism::new(CKM_AES_CTR), key)
        .unwrap();
    let mut out = c.update(b"abc").unwrap();
    h[0].fail("encrypt_update", CKR_DEVICE_REMOVED, Times::Always);
    out.extend(c.update(b"def").unwrap());
    out.extend(c.finish().unwrap());
    let want: Vec<u8> = b"abcdef".iter().map(|b| b ^ 0x5a).collect();
    assert_eq!(out, want);
    assert_eq!(h[1].count("encrypt_update"), 2);
    // A mechanism whose output does not replay keeps the single error.
    let mut c = g
        .encrypt_init(&CTX, &Mechanism::new(CKM_RSA_PKCS_OAEP), key)
        .unwrap();
    c.update(b"abc").unwrap();
    h[1].fail("encrypt_update", CKR_DEVICE_ERROR, Times::Always);
    assert_eq!(c.update(b"d").map_err(|e| e.rv()), Err(CKR_DEVICE_ERROR));
}

// ---------------------------------------------------------------- session objects

/// A data object made through the group: a token object or a session object.
fn data_object(g: &ReplicaGroup, label: &[u8], token: bool) -> ObjectId {
    let template = [
        Attr::ulong(CKA_CLASS, CKO_DATA),
        Attr::new(CKA_LABEL, label.to_vec()),
        Attr::new(CKA_TOKEN, vec![token as u8]),
    ];
    g.create_object(&CTX, &template).unwrap()
}

#[test]
fn created_session_objects_move_and_generated_ones_are_lost_with_their_replica() {
    let (g, h) = group(Policy::Failover, &["a", "b"], &[]);
    start(&g);
    let session_obj = data_object(&g, b"scratch", false);
    let token_obj = data_object(&g, b"kept", true);
    assert_eq!(h[1].count("create_object"), 0, "created on a only");
    assert!(g.g.session_objects.contains_key(&session_obj));
    assert!(!g.g.session_objects.contains_key(&token_obj));
    // A session key a generated (made here on a alone, noted as the group does).
    h[0].key(CKO_SECRET_KEY, b"gen", b"gen");
    let t = [Attr::new(CKA_ID, b"gen".to_vec())];
    let generated = g.find_objects(&CTX, &t).unwrap()[0];
    g.g.note_new(0, &CTX, generated, &[], Made::Generated("C_GenerateKey"));
    // a dies: the created object is made again on b, same handle; the generated one is gone.
    h[0].fail("sign", CKR_DEVICE_ERROR, Times::Always);
    h[0].fail("probe", CKR_DEVICE_ERROR, Times::Always);
    let key = the_key(&g);
    assert_eq!(sign(&g, key), Ok("b".into()));
    let got = g.get_attributes(&CTX, session_obj, &[CKA_LABEL]).unwrap();
    assert_eq!(got, vec![AttrValue::Value(b"scratch".to_vec())]);
    assert_eq!(h[1].count("create_object"), 1);
    assert_eq!(g.g.session_objects.get(&session_obj).unwrap().at, 1);
    let got = g.get_attributes(&CTX, generated, &[CKA_LABEL]);
    assert_eq!(got.err().map(|e| e.rv()), Some(CKR_OBJECT_HANDLE_INVALID));
    // Closing the session forgets its session objects.
    g.close_session(SESSION);
    assert!(!g.g.session_objects.contains_key(&session_obj));
}
