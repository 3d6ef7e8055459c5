//! The core's [`Mechanism`] and [`Attr`] templates as the C structures a vendor takes,
//! owned (they travel to a worker thread with the call, see `worker.rs`). The reverse of
//! `ffi::mech` and `ffi::attr`.

use crate::core::attr::Attr;
use crate::core::mechanism::{CounterFormat, MechParam, Mechanism, PrfData};
use cryptoki_sys::*;
use std::mem::size_of;

/// A `CK_MECHANISM` and everything its parameter points to.
pub struct OwnedMechanism {
    mech: CK_MECHANISM,
    /// The parameter structure (bytes laid out as the C struct) and the buffers it
    /// points into; boxed so that their addresses do not move.
    _param: Option<Box<[u8]>>,
    _buffers: Vec<Box<[u8]>>,
}

// The raw pointers point into the boxes owned by the same value.
unsafe impl Send for OwnedMechanism {}

fn boxed(b: &[u8]) -> Box<[u8]> {
    b.to_vec().into_boxed_slice()
}

fn ptr(b: &mut Box<[u8]>) -> *mut u8 {
    if b.is_empty() {
        std::ptr::null_mut()
    } else {
        b.as_mut_ptr()
    }
}

/// The bytes of a plain C structure.
fn struct_bytes<T>(v: &T) -> Box<[u8]> {
    // SAFETY: T is a #[repr(C)] PKCS#11 structure of plain fields.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
        .to_vec()
        .into_boxed_slice()
}

/// One SP 800-108 data field as the C structure, its value kept by `keep`.
fn prf_data(d: &PrfData, keep: &mut impl FnMut(&[u8]) -> *mut u8) -> CK_PRF_DATA_PARAM {
    let counter = |c: &CounterFormat| {
        struct_bytes(&CK_SP800_108_COUNTER_FORMAT {
            bLittleEndian: c.little_endian as CK_BBOOL,
            ulWidthInBits: c.width_bits,
        })
    };
    let (type_, value) = match d {
        PrfData::Iteration(None) => (CK_SP800_108_ITERATION_VARIABLE, Box::default()),
        PrfData::Iteration(Some(c)) => (CK_SP800_108_ITERATION_VARIABLE, counter(c)),
        PrfData::Counter(c) => (CK_SP800_108_COUNTER, counter(c)),
        PrfData::DkmLength(f) => (
            CK_SP800_108_DKM_LENGTH,
            struct_bytes(&CK_SP800_108_DKM_LENGTH_FORMAT {
                dkmLengthMethod: f.method,
                bLittleEndian: f.little_endian as CK_BBOOL,
                ulWidthInBits: f.width_bits,
            }),
        ),
        PrfData::Bytes(b) => (CK_SP800_108_BYTE_ARRAY, boxed(b)),
    };
    CK_PRF_DATA_PARAM {
        type_,
        pValue: keep(&value) as CK_VOID_PTR,
        ulValueLen: value.len() as CK_ULONG,
    }
}

