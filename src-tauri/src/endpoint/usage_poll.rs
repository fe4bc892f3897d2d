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
                    shared.note_usage(&a.id, snap);
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
}
