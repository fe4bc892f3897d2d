//! What is worth a desktop notification, decided in the core (the app only shows the `Notice`s):
//!
//! - an account needs sign-in — once per failure episode, however many requests or refreshes
//!   fail meanwhile; the episode ends when the account is not terminal any more (signed in
//!   again, or removed);
//! - every enabled account is capped (rate-limited), with the earliest reset — once until one of
//!   them is selectable again;
//! - the endpoint could not start — once per distinct failure, until it starts;
//! - a new sign-in is held in memory only (its save failed: a full disk) — once per account until
//!   it is saved.
//!
//! Each kind has an off switch in the store's settings (`notify.<kind>` = `off`; on by default;
//! the app's Settings page writes them). A notice switched off is still counted as told, so
//! switching it on later does not replay an old episode.
//!
//! `Notices::observe` is the pure decision over one look at the state; `spawn` runs it on the
//! event bus (woken only by events: no timer).

use crate::account::{AccountView, Status};
use crate::bus::{Bus, CoreEvent};
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    NeedsSignIn,
    AllCapped,
    EndpointFailed,
    HeldInMemory,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 4] = [
        NoticeKind::NeedsSignIn,
        NoticeKind::AllCapped,
        NoticeKind::EndpointFailed,
        NoticeKind::HeldInMemory,
    ];

    /// Its off switch in the store's settings: `off` (or `0`, `false`, `no`) silences it.
    pub fn setting_key(self) -> &'static str {
        match self {
            NoticeKind::NeedsSignIn => "notify.needs_sign_in",
            NoticeKind::AllCapped => "notify.all_capped",
            NoticeKind::EndpointFailed => "notify.endpoint_failed",
            NoticeKind::HeldInMemory => "notify.held_in_memory",
        }
    }
}

/// Whether a `notify.*` setting's value leaves the notice on (unset: on).
pub fn switched_on(value: Option<&str>) -> bool {
    !matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("off" | "0" | "false" | "no")
    )
}

/// One notification to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct Notice {
    pub kind: NoticeKind,
    pub title: String,
    pub body: String,
    /// The account it is about, if one.
    pub account_id: Option<String>,
}

/// One look at the state the notices are about.
pub struct Observed<'a> {
    pub accounts: &'a [AccountView],
    /// Why this process's endpoint failed to start, while it is not running.
    pub endpoint_error: Option<&'a str>,
}

/// What has been told already (the open episodes).
#[derive(Debug, Default)]
pub struct Notices {
    needs_sign_in: BTreeSet<String>,
    all_capped: bool,
    endpoint_error: Option<String>,
    held: BTreeSet<String>,
}

impl Notices {
    /// The notices `seen` calls for that were not told yet; `on` says which kinds are switched on.
    pub fn observe(&mut self, seen: &Observed<'_>, on: impl Fn(NoticeKind) -> bool) -> Vec<Notice> {
        let mut out = Told {
            on: &on,
            out: Vec::new(),
        };
        self.sign_ins(seen.accounts, &mut out);
        self.capped(seen.accounts, &mut out);
        self.endpoint(seen.endpoint_error, &mut out);
        self.held(seen.accounts, &mut out);
        out.out
    }

    fn sign_ins(&mut self, accounts: &[AccountView], out: &mut Told<'_>) {
        let terminal = ids(accounts, |a| a.status == Status::Terminal);
        for a in accounts.iter().filter(|a| terminal.contains(&a.id)) {
            if self.needs_sign_in.insert(a.id.clone()) {
                let why = a.failure.as_ref().map_or("signed out", |f| f.code.as_str());
                out.tell(
                    NoticeKind::NeedsSignIn,
                    format!("{} needs sign-in", a.label),
                    format!("Codex Vault cannot refresh this account ({why}). Open Codex Vault and choose Sign in again."),
                    Some(&a.id),
                );
            }
        }
        self.needs_sign_in.retain(|id| terminal.contains(id));
    }

