//! The remote token's catalogue, below its `Token` methods (`token.rs`): the service's keys
//! listed as PKCS#11 objects (a key pair per asymmetric version, a secret key per symmetric
//! one), their handles and mechanisms, and the plan of a signature for a key.

use super::*;

impl RemoteToken {
    pub fn new(
        slot: &str,
        service: Arc<dyn KeyService>,
        gcm_service_iv: bool,
        hsm_only: bool,
        gate: bool,
    ) -> RemoteToken {
        RemoteToken {
            slot: slot.to_string(),
            service,
            gcm_service_iv,
            hsm_only,
            list_ttl: Duration::from_secs(60),
            gate,
            logged_in: AtomicBool::new(false),
            catalog: RwLock::new(Catalog::default()),
            ids: DashMap::new(),
            next_id: AtomicU64::new(1),
            session_keys: DashMap::new(),
        }
    }

    /// The service behind the token (for `hsmux check`).
    pub fn service(&self) -> &Arc<dyn KeyService> {
        &self.service
    }

    pub(super) fn id_for(&self, class: CK_OBJECT_CLASS, version: &str) -> ObjectId {
        *self
            .ids
            .entry((class, version.to_string()))
            .or_insert_with(|| self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// A listing's failure as `C_FindObjectsInit` answers it: a refused listing
    /// (`CKR_KEY_FUNCTION_NOT_PERMITTED`) or a vanished key container
    /// (`CKR_KEY_HANDLE_INVALID`) are not among its codes, and become
    /// `CKR_FUNCTION_FAILED` (not a device error: no failover). Refused credentials stay
    /// `CKR_USER_NOT_LOGGED_IN`, which tells the consumer what to do.
    pub(super) fn find_failed(&self, e: Error) -> Error {
        match e.rv() {
            rv @ (CKR_KEY_FUNCTION_NOT_PERMITTED | CKR_KEY_HANDLE_INVALID) => {
                log::warn!(
                    "slot {}: listing the keys: the service's {} is answered CKR_FUNCTION_FAILED (C_FindObjectsInit cannot return the former)",
                    self.slot,
                    crate::core::rv::name(rv)
                );
                err(CKR_FUNCTION_FAILED)
            }
            _ => e,
        }
    }

    /// Lists the keys again when the list is older than its time to live (or `force`).
    /// A failed listing keeps the previous objects (logged) when there are any.
    pub(crate) fn refresh(&self, force: bool) -> Result<()> {
        let force = self.service.take_stale() || force;
        if !force {
            let c = self.catalog.read();
            if c.fetched.is_some_and(|t| t.elapsed() < self.list_ttl) {
                return Ok(());
            }
        }
        let versions = match self.service.list_keys() {
            Ok(v) => v,
            Err(e) => {
                let c = self.catalog.read();
                if c.fetched.is_some() && !force {
                    log::warn!(
                        "slot {}: listing the keys failed ({e}); the last list is used",
                        self.slot
                    );
                    return Ok(());
                }
                return Err(e);
            }
        };
        let mut order = Vec::new();
        let mut objects = BTreeMap::new();
        for v in versions {
            if self.hsm_only && v.hardware != Some(true) {
                log::debug!("slot {}: {} is not HSM-protected: hidden", self.slot, v.id);
                continue;
            }
            let key = Arc::new(v);
            match self.objects_of(&key) {
                Ok(objs) => {
                    for o in objs {
                        let id = self.id_for(o.class, &key.id);
                        order.push(id);
                        objects.insert(id, Arc::new(o));
                    }
                }
                Err(e) => log::warn!(
                    "slot {}: key version {} is left out: {e}",
                    self.slot,
                    key.id
                ),
            }
        }
        *self.catalog.write() = Catalog {
            fetched: Some(Instant::now()),
            order,
            objects,
        };
        Ok(())
    }

    /// The object(s) of a version: a secret key, or a private and a public key.
    pub(super) fn objects_of(&self, k: &Arc<KeyVersion>) -> Result<Vec<Object>> {
        let mut base = Attrs::new();
        base.set_flag(CKA_TOKEN, true);
        base.set_flag(CKA_MODIFIABLE, false);
        base.set_flag(CKA_COPYABLE, false);
        base.set_flag(CKA_DESTROYABLE, false);
        base.insert(CKA_LABEL, k.label.as_bytes().to_vec());
        base.insert(CKA_ID, k.id.as_bytes().to_vec());
        base.set_ulong(CKA_KEY_TYPE, k.alg.key_type());
        base.set_flag(CKA_LOCAL, true);
        base.set_ulong(CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION);
        base.set_flag(CKA_DERIVE, false);
        base.insert(CKA_START_DATE, Vec::new());
        base.insert(CKA_END_DATE, Vec::new());
        let mut secret_side = base.clone();
        secret_side.set_flag(CKA_PRIVATE, true);
        secret_side.set_flag(CKA_SENSITIVE, true);
        secret_side.set_flag(CKA_ALWAYS_SENSITIVE, true);
        secret_side.set_flag(CKA_EXTRACTABLE, false);
        secret_side.set_flag(CKA_NEVER_EXTRACTABLE, true);
        let (wraps, unwraps) = self.can_wrap(k);
        secret_side.set_flag(CKA_UNWRAP, unwraps);
        secret_side.set_flag(CKA_WRAP_WITH_TRUSTED, false);
        // Present but never revealed: CKR_ATTRIBUTE_SENSITIVE, as for any HSM key.
        secret_side.insert(CKA_VALUE, Vec::new());
        let mechs = self.key_mechanisms(k);
        secret_side.insert(CKA_ALLOWED_MECHANISMS, ulong_list(&mechs));
        if !k.alg.is_asymmetric() {
            let mut a = secret_side;
            a.set_ulong(CKA_CLASS, CKO_SECRET_KEY);
            let bits = match k.alg {
                KeyAlg::AesGcm { bits } | KeyAlg::Hmac { bits, .. } => bits,
                _ => 0,
            };
            a.set_ulong(CKA_VALUE_LEN, (bits / 8) as CK_ULONG);
            // An AES key signs where the service makes HMACs with any key (Vault).
            let mac = matches!(k.alg, KeyAlg::Hmac { .. });
            a.set_flag(CKA_ENCRYPT, !mac && k.usage.encrypt);
            a.set_flag(CKA_DECRYPT, !mac && k.usage.decrypt);
            a.set_flag(CKA_SIGN, k.usage.sign);
            a.set_flag(CKA_VERIFY, k.usage.sign);
            a.set_flag(CKA_WRAP, wraps);
            a.set_flag(CKA_TRUSTED, false);
            return Ok(vec![Object {
                class: CKO_SECRET_KEY,
                key: k.clone(),
                attrs: a,
            }]);
        }
        let spki = k
            .public_spki
            .as_ref()
            .ok_or_else(|| Error::logged(CKR_DEVICE_ERROR, "asymmetric key without public key"))?;
        let (alg, pub_attrs) = public::describe(spki)?;
        let same = match (alg, k.alg) {
            (KeyAlg::Rsa { bits: a }, KeyAlg::Rsa { bits: b }) => a == b,
            (a, b) => a == b,
        };
        if !same {
            return Err(Error::logged(
                CKR_DEVICE_ERROR,
                format!("public key is {alg:?}, the service says {:?}", k.alg),
            ));
        }
        let mut private = secret_side;
        private.set_ulong(CKA_CLASS, CKO_PRIVATE_KEY);
        private.set_flag(CKA_SIGN, k.usage.sign);
        private.set_flag(CKA_DECRYPT, k.usage.decrypt);
        private.set_flag(CKA_SIGN_RECOVER, false);
        private.set_flag(CKA_ALWAYS_AUTHENTICATE, false);
        private.insert(CKA_PUBLIC_KEY_INFO, spki.clone());
        let mut public = base;
        public.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
        public.set_flag(CKA_PRIVATE, false);
        public.set_flag(CKA_VERIFY, k.usage.sign);
        public.set_flag(CKA_ENCRYPT, k.usage.decrypt);
        public.set_flag(CKA_WRAP, wraps);
        public.set_flag(CKA_VERIFY_RECOVER, false);
        public.set_flag(CKA_TRUSTED, false);
        for (t, v) in pub_attrs {
            match t {
                CKA_MODULUS | CKA_PUBLIC_EXPONENT | CKA_MODULUS_BITS | CKA_EC_PARAMS => {
                    private.insert_value(t, v.clone());
                }
                _ => {}
            }
            public.insert_value(t, v);
        }
        if k.alg.is_pqc() {
            self.pqc_attrs(k, &mut private, &mut public);
        }
        if matches!(k.alg, KeyAlg::Rsa { .. }) {
            for t in template::RSA_SECRETS {
                private.insert(*t, Vec::new());
            }
        }
        Ok(vec![
            Object {
                class: CKO_PRIVATE_KEY,
                key: k.clone(),
                attrs: private,
            },
            Object {
                class: CKO_PUBLIC_KEY,
                key: k.clone(),
                attrs: public,
            },
        ])
    }

    /// What a version can be used with (its `CKA_ALLOWED_MECHANISMS`).
    pub(super) fn key_mechanisms(&self, k: &KeyVersion) -> Vec<CK_MECHANISM_TYPE> {
        let offered = self.mechanisms();
        let mut v: Vec<CK_MECHANISM_TYPE> = match k.alg {
            KeyAlg::AesGcm { .. } => {
                let mut m = vec![CKM_AES_GCM];
                if k.usage.sign {
                    m.extend_from_slice(HMACS);
                }
                m
            }
            KeyAlg::Hmac { hash: Some(h), .. } => vec![HMACS[hash_index(h)]],
            KeyAlg::Hmac { hash: None, .. } => HMACS.to_vec(),
            KeyAlg::Ec { .. } => SIGN_EC.to_vec(),
            KeyAlg::Ed25519 => vec![CKM_EDDSA],
            KeyAlg::Rsa { .. } => {
                let mut m = Vec::new();
                if k.usage.sign {
                    m.extend_from_slice(SIGN_RSA);
                }
                if k.usage.decrypt {
                    m.push(CKM_RSA_PKCS_OAEP);
                }
                m
            }
            KeyAlg::MlDsa { .. } => vec![CKM_ML_DSA],
            KeyAlg::SlhDsa { .. } => vec![CKM_SLH_DSA],
            KeyAlg::MlKem { .. } => vec![CKM_ML_KEM],
        };
        if !k.usage.sign_schemes.is_empty() {
            v.retain(|m| match mech_hash(*m) {
                Some(h) => k
                    .usage
                    .sign_schemes
                    .iter()
                    .any(|s| scheme_hash(*s) == Some(h)),
                None => true,
            });
        }
        v.retain(|m| offered.contains(m));
        for m in self.key_transforms(k) {
            if !v.contains(&m) {
                v.push(m);
            }
        }
        v
    }

    /// The object `obj` if it exists and the session may see it.
    pub(super) fn object(&self, ctx: &Ctx, obj: ObjectId) -> Result<Arc<Object>> {
        let c = self.catalog.read();
        let o = c
            .objects
            .get(&obj)
            .cloned()
            .ok_or_else(|| err(CKR_OBJECT_HANDLE_INVALID))?;
        if o.class != CKO_PUBLIC_KEY && ctx.login != Login::User {
            return Err(err(CKR_OBJECT_HANDLE_INVALID));
        }
        Ok(o)
    }

    /// The key of an operation: the object, checked for usage and mechanism.
    pub(super) fn key(
        &self,
        ctx: &Ctx,
        obj: ObjectId,
        usage: Usage,
        mech: &Mechanism,
    ) -> Result<Arc<Object>> {
        let o = self.object(ctx, obj).map_err(|e| match e.rv() {
            CKR_OBJECT_HANDLE_INVALID => err(CKR_KEY_HANDLE_INVALID),
            _ => e,
        })?;
        template::check_usage(&o.attrs, usage, mech.mech)?;
        Ok(o)
    }

    /// A soft-token key made of the public side of `o` (for local verification and
    /// public-key encryption).
    pub(super) fn public_key_of(&self, o: &Object) -> Result<Arc<soft::Key>> {
        let spki = o
            .key
            .public_spki
            .as_ref()
            .ok_or_else(|| err(CKR_KEY_TYPE_INCONSISTENT))?;
        let (_, mut a) = public::describe(spki)?;
        a.set_ulong(CKA_CLASS, CKO_PUBLIC_KEY);
        Ok(Arc::new(soft::Key::from_attrs(&a)?))
    }

    pub(super) fn sign_plan(&self, o: &Object, mech: &Mechanism) -> Result<Plan> {
        let k = &o.key;
        let m = mech.mech;
        let wrong_type = || {
            Error::logged(
                CKR_KEY_TYPE_INCONSISTENT,
                format!("mechanism 0x{m:x} does not fit {} ({:?})", k.id, k.alg),
            )
        };
        let no_param = || match &mech.param {
            MechParam::None => Ok(()),
            MechParam::Bytes(b) if b.is_empty() => Ok(()),
            _ => Err(param_invalid(format!(
                "mechanism 0x{m:x} takes no parameter"
            ))),
        };
        let plan = match k.alg {
            KeyAlg::Ec { curve } => {
                if !SIGN_EC.contains(&m) {
                    return Err(wrong_type());
                }
                no_param()?;
                let h = mech_hash(m);
                Plan {
                    scheme: SignScheme::Ecdsa(h.unwrap_or(HashAlg::Sha256)),
                    hash_here: h,
                    out_len: 2 * curve.field_len(),
                }
            }
            KeyAlg::Ed25519 => {
                if m != CKM_EDDSA {
                    return Err(wrong_type());
                }
                no_param()?;
                Plan {
                    scheme: SignScheme::Ed25519,
                    hash_here: None,
                    out_len: 64,
                }
            }
            KeyAlg::Rsa { bits } => {
                let out_len = (bits as usize).div_ceil(8);
                match m {
                    CKM_RSA_PKCS => {
                        no_param()?;
                        Plan {
                            scheme: SignScheme::Pkcs1(HashAlg::Sha256),
                            hash_here: None,
                            out_len,
                        }
                    }
                    _ if is_rsa_pss(m) => {
                        let Some(p) = mech.pss() else {
                            return Err(param_invalid("RSA-PSS needs CK_RSA_PKCS_PSS_PARAMS"));
                        };
                        let h = HashAlg::from_ckm(p.hash)
                            .ok_or_else(|| param_invalid("RSA-PSS: unknown hash"))?;
                        if mech_hash(m).is_some_and(|mh| mh != h) {
                            return Err(param_invalid(
                                "RSA-PSS: the parameter's hash differs from the mechanism's",
                            ));
                        }
                        if p.mgf != h.mgf() {
                            return Err(param_invalid(
                                "RSA-PSS: services use MGF1 with the message hash",
                            ));
                        }
                        Plan {
                            scheme: SignScheme::Pss(h, p.salt_len as usize),
                            hash_here: mech_hash(m),
                            out_len,
                        }
                    }
                    _ if SIGN_RSA.contains(&m) => {
                        no_param()?;
                        let h = mech_hash(m).ok_or_else(wrong_type)?;
                        Plan {
                            scheme: SignScheme::Pkcs1(h),
                            hash_here: Some(h),
                            out_len,
                        }
                    }
                    _ => return Err(wrong_type()),
                }
            }
            KeyAlg::Hmac { .. } | KeyAlg::AesGcm { .. } if HMACS.contains(&m) => {
                let hash = match k.alg {
                    KeyAlg::Hmac { hash, .. } => hash,
                    _ => None,
                };
                let h = mech_hash(m)
                    .filter(|_| HMACS.contains(&m))
                    .ok_or_else(wrong_type)?;
                if hash.is_some_and(|kh| kh != h) {
                    return Err(wrong_type());
                }
                no_param()?;
                Plan {
                    scheme: SignScheme::Hmac(h),
                    hash_here: None,
                    out_len: h.len(),
                }
            }
            KeyAlg::Hmac { .. } | KeyAlg::AesGcm { .. } => return Err(wrong_type()),
            KeyAlg::MlDsa { .. } | KeyAlg::SlhDsa { .. } | KeyAlg::MlKem { .. } => {
                self.pqc_sign_plan(o, mech)?
            }
        };
        // A scheme the service's key cannot do is refused now, not after the data.
        let fixed = !matches!(m, CKM_ECDSA | CKM_RSA_PKCS | CKM_RSA_PKCS_PSS);
        if fixed && !k.usage.sign_schemes.is_empty() && !k.usage.sign_schemes.contains(&plan.scheme)
        {
            return Err(Error::logged(
                CKR_MECHANISM_INVALID,
                format!(
                    "{}: the service's key signs with {:?} only, not {:?}",
                    k.id, k.usage.sign_schemes, plan.scheme
                ),
            ));
        }
        Ok(plan)
    }

    /// The IV rule of the service-IV contract for an encryption.
    pub(super) fn check_encrypt_iv(&self, iv: &[u8], iv_bits: CK_ULONG) -> Result<()> {
        if iv.len() != ops::GCM_IV || !(iv_bits == 96 || iv_bits == 0) {
            return Err(param_invalid(format!(
                "slot {}: AES-GCM here takes a 12-byte pIv (ulIvLen 12, ulIvBits 96) into which the service's IV is written",
                self.slot
            )));
        }
        if iv.iter().any(|b| *b != 0) && !self.gcm_service_iv {
            return Err(param_invalid(format!(
                "slot {}: the service chooses the AES-GCM IV; pass 12 zero bytes to receive it in pIv, or set gcm_iv = \"service\" to let it replace yours",
                self.slot
            )));
        }
        Ok(())
    }
}
