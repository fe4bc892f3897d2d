//! SQLite store: accounts, their sealed secrets, leases, intents and events. One file per data
//! dir, shared by the desktop app, `serve` and the CLI (possibly at the same time: WAL + busy_timeout).

mod accounts;
pub mod activity;
pub mod backup;
mod broker;
mod continuity;
mod events;
mod redemptions;
mod refresh;
mod restore;
pub mod schema;
pub mod seam;
mod settings;
mod watch;

pub use accounts::{NewAccount, SealedTokens, StoredSecrets};
pub use broker::{
    BrokerAccount, BrokerSnapshot, CurrentTokens, DigestOrigin, FingerprintRow, PathHolder,
};
pub use continuity::{AffinityRow, ContinuityBatch, ContinuityBounds, MintedRow};
pub use events::{import_source_detail, Event};
pub use redemptions::Redemption;
pub use refresh::{Intent, Rotation};
pub use restore::{
    ExportedAccount, HolderRow, RestoredAccount, RestoredBroker, RestoredGrant, RestoredHolder,
    StoreExport,
};
pub use seam::{
    AccountStore, BrokerStore, ContinuityStore, CoreStore, HealthStore, RefreshStore, SharedStore,
};
pub use watch::{watch_dir, StoreWatch};

use crate::error_code::ErrorCode;
use crate::fsutil;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub const DB_FILE_NAME: &str = "codex-vault.db";

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the data directory {path}: {detail}")]
    DataDir { path: String, detail: String },
    #[error("the store {path} was written by a newer Codex Vault (schema {found}, this build knows up to {supported}). Update Codex Vault; nothing was changed")]
    TooNew {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("the store {path} is not a Codex Vault database or is damaged: {detail}")]
    NotADatabase { path: String, detail: String },
    #[error("the store {path} is damaged ({detail}); Codex Vault does not serve from a damaged store. {advice}")]
    Corrupt {
        path: String,
        detail: String,
        advice: String,
    },
    #[error("cannot copy the store {path} aside before upgrading its schema ({detail}); nothing was changed. Free some disk space and start again")]
    Backup { path: String, detail: String },
    #[error("{}", describe_sqlite(.0))]
    Sqlite(#[from] rusqlite::Error),
    #[error("no account matches `{0}` (give its id, label or email; `codex-vault accounts list` shows them)")]
    AccountNotFound(String),
    #[error("`{0}` matches more than one account; use its id")]
    Ambiguous(String),
    #[error("the label `{0}` is already used by another account")]
    LabelTaken(String),
    #[error("the account was changed by another process at the same time; try again")]
    Conflict,
}

