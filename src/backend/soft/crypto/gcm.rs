//! AES-GCM for the parameters aws-lc-rs's AEAD API does not take: IVs other than 96 bits
//! and tags shorter than 128 bits (NIST SP 800-38D §7). AES comes from aws-lc (ECB over
//! the counter blocks), GHASH from the RustCrypto `ghash` crate; the 96-bit-IV, 128-bit-tag
//! case never comes here.

use crate::core::error::{err, Result};
use aws_lc_rs::cipher::{
    EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_192, AES_256,
};
use cryptoki_sys::*;
use ghash::universal_hash::{KeyInit, UniversalHash};
use ghash::GHash;

fn aes_ecb(key: &[u8], blocks: &mut [u8]) -> Result<()> {
    let alg = match key.len() {
        16 => &AES_128,
        24 => &AES_192,
        32 => &AES_256,
        _ => return Err(err(CKR_KEY_SIZE_RANGE)),
    };
    let k =
        EncryptingKey::ecb(UnboundCipherKey::new(alg, key).map_err(|_| err(CKR_KEY_SIZE_RANGE))?)
            .map_err(|_| err(CKR_GENERAL_ERROR))?;
    k.less_safe_encrypt(blocks, EncryptionContext::None)
        .map_err(|_| err(CKR_FUNCTION_FAILED))?;
    Ok(())
}

fn ghash(h: &[u8; 16], parts: &[&[u8]], lens: (u64, u64)) -> [u8; 16] {
    let mut g = GHash::new(h.into());
    for p in parts {
        g.update_padded(p);
    }
    let mut l = [0u8; 16];
    l[..8].copy_from_slice(&(lens.0 * 8).to_be_bytes());
    l[8..].copy_from_slice(&(lens.1 * 8).to_be_bytes());
    g.update_padded(&l);
    g.finalize().into()
}

/// XORs `data` with the keystream that starts at counter block inc32(j0).
fn ctr(key: &[u8], j0: &[u8; 16], data: &mut [u8]) -> Result<()> {
    let n = data.len().div_ceil(16);
    let mut stream = vec![0u8; n * 16];
    let base = u32::from_be_bytes([j0[12], j0[13], j0[14], j0[15]]);
    for (i, block) in stream.chunks_exact_mut(16).enumerate() {
        block[..12].copy_from_slice(&j0[..12]);
        // inc32: only the low 32 bits count, wrapping (SP 800-38D §6.2).
        block[12..].copy_from_slice(&base.wrapping_add(1 + i as u32).to_be_bytes());
    }
    aes_ecb(key, &mut stream)?;
    data.iter_mut().zip(&stream).for_each(|(d, s)| *d ^= s);
    Ok(())
}

/// Seals (`encrypt`) or opens `input`: the output is ciphertext || tag, or the plaintext.
pub fn run(
    key: &[u8],
    iv: &[u8],
    aad: &[u8],
    tag_len: usize,
    encrypt: bool,
    input: &[u8],
) -> Result<Vec<u8>> {
    let mut h = [0u8; 16];
    aes_ecb(key, &mut h)?;
    let j0: [u8; 16] = if iv.len() == 12 {
        let mut j = [0u8; 16];
        j[..12].copy_from_slice(iv);
        j[15] = 1;
        j
    } else {
        ghash(&h, &[iv], (0, iv.len() as u64))
    };
    let mut ek_j0 = j0;
    aes_ecb(key, &mut ek_j0)?;
    let tag_of = |ct: &[u8]| -> Vec<u8> {
        let s = ghash(&h, &[aad, ct], (aad.len() as u64, ct.len() as u64));
        s.iter()
            .zip(&ek_j0)
            .map(|(a, b)| a ^ b)
            .take(tag_len)
            .collect()
    };
    if encrypt {
        let mut out = input.to_vec();
        ctr(key, &j0, &mut out)?;
        let tag = tag_of(&out);
        out.extend_from_slice(&tag);
        Ok(out)
    } else {
        if input.len() < tag_len {
            return Err(err(CKR_ENCRYPTED_DATA_LEN_RANGE));
        }
        let (ct, tag) = input.split_at(input.len() - tag_len);
        if aws_lc_rs::constant_time::verify_slices_are_equal(&tag_of(ct), tag).is_err() {
            return Err(err(CKR_ENCRYPTED_DATA_INVALID));
        }
        let mut out = ct.to_vec();
        ctr(key, &j0, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

    #[test]
    fn agrees_with_aws_lc_for_96_bit_ivs() {
        let key = [7u8; 32];
        let iv = [9u8; 12];
        let aad = b"header";
        let msg = b"a message longer than one block, to cross blocks";
        let mine = run(&key, &iv, aad, 16, true, msg).unwrap();
        let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
        let mut theirs = msg.to_vec();
        k.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(aad),
            &mut theirs,
        )
        .unwrap();
        assert_eq!(mine, theirs);
        // A truncated tag is the leftmost bytes of the full one.
        let short = run(&key, &iv, aad, 12, true, msg).unwrap();
        assert_eq!(short[..], theirs[..theirs.len() - 4]);
        assert_eq!(
            run(&key, &iv, aad, 12, false, &short).unwrap(),
            msg.to_vec()
        );
    }

    #[test]
    fn nist_vector_with_a_64_byte_iv() {
        // NIST GCM test vectors (gcm-spec, test case 6): AES-128, 60-byte IV.
        let key = hex::decode("feffe9928665731c6d6a8f9467308308").unwrap();
        let iv = hex::decode("9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b").unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let pt = hex::decode("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39").unwrap();
        let out = run(&key, &iv, &aad, 16, true, &pt).unwrap();
        let (ct, tag) = out.split_at(pt.len());
        assert_eq!(hex::encode(ct), "8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca701e4a9a4fba43c90ccdcb281d48c7c6fd62875d2aca417034c34aee5");
        assert_eq!(hex::encode(tag), "619cc5aefffe0bfa462af43c1699d050");
        assert_eq!(run(&key, &iv, &aad, 16, false, &out).unwrap(), pt);
        let mut bad = out.clone();
        bad[0] ^= 1;
        assert_eq!(
            run(&key, &iv, &aad, 16, false, &bad).unwrap_err().rv(),
            CKR_ENCRYPTED_DATA_INVALID
        );
    }
}
