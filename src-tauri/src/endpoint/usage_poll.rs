//! Usage of idle accounts, polled from `GET …/wham/usage` (≈ every 5 minutes) with the account's
//! current access token only: a 401 there marks the figures stale and never triggers a refresh
//! (polling must not spend refresh tokens). A capped account whose window reset early becomes
//! selectable again.

use super::{lock, Shared};
use crate::account::quota;
use crate::account::usage::UsageSnapshot;
use crate::account::{ms_to_rfc3339, now_ms, rfc3339_to_ms, Status};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub const SETTING_POLL_SECS: &str = "endpoint.usage_poll_secs";
const DEFAULT_POLL: Duration = Duration::from_secs(300);

/// protocol.md's `/wham/usage` body → a snapshot (with its extras), and whether the limit is
/// reached now.
pub fn parse(body: &Value) -> Option<(UsageSnapshot, bool)> {
    quota::parse_usage(body, None)
}

pub use quota::reset_credits_url;

/// An account whose windows the answers keep fresh is still read in full this often, for what
/// only `/wham/usage` says (credits, additional limits, reset credits).
const EXTRAS_EVERY_MS: i64 = 3_600_000;

pub(super) fn interval(shared: &Shared) -> Duration {
    shared
        .store()
        .setting(SETTING_POLL_SECS)
        .ok()
        .flatten()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_POLL)
}

