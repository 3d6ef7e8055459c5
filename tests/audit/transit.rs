//! The audit trail on an OpenBao transit slot (`bao server -dev`): the same hook as the
//! soft and module slots, so the same fields, with the key's identity read from the
//! remote token (transit key `audit-ec` and `audit-aes`).

use super::*;

/// The child's calls: a login, an ECDSA signature and its verification, an AES-GCM
/// encryption and decryption (the service picks the IV), a logout.
fn json(s: &str) -> Value {
    Value::String(s.to_string())
}

pub(crate) fn calls(m: &Module) {
    let slot = slot_labelled(m, "transit", true);
    let h = open(m, slot, false);
    assert_rv!(login_as(m, h, CKU_USER, USER), CKR_OK);
    let (h, private, public) = ready_in(m, h);
    let sig = sign(m, h, mech(CKM_ECDSA), private, DATA).unwrap();
    assert_rv!(verify_sig(m, h, public, &sig), CKR_OK);
    let mut t = Template::new()
        .bytes(CKA_LABEL, b"audit-aes")
        .ulong(CKA_CLASS, CKO_SECRET_KEY);
    let aes = find(m, h, &mut t)[0];
    let (mut iv, mut aad) = ([0u8; 12], [0u8; 0]);
    let mut p = gcm_params(&mut iv, &mut aad, 128);
    let ct = encrypt(m, h, mech_with(CKM_AES_GCM, &mut p), aes, DATA).unwrap();
    let mut p = gcm_params(&mut iv, &mut aad, 128);
    let pt = decrypt(m, h, mech_with(CKM_AES_GCM, &mut p), aes, &ct).unwrap();
    assert_eq!(pt, DATA);
    println!("SLOT={slot}");
    println!("PRIVATE={private}");
    println!("AES={aes}");
    println!("EC_ID={}", hex::encode(bytes_attr(m, h, public, CKA_ID)));
    println!("AES_ID={}", hex::encode(bytes_attr(m, h, aes, CKA_ID)));
    // No key material leaves transit: the public point stands for the key bytes.
    println!(
        "KEY={}",
        hex::encode(bytes_attr(m, h, public, CKA_EC_POINT))
    );
    assert_rv!(ck!(m, C_Logout(h)), CKR_OK);
    println!("SIG={}", hex::encode(&sig));
    println!("CT={}", hex::encode(&ct));
}

#[test]
fn a_transit_slot_is_audited_like_the_others() {
    let Some(dir) = parent_dir() else {
        return;
    };
    let port = bao::start(
        &dir,
        &[("audit-ec", "ecdsa-p256"), ("audit-aes", "aes256-gcm96")],
    );
    let slot = format!(
        "\n[[slot]]\nlabel = \"transit\"\nbackend = \"vault\"\naddress = \"http://127.0.0.1:{port}\"\nauth = {{ method = \"token\", token = \"{}\" }}\n",
        bao::ROOT
    );
    config(&dir, "", &slot);
    let out = run_child(&dir, "transit");
    let file = dir.join("audit.jsonl");
    let rs = records(&file);
    let slot_id: u64 = said(&out, "SLOT").parse().unwrap();
    let lines: Vec<_> = rs.iter().filter(|r| r["slot"] == "transit").collect();
    let events: Vec<_> = lines
        .iter()
        .map(|r| r["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "C_Login",
            "C_Sign",
            "C_Verify",
            "C_Encrypt",
            "C_Decrypt",
            "C_Logout"
        ],
        "level keys: one line per listed call"
    );
    for r in &lines {
        assert_eq!(r["slotId"].as_u64(), Some(slot_id));
        assert_eq!(r["result"], "CKR_OK");
        assert!(r["durationUs"].is_u64());
        assert!(r.get("replica").is_none());
    }
    assert_eq!(lines[0]["userType"], "CKU_USER");
    let ec_id = said(&out, "EC_ID");
    let aes_id = said(&out, "AES_ID");
    let private: u64 = said(&out, "PRIVATE").parse().unwrap();
    let aes: u64 = said(&out, "AES").parse().unwrap();
    // Each key use: mechanism, key label, CKA_ID, class, data length, handle.
    let n = DATA.len() as u64;
    let uses = [
        (
            1,
            "CKM_ECDSA",
            "audit-ec",
            &ec_id,
            "privateKey",
            n,
            Some(private),
        ),
        (2, "CKM_ECDSA", "audit-ec", &ec_id, "publicKey", n, None),
        (
            3,
            "CKM_AES_GCM",
            "audit-aes",
            &aes_id,
            "secretKey",
            n,
            Some(aes),
        ),
        (
            4,
            "CKM_AES_GCM",
            "audit-aes",
            &aes_id,
            "secretKey",
            n + 16,
            Some(aes),
        ),
    ];
    for (i, mech, label, id, class, len, handle) in uses {
        let r = lines[i];
        assert_eq!(
            (&r["mechanism"], &r["keyLabel"], &r["keyId"], &r["keyClass"]),
            (&json(mech), &json(label), &json(id), &json(class)),
            "{}",
            r["eventName"]
        );
        assert_eq!(r["dataLength"].as_u64(), Some(len), "{}", r["eventName"]);
        if let Some(k) = handle {
            assert_eq!(r["keyHandle"].as_u64(), Some(k), "{}", r["eventName"]);
        }
    }
    check_trail(&[&file]).unwrap();
    no_secrets(&file, &out);
    let _ = std::fs::remove_dir_all(&dir);
}
