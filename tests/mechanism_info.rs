//! C_GetMechanismInfo must match behaviour (PKCS#11 3.0 §5.5 C_GetMechanismInfo and the
//! CK_MECHANISM_INFO flags; issue 19, defect 7): every mechanism C_GetMechanismList gives
//! for a soft slot is tried at its smallest and its largest key size for every function
//! its flags name, and a key just outside the range is refused. A mechanism this walk does
//! not know fails the test, so that a new one cannot be listed untried.
//!
//! `print_mechanism_table` (run with `--ignored --nocapture`) prints the mechanism table
//! of docs/mechanisms.md from the same list.
#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;

fn list(m: &Module, slot: CK_SLOT_ID) -> Vec<(CK_MECHANISM_TYPE, CK_MECHANISM_INFO)> {
    let mut n: CK_ULONG = 0;
    assert_rv!(
        ck!(m, C_GetMechanismList(slot, std::ptr::null_mut(), &mut n)),
        CKR_OK
    );
    let mut ms = vec![0; n as usize];
    assert_rv!(
        ck!(m, C_GetMechanismList(slot, ms.as_mut_ptr(), &mut n)),
        CKR_OK
    );
    ms.into_iter()
        .map(|mt| {
            let mut info: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
            assert_rv!(ck!(m, C_GetMechanismInfo(slot, mt, &mut info)), CKR_OK);
            (mt, info)
        })
        .collect()
}

/// What a mechanism's keys are, for making one of a given size.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Keys {
    /// Secret keys of this type, sized in bytes.
    Secret(CK_KEY_TYPE),
    /// Generic secrets sized in bits (the SP 800-108 KDFs' base keys, §2.42).
    SecretBits,
    /// RSA key pairs, sized in modulus bits.
    Rsa,
    /// EC key pairs on the NIST curve of this many bits.
    Ec,
    /// Edwards (Ed25519, Ed448) or Montgomery (X25519, X448) key pairs, by curve bits.
    Edwards,
    Montgomery,
    /// ML-DSA / ML-KEM key pairs, by parameter set; sizes are the public keys' bytes.
    ParameterSet,
    /// No key (digests) or no size (derivations from any secret).
    None,
}

fn keys_of(mt: CK_MECHANISM_TYPE) -> Keys {
    let name = rv_free_name(mt);
    match name.as_str() {
        n if n.starts_with("CKM_AES") => Keys::Secret(CKK_AES),
        n if n.starts_with("CKM_DES3") => Keys::Secret(CKK_DES3),
        n if n.starts_with("CKM_DES_") => Keys::Secret(CKK_DES),
        n if n.contains("RSA") => Keys::Rsa,
        n if n.starts_with("CKM_SP800_108") => Keys::SecretBits,
        n if n.starts_with("CKM_ECDSA")
            || n == "CKM_EC_KEY_PAIR_GEN"
            || n == "CKM_ECDH1_DERIVE" =>
        {
            Keys::Ec
        }
        "CKM_EDDSA" | "CKM_EC_EDWARDS_KEY_PAIR_GEN" => Keys::Edwards,
        "CKM_EC_MONTGOMERY_KEY_PAIR_GEN" => Keys::Montgomery,
        n if n.starts_with("CKM_ML_DSA") || n.starts_with("CKM_ML_KEM") => Keys::ParameterSet,
        n if n.ends_with("HMAC") || n.ends_with("HMAC_GENERAL") || n.ends_with("KEY_GEN") => {
            Keys::Secret(CKK_GENERIC_SECRET)
        }
        "CKM_SHA_1" | "CKM_SHA224" | "CKM_SHA256" | "CKM_SHA384" | "CKM_SHA512" => Keys::None,
        n if n.starts_with("CKM_CONCATENATE")
            || n.starts_with("CKM_XOR")
            || n.starts_with("CKM_EXTRACT") =>
        {
            Keys::None
        }
        n => panic!("the mechanism-info walk does not know {n}: add it"),
    }
}

