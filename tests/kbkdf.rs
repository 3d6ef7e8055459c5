//! SP 800-108 KBKDF (PKCS#11 3.0 §2.42, issue 19) through the C ABI of libhsmux.so:
//! counter and feedback mode against NIST CAVP vectors (KDFCTR_gen / KDFFeedback), every
//! mode and encoding (counter widths and byte order, DKM length methods, IV, additional
//! derived keys on disjoint segments) against an independent HMAC (RustCrypto `hmac`), and
//! the parameter, attribute and key rules with the spec's return codes.

#![allow(clippy::macro_metavars_in_unsafe)]
mod common;
use common::*;
use cryptoki_sys::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// One data field as the test describes it.
#[derive(Clone)]
enum Field {
    /// The iteration variable: with a counter format (width bits, little endian) in counter
    /// mode, without one in the chained modes.
    Iter(Option<(CK_ULONG, bool)>),
    Counter(CK_ULONG, bool),
    /// DKM length: method, width bits, little endian.
    Dkm(CK_ULONG, CK_ULONG, bool),
    Bytes(Vec<u8>),
}

/// A KBKDF parameter with everything it points to, kept alive and at fixed addresses (the
/// boxes: the parameter holds their addresses while the vectors grow).
#[allow(clippy::vec_box)]
struct Kdf {
    counters: Vec<Box<CK_SP800_108_COUNTER_FORMAT>>,
    dkms: Vec<Box<CK_SP800_108_DKM_LENGTH_FORMAT>>,
    bytes: Vec<Vec<u8>>,
    data: Vec<CK_PRF_DATA_PARAM>,
    templates: Vec<Template>,
    derived: Vec<CK_DERIVED_KEY>,
    handles: Vec<Box<CK_OBJECT_HANDLE>>,
    iv: Vec<u8>,
    counter: CK_SP800_108_KDF_PARAMS,
    feedback: CK_SP800_108_FEEDBACK_KDF_PARAMS,
}

impl Kdf {
    fn new(prf: CK_MECHANISM_TYPE, fields: &[Field], iv: &[u8], extra: Vec<Template>) -> Box<Kdf> {
        let mut k = Box::new(Kdf {
            counters: Vec::new(),
            dkms: Vec::new(),
            bytes: Vec::new(),
            data: Vec::new(),
            templates: extra,
            derived: Vec::new(),
            handles: Vec::new(),
            iv: iv.to_vec(),
            counter: unsafe { std::mem::zeroed() },
            feedback: unsafe { std::mem::zeroed() },
        });
        for f in fields {
            let (type_, p, len): (CK_ULONG, *mut std::ffi::c_void, usize) = match f {
                Field::Iter(None) => (CK_SP800_108_ITERATION_VARIABLE, std::ptr::null_mut(), 0),
                Field::Iter(Some((w, le))) | Field::Counter(w, le) => {
                    let mut c = Box::new(CK_SP800_108_COUNTER_FORMAT {
                        bLittleEndian: *le as CK_BBOOL,
                        ulWidthInBits: *w,
                    });
                    let p = &mut *c as *mut _ as *mut _;
                    k.counters.push(c);
                    let t = if matches!(f, Field::Iter(_)) {
                        CK_SP800_108_ITERATION_VARIABLE
                    } else {
                        CK_SP800_108_COUNTER
                    };
                    (t, p, std::mem::size_of::<CK_SP800_108_COUNTER_FORMAT>())
                }
                Field::Dkm(method, w, le) => {
                    let mut d = Box::new(CK_SP800_108_DKM_LENGTH_FORMAT {
                        dkmLengthMethod: *method,
                        bLittleEndian: *le as CK_BBOOL,
                        ulWidthInBits: *w,
                    });
                    let p = &mut *d as *mut _ as *mut _;
                    k.dkms.push(d);
                    (
                        CK_SP800_108_DKM_LENGTH,
                        p,
                        std::mem::size_of::<CK_SP800_108_DKM_LENGTH_FORMAT>(),
                    )
                }
                Field::Bytes(b) => {
                    k.bytes.push(b.clone());
                    let last = k.bytes.last_mut().unwrap();
                    (
                        CK_SP800_108_BYTE_ARRAY,
                        last.as_mut_ptr() as *mut _,
                        last.len(),
                    )
                }
            };
            k.data.push(CK_PRF_DATA_PARAM {
                type_,
                pValue: p,
                ulValueLen: len as CK_ULONG,
            });
        }
        for i in 0..k.templates.len() {
            k.handles.push(Box::new(0xdead_beef));
            let ph = &mut *k.handles[i] as *mut CK_OBJECT_HANDLE;
            let t = &mut k.templates[i];
            let d = CK_DERIVED_KEY {
                pTemplate: t.ptr(),
                ulAttributeCount: t.len(),
                phKey: ph,
            };
            k.derived.push(d);
        }
        let (data, n) = (k.data.as_mut_ptr(), k.data.len() as CK_ULONG);
        let (keys, nk) = match k.derived.len() {
            0 => (std::ptr::null_mut(), 0),
            n => (k.derived.as_mut_ptr(), n as CK_ULONG),
        };
        let (ivp, ivn) = match k.iv.len() {
            0 => (std::ptr::null_mut(), 0),
            n => (k.iv.as_mut_ptr(), n as CK_ULONG),
        };
        k.counter = CK_SP800_108_KDF_PARAMS {
            prfType: prf,
            ulNumberOfDataParams: n,
            pDataParams: data,
            ulAdditionalDerivedKeys: nk,
            pAdditionalDerivedKeys: keys,
        };
        k.feedback = CK_SP800_108_FEEDBACK_KDF_PARAMS {
            prfType: prf,
            ulNumberOfDataParams: n,
            pDataParams: data,
            ulIVLen: ivn,
            pIV: ivp,
            ulAdditionalDerivedKeys: nk,
            pAdditionalDerivedKeys: keys,
        };
        k
    }

