//! Who owns an imported Codex sign-in, and shared-grant detection.
//!
//! A refresh token is single-use and rotates on every refresh (protocol.md § OAuth). After an
//! import, the Codex CLI's `auth.json` and the vault hold the same chain: whichever refreshes
//! second is told "already used" and, upstream, a reuse may revoke the whole family. So an import
//! of a live `auth.json` settles who owns it:
//! - **broker** (the default for the Codex CLI's own file): the CLI keeps its file and refreshes
//!   through the vault's `/oauth/token` (`CODEX_REFRESH_TOKEN_URL_OVERRIDE`): one redeemer.
//! - **detach**: the CLI's `auth.json` is moved aside to a dated 0600 backup, nothing is revoked;
//!   the vault alone holds the chain.
//!
//! Either way `codex logout` must never run on the imported sign-in without the override: it
//! revokes the grant upstream, for the vault too.

use crate::accounts::{ImportOutcome, Service};
use crate::error::AppError;
use crate::oauth::auth_json::{self, Credential};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// The env line a brokered Codex CLI needs, for an endpoint on `port`: a whole shell line
/// (`export …`), so what is copied can be pasted into a shell or a profile as it is.
pub fn refresh_override_env(port: u16) -> String {
    format!("export CODEX_REFRESH_TOKEN_URL_OVERRIDE=http://127.0.0.1:{port}/oauth/token")
}

pub const LOGOUT_WARNING: &str = "never run `codex logout` on an imported sign-in (unless the CLI refreshes through Codex Vault): it revokes the sign-in upstream, for Codex Vault too";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum Ownership {
    /// The CLI keeps its auth.json and refreshes through Codex Vault.
    Broker,
    /// The CLI's auth.json is moved aside (dated 0600 backup); Codex Vault alone holds the sign-in.
    Detach,
}

/// What happened to the CLI's file, for the CLI to print and the UI to show.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ts_rs::TS)]
#[ts(export)]
pub struct OwnershipReport {
    pub mode: Ownership,
    /// The CLI's auth.json the choice applied to.
    pub path: String,
    /// Where it was moved (detach).
    pub backup: Option<String>,
    /// The env line to add to the CLI's environment (broker).
    pub env: Option<String>,
    pub warning: String,
}

/// An import together with what was done about the CLI's copy.
#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct OwnedImport {
    #[serde(flatten)]
    pub outcome: ImportOutcome,
    pub codex_cli: Option<OwnershipReport>,
}

pub use crate::error::OwnershipError;

