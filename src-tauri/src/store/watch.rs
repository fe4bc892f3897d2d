//! Notices commits to the store from anywhere — this process's other connections, the CLI,
//! `serve` — through `PRAGMA data_version` on a connection of its own. A connection never sees
//! its own commits move that counter, which is why the watcher must not share one.

use super::{StoreError, BUSY_TIMEOUT, DB_FILE_NAME};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;

pub struct StoreWatch {
    conn: Connection,
    last: i64,
}

impl StoreWatch {
    /// Opens a read-only connection to the store in `data_dir` (which must already exist: the
    /// watcher never creates a store).
    pub fn open(data_dir: &Path) -> Result<StoreWatch, StoreError> {
        let conn = Connection::open_with_flags(
            data_dir.join(DB_FILE_NAME),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let last = version(&conn)?;
        Ok(StoreWatch { conn, last })
    }

    /// True once per batch of commits made since the previous call.
    pub fn changed(&mut self) -> Result<bool, StoreError> {
        let now = version(&self.conn)?;
        let moved = now != self.last;
        self.last = now;
        Ok(moved)
    }
}

fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn sees_commits_of_other_connections_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut watch = StoreWatch::open(dir.path()).unwrap();
        assert!(!watch.changed().unwrap(), "nothing committed yet");
        store.set_setting("ui.test", "1").unwrap();
        assert!(
            watch.changed().unwrap(),
            "a commit on another connection is seen"
        );
        assert!(!watch.changed().unwrap(), "and reported once");
        store.set_setting("ui.test", "2").unwrap();
        store.set_setting("ui.test", "3").unwrap();
        assert!(watch.changed().unwrap());
        assert!(!watch.changed().unwrap());
    }

    #[test]
    fn does_not_create_a_store() {
        let dir = tempfile::tempdir().unwrap();
        assert!(StoreWatch::open(&dir.path().join("none")).is_err());
        assert!(!dir.path().join("none").exists());
    }
}
