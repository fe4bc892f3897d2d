//! A copy of the database before its schema is migrated, kept beside it until the next start
//! that finds the store sound: a migration that goes wrong (a bug, a full disk mid-way, a crash)
//! can then be undone by hand, by putting the copy back. Taken with SQLite's online backup (a
//! consistent snapshot even while another process writes), one copy before the first pending
//! migration, named by the schema version it holds.

use crate::fsutil;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;
use std::path::{Path, PathBuf};

const PREFIX: &str = ".v";
const SUFFIX: &str = ".bak";

/// `codex-vault.db.v<version>.bak` beside `db`.
pub fn path_for(db: &Path, version: i64) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{PREFIX}{version}{SUFFIX}"));
    db.with_file_name(name)
}

/// The pre-migration copies beside `db` (any version), oldest name first.
pub fn existing(db: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(base)) = (db.parent(), db.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name
                .strip_prefix(base)?
                .strip_prefix(PREFIX)?
                .strip_suffix(SUFFIX)?;
            version.parse::<i64>().ok()?;
            Some(e.path())
        })
        .collect();
    out.sort();
    out
}

/// Copies the database `conn` has open to `path_for(db, <its version>)`, 0600. Written under a
/// temporary name and renamed into place, so a copy that exists is whole; two processes taking
/// it at once each write a whole copy of the same version.
pub fn take(conn: &Connection, db: &Path) -> Result<PathBuf, String> {
    let tmp = db.with_file_name(format!(
        "{}.backup-{}",
        db.file_name().unwrap_or_default().to_string_lossy(),
        uuid::Uuid::new_v4()
    ));
    let result = copy_to(conn, &tmp).and_then(|version| {
        let target = path_for(db, version);
        std::fs::rename(&tmp, &target)
            .map(|()| target)
            .map_err(|e| e.to_string())
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let _ = std::fs::remove_file(journal_of(&tmp));
    result
}

fn journal_of(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push("-journal");
    PathBuf::from(s)
}

/// Returns the schema version the copy holds.
fn copy_to(conn: &Connection, tmp: &Path) -> Result<i64, String> {
    // Created 0600 first: SQLite opens the existing file and keeps its mode.
    fsutil::touch_private(tmp).map_err(|e| e.to_string())?;
    let mut dst = Connection::open(tmp).map_err(|e| e.to_string())?;
    {
        let backup = Backup::new(conn, &mut dst).map_err(|e| e.to_string())?;
        // Every page in one step: one consistent snapshot under one read transaction.
        match backup.step(-1).map_err(|e| e.to_string())? {
            StepResult::Done => {}
            other => return Err(format!("the copy did not complete ({other:?})")),
        }
    }
    // A copy of a WAL database is a WAL database; as a rollback-journal file it is one file,
    // readable by itself.
    dst.pragma_update(None, "journal_mode", "DELETE")
        .map_err(|e| e.to_string())?;
    let version = super::schema::user_version(&dst).map_err(|e| e.to_string())?;
    dst.close().map_err(|(_, e)| e.to_string())?;
    Ok(version)
}

/// Removes the copies (and anything SQLite left beside them, and a copy a crash left half-made).
pub fn remove_all(db: &Path) {
    let unfinished = format!(
        "{}.backup-",
        db.file_name().unwrap_or_default().to_string_lossy()
    );
    if let Some(entries) = db.parent().and_then(|d| std::fs::read_dir(d).ok()) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&unfinished) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    for p in existing(db) {
        for extra in ["-journal", "-wal", "-shm"] {
            let mut s = p.as_os_str().to_os_string();
            s.push(extra);
            let _ = std::fs::remove_file(PathBuf::from(s));
        }
        match std::fs::remove_file(&p) {
            Ok(()) => tracing::info!(path = %p.display(), "pre-migration copy removed"),
            Err(e) => {
                tracing::warn!(path = %p.display(), "cannot remove a pre-migration copy: {e}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hold_the_version() {
        let db = Path::new("/x/codex-vault.db");
        assert_eq!(path_for(db, 2), Path::new("/x/codex-vault.db.v2.bak"));
    }

    #[test]
    fn a_copy_opens_alone_and_holds_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("codex-vault.db");
        let conn = Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(
            "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('kept'); PRAGMA user_version = 7;",
        )
        .unwrap();
        let copy = take(&conn, &db).unwrap();
        assert_eq!(copy, path_for(&db, 7));
        assert_eq!(existing(&db), vec![copy.clone()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let back = Connection::open(&copy).unwrap();
        let v: String = back.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "kept");
        drop(back);
        remove_all(&db);
        assert!(existing(&db).is_empty());
        // Only its own copies, never the database or anything else.
        assert!(db.exists());
    }
}
