//! The request log and the usage history: `activity.db`, a database file of its own in the data
//! dir, so that a million logged requests never slow the accounts store, its start-up or its
//! change watcher. The endpoint hands each finished request to [`Log::record`], which never
//! blocks: a bounded channel feeds one writer thread that inserts whatever has queued in one
//! transaction (a request is on disk within milliseconds of its end; when the channel is full
//! the record is dropped and counted). Rows are pruned as rows are added (30 days or 1,000,000
//! rows, the `activity.*` settings), never by a timer: an idle process writes nothing here.

pub mod db;
pub mod metrics;
pub mod query;
pub mod report;
mod writer;

use crate::settings::Settings;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

pub use db::ActivityError;

/// The file, in the data dir.
pub const FILE: &str = "activity.db";
/// `on` (default) | `off`: whether requests are logged at all (read per request, from the
/// settings copy: no query).
pub const SETTING_ENABLED: &str = "activity.log";
/// Days a request row and a usage sample are kept (default 30).
pub const SETTING_RETENTION_DAYS: &str = "activity.retention_days";
/// Request rows kept at most (default 1,000,000).
pub const SETTING_MAX_ROWS: &str = "activity.max_rows";
pub const DEFAULT_RETENTION_DAYS: i64 = 30;
pub const DEFAULT_MAX_ROWS: i64 = 1_000_000;
/// Records queued for the writer at most; beyond this a record is dropped (and counted) rather
/// than a request made to wait.
pub const CHANNEL_CAPACITY: usize = 4096;

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

enum Item {
    Request(Record),
    Usage(UsageSample),
    /// Answered once everything queued before it is written (tests, `Log::flush`).
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// This process's request log for one data dir (shared by every endpoint started on it).
pub struct Log {
    tx: std::sync::mpsc::SyncSender<Item>,
    settings: Settings,
    counters: Arc<Counters>,
    path: PathBuf,
}

/// What the log did, for metrics and diagnostics.
#[derive(Default, Debug)]
pub struct Counters {
    pub written: AtomicU64,
    /// Records dropped because the channel was full (the writer fell behind).
    pub dropped: AtomicU64,
    /// Records lost because a write failed (disk full, a broken file).
    pub failed: AtomicU64,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<Log>>> {
    static R: std::sync::OnceLock<Mutex<HashMap<PathBuf, Weak<Log>>>> = std::sync::OnceLock::new();
    R.get_or_init(Default::default)
}

impl Log {
    /// The log of `data_dir`, opened (and its writer thread started) on first use; every
    /// endpoint of this process on that dir shares it. The writer ends when the last holder
    /// drops it, after writing what was queued.
    pub fn for_dir(data_dir: &Path, settings: Settings) -> Result<Arc<Log>, ActivityError> {
        Log::for_dir_with(data_dir, settings, queue_capacity())
    }

    fn for_dir_with(
        data_dir: &Path,
        settings: Settings,
        capacity: usize,
    ) -> Result<Arc<Log>, ActivityError> {
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(log) = reg.get(data_dir).and_then(Weak::upgrade) {
            return Ok(log);
        }
        let path = data_dir.join(FILE);
        let conn = db::open(&path)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let counters = Arc::new(Counters::default());
        writer::spawn(conn, rx, settings.clone(), counters.clone())?;
        let log = Arc::new(Log {
            tx,
            settings,
            counters,
            path,
        });
        reg.retain(|_, w| w.strong_count() > 0);
        reg.insert(data_dir.to_path_buf(), Arc::downgrade(&log));
        Ok(log)
    }

    /// Whether requests are logged (`activity.log`, on unless `off`).
    pub fn enabled(&self) -> bool {
        self.settings.get(SETTING_ENABLED).as_deref().map(str::trim) != Some("off")
    }

    /// Queues a finished request; never blocks (a full channel drops it and counts the drop).
    pub fn record(&self, r: Record) {
        self.send(Item::Request(r));
    }

    /// Queues a usage sample (called only when an account's figures changed).
    pub fn sample(&self, s: UsageSample) {
        self.send(Item::Usage(s));
    }

    fn send(&self, item: Item) {
        if self.tx.try_send(item).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::log_lost("queue_full");
        }
    }

