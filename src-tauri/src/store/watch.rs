//! Notices commits to the store from anywhere — this process's other connections, the CLI,
//! `serve` — through `PRAGMA data_version` on a connection of its own. A connection never sees
//! its own commits move that counter, which is why the watcher must not share one.
//!
//! `watch_dir` runs ONE such watcher per data directory and process, on a thread of its own
//! (`vault-store-watch`), woken by the file system (`notify`: inotify on Linux, FSEvents on macOS)
//! when the database or its WAL is written; each wake-up checks `data_version` and publishes
//! `CoreEvent::StoreChanged` on the bus when it moved (after applying the settings as they are
//! now to this process's copy, which publishes `SettingsChanged` per key that changed). Only where the file system cannot be
//! watched does it fall back to checking every `FALLBACK_POLL`. Idle (nobody writes) it sleeps.

use super::{StoreError, BUSY_TIMEOUT, DB_FILE_NAME};
use crate::bus::{self, CoreEvent};
use rusqlite::{Connection, OpenFlags};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Only where no file-system watch could be set up (keeps other processes' changes under a second).
pub const FALLBACK_POLL: Duration = Duration::from_millis(500);
/// After a write is seen, the commit may still be on its way into the WAL index (a `FULL` sync
/// comes first): `data_version` is checked after each of these delays until it moved. The last,
/// long one is for a slow disk: a commit missed here would leave this process's settings copy
/// stale until the next commit (views would only be late).
const SETTLE: [Duration; 4] = [
    Duration::from_millis(15),
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_secs(2),
];

/// The longest a run of file events is gathered before the store is looked at anyway.
const MAX_BURST: Duration = Duration::from_millis(250);

pub struct StoreWatch {
    conn: Connection,
    last: i64,
    /// Whose settings copy a change is applied to (`crate::settings`).
    store_id: String,
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
        let store_id =
            conn.query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
                r.get(0)
            })?;
        Ok(StoreWatch {
            conn,
            last,
            store_id,
        })
    }

    /// Applies what the store's settings are now to this process's copy: publishes
    /// `SettingsChanged` for each key another process changed (this process's own writes are
    /// in the copy already, so they publish nothing twice).
    pub fn follow_settings(&self) -> Result<Vec<String>, StoreError> {
        super::settings::refresh(
            &crate::settings::Settings::for_store(&self.store_id),
            &self.conn,
        )
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

/// Starts this process's watcher for the store in `data_dir`, once (later calls for the same
/// directory do nothing). The store must exist. Runs for the life of the process.
pub fn watch_dir(data_dir: &Path) -> Result<(), StoreError> {
    static WATCHED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let key = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let mut watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    let set = watched.get_or_insert_with(HashSet::new);
    if set.contains(&key) {
        return Ok(());
    }
    // The file-system watch is in place before the baseline is read: a commit after it is
    // seen, one before it is in what subscribers read after this returns.
    let (rx, watcher) = fs_watch(&key);
    let watch = StoreWatch::open(data_dir)?;
    std::thread::Builder::new()
        .name("vault-store-watch".into())
        .spawn(move || run(watch, rx, watcher))
        .map_err(|e| StoreError::DataDir {
            path: key.display().to_string(),
            detail: format!("cannot start the store watcher: {e}"),
        })?;
    set.insert(key);
    Ok(())
}

/// What a file-system event may mean.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Touched {
    /// The database or its WAL/journal was written: maybe a commit.
    Db,
    /// The listener registry (`listeners`) changed: an endpoint started or stopped somewhere.
    Listeners,
}

/// Opening and reading a file (ours included) is not a change; `-shm` is written through a
/// memory map, so its events say nothing.
fn classify(event: &notify::Event) -> Option<Touched> {
    use notify::EventKind;
    if matches!(event.kind, EventKind::Access(_)) {
        return None;
    }
    let mut touched = None;
    for p in &event.paths {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let in_registry = p
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == crate::listeners::DIR)
            || name == crate::listeners::DIR;
        if in_registry {
            touched = Some(Touched::Listeners);
        } else if name.starts_with(DB_FILE_NAME) && !name.ends_with("-shm") {
            return Some(Touched::Db);
        }
    }
    touched
}

