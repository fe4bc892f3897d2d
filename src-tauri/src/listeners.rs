//! Which processes serve this store's endpoint right now. The app, `serve` and CLI runs may share
//! one data dir, and more than one of them may listen (on different ports): each listener keeps a
//! file in `endpoints/` under an exclusive lock for as long as it listens. The lock is the
//! liveness: the kernel drops it when the holder exits, however it exits (kill -9 included), so
//! no heartbeat is written and a reused pid can never pass for a live listener. A file whose lock
//! can be taken is a dead listener's leftover and is removed by whoever finds it.
//!
//! The file's name carries everything (`<started ms>-<pid>-<port>.lock`, empty content): on
//! Windows a locked file cannot be read by others, its name can.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

pub(crate) const DIR: &str = "endpoints";
/// The endpoint's port when the store has no `endpoint.port` setting.
pub const DEFAULT_PORT: u16 = 8417;
/// The store setting naming the endpoint's port (read per use: the app's Settings and other
/// processes change it while this one runs).
pub const SETTING_PORT: &str = "endpoint.port";
const SUFFIX: &str = ".lock";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Listener {
    pub pid: u32,
    pub port: u16,
    /// When it started listening (Unix ms).
    pub started_at_ms: i64,
}

/// This process's entry; dropping it removes the entry (the lock goes with the file).
#[derive(Debug)]
pub struct Registration {
    path: PathBuf,
    _file: File,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Unlinked while still locked: a reader never sees our entry unlocked before it is gone.
        let _ = std::fs::remove_file(&self.path);
    }
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR)
}

fn parse(name: &str) -> Option<Listener> {
    let mut it = name.strip_suffix(SUFFIX)?.splitn(3, '-');
    let started_at_ms = it.next()?.parse().ok()?;
    let pid = it.next()?.parse().ok()?;
    let port = it.next()?.parse().ok()?;
    Some(Listener {
        pid,
        port,
        started_at_ms,
    })
}

/// Records that this process listens on `port` until the returned registration is dropped.
pub fn register(data_dir: &Path, port: u16) -> io::Result<Registration> {
    let dir = dir(data_dir);
    crate::fsutil::ensure_private_dir(&dir)?;
    let started = crate::account::now_ms();
    let pid = std::process::id();
    let name = format!("{started}-{pid}-{port}{SUFFIX}");
    // Locked under a name readers skip, then renamed into place: an entry is never visible
    // unlocked, so no reader can take a starting listener for a dead one.
    let tmp = dir.join(format!(".new-{pid}-{port}-{}", uuid::Uuid::new_v4()));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let file = opts.open(&tmp)?;
    let locked = match try_lock(&file, Lock::Exclusive) {
        Ok(true) => Ok(()),
        Ok(false) => Err(io::Error::other("a new file is locked by someone else")),
        Err(e) => Err(e),
    };
    let placed = locked.and_then(|()| std::fs::rename(&tmp, dir.join(&name)));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(Registration {
        path: dir.join(name),
        _file: file,
    })
}

/// Every listener alive now, newest first; removes dead listeners' entries on the way.
pub fn live(data_dir: &Path) -> Vec<Listener> {
    let Ok(entries) = std::fs::read_dir(dir(data_dir)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(listener) = name.to_str().and_then(parse) else {
            continue;
        };
        let path = entry.path();
        // A shared lock: readers never block each other; only a holder's exclusive lock stops it.
        let Ok(file) = File::open(&path) else {
            continue; // gone meanwhile
        };
        match try_lock(&file, Lock::Shared) {
            Ok(false) => out.push(listener),
            Ok(true) => {
                let _ = std::fs::remove_file(&path);
            }
            // Cannot tell (a file system without locks): better shown than hidden.
            Err(_) => out.push(listener),
        }
    }
    out.sort_by_key(|l| std::cmp::Reverse(l.started_at_ms));
    out
}

enum Lock {
    Shared,
    Exclusive,
}

/// `flock` without waiting: Ok(false) when another open file holds a conflicting lock. Per open
/// file (not per process, unlike POSIX record locks), so a second open in the holder's own process
/// sees the holder's lock too. (`File::try_lock` does this in std from Rust 1.89, above our MSRV.)
#[cfg(unix)]
fn try_lock(file: &File, kind: Lock) -> io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    let op = match kind {
        Lock::Shared => libc::LOCK_SH,
        Lock::Exclusive => libc::LOCK_EX,
    } | libc::LOCK_NB;
    // SAFETY: flock on a descriptor this `File` owns for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Without `flock` here: an entry counts as live while its file exists (a clean stop removes it;
/// a crashed listener's entry stays until the data dir's `endpoints/` is cleared).
#[cfg(not(unix))]
fn try_lock(_file: &File, kind: Lock) -> io::Result<bool> {
    Ok(matches!(kind, Lock::Exclusive))
}

/// The configured port from the `endpoint.port` setting's value, else 8417.
pub fn configured_port(setting: Option<String>) -> u16 {
    setting.and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_PORT)
}

/// Live listeners, the one to point tools at first: on the configured port if one is (a moved
/// port's listener otherwise), else the newest.
pub fn live_preferring(data_dir: &Path, configured: Option<u16>) -> Vec<Listener> {
    let mut live = live(data_dir);
    if let Some(i) = configured.and_then(|p| live.iter().position(|l| l.port == p)) {
        let preferred = live.remove(i);
        live.insert(0, preferred);
    }
    live
}

/// The port the endpoint listens on now (a live `serve` or app), else `configured`.
pub fn current_port(data_dir: &Path, configured: u16) -> u16 {
    live_preferring(data_dir, Some(configured))
        .first()
        .map_or(configured, |l| l.port)
}

/// The pid of a process serving this store's endpoint right now other than this one, if any.
pub fn other_live_pid(data_dir: &Path) -> Option<u32> {
    let me = std::process::id();
    live_preferring(data_dir, None)
        .into_iter()
        .map(|l| l.pid)
        .find(|pid| *pid != me)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_as_long_as_its_registration() {
        let dir = tempfile::tempdir().unwrap();
        assert!(live(dir.path()).is_empty());
        let a = register(dir.path(), 1111).unwrap();
        let b = register(dir.path(), 2222).unwrap();
        let ports: Vec<u16> = live(dir.path()).iter().map(|l| l.port).collect();
        assert_eq!(ports.len(), 2);
        assert!(ports.contains(&1111) && ports.contains(&2222));
        drop(a);
        assert_eq!(
            live(dir.path()).iter().map(|l| l.port).collect::<Vec<_>>(),
            [2222]
        );
        drop(b);
        assert!(live(dir.path()).is_empty());
    }

    #[test]
    fn an_unlocked_entry_is_a_dead_listeners_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(DIR)).unwrap();
        // What a killed process leaves: the file, no lock.
        let left = dir
            .path()
            .join(DIR)
            .join(format!("5-{}-3333{SUFFIX}", u32::MAX));
        std::fs::write(&left, b"").unwrap();
        assert!(live(dir.path()).is_empty());
        assert!(!left.exists());
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(
            parse("1700000000000-42-8417.lock"),
            Some(Listener {
                pid: 42,
                port: 8417,
                started_at_ms: 1_700_000_000_000
            })
        );
        assert_eq!(parse(".new-42-8417-x"), None);
        assert_eq!(parse("1-2-70000.lock"), None);
    }
}
