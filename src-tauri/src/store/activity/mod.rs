//! `activity.db`, the request log's own database file: its schema, opening it (0600, WAL,
//! versioned like the store), the writes the log's writer thread makes (`LogDb`) and the reads
//! (`query`). SQL lives in `store/` only; the log itself (queue, writer thread) is `activity`. Rows are keyed by an integer id that only grows (deletions are from
//! the oldest end), so "how many rows" is `max(id) - min(id) + 1` and pruning by count is one
//! range delete on the primary key.

pub mod query;
mod types;

pub use types::*;

use crate::error_code::ErrorCode;
use rusqlite::{params, Connection, OpenFlags, Transaction};
use std::path::Path;
use std::time::Duration;

/// The file, in the data dir.
pub const FILE: &str = "activity.db";

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
    // 2: one index a request row instead of two. Every index costs each insert a B-tree write
    // (≈ 0.8 µs a row here, on the endpoint's cores: README § "Where the time goes"); time is
    // in every query the app makes, so (time, account) answers a window, a window of one account
    // (read off the index, no table row for the others), `min(at_ms)` and pruning by age. An
    // account with no window scans the table from the newest row, which a page of rows stops.
    "DROP INDEX requests_at;
    DROP INDEX requests_account_at;
    CREATE INDEX requests_at_account ON requests(at_ms, account_id);",
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
/// A connection to `activity.db`, as `open_read` gives it (readers outside the store hold one
/// across several queries).
pub type LogConn = Connection;

pub fn open_read(data_dir: &Path) -> Result<Option<Connection>, ActivityError> {
    let path = data_dir.join(FILE);
    if !path.exists() {
        return Ok(None);
    }
    open(&path).map(Some)
}