impl OwnedMechanism {
    pub fn new(m: &Mechanism) -> OwnedMechanism {
        let mut buffers: Vec<Box<[u8]>> = Vec::new();
        let mut keep = |b: &[u8]| -> *mut u8 {
            let mut bx = boxed(b);
            let p = ptr(&mut bx);
            buffers.push(bx);
            p
        };
        let param: Option<Box<[u8]>> = match &m.param {
            MechParam::None => None,
            MechParam::Data(b) => {
                let p = CK_KEY_DERIVATION_STRING_DATA {
                    pData: keep(b),
                    ulLen: b.len() as CK_ULONG,
                };
                Some(struct_bytes(&p))
            }
            MechParam::Bytes(b) => Some(boxed(b)),
            MechParam::Ulong(v) => Some(struct_bytes(v)),
            MechParam::Key(h) => Some(struct_bytes(&(*h as CK_OBJECT_HANDLE))),
            MechParam::Gcm {
                iv,
                iv_bits,
                aad,
                tag_bits,
            } => {
                let p = CK_GCM_PARAMS {
                    pIv: keep(iv),
                    ulIvLen: iv.len() as CK_ULONG,
                    ulIvBits: *iv_bits,
                    pAAD: keep(aad),
                    ulAADLen: aad.len() as CK_ULONG,
                    ulTagBits: *tag_bits,
                };
                Some(struct_bytes(&p))
            }
            MechParam::Oaep(o) => {
                let p = CK_RSA_PKCS_OAEP_PARAMS {
                    hashAlg: o.hash,
                    mgf: o.mgf,
                    source: o.source,
                    pSourceData: keep(&o.source_data) as CK_VOID_PTR,
                    ulSourceDataLen: o.source_data.len() as CK_ULONG,
                };
                Some(struct_bytes(&p))
            }
            MechParam::Pss(p) => Some(struct_bytes(&CK_RSA_PKCS_PSS_PARAMS {
                hashAlg: p.hash,
                mgf: p.mgf,
                sLen: p.salt_len,
            })),
            MechParam::Ecdh1 {
                kdf,
                shared_data,
                public_data,
            } => {
                let p = CK_ECDH1_DERIVE_PARAMS {
                    kdf: *kdf,
                    ulSharedDataLen: shared_data.len() as CK_ULONG,
                    pSharedData: keep(shared_data),
                    ulPublicDataLen: public_data.len() as CK_ULONG,
                    pPublicData: keep(public_data),
                };
                Some(struct_bytes(&p))
            }
            MechParam::Eddsa { prehash, context } => {
                let p = CK_EDDSA_PARAMS {
                    phFlag: CK_BBOOL::from(*prehash),
                    ulContextDataLen: context.len() as CK_ULONG,
                    pContextData: keep(context),
                };
                Some(struct_bytes(&p))
            }
            MechParam::SignContext { hedge, context } => {
                let p = CK_SIGN_ADDITIONAL_CONTEXT {
                    hedgeVariant: *hedge,
                    pContext: keep(context),
                    ulContextLen: context.len() as CK_ULONG,
                };
                Some(struct_bytes(&p))
            }
            MechParam::AesCbcData { iv, data } => {
                let p = CK_AES_CBC_ENCRYPT_DATA_PARAMS {
                    iv: *iv,
                    pData: keep(data),
                    length: data.len() as CK_ULONG,
                };
                Some(struct_bytes(&p))
            }
            // The additional derived keys never reach here (Token::derive_keys refuses
            // them for every backend but the soft token).
            MechParam::Kbkdf(k) => {
                let data: Vec<CK_PRF_DATA_PARAM> =
                    k.data.iter().map(|d| prf_data(d, &mut keep)).collect();
                // SAFETY: CK_PRF_DATA_PARAM is a #[repr(C)] structure of plain fields.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        data.as_ptr() as *const u8,
                        data.len() * size_of::<CK_PRF_DATA_PARAM>(),
                    )
                };
                let (n, p_data) = (
                    data.len() as CK_ULONG,
                    keep(bytes) as *mut CK_PRF_DATA_PARAM,
                );
                Some(if m.mech == CKM_SP800_108_FEEDBACK_KDF {
                    struct_bytes(&CK_SP800_108_FEEDBACK_KDF_PARAMS {
                        prfType: k.prf,
                        ulNumberOfDataParams: n,
                        pDataParams: p_data,
                        ulIVLen: k.iv.len() as CK_ULONG,
                        pIV: keep(&k.iv),
                        ulAdditionalDerivedKeys: 0,
                        pAdditionalDerivedKeys: std::ptr::null_mut(),
                    })
                } else {
                    struct_bytes(&CK_SP800_108_KDF_PARAMS {
                        prfType: k.prf,
                        ulNumberOfDataParams: n,
                        pDataParams: p_data,
                        ulAdditionalDerivedKeys: 0,
                        pAdditionalDerivedKeys: std::ptr::null_mut(),
                    })
                })
            }
            MechParam::DesCbcData { iv, data } => {
                let p = CK_DES_CBC_ENCRYPT_DATA_PARAMS {
                    iv: *iv,
                    pData: keep(data),
                    length: data.len() as CK_ULONG,
                };
                Some(struct_bytes(&p))
            }
        };
        let mut param = param;
        let (p, len) = match param.as_mut() {
            Some(b) => (ptr(b) as CK_VOID_PTR, b.len() as CK_ULONG),
            None => (std::ptr::null_mut(), 0),
        };
        OwnedMechanism {
            mech: CK_MECHANISM {
                mechanism: m.mech,
                pParameter: p,
                ulParameterLen: len,
            },
            _param: param,
            _buffers: buffers,
        }
    }

    pub fn as_ptr(&mut self) -> *mut CK_MECHANISM {
        &mut self.mech
    }
}

/// A template as `CK_ATTRIBUTE`s pointing into its own copies of the values.
pub struct OwnedTemplate {
    attrs: Vec<CK_ATTRIBUTE>,
    _values: Vec<Box<[u8]>>,
}

unsafe impl Send for OwnedTemplate {}

impl OwnedTemplate {
    pub fn new(t: &[Attr]) -> OwnedTemplate {
        let mut values: Vec<Box<[u8]>> = t.iter().map(|a| boxed(&a.value)).collect();
        let attrs = t
            .iter()
            .zip(values.iter_mut())
            .map(|(a, v)| CK_ATTRIBUTE {
                type_: a.ty,
                pValue: ptr(v) as CK_VOID_PTR,
                ulValueLen: v.len() as CK_ULONG,
            })
            .collect();
        OwnedTemplate {
            attrs,
            _values: values,
        }
    }

    pub fn as_ptr(&mut self) -> *mut CK_ATTRIBUTE {
        if self.attrs.is_empty() {
            std::ptr::null_mut()
        } else {
            self.attrs.as_mut_ptr()
        }
    }

    pub fn len(&self) -> CK_ULONG {
        self.attrs.len() as CK_ULONG
    }
}
