//! Reset-credit redemptions (`reset_redemptions`, schema 6): the `redeem_request_id` is stored
//! before the consume call goes out, so every retry of one redemption sends the same id.

use super::{Store, StoreError};
use crate::account::{now_ms, UnixMs};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    pub redeem_request_id: String,
    pub account_id: String,
    pub credit_id: Option<String>,
    /// `pending` until upstream's answer is known, then `done`.
    pub state: String,
    /// Upstream's `code` (`reset`, `nothing_to_reset`, `no_credit`, `already_redeemed`, …).
    pub code: Option<String>,
    pub windows_reset: Option<i64>,
    pub created_at: UnixMs,
    pub finished_at: Option<UnixMs>,
}

const COLUMNS: &str =
    "redeem_request_id, account_id, credit_id, state, code, windows_reset, created_at, finished_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Redemption> {
    Ok(Redemption {
        redeem_request_id: r.get(0)?,
        account_id: r.get(1)?,
        credit_id: r.get(2)?,
        state: r.get(3)?,
        code: r.get(4)?,
        windows_reset: r.get(5)?,
        created_at: r.get(6)?,
        finished_at: r.get(7)?,
    })
}

impl Store {
    /// The account's pending redemption if there is one (a retry reuses its id), else a new one
    /// with `new_id` and `credit_id`, written before returning. One transaction holding the
    /// write lock: two callers at once get the same redemption.
    pub fn begin_redemption(
        &self,
        account_id: &str,
        new_id: &str,
        credit_id: Option<&str>,
    ) -> Result<(Redemption, bool), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let pending = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM reset_redemptions WHERE account_id = ?1 AND state = 'pending'"),
                [account_id],
                row,
            )
            .optional()?;
        if let Some(p) = pending {
            tx.commit()?;
            return Ok((p, true));
        }
        let now = now_ms();
        tx.execute(
            "INSERT INTO reset_redemptions (redeem_request_id, account_id, credit_id, state, created_at)
             VALUES (?1, ?2, ?3, 'pending', ?4)",
            params![new_id, account_id, credit_id, now],
        )?;
        super::events::append(
            &tx,
            account_id,
            "reset_redeem_started",
            credit_id.map(|c| format!("credit {c}")).as_deref(),
        )?;
        tx.commit()?;
        Ok((
            Redemption {
                redeem_request_id: new_id.to_string(),
                account_id: account_id.to_string(),
                credit_id: credit_id.map(str::to_string),
                state: "pending".into(),
                code: None,
                windows_reset: None,
                created_at: now,
                finished_at: None,
            },
            false,
        ))
    }

    /// The account's pending redemption, if any.
    pub fn pending_redemption(&self, account_id: &str) -> Result<Option<Redemption>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM reset_redemptions WHERE account_id = ?1 AND state = 'pending'"),
                [account_id],
                row,
            )
            .optional()?)
    }

    /// Records upstream's answer (once: a redemption already done keeps its first answer).
    pub fn finish_redemption(
        &self,
        redeem_request_id: &str,
        code: &str,
        windows_reset: i64,
    ) -> Result<Option<Redemption>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE reset_redemptions SET state = 'done', code = ?2, windows_reset = ?3, finished_at = ?4
             WHERE redeem_request_id = ?1 AND state = 'pending'",
            params![redeem_request_id, code, windows_reset, now_ms()],
        )?;
        let done = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM reset_redemptions WHERE redeem_request_id = ?1"),
                [redeem_request_id],
                row,
            )
            .optional()?;
        if n == 1 {
            if let Some(d) = &done {
                super::events::append(
                    &tx,
                    &d.account_id,
                    "reset_redeemed",
                    Some(&format!("{code}, {windows_reset} window(s) reset")),
                )?;
            }
        }
        tx.commit()?;
        Ok(done)
    }

    /// The account's redemption that finished last, if any.
    pub fn last_finished_redemption(
        &self,
        account_id: &str,
    ) -> Result<Option<Redemption>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM reset_redemptions WHERE account_id = ?1 AND state = 'done'
                          ORDER BY finished_at DESC LIMIT 1"),
                [account_id],
                row,
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::seam::tests::store_with_account;

    #[test]
    fn one_pending_redemption_per_account_and_its_first_answer_kept() {
        let (_dir, store, id) = store_with_account();
        let (_first, reused) = store.begin_redemption(&id, "rid-1", Some("c1")).unwrap();
        assert!(!reused);
        let (again, reused) = store.begin_redemption(&id, "rid-2", Some("c2")).unwrap();
        assert!(reused, "a retry reuses the pending id");
        assert_eq!(again.redeem_request_id, "rid-1");
        assert_eq!(again.credit_id.as_deref(), Some("c1"));
        let done = store
            .finish_redemption("rid-1", "reset", 1)
            .unwrap()
            .unwrap();
        assert_eq!(
            (done.state.as_str(), done.code.as_deref()),
            ("done", Some("reset"))
        );
        let twice = store
            .finish_redemption("rid-1", "no_credit", 0)
            .unwrap()
            .unwrap();
        assert_eq!(
            twice.code.as_deref(),
            Some("reset"),
            "the first answer stays"
        );
        assert!(store.pending_redemption(&id).unwrap().is_none());
        let (next, reused) = store.begin_redemption(&id, "rid-3", None).unwrap();
        assert!(!reused && next.redeem_request_id == "rid-3");
        assert_eq!(
            store
                .last_finished_redemption(&id)
                .unwrap()
                .unwrap()
                .redeem_request_id,
            "rid-1"
        );
    }
}
