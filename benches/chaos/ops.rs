//! The chaos soak's operations: each runs through hsmux and checks its result with an
//! independent implementation (`Ok(Some(why))`: a wrong result).

use super::{call, Outcome, Step, Worker, AES_KEY, HMAC_KEY};
use crate::common::*;
use cryptoki_sys::*;
use std::collections::BTreeMap;

/// Enough for every output here (RSA-2048 signature, a 96-byte CBC ciphertext).
const OUT: usize = 512;

/// The handles of the four keys, found in session `h`.
pub fn keys(
    m: &Module,
    h: CK_SESSION_HANDLE,
) -> Result<BTreeMap<&'static str, CK_OBJECT_HANDLE>, CK_RV> {
    let mut out = BTreeMap::new();
    for (name, class) in [
        ("ec", CKO_PRIVATE_KEY),
        ("rsa", CKO_PRIVATE_KEY),
        ("aes", CKO_SECRET_KEY),
        ("hmac", CKO_SECRET_KEY),
    ] {
        match find_id(m, h, class, name.as_bytes()) {
            Ok(v) if v.len() == 1 => {
                out.insert(name, v[0]);
            }
            Ok(_) => return Err(CKR_GENERAL_ERROR),
            Err((_, rv)) => return Err(rv),
        }
    }
    Ok(out)
}