#[allow(clippy::too_many_lines, reason = "one poll round, read top to bottom")]
pub async fn run(shared: Arc<Shared>, usage_url: String) {
    loop {
        // The settings copy is in memory (`crate::settings`): no blocking hop to read it.
        let every = interval(&shared);
        tokio::time::sleep(every).await;
        let now = now_ms();
        for a in shared.accounts().iter() {
            if a.disabled || a.status == Status::Terminal {
                continue;
            }
            let previous = lock(&shared.usage).get(&a.id).cloned();
            let fresh = previous.as_ref().is_some_and(|u| {
                rfc3339_to_ms(&u.updated_at).is_some_and(|t| now - t < every.as_millis() as i64)
            });
            let extras_fresh = previous
                .as_ref()
                .and_then(|u| u.quota.as_ref())
                .and_then(|q| rfc3339_to_ms(&q.polled_at))
                .is_some_and(|t| now - t < EXTRAS_EVERY_MS);
            let limited = lock(&shared.selector).rate_limited.contains_key(&a.id)
                || a.status == Status::RateLimited;
            if fresh && extras_fresh && !limited {
                continue;
            }
            let Ok(Some(token)) = shared.tm.current_token(&a.id).await else {
                continue; // expired or unreadable: the next real request refreshes it
            };
            let sent = shared
                .http
                .get(&usage_url)
                .bearer_auth(token.token.expose())
                .header("ChatGPT-Account-ID", &token.chatgpt_account_id)
                .timeout(Duration::from_secs(20))
                .send()
                .await;
            let Ok(resp) = sent else { continue };
            match resp.status().as_u16() {
                200 => {
                    let Ok(body) = resp.json::<Value>().await else {
                        continue;
                    };
                    let before = previous.as_ref().and_then(|u| u.quota.as_ref());
                    let Some((mut snap, reached)) = quota::parse_usage(&body, before) else {
                        continue;
                    };
                    if let Some(q) = snap.quota.as_mut() {
                        if quota::needs_list(q, now, EXTRAS_EVERY_MS) {
                            if let Some(list) =
                                read_reset_credits(&shared, &usage_url, &token).await
                            {
                                q.reset_credits = Some(list);
                            }
                        }
                    }
                    let capped_until = reached.then(|| capped_until(&snap, now, every));
                    shared.note_usage(&a.id, snap);
                    if let (false, Some(until)) = (limited, capped_until) {
                        // Known before a request meets the 429: the card says so, and the
                        // selector skips the account until the window resets.
                        super::failover::mark_limited(&shared, &a.id, until).await;
                        tracing::info!(account = %a.id, "usage says its limit is reached; rate-limited until its window resets");
                    }
                    if limited && !reached {
                        lock(&shared.selector).rate_limited.remove(&a.id);
                        let (h, id) = (shared.health.clone(), a.id.clone());
                        super::proxy::report(
                            &a.id,
                            tokio::task::spawn_blocking(move || h.rate_limit_lifted(&id)).await,
                        );
                        tracing::info!(account = %a.id, "usage window reset early; selectable again");
                    }
                }
                401 => {
                    // One guard for both arms (a second `lock` in the else arm would wait on
                    // the scrutinee's guard, which lives through the whole `if let`).
                    let mut usage = lock(&shared.usage);
                    if let Some(u) = usage.get_mut(&a.id) {
                        u.stale = true;
                    } else {
                        usage.insert(
                            a.id.clone(),
                            UsageSnapshot {
                                primary: None,
                                secondary: None,
                                updated_at: ms_to_rfc3339(now),
                                stale: true,
                                quota: None,
                            },
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

/// Until when an account whose limit the backend says is reached stays limited: the latest
/// reset of a window used up (every used-up window must reset first), else the soonest reset
/// of any window, else the next poll.
fn capped_until(snap: &UsageSnapshot, now: i64, every: Duration) -> i64 {
    let windows = [snap.primary.as_ref(), snap.secondary.as_ref()];
    let resets = |full: bool| {
        windows
            .iter()
            .flatten()
            .filter(move |w| !full || w.used_percent >= 100.0)
            .filter_map(|w| w.resets_at.as_deref().and_then(rfc3339_to_ms))
            .filter(|t| *t > now)
    };
    resets(true)
        .max()
        .or_else(|| resets(false).min())
        .unwrap_or(now + every.as_millis() as i64)
}

/// The account's reset credits (`GET …/wham/rate-limit-reset-credits`), read only when the
/// usage answer says some are available; `None` when the read fails (the count stays known).
async fn read_reset_credits(
    shared: &Shared,
    usage_url: &str,
    token: &crate::refresh::AccessToken,
) -> Option<quota::ResetCredits> {
    let resp = shared
        .http
        .get(reset_credits_url(usage_url))
        .bearer_auth(token.token.expose())
        .header("ChatGPT-Account-ID", &token.chatgpt_account_id)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = resp.json::<Value>().await.ok()?;
    quota::parse_list(&body, now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::usage::UsageWindow;

    #[test]
    fn parses_the_usage_body() {
        let body = serde_json::json!({"plan_type":"plus","rate_limit":{"allowed":false,"limit_reached":true,
            "primary_window":{"used_percent":100.0,"limit_window_seconds":18000,"reset_after_seconds":60,"reset_at":1900000000},
            "secondary_window":{"used_percent":12.5,"limit_window_seconds":604800,"reset_after_seconds":3600,"reset_at":1900003600}}});
        let (s, reached) = parse(&body).unwrap();
        assert!(reached);
        assert_eq!(s.primary.as_ref().unwrap().window_minutes, Some(300));
        assert_eq!(s.secondary.as_ref().unwrap().used_percent, 12.5);
        assert_eq!(s.headroom(), 0.0);
        assert!(parse(&serde_json::json!({"detail": "x"})).is_none());
    }

    #[test]
    fn a_reset_absurdly_far_away_does_not_overflow() {
        let body = serde_json::json!({"rate_limit":{"primary_window":{"used_percent":5.0,"reset_after_seconds":1e300}}});
        let (s, _) = parse(&body).unwrap();
        assert_eq!(s.primary.unwrap().used_percent, 5.0);
    }

    #[test]
    fn a_capped_account_stays_limited_until_every_used_up_window_resets() {
        let now = 1_900_000_000_000;
        let every = Duration::from_secs(300);
        let w = |used: f64, resets_in_s: Option<i64>| UsageWindow {
            used_percent: used,
            window_minutes: None,
            resets_at: resets_in_s.map(|d| ms_to_rfc3339(now + d * 1000)),
        };
        let snap = |p, s| UsageSnapshot {
            primary: Some(p),
            secondary: Some(s),
            updated_at: ms_to_rfc3339(now),
            stale: false,
            quota: None,
        };
        // Both used up: the later reset.
        let both = snap(w(100.0, Some(60)), w(100.0, Some(3_600)));
        assert_eq!(capped_until(&both, now, every), now + 3_600_000);
        // Only the short one: its reset, not the long window's.
        let short = snap(w(100.0, Some(60)), w(40.0, Some(3_600)));
        assert_eq!(capped_until(&short, now, every), now + 60_000);
        // Reached with no window at 100 %: the soonest reset.
        let neither = snap(w(99.0, Some(600)), w(40.0, Some(3_600)));
        assert_eq!(capped_until(&neither, now, every), now + 600_000);
        // No reset times (or only past ones): asked again at the next poll.
        let unknown = snap(w(100.0, None), w(100.0, Some(-5)));
        assert_eq!(capped_until(&unknown, now, every), now + 300_000);
    }
}
