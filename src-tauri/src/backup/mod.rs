//! The encrypted backup file (README.md § Backup and restore): what it holds ([`BackupDoc`]) and
//! how it is sealed ([`sealed`]: the age format with a passphrase through scrypt). What a backup
//! takes from the store and what a restore does with it are use cases (`accounts::restore`).
//!
//! The plaintext is JSON, so a future build can read an old file field by field; `version` goes
//! up only when an old build could no longer read a new file correctly, and a file newer than
//! this build is refused before anything is written.

pub mod sealed;

use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `format` every backup names: what tells ours from another age file.
pub const FORMAT: &str = "codex-vault-backup";
/// The newest backup format this build writes and reads.
pub const VERSION: u32 = 1;

/// A whole backup: every account with its tokens and history, and the shared settings. Never
/// logged or shown: its `Debug` is the derived one over `Secret`s, which print fingerprints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupDoc {
    pub format: String,
    pub version: u32,
    /// When it was written (RFC 3339).
    pub created_at: String,
    /// The Codex Vault that wrote it.
    pub app_version: String,
    /// The store it came from (tells "restored into the same store" apart).
    pub store_id: String,
    pub accounts: Vec<BackupAccount>,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// One account as a backup carries it. Times are Unix milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupAccount {
    pub id: String,
    pub label: String,
    pub email: Option<String>,
    pub chatgpt_account_id: String,
    pub chatgpt_user_id: String,
    pub plan: Option<String>,
    #[serde(default)]
    pub fedramp: bool,
    #[serde(default)]
    pub disabled: bool,
    pub created_at: i64,
    pub last_refresh_at: Option<i64>,
    pub access_expires_at: Option<i64>,
    pub access_issued_at: Option<i64>,
    /// A terminal failure: the account needs a sign-in wherever it is restored.
    pub failure: Option<BackupFailure>,
    pub tokens: BackupTokens,
    /// Its history, oldest first.
    #[serde(default)]
    pub events: Vec<BackupEvent>,
    /// Holders outside the vault the broker knew (docs/broker.md), by which token they hold.
    #[serde(default)]
    pub holders: Vec<BackupHolder>,
    /// What the broker knew of where the current and the previous refresh token went.
    #[serde(default)]
    pub current_origin: Option<String>,
    #[serde(default)]
    pub previous_origin: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupTokens {
    #[serde(with = "secret_str")]
    pub access_token: Secret,
    #[serde(with = "secret_str")]
    pub id_token: Secret,
    #[serde(with = "secret_str")]
    pub refresh_token: Secret,
    #[serde(default, with = "secret_opt")]
    pub previous_refresh_token: Option<Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupFailure {
    pub code: String,
    pub message: String,
    pub http_status: Option<u16>,
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupEvent {
    pub at: i64,
    pub kind: String,
    pub detail: Option<String>,
}

/// Which of the account's refresh tokens a holder holds: the broker's digests are keyed by the
/// store's data key, so a digest cannot travel; the token it names can, and is digested again
/// under the restoring store's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldToken {
    Current,
    Previous,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupHolder {
    /// The Codex `auth.json` the broker writes rotations back into, or none (a holder known only
    /// by the tokens it presents).
    pub auth_path: Option<String>,
    pub holds: HeldToken,
    pub seen_at: Option<i64>,
}

/// `Secret` in and out of the document as a plain string (only inside the sealed file).
mod secret_str {
    use crate::secret::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

mod secret_opt {
    use crate::secret::Secret;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(v.expose()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Option::<String>::deserialize(d).map(|o| o.map(Secret::new))
    }
}