    fn mech(&mut self, t: CK_MECHANISM_TYPE) -> CK_MECHANISM {
        if t == CKM_SP800_108_FEEDBACK_KDF {
            mech_with(t, &mut self.feedback)
        } else {
            mech_with(t, &mut self.counter)
        }
    }

    fn handles(&self) -> Vec<CK_OBJECT_HANDLE> {
        self.handles.iter().map(|h| **h).collect()
    }
}

/// A base key holding `value`: AES for CMAC, a generic secret for HMAC.
fn base(m: &Module, h: CK_SESSION_HANDLE, kt: CK_KEY_TYPE, value: &[u8]) -> CK_OBJECT_HANDLE {
    let t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, kt)
        .bytes(CKA_VALUE, value)
        .bool(CKA_DERIVE, true)
        .bool(CKA_TOKEN, false);
    try_create(m, h, t).unwrap()
}

fn out_template(len: CK_ULONG) -> Template {
    Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .ulong(CKA_VALUE_LEN, len)
        .bool(CKA_EXTRACTABLE, true)
}

/// C_DeriveKey of `mt` over `kdf` into an extractable generic secret of `len` bytes:
/// the main key's value, or the return value.
fn run(
    m: &Module,
    h: CK_SESSION_HANDLE,
    mt: CK_MECHANISM_TYPE,
    kdf: &mut Kdf,
    base: CK_OBJECT_HANDLE,
    len: CK_ULONG,
) -> Result<Vec<u8>, CK_RV> {
    let mut mc = kdf.mech(mt);
    derive(m, h, &mut mc, base, len)
}

