//! The backend's own `/wham/usage` shape (codex-rs `RateLimitStatusPayload`), built from our
//! usage data for one account or pooled over the usable ones (README.md § Codex's own quota
//! routes). Pure: figures in, JSON out.
//!
//! - **Freshness**: figures read within `fresh_ms` (ten minutes, or two usage-poll intervals when longer) and not
//!   marked stale are fresh. Stale or unknown figures never give headroom: such a window is
//!   answered as fully used, and `codex_vault.stale` says so (with the last figures known).
//! - **Pool**: each usable account (enabled, not needing sign-in) weighs the same — their
//!   absolute capacities are not reported — so a pooled window's used-% is the mean of the
//!   accounts' (a rate-limited account counts 100 %), rounded up; its reset is the soonest reset
//!   of an account that has used some of that window (the one that frees capacity first).
//! - `used_percent` is an integer (codex-rs decodes `i32`: a float fails the CLI's decode).

use crate::account::quota::QuotaExtras;
use crate::account::usage::{UsageSnapshot, UsageWindow};
use crate::account::{rfc3339_to_ms, UnixMs};
use serde_json::{json, Value};

/// One account as the quota answer sees it.
pub struct Facts<'a> {
    pub label: &'a str,
    pub plan: Option<&'a str>,
    /// Rate-limited until this time (now or later), as the selector and the store know it.
    pub limited_until: Option<UnixMs>,
    pub usage: Option<&'a UsageSnapshot>,
}

const PRIMARY_SECS: i64 = 18_000;
const SECONDARY_SECS: i64 = 604_800;

fn is_fresh(u: Option<&UsageSnapshot>, now: UnixMs, fresh_ms: i64) -> bool {
    u.is_some_and(|u| !u.stale && rfc3339_to_ms(&u.updated_at).is_some_and(|t| now - t <= fresh_ms))
}

/// A window's figures as one account contributes them: (used %, window seconds, reset ms).
#[derive(Clone, Copy)]
struct Reading {
    used: f64,
    secs: Option<i64>,
    reset: Option<UnixMs>,
}

fn reading(w: Option<&UsageWindow>, fresh: bool, limited: bool, now: UnixMs) -> Option<Reading> {
    let w = w?;
    let reset = w.resets_at.as_deref().and_then(rfc3339_to_ms);
    // A window whose reset has passed restarted; without a fresh reading its use is unknown.
    let used = if limited || !fresh {
        100.0
    } else if reset.is_some_and(|r| r <= now) {
        0.0
    } else {
        w.used_percent
    };
    Some(Reading {
        used,
        secs: w.window_minutes.map(|m| m * 60),
        reset: reset.filter(|r| *r > now),
    })
}

fn window_json(used: f64, secs: i64, reset: Option<UnixMs>, now: UnixMs) -> Value {
    // Unknown reset: the latest it could be (a full window from now), never sooner.
    let reset_at = reset.unwrap_or(now + secs * 1000) / 1000;
    json!({
        "used_percent": used.ceil().clamp(0.0, 100.0) as i64,
        "limit_window_seconds": secs,
        "reset_after_seconds": (reset_at - now / 1000).max(0),
        "reset_at": reset_at,
    })
}

fn last_known(u: Option<&UsageSnapshot>) -> Value {
    let used = |w: &Option<UsageWindow>| w.as_ref().map(|w| w.used_percent);
    match u {
        Some(u) => json!({
            "updated_at": u.updated_at,
            "primary_used_percent": used(&u.primary),
            "secondary_used_percent": used(&u.secondary),
        }),
        None => Value::Null,
    }
}

fn credits_json(q: Option<&QuotaExtras>) -> Value {
    match q.and_then(|q| q.credits.as_ref()) {
        Some(c) => json!({"has_credits": c.has_credits, "unlimited": c.unlimited,
            "balance": c.balance.clone().unwrap_or_else(|| "0".into())}),
        None => json!({"has_credits": false, "unlimited": false, "balance": "0"}),
    }
}

fn reset_count(q: Option<&QuotaExtras>) -> i64 {
    q.and_then(|q| q.reset_credits.as_ref())
        .map_or(0, |r| r.available_count)
}

