//! Writing a brokered sign-in's rotations back into its holder's own Codex `auth.json`, so a
//! stock Codex CLI is never logged out by our own rotations (docs/broker.md § Write-back).
//!
//! Why it works: Codex CLI 0.169+ re-reads its credential file before it refreshes (and before it
//! commits a refresh), adopting tokens that changed underneath it; a CLI that comes back after
//! weeks starts from the file. So after each rotation we commit, the file holds the chain's
//! current tokens, and the CLI refreshes (through the broker) with a token the issuer accepts.
//!
//! Safeguards, each tested: the file is re-read right before an atomic replace (a temporary file
//! in the same directory, 0600, renamed over it) and written only if it still holds a token of
//! this grant (the user may have signed in elsewhere since) and did not change meanwhile; every
//! key we do not know is kept; a symlinked file is followed (the target is replaced, the link
//! kept); the CLI's own lock is taken; a hard-linked file is left alone (a rename would split it;
//! the CLI refuses those too); the file is never created. Where there is no file (a keyring-mode
//! CLI), the broker's holder rule covers the holder instead.

use crate::account::{ms_to_rfc3339, now_ms};
use crate::error_code::ErrorCode;
use crate::refresh::{ObserverFuture, RotationObserver};
use crate::secret::Secret;
use crate::store::{DigestOrigin, PathHolder, Store, StoreError};
use crate::vault::{Field, TokenDigest, Vault, VaultError};
use serde_json::Value;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a write-back waits for the CLI's lock before leaving this rotation to the broker.
const LOCK_WAIT: Duration = Duration::from_secs(5);
const LOCK_POLL: Duration = Duration::from_millis(20);
/// Symlink hops followed before giving up (a loop).
const MAX_LINKS: usize = 40;
/// Larger than any real auth.json by two orders of magnitude.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WritebackError {
    #[error("cannot write {path} back: {detail}")]
    Io { path: String, detail: String },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Vault(#[from] VaultError),
}

impl WritebackError {
    pub fn code(&self) -> ErrorCode {
        match self {
            WritebackError::Io { .. } => ErrorCode::CodexWritebackIo,
            WritebackError::Store(e) => e.code(),
            WritebackError::Vault(e) => e.code(),
        }
    }
}

/// What became of one holder's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The file now holds the current tokens.
    Written,
    /// It already held them (the CLI saved the broker's answer itself).
    AlreadyCurrent,
    /// No file there: never created (the holder rule covers it).
    Absent,
    /// Left alone, with why.
    LeftAlone(&'static str),
}

/// The account's current tokens, opened.
struct Current {
    access: Secret,
    id_token: Secret,
    refresh: Secret,
    digest: TokenDigest,
    last_refresh_at: Option<i64>,
}

/// The observer a Service's TokenManager gets: marks every rotation's new token as ours only
/// (until handed or written), then writes it back into the account's holders' files.
pub struct CodexWriteback {
    store: Arc<Store>,
    vault: Vault,
    /// One write-back at a time in this process: each reads the then-current tokens, so a
    /// later one never loses to an earlier one writing older tokens.
    serial: Arc<Mutex<()>>,
}

impl CodexWriteback {
    pub fn new(store: Arc<Store>, vault: Vault) -> CodexWriteback {
        CodexWriteback {
            store,
            vault,
            serial: Arc::new(Mutex::new(())),
        }
    }
}

impl RotationObserver for CodexWriteback {
    fn rotation_committed(&self, account_id: &str, generation: i64) -> ObserverFuture {
        let (store, vault, serial) = (self.store.clone(), self.vault.clone(), self.serial.clone());
        let id = account_id.to_string();
        Box::pin(async move {
            // Awaited: the mark must exist before the rotation's result is handed to anyone, so
            // a hand-out (which upgrades it) can never be overtaken by it.
            let (s, v, i) = (store.clone(), vault.clone(), id.clone());
            match tokio::task::spawn_blocking(move || mark_minted(&s, &v, &i, generation)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(account = %id, "cannot record a rotation's token: {e}")
                }
                Err(e) => tracing::warn!(account = %id, "cannot record a rotation's token: {e}"),
            }
            // Not awaited: a CLI may hold its lock while it waits for this very refresh's answer.
            tokio::task::spawn_blocking(move || {
                let _one = serial.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = write_back(&store, &vault, &id) {
                    tracing::warn!(account = %id, code = e.code().as_str(), "Codex CLI write-back failed: {e}");
                }
            });
        })
    }
}

fn mark_minted(
    store: &Store,
    vault: &Vault,
    account_id: &str,
    generation: i64,
) -> Result<(), WritebackError> {
    let Some(t) = store.current_tokens(account_id)? else {
        return Ok(());
    };
    // Moved on already: that newer rotation marks its own token.
    if t.generation != generation {
        return Ok(());
    }
    let refresh = vault.open(account_id, Field::RefreshToken, &t.refresh_token)?;
    store.mark_minted(account_id, vault.refresh_digest(&refresh).as_bytes())?;
    Ok(())
}