/// NIST CAVP KDFCTR_gen.rsp, CTRLOCATION=BEFORE_FIXED: (PRF, RLEN, KI, FixedInputData, KO).
const CAVP_COUNTER: &[(CK_MECHANISM_TYPE, CK_ULONG, &str, &str, &str)] = &[
    (CKM_SHA_1_HMAC, 32, "f7591733c856593565130975351954d0155abf3c",
     "8e347ef55d5f5e99eab6de706b51de7ce004f3882889e259ff4e5cff102167a5a4bd711578d4ce17dd9abe56e51c1f2df950e2fc812ec1b217ca08d6",
     "34fe44b0d8c41b93f5fa64fb96f00e5b"),
    (CKM_SHA_1_HMAC, 32, "693adb9037184627ad300f176985bd379f388a95",
     "7f09570c2d9304ec743ab845a8761c126c18f5cf72358eada2b5d1deb43dc6a0f4ff8f933bef7af0bcfacb33fa07f8ca04a06afe231835d5075996be",
     "52f55f51010e9bd78e4f58cab274ecafa561bd4e0f20da84f0303a1e5ff9bebc514361ec6df5c77e"),
    (CKM_SHA256_HMAC, 32, "dd1d91b7d90b2bd3138533ce92b272fbf8a369316aefe242e659cc0ae238afe0",
     "01322b96b30acd197979444e468e1c5c6859bf1b1cf951b7e725303e237e46b864a145fab25e517b08f8683d0315bb2911d80a0e8aba17f3b413faac",
     "10621342bfb0fd40046c0e29f2cfdbf0"),
    (CKM_SHA256_HMAC, 32, "c4bedbddb66493e7c7259a3bbbc25f8c7e0ca7fe284d92d431d9cd99a0d214ac",
     "1c69c54766791e315c2cc5c47ecd3ffab87d0d273dd920e70955814c220eacace6a5946542da3dfe24ff626b4897898cafb7db83bdff3c14fa46fd4b",
     "1da47638d6c9c4d04d74d4640bbd42ab814d9e8cc22f4326695239f96b0693f12d0dd1152cf44430"),
    (CKM_SHA256_HMAC, 8, "2ce3a4a13bbf845a38999ef3c2a68385355fbbb0d6997c0bea7c3fecdc7f6745",
     "8505879d9c93d0b66a29a4d334c257a7824538ebcf151c0b55de0b757dda28fd462c17cbdd8b529f9c183b786385499ff61fa1b736fb1579cf2f8e88",
     "ee9a34656d9d98384f49d35f088cd674"),
    (CKM_SHA384_HMAC, 32, "8fca201473433f2dc8f6ae51e48de1a5654ce687e711d2d65f0dc5da6fee9a6a3db9d8535d3e4455ab53d35850c88272",
     "195bd88aa2d4211912334fe2fd9bd24522f7d9fb08e04747609bc34f2538089a9d28bbc70b2e1336c3643753cec6e5cd3f246caa915e3c3a6b94d3b6",
     "f51ac86b0f462388d189ed0197ef99c2ff3a65816d8442e5ea304397b98dd11f"),
    (CKM_SHA512_HMAC, 32, "a9f4a2c5af839867f5db5a1e520ab3cca72a166ca60de512fd7fe7e64cf94f92cf1d8b636175f293e003275e021018c3f0ede495997a505ec9a2afeb0495be57",
     "8e9db3335779db688bcfe096668d9c3bc64e193e3529c430e68d09d56c837dd6c0f94678f121a68ee1feea4735da85a49d34a5290aa39f7b40de435f",
     "6db880daac98b078ee389a2164252ded61322d661e2b49247ea921e544675d8f17af2bf66dd40d81"),
    (CKM_AES_CMAC, 32, "c10b152e8c97b77e18704e0f0bd38305",
     "98cd4cbbbebe15d17dc86e6dbad800a2dcbd64f7c7ad0e78e9cf94ffdba89d03e97eadf6c4f7b806caf52aa38f09d0eb71d71f497bcc6906b48d36c4",
     "26faf61908ad9ee881b8305c221db53f"),
];

#[test]
fn counter_mode_matches_nist_cavp_vectors() {
    let m = shared();
    let h = user_session(m, 0);
    for (prf, rlen, ki, fixed, ko) in CAVP_COUNTER {
        let kt = if *prf == CKM_AES_CMAC {
            CKK_AES
        } else {
            CKK_GENERIC_SECRET
        };
        let b = base(m, h, kt, &hex(ki));
        let fields = [Field::Iter(Some((*rlen, false))), Field::Bytes(hex(fixed))];
        let mut kdf = Kdf::new(*prf, &fields, &[], Vec::new());
        let want = hex(ko);
        let got = run(
            m,
            h,
            CKM_SP800_108_COUNTER_KDF,
            &mut kdf,
            b,
            want.len() as CK_ULONG,
        );
        assert_eq!(
            got.map(hex::encode),
            Ok(hex::encode(&want)),
            "PRF 0x{prf:x} KI {ki}"
        );
    }
}