    fn capped(&mut self, accounts: &[AccountView], out: &mut Told<'_>) {
        let enabled: Vec<&AccountView> = accounts
            .iter()
            .filter(|a| a.status != Status::Disabled)
            .collect();
        let capped = !enabled.is_empty() && enabled.iter().all(|a| a.status == Status::RateLimited);
        if capped && !self.all_capped {
            // RFC 3339 UTC times in one format sort as text.
            let earliest = enabled
                .iter()
                .filter_map(|a| a.rate_limited_until.as_deref())
                .min();
            out.tell(
                NoticeKind::AllCapped,
                "Every account is at its usage limit".into(),
                match earliest {
                    Some(at) => format!("Requests fail until the first limit resets, at {at}."),
                    None => "Requests fail until a limit resets.".into(),
                },
                None,
            );
        }
        self.all_capped = capped;
    }

    fn endpoint(&mut self, error: Option<&str>, out: &mut Told<'_>) {
        match error {
            Some(e) if self.endpoint_error.as_deref() != Some(e) => {
                out.tell(
                    NoticeKind::EndpointFailed,
                    "The endpoint could not start".into(),
                    format!("Local tools cannot reach Codex Vault: {e}"),
                    None,
                );
                self.endpoint_error = Some(e.to_string());
            }
            Some(_) => {}
            None => self.endpoint_error = None,
        }
    }

    fn held(&mut self, accounts: &[AccountView], out: &mut Told<'_>) {
        let held = ids(accounts, |a| a.held_rotation.is_some());
        for a in accounts.iter().filter(|a| held.contains(&a.id)) {
            if self.held.insert(a.id.clone()) {
                let why = a
                    .held_rotation
                    .as_ref()
                    .map_or("disk full", |h| h.last_error.as_str());
                out.tell(
                    NoticeKind::HeldInMemory,
                    format!("{}: new sign-in held in memory only", a.label),
                    format!(
                        "Saving it failed ({why}); {}. Quitting now would lose it.",
                        crate::account::HELD_ROTATION_ADVICE
                    ),
                    Some(&a.id),
                );
            }
        }
        self.held.retain(|id| held.contains(id));
    }
}

/// The notices of one look, the switched-off ones left out.
struct Told<'a> {
    on: &'a dyn Fn(NoticeKind) -> bool,
    out: Vec<Notice>,
}

impl Told<'_> {
    fn tell(&mut self, kind: NoticeKind, title: String, body: String, account: Option<&str>) {
        if (self.on)(kind) {
            self.out.push(Notice {
                kind,
                title,
                body,
                account_id: account.map(str::to_string),
            });
        }
    }
}

fn ids(accounts: &[AccountView], keep: impl Fn(&AccountView) -> bool) -> BTreeSet<String> {
    accounts
        .iter()
        .filter(|a| keep(a))
        .map(|a| a.id.clone())
        .collect()
}

/// Whether any account needs the user's attention (the tray's warning state): the same accounts
/// the summary line counts as "need attention" (`account::summary_line`), and any sign-in held in
/// memory only.
pub fn needs_attention(accounts: &[AccountView]) -> bool {
    accounts.iter().any(|a| match a.status {
        Status::Disabled => false,
        Status::Terminal | Status::RateLimited => true,
        _ => a.last_error.is_some() || a.held_rotation.is_some(),
    })
}

/// Runs the decision on this process's bus for as long as the runtime lives: a first look at
/// once, then one look per burst of events (account, store, held, endpoint or settings changes).
/// The accounts are re-read only when a burst says they may have changed: the endpoint publishes
/// a change for every request it serves, which needs only the endpoint's state looked at again.
/// `show` gets each notice (the desktop layer shows it). Needs the async runtime.
pub fn spawn(
    service: std::sync::Arc<crate::accounts::Service>,
    endpoint: std::sync::Arc<crate::endpoint::ctl::EndpointControl>,
    show: impl Fn(Notice) + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    let mut rx = Bus::global().subscribe();
    tokio::spawn(async move {
        let mut notices = Notices::default();
        let mut accounts: Option<Vec<AccountView>> = None;
        let mut reread = true;
        loop {
            let error = endpoint
                .status()
                .await
                .ok()
                .filter(|s| !s.running)
                .and_then(|s| s.error)
                .map(|e| e.message);
            if reread || accounts.is_none() {
                let svc = service.clone();
                match tokio::task::spawn_blocking(move || svc.list()).await {
                    Ok(Ok(list)) => accounts = Some(list),
                    Ok(Err(e)) => tracing::warn!("notices: cannot read the accounts: {e}"),
                    Err(e) => tracing::warn!("notices: the account read failed: {e}"),
                }
            }
            if let Some(accounts) = &accounts {
                let settings = service.store().settings();
                let seen = Observed {
                    accounts,
                    endpoint_error: error.as_deref(),
                };
                let on = |k: NoticeKind| switched_on(settings.get(k.setting_key()).as_deref());
                for n in notices.observe(&seen, on) {
                    show(n);
                }
            }
            match next_burst(&mut rx).await {
                Some(accounts_may_differ) => reread = accounts_may_differ,
                None => return,
            }
        }
    })
}