/// One account's figures in the backend's shape.
pub fn account(f: &Facts<'_>, now: UnixMs, fresh_ms: i64) -> Value {
    let fresh = is_fresh(f.usage, now, fresh_ms);
    let limited = f.limited_until.is_some_and(|t| t > now);
    let q = f.usage.and_then(|u| u.quota.as_ref());
    let p = reading(
        f.usage.and_then(|u| u.primary.as_ref()),
        fresh,
        limited,
        now,
    );
    let s = reading(
        f.usage.and_then(|u| u.secondary.as_ref()),
        fresh,
        false,
        now,
    );
    let s = s.map(|r| {
        if limited && r.used < 100.0 && !fresh {
            Reading { used: 100.0, ..r }
        } else {
            r
        }
    });
    let primary = match p {
        Some(r) => window_json(
            r.used,
            r.secs.unwrap_or(PRIMARY_SECS),
            r.reset.or(f.limited_until),
            now,
        ),
        // No figures at all: no headroom claimed.
        None => window_json(100.0, PRIMARY_SECS, f.limited_until, now),
    };
    let secondary = s.map_or(Value::Null, |r| {
        window_json(r.used, r.secs.unwrap_or(SECONDARY_SECS), r.reset, now)
    });
    let mut body = json!({
        "plan_type": q.and_then(|q| q.plan_type.as_deref()).or(f.plan).unwrap_or("plus"),
        "rate_limit": {
            "allowed": !limited,
            "limit_reached": limited,
            "primary_window": primary,
            "secondary_window": secondary,
        },
        "credits": credits_json(q),
        "rate_limit_reset_credits": {"available_count": reset_count(q)},
        "codex_vault": {
            "scope": "account",
            "account": f.label,
            "stale": !fresh,
            "last_known": if fresh { Value::Null } else { last_known(f.usage) },
        },
    });
    if let Some(q) = q.filter(|q| !q.additional.is_empty()) {
        body["additional_rate_limits"] = q
            .additional
            .iter()
            .map(|l| {
                let p = reading(l.primary.as_ref(), fresh, l.limit_reached, now);
                json!({
                    "limit_name": l.limit_name,
                    "metered_feature": l.metered_feature.clone().unwrap_or_else(|| l.limit_name.clone()),
                    "rate_limit": {
                        "allowed": !l.limit_reached,
                        "limit_reached": l.limit_reached,
                        "primary_window": p.map(|r| window_json(r.used, r.secs.unwrap_or(PRIMARY_SECS), r.reset, now)),
                        "secondary_window": null,
                    },
                })
            })
            .collect();
    }
    body
}

/// The most common value (the first seen on a tie); `None` for none.
fn mode<T: PartialEq + Copy>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: Vec<(T, usize)> = Vec::new();
    for v in values {
        match counts.iter_mut().find(|(x, _)| *x == v) {
            Some((_, n)) => *n += 1,
            None => counts.push((v, 1)),
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(v, _)| v)
}

fn pooled_window(readings: &[Reading], default_secs: i64, now: UnixMs) -> Value {
    let used = readings.iter().map(|r| r.used).sum::<f64>() / readings.len().max(1) as f64;
    let secs = mode(readings.iter().filter_map(|r| r.secs)).unwrap_or(default_secs);
    // The reset that frees capacity soonest: of an account that has used some of this window.
    let reset = readings
        .iter()
        .filter(|r| r.used > 0.0)
        .filter_map(|r| r.reset)
        .min();
    window_json(
        if readings.is_empty() { 100.0 } else { used },
        secs,
        reset,
        now,
    )
}

