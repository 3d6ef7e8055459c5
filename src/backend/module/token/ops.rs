//! A vendor token's operations as the core drives them (`core::op`): a cipher, a signer
//! and a verifier over the vendor session lent to them (`OnSession`), each call under the
//! replica's deadline. The session goes back to the pool when the vendor ends the
//! operation; one that hsmux drops unfinished is closed (a 2.40 vendor cannot cancel it).

use super::*;

/// The vendor session an operation runs on, lent by the pool until the operation ends.
pub(super) struct OnSession {
    inner: Arc<Inner>,
    session: CK_SESSION_HANDLE,
    lease: Lease,
    /// The vendor ended the operation (a single-part call or the final returned).
    done: bool,
}

impl OnSession {
    pub(super) fn new(inner: &Arc<Inner>, session: CK_SESSION_HANDLE, lease: Lease) -> OnSession {
        OnSession {
            inner: inner.clone(),
            session,
            lease,
            done: false,
        }
    }

    /// Runs `f` on the session; gives the session back when the vendor ended the
    /// operation with this call (`final_call`, or any error but a timeout).
    fn call<R: Send + 'static>(
        &mut self,
        what: &str,
        final_call: bool,
        f: impl FnOnce(Lib, CK_SESSION_HANDLE) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        if self.done {
            return Err(err(CKR_OPERATION_NOT_INITIALIZED));
        }
        let vs = self.lease.vs;
        let r = self.inner.run_in(what, vs, move |lib| f(lib, vs));
        if ended(&r, final_call) {
            self.done = true;
            self.inner
                .end_operation(self.session, self.lease, r.as_ref().err(), false);
        }
        r
    }

    /// Runs a call that does not change the operation (a length query).
    fn peek<R: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(Lib, CK_SESSION_HANDLE) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let vs = self.lease.vs;
        self.inner.run_in(what, vs, move |lib| f(lib, vs))
    }
}

impl Drop for OnSession {
    fn drop(&mut self) {
        if !self.done {
            self.inner
                .end_operation(self.session, self.lease, None, true);
        }
    }
}

impl ModuleToken {
    pub(super) fn cipher(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        key: ObjectId,
        encrypt: bool,
    ) -> Result<Box<dyn Cipher>> {
        let mech = Arc::new(mech.clone());
        let what = if encrypt {
            "C_EncryptInit"
        } else {
            "C_DecryptInit"
        };
        let (lease, ()) = self.inner.init(what, ctx.session, move |lib, vs| {
            let mut m = OwnedMechanism::new(&mech);
            let k = key as CK_OBJECT_HANDLE;
            check(if encrypt {
                vcall!(lib, C_EncryptInit(vs, m.as_ptr(), k))
            } else {
                vcall!(lib, C_DecryptInit(vs, m.as_ptr(), k))
            })
        })?;
        Ok(Box::new(VendorCipher {
            on: OnSession::new(&self.inner, ctx.session, lease),
            encrypt,
        }))
    }

    /// A signature (`key` given) or a digest; its length is asked now (a length query
    /// keeps the operation), as the core needs it before the data comes.
    pub(super) fn signer(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        key: Option<ObjectId>,
    ) -> Result<Box<dyn Signer>> {
        let mech = Arc::new(mech.clone());
        let what = if key.is_some() {
            "C_SignInit"
        } else {
            "C_DigestInit"
        };
        let (lease, len) = self.inner.init(what, ctx.session, move |lib, vs| {
            let mut m = OwnedMechanism::new(&mech);
            match key {
                Some(k) => check(vcall!(
                    lib,
                    C_SignInit(vs, m.as_ptr(), k as CK_OBJECT_HANDLE)
                ))?,
                None => check(vcall!(lib, C_DigestInit(vs, m.as_ptr())))?,
            }
            let mut probe = [0u8; 32];
            let mut n: CK_ULONG = 0;
            let rv = match key {
                Some(_) => vcall!(
                    lib,
                    C_Sign(vs, probe.as_mut_ptr(), 32, std::ptr::null_mut(), &mut n)
                ),
                None => vcall!(
                    lib,
                    C_Digest(vs, probe.as_mut_ptr(), 32, std::ptr::null_mut(), &mut n)
                ),
            };
            // The init half succeeded: an error here leaves the operation active, which
            // the caller's abandon() clears (the code says so: OPERATION_ACTIVE next time).
            check(rv).map(|()| Some(n as usize)).or_else(|e| {
                if device_error(&e) {
                    Err(e)
                } else {
                    Ok(None)
                }
            })
        })?;
        let on = OnSession::new(&self.inner, ctx.session, lease);
        let Some(len) = len else {
            // `on` is dropped unfinished: the vendor session is closed.
            return Err(err(CKR_FUNCTION_FAILED));
        };
        Ok(Box::new(VendorSigner {
            on,
            len,
            digest: key.is_none(),
        }))
    }
}

