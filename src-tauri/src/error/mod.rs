//! The one error type the faces (CLI, Tauri commands, HTTP) map from: every variant has a stable
//! snake_case code a UI can switch on, and a message a person can act on. No token text, ever.

use crate::oauth::auth_json::{AuthJsonError, AuthSource};
use crate::oauth::login::LoginError;
use crate::store::StoreError;
use crate::vault::VaultError;
use serde::Serialize;

mod backup;
mod connect;
mod endpoint;
mod ownership;
mod redeem;

pub use crate::error_code::ErrorCode;
pub use backup::BackupError;
pub use connect::ConnectError;
pub use endpoint::EndpointError;
pub use ownership::OwnershipError;
pub use redeem::RedeemError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("cannot import {origin}: {error}")]
    AuthJson {
        origin: AuthSource,
        error: AuthJsonError,
    },
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error(transparent)]
    Refresh(#[from] crate::refresh::RefreshError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("invalid label: {0}")]
    InvalidLabel(String),
    /// `--label` on an import of a sign-in already held under another label: nothing was written.
    #[error("this sign-in is already held as account `{held}`, and an import never renames an account (nothing was changed). Import it without a label to update its tokens, and rename it separately if you want: {rename}")]
    ImportWouldRename {
        held: String,
        asked: String,
        rename: String,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Imported, but the Codex CLI's file could not be moved aside.
    #[error(transparent)]
    Ownership(#[from] OwnershipError),
    #[error("no data directory: set CODEX_VAULT_HOME, or HOME so the platform's data directory can be found")]
    NoDataDir,
    #[error(transparent)]
    Activity(#[from] crate::activity::ActivityError),
    #[error(transparent)]
    Bulk(#[from] BulkError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Redeem(#[from] RedeemError),
    #[error(transparent)]
    Backup(#[from] BackupError),
}

impl From<crate::paths::NoDataDir> for AppError {
    fn from(_: crate::paths::NoDataDir) -> Self {
        AppError::NoDataDir
    }
}

impl AppError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::Store(e) => e.code(),
            AppError::Vault(e) => e.code(),
            AppError::AuthJson { error, .. } => error.code(),
            AppError::Bulk(e) => e.code(),
            AppError::Login(e) => e.code(),
            AppError::Refresh(e) => e.code(),
            AppError::Endpoint(e) => e.code(),
            AppError::InvalidLabel(_) => ErrorCode::InvalidLabel,
            AppError::ImportWouldRename { .. } => ErrorCode::ImportWouldRename,
            AppError::Config(e) => e.code(),
            // The code a failed detach has always had on the wire (it was a `config` string).
            AppError::Ownership(_) => ErrorCode::Config,
            AppError::NoDataDir => ErrorCode::NoDataDir,
            AppError::Activity(e) => e.code(),
            AppError::Connect(e) => e.code(),
            AppError::Redeem(e) => e.code(),
            AppError::Backup(e) => e.code(),
        }
    }

    /// The `{code, message}` shape every face sends.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }
}

/// A setting, an argument or the environment does not allow what was asked. One code on the
/// wire (`config`, as always); the variants say which problem it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("port {port} is not usable: choose a port from 1024 to 65535")]
    PortUnusable { port: u16 },
    /// `{0}` says what could not be found without it.
    #[error("no CODEX_HOME and no home directory: {0}")]
    NoCodexHome(&'static str),
    #[error("--codex-cli applies to an auth.json file, not to stdin")]
    CodexCliNeedsFile,
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
    /// `CODEX_VAULT_AUTH_BASE` / `CODEX_VAULT_CALLBACK_PORTS` (the message names which).
    #[error("{0}")]
    LoginSettings(String),
    /// `CODEX_VAULT_KEY_STORE` (the message names it).
    #[error("{0}")]
    KeyStoreSetting(String),
    #[error("cannot set the store {path} aside: {detail}; nothing was moved")]
    SetAside { path: String, detail: String },
    #[error("preferences not saved: {0}")]
    Prefs(String),
    #[error("cannot read the autostart setting: {0}")]
    AutostartRead(String),
    #[error("cannot change autostart: {0}")]
    AutostartChange(String),
    #[error("--label names one account: a bulk import labels each new account from its file or email (rename afterwards with `codex-vault accounts rename`)")]
    LabelWithBulk,
    #[error("`-` (standard input) takes one auth.json: give files or folders for a bulk import")]
    StdinWithBulk,
    #[error("`{0}` is not a time span: give a number and a unit, e.g. 30s, 15m, 1h, 2d or 1w")]
    Span(String),
}

impl ConfigError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Config
    }
}

/// A bulk import's paths (`accounts::bulk`).
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("nothing to import: give one or more files or folders")]
    NoPaths,
    #[error("cannot read {path}: {detail}")]
    Unreadable { path: String, detail: String },
}

impl BulkError {
    pub fn code(&self) -> ErrorCode {
        match self {
            BulkError::NoPaths => ErrorCode::BulkNoPaths,
            BulkError::Unreadable { .. } => ErrorCode::BulkUnreadable,
        }
    }
}

/// The `{code, message}` every face sends (`ui/src/bindings/ErrorBody.ts`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ts_rs::TS)]
#[ts(export)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}
