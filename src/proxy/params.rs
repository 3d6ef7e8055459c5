//! Mechanisms for the vendor: the `CK_MECHANISM` and its parameter are staged (copied into
//! memory the call owns, `stage.rs`); the few parameters that name objects get hsmux's
//! handles replaced by the vendor's, and the handles (and IVs) a derivation writes back
//! into the consumer's structures are staged too and copied back, as hsmux's, after the
//! call completed.
//!
//! The structures are the PKCS#11 3.0 header's (`cryptoki-sys`); a parameter whose length
//! is not the structure's goes through untouched, for the vendor to refuse as it would.

use super::slot::ModuleSlot;
use super::stage::Param;
use cryptoki_sys::*;
use std::mem::size_of;

/// The two directions of a slot's handle mapping.
pub trait HandleMap {
    fn to_vendor(&self, h: CK_OBJECT_HANDLE) -> CK_OBJECT_HANDLE;
    fn to_hsmux(&self, vh: CK_OBJECT_HANDLE) -> CK_OBJECT_HANDLE;
}

impl HandleMap for ModuleSlot {
    fn to_vendor(&self, h: CK_OBJECT_HANDLE) -> CK_OBJECT_HANDLE {
        ModuleSlot::to_vendor(self, h)
    }
    fn to_hsmux(&self, vh: CK_OBJECT_HANDLE) -> CK_OBJECT_HANDLE {
        ModuleSlot::to_hsmux(self, vh)
    }
}

/// Calls `f` with the mechanism the vendor must see, then fixes handles it returned (the
/// staging in one step, for the tests of the translations below).
///
/// # Safety
/// `p` is NULL or the consumer's `CK_MECHANISM`, valid for the call.
#[cfg(test)]
pub unsafe fn with_vendor_mechanism(
    slot: &impl HandleMap,
    p: *mut CK_MECHANISM,
    f: impl FnOnce(*mut CK_MECHANISM) -> CK_RV,
) -> CK_RV {
    let mut v = match VendorMech::new(slot, p) {
        Ok(v) => v,
        Err(rv) => return rv,
    };
    let rv = f(v.ptr());
    v.back(slot, p, rv);
    rv
}

/// A mechanism staged for a vendor call: our copy of the `CK_MECHANISM` and its parameter
/// with hsmux's handles replaced by the vendor's, and our copies of the outputs a
/// derivation writes through the parameter (key handles, IVs), copied back by [`Self::back`]
/// once the call completed. A parameter hsmux does not know is copied as a whole (its
/// nested pointers stay the consumer's) and copied back where the vendor changed it.
pub struct VendorMech {
    null: bool,
    mech: CK_MECHANISM,
    param: Option<Param>,
    /// Handles replaced: the consumer's parameter is not written back.
    translated: bool,
    out: Output,
}

enum Output {
    None,
    /// `CK_SSL3_KEY_MAT_OUT` (SSL3, TLS, TLS 1.2) with its two IV buffers, and the
    /// consumer's structure they go back to.
    Ssl3(
        Box<CK_SSL3_KEY_MAT_OUT>,
        Vec<u8>,
        Vec<u8>,
        *mut CK_SSL3_KEY_MAT_OUT,
    ),
    Wtls(Box<CK_WTLS_KEY_MAT_OUT>, Vec<u8>, *mut CK_WTLS_KEY_MAT_OUT),
    /// KBKDF: the data parameters with vendor handles (boxed: their addresses stay put),
    /// and the additional derived keys with our handle words. The first two are only held
    /// for the vendor, which reads them through our copy of the parameter.
    #[allow(dead_code, clippy::vec_box)]
    Kbkdf(
        Vec<CK_PRF_DATA_PARAM>,
        Vec<Box<CK_OBJECT_HANDLE>>,
        Vec<CK_DERIVED_KEY>,
        Vec<CK_OBJECT_HANDLE>,
    ),
}

