//! Versioned schema. `PRAGMA user_version` holds how many migrations ran; a DB whose version is
//! higher than ours was written by a newer Codex Vault and is refused, never "repaired".

use rusqlite::{Connection, Transaction, TransactionBehavior};

/// Each entry runs once, in order, in one transaction with the version bump. Append only.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE accounts (
        id                  TEXT PRIMARY KEY,
        label               TEXT NOT NULL UNIQUE,
        email               TEXT,
        chatgpt_account_id  TEXT NOT NULL,
        chatgpt_user_id     TEXT NOT NULL,
        plan                TEXT,
        fedramp             INTEGER NOT NULL DEFAULT 0,
        status              TEXT NOT NULL DEFAULT 'healthy',
        failure_code        TEXT,
        failure_message     TEXT,
        failure_http_status INTEGER,
        failure_at          INTEGER,
        last_error          TEXT,
        last_error_at       INTEGER,
        access_expires_at   INTEGER,
        access_issued_at    INTEGER,
        last_refresh_at     INTEGER,
        rate_limited_until  INTEGER,
        generation          INTEGER NOT NULL DEFAULT 0,
        disabled            INTEGER NOT NULL DEFAULT 0,
        created_at          INTEGER NOT NULL,
        updated_at          INTEGER NOT NULL,
        UNIQUE (chatgpt_account_id, chatgpt_user_id)
    );
    -- Secrets apart from the row: a write of label/status/usage never touches them, and the
    -- refresh token has its own column so no other write can drop a rotation.
    CREATE TABLE account_secrets (
        account_id            TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        access_token          BLOB NOT NULL,
        id_token              BLOB NOT NULL,
        refresh_token         BLOB NOT NULL,
        refresh_fingerprint   TEXT NOT NULL,
        previous_refresh_fingerprint TEXT,
        rotated_at            INTEGER
    );
    CREATE TABLE refresh_leases (
        account_id  TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        holder      TEXT NOT NULL,
        expires_at  INTEGER NOT NULL
    );
    CREATE TABLE refresh_intents (
        account_id  TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        generation  INTEGER NOT NULL,
        holder      TEXT NOT NULL,
        started_at  INTEGER NOT NULL
    );
    -- Append-only history; no foreign key, so an account's story outlives its removal.
    CREATE TABLE account_events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id  TEXT NOT NULL,
        at          INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        detail      TEXT
    );
    CREATE INDEX account_events_by_account ON account_events(account_id, id);
    "#,
    // 2: the last usage snapshot (JSON), flushed from the endpoint's memory, debounced.
    r#"
    ALTER TABLE accounts ADD COLUMN usage_json TEXT;
    "#,
    // 3: shared-grant detection: where else this sign-in is held live (a Codex auth.json path,
    // another copy of the grant), or NULL — a place, never a token. And the refresh broker
    // recognises older generations of a held chain (a reuse, answered
    // as such, never forwarded upstream where a reuse may revoke the whole family): every
    // refresh token an account held keeps its fingerprint here, written by a trigger so no
    // rotation path can forget it. Fingerprints only, never tokens; pruned after 90 days.
    r#"
    ALTER TABLE accounts ADD COLUMN shared_grant_where TEXT;
    CREATE TABLE retired_refresh_fingerprints (
        account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        fingerprint TEXT NOT NULL,
        retired_at  INTEGER NOT NULL,
        PRIMARY KEY (account_id, fingerprint)
    );
    CREATE TRIGGER retire_refresh_fingerprint
    AFTER UPDATE OF refresh_fingerprint ON account_secrets
    WHEN OLD.refresh_fingerprint IS NOT NEW.refresh_fingerprint
    BEGIN
        INSERT OR IGNORE INTO retired_refresh_fingerprints (account_id, fingerprint, retired_at)
        VALUES (OLD.account_id, OLD.refresh_fingerprint, CAST(unixepoch('subsec') * 1000 AS INTEGER));
        DELETE FROM retired_refresh_fingerprints
        WHERE account_id = OLD.account_id
          AND retired_at < CAST(unixepoch('subsec') * 1000 AS INTEGER) - 90 * 86400000;
    END;
    "#,
    // 4: conversations survive a restart: conversation → account affinity, and who minted each
    // account-bound ciphertext (`encrypted_content` of reasoning/compaction items) by its
    // SHA-256 digest truncated to 16 bytes — never the ciphertext. No foreign key: a digest of
    // a removed account still says "not yours" to every other account. Bounded by the endpoint
    // (age and count), written in batches off the request path.
    r#"
    CREATE TABLE conversation_affinity (
        conversation TEXT PRIMARY KEY,
        account_id   TEXT NOT NULL,
        last_at      INTEGER NOT NULL
    );
    CREATE INDEX conversation_affinity_by_age ON conversation_affinity(last_at);
    CREATE TABLE minted_content (
        digest     BLOB PRIMARY KEY,
        account_id TEXT NOT NULL,
        kind       TEXT NOT NULL,
        minted_at  INTEGER NOT NULL
    );
    CREATE INDEX minted_content_by_age ON minted_content(minted_at);
    "#,
    // 5: the refresh broker's memory (docs/broker.md). Tokens it does not keep are known only by
    // keyed digest (HMAC-SHA256 under a key derived from the data key): never a token, never a
    // 64-bit fingerprint.
    // - `previous_refresh_token`: the sealed refresh token the current one replaced, copied by a
    //   trigger in the same transaction as every rotation, so the broker tells "just became
    //   previous" from "older" by the full token, with no window between commit and record.
    // - `broker_holders`: who holds a sign-in outside the vault (a Codex auth.json we write back
    //   into, or a holder known only by the tokens it presents) and the newest token it holds.
    // - `refresh_token_digests`: where a token of a held chain came from (`minted`: a rotation
    //   of ours nobody was handed; `imported`, `handed`, `written`; `detached`: the token of a
    //   detached auth.json's backup), so the broker never honours a kept or a detached token.
    r#"
    ALTER TABLE account_secrets ADD COLUMN previous_refresh_token BLOB;
    CREATE TRIGGER keep_previous_refresh_token
    AFTER UPDATE OF refresh_token ON account_secrets
    WHEN OLD.refresh_token IS NOT NEW.refresh_token
    BEGIN
        UPDATE account_secrets SET previous_refresh_token = OLD.refresh_token
        WHERE account_id = OLD.account_id;
    END;
    CREATE TABLE broker_holders (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        auth_path     TEXT,
        token_digest  BLOB NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        seen_at       INTEGER
    );
    CREATE UNIQUE INDEX broker_holders_by_path ON broker_holders(account_id, auth_path)
        WHERE auth_path IS NOT NULL;
    CREATE INDEX broker_holders_by_digest ON broker_holders(token_digest);
    CREATE TABLE refresh_token_digests (
        account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        digest      BLOB NOT NULL,
        origin      TEXT NOT NULL,
        at          INTEGER NOT NULL,
        PRIMARY KEY (account_id, digest)
    );
    CREATE INDEX refresh_token_digests_by_digest ON refresh_token_digests(digest);
    "#,
    // 6: reset-credit redemptions (README.md § Reset credits). The `redeem_request_id` is
    // written here before the consume call is sent, so a retry after a lost answer, a second
    // click or a second process sends the same id (upstream is idempotent on it) and at most one
    // credit is spent. At most one pending redemption per account.
    r#"
    CREATE TABLE reset_redemptions (
        redeem_request_id TEXT PRIMARY KEY,
        account_id        TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        credit_id         TEXT,
        state             TEXT NOT NULL,
        code              TEXT,
        windows_reset     INTEGER,
        created_at        INTEGER NOT NULL,
        finished_at       INTEGER
    );
    CREATE UNIQUE INDEX reset_redemptions_one_pending ON reset_redemptions(account_id)
        WHERE state = 'pending';
    CREATE INDEX reset_redemptions_by_account ON reset_redemptions(account_id, finished_at);
    "#,
    // 7: restored from a backup (README.md § Backup and restore): when, while unconfirmed. Such
    // an account is also `disabled`, so every path that never refreshes or serves a disabled
    // account leaves it alone; confirming clears both.
    r#"
    ALTER TABLE accounts ADD COLUMN restored_at INTEGER;
    "#,
];

pub const LATEST: i64 = MIGRATIONS.len() as i64;

pub fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Runs the migrations this DB has not seen. The caller has already refused a newer DB.
/// Each step takes the write lock first and re-reads the version under it, so two processes
/// opening a new store at once run each migration exactly once.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        if user_version(conn)? > i as i64 {
            continue;
        }
        let tx: Transaction<'_> = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if user_version(&tx)? > i as i64 {
            continue; // another process ran it while we waited for the lock
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
