//! The soft token's own side, below its `Token` methods (`mod.rs`): opening and sealing
//! the store, re-reading it when another process changed it, loading, writing and
//! replacing object files, checking PINs, and the key types its mechanisms make.

use super::*;

impl SoftToken {
    pub fn new(dir: &Path, label: &str, kdf_iterations: Option<u32>) -> Self {
        let t = SoftToken {
            dir: dir.to_path_buf(),
            config_label: label.to_string(),
            kdf_iterations: kdf_iterations.unwrap_or(pin::DEFAULT_ITERATIONS),
            next_id: AtomicU64::new(1),
            seal: None,
            state: RwLock::new(State {
                meta: MetaState::Empty,
                meta_stamp: None,
                mk: None,
                user_in: false,
                objects: HashMap::default(),
                files: HashMap::new(),
                sealed: HashMap::new(),
                dir_stamp: None,
                warned: Default::default(),
            }),
        };
        t.remove_stale_temps();
        t.reload_meta(&mut t.state.write(), true);
        t
    }

    /// Takes the store's cross-process lock for one update.
    pub(super) fn lock(&self) -> Result<StoreLock> {
        StoreLock::acquire(&self.dir)
    }

    /// At open: removes what writers that died mid-write left behind (under the lock, so
    /// that no live writer's file is taken). A store that does not exist yet is not made.
    pub(super) fn remove_stale_temps(&self) {
        if !self.dir.is_dir() {
            return;
        }
        match self.lock() {
            Ok(lock) => {
                lock.remove_stale_temps(&self.dir);
                lock.remove_stale_temps(&store::objects_dir(&self.dir));
            }
            Err(e) => log::warn!(
                "soft token {:?}: stale temporary files not checked: {e}",
                self.config_label
            ),
        }
    }

    /// The token with its master key sealed by `seal` (`[slot.seal]`).
    pub fn with_seal(mut self, seal: Arc<dyn StoreSeal>) -> Self {
        self.seal = Some(seal);
        self
    }

    pub(super) fn make_record(&self, pin: &[u8], mk: &MasterKey) -> Result<store::PinRecord> {
        pin::make_record_sealed(pin, mk, self.kdf_iterations, self.seal.as_deref())
    }

    /// Adds the seal's record (its key and check HMAC) to a token that lacks it.
    pub(super) fn add_seal_record(&self, meta: &mut TokenMeta) -> Result<()> {
        if let (Some(s), None) = (&self.seal, &meta.seal) {
            meta.seal = Some(store::SealRecord {
                backend: "vault".into(),
                key: s.key_name(),
                check: s.check(&seal_context(&meta.serial), None)?,
            });
        }
        Ok(())
    }

