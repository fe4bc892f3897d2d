//! What the refresh broker and shared-grant detection read and write: refresh-token fingerprints
//! (current and immediately previous generation, never a token) and the shared-grant flag.

use super::events::append;
use super::{Store, StoreError};
use crate::account::{now_ms, UnixMs};
use rusqlite::{params, OptionalExtension};

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

/// Where a refresh token of a held chain came from, as far as the broker knows (by digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestOrigin {
    /// A rotation of ours that nobody outside the vault was handed (yet).
    Minted,
    /// Imported from an auth.json (or pasted) into a holder.
    Imported,
    /// Handed to a caller by the broker.
    Handed,
    /// Written back into a holder's auth.json.
    Written,
    /// The token of an auth.json moved aside (`--codex-cli detach`): its backup is not a holder.
    Detached,
}

impl DigestOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestOrigin::Minted => "minted",
            DigestOrigin::Imported => "imported",
            DigestOrigin::Handed => "handed",
            DigestOrigin::Written => "written",
            DigestOrigin::Detached => "detached",
        }
    }

    pub fn parse(s: &str) -> Option<DigestOrigin> {
        Some(match s {
            "minted" => DigestOrigin::Minted,
            "imported" => DigestOrigin::Imported,
            "handed" => DigestOrigin::Handed,
            "written" => DigestOrigin::Written,
            "detached" => DigestOrigin::Detached,
            _ => return None,
        })
    }

    /// Whether a token of this origin is known to be held outside the vault (and not detached).
    pub fn is_held_outside(self) -> bool {
        matches!(
            self,
            DigestOrigin::Imported | DigestOrigin::Handed | DigestOrigin::Written
        )
    }
}

/// One account as the broker decides on a presented token: read in the same transaction as the
/// rest of a [`BrokerSnapshot`], so the current token, the previous one and the generation belong
/// together.
#[derive(Debug, Clone)]
pub struct BrokerAccount {
    pub account_id: String,
    pub generation: i64,
    pub terminal: bool,
    /// Sealed (the broker opens it to compare in full).
    pub refresh_token: Vec<u8>,
    /// Sealed: the refresh token the current one replaced (copied by a trigger at each change).
    pub previous_refresh_token: Option<Vec<u8>>,
    /// Legacy (before keyed digests): only ever used to refuse, never to honour.
    pub previous_refresh_fingerprint: Option<String>,
    pub rotated_at: Option<UnixMs>,
}

/// Everything the broker needs to decide on one presented token, in one consistent read.
#[derive(Debug, Clone, Default)]
pub struct BrokerSnapshot {
    pub accounts: Vec<BrokerAccount>,
    /// Accounts one of whose holders holds the presented token as its newest.
    pub holder_of: Vec<String>,
    /// What is known of the presented token's origin, per account.
    pub origins: Vec<(String, DigestOrigin)>,
    /// Every legacy retired fingerprint, (account id, fingerprint).
    pub retired: Vec<(String, String)>,
}

/// A holder with a Codex auth.json we write rotations back into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathHolder {
    pub id: i64,
    pub auth_path: String,
    pub token_digest: Vec<u8>,
}

/// The current token set of one account, read in one statement (one generation).
pub struct CurrentTokens {
    pub generation: i64,
    pub access_expires_at: Option<UnixMs>,
    pub last_refresh_at: Option<UnixMs>,
    pub access_token: Vec<u8>,
    pub id_token: Vec<u8>,
    pub refresh_token: Vec<u8>,
}

/// Holders known only by the tokens they present (no file): the most recently seen are kept.
const MAX_TOKEN_ONLY_HOLDERS: i64 = 8;
/// Digest records older than this are pruned (as retired fingerprints are).
const DIGEST_RETENTION_MS: i64 = 90 * 86_400_000;

fn upsert_origin(
    tx: &rusqlite::Connection,
    account_id: &str,
    digest: &[u8],
    origin: DigestOrigin,
    now: UnixMs,
) -> rusqlite::Result<()> {
    // A detached token stays detached unless a holder is registered for it again (import).
    tx.execute(
        "INSERT INTO refresh_token_digests (account_id, digest, origin, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(account_id, digest) DO UPDATE SET
            origin = CASE WHEN origin = 'detached' THEN origin ELSE excluded.origin END,
            at = excluded.at",
        params![account_id, digest, origin.as_str(), now],
    )?;
    tx.execute(
        "DELETE FROM refresh_token_digests WHERE account_id = ?1 AND at < ?2",
        params![account_id, now - DIGEST_RETENTION_MS],
    )?;
    Ok(())
}

