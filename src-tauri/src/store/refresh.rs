//! The refresh engine's writes. Every write that follows a refresh attempt is conditional on the
//! generation the attempt started from: a stale process can never overwrite a newer grant nor
//! mark a newer, live grant terminal.

use super::events::append;
use super::{Store, StoreError};
use crate::account::{now_ms, FailureReason, UnixMs};
use rusqlite::{params, OptionalExtension};

/// Milliseconds on SQLite's own clock, so every process judges lease expiry by one clock.
const SQL_NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// A rotation to commit. `None` fields keep their stored value (upstream may omit them).
#[derive(Clone)]
pub struct Rotation {
    pub access_token: Vec<u8>,
    pub id_token: Option<Vec<u8>>,
    /// The new refresh token and its fingerprint.
    pub refresh_token: Option<(Vec<u8>, String)>,
    pub access_expires_at: Option<UnixMs>,
    pub access_issued_at: Option<UnixMs>,
}

/// A refresh that was started and never committed nor cleared (a crash, or an answer lost in transit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub account_id: String,
    pub generation: i64,
    pub holder: String,
    pub started_at: UnixMs,
}

impl Store {
    /// Takes the cross-process refresh lease of an account if it is free, expired, already ours,
    /// or held by a process that is gone (`holder_dead`). Expiry is computed on SQLite's clock.
    pub fn try_acquire_lease(
        &self,
        account_id: &str,
        holder: &str,
        ttl_ms: i64,
        holder_dead: impl Fn(&str) -> bool,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let current: Option<(String, i64, i64)> = conn
            .query_row(
                &format!("SELECT holder, expires_at, {SQL_NOW_MS} FROM refresh_leases WHERE account_id = ?1"),
                [account_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let changed = match current {
            None => conn.execute(
                &format!("INSERT OR IGNORE INTO refresh_leases (account_id, holder, expires_at) VALUES (?1, ?2, {SQL_NOW_MS} + ?3)"),
                params![account_id, holder, ttl_ms],
            )?,
            Some((h, expires, now)) if h == holder || expires <= now || holder_dead(&h) => conn.execute(
                // Conditional on the holder we saw, so two takers of a stale lease cannot both win.
                &format!("UPDATE refresh_leases SET holder = ?2, expires_at = {SQL_NOW_MS} + ?3 WHERE account_id = ?1 AND holder = ?4"),
                params![account_id, holder, ttl_ms, h],
            )?,
            Some(_) => 0,
        };
        Ok(changed == 1)
    }

    pub fn release_lease(&self, account_id: &str, holder: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM refresh_leases WHERE account_id = ?1 AND holder = ?2",
            params![account_id, holder],
        )?;
        Ok(())
    }

    /// The holder of the account's unexpired lease, if any (it may still be a dead process:
    /// callers judge that with `refresh::holder_is_dead`).
    pub fn lease_holder(&self, account_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT holder FROM refresh_leases WHERE account_id = ?1 AND expires_at > {SQL_NOW_MS}"),
                [account_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Unexpired leases as (account id, holder).
    pub fn active_leases(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT account_id, holder FROM refresh_leases WHERE expires_at > {SQL_NOW_MS}"
        ))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn intent(&self, account_id: &str) -> Result<Option<Intent>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT account_id, generation, holder, started_at FROM refresh_intents WHERE account_id = ?1",
                [account_id],
                |r| {
                    Ok(Intent {
                        account_id: r.get(0)?,
                        generation: r.get(1)?,
                        holder: r.get(2)?,
                        started_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn intents(&self) -> Result<Vec<Intent>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT account_id, generation, holder, started_at FROM refresh_intents")?;
        let rows = stmt.query_map([], |r| {
            Ok(Intent {
                account_id: r.get(0)?,
                generation: r.get(1)?,
                holder: r.get(2)?,
                started_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records, before the refresh POST, that generation `generation` is being redeemed.
    pub fn write_intent(
        &self,
        account_id: &str,
        generation: i64,
        holder: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO refresh_intents (account_id, generation, holder, started_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(account_id) DO UPDATE SET generation = excluded.generation, holder = excluded.holder, started_at = excluded.started_at",
            params![account_id, generation, holder, now_ms()],
        )?;
        Ok(())
    }

    /// Records the intent and, in the same transaction, renews the account's lease — only if
    /// `holder` still holds it (`lease_ttl_ms` None: the lease is off). False when the lease was
    /// lost meanwhile: then nothing is written and no refresh may be sent. This is the invariant
    /// the engine keeps: no refresh POST without a committed intent row and a held lease.
    pub fn write_intent_under_lease(
        &self,
        account_id: &str,
        generation: i64,
        holder: &str,
        lease_ttl_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let Some(ttl) = lease_ttl_ms {
            let renewed = tx.execute(
                &format!("UPDATE refresh_leases SET expires_at = {SQL_NOW_MS} + ?3 WHERE account_id = ?1 AND holder = ?2"),
                params![account_id, holder, ttl],
            )?;
            if renewed != 1 {
                return Ok(false);
            }
        }
        tx.execute(
            "INSERT INTO refresh_intents (account_id, generation, holder, started_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(account_id) DO UPDATE SET generation = excluded.generation, holder = excluded.holder, started_at = excluded.started_at",
            params![account_id, generation, holder, now_ms()],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Pushes the expiry of a lease `holder` holds; false when it is not (or no longer) theirs.
    /// Called only at due times while a rotation is held in memory — never periodically at idle.
    pub fn renew_lease(
        &self,
        account_id: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            &format!("UPDATE refresh_leases SET expires_at = {SQL_NOW_MS} + ?3 WHERE account_id = ?1 AND holder = ?2"),
            params![account_id, holder, ttl_ms],
        )?;
        Ok(n == 1)
    }

    /// Clears an intent once its outcome is known (an answer was received and handled).
    pub fn clear_intent(&self, account_id: &str, generation: i64) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM refresh_intents WHERE account_id = ?1 AND generation = ?2",
            params![account_id, generation],
        )?;
        Ok(())
    }

    /// Commits a rotation if the account is still at `expected_generation` (compare-and-swap).
    /// The new refresh token is in the same transaction as the generation bump and the event.
    pub fn commit_rotation(
        &self,
        account_id: &str,
        expected_generation: i64,
        rotation: &Rotation,
        event_kind: &str,
        event_detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        let moved = tx.execute(
            "UPDATE accounts SET generation = generation + 1,
                status = CASE WHEN status = 'terminal' THEN 'terminal' WHEN status = 'rate_limited' THEN 'rate_limited' ELSE 'healthy' END,
                last_error = NULL, last_error_at = NULL,
                access_expires_at = ?3, access_issued_at = ?4, last_refresh_at = ?5, updated_at = ?5
             WHERE id = ?1 AND generation = ?2",
            params![
                account_id,
                expected_generation,
                rotation.access_expires_at,
                rotation.access_issued_at,
                now
            ],
        )?;
        if moved == 0 {
            return Ok(false);
        }
        tx.execute(
            "UPDATE account_secrets SET access_token = ?2, id_token = COALESCE(?3, id_token) WHERE account_id = ?1",
            params![account_id, rotation.access_token, rotation.id_token],
        )?;
        if let Some((refresh, fingerprint)) = &rotation.refresh_token {
            tx.execute(
                "UPDATE account_secrets SET refresh_token = ?2,
                    previous_refresh_fingerprint = refresh_fingerprint, refresh_fingerprint = ?3, rotated_at = ?4
                 WHERE account_id = ?1",
                params![account_id, refresh, fingerprint, now],
            )?;
        }
        tx.execute(
            "DELETE FROM refresh_intents WHERE account_id = ?1",
            [account_id],
        )?;
        append(&tx, account_id, event_kind, event_detail)?;
        if crate::failpoint::store_full() {
            return Err(sqlite_full().into()); // rolled back with `tx`
        }
        tx.commit()?;
        Ok(true)
    }

    /// Marks the account terminal with its reason, only if still at `generation`.
    pub fn mark_terminal(
        &self,
        account_id: &str,
        generation: i64,
        reason: &FailureReason,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE accounts SET status = 'terminal', failure_code = ?3, failure_message = ?4,
                failure_http_status = ?5, failure_at = ?6, updated_at = ?6
             WHERE id = ?1 AND generation = ?2",
            params![
                account_id,
                generation,
                reason.code,
                reason.message,
                reason.http_status,
                reason.at
            ],
        )?;
        if n == 1 {
            tx.execute(
                "DELETE FROM refresh_intents WHERE account_id = ?1",
                [account_id],
            )?;
            let detail = match reason.http_status {
                Some(s) => format!("{} (HTTP {s}): {}", reason.code, reason.message),
                None => format!("{}: {}", reason.code, reason.message),
            };
            append(&tx, account_id, "failed", Some(&detail))?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Records a transient problem (a warning), only if still at `generation`.
    pub fn set_last_error(
        &self,
        account_id: &str,
        generation: i64,
        message: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        let n = tx.execute(
            "UPDATE accounts SET last_error = ?3, last_error_at = ?4 WHERE id = ?1 AND generation = ?2",
            params![account_id, generation, message, now],
        )?;
        if n == 1 {
            append(&tx, account_id, "refresh_failed", Some(message))?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// A cheap "did anything change in the file" counter (changes by other connections only).
    pub fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn()
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    pub fn generation(&self, account_id: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT generation FROM accounts WHERE id = ?1",
                [account_id],
                |r| r.get(0),
            )
            .optional()?)
    }
}

/// The error SQLite itself returns when the disk (or `max_page_count`) is full: what the
/// `store_full_while` failpoint (a test-only fault injector) makes a rotation's commit meet.
fn sqlite_full() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
        Some("database or disk is full".into()),
    )
}