    /// The master key from a PIN record's opened layer: checks that the configured seal
    /// is the one that sealed the token, then has it open the key.
    pub(super) fn unseal(
        &self,
        meta: &TokenMeta,
        rec: &store::PinRecord,
        layer: &[u8],
    ) -> Result<MasterKey> {
        match (&self.seal, &meta.seal) {
            (Some(s), Some(r)) => {
                if r.key != s.key_name() {
                    return Err(Error::logged(
                        CKR_DEVICE_ERROR,
                        format!(
                            "soft token {:?}: sealed by transit key {:?}, but [slot.seal] names {:?}",
                            self.config_label,
                            r.key,
                            s.key_name()
                        ),
                    ));
                }
                let same = s
                    .check(&seal_context(&meta.serial), Some(&r.check))
                    .map(|c| {
                        aws_lc_rs::constant_time::verify_slices_are_equal(c.as_bytes(), r.check.as_bytes())
                            .is_ok()
                    });
                match same {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(Error::logged(
                            CKR_DEVICE_ERROR,
                            format!(
                                "soft token {:?}: transit key {:?} is not the key that sealed this token (its check HMAC differs)",
                                self.config_label, r.key
                            ),
                        ))
                    }
                    Err(e) if e.rv() == CKR_DEVICE_ERROR => return Err(e),
                    Err(_) => {
                        return Err(Error::logged(
                            CKR_DEVICE_ERROR,
                            format!(
                                "soft token {:?}: transit key {:?} cannot make this token's check HMAC: not the key that sealed it",
                                self.config_label, r.key
                            ),
                        ))
                    }
                }
            }
            (None, Some(r)) => {
                return Err(Error::logged(
                    CKR_DEVICE_ERROR,
                    format!(
                        "soft token {:?}: its key is sealed by transit key {:?}; the slot needs its [slot.seal]",
                        self.config_label, r.key
                    ),
                ))
            }
            _ => {}
        }
        if self.seal.is_some() && !rec.sealed {
            log::warn!(
                "soft token {:?}: this PIN's record is not sealed by transit yet (made before [slot.seal]); C_SetPIN or C_InitToken seals it",
                self.config_label
            );
        }
        pin::master_key(rec, layer, self.seal.as_deref())
    }

    pub(super) fn new_id(&self) -> ObjectId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn meta_stamp(&self) -> Option<(SystemTime, u64)> {
        std::fs::metadata(store::meta_path(&self.dir))
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.ino())))
    }

    /// Re-reads token.json when it changed (or always with `force`).
    pub(super) fn reload_meta(&self, st: &mut State, force: bool) {
        let stamp = self.meta_stamp();
        if !force && stamp == st.meta_stamp && stamp.is_some() {
            return;
        }
        st.meta_stamp = stamp;
        let modes = perms::audit(&self.dir, false);
        for w in modes.warnings {
            if st.warned.insert(w.clone()) {
                log::warn!("{w}");
            }
        }
        if !modes.refused.is_empty() {
            let why = modes.refused.join("; ");
            log::error!("soft token {:?}: {why}", self.config_label);
            st.meta = MetaState::Broken(why);
            return;
        }
        st.meta = match store::load_meta(&self.dir) {
            Ok(Loaded::Empty) => MetaState::Empty,
            Ok(Loaded::Meta(m)) => MetaState::Ready(m),
            Err(why) => {
                log::error!("soft token {:?}: {why}", self.config_label);
                MetaState::Broken(why)
            }
        };
    }

    pub(super) fn meta_changed(&self) -> bool {
        self.meta_stamp() != self.state.read().meta_stamp
    }

    /// Re-reads the objects directory when it changed.
    pub(super) fn refresh_objects(&self) {
        let dir = store::objects_dir(&self.dir);
        let stamp = std::fs::metadata(&dir).and_then(|m| m.modified()).ok();
        if stamp.is_some() && stamp == self.state.read().dir_stamp {
            return;
        }
        let mut st = self.state.write();
        if stamp.is_some() && stamp == st.dir_stamp {
            return;
        }
        st.dir_stamp = stamp;
        let mut seen = std::collections::HashSet::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".obj") {
                    continue;
                }
                let Ok(meta) = e.metadata() else { continue };
                seen.insert(name.clone());
                match perms::check(&e.path(), &meta) {
                    perms::Finding::Private => {}
                    perms::Finding::Readable(why) => {
                        if st.warned.insert(why.clone()) {
                            log::warn!("{why}");
                        }
                    }
                    perms::Finding::Writable(why) => {
                        // Someone else may have put this object here: it is not used.
                        if st.warned.insert(why.clone()) {
                            log::error!("{why}");
                        }
                        if let Some((_, id)) = st.files.remove(&name) {
                            st.objects.remove(&id);
                        }
                        st.sealed.remove(&name);
                        continue;
                    }
                }
                if st
                    .files
                    .get(&name)
                    .is_some_and(|(ino, _)| *ino == meta.ino())
                {
                    continue;
                }
                let id = st
                    .files
                    .get(&name)
                    .map(|(_, id)| *id)
                    .unwrap_or_else(|| self.new_id());
                st.files.insert(name.clone(), (meta.ino(), id));
                st.objects.remove(&id);
                st.sealed.remove(&name);
                self.load_file(&mut st, &name, id);
            }
        }
        let gone: Vec<String> = st
            .files
            .keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some((_, id)) = st.files.remove(&name) {
                st.objects.remove(&id);
            }
            st.sealed.remove(&name);
        }
    }

    pub(super) fn load_file(&self, st: &mut State, name: &str, id: ObjectId) {
        let path = store::objects_dir(&self.dir).join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                log::error!("soft token: cannot read {}: {e}", path.display());
                return;
            }
        };
        match store::decode_object(&bytes) {
            Ok(Decoded::Public(attrs)) => {
                st.objects.insert(
                    id,
                    Arc::new(SoftObject::new(attrs, None, Some(name.to_string()))),
                );
            }
            Ok(Decoded::Sealed(sealed)) => {
                if st.user_in {
                    if let Some(mk) = &st.mk {
                        match store::open_private(name, &sealed, mk) {
                            Ok(attrs) => {
                                st.objects.insert(
                                    id,
                                    Arc::new(SoftObject::new(attrs, None, Some(name.to_string()))),
                                );
                            }
                            Err(why) => log::error!(
                                "soft token: object file {} {why}; left untouched",
                                path.display()
                            ),
                        }
                        return;
                    }
                }
                st.sealed.insert(name.to_string(), sealed);
            }
            Err(why) => log::error!(
                "soft token: object file {} is unusable: {why}; left untouched",
                path.display()
            ),
        }
    }

    /// Opens every sealed private object with the master key (after a user login).
    pub(super) fn open_sealed(&self, st: &mut State) {
        let Some(mk) = st.mk.clone() else { return };
        let sealed: Vec<(String, Vec<u8>)> = st.sealed.drain().collect();
        for (name, blob) in sealed {
            let Some(&(_, id)) = st.files.get(&name) else {
                continue;
            };
            match store::open_private(&name, &blob, &mk) {
                Ok(attrs) => {
                    st.objects
                        .insert(id, Arc::new(SoftObject::new(attrs, None, Some(name))));
                }
                Err(why) => {
                    log::error!(
                        "soft token: object file {} {why}; left untouched",
                        store::objects_dir(&self.dir).join(&name).display()
                    );
                    st.sealed.insert(name, blob);
                }
            }
        }
    }

    pub(super) fn meta(st: &State) -> Result<&TokenMeta> {
        match &st.meta {
            MetaState::Ready(m) => Ok(m),
            MetaState::Empty => Err(Error::logged(
                CKR_TOKEN_NOT_RECOGNIZED,
                "soft token is not initialized (C_InitToken)",
            )),
            MetaState::Broken(why) => Err(Error::logged(CKR_DEVICE_ERROR, why)),
        }
    }

    pub(super) fn object(&self, ctx: &Ctx, id: ObjectId) -> Result<Arc<SoftObject>> {
        let st = self.state.read();
        match st.objects.get(&id) {
            Some(o) if o.visible(ctx) => Ok(o.clone()),
            _ => Err(err(CKR_OBJECT_HANDLE_INVALID)),
        }
    }

    /// The key `id` for `usage` with `mech`: a mechanism this token knows, a key the
    /// session sees whose attributes allow the use.
    pub(super) fn key_for(
        &self,
        ctx: &Ctx,
        id: ObjectId,
        usage: Usage,
        mech: &Mechanism,
    ) -> Result<Arc<Key>> {
        Self::mechanism_known(mech.mech)?;
        let o = self
            .object(ctx, id)
            .map_err(|_| err(CKR_KEY_HANDLE_INVALID))?;
        template::check_usage(&o.attrs, usage, mech.mech)?;
        o.key()
    }

    /// Checks that the session may hold an object with these attributes.
    pub(super) fn check_access(ctx: &Ctx, attrs: &Attrs) -> Result<()> {
        if attrs.flag_or(CKA_TOKEN, false) && !ctx.rw {
            return Err(err(CKR_SESSION_READ_ONLY));
        }
        if attrs.flag_or(CKA_PRIVATE, true) && ctx.login != Login::User {
            return Err(Error::logged(
                CKR_USER_NOT_LOGGED_IN,
                "a private object needs the user logged in",
            ));
        }
        Ok(())
    }

    /// Stores a new object (a file first for a token object) and returns its id.
    pub(super) fn insert(&self, ctx: &Ctx, mut attrs: Attrs) -> Result<ObjectId> {
        Self::check_access(ctx, &attrs)?;
        // Kept until destroyed: without the room left for filling it in.
        attrs.shrink_to_fit();
        let id = self.new_id();
        let file = if attrs.flag_or(CKA_TOKEN, false) {
            let uid = attrs
                .bytes(CKA_UNIQUE_ID)
                .map(|u| String::from_utf8_lossy(u).into_owned())
                .unwrap_or_else(|| id.to_string());
            let name = format!("{uid}.obj");
            self.write_object(&name, &attrs)?;
            Some(name)
        } else {
            None
        };
        let session = if file.is_some() {
            None
        } else {
            Some(ctx.session)
        };
        let mut st = self.state.write();
        if let Some(name) = &file {
            let ino = std::fs::metadata(store::objects_dir(&self.dir).join(name))
                .map(|m| m.ino())
                .unwrap_or(0);
            st.files.insert(name.clone(), (ino, id));
        }
        st.objects
            .insert(id, Arc::new(SoftObject::new(attrs, session, file)));
        Ok(id)
    }

    pub(super) fn write_object(&self, name: &str, attrs: &Attrs) -> Result<()> {
        let private = attrs.flag_or(CKA_PRIVATE, true);
        let mk = self.state.read().mk.clone();
        let bytes =
            zeroize::Zeroizing::new(store::encode_object(name, attrs, private, mk.as_deref())?);
        let lock = self.lock()?;
        store::write_atomic(&lock, &store::objects_dir(&self.dir), name, &bytes)
    }

    /// Replaces an object's attributes (C_SetAttributeValue).
    pub(super) fn replace(&self, id: ObjectId, old: &SoftObject, attrs: Attrs) -> Result<()> {
        if let Some(name) = &old.file {
            self.write_object(name, &attrs)?;
        }
        let mut st = self.state.write();
        if let Some(name) = &old.file {
            let ino = std::fs::metadata(store::objects_dir(&self.dir).join(name))
                .map(|m| m.ino())
                .unwrap_or(0);
            st.files.insert(name.clone(), (ino, id));
        }
        st.objects.insert(
            id,
            Arc::new(SoftObject::new(attrs, old.session, old.file.clone())),
        );
        Ok(())
    }

    pub(super) fn check_pin_len(pin: &[u8]) -> Result<()> {
        if pin.len() < MIN_PIN_LEN || pin.len() > MAX_PIN_LEN {
            return Err(Error::logged(
                CKR_PIN_LEN_RANGE,
                format!("PIN length must be {MIN_PIN_LEN} to {MAX_PIN_LEN}"),
            ));
        }
        Ok(())
    }

    /// Checks `pin` against a record, counting failures in token.json; the master key when
    /// it is right. Takes the store's lock for the check (the seal, a network call, is
    /// asked after it is released).
    pub(super) fn verify_pin(&self, st: &mut State, who: Login, pin: &[u8]) -> Result<MasterKey> {
        let lock = self.lock()?;
        let (meta, rec, layer) = self.check_pin(&lock, st, who, pin)?;
        drop(lock);
        self.unseal(&meta, &rec, &layer)
    }

    /// The PIN check proper, with the lock held: token.json is re-read first, so that the
    /// failure count is the one every process shares and each guess is counted once.
    /// Returns the token's meta, the PIN's record and its opened PIN layer.
    pub(super) fn check_pin(
        &self,
        lock: &StoreLock,
        st: &mut State,
        who: Login,
        pin: &[u8],
    ) -> Result<(TokenMeta, store::PinRecord, zeroize::Zeroizing<Vec<u8>>)> {
        self.reload_meta(st, true);
        let meta = Self::meta(st)?.clone();
        let (rec, failures) = match who {
            Login::So => (Some(&meta.so), meta.so_failures),
            _ => (meta.user.as_ref(), meta.user_failures),
        };
        let rec = rec.ok_or_else(|| {
            Error::logged(
                CKR_USER_PIN_NOT_INITIALIZED,
                "the user PIN is not initialized (C_InitPIN)",
            )
        })?;
        if failures >= MAX_PIN_FAILURES {
            return Err(Error::logged(
                CKR_PIN_LOCKED,
                format!("{who:?} PIN is locked after {failures} wrong entries"),
            ));
        }
        let result = pin::unwrap_pin_layer(rec, pin);
        let mut m = meta.clone();
        match (&result, who) {
            (Ok(_), Login::So) => m.so_failures = 0,
            (Ok(_), _) => m.user_failures = 0,
            (Err(_), Login::So) => m.so_failures += 1,
            (Err(_), _) => m.user_failures += 1,
        }
        if (m.so_failures, m.user_failures) != (meta.so_failures, meta.user_failures) {
            self.save_meta(lock, st, m)?;
        }
        if result.is_err() {
            log::warn!("soft token {:?}: wrong {who:?} PIN", self.config_label);
        }
        let rec = rec.clone();
        Ok((meta, rec, result?))
    }

    pub(super) fn save_meta(&self, lock: &StoreLock, st: &mut State, m: TokenMeta) -> Result<()> {
        store::save_meta(lock, &self.dir, &m)?;
        st.meta = MetaState::Ready(m);
        st.meta_stamp = self.meta_stamp();
        Ok(())
    }

    pub(super) fn secret_key_type(mech: CK_MECHANISM_TYPE) -> Result<CK_KEY_TYPE> {
        Ok(match mech {
            CKM_AES_KEY_GEN => CKK_AES,
            CKM_GENERIC_SECRET_KEY_GEN => CKK_GENERIC_SECRET,
            CKM_DES_KEY_GEN => CKK_DES,
            CKM_DES3_KEY_GEN => CKK_DES3,
            CKM_SHA_1_KEY_GEN => CKK_SHA_1_HMAC,
            CKM_SHA224_KEY_GEN => CKK_SHA224_HMAC,
            CKM_SHA256_KEY_GEN => CKK_SHA256_HMAC,
            CKM_SHA384_KEY_GEN => CKK_SHA384_HMAC,
            CKM_SHA512_KEY_GEN => CKK_SHA512_HMAC,
            _ => return Err(err(CKR_MECHANISM_INVALID)),
        })
    }

    pub(super) fn pair_key_type(mech: CK_MECHANISM_TYPE) -> Result<CK_KEY_TYPE> {
        Ok(match mech {
            CKM_RSA_PKCS_KEY_PAIR_GEN | CKM_RSA_X9_31_KEY_PAIR_GEN => CKK_RSA,
            CKM_EC_KEY_PAIR_GEN => CKK_EC,
            CKM_EC_EDWARDS_KEY_PAIR_GEN => CKK_EC_EDWARDS,
            CKM_EC_MONTGOMERY_KEY_PAIR_GEN => CKK_EC_MONTGOMERY,
            CKM_ML_DSA_KEY_PAIR_GEN => CKK_ML_DSA,
            CKM_ML_KEM_KEY_PAIR_GEN => CKK_ML_KEM,
            _ => return Err(err(CKR_MECHANISM_INVALID)),
        })
    }

    pub(super) fn fixed(class: CK_OBJECT_CLASS, key_type: Option<CK_KEY_TYPE>) -> Attrs {
        let mut a = Attrs::new();
        a.set_ulong(CKA_CLASS, class);
        if let Some(k) = key_type {
            a.set_ulong(CKA_KEY_TYPE, k);
        }
        a
    }

    pub(super) fn mechanism_known(mech: CK_MECHANISM_TYPE) -> Result<()> {
        // Sorted once: a key use checks its mechanism on every call, and the list (in the
        // order C_GetMechanismList gives it) has the post-quantum ones last.
        static SORTED: std::sync::OnceLock<Vec<CK_MECHANISM_TYPE>> = std::sync::OnceLock::new();
        let sorted = SORTED.get_or_init(|| {
            let mut v: Vec<_> = crypto::mechanisms().iter().map(|(m, _)| *m).collect();
            v.sort_unstable();
            v
        });
        if sorted.binary_search(&mech).is_ok() {
            Ok(())
        } else {
            // Consumers probe mechanisms routinely: no log line for this one.
            Err(err(CKR_MECHANISM_INVALID))
        }
    }
}
