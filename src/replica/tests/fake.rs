//! A scripted in-test key store for the replica group's tests: objects with class, CKA_ID
//! and label, each call logged, and any call told to fail with a given return value
//! always or N times. A signature names the replica and key that made it.

use crate::core::attr::{Attr, AttrValue};
use crate::core::error::{err, Result};
use crate::core::mechanism::Mechanism;
use crate::core::op::{Cipher, Signer, Verifier};
use crate::core::token::{Ctx, Login, ObjectId, Token, TokenInfo};
use cryptoki_sys::*;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// How often a scripted failure answers before the call works again.
#[derive(Clone, Copy, Debug)]
pub enum Times {
    Always,
    N(u32),
}

/// A scripted object: (id, class, CKA_ID, CKA_LABEL, CKA_TOKEN).
pub type Object = (ObjectId, CK_OBJECT_CLASS, Vec<u8>, Vec<u8>, bool);

/// One scripted key store's objects, failures and call log; shared between the token the
/// group owns and the test that steers it.
#[derive(Default)]
pub struct Script {
    pub name: String,
    pub objects: Vec<Object>,
    pub next_id: ObjectId,
    pub fail: HashMap<&'static str, (CK_RV, Times)>,
    pub log: Vec<String>,
    pub unavailable: Option<String>,
    /// Calls that take this long before they answer (a slow or hung key store).
    pub stall: HashMap<&'static str, std::time::Duration>,
}

#[derive(Clone)]
pub struct Handle(pub Arc<Mutex<Script>>);

impl Handle {
    pub fn new(name: &str, base: ObjectId) -> Handle {
        Handle(Arc::new(Mutex::new(Script {
            name: name.to_string(),
            next_id: base,
            ..Default::default()
        })))
    }

    /// A key: the same identity on several replicas gets a different id on each.
    pub fn key(&self, class: CK_OBJECT_CLASS, id: &[u8], label: &[u8]) -> ObjectId {
        let mut s = self.0.lock();
        s.next_id += 1;
        let oid = s.next_id;
        s.objects
            .push((oid, class, id.to_vec(), label.to_vec(), true));
        oid
    }

    /// The vendor restarted: every object has a new id.
    pub fn renumber(&self) {
        let mut s = self.0.lock();
        let mut next = s.next_id;
        for o in s.objects.iter_mut() {
            next += 1;
            o.0 = next;
        }
        s.next_id = next;
    }

    pub fn fail(&self, op: &'static str, rv: CK_RV, times: Times) {
        self.0.lock().fail.insert(op, (rv, times));
    }

    /// Makes every `op` call take `d` (until `heal`).
    pub fn stall(&self, op: &'static str, d: std::time::Duration) {
        self.0.lock().stall.insert(op, d);
    }

    pub fn heal(&self, op: &'static str) {
        let mut s = self.0.lock();
        s.fail.remove(op);
        s.stall.remove(op);
    }

    pub fn calls(&self) -> Vec<String> {
        self.0.lock().log.clone()
    }

    /// Calls whose log line starts with `op` followed by `(`.
    pub fn count(&self, op: &str) -> usize {
        let p = format!("{op}(");
        self.0
            .lock()
            .log
            .iter()
            .filter(|l| l.starts_with(&p))
            .count()
    }

    pub fn clear(&self) {
        self.0.lock().log.clear();
    }

    pub fn token(&self) -> Box<dyn Token> {
        Box::new(Fake(self.0.clone()))
    }
}

/// Logs the call, then answers the scripted failure if there is one.
pub fn enter(s: &Arc<Mutex<Script>>, op: &'static str, detail: String) -> Result<()> {
    let stall = {
        let mut s = s.lock();
        s.log.push(format!("{op}({detail})"));
        s.stall.get(op).copied()
    };
    if let Some(d) = stall {
        std::thread::sleep(d);
    }
    let mut s = s.lock();
    let Some((rv, times)) = s.fail.get(op).copied() else {
        return Ok(());
    };
    match times {
        Times::Always => {}
        Times::N(1) => {
            s.fail.remove(op);
        }
        Times::N(n) => {
            s.fail.insert(op, (rv, Times::N(n - 1)));
        }
    }
    Err(err(rv))
}

pub struct Fake(pub Arc<Mutex<Script>>);

/// A signature names the replica and its key id, so that a test sees who signed.
pub fn signature(name: &str, key: ObjectId, data: &[u8]) -> Vec<u8> {
    let mut v = format!("{name}:{key}:").into_bytes();
    v.extend_from_slice(data);
    v
}

