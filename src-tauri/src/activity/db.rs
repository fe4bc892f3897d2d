//! `activity.db`: its schema, opening it (0600, WAL, versioned like the store), and the writes
//! the writer thread makes. Rows are keyed by an integer id that only grows (deletions are from
//! the oldest end), so "how many rows" is `max(id) - min(id) + 1` and pruning by count is one
//! range delete on the primary key.

use super::{Record, UsageSample};
use crate::error_code::ErrorCode;
use rusqlite::{params, Connection, OpenFlags, Transaction};
use std::path::Path;
use std::time::Duration;

/// A newer `activity.db` than this build knows is refused, never written to.
const MIGRATIONS: &[&str] = &[
    // 1: the request log and the usage history.
    "CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        route TEXT NOT NULL,
        model TEXT,
        account_id TEXT,
        conversation TEXT,
        status INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        latency_us INTEGER NOT NULL,
        ttfb_us INTEGER,
        input_tokens INTEGER,
        cached_tokens INTEGER,
        output_tokens INTEGER,
        reasoning_tokens INTEGER
    );
    CREATE INDEX requests_at ON requests(at_ms);
    CREATE INDEX requests_account_at ON requests(account_id, at_ms);
    CREATE TABLE usage_samples (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        account_id TEXT NOT NULL,
        primary_used REAL,
        primary_resets_at INTEGER,
        secondary_used REAL,
        secondary_resets_at INTEGER
    );
    CREATE INDEX usage_samples_account_at ON usage_samples(account_id, at_ms);",
];
pub const LATEST: i64 = MIGRATIONS.len() as i64;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error("cannot open the activity log {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("the activity log {path} is from a newer Codex Vault (schema {found}, this build knows {supported}); update Codex Vault")]
    TooNew {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("the activity log could not be read: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot start the activity log writer: {0}")]
    Thread(String),
}

impl ActivityError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ActivityError::TooNew { .. } => ErrorCode::ActivityTooNew,
            _ => ErrorCode::ActivityLog,
        }
    }
}

/// Opens (creating it 0600 in the private data dir) and migrates the log.
pub fn open(path: &Path) -> Result<Connection, ActivityError> {
    let shown = path.display().to_string();
    let open_err = |detail: String| ActivityError::Open {
        path: shown.clone(),
        detail,
    };
    if let Some(dir) = path.parent() {
        crate::fsutil::ensure_private_dir(dir).map_err(|e| open_err(e.to_string()))?;
    }
    crate::fsutil::touch_private(path).map_err(|e| open_err(e.to_string()))?;
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_err(e.to_string()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| open_err(e.to_string()))?;
    if found > LATEST {
        return Err(ActivityError::TooNew {
            path: shown,
            found,
            supported: LATEST,
        });
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // A log: a power cut may take back the last second of it, never the accounts store's data.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(conn)
}

/// Opens the log to read it (a CLI call, the app's Activity page); `None` when there is none yet.
pub fn open_read(data_dir: &Path) -> Result<Option<Connection>, ActivityError> {
    let path = data_dir.join(super::FILE);
    if !path.exists() {
        return Ok(None);
    }
    open(&path).map(Some)
}

pub(super) fn insert_request(tx: &Transaction<'_>, r: &Record) -> rusqlite::Result<i64> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO requests (at_ms, route, model, account_id, conversation, status, outcome,
            latency_us, ttfb_us, input_tokens, cached_tokens, output_tokens, reasoning_tokens)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    let t = r.tokens;
    stmt.execute(params![
        r.at_ms,
        r.route.as_str(),
        r.model,
        r.account_id,
        r.conversation,
        r.status,
        r.outcome.as_str(),
        r.latency_us as i64,
        r.ttfb_us.map(|v| v as i64),
        t.map(|t| t.input as i64),
        t.map(|t| t.cached as i64),
        t.map(|t| t.output as i64),
        t.map(|t| t.reasoning as i64),
    ])?;
    Ok(tx.last_insert_rowid())
}

pub(super) fn insert_sample(tx: &Transaction<'_>, s: &UsageSample) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO usage_samples (at_ms, account_id, primary_used, primary_resets_at,
            secondary_used, secondary_resets_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    stmt.execute(params![
        s.at_ms,
        s.account_id,
        s.primary_used,
        s.primary_resets_at,
        s.secondary_used,
        s.secondary_resets_at
    ])?;
    Ok(())
}

/// The oldest request kept (id, time), if any.
pub(super) fn oldest_request(conn: &Connection) -> rusqlite::Result<Option<(i64, i64)>> {
    conn.query_row(
        "SELECT id, at_ms FROM requests ORDER BY id LIMIT 1",
        [],
        |r| Ok(Some((r.get(0)?, r.get(1)?))),
    )
    .or_else(|e| match e {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        e => Err(e),
    })
}

/// The earliest time a kept request has (the `requests_at` index answers it).
pub(super) fn earliest_request_at(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT min(at_ms) FROM requests", [], |r| r.get(0))
}

pub(super) fn oldest_sample_at(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT min(at_ms) FROM usage_samples", [], |r| r.get(0))
}

/// Deletes requests older than `cutoff_ms` or beyond the newest `max_rows`; returns how many.
pub(super) fn prune_requests(
    tx: &Transaction<'_>,
    cutoff_ms: i64,
    newest_id: i64,
    max_rows: i64,
) -> rusqlite::Result<usize> {
    let by_count = tx.execute(
        "DELETE FROM requests WHERE id <= ?1",
        params![newest_id - max_rows],
    )?;
    let by_age = tx.execute("DELETE FROM requests WHERE at_ms < ?1", params![cutoff_ms])?;
    Ok(by_count + by_age)
}

pub(super) fn prune_samples(tx: &Transaction<'_>, cutoff_ms: i64) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM usage_samples WHERE at_ms < ?1",
        params![cutoff_ms],
    )
}
