//! hsmux's own software token (`backend = "soft"`): objects kept in memory and, for token
//! objects, in files under the slot's `path` (see `store.rs`), keys used through aws-lc-rs
//! (see `crypto/`). Like SoftHSM it starts uninitialized; `C_InitToken` and `C_InitPIN`
//! make it usable.
//!
//! Several processes may use one token directory: each re-reads the directory when its
//! modification time changes (on `C_FindObjectsInit` and `C_Login`) and `token.json` when
//! it changes (on `C_GetTokenInfo` and `C_Login`). Every update of the store (PIN checks
//! with their failure counters, PIN records, object files) is made under the store's
//! cross-process lock (`lock.rs`), after re-reading what it changes.

pub mod crypto;
mod describe;
mod kbkdf;
mod kem;
mod lock;
mod perms;
pub(crate) mod pin;
pub mod reseal;
mod storage;
pub(crate) mod store;

use self::crypto::Key;
use self::lock::StoreLock;
use self::pin::MasterKey;
pub use self::pin::StoreSeal;
use self::store::{Decoded, Loaded, TokenMeta};
use crate::core::attr::{Attr, AttrValue, Attrs, AttrsExt};
use crate::core::error::{err, Error, Result};
use crate::core::int_hash::IntHash;
use crate::core::mechanism::{MechParam, Mechanism};
use crate::core::op::{Cipher, Signer, Verifier};
use crate::core::template::{self, Op, Usage};
use crate::core::token::{Ctx, Encapsulated, Login, ObjectId, Token, TokenInfo};
use cryptoki_sys::*;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// Wrong PIN entries before a PIN is locked.
const MAX_PIN_FAILURES: u32 = 10;
const MIN_PIN_LEN: usize = 4;
const MAX_PIN_LEN: usize = 255;

/// One object of the soft token. Immutable once shared: a change replaces the `Arc`.
pub struct SoftObject {
    pub attrs: Attrs,
    /// The session that owns a session object; `None` for a token object.
    session: Option<CK_SESSION_HANDLE>,
    /// The file of a token object.
    file: Option<String>,
    /// The parsed key, made on first use.
    key: OnceLock<std::result::Result<Arc<Key>, CK_RV>>,
}

impl SoftObject {
    fn new(attrs: Attrs, session: Option<CK_SESSION_HANDLE>, file: Option<String>) -> Self {
        SoftObject {
            attrs,
            session,
            file,
            key: OnceLock::new(),
        }
    }
    fn private(&self) -> bool {
        self.attrs.flag_or(CKA_PRIVATE, true)
    }
    fn visible(&self, ctx: &Ctx) -> bool {
        !self.private() || ctx.login == Login::User
    }
    fn key(&self) -> Result<Arc<Key>> {
        self.key
            .get_or_init(|| {
                Key::from_attrs(&self.attrs)
                    .map(Arc::new)
                    .map_err(|e| e.rv())
            })
            .clone()
            .map_err(Error::new)
    }
}

impl Drop for SoftObject {
    fn drop(&mut self) {
        self.attrs.zeroize();
    }
}

/// One per token: the size of `Ready` costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum MetaState {
    Empty,
    Ready(TokenMeta),
    /// The store cannot be used; the text says why (logged once per change).
    Broken(String),
}

struct State {
    meta: MetaState,
    meta_stamp: Option<(SystemTime, u64)>,
    mk: Option<MasterKey>,
    user_in: bool,
    objects: HashMap<ObjectId, Arc<SoftObject>, IntHash>,
    /// Token object files by name: (inode, object id).
    files: HashMap<String, (u64, ObjectId)>,
    /// Private files read but not yet opened (no master key).
    sealed: HashMap<String, Vec<u8>>,
    dir_stamp: Option<SystemTime>,
    /// Mode warnings already logged (each once per process).
    warned: std::collections::HashSet<String>,
}

pub struct SoftToken {
    dir: PathBuf,
    config_label: String,
    kdf_iterations: u32,
    next_id: AtomicU64,
    state: RwLock<State>,
    /// `[slot.seal]`: the master key is also sealed by a transit key.
    seal: Option<Arc<dyn StoreSeal>>,
}

/// What the seal's check HMAC is computed over: fixed per token.
fn seal_context(serial: &str) -> Vec<u8> {
    [&b"hsmux-soft seal check\0"[..], serial.as_bytes()].concat()
}

fn pad_id(s: &str) -> String {
    s.to_string()
}