/// The spec name, from hsmux's own table (the CLI's).
fn rv_free_name(mt: CK_MECHANISM_TYPE) -> String {
    hsmux::core::mechname::name(mt).map_or_else(|| format!("0x{mt:x}"), str::to_string)
}

type Cache = std::collections::HashMap<String, (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)>;

/// [`make`], once per kind and size (RSA-4096 pairs take seconds to generate).
fn cached(
    m: &Module,
    h: CK_SESSION_HANDLE,
    cache: &mut Cache,
    keys: Keys,
    size: CK_ULONG,
) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE), CK_RV> {
    let k = format!("{keys:?}/{size}");
    if let Some(v) = cache.get(&k) {
        return Ok(*v);
    }
    let v = make(m, h, keys, size)?;
    cache.insert(k, v);
    Ok(v)
}

const EC_PARAMS: &[(CK_ULONG, &[u8])] = &[
    (256, P256_PARAMS),
    (384, P384_PARAMS),
    (521, &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23]),
];

/// A key (pair) of `size` for `keys`: (public or secret handle, private or secret handle),
/// or the return value of the generation.
fn make(
    m: &Module,
    h: CK_SESSION_HANDLE,
    keys: Keys,
    size: CK_ULONG,
) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE), CK_RV> {
    let pair = |mt, mut p: Template, mut s: Template| {
        let (mut a, mut b) = (0, 0);
        let mut mc = mech(mt);
        match ck!(
            m,
            C_GenerateKeyPair(
                h,
                &mut mc,
                p.ptr(),
                p.len(),
                s.ptr(),
                s.len(),
                &mut a,
                &mut b
            )
        ) {
            CKR_OK => Ok((a, b)),
            rv => Err(rv),
        }
    };
    match keys {
        Keys::Secret(kt) => {
            let mut t = Template::new()
                .ulong(CKA_CLASS, CKO_SECRET_KEY)
                .ulong(CKA_KEY_TYPE, kt)
                // Distinct bytes: DES3 refuses keys whose thirds are equal.
                .bytes(
                    CKA_VALUE,
                    &(0..size).map(|i| i as u8 ^ 0x42).collect::<Vec<_>>(),
                )
                .bool(CKA_DERIVE, true);
            let mut k = 0;
            match ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut k)) {
                CKR_OK => Ok((k, k)),
                rv => Err(rv),
            }
        }
        Keys::SecretBits => make(m, h, Keys::Secret(CKK_GENERIC_SECRET), size / 8),
        Keys::Rsa => pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            Template::new().ulong(CKA_MODULUS_BITS, size),
            Template::new(),
        ),
        Keys::Ec => {
            let params = EC_PARAMS
                .iter()
                .find(|(bits, _)| *bits == size)
                .map_or(&[0x06, 0x01, 0x00][..], |(_, p)| p);
            pair(
                CKM_EC_KEY_PAIR_GEN,
                Template::new().bytes(CKA_EC_PARAMS, params),
                Template::new().bool(CKA_DERIVE, true),
            )
        }
        Keys::Edwards | Keys::Montgomery => {
            // RFC 8410's OIDs: 1.3.101.110 X25519, .111 X448, .112 Ed25519, .113 Ed448.
            let (mt, last) = match (keys, size) {
                (Keys::Edwards, 256) => (CKM_EC_EDWARDS_KEY_PAIR_GEN, 0x70),
                (Keys::Edwards, 448) => (CKM_EC_EDWARDS_KEY_PAIR_GEN, 0x71),
                (Keys::Montgomery, 256) => (CKM_EC_MONTGOMERY_KEY_PAIR_GEN, 0x6e),
                (Keys::Montgomery, 448) => (CKM_EC_MONTGOMERY_KEY_PAIR_GEN, 0x6f),
                _ => return Err(CKR_CURVE_NOT_SUPPORTED),
            };
            pair(
                mt,
                Template::new().bytes(CKA_EC_PARAMS, &[0x06, 0x03, 0x2b, 0x65, last]),
                Template::new().bool(CKA_DERIVE, true),
            )
        }
        // Not made here: tests/pqc.rs walks every parameter set.
        Keys::None | Keys::ParameterSet => Ok((0, 0)),
    }
}

