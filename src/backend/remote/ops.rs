//! Operations on remote keys, as the core drives them ([`Signer`], [`Verifier`],
//! [`Cipher`]). Digests are computed here, incrementally, so multi-part signing works
//! whatever the service offers and only the digest travels; Ed25519, HMAC and AES-GCM
//! collect their input and make one request at the end.

use super::{HashAlg, KeyService, KeyVersion, SignInput, SignScheme, Transform, WrapAlg};
use crate::core::error::{err, Error, Result};
use crate::core::op::{Cipher, Signer, Verifier};
use aws_lc_rs::digest;
use cryptoki_sys::*;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Largest input collected for one request (Ed25519 message, HMAC data, GCM text).
/// Services refuse far less (Cloud KMS: 64 KiB, HSM raw encryption 8 KiB, AWS 4 KiB);
/// this only bounds what hsmux holds before the service says so.
pub const MAX_COLLECT: usize = 1 << 20;

fn digest_alg(h: HashAlg) -> &'static digest::Algorithm {
    match h {
        HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        HashAlg::Sha224 => &digest::SHA224,
        HashAlg::Sha256 => &digest::SHA256,
        HashAlg::Sha384 => &digest::SHA384,
        HashAlg::Sha512 => &digest::SHA512,
    }
}

/// The PKCS#11 function family a service request is made for (`C_Sign` with
/// `C_SignFinal`, and so on). A service's failure is answered with a code that family
/// may return: the services' own codes are shared by every call (a policy refusal is
/// `CKR_KEY_FUNCTION_NOT_PERMITTED` for them, a vanished key `CKR_KEY_HANDLE_INVALID`),
/// and not every function may return each of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CryptoCall {
    Encrypt,
    Decrypt,
    Sign,
    Verify,
}

impl CryptoCall {
    pub fn name(self) -> &'static str {
        match self {
            CryptoCall::Encrypt => "C_Encrypt",
            CryptoCall::Decrypt => "C_Decrypt",
            CryptoCall::Sign => "C_Sign",
            CryptoCall::Verify => "C_Verify",
        }
    }

    /// Whether the spec (PKCS#11 3.0, 5.8-5.11) lists `rv` among the return values of
    /// this function and of its `Final` (the calls that reach a service).
    pub fn allows(self, rv: CK_RV) -> bool {
        // Every one of them.
        if matches!(
            rv,
            CKR_OK
                | CKR_ARGUMENTS_BAD
                | CKR_CRYPTOKI_NOT_INITIALIZED
                | CKR_DEVICE_ERROR
                | CKR_DEVICE_MEMORY
                | CKR_DEVICE_REMOVED
                | CKR_FUNCTION_CANCELED
                | CKR_FUNCTION_FAILED
                | CKR_GENERAL_ERROR
                | CKR_HOST_MEMORY
                | CKR_OPERATION_NOT_INITIALIZED
                | CKR_SESSION_CLOSED
                | CKR_SESSION_HANDLE_INVALID
        ) {
            return true;
        }
        match self {
            CryptoCall::Encrypt => {
                matches!(
                    rv,
                    CKR_BUFFER_TOO_SMALL | CKR_DATA_INVALID | CKR_DATA_LEN_RANGE
                )
            }
            CryptoCall::Decrypt => matches!(
                rv,
                CKR_BUFFER_TOO_SMALL
                    | CKR_ENCRYPTED_DATA_INVALID
                    | CKR_ENCRYPTED_DATA_LEN_RANGE
                    | CKR_USER_NOT_LOGGED_IN
            ),
            CryptoCall::Sign => matches!(
                rv,
                CKR_BUFFER_TOO_SMALL
                    | CKR_DATA_INVALID
                    | CKR_DATA_LEN_RANGE
                    | CKR_USER_NOT_LOGGED_IN
                    | CKR_FUNCTION_REJECTED
                    | CKR_TOKEN_RESOURCE_EXCEEDED
            ),
            CryptoCall::Verify => matches!(
                rv,
                CKR_DATA_INVALID
                    | CKR_DATA_LEN_RANGE
                    | CKR_SIGNATURE_INVALID
                    | CKR_SIGNATURE_LEN_RANGE
                    | CKR_TOKEN_RESOURCE_EXCEEDED
            ),
        }
    }

    /// The code this function answers for a service's `rv`: `rv` itself when the
    /// function may return it, else the nearest code it may return:
    /// - a refusal (`CKR_KEY_FUNCTION_NOT_PERMITTED`: HTTP 403, PERMISSION_DENIED,
    ///   AccessDenied) is `CKR_FUNCTION_REJECTED` at `C_Sign` (the spec's "the signature
    ///   request is rejected") and `CKR_FUNCTION_FAILED` elsewhere;
    /// - the decryption's data codes for `C_Decrypt` (`CKR_DATA_*` -> `CKR_ENCRYPTED_DATA_*`);
    /// - anything else (a key that vanished, credentials refused where the function cannot
    ///   say "not logged in") `CKR_FUNCTION_FAILED`, never a device error: that would fail
    ///   a replica group over for what is not an outage.
    pub fn answer(self, rv: CK_RV) -> CK_RV {
        if self.allows(rv) {
            return rv;
        }
        match (self, rv) {
            (CryptoCall::Sign, CKR_KEY_FUNCTION_NOT_PERMITTED) => CKR_FUNCTION_REJECTED,
            (CryptoCall::Decrypt, CKR_DATA_INVALID) => CKR_ENCRYPTED_DATA_INVALID,
            (CryptoCall::Decrypt, CKR_DATA_LEN_RANGE) => CKR_ENCRYPTED_DATA_LEN_RANGE,
            _ => CKR_FUNCTION_FAILED,
        }
    }

    /// `e` as this function answers it (logged when the code changes; the service's
    /// own message was logged where the error was made).
    pub fn map_err(self, key: &KeyVersion, e: Error) -> Error {
        let rv = self.answer(e.rv());
        if rv == e.rv() {
            return e;
        }
        log::warn!(
            "{} with {}: the service's {} is answered {} ({} cannot return the former)",
            self.name(),
            key.id,
            crate::core::rv::name(e.rv()),
            crate::core::rv::name(rv),
            self.name()
        );
        Error::new(rv)
    }
}

