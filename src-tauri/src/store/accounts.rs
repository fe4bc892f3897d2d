//! Account rows and their sealed secrets.

use super::events::append;
use super::{Store, StoreError};
use crate::account::{now_ms, Account, FailureReason, LastError, Status, UnixMs};
use rusqlite::{params, OptionalExtension, Row};

/// Tokens already sealed by the vault, plus the refresh token's fingerprint (never the token).
pub struct SealedTokens {
    pub access_token: Vec<u8>,
    pub id_token: Vec<u8>,
    pub refresh_token: Vec<u8>,
    pub refresh_fingerprint: String,
    pub access_expires_at: Option<UnixMs>,
    pub access_issued_at: Option<UnixMs>,
}

/// The sealed secrets of one account as read back, with the generation they belong to.
pub struct StoredSecrets {
    pub generation: i64,
    pub access_token: Vec<u8>,
    pub id_token: Vec<u8>,
    pub refresh_token: Vec<u8>,
    pub refresh_fingerprint: String,
}

pub struct NewAccount {
    pub id: String,
    pub label: String,
    pub email: Option<String>,
    pub chatgpt_account_id: String,
    pub chatgpt_user_id: String,
    pub plan: Option<String>,
    pub fedramp: bool,
    pub last_refresh_at: Option<UnixMs>,
}

pub(super) const ACCOUNT_COLUMNS: &str = "id, label, email, chatgpt_account_id, chatgpt_user_id, plan, fedramp, status,
    failure_code, failure_message, failure_http_status, failure_at, last_error, last_error_at,
    access_expires_at, last_refresh_at, rate_limited_until, generation, disabled, created_at, updated_at,
    access_issued_at, usage_json, shared_grant_where,
    EXISTS(SELECT 1 FROM broker_holders h WHERE h.account_id = accounts.id
           AND (h.auth_path IS NOT NULL OR h.seen_at IS NOT NULL)),
    (SELECT MAX(h.seen_at) FROM broker_holders h WHERE h.account_id = accounts.id), restored_at";

pub(super) fn account_from_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    let status: String = r.get(7)?;
    let failure_code: Option<String> = r.get(8)?;
    let last_error: Option<String> = r.get(12)?;
    Ok(Account {
        id: r.get(0)?,
        label: r.get(1)?,
        email: r.get(2)?,
        chatgpt_account_id: r.get(3)?,
        chatgpt_user_id: r.get(4)?,
        plan: r.get(5)?,
        fedramp: r.get(6)?,
        // An unknown status (written by a newer build) reads as terminal: never used by mistake.
        status: Status::parse(&status).unwrap_or(Status::Terminal),
        failure: match failure_code {
            Some(code) => Some(FailureReason {
                code,
                message: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                http_status: r.get(10)?,
                at: r.get::<_, Option<i64>>(11)?.unwrap_or(0),
            }),
            None => None,
        },
        last_error: match last_error {
            Some(message) => Some(LastError {
                message,
                at: r.get::<_, Option<i64>>(13)?.unwrap_or(0),
            }),
            None => None,
        },
        access_expires_at: r.get(14)?,
        last_refresh_at: r.get(15)?,
        rate_limited_until: r.get(16)?,
        generation: r.get(17)?,
        disabled: r.get(18)?,
        created_at: r.get(19)?,
        updated_at: r.get(20)?,
        access_issued_at: r.get(21)?,
        usage_json: r.get(22)?,
        shared_grant_where: r.get(23)?,
        brokered: r.get(24)?,
        broker_holder_seen_at: r.get(25)?,
        restored_at: r.get(26)?,
    })
}