impl VendorMech {
    /// # Safety
    /// `p` is NULL or the consumer's `CK_MECHANISM` (its parameter bounded by
    /// `ffi::bounds::vendor_mechanism`).
    pub unsafe fn new(slot: &impl HandleMap, p: *const CK_MECHANISM) -> Result<VendorMech, CK_RV> {
        let mut v = VendorMech {
            null: p.is_null(),
            mech: CK_MECHANISM {
                mechanism: 0,
                pParameter: std::ptr::null_mut(),
                ulParameterLen: 0,
            },
            param: None,
            translated: false,
            out: Output::None,
        };
        if p.is_null() {
            return Ok(v);
        }
        v.mech = std::ptr::read_unaligned(p);
        v.param = Param::new(v.mech.pParameter as *const u8, v.mech.ulParameterLen)?;
        let Some(param) = v.param.as_mut() else {
            return Ok(v);
        };
        v.mech.pParameter = param.ptr() as CK_VOID_PTR;
        let len = v.mech.ulParameterLen as usize;
        let at = param.ptr();
        let to_v = |h: &mut CK_OBJECT_HANDLE| *h = slot.to_vendor(*h);
        let mut t = false;
        match v.mech.mechanism {
            CKM_CONCATENATE_BASE_AND_KEY => t = fix::<CK_OBJECT_HANDLE>(at, len, to_v),
            CKM_ECMQV_DERIVE if len == size_of::<CK_ECMQV_DERIVE_PARAMS>() => {
                t = fix::<CK_ECMQV_DERIVE_PARAMS>(at, len, |q| {
                    to_v(&mut q.hPrivateData);
                    to_v(&mut q.publicKey);
                })
            }
            // The 2.x layout of the ECMQV parameters, without `publicKey`.
            CKM_ECMQV_DERIVE => {
                t = fix::<CK_ECDH2_DERIVE_PARAMS>(at, len, |q| to_v(&mut q.hPrivateData))
            }
            CKM_X9_42_DH_HYBRID_DERIVE => {
                t = fix::<CK_X9_42_DH2_DERIVE_PARAMS>(at, len, |q| to_v(&mut q.hPrivateData))
            }
            CKM_X9_42_MQV_DERIVE => {
                t = fix::<CK_X9_42_MQV_DERIVE_PARAMS>(at, len, |q| {
                    to_v(&mut q.hPrivateData);
                    to_v(&mut q.publicKey);
                })
            }
            CKM_KIP_DERIVE | CKM_KIP_WRAP | CKM_KIP_MAC => {
                t = fix::<CK_KIP_PARAMS>(at, len, |q| to_v(&mut q.hKey))
            }
            CKM_X2RATCHET_INITIALIZE => {
                t = fix::<CK_X2RATCHET_INITIALIZE_PARAMS>(at, len, |q| {
                    to_v(&mut q.peer_public_prekey);
                    to_v(&mut q.peer_public_identity);
                    to_v(&mut q.own_public_identity);
                })
            }
            CKM_X2RATCHET_RESPOND => {
                t = fix::<CK_X2RATCHET_RESPOND_PARAMS>(at, len, |q| {
                    to_v(&mut q.own_prekey);
                    to_v(&mut q.initiator_identity);
                    to_v(&mut q.own_public_identity);
                })
            }
            CKM_SP800_108_COUNTER_KDF | CKM_SP800_108_DOUBLE_PIPELINE_KDF => {
                t = v.kbkdf::<CK_SP800_108_KDF_PARAMS>(slot)
            }
            CKM_SP800_108_FEEDBACK_KDF => t = v.kbkdf::<CK_SP800_108_FEEDBACK_KDF_PARAMS>(slot),
            CKM_SSL3_KEY_AND_MAC_DERIVE | CKM_TLS_KEY_AND_MAC_DERIVE => {
                v.ssl3::<CK_SSL3_KEY_MAT_PARAMS>()
            }
            CKM_TLS12_KEY_AND_MAC_DERIVE => v.ssl3::<CK_TLS12_KEY_MAT_PARAMS>(),
            CKM_WTLS_SERVER_KEY_AND_MAC_DERIVE | CKM_WTLS_CLIENT_KEY_AND_MAC_DERIVE => v.wtls(),
            _ => {}
        }
        v.translated = t;
        Ok(v)
    }

    /// The mechanism to give the vendor (NULL when the consumer's was).
    pub fn ptr(&mut self) -> *mut CK_MECHANISM {
        if self.null {
            std::ptr::null_mut()
        } else {
            &mut self.mech
        }
    }