/// Adds `data` to the input collected for one request, up to [`MAX_COLLECT`] bytes.
fn collect(v: &mut Zeroizing<Vec<u8>>, data: &[u8]) -> Result<()> {
    if v.len() + data.len() > MAX_COLLECT {
        return Err(Error::logged(
            CKR_DATA_LEN_RANGE,
            format!("remote key: input above {MAX_COLLECT} bytes"),
        ));
    }
    v.extend_from_slice(data);
    Ok(())
}

/// The input of a signature as it arrives: hashed here, or collected.
enum Input {
    Hashing(digest::Context),
    Collect(Zeroizing<Vec<u8>>),
}

impl Input {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Input::Hashing(c) => c.update(data),
            Input::Collect(v) => collect(v, data)?,
        }
        Ok(())
    }
    fn take(&mut self) -> Zeroizing<Vec<u8>> {
        match std::mem::replace(self, Input::Collect(Zeroizing::new(Vec::new()))) {
            Input::Hashing(c) => Zeroizing::new(c.finish().as_ref().to_vec()),
            Input::Collect(v) => v,
        }
    }
}

/// How the consumer's mechanism is served: the scheme sent, whether the token hashes
/// (`hash_here`) or the consumer's input is already the digest.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub scheme: SignScheme,
    /// `Some(h)`: the consumer gives the message, hsmux hashes it with `h`.
    pub hash_here: Option<HashAlg>,
    /// Length of the signature or MAC.
    pub out_len: usize,
}

/// A signature or MAC made by the service.
pub struct RemoteSign {
    pub service: Arc<dyn KeyService>,
    pub key: Arc<KeyVersion>,
    pub plan: Plan,
    input: Input,
    /// CKM_ECDSA / CKM_RSA_PKCS_PSS / CKM_RSA_PKCS take a digest the consumer computed;
    /// the scheme's hash is then chosen from its length (ECDSA) or given.
    digest_given: bool,
    /// The FIPS 204/205 context string of an ML-DSA or SLH-DSA signature.
    context: Vec<u8>,
}

/// Schemes that sign the message itself, not a digest of it.
fn signs_message(s: SignScheme) -> bool {
    matches!(
        s,
        SignScheme::Ed25519 | SignScheme::Hmac(_) | SignScheme::MlDsa | SignScheme::SlhDsa
    )
}

