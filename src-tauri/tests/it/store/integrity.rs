//! Durability of the store file itself: before a schema migration a copy is taken beside it
//! (SQLite's online backup, 0600), which opens on its own and holds the old data, and is removed
//! by the next start of `serve` (or the app) that finds the store sound — not by CLI calls, and
//! not by the start that migrated. A store with damaged pages is checked (`PRAGMA quick_check`)
//! when `serve` starts and refused with `store_corrupt`; a CLI call that meets a damaged page
//! says so clearly too.

use crate::common;

use codex_vault::store::schema::{LATEST, MIGRATIONS};
use common::{DataDir, TestVault};
use rusqlite::Connection;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn db_path(env: &DataDir) -> PathBuf {
    env.vault_home().join("codex-vault.db")
}

fn copy_path(env: &DataDir, version: i64) -> PathBuf {
    env.vault_home()
        .join(format!("codex-vault.db.v{version}.bak"))
}

/// A store as the build before the last migration left it: every migration but the last, a
/// setting to recognise it by.
fn build_old_store(env: &DataDir) -> i64 {
    let old = LATEST - 1;
    std::fs::create_dir_all(env.vault_home()).unwrap();
    std::fs::set_permissions(env.vault_home(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let conn = Connection::open(db_path(env)).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    for sql in &MIGRATIONS[..old as usize] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", old).unwrap();
    conn.execute(
        "INSERT INTO settings (key, value) VALUES ('test.marker', 'from the old build')",
        [],
    )
    .unwrap();
    old
}

fn version_of(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_copy_is_taken_before_migrating_and_removed_by_the_next_sound_start() {
    const { assert!(LATEST >= 2, "needs at least one migration after the first") };
    let env = TestVault::builder().data_dir();
    let old = build_old_store(&env);

    // A CLI call migrates; the copy of the store as it was is beside it.
    env.ok(&["accounts", "list"]);
    assert_eq!(version_of(&db_path(&env)), LATEST);
    let copy = copy_path(&env, old);
    assert!(copy.exists(), "no pre-migration copy at {}", copy.display());
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    {
        // It opens by itself (no -wal needed) and holds the old schema and data.
        let back =
            Connection::open_with_flags(&copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let v: i64 = back
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, old);
        let marker: String = back
            .query_row(
                "SELECT value FROM settings WHERE key = 'test.marker'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(marker, "from the old build");
    }
    // CLI calls do not check the store, so they leave the copy alone.
    env.ok(&["accounts", "list"]);
    assert!(copy.exists());

    // The next start of `serve` finds the store sound and lets the copy go.
    let mut serve = env.spawn_serve(common::NO_ENV, env.dir.path().join("serve.log"));
    assert!(!copy.exists(), "the copy outlived a sound start");
    assert_eq!(serve.terminate(), Some(0), "serve stops cleanly on SIGTERM");
    let leftovers: Vec<String> = std::fs::read_dir(env.vault_home())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".bak") || n.contains(".backup-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A `serve` that migrates keeps its own copy past its start; the start after removes it.
    let env = TestVault::builder().data_dir();
    let old = build_old_store(&env);
    let mut first = env.spawn_serve(common::NO_ENV, env.dir.path().join("first.log"));
    assert!(copy_path(&env, old).exists());
    first.terminate();
    assert!(copy_path(&env, old).exists());
    let mut second = env.spawn_serve(common::NO_ENV, env.dir.path().join("second.log"));
    assert!(!copy_path(&env, old).exists());
    second.terminate();
}

/// Overwrites the `accounts` table's root page with garbage, the rest of the file intact.
fn damage_accounts_table(env: &DataDir) {
    let db = db_path(env);
    let (page_size, root): (i64, i64) = {
        let conn = Connection::open(&db).unwrap();
        // Everything into the main file (and the WAL emptied), so the damage is what SQLite reads.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let page_size = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        let root = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = 'accounts'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (page_size, root)
    };
    assert!(root > 1);
    let mut bytes = std::fs::read(&db).unwrap();
    let start = ((root - 1) * page_size) as usize;
    for b in &mut bytes[start..start + page_size as usize] {
        *b = 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();
}

#[test]
fn a_damaged_store_never_serves_and_the_cli_says_so() {
    let env = TestVault::builder().data_dir();
    // A store with its data key, as any first run leaves it.
    env.ok(&["accounts", "list"]);
    damage_accounts_table(&env);

    let r = env.run(&["serve", "--port", "0"]);
    assert_eq!(r.code, 1, "serve must refuse: {}", r.stderr);
    assert!(r.stderr.contains("[store_corrupt]"), "{}", r.stderr);
    assert!(
        r.stderr.contains("damaged") && r.stderr.to_lowercase().contains("set the store aside"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stdout.contains("listening"),
        "a damaged store was served: {}",
        r.stdout
    );
    assert!(
        !env.vault_home().join("endpoints").exists()
            || std::fs::read_dir(env.vault_home().join("endpoints"))
                .unwrap()
                .next()
                .is_none(),
        "no listener was registered"
    );

    let r = env.run(&["accounts", "list"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("[store_corrupt]"), "{}", r.stderr);
    assert!(r.stderr.contains("damaged"), "{}", r.stderr);
}
