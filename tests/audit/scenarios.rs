//! The child processes' side of `tests/audit.rs`: the PKCS#11 call sequences each scenario
//! runs (token set-up, the listed calls, signing loops).

use super::*;

pub(crate) fn bytes_attr(
    m: &Module,
    h: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    ty: CK_ATTRIBUTE_TYPE,
) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let mut a = [CK_ATTRIBUTE {
        type_: ty,
        pValue: buf.as_mut_ptr() as *mut _,
        ulValueLen: buf.len() as CK_ULONG,
    }];
    assert_rv!(ck!(m, C_GetAttributeValue(h, o, a.as_mut_ptr(), 1)), CKR_OK);
    buf.truncate(a[0].ulValueLen as usize);
    buf
}

pub(crate) fn login_as(m: &Module, h: CK_SESSION_HANDLE, who: CK_USER_TYPE, pin: &[u8]) -> CK_RV {
    login(m, h, who, pin)
}

/// C_InitToken, C_InitPIN and an EC key pair `audit-ec` (CKA_ID 01 02) on `slot`.
pub(crate) fn init(m: &Module, slot: CK_SLOT_ID) {
    init_slot_with(m, slot, SO, USER);
    let h = open(m, slot, true);
    assert_rv!(login_as(m, h, CKU_USER, USER), CKR_OK);
    ec_pair(m, h);
    assert_rv!(ck!(m, C_CloseSession(h)), CKR_OK);
}

pub(crate) fn ec_pair(m: &Module, h: CK_SESSION_HANDLE) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    keypair(
        m,
        h,
        CKM_EC_KEY_PAIR_GEN,
        Template::new()
            .bytes(CKA_EC_PARAMS, P256_PARAMS)
            .bytes(CKA_LABEL, b"audit-ec")
            .bool(CKA_VERIFY, true),
        Template::new()
            .bytes(CKA_LABEL, b"audit-ec")
            .bool(CKA_SIGN, true)
            .bool(CKA_PRIVATE, true),
        &[1, 2],
    )
}

/// A user session on `slot` and its `audit-ec` private and public keys.
pub(crate) fn ready(
    m: &Module,
    slot: CK_SLOT_ID,
    pin: &[u8],
) -> (CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let h = open(m, slot, true);
    assert_rv!(login_as(m, h, CKU_USER, pin), CKR_OK);
    ready_in(m, h)
}

/// One C_SignInit + C_Sign (with a length query first); the C_Sign return value.
pub(crate) fn sign_once(m: &Module, h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> CK_RV {
    let mut mc = mech(CKM_ECDSA);
    let rv = ck!(m, C_SignInit(h, &mut mc, key));
    if rv != CKR_OK {
        return rv;
    }
    let mut sig = [0u8; 64];
    let mut n = sig.len() as CK_ULONG;
    ck!(
        m,
        C_Sign(
            h,
            DATA.as_ptr() as *mut _,
            DATA.len() as CK_ULONG,
            sig.as_mut_ptr(),
            &mut n
        )
    )
}

pub(crate) fn metrics_counter(port: &str, name: &str) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
        .parse()
        .unwrap()
}

/// The soft-token scenario: every listed kind of call once.
pub(crate) fn soft_calls(m: &Module) {
    init(m, 0);
    let h = open(m, 0, true);
    assert_rv!(
        login_as(m, h, CKU_USER, b"wrong-PIN-grue"),
        CKR_PIN_INCORRECT
    );
    assert_rv!(login_as(m, h, CKU_USER, USER), CKR_OK);
    let mut count = 0;
    assert_rv!(
        ck!(
            m,
            C_GetSlotList(CK_TRUE as CK_BBOOL, std::ptr::null_mut(), &mut count)
        ),
        CKR_OK
    );
    let (_, private, public) = ready_in(m, h);
    let sig = sign(m, h, mech(CKM_ECDSA), private, DATA).unwrap();
    assert_rv!(verify_sig(m, h, public, &sig), CKR_OK);
    let aes = secret(
        m,
        h,
        CKM_AES_KEY_GEN,
        Template::new()
            .ulong(CKA_VALUE_LEN, 32)
            .bytes(CKA_LABEL, b"audit-aes")
            .bytes(CKA_ID, &[3])
            .bool(CKA_TOKEN, true)
            .bool(CKA_SENSITIVE, false)
            .bool(CKA_EXTRACTABLE, true)
            .bool(CKA_ENCRYPT, true)
            .bool(CKA_DECRYPT, true),
    );
    let value = bytes_attr(m, h, aes, CKA_VALUE);
    let (mut iv, mut aad) = ([7u8; 12], [0u8; 0]);
    let ct = encrypt(
        m,
        h,
        mech_with(CKM_AES_GCM, &mut gcm_params(&mut iv, &mut aad, 128)),
        aes,
        DATA,
    )
    .unwrap();
    let pt = decrypt(
        m,
        h,
        mech_with(CKM_AES_GCM, &mut gcm_params(&mut iv, &mut aad, 128)),
        aes,
        &ct,
    )
    .unwrap();
    assert_eq!(pt, DATA);
    let mut t = Template::new().bytes(CKA_LABEL, b"audit-aes-renamed");
    assert_rv!(
        ck!(m, C_SetAttributeValue(h, aes, t.ptr(), t.len())),
        CKR_OK
    );
    assert_rv!(ck!(m, C_DestroyObject(h, aes)), CKR_OK);
    assert_rv!(
        ck!(
            m,
            C_SetPIN(
                h,
                USER.as_ptr() as *mut _,
                USER.len() as CK_ULONG,
                NEW_USER.as_ptr() as *mut _,
                NEW_USER.len() as CK_ULONG
            )
        ),
        CKR_OK
    );
    assert_rv!(ck!(m, C_Logout(h)), CKR_OK);
    println!("KEY={}", hex::encode(value));
    println!("SIG={}", hex::encode(&sig));
    println!("CT={}", hex::encode(&ct));
    println!("PRIVATE={private}");
}

pub(crate) fn ready_in(
    m: &Module,
    h: CK_SESSION_HANDLE,
) -> (CK_SESSION_HANDLE, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let mut t = Template::new()
        .bytes(CKA_LABEL, b"audit-ec")
        .ulong(CKA_CLASS, CKO_PRIVATE_KEY);
    let private = find(m, h, &mut t)[0];
    let mut t = Template::new()
        .bytes(CKA_LABEL, b"audit-ec")
        .ulong(CKA_CLASS, CKO_PUBLIC_KEY);
    let public = find(m, h, &mut t)[0];
    (h, private, public)
}

pub(crate) fn verify_sig(
    m: &Module,
    h: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    sig: &[u8],
) -> CK_RV {
    verify(m, h, mech(CKM_ECDSA), key, DATA, sig)
}
