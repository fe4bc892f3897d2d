//! Where the data key lives: the OS keychain (default) or an opt-in 0600 file. The key is read at
//! most once per process and store, then shared; it is created only for a store with no sealed data.

use super::seal::DataKey;
use super::{KeyRequest, VaultError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use zeroize::Zeroizing;

pub const KEYCHAIN_SERVICE: &str = "codex-vault";
pub const KEY_FILE_NAME: &str = "data-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum KeyStoreKind {
    Keychain,
    File,
}

impl KeyStoreKind {
    /// `CODEX_VAULT_KEY_STORE=file` is the explicit opt-in for machines without a keychain.
    pub fn from_env() -> Result<KeyStoreKind, String> {
        match std::env::var("CODEX_VAULT_KEY_STORE").ok().as_deref() {
            None | Some("") | Some("keychain") => Ok(KeyStoreKind::Keychain),
            Some("file") => Ok(KeyStoreKind::File),
            Some(other) => Err(format!(
                "CODEX_VAULT_KEY_STORE must be `keychain` or `file`, not `{other}`"
            )),
        }
    }
}

static KEYCHAIN_READS: AtomicU64 = AtomicU64::new(0);
static KEY_CACHE: OnceLock<Mutex<HashMap<String, Arc<DataKey>>>> = OnceLock::new();

/// How many times this process read a data key from its key store (the benchmark and a test
/// check it stays at 1 per store).
pub fn keychain_reads() -> u64 {
    KEYCHAIN_READS.load(Ordering::Relaxed)
}

fn cache() -> &'static Mutex<HashMap<String, Arc<DataKey>>> {
    KEY_CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn cache_key(req: &KeyRequest<'_>) -> String {
    format!("{:?}:{}", req.kind, req.store_id)
}

fn backend(req: &KeyRequest<'_>) -> Box<dyn KeyBackend> {
    match req.kind {
        KeyStoreKind::Keychain => Box::new(Keychain::new(req.store_id)),
        KeyStoreKind::File => Box::new(KeyFile {
            path: req.data_dir.join(KEY_FILE_NAME),
        }),
    }
}

/// The store's key if it exists: from this process's cache, else read once from the key store.
pub(super) fn load(req: &KeyRequest<'_>) -> Result<Option<Arc<DataKey>>, VaultError> {
    // A poisoned lock only means another thread panicked mid-insert; the map itself is intact.
    let mut cached = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = cached.get(&cache_key(req)) {
        return Ok(Some(k.clone()));
    }
    KEYCHAIN_READS.fetch_add(1, Ordering::Relaxed);
    let Some(key) = backend(req).load()? else {
        return Ok(None);
    };
    let key = Arc::new(key);
    cached.insert(cache_key(req), key.clone());
    Ok(Some(key))
}

/// Mints and saves a new key. The caller holds the store's write lock and has checked, under
/// it, that no key exists and nothing is sealed: two processes can never both mint one.
pub(super) fn create(req: &KeyRequest<'_>) -> Result<Arc<DataKey>, VaultError> {
    let key = DataKey::generate();
    backend(req).save(&key)?;
    tracing::info!(store = req.store_id, kind = ?req.kind, "created a new data key for an empty store");
    let key = Arc::new(key);
    cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(cache_key(req), key.clone());
    Ok(key)
}

trait KeyBackend {
    fn load(&self) -> Result<Option<DataKey>, VaultError>;
    fn save(&self, key: &DataKey) -> Result<(), VaultError>;
}

fn encode(key: &DataKey) -> Zeroizing<String> {
    Zeroizing::new(STANDARD.encode(key.as_bytes()))
}

fn decode(text: &str) -> Result<DataKey, VaultError> {
    let bytes =
        Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| VaultError::KeyCorrupt {
                    detail: "not base64".into(),
                })?,
        );
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| VaultError::KeyCorrupt {
            detail: format!("{} bytes instead of 32", bytes.len()),
        })?;
    Ok(DataKey::from_bytes(arr))
}

/// The OS keychain. Every operation (one read per process, one write when a store is born) opens
/// its own connection to the platform's real store (never a mock) on a short-lived thread, and
/// the connection closes when it is done: nothing of the keychain client stays behind to wake an
/// idle process. On Linux the Secret Service client (zbus) runs on tokio (`rt-tokio-*` in
/// Cargo.toml): on async-io, the connect hands work to the `blocking` crate's pool, whose last
/// thread never exits and wakes every 500 ms for the life of the process. The thread is needed
/// because zbus's blocking calls then run through its own tokio runtime's `block_on`, which
/// panics on a thread already inside a runtime (our callers may be). A keychain that was
/// unreachable (no session bus yet, the keyring daemon not started) is simply tried again by the
/// next open, so the app recovers once the user fixes it.
struct Keychain {
    user: String,
}

/// One operation on the keychain entry, shared so a second try can run it again.
type EntryOp<T> = dyn Fn(&keyring_core::Entry) -> Result<T, VaultError> + Send + Sync;

impl Keychain {
    fn new(store_id: &str) -> Keychain {
        Keychain {
            user: format!("data-key:{store_id}"),
        }
    }