pub(super) struct VendorCipher {
    pub(super) on: OnSession,
    pub(super) encrypt: bool,
}

type CipherCall = fn(&Lib, CK_SESSION_HANDLE, bool, &mut [u8], *mut u8, *mut CK_ULONG) -> CK_RV;

impl VendorCipher {
    fn call(
        &mut self,
        what: &str,
        input: Option<Vec<u8>>,
        final_call: bool,
        f: CipherCall,
    ) -> Result<Vec<u8>> {
        let enc = self.encrypt;
        let mut data = input.unwrap_or_default();
        self.on.call(what, final_call, move |lib, vs| {
            two_call(|o, n| f(&lib, vs, enc, &mut data, o, n))
        })
    }
}

impl VendorCipher {
    /// The vendor's answer to a length query (which keeps the operation), else an upper
    /// bound: block ciphers and GCM add at most a block or a tag, RSA gives at most the
    /// modulus (up to 8192 bits).
    fn query(&self, input_len: Option<usize>, update: bool) -> usize {
        let enc = self.encrypt;
        let bound = input_len.unwrap_or(0) + 1024;
        self.on
            .peek("length query", move |lib, vs| {
                let mut d = vec![0u8; input_len.unwrap_or(0)];
                let (p, l) = (d.as_mut_ptr(), d.len() as CK_ULONG);
                let mut n: CK_ULONG = 0;
                let o = std::ptr::null_mut();
                let rv = match (input_len.is_some(), update, enc) {
                    (true, false, true) => vcall!(lib, C_Encrypt(vs, p, l, o, &mut n)),
                    (true, false, false) => vcall!(lib, C_Decrypt(vs, p, l, o, &mut n)),
                    (true, true, true) => vcall!(lib, C_EncryptUpdate(vs, p, l, o, &mut n)),
                    (true, true, false) => vcall!(lib, C_DecryptUpdate(vs, p, l, o, &mut n)),
                    (false, _, true) => vcall!(lib, C_EncryptFinal(vs, o, &mut n)),
                    (false, _, false) => vcall!(lib, C_DecryptFinal(vs, o, &mut n)),
                };
                check(rv)?;
                Ok(n as usize)
            })
            .unwrap_or(bound)
    }
}