/// The parameter a mechanism needs, as bytes of its C structure (pointers inside point
/// into `keep`).
fn param(mt: CK_MECHANISM_TYPE, keep: &mut Vec<Vec<u8>>) -> Vec<u8> {
    fn raw<T>(v: &T) -> Vec<u8> {
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
            .to_vec()
    }
    let hash_of = |mt| match mt {
        CKM_SHA384_RSA_PKCS_PSS => (CKM_SHA384, CKG_MGF1_SHA384, 48),
        // A 32-byte salt: with SHA-512 it still fits a 1024-bit modulus (RFC 8017 §9.1.1:
        // emLen 128 >= hLen 64 + sLen + 2).
        CKM_SHA512_RSA_PKCS_PSS => (CKM_SHA512, CKG_MGF1_SHA512, 32),
        _ => (CKM_SHA256, CKG_MGF1_SHA256, 32),
    };
    match mt {
        CKM_AES_CBC | CKM_AES_CBC_PAD => vec![7; 16],
        CKM_DES3_CBC | CKM_DES3_CBC_PAD | CKM_DES_CBC | CKM_DES_CBC_PAD => vec![7; 8],
        CKM_AES_CTR => raw(&CK_AES_CTR_PARAMS {
            ulCounterBits: 128,
            cb: [1; 16],
        }),
        CKM_AES_GCM => {
            keep.push(vec![9; 12]);
            let iv = keep.last_mut().unwrap().as_mut_ptr();
            raw(&CK_GCM_PARAMS {
                pIv: iv,
                ulIvLen: 12,
                ulIvBits: 96,
                pAAD: std::ptr::null_mut(),
                ulAADLen: 0,
                ulTagBits: 128,
            })
        }
        CKM_AES_CMAC_GENERAL
        | CKM_SHA256_HMAC_GENERAL
        | CKM_SHA384_HMAC_GENERAL
        | CKM_SHA512_HMAC_GENERAL => raw(&(16 as CK_ULONG)),
        CKM_RSA_PKCS_OAEP => raw(&CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            source: CKZ_DATA_SPECIFIED,
            pSourceData: std::ptr::null_mut(),
            ulSourceDataLen: 0,
        }),
        CKM_RSA_PKCS_PSS
        | CKM_SHA256_RSA_PKCS_PSS
        | CKM_SHA384_RSA_PKCS_PSS
        | CKM_SHA512_RSA_PKCS_PSS => {
            let (h, g, l) = hash_of(mt);
            raw(&CK_RSA_PKCS_PSS_PARAMS {
                hashAlg: h,
                mgf: g,
                sLen: l,
            })
        }
        _ => Vec::new(),
    }
}

fn with_param(mt: CK_MECHANISM_TYPE, p: &mut [u8]) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: mt,
        pParameter: if p.is_empty() {
            std::ptr::null_mut()
        } else {
            p.as_mut_ptr().cast()
        },
        ulParameterLen: p.len() as CK_ULONG,
    }
}

/// The input a sign or encrypt mechanism takes: a hash for the raw ones.
fn input_for(mt: CK_MECHANISM_TYPE) -> Vec<u8> {
    match mt {
        CKM_RSA_PKCS_PSS => vec![5; 32],
        CKM_ECDSA => vec![5; 32],
        CKM_RSA_PKCS => {
            // A DigestInfo of SHA-256 (signs and encrypts alike).
            let mut d = vec![
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ];
            d.extend([5; 32]);
            d
        }
        CKM_AES_ECB | CKM_AES_CBC => vec![5; 32],
        _ => vec![5; 40],
    }
}

