//! `connect codex` / `disconnect codex`'s errors (`crate::connect`): here beside `AppError`, which
//! carries them, so that `error` depends on nothing above it. Every one leaves the user's
//! `config.toml` as it was.

use super::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no Codex home at {dir}: the directory does not exist (is Codex installed? name another with --codex-home); nothing was changed")]
    NoCodexHome { dir: String },
    #[error("{path} is not valid TOML, so it was left untouched: {detail}")]
    InvalidToml { path: String, detail: String },
    /// Valid TOML whose shape we cannot edit without guessing (e.g. `model_providers` a string).
    #[error("{path}: {detail}; it was left untouched")]
    Unsupported { path: String, detail: String },
    #[error("cannot {action} {path}: {detail}; the file was left as it was")]
    Io {
        action: &'static str,
        path: String,
        detail: String,
    },
    #[error(
        "{dir} is not connected to Codex Vault (nothing to disconnect); connected: {connected}"
    )]
    NotConnected { dir: String, connected: String },
}

impl ConnectError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ConnectError::NoCodexHome { .. } => ErrorCode::CodexHomeMissing,
            ConnectError::InvalidToml { .. } => ErrorCode::CodexConfigInvalid,
            ConnectError::Unsupported { .. } => ErrorCode::CodexConfigUnsupported,
            ConnectError::Io { .. } => ErrorCode::CodexConfigIo,
            ConnectError::NotConnected { .. } => ErrorCode::CodexNotConnected,
        }
    }

    pub(crate) fn io(action: &'static str, path: &std::path::Path, e: &std::io::Error) -> Self {
        ConnectError::Io {
            action,
            path: path.display().to_string(),
            detail: e.to_string(),
        }
    }
}
