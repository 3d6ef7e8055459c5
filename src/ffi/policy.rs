//! The key-use policy at the C boundary (`crate::policy` decides): [`check`] runs before
//! every exported call's body, for core and module slots alike, and refuses what the
//! slot's rules forbid; the mechanism list, the mechanism info and the token info of a
//! restricted slot go through the wrappers here, which take out what the slot does not
//! offer and add `CKF_WRITE_PROTECTED`. Without a restricted slot each costs one load.

#![allow(clippy::unnecessary_cast)] // CK_ULONG is u32 on some targets

use super::audit::Args;
use super::{general, vendor_rv, Subject};
use crate::config::policy::Use;
use crate::core::attr::AttrValue;
use crate::core::error::{err, Result};
use crate::policy::{KeyFacts, Rules};
use crate::proxy::ModuleSlot;
use cryptoki_sys::*;
use std::sync::Arc;

/// The key use a call makes, by its name.
fn use_of(name: &str) -> Option<Use> {
    Some(match name {
        "C_EncryptInit" | "C_MessageEncryptInit" => Use::Encrypt,
        "C_DecryptInit" | "C_MessageDecryptInit" => Use::Decrypt,
        "C_SignInit" | "C_SignRecoverInit" | "C_MessageSignInit" => Use::Sign,
        "C_VerifyInit"
        | "C_VerifyRecoverInit"
        | "C_MessageVerifyInit"
        | "C_VerifySignatureInit" => Use::Verify,
        "C_WrapKey" => Use::Wrap,
        "C_UnwrapKey" => Use::Unwrap,
        "C_DeriveKey" => Use::Derive,
        _ => return None,
    })
}

/// Calls that change the token: refused on a `read_only` slot.
const WRITES: &[&str] = &[
    "C_CreateObject",
    "C_CopyObject",
    "C_DestroyObject",
    "C_SetAttributeValue",
    "C_GenerateKey",
    "C_GenerateKeyPair",
    "C_UnwrapKey",
    "C_DeriveKey",
    "C_EncapsulateKey",
    "C_DecapsulateKey",
    "C_InitToken",
    "C_InitPIN",
    "C_SetPIN",
];

/// Refuses the call `name` when the rules of its slot forbid it.
#[inline]
pub(crate) unsafe fn check(name: &'static str, subject: Subject, args: &Args) -> Result<()> {
    if !crate::policy::active() {
        return Ok(());
    }
    checked(name, subject, args)
}

#[inline(never)]
unsafe fn checked(name: &'static str, subject: Subject, args: &Args) -> Result<()> {
    let opens = name == "C_OpenSession";
    if !(opens || WRITES.contains(&name) || use_of(name).is_some()) {
        return Ok(());
    }
    let Some(r) = subject.slot_index().and_then(crate::policy::of_slot) else {
        return Ok(());
    };
    if (opens && args.flags & CKF_RW_SESSION != 0) || WRITES.contains(&name) {
        r.check_write(name)?;
    }
    let Some(mech) = args.mech.as_ref() else {
        return Ok(());
    };
    if matches!(name, "C_GenerateKey" | "C_GenerateKeyPair") {
        super::bounds::template(args.template, args.template_len)?;
        let t = template_facts(args.template, args.template_len);
        return r.check_generate(name, mech.mechanism, &t);
    }
    let (Some(u), Some(key), Subject::Session(h)) = (use_of(name), args.key, subject) else {
        return Ok(());
    };
    let facts = key_facts(h, key);
    r.check_use(name, u, mech.mechanism, pss_hash(mech), key, &facts)
}

/// The `hashAlg` of a `CK_RSA_PKCS_PSS_PARAMS` parameter.
unsafe fn pss_hash(m: &CK_MECHANISM) -> Option<CK_MECHANISM_TYPE> {
    let size = std::mem::size_of::<CK_RSA_PKCS_PSS_PARAMS>() as CK_ULONG;
    if m.pParameter.is_null() || m.ulParameterLen != size {
        return None;
    }
    let p = std::ptr::read_unaligned(m.pParameter as *const CK_RSA_PKCS_PSS_PARAMS);
    Some(p.hashAlg)
}

fn ulong(v: &[u8]) -> Option<u64> {
    <[u8; std::mem::size_of::<CK_ULONG>()]>::try_from(v)
        .ok()
        .map(|b| CK_ULONG::from_ne_bytes(b) as u64)
}

