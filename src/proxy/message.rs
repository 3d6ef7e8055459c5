//! Message-based AES-GCM (PKCS#11 3.0 `C_MessageEncryptInit`, `C_EncryptMessage`, ...) for
//! a module slot whose vendor library has only the 2.40 functions: hsmux's function table
//! offers them, so hsmux runs each message as one single-part `CKM_AES_GCM` at the vendor,
//! as the core does for its own tokens (`core::api::message`). A vendor with the 3.0
//! interface gets the calls forwarded instead.
//!
//! As in `forward/`, every function is `unsafe` because its pointers are the consumer's,
//! and every vendor call runs with the slot's deadline on memory the call owns.
#![allow(clippy::missing_safety_doc, clippy::too_many_arguments)]

use super::session::{MessageKey, PassSession};
use crate::core::api::message::{generate_iv, GcmMessage};
use cryptoki_sys::*;
use std::mem::size_of;

/// Each direction's message function: the vendor's own (`$vendor`, `forward/message.rs`)
/// when it has the 3.0 interface, else hsmux's `$emulated`, told the direction.
macro_rules! by_vendor {
    ($emulated:ident $args:tt: $( $name:ident => $vendor:ident, $encrypt:literal; )*) => {
        $( by_vendor!(@one $name $vendor $encrypt $emulated $args); )*
    };
    (@one $name:ident $vendor:ident $encrypt:literal $emulated:ident ($($a:ident : $t:ty),*)) => {
        pub unsafe fn $name(&self, $($a: $t),*) -> CK_RV {
            if self.vendor_has_messages() {
                return self.$vendor($($a),*);
            }
            self.$emulated($encrypt $(, $a)*)
        }
    };
}

impl PassSession {
    fn vendor_has_messages(&self) -> bool {
        self.slot
            .library()
            .is_ok_and(|l| l.fl3.is_some_and(|t| t.C_MessageEncryptInit.is_some()))
    }

    by_vendor! { emulated_init(mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE):
        message_encrypt_init => vendor_message_encrypt_init, true;
        message_decrypt_init => vendor_message_decrypt_init, false;
    }

    by_vendor! { emulated_final():
        message_encrypt_final => vendor_message_encrypt_final, true;
        message_decrypt_final => vendor_message_decrypt_final, false;
    }

    by_vendor! { emulated_message(
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        a: *mut CK_BYTE,
        an: CK_ULONG,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        o: *mut CK_BYTE,
        on: *mut CK_ULONG
    ):
        encrypt_message => vendor_encrypt_message, true;
        decrypt_message => vendor_decrypt_message, false;
    }

    /// Ends a message operation in progress.
    fn emulated_final(&self, encrypt: bool) -> CK_RV {
        let mut ops = self.messages.lock();
        let op = if encrypt {
            ops.encrypt.take()
        } else {
            ops.decrypt.take()
        };
        match op {
            Some(_) => CKR_OK,
            None => CKR_OPERATION_NOT_INITIALIZED,
        }
    }

    /// Checks the key as an `*Init` must (through its attributes: a trial operation could
    /// not be cancelled at a 2.40 vendor) and records it.
    unsafe fn emulated_init(
        &self,
        encrypt: bool,
        mech: *mut CK_MECHANISM,
        key: CK_OBJECT_HANDLE,
    ) -> CK_RV {
        if mech.is_null() {
            return CKR_ARGUMENTS_BAD;
        }
        let mut ops = self.messages.lock();
        let slot = if encrypt {
            &mut ops.encrypt
        } else {
            &mut ops.decrypt
        };
        if slot.is_some() {
            return CKR_OPERATION_ACTIVE;
        }
        if (*mech).mechanism != CKM_AES_GCM {
            log::warn!("message-based encryption behind a 2.40 vendor library is offered for CKM_AES_GCM only (CKR_MECHANISM_INVALID)");
            return CKR_MECHANISM_INVALID;
        }
        let vkey = self.slot.to_vendor(key);
        let Ok(lib) = self.slot.library() else {
            return CKR_TOKEN_NOT_PRESENT;
        };
        let Some(get) = lib.fl.C_GetAttributeValue else {
            return CKR_FUNCTION_NOT_SUPPORTED;
        };
        let vh = self.vh;
        let read = self.slot.call("C_GetAttributeValue", move || {
            let mut key_type: CK_KEY_TYPE = 0;
            let mut allowed: CK_BBOOL = 0;
            let mut t = [
                CK_ATTRIBUTE {
                    type_: CKA_KEY_TYPE,
                    pValue: &mut key_type as *mut _ as CK_VOID_PTR,
                    ulValueLen: size_of::<CK_KEY_TYPE>() as CK_ULONG,
                },
                CK_ATTRIBUTE {
                    type_: if encrypt { CKA_ENCRYPT } else { CKA_DECRYPT },
                    pValue: &mut allowed as *mut _ as CK_VOID_PTR,
                    ulValueLen: 1,
                },
            ];
            // SAFETY: the job's own template and values.
            let rv = unsafe { get(vh, vkey, t.as_mut_ptr(), 2) };
            (rv, key_type, allowed)
        });
        let (key_type, allowed) = match read {
            Err(rv) => return rv,
            Ok((CKR_OK, k, a)) => (k, a),
            Ok((CKR_OBJECT_HANDLE_INVALID, _, _)) => return CKR_KEY_HANDLE_INVALID,
            Ok((rv, _, _)) => return rv,
        };
        if key_type != CKK_AES {
            return CKR_KEY_TYPE_INCONSISTENT;
        }
        if allowed == 0 {
            return CKR_KEY_FUNCTION_NOT_PERMITTED;
        }
        *slot = Some(MessageKey {
            key: vkey,
            counter: 0,
        });
        CKR_OK
    }