    /// After the call completed: the outputs into the consumer's structures (handles as
    /// hsmux's), and an untranslated parameter's changes.
    ///
    /// # Safety
    /// `p` is the pointer given to [`Self::new`], still valid.
    pub unsafe fn back(&self, slot: &impl HandleMap, p: *mut CK_MECHANISM, rv: CK_RV) {
        if p.is_null() {
            return;
        }
        let orig = std::ptr::read_unaligned(p);
        if let (Some(param), false) = (&self.param, self.translated) {
            if matches!(self.out, Output::None) && !orig.pParameter.is_null() {
                param.back(orig.pParameter as *mut u8);
            }
        }
        if rv != CKR_OK {
            return;
        }
        match &self.out {
            Output::None => {}
            Output::Ssl3(o, civ, siv, out) => {
                let c = &mut **out;
                c.hClientMacSecret = slot.to_hsmux(o.hClientMacSecret);
                c.hServerMacSecret = slot.to_hsmux(o.hServerMacSecret);
                c.hClientKey = slot.to_hsmux(o.hClientKey);
                c.hServerKey = slot.to_hsmux(o.hServerKey);
                copy_iv(civ, c.pIVClient);
                copy_iv(siv, c.pIVServer);
            }
            Output::Wtls(o, iv, out) => {
                let out = *out;
                (*out).hMacSecret = slot.to_hsmux(o.hMacSecret);
                (*out).hKey = slot.to_hsmux(o.hKey);
                copy_iv(iv, (*out).pIV);
            }
            Output::Kbkdf(_, _, keys, handles) => {
                let theirs = kbkdf_derived(&orig);
                let Some((ptr, n)) = theirs else { return };
                for (i, k) in keys.iter().enumerate().take(n) {
                    let c = std::ptr::read_unaligned(ptr.add(i));
                    if !k.phKey.is_null() && !c.phKey.is_null() {
                        *c.phKey = slot.to_hsmux(handles[i]);
                    }
                }
            }
        }
    }

    unsafe fn ssl3<T: Ssl3Params>(&mut self) {
        let Some(param) = &mut self.param else { return };
        if param.bytes().len() != size_of::<T>() {
            return;
        }
        let q = &mut *(param.ptr() as *mut T);
        let out = q.returned();
        if out.is_null() {
            return;
        }
        let mut ours: Box<CK_SSL3_KEY_MAT_OUT> = Box::new(std::ptr::read_unaligned(out));
        let n = (q.iv_bits() / 8).min(1024) as usize;
        let mut civ = vec![0u8; n];
        let mut siv = vec![0u8; n];
        if !ours.pIVClient.is_null() {
            ours.pIVClient = civ.as_mut_ptr();
        }
        if !ours.pIVServer.is_null() {
            ours.pIVServer = siv.as_mut_ptr();
        }
        q.set_returned(&mut *ours);
        self.out = Output::Ssl3(ours, civ, siv, out);
    }

    unsafe fn wtls(&mut self) {
        let Some(param) = &mut self.param else { return };
        if param.bytes().len() != size_of::<CK_WTLS_KEY_MAT_PARAMS>() {
            return;
        }
        let q = &mut *(param.ptr() as *mut CK_WTLS_KEY_MAT_PARAMS);
        if q.pReturnedKeyMaterial.is_null() {
            return;
        }
        let theirs = q.pReturnedKeyMaterial;
        let mut ours: Box<CK_WTLS_KEY_MAT_OUT> = Box::new(std::ptr::read_unaligned(theirs));
        let mut iv = vec![0u8; (q.ulIVSizeInBits / 8).min(1024) as usize];
        if !ours.pIV.is_null() {
            ours.pIV = iv.as_mut_ptr();
        }
        q.pReturnedKeyMaterial = &mut *ours;
        self.out = Output::Wtls(ours, iv, theirs);
    }

