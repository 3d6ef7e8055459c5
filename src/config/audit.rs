//! `[audit]`: the tamper-evident audit trail (`crate::audit`), as written in the file.

use serde::Deserialize;
use std::path::PathBuf;

/// Which calls get a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditLevel {
    /// Security-relevant calls only: login/logout, PIN and token changes, key uses, key
    /// creation/destruction/attribute changes, failovers.
    #[default]
    Keys,
    /// Every PKCS#11 call, pure reads (`C_GetSlotList`, ...) included.
    All,
}

/// What a call does when the queue to the writer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFull {
    /// The call waits for room (no line is lost).
    #[default]
    Block,
    /// The line is dropped and counted (`hsmux_audit_dropped_total`).
    Drop,
}

/// What a key use does when its line cannot be written to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Log and count the error (`hsmux_audit_write_errors_total`); the call's result stands.
    #[default]
    Log,
    /// The call answers `CKR_DEVICE_ERROR` unless its line was written, and key uses are
    /// refused while the file cannot be written (no unaudited use).
    Refuse,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The JSON-lines file every process of the host appends to.
    pub file: PathBuf,
    #[serde(default)]
    pub level: AuditLevel,
    #[serde(default)]
    pub on_full: OnFull,
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Lines each lane of the queue to the writer thread holds (default 4096; a calling
    /// thread uses one of the queue's 8 lanes).
    #[serde(default)]
    pub queue: Option<usize>,
    /// Also send every line to syslog (`/dev/log`, facility authpriv), as it is written.
    #[serde(default)]
    pub syslog: bool,
    /// The syslog socket (default `/dev/log`).
    #[serde(default)]
    pub syslog_socket: Option<PathBuf>,
}
