//! The contract between the core and a key store: the [`Token`] trait and the types its
//! methods speak (`Ctx`, `Login`, `ObjectId`, `TokenInfo`). Every backend implements it
//! (`crate::backend`), the replica groups implement it over other tokens
//! (`crate::replica`), and the core consumes it; the core never names a backend.

use crate::core::attr::{Attr, AttrValue};
use crate::core::error::{err, Error, Result};
use crate::core::mechanism::{MechParam, Mechanism};
use crate::core::op::{Cipher, Signer, Verifier};
use cryptoki_sys::*;

/// A return value that says the key store, not the request, failed: a replica group
/// fails over on it (shared/DESIGN.md).
pub fn device_class(rv: CK_RV) -> bool {
    matches!(
        rv,
        CKR_DEVICE_ERROR
            | CKR_DEVICE_REMOVED
            | CKR_DEVICE_MEMORY
            | CKR_TOKEN_NOT_PRESENT
            | CKR_TOKEN_NOT_RECOGNIZED
            | CKR_SESSION_HANDLE_INVALID
            | CKR_SESSION_CLOSED
            | CKR_CRYPTOKI_NOT_INITIALIZED
    )
}

/// A backend's own number for an object; never shown to a consumer.
pub type ObjectId = u64;

/// Who is logged in to a slot (shared by all sessions of the application on that slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login {
    Public,
    User,
    So,
}

/// The calling session as a backend needs to know it.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub session: CK_SESSION_HANDLE,
    pub rw: bool,
    pub login: Login,
}

/// What `C_EncapsulateKey` gave: the new key, its ciphertext written to the first `len`
/// bytes of the caller's buffer; or only the length the ciphertext needs (a length query,
/// a buffer too small).
#[derive(Debug)]
pub enum Encapsulated {
    Key { len: usize, key: ObjectId },
    NeedsRoom(usize),
}

/// `CK_TOKEN_INFO` in Rust terms; the core fills session counts and pads strings.
#[derive(Clone, Debug, Default)]
pub struct TokenInfo {
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub flags: CK_FLAGS,
    pub max_pin_len: CK_ULONG,
    pub min_pin_len: CK_ULONG,
    pub total_public_memory: CK_ULONG,
    pub free_public_memory: CK_ULONG,
    pub total_private_memory: CK_ULONG,
    pub free_private_memory: CK_ULONG,
    pub hardware_version: (u8, u8),
    pub firmware_version: (u8, u8),
    /// `utcTime`, 16 characters, or empty when the token has no clock.
    pub utc_time: String,
}

/// A token's pool of backend sessions (module tokens), for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Most sessions open at once (0: not known yet).
    pub size: usize,
    pub in_use: usize,
    /// Borrowers that waited for a free session, and those that gave up at their deadline.
    pub waits: u64,
    pub wait_timeouts: u64,
}

/// One slot's key store. Every method has the meaning of the PKCS#11 function it is named
/// after; the core has already checked handles, session state and argument shapes.
/// Methods a backend cannot do keep the default, `CKR_FUNCTION_NOT_SUPPORTED`.
pub trait Token: Send + Sync {
    /// Text for `CK_SLOT_INFO.slotDescription`.
    fn slot_description(&self) -> String;
    fn token_info(&self) -> Result<TokenInfo>;
    fn mechanisms(&self) -> Vec<CK_MECHANISM_TYPE>;
    fn mechanism_info(&self, mech: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO>;
    /// A cheap check that the key store answers (the health probe of a replica): the
    /// token info for a vendor token, a read for a remote service.
    fn probe(&self) -> Result<()> {
        self.token_info().map(|_| ())
    }
    /// The pool of backend sessions, for a token that keeps one.
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
    /// Restarts the key store's client after it kept failing (a vendor library's
    /// `C_Finalize` + `C_Initialize`): `Ok(true)` when done, `Ok(false)` when this token
    /// has none or it was not done now (the log says why). Sessions and login are then
    /// gone; the caller logs in again.
    fn restart(&self) -> Result<bool> {
        Ok(false)
    }
    /// Does `C_Login` check a PIN here? A remote service authenticates with the slot's
    /// own credentials, so hsmux may log in to it without one (`hsmux check`).
    fn needs_pin(&self) -> bool {
        true
    }
    /// Why this token cannot serve at all, known when it was built (a vendor library that
    /// did not load); a replica group starts such a member down.
    fn unavailable(&self) -> Option<String> {
        None
    }
    /// For `hsmux check`: reaches the key store (logging in with the slot's own
    /// credentials, or without a login where the token has none of its own) and lists its
    /// keys, one line each; `None` where the core's object listing says it all (module
    /// tokens).
    fn describe_keys(&self) -> Option<Result<Vec<String>>> {
        None
    }

    /// Problems an operator should fix that do not stop the token, one line each, each
    /// naming the fix (`hsmux check` prints them): e.g. a soft store others can read.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// Problems that stop part or all of the token, one line each with its fix (`hsmux
    /// check` prints them and exits non-zero): e.g. a store file others can write.
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }
    /// `C_OpenSession` on this token: refuse when it cannot serve sessions.
    fn open_session(&self, _session: CK_SESSION_HANDLE, _rw: bool) -> Result<()> {
        Ok(())
    }
    /// The session is gone: drop its session objects; returns their ids so that the core
    /// can forget their handles.
    fn close_session(&self, session: CK_SESSION_HANDLE) -> Vec<ObjectId>;

