//! The append-only account history (`account_events`).

use super::{Store, StoreError};
use crate::account::{now_ms, UnixMs};
use rusqlite::Connection;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: i64,
    pub account_id: String,
    pub at: UnixMs,
    pub kind: String,
    pub detail: Option<String>,
}

/// Appends one event inside the caller's transaction, so history and state commit together.
pub(crate) fn append(
    conn: &Connection,
    account_id: &str,
    kind: &str,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO account_events (account_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![account_id, now_ms(), kind, detail],
    )?;
    Ok(())
}

impl Store {
    pub fn events(&self, account_id: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, account_id, at, kind, detail FROM account_events
             WHERE account_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![account_id, limit as i64], |r| {
            Ok(Event {
                id: r.get(0)?,
                account_id: r.get(1)?,
                at: r.get(2)?,
                kind: r.get(3)?,
                detail: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