/// C_FindObjects for `class` + `CKA_ID`: the handles.
fn find_id(
    m: &Module,
    h: CK_SESSION_HANDLE,
    class: CK_OBJECT_CLASS,
    id: &[u8],
) -> Result<Vec<CK_OBJECT_HANDLE>, Step> {
    let mut t = [attr(CKA_CLASS, &class), attr_bytes(CKA_ID, id)];
    call(
        "C_FindObjectsInit",
        ck!(m, C_FindObjectsInit(h, t.as_mut_ptr(), 2)),
    )?;
    let mut found = [0 as CK_OBJECT_HANDLE; 4];
    let mut n = 0;
    let rv = ck!(m, C_FindObjects(h, found.as_mut_ptr(), 4, &mut n));
    let fin = ck!(m, C_FindObjectsFinal(h));
    call("C_FindObjects", rv)?;
    call("C_FindObjectsFinal", fin)?;
    Ok(found[..n as usize].to_vec())
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

impl Worker<'_> {
    fn message(&self) -> Vec<u8> {
        format!(
            "chaos soak message {} {}",
            self.n,
            "x".repeat((self.n % 61) as usize)
        )
        .into_bytes()
    }

    /// `C_SignInit` + `C_Sign` with `mt` on `key`.
    fn sign_once(&self, mut mc: CK_MECHANISM, key: &str, data: &[u8]) -> Result<Vec<u8>, Step> {
        let (m, h) = (self.m, self.h);
        call("C_SignInit", ck!(m, C_SignInit(h, &mut mc, self.keys[key])))?;
        let mut out = vec![0u8; OUT];
        let mut n = OUT as CK_ULONG;
        let rv = ck!(
            m,
            C_Sign(
                h,
                data.as_ptr() as *mut _,
                data.len() as CK_ULONG,
                out.as_mut_ptr(),
                &mut n
            )
        );
        call("C_Sign", rv)?;
        out.truncate(n as usize);
        Ok(out)
    }

    pub fn ecdsa(&self) -> Outcome {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let digest = sha256(&self.message());
        let sig = self.sign_once(mech(CKM_ECDSA), "ec", &digest)?;
        let Ok(sig) = p256::ecdsa::Signature::from_slice(&sig) else {
            return Ok(Some(format!("not an r||s signature ({} bytes)", sig.len())));
        };
        Ok(self
            .mat
            .ec
            .verify_prehash(&digest, &sig)
            .err()
            .map(|e| format!("ECDSA signature does not verify: {e}")))
    }

    pub fn rsa(&self) -> Outcome {
        let msg = self.message();
        let sig = self.sign_once(mech(CKM_SHA256_RSA_PKCS), "rsa", &msg)?;
        let scheme = rsa::Pkcs1v15Sign::new::<sha2::Sha256>();
        Ok(self
            .mat
            .rsa
            .verify(scheme, &sha256(&msg), &sig)
            .err()
            .map(|e| format!("RSA signature does not verify: {e}")))
    }

    pub fn gcm(&self) -> Outcome {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let (m, h, key) = (self.m, self.h, self.keys["aes"]);
        let msg = self.message();
        let mut iv = [0u8; 12];
        iv[..8].copy_from_slice(&self.n.to_be_bytes());
        let mut aad = *b"chaos aad";
        let gcm_mech = |iv: &mut [u8; 12], aad: &mut [u8; 9], p: &mut CK_GCM_PARAMS| {
            *p = CK_GCM_PARAMS {
                pIv: iv.as_mut_ptr(),
                ulIvLen: 12,
                ulIvBits: 96,
                pAAD: aad.as_mut_ptr(),
                ulAADLen: aad.len() as CK_ULONG,
                ulTagBits: 128,
            };
            CK_MECHANISM {
                mechanism: CKM_AES_GCM,
                pParameter: p as *mut CK_GCM_PARAMS as *mut _,
                ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as CK_ULONG,
            }
        };
        let mut p = unsafe { std::mem::zeroed::<CK_GCM_PARAMS>() };
        let (mut iv1, mut iv2) = (iv, iv);
        let mut mc = gcm_mech(&mut iv1, &mut aad, &mut p);
        call("C_EncryptInit", ck!(m, C_EncryptInit(h, &mut mc, key)))?;
        let mut ct = vec![0u8; OUT];
        let mut n = OUT as CK_ULONG;
        let rv = ck!(
            m,
            C_Encrypt(
                h,
                msg.as_ptr() as *mut _,
                msg.len() as CK_ULONG,
                ct.as_mut_ptr(),
                &mut n
            )
        );
        call("C_Encrypt", rv)?;
        ct.truncate(n as usize);
        let outside = aes_gcm::Aes256Gcm::new_from_slice(&AES_KEY)
            .unwrap()
            .decrypt(
                (&iv).into(),
                Payload {
                    msg: &ct,
                    aad: b"chaos aad",
                },
            );
        match outside {
            Ok(p) if p == msg => {}
            _ => {
                return Ok(Some(
                    "the GCM ciphertext does not decrypt outside to the message".into(),
                ))
            }
        }
        let mut mc = gcm_mech(&mut iv2, &mut aad, &mut p);
        call("C_DecryptInit", ck!(m, C_DecryptInit(h, &mut mc, key)))?;
        let mut back = vec![0u8; OUT];
        let mut n = OUT as CK_ULONG;
        let rv = ck!(
            m,
            C_Decrypt(
                h,
                ct.as_mut_ptr(),
                ct.len() as CK_ULONG,
                back.as_mut_ptr(),
                &mut n
            )
        );
        call("C_Decrypt", rv)?;
        back.truncate(n as usize);
        Ok(
            (back != msg)
                .then(|| "C_Decrypt of the GCM ciphertext differs from the message".into()),
        )
    }

    /// AES-CBC over three updates of 32 bytes, decrypted block by block with `aes`.
    pub fn cbc(&self) -> Outcome {
        use aes::cipher::{BlockDecrypt, KeyInit};
        let (m, h, key) = (self.m, self.h, self.keys["aes"]);
        let mut iv: [u8; 16] =
            std::array::from_fn(|i| (self.n as u8).wrapping_mul(31).wrapping_add(i as u8));
        let plain: Vec<u8> = (0..96u32).map(|i| (i as u64 * 13 + self.n) as u8).collect();
        let mut mc = CK_MECHANISM {
            mechanism: CKM_AES_CBC,
            pParameter: iv.as_mut_ptr() as *mut _,
            ulParameterLen: 16,
        };
        call("C_EncryptInit", ck!(m, C_EncryptInit(h, &mut mc, key)))?;
        let mut ct = Vec::new();
        for part in plain.chunks(32) {
            let mut out = [0u8; 64];
            let mut n = 64 as CK_ULONG;
            let rv = ck!(
                m,
                C_EncryptUpdate(h, part.as_ptr() as *mut _, 32, out.as_mut_ptr(), &mut n)
            );
            call("C_EncryptUpdate", rv)?;
            ct.extend_from_slice(&out[..n as usize]);
        }
        let mut out = [0u8; 32];
        let mut n = 32 as CK_ULONG;
        call(
            "C_EncryptFinal",
            ck!(m, C_EncryptFinal(h, out.as_mut_ptr(), &mut n)),
        )?;
        ct.extend_from_slice(&out[..n as usize]);
        if ct.len() != plain.len() {
            return Ok(Some(format!(
                "CBC ciphertext of {} bytes for {}",
                ct.len(),
                plain.len()
            )));
        }
        let aes = aes::Aes256::new_from_slice(&AES_KEY).unwrap();
        let mut prev = iv;
        let mut back = Vec::new();
        for block in ct.chunks(16) {
            let mut b = aes::Block::clone_from_slice(block);
            aes.decrypt_block(&mut b);
            back.extend(b.iter().zip(prev).map(|(x, y)| x ^ y));
            prev.copy_from_slice(block);
        }
        Ok((back != plain)
            .then(|| "the CBC ciphertext does not decrypt outside to the data".into()))
    }

    pub fn hmac(&self) -> Outcome {
        use hmac::Mac;
        let (m, h) = (self.m, self.h);
        let msg = self.message();
        let mut mc = mech(CKM_SHA256_HMAC);
        call(
            "C_SignInit",
            ck!(m, C_SignInit(h, &mut mc, self.keys["hmac"])),
        )?;
        for part in msg.chunks(msg.len().div_ceil(3)) {
            let rv = ck!(
                m,
                C_SignUpdate(h, part.as_ptr() as *mut _, part.len() as CK_ULONG)
            );
            call("C_SignUpdate", rv)?;
        }
        let mut mac = [0u8; 64];
        let mut n = 64 as CK_ULONG;
        call(
            "C_SignFinal",
            ck!(m, C_SignFinal(h, mac.as_mut_ptr(), &mut n)),
        )?;
        let mut want = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&HMAC_KEY).unwrap();
        want.update(&msg);
        Ok((mac[..n as usize] != want.finalize().into_bytes()[..])
            .then(|| "the HMAC differs".into()))
    }

    pub fn digest(&self) -> Outcome {
        let (m, h) = (self.m, self.h);
        let msg = self.message();
        let mut mc = mech(CKM_SHA256);
        call("C_DigestInit", ck!(m, C_DigestInit(h, &mut mc)))?;
        for part in msg.chunks(msg.len().div_ceil(3)) {
            let rv = ck!(
                m,
                C_DigestUpdate(h, part.as_ptr() as *mut _, part.len() as CK_ULONG)
            );
            call("C_DigestUpdate", rv)?;
        }
        let mut d = [0u8; 64];
        let mut n = 64 as CK_ULONG;
        call(
            "C_DigestFinal",
            ck!(m, C_DigestFinal(h, d.as_mut_ptr(), &mut n)),
        )?;
        Ok((d[..n as usize] != sha256(&msg)[..]).then(|| "the SHA-256 digest differs".into()))
    }

    pub fn find(&self) -> Outcome {
        let found = find_id(self.m, self.h, CKO_PRIVATE_KEY, b"ec")?;
        Ok((found != [self.keys["ec"]]).then(|| {
            format!(
                "C_FindObjects for the EC key found {found:?}, not [{}]",
                self.keys["ec"]
            )
        }))
    }
}
