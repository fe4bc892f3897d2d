//! Conversation affinity and the digests of account-bound ciphertext, persisted so a restart
//! of `serve` or the app does not scatter running conversations (or forget who minted what).
//! Written in batches by the endpoint's flush task, read once at start; bounded by age and count.

use super::events::append;
use super::{Store, StoreError};
use crate::account::UnixMs;
use rusqlite::params;

/// One conversation's account (`conversation` is the prompt cache key or session id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityRow {
    pub conversation: String,
    pub account_id: String,
    pub last_at: UnixMs,
}

/// Who minted one ciphertext: its digest (never the ciphertext), the minting account, the item
/// type (`reasoning`, `compaction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintedRow {
    pub digest: Vec<u8>,
    pub account_id: String,
    pub kind: String,
    pub minted_at: UnixMs,
}

/// What the flush task writes in one transaction.
#[derive(Debug, Default)]
pub struct ContinuityBatch {
    pub affinity: Vec<AffinityRow>,
    pub minted: Vec<MintedRow>,
    /// Account events (account id, kind, detail) to append with it.
    pub events: Vec<(String, String, String)>,
}

/// How much is kept: rows older than `max_age_ms`, and beyond the newest `max_*` rows, go.
#[derive(Debug, Clone, Copy)]
pub struct ContinuityBounds {
    pub max_age_ms: i64,
    pub max_conversations: usize,
    pub max_minted: usize,
}

impl Store {
    /// Writes a batch and prunes to `bounds`, in one transaction.
    pub fn save_continuity(
        &self,
        batch: &ContinuityBatch,
        bounds: ContinuityBounds,
        now: UnixMs,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut aff = tx.prepare_cached(
                "INSERT INTO conversation_affinity (conversation, account_id, last_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(conversation) DO UPDATE SET account_id = excluded.account_id,
                   last_at = max(last_at, excluded.last_at)",
            )?;
            for r in &batch.affinity {
                aff.execute(params![r.conversation, r.account_id, r.last_at])?;
            }
            let mut minted = tx.prepare_cached(
                "INSERT INTO minted_content (digest, account_id, kind, minted_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(digest) DO NOTHING",
            )?;
            for r in &batch.minted {
                minted.execute(params![r.digest, r.account_id, r.kind, r.minted_at])?;
            }
            for (account, kind, detail) in &batch.events {
                append(&tx, account, kind, Some(detail))?;
            }
        }
        let cutoff = now - bounds.max_age_ms;
        tx.execute(
            "DELETE FROM conversation_affinity WHERE last_at < ?1 OR conversation NOT IN
               (SELECT conversation FROM conversation_affinity ORDER BY last_at DESC LIMIT ?2)",
            params![cutoff, bounds.max_conversations as i64],
        )?;
        tx.execute(
            "DELETE FROM minted_content WHERE minted_at < ?1 OR digest NOT IN
               (SELECT digest FROM minted_content ORDER BY minted_at DESC LIMIT ?2)",
            params![cutoff, bounds.max_minted as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Everything kept, oldest first (so replaying it in order leaves the newest on top).
    pub fn load_continuity(
        &self,
        bounds: ContinuityBounds,
        now: UnixMs,
    ) -> Result<(Vec<AffinityRow>, Vec<MintedRow>), StoreError> {
        let conn = self.conn();
        let cutoff = now - bounds.max_age_ms;
        let mut stmt = conn.prepare(
            "SELECT conversation, account_id, last_at FROM
               (SELECT * FROM conversation_affinity WHERE last_at >= ?1 ORDER BY last_at DESC LIMIT ?2)
             ORDER BY last_at ASC",
        )?;
        let affinity = stmt
            .query_map(params![cutoff, bounds.max_conversations as i64], |r| {
                Ok(AffinityRow {
                    conversation: r.get(0)?,
                    account_id: r.get(1)?,
                    last_at: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut stmt = conn.prepare(
            "SELECT digest, account_id, kind, minted_at FROM
               (SELECT * FROM minted_content WHERE minted_at >= ?1 ORDER BY minted_at DESC LIMIT ?2)
             ORDER BY minted_at ASC",
        )?;
        let minted = stmt
            .query_map(params![cutoff, bounds.max_minted as i64], |r| {
                Ok(MintedRow {
                    digest: r.get(0)?,
                    account_id: r.get(1)?,
                    kind: r.get(2)?,
                    minted_at: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((affinity, minted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_prunes_by_age_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bounds = ContinuityBounds {
            max_age_ms: 1_000,
            max_conversations: 2,
            max_minted: 2,
        };
        let row = |c: &str, a: &str, at| AffinityRow {
            conversation: c.into(),
            account_id: a.into(),
            last_at: at,
        };
        let mint = |d: u8, at| MintedRow {
            digest: vec![d; 16],
            account_id: "a".into(),
            kind: "reasoning".into(),
            minted_at: at,
        };
        let batch = ContinuityBatch {
            affinity: vec![
                row("old", "a", 10),
                row("c1", "a", 5_000),
                row("c2", "b", 5_100),
                row("c3", "b", 5_200),
            ],
            minted: vec![mint(1, 10), mint(2, 5_000), mint(3, 5_100), mint(4, 5_200)],
            events: vec![],
        };
        store.save_continuity(&batch, bounds, 5_300).unwrap();
        let (aff, minted) = store.load_continuity(bounds, 5_300).unwrap();
        assert_eq!(aff, vec![row("c2", "b", 5_100), row("c3", "b", 5_200)]);
        assert_eq!(
            minted.iter().map(|m| m.digest[0]).collect::<Vec<_>>(),
            vec![3, 4]
        );
        // A conversation that moves keeps one row, on its new account.
        let moved = ContinuityBatch {
            affinity: vec![row("c3", "a", 5_250)],
            ..Default::default()
        };
        store.save_continuity(&moved, bounds, 5_300).unwrap();
        let (aff, _) = store.load_continuity(bounds, 5_300).unwrap();
        assert_eq!(aff.last().unwrap(), &row("c3", "a", 5_250));
    }
}
