//! What the refresh broker and shared-grant detection read and write: refresh-token fingerprints
//! (current and immediately previous generation, never a token) and the shared-grant flag.

use super::events::append;
use super::{Store, StoreError};
use crate::account::{now_ms, UnixMs};
use rusqlite::params;

/// One account's refresh-token fingerprints, read in one statement so the generation, the
/// current fingerprint and the previous one belong together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerprintRow {
    pub account_id: String,
    pub chatgpt_account_id: String,
    pub chatgpt_user_id: String,
    pub generation: i64,
    pub refresh_fingerprint: String,
    /// The refresh token this one replaced (a rotation or a re-import), if any.
    pub previous_refresh_fingerprint: Option<String>,
    /// When the current refresh token replaced the previous one.
    pub rotated_at: Option<UnixMs>,
}

impl Store {
    /// Every account's fingerprints. Callers compare in constant time in memory: a SQL `=` on the
    /// presented token's fingerprint would leak, through timing, how much of it matched.
    pub fn refresh_fingerprints(&self) -> Result<Vec<FingerprintRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT a.id, a.chatgpt_account_id, a.chatgpt_user_id, a.generation, s.refresh_fingerprint,
                    s.previous_refresh_fingerprint, s.rotated_at
             FROM accounts a JOIN account_secrets s ON s.account_id = a.id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(FingerprintRow {
                account_id: r.get(0)?,
                chatgpt_account_id: r.get(1)?,
                chatgpt_user_id: r.get(2)?,
                generation: r.get(3)?,
                refresh_fingerprint: r.get(4)?,
                previous_refresh_fingerprint: r.get(5)?,
                rotated_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every (account id, fingerprint) of a refresh token an account held before its current one.
    pub fn retired_fingerprints(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT account_id, fingerprint FROM retired_refresh_fingerprints")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets (`Some(where)`) or clears (`None`) the shared-grant flag; an event records each
    /// change (none when nothing changed). Returns whether it changed.
    pub fn set_shared_grant(
        &self,
        account_id: &str,
        place: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE accounts SET shared_grant_where = ?2, updated_at = ?3
             WHERE id = ?1 AND shared_grant_where IS NOT ?2",
            params![account_id, place, now_ms()],
        )?;
        if n == 1 {
            match place {
                Some(p) => append(&tx, account_id, "shared_grant_detected", Some(p))?,
                None => append(&tx, account_id, "shared_grant_cleared", None)?,
            }
        }
        tx.commit()?;
        Ok(n == 1)
    }
}