impl Cipher for VendorCipher {
    fn output_len(&self, input_len: usize) -> usize {
        self.query(Some(input_len), false)
    }
    fn oneshot(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        let what = if self.encrypt {
            "C_Encrypt"
        } else {
            "C_Decrypt"
        };
        self.call(what, Some(input.to_vec()), true, |lib, vs, enc, d, o, n| {
            if enc {
                vcall!(
                    lib,
                    C_Encrypt(vs, d.as_mut_ptr(), d.len() as CK_ULONG, o, n)
                )
            } else {
                vcall!(
                    lib,
                    C_Decrypt(vs, d.as_mut_ptr(), d.len() as CK_ULONG, o, n)
                )
            }
        })
    }
    fn update_len(&self, input_len: usize) -> usize {
        self.query(Some(input_len), true)
    }
    fn update(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        self.call(
            "C_EncryptUpdate",
            Some(input.to_vec()),
            false,
            |lib, vs, enc, d, o, n| {
                if enc {
                    vcall!(
                        lib,
                        C_EncryptUpdate(vs, d.as_mut_ptr(), d.len() as CK_ULONG, o, n)
                    )
                } else {
                    vcall!(
                        lib,
                        C_DecryptUpdate(vs, d.as_mut_ptr(), d.len() as CK_ULONG, o, n)
                    )
                }
            },
        )
    }
    fn final_len(&self) -> usize {
        self.query(None, false)
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        self.call("C_EncryptFinal", None, true, |lib, vs, enc, _, o, n| {
            if enc {
                vcall!(lib, C_EncryptFinal(vs, o, n))
            } else {
                vcall!(lib, C_DecryptFinal(vs, o, n))
            }
        })
    }
}

pub(super) struct VendorSigner {
    pub(super) on: OnSession,
    pub(super) len: usize,
    pub(super) digest: bool,
}

impl Signer for VendorSigner {
    fn output_len(&self) -> usize {
        self.len
    }
    fn update(&mut self, data: &[u8]) -> Result<()> {
        let digest = self.digest;
        let mut d = data.to_vec();
        self.on.call("C_SignUpdate", false, move |lib, vs| {
            check(if digest {
                vcall!(lib, C_DigestUpdate(vs, d.as_mut_ptr(), d.len() as CK_ULONG))
            } else {
                vcall!(lib, C_SignUpdate(vs, d.as_mut_ptr(), d.len() as CK_ULONG))
            })
        })
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        let digest = self.digest;
        self.on.call("C_SignFinal", true, move |lib, vs| {
            two_call(|o, n| {
                if digest {
                    vcall!(lib, C_DigestFinal(vs, o, n))
                } else {
                    vcall!(lib, C_SignFinal(vs, o, n))
                }
            })
        })
    }
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let digest = self.digest;
        let mut d = data.to_vec();
        self.on.call("C_Sign", true, move |lib, vs| {
            two_call(|o, n| {
                if digest {
                    vcall!(lib, C_Digest(vs, d.as_mut_ptr(), d.len() as CK_ULONG, o, n))
                } else {
                    vcall!(lib, C_Sign(vs, d.as_mut_ptr(), d.len() as CK_ULONG, o, n))
                }
            })
        })
    }
}

pub(super) struct VendorVerifier {
    pub(super) on: OnSession,
}

impl Verifier for VendorVerifier {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        let mut d = data.to_vec();
        self.on.call("C_VerifyUpdate", false, move |lib, vs| {
            check(vcall!(
                lib,
                C_VerifyUpdate(vs, d.as_mut_ptr(), d.len() as CK_ULONG)
            ))
        })
    }
    fn finish(&mut self, signature: &[u8]) -> Result<()> {
        let mut s = signature.to_vec();
        self.on.call("C_VerifyFinal", true, move |lib, vs| {
            check(vcall!(
                lib,
                C_VerifyFinal(vs, s.as_mut_ptr(), s.len() as CK_ULONG)
            ))
        })
    }
    fn oneshot(&mut self, data: &[u8], signature: &[u8]) -> Result<()> {
        let (mut d, mut s) = (data.to_vec(), signature.to_vec());
        self.on.call("C_Verify", true, move |lib, vs| {
            check(vcall!(
                lib,
                C_Verify(
                    vs,
                    d.as_mut_ptr(),
                    d.len() as CK_ULONG,
                    s.as_mut_ptr(),
                    s.len() as CK_ULONG
                )
            ))
        })
    }
}

/// Did the vendor end the operation with this result? A final call always does (success
/// or error), an update only on error; a call that timed out still runs at the vendor.
fn ended<T>(r: &Result<T>, final_call: bool) -> bool {
    match r {
        Ok(_) => final_call,
        Err(e) => e.rv() != TIMED_OUT,
    }
}
