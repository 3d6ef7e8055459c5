//! The answers of the remote key services, as hsmux parses them: Vault/OpenBao transit,
//! Google Cloud KMS, and the bytes hsmux decodes itself from AWS KMS (SPKI public keys,
//! ECDSA DER signatures) and any service's PEM.
//!
//! Byte 0 picks the service (0 Vault, 1 Cloud KMS, 2 AWS), byte 1 the answer within it
//! (see `hsmux::fuzzing`); the rest is the body as it came over the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [service, kind, body @ ..] = data else {
        return;
    };
    match service % 3 {
        0 => hsmux::fuzzing::vault_answer(*kind, body),
        1 => hsmux::fuzzing::gcp_answer(*kind, body),
        _ => hsmux::fuzzing::aws_answer(*kind, body),
    }
});
