//! Holding an answer's head until its first output event, so a failure that arrives in the
//! stream before anything reached the user (`response.failed`: overloaded, a usage limit) can
//! fail over exactly like an HTTP error would. Bounded in bytes and time: past either bound the
//! answer is released as it is, and from then on nothing is retried.

use super::tap::Tapped;
use crate::account::now_ms;
use axum::body::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;

/// Opening events are small (`response.created` echoes the request's settings, a few KB).
pub const MAX_HOLD_BYTES: usize = 256 * 1024;
/// Reasoning models send their first output item within a second or two; past this the head is
/// let through so a client never waits on us.
pub const MAX_HOLD_TIME: Duration = Duration::from_secs(20);
/// How long an overloaded account is passed over (in this process only).
pub const OVERLOAD_COOLDOWN_MS: i64 = 30_000;

pub enum Outcome {
    /// Output began (or the bounds were reached, or the stream ended): pass it on.
    Pass,
    /// `response.failed` came before any output.
    Failed(Value),
    /// The connection failed before any output.
    Broken(crate::http::BodyError),
}

pub struct Held {
    /// Everything read so far, to be sent first, byte for byte.
    pub head: Bytes,
    pub outcome: Outcome,
}

pub async fn until_first_output(body: &mut Tapped) -> Held {
    let deadline = tokio::time::Instant::now() + MAX_HOLD_TIME;
    let mut first = Bytes::new();
    let mut head: Vec<u8> = Vec::new();
    let outcome = loop {
        if body.tap.first_output || first.len().max(head.len()) > MAX_HOLD_BYTES {
            break Outcome::Pass;
        }
        if let Some(v) = body.tap.failed.take() {
            break Outcome::Failed(v);
        }
        match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) | Ok(None) => break Outcome::Pass,
            Ok(Some(Err(e))) => break Outcome::Broken(e),
            // The first chunk is kept as it came (no copy): it often holds the whole head.
            Ok(Some(Ok(chunk))) if head.is_empty() && first.is_empty() => first = chunk,
            Ok(Some(Ok(chunk))) => {
                if head.is_empty() {
                    head.extend_from_slice(&first);
                }
                head.extend_from_slice(&chunk);
            }
        }
    };
    Held {
        head: if head.is_empty() {
            first
        } else {
            Bytes::from(head)
        },
        outcome,
    }
}

/// What to do about an in-stream failure before output.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// A usage cap: rate-limited until then (Unix ms); another account answers.
    UsageLimit { until: i64 },
    /// Overloaded or throttled: a short cooldown; another account answers.
    Busy { until: i64 },
    /// About this request (context too long, bad input…): the client sees it.
    PassThrough,
}

/// Reads `response.failed`'s `response.error` (or a top-level `error`).
pub fn verdict(failed: &Value) -> Verdict {
    let err = failed
        .pointer("/response/error")
        .or_else(|| failed.get("error"))
        .cloned()
        .unwrap_or(Value::Null);
    let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("");
    let now = now_ms();
    let code = if field("code").is_empty() {
        field("type")
    } else {
        field("code")
    };
    match code {
        "usage_limit_reached" => {
            let until = err
                .get("resets_at")
                .and_then(Value::as_f64)
                .map(|s| (s * 1000.0) as i64)
                .or_else(|| {
                    err.get("resets_in_seconds")
                        .and_then(Value::as_f64)
                        .map(|s| now.saturating_add((s * 1000.0) as i64))
                })
                .unwrap_or(now + 5 * 60 * 1000);
            Verdict::UsageLimit { until }
        }
        "server_is_overloaded" | "rate_limit_exceeded" | "slow_down" => Verdict::Busy {
            until: now + OVERLOAD_COOLDOWN_MS,
        },
        _ => Verdict::PassThrough,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_failure_codes_that_fail_over() {
        let f = |e: Value| json!({"type": "response.failed", "response": {"error": e}});
        assert_eq!(
            verdict(&f(
                json!({"code": "usage_limit_reached", "resets_at": 1_900_000_000})
            )),
            Verdict::UsageLimit {
                until: 1_900_000_000_000
            }
        );
        assert!(matches!(
            verdict(&f(json!({"type": "server_is_overloaded", "code": null}))),
            Verdict::Busy { .. }
        ));
        assert_eq!(
            verdict(&f(json!({"code": "context_length_exceeded"}))),
            Verdict::PassThrough
        );
        assert_eq!(verdict(&json!({})), Verdict::PassThrough);
    }
}
