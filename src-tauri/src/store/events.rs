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

/// One `account_events` row selected as `id, account_id, at, kind, detail`.
pub(super) fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(0)?,
        account_id: r.get(1)?,
        at: r.get(2)?,
        kind: r.get(3)?,
        detail: r.get(4)?,
    })
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
        let rows = stmt.query_map(rusqlite::params![account_id, limit as i64], event_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the account's newest event of `kind` happened, if it has one.
    pub fn last_event_at(
        &self,
        account_id: &str,
        kind: &str,
    ) -> Result<Option<UnixMs>, StoreError> {
        Ok(self.conn().query_row(
            "SELECT MAX(at) FROM account_events WHERE account_id = ?1 AND kind = ?2",
            [account_id, kind],
            |r| r.get(0),
        )?)
    }

    /// Whether the account was ever imported from the file `path` (its import events name their
    /// source: see `import_source_detail`).
    pub fn imported_from(&self, account_id: &str, path: &str) -> Result<bool, StoreError> {
        let bare = import_source_detail(None, path);
        let tail = import_source_detail(Some(""), path);
        Ok(self.conn().query_row(
            "SELECT EXISTS(SELECT 1 FROM account_events
                WHERE account_id = ?1 AND kind IN ('imported', 'imported_again')
                  AND (detail = ?2 OR substr(detail, -length(?3)) = ?3))",
            rusqlite::params![account_id, bare, tail],
            |r| r.get(0),
        )?)
    }
}

/// An import event's detail naming the file it came from: `from <path>`, or `<what>; from <path>`.
pub fn import_source_detail(what: Option<&str>, path: &str) -> String {
    match what {
        Some(w) => format!("{w}; from {path}"),
        None => format!("from {path}"),
    }
}