impl Store {
    pub fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY created_at, label"
        ))?;
        let rows = stmt.query_map([], account_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
                [id],
                account_from_row,
            )
            .optional()?)
    }

    /// Resolves what a user typed: an id, a label, or an email (if it names one account).
    pub fn find_account(&self, reference: &str) -> Result<Account, StoreError> {
        let conn = self.conn();
        for column in ["id", "label"] {
            let found = conn
                .query_row(
                    &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {column} = ?1"),
                    [reference],
                    account_from_row,
                )
                .optional()?;
            if let Some(a) = found {
                return Ok(a);
            }
        }
        let mut stmt = conn.prepare(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = ?1 COLLATE NOCASE"
        ))?;
        let mut matches: Vec<Account> = stmt
            .query_map([reference], account_from_row)?
            .collect::<Result<_, _>>()?;
        match matches.len() {
            0 => Err(StoreError::AccountNotFound(reference.to_string())),
            1 => Ok(matches.remove(0)),
            _ => Err(StoreError::Ambiguous(reference.to_string())),
        }
    }

    pub fn find_by_identity(
        &self,
        chatgpt_account_id: &str,
        chatgpt_user_id: &str,
    ) -> Result<Option<Account>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE chatgpt_account_id = ?1 AND chatgpt_user_id = ?2"
                ),
                [chatgpt_account_id, chatgpt_user_id],
                account_from_row,
            )
            .optional()?)
    }

    pub fn label_exists(&self, label: &str) -> Result<bool, StoreError> {
        Ok(self.conn().query_row(
            "SELECT EXISTS(SELECT 1 FROM accounts WHERE label = ?1)",
            [label],
            |r| r.get(0),
        )?)
    }

    /// Inserts an account and its secrets in one transaction, with an `imported`-style event.
    pub fn insert_account(
        &self,
        new: &NewAccount,
        tokens: &SealedTokens,
        event_kind: &str,
        event_detail: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        let inserted = tx.execute(
            "INSERT INTO accounts (id, label, email, chatgpt_account_id, chatgpt_user_id, plan, fedramp,
                status, access_expires_at, last_refresh_at, generation, created_at, updated_at, access_issued_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'healthy', ?8, ?9, 0, ?10, ?10, ?11)",
            params![
                new.id,
                new.label,
                new.email,
                new.chatgpt_account_id,
                new.chatgpt_user_id,
                new.plan,
                new.fedramp,
                tokens.access_expires_at,
                new.last_refresh_at,
                now,
                tokens.access_issued_at
            ],
        );
        if let Err(e) = inserted {
            return Err(match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation)
                    if e.to_string().contains("accounts.label") =>
                {
                    StoreError::LabelTaken(new.label.clone())
                }
                _ => e.into(),
            });
        }
        tx.execute(
            "INSERT INTO account_secrets (account_id, access_token, id_token, refresh_token, refresh_fingerprint)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                new.id,
                tokens.access_token,
                tokens.id_token,
                tokens.refresh_token,
                tokens.refresh_fingerprint
            ],
        )?;
        append(&tx, &new.id, event_kind, event_detail)?;
        tx.commit()?;
        Ok(())
    }

    pub fn secrets(&self, account_id: &str) -> Result<Option<StoredSecrets>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT a.generation, s.access_token, s.id_token, s.refresh_token, s.refresh_fingerprint
                 FROM accounts a JOIN account_secrets s ON s.account_id = a.id WHERE a.id = ?1",
                [account_id],
                |r| {
                    Ok(StoredSecrets {
                        generation: r.get(0)?,
                        access_token: r.get(1)?,
                        id_token: r.get(2)?,
                        refresh_token: r.get(3)?,
                        refresh_fingerprint: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Replaces the whole token set (an import or a new sign-in of a known account) if the row
    /// is still at `expected_generation`; the account comes back to life (failure cleared). The
    /// claims that come with the new id_token (email, plan, fedramp) are updated with it: a
    /// missing email or plan keeps the old one, `fedramp` is always the new grant's.
    /// Returns false when another writer moved the generation first.
    #[allow(
        clippy::too_many_arguments,
        reason = "one grant's columns, written in one statement"
    )]
    pub fn replace_grant(
        &self,
        account_id: &str,
        expected_generation: i64,
        tokens: &SealedTokens,
        email: Option<&str>,
        plan: Option<&str>,
        fedramp: bool,
        last_refresh_at: Option<UnixMs>,
        event_kind: &str,
        event_detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let grant = Grant {
            tokens,
            email,
            plan,
            fedramp,
            last_refresh_at,
        };
        if !replace_grant_in(&tx, account_id, expected_generation, &grant)? {
            return Ok(false);
        }
        append(&tx, account_id, event_kind, event_detail)?;
        tx.commit()?;
        Ok(true)
    }

    pub fn append_event(
        &self,
        account_id: &str,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        append(&self.conn(), account_id, kind, detail)?;
        Ok(())
    }

    pub fn set_label(&self, account_id: &str, label: &str) -> Result<(), StoreError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE accounts SET label = ?2, updated_at = ?3 WHERE id = ?1",
                params![account_id, label, now_ms()],
            )
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation) => {
                    StoreError::LabelTaken(label.to_string())
                }
                _ => e.into(),
            })?;
        if changed == 0 {
            return Err(StoreError::AccountNotFound(account_id.to_string()));
        }
        Ok(())
    }

    /// Renames an account; the label and its `renamed` event (`detail`) commit together.
    pub fn rename_account(
        &self,
        account_id: &str,
        label: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = tx
            .execute(
                "UPDATE accounts SET label = ?2, updated_at = ?3 WHERE id = ?1",
                params![account_id, label, now_ms()],
            )
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation) => {
                    StoreError::LabelTaken(label.to_string())
                }
                _ => e.into(),
            })?;
        if changed == 0 {
            return Err(StoreError::AccountNotFound(account_id.to_string()));
        }
        append(&tx, account_id, "renamed", Some(detail))?;
        tx.commit()?;
        Ok(())
    }

    /// Turns an account off or on, with its `disabled` / `enabled` event, in one transaction.
    pub fn set_disabled(&self, account_id: &str, disabled: bool) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let changed = tx.execute(
            "UPDATE accounts SET disabled = ?2, updated_at = ?3 WHERE id = ?1",
            params![account_id, disabled, now_ms()],
        )?;
        if changed == 0 {
            return Err(StoreError::AccountNotFound(account_id.to_string()));
        }
        let kind = if disabled { "disabled" } else { "enabled" };
        append(&tx, account_id, kind, None)?;
        tx.commit()?;
        Ok(())
    }

    /// Removes an account and its secrets; the event history stays, ending in `removed`.
    pub fn remove_account(&self, account_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute("DELETE FROM accounts WHERE id = ?1", [account_id])?;
        if n == 0 {
            return Err(StoreError::AccountNotFound(account_id.to_string()));
        }
        append(&tx, account_id, "removed", None)?;
        tx.commit()?;
        Ok(())
    }

    /// Records a usage limit until `until` (from a 429), unless the account is dead or disabled.
    pub fn set_rate_limited(&self, account_id: &str, until: UnixMs) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE accounts SET status = 'rate_limited', rate_limited_until = ?2, updated_at = ?3
             WHERE id = ?1 AND status IN ('healthy', 'rate_limited')
               AND (rate_limited_until IS NULL OR rate_limited_until <> ?2)",
            params![account_id, until, now_ms()],
        )?;
        if n == 1 {
            append(
                &tx,
                account_id,
                "rate_limited",
                Some(&format!("until {}", crate::account::ms_to_rfc3339(until))),
            )?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Lifts a usage limit early (the window reset before its announced time).
    pub fn clear_rate_limit(&self, account_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE accounts SET status = 'healthy', rate_limited_until = NULL, updated_at = ?2
             WHERE id = ?1 AND status = 'rate_limited'",
            params![account_id, now_ms()],
        )?;
        if n == 1 {
            append(&tx, account_id, "rate_limit_lifted", None)?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Saves the last usage snapshot (JSON). Touches nothing else.
    pub fn set_usage_json(&self, account_id: &str, json: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE accounts SET usage_json = ?2 WHERE id = ?1",
            params![account_id, json],
        )?;
        Ok(())
    }
}