/// The pool's figures (the usable accounts only) in the backend's shape.
pub fn pool(usable: &[Facts<'_>], now: UnixMs, fresh_ms: i64) -> Value {
    let mut primary = Vec::new();
    let mut secondary = Vec::new();
    let mut stale = Vec::new();
    let mut free_now = 0usize;
    let (mut has_credits, mut unlimited, mut balance, mut resets) = (false, false, 0.0f64, 0i64);
    for f in usable {
        let fresh = is_fresh(f.usage, now, fresh_ms);
        let limited = f.limited_until.is_some_and(|t| t > now);
        if !limited {
            free_now += 1;
        }
        if !fresh {
            stale.push(f.label);
        }
        let u = f.usage;
        primary.push(
            reading(u.and_then(|u| u.primary.as_ref()), fresh, limited, now).unwrap_or(Reading {
                used: 100.0,
                secs: None,
                reset: f.limited_until,
            }),
        );
        if let Some(r) = reading(u.and_then(|u| u.secondary.as_ref()), fresh, false, now) {
            secondary.push(r);
        }
        let q = u.and_then(|u| u.quota.as_ref());
        if let Some(c) = q.and_then(|q| q.credits.as_ref()).filter(|_| fresh) {
            has_credits |= c.has_credits;
            unlimited |= c.unlimited;
            balance += c
                .balance
                .as_deref()
                .and_then(|b| b.trim().parse::<f64>().ok())
                .filter(|b| b.is_finite())
                .unwrap_or(0.0);
        }
        resets += reset_count(q);
    }
    let limit_reached = free_now == 0;
    let plan = mode(usable.iter().filter_map(|f| {
        f.usage
            .and_then(|u| u.quota.as_ref())
            .and_then(|q| q.plan_type.as_deref())
            .or(f.plan)
    }))
    .unwrap_or("plus");
    json!({
        "plan_type": plan,
        "rate_limit": {
            "allowed": !limit_reached,
            "limit_reached": limit_reached,
            "primary_window": pooled_window(&primary, PRIMARY_SECS, now),
            "secondary_window": if secondary.is_empty() { Value::Null } else { pooled_window(&secondary, SECONDARY_SECS, now) },
        },
        "credits": {"has_credits": has_credits, "unlimited": unlimited, "balance": format!("{balance:.2}")},
        "rate_limit_reset_credits": {"available_count": resets},
        "codex_vault": {
            "scope": "pool",
            "accounts": usable.len(),
            "stale": !stale.is_empty(),
            "stale_accounts": stale,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::ms_to_rfc3339;

    const NOW: UnixMs = 1_900_000_000_000;

    fn snap(p: f64, reset_in_s: i64, age_ms: i64, stale: bool) -> UsageSnapshot {
        UsageSnapshot {
            primary: Some(UsageWindow {
                used_percent: p,
                window_minutes: Some(300),
                resets_at: Some(ms_to_rfc3339(NOW + reset_in_s * 1000)),
            }),
            secondary: Some(UsageWindow {
                used_percent: p / 2.0,
                window_minutes: Some(10_080),
                resets_at: Some(ms_to_rfc3339(NOW + 86_400_000)),
            }),
            updated_at: ms_to_rfc3339(NOW - age_ms),
            stale,
            quota: None,
        }
    }

    fn facts<'a>(label: &'a str, u: &'a UsageSnapshot) -> Facts<'a> {
        Facts {
            label,
            plan: Some("plus"),
            limited_until: None,
            usage: Some(u),
        }
    }

    #[test]
    fn pools_the_mean_and_the_soonest_reset_of_a_used_window() {
        let (a, b) = (snap(20.0, 3_600, 0, false), snap(50.0, 600, 0, false));
        let v = pool(&[facts("a", &a), facts("b", &b)], NOW, 600_000);
        let p = &v["rate_limit"]["primary_window"];
        assert_eq!(p["used_percent"], 35);
        assert_eq!(p["reset_after_seconds"], 600, "b frees capacity first");
        assert_eq!(p["limit_window_seconds"], 18_000);
        assert_eq!(
            v["rate_limit"]["secondary_window"]["used_percent"], 18,
            "17.5 rounded up"
        );
        assert_eq!(v["codex_vault"]["stale"], false);
        assert_eq!(v["rate_limit"]["limit_reached"], false);
    }

    #[test]
    fn stale_figures_give_no_headroom_and_are_marked() {
        let (a, old) = (
            snap(20.0, 3_600, 0, false),
            snap(10.0, 600, 3_600_000, false),
        );
        let v = pool(&[facts("a", &a), facts("old", &old)], NOW, 600_000);
        assert_eq!(v["rate_limit"]["primary_window"]["used_percent"], 60);
        assert_eq!(v["codex_vault"]["stale_accounts"], json!(["old"]));
        let refused = snap(10.0, 600, 0, true);
        let one = account(&facts("r", &refused), NOW, 600_000);
        assert_eq!(one["rate_limit"]["primary_window"]["used_percent"], 100);
        assert_eq!(one["codex_vault"]["stale"], true);
        assert_eq!(
            one["codex_vault"]["last_known"]["primary_used_percent"],
            10.0
        );
    }

    #[test]
    fn a_limited_account_counts_full_and_all_limited_is_reached() {
        let a = snap(20.0, 3_600, 0, false);
        let mut limited = facts("a", &a);
        limited.limited_until = Some(NOW + 60_000);
        let v = pool(&[limited], NOW, 600_000);
        assert_eq!(v["rate_limit"]["primary_window"]["used_percent"], 100);
        assert_eq!(v["rate_limit"]["limit_reached"], true);
        let one = account(&facts("a", &a), NOW, 600_000);
        assert_eq!(one["rate_limit"]["primary_window"]["used_percent"], 20);
        assert_eq!(one["codex_vault"]["account"], "a");
        assert!(pool(&[], NOW, 1)["rate_limit"]["limit_reached"]
            .as_bool()
            .unwrap());
    }
}
