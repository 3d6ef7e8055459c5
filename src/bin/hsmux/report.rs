//! `hsmux check` and `hsmux status`: load the configuration exactly as the module does,
//! open every slot and print its state (with `detailed`, also keys and mechanisms). Every
//! problem found is a line with PROBLEM; the exit status is 1 when there is one.

use hsmux::config::Config;
use hsmux::config::TokenSelector;
use hsmux::core::api::general;
use hsmux::core::instance;
use hsmux::core::rv;
use hsmux::proxy::ModuleSlot;
use hsmux::replica::{ReplicaGroup, State};
use hsmux::setup;
use std::path::Path;
use std::process::ExitCode;

pub fn check(config: Option<&Path>, detailed: bool) -> ExitCode {
    let cfg = match Config::locate(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hsmux: configuration error: {e}");
            return ExitCode::from(1);
        }
    };
    println!("config: {}", cfg.source);
    setup::without_metrics();
    if let Err(e) = setup::initialize(config) {
        eprintln!("hsmux: cannot initialize: {e}");
        return ExitCode::from(1);
    }
    let mut problems = 0;
    if let Some(why) = hsmux::logging::file_problem() {
        problems += 1;
        println!("log: PROBLEM: {why} (the module logs to stderr instead)");
    }
    let (slots, groups) = match instance::get() {
        Ok(inst) => (
            inst.all_slots
                .iter()
                .map(|id| match inst.slots.iter().find(|s| s.id == *id) {
                    Some(s) => (*id, SlotRef::Core(s.clone())),
                    None => match hsmux::proxy::slot(*id) {
                        Some(m) => (*id, SlotRef::Module(m)),
                        None => unreachable!("every configured slot is a core or a module slot"),
                    },
                })
                .collect::<Vec<_>>(),
            setup::groups(),
        ),
        Err(e) => {
            eprintln!("hsmux: cannot initialize: {e}");
            return ExitCode::from(1);
        }
    };
    // Each slot's protection level and key-use policy (docs/policy.md).
    let rules = hsmux::policy::build(&cfg).unwrap_or_default();
    let policy = |i: usize| {
        if let Some(r) = rules.get(i) {
            println!("  {}", r.describe());
        }
    };
    for (i, (slot, kind)) in slots.into_iter().enumerate() {
        if let Some((_, g)) = groups.iter().find(|(id, _)| *id == slot) {
            problems += group_slot(slot, g, detailed);
            policy(i);
            continue;
        }
        let (line, mechs) = match &kind {
            SlotRef::Core(_) => core_slot(slot),
            SlotRef::Module(m) => module_slot(m),
        };
        // A remote service is reached now (C_Initialize never waits on one). A token that
        // takes the consumer's PIN (the soft token) lists what it shows without one, in
        // `check` only: `status` stays the slots' states.
        let keys = match &kind {
            SlotRef::Core(s) if detailed || !s.token.needs_pin() => s.token.describe_keys(),
            _ => None,
        };
        let line = match (line, &keys) {
            (Ok(_), Some(Err(e))) => Err(format!(
                "{} not reached ({e}; see the log line above)",
                s_desc(&kind)
            )),
            (l, _) => l,
        };
        let (warnings, trouble) = match &kind {
            SlotRef::Core(s) => (s.token.warnings(), s.token.problems()),
            SlotRef::Module(_) => (Vec::new(), Vec::new()),
        };
        match line {
            Ok((text, locked)) => {
                problems += locked as usize;
                println!("slot {slot}: {text}");
                policy(i);
                problems += trouble.len();
                for p in &trouble {
                    println!("  PROBLEM: {p}");
                }
                for w in &warnings {
                    println!("  WARNING: {w}");
                }
                if let Some(Ok(lines)) = &keys {
                    if lines.is_empty() {
                        println!("  no usable keys");
                    }
                    for l in lines {
                        println!("  {l}");
                    }
                }
                if detailed {
                    let mechs = mechs.unwrap_or_default();
                    println!("  {} mechanisms: {}", mechs.len(), mech_names(&mechs));
                }
            }
            Err(text) => {
                problems += 1;
                println!("slot {slot}: PROBLEM: {text}");
                policy(i);
                for w in trouble.iter().chain(&warnings) {
                    println!("  {w}");
                }
            }
        }
    }
    problems += cloudhsm_clusters();
    let _ = setup::finalize();
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Where a configured slot lives: the core's slots or the module-slot passthrough.
enum SlotRef {
    Core(std::sync::Arc<hsmux::core::slot::Slot>),
    Module(std::sync::Arc<ModuleSlot>),
}