/// Tries `mt` with keys of `size`; what went wrong, if anything.
fn exercise(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mt: CK_MECHANISM_TYPE,
    info: &CK_MECHANISM_INFO,
    size: CK_ULONG,
    cache: &mut Cache,
) -> Result<(), String> {
    let keys = keys_of(mt);
    let fail = |what: &str, rv: CK_RV| format!("{what}: {}", rv_name(rv));
    let mut keep = Vec::new();
    let mut p = param(mt, &mut keep);
    let (public, private) = if info.flags & (CKF_GENERATE | CKF_GENERATE_KEY_PAIR) != 0 {
        if let Keys::Secret(_) = keys {
            let mut t = Template::new().ulong(CKA_VALUE_LEN, size);
            let mut k = 0;
            let mut mc = with_param(mt, &mut p);
            let rv = ck!(m, C_GenerateKey(h, &mut mc, t.ptr(), t.len(), &mut k));
            return (rv == CKR_OK)
                .then_some(())
                .ok_or(fail("C_GenerateKey", rv));
        }
        make(m, h, keys, size).map_err(|rv| fail("C_GenerateKeyPair", rv))?
    } else {
        cached(m, h, cache, keys, size).map_err(|rv| fail("making a key", rv))?
    };
    let data = input_for(mt);
    if info.flags & CKF_SIGN != 0 {
        let sig =
            sign(m, h, with_param(mt, &mut p), private, &data).map_err(|rv| fail("C_Sign", rv))?;
        let rv = verify(m, h, with_param(mt, &mut p), public, &data, &sig);
        if rv != CKR_OK {
            return Err(fail("C_Verify", rv));
        }
    }
    if info.flags & CKF_ENCRYPT != 0 {
        let data = if mt == CKM_RSA_PKCS {
            vec![5; 32]
        } else {
            data.clone()
        };
        let ct = encrypt(m, h, with_param(mt, &mut p), public, &data)
            .map_err(|rv| fail("C_Encrypt", rv))?;
        let pt = decrypt(m, h, with_param(mt, &mut p), private, &ct)
            .map_err(|rv| fail("C_Decrypt", rv))?;
        if pt != data {
            return Err("decryption did not give the plaintext back".into());
        }
    }
    if info.flags & CKF_WRAP != 0 {
        let mut t = Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_AES)
            .bytes(CKA_VALUE, &[0x24; 16])
            .bool(CKA_EXTRACTABLE, true);
        let mut target = 0;
        assert_rv!(
            ck!(m, C_CreateObject(h, t.ptr(), t.len(), &mut target)),
            CKR_OK
        );
        let mut mc = with_param(mt, &mut p);
        let wrapped = two_call(|o, n| ck!(m, C_WrapKey(h, &mut mc, public, target, o, n)))
            .map_err(|rv| fail("C_WrapKey", rv))?;
        let mut t = Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_AES);
        let mut k = 0;
        let rv = ck!(
            m,
            C_UnwrapKey(
                h,
                &mut mc,
                private,
                wrapped.as_ptr() as *mut _,
                wrapped.len() as CK_ULONG,
                t.ptr(),
                t.len(),
                &mut k
            )
        );
        if rv != CKR_OK {
            return Err(fail("C_UnwrapKey", rv));
        }
    }
    if info.flags & CKF_DIGEST != 0 {
        let mut mc = mech(mt);
        assert_rv!(ck!(m, C_DigestInit(h, &mut mc)), CKR_OK);
        two_call(|o, n| ck!(m, C_Digest(h, data.as_ptr() as *mut _, 40, o, n)))
            .map_err(|rv| fail("C_Digest", rv))?;
    }
    if info.flags & CKF_DERIVE != 0 && keys != Keys::Ec {
        return derive_from_secret(m, h, mt, private).map_err(|rv| fail("C_DeriveKey", rv));
    }
    if info.flags & CKF_DERIVE != 0 {
        let (peer, _) = make(m, h, Keys::Ec, size).unwrap();
        let point = get_attr(m, h, peer, CKA_EC_POINT).unwrap();
        let mut e = CK_ECDH1_DERIVE_PARAMS {
            kdf: CKD_NULL,
            ulSharedDataLen: 0,
            pSharedData: std::ptr::null_mut(),
            ulPublicDataLen: point.len() as CK_ULONG,
            pPublicData: point.as_ptr() as *mut _,
        };
        let mut t = Template::new()
            .ulong(CKA_CLASS, CKO_SECRET_KEY)
            .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET);
        let mut k = 0;
        let rv = ck!(
            m,
            C_DeriveKey(
                h,
                &mut mech_with(mt, &mut e),
                private,
                t.ptr(),
                t.len(),
                &mut k
            )
        );
        if rv != CKR_OK {
            return Err(fail("C_DeriveKey", rv));
        }
    }
    Ok(())
}