/// NIST CAVP KDFFeedback (zero-length IV), PRF=CMAC_AES128, CTRLOCATION=AFTER_ITER,
/// RLEN=16_BITS: K(i) = PRF(KI, K(i-1) || [i]16 || FixedInputData), four segments.
#[test]
fn feedback_mode_matches_a_nist_cavp_vector() {
    let m = shared();
    let h = user_session(m, 1);
    let b = base(m, h, CKK_AES, &hex("d7f5fa7551645de0b36aecd46565f954"));
    let fixed = hex("fb5294ed40a0e4aa70a7be13913070a4c5cfc05f89b9f7dd26a493b8c63889c7c3b0b60dd6d598ffa296a426224c727a501946");
    let fields = [
        Field::Iter(None),
        Field::Counter(16, false),
        Field::Bytes(fixed),
    ];
    let mut kdf = Kdf::new(CKM_AES_CMAC, &fields, &[], Vec::new());
    let got = run(m, h, CKM_SP800_108_FEEDBACK_KDF, &mut kdf, b, 64).unwrap();
    assert_eq!(
        hex::encode(got),
        "7164471f559812581a53aaf7fb6d6c53a1293115cda873887efcc7ce6b3a026b2d19f0d38db8590e218a2676df88f53cab3313ed63bd1e4828f3c066ea5eb1fd"
    );
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `v` in `bytes` bytes, big or little endian.
fn enc(v: u64, bytes: usize, le: bool) -> Vec<u8> {
    let mut b = v.to_be_bytes()[8 - bytes..].to_vec();
    if le {
        b.reverse();
    }
    b
}

const KEY: &[u8] = b"an HMAC key of thirty-two bytes!";

/// The spec's multi-key example (§2.42 "Deriving Additional Keys"): a 48-byte key and a
/// 16-byte key with HMAC-SHA256 take three segments, the second key the third one alone;
/// the DKM length is 512 bits summed over keys, 768 over segments. Every mode, with
/// little-endian 24-bit counters in the middle of the input, checked byte for byte.
#[test]
fn every_mode_with_additional_keys_matches_an_independent_hmac() {
    let m = shared();
    let h = user_session(m, 2);
    let b = base(m, h, CKK_GENERIC_SECRET, KEY);
    let (label, ctx, iv) = (b"label".to_vec(), b"context".to_vec(), b"an IV".to_vec());
    for (mt, method, dkm) in [
        (
            CKM_SP800_108_COUNTER_KDF,
            CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS,
            512u64,
        ),
        (
            CKM_SP800_108_FEEDBACK_KDF,
            CK_SP800_108_DKM_LENGTH_SUM_OF_SEGMENTS,
            768,
        ),
        (
            CKM_SP800_108_DOUBLE_PIPELINE_KDF,
            CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS,
            512,
        ),
    ] {
        let iter = if mt == CKM_SP800_108_COUNTER_KDF {
            Field::Iter(Some((24, true)))
        } else {
            Field::Iter(None)
        };
        let mut fields = vec![Field::Bytes(label.clone()), iter];
        if mt != CKM_SP800_108_COUNTER_KDF {
            fields.push(Field::Counter(24, true));
        }
        fields.extend([Field::Bytes(ctx.clone()), Field::Dkm(method, 16, true)]);
        let feedback_iv = if mt == CKM_SP800_108_FEEDBACK_KDF {
            &iv[..]
        } else {
            &[]
        };
        let mut kdf = Kdf::new(
            CKM_SHA256_HMAC,
            &fields,
            feedback_iv,
            vec![out_template(16)],
        );
        let main = run(m, h, mt, &mut kdf, b, 48).unwrap();
        let extra = kdf.handles();
        assert_eq!(extra.len(), 1);
        assert_ne!(extra[0], CK_INVALID_HANDLE);
        let second = get_attr(m, h, extra[0], CKA_VALUE).unwrap();

        // Three segments, computed here.
        let l = enc(dkm, 2, true);
        let mut segments = Vec::new();
        let mut chained = match mt {
            CKM_SP800_108_FEEDBACK_KDF => iv.clone(),
            CKM_SP800_108_DOUBLE_PIPELINE_KDF => [&label[..], &ctx, &l].concat(),
            _ => Vec::new(),
        };
        for i in 1..=3u64 {
            let c = enc(i, 3, true);
            let k = match mt {
                CKM_SP800_108_COUNTER_KDF => hmac256(KEY, &[&label, &c, &ctx, &l]),
                _ => {
                    if mt == CKM_SP800_108_DOUBLE_PIPELINE_KDF {
                        chained = hmac256(KEY, &[&chained]);
                    }
                    hmac256(KEY, &[&label, &chained, &c, &ctx, &l])
                }
            };
            if mt == CKM_SP800_108_FEEDBACK_KDF {
                chained = k.clone();
            }
            segments.push(k);
        }
        assert_eq!(
            hex::encode(&main),
            hex::encode([&segments[0][..], &segments[1][..16]].concat()),
            "mode 0x{mt:x}"
        );
        assert_eq!(
            hex::encode(&second),
            hex::encode(&segments[2][..16]),
            "mode 0x{mt:x}"
        );
    }
}

/// §2.42's rules on the data fields, the PRF and the keys, each with its return code; a
/// failed derivation leaves CK_INVALID_HANDLE in every additional phKey and makes nothing.
#[test]
fn bad_parameters_keys_and_templates_are_refused() {
    let m = shared();
    let h = user_session(m, 3);
    let b = base(m, h, CKK_GENERIC_SECRET, KEY);
    let ctr = || Field::Iter(Some((32, false)));
    let bytes = || Field::Bytes(b"x".to_vec());
    let dkm = |method, w| Field::Dkm(method, w, false);
    let counter_cases: Vec<(&str, Vec<Field>)> = vec![
        ("no iteration variable", vec![bytes()]),
        (
            "iteration variable without its counter format",
            vec![Field::Iter(None), bytes()],
        ),
        ("two iteration variables", vec![ctr(), ctr()]),
        (
            "a counter field in counter mode",
            vec![ctr(), Field::Counter(16, false)],
        ),
        (
            "two DKM lengths",
            vec![
                ctr(),
                dkm(CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS, 32),
                dkm(CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS, 32),
            ],
        ),
        ("counter width 12", vec![Field::Iter(Some((12, false)))]),
        ("counter width 40", vec![Field::Iter(Some((40, false)))]),
        (
            "DKM width 72",
            vec![ctr(), dkm(CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS, 72)],
        ),
        (
            "DKM width 0",
            vec![ctr(), dkm(CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS, 0)],
        ),
        ("DKM method 3", vec![ctr(), dkm(3, 32)]),
        ("an empty byte array", vec![ctr(), Field::Bytes(Vec::new())]),
    ];
    for (why, fields) in counter_cases {
        let mut kdf = Kdf::new(CKM_SHA256_HMAC, &fields, &[], vec![out_template(16)]);
        let rv = run(m, h, CKM_SP800_108_COUNTER_KDF, &mut kdf, b, 32).unwrap_err();
        assert_rv!(rv, CKR_MECHANISM_PARAM_INVALID, "{why}");
        assert_eq!(kdf.handles(), vec![CK_INVALID_HANDLE], "{why}: phKey");
    }
    for (why, fields) in [
        (
            "a counter format on feedback's iteration variable",
            vec![ctr(), bytes()],
        ),
        (
            "two counters",
            vec![
                Field::Iter(None),
                Field::Counter(8, false),
                Field::Counter(8, false),
            ],
        ),
    ] {
        let mut kdf = Kdf::new(CKM_SHA256_HMAC, &fields, &[], Vec::new());
        let rv = run(m, h, CKM_SP800_108_FEEDBACK_KDF, &mut kdf, b, 32).unwrap_err();
        assert_rv!(rv, CKR_MECHANISM_PARAM_INVALID, "{why}");
    }

    let good = [ctr(), bytes()];
    // A PRF the spec lists but the token lacks, and one it does not list.
    for prf in [CKM_SHA3_256_HMAC, CKM_SHA256] {
        let mut kdf = Kdf::new(prf, &good, &[], Vec::new());
        let rv = run(m, h, CKM_SP800_108_COUNTER_KDF, &mut kdf, b, 32).unwrap_err();
        assert_rv!(rv, CKR_MECHANISM_PARAM_INVALID, "PRF 0x{prf:x}");
    }
    // The parameter's own size, and a feedback structure given to counter mode.
    let mut kdf = Kdf::new(CKM_SHA256_HMAC, &good, &[], Vec::new());
    let mut mc = kdf.mech(CKM_SP800_108_FEEDBACK_KDF);
    mc.mechanism = CKM_SP800_108_COUNTER_KDF;
    assert_rv!(
        derive(m, h, &mut mc, b, 32).unwrap_err(),
        CKR_MECHANISM_PARAM_INVALID
    );
    // 2^8 - 1 iterations at most with an 8-bit counter: 255 segments of 32 bytes.
    let byte_counter = [Field::Iter(Some((8, false)))];
    let mut kdf = Kdf::new(
        CKM_SHA256_HMAC,
        &byte_counter,
        &[],
        vec![out_template(4064)],
    );
    assert!(run(m, h, CKM_SP800_108_COUNTER_KDF, &mut kdf, b, 4096).is_ok());
    let mut kdf = Kdf::new(
        CKM_SHA256_HMAC,
        &byte_counter,
        &[],
        vec![out_template(4096)],
    );
    let rv = run(m, h, CKM_SP800_108_COUNTER_KDF, &mut kdf, b, 4096).unwrap_err();
    assert_rv!(rv, CKR_KEY_SIZE_RANGE);

    // Keys: CMAC needs an AES base key; the base key must allow derivation and this
    // mechanism (CKA_ALLOWED_MECHANISMS).
    let mut kdf = Kdf::new(CKM_AES_CMAC, &good, &[], Vec::new());
    let rv = run(m, h, CKM_SP800_108_COUNTER_KDF, &mut kdf, b, 16).unwrap_err();
    assert_rv!(rv, CKR_KEY_TYPE_INCONSISTENT);
    let no_derive = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bytes(CKA_VALUE, KEY)
        .bool(CKA_DERIVE, false);
    let nd = try_create(m, h, no_derive).unwrap();
    let mut kdf = Kdf::new(CKM_SHA256_HMAC, &good, &[], Vec::new());
    let rv = run(m, h, CKM_SP800_108_COUNTER_KDF, &mut kdf, nd, 16).unwrap_err();
    assert_rv!(rv, CKR_KEY_FUNCTION_NOT_PERMITTED);
    let allowed = CKM_SP800_108_FEEDBACK_KDF.to_ne_bytes();
    let only_feedback = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET)
        .bytes(CKA_VALUE, KEY)
        .bool(CKA_DERIVE, true)
        .bytes(CKA_ALLOWED_MECHANISMS, &allowed);
    let of = try_create(m, h, only_feedback).unwrap();
    let rv = run(m, h, CKM_SP800_108_COUNTER_KDF, &mut kdf, of, 16).unwrap_err();
    assert_rv!(rv, CKR_MECHANISM_INVALID);

    // Templates: a length is needed; an additional key's bad template fails the whole call
    // and nothing is left behind.
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET);
    let mut mc = kdf.mech(CKM_SP800_108_COUNTER_KDF);
    let mut k = 0;
    let rv = ck!(m, C_DeriveKey(h, &mut mc, b, t.ptr(), t.len(), &mut k));
    assert_rv!(rv, CKR_TEMPLATE_INCOMPLETE);
    let before = find(m, h, &mut Template::new().ulong(CKA_CLASS, CKO_SECRET_KEY)).len();
    let bad_aes = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .ulong(CKA_VALUE_LEN, 20);
    let mut kdf = Kdf::new(CKM_SHA256_HMAC, &good, &[], vec![out_template(16), bad_aes]);
    let rv = run(m, h, CKM_SP800_108_COUNTER_KDF, &mut kdf, b, 16).unwrap_err();
    assert_rv!(rv, CKR_TEMPLATE_INCONSISTENT);
    assert_eq!(kdf.handles(), vec![CK_INVALID_HANDLE; 2]);
    let after = find(m, h, &mut Template::new().ulong(CKA_CLASS, CKO_SECRET_KEY)).len();
    assert_eq!(before, after, "a failed derivation left keys behind");

    // A CK_DERIVED_KEY without phKey.
    let mut kdf = Kdf::new(CKM_SHA256_HMAC, &good, &[], vec![out_template(16)]);
    kdf.derived[0].phKey = std::ptr::null_mut();
    let rv = run(m, h, CKM_SP800_108_COUNTER_KDF, &mut kdf, b, 16).unwrap_err();
    assert_rv!(rv, CKR_MECHANISM_PARAM_INVALID);
}

