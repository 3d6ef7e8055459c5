//! Cloud KMS's integrity fields: CRC32C (Castagnoli) checksums of every byte field a
//! request sends and an answer returns. The service checks the ones we send (and says so in
//! `verified*Crc32c`); we check the ones it returns, so that a bit flipped anywhere between
//! the HSM and the consumer is an error instead of a wrong signature or plaintext.

use crate::backend::remote::http::malformed;
use crate::core::error::Result;
use serde::{Deserialize, Deserializer};

/// The checksum of `data` as the API writes it: an `Int64Value`, which proto3 JSON renders
/// as a decimal string.
pub fn field(data: &[u8]) -> String {
    crc32c::crc32c(data).to_string()
}

/// An `Int64Value` checksum as read: the service writes a string, a number is accepted too.
/// A value that is not a 32-bit unsigned integer fails the parse (a malformed answer).
pub fn de_opt<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Text(String),
        Number(u64),
    }
    let v: Option<Int64> = Option::deserialize(d)?;
    let n = match v {
        None => return Ok(None),
        Some(Int64::Text(s)) => s.parse::<u64>().map_err(serde::de::Error::custom)?,
        Some(Int64::Number(n)) => n,
    };
    u32::try_from(n)
        .map(Some)
        .map_err(|_| serde::de::Error::custom("checksum above 2^32-1"))
}

/// Checks a returned checksum against the bytes it covers; an absent one is as bad as a
/// wrong one (the service always sends them).
pub fn check(what: &str, name: &str, got: Option<u32>, data: &[u8]) -> Result<()> {
    match got {
        Some(c) if c == crc32c::crc32c(data) => Ok(()),
        Some(_) => Err(malformed(what, format!("{name} does not match the data"))),
        None => Err(malformed(what, format!("{name} is missing"))),
    }
}

/// Checks that the service verified a checksum we sent (`verified*Crc32c`): false means the
/// request arrived altered and the answer must not be used.
pub fn verified(what: &str, name: &str, flag: bool) -> Result<()> {
    if flag {
        Ok(())
    } else {
        Err(malformed(
            what,
            format!("{name} is false: the service did not verify our checksum"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "de_opt")]
        c: Option<u32>,
    }

    #[test]
    fn checksums_are_castagnoli_and_read_in_both_json_forms() {
        // The CRC32C check value of RFC 3720 (iSCSI), as the service computes it.
        assert_eq!(field(b"123456789"), "3808858755");
        assert_eq!(field(b""), "0");
        let t: T = serde_json::from_str(r#"{"c":"3808858755"}"#).unwrap();
        assert_eq!(t.c, Some(0xe306_9283));
        let t: T = serde_json::from_str(r#"{"c":3808858755}"#).unwrap();
        assert_eq!(t.c, Some(0xe306_9283));
        let t: T = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(t.c, None);
        assert!(serde_json::from_str::<T>(r#"{"c":"4294967296"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"c":"x"}"#).is_err());
        assert!(check("t", "c", Some(0xe306_9283), b"123456789").is_ok());
        assert!(check("t", "c", Some(1), b"123456789").is_err());
        assert!(check("t", "c", None, b"").is_err());
    }
}