impl StoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::DataDir { .. } => ErrorCode::DataDir,
            StoreError::TooNew { .. } => ErrorCode::StoreTooNew,
            StoreError::NotADatabase { .. } => ErrorCode::StoreNotADatabase,
            StoreError::Corrupt { .. } => ErrorCode::StoreCorrupt,
            StoreError::Backup { .. } => ErrorCode::StoreBackupFailed,
            StoreError::Sqlite(e) if is_busy(e) => ErrorCode::StoreBusy,
            StoreError::Sqlite(e) if is_corrupt(e) => ErrorCode::StoreCorrupt,
            StoreError::Sqlite(_) => ErrorCode::StoreError,
            StoreError::AccountNotFound(_) => ErrorCode::AccountNotFound,
            StoreError::Ambiguous(_) => ErrorCode::AccountAmbiguous,
            StoreError::LabelTaken(_) => ErrorCode::LabelTaken,
            StoreError::Conflict => ErrorCode::StoreConflict,
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Runs `f` again while SQLite answers busy, until `BUSY_TIMEOUT`. Opening a new file can meet
/// SQLITE_BUSY at once, without SQLite waiting on `busy_timeout`, while another process is
/// switching the same file to WAL (two first runs at once): that is a wait, not a damaged store.
fn retry_while_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match f() {
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                // A backoff between tries, not a synchronisation: the other opener holds the lock.
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// A damaged page met by any query (no path at hand here): said as such, with the way out.
fn describe_sqlite(e: &rusqlite::Error) -> String {
    if is_corrupt(e) {
        format!("the store is damaged ({e}); Codex Vault does not serve from a damaged store. {SET_ASIDE_ADVICE}")
    } else {
        format!("database error: {e}")
    }
}

const SET_ASIDE_ADVICE: &str = "Set the store aside and start fresh: the desktop app offers it on its start page (by hand: quit every Codex Vault process and move the data directory away; nothing in it is deleted), then sign in again";

pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    store_id: String,
    /// This process's copy of the store's settings (`crate::settings`), shared by every handle.
    settings: crate::settings::Settings,
    /// The copy this open took before migrating, if it migrated: kept past this start.
    pre_migration_copy: Option<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("store_id", &self.store_id)
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `data_dir`: 0700 dir, 0600 files, WAL, migrations.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let dir_err = |e: std::io::Error| StoreError::DataDir {
            path: data_dir.display().to_string(),
            detail: e.to_string(),
        };
        fsutil::ensure_private_dir(data_dir).map_err(dir_err)?;
        let path = data_dir.join(DB_FILE_NAME);
        // Created 0600 before SQLite opens it, so SQLite's -wal/-shm files inherit the mode.
        fsutil::touch_private(&path).map_err(dir_err)?;
        let shown = path.display().to_string();
        let not_db = |e: rusqlite::Error| StoreError::NotADatabase {
            path: shown.clone(),
            detail: e.to_string(),
        };
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Reading the version first is what tells "not a database" apart, before any write.
        let found = retry_while_busy(|| schema::user_version(&conn)).map_err(not_db)?;
        if found > schema::LATEST {
            return Err(StoreError::TooNew {
                path: shown,
                found,
                supported: schema::LATEST,
            });
        }
        retry_while_busy(|| conn.pragma_update(None, "journal_mode", "WAL")).map_err(not_db)?;
        // FULL, not NORMAL: a rotated refresh token that a power cut takes back is a lost sign-in.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // An existing store with migrations pending is copied first (a new, empty one is not).
        let mut pre_migration_copy = None;
        if found > 0 && found < schema::LATEST {
            let copy = match backup::take(&conn, &path) {
                Ok(copy) => copy,
                // Another first run finished the upgrade meanwhile and cleared the copies (this
                // one's half-made copy with them): nothing is pending any more.
                Err(_)
                    if retry_while_busy(|| schema::user_version(&conn)) == Ok(schema::LATEST) =>
                {
                    backup::path_for(&path, schema::LATEST)
                }
                Err(detail) => {
                    return Err(StoreError::Backup {
                        path: shown.clone(),
                        detail,
                    })
                }
            };
            if copy == backup::path_for(&path, schema::LATEST) {
                // Another process migrated it meanwhile: nothing is pending any more.
                backup::remove_all(&path);
            } else {
                tracing::info!(copy = %copy.display(), "store copied before its schema upgrade");
                pre_migration_copy = Some(copy);
            }
        }
        if let Err(e) = schema::migrate(&mut conn) {
            if let Some(copy) = &pre_migration_copy {
                tracing::error!(copy = %copy.display(), "the schema upgrade failed; the store as it was is kept in the copy");
            }
            return Err(e.into());
        }
        let store_id = Self::ensure_store_id(&conn)?;
        // Every open reads the table afresh: a copy loaded by an earlier open in this process may
        // have missed another process's writes if no watcher ran meanwhile.
        let settings_copy = crate::settings::Settings::for_store(&store_id);
        settings::refresh(&settings_copy, &conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
            store_id,
            settings: settings_copy,
            pre_migration_copy,
        })
    }

    /// Deletes a store that was created by this open and never used (no account, no setting, no
    /// event, nothing in `meta` but its id): an open that fails before anything was stored (the
    /// keychain unavailable on a first run) must not leave an empty database behind. Checked and
    /// deleted under the write lock, so no other process's write lands in between. (A second
    /// process that opened this very file in the same instant, with a working keychain, would go
    /// on in the deleted file: two first runs racing, one without a keychain — accepted.)
    /// Returns whether it deleted anything.
    pub fn discard_if_unused(self) -> bool {
        let path = self.path;
        let conn = self.conn.into_inner().unwrap_or_else(|e| e.into_inner());
        let unused = conn.execute_batch("BEGIN IMMEDIATE").is_ok()
            && conn
                .query_row(
                    "SELECT NOT EXISTS(SELECT 1 FROM accounts)
                        AND NOT EXISTS(SELECT 1 FROM account_events)
                        AND NOT EXISTS(SELECT 1 FROM settings)
                        AND NOT EXISTS(SELECT 1 FROM meta WHERE key <> 'store_id')",
                    [],
                    |r| r.get::<_, bool>(0),
                )
                .unwrap_or(false);
        if unused {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
        }
        let _ = conn.execute_batch("ROLLBACK");
        drop(conn);
        unused
    }

    /// `PRAGMA quick_check`: the app and `serve` run it once at start (a full read of the file,
    /// too slow for every CLI call) and never serve from a store that fails it. A sound store
    /// then lets go of the pre-migration copies of earlier starts (this start's own is kept).
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let copies = backup::existing(&self.path);
        let corrupt = |detail: String| {
            StoreError::Corrupt {
            path: self.path.display().to_string(),
            detail,
            advice: match copies.last() {
                Some(copy) => format!(
                    "A copy from before the last schema upgrade is at {}: to use it, quit every Codex Vault process and put it in place of the store. Otherwise: {SET_ASIDE_ADVICE}",
                    copy.display()
                ),
                None => SET_ASIDE_ADVICE.to_string(),
            },
        }
        };
        let problems: Result<Vec<String>, rusqlite::Error> = {
            let conn = self.conn();
            conn.prepare("PRAGMA quick_check(10)").and_then(|mut st| {
                st.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
        };
        match problems {
            Ok(p) if p.len() == 1 && p[0] == "ok" => {}
            Ok(p) => return Err(corrupt(p.join("; "))),
            Err(e) if is_corrupt(&e) => return Err(corrupt(e.to_string())),
            Err(e) => return Err(e.into()),
        }
        if self.pre_migration_copy.is_none() && !copies.is_empty() {
            backup::remove_all(&self.path);
        }
        Ok(())
    }

    fn ensure_store_id(conn: &Connection) -> Result<String, StoreError> {
        let existing: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(id) = existing {
            return Ok(id);
        }
        let id = uuid::Uuid::new_v4().to_string();
        // INSERT OR IGNORE + re-read: two processes creating the store at once agree on one id.
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?1)",
            [&id],
        )?;
        Ok(
            conn.query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
                r.get(0)
            })?,
        )
    }

    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection. A poisoned lock means a panic mid-call; SQLite rolled back any open
    /// transaction when its guard dropped, so the connection is still consistent.
    /// For tests of the code above the store: every later write fails, as on a full disk.
    #[cfg(test)]
    pub(crate) fn fail_writes_for_test(&self) {
        self.conn()
            .execute_batch("PRAGMA query_only = ON")
            .expect("a pragma on an open connection");
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn meta_set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        meta_set_in(&self.conn(), key, value)
    }

    /// True when anything sealed under the data key exists: then a missing key must not be replaced.
    pub fn has_sealed_data(&self) -> Result<bool, StoreError> {
        has_sealed_data_in(&self.conn())
    }

    /// Runs `f` holding the database's write lock (`BEGIN IMMEDIATE`) with the store-wide
    /// values (`meta`) at hand: other processes' writers wait, so a check-then-act on them (mint
    /// a key only if none exists) cannot race. Commits on Ok, rolls back on Err.
    pub fn with_meta_lock<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&MetaTx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.with_write_lock(|conn| f(&MetaTx(conn)))
    }

    /// `with_meta_lock` for SQL inside `store/`: the transaction's connection itself.
    fn with_write_lock<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let out = f(&tx)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }
}

/// The store-wide values inside a `with_meta_lock` transaction.
pub struct MetaTx<'a>(&'a Connection);

impl MetaTx<'_> {
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .0
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        meta_set_in(self.0, key, value)
    }

    /// `Store::has_sealed_data`, inside the transaction.
    pub fn has_sealed_data(&self) -> Result<bool, StoreError> {
        has_sealed_data_in(self.0)
    }
}

fn meta_set_in(conn: &Connection, key: &str, value: &[u8]) -> Result<(), StoreError> {
    conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            rusqlite::params![key, value],
        )?;
    Ok(())
}

fn has_sealed_data_in(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM account_secrets) OR EXISTS(SELECT 1 FROM meta WHERE key = 'local_api_key')",
        [],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_opens_at_once_all_succeed_on_one_store() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("vault");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
            let opens: Vec<_> = (0..6)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open(&path).map(|s| s.store_id().to_string())
                    })
                })
                .collect();
            let ids: Vec<String> = opens
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap()
                        .unwrap_or_else(|e| panic!("{e} [{}]", e.code()))
                })
                .collect();
            assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        }
    }
}