fn current(
    store: &Store,
    vault: &Vault,
    account_id: &str,
) -> Result<Option<Current>, WritebackError> {
    let Some(t) = store.current_tokens(account_id)? else {
        return Ok(None);
    };
    let refresh = vault.open(account_id, Field::RefreshToken, &t.refresh_token)?;
    Ok(Some(Current {
        access: vault.open(account_id, Field::AccessToken, &t.access_token)?,
        id_token: vault.open(account_id, Field::IdToken, &t.id_token)?,
        digest: vault.refresh_digest(&refresh),
        refresh,
        last_refresh_at: t.last_refresh_at,
    }))
}

/// Writes the account's current tokens into each of its holders' files. Returns what became of
/// each (path, outcome).
pub fn write_back(
    store: &Store,
    vault: &Vault,
    account_id: &str,
) -> Result<Vec<(String, Outcome)>, WritebackError> {
    let holders = store.path_holders(account_id)?;
    if holders.is_empty() {
        return Ok(Vec::new());
    }
    let Some(cur) = current(store, vault, account_id)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for h in holders {
        let outcome = write_one(store, vault, account_id, &h, &cur);
        match &outcome {
            Ok(Outcome::Written) => {
                store.holder_written(
                    account_id,
                    h.id,
                    cur.digest.as_bytes(),
                    &format!("wrote the new sign-in into {}", h.auth_path),
                )?;
                tracing::info!(account = %account_id, path = %h.auth_path, "wrote the rotated sign-in back into the Codex CLI's auth.json");
            }
            Ok(Outcome::AlreadyCurrent) => {}
            Ok(other) => {
                tracing::info!(account = %account_id, path = %h.auth_path, "Codex CLI write-back skipped: {other:?}");
            }
            Err(e) => {
                tracing::warn!(account = %account_id, path = %h.auth_path, "Codex CLI write-back failed: {e}");
            }
        }
        out.push((h.auth_path.clone(), outcome?));
    }
    Ok(out)
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> WritebackError + '_ {
    move |e| WritebackError::Io {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

fn write_one(
    store: &Store,
    vault: &Vault,
    account_id: &str,
    holder: &PathHolder,
    cur: &Current,
) -> Result<Outcome, WritebackError> {
    let link = Path::new(&holder.auth_path);
    let Some(target) = resolve_links(link).map_err(io_err(link))? else {
        return Ok(Outcome::Absent);
    };
    let meta = std::fs::metadata(&target).map_err(io_err(&target))?;
    if !meta.is_file() {
        return Ok(Outcome::LeftAlone("not a regular file"));
    }
    if hard_linked(&meta) {
        return Ok(Outcome::LeftAlone(
            "hard-linked (an atomic replace would split the links)",
        ));
    }
    let abs_link = std::path::absolute(link).map_err(io_err(link))?;
    let Some(_lock) = CliLock::acquire(&abs_link, &target).map_err(io_err(&target))? else {
        return Ok(Outcome::LeftAlone(
            "the Codex CLI held its lock on the file too long",
        ));
    };
    let Some(before) = read_capped(&target).map_err(io_err(&target))? else {
        return Ok(Outcome::Absent);
    };
    let Some(file_refresh) = file_refresh_token(&before) else {
        return Ok(Outcome::LeftAlone("not a ChatGPT sign-in"));
    };
    let file_digest = vault.refresh_digest(&file_refresh);
    if file_digest.ct_eq(&cur.digest) {
        return Ok(Outcome::AlreadyCurrent);
    }
    let ours = TokenDigest::from_slice(&holder.token_digest).is_some_and(|d| d.ct_eq(&file_digest))
        || store
            .digest_origin(account_id, file_digest.as_bytes())?
            .is_some_and(|o| o != DigestOrigin::Detached);
    if !ours {
        return Ok(Outcome::LeftAlone(
            "it holds another sign-in now (signed in elsewhere)",
        ));
    }
    let Some(after) = merged(&before, cur) else {
        return Ok(Outcome::LeftAlone("not a ChatGPT sign-in"));
    };
    let tmp = write_temp_beside(&target, &after).map_err(io_err(&target))?;
    // Re-read right before the replace: a CLI that writes without the lock must not lose to us.
    let again = read_capped(&target).map_err(io_err(&target))?;
    if again.as_deref() != Some(&before[..]) {
        let _ = std::fs::remove_file(&tmp);
        return Ok(Outcome::LeftAlone("it changed while we were writing"));
    }
    if let Err(e) = std::fs::rename(&tmp, &target) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(&target)(e));
    }
    if let Some(dir) = target.parent() {
        // The rename is durable once the directory is: a power cut must not bring the old file back.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(Outcome::Written)
}

/// Follows `link` to the file it names (absolute), or `None` when nothing is there.
fn resolve_links(link: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut p = std::path::absolute(link)?;
    for _ in 0..MAX_LINKS {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !meta.file_type().is_symlink() {
            return Ok(Some(p));
        }
        let to = std::fs::read_link(&p)?;
        p = match p.parent() {
            Some(dir) if to.is_relative() => dir.join(to),
            _ => to,
        };
    }
    Err(std::io::Error::other("too many symbolic links"))
}

#[cfg(unix)]
fn hard_linked(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.nlink() > 1
}

#[cfg(not(unix))]
fn hard_linked(_meta: &std::fs::Metadata) -> bool {
    false
}

fn read_capped(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other("larger than any Codex auth.json"));
    }
    Ok(Some(buf))
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b)
}

