//! Envelope encryption: one random 256-bit data key per store, kept in the OS keychain (or, by
//! explicit opt-in, a 0600 file), seals every token with XChaCha20-Poly1305 before it reaches SQLite.
//! Why one key rather than one keychain item per account: README.md § How secrets are protected.

mod keystore;
mod seal;

pub use keystore::{keychain_reads, KeyStoreKind};
pub use seal::{DataKey, Field};

use crate::error_code::ErrorCode;
use crate::secret::Secret;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("the OS keychain is unavailable ({detail}). On Linux, install and unlock a Secret Service (gnome-keyring or KeePassXC) and sign in to a desktop session; on a headless machine you may opt in to a key file with CODEX_VAULT_KEY_STORE=file")]
    KeychainUnavailable { detail: String },
    #[error("the data key for this store (keychain item `codex-vault` / `data-key:{store_id}`) is missing, but the store holds encrypted sign-ins. Nothing was changed. Restore the keychain item (for example from a keyring backup), or move the data directory aside and start fresh")]
    KeyMissing { store_id: String },
    #[error("the data key for this store does not open its data (keychain item `data-key:{store_id}` was replaced?). Nothing was changed")]
    KeyMismatch { store_id: String },
    #[error("the data key for this store is unreadable ({detail}). Nothing was changed")]
    KeyCorrupt { detail: String },
    #[error("the key file {path} could not be used: {detail}")]
    KeyFile { path: String, detail: String },
    #[error("an encrypted {field} for account {account_id} does not open (damaged, or moved from another account)")]
    Tampered {
        account_id: String,
        field: &'static str,
    },
}

impl VaultError {
    pub fn code(&self) -> ErrorCode {
        match self {
            VaultError::KeychainUnavailable { .. } => ErrorCode::KeychainUnavailable,
            VaultError::KeyMissing { .. } => ErrorCode::KeyMissing,
            VaultError::KeyMismatch { .. } => ErrorCode::KeyMismatch,
            VaultError::KeyCorrupt { .. } => ErrorCode::KeyCorrupt,
            VaultError::KeyFile { .. } => ErrorCode::KeyFile,
            VaultError::Tampered { .. } => ErrorCode::SecretTampered,
        }
    }
}

/// What the store tells the vault when it opens: decides whether a key may be created.
pub struct KeyRequest<'a> {
    pub store_id: &'a str,
    pub data_dir: &'a Path,
    pub kind: KeyStoreKind,
}

/// An opened vault: the data key of one store, shared by everything in this process.
#[derive(Clone)]
pub struct Vault {
    key: Arc<DataKey>,
    kind: KeyStoreKind,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// The store's existing data key (read once per process), or `None` if there is none yet.
    pub fn load(req: &KeyRequest<'_>) -> Result<Option<Vault>, VaultError> {
        Ok(keystore::load(req)?.map(|key| Vault {
            key,
            kind: req.kind,
        }))
    }

    /// Mints a key for an empty store. Only under the store's write lock, after `load` found none
    /// and no sealed data exists (see `Service::open`).
    pub fn create(req: &KeyRequest<'_>) -> Result<Vault, VaultError> {
        Ok(Vault {
            key: keystore::create(req)?,
            kind: req.kind,
        })
    }

    pub fn kind(&self) -> KeyStoreKind {
        self.kind
    }

    pub fn seal(&self, account_id: &str, field: Field, plaintext: &Secret) -> Vec<u8> {
        self.key
            .seal(account_id, field, plaintext.expose().as_bytes())
    }

    pub fn open(&self, account_id: &str, field: Field, blob: &[u8]) -> Result<Secret, VaultError> {
        let bytes = self
            .key
            .open(account_id, field, blob)
            .ok_or_else(|| VaultError::Tampered {
                account_id: account_id.to_string(),
                field: field.name(),
            })?;
        String::from_utf8(bytes)
            .map(Secret::new)
            .map_err(|_| VaultError::Tampered {
                account_id: account_id.to_string(),
                field: field.name(),
            })
    }

    /// The keyed digest (HMAC-SHA256 under a key derived from the data key) by which the refresh
    /// broker knows a refresh token it does not keep: full length, useless without the key.
    pub fn refresh_digest(&self, token: &Secret) -> TokenDigest {
        TokenDigest(
            self.key
                .keyed_digest("refresh_token", token.expose().as_bytes()),
        )
    }

    /// A known plaintext sealed under the key, kept in the DB, so a wrong key is told apart from damage.
    pub fn key_check(&self) -> Vec<u8> {
        self.key.seal("", Field::KeyCheck, KEY_CHECK_PLAINTEXT)
    }

    pub fn verify_key_check(&self, blob: &[u8]) -> bool {
        self.key.open("", Field::KeyCheck, blob).as_deref() == Some(KEY_CHECK_PLAINTEXT)
    }
}

/// A refresh token's keyed digest ([`Vault::refresh_digest`]). Compared in constant time; its
/// `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenDigest(pub [u8; 32]);

impl TokenDigest {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn from_slice(b: &[u8]) -> Option<TokenDigest> {
        b.try_into().ok().map(TokenDigest)
    }

    /// Constant-time equality: a comparison's timing says nothing about where two digests differ.
    pub fn ct_eq(&self, other: &TokenDigest) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

const KEY_CHECK_PLAINTEXT: &[u8] = b"codex-vault key check v1";
