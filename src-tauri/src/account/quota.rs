//! What `/wham/usage` reports beyond the two windows (docs/protocol.md § The CLI's own backend):
//! the credits balance, additional metered limits, the reset credits — and the reset-credit list
//! (`/wham/rate-limit-reset-credits`). Part of an account's usage snapshot; parsed here, no I/O.

use super::usage::UsageWindow;
use super::{ms_to_rfc3339, UnixMs};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct QuotaExtras {
    /// The plan the backend reports (`free`, `plus`, `pro`, …).
    pub plan_type: Option<String>,
    pub credits: Option<CreditsBalance>,
    /// Metered limits beside the account's own (`additional_rate_limits[]`), when reported.
    #[serde(default)]
    pub additional: Vec<AdditionalLimit>,
    pub reset_credits: Option<ResetCredits>,
    /// When `/wham/usage` was last read in full (RFC 3339).
    pub polled_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct CreditsBalance {
    pub has_credits: bool,
    pub unlimited: bool,
    /// As the backend sends it (a decimal string).
    pub balance: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct AdditionalLimit {
    pub limit_name: String,
    pub metered_feature: Option<String>,
    pub limit_reached: bool,
    pub primary: Option<UsageWindow>,
    pub secondary: Option<UsageWindow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct ResetCredits {
    /// `rate_limit_reset_credits.available_count`.
    #[ts(type = "number")]
    pub available_count: i64,
    /// The credits themselves (`/wham/rate-limit-reset-credits`), read when some are available.
    #[serde(default)]
    pub credits: Vec<ResetCredit>,
    /// When the list was read (RFC 3339); `None` when only the count is known.
    pub listed_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct ResetCredit {
    pub id: String,
    /// `available`, `redeemed`, `expired`, … as the backend says.
    pub status: String,
    /// RFC 3339.
    pub granted_at: Option<String>,
    /// RFC 3339; `None`: no expiry given.
    pub expires_at: Option<String>,
}

impl ResetCredit {
    pub fn available(&self) -> bool {
        self.status.eq_ignore_ascii_case("available")
    }
}

impl ResetCredits {
    /// The available credit that expires first (no expiry last): the one to spend.
    pub fn next_to_spend(&self) -> Option<&ResetCredit> {
        self.credits
            .iter()
            .filter(|c| c.available())
            .min_by_key(|c| {
                c.expires_at
                    .as_deref()
                    .and_then(super::rfc3339_to_ms)
                    .unwrap_or(i64::MAX)
            })
    }
}

/// A time the backend gives as RFC 3339 text or as unix seconds.
fn time(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => super::rfc3339_to_ms(s).map(ms_to_rfc3339),
        Value::Number(n) => n.as_f64().map(|s| ms_to_rfc3339((s * 1000.0) as i64)),
        _ => None,
    }
}

fn window(w: Option<&Value>, now: UnixMs) -> Option<UsageWindow> {
    let w = w?;
    let used = w.get("used_percent")?.as_f64()?;
    let reset_ms = w
        .get("reset_at")
        .and_then(Value::as_f64)
        .map(|s| (s * 1000.0) as i64)
        .or_else(|| {
            w.get("reset_after_seconds")
                .and_then(Value::as_f64)
                // Saturating: a garbled answer (1e300 s) must not overflow the sum.
                .map(|s| now.saturating_add((s * 1000.0) as i64))
        });
    Some(UsageWindow {
        used_percent: used.clamp(0.0, 100.0),
        window_minutes: w
            .get("limit_window_seconds")
            .and_then(Value::as_i64)
            .map(|s| s / 60)
            .filter(|m| *m > 0),
        resets_at: reset_ms.map(ms_to_rfc3339),
    })
}

/// The two windows of a `rate_limit` object (`primary_window`, `secondary_window`).
pub fn windows(rate_limit: &Value, now: UnixMs) -> (Option<UsageWindow>, Option<UsageWindow>) {
    (
        window(rate_limit.get("primary_window"), now),
        window(rate_limit.get("secondary_window"), now),
    )
}

/// The extras of a `/wham/usage` body; the reset-credit list is kept from `previous` while the
/// count is unchanged (it is read apart, see `needs_list`).
pub fn extras(body: &Value, now: UnixMs, previous: Option<&QuotaExtras>) -> QuotaExtras {
    let credits = body
        .get("credits")
        .filter(|c| c.is_object())
        .map(|c| CreditsBalance {
            has_credits: c
                .get("has_credits")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            unlimited: c.get("unlimited").and_then(Value::as_bool).unwrap_or(false),
            balance: match c.get("balance") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            },
        });
    let additional = body
        .get("additional_rate_limits")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|l| {
                    let rl = l.get("rate_limit").filter(|r| r.is_object());
                    let (primary, secondary) = rl.map(|r| windows(r, now)).unwrap_or_default();
                    Some(AdditionalLimit {
                        limit_name: l.get("limit_name")?.as_str()?.to_string(),
                        metered_feature: l
                            .get("metered_feature")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        limit_reached: rl
                            .and_then(|r| r.get("limit_reached"))
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                        primary,
                        secondary,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let reset_credits = body
        .get("rate_limit_reset_credits")
        .and_then(|r| r.get("available_count"))
        .and_then(Value::as_i64)
        .map(|count| {
            let kept = previous
                .and_then(|p| p.reset_credits.as_ref())
                .filter(|r| r.available_count == count && r.listed_at.is_some());
            match kept {
                Some(r) => r.clone(),
                None => ResetCredits {
                    available_count: count.max(0),
                    credits: Vec::new(),
                    listed_at: None,
                },
            }
        });
    QuotaExtras {
        plan_type: body
            .get("plan_type")
            .and_then(Value::as_str)
            .map(str::to_string),
        credits,
        additional,
        reset_credits,
        polled_at: ms_to_rfc3339(now),
    }
}

/// A `/wham/usage` body → a snapshot (windows and extras), and whether the limit is reached now.
/// `previous` keeps a reset-credit list read earlier while its count holds.
pub fn parse_usage(
    body: &Value,
    previous: Option<&QuotaExtras>,
) -> Option<(super::usage::UsageSnapshot, bool)> {
    let rl = body.get("rate_limit")?;
    let now = super::now_ms();
    let (primary, secondary) = windows(rl, now);
    let snap = super::usage::UsageSnapshot {
        primary,
        secondary,
        updated_at: ms_to_rfc3339(now),
        stale: false,
        quota: Some(extras(body, now, previous)),
    };
    let reached = rl
        .get("limit_reached")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Some((snap, reached))
}

/// `{backend-api}/wham/rate-limit-reset-credits`, beside `…/wham/usage`.
pub fn reset_credits_url(usage_url: &str) -> String {
    let base = usage_url.strip_suffix("/usage").unwrap_or(usage_url);
    format!("{base}/rate-limit-reset-credits")
}

/// Whether the credit list should be read: some are available and the list is not known for
/// this count, or is older than `max_age_ms`.
pub fn needs_list(extras: &QuotaExtras, now: UnixMs, max_age_ms: i64) -> bool {
    extras.reset_credits.as_ref().is_some_and(|r| {
        r.available_count > 0
            && r.listed_at
                .as_deref()
                .and_then(super::rfc3339_to_ms)
                .is_none_or(|t| now - t > max_age_ms)
    })
}

/// `/wham/rate-limit-reset-credits` → `{credits:[{id, reset_type, status, granted_at,
/// expires_at}], available_count}`.
pub fn parse_list(body: &Value, now: UnixMs) -> Option<ResetCredits> {
    let count = body.get("available_count")?.as_i64()?;
    let credits = body
        .get("credits")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|c| {
                    Some(ResetCredit {
                        id: c.get("id")?.as_str()?.to_string(),
                        status: c
                            .get("status")
                            .and_then(Value::as_str)
                            .unwrap_or("available")
                            .to_string(),
                        granted_at: time(c.get("granted_at")),
                        expires_at: time(c.get("expires_at")),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(ResetCredits {
        available_count: count.max(0),
        credits,
        listed_at: Some(ms_to_rfc3339(now)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_extras_and_the_list() {
        let body = json!({"plan_type":"free",
            "rate_limit":{"primary_window":{"used_percent":40,"limit_window_seconds":2592000,"reset_at":1900000000},"secondary_window":null},
            "credits":{"has_credits":true,"unlimited":false,"balance":"12.50"},
            "additional_rate_limits":[{"limit_name":"GPT-5.3-Codex-Spark","metered_feature":"codex_bengalfox",
                "rate_limit":{"allowed":true,"limit_reached":false,"primary_window":{"used_percent":7,"limit_window_seconds":18000,"reset_at":1900000000}}}],
            "rate_limit_reset_credits":{"available_count":2}});
        let (p, s) = windows(&body["rate_limit"], 0);
        assert_eq!(p.unwrap().window_minutes, Some(43_200), "a monthly window");
        assert!(s.is_none());
        let x = extras(&body, 1_000, None);
        assert_eq!(x.plan_type.as_deref(), Some("free"));
        assert_eq!(
            x.credits.as_ref().unwrap().balance.as_deref(),
            Some("12.50")
        );
        assert_eq!(x.additional[0].primary.as_ref().unwrap().used_percent, 7.0);
        assert!(needs_list(&x, 1_000, 3_600_000));
        let list = parse_list(
            &json!({"credits":[
                {"id":"b","reset_type":"codex_rate_limits","status":"available","granted_at":"2026-11-01T00:00:00Z","expires_at":"2026-12-30T00:00:00Z"},
                {"id":"a","reset_type":"codex_rate_limits","status":"available","granted_at":1790000000,"expires_at":"2026-12-10T00:00:00Z"},
                {"id":"c","status":"redeemed","granted_at":"2026-10-01T00:00:00Z","expires_at":null}],
                "available_count":2}),
            2_000,
        )
        .unwrap();
        assert_eq!(
            list.next_to_spend().unwrap().id,
            "a",
            "the one expiring first"
        );
        assert_eq!(list.credits[2].expires_at, None);
        // The list is kept while the count stays; a new count drops it.
        let mut kept = x.clone();
        kept.reset_credits = Some(list);
        assert_eq!(
            extras(&body, 3_000, Some(&kept))
                .reset_credits
                .unwrap()
                .credits
                .len(),
            3
        );
        let body1 = json!({"rate_limit_reset_credits":{"available_count":1}});
        assert!(extras(&body1, 3_000, Some(&kept))
            .reset_credits
            .unwrap()
            .credits
            .is_empty());
    }
}
