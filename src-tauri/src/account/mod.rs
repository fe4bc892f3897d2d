//! The domain: an account slot, its health, and why it failed. No I/O here.

pub mod quota;
pub mod usage;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch: how times are stored in SQLite (sortable, comparable in SQL).
pub type UnixMs = i64;

pub fn now_ms() -> UnixMs {
    Utc::now().timestamp_millis()
}

pub fn ms_to_rfc3339(ms: UnixMs) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => String::from("1970-01-01T00:00:00Z"),
    }
}

pub fn rfc3339_to_ms(s: &str) -> Option<UnixMs> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
}

/// What the stored status column can hold. `Disabled` is a separate user switch and is
/// derived in the view, so disabling never erases a terminal reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Healthy,
    Refreshing,
    RateLimited,
    Disabled,
    Terminal,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Healthy,
        Status::Refreshing,
        Status::RateLimited,
        Status::Disabled,
        Status::Terminal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Refreshing => "refreshing",
            Status::RateLimited => "rate_limited",
            Status::Disabled => "disabled",
            Status::Terminal => "terminal",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "healthy" => Status::Healthy,
            "refreshing" => Status::Refreshing,
            "rate_limited" => Status::RateLimited,
            "disabled" => Status::Disabled,
            "terminal" => Status::Terminal,
            _ => return None,
        })
    }
}

/// Why a credential is dead: kept on the row and shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReason {
    pub code: String,
    pub message: String,
    pub http_status: Option<u16>,
    pub at: UnixMs,
}

/// A transient problem (network, 5xx): shown as a warning, never makes an account terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub message: String,
    pub at: UnixMs,
}

/// One row of `accounts`, without its secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: String,
    pub label: String,
    pub email: Option<String>,
    pub chatgpt_account_id: String,
    pub chatgpt_user_id: String,
    pub plan: Option<String>,
    pub fedramp: bool,
    pub status: Status,
    pub failure: Option<FailureReason>,
    pub last_error: Option<LastError>,
    pub access_expires_at: Option<UnixMs>,
    /// The access token's `iat`: with `exp` it gives the token's lifetime (scheduler lead times).
    pub access_issued_at: Option<UnixMs>,
    pub last_refresh_at: Option<UnixMs>,
    pub rate_limited_until: Option<UnixMs>,
    pub generation: i64,
    pub disabled: bool,
    pub created_at: UnixMs,
    pub updated_at: UnixMs,
    /// The last usage snapshot seen (JSON), if any.
    pub usage_json: Option<String>,
    /// Where else this sign-in is held live (shared-grant detection), if anywhere.
    pub shared_grant_where: Option<String>,
    /// The refresh broker knows a live holder of this sign-in outside the vault (docs/broker.md):
    /// a brokered auth.json we write back into, or a caller that came through the broker. A
    /// holder known only by the token of an imported file, never seen since, is not one: every
    /// import registers such a guess, and the card would call every imported account brokered.
    pub brokered: bool,
    /// When a holder of this sign-in last came through the refresh broker.
    pub broker_holder_seen_at: Option<UnixMs>,
    /// Restored from a backup and not yet confirmed: paused (stored as disabled) until the user
    /// says the other copy of the grant is retired (README § Backup and restore).
    pub restored_at: Option<UnixMs>,
}

impl Account {
    /// The status a user sees: disabled wins (the user's choice), then the stored state;
    /// a rate limit whose time has passed reads as healthy again.
    pub fn effective_status(&self, now: UnixMs) -> Status {
        if self.disabled {
            return Status::Disabled;
        }
        match self.status {
            Status::RateLimited if self.rate_limited_until.is_some_and(|t| t <= now) => {
                Status::Healthy
            }
            s => s,
        }
    }

