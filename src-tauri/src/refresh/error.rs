//! Why the TokenManager could not hand out a token. The store's and the vault's errors stay typed
//! (`source()` reaches them); on the wire they keep the codes they always had.

use crate::account::FailureReason;
use crate::error_code::ErrorCode;
use crate::store::StoreError;
use crate::vault::VaultError;
use std::sync::Arc;

/// Cloned because one refresh's result is shared by every caller that joined it (single-flight):
/// hence the `Arc` around the store's error, which is not `Clone` itself.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    #[error("account {account} needs sign-in: {} ({}{})", .reason.message, .reason.code, .reason.http_status.map(|s| format!(", HTTP {s}")).unwrap_or_default())]
    Terminal {
        account: String,
        reason: FailureReason,
    },
    #[error("could not refresh account {account} now: {reason}")]
    Transient { account: String, reason: String },
    #[error("account {0} is disabled")]
    Disabled(String),
    #[error("no account {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(Arc<StoreError>),
    #[error(transparent)]
    Vault(VaultError),
    /// The refresh's own task ended without an answer (it panicked or was cancelled).
    #[error("{0}")]
    TaskFailed(String),
}

impl RefreshError {
    pub fn code(&self) -> ErrorCode {
        match self {
            RefreshError::Terminal { .. } => ErrorCode::AccountTerminal,
            RefreshError::Transient { .. } => ErrorCode::RefreshTransient,
            RefreshError::Disabled(_) => ErrorCode::AccountDisabled,
            RefreshError::NotFound(_) => ErrorCode::AccountNotFound,
            RefreshError::Store(_) | RefreshError::TaskFailed(_) => ErrorCode::StoreError,
            RefreshError::Vault(_) => ErrorCode::VaultError,
        }
    }
}

/// Equal when they say the same: a store error is compared by its code and message (it holds a
/// `rusqlite::Error`, which has no equality of its own).
impl PartialEq for RefreshError {
    fn eq(&self, other: &Self) -> bool {
        use RefreshError as E;
        match (self, other) {
            (
                E::Terminal {
                    account: a,
                    reason: r,
                },
                E::Terminal {
                    account: b,
                    reason: s,
                },
            ) => a == b && r == s,
            (
                E::Transient {
                    account: a,
                    reason: r,
                },
                E::Transient {
                    account: b,
                    reason: s,
                },
            ) => a == b && r == s,
            (E::Disabled(a), E::Disabled(b))
            | (E::NotFound(a), E::NotFound(b))
            | (E::TaskFailed(a), E::TaskFailed(b)) => a == b,
            (E::Store(a), E::Store(b)) => a.code() == b.code() && a.to_string() == b.to_string(),
            (E::Vault(a), E::Vault(b)) => a == b,
            _ => false,
        }
    }
}

impl From<StoreError> for RefreshError {
    fn from(e: StoreError) -> Self {
        RefreshError::Store(Arc::new(e))
    }
}

impl From<VaultError> for RefreshError {
    fn from(e: VaultError) -> Self {
        RefreshError::Vault(e)
    }
}
