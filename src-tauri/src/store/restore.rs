//! What an encrypted backup carries out of the store, and what a restore puts back (README.md §
//! Backup and restore). Tokens stay sealed at this layer: the use case opens them with this
//! store's key for a backup and seals them with the target store's key on a restore. Broker
//! digests are keyed by the data key too, so they travel as "which of the account's tokens this
//! holder holds" and are computed again under the target's key.

use super::accounts::{account_from_row, replace_grant_in, Grant, ACCOUNT_COLUMNS};
use super::events::append;
use super::{DigestOrigin, NewAccount, SealedTokens, Store, StoreError, StoredSecrets};
use crate::account::{now_ms, Account, FailureReason, Status, UnixMs};
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

/// One holder of a sign-in outside the vault, as the broker knows it.
pub struct HolderRow {
    pub auth_path: Option<String>,
    pub token_digest: Vec<u8>,
    pub seen_at: Option<UnixMs>,
}

/// One account with everything a backup carries of it, read in one transaction.
pub struct ExportedAccount {
    pub account: Account,
    pub secrets: StoredSecrets,
    /// The sealed refresh token the current one replaced, if any.
    pub previous_refresh_token: Option<Vec<u8>>,
    /// Its history, oldest first.
    pub events: Vec<super::Event>,
    pub holders: Vec<HolderRow>,
    /// What is known of where each token digest came from.
    pub origins: Vec<(Vec<u8>, DigestOrigin)>,
}

/// The whole store as a backup sees it.
pub struct StoreExport {
    pub accounts: Vec<ExportedAccount>,
    pub settings: Vec<(String, String)>,
}

/// A holder to record on a restored account: its digest is already the target store's.
pub struct RestoredHolder {
    pub auth_path: Option<String>,
    pub token_digest: Vec<u8>,
    pub seen_at: Option<UnixMs>,
}

/// What the broker must know of a restored account: its holders and its tokens' origins.
pub struct RestoredBroker<'a> {
    pub holders: &'a [RestoredHolder],
    pub origins: &'a [(Vec<u8>, DigestOrigin)],
}

/// An account not held before, as a restore inserts it: paused, with its carried history.
pub struct RestoredAccount<'a> {
    pub new: &'a NewAccount,
    pub tokens: &'a SealedTokens,
    pub created_at: UnixMs,
    /// A terminal failure the backup carried: the account still needs a sign-in.
    pub failure: Option<&'a FailureReason>,
    /// Its history (at, kind, detail), oldest first.
    pub events: &'a [(UnixMs, String, Option<String>)],
    pub broker: RestoredBroker<'a>,
    /// The `restored` event's detail.
    pub detail: &'a str,
}

/// The newer grant a backup brings for a held account (`Store::restore_over`).
pub struct RestoredGrant<'a> {
    pub tokens: &'a SealedTokens,
    pub email: Option<&'a str>,
    pub plan: Option<&'a str>,
    pub fedramp: bool,
    pub last_refresh_at: Option<UnixMs>,
    pub broker: RestoredBroker<'a>,
    pub detail: &'a str,
}

impl Store {
    /// Every account with its secrets, history and broker memory, and every setting, from one
    /// read transaction: a backup taken while another process rotates is one consistent moment.
    pub fn export(&self) -> Result<StoreExport, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let accounts: Vec<Account> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY created_at, label"
            ))?;
            let rows = stmt.query_map([], account_from_row)?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(accounts.len());
        for account in accounts {
            out.push(export_one(&tx, account)?);
        }
        let settings = super::settings::all(&tx)?;
        tx.commit()?;
        Ok(StoreExport {
            accounts: out,
            settings,
        })
    }

    /// Inserts a restored account, paused (`disabled` + `restored_at`), with its history, its
    /// holders and a `restored` event, in one transaction. A taken label is `LabelTaken`.
    pub fn insert_restored(&self, r: &RestoredAccount<'_>) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        let (status, f) = match r.failure {
            Some(f) => (Status::Terminal, Some(f)),
            None => (Status::Healthy, None),
        };
        let n = &r.new;
        tx.execute(
            "INSERT INTO accounts (id, label, email, chatgpt_account_id, chatgpt_user_id, plan, fedramp,
                status, failure_code, failure_message, failure_http_status, failure_at,
                access_expires_at, access_issued_at, last_refresh_at, generation, disabled,
                created_at, updated_at, restored_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 0, 1, ?16, ?17, ?17)",
            params![
                n.id,
                n.label,
                n.email,
                n.chatgpt_account_id,
                n.chatgpt_user_id,
                n.plan,
                n.fedramp,
                status.as_str(),
                f.map(|f| &f.code),
                f.map(|f| &f.message),
                f.and_then(|f| f.http_status),
                f.map(|f| f.at),
                r.tokens.access_expires_at,
                r.tokens.access_issued_at,
                n.last_refresh_at,
                r.created_at,
                now
            ],
        )
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation)
                if e.to_string().contains("accounts.label") =>
            {
                StoreError::LabelTaken(n.label.clone())
            }
            _ => e.into(),
        })?;
        tx.execute(
            "INSERT INTO account_secrets (account_id, access_token, id_token, refresh_token, refresh_fingerprint)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                n.id,
                r.tokens.access_token,
                r.tokens.id_token,
                r.tokens.refresh_token,
                r.tokens.refresh_fingerprint
            ],
        )?;
        {
            let mut stmt = tx.prepare(
                "INSERT INTO account_events (account_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (at, kind, detail) in r.events {
                stmt.execute(params![n.id, at, kind, detail])?;
            }
        }
        put_broker(&tx, &n.id, &r.broker, now)?;
        append(&tx, &n.id, "restored", Some(r.detail))?;
        tx.commit()?;
        Ok(())
    }

    /// Puts a backup's newer grant on a held account still at `expected_generation`, paused, in
    /// one transaction: no refresher of this store can ever send the restored refresh token
    /// before the user confirms. False, and nothing written, when the generation moved (a
    /// refresh of ours committed first: ours is then the newer grant).
    pub fn restore_over(
        &self,
        account_id: &str,
        expected_generation: i64,
        g: &RestoredGrant<'_>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let grant = Grant {
            tokens: g.tokens,
            email: g.email,
            plan: g.plan,
            fedramp: g.fedramp,
            last_refresh_at: g.last_refresh_at,
        };
        if !replace_grant_in(&tx, account_id, expected_generation, &grant)? {
            return Ok(false);
        }
        let now = now_ms();
        tx.execute(
            "UPDATE accounts SET disabled = 1, restored_at = ?2 WHERE id = ?1",
            params![account_id, now],
        )?;
        put_broker(&tx, account_id, &g.broker, now)?;
        append(&tx, account_id, "restored", Some(g.detail))?;
        tx.commit()?;
        Ok(true)
    }

    /// The user says the other copy of a restored grant is retired: the account may refresh and
    /// serve. False when it was not (or no longer) waiting for that.
    pub fn confirm_restored(&self, account_id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE accounts SET restored_at = NULL, disabled = 0, updated_at = ?2
             WHERE id = ?1 AND restored_at IS NOT NULL",
            params![account_id, now_ms()],
        )?;
        if n == 1 {
            append(
                &tx,
                account_id,
                "restore_confirmed",
                Some("the user confirmed the other copy is retired"),
            )?;
        }
        tx.commit()?;
        Ok(n == 1)
    }
}