    /// Waits until everything queued so far is written.
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(Item::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `CODEX_VAULT_ACTIVITY_QUEUE` (a positive number) overrides the queue's capacity: for tests
/// that must fill it, and for a machine that wants a deeper one.
fn queue_capacity() -> usize {
    std::env::var(QUEUE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(CHANNEL_CAPACITY)
}

pub const QUEUE_ENV: &str = "CODEX_VAULT_ACTIVITY_QUEUE";

/// Retention from the settings copy (a bad value falls back to the default).
fn retention(settings: &Settings) -> (i64, i64) {
    let num = |k: &str, d: i64| {
        settings
            .get(k)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|v| *v > 0)
            .unwrap_or(d)
    };
    (
        num(SETTING_RETENTION_DAYS, DEFAULT_RETENTION_DAYS),
        num(SETTING_MAX_ROWS, DEFAULT_MAX_ROWS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: i64, n: u64) -> Record {
        Record {
            at_ms,
            route: Route::Responses,
            model: Some("gpt-5.5".into()),
            account_id: Some(format!("acct-{}", n % 3)),
            conversation: None,
            status: 200,
            outcome: Outcome::Ok,
            latency_us: 1000 + n,
            ttfb_us: Some(500),
            tokens: Some(Tokens {
                input: n,
                cached: 0,
                output: 1,
                reasoning: 0,
            }),
        }
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let s = Settings::for_store(&uuid::Uuid::new_v4().to_string());
        for (k, v) in pairs {
            s.apply(k, Some(v));
        }
        s
    }

    fn rows(dir: &Path) -> Vec<query::RequestRow> {
        let conn = db::open_read(dir).unwrap().unwrap();
        query::requests(&conn, &query::Filter::default(), 10_000).unwrap()
    }

    #[test]
    fn a_full_channel_drops_and_counts_and_never_blocks_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::for_dir_with(dir.path(), settings(&[]), 4).unwrap();
        // Another connection holds the file: the writer's insert waits behind it (busy timeout),
        // so the queue cannot drain while records keep coming.
        let blocker = rusqlite::Connection::open(dir.path().join(FILE)).unwrap();
        blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        log.record(record(crate::account::now_ms(), 0));
        // The writer took the first record and is stuck in its transaction; these fill the queue.
        for n in 1..50 {
            log.record(record(crate::account::now_ms(), n));
        }
        let dropped = log.counters().dropped.load(Ordering::Relaxed);
        assert!(
            dropped >= 50 - 1 - 4 - 1,
            "the queue held at most 4 (+1 taken): {dropped}"
        );
        blocker.execute_batch("COMMIT").unwrap();
        log.flush();
        let written = log.counters().written.load(Ordering::Relaxed);
        assert_eq!(
            written + dropped,
            50,
            "every record is written or counted as dropped"
        );
        assert_eq!(rows(dir.path()).len() as u64, written);
    }

    #[test]
    fn rows_beyond_the_count_or_older_than_the_retention_are_pruned_as_rows_are_added() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::for_dir(
            dir.path(),
            settings(&[(SETTING_MAX_ROWS, "5"), (SETTING_RETENTION_DAYS, "2")]),
        )
        .unwrap();
        let now = crate::account::now_ms();
        for n in 0..12 {
            log.record(record(now, n));
        }
        log.flush();
        let kept = rows(dir.path());
        assert_eq!(kept.len(), 5, "the newest 5");
        assert_eq!(kept[0].input_tokens, Some(11));
        assert_eq!(kept[4].input_tokens, Some(7));
        // Rows from three days ago, kept under the default retention ...
        drop(log);
        let log = Log::for_dir(dir.path(), settings(&[])).unwrap();
        for n in 100..103 {
            log.record(record(now - 3 * 24 * 3600 * 1000, n));
        }
        log.flush();
        assert_eq!(rows(dir.path()).len(), 8);
        // ... go with the next write once the retention is two days.
        drop(log);
        let log = Log::for_dir(dir.path(), settings(&[(SETTING_RETENTION_DAYS, "2")])).unwrap();
        log.record(record(now, 200));
        log.flush();
        let kept = rows(dir.path());
        assert_eq!(kept.len(), 6, "5 + the new one: {kept:?}");
        assert!(kept.iter().all(|r| r.at_ms >= now));
    }

    #[test]
    fn a_log_from_a_newer_version_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let before = std::fs::read(&path).unwrap();
        let err = match Log::for_dir(dir.path(), settings(&[])) {
            Err(e) => e,
            Ok(_) => panic!("a newer log must be refused"),
        };
        assert_eq!(err.code(), crate::error_code::ErrorCode::ActivityTooNew);
        assert!(err.to_string().contains("newer"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn the_log_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = Log::for_dir(dir.path(), settings(&[])).unwrap();
        log.record(record(crate::account::now_ms(), 1));
        log.flush();
        for name in [FILE.to_string(), format!("{FILE}-wal")] {
            let mode = std::fs::metadata(dir.path().join(&name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }

    #[test]
    fn totals_group_by_account_and_by_hour() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::for_dir(dir.path(), settings(&[])).unwrap();
        let hour = 3_600_000;
        let base = (crate::account::now_ms() / hour - 2) * hour;
        for n in 0..6 {
            log.record(record(base + (n as i64 % 2) * hour, n));
        }
        log.flush();
        let conn = db::open_read(dir.path()).unwrap().unwrap();
        let f = query::Filter::default();
        let by_account = query::totals(&conn, &f, query::GroupBy::Account).unwrap();
        let sums: Vec<(String, i64, i64)> = by_account
            .iter()
            .map(|t| (t.key.clone().unwrap(), t.requests, t.input_tokens))
            .collect();
        assert_eq!(
            sums,
            [
                ("acct-0".to_string(), 2, 3),
                ("acct-1".to_string(), 2, 5),
                ("acct-2".to_string(), 2, 7)
            ]
        );
        let by_hour = query::totals(&conn, &f, query::GroupBy::Hour).unwrap();
        let hours: std::collections::BTreeSet<String> =
            by_hour.iter().map(|t| t.key.clone().unwrap()).collect();
        assert_eq!(
            hours.into_iter().collect::<Vec<_>>(),
            [base.to_string(), (base + hour).to_string()]
        );
        assert_eq!(by_hour.iter().map(|t| t.requests).sum::<i64>(), 6);
        assert!(
            by_hour.iter().all(|t| t.sub.is_some()),
            "each bucket split by account"
        );
    }
}
