//! The file as written: the `[[slot]]` and `[[slot.replica]]` tables, and how a slot table
//! becomes a [`SlotConfig`] (a backend, or a replica group of backends).
//!
//! The tables are flat, every backend's keys in one struct with `deny_unknown_fields`, so
//! that the TOML parser itself reports an unknown or mistyped key with its line. serde's
//! `flatten` (or an internally tagged enum) would lose both: it buffers the table first,
//! so toml can then report only the table's first line, and `Spanned` values inside do
//! not deserialize at all. The backend keys are therefore written once, in [`tables!`],
//! which gives them to both tables and to [`Keys`], the one view the checks read.

use super::azure::AnyAuth;
use super::backends::{self, Here};
use super::remote::{RawSeal, RawTransit};
use super::{
    BackendConfig, ConfigError, LogConfig, MetricsConfig, PinCheck, Policy, ReplicaConfig, Secret,
    SlotConfig,
};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    #[serde(default, rename = "slot")]
    pub slots: Vec<Spanned<RawSlot>>,
    #[serde(default)]
    pub audit: Option<super::audit::AuditConfig>,
    #[serde(default)]
    pub policy: super::policy::PolicyConfig,
}

/// Declares [`RawSlot`], [`RawReplica`] and [`Keys`]: `keys` are the backend keys both
/// tables take, `slot_keys` the backend keys only a slot takes (a soft token's, which
/// cannot be a replica), `slot` and `replica` each table's own keys. Every backend key is
/// an `Option`.
macro_rules! tables {
    (
        keys { $($(#[$km:meta])* $k:ident: $kt:ty,)* }
        slot_keys { $($(#[$sm:meta])* $s:ident: $st:ty,)* }
        slot { $($(#[$om:meta])* $o:ident: $ot:ty,)* }
        replica { $($(#[$rm:meta])* $r:ident: $rt:ty,)* }
    ) => {
        /// One `[[slot]]` as written.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct RawSlot {
            $($(#[$om])* $o: $ot,)*
            /// Absent for a replica group (the backends are the replicas').
            backend: Option<Spanned<String>>,
            $($(#[$sm])* $s: $st,)*
            $($(#[$km])* $k: $kt,)*
        }

        /// One `[[slot.replica]]` as written: a name and a backend's keys.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawReplica {
            $($(#[$rm])* $r: $rt,)*
            backend: Spanned<String>,
            $($(#[$km])* $k: $kt,)*
        }

        /// The backend keys of a slot or replica table (a replica's `slot_keys` are `None`).
        #[derive(Default)]
        pub(super) struct Keys {
            pub backend: Option<Spanned<String>>,
            $($(#[$sm])* pub $s: $st,)*
            $($(#[$km])* pub $k: $kt,)*
        }

        impl RawSlot {
            fn keys(&self) -> Keys {
                Keys {
                    backend: self.backend.clone(),
                    $($s: self.$s.clone(),)*
                    $($k: self.$k.clone(),)*
                }
            }
        }

        impl RawReplica {
            fn keys(&self) -> Keys {
                Keys {
                    backend: Some(self.backend.clone()),
                    $($k: self.$k.clone(),)*
                    ..Keys::default()
                }
            }
        }

        impl Keys {
            /// The backend keys given (`backend` aside), in the order declared.
            pub fn given(&self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $(if self.$s.is_some() { v.push(stringify!($s)); })*
                $(if self.$k.is_some() { v.push(stringify!($k)); })*
                v
            }
        }
    };
}

tables! {
    keys {
        // backend = "module" (and "cloudhsm")
        library: Option<Spanned<PathBuf>>,
        token: Option<String>,
        serial: Option<String>,
        slot: Option<u64>,
        pin: Option<Secret>,
        init_args: Option<String>,
        probe_init: Option<bool>,
        max_sessions: Option<u64>,
        // every backend
        timeout_ms: Option<u64>,
        // the remote backends (config/remote.rs)
        address: Option<String>,
        namespace: Option<String>,
        auth: Option<AnyAuth>,
        transit: Option<RawTransit>,
        ca_file: Option<PathBuf>,
        key_ring: Option<String>,
        keys: Option<Vec<String>>,
        credentials: Option<PathBuf>,
        endpoint: Option<String>,
        hsm_only: Option<bool>,
        region: Option<String>,
        access_key_id: Option<Secret>,
        secret_access_key: Option<Secret>,
        session_token: Option<Secret>,
        profile: Option<String>,
        cluster_id: Option<String>,
        gcm_iv: Option<String>,
        // backend = "azure-kv" (config/azure.rs)
        vault: Option<String>,
    }
    slot_keys {
        path: Option<PathBuf>,
        kdf_iterations: Option<u32>,
        /// `[slot.seal]` of a soft slot.
        seal: Option<RawSeal>,
    }
    slot {
        id: Option<u64>,
        label: String,
        user_pin: Option<PinCheck>,
        policy: Option<Spanned<String>>,
        hedge_ms: Option<Spanned<u64>>,
        replica: Option<Vec<Spanned<RawReplica>>>,
        replay_limit: Option<u64>,
        // the key-use policy (config/policy.rs)
        hardware_only: Option<bool>,
        approved_mechanisms: Option<super::policy::Approved>,
        read_only: Option<bool>,
        allow: Option<Vec<super::policy::Use>>,
        protection: Option<super::policy::Protection>,
        fips_extra: Option<Vec<String>>,
    }
    replica {
        name: String,
    }
}

/// One `[[slot]]` table, checked: its backend, or the replica group it describes.
pub(super) fn slot(
    spanned: Spanned<RawSlot>,
    origin: &str,
    line_of: &dyn Fn(usize) -> usize,
) -> Result<SlotConfig, ConfigError> {
    let line = line_of(spanned.span().start);
    let s = spanned.into_inner();
    let at = |l: usize| format!("{origin}: line {l}: [[slot]] {:?}", s.label);
    let here = Here {
        at: &at,
        line,
        line_of,
    };
    let backend = match &s.replica {
        Some(replicas) => replica_group(&s, replicas, &here, origin)?,
        None => {
            if let Some(p) = &s.policy {
                return Err(ConfigError(format!(
                    "{}: key `policy` needs [[slot.replica]] entries",
                    here.key(p)
                )));
            }
            if s.replay_limit.is_some() {
                return Err(here.err("key `replay_limit` needs [[slot.replica]] entries"));
            }
            if let Some(h) = &s.hedge_ms {
                return Err(ConfigError(format!(
                    "{}: key `hedge_ms` needs [[slot.replica]] entries",
                    here.key(h)
                )));
            }
            let keys = s.keys();
            backends::parse(backends::kind(&keys, &here)?, &keys, &here)?
        }
    };
    if let Some(p) = &s.user_pin {
        if hex::decode(&p.sha256).map(|v| v.len()) != Ok(32) {
            return Err(here.err("key `user_pin.sha256` must be 64 hex digits"));
        }
    }
    if s.protection == Some(super::policy::Protection::Hardware)
        && matches!(backend, BackendConfig::Soft { .. })
    {
        return Err(here.err("key `protection`: a soft token's keys live in software"));
    }
    let policy = super::policy::SlotPolicy {
        hardware_only: s.hardware_only,
        approved_mechanisms: s.approved_mechanisms,
        read_only: s.read_only.unwrap_or(false),
        allow: s.allow,
        protection: s.protection,
        fips_extra: s.fips_extra.unwrap_or_default(),
    };
    Ok(SlotConfig {
        id: s.id,
        label: s.label,
        backend,
        user_pin: s.user_pin,
        line,
        policy,
    })
}

/// A slot with `[[slot.replica]]` entries: the policy and each replica's backend.
fn replica_group(
    s: &RawSlot,
    replicas: &[Spanned<RawReplica>],
    here: &Here,
    origin: &str,
) -> Result<BackendConfig, ConfigError> {
    // The group's own table takes no backend keys; `kdf_iterations`, `init_args`,
    // `probe_init` and `timeout_ms` there have always been ignored rather than refused,
    // and stay so for the configurations that carry them.
    let ignored = ["kdf_iterations", "init_args", "probe_init", "timeout_ms"];
    let keys = s.keys();
    if keys.backend.is_some() || keys.given().iter().any(|k| !ignored.contains(k)) {
        return Err(here.err(
            "a slot with [[slot.replica]] entries takes `backend` and its keys in each replica, not in the slot",
        ));
    }
    let policy = match s.policy.as_ref().map(|p| (p.get_ref().as_str(), p)) {
        None | Some(("failover", _)) => Policy::Failover,
        Some(("balance", _)) => Policy::Balance,
        Some((other, p)) => {
            return Err(ConfigError(format!(
                "{}: key `policy`: {other:?} is not \"failover\" or \"balance\"",
                here.key(p)
            )))
        }
    };
    if replicas.is_empty() {
        return Err(here.err("[[slot.replica]] is empty"));
    }
    if replicas.len() > super::MAX_REPLICAS {
        return Err(here.err(format!(
            "{} [[slot.replica]] entries: a slot takes at most {}",
            replicas.len(),
            super::MAX_REPLICAS
        )));
    }
    let mut out: Vec<ReplicaConfig> = Vec::new();
    for r in replicas {
        let rline = (here.line_of)(r.span().start);
        let r = r.get_ref();
        let rat = |l: usize| {
            format!(
                "{origin}: line {l}: [[slot.replica]] {:?} of slot {:?}",
                r.name, s.label
            )
        };
        let rhere = Here {
            at: &rat,
            line: rline,
            line_of: here.line_of,
        };
        if r.name.is_empty() || out.iter().any(|o| o.name == r.name) {
            return Err(rhere.err("key `name` must be given and unique in the slot"));
        }
        let keys = r.keys();
        let kind = backends::kind(&keys, &rhere)?;
        if !kind.replica {
            return Err(ConfigError(format!(
                "{}: key `backend`: {:?} cannot be a replica ({} can)",
                rhere.key(&r.backend),
                r.backend.get_ref(),
                backends::replica_names()
            )));
        }
        out.push(ReplicaConfig {
            name: r.name.clone(),
            pin: r.pin.clone(),
            backend: backends::parse(kind, &keys, &rhere)?,
        });
    }
    let replay_limit = s
        .replay_limit
        .map_or(Ok(super::DEFAULT_REPLAY_LIMIT), usize::try_from)
        .map_err(|_| here.err("key `replay_limit` is too large"))?;
    Ok(BackendConfig::Replicas {
        policy,
        replicas: out,
        replay_limit,
        hedge_ms: s.hedge_ms.as_ref().map(|h| *h.get_ref()),
    })
}
