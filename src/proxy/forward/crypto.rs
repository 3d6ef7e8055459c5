//! Encryption, decryption, digests and signatures, single- and multi-part (and the dual
//! functions), and random numbers.

use super::super::params::VendorMech;
use super::super::session::PassSession;
use super::super::stage::{In, Out, Owned};
use cryptoki_sys::*;

impl PassSession {
    data_in! { vf:
        digest_update => C_DigestUpdate;
        sign_update => C_SignUpdate;
        verify_update => C_VerifyUpdate;
        verify_final => C_VerifyFinal;
        seed_random => C_SeedRandom;
    }

    data_out! { vf:
        encrypt_final => C_EncryptFinal;
        decrypt_final => C_DecryptFinal;
        digest_final => C_DigestFinal;
        sign_final => C_SignFinal;
    }

    data_in_out! { vf:
        encrypt => C_Encrypt;
        encrypt_update => C_EncryptUpdate;
        decrypt => C_Decrypt;
        decrypt_update => C_DecryptUpdate;
        digest => C_Digest;
        sign => C_Sign;
        sign_recover => C_SignRecover;
        verify_recover => C_VerifyRecover;
        digest_encrypt_update => C_DigestEncryptUpdate;
        decrypt_digest_update => C_DecryptDigestUpdate;
        sign_encrypt_update => C_SignEncryptUpdate;
        decrypt_verify_update => C_DecryptVerifyUpdate;
    }

    init_with_key! { vf:
        encrypt_init => C_EncryptInit;
        decrypt_init => C_DecryptInit;
        sign_init => C_SignInit;
        verify_init => C_VerifyInit;
        sign_recover_init => C_SignRecoverInit;
        verify_recover_init => C_VerifyRecoverInit;
    }

    pub unsafe fn digest_init(&self, mech: *mut CK_MECHANISM) -> CK_RV {
        let f = vf!(self.slot, C_DigestInit);
        let m = Owned(try_rv!(VendorMech::new(&*self.slot, mech)));
        self.forward_out(
            "C_DigestInit",
            m,
            move |vh, m| unsafe { f(vh, m.ptr()) },
            |rv, m| m.back(&*self.slot, mech, rv),
        )
    }

    pub unsafe fn digest_key(&self, key: CK_OBJECT_HANDLE) -> CK_RV {
        let f = vf!(self.slot, C_DigestKey);
        let key = self.slot.to_vendor(key);
        self.forward_in("C_DigestKey", (), move |vh, _| unsafe { f(vh, key) })
    }

    pub unsafe fn verify(
        &self,
        d: *mut CK_BYTE,
        n: CK_ULONG,
        s: *mut CK_BYTE,
        sn: CK_ULONG,
    ) -> CK_RV {
        let f = vf!(self.slot, C_Verify);
        let i = try_rv!(In::new(d, n));
        let sig = try_rv!(In::new(s, sn));
        self.forward_in("C_Verify", (i, sig), move |vh, (i, sig)| unsafe {
            f(vh, i.ptr(), i.len(), sig.ptr(), sig.len())
        })
    }

    /// `C_GenerateRandom`: the vendor fills exactly `n` bytes.
    pub unsafe fn generate_random(&self, d: *mut CK_BYTE, n: CK_ULONG) -> CK_RV {
        let f = vf!(self.slot, C_GenerateRandom);
        let out = try_rv!(Out::exact(d, n));
        self.forward_out(
            "C_GenerateRandom",
            out,
            move |vh, out| unsafe { f(vh, out.ptr(), n) },
            |rv, out| out.back_exact(rv, d),
        )
    }
}