impl RemoteSign {
    pub fn new(service: Arc<dyn KeyService>, key: Arc<KeyVersion>, plan: Plan) -> RemoteSign {
        let input = match plan.hash_here {
            Some(h) => Input::Hashing(digest::Context::new(digest_alg(h))),
            None => Input::Collect(Zeroizing::new(Vec::new())),
        };
        let digest_given = plan.hash_here.is_none() && !signs_message(plan.scheme);
        RemoteSign {
            service,
            key,
            plan,
            input,
            digest_given,
            context: Vec::new(),
        }
    }

    /// An ML-DSA / SLH-DSA signature in this context (checked by the token).
    pub fn with_context(mut self, context: &[u8]) -> RemoteSign {
        self.context = context.to_vec();
        self
    }

    /// The request's scheme and input once everything has arrived.
    fn request(&mut self) -> Result<(SignScheme, Zeroizing<Vec<u8>>, bool)> {
        let mut data = self.input.take();
        let mut scheme = self.plan.scheme;
        if self.digest_given {
            if let SignScheme::Pkcs1(_) = scheme {
                // CKM_RSA_PKCS: services sign digests, so the input must be a DigestInfo;
                // its hash names the scheme and only the digest is sent. (Raw bytes
                // signed as a digest would give a different signature than PKCS#11 means.)
                let (h, digest) = HashAlg::split_digest_info(&data)
                    .map(|(h, d)| (h, d.to_vec()))
                    .ok_or_else(|| {
                        Error::logged(
                            CKR_DATA_INVALID,
                            format!(
                                "CKM_RSA_PKCS on {}: the input is not a DigestInfo (the service signs digests only)",
                                self.key.id
                            ),
                        )
                    })?;
                scheme = SignScheme::Pkcs1(h);
                data = Zeroizing::new(digest);
            }
            scheme = given_digest_scheme(scheme, &data, &self.key)?;
        }
        Ok((scheme, data, !signs_message(scheme)))
    }
}

/// For a mechanism whose input is a digest: the hash it must have been made with. ECDSA
/// (`CKM_ECDSA`) tells it by length; RSA PKCS#1 (`CKM_RSA_PKCS`) needs a DigestInfo
/// (services sign digests, not arbitrary blocks); PSS names it in its parameter.
fn given_digest_scheme(scheme: SignScheme, data: &[u8], key: &KeyVersion) -> Result<SignScheme> {
    let by_len = |n: usize| match n {
        20 => Some(HashAlg::Sha1),
        28 => Some(HashAlg::Sha224),
        32 => Some(HashAlg::Sha256),
        48 => Some(HashAlg::Sha384),
        64 => Some(HashAlg::Sha512),
        _ => None,
    };
    let s = match scheme {
        SignScheme::Ecdsa(_) => SignScheme::Ecdsa(by_len(data.len()).ok_or_else(|| {
            Error::logged(
                CKR_DATA_LEN_RANGE,
                format!(
                    "CKM_ECDSA on {}: {} bytes is not a digest length",
                    key.id,
                    data.len()
                ),
            )
        })?),
        SignScheme::Pss(h, salt) => {
            if data.len() != h.len() {
                return Err(Error::logged(
                    CKR_DATA_LEN_RANGE,
                    format!(
                        "CKM_RSA_PKCS_PSS: {} bytes is not a {} digest",
                        data.len(),
                        h.name()
                    ),
                ));
            }
            SignScheme::Pss(h, salt)
        }
        other => other,
    };
    if !key.usage.sign_schemes.is_empty() && !key.usage.sign_schemes.contains(&s) {
        return Err(Error::logged(
            CKR_DATA_LEN_RANGE,
            format!("{}: the service's key does not sign with {s:?}", key.id),
        ));
    }
    Ok(s)
}

impl Signer for RemoteSign {
    fn output_len(&self) -> usize {
        self.plan.out_len
    }
    fn update(&mut self, data: &[u8]) -> Result<()> {
        // Raw-digest mechanisms and EdDSA are single-part (SoftHSM answers the same).
        if self.digest_given || matches!(self.plan.scheme, SignScheme::Ed25519) {
            return Err(err(CKR_FUNCTION_NOT_SUPPORTED));
        }
        self.input.update(data)
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        self.sign()
            .map_err(|e| CryptoCall::Sign.map_err(&self.key, e))
    }
    fn oneshot(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.input.update(data)?;
        self.finish()
    }
}