/// What a key generation's (public) template says of the key's size and curve.
unsafe fn template_facts(p: *const CK_ATTRIBUTE, n: CK_ULONG) -> KeyFacts {
    let mut k = KeyFacts::default();
    if p.is_null() {
        return k;
    }
    for i in 0..n as usize {
        let a = std::ptr::read_unaligned(p.add(i));
        if a.pValue.is_null() {
            continue;
        }
        let v = std::slice::from_raw_parts(a.pValue as *const u8, a.ulValueLen as usize);
        match a.type_ {
            CKA_MODULUS_BITS => k.modulus_bits = ulong(v),
            CKA_VALUE_LEN => k.value_len = ulong(v),
            CKA_EC_PARAMS => k.ec_params = Some(v.to_vec()),
            _ => {}
        }
    }
    k
}

/// The class, type, size and curve of key `obj` as session `h` sees it.
unsafe fn key_facts(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE) -> KeyFacts {
    let types = [
        CKA_CLASS,
        CKA_KEY_TYPE,
        CKA_MODULUS,
        CKA_EC_PARAMS,
        CKA_VALUE_LEN,
    ];
    let mut v = attributes(h, obj, &types).into_iter();
    let mut next = || v.next().flatten();
    KeyFacts {
        class: next()
            .as_deref()
            .and_then(ulong)
            .map(|c| c as CK_OBJECT_CLASS),
        key_type: next().as_deref().and_then(ulong).map(|c| c as CK_KEY_TYPE),
        modulus_bits: next().map(|m| {
            let lead = m.iter().take_while(|b| **b == 0).count();
            ((m.len() - lead) * 8) as u64
        }),
        ec_params: next(),
        value_len: next().as_deref().and_then(ulong),
    }
}

/// The values of `types` of object `obj` as session `h` sees it, from the core or from
/// the module slot's vendor library (`None`: not available).
pub(crate) unsafe fn attributes(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    types: &[CK_ATTRIBUTE_TYPE],
) -> Vec<Option<Vec<u8>>> {
    if let Some(p) = crate::proxy::session(h) {
        return vendor_attributes(&p, obj, types);
    }
    match crate::core::api::object::get_attributes(h, obj, types) {
        Ok(v) => v
            .into_iter()
            .map(|v| match v {
                AttrValue::Value(v) => Some(v),
                _ => None,
            })
            .collect(),
        // The call itself reports a bad handle.
        Err(_) => vec![None; types.len()],
    }
}

/// `types` of a module slot's object, asked of the vendor library the two-call way.
unsafe fn vendor_attributes(
    p: &crate::proxy::PassSession,
    obj: CK_OBJECT_HANDLE,
    types: &[CK_ATTRIBUTE_TYPE],
) -> Vec<Option<Vec<u8>>> {
    let mut t: Vec<CK_ATTRIBUTE> = types
        .iter()
        .map(|ty| CK_ATTRIBUTE {
            type_: *ty,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        })
        .collect();
    let _ = p.get_attribute_value(obj, t.as_mut_ptr(), t.len() as CK_ULONG);
    let mut bufs: Vec<Vec<u8>> = t
        .iter()
        .map(|a| match a.ulValueLen {
            CK_UNAVAILABLE_INFORMATION => Vec::new(),
            n => vec![0; (n as usize).min(crate::core::limits::MAX_DATA_LEN)],
        })
        .collect();
    for (a, b) in t.iter_mut().zip(bufs.iter_mut()) {
        a.pValue = b.as_mut_ptr() as *mut _;
        a.ulValueLen = b.len() as CK_ULONG;
    }
    let _ = p.get_attribute_value(obj, t.as_mut_ptr(), t.len() as CK_ULONG);
    t.iter()
        .zip(bufs)
        .map(|(a, mut b)| match a.ulValueLen {
            CK_UNAVAILABLE_INFORMATION => None,
            n => {
                b.truncate(n as usize);
                Some(b)
            }
        })
        .collect()
}

/// The rules of the slot with id `slot`, when it is restricted.
fn rules(slot: CK_SLOT_ID) -> Option<Arc<Rules>> {
    crate::policy::of_slot(crate::core::api::slot_of_id(slot)?).filter(|r| r.restricts())
}

/// Where a slot's mechanisms come from: the core, or a module slot's vendor library.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    Core(CK_SLOT_ID),
    Module(&'a ModuleSlot),
}

impl Source<'_> {
    /// hsmux's id of the slot.
    fn slot(self) -> CK_SLOT_ID {
        match self {
            Source::Core(slot) => slot,
            Source::Module(m) => m.id,
        }
    }

    unsafe fn list(self, p: *mut CK_MECHANISM_TYPE, n: *mut CK_ULONG) -> Result<()> {
        match self {
            Source::Core(slot) => general::C_GetMechanismList(slot, p, n),
            Source::Module(m) => vendor_rv(m.get_mechanism_list(p, n)),
        }
    }

    unsafe fn info(self, mech: CK_MECHANISM_TYPE, p: *mut CK_MECHANISM_INFO) -> Result<()> {
        match self {
            Source::Core(slot) => general::C_GetMechanismInfo(slot, mech, p),
            Source::Module(m) => vendor_rv(m.get_mechanism_info(mech, p)),
        }
    }
}