/// The watch on `dir` and where its events arrive; None where it cannot be watched (polled).
fn fs_watch(dir: &Path) -> (mpsc::Receiver<Touched>, Option<notify::RecommendedWatcher>) {
    use notify::Watcher;
    let (tx, rx) = mpsc::channel::<Touched>();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // An error from the watcher: look at the store, it costs one read.
        let touched = res.map_or(Some(Touched::Db), |e| classify(&e));
        if let Some(t) = touched {
            let _ = tx.send(t);
        }
    })
    // Recursive for the listener registry below the data directory (created on first use).
    .and_then(|mut w| w.watch(dir, notify::RecursiveMode::Recursive).map(|()| w));
    match watcher {
        Ok(w) => (rx, Some(w)),
        Err(e) => {
            tracing::warn!(
                "cannot watch {} for changes ({e}); checking every {:?} instead",
                dir.display(),
                FALLBACK_POLL
            );
            (rx, None)
        }
    }
}

/// `watcher` is only kept alive here (None: polled instead).
fn run(
    mut watch: StoreWatch,
    rx: mpsc::Receiver<Touched>,
    watcher: Option<notify::RecommendedWatcher>,
) {
    let polled = watcher.is_none();
    loop {
        let first = if polled {
            std::thread::sleep(FALLBACK_POLL);
            Touched::Db
        } else {
            match rx.recv() {
                Ok(t) => t,
                Err(_) => return,
            }
        };
        let (db, listeners) = settle(&mut watch, &rx, first, polled);
        if listeners || polled {
            bus::publish(CoreEvent::EndpointChanged);
        }
        if db {
            if let Err(e) = watch.follow_settings() {
                tracing::warn!("cannot re-read the settings after a change: {e}");
            }
            bus::publish(CoreEvent::StoreChanged);
        }
    }
}

/// Takes a burst of file events as one; returns (the store moved, the registry changed). A
/// write not yet visible as a commit is looked at again after each `SETTLE` delay.
fn settle(
    watch: &mut StoreWatch,
    rx: &mpsc::Receiver<Touched>,
    first: Touched,
    polled: bool,
) -> (bool, bool) {
    let mut db_touched = first == Touched::Db;
    let mut listeners = first == Touched::Listeners;
    let delays: &[Duration] = if polled { &[Duration::ZERO] } else { &SETTLE };
    for delay in delays {
        // More of the same burst; bounded, so steady writes still get looked at.
        let burst_ends = Instant::now() + MAX_BURST;
        while let Ok(t) = rx.recv_timeout(*delay) {
            db_touched |= t == Touched::Db;
            listeners |= t == Touched::Listeners;
            if Instant::now() >= burst_ends {
                break;
            }
        }
        if !db_touched {
            return (false, listeners);
        }
        match watch.changed() {
            Ok(true) => return (true, listeners),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!("the store watcher cannot read the store: {e}");
                // Re-reading costs little; missing a change costs a stale view.
                return (true, listeners);
            }
        }
    }
    (false, listeners)
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

    /// Waits (bounded) for the next event on `rx` that `wanted` accepts; panics with `what`.
    fn await_event(
        rx: &mut tokio::sync::broadcast::Receiver<CoreEvent>,
        what: &str,
        wanted: impl Fn(&CoreEvent) -> bool,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // The timer is made inside the runtime (it needs its time driver).
        rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                crate::bus::next_matching(rx, wanted),
            )
            .await
        })
        .unwrap_or_else(|_| panic!("{what} within 10 s"))
        .unwrap();
    }

    #[test]
    fn a_commit_is_published_on_the_bus_without_polling() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut rx = crate::bus::Bus::global().subscribe();
        watch_dir(dir.path()).unwrap();
        watch_dir(dir.path()).unwrap(); // once per directory
        store.set_setting("ui.test", "1").unwrap();
        await_event(&mut rx, "the commit reached the bus", |e| {
            *e == CoreEvent::StoreChanged
        });
    }

    #[test]
    fn another_processs_setting_reaches_this_processs_copy_and_the_bus() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.set_setting("watch.kept", "1").unwrap();
        let mut rx = crate::bus::Bus::global().subscribe();
        watch_dir(dir.path()).unwrap();
        // What another process does: a commit on a connection of its own, which this process's
        // copy knows nothing of.
        let other = Connection::open(dir.path().join(DB_FILE_NAME)).unwrap();
        other
            .execute(
                "INSERT INTO settings (key, value) VALUES ('watch.other', 'on')",
                [],
            )
            .unwrap();
        let key = CoreEvent::SettingsChanged {
            key: "watch.other".into(),
        };
        await_event(
            &mut rx,
            "the other process's setting reached the bus",
            |e| *e == key,
        );
        assert_eq!(store.setting("watch.other").unwrap().as_deref(), Some("on"));
        assert_eq!(store.setting("watch.kept").unwrap().as_deref(), Some("1"));
    }

    #[test]
    fn does_not_create_a_store() {
        let dir = tempfile::tempdir().unwrap();
        assert!(StoreWatch::open(&dir.path().join("none")).is_err());
        assert!(!dir.path().join("none").exists());
    }
}