    /// Runs `op` on the keychain entry, on a thread that ends with it; once more, on a fresh
    /// connection, if the keyring daemon vanished before it answered (see [`daemon_vanished`]).
    fn with_entry<T: Send + 'static>(
        &self,
        op: impl Fn(&keyring_core::Entry) -> Result<T, VaultError> + Send + Sync + 'static,
    ) -> Result<T, VaultError> {
        let op = Arc::new(op);
        match self.attempt(op.clone()) {
            Err(e) if daemon_vanished(&e) => {
                tracing::warn!(error = %e, "the keyring daemon went away mid-call; asking again");
                self.attempt(op)
            }
            done => done,
        }
    }

    fn attempt<T: Send + 'static>(&self, op: Arc<EntryOp<T>>) -> Result<T, VaultError> {
        let user = self.user.clone();
        std::thread::Builder::new()
            .name("vault-keychain".into())
            .spawn(move || {
                let store = platform_store().map_err(unavailable)?;
                let entry = store
                    .build(KEYCHAIN_SERVICE, &user, None)
                    .map_err(unavailable)?;
                op(&entry)
            })
            .map_err(|e| VaultError::KeychainUnavailable {
                detail: format!("cannot start the keychain thread: {e}"),
            })?
            .join()
            // A panic inside the keychain client is a keychain failure, not ours to re-raise.
            .unwrap_or_else(|_| {
                Err(VaultError::KeychainUnavailable {
                    detail: "the keychain client panicked".into(),
                })
            })
    }
}

/// The Secret Service daemon left the bus while our call was waiting for its answer: it was
/// restarted, or it crashed (gnome-keyring aborts when another client vanishes mid-call,
/// GNOME/gnome-keyring#196, and systemd or D-Bus activation starts a new one). One more try on a
/// fresh connection reaches the new daemon, which prompts to unlock if it has to. Repeating is
/// safe: a read changes nothing and a save writes the same key again. A call that timed out
/// (also `NoReply`, but without a disconnect) is not repeated: that would double a long wait.
fn daemon_vanished(e: &VaultError) -> bool {
    matches!(e, VaultError::KeychainUnavailable { detail }
        if detail.contains("org.freedesktop.DBus.Error.NoReply")
            && detail.to_ascii_lowercase().contains("disconnected"))
}

/// The platform's real credential store, freshly connected.
fn platform_store() -> keyring_core::Result<Arc<keyring_core::api::CredentialStore>> {
    #[cfg(target_os = "linux")]
    let store = zbus_secret_service_keyring_store::Store::new()?;
    #[cfg(target_os = "macos")]
    let store = apple_native_keyring_store::keychain::Store::new()?;
    #[cfg(target_os = "windows")]
    let store = windows_native_keyring_store::Store::new()?;
    Ok(store)
}

fn unavailable(e: keyring_core::Error) -> VaultError {
    VaultError::KeychainUnavailable {
        detail: e.to_string(),
    }
}

impl KeyBackend for Keychain {
    fn load(&self) -> Result<Option<DataKey>, VaultError> {
        self.with_entry(|entry| match entry.get_password() {
            Ok(text) => decode(&Zeroizing::new(text)).map(Some),
            // NoEntry is how "no key yet" is told apart from "keychain unavailable".
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(unavailable(e)),
        })
    }

    fn save(&self, key: &DataKey) -> Result<(), VaultError> {
        let text = encode(key);
        self.with_entry(move |entry| entry.set_password(&text).map_err(unavailable))
    }
}

struct KeyFile {
    path: PathBuf,
}

impl KeyBackend for KeyFile {
    fn load(&self) -> Result<Option<DataKey>, VaultError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => decode(&Zeroizing::new(text)).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(file_err(&self.path, e)),
        }
    }

    fn save(&self, key: &DataKey) -> Result<(), VaultError> {
        // Written whole to a temp file, then linked into place: never a half-written key file,
        // and never a second key over a first (the link fails if one exists).
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        crate::fsutil::write_private_new(&tmp, encode(key).as_bytes())
            .map_err(|e| file_err(&tmp, e))?;
        let linked = std::fs::hard_link(&tmp, &self.path);
        let _ = std::fs::remove_file(&tmp);
        linked.map_err(|e| file_err(&self.path, e))
    }
}

fn file_err(path: &Path, e: std::io::Error) -> VaultError {
    VaultError::KeyFile {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(detail: &str) -> VaultError {
        VaultError::KeychainUnavailable {
            detail: detail.into(),
        }
    }

    #[test]
    fn only_a_daemon_that_left_mid_call_is_asked_again() {
        // As zbus reports it through keyring-core when gnome-keyring aborts under a call.
        assert!(daemon_vanished(&unavailable(
            "Platform failure: zbus error: org.freedesktop.DBus.Error.NoReply: Message recipient \
             disconnected from message bus without replying"
        )));
        // A timeout is NoReply too, but repeating it would double a long wait.
        assert!(!daemon_vanished(&unavailable(
            "Platform failure: zbus error: org.freedesktop.DBus.Error.NoReply: Did not receive a \
             reply"
        )));
        assert!(!daemon_vanished(&unavailable(
            "Couldn't access platform storage: SS error: result not returned from SS API"
        )));
        assert!(!daemon_vanished(&VaultError::KeyCorrupt {
            detail: "disconnected NoReply".into()
        }));
    }
}