/// A whole token set and the claims that come with it (`Store::replace_grant`).
pub(super) struct Grant<'a> {
    pub tokens: &'a SealedTokens,
    pub email: Option<&'a str>,
    pub plan: Option<&'a str>,
    pub fedramp: bool,
    pub last_refresh_at: Option<UnixMs>,
}

/// `replace_grant`'s writes inside the caller's transaction (no event, no commit): false, and
/// nothing written, when the row is no longer at `expected_generation`.
pub(super) fn replace_grant_in(
    tx: &rusqlite::Transaction<'_>,
    account_id: &str,
    expected_generation: i64,
    g: &Grant<'_>,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let moved = tx.execute(
        "UPDATE accounts SET generation = generation + 1, status = 'healthy',
            failure_code = NULL, failure_message = NULL, failure_http_status = NULL, failure_at = NULL,
            last_error = NULL, last_error_at = NULL, rate_limited_until = NULL,
            email = COALESCE(?3, email), plan = COALESCE(?4, plan), fedramp = ?9,
            access_expires_at = ?5, last_refresh_at = ?6, updated_at = ?7, access_issued_at = ?8
         WHERE id = ?1 AND generation = ?2",
        params![
            account_id,
            expected_generation,
            g.email,
            g.plan,
            g.tokens.access_expires_at,
            g.last_refresh_at,
            now,
            g.tokens.access_issued_at,
            g.fedramp
        ],
    )?;
    if moved == 0 {
        return Ok(false);
    }
    tx.execute(
        "UPDATE account_secrets SET access_token = ?2, id_token = ?3, refresh_token = ?4,
            previous_refresh_fingerprint = refresh_fingerprint, refresh_fingerprint = ?5, rotated_at = ?6
         WHERE account_id = ?1",
        params![
            account_id,
            g.tokens.access_token,
            g.tokens.id_token,
            g.tokens.refresh_token,
            g.tokens.refresh_fingerprint,
            now
        ],
    )?;
    tx.execute(
        "DELETE FROM refresh_intents WHERE account_id = ?1",
        [account_id],
    )?;
    Ok(true)
}