impl RemoteSign {
    fn sign(&mut self) -> Result<Vec<u8>> {
        let (scheme, data, is_digest) = self.request()?;
        let input = match scheme {
            SignScheme::MlDsa | SignScheme::SlhDsa => SignInput::Pure {
                message: &data,
                context: &self.context,
            },
            _ if is_digest => SignInput::Digest(&data),
            _ => SignInput::Message(&data),
        };
        let sig = self.service.sign(&self.key, scheme, input)?;
        if sig.len() != self.plan.out_len {
            return Err(Error::logged(
                CKR_DEVICE_ERROR,
                format!(
                    "{}: the service's signature has {} bytes, not {}",
                    self.key.id,
                    sig.len(),
                    self.plan.out_len
                ),
            ));
        }
        Ok(sig)
    }
}

/// An HMAC check made by the service (public-key verification is local: `token.rs`
/// hands those to the soft token's code with the service's public key).
pub struct RemoteMacVerify {
    pub service: Arc<dyn KeyService>,
    pub key: Arc<KeyVersion>,
    pub hash: HashAlg,
    pub out_len: usize,
    data: Input,
}

impl RemoteMacVerify {
    pub fn new(service: Arc<dyn KeyService>, key: Arc<KeyVersion>, hash: HashAlg) -> Self {
        RemoteMacVerify {
            service,
            key,
            hash,
            out_len: hash.len(),
            data: Input::Collect(Zeroizing::new(Vec::new())),
        }
    }
}

impl Verifier for RemoteMacVerify {
    fn update(&mut self, data: &[u8]) -> Result<()> {
        self.data.update(data)
    }
    fn finish(&mut self, tag: &[u8]) -> Result<()> {
        if tag.len() != self.out_len {
            return Err(err(CKR_SIGNATURE_LEN_RANGE));
        }
        let data = self.data.take();
        let valid = self
            .service
            .mac_verify(&self.key, self.hash, &data, tag)
            .map_err(|e| CryptoCall::Verify.map_err(&self.key, e))?;
        if valid {
            Ok(())
        } else {
            Err(err(CKR_SIGNATURE_INVALID))
        }
    }
}

/// Tag length of the services' AES-GCM.
pub const GCM_TAG: usize = 16;
/// IV length of the services' AES-GCM.
pub const GCM_IV: usize = 12;

/// A service call that needs the whole input (AES-GCM both ways, RSA-OAEP decryption):
/// [`Collected`] gathers what `C_Encrypt*`/`C_Decrypt*` hand over and makes the call at
/// the end.
pub trait OneRequest: Send {
    /// The input is ciphertext: too much of it is `CKR_ENCRYPTED_DATA_LEN_RANGE`.
    const DECRYPTS: bool;
    /// The output length for `input_len` bytes of input.
    fn output_len(&self, input_len: usize) -> usize;
    /// The call, with all the input.
    fn send(&mut self, input: Zeroizing<Vec<u8>>) -> Result<Vec<u8>>;
    /// See [`Cipher::produced_iv`].
    fn produced_iv(&self) -> Option<Vec<u8>> {
        None
    }
}

/// A [`Cipher`] over a [`OneRequest`]: updates collect the input and give no output.
pub struct Collected<R> {
    request: R,
    data: Zeroizing<Vec<u8>>,
}

impl<R: OneRequest> Collected<R> {
    pub fn new(request: R) -> Self {
        Collected {
            request,
            data: Zeroizing::new(Vec::new()),
        }
    }
}

impl<R: OneRequest> Cipher for Collected<R> {
    fn output_len(&self, input_len: usize) -> usize {
        self.request.output_len(input_len)
    }
    fn oneshot(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        self.update(input)?;
        self.finish()
    }
    fn update_len(&self, _input_len: usize) -> usize {
        0
    }
    fn update(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        collect(&mut self.data, input).map_err(|e| match e.rv() {
            CKR_DATA_LEN_RANGE if R::DECRYPTS => err(CKR_ENCRYPTED_DATA_LEN_RANGE),
            _ => e,
        })?;
        Ok(Vec::new())
    }
    fn final_len(&self) -> usize {
        self.request.output_len(self.data.len())
    }
    fn finish(&mut self) -> Result<Vec<u8>> {
        let input = std::mem::replace(&mut self.data, Zeroizing::new(Vec::new()));
        self.request.send(input)
    }
    fn produced_iv(&self) -> Option<Vec<u8>> {
        self.request.produced_iv()
    }
}

