//! Object handles inside mechanism parameters. Most parameters go to the vendor as the
//! consumer gave them (same pointer); the few that name objects are copied with hsmux's
//! handles replaced by the vendor's, and the handles a derivation writes back into the
//! consumer's structures are replaced by hsmux's after the call.
//!
//! The structures are the PKCS#11 3.0 header's (`cryptoki-sys`); a parameter whose length
//! is not the structure's goes through untouched, for the vendor to refuse as it would.

use super::ModuleSlot;
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

/// Calls `f` with the mechanism the vendor must see, then fixes handles it returned.
///
/// # Safety
/// `p` is NULL or the consumer's `CK_MECHANISM`, valid for the call.
pub unsafe fn with_vendor_mechanism(
    slot: &impl HandleMap,
    p: *mut CK_MECHANISM,
    f: impl FnOnce(*mut CK_MECHANISM) -> CK_RV,
) -> CK_RV {
    if p.is_null() {
        return f(p);
    }
    let m = std::ptr::read_unaligned(p);
    let v = |h: &mut CK_OBJECT_HANDLE| *h = slot.to_vendor(*h);
    match m.mechanism {
        CKM_CONCATENATE_BASE_AND_KEY => with_param::<CK_OBJECT_HANDLE>(p, v, f),
        CKM_ECMQV_DERIVE if m.ulParameterLen as usize == size_of::<CK_ECMQV_DERIVE_PARAMS>() => {
            with_param::<CK_ECMQV_DERIVE_PARAMS>(
                p,
                |q| {
                    v(&mut q.hPrivateData);
                    v(&mut q.publicKey);
                },
                f,
            )
        }
        // The 2.x layout of the ECMQV parameters, without `publicKey`.
        CKM_ECMQV_DERIVE => with_param::<CK_ECDH2_DERIVE_PARAMS>(p, |q| v(&mut q.hPrivateData), f),
        CKM_X9_42_DH_HYBRID_DERIVE => {
            with_param::<CK_X9_42_DH2_DERIVE_PARAMS>(p, |q| v(&mut q.hPrivateData), f)
        }
        CKM_X9_42_MQV_DERIVE => with_param::<CK_X9_42_MQV_DERIVE_PARAMS>(
            p,
            |q| {
                v(&mut q.hPrivateData);
                v(&mut q.publicKey);
            },
            f,
        ),
        CKM_KIP_DERIVE | CKM_KIP_WRAP | CKM_KIP_MAC => {
            with_param::<CK_KIP_PARAMS>(p, |q| v(&mut q.hKey), f)
        }
        CKM_X2RATCHET_INITIALIZE => with_param::<CK_X2RATCHET_INITIALIZE_PARAMS>(
            p,
            |q| {
                v(&mut q.peer_public_prekey);
                v(&mut q.peer_public_identity);
                v(&mut q.own_public_identity);
            },
            f,
        ),
        CKM_X2RATCHET_RESPOND => with_param::<CK_X2RATCHET_RESPOND_PARAMS>(
            p,
            |q| {
                v(&mut q.own_prekey);
                v(&mut q.initiator_identity);
                v(&mut q.own_public_identity);
            },
            f,
        ),
        CKM_SP800_108_COUNTER_KDF | CKM_SP800_108_DOUBLE_PIPELINE_KDF => {
            sp800_108::<CK_SP800_108_KDF_PARAMS>(slot, p, f)
        }
        CKM_SP800_108_FEEDBACK_KDF => sp800_108::<CK_SP800_108_FEEDBACK_KDF_PARAMS>(slot, p, f),
        CKM_SSL3_KEY_AND_MAC_DERIVE | CKM_TLS_KEY_AND_MAC_DERIVE => {
            let rv = f(p);
            if rv == CKR_OK {
                if let Some(q) = param::<CK_SSL3_KEY_MAT_PARAMS>(p) {
                    fix_ssl3_out(slot, q.pReturnedKeyMaterial);
                }
            }
            rv
        }
        CKM_TLS12_KEY_AND_MAC_DERIVE => {
            let rv = f(p);
            if rv == CKR_OK {
                if let Some(q) = param::<CK_TLS12_KEY_MAT_PARAMS>(p) {
                    fix_ssl3_out(slot, q.pReturnedKeyMaterial);
                }
            }
            rv
        }
        CKM_WTLS_SERVER_KEY_AND_MAC_DERIVE | CKM_WTLS_CLIENT_KEY_AND_MAC_DERIVE => {
            let rv = f(p);
            if rv == CKR_OK {
                if let Some(q) = param::<CK_WTLS_KEY_MAT_PARAMS>(p) {
                    let out = q.pReturnedKeyMaterial;
                    if !out.is_null() {
                        (*out).hMacSecret = slot.to_hsmux((*out).hMacSecret);
                        (*out).hKey = slot.to_hsmux((*out).hKey);
                    }
                }
            }
            rv
        }
        _ => f(p),
    }
}

