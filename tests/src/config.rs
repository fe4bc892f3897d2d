//! Configuration and the plain data types of the fake's public API.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The Codex CLI's public OAuth client id (protocol.md § OAuth). The fake only accepts this one,
/// like the real issuer only knows registered clients.
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

/// How the fake starts. `Default` gives a fresh fake on an ephemeral loopback port.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Lifetime of minted access tokens (`exp - iat`); per-account and per-grant overrides exist.
    pub access_token_lifetime: Duration,
    /// The answer shape for a refresh token presented a second time.
    pub reuse_mode: ReuseMode,
    /// Whether a detected reuse revokes the whole token family (including the current refresh
    /// token and every access token minted in it), as OpenAI may do.
    pub family_revoke_on_reuse: bool,
    /// Ports `N` for which `http://localhost:N/auth/callback` is a registered redirect URI.
    /// Upstream registers exactly 1455 and 1457.
    pub registered_redirect_ports: Vec<u16>,
    /// The assistant text every `/responses` stream spells out.
    pub responses_text: String,
    /// How many `response.output_text.delta` events a stream carries.
    pub stream_deltas: usize,
    /// Leave `id_token` out of refresh answers (protocol.md: every field of a refresh answer is
    /// optional and a client must keep its old value).
    pub omit_id_token_on_refresh: bool,
    /// Answer `/responses` streams without a `Content-Type` header. Third-party proxies report
    /// that chatgpt.com does exactly that; the default (`false`) sends `text/event-stream`.
    pub omit_sse_content_type: bool,
    /// How long an authorization code stays redeemable.
    pub authorization_code_lifetime: Duration,
    /// TCP port to bind on 127.0.0.1; 0 picks an ephemeral one.
    pub port: u16,
    /// The polling interval a device-code sign-in starts with (whole seconds on the wire).
    pub device_code_interval: Duration,
    /// How long a device code stays approvable; later polls answer `expired_token`.
    pub device_code_lifetime: Duration,
    /// What each `slow_down` adds to that code's interval (RFC 8628 § 3.5: 5 seconds).
    pub device_slow_down_step: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            access_token_lifetime: Duration::from_secs(3600),
            reuse_mode: ReuseMode::default(),
            family_revoke_on_reuse: false,
            registered_redirect_ports: vec![1455, 1457],
            responses_text: "Hello from the fake Codex backend.".to_string(),
            stream_deltas: 4,
            omit_id_token_on_refresh: false,
            omit_sse_content_type: false,
            authorization_code_lifetime: Duration::from_secs(300),
            port: 0,
            device_code_interval: Duration::from_secs(5),
            device_code_lifetime: Duration::from_secs(15 * 60),
            device_slow_down_step: Duration::from_secs(5),
        }
    }
}

/// The answer to a refresh token that was already rotated (protocol.md § Refresh errors).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReuseMode {
    /// `401 {"error":{"message":…,"type":"invalid_request_error","param":null,"code":"refresh_token_reused"}}`
    #[default]
    RefreshTokenReused,
    /// The same object body with status 400 (also seen upstream).
    RefreshTokenReused400,
    /// `400 {"error":"invalid_grant","error_description":…}` (the OAuth string form).
    InvalidGrant,
}

/// Who an account is. `Default` generates unique ids and e-mail, plan `plus`; on the admin wire
/// every field is optional and a missing one is generated the same way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountSpec {
    pub email: String,
    pub plan: String,
    /// The account/workspace id (a UUID upstream), sent back as `ChatGPT-Account-ID`.
    pub chatgpt_account_id: String,
    /// The person (`user-…` upstream). One person may own several accounts (personal + team).
    pub chatgpt_user_id: String,
    pub fedramp: bool,
    /// Overrides [`FakeConfig::access_token_lifetime`] for this account.
    #[serde(with = "opt_secs")]
    pub access_token_lifetime: Option<Duration>,
}

impl Default for AccountSpec {
    fn default() -> Self {
        let account_id = uuid::Uuid::new_v4().to_string();
        let short = &account_id[..8];
        AccountSpec {
            email: format!("user-{short}@example.test"),
            plan: "plus".to_string(),
            chatgpt_user_id: format!("user-{}", random_alnum(24)),
            chatgpt_account_id: account_id,
            fedramp: false,
            access_token_lifetime: None,
        }
    }
}

/// What a successful grant hands out (the `tokens` object of a Codex `auth.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedTokens {
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: String,
    /// The `chatgpt_account_id` the tokens belong to.
    pub account_id: String,
}

/// A misbehaviour injected into one call of a route (see [`crate::FakeOpenAi::inject_faults`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a JSON error body (an OpenAI `server_error` for 5xx).
    Status(u16),
    /// Answer with any status, content type and body.
    Custom {
        status: u16,
        content_type: String,
        body: String,
    },
    /// A CDN-style HTML challenge page with status 403 (protocol.md: transient, not a dead account).
    Html403,
    /// A 200 whose HTML body no client can parse as the expected JSON/SSE.
    Html200,
    /// Wait this long, then handle the call normally.
    Slow(Duration),
    /// Close the TCP connection without sending a single byte of an answer.
    DropConnection,
    /// `/responses` only (other routes answer 500): a `200` SSE stream that fails in-stream with
    /// `response.failed` (`response.error{type, code, message, resets_at}`) — right after
    /// `response.created` + `response.in_progress` (nothing has reached the user yet), or with
    /// `after_output` after the first output item and text delta. Applied after the bearer
    /// check, so the stream belongs to the caller's account.
    StreamFailed {
        code: String,
        message: String,
        /// Unix seconds, for `usage_limit_reached`.
        resets_at: Option<i64>,
        after_output: bool,
    },
    /// `/responses` only: the next call is answered with the 400 for unverifiable encrypted
    /// content in this shape, whatever its input carries.
    InvalidEncryptedContent(crate::encrypted::EncryptedContentError),
    /// Handle the call normally (a refresh rotates the token at the issuer), then wait this
    /// long before answering: an issuer slow to answer after it committed.
    SlowAfterHandling(Duration),
    /// Handle the call normally (a refresh rotates), then close the connection without a byte
    /// of the answer: the answer is lost on the way back.
    DropAfterHandling,
}

impl Fault {
    /// In-stream `server_is_overloaded` before any output.
    pub fn overloaded_in_stream() -> Fault {
        Fault::StreamFailed {
            code: "server_is_overloaded".into(),
            message: "Our servers are currently overloaded. Please try again later.".into(),
            resets_at: None,
            after_output: false,
        }
    }

    /// In-stream `usage_limit_reached` (with `resets_at`) before any output.
    pub fn usage_limit_in_stream(resets_at: i64) -> Fault {
        Fault::StreamFailed {
            code: "usage_limit_reached".into(),
            message: "You've hit your usage limit. Try again later.".into(),
            resets_at: Some(resets_at),
            after_output: false,
        }
    }
}

/// The routes faults can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultRoute {
    /// `POST /oauth/token` (both grants).
    Token,
    /// `POST /backend-api/codex/responses`.
    Responses,
    /// `GET /backend-api/wham/usage`.
    Usage,
    /// `GET /backend-api/codex/models`.
    Models,
    /// `GET /backend-api/wham/rate-limit-reset-credits`.
    ResetCredits,
    /// `POST /backend-api/wham/rate-limit-reset-credits/consume` (`DropAfterHandling` spends the
    /// credit and loses the answer).
    ResetConsume,
}

pub(crate) fn random_alnum(n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(CHARS[rng.gen_range(0..CHARS.len())]))
        .collect()
}

/// `Option<Duration>` as whole seconds on the admin wire.
mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}