pub struct FakeSigner {
    s: Arc<Mutex<Script>>,
    key: ObjectId,
    data: Vec<u8>,
}

impl Signer for FakeSigner {
    fn output_len(&self) -> usize {
        64
    }
    fn update(&mut self, data: &[u8]) -> Result<()> {
        enter(&self.s, "sign_update", format!("key={}", self.key))?;
        self.data.extend_from_slice(data);
        Ok(())
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        enter(&self.s, "sign_final", format!("key={}", self.key))?;
        Ok(signature(&self.s.lock().name.clone(), self.key, &self.data))
    }
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        enter(&self.s, "sign", format!("key={}", self.key))?;
        Ok(signature(&self.s.lock().name.clone(), self.key, data))
    }
}

/// Verifies what any replica signed with the same identity (the name and id are not
/// compared: only the data).
pub struct FakeVerifier {
    s: Arc<Mutex<Script>>,
    key: ObjectId,
}

impl Verifier for FakeVerifier {
    fn update(&mut self, _data: &[u8]) -> Result<()> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    fn finish(&mut self, _signature: &[u8]) -> Result<()> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    fn oneshot(&mut self, data: &[u8], sig: &[u8]) -> Result<()> {
        enter(&self.s, "verify", format!("key={}", self.key))?;
        if sig.ends_with(data) {
            Ok(())
        } else {
            Err(err(CKR_SIGNATURE_INVALID))
        }
    }
}

/// "Encrypts" by xor with the key id's low byte.
pub struct FakeCipher {
    s: Arc<Mutex<Script>>,
    key: ObjectId,
}

impl Cipher for FakeCipher {
    fn output_len(&self, n: usize) -> usize {
        n
    }
    fn oneshot(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        enter(&self.s, "encrypt", format!("key={}", self.key))?;
        Ok(input.iter().map(|b| b ^ 0x5a).collect())
    }
    fn update_len(&self, n: usize) -> usize {
        n
    }
    fn update(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        enter(&self.s, "encrypt_update", format!("key={}", self.key))?;
        Ok(input.iter().map(|b| b ^ 0x5a).collect())
    }
    fn final_len(&self) -> usize {
        0
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        enter(&self.s, "encrypt_final", format!("key={}", self.key))?;
        Ok(Vec::new())
    }
}

impl Fake {
    /// Records the init call `op` on `key` (with `more` detail; the call fails when a
    /// fault is set) and checks the key.
    fn op_init(&self, op: &'static str, ctx: &Ctx, key: ObjectId, more: &str) -> Result<()> {
        enter(
            &self.0,
            op,
            format!("session={},key={key}{more}", ctx.session),
        )?;
        self.check_key(key)
    }
    fn check_key(&self, key: ObjectId) -> Result<()> {
        if self.0.lock().objects.iter().any(|o| o.0 == key) {
            Ok(())
        } else {
            Err(err(CKR_KEY_HANDLE_INVALID))
        }
    }
}