    /// KBKDF: data parameters of type `CK_SP800_108_KEY_HANDLE` name a key (input); each
    /// additional derived key gets a handle written through `phKey` (output, staged).
    unsafe fn kbkdf<T: Kbkdf>(&mut self, slot: &impl HandleMap) -> bool {
        let Some(param) = &mut self.param else {
            return false;
        };
        if param.bytes().len() != size_of::<T>() {
            return false;
        }
        let q = &mut *(param.ptr() as *mut T);
        let (data_ptr, n) = {
            let (p, n) = q.data();
            (*p, n)
        };
        let mut data: Vec<CK_PRF_DATA_PARAM> = if data_ptr.is_null() || n == 0 || n > 4096 {
            Vec::new()
        } else {
            (0..n as usize)
                .map(|i| std::ptr::read_unaligned(data_ptr.add(i)))
                .collect()
        };
        let mut handles: Vec<Box<CK_OBJECT_HANDLE>> = Vec::new();
        for d in data.iter_mut() {
            if d.type_ == CK_SP800_108_KEY_HANDLE
                && !d.pValue.is_null()
                && d.ulValueLen as usize == size_of::<CK_OBJECT_HANDLE>()
            {
                let h = std::ptr::read_unaligned(d.pValue as *const CK_OBJECT_HANDLE);
                let mut b = Box::new(slot.to_vendor(h));
                d.pValue = &mut *b as *mut CK_OBJECT_HANDLE as CK_VOID_PTR;
                handles.push(b);
            }
        }
        if !data.is_empty() {
            *q.data().0 = data.as_mut_ptr();
        }
        let (keys_ptr, kn) = q.derived();
        let mut keys: Vec<CK_DERIVED_KEY> = if keys_ptr.is_null() || kn > 4096 {
            Vec::new()
        } else {
            (0..kn as usize)
                .map(|i| std::ptr::read_unaligned(keys_ptr.add(i)))
                .collect()
        };
        let mut out: Vec<CK_OBJECT_HANDLE> = vec![0; keys.len()];
        for (k, o) in keys.iter_mut().zip(out.iter_mut()) {
            if !k.phKey.is_null() {
                k.phKey = o;
            }
        }
        if !keys.is_empty() {
            q.set_derived(keys.as_mut_ptr());
        }
        self.out = Output::Kbkdf(data, handles, keys, out);
        true
    }
}

unsafe fn copy_iv(ours: &[u8], theirs: *mut u8) {
    if !theirs.is_null() && !ours.is_empty() {
        std::ptr::copy_nonoverlapping(ours.as_ptr(), theirs, ours.len());
    }
}

/// Replaces handles in our copy of a parameter whose length says it is a `T`.
unsafe fn fix<T>(at: *mut u8, len: usize, f: impl FnOnce(&mut T)) -> bool {
    if len != size_of::<T>() {
        return false;
    }
    let mut q = std::ptr::read_unaligned(at as *const T);
    f(&mut q);
    std::ptr::write_unaligned(at as *mut T, q);
    true
}

/// The consumer's parameter as a `T`, when its length says it is one.
unsafe fn param_of<T>(m: &CK_MECHANISM) -> Option<T> {
    if m.pParameter.is_null() || m.ulParameterLen as usize != size_of::<T>() {
        return None;
    }
    Some(std::ptr::read_unaligned(m.pParameter as *const T))
}

/// The consumer's additional derived keys of a KBKDF parameter.
unsafe fn kbkdf_derived(m: &CK_MECHANISM) -> Option<(*mut CK_DERIVED_KEY, usize)> {
    let (p, n) = match m.mechanism {
        CKM_SP800_108_COUNTER_KDF | CKM_SP800_108_DOUBLE_PIPELINE_KDF => {
            param_of::<CK_SP800_108_KDF_PARAMS>(m)?.derived()
        }
        CKM_SP800_108_FEEDBACK_KDF => param_of::<CK_SP800_108_FEEDBACK_KDF_PARAMS>(m)?.derived(),
        _ => return None,
    };
    (!p.is_null() && n <= 4096).then_some((p, n as usize))
}

/// The SSL3 and TLS 1.2 key-material parameters share the output field.
trait Ssl3Params {
    fn returned(&self) -> *mut CK_SSL3_KEY_MAT_OUT;
    fn set_returned(&mut self, p: *mut CK_SSL3_KEY_MAT_OUT);
    fn iv_bits(&self) -> CK_ULONG;
}
// Both layouts name the fields alike.
macro_rules! ssl3_params {
    ($($t:ty),*) => {$(
        impl Ssl3Params for $t {
            fn returned(&self) -> *mut CK_SSL3_KEY_MAT_OUT {
                self.pReturnedKeyMaterial
            }
            fn set_returned(&mut self, p: *mut CK_SSL3_KEY_MAT_OUT) {
                self.pReturnedKeyMaterial = p;
            }
            fn iv_bits(&self) -> CK_ULONG {
                self.ulIVSizeInBits
            }
        }
    )*};
}
ssl3_params!(CK_SSL3_KEY_MAT_PARAMS, CK_TLS12_KEY_MAT_PARAMS);