/// The Codex `auth.json` files we can see: `$CODEX_HOME/auth.json` and `~/.codex/auth.json`.
pub fn visible_codex_auth_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let candidates = [
        std::env::var_os("CODEX_HOME")
            .filter(|v| !v.is_empty())
            .map(|d| PathBuf::from(d).join("auth.json")),
        dirs::home_dir().map(|h| h.join(".codex").join("auth.json")),
    ];
    for p in candidates.into_iter().flatten() {
        let p = std::fs::canonicalize(&p).unwrap_or(p);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// True when `path` is one of the Codex CLI's own auth.json files.
pub fn is_visible_codex_auth(path: &Path) -> bool {
    let p = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    visible_codex_auth_paths().contains(&p)
}

/// Moves `path` to `<path>.codex-vault-backup-<UTC time>` in the same directory (a rename: atomic,
/// never a copy left behind), 0600, never overwriting an earlier backup.
pub fn detach_file(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "auth.json".into());
    let mut backup = path.with_file_name(format!("{name}.codex-vault-backup-{stamp}"));
    let mut n = 2;
    while backup.exists() {
        backup = path.with_file_name(format!("{name}.codex-vault-backup-{stamp}-{n}"));
        n += 1;
    }
    #[cfg(unix)]
    {
        // Restrict before the move, so the backup is never readable by others for a moment.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(path, &backup)?;
    Ok(backup)
}

/// The refresh-token fingerprint held live in a Codex auth.json, if the file is a ChatGPT sign-in.
fn file_refresh_fingerprint(path: &Path) -> Option<String> {
    let bytes = auth_json::read_file(path).ok()?;
    let cred = auth_json::parse(&bytes).ok()?;
    Some(cred.tokens.refresh_token.fingerprint())
}

/// How a holder's file is remembered: absolute, symlinks not resolved (a link is followed
/// afresh at each write-back, so it stays a link).
fn holder_path(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl Service {
    /// Imports `cred` (read from `source`, when it came from a file) and applies `ownership` to
    /// that file. The UI calls this with the user's choice; `accounts import` with its flag.
    pub fn import_owned(
        &self,
        cred: &Credential,
        label: Option<&str>,
        source: Option<&Path>,
        ownership: Option<Ownership>,
        endpoint_port: u16,
    ) -> Result<OwnedImport, AppError> {
        let canonical =
            source.map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()));
        let held_before = if self.imported_before_from(cred, canonical.as_deref())? {
            None
        } else {
            self.held_copy(&cred.tokens.refresh_token, cred)?
        };
        let outcome = self.import_from(cred, label, canonical.as_deref())?;
        let account_id = outcome.account().id.clone();
        let report = self.apply_ownership(&account_id, source, ownership, endpoint_port)?;
        self.remember_import_holder(&account_id, cred, source, ownership)?;
        self.flag_shared_after_import(&account_id, cred, source, ownership, held_before)?;
        let mut outcome = outcome;
        *outcome.account_mut() = self.view(&account_id)?;
        Ok(OwnedImport {
            outcome,
            codex_cli: report,
        })
    }

    /// The file this account was imported from before, imported again (by any path to it), is
    /// the same copy, not a second one: only a different file, or a paste, is "another copy".
    fn imported_before_from(
        &self,
        cred: &Credential,
        canonical: Option<&Path>,
    ) -> Result<bool, AppError> {
        let Some(p) = canonical else {
            return Ok(false);
        };
        let id = &cred.identity;
        Ok(
            match self
                .store()
                .find_by_identity(&id.chatgpt_account_id, &id.chatgpt_user_id)?
            {
                Some(a) => self
                    .store()
                    .imported_from(&a.id, &p.display().to_string())?,
                None => false,
            },
        )
    }

    /// Does what `ownership` says to the file at `source`: detach moves it aside (recorded in
    /// the account's history), broker leaves it and says which env line the CLI needs.
    fn apply_ownership(
        &self,
        account_id: &str,
        source: Option<&Path>,
        ownership: Option<Ownership>,
        endpoint_port: u16,
    ) -> Result<Option<OwnershipReport>, AppError> {
        Ok(match (source, ownership) {
            (Some(path), Some(Ownership::Detach)) => {
                let backup = detach_file(path).map_err(|e| {
                    AppError::from(OwnershipError::Detach {
                        path: path.display().to_string(),
                        detail: e.to_string(),
                    })
                })?;
                self.store().append_event(
                    account_id,
                    "codex_cli_detached",
                    Some(&format!("moved {} to {}", path.display(), backup.display())),
                )?;
                Some(OwnershipReport {
                    mode: Ownership::Detach,
                    path: path.display().to_string(),
                    backup: Some(backup.display().to_string()),
                    env: None,
                    warning: LOGOUT_WARNING.into(),
                })
            }
            (Some(path), Some(Ownership::Broker)) => Some(OwnershipReport {
                mode: Ownership::Broker,
                path: path.display().to_string(),
                backup: None,
                env: Some(refresh_override_env(endpoint_port)),
                warning: LOGOUT_WARNING.into(),
            }),
            _ => None,
        })
    }

    /// Raises the shared-grant flag after an import that left the grant with a second holder.
    /// `held_before` is the account that already held this grant or slot before the import.
    fn flag_shared_after_import(
        &self,
        account_id: &str,
        cred: &Credential,
        source: Option<&Path>,
        ownership: Option<Ownership>,
        held_before: Option<String>,
    ) -> Result<(), AppError> {
        // A held slot counts only when the vault now holds the file's chain: a re-import that
        // kept our own newer, separate grant leaves the file's copy as nobody's concern of ours.
        let holds_files_chain = self
            .store()
            .refresh_fingerprints()?
            .into_iter()
            .find(|r| r.account_id == account_id)
            .is_some_and(|r| {
                let fp = cred.tokens.refresh_token.fingerprint();
                ct_eq(&r.refresh_fingerprint, &fp)
                    || r.previous_refresh_fingerprint
                        .as_deref()
                        .is_some_and(|p| ct_eq(p, &fp))
            });
        // Which copy, in words (never a bare path: only a live Codex auth.json is watched as one).
        let place = self.live_in_codex_auth(account_id)?.or(held_before
            .filter(|_| holds_files_chain)
            .map(|_| match source {
                Some(p) => format!(
                    "this sign-in was already held when another copy was imported from {}",
                    p.display()
                ),
                None => "this sign-in was already held when another copy was pasted or read from standard input".to_string(),
            }));
        // An import only ever raises the flag; it clears when the other holder goes away (a
        // detach here, or `recheck_shared_grants` finding the file gone), not because some
        // unrelated older file was imported.
        if place.is_some() || ownership == Some(Ownership::Detach) {
            self.store()
                .set_shared_grant(account_id, place.as_deref())?;
        }
        Ok(())
    }

    /// Tells the refresh broker who holds an imported token (docs/broker.md): a brokered file is
    /// a holder we write rotations back into; any other import (another file, stdin, a paste) a
    /// holder known only by its token; a detached file's backup holds a token never honoured.
    /// Only a token the vault now holds as current makes a holder: an older file's never does.
    pub(crate) fn remember_import_holder(
        &self,
        account_id: &str,
        cred: &Credential,
        source: Option<&Path>,
        ownership: Option<Ownership>,
    ) -> Result<(), AppError> {
        let digest = self.vault().refresh_digest(&cred.tokens.refresh_token);
        if let (Some(path), Some(Ownership::Detach)) = (source, ownership) {
            self.store()
                .mark_detached(account_id, &holder_path(path), digest.as_bytes())?;
            return Ok(());
        }
        let Some(s) = self.store().secrets(account_id)? else {
            return Ok(());
        };
        let current = self.vault().open(
            account_id,
            crate::vault::Field::RefreshToken,
            &s.refresh_token,
        )?;
        if !ct_eq(current.expose(), cred.tokens.refresh_token.expose()) {
            return Ok(());
        }
        let path = match (source, ownership) {
            (Some(p), Some(Ownership::Broker)) => Some(holder_path(p)),
            _ => None,
        };
        self.store()
            .register_holder(account_id, path.as_deref(), digest.as_bytes())?;
        Ok(())
    }

    /// The Codex CLI's own auth.json, imported with `ownership`.
    pub fn import_codex_cli_auth_owned(
        &self,
        label: Option<&str>,
        ownership: Ownership,
        endpoint_port: u16,
    ) -> Result<OwnedImport, AppError> {
        let (path, cred) = crate::accounts::preview::read_codex_cli()?;
        self.import_owned(&cred, label, Some(&path), Some(ownership), endpoint_port)
    }

    /// Before an import: does the vault already hold this grant (same refresh token, current or
    /// previous) or this ChatGPT account slot? Returns that account's label.
    fn held_copy(&self, refresh: &Secret, cred: &Credential) -> Result<Option<String>, AppError> {
        let fp = refresh.fingerprint();
        for row in self.store().refresh_fingerprints()? {
            let same_token = ct_eq(&row.refresh_fingerprint, &fp)
                || row
                    .previous_refresh_fingerprint
                    .as_deref()
                    .is_some_and(|p| ct_eq(p, &fp));
            // The same ChatGPT account slot (account id + user id; one workspace's other members
            // are other people, not copies) already held means the grant now has two holders.
            let same_slot = row.chatgpt_account_id == cred.identity.chatgpt_account_id
                && row.chatgpt_user_id == cred.identity.chatgpt_user_id;
            if same_token || same_slot {
                if let Some(a) = self.store().get_account(&row.account_id)? {
                    return Ok(Some(a.label));
                }
            }
        }
        Ok(None)
    }

    /// A visible Codex auth.json holding this account's current (or just previous) refresh token.
    fn live_in_codex_auth(&self, account_id: &str) -> Result<Option<String>, AppError> {
        let Some(row) = self
            .store()
            .refresh_fingerprints()?
            .into_iter()
            .find(|r| r.account_id == account_id)
        else {
            return Ok(None);
        };
        for path in visible_codex_auth_paths() {
            let Some(fp) = file_refresh_fingerprint(&path) else {
                continue;
            };
            let ours = ct_eq(&fp, &row.refresh_fingerprint)
                || row
                    .previous_refresh_fingerprint
                    .as_deref()
                    .is_some_and(|p| ct_eq(p, &fp));
            if ours {
                return Ok(Some(path.display().to_string()));
            }
        }
        Ok(None)
    }

    /// Clears the shared-grant flags that no longer hold. The job is health's
    /// (`Health::recheck_shared_grants`, which decides with `health::shared_grants::stale`).
    pub fn recheck_shared_grants(&self) -> Result<(), AppError> {
        crate::health::Health::new(self.store().clone()).recheck_shared_grants()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_moves_to_a_private_dated_backup() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.json");
        std::fs::write(&p, b"{}").unwrap();
        let b = detach_file(&p).unwrap();
        assert!(!p.exists());
        assert_eq!(std::fs::read(&b).unwrap(), b"{}");
        let name = b.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("auth.json.codex-vault-backup-20"),
            "{name}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&b).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // A second detach within the same second never overwrites the first backup.
        std::fs::write(&p, b"{\"second\":1}").unwrap();
        let b2 = detach_file(&p).unwrap();
        assert_ne!(b, b2);
        assert_eq!(std::fs::read(&b).unwrap(), b"{}");
    }

    #[test]
    fn env_line() {
        assert_eq!(
            refresh_override_env(8417),
            "export CODEX_REFRESH_TOKEN_URL_OVERRIDE=http://127.0.0.1:8417/oauth/token"
        );
    }
}