impl Store {
    /// The broker's one consistent read for a presented token (by its keyed digest): every account's current and previous token, which holders hold it, what is
    /// known of where it came from, and the legacy retired fingerprints.
    pub fn broker_snapshot(&self, digest: &[u8]) -> Result<BrokerSnapshot, StoreError> {
        let mut conn = self.conn();
        // One read transaction: in WAL mode every statement below sees the same snapshot, so a
        // rotation committing meanwhile is either wholly in it or wholly not.
        let tx = conn.transaction()?;
        let mut snap = BrokerSnapshot::default();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT a.id, a.generation, a.status, s.refresh_token, s.previous_refresh_token,
                        s.previous_refresh_fingerprint, s.rotated_at
                 FROM accounts a JOIN account_secrets s ON s.account_id = a.id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(BrokerAccount {
                    account_id: r.get(0)?,
                    generation: r.get(1)?,
                    terminal: r.get::<_, String>(2)? == "terminal",
                    refresh_token: r.get(3)?,
                    previous_refresh_token: r.get(4)?,
                    previous_refresh_fingerprint: r.get(5)?,
                    rotated_at: r.get(6)?,
                })
            })?;
            snap.accounts = rows.collect::<Result<_, _>>()?;
            let mut stmt = tx.prepare_cached(
                "SELECT DISTINCT account_id FROM broker_holders WHERE token_digest = ?1",
            )?;
            snap.holder_of = stmt
                .query_map([digest], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut stmt = tx.prepare_cached(
                "SELECT account_id, origin FROM refresh_token_digests WHERE digest = ?1",
            )?;
            let rows = stmt.query_map([digest], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (account, origin) = row?;
                // An origin written by a newer build reads as "minted": never honoured by mistake.
                snap.origins.push((
                    account,
                    DigestOrigin::parse(&origin).unwrap_or(DigestOrigin::Minted),
                ));
            }
            let mut stmt = tx.prepare_cached(
                "SELECT account_id, fingerprint FROM retired_refresh_fingerprints",
            )?;
            snap.retired = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
        }
        tx.commit()?;
        Ok(snap)
    }

    /// The account's current tokens, in one statement.
    pub fn current_tokens(&self, account_id: &str) -> Result<Option<CurrentTokens>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT a.generation, a.access_expires_at, a.last_refresh_at, s.access_token, s.id_token, s.refresh_token
                 FROM accounts a JOIN account_secrets s ON s.account_id = a.id WHERE a.id = ?1",
                [account_id],
                |r| {
                    Ok(CurrentTokens {
                        generation: r.get(0)?,
                        access_expires_at: r.get(1)?,
                        last_refresh_at: r.get(2)?,
                        access_token: r.get(3)?,
                        id_token: r.get(4)?,
                        refresh_token: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    /// After the broker handed `handed` to a caller that presented `presented`: the token is
    /// known to be held outside; each holder that held `presented` as its newest now holds
    /// `handed`. A caller no holder was known for becomes one (known only by its tokens), so it
    /// is honoured when it comes back after we rotated again. One transaction.
    pub fn record_handed(
        &self,
        account_id: &str,
        presented: &[u8],
        handed: &[u8],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        upsert_origin(&tx, account_id, handed, DigestOrigin::Handed, now)?;
        let moved = tx.execute(
            "UPDATE broker_holders SET token_digest = ?3, updated_at = ?4, seen_at = ?4
             WHERE account_id = ?1 AND token_digest = ?2",
            params![account_id, presented, handed, now],
        )?;
        if moved == 0 {
            let seen = tx.execute(
                "UPDATE broker_holders SET seen_at = ?3 WHERE account_id = ?1 AND token_digest = ?2",
                params![account_id, handed, now],
            )?;
            if seen == 0 {
                tx.execute(
                    "INSERT INTO broker_holders (account_id, auth_path, token_digest, created_at, updated_at, seen_at)
                     VALUES (?1, NULL, ?2, ?3, ?3, ?3)",
                    params![account_id, handed, now],
                )?;
                tx.execute(
                    "DELETE FROM broker_holders WHERE account_id = ?1 AND auth_path IS NULL AND id NOT IN (
                        SELECT id FROM broker_holders WHERE account_id = ?1 AND auth_path IS NULL
                        ORDER BY COALESCE(seen_at, created_at) DESC, id DESC LIMIT ?2)",
                    params![account_id, MAX_TOKEN_ONLY_HOLDERS],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A rotation of ours committed `digest`; nobody outside holds it until it is handed or
    /// written (never downgrades a token already known to be held outside).
    pub fn mark_minted(&self, account_id: &str, digest: &[u8]) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO refresh_token_digests (account_id, digest, origin, at) VALUES (?1, ?2, 'minted', ?3)",
            params![account_id, digest, now_ms()],
        )?;
        Ok(())
    }

    /// An import registered a holder of `digest`: the auth.json at `auth_path` (we write
    /// rotations back into it), or, without a path, a holder known only by its tokens.
    pub fn register_holder(
        &self,
        account_id: &str,
        auth_path: Option<&str>,
        digest: &[u8],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        // Registering again is the user's word that the token is held (again): not detached.
        tx.execute(
            "DELETE FROM refresh_token_digests WHERE account_id = ?1 AND digest = ?2 AND origin = 'detached'",
            params![account_id, digest],
        )?;
        upsert_origin(&tx, account_id, digest, DigestOrigin::Imported, now)?;
        match auth_path {
            Some(path) => {
                tx.execute(
                    "INSERT INTO broker_holders (account_id, auth_path, token_digest, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?4)
                     ON CONFLICT(account_id, auth_path) WHERE auth_path IS NOT NULL
                     DO UPDATE SET token_digest = excluded.token_digest, updated_at = excluded.updated_at",
                    params![account_id, path, digest, now],
                )?;
            }
            None => {
                let known: bool = tx.query_row(
                    "SELECT EXISTS(SELECT 1 FROM broker_holders WHERE account_id = ?1 AND token_digest = ?2)",
                    params![account_id, digest],
                    |r| r.get(0),
                )?;
                if !known {
                    tx.execute(
                        "INSERT INTO broker_holders (account_id, auth_path, token_digest, created_at, updated_at)
                         VALUES (?1, NULL, ?2, ?3, ?3)",
                        params![account_id, digest, now],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The auth.json at `auth_path` was moved aside holding `digest`: its backup holds a token
    /// the broker must never honour, and that file is nobody's holder any more.
    pub fn mark_detached(
        &self,
        account_id: &str,
        auth_path: &str,
        digest: &[u8],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO refresh_token_digests (account_id, digest, origin, at) VALUES (?1, ?2, 'detached', ?3)
             ON CONFLICT(account_id, digest) DO UPDATE SET origin = 'detached', at = excluded.at",
            params![account_id, digest, now],
        )?;
        tx.execute(
            "DELETE FROM broker_holders WHERE account_id = ?1 AND (auth_path = ?2 OR token_digest = ?3)",
            params![account_id, auth_path, digest],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The account's holders that have an auth.json (write-back targets).
    pub fn path_holders(&self, account_id: &str) -> Result<Vec<PathHolder>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, auth_path, token_digest FROM broker_holders
             WHERE account_id = ?1 AND auth_path IS NOT NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([account_id], |r| {
            Ok(PathHolder {
                id: r.get(0)?,
                auth_path: r.get(1)?,
                token_digest: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What is known of a token's origin for one account (tests and write-back).
    pub fn digest_origin(
        &self,
        account_id: &str,
        digest: &[u8],
    ) -> Result<Option<DigestOrigin>, StoreError> {
        let origin: Option<String> = self
            .conn()
            .query_row(
                "SELECT origin FROM refresh_token_digests WHERE account_id = ?1 AND digest = ?2",
                params![account_id, digest],
                |r| r.get(0),
            )
            .optional()?;
        Ok(origin.map(|o| DigestOrigin::parse(&o).unwrap_or(DigestOrigin::Minted)))
    }

    /// A write-back put `digest` into holder `holder_id`'s file; an event records it.
    pub fn holder_written(
        &self,
        account_id: &str,
        holder_id: i64,
        digest: &[u8],
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        upsert_origin(&tx, account_id, digest, DigestOrigin::Written, now)?;
        tx.execute(
            "UPDATE broker_holders SET token_digest = ?2, updated_at = ?3 WHERE id = ?1",
            params![holder_id, digest, now],
        )?;
        append(&tx, account_id, "codex_cli_written", Some(detail))?;
        tx.commit()?;
        Ok(())
    }
}