    pub fn view(&self, now: UnixMs) -> AccountView {
        let status = self.effective_status(now);
        AccountView {
            id: self.id.clone(),
            label: self.label.clone(),
            email: self.email.clone(),
            chatgpt_account_id: self.chatgpt_account_id.clone(),
            plan: self.plan.clone(),
            status,
            failure: self.failure.as_ref().map(|f| FailureView {
                code: f.code.clone(),
                message: f.message.clone(),
                http_status: f.http_status,
                at: ms_to_rfc3339(f.at),
            }),
            last_error: self.last_error.as_ref().map(|e| LastErrorView {
                message: e.message.clone(),
                at: ms_to_rfc3339(e.at),
            }),
            access_expires_at: self.access_expires_at.map(ms_to_rfc3339),
            last_refresh_at: self.last_refresh_at.map(ms_to_rfc3339),
            rate_limited_until: if status == Status::RateLimited {
                self.rate_limited_until.map(ms_to_rfc3339)
            } else {
                None
            },
            usage: self
                .usage_json
                .as_deref()
                .and_then(|u| serde_json::from_str(u).ok()),
            created_at: ms_to_rfc3339(self.created_at),
            shared_grant: self.shared_grant_where.is_some(),
            shared_grant_where: self.shared_grant_where.clone(),
            held_rotation: None,
            brokered: self.brokered,
            broker_holder_seen_at: self.broker_holder_seen_at.map(ms_to_rfc3339),
            restored_at: self.restored_at.map(ms_to_rfc3339),
        }
    }
}

/// The public shape of an account: `accounts list --json`, `/v1/accounts`, the UI.
/// Field names are a contract (docs/cli.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct AccountView {
    pub id: String,
    pub label: String,
    pub email: Option<String>,
    pub chatgpt_account_id: String,
    pub plan: Option<String>,
    pub status: Status,
    pub failure: Option<FailureView>,
    pub last_error: Option<LastErrorView>,
    pub access_expires_at: Option<String>,
    pub last_refresh_at: Option<String>,
    pub rate_limited_until: Option<String>,
    #[ts(as = "Option<crate::account::usage::UsageSnapshot>")]
    pub usage: Option<serde_json::Value>,
    pub created_at: String,
    /// Another holder has this same sign-in (a live Codex `auth.json`, another copy of the
    /// grant): two holders of one refresh-token chain log each other out unless one brokers.
    #[serde(default)]
    pub shared_grant: bool,
    /// Where the other holder is, in words (a path, or which copy), when `shared_grant`.
    #[serde(default)]
    pub shared_grant_where: Option<String>,
    /// A live process holds this account's newest tokens in memory only (their commit failed:
    /// a full disk, a lock held too long): it keeps serving with them and retries the commit.
    #[serde(default)]
    pub held_rotation: Option<HeldRotationView>,
    /// A Codex CLI (or another holder) keeps this sign-in and refreshes through the broker.
    #[serde(default)]
    pub brokered: bool,
    /// When a brokered holder last came through the broker (RFC 3339), or null if not yet.
    #[serde(default)]
    pub broker_holder_seen_at: Option<String>,
    /// Restored from a backup (RFC 3339) and paused until the user confirms the other copy is
    /// retired; null otherwise. Its status reads `disabled` meanwhile.
    #[serde(default)]
    pub restored_at: Option<String>,
}

/// What the UI and `accounts list` say while a rotation is held in memory.
pub const HELD_ROTATION_ADVICE: &str = "a new sign-in is held in memory; free disk space";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct HeldRotationView {
    /// The pid of the process that holds it.
    pub pid: u32,
    pub since: String,
    /// Commit attempts so far (the first one included).
    pub attempts: u32,
    /// Why the last commit failed.
    pub last_error: String,
    /// [`HELD_ROTATION_ADVICE`].
    pub message: String,
}

