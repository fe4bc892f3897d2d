//! Why an encrypted backup could not be written or read, or a restored account not enabled.
//! Defined here so `error/` names no `backup` type; raised by `backup` and `accounts::restore`.

use super::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the passphrase does not open {path} (nothing was changed). Check it and try again")]
    WrongPassphrase { path: String },
    #[error("{path} is not a Codex Vault backup ({why}); nothing was changed")]
    NotABackup { path: String, why: String },
    #[error("{path} was written by a newer Codex Vault (backup format {found}; this build reads up to {supported}); nothing was changed. Update Codex Vault to restore it")]
    TooNew {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("cannot {action} {path}: {detail}")]
    Io {
        action: &'static str,
        path: String,
        detail: String,
    },
    /// Missing, too short, not repeated the same, or unreadable: the message says which.
    #[error("{0}")]
    Passphrase(String),
    #[error("account {label} was restored from a backup and stays paused until you confirm its other copy is retired (the machine the backup came from must no longer refresh it): `codex-vault accounts confirm-restored {label}`, or Confirm on its card")]
    RestoredUnconfirmed { label: String },
}

impl BackupError {
    pub fn code(&self) -> ErrorCode {
        match self {
            BackupError::WrongPassphrase { .. } => ErrorCode::BackupWrongPassphrase,
            BackupError::NotABackup { .. } => ErrorCode::BackupNotABackup,
            BackupError::TooNew { .. } => ErrorCode::BackupTooNew,
            BackupError::Io { .. } => ErrorCode::BackupIo,
            BackupError::Passphrase(_) => ErrorCode::BackupPassphrase,
            BackupError::RestoredUnconfirmed { .. } => ErrorCode::RestoreUnconfirmed,
        }
    }
}
