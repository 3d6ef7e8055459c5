//! Which PKCS#11 calls the trail records, and what each one is to it: the start, a step or
//! the end of an operation on a key, a key's creation or change, a login, or a pure read.

use crate::config::audit::AuditLevel;

/// The operations a session can have in progress, each remembered from its `*Init` (the
/// mechanism and the key) to the call that ends it, so that the line of `C_Sign` names
/// the key and the mechanism `C_SignInit` chose.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Encrypt,
    Decrypt,
    Sign,
    Verify,
    SignRecover,
    VerifyRecover,
    MessageEncrypt,
    MessageDecrypt,
    MessageSign,
    MessageVerify,
}

impl Op {
    pub const COUNT: usize = 10;

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a call is to the trail.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// `C_SignInit`, ...: remembered; a line only at level "all" or when it fails.
    Init(Op),
    /// `C_SignUpdate`, ...: its data length is added to the operation's.
    Update(Op),
    /// `C_Sign`, `C_SignFinal`, `C_EncryptMessage`, ...: a key use, the operation's key.
    Use(Op),
    /// `C_WrapKey`, `C_DigestKey`: a key use, the key named in the arguments.
    UseKey,
    /// `C_UnwrapKey`, `C_DeriveKey`: a key use that makes a key.
    UseKeyCreating,
    /// `C_GenerateKey(Pair)`, `C_CreateObject`, `C_CopyObject`: a new object.
    Create,
    /// `C_DestroyObject`, `C_SetAttributeValue`: a change to the object in the arguments.
    Change,
    /// Logins, logouts, PIN changes, token initialization.
    Auth,
    /// `C_CloseSession`, `C_CloseAllSessions`: the session's operations are forgotten.
    Close,
    /// Everything else: pure reads and session bookkeeping (level "all" only).
    Read,
}

impl Role {
    /// Whether this call gets a line at `level` (an `*Init` also when it fails).
    pub fn logged(self, level: AuditLevel, ok: bool) -> bool {
        match (self, level) {
            (_, AuditLevel::All) => true,
            (Role::Init(_), _) => !ok,
            (Role::Update(_) | Role::Close | Role::Read, _) => false,
            _ => true,
        }
    }

    /// Whether the call touches a key or the token's state: refused while the trail cannot
    /// be written under `on_failure = "refuse"`.
    pub fn guarded(self) -> bool {
        !matches!(self, Role::Update(_) | Role::Close | Role::Read)
    }
}

/// The role of the PKCS#11 function `name`.
#[inline(always)]
pub fn role(name: &str) -> Role {
    use Op::*;
    match name {
        "C_EncryptInit" => Role::Init(Encrypt),
        "C_DecryptInit" => Role::Init(Decrypt),
        "C_SignInit" => Role::Init(Sign),
        "C_VerifyInit" => Role::Init(Verify),
        "C_SignRecoverInit" => Role::Init(SignRecover),
        "C_VerifyRecoverInit" => Role::Init(VerifyRecover),
        "C_MessageEncryptInit" => Role::Init(MessageEncrypt),
        "C_MessageDecryptInit" => Role::Init(MessageDecrypt),
        "C_MessageSignInit" => Role::Init(MessageSign),
        "C_MessageVerifyInit" => Role::Init(MessageVerify),
        "C_EncryptUpdate" => Role::Update(Encrypt),
        "C_DecryptUpdate" => Role::Update(Decrypt),
        "C_SignUpdate" => Role::Update(Sign),
        "C_VerifyUpdate" => Role::Update(Verify),
        "C_Encrypt" | "C_EncryptFinal" => Role::Use(Encrypt),
        "C_Decrypt" | "C_DecryptFinal" => Role::Use(Decrypt),
        "C_Sign" | "C_SignFinal" => Role::Use(Sign),
        "C_Verify" | "C_VerifyFinal" => Role::Use(Verify),
        "C_SignRecover" => Role::Use(SignRecover),
        "C_VerifyRecover" => Role::Use(VerifyRecover),
        "C_EncryptMessage" | "C_EncryptMessageNext" => Role::Use(MessageEncrypt),
        "C_DecryptMessage" | "C_DecryptMessageNext" => Role::Use(MessageDecrypt),
        "C_SignMessage" | "C_SignMessageNext" => Role::Use(MessageSign),
        "C_VerifyMessage" | "C_VerifyMessageNext" => Role::Use(MessageVerify),
        "C_WrapKey" | "C_DigestKey" => Role::UseKey,
        "C_UnwrapKey" | "C_DeriveKey" => Role::UseKeyCreating,
        "C_GenerateKey" | "C_GenerateKeyPair" | "C_CreateObject" | "C_CopyObject" => Role::Create,
        "C_DestroyObject" | "C_SetAttributeValue" => Role::Change,
        "C_Login" | "C_LoginUser" | "C_Logout" | "C_InitPIN" | "C_SetPIN" | "C_InitToken" => {
            Role::Auth
        }
        "C_CloseSession" | "C_CloseAllSessions" => Role::Close,
        _ => Role::Read,
    }
}

/// Whether a call of role `Use` ended its operation (PKCS#11 §5.2: a length query or
/// `CKR_BUFFER_TOO_SMALL` leaves it active; the message functions keep their `*Init`
/// until `C_Message*Final`).
pub fn ends_op(op: Op, rv: cryptoki_sys::CK_RV, length_query: bool) -> bool {
    let message = matches!(
        op,
        Op::MessageEncrypt | Op::MessageDecrypt | Op::MessageSign | Op::MessageVerify
    );
    !message && !length_query && rv != cryptoki_sys::CKR_BUFFER_TOO_SMALL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_uses_are_logged_at_level_keys_and_reads_are_not() {
        assert!(role("C_Sign").logged(AuditLevel::Keys, true));
        assert!(role("C_Login").logged(AuditLevel::Keys, false));
        assert!(!role("C_SignInit").logged(AuditLevel::Keys, true));
        assert!(role("C_SignInit").logged(AuditLevel::Keys, false));
        assert!(!role("C_GetSlotList").logged(AuditLevel::Keys, true));
        assert!(role("C_GetSlotList").logged(AuditLevel::All, true));
        assert!(!role("C_SignUpdate").logged(AuditLevel::Keys, true));
    }

    #[test]
    fn a_length_query_does_not_end_the_operation() {
        assert!(!ends_op(Op::Sign, cryptoki_sys::CKR_OK, true));
        assert!(!ends_op(
            Op::Sign,
            cryptoki_sys::CKR_BUFFER_TOO_SMALL,
            false
        ));
        assert!(ends_op(Op::Sign, cryptoki_sys::CKR_OK, false));
        assert!(!ends_op(Op::MessageSign, cryptoki_sys::CKR_OK, false));
    }
}