/// What the UI and `accounts list` say about a shared grant.
pub const SHARED_GRANT_ADVICE: &str = "two holders of one sign-in will log each other out; broker it (CODEX_REFRESH_TOKEN_URL_OVERRIDE) or sign in separately";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct FailureView {
    pub code: String,
    pub message: String,
    pub http_status: Option<u16>,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct LastErrorView {
    pub message: String,
    pub at: String,
}

/// True when `s` holds a character that must never reach a terminal, a log line or a header
/// (control characters, including newlines, DEL and the C1 range).
pub fn has_control_chars(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// "3 healthy · 1 needs attention · 1 disabled", the same words as the UI's summary line
/// (ui/src/format.ts `summaryLine`): the tray shows it where no window is open.
pub fn summary_line(views: &[AccountView]) -> String {
    if views.is_empty() {
        return "No accounts yet".to_string();
    }
    let (mut healthy, mut attention, mut disabled) = (0, 0, 0);
    for v in views {
        match v.status {
            Status::Disabled => disabled += 1,
            Status::Terminal | Status::RateLimited => attention += 1,
            _ if v.last_error.is_some() => attention += 1,
            _ => healthy += 1,
        }
    }
    let mut parts = vec![format!("{healthy} healthy")];
    if attention > 0 {
        let verb = if attention == 1 { "needs" } else { "need" };
        parts.push(format!("{attention} {verb} attention"));
    }
    if disabled > 0 {
        parts.push(format!("{disabled} disabled"));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Account {
        Account {
            id: "a1".into(),
            label: "work".into(),
            email: Some("ana@corp.com".into()),
            chatgpt_account_id: "acc".into(),
            chatgpt_user_id: "user".into(),
            plan: Some("team".into()),
            fedramp: false,
            status: Status::Healthy,
            failure: None,
            last_error: None,
            access_expires_at: Some(1_700_000_000_000),
            access_issued_at: None,
            last_refresh_at: None,
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

    #[test]
    fn summary_line_counts_like_the_ui() {
        assert_eq!(summary_line(&[]), "No accounts yet");
        let with = |f: &dyn Fn(&mut Account)| {
            let mut a = sample();
            f(&mut a);
            a.view(0)
        };
        let views = vec![
            with(&|_| {}),
            with(&|a| a.status = Status::Terminal),
            with(&|a| {
                a.last_error = Some(LastError {
                    message: "timeout".into(),
                    at: 0,
                })
            }),
            with(&|a| a.disabled = true),
        ];
        assert_eq!(
            summary_line(&views),
            "1 healthy · 2 need attention · 1 disabled"
        );
        assert_eq!(summary_line(&views[..2]), "1 healthy · 1 needs attention");
    }

    #[test]
    fn disabled_wins_over_terminal_but_keeps_reason() {
        let mut a = sample();
        a.status = Status::Terminal;
        a.failure = Some(FailureReason {
            code: "refresh_token_reused".into(),
            message: "m".into(),
            http_status: Some(401),
            at: 0,
        });
        a.disabled = true;
        let v = a.view(0);
        assert_eq!(v.status, Status::Disabled);
        assert_eq!(v.failure.unwrap().code, "refresh_token_reused");
    }

    #[test]
    fn expired_rate_limit_reads_healthy() {
        let mut a = sample();
        a.status = Status::RateLimited;
        a.rate_limited_until = Some(1000);
        assert_eq!(a.effective_status(999), Status::RateLimited);
        assert_eq!(a.effective_status(1000), Status::Healthy);
        assert_eq!(a.view(2000).rate_limited_until, None);
    }

    #[test]
    fn view_serializes_contract_fields() {
        let v = serde_json::to_value(sample().view(0)).unwrap();
        for k in [
            "id",
            "label",
            "email",
            "chatgpt_account_id",
            "plan",
            "status",
            "failure",
            "last_error",
            "access_expires_at",
            "last_refresh_at",
            "rate_limited_until",
            "usage",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["status"], "healthy");
        assert_eq!(v["access_expires_at"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn control_chars_detected() {
        assert!(has_control_chars("a\nb"));
        assert!(has_control_chars("a\u{1b}[31m"));
        assert!(has_control_chars("a\u{85}"));
        assert!(!has_control_chars("ana@corp.com"));
    }
}
