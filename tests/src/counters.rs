//! What the fake has seen, for assertions ("exactly one refresh reached upstream").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A snapshot of the fake's counters. Every `*_calls` counter counts every request that reached
/// the route, including faulted and rejected ones; the others count outcomes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// `POST /oauth/token`, any grant, any outcome.
    pub token_calls: u64,
    /// Refresh grants that rotated the token.
    pub refreshes_ok: u64,
    /// Refresh grants that presented an already-rotated refresh token.
    pub refresh_reuse: u64,
    /// Refresh grants rejected otherwise (revoked, unknown, wrong client, malformed: other 4xx).
    pub refresh_rejected: u64,
    /// Successful authorization-code exchanges.
    pub code_exchanges: u64,
    /// Rejected authorization-code exchanges (bad verifier, reused/expired code, …).
    pub code_exchanges_rejected: u64,
    /// Rotations done by an "outsider" through [`crate::FakeOpenAi::rotate_out_of_band`]
    /// (not counted in `token_calls`).
    pub out_of_band_rotations: u64,
    /// `POST /oauth/revoke`.
    pub revoke_calls: u64,
    /// `GET /oauth/authorize`.
    pub authorize_calls: u64,
    /// `POST /api/accounts/deviceauth/usercode`.
    pub device_usercode_calls: u64,
    /// `POST /api/accounts/deviceauth/token` (every poll).
    pub device_token_calls: u64,
    /// Polls that came sooner than the interval in force after the previous one.
    pub device_polls_too_early: u64,
    /// `POST /backend-api/codex/responses` (not counting refused WebSocket upgrades).
    pub responses_calls: u64,
    /// Streams whose every event, through `response.completed`, was handed to the connection.
    pub responses_completed: u64,
    /// Streams the client abandoned before the end (the connection went away).
    pub responses_cancelled: u64,
    /// WebSocket upgrade attempts on `/responses`, refused with 426.
    pub websocket_upgrades_refused: u64,
    /// `GET /backend-api/codex/models`.
    pub models_calls: u64,
    /// `GET /backend-api/wham/usage`.
    pub usage_calls: u64,
    /// Injected faults that fired.
    pub faults_fired: u64,
    /// `POST /backend-api/codex/responses/compact`.
    #[serde(default)]
    pub compact_calls: u64,
    /// 400 `invalid_encrypted_content` answers (any shape), from `/responses` and `/compact`.
    #[serde(default)]
    pub encrypted_content_rejected: u64,
    /// `GET /backend-api/wham/rate-limit-reset-credits`.
    #[serde(default)]
    pub reset_credits_calls: u64,
    /// `POST /backend-api/wham/rate-limit-reset-credits/consume` (faulted and repeated ones too).
    #[serde(default)]
    pub reset_consume_calls: u64,
    /// Reset credits actually spent (a retry with the same `redeem_request_id` spends none).
    #[serde(default)]
    pub reset_credits_spent: u64,
    /// The `redeem_request_id` of the last consume call that was handled.
    #[serde(default)]
    pub last_redeem_request_id: Option<String>,
    /// Per `chatgpt_account_id`.
    pub per_account: BTreeMap<String, AccountCounters>,
    /// Request headers of the last `/responses` call (names lower-case, repeated values joined
    /// with ", "), for header-forwarding tests.
    pub last_responses_headers: Option<BTreeMap<String, String>>,
    /// The JSON body of the last `/responses` call (None when it was not JSON).
    pub last_responses_body: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCounters {
    /// Refresh grants presenting a refresh token of this account, any outcome.
    pub refresh_calls: u64,
    pub refreshes_ok: u64,
    pub refresh_reuse: u64,
    /// `/responses` calls authenticated as this account.
    pub responses_calls: u64,
    /// Ciphertexts (`encrypted_content` of reasoning/compaction items) minted for this account.
    #[serde(default)]
    pub encrypted_minted: u64,
    /// Input items carrying this account's own ciphertext, in requests it accepted.
    #[serde(default)]
    pub encrypted_accepted: u64,
    /// Input items carrying ciphertext this account did not mint (another account's, or
    /// unknown), received in any request.
    #[serde(default)]
    pub encrypted_foreign_received: u64,
}

impl Counters {
    pub(crate) fn account(&mut self, chatgpt_account_id: &str) -> &mut AccountCounters {
        self.per_account
            .entry(chatgpt_account_id.to_string())
            .or_default()
    }
}

/// [`crate::FakeOpenAi::wait_for_counters`] gave up; `last` is the final snapshot.
#[derive(Debug, thiserror::Error)]
#[error("timed out waiting for the fake's counters; last snapshot: {last:?}")]
pub struct CountersTimeout {
    pub last: Box<Counters>,
}
