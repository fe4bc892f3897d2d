//! Usage snapshots from the `x-codex-*` rate-limit headers every upstream answer carries
//! (docs/protocol.md § Backend), part of an account's data. Kept in memory per account by the
//! endpoint; written to SQLite by `health` when something changed.

use super::{now_ms, UnixMs};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct UsageWindow {
    pub used_percent: f64,
    #[ts(type = "number | null")]
    pub window_minutes: Option<i64>,
    /// RFC 3339.
    pub resets_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct UsageSnapshot {
    /// The short window (typically 300 minutes).
    pub primary: Option<UsageWindow>,
    /// The long window (typically 10,080 minutes).
    pub secondary: Option<UsageWindow>,
    pub updated_at: String,
    /// True when the last poll was refused (401): the numbers may be old.
    #[serde(default)]
    pub stale: bool,
    /// What the last full `/wham/usage` read said beyond the windows (credits, additional
    /// limits, reset credits); kept across header readings, which carry none of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<super::quota::QuotaExtras>,
}

impl UsageSnapshot {
    /// Headroom in percent: what is left of the tighter window (unknown counts as all).
    pub fn headroom(&self) -> f64 {
        let used = [&self.primary, &self.secondary]
            .iter()
            .filter_map(|w| w.as_ref().map(|w| w.used_percent))
            .fold(0.0_f64, f64::max);
        (100.0 - used).clamp(0.0, 100.0)
    }

    /// The same figures as `other`, whenever each was read: used %, window, staleness, and a
    /// reset within `RESET_SLACK_MS` (a reset given as "after N seconds" moves with the time it
    /// was read). A poll of an idle account that finds the same figures then writes nothing.
    pub fn same_figures(&self, other: &UsageSnapshot) -> bool {
        self.stale == other.stale
            && same_quota(self.quota.as_ref(), other.quota.as_ref())
            && same_window(self.primary.as_ref(), other.primary.as_ref())
            && same_window(self.secondary.as_ref(), other.secondary.as_ref())
    }
}

/// The extras say the same (the time they were read aside).
fn same_quota(
    a: Option<&super::quota::QuotaExtras>,
    b: Option<&super::quota::QuotaExtras>,
) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.plan_type == b.plan_type
                && a.credits == b.credits
                && a.additional == b.additional
                && a.reset_credits
                    .as_ref()
                    .map(|r| (r.available_count, &r.credits))
                    == b.reset_credits
                        .as_ref()
                        .map(|r| (r.available_count, &r.credits))
        }
        _ => false,
    }
}

/// How far two readings of one reset time may differ and still be the same reset.
const RESET_SLACK_MS: i64 = 60_000;

fn same_window(a: Option<&UsageWindow>, b: Option<&UsageWindow>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            let reset = |w: &UsageWindow| w.resets_at.as_deref().and_then(super::rfc3339_to_ms);
            a.used_percent == b.used_percent
                && a.window_minutes == b.window_minutes
                && match (reset(a), reset(b)) {
                    (None, None) => true,
                    (Some(x), Some(y)) => (x - y).abs() <= RESET_SLACK_MS,
                    _ => false,
                }
        }
        _ => false,
    }
}

fn header_f64(h: &HeaderMap, name: &str) -> Option<f64> {
    h.get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

fn window(h: &HeaderMap, which: &str, now: UnixMs) -> Option<UsageWindow> {
    let used = header_f64(h, &format!("x-codex-{which}-used-percent"))?;
    let minutes = header_f64(h, &format!("x-codex-{which}-window-minutes")).map(|m| m as i64);
    let reset_ms = header_f64(h, &format!("x-codex-{which}-reset-at"))
        .map(|s| (s * 1000.0) as i64)
        .or_else(|| {
            header_f64(h, &format!("x-codex-{which}-reset-after-seconds"))
                // Saturating: a hostile or garbled header (1e300 s) must not overflow the sum.
                .map(|s| now.saturating_add((s * 1000.0) as i64))
        });
    Some(UsageWindow {
        used_percent: used.clamp(0.0, 100.0),
        window_minutes: minutes.filter(|m| *m > 0),
        resets_at: reset_ms.map(crate::account::ms_to_rfc3339),
    })
}

/// A snapshot from an answer's headers; `None` when it carries none.
pub fn from_headers(h: &HeaderMap) -> Option<UsageSnapshot> {
    let now = now_ms();
    let primary = window(h, "primary", now);
    let secondary = window(h, "secondary", now);
    if primary.is_none() && secondary.is_none() {
        return None;
    }
    Some(UsageSnapshot {
        primary,
        secondary,
        updated_at: crate::account::ms_to_rfc3339(now),
        stale: false,
        quota: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn reads_both_windows_and_legacy_reset() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-codex-primary-used-percent",
            HeaderValue::from_static("52.5"),
        );
        h.insert(
            "x-codex-primary-window-minutes",
            HeaderValue::from_static("300"),
        );
        h.insert(
            "x-codex-primary-reset-at",
            HeaderValue::from_static("1900000000"),
        );
        h.insert(
            "x-codex-secondary-used-percent",
            HeaderValue::from_static("21"),
        );
        h.insert(
            "x-codex-secondary-reset-after-seconds",
            HeaderValue::from_static("60"),
        );
        let s = from_headers(&h).unwrap();
        let p = s.primary.as_ref().unwrap();
        assert_eq!(p.used_percent, 52.5);
        assert_eq!(p.window_minutes, Some(300));
        assert_eq!(p.resets_at.as_deref(), Some("2030-03-17T17:46:40Z"));
        assert!(s.secondary.as_ref().unwrap().resets_at.is_some());
        assert_eq!(s.headroom(), 47.5);
        // Read again later: the same figures, though `updated_at` and the relative reset moved.
        let mut later = s.clone();
        later.updated_at = "2099-01-01T00:00:00Z".into();
        if let Some(w) = later.secondary.as_mut() {
            let t = w
                .resets_at
                .as_deref()
                .and_then(crate::account::rfc3339_to_ms)
                .unwrap();
            w.resets_at = Some(crate::account::ms_to_rfc3339(t + 2_000));
        }
        assert!(s.same_figures(&later));
        let mut used_more = later.clone();
        used_more.primary.as_mut().unwrap().used_percent = 53.0;
        assert!(
            !s.same_figures(&used_more),
            "a changed percentage is a change"
        );
        let mut new_window = later.clone();
        let t = crate::account::rfc3339_to_ms("2030-03-17T17:46:40Z").unwrap();
        new_window.primary.as_mut().unwrap().resets_at =
            Some(crate::account::ms_to_rfc3339(t + 5 * 3_600_000));
        assert!(!s.same_figures(&new_window), "a new window is a change");
        let mut stale = later;
        stale.stale = true;
        assert!(!s.same_figures(&stale), "staleness is a change");
    }

    #[test]
    fn garbage_and_absent_headers_are_ignored() {
        let mut h = HeaderMap::new();
        assert!(from_headers(&h).is_none());
        h.insert(
            "x-codex-primary-used-percent",
            HeaderValue::from_static("NaN"),
        );
        assert!(from_headers(&h).is_none());
        h.insert(
            "x-codex-primary-used-percent",
            HeaderValue::from_static("250"),
        );
        assert_eq!(
            from_headers(&h).unwrap().primary.unwrap().used_percent,
            100.0
        );
    }
}
