//! `hsmux check` on a soft token: the keys it shows without a login (public keys; and
//! secret or private keys made with `CKA_PRIVATE=false`), one line each with the key's
//! type or PQC parameter set, and how many objects only a login shows. The PIN is not
//! asked for: `hsmux keys` lists everything after a login.

use super::{MetaState, SoftToken};
use crate::core::attr::AttrsExt;
use crate::core::error::Result;
use crate::core::keyname;
use crate::core::token::{Ctx, Login};
use cryptoki_sys::*;

impl SoftToken {
    pub(super) fn key_lines(&self) -> Result<Vec<String>> {
        if !matches!(self.state.read().meta, MetaState::Ready(_)) {
            // Not initialized or not usable: the slot's own line says so.
            return Ok(Vec::new());
        }
        self.refresh_objects();
        let public = Ctx {
            session: CK_INVALID_HANDLE,
            rw: false,
            login: Login::Public,
        };
        let st = self.state.read();
        let mut lines = Vec::new();
        let mut hidden = st.sealed.len();
        let mut ids: Vec<_> = st.objects.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let o = &st.objects[&id];
            if o.session.is_some() {
                continue;
            }
            if !o.visible(&public) {
                hidden += 1;
                continue;
            }
            let class = match o.attrs.ulong(CKA_CLASS) {
                Some(CKO_PUBLIC_KEY) => "public",
                Some(CKO_PRIVATE_KEY) => "private",
                Some(CKO_SECRET_KEY) => "secret",
                _ => continue,
            };
            let kt = o
                .attrs
                .ulong(CKA_KEY_TYPE)
                .unwrap_or(CK_UNAVAILABLE_INFORMATION);
            let label = o.attrs.bytes(CKA_LABEL).unwrap_or_default();
            let id = match o.attrs.bytes(CKA_ID).unwrap_or_default() {
                [] => String::new(),
                id => format!(" id {}", hex::encode(id)),
            };
            lines.push(format!(
                "key {:?} {class} {}{id}",
                String::from_utf8_lossy(label),
                keyname::describe(kt, o.attrs.ulong(CKA_PARAMETER_SET)),
            ));
        }
        if hidden > 0 {
            lines.push(format!(
                "{hidden} private object(s) not listed without the user PIN (hsmux keys lists them)"
            ));
        }
        Ok(lines)
    }
}
