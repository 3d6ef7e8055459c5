//! PINs of the software token: the master key wrapped under PBKDF2-HMAC-SHA256(PIN).

use super::store::{self, PinRecord};
use crate::core::error::{err, Result};
use aws_lc_rs::pbkdf2;
use cryptoki_sys::*;
use std::num::NonZeroU32;
use zeroize::Zeroizing;

pub type MasterKey = Zeroizing<[u8; 32]>;

/// Default PBKDF2 iterations: about 50 ms on a current server core, so that a stolen store
/// costs an attacker that per guess while a login stays well under the 100 ms budget.
pub const DEFAULT_ITERATIONS: u32 = 200_000;

const WRAP_AAD: &[u8] = b"hsmux-soft master key";

fn kek(pin: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<[u8; 32]> {
    let mut k = Zeroizing::new([0u8; 32]);
    let n = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, n, salt, pin, &mut k[..]);
    k
}

pub fn new_master_key() -> Result<MasterKey> {
    let mut k = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut k[..]).map_err(|_| err(CKR_FUNCTION_FAILED))?;
    Ok(k)
}

/// A record that lets `pin` unwrap `mk`.
pub fn make_record(pin: &[u8], mk: &MasterKey, iterations: u32) -> Result<PinRecord> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| err(CKR_FUNCTION_FAILED))?;
    let k = kek(pin, &salt, iterations);
    Ok(PinRecord {
        salt: hex::encode(salt),
        iterations,
        wrapped: hex::encode(store::seal(&k, WRAP_AAD, &mk[..])?),
    })
}

/// The master key if `pin` is right; `CKR_PIN_INCORRECT` otherwise.
pub fn unwrap(rec: &PinRecord, pin: &[u8]) -> Result<MasterKey> {
    let salt = hex::decode(&rec.salt).map_err(|_| err(CKR_DEVICE_ERROR))?;
    let sealed = hex::decode(&rec.wrapped).map_err(|_| err(CKR_DEVICE_ERROR))?;
    let k = kek(pin, &salt, rec.iterations);
    let plain = store::open(&k, WRAP_AAD, &sealed).ok_or_else(|| err(CKR_PIN_INCORRECT))?;
    let arr: [u8; 32] = plain[..].try_into().map_err(|_| err(CKR_DEVICE_ERROR))?;
    Ok(Zeroizing::new(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_pin_unwraps_wrong_pin_does_not() {
        let mk = new_master_key().unwrap();
        let rec = make_record(b"1234", &mk, 1000).unwrap();
        assert_eq!(&unwrap(&rec, b"1234").unwrap()[..], &mk[..]);
        assert_eq!(unwrap(&rec, b"1235").unwrap_err().rv(), CKR_PIN_INCORRECT);
    }
}
