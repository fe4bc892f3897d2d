//! The ownership hand-over's error (`accounts::ownership`), here beside `AppError`, which carries
//! it, so that `error` depends on nothing above it.

use crate::error_code::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    #[error("imported, but could not move {path} aside: {detail}. Move it away yourself (do not run `codex logout`)")]
    Detach { path: String, detail: String },
}

impl OwnershipError {
    pub fn code(&self) -> ErrorCode {
        match self {
            OwnershipError::Detach { .. } => ErrorCode::DetachFailed,
        }
    }
}