/// A derivation from a secret key (`base`) with its parameter.
fn derive_from_secret(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mt: CK_MECHANISM_TYPE,
    base: CK_OBJECT_HANDLE,
) -> Result<(), CK_RV> {
    let mut secret = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bytes(CKA_VALUE, &[0x33; 16])
        .bool(CKA_DERIVE, true);
    let (mut base, mut other) = (base, 0);
    assert_rv!(
        ck!(m, C_CreateObject(h, secret.ptr(), secret.len(), &mut other)),
        CKR_OK
    );
    if base == 0 {
        base = other;
    }
    let mut data = [0x44u8; 16];
    let mut sd = CK_KEY_DERIVATION_STRING_DATA {
        pData: data.as_mut_ptr(),
        ulLen: 16,
    };
    let mut cbc = CK_AES_CBC_ENCRYPT_DATA_PARAMS {
        iv: [1; 16],
        pData: data.as_mut_ptr(),
        length: 16,
    };
    let mut bit: CK_ULONG = 3;
    // SP 800-108 with HMAC-SHA256: the iteration variable (a 32-bit counter in counter
    // mode), then a label.
    let mut counter = CK_SP800_108_COUNTER_FORMAT {
        bLittleEndian: 0,
        ulWidthInBits: 32,
    };
    let counter_mode = mt == CKM_SP800_108_COUNTER_KDF;
    let mut fields = [
        CK_PRF_DATA_PARAM {
            type_: CK_SP800_108_ITERATION_VARIABLE,
            pValue: if counter_mode {
                &mut counter as *mut _ as *mut _
            } else {
                std::ptr::null_mut()
            },
            ulValueLen: if counter_mode {
                std::mem::size_of_val(&counter) as CK_ULONG
            } else {
                0
            },
        },
        CK_PRF_DATA_PARAM {
            type_: CK_SP800_108_BYTE_ARRAY,
            pValue: data.as_mut_ptr() as *mut _,
            ulValueLen: 16,
        },
    ];
    let mut kdf = CK_SP800_108_KDF_PARAMS {
        prfType: CKM_SHA256_HMAC,
        ulNumberOfDataParams: 2,
        pDataParams: fields.as_mut_ptr(),
        ulAdditionalDerivedKeys: 0,
        pAdditionalDerivedKeys: std::ptr::null_mut(),
    };
    let mut feedback = CK_SP800_108_FEEDBACK_KDF_PARAMS {
        prfType: CKM_SHA256_HMAC,
        ulNumberOfDataParams: 2,
        pDataParams: fields.as_mut_ptr(),
        ulIVLen: 0,
        pIV: std::ptr::null_mut(),
        ulAdditionalDerivedKeys: 0,
        pAdditionalDerivedKeys: std::ptr::null_mut(),
    };
    let mut mc = match mt {
        CKM_SP800_108_COUNTER_KDF | CKM_SP800_108_DOUBLE_PIPELINE_KDF => mech_with(mt, &mut kdf),
        CKM_SP800_108_FEEDBACK_KDF => mech_with(mt, &mut feedback),
        CKM_CONCATENATE_BASE_AND_KEY => mech_with(mt, &mut other),
        CKM_EXTRACT_KEY_FROM_KEY => mech_with(mt, &mut bit),
        CKM_AES_CBC_ENCRYPT_DATA => mech_with(mt, &mut cbc),
        _ => mech_with(mt, &mut sd),
    };
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .ulong(CKA_VALUE_LEN, 8);
    let mut k = 0;
    match ck!(m, C_DeriveKey(h, &mut mc, base, t.ptr(), t.len(), &mut k)) {
        CKR_OK => Ok(()),
        rv => Err(rv),
    }
}