/// The two SP 800-108 parameter layouts share the fields that matter here.
trait Kbkdf: Copy {
    fn data(&mut self) -> (&mut *mut CK_PRF_DATA_PARAM, CK_ULONG);
    fn derived(&self) -> (*mut CK_DERIVED_KEY, CK_ULONG);
    fn set_derived(&mut self, p: *mut CK_DERIVED_KEY);
}
// Both layouts name the fields alike.
macro_rules! kbkdf {
    ($($t:ty),*) => {$(
        impl Kbkdf for $t {
            fn data(&mut self) -> (&mut *mut CK_PRF_DATA_PARAM, CK_ULONG) {
                (&mut self.pDataParams, self.ulNumberOfDataParams)
            }
            fn derived(&self) -> (*mut CK_DERIVED_KEY, CK_ULONG) {
                (self.pAdditionalDerivedKeys, self.ulAdditionalDerivedKeys)
            }
            fn set_derived(&mut self, p: *mut CK_DERIVED_KEY) {
                self.pAdditionalDerivedKeys = p;
            }
        }
    )*};
}
kbkdf!(CK_SP800_108_KDF_PARAMS, CK_SP800_108_FEEDBACK_KDF_PARAMS);

#[cfg(test)]
mod tests {
    use super::*;

    /// hsmux handle h stands for vendor handle h + 1000.
    struct Offset;
    impl HandleMap for Offset {
        fn to_vendor(&self, h: CK_OBJECT_HANDLE) -> CK_OBJECT_HANDLE {
            if h == 0 {
                0
            } else {
                h + 1000
            }
        }
        fn to_hsmux(&self, vh: CK_OBJECT_HANDLE) -> CK_OBJECT_HANDLE {
            if vh == 0 {
                0
            } else {
                vh - 1000
            }
        }
    }

    fn mech_of<T>(t: CK_MECHANISM_TYPE, p: &mut T) -> CK_MECHANISM {
        CK_MECHANISM {
            mechanism: t,
            pParameter: p as *mut T as CK_VOID_PTR,
            ulParameterLen: size_of::<T>() as CK_ULONG,
        }
    }

    #[test]
    fn concatenate_base_and_key_gets_the_vendor_handle_and_the_original_is_kept() {
        let mut h: CK_OBJECT_HANDLE = 7;
        let mut m = mech_of(CKM_CONCATENATE_BASE_AND_KEY, &mut h);
        let mut seen = 0;
        let rv = unsafe {
            with_vendor_mechanism(&Offset, &mut m, |v| {
                seen = *((*v).pParameter as *const CK_OBJECT_HANDLE);
                CKR_OK
            })
        };
        assert_eq!((rv, seen, h), (CKR_OK, 1007, 7));
    }

    #[test]
    fn ecmqv_both_layouts_and_the_vendors_return_value() {
        let mut p: CK_ECMQV_DERIVE_PARAMS = unsafe { std::mem::zeroed() };
        p.hPrivateData = 3;
        p.publicKey = 4;
        let mut m = mech_of(CKM_ECMQV_DERIVE, &mut p);
        let mut seen = (0, 0);
        let rv = unsafe {
            with_vendor_mechanism(&Offset, &mut m, |v| {
                let q = &*((*v).pParameter as *const CK_ECMQV_DERIVE_PARAMS);
                seen = (q.hPrivateData, q.publicKey);
                CKR_KEY_HANDLE_INVALID
            })
        };
        assert_eq!((rv, seen), (CKR_KEY_HANDLE_INVALID, (1003, 1004)));
        let mut p2: CK_ECDH2_DERIVE_PARAMS = unsafe { std::mem::zeroed() };
        p2.hPrivateData = 9;
        let mut m = mech_of(CKM_ECMQV_DERIVE, &mut p2);
        unsafe {
            with_vendor_mechanism(&Offset, &mut m, |v| {
                assert_eq!(
                    (*v).ulParameterLen as usize,
                    size_of::<CK_ECDH2_DERIVE_PARAMS>()
                );
                assert_eq!(
                    (*((*v).pParameter as *const CK_ECDH2_DERIVE_PARAMS)).hPrivateData,
                    1009
                );
                CKR_OK
            });
        }
    }