/// The parameter as a `T`, when its length says it is one.
unsafe fn param<T>(p: *mut CK_MECHANISM) -> Option<T> {
    let m = std::ptr::read_unaligned(p);
    if m.pParameter.is_null() || m.ulParameterLen as usize != size_of::<T>() {
        return None;
    }
    Some(std::ptr::read_unaligned(m.pParameter as *const T))
}

/// Calls `f` with a copy of the parameter that `fix` changed; the original is untouched.
unsafe fn with_param<T>(
    p: *mut CK_MECHANISM,
    fix: impl FnOnce(&mut T),
    f: impl FnOnce(*mut CK_MECHANISM) -> CK_RV,
) -> CK_RV {
    let Some(mut copy) = param::<T>(p) else {
        return f(p);
    };
    fix(&mut copy);
    let mut mech = CK_MECHANISM {
        mechanism: (*p).mechanism,
        pParameter: &mut copy as *mut T as CK_VOID_PTR,
        ulParameterLen: size_of::<T>() as CK_ULONG,
    };
    f(&mut mech)
}

unsafe fn fix_ssl3_out(slot: &impl HandleMap, out: *mut CK_SSL3_KEY_MAT_OUT) {
    if out.is_null() {
        return;
    }
    let o = &mut *out;
    o.hClientMacSecret = slot.to_hsmux(o.hClientMacSecret);
    o.hServerMacSecret = slot.to_hsmux(o.hServerMacSecret);
    o.hClientKey = slot.to_hsmux(o.hClientKey);
    o.hServerKey = slot.to_hsmux(o.hServerKey);
}

/// The two SP 800-108 parameter layouts share the fields that matter here.
trait Kbkdf: Copy {
    fn data(&mut self) -> (&mut *mut CK_PRF_DATA_PARAM, CK_ULONG);
    fn derived(&self) -> (*mut CK_DERIVED_KEY, CK_ULONG);
}
impl Kbkdf for CK_SP800_108_KDF_PARAMS {
    fn data(&mut self) -> (&mut *mut CK_PRF_DATA_PARAM, CK_ULONG) {
        (&mut self.pDataParams, self.ulNumberOfDataParams)
    }
    fn derived(&self) -> (*mut CK_DERIVED_KEY, CK_ULONG) {
        (self.pAdditionalDerivedKeys, self.ulAdditionalDerivedKeys)
    }
}
impl Kbkdf for CK_SP800_108_FEEDBACK_KDF_PARAMS {
    fn data(&mut self) -> (&mut *mut CK_PRF_DATA_PARAM, CK_ULONG) {
        (&mut self.pDataParams, self.ulNumberOfDataParams)
    }
    fn derived(&self) -> (*mut CK_DERIVED_KEY, CK_ULONG) {
        (self.pAdditionalDerivedKeys, self.ulAdditionalDerivedKeys)
    }
}

/// KBKDF: data parameters of type `CK_SP800_108_KEY_HANDLE` name a key (input); each
/// additional derived key gets a handle written through `phKey` (output).
unsafe fn sp800_108<T: Kbkdf>(
    slot: &impl HandleMap,
    p: *mut CK_MECHANISM,
    f: impl FnOnce(*mut CK_MECHANISM) -> CK_RV,
) -> CK_RV {
    let Some(mut copy) = param::<T>(p) else {
        return f(p);
    };
    let (data_ptr, n) = {
        let (p, n) = copy.data();
        (*p, n)
    };
    let mut data: Vec<CK_PRF_DATA_PARAM> = if data_ptr.is_null() || n == 0 || n > 4096 {
        Vec::new()
    } else {
        (0..n as usize)
            .map(|i| std::ptr::read_unaligned(data_ptr.add(i)))
            .collect()
    };
    // Vendor handles for the key-handle entries; boxed so their addresses stay put.
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
        *copy.data().0 = data.as_mut_ptr();
    }
    let mut mech = CK_MECHANISM {
        mechanism: (*p).mechanism,
        pParameter: &mut copy as *mut T as CK_VOID_PTR,
        ulParameterLen: size_of::<T>() as CK_ULONG,
    };
    let rv = f(&mut mech);
    if rv == CKR_OK {
        let (keys, n) = copy.derived();
        if !keys.is_null() && n <= 4096 {
            for i in 0..n as usize {
                let k = std::ptr::read_unaligned(keys.add(i));
                if !k.phKey.is_null() {
                    *k.phKey = slot.to_hsmux(*k.phKey);
                }
            }
        }
    }
    drop(handles);
    rv
}

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
        let orig = m.pParameter;
        unsafe {
            with_vendor_mechanism(&Offset, &mut m, |v| {
                assert_eq!((*v).pParameter, orig);
                CKR_MECHANISM_PARAM_INVALID
            });
        }
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
