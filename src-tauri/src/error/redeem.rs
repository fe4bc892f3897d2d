//! Why redeeming a reset credit did not happen (or is not known to have happened). Defined
//! here so `error/` names no `accounts` type; raised by `accounts::redeem`.

use super::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error(
        "account {label} has no reset credit to redeem (the backend reports {available} available)"
    )]
    NoCredit { label: String, available: i64 },
    #[error("the answer to redeeming a reset credit of {label} was lost ({detail}), so whether it was spent is not known yet. Run it again: the same request id ({request_id}) is sent, and at most one credit is spent")]
    Unconfirmed {
        label: String,
        request_id: String,
        detail: String,
    },
    #[error("the backend refused to redeem a reset credit of {label}: HTTP {status}{detail}")]
    Refused {
        label: String,
        status: u16,
        detail: String,
    },
    #[error("account {label} cannot redeem a reset credit now: {why}")]
    Unusable { label: String, why: String },
    #[error("redeeming spends one of {label}'s reset credits ({available} available{expiry}); nothing was done. Confirm with --yes")]
    NotConfirmed {
        label: String,
        available: i64,
        expiry: String,
    },
}

impl RedeemError {
    pub fn code(&self) -> ErrorCode {
        match self {
            RedeemError::NoCredit { .. } => ErrorCode::NoResetCredit,
            RedeemError::Unconfirmed { .. } => ErrorCode::RedeemUnconfirmed,
            RedeemError::Refused { .. } => ErrorCode::RedeemRefused,
            RedeemError::Unusable { .. } => ErrorCode::AccountUnusable,
            RedeemError::NotConfirmed { .. } => ErrorCode::ConfirmationRequired,
        }
    }
}