/// AES-GCM encryption by the service, which chooses the IV; the IV is handed back to
/// the consumer's `pIv` by the FFI layer ([`Cipher::produced_iv`]).
pub struct GcmEncrypt {
    pub service: Arc<dyn KeyService>,
    pub key: Arc<KeyVersion>,
    pub aad: Vec<u8>,
    iv: Option<Vec<u8>>,
}

impl GcmEncrypt {
    pub fn new(
        service: Arc<dyn KeyService>,
        key: Arc<KeyVersion>,
        aad: Vec<u8>,
    ) -> Collected<Self> {
        Collected::new(GcmEncrypt {
            service,
            key,
            aad,
            iv: None,
        })
    }
}

impl OneRequest for GcmEncrypt {
    const DECRYPTS: bool = false;
    fn output_len(&self, input_len: usize) -> usize {
        input_len + GCM_TAG
    }
    fn send(&mut self, pt: Zeroizing<Vec<u8>>) -> Result<Vec<u8>> {
        let sealed = self
            .service
            .gcm_encrypt(&self.key, &pt, &self.aad)
            .map_err(|e| CryptoCall::Encrypt.map_err(&self.key, e))?;
        if sealed.iv.len() != GCM_IV || sealed.ciphertext_and_tag.len() != pt.len() + GCM_TAG {
            return Err(Error::logged(
                CKR_DEVICE_ERROR,
                format!(
                    "{}: the service's AES-GCM answer has a {}-byte IV and {} bytes for {} in",
                    self.key.id,
                    sealed.iv.len(),
                    sealed.ciphertext_and_tag.len(),
                    pt.len()
                ),
            ));
        }
        self.iv = Some(sealed.iv);
        Ok(sealed.ciphertext_and_tag)
    }
    fn produced_iv(&self) -> Option<Vec<u8>> {
        self.iv.clone()
    }
}

/// AES-GCM decryption by the service, with the IV from the consumer's parameters.
pub struct GcmDecrypt {
    pub service: Arc<dyn KeyService>,
    pub key: Arc<KeyVersion>,
    pub iv: Vec<u8>,
    pub aad: Vec<u8>,
}

impl GcmDecrypt {
    pub fn new(
        service: Arc<dyn KeyService>,
        key: Arc<KeyVersion>,
        iv: Vec<u8>,
        aad: Vec<u8>,
    ) -> Collected<Self> {
        Collected::new(GcmDecrypt {
            service,
            key,
            iv,
            aad,
        })
    }
}

impl OneRequest for GcmDecrypt {
    const DECRYPTS: bool = true;
    fn output_len(&self, input_len: usize) -> usize {
        input_len.saturating_sub(GCM_TAG)
    }
    fn send(&mut self, ct: Zeroizing<Vec<u8>>) -> Result<Vec<u8>> {
        if ct.len() < GCM_TAG {
            return Err(err(CKR_ENCRYPTED_DATA_LEN_RANGE));
        }
        let pt = self
            .service
            .gcm_decrypt(&self.key, &self.iv, &ct, &self.aad)
            .map_err(|e| CryptoCall::Decrypt.map_err(&self.key, e))?;
        if pt.len() != ct.len() - GCM_TAG {
            return Err(Error::logged(
                CKR_DEVICE_ERROR,
                format!(
                    "{}: the service's plaintext has the wrong length",
                    self.key.id
                ),
            ));
        }
        Ok(pt)
    }
}

/// RSA-OAEP decryption by the service.
pub struct OaepDecrypt {
    pub service: Arc<dyn KeyService>,
    pub key: Arc<KeyVersion>,
    pub hash: HashAlg,
    pub modulus_len: usize,
}

impl OaepDecrypt {
    pub fn new(
        service: Arc<dyn KeyService>,
        key: Arc<KeyVersion>,
        hash: HashAlg,
        modulus_len: usize,
    ) -> Collected<Self> {
        Collected::new(OaepDecrypt {
            service,
            key,
            hash,
            modulus_len,
        })
    }
}

