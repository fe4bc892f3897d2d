//! The one error type the faces (CLI, Tauri commands, HTTP) map from: every variant has a stable
//! snake_case code a UI can switch on, and a message a person can act on. No token text, ever.

use crate::oauth::auth_json::{AuthJsonError, AuthSource};
use crate::oauth::login::LoginError;
use crate::store::StoreError;
use crate::vault::VaultError;
use serde::Serialize;

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
    Endpoint(#[from] crate::endpoint::EndpointError),
    #[error("invalid label: {0}")]
    InvalidLabel(String),
    /// `--label` on an import of a sign-in already held under another label: nothing was written.
    #[error("this sign-in is already held as account `{held}`, and an import never renames an account (nothing was changed). Import it without a label to update its tokens, and rename it separately if you want: {rename}")]
    ImportWouldRename {
        held: String,
        asked: String,
        rename: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("no data directory: set CODEX_VAULT_HOME, or HOME so the platform's data directory can be found")]
    NoDataDir,
}

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Store(e) => e.code(),
            AppError::Vault(e) => e.code(),
            AppError::AuthJson { error, .. } => error.code(),
            AppError::Login(e) => e.code(),
            AppError::Refresh(e) => e.code(),
            AppError::Endpoint(e) => e.code(),
            AppError::InvalidLabel(_) => "invalid_label",
            AppError::ImportWouldRename { .. } => "import_would_rename",
            AppError::Config(_) => "config",
            AppError::NoDataDir => "no_data_dir",
        }
    }

    /// The `{code, message}` shape every face sends.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().to_string(),
            message: self.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}