impl Token for Fake {
    fn slot_description(&self) -> String {
        format!("scripted {}", self.0.lock().name)
    }
    fn token_info(&self) -> Result<TokenInfo> {
        enter(&self.0, "token_info", String::new())?;
        Ok(TokenInfo {
            label: self.0.lock().name.clone(),
            ..Default::default()
        })
    }
    fn mechanisms(&self) -> Vec<CK_MECHANISM_TYPE> {
        vec![CKM_ECDSA, CKM_AES_GCM]
    }
    fn mechanism_info(&self, _mech: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO> {
        enter(&self.0, "mechanism_info", String::new())?;
        Ok(CK_MECHANISM_INFO {
            ulMinKeySize: 256,
            ulMaxKeySize: 256,
            flags: CKF_SIGN,
        })
    }
    fn probe(&self) -> Result<()> {
        enter(&self.0, "probe", String::new())
    }
    fn unavailable(&self) -> Option<String> {
        self.0.lock().unavailable.clone()
    }
    fn open_session(&self, session: CK_SESSION_HANDLE, rw: bool) -> Result<()> {
        enter(&self.0, "open_session", format!("{session},rw={rw}"))
    }
    fn close_session(&self, session: CK_SESSION_HANDLE) -> Vec<ObjectId> {
        let _ = enter(&self.0, "close_session", format!("{session}"));
        Vec::new()
    }
    fn login(&self, who: Login, pin: &[u8]) -> Result<()> {
        enter(
            &self.0,
            "login",
            format!("{who:?},{}", String::from_utf8_lossy(pin)),
        )
    }
    fn logout(&self) {
        let _ = enter(&self.0, "logout", String::new());
    }
    fn find_objects(&self, ctx: &Ctx, template: &[Attr]) -> Result<Vec<ObjectId>> {
        let shown: Vec<String> = template
            .iter()
            .map(|a| match a.ty {
                CKA_CLASS => format!(
                    "class={}",
                    crate::core::attr::parse_ulong(&a.value).unwrap_or(99)
                ),
                CKA_ID => format!("id={}", String::from_utf8_lossy(&a.value)),
                CKA_LABEL => format!("label={}", String::from_utf8_lossy(&a.value)),
                t => format!("{t:#x}"),
            })
            .collect();
        enter(
            &self.0,
            "find_objects",
            format!("session={},{}", ctx.session, shown.join(",")),
        )?;
        let s = self.0.lock();
        Ok(s.objects
            .iter()
            .filter(|(_, class, id, label, _)| {
                template.iter().all(|a| match a.ty {
                    CKA_CLASS => a.value == crate::core::attr::ulong_bytes(*class),
                    CKA_ID => a.value == *id,
                    CKA_LABEL => a.value == *label,
                    _ => true,
                })
            })
            .map(|o| o.0)
            .collect())
    }
    fn get_attributes(
        &self,
        _ctx: &Ctx,
        obj: ObjectId,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<AttrValue>> {
        enter(&self.0, "get_attributes", format!("{obj}"))?;
        let s = self.0.lock();
        let Some((_, class, id, label, token)) = s.objects.iter().find(|o| o.0 == obj) else {
            return Err(err(CKR_OBJECT_HANDLE_INVALID));
        };
        Ok(types
            .iter()
            .map(|t| match *t {
                CKA_CLASS => AttrValue::Value(crate::core::attr::ulong_bytes(*class)),
                CKA_ID => AttrValue::Value(id.clone()),
                CKA_LABEL => AttrValue::Value(label.clone()),
                CKA_TOKEN => AttrValue::Value(vec![*token as u8]),
                _ => AttrValue::Invalid,
            })
            .collect())
    }
    fn create_object(&self, ctx: &Ctx, template: &[Attr]) -> Result<ObjectId> {
        enter(&self.0, "create_object", format!("session={}", ctx.session))?;
        let get = |t| crate::core::attr::find(template, t).unwrap_or(&[]).to_vec();
        let class = crate::core::attr::parse_ulong(&get(CKA_CLASS)).unwrap_or(CKO_DATA);
        let mut s = self.0.lock();
        s.next_id += 1;
        let oid = s.next_id;
        let token = get(CKA_TOKEN) == [1u8];
        s.objects
            .push((oid, class, get(CKA_ID), get(CKA_LABEL), token));
        Ok(oid)
    }
    fn destroy_object(&self, _ctx: &Ctx, obj: ObjectId) -> Result<()> {
        enter(&self.0, "destroy_object", format!("{obj}"))?;
        self.0.lock().objects.retain(|o| o.0 != obj);
        Ok(())
    }
    fn encrypt_init(&self, ctx: &Ctx, _mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>> {
        self.op_init("encrypt_init", ctx, key, "")?;
        Ok(Box::new(FakeCipher {
            s: self.0.clone(),
            key,
        }))
    }
    fn decrypt_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>> {
        self.encrypt_init(ctx, mech, key)
    }
    fn sign_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Signer>> {
        let mech = format!(",mech={:#x}", mech.mech);
        self.op_init("sign_init", ctx, key, &mech)?;
        Ok(Box::new(FakeSigner {
            s: self.0.clone(),
            key,
            data: Vec::new(),
        }))
    }
    fn verify_init(
        &self,
        ctx: &Ctx,
        _mech: &Mechanism,
        key: ObjectId,
    ) -> Result<Box<dyn Verifier>> {
        self.op_init("verify_init", ctx, key, "")?;
        Ok(Box::new(FakeVerifier {
            s: self.0.clone(),
            key,
        }))
    }
    fn generate_random(&self, out: &mut [u8]) -> Result<()> {
        enter(&self.0, "generate_random", format!("{}", out.len()))?;
        let b = self.0.lock().name.as_bytes()[0];
        out.fill(b);
        Ok(())
    }
}
