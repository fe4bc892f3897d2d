//! The request log's records (what `activity.db` stores): kept here beside their SQL so the
//! store names nothing above it; `activity` re-exports them.

use serde::{Deserialize, Serialize};

/// Which route a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum Route {
    Responses,
    Chat,
    Models,
    Compact,
    Broker,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum Outcome {
    /// Answered by the first account tried.
    Ok,
    /// Answered, by another account than the first one tried (a cap, overload or dead sign-in).
    FailedOver,
    /// Answered after a 401 and a refresh of the account's sign-in.
    Refreshed,
    /// The client got a 429.
    RateLimited,
    /// The client went away before the answer ended.
    ClientClosed,
    /// The backend failed (5xx, unreachable, a stream broken or failed after its first output).
    UpstreamError,
    /// No account could take the request.
    NoAccount,
    /// Any other client error (4xx) as the backend or we answered it.
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::FailedOver => "failed_over",
            Outcome::Refreshed => "refreshed",
            Outcome::RateLimited => "rate_limited",
            Outcome::ClientClosed => "client_closed",
            Outcome::UpstreamError => "upstream_error",
            Outcome::NoAccount => "no_account",
            Outcome::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Responses => "responses",
            Route::Chat => "chat",
            Route::Models => "models",
            Route::Compact => "compact",
            Route::Broker => "broker",
        }
    }

    pub fn parse(s: &str) -> Option<Route> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// Tokens of one answer, as the backend's `response.completed` counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub cached: u64,
    pub output: u64,
    pub reasoning: u64,
}

/// One finished request.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub at_ms: i64,
    pub route: Route,
    pub model: Option<String>,
    pub account_id: Option<String>,
    /// The conversation key, hashed (`secret::fingerprint`): enough to group a conversation's
    /// turns, never the key itself.
    pub conversation: Option<String>,
    pub status: u16,
    pub outcome: Outcome,
    pub latency_us: u64,
    pub ttfb_us: Option<u64>,
    pub tokens: Option<Tokens>,
}

/// An account's used-% of both windows at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSample {
    pub at_ms: i64,
    pub account_id: String,
    pub primary_used: Option<f64>,
    pub primary_resets_at: Option<i64>,
    pub secondary_used: Option<f64>,
    pub secondary_resets_at: Option<i64>,
}

impl UsageSample {
    pub fn from_snapshot(account_id: &str, s: &crate::account::usage::UsageSnapshot) -> Self {
        let reset = |w: &crate::account::usage::UsageWindow| {
            w.resets_at
                .as_deref()
                .and_then(crate::account::rfc3339_to_ms)
        };
        UsageSample {
            at_ms: crate::account::now_ms(),
            account_id: account_id.to_string(),
            primary_used: s.primary.as_ref().map(|w| w.used_percent),
            primary_resets_at: s.primary.as_ref().and_then(reset),
            secondary_used: s.secondary.as_ref().map(|w| w.used_percent),
            secondary_resets_at: s.secondary.as_ref().and_then(reset),
        }
    }
}