#[test]
fn every_listed_mechanism_works_at_its_smallest_and_largest_key_size() {
    let m = shared();
    let h = user_session(m, 0);
    let mut failures = Vec::new();
    let mut cache = Cache::new();
    for (mt, info) in list(m, 0) {
        let name = rv_free_name(mt);
        if matches!(
            mt,
            CKM_ML_DSA | CKM_ML_DSA_KEY_PAIR_GEN | CKM_ML_KEM | CKM_ML_KEM_KEY_PAIR_GEN
        ) {
            // Sized by parameter set, not by a key length: tests/pqc.rs walks every set.
            continue;
        }
        let sized = !matches!(keys_of(mt), Keys::None | Keys::Edwards | Keys::Montgomery)
            && info.flags & CKF_DERIVE == 0;
        if info.ulMinKeySize > info.ulMaxKeySize {
            failures.push(format!("{name}: min {} > max", info.ulMinKeySize));
        }
        if keys_of(mt) == Keys::None {
            // Digests and derivations from any secret: no key size to walk; tried once.
            if let Err(e) = exercise(m, h, mt, &info, 16, &mut cache) {
                failures.push(format!("{name}: {e}"));
            }
            continue;
        }
        for size in [info.ulMinKeySize, info.ulMaxKeySize] {
            if let Err(e) = exercise(m, h, mt, &info, size, &mut cache) {
                failures.push(format!("{name} at {size}: {e}"));
            }
        }
        // Just outside the range: a key (or generation) the mechanism must refuse.
        if sized && info.flags & (CKF_GENERATE | CKF_GENERATE_KEY_PAIR) != 0 {
            for size in [info.ulMinKeySize - 1, info.ulMaxKeySize + 1] {
                if exercise(m, h, mt, &info, size, &mut cache).is_ok() {
                    failures.push(format!(
                        "{name} generated a key of {size}, outside its range"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "mechanism info does not match behaviour:\n{}",
        failures.join("\n")
    );
}

/// docs/mechanisms.md's "Mechanisms of the soft token" table, from C_GetMechanismList and
/// C_GetMechanismInfo (`cargo test --release --test mechanism_info -- --ignored --nocapture`).
#[test]
#[ignore = "prints the docs/mechanisms.md table"]
fn print_mechanism_table() {
    let m = shared();
    init_slot(m, 1);
    let flags: &[(CK_FLAGS, &str)] = &[
        (CKF_ENCRYPT, "encrypt"),
        (CKF_DECRYPT, "decrypt"),
        (CKF_SIGN, "sign"),
        (CKF_VERIFY, "verify"),
        (CKF_DIGEST, "digest"),
        (CKF_GENERATE, "generate"),
        (CKF_GENERATE_KEY_PAIR, "generate pair"),
        (CKF_WRAP, "wrap"),
        (CKF_UNWRAP, "unwrap"),
        (CKF_DERIVE, "derive"),
        (CKF_ENCAPSULATE, "encapsulate"),
        (CKF_DECAPSULATE, "decapsulate"),
    ];
    println!("| mechanism | key sizes | functions |\n|---|---|---|");
    for (mt, info) in list(m, 1) {
        let unit = match keys_of(mt) {
            Keys::Secret(_) => " bytes",
            Keys::SecretBits => " bits",
            Keys::ParameterSet => " bytes (public key)",
            Keys::None => "",
            _ => " bits",
        };
        let sizes = if info.ulMaxKeySize == 0 {
            "-".to_string()
        } else if info.ulMinKeySize == info.ulMaxKeySize {
            format!("{}{unit}", info.ulMinKeySize)
        } else {
            format!("{}-{}{unit}", info.ulMinKeySize, info.ulMaxKeySize)
        };
        let fns: Vec<&str> = flags
            .iter()
            .filter(|(f, _)| info.flags & f != 0)
            .map(|(_, n)| *n)
            .collect();
        println!("| `{}` | {sizes} | {} |", rv_free_name(mt), fns.join(", "));
    }
}