fn export_one(tx: &Transaction<'_>, account: Account) -> Result<ExportedAccount, StoreError> {
    let id = account.id.clone();
    let (secrets, previous_refresh_token) = tx.query_row(
        "SELECT access_token, id_token, refresh_token, refresh_fingerprint, previous_refresh_token
         FROM account_secrets WHERE account_id = ?1",
        [&id],
        |r| {
            Ok((
                StoredSecrets {
                    generation: account.generation,
                    access_token: r.get(0)?,
                    id_token: r.get(1)?,
                    refresh_token: r.get(2)?,
                    refresh_fingerprint: r.get(3)?,
                },
                r.get::<_, Option<Vec<u8>>>(4)?,
            ))
        },
    )?;
    let events = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, account_id, at, kind, detail FROM account_events WHERE account_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([&id], super::events::event_from_row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let holders = {
        let mut stmt = tx.prepare_cached(
            "SELECT auth_path, token_digest, seen_at FROM broker_holders WHERE account_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([&id], |r| {
            Ok(HolderRow {
                auth_path: r.get(0)?,
                token_digest: r.get(1)?,
                seen_at: r.get(2)?,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let origins = {
        let mut stmt = tx.prepare_cached(
            "SELECT digest, origin FROM refresh_token_digests WHERE account_id = ?1",
        )?;
        let rows = stmt.query_map([&id], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })?;
        rows.filter_map(|row| match row {
            Ok((d, o)) => DigestOrigin::parse(&o).map(|o| Ok((d, o))),
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<Vec<_>, _>>()?
    };
    Ok(ExportedAccount {
        account,
        secrets,
        previous_refresh_token,
        events,
        holders,
        origins,
    })
}

/// Records a restored account's holders and origins. A holder of a path already known keeps
/// its row and takes the backup's token (the backup is the newer grant); a token-only holder
/// is added unless its token is known; an origin already known stays.
fn put_broker(
    tx: &Transaction<'_>,
    account_id: &str,
    b: &RestoredBroker<'_>,
    now: UnixMs,
) -> Result<(), StoreError> {
    for (digest, origin) in b.origins {
        tx.execute(
            "INSERT OR IGNORE INTO refresh_token_digests (account_id, digest, origin, at) VALUES (?1, ?2, ?3, ?4)",
            params![account_id, digest, origin.as_str(), now],
        )?;
    }
    for h in b.holders {
        match &h.auth_path {
            Some(path) => {
                tx.execute(
                    "INSERT INTO broker_holders (account_id, auth_path, token_digest, created_at, updated_at, seen_at)
                     VALUES (?1, ?2, ?3, ?4, ?4, ?5)
                     ON CONFLICT(account_id, auth_path) WHERE auth_path IS NOT NULL
                     DO UPDATE SET token_digest = excluded.token_digest, updated_at = excluded.updated_at",
                    params![account_id, path, h.token_digest, now, h.seen_at],
                )?;
            }
            None => {
                let known = tx
                    .query_row(
                        "SELECT 1 FROM broker_holders WHERE account_id = ?1 AND token_digest = ?2",
                        params![account_id, h.token_digest],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                if !known {
                    tx.execute(
                        "INSERT INTO broker_holders (account_id, auth_path, token_digest, created_at, updated_at, seen_at)
                         VALUES (?1, NULL, ?2, ?3, ?3, ?4)",
                        params![account_id, h.token_digest, now, h.seen_at],
                    )?;
                }
            }
        }
    }
    Ok(())
}