fn insert_request(tx: &Transaction<'_>, r: &Record) -> rusqlite::Result<i64> {
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

fn insert_sample(tx: &Transaction<'_>, s: &UsageSample) -> rusqlite::Result<()> {
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
fn oldest_request(conn: &Connection) -> rusqlite::Result<Option<(i64, i64)>> {
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

/// The earliest time a kept request has (the `requests_at_account` index answers it).
fn earliest_request_at(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT min(at_ms) FROM requests", [], |r| r.get(0))
}

fn oldest_sample_at(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT min(at_ms) FROM usage_samples", [], |r| r.get(0))
}

/// Deletes requests older than `cutoff_ms` or beyond the newest `max_rows`; returns how many.
fn prune_requests(
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

fn prune_samples(tx: &Transaction<'_>, cutoff_ms: i64) -> rusqlite::Result<usize> {
    tx.execute(
        "DELETE FROM usage_samples WHERE at_ms < ?1",
        params![cutoff_ms],
    )
}

/// The writer thread's connection, with what pruning compares with kept in memory: the lowest
/// id kept and the earliest time kept (not always the same row: a clock set back writes earlier
/// times later).
pub struct LogDb {
    conn: Connection,
    oldest_id: Option<i64>,
    oldest_at: Option<i64>,
    oldest_sample: Option<i64>,
}

impl LogDb {
    pub fn open(path: &Path) -> Result<LogDb, ActivityError> {
        let conn = open(path)?;
        Ok(LogDb {
            oldest_id: oldest_request(&conn)?.map(|(id, _)| id),
            oldest_at: earliest_request_at(&conn)?,
            oldest_sample: oldest_sample_at(&conn)?,
            conn,
        })
    }

    /// Inserts a batch in one transaction and prunes, as rows are added, requests older than
    /// `cutoff_ms` or beyond the newest `max_rows`, and samples older than `cutoff_ms`.
    pub fn write(
        &mut self,
        requests: &[Record],
        samples: &[UsageSample],
        cutoff_ms: i64,
        max_rows: i64,
    ) -> Result<(), ActivityError> {
        let r = self.commit(requests, samples, cutoff_ms, max_rows);
        if r.is_err() {
            // What the file holds now is what pruning must compare with.
            if let (Ok(id), Ok(at)) = (oldest_request(&self.conn), earliest_request_at(&self.conn))
            {
                self.oldest_id = id.map(|(id, _)| id);
                self.oldest_at = at;
            }
        }
        Ok(r?)
    }

    fn commit(
        &mut self,
        requests: &[Record],
        samples: &[UsageSample],
        cutoff: i64,
        max_rows: i64,
    ) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        let mut newest = None;
        for r in requests {
            let id = insert_request(&tx, r)?;
            newest = Some(id);
            self.oldest_id.get_or_insert(id);
            self.oldest_at = Some(self.oldest_at.map_or(r.at_ms, |a| a.min(r.at_ms)));
        }
        for s in samples {
            insert_sample(&tx, s)?;
            self.oldest_sample.get_or_insert(s.at_ms);
        }
        if let (Some(newest), Some(oldest_id), Some(oldest_at)) =
            (newest, self.oldest_id, self.oldest_at)
        {
            if newest - oldest_id + 1 > max_rows || oldest_at < cutoff {
                prune_requests(&tx, cutoff, newest, max_rows)?;
                self.oldest_id = oldest_request(&tx)?.map(|(id, _)| id);
                self.oldest_at = earliest_request_at(&tx)?;
            }
        }
        if self.oldest_sample.is_some_and(|at| at < cutoff) {
            prune_samples(&tx, cutoff)?;
            self.oldest_sample = oldest_sample_at(&tx)?;
        }
        tx.commit()
    }
}

/// Another connection holding the log's write lock until dropped (tests of a writer that cannot
/// write).
#[cfg(test)]
pub struct WriteLock(Connection);

#[cfg(test)]
impl WriteLock {
    pub fn take(path: &Path) -> WriteLock {
        let c = Connection::open(path).expect("open the log");
        c.execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        WriteLock(c)
    }
}

#[cfg(test)]
impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("COMMIT");
    }
}

/// Marks a log file as written by a newer build (tests of the refusal).
#[cfg(test)]
pub fn mark_newer(path: &Path, version: i64) {
    let c = Connection::open(path).expect("open");
    c.pragma_update(None, "user_version", version)
        .expect("user_version");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: i64, account: &str) -> Record {
        Record {
            at_ms,
            route: Route::Responses,
            model: Some("gpt-5.5".into()),
            account_id: Some(account.into()),
            conversation: None,
            status: 200,
            outcome: Outcome::Ok,
            latency_us: 1000,
            ttfb_us: Some(500),
            tokens: None,
        }
    }

    fn request_indexes(c: &Connection) -> Vec<String> {
        let mut st = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'requests' ORDER BY name")
            .unwrap();
        let names = st.query_map([], |r| r.get(0)).unwrap();
        names.map(Result::unwrap).collect()
    }

    #[test]
    fn a_version_1_log_keeps_its_rows_and_moves_to_one_index_that_the_queries_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            for (at, acct) in [(1_000, "a"), (2_000, "b"), (3_000, "a")] {
                c.execute(
                    "INSERT INTO requests (at_ms, route, account_id, status, outcome, latency_us)
                     VALUES (?1, 'responses', ?2, 200, 'ok', 1)",
                    params![at, acct],
                )
                .unwrap();
            }
        }
        let mut db = LogDb::open(&path).unwrap();
        db.write(&[record(4_000, "b")], &[], 0, 1_000).unwrap();
        let c = open(&path).unwrap();
        let version: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, LATEST);
        assert_eq!(request_indexes(&c), ["requests_at_account"]);
        let f = query::Filter {
            since_ms: Some(1_500),
            account_id: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(query::count(&c, &f).unwrap(), 1, "the v1 rows are kept");
        assert_eq!(earliest_request_at(&c).unwrap(), Some(1_000));
        // A window of one account, a window, the earliest time: each read off the index.
        for sql in [
            "SELECT count(*) FROM requests WHERE at_ms >= 1500 AND account_id = 'a'",
            "SELECT count(*) FROM requests WHERE at_ms >= 1500",
            "SELECT min(at_ms) FROM requests",
        ] {
            let plan: String = c
                .query_row(&format!("EXPLAIN QUERY PLAN {sql}"), [], |r| r.get(3))
                .unwrap();
            assert!(plan.contains("requests_at_account"), "{sql}: {plan}");
        }
    }
}
