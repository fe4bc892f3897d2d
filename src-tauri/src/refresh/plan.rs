//! When each account is due for a background refresh. Pure (time in, plan out), so a day or a
//! month of virtual time is simulated in tests with the real rules.
//!
//! Due = access `exp` − lead, lead = clamp(fraction × lifetime, min, max), minus a stable per-account
//! jitter (spreads many accounts); never before half the token's lifetime (only a 401 forces that).

use crate::account::{Account, Status, UnixMs};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

/// protocol.md: without a readable `exp`, refresh when the last refresh is 8 days old.
const STALE_WITHOUT_EXP_MS: i64 = 8 * 24 * 3600 * 1000;
const MAX_JITTER_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeadSettings {
    pub fraction: f64,
    pub min: Duration,
    pub max: Duration,
}

impl Default for LeadSettings {
    fn default() -> Self {
        LeadSettings {
            fraction: 0.10,
            min: Duration::from_secs(5 * 60),
            max: Duration::from_secs(3600),
        }
    }
}

pub const SETTING_FRACTION: &str = "refresh.lead_fraction";
pub const SETTING_MIN_SECS: &str = "refresh.lead_min_secs";
pub const SETTING_MAX_SECS: &str = "refresh.lead_max_secs";

impl LeadSettings {
    /// From the `settings` table (shared by the app, `serve` and the CLI); bad values fall back.
    pub fn from_values(fraction: Option<String>, min: Option<String>, max: Option<String>) -> Self {
        let d = LeadSettings::default();
        let secs = |v: Option<String>, dflt: Duration| {
            v.and_then(|s| s.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .unwrap_or(dflt)
        };
        LeadSettings {
            fraction: fraction
                .and_then(|s| s.parse::<f64>().ok())
                .filter(|f| (0.0..1.0).contains(f))
                .unwrap_or(d.fraction),
            min: secs(min, d.min),
            max: secs(max, d.max),
        }
    }
}

fn jitter_ms(account_id: &str, lead_ms: i64) -> i64 {
    let cap = (lead_ms / 10).min(MAX_JITTER_MS);
    if cap <= 0 {
        return 0;
    }
    let h = Sha256::digest(account_id.as_bytes());
    let n = u64::from_le_bytes(h[..8].try_into().expect("8 bytes of a 32-byte digest"));
    (n % cap as u64) as i64
}

/// When `account` should be refreshed; `None` for accounts the scheduler leaves alone.
pub fn due_at(account: &Account, s: &LeadSettings) -> Option<UnixMs> {
    if account.disabled || account.status == Status::Terminal {
        return None;
    }
    let Some(exp) = account.access_expires_at else {
        return Some(account.last_refresh_at.unwrap_or(0) + STALE_WITHOUT_EXP_MS);
    };
    let issued = account.access_issued_at.filter(|i| *i < exp);
    let lifetime = issued.map(|i| exp - i);
    let lead = match lifetime {
        Some(l) => ((l as f64 * s.fraction) as i64).clamp(
            s.min.as_millis() as i64,
            s.max.as_millis().max(s.min.as_millis()) as i64,
        ),
        None => s.min.as_millis() as i64,
    };
    let due = exp - lead - jitter_ms(&account.id, lead);
    Some(match (issued, lifetime) {
        (Some(i), Some(l)) => due.max(i + l / 2),
        _ => due,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Accounts to refresh now, with the generation they were planned at.
    pub due: Vec<(String, i64)>,
    /// When to look again (the earliest future due time), if anything is scheduled at all.
    pub next: Option<UnixMs>,
}

/// `not_before`: per-account backoff after transient failures.
pub fn plan(
    now: UnixMs,
    accounts: &[Account],
    s: &LeadSettings,
    not_before: &HashMap<String, UnixMs>,
) -> Plan {
    let mut due = Vec::new();
    let mut next: Option<UnixMs> = None;
    for a in accounts {
        let Some(mut at) = due_at(a, s) else { continue };
        if let Some(nb) = not_before.get(&a.id) {
            at = at.max(*nb);
        }
        if at <= now {
            due.push((a.id.clone(), a.generation));
        } else {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    Plan { due, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * 1000;
    const DAY: i64 = 24 * HOUR;

    fn account(id: &str, issued: UnixMs, lifetime: i64) -> Account {
        Account {
            id: id.into(),
            label: id.into(),
            email: None,
            chatgpt_account_id: "c".into(),
            chatgpt_user_id: "u".into(),
            plan: None,
            fedramp: false,
            status: Status::Healthy,
            failure: None,
            last_error: None,
            access_expires_at: Some(issued + lifetime),
            access_issued_at: Some(issued),
            last_refresh_at: Some(issued),
            rate_limited_until: None,
            generation: 0,
            disabled: false,
            created_at: 0,
            updated_at: 0,
            usage_json: None,
            shared_grant_where: None,
            brokered: false,
            broker_holder_seen_at: None,
            restored_at: None,
        }
    }

    /// Runs the real planner over virtual time, "refreshing" what it says is due, and returns
    /// the refresh times of each account.
    fn simulate(mut accounts: Vec<(Account, i64)>, until: UnixMs) -> HashMap<String, Vec<UnixMs>> {
        let s = LeadSettings::default();
        let mut now = 0;
        let mut log: HashMap<String, Vec<UnixMs>> = HashMap::new();
        let mut wakeups = 0;
        while now < until {
            wakeups += 1;
            assert!(wakeups < 100_000, "the planner spins");
            let list: Vec<Account> = accounts.iter().map(|(a, _)| a.clone()).collect();
            let p = plan(now, &list, &s, &HashMap::new());
            for (id, _) in &p.due {
                let (a, lifetime) = accounts.iter_mut().find(|(a, _)| &a.id == id).unwrap();
                assert!(
                    a.access_expires_at.unwrap() > now,
                    "{id} expired before its refresh"
                );
                a.access_issued_at = Some(now);
                a.access_expires_at = Some(now + *lifetime);
                a.generation += 1;
                log.entry(id.clone()).or_default().push(now);
            }
            if !p.due.is_empty() {
                // The real loop re-plans as soon as a refresh finishes (it wakes the scheduler).
                continue;
            }
            // The real loop sleeps until `next`, capped at `MAX_SLEEP`; jumping straight there is the same plan.
            now = p.next.unwrap_or(until).max(now + 1);
        }
        log
    }

    #[test]
    fn one_hour_tokens_are_refreshed_once_per_window_before_expiry() {
        let log = simulate(
            vec![
                (account("a", 0, HOUR), HOUR),
                (account("b", 20 * 60 * 1000, HOUR), HOUR),
            ],
            DAY,
        );
        for id in ["a", "b"] {
            let times = &log[id];
            // lead = clamp(6 min, 5 min, 1 h) = 6 min, minus < 36 s jitter: every ~54 min.
            assert!((25..=27).contains(&times.len()), "{id}: {}", times.len());
            for w in times.windows(2) {
                let gap = w[1] - w[0];
                assert!(
                    (HOUR / 2..=HOUR - 6 * 60 * 1000).contains(&gap),
                    "{id}: gap {gap}"
                );
            }
        }
        assert_ne!(
            log["a"][0], log["b"][0],
            "accounts due at different times stay apart"
        );
    }

    #[test]
    fn ten_day_tokens_are_refreshed_an_hour_before_expiry() {
        let log = simulate(vec![(account("long", 0, 10 * DAY), 10 * DAY)], 25 * DAY);
        let times = &log["long"];
        assert_eq!(times.len(), 2, "{times:?}");
        let first = times[0];
        assert!(
            first <= 10 * DAY - HOUR && first > 10 * DAY - HOUR - 61_000,
            "{first}"
        );
    }

    #[test]
    fn young_tokens_are_never_due_and_dead_ones_are_skipped() {
        let s = LeadSettings::default();
        let a = account("young", 0, 8 * 60 * 1000); // lifetime 8 min < 2 × lead
        assert!(
            due_at(&a, &s).unwrap() >= 4 * 60 * 1000,
            "never before half the lifetime"
        );
        let mut t = account("t", 0, HOUR);
        t.status = Status::Terminal;
        let mut d = account("d", 0, HOUR);
        d.disabled = true;
        let p = plan(2 * HOUR, &[t, d], &s, &HashMap::new());
        assert!(p.due.is_empty() && p.next.is_none());
    }

    #[test]
    fn backoff_postpones_a_due_account() {
        let s = LeadSettings::default();
        let a = account("a", 0, HOUR);
        let mut nb = HashMap::new();
        nb.insert("a".to_string(), HOUR + 1000);
        let p = plan(HOUR - 1000, &[a], &s, &nb);
        assert!(p.due.is_empty());
        assert_eq!(p.next, Some(HOUR + 1000));
    }

    #[test]
    fn settings_parse_with_fallbacks() {
        let s =
            LeadSettings::from_values(Some("0.2".into()), Some("1".into()), Some("junk".into()));
        assert_eq!(s.fraction, 0.2);
        assert_eq!(s.min, Duration::from_secs(1));
        assert_eq!(s.max, Duration::from_secs(3600));
    }
}