    /// One message: `CK_GCM_MESSAGE_PARAMS` becomes a `CK_GCM_PARAMS` for the vendor's
    /// single-part GCM; the tag goes to `pTag` (and a generated IV to `pIv`), the data to
    /// the consumer's buffer, with the usual length query and `CKR_BUFFER_TOO_SMALL`.
    unsafe fn emulated_message(
        &self,
        encrypt: bool,
        p: CK_VOID_PTR,
        pn: CK_ULONG,
        aad: *mut CK_BYTE,
        aad_len: CK_ULONG,
        data: *mut CK_BYTE,
        n: CK_ULONG,
        out: *mut CK_BYTE,
        out_len: *mut CK_ULONG,
    ) -> CK_RV {
        let mut ops = self.messages.lock();
        let Some(op) = (if encrypt {
            ops.encrypt.as_mut()
        } else {
            ops.decrypt.as_mut()
        }) else {
            return CKR_OPERATION_NOT_INITIALIZED;
        };
        if p.is_null() || pn as usize != size_of::<CK_GCM_MESSAGE_PARAMS>() {
            return CKR_MECHANISM_PARAM_INVALID;
        }
        let g = &mut *(p as *mut CK_GCM_MESSAGE_PARAMS);
        if g.pTag.is_null()
            || !g.ulTagBits.is_multiple_of(8)
            || g.ulTagBits > 128
            || (g.pIv.is_null() && g.ulIvLen > 0)
            || g.ulIvLen as u128 > crate::core::limits::MAX_PARAM_LEN as u128
        {
            return CKR_MECHANISM_PARAM_INVALID;
        }
        if out_len.is_null() || (data.is_null() && n > 0) || (aad.is_null() && aad_len > 0) {
            return CKR_ARGUMENTS_BAD;
        }
        // GCM output is as long as its input: answer length queries before any IV is used.
        if out.is_null() {
            *out_len = n;
            return CKR_OK;
        }
        if *out_len < n {
            *out_len = n;
            return CKR_BUFFER_TOO_SMALL;
        }
        let tag_len = (g.ulTagBits / 8) as usize;
        let given_iv = if g.ulIvLen == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(g.pIv, g.ulIvLen as usize).to_vec()
        };
        let generated = encrypt && g.ivGenerator != CKG_NO_GENERATE;
        let iv = if generated {
            op.counter += 1;
            let want = GcmMessage {
                iv: given_iv,
                iv_fixed_bits: g.ulIvFixedBits,
                generator: g.ivGenerator,
                tag_bits: g.ulTagBits,
                tag: Vec::new(),
            };
            match generate_iv(&want, op.counter) {
                Ok(iv) => iv,
                Err(e) => return e.rv(),
            }
        } else {
            given_iv
        };
        // The AAD, the IV and the data are copies the vendor calls own.
        let aad = if aad_len == 0 || aad.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(aad, aad_len as usize).to_vec()
        };
        let aad_null = aad_len == 0 && aad.is_empty();
        let tag_bits = g.ulTagBits;
        let key = op.key;
        let vh = self.vh;
        let Ok(lib) = self.slot.library() else {
            return CKR_TOKEN_NOT_PRESENT;
        };
        let input = if n == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(data, n as usize).to_vec()
        };
        // One single-part AES-GCM at the vendor, as one job: its init and the operation.
        let gcm = move |init: unsafe extern "C" fn(
            CK_SESSION_HANDLE,
            *mut CK_MECHANISM,
            CK_OBJECT_HANDLE,
        ) -> CK_RV,
                        mut iv: Vec<u8>,
                        mut aad: Vec<u8>|
              -> CK_RV {
            let mut params = CK_GCM_PARAMS {
                pIv: iv.as_mut_ptr(),
                ulIvLen: iv.len() as CK_ULONG,
                ulIvBits: (iv.len() * 8) as CK_ULONG,
                pAAD: if aad_null {
                    std::ptr::null_mut()
                } else {
                    aad.as_mut_ptr()
                },
                ulAADLen: aad.len() as CK_ULONG,
                ulTagBits: tag_bits,
            };
            let mut mech = CK_MECHANISM {
                mechanism: CKM_AES_GCM,
                pParameter: &mut params as *mut _ as CK_VOID_PTR,
                ulParameterLen: size_of::<CK_GCM_PARAMS>() as CK_ULONG,
            };
            // SAFETY: the job's own mechanism, parameter and buffers.
            unsafe { init(vh, &mut mech, key) }
        };
        if encrypt {
            let (Some(init), Some(run)) = (lib.fl.C_EncryptInit, lib.fl.C_Encrypt) else {
                return CKR_FUNCTION_NOT_SUPPORTED;
            };
            let job_iv = iv.clone();
            let r = self.slot.call("C_EncryptInit/C_Encrypt", move || {
                let rv = gcm(init, job_iv, aad);
                if rv != CKR_OK {
                    return (rv, Vec::new(), 0);
                }
                let mut sealed = vec![0u8; input.len() + tag_len];
                let mut len = sealed.len() as CK_ULONG;
                // SAFETY: the job's own buffers.
                let rv = unsafe {
                    run(
                        vh,
                        input.as_ptr() as *mut _,
                        input.len() as CK_ULONG,
                        sealed.as_mut_ptr(),
                        &mut len,
                    )
                };
                (rv, sealed, len)
            });
            let (sealed, len) = match r {
                Err(rv) => return rv,
                Ok((CKR_OK, sealed, len)) => (sealed, len),
                Ok((rv, _, _)) => return rv,
            };
            if len as usize != n as usize + tag_len {
                log::error!("vendor AES-GCM returned {len} bytes for {n} bytes of data and a {tag_len}-byte tag");
                return CKR_DEVICE_ERROR;
            }
            let n = n as usize;
            std::ptr::copy_nonoverlapping(sealed.as_ptr(), out, n);
            std::ptr::copy_nonoverlapping(sealed[n..].as_ptr(), g.pTag, tag_len);
            if generated {
                std::ptr::copy_nonoverlapping(iv.as_ptr(), g.pIv, iv.len().min(g.ulIvLen as usize));
            }
            *out_len = n as CK_ULONG;
            CKR_OK
        } else {
            let (Some(init), Some(run)) = (lib.fl.C_DecryptInit, lib.fl.C_Decrypt) else {
                return CKR_FUNCTION_NOT_SUPPORTED;
            };
            let mut sealed = input;
            sealed.extend_from_slice(std::slice::from_raw_parts(g.pTag, tag_len));
            let r = self.slot.call("C_DecryptInit/C_Decrypt", move || {
                let rv = gcm(init, iv, aad);
                if rv != CKR_OK {
                    return (rv, zeroize::Zeroizing::new(Vec::new()), 0);
                }
                let mut plain = zeroize::Zeroizing::new(vec![0u8; sealed.len()]);
                let mut len = plain.len() as CK_ULONG;
                // SAFETY: the job's own buffers.
                let rv = unsafe {
                    run(
                        vh,
                        sealed.as_mut_ptr(),
                        sealed.len() as CK_ULONG,
                        plain.as_mut_ptr(),
                        &mut len,
                    )
                };
                (rv, plain, len)
            });
            let (plain, len) = match r {
                Err(rv) => return rv,
                Ok((CKR_OK, plain, len)) => (plain, len),
                Ok((rv, _, _)) => return rv,
            };
            if len > n {
                return CKR_DEVICE_ERROR;
            }
            std::ptr::copy_nonoverlapping(plain.as_ptr(), out, len as usize);
            *out_len = len;
            CKR_OK
        }
    }
}
