//! A vendor token's operations as the core drives them (`core::op`): a cipher, a signer
//! and a verifier over one vendor session, each call under the replica's deadline, the
//! vendor's operation abandoned when hsmux drops one it did not end.

use super::*;

pub(super) struct VendorCipher {
    pub(super) inner: Arc<Inner>,
    pub(super) vs: CK_SESSION_HANDLE,
    pub(super) session: CK_SESSION_HANDLE,
    pub(super) encrypt: bool,
    /// The vendor ended the operation (a single-part call or the final returned).
    pub(super) done: bool,
}

impl Drop for VendorCipher {
    fn drop(&mut self) {
        if !self.done {
            self.inner.abandon(self.session, self.vs);
        }
    }
}

impl Drop for VendorSigner {
    fn drop(&mut self) {
        if !self.done {
            self.inner.abandon(self.session, self.vs);
        }
    }
}

impl Drop for VendorVerifier {
    fn drop(&mut self) {
        if !self.done {
            self.inner.abandon(self.session, self.vs);
        }
    }
}

impl VendorCipher {
    fn call(
        &self,
        what: &str,
        input: Option<Vec<u8>>,
        f: fn(&Lib, CK_SESSION_HANDLE, bool, &mut [u8], *mut u8, *mut CK_ULONG) -> CK_RV,
    ) -> Result<Vec<u8>> {
        let (vs, enc) = (self.vs, self.encrypt);
        let mut data = input.unwrap_or_default();
        let r = self.inner.run(what, move |lib| {
            two_call(|o, n| f(&lib, vs, enc, &mut data, o, n))
        });
        if let Err(e) = &r {
            note_failure(&self.inner, self.session, e);
        }
        r
    }
}

impl VendorCipher {
    /// The vendor's answer to a length query (which keeps the operation), else an upper
    /// bound: block ciphers and GCM add at most a block or a tag, RSA gives at most the
    /// modulus (up to 8192 bits).
    fn query(&self, input_len: Option<usize>, update: bool) -> usize {
        let (vs, enc) = (self.vs, self.encrypt);
        let bound = input_len.unwrap_or(0) + 1024;
        self.inner
            .run("length query", move |lib| {
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
        let r = self.call(what, Some(input.to_vec()), |lib, vs, enc, d, o, n| {
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
        });
        self.done = ended(&r, true);
        r
    }
    fn update_len(&self, input_len: usize) -> usize {
        self.query(Some(input_len), true)
    }
    fn update(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        let r = self.call(
            "C_EncryptUpdate",
            Some(input.to_vec()),
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
        );
        self.done = ended(&r, false);
        r
    }
    fn final_len(&self) -> usize {
        self.query(None, false)
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        let r = self.call("C_EncryptFinal", None, |lib, vs, enc, _, o, n| {
            if enc {
                vcall!(lib, C_EncryptFinal(vs, o, n))
            } else {
                vcall!(lib, C_DecryptFinal(vs, o, n))
            }
        });
        self.done = ended(&r, true);
        r
    }
}

pub(super) struct VendorSigner {
    pub(super) inner: Arc<Inner>,
    pub(super) vs: CK_SESSION_HANDLE,
    pub(super) session: CK_SESSION_HANDLE,
    pub(super) len: usize,
    pub(super) digest: bool,
    pub(super) done: bool,
}

impl Signer for VendorSigner {
    fn output_len(&self) -> usize {
        self.len
    }
    fn update(&mut self, data: &[u8]) -> Result<()> {
        let (vs, digest) = (self.vs, self.digest);
        let mut d = data.to_vec();
        let r = self.inner.run("C_SignUpdate", move |lib| {
            check(if digest {
                vcall!(lib, C_DigestUpdate(vs, d.as_mut_ptr(), d.len() as CK_ULONG))
            } else {
                vcall!(lib, C_SignUpdate(vs, d.as_mut_ptr(), d.len() as CK_ULONG))
            })
        });
        if let Err(e) = &r {
            note_failure(&self.inner, self.session, e);
        }
        self.done = ended(&r, false);
        r
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        let (vs, digest) = (self.vs, self.digest);
        let r = self.inner.run("C_SignFinal", move |lib| {
            two_call(|o, n| {
                if digest {
                    vcall!(lib, C_DigestFinal(vs, o, n))
                } else {
                    vcall!(lib, C_SignFinal(vs, o, n))
                }
            })
        });
        if let Err(e) = &r {
            note_failure(&self.inner, self.session, e);
        }
        self.done = ended(&r, true);
        r
    }
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let (vs, digest) = (self.vs, self.digest);
        let mut d = data.to_vec();
        let r = self.inner.run("C_Sign", move |lib| {
            two_call(|o, n| {
                if digest {
                    vcall!(lib, C_Digest(vs, d.as_mut_ptr(), d.len() as CK_ULONG, o, n))
                } else {
                    vcall!(lib, C_Sign(vs, d.as_mut_ptr(), d.len() as CK_ULONG, o, n))
                }
            })
        });
        if let Err(e) = &r {
            note_failure(&self.inner, self.session, e);
        }
        self.done = ended(&r, true);
        r
    }
}

pub(super) struct VendorVerifier {
    pub(super) inner: Arc<Inner>,
    pub(super) vs: CK_SESSION_HANDLE,
    pub(super) session: CK_SESSION_HANDLE,
    pub(super) done: bool,
}

impl Verifier for VendorVerifier {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        let vs = self.vs;
        let mut d = data.to_vec();
        let r = self.inner.run("C_VerifyUpdate", move |lib| {
            check(vcall!(
                lib,
                C_VerifyUpdate(vs, d.as_mut_ptr(), d.len() as CK_ULONG)
            ))
        });
        if let Err(e) = &r {
            note_failure(&self.inner, self.session, e);
        }
        self.done = ended(&r, false);
        r
    }
    fn finish(&mut self, signature: &[u8]) -> Result<()> {
        let vs = self.vs;
        let mut s = signature.to_vec();
        let r = self.inner.run("C_VerifyFinal", move |lib| {
            check(vcall!(
                lib,
                C_VerifyFinal(vs, s.as_mut_ptr(), s.len() as CK_ULONG)
            ))
        });
        if let Err(e) = &r {
            note_failure(&self.inner, self.session, e);
        }
        self.done = ended(&r, true);
        r
    }
    fn oneshot(&mut self, data: &[u8], signature: &[u8]) -> Result<()> {
        let vs = self.vs;
        let (mut d, mut s) = (data.to_vec(), signature.to_vec());
        let r = self.inner.run("C_Verify", move |lib| {
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
        });
        if let Err(e) = &r {
            note_failure(&self.inner, self.session, e);
        }
        self.done = ended(&r, true);
        r
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