impl OneRequest for OaepDecrypt {
    const DECRYPTS: bool = true;
    fn output_len(&self, _input_len: usize) -> usize {
        self.modulus_len
    }
    fn send(&mut self, ct: Zeroizing<Vec<u8>>) -> Result<Vec<u8>> {
        if ct.len() != self.modulus_len {
            return Err(err(CKR_ENCRYPTED_DATA_LEN_RANGE));
        }
        let pt = self
            .service
            .rsa_decrypt(&self.key, self.hash, &ct)
            .map_err(|e| CryptoCall::Decrypt.map_err(&self.key, e))?;
        if pt.len() + 2 * self.hash.len() + 2 > self.modulus_len {
            return Err(Error::logged(
                CKR_DEVICE_ERROR,
                format!("{}: the service's OAEP plaintext is too long", self.key.id),
            ));
        }
        Ok(pt)
    }
}

/// A [`Transform`] by the service as `C_Encrypt`/`C_Decrypt` see it (AES key wrap of raw
/// key bytes, AES-CBC-PAD, RSA PKCS#1 v1.5 decryption): the whole input in one request,
/// the answer's length checked against what the transform can give.
pub struct Transformed {
    pub service: Arc<dyn KeyService>,
    pub key: Arc<KeyVersion>,
    pub op: Transform,
    /// The RSA modulus length (RSA transforms).
    pub modulus_len: usize,
}

impl Transformed {
    /// The most (and least) output `n` input bytes can give: `(min, max)`.
    fn bounds(&self, n: usize) -> (usize, usize) {
        match self.op {
            Transform::Wrap(WrapAlg::AesKw) => (n + 8, n + 8),
            Transform::Unwrap(WrapAlg::AesKw) => (n.saturating_sub(8), n.saturating_sub(8)),
            Transform::Wrap(_) => (self.modulus_len, self.modulus_len),
            Transform::Unwrap(_) | Transform::Pkcs1Decrypt => (0, self.modulus_len),
            Transform::CbcPadEncrypt(_) => (n / 16 * 16 + 16, n / 16 * 16 + 16),
            Transform::CbcPadDecrypt(_) => (n.saturating_sub(16), n),
        }
    }

    /// Input lengths the transform cannot take, refused before any request.
    fn check_input(&self, n: usize) -> Result<()> {
        let ok = match self.op {
            // RFC 3394 wraps at least two 64-bit blocks; an unwrap has one more.
            Transform::Wrap(WrapAlg::AesKw) => n >= 16 && n.is_multiple_of(8),
            Transform::Unwrap(WrapAlg::AesKw) => n >= 24 && n.is_multiple_of(8),
            Transform::Wrap(WrapAlg::RsaOaep(h)) => n + 2 * h.len() + 2 <= self.modulus_len,
            Transform::Wrap(WrapAlg::RsaPkcs1) => n + 11 <= self.modulus_len,
            Transform::Unwrap(_) | Transform::Pkcs1Decrypt => n == self.modulus_len,
            Transform::CbcPadEncrypt(_) => true,
            Transform::CbcPadDecrypt(_) => n > 0 && n.is_multiple_of(16),
        };
        match (ok, self.op.decrypts()) {
            (true, _) => Ok(()),
            (false, true) => Err(err(CKR_ENCRYPTED_DATA_LEN_RANGE)),
            (false, false) => Err(err(CKR_DATA_LEN_RANGE)),
        }
    }

    /// Runs the transform on the whole input (also `C_WrapKey`/`C_UnwrapKey`).
    pub fn run(&self, input: &[u8]) -> Result<Vec<u8>> {
        self.check_input(input.len())?;
        let out = self.service.transform(&self.key, self.op, input)?;
        let (min, max) = self.bounds(input.len());
        if out.len() < min || out.len() > max {
            return Err(Error::logged(
                CKR_DEVICE_ERROR,
                format!(
                    "{}: the service's {:?} answer has {} bytes for {} in",
                    self.key.id,
                    self.op,
                    out.len(),
                    input.len()
                ),
            ));
        }
        Ok(out)
    }
}

impl OneRequest for Transformed {
    // Both directions are collected the same way; the length codes come from
    // `check_input`.
    const DECRYPTS: bool = false;
    fn output_len(&self, input_len: usize) -> usize {
        self.bounds(input_len).1
    }
    fn send(&mut self, input: Zeroizing<Vec<u8>>) -> Result<Vec<u8>> {
        let call = if self.op.decrypts() {
            CryptoCall::Decrypt
        } else {
            CryptoCall::Encrypt
        };
        self.run(&input).map_err(|e| call.map_err(&self.key, e))
    }
}