    #[test]
    fn a_parameter_of_the_wrong_length_goes_through_untouched() {
        let mut h: [CK_OBJECT_HANDLE; 2] = [7, 8];
        let mut m = mech_of(CKM_CONCATENATE_BASE_AND_KEY, &mut h);
        unsafe {
            with_vendor_mechanism(&Offset, &mut m, |v| {
                // Staged (a copy the call owns), with the consumer's bytes unchanged.
                assert_eq!(
                    (*v).ulParameterLen as usize,
                    size_of::<[CK_OBJECT_HANDLE; 2]>()
                );
                assert_eq!(*((*v).pParameter as *const [CK_OBJECT_HANDLE; 2]), [7, 8]);
                CKR_MECHANISM_PARAM_INVALID
            });
        }
        assert_eq!(h, [7, 8]);
    }

    #[test]
    fn tls_key_material_handles_come_back_as_hsmux_handles() {
        let mut out: CK_SSL3_KEY_MAT_OUT = unsafe { std::mem::zeroed() };
        let mut p: CK_TLS12_KEY_MAT_PARAMS = unsafe { std::mem::zeroed() };
        p.pReturnedKeyMaterial = &mut out;
        let mut m = mech_of(CKM_TLS12_KEY_AND_MAC_DERIVE, &mut p);
        unsafe {
            with_vendor_mechanism(&Offset, &mut m, |v| {
                let q = &*((*v).pParameter as *const CK_TLS12_KEY_MAT_PARAMS);
                let o = &mut *q.pReturnedKeyMaterial;
                (
                    o.hClientMacSecret,
                    o.hServerMacSecret,
                    o.hClientKey,
                    o.hServerKey,
                ) = (1001, 1002, 1003, 0);
                CKR_OK
            });
        }
        assert_eq!(
            (
                out.hClientMacSecret,
                out.hServerMacSecret,
                out.hClientKey,
                out.hServerKey
            ),
            (1, 2, 3, 0)
        );
    }

    #[test]
    fn kbkdf_key_handles_in_and_derived_keys_out() {
        let mut base: CK_OBJECT_HANDLE = 5;
        let mut counter = [0u8; 4];
        let mut data = [
            CK_PRF_DATA_PARAM {
                type_: CK_SP800_108_BYTE_ARRAY,
                pValue: counter.as_mut_ptr() as CK_VOID_PTR,
                ulValueLen: 4,
            },
            CK_PRF_DATA_PARAM {
                type_: CK_SP800_108_KEY_HANDLE,
                pValue: &mut base as *mut _ as CK_VOID_PTR,
                ulValueLen: size_of::<CK_OBJECT_HANDLE>() as CK_ULONG,
            },
        ];
        let mut derived_handle: CK_OBJECT_HANDLE = 0;
        let mut derived = [CK_DERIVED_KEY {
            pTemplate: std::ptr::null_mut(),
            ulAttributeCount: 0,
            phKey: &mut derived_handle,
        }];
        let mut p = CK_SP800_108_KDF_PARAMS {
            prfType: CKM_SHA256_HMAC,
            ulNumberOfDataParams: 2,
            pDataParams: data.as_mut_ptr(),
            ulAdditionalDerivedKeys: 1,
            pAdditionalDerivedKeys: derived.as_mut_ptr(),
        };
        let mut m = mech_of(CKM_SP800_108_COUNTER_KDF, &mut p);
        unsafe {
            with_vendor_mechanism(&Offset, &mut m, |v| {
                let q = &*((*v).pParameter as *const CK_SP800_108_KDF_PARAMS);
                let d = std::slice::from_raw_parts(q.pDataParams, 2);
                assert_eq!(d[0].pValue, counter.as_mut_ptr() as CK_VOID_PTR);
                assert_eq!(*(d[1].pValue as *const CK_OBJECT_HANDLE), 1005);
                *(*q.pAdditionalDerivedKeys).phKey = 1042;
                CKR_OK
            });
        }
        assert_eq!(base, 5, "the consumer's data is not changed");
        assert_eq!(p.pDataParams, data.as_mut_ptr());
        assert_eq!(derived_handle, 42);
    }
}