impl Token for SoftToken {
    fn slot_description(&self) -> String {
        format!("hsmux soft token at {}", self.dir.display())
    }

    /// Store paths others can read.
    fn warnings(&self) -> Vec<String> {
        perms::audit(&self.dir, true).warnings
    }

    /// Store paths others can write: the store, or that object, is not used.
    fn problems(&self) -> Vec<String> {
        perms::audit(&self.dir, true).refused
    }

    /// What is listed without a login (`describe.rs`).
    fn describe_keys(&self) -> Option<Result<Vec<String>>> {
        Some(self.key_lines())
    }

    fn token_info(&self) -> Result<TokenInfo> {
        if self.meta_changed() {
            let mut st = self.state.write();
            self.reload_meta(&mut st, false);
        }
        let st = self.state.read();
        let mut info = TokenInfo {
            label: self.config_label.clone(),
            manufacturer: "hsmux".into(),
            model: "soft".into(),
            serial: pad_id(&format!("{:016x}", path_hash(&self.dir))),
            flags: CKF_RNG | CKF_LOGIN_REQUIRED | CKF_RESTORE_KEY_NOT_NEEDED,
            max_pin_len: MAX_PIN_LEN as CK_ULONG,
            min_pin_len: MIN_PIN_LEN as CK_ULONG,
            total_public_memory: CK_UNAVAILABLE_INFORMATION,
            free_public_memory: CK_UNAVAILABLE_INFORMATION,
            total_private_memory: CK_UNAVAILABLE_INFORMATION,
            free_private_memory: CK_UNAVAILABLE_INFORMATION,
            hardware_version: (0, 0),
            firmware_version: (
                env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0),
                env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0),
            ),
            utc_time: String::new(),
        };
        match &st.meta {
            MetaState::Empty => {}
            MetaState::Broken(why) => return Err(Error::logged(CKR_DEVICE_ERROR, why)),
            MetaState::Ready(m) => {
                info.label = m.label.clone();
                info.serial = m.serial.clone();
                info.flags |= CKF_TOKEN_INITIALIZED;
                if m.user.is_some() {
                    info.flags |= CKF_USER_PIN_INITIALIZED;
                }
                info.flags |= pin_flags(
                    m.user_failures,
                    CKF_USER_PIN_COUNT_LOW,
                    CKF_USER_PIN_FINAL_TRY,
                    CKF_USER_PIN_LOCKED,
                );
                info.flags |= pin_flags(
                    m.so_failures,
                    CKF_SO_PIN_COUNT_LOW,
                    CKF_SO_PIN_FINAL_TRY,
                    CKF_SO_PIN_LOCKED,
                );
            }
        }
        Ok(info)
    }

    fn mechanisms(&self) -> Vec<CK_MECHANISM_TYPE> {
        crypto::mechanisms().iter().map(|(m, _)| *m).collect()
    }

    fn mechanism_info(&self, mech: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO> {
        crypto::mechanisms()
            .iter()
            .find(|(m, _)| *m == mech)
            .map(|(_, i)| *i)
            .ok_or_else(|| err(CKR_MECHANISM_INVALID))
    }

    fn open_session(&self, _session: CK_SESSION_HANDLE, _rw: bool) -> Result<()> {
        if self.meta_changed() {
            let mut st = self.state.write();
            self.reload_meta(&mut st, false);
        }
        Self::meta(&self.state.read()).map(|_| ())
    }

    fn close_session(&self, session: CK_SESSION_HANDLE) -> Vec<ObjectId> {
        let mut st = self.state.write();
        let ids: Vec<ObjectId> = st
            .objects
            .iter()
            .filter(|(_, o)| o.session == Some(session))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            st.objects.remove(id);
        }
        ids
    }

    fn init_token(&self, so_pin: &[u8], label: &str) -> Result<()> {
        let mut st = self.state.write();
        // The whole re-initialisation is one update of the store.
        let lock = self.lock()?;
        self.reload_meta(&mut st, true);
        let serial = match &st.meta {
            MetaState::Broken(why) => {
                return Err(Error::logged(
                    CKR_DEVICE_ERROR,
                    format!("{why}; move it away to initialize a new token there"),
                ))
            }
            MetaState::Ready(m) => {
                let serial = m.serial.clone();
                let (meta, rec, layer) = self.check_pin(&lock, &mut st, Login::So, so_pin)?;
                self.unseal(&meta, &rec, &layer)?;
                serial
            }
            MetaState::Empty => {
                // A new token: the SO PIN is being set, so its length is checked here (an
                // initialized token checks the old PIN first, as SoftHSM does).
                Self::check_pin_len(so_pin)?;
                let mut s = [0u8; 8];
                aws_lc_rs::rand::fill(&mut s).map_err(|_| err(CKR_FUNCTION_FAILED))?;
                hex::encode(s)
            }
        };
        let mk = pin::new_master_key()?;
        let mut meta = TokenMeta {
            format: store::FORMAT.into(),
            label: label.trim_end().to_string(),
            serial,
            so: self.make_record(so_pin, &mk)?,
            user: None,
            so_failures: 0,
            user_failures: 0,
            seal: None,
        };
        self.add_seal_record(&mut meta)?;
        // The new records are made (and sealed, which needs the service) before anything
        // is removed, so that a seal that cannot be reached leaves the old token whole.
        // Remove the old objects first: if we crash before token.json is rewritten, the old
        // PINs still open what is left; after, the new master key cannot open stragglers.
        let objdir = store::objects_dir(&self.dir);
        if let Ok(entries) = std::fs::read_dir(&objdir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".obj") {
                    store::remove(&lock, &objdir, &name)?;
                }
            }
        }
        perms::create_private_dir(&objdir)?;
        lock.remove_stale_temps(&self.dir);
        lock.remove_stale_temps(&objdir);
        self.save_meta(&lock, &mut st, meta)?;
        let token_ids: Vec<ObjectId> = st.files.drain().map(|(_, (_, id))| id).collect();
        for id in token_ids {
            st.objects.remove(&id);
        }
        st.sealed.clear();
        st.dir_stamp = None;
        st.mk = None;
        st.user_in = false;
        log::info!(
            "soft token at {} initialized with label {:?}",
            self.dir.display(),
            label.trim_end()
        );
        Ok(())
    }

    fn login(&self, who: Login, pin: &[u8]) -> Result<()> {
        let mut st = self.state.write();
        // verify_pin re-reads token.json under the store's lock.
        let mk = self.verify_pin(&mut st, who, pin)?;
        st.mk = Some(mk);
        st.user_in = who == Login::User;
        drop(st);
        self.refresh_objects();
        let mut st = self.state.write();
        if who == Login::User {
            self.open_sealed(&mut st);
        }
        Ok(())
    }

    fn logout(&self) {
        let mut st = self.state.write();
        st.mk = None;
        st.user_in = false;
        // Forget the clear text of private token objects; their ids stay reserved so that
        // handles are the same after the next login.
        let private: Vec<(ObjectId, String)> = st
            .objects
            .iter()
            .filter(|(_, o)| o.file.is_some() && o.private())
            .map(|(id, o)| (*id, o.file.clone().unwrap_or_default()))
            .collect();
        for (id, name) in private {
            st.objects.remove(&id);
            // Re-read the sealed file on the next login.
            if let Some(entry) = st.files.get_mut(&name) {
                entry.0 = 0;
            }
        }
        st.dir_stamp = None;
    }

    fn init_pin(&self, new_pin: &[u8]) -> Result<()> {
        Self::check_pin_len(new_pin)?;
        let mut st = self.state.write();
        let lock = self.lock()?;
        self.reload_meta(&mut st, true);
        let mut meta = Self::meta(&st)?.clone();
        let mk = st.mk.clone().ok_or_else(|| err(CKR_USER_NOT_LOGGED_IN))?;
        meta.user = Some(self.make_record(new_pin, &mk)?);
        meta.user_failures = 0;
        self.add_seal_record(&mut meta)?;
        // A writer that died mid-write may have left a copy of the old records.
        lock.remove_stale_temps(&self.dir);
        self.save_meta(&lock, &mut st, meta)
    }

    fn set_pin(&self, who: Login, old: &[u8], new: &[u8]) -> Result<()> {
        Self::check_pin_len(new)?;
        let mut st = self.state.write();
        let lock = self.lock()?;
        let (meta, rec, layer) = self.check_pin(&lock, &mut st, who, old)?;
        let mk = self.unseal(&meta, &rec, &layer)?;
        let mut meta = Self::meta(&st)?.clone();
        let rec = self.make_record(new, &mk)?;
        match who {
            Login::So => meta.so = rec,
            _ => meta.user = Some(rec),
        }
        self.add_seal_record(&mut meta)?;
        // The old PIN's record must not survive the change anywhere in the store: a copy
        // in a temporary file left by a writer that died would still open the master key.
        lock.remove_stale_temps(&self.dir);
        self.save_meta(&lock, &mut st, meta)
    }

    fn find_objects(&self, ctx: &Ctx, tpl: &[Attr]) -> Result<Vec<ObjectId>> {
        self.refresh_objects();
        let st = self.state.read();
        let mut ids: Vec<ObjectId> = st
            .objects
            .iter()
            .filter(|(_, o)| o.visible(ctx) && crate::core::attr::matches(&o.attrs, tpl))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn get_attributes(
        &self,
        ctx: &Ctx,
        obj: ObjectId,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<AttrValue>> {
        let o = self.object(ctx, obj)?;
        Ok(template::read(&o.attrs, types))
    }

    fn set_attributes(&self, ctx: &Ctx, obj: ObjectId, tpl: &[Attr]) -> Result<()> {
        let o = self.object(ctx, obj)?;
        if o.file.is_some() && !ctx.rw {
            return Err(err(CKR_SESSION_READ_ONLY));
        }
        let mut attrs = o.attrs.clone();
        template::apply_changes(Op::Set, &mut attrs, tpl, ctx.login == Login::So)?;
        self.replace(obj, &o, attrs)
    }

    fn create_object(&self, ctx: &Ctx, tpl: &[Attr]) -> Result<ObjectId> {
        let mut attrs = template::new_object(Op::Create, tpl, &Attrs::new())?;
        Self::check_access(ctx, &attrs)?;
        if matches!(
            attrs.ulong(CKA_CLASS),
            Some(CKO_PUBLIC_KEY | CKO_PRIVATE_KEY | CKO_SECRET_KEY)
        ) {
            let extra = crypto::complete_import(&attrs)?;
            attrs.extend(extra);
        }
        self.insert(ctx, attrs)
    }

    fn copy_object(&self, ctx: &Ctx, obj: ObjectId, tpl: &[Attr]) -> Result<ObjectId> {
        let o = self.object(ctx, obj)?;
        let mut attrs = o.attrs.clone();
        template::apply_changes(Op::Copy, &mut attrs, tpl, ctx.login == Login::So)?;
        let mut uid = [0u8; 16];
        aws_lc_rs::rand::fill(&mut uid).map_err(|_| err(CKR_FUNCTION_FAILED))?;
        attrs.insert(CKA_UNIQUE_ID, hex::encode(uid).into_bytes());
        self.insert(ctx, attrs)
    }

    fn destroy_object(&self, ctx: &Ctx, obj: ObjectId) -> Result<()> {
        let o = self.object(ctx, obj)?;
        if o.file.is_some() && !ctx.rw {
            return Err(err(CKR_SESSION_READ_ONLY));
        }
        if !o.attrs.flag_or(CKA_DESTROYABLE, true) {
            return Err(Error::logged(
                CKR_ACTION_PROHIBITED,
                "object is not destroyable (CKA_DESTROYABLE false)",
            ));
        }
        if let Some(name) = &o.file {
            let lock = self.lock()?;
            store::remove(&lock, &store::objects_dir(&self.dir), name)?;
        }
        let mut st = self.state.write();
        st.objects.remove(&obj);
        if let Some(name) = &o.file {
            st.files.remove(name);
        }
        Ok(())
    }

    fn object_size(&self, ctx: &Ctx, obj: ObjectId) -> Result<CK_ULONG> {
        let o = self.object(ctx, obj)?;
        Ok(o.attrs.values().map(|v| v.len() + 16).sum::<usize>() as CK_ULONG)
    }

    fn encrypt_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>> {
        crypto::encrypt_init(mech, &self.key_for(ctx, key, Usage::Encrypt, mech)?)
    }

    fn decrypt_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Cipher>> {
        crypto::decrypt_init(mech, &self.key_for(ctx, key, Usage::Decrypt, mech)?)
    }

    fn sign_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Signer>> {
        crypto::sign_init(mech, &self.key_for(ctx, key, Usage::Sign, mech)?)
    }

    fn verify_init(&self, ctx: &Ctx, mech: &Mechanism, key: ObjectId) -> Result<Box<dyn Verifier>> {
        crypto::verify_init(mech, &self.key_for(ctx, key, Usage::Verify, mech)?)
    }

    fn digest_init(&self, _ctx: &Ctx, mech: &Mechanism) -> Result<Box<dyn Signer>> {
        Self::mechanism_known(mech.mech)?;
        crypto::digest_init(mech)
    }

    fn generate_key(&self, ctx: &Ctx, mech: &Mechanism, tpl: &[Attr]) -> Result<ObjectId> {
        Self::mechanism_known(mech.mech)?;
        let kt = Self::secret_key_type(mech.mech)?;
        let mut attrs =
            template::new_object(Op::Generate, tpl, &Self::fixed(CKO_SECRET_KEY, Some(kt)))?;
        Self::check_access(ctx, &attrs)?;
        let values = crypto::generate_key(mech, &attrs)?;
        attrs.extend(values);
        attrs.set_ulong(CKA_KEY_GEN_MECHANISM, mech.mech);
        self.insert(ctx, attrs)
    }

    fn generate_key_pair(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        public: &[Attr],
        private: &[Attr],
    ) -> Result<(ObjectId, ObjectId)> {
        Self::mechanism_known(mech.mech)?;
        let kt = Self::pair_key_type(mech.mech)?;
        let mut pub_attrs =
            template::new_object(Op::Generate, public, &Self::fixed(CKO_PUBLIC_KEY, Some(kt)))?;
        let mut priv_attrs = template::new_object(
            Op::Generate,
            private,
            &Self::fixed(CKO_PRIVATE_KEY, Some(kt)),
        )?;
        Self::check_access(ctx, &pub_attrs)?;
        Self::check_access(ctx, &priv_attrs)?;
        let (pv, sv) = crypto::generate_key_pair(mech, &pub_attrs, &priv_attrs)?;
        pub_attrs.extend(pv);
        priv_attrs.extend(sv);
        pub_attrs.set_ulong(CKA_KEY_GEN_MECHANISM, mech.mech);
        priv_attrs.set_ulong(CKA_KEY_GEN_MECHANISM, mech.mech);
        let p = self.insert(ctx, pub_attrs)?;
        match self.insert(ctx, priv_attrs) {
            Ok(s) => Ok((p, s)),
            Err(e) => {
                let _ = self.destroy_object(ctx, p);
                Err(e)
            }
        }
    }

    fn wrap_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        wrapping: ObjectId,
        key: ObjectId,
    ) -> Result<Vec<u8>> {
        Self::mechanism_known(mech.mech)?;
        let wk = self
            .object(ctx, wrapping)
            .map_err(|_| err(CKR_WRAPPING_KEY_HANDLE_INVALID))?;
        template::check_usage(&wk.attrs, Usage::Wrap, mech.mech)?;
        let target = self
            .object(ctx, key)
            .map_err(|_| err(CKR_KEY_HANDLE_INVALID))?;
        if !target.attrs.flag_or(CKA_EXTRACTABLE, false) {
            return Err(Error::logged(
                CKR_KEY_UNEXTRACTABLE,
                "key to wrap is not extractable",
            ));
        }
        if target.attrs.flag_or(CKA_WRAP_WITH_TRUSTED, false)
            && !wk.attrs.flag_or(CKA_TRUSTED, false)
        {
            return Err(err(CKR_KEY_NOT_WRAPPABLE));
        }
        crypto::wrap(mech, &wk.key()?, &target.attrs)
    }

    fn unwrap_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        unwrapping: ObjectId,
        wrapped: &[u8],
        tpl: &[Attr],
    ) -> Result<ObjectId> {
        Self::mechanism_known(mech.mech)?;
        let uk = self
            .object(ctx, unwrapping)
            .map_err(|_| err(CKR_UNWRAPPING_KEY_HANDLE_INVALID))?;
        template::check_usage(&uk.attrs, Usage::Unwrap, mech.mech)?;
        let mut attrs = template::new_object(Op::Unwrap, tpl, &Attrs::new())?;
        Self::check_access(ctx, &attrs)?;
        let values = crypto::unwrap(mech, &uk.key()?, wrapped, &attrs)?;
        attrs.extend(values);
        let extra = crypto::complete_import(&attrs)?;
        attrs.extend(extra);
        self.insert(ctx, attrs)
    }

    fn derive_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        base: ObjectId,
        tpl: &[Attr],
    ) -> Result<ObjectId> {
        if let MechParam::Kbkdf(k) = &mech.param {
            // Reached without derive_keys (through a replica group): one key only.
            if !k.additional.is_empty() {
                return Err(err(CKR_MECHANISM_PARAM_INVALID));
            }
            return Ok(self.kbkdf_keys(ctx, mech, base, tpl)?[0]);
        }
        Self::mechanism_known(mech.mech)?;
        let bk = self
            .object(ctx, base)
            .map_err(|_| err(CKR_KEY_HANDLE_INVALID))?;
        template::check_usage(&bk.attrs, Usage::Derive, mech.mech)?;
        let mut attrs = Self::derived_template(ctx, tpl)?;
        let other = match mech.param {
            MechParam::Key(id) => {
                let o = self
                    .object(ctx, id)
                    .map_err(|_| err(CKR_MECHANISM_PARAM_INVALID))?;
                template::check_usage(&o.attrs, Usage::Derive, mech.mech)
                    .map_err(|_| err(CKR_KEY_FUNCTION_NOT_PERMITTED))?;
                Some(o.key()?)
            }
            _ => None,
        };
        let values = crypto::derive(mech, &bk.key()?, other.as_ref(), &attrs)?;
        attrs.extend(values);
        let sensitive = attrs.flag_or(CKA_SENSITIVE, false);
        let extractable = attrs.flag_or(CKA_EXTRACTABLE, false);
        attrs.set_flag(
            CKA_ALWAYS_SENSITIVE,
            bk.attrs.flag_or(CKA_ALWAYS_SENSITIVE, false) && sensitive,
        );
        attrs.set_flag(
            CKA_NEVER_EXTRACTABLE,
            bk.attrs.flag_or(CKA_NEVER_EXTRACTABLE, false) && !extractable,
        );
        self.insert(ctx, attrs)
    }

    fn derive_keys(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        base: ObjectId,
        tpl: &[Attr],
    ) -> Result<Vec<ObjectId>> {
        match mech.param {
            MechParam::Kbkdf(_) => self.kbkdf_keys(ctx, mech, base, tpl),
            _ => Ok(vec![self.derive_key(ctx, mech, base, tpl)?]),
        }
    }

    fn encapsulate_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        key: ObjectId,
        tpl: &[Attr],
        out: &mut [u8],
    ) -> Result<Encapsulated> {
        let k = self.key_for(ctx, key, Usage::Encapsulate, mech)?;
        let n = crypto::pqc::ciphertext_len(mech, &k)?;
        let Some(out) = out.get_mut(..n) else {
            return Ok(Encapsulated::NeedsRoom(n));
        };
        let key = self.kem_key(ctx, &k, tpl, |k, a| {
            crypto::pqc::encapsulate(mech, k, a, out)
        })?;
        Ok(Encapsulated::Key { len: n, key })
    }

    fn decapsulate_key(
        &self,
        ctx: &Ctx,
        mech: &Mechanism,
        key: ObjectId,
        ciphertext: &[u8],
        tpl: &[Attr],
    ) -> Result<ObjectId> {
        let k = self.key_for(ctx, key, Usage::Decapsulate, mech)?;
        self.kem_key(ctx, &k, tpl, |k, a| {
            crypto::pqc::decapsulate(mech, k, ciphertext, a)
        })
    }

    fn generate_random(&self, out: &mut [u8]) -> Result<()> {
        crypto::random(out)
    }

    /// The system CSPRNG needs no seed; extra bytes are accepted and add nothing (as the
    /// spec permits for a token that mixes its own entropy).
    fn seed_random(&self, _seed: &[u8]) -> Result<()> {
        Ok(())
    }

    fn digest_key_value(&self, ctx: &Ctx, key: ObjectId) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let o = self
            .object(ctx, key)
            .map_err(|_| err(CKR_KEY_HANDLE_INVALID))?;
        match (o.attrs.ulong(CKA_CLASS), o.attrs.bytes(CKA_VALUE)) {
            (Some(CKO_SECRET_KEY), Some(v)) => Ok(zeroize::Zeroizing::new(v.to_vec())),
            _ => Err(err(CKR_KEY_INDIGESTIBLE)),
        }
    }
}

fn pin_flags(failures: u32, low: CK_FLAGS, last: CK_FLAGS, locked: CK_FLAGS) -> CK_FLAGS {
    match failures {
        0 => 0,
        // COUNT_LOW stays: a wrong PIN has been entered since the last success.
        n if n >= MAX_PIN_FAILURES => low | locked,
        n if n + 1 == MAX_PIN_FAILURES => low | last,
        _ => low,
    }
}

fn path_hash(p: &Path) -> u64 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, p.as_os_str().as_encoded_bytes());
    u64::from_be_bytes(d.as_ref()[..8].try_into().unwrap_or([0; 8]))
}