    fn init_token(&self, _so_pin: &[u8], _label: &str) -> Result<()> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    /// Checks the PIN of `who` (`User` or `So`) and unlocks what it protects.
    fn login(&self, who: Login, pin: &[u8]) -> Result<()>;
    fn logout(&self);
    /// `C_InitPIN`, called with the SO logged in.
    fn init_pin(&self, _pin: &[u8]) -> Result<()> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    /// `C_SetPIN` of `who` (the SO when the SO is logged in, else the user).
    fn set_pin(&self, _who: Login, _old: &[u8], _new: &[u8]) -> Result<()> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }

    fn find_objects(&self, ctx: &Ctx, template: &[Attr]) -> Result<Vec<ObjectId>>;
    fn get_attributes(
        &self,
        ctx: &Ctx,
        obj: ObjectId,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<AttrValue>>;
    fn set_attributes(&self, _ctx: &Ctx, _obj: ObjectId, _template: &[Attr]) -> Result<()> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    fn create_object(&self, _ctx: &Ctx, _template: &[Attr]) -> Result<ObjectId> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    fn copy_object(&self, _ctx: &Ctx, _obj: ObjectId, _template: &[Attr]) -> Result<ObjectId> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    fn destroy_object(&self, _ctx: &Ctx, _obj: ObjectId) -> Result<()> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    fn object_size(&self, _ctx: &Ctx, _obj: ObjectId) -> Result<CK_ULONG> {
        Ok(CK_UNAVAILABLE_INFORMATION)
    }

    fn encrypt_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>>;
    fn decrypt_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>>;
    fn sign_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Signer>>;
    fn verify_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Verifier>>;
    fn digest_init(&self, _ctx: &Ctx, _mech: &Mechanism) -> Result<Box<dyn Signer>> {
        Err(err(CKR_MECHANISM_INVALID))
    }

    fn generate_key(&self, _ctx: &Ctx, _mech: &Mechanism, _template: &[Attr]) -> Result<ObjectId> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    fn generate_key_pair(
        &self,
        _ctx: &Ctx,
        _mech: &Mechanism,
        _public: &[Attr],
        _private: &[Attr],
    ) -> Result<(ObjectId, ObjectId)> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    fn wrap_key(
        &self,
        _ctx: &Ctx,
        _mech: &Mechanism,
        _wrapping: ObjectId,
        _key: ObjectId,
    ) -> Result<Vec<u8>> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    fn unwrap_key(
        &self,
        _ctx: &Ctx,
        _mech: &Mechanism,
        _unwrapping: ObjectId,
        _wrapped: &[u8],
        _template: &[Attr],
    ) -> Result<ObjectId> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    fn derive_key(
        &self,
        _ctx: &Ctx,
        _mech: &Mechanism,
        _base: ObjectId,
        _template: &[Attr],
    ) -> Result<ObjectId> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    /// C_DeriveKey with the keys a mechanism's parameter adds (SP 800-108's
    /// `CK_DERIVED_KEY`s): the ids of the key `template` describes, then of the additional
    /// ones in order. Backends without multi-key derivation refuse such a parameter.
    fn derive_keys(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        base: ObjectId,
        template: &[Attr],
    ) -> Result<Vec<ObjectId>> {
        if let MechParam::Kbkdf(k) = &mech.param {
            if !k.additional.is_empty() {
                return Err(Error::logged(
                    CKR_MECHANISM_PARAM_INVALID,
                    "additional derived keys are made by the soft token only",
                ));
            }
        }
        Ok(vec![self.derive_key(ctx, mech, base, template)?])
    }
    /// `C_EncapsulateKey` (3.2): the new secret key made from `template`, its ciphertext
    /// written to `out`; or, when the ciphertext does not fit in `out` (empty for a length
    /// query), its length and no key, as the two-call convention wants. One call, so that
    /// the key is looked up and checked once; straight into the caller's buffer, so that
    /// no ciphertext is allocated per call.
    fn encapsulate_key(
        &self,
        _ctx: &Ctx,
        _mech: &Mechanism,
        _key: ObjectId,
        _template: &[Attr],
        _out: &mut [u8],
    ) -> Result<Encapsulated> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    /// `C_DecapsulateKey` (3.2): the secret key recovered from `ciphertext`.
    fn decapsulate_key(
        &self,
        _ctx: &Ctx,
        _mech: &Mechanism,
        _key: ObjectId,
        _ciphertext: &[u8],
        _template: &[Attr],
    ) -> Result<ObjectId> {
        Err(err(CKR_FUNCTION_NOT_SUPPORTED))
    }
    fn generate_random(&self, out: &mut [u8]) -> Result<()>;
    /// The value of a secret key for `C_DigestKey`, which never leaves the token otherwise;
    /// `CKR_KEY_INDIGESTIBLE` where a backend cannot (a remote key has no value to give).
    fn digest_key_value(&self, _ctx: &Ctx, _key: ObjectId) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        Err(err(CKR_KEY_INDIGESTIBLE))
    }
    fn seed_random(&self, _seed: &[u8]) -> Result<()> {
        Err(err(CKR_RANDOM_SEED_NOT_SUPPORTED))
    }
}