/// §2.42 "Key Derivation Attribute Rules": CKA_SENSITIVE and CKA_EXTRACTABLE come from
/// the base key unless the template sets them, CKA_ALWAYS_SENSITIVE / CKA_NEVER_EXTRACTABLE
/// follow; usage flags are those the template sets (kryoptic's rule, the cryptoki suite's
/// expectation).
#[test]
fn derived_keys_follow_the_attribute_rules() {
    let m = shared();
    let h = user_session(m, 4);
    let flag = |o, t| get_attr(m, h, o, t).map(|v| v[0] != 0);
    let mut aes = Template::new()
        .ulong(CKA_VALUE_LEN, 32)
        .bool(CKA_DERIVE, true)
        .bool(CKA_SENSITIVE, true);
    let mut gen = mech(CKM_AES_KEY_GEN);
    let mut b = 0;
    assert_rv!(
        ck!(m, C_GenerateKey(h, &mut gen, aes.ptr(), aes.len(), &mut b)),
        CKR_OK
    );
    let fields = [
        Field::Iter(Some((16, false))),
        Field::Bytes(b"label".to_vec()),
    ];
    let mut kdf = Kdf::new(CKM_AES_CMAC, &fields, &[], Vec::new());
    let mut mc = kdf.mech(CKM_SP800_108_COUNTER_KDF);
    let mut t = Template::new()
        .ulong(CKA_CLASS, CKO_SECRET_KEY)
        .ulong(CKA_KEY_TYPE, CKK_AES)
        .ulong(CKA_VALUE_LEN, 16)
        .bool(CKA_ENCRYPT, true);
    let mut k = 0;
    assert_rv!(
        ck!(m, C_DeriveKey(h, &mut mc, b, t.ptr(), t.len(), &mut k)),
        CKR_OK
    );
    assert_eq!(flag(k, CKA_ENCRYPT), Ok(true));
    for t in [
        CKA_DECRYPT,
        CKA_SIGN,
        CKA_VERIFY,
        CKA_WRAP,
        CKA_UNWRAP,
        CKA_DERIVE,
    ] {
        assert_eq!(flag(k, t), Ok(false), "usage 0x{t:x} not in the template");
    }
    assert_eq!(flag(k, CKA_SENSITIVE), Ok(true), "from the base key");
    assert_eq!(flag(k, CKA_ALWAYS_SENSITIVE), Ok(true));
    assert_eq!(flag(k, CKA_EXTRACTABLE), Ok(false), "from the base key");
    assert_eq!(flag(k, CKA_NEVER_EXTRACTABLE), Ok(true));
    assert_rv!(
        get_attr(m, h, k, CKA_VALUE).unwrap_err(),
        CKR_ATTRIBUTE_SENSITIVE
    );
    // A template that turns sensitivity off gets a key that was not always sensitive.
    let mut t = out_template(16).bool(CKA_SENSITIVE, false);
    assert_rv!(
        ck!(m, C_DeriveKey(h, &mut mc, b, t.ptr(), t.len(), &mut k)),
        CKR_OK
    );
    assert_eq!(flag(k, CKA_ALWAYS_SENSITIVE), Ok(false));
    assert_eq!(flag(k, CKA_NEVER_EXTRACTABLE), Ok(false));
    assert_eq!(get_attr(m, h, k, CKA_VALUE).map(|v| v.len()), Ok(16));
}