/// What a core slot's token says it is (the slot description).
fn s_desc(kind: &SlotRef) -> String {
    match kind {
        SlotRef::Core(s) => s.token.slot_description(),
        SlotRef::Module(m) => m.library_path().to_string(),
    }
}

/// A slot's line and whether it shows a problem (a locked PIN), or why it cannot be used;
/// and its mechanisms.
type SlotReport = (
    Result<(String, bool), String>,
    Option<Vec<cryptoki_sys::CK_MECHANISM_TYPE>>,
);

/// The token's state from its flags: initialized or not, and each PIN's state (count low,
/// final try, locked). `true` when a PIN is locked: the token cannot be used as it is.
fn token_state(flags: cryptoki_sys::CK_FLAGS) -> (String, bool) {
    use cryptoki_sys::*;
    if flags & CKF_TOKEN_INITIALIZED == 0 {
        return (
            "NOT initialized (hsmux init, or C_InitToken: pkcs11-tool --init-token)".into(),
            false,
        );
    }
    let mut parts = vec!["initialized".to_string()];
    let mut locked = false;
    let mut pin = |who: &str, set: bool, low: CK_FLAGS, last: CK_FLAGS, lock: CK_FLAGS| {
        if !set {
            parts.push(format!("{who} PIN not set (C_InitPIN)"));
        } else if flags & lock != 0 {
            locked = true;
            parts.push(format!(
                "PROBLEM: {who} PIN LOCKED after too many wrong entries"
            ));
        } else if flags & last != 0 {
            parts.push(format!(
                "{who} PIN: FINAL TRY (one more wrong entry locks it)"
            ));
        } else if flags & low != 0 {
            parts.push(format!(
                "{who} PIN: count low (wrong entries since the last login)"
            ));
        } else {
            parts.push(format!("{who} PIN ok"));
        }
    };
    pin(
        "user",
        flags & CKF_USER_PIN_INITIALIZED != 0,
        CKF_USER_PIN_COUNT_LOW,
        CKF_USER_PIN_FINAL_TRY,
        CKF_USER_PIN_LOCKED,
    );
    pin(
        "SO",
        true,
        CKF_SO_PIN_COUNT_LOW,
        CKF_SO_PIN_FINAL_TRY,
        CKF_SO_PIN_LOCKED,
    );
    (parts.join(", "), locked)
}

fn core_slot(slot: cryptoki_sys::CK_SLOT_ID) -> SlotReport {
    match general::token_info(slot) {
        Ok((t, _, _)) => {
            let (state, locked) = token_state(t.flags);
            (
                Ok((
                    format!("token {:?} serial {} {state}", t.label, t.serial),
                    locked,
                )),
                general::mechanism_list(slot).ok(),
            )
        }
        Err(e) => (Err(format!("{e} (see the log line above)")), None),
    }
}

fn field(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end().to_string()
}

fn module_slot(m: &ModuleSlot) -> SlotReport {
    if let Some(why) = m.disabled_reason() {
        return (
            Err(format!(
                "{:?}: vendor library {}: {why}",
                m.label,
                m.library_path()
            )),
            None,
        );
    }
    let select = match m.selector() {
        TokenSelector::Label(l) => format!("token label {l:?}"),
        TokenSelector::Serial(s) => format!("serial {s:?}"),
        TokenSelector::Slot(n) => format!("vendor slot {n}"),
    };
    match m.vendor_token_info() {
        Ok(t) => {
            let (state, locked) = token_state(t.flags);
            (
                Ok((
                    format!(
                        "{:?} = {} of {} (vendor slot {}): token {:?} serial {} model {:?} {state}",
                        m.label,
                        select,
                        m.library_path(),
                        m.vendor_slot().unwrap_or_default(),
                        field(&t.label),
                        field(&t.serialNumber),
                        field(&t.model),
                    ),
                    locked,
                )),
                m.vendor_mechanisms().ok(),
            )
        }
        Err(e) => (
            Err(format!(
                "{:?}: no {select} in {} ({})",
                m.label,
                m.library_path(),
                rv::name(e)
            )),
            None,
        ),
    }
}

