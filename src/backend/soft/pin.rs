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
#[cfg(test)]
pub fn make_record(pin: &[u8], mk: &MasterKey, iterations: u32) -> Result<PinRecord> {
    make_record_sealed(pin, mk, iterations, None)
}

/// A record that lets `pin` unwrap `mk`; with a seal, what the PIN wraps is the seal's
/// ciphertext of `mk`, so the files and the PIN alone do not give the key.
pub fn make_record_sealed(
    pin: &[u8],
    mk: &MasterKey,
    iterations: u32,
    seal: Option<&dyn StoreSeal>,
) -> Result<PinRecord> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| err(CKR_FUNCTION_FAILED))?;
    let inner: Zeroizing<Vec<u8>> = match seal {
        Some(s) => Zeroizing::new(s.seal(&mk[..])?.into_bytes()),
        None => Zeroizing::new(mk.to_vec()),
    };
    let k = kek(pin, &salt, iterations);
    Ok(PinRecord {
        salt: hex::encode(salt),
        iterations,
        wrapped: hex::encode(store::seal(&k, WRAP_AAD, &inner)?),
        sealed: seal.is_some(),
    })
}

/// What seals a soft token's master key outside the token (`[slot.seal]`: a transit
/// key). Each call reaches the service with its own deadline.
pub trait StoreSeal: Send + Sync {
    /// The key's name as written into `token.json`.
    fn key_name(&self) -> String;
    /// Encrypts the master key: a printable ciphertext (`vault:v<N>:...`).
    fn seal(&self, mk: &[u8]) -> Result<String>;
    /// Decrypts what `seal` made.
    fn open(&self, sealed: &str) -> Result<Zeroizing<Vec<u8>>>;
    /// A MAC of `context` under the seal key, with the key version of `like` when given
    /// (so that a rotation does not change the check), printable.
    fn check(&self, context: &[u8], like: Option<&str>) -> Result<String>;
}

/// The PIN layer of a record: the master key, or with `rec.sealed` its seal ciphertext.
/// `CKR_PIN_INCORRECT` when `pin` is wrong.
pub fn unwrap_pin_layer(rec: &PinRecord, pin: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let salt = hex::decode(&rec.salt).map_err(|_| err(CKR_DEVICE_ERROR))?;
    let sealed = hex::decode(&rec.wrapped).map_err(|_| err(CKR_DEVICE_ERROR))?;
    let k = kek(pin, &salt, rec.iterations);
    store::open(&k, WRAP_AAD, &sealed).ok_or_else(|| err(CKR_PIN_INCORRECT))
}

/// The master key from a record's PIN layer (opened by the seal when it is sealed).
pub fn master_key(
    rec: &PinRecord,
    layer: &[u8],
    seal: Option<&dyn StoreSeal>,
) -> Result<MasterKey> {
    let plain = if rec.sealed {
        let s = seal.ok_or_else(|| {
            crate::core::error::Error::logged(
                CKR_DEVICE_ERROR,
                "this soft token's key is sealed by transit: its slot needs its [slot.seal]",
            )
        })?;
        let text = std::str::from_utf8(layer).map_err(|_| err(CKR_DEVICE_ERROR))?;
        s.open(text)?
    } else {
        Zeroizing::new(layer.to_vec())
    };
    let arr: [u8; 32] = plain[..].try_into().map_err(|_| {
        crate::core::error::Error::logged(CKR_DEVICE_ERROR, "unsealed master key is not 32 bytes")
    })?;
    Ok(Zeroizing::new(arr))
}

/// The master key if `pin` is right; `CKR_PIN_INCORRECT` otherwise.
#[cfg(test)]
pub fn unwrap(rec: &PinRecord, pin: &[u8]) -> Result<MasterKey> {
    master_key(rec, &unwrap_pin_layer(rec, pin)?, None)
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
