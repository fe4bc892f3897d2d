//! SQLite store: accounts, their sealed secrets, leases, intents and events. One file per data
//! dir, shared by the desktop app, `serve` and the CLI (possibly at the same time: WAL + busy_timeout).

mod accounts;
mod broker;
mod events;
mod refresh;
pub mod schema;
mod watch;

pub use accounts::{NewAccount, SealedTokens, StoredSecrets};
pub use broker::{
    BrokerAccount, BrokerSnapshot, CurrentTokens, DigestOrigin, FingerprintRow, PathHolder,
};
pub use events::Event;
pub use refresh::{Intent, Rotation};
pub use watch::StoreWatch;

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
    #[error("database error: {0}")]
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
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::DataDir { .. } => "data_dir",
            StoreError::TooNew { .. } => "store_too_new",
            StoreError::NotADatabase { .. } => "store_not_a_database",
            StoreError::Sqlite(e) if is_busy(e) => "store_busy",
            StoreError::Sqlite(_) => "store_error",
            StoreError::AccountNotFound(_) => "account_not_found",
            StoreError::Ambiguous(_) => "account_ambiguous",
            StoreError::LabelTaken(_) => "label_taken",
            StoreError::Conflict => "store_conflict",
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    store_id: String,
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
        let found = schema::user_version(&conn).map_err(not_db)?;
        if found > schema::LATEST {
            return Err(StoreError::TooNew {
                path: shown,
                found,
                supported: schema::LATEST,
            });
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(not_db)?;
        // FULL, not NORMAL: a rotated refresh token that a power cut takes back is a lost sign-in.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn)?;
        let store_id = Self::ensure_store_id(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
            store_id,
        })
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
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn meta_get_in(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn meta_set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        Self::meta_set_in(&self.conn(), key, value)
    }

    pub fn meta_set_in(conn: &Connection, key: &str, value: &[u8]) -> Result<(), StoreError> {
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            rusqlite::params![key, value],
        )?;
        Ok(())
    }

    /// True when anything sealed under the data key exists: then a missing key must not be replaced.
    pub fn has_sealed_data(&self) -> Result<bool, StoreError> {
        Self::has_sealed_data_in(&self.conn())
    }

    pub fn has_sealed_data_in(conn: &Connection) -> Result<bool, StoreError> {
        Ok(conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM account_secrets) OR EXISTS(SELECT 1 FROM meta WHERE key = 'local_api_key')",
            [],
            |r| r.get(0),
        )?)
    }

    /// Runs `f` holding the database's write lock (`BEGIN IMMEDIATE`): other processes' writers
    /// wait, so a check-then-act inside cannot race them. Commits on Ok, rolls back on Err.
    pub fn with_write_lock<T, E: From<StoreError>>(
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