/// `C_GetMechanismList` of a core slot, as the policy offers it.
pub(crate) unsafe fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    p_list: *mut CK_MECHANISM_TYPE,
    pul_count: *mut CK_ULONG,
) -> Result<()> {
    mechanism_list(Source::Core(slot), p_list, pul_count)
}

/// `C_GetMechanismList` from `src`, less what the slot's policy does not offer.
pub(crate) unsafe fn mechanism_list(
    src: Source,
    p_list: *mut CK_MECHANISM_TYPE,
    pul_count: *mut CK_ULONG,
) -> Result<()> {
    let Some(r) = rules(src.slot()) else {
        return src.list(p_list, pul_count);
    };
    let all = fetch_list(src)?;
    let offered: Vec<CK_MECHANISM_TYPE> = all
        .into_iter()
        .filter(|m| {
            let mut i: CK_MECHANISM_INFO = std::mem::zeroed();
            let flags = src.info(*m, &mut i).map(|_| i.flags).unwrap_or(0);
            r.mechanism_flags(*m, flags).is_some()
        })
        .collect();
    super::write_list(&offered, p_list, pul_count)
}

/// The whole mechanism list, the two-call way.
unsafe fn fetch_list(src: Source) -> Result<Vec<CK_MECHANISM_TYPE>> {
    loop {
        let mut n: CK_ULONG = 0;
        src.list(std::ptr::null_mut(), &mut n)?;
        let mut v = vec![0 as CK_MECHANISM_TYPE; n as usize];
        match src.list(v.as_mut_ptr(), &mut n) {
            Ok(()) => {
                v.truncate(n as usize);
                return Ok(v);
            }
            // The list grew between the calls: ask again.
            Err(e) if e.rv() == CKR_BUFFER_TOO_SMALL => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `C_GetMechanismInfo` of a core slot.
pub(crate) unsafe fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    mech: CK_MECHANISM_TYPE,
    p_info: *mut CK_MECHANISM_INFO,
) -> Result<()> {
    mechanism_info(Source::Core(slot), mech, p_info)
}

/// `C_GetMechanismInfo` from `src`, as the slot's policy offers it.
pub(crate) unsafe fn mechanism_info(
    src: Source,
    mech: CK_MECHANISM_TYPE,
    p_info: *mut CK_MECHANISM_INFO,
) -> Result<()> {
    src.info(mech, p_info)?;
    let (Some(r), Some(i)) = (rules(src.slot()), p_info.as_mut()) else {
        return Ok(());
    };
    match r.mechanism_flags(mech, i.flags) {
        Some(f) => {
            i.flags = f;
            if r.fips && mech == CKM_RSA_PKCS_KEY_PAIR_GEN {
                let min = crate::policy::fips::RSA_MIN_BITS as CK_ULONG;
                i.ulMinKeySize = i.ulMinKeySize.max(min);
            }
            Ok(())
        }
        None => {
            *i = std::mem::zeroed();
            Err(err(CKR_MECHANISM_INVALID))
        }
    }
}

/// `C_GetTokenInfo` of a core slot: `CKF_WRITE_PROTECTED` on a `read_only` slot.
pub(crate) unsafe fn C_GetTokenInfo(slot: CK_SLOT_ID, p_info: *mut CK_TOKEN_INFO) -> Result<()> {
    general::C_GetTokenInfo(slot, p_info)?;
    write_protect(slot, p_info);
    Ok(())
}

/// `C_GetTokenInfo` of a module slot.
pub(crate) unsafe fn module_token_info(
    m: &Arc<ModuleSlot>,
    slot: CK_SLOT_ID,
    p_info: *mut CK_TOKEN_INFO,
) -> Result<()> {
    vendor_rv(m.get_token_info(p_info))?;
    write_protect(slot, p_info);
    Ok(())
}

unsafe fn write_protect(slot: CK_SLOT_ID, p_info: *mut CK_TOKEN_INFO) {
    if let (Some(r), Some(i)) = (rules(slot), p_info.as_mut()) {
        if r.read_only {
            i.flags |= CKF_WRITE_PROTECTED;
        }
    }
}

/// A wrapper's result as the return value of a forwarded call.
pub(crate) fn rv(r: Result<()>) -> CK_RV {
    r.err().map_or(CKR_OK, |e| e.rv())
}