/// Waits for the next event that matters (settings other than `notify.*` do not) and drains what
/// queued behind it; says whether any of them may have changed the accounts. `None`: the bus
/// closed.
async fn next_burst(rx: &mut tokio::sync::broadcast::Receiver<CoreEvent>) -> Option<bool> {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let about_accounts = |e: &CoreEvent| {
        !matches!(
            e,
            CoreEvent::EndpointChanged | CoreEvent::SettingsChanged { .. }
        )
    };
    let mut accounts = loop {
        match rx.recv().await {
            Ok(CoreEvent::SettingsChanged { key }) if !key.starts_with("notify.") => {}
            Ok(e) => break about_accounts(&e),
            // Events were missed: anything may have changed.
            Err(RecvError::Lagged(_)) => break true,
            Err(RecvError::Closed) => return None,
        }
    };
    loop {
        match rx.try_recv() {
            Ok(e) => accounts |= about_accounts(&e),
            Err(TryRecvError::Lagged(_)) => accounts = true,
            Err(_) => return Some(accounts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_served_requests_asks_for_no_account_read() {
        let bus = crate::bus::Bus::default();
        let mut rx = bus.subscribe();
        let setting = |key: &str| CoreEvent::SettingsChanged { key: key.into() };
        for _ in 0..3 {
            bus.publish(CoreEvent::EndpointChanged);
        }
        assert_eq!(
            next_burst(&mut rx).await,
            Some(false),
            "the endpoint's state only"
        );
        // A setting other than a switch is not a burst at all; a switch is, without a re-read.
        bus.publish(setting("endpoint.port"));
        bus.publish(setting("notify.all_capped"));
        assert_eq!(next_burst(&mut rx).await, Some(false));
        bus.publish(CoreEvent::EndpointChanged);
        bus.publish(CoreEvent::AccountChanged {
            account_id: "a".into(),
        });
        assert_eq!(
            next_burst(&mut rx).await,
            Some(true),
            "an account in the burst"
        );
        bus.publish(CoreEvent::StoreChanged);
        assert_eq!(next_burst(&mut rx).await, Some(true));
    }
    use crate::account::{FailureView, HeldRotationView};

    fn view(id: &str, status: Status) -> AccountView {
        let mut v: AccountView = serde_json::from_value(serde_json::json!({
            "id": id, "label": format!("label-{id}"), "email": null, "chatgpt_account_id": "c",
            "plan": "plus", "status": "healthy", "failure": null, "last_error": null,
            "access_expires_at": null, "last_refresh_at": null, "rate_limited_until": null,
            "usage": null, "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        v.status = status;
        if status == Status::Terminal {
            v.failure = Some(FailureView {
                code: "refresh_token_reused".into(),
                message: "m".into(),
                http_status: Some(401),
                at: "2026-01-01T00:00:00Z".into(),
            });
        }
        v
    }

    fn look(n: &mut Notices, accounts: &[AccountView], on: bool) -> Vec<NoticeKind> {
        let seen = Observed {
            accounts,
            endpoint_error: None,
        };
        n.observe(&seen, |_| on)
            .into_iter()
            .map(|n| n.kind)
            .collect()
    }

    #[test]
    fn one_sign_in_notice_per_failure_episode() {
        let mut n = Notices::default();
        let healthy = [view("a", Status::Healthy), view("b", Status::Healthy)];
        let dead = [view("a", Status::Terminal), view("b", Status::Healthy)];
        assert!(look(&mut n, &healthy, true).is_empty());
        assert_eq!(look(&mut n, &dead, true), vec![NoticeKind::NeedsSignIn]);
        // Every further failed attempt of the same episode: nothing.
        for _ in 0..5 {
            assert!(look(&mut n, &dead, true).is_empty());
        }
        // Healthy again ends the episode; the next failure is a new one.
        assert!(look(&mut n, &healthy, true).is_empty());
        let notices = n.observe(
            &Observed {
                accounts: &dead,
                endpoint_error: None,
            },
            |_| true,
        );
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].account_id.as_deref(), Some("a"));
        assert!(notices[0].title.contains("label-a"), "{notices:?}");
        assert!(
            notices[0].body.contains("refresh_token_reused"),
            "{notices:?}"
        );
    }

    #[test]
    fn a_switched_off_notice_is_never_shown_nor_replayed() {
        let mut n = Notices::default();
        let dead = [view("a", Status::Terminal)];
        let seen = Observed {
            accounts: &dead,
            endpoint_error: Some("port 8417 is in use"),
        };
        let off = |k: NoticeKind| k != NoticeKind::NeedsSignIn;
        let kinds: Vec<NoticeKind> = n.observe(&seen, off).into_iter().map(|n| n.kind).collect();
        assert_eq!(
            kinds,
            vec![NoticeKind::EndpointFailed],
            "sign-in switched off"
        );
        // Switched on again during the same episode: not replayed.
        assert!(n.observe(&seen, |_| true).is_empty());
        assert!(switched_on(None) && switched_on(Some("on")) && switched_on(Some("1")));
        assert!(
            !switched_on(Some("off")) && !switched_on(Some("False")) && !switched_on(Some("0"))
        );
    }

    #[test]
    fn all_capped_once_with_the_earliest_reset() {
        let mut n = Notices::default();
        let mut a = view("a", Status::RateLimited);
        a.rate_limited_until = Some("2026-01-01T05:00:00Z".into());
        let mut b = view("b", Status::RateLimited);
        b.rate_limited_until = Some("2026-01-01T03:00:00Z".into());
        let off = view("c", Status::Disabled);
        let capped = [a.clone(), b.clone(), off.clone()];
        let notices = n.observe(
            &Observed {
                accounts: &capped,
                endpoint_error: None,
            },
            |_| true,
        );
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert_eq!(notices[0].kind, NoticeKind::AllCapped);
        assert!(
            notices[0].body.contains("2026-01-01T03:00:00Z"),
            "{notices:?}"
        );
        assert!(look(&mut n, &capped, true).is_empty(), "once per episode");
        let one_free = [a.clone(), view("b", Status::Healthy), off.clone()];
        assert!(look(&mut n, &one_free, true).is_empty());
        assert_eq!(
            look(&mut n, &capped, true),
            vec![NoticeKind::AllCapped],
            "a new episode"
        );
        assert!(
            look(&mut n, &[off], true).is_empty(),
            "no enabled account: not 'all capped'"
        );
    }

    #[test]
    fn endpoint_failures_and_held_sign_ins_once_each() {
        let mut n = Notices::default();
        let mut held = view("a", Status::Healthy);
        held.held_rotation = Some(HeldRotationView {
            pid: 1,
            since: "2026-01-01T00:00:00Z".into(),
            attempts: 1,
            last_error: "database or disk is full".into(),
            message: crate::account::HELD_ROTATION_ADVICE.into(),
        });
        let accounts = [held];
        let seen = Observed {
            accounts: &accounts,
            endpoint_error: Some("port in use"),
        };
        let kinds: Vec<NoticeKind> = n
            .observe(&seen, |_| true)
            .into_iter()
            .map(|n| n.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![NoticeKind::EndpointFailed, NoticeKind::HeldInMemory]
        );
        assert!(n.observe(&seen, |_| true).is_empty());
        let other = Observed {
            accounts: &accounts,
            endpoint_error: Some("another failure"),
        };
        assert_eq!(
            n.observe(&other, |_| true).len(),
            1,
            "a different failure is told"
        );
        assert!(needs_attention(&accounts));
        assert!(!needs_attention(&[
            view("b", Status::Healthy),
            view("c", Status::Disabled)
        ]));
        assert!(needs_attention(&[view("d", Status::Terminal)]));
    }
}