fn file_refresh_token(bytes: &[u8]) -> Option<Secret> {
    let v: Value = serde_json::from_slice(strip_bom(bytes)).ok()?;
    v.get("tokens")?
        .get("refresh_token")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(Secret::new)
}

/// The file with our current tokens in place of its own; every other key (known or not) kept.
fn merged(before: &[u8], cur: &Current) -> Option<Vec<u8>> {
    let mut root: Value = serde_json::from_slice(strip_bom(before)).ok()?;
    let obj = root.as_object_mut()?;
    let tokens = obj.get_mut("tokens")?.as_object_mut()?;
    tokens.insert(
        "access_token".into(),
        Value::String(cur.access.expose().into()),
    );
    tokens.insert(
        "refresh_token".into(),
        Value::String(cur.refresh.expose().into()),
    );
    // Very old files keep the id_token's claims as an object; any JWT we hold replaces it.
    if cur.id_token.expose().split('.').count() == 3 {
        tokens.insert(
            "id_token".into(),
            Value::String(cur.id_token.expose().into()),
        );
    }
    let at = cur.last_refresh_at.unwrap_or_else(now_ms);
    obj.insert("last_refresh".into(), Value::String(ms_to_rfc3339(at)));
    let mut out = serde_json::to_vec_pretty(&root).ok()?;
    out.push(b'\n');
    Some(out)
}

/// A new 0600 file beside `target` holding `bytes`, flushed to disk; returns its path.
fn write_temp_beside(target: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("the file has no directory"))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "auth.json".into());
    let tmp = dir.join(format!(
        ".{name}.codex-vault-{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    let written = f.write_all(bytes).and_then(|_| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// The Codex CLI's own locks around a credential commit, taken in its order and held while we
/// read, check and replace the file; released on drop. Observed (strace) in Codex CLI 0.169.0 and
/// 0.171.0 alike: `flock(LOCK_EX)` on `auth.lock` in the directory the CLI names its `auth.json`
/// in (its `CODEX_HOME`, beside a symlink, not its target), a re-read, then
/// `flock(LOCK_EX | LOCK_NB)` on `<target>.lock` beside the resolved file, a re-read, a 0600
/// `.auth-XXXXXX` beside the target, fsync, rename. Both are advisory `flock` locks on files the
/// CLI creates on demand, so we create them as it does (never the auth.json itself).
struct CliLock {
    _store: File,
    _file: File,
}

impl CliLock {
    fn paths(link: &Path, target: &Path) -> (PathBuf, PathBuf) {
        let store = link.with_file_name("auth.lock");
        let mut name = target
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "auth.json".into());
        name.push(".lock");
        (store, target.with_file_name(name))
    }

    /// Waits up to `LOCK_WAIT` in all; `None` when the CLI kept a lock that long.
    fn acquire(link: &Path, target: &Path) -> std::io::Result<Option<CliLock>> {
        let (store_path, file_path) = Self::paths(link, target);
        let deadline = Instant::now() + LOCK_WAIT;
        let Some(store) = lock_file(&store_path, deadline)? else {
            return Ok(None);
        };
        let Some(file) = lock_file(&file_path, deadline)? else {
            return Ok(None);
        };
        Ok(Some(CliLock {
            _store: store,
            _file: file,
        }))
    }
}

fn lock_file(path: &Path, deadline: Instant) -> std::io::Result<Option<File>> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let file = opts.open(path)?;
    loop {
        match try_flock(&file) {
            Ok(true) => return Ok(Some(file)),
            Ok(false) if Instant::now() < deadline => {
                // Another program's lock sends no notification: look again shortly.
                std::thread::sleep(LOCK_POLL);
            }
            Ok(false) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: true when taken, false when someone else holds it. Released when
/// the file is closed.
#[cfg(unix)]
fn try_flock(file: &File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a file descriptor we own and keep open for the call; no memory is shared.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// The Codex CLI's locks are `flock`s on Unix; elsewhere there is nothing of it to honour.
#[cfg(not(unix))]
fn try_flock(_file: &File) -> std::io::Result<bool> {
    Ok(true)
}