fn mech_names(mechs: &[cryptoki_sys::CK_MECHANISM_TYPE]) -> String {
    hsmux::core::mechname::names(mechs)
}

/// A replica group: each replica's health, and with `detailed` the keys each holds and the
/// keys not on every replica. Returns the number of problems.
fn group_slot(slot: cryptoki_sys::CK_SLOT_ID, g: &ReplicaGroup, detailed: bool) -> usize {
    let mut problems = 0;
    let inv = g.inventory();
    println!("slot {slot}: replica group with {} replicas", inv.len());
    let mut all: Vec<(String, Vec<String>)> = Vec::new();
    for (name, state, cause, keys) in &inv {
        match (state, keys) {
            (State::Healthy, Ok(k)) | (State::Degraded, Ok(k)) => {
                println!("  replica {name}: {} ({} keys)", state.name(), k.len());
                all.push((name.clone(), k.clone()));
            }
            (_, Err(e)) => {
                problems += 1;
                println!(
                    "  replica {name}: PROBLEM: not reached ({e}{})",
                    if cause.is_empty() {
                        String::new()
                    } else {
                        format!("; {cause}")
                    }
                );
            }
            (State::Down, Ok(_)) => {
                problems += 1;
                println!("  replica {name}: PROBLEM: down ({cause})");
            }
        }
    }
    for r in g.replicas() {
        if let Some((at, what, n)) = r.last_reinit() {
            let at =
                jiff::Timestamp::try_from(at).map_or_else(|_| "?".into(), |t| format!("{t:.0}"));
            println!(
                "  replica {}: last re-initialisation of its library {at}: {what} ({n} in all)",
                r.name
            );
        }
    }
    if !detailed || all.is_empty() {
        return problems;
    }
    let mut every: Vec<&String> = all.iter().flat_map(|(_, k)| k.iter()).collect();
    every.sort();
    every.dedup();
    for key in every {
        let on: Vec<&str> = all
            .iter()
            .filter(|(_, k)| k.contains(key))
            .map(|(n, _)| n.as_str())
            .collect();
        if on.len() == all.len() {
            println!("  key {key}: on every replica");
        } else {
            problems += 1;
            println!(
                "  key {key}: PROBLEM: only on {} (served from there; copy it to the others)",
                on.join(", ")
            );
        }
    }
    problems
}

/// The CloudHSM clusters of `backend = "cloudhsm"` slots and replicas, as DescribeClusters
/// shows them now: each HSM with its ENI address and state. A cluster without an ACTIVE
/// HSM, or that cannot be described, is a problem.
fn cloudhsm_clusters() -> usize {
    let mut problems = 0;
    for w in hsmux::backend::aws_kms::cluster::watches() {
        match w.describe() {
            Ok(hsms) => {
                let active = hsms.iter().filter(|h| h.active()).count();
                let note = if active == 0 {
                    "PROBLEM: no ACTIVE HSM"
                } else {
                    "ok"
                };
                problems += (active == 0) as usize;
                println!(
                    "cloudhsm {}: cluster {} at {}: {} HSM(s), {active} ACTIVE: {note}",
                    w.name,
                    w.cluster_id,
                    w.location(),
                    hsms.len()
                );
                for h in hsms {
                    println!(
                        "  hsm {} zone {} EniIp {} State {}",
                        h.id, h.availability_zone, h.eni_ip, h.state
                    );
                }
            }
            Err(e) => {
                problems += 1;
                println!(
                    "cloudhsm {}: cluster {}: PROBLEM: DescribeClusters failed ({e}, see the log line above)",
                    w.name, w.cluster_id
                );
            }
        }
    }
    problems
}
