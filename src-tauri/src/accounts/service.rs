//! The opened vault: store + data key. The one object the desktop app, `serve` and the CLI share;
//! each face calls these functions and maps `AppError` once.

use crate::account::{has_control_chars, now_ms, AccountView};
use crate::error::AppError;
use crate::oauth::auth_json::{Credential, TokenSet};
use crate::store::{NewAccount, SealedTokens, Store};
use crate::vault::{Field, KeyRequest, KeyStoreKind, Vault, VaultError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const KEY_CHECK_META: &str = "key_check";
const LOCAL_KEY_META: &str = "local_api_key";
pub const MAX_LABEL_CHARS: usize = 64;

pub struct Service {
    store: Arc<Store>,
    vault: Vault,
    data_dir: PathBuf,
}

/// What `store_info` shows: where data is, how it is protected, and any warning to surface.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoreInfo {
    pub data_dir: String,
    pub key_store: KeyStoreKind,
    pub warning: Option<String>,
}

/// What an import did, in words the CLI prints and the UI shows.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ImportOutcome {
    Added {
        account: AccountView,
    },
    /// Same ChatGPT account already held: its tokens were replaced by the file's newer ones.
    Updated {
        account: AccountView,
    },
    /// Same ChatGPT account already held with tokens at least as new: nothing replaced.
    KeptNewer {
        account: AccountView,
    },
    /// A browser sign-in of a ChatGPT account not held before.
    SignedIn {
        account: AccountView,
    },
    /// A browser sign-in of a held account: the same row revived, its history kept.
    SignedInAgain {
        account: AccountView,
    },
}

impl ImportOutcome {
    pub fn account(&self) -> &AccountView {
        match self {
            ImportOutcome::Added { account }
            | ImportOutcome::Updated { account }
            | ImportOutcome::KeptNewer { account }
            | ImportOutcome::SignedIn { account }
            | ImportOutcome::SignedInAgain { account } => account,
        }
    }

    pub fn account_mut(&mut self) -> &mut AccountView {
        match self {
            ImportOutcome::Added { account }
            | ImportOutcome::Updated { account }
            | ImportOutcome::KeptNewer { account }
            | ImportOutcome::SignedIn { account }
            | ImportOutcome::SignedInAgain { account } => account,
        }
    }

    pub fn sentence(&self) -> String {
        let a = self.account();
        let who = format!(
            "{} ({}{})",
            a.label,
            a.email.as_deref().unwrap_or("no email"),
            a.plan
                .as_deref()
                .map(|p| format!(", {p}"))
                .unwrap_or_default()
        );
        match self {
            ImportOutcome::Added { .. } => format!("Imported account {who} as {}.", a.id),
            ImportOutcome::Updated { .. } => {
                format!("Updated existing account {who}: the file's tokens are newer.")
            }
            ImportOutcome::KeptNewer { .. } => format!(
                "Account {who} is already held; kept the newer tokens already held (the file's are not newer)."
            ),
            ImportOutcome::SignedIn { .. } => format!("Signed in: added account {who} as {}.", a.id),
            ImportOutcome::SignedInAgain { .. } => {
                format!("Signed in again to existing account {who}; its history is kept.")
            }
        }
    }
}

impl Service {
    /// Opens the store in `data_dir` and unlocks its data key (creating one only for a store
    /// that has nothing sealed yet). When unlocking fails on a store this call created, the new
    /// empty database (and the data dir, if this call created it) is removed again: a failed
    /// first run leaves nothing behind.
    pub fn open(data_dir: &Path, kind: KeyStoreKind) -> Result<Service, AppError> {
        let dir_existed = data_dir.exists();
        let db_existed = data_dir.join(crate::store::DB_FILE_NAME).exists();
        let store = Store::open(data_dir)?;
        match Service::unlock(&store, data_dir, kind) {
            Ok(vault) => Ok(Service {
                store: Arc::new(store),
                vault,
                data_dir: data_dir.to_path_buf(),
            }),
            Err(e) => {
                if !db_existed && store.discard_if_unused() && !dir_existed {
                    // Only an empty dir goes: remove_dir refuses anything else.
                    let _ = std::fs::remove_dir(data_dir);
                }
                Err(e)
            }
        }
    }

    fn unlock(store: &Store, data_dir: &Path, kind: KeyStoreKind) -> Result<Vault, AppError> {
        let store_id = store.store_id().to_string();
        let req = KeyRequest {
            store_id: &store_id,
            data_dir,
            kind,
        };
        let vault = match Vault::load(&req)? {
            Some(v) => v,
            // No key yet: mint one under the store's write lock, after checking again under it,
            // so two processes opening a new store at once can never mint two keys.
            None => store.with_write_lock(|conn| {
                if let Some(v) = Vault::load(&req)? {
                    return Ok(v);
                }
                if Store::has_sealed_data_in(conn)? {
                    return Err(AppError::from(VaultError::KeyMissing {
                        store_id: store_id.clone(),
                    }));
                }
                let v = Vault::create(&req)?;
                Store::meta_set_in(conn, KEY_CHECK_META, &v.key_check())?;
                Ok(v)
            })?,
        };
        match store.meta_get(KEY_CHECK_META)? {
            Some(blob) if !vault.verify_key_check(&blob) => {
                return Err(VaultError::KeyMismatch { store_id }.into());
            }
            Some(_) => {}
            None => store.meta_set(KEY_CHECK_META, &vault.key_check())?,
        }
        Ok(vault)
    }

    /// Opens the store the environment names (`CODEX_VAULT_HOME`, `CODEX_VAULT_KEY_STORE`).
    pub fn open_default() -> Result<Service, AppError> {
        let kind = KeyStoreKind::from_env().map_err(AppError::Config)?;
        Service::open(&crate::paths::data_dir()?, kind)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub fn info(&self) -> StoreInfo {
        StoreInfo {
            data_dir: self.data_dir.display().to_string(),
            key_store: self.vault.kind(),
            warning: match self.vault.kind() {
                KeyStoreKind::Keychain => None,
                KeyStoreKind::File => Some(format!(
                    "The data key is kept in a file ({}), not in the OS keychain (CODEX_VAULT_KEY_STORE=file): anyone who can read your files can read your sign-ins.",
                    self.data_dir.join("data-key").display()
                )),
            },
        }
    }

    pub fn list(&self) -> Result<Vec<AccountView>, AppError> {
        // A read, never a write: a shared-grant flag whose Codex auth.json is gone (or signed in
        // elsewhere) shows cleared here; health clears it in the store (`recheck_shared_grants`).
        let stale = crate::health::shared_grants::stale(&self.store).unwrap_or_else(|e| {
            tracing::warn!("cannot re-check shared sign-ins: {e}");
            Vec::new()
        });
        let now = now_ms();
        // A live refresh lease (any process) shows as "refreshing" on an otherwise healthy account.
        let refreshing: Vec<String> = self
            .store
            .active_leases()?
            .into_iter()
            .filter(|(_, holder)| !crate::refresh::holder_is_dead(holder))
            .map(|(id, _)| id)
            .collect();
        let mut views: Vec<AccountView> = self
            .store
            .list_accounts()?
            .iter()
            .map(|a| {
                let mut v = a.view(now);
                if v.status == crate::account::Status::Healthy && refreshing.contains(&a.id) {
                    v.status = crate::account::Status::Refreshing;
                }
                if stale.contains(&a.id) {
                    v.shared_grant = false;
                    v.shared_grant_where = None;
                }
                v
            })
            .collect();
        // Rotations held in memory only (their commit failed) are known to the process holding
        // them: this one's directly, a live `serve` or app's through its `/v1/accounts`.
        crate::refresh::overlay_held(&mut views);
        self.overlay_held_elsewhere(&mut views);
        Ok(views)
    }

    /// Asks the live listener of this store, when it is another process, which rotations it
    /// holds in memory. Best effort and quick (loopback, a short timeout): a listener that does
    /// not answer leaves the list as the store has it.
    fn overlay_held_elsewhere(&self, views: &mut [AccountView]) {
        let Some(pid) = crate::serve::live_pid(self) else {
            return;
        };
        if pid == std::process::id() || views.is_empty() {
            return;
        }
        let Ok(port) = crate::serve::current_port(self) else {
            return;
        };
        // Only an existing key: listing must never mint one as a side effect.
        let Ok(Some(blob)) = self.store.meta_get(LOCAL_KEY_META) else {
            return;
        };
        let Ok(key) = self.vault.open("", Field::LocalApiKey, &blob) else {
            return;
        };
        let Some(remote) = crate::loopback::get_json(port, "/v1/accounts", &key) else {
            return;
        };
        let Ok(remote) = serde_json::from_value::<Vec<AccountView>>(remote) else {
            return;
        };
        for v in views.iter_mut() {
            if let Some(h) = remote
                .iter()
                .find(|r| r.id == v.id)
                .and_then(|r| r.held_rotation.clone())
            {
                v.held_rotation = Some(h);
            }
        }
    }

    /// The refresh engine over this store, talking to the issuer the environment names.
    pub fn token_manager(&self) -> crate::refresh::TokenManager {
        use crate::oauth::client::{Issuer, TokenClient};
        let tm = crate::refresh::TokenManager::new(
            self.store.clone(),
            self.vault.clone(),
            TokenClient::new(Issuer::from_env()),
            crate::refresh::RefreshConfig::from_env(),
        );
        // Every rotation is followed into the brokered holders' own auth.json (docs/broker.md).
        tm.set_rotation_observer(Arc::new(crate::codex_writeback::CodexWriteback::new(
            self.store.clone(),
            self.vault.clone(),
        )));
        tm
    }

    pub fn view(&self, reference: &str) -> Result<AccountView, AppError> {
        Ok(self.store.find_account(reference)?.view(now_ms()))
    }

    fn seal(&self, account_id: &str, t: &TokenSet) -> SealedTokens {
        SealedTokens {
            access_token: self
                .vault
                .seal(account_id, Field::AccessToken, &t.access_token),
            id_token: self.vault.seal(account_id, Field::IdToken, &t.id_token),
            refresh_token: self
                .vault
                .seal(account_id, Field::RefreshToken, &t.refresh_token),
            refresh_fingerprint: t.refresh_token.fingerprint(),
            access_expires_at: t.access_expires_at,
            access_issued_at: t.access_issued_at,
        }
    }

    /// Stores a parsed auth.json. A known ChatGPT account (same account id + user id) is updated
    /// in place, and only when the file is newer than our last rotation: an old backup must never
    /// replace a live grant.
    pub fn import(
        &self,
        cred: &Credential,
        label: Option<&str>,
    ) -> Result<ImportOutcome, AppError> {
        self.import_from(cred, label, None)
    }

    /// `import`, recording the file it came from (`source`, canonical) in the account's history.
    ///
    /// A `label` other than the held account's is refused before anything is written: the label
    /// is the name the user and their scripts use (`codex-vault token work`), an import is about
    /// tokens, and a mismatch usually means the file is not the account the user thinks — a
    /// silent rename would move that name onto it. Renaming is its own, explicit act.
    pub fn import_from(
        &self,
        cred: &Credential,
        label: Option<&str>,
        source: Option<&Path>,
    ) -> Result<ImportOutcome, AppError> {
        if let Some(l) = label {
            validate_label(l)?;
        }
        let id = &cred.identity;
        let source = source.map(|p| p.display().to_string());
        let detail = |what: Option<&str>| -> Option<String> {
            match &source {
                Some(p) => Some(crate::store::import_source_detail(what, p)),
                None => what.map(str::to_string),
            }
        };
        let existing = self
            .store
            .find_by_identity(&id.chatgpt_account_id, &id.chatgpt_user_id)?;
        let Some(existing) = existing else {
            let account_id = self.add_account(cred, label, "imported", detail(None).as_deref())?;
            return Ok(ImportOutcome::Added {
                account: self.view(&account_id)?,
            });
        };

        if let Some(l) = label.filter(|l| *l != existing.label) {
            return Err(AppError::ImportWouldRename {
                held: existing.label.clone(),
                asked: l.to_string(),
                rename: rename_hint(&existing.label, l),
            });
        }
        let newer = match (cred.last_refresh, existing.last_refresh_at) {
            (Some(file), Some(ours)) => file > ours,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let same_grant = self
            .store
            .secrets(&existing.id)?
            .is_some_and(|s| s.refresh_fingerprint == cred.tokens.refresh_token.fingerprint());
        if newer && !same_grant {
            let replaced = self.store.replace_grant(
                &existing.id,
                existing.generation,
                &self.seal(&existing.id, &cred.tokens),
                Some(&id.email),
                id.plan.as_deref(),
                id.fedramp,
                cred.last_refresh,
                "imported_again",
                detail(Some("tokens replaced by the imported file's newer ones")).as_deref(),
            )?;
            if replaced {
                return Ok(ImportOutcome::Updated {
                    account: self.view(&existing.id)?,
                });
            }
            // A refresh committed a newer generation meanwhile: ours is now the newer grant.
        }
        self.store.append_event(
            &existing.id,
            "imported_again",
            detail(Some("kept the newer tokens already held")).as_deref(),
        )?;
        Ok(ImportOutcome::KeptNewer {
            account: self.view(&existing.id)?,
        })
    }

    /// Stores a browser sign-in. A fresh sign-in is always the newest grant: a held account
    /// (same account id + user id) gets it in place and comes back to life, history kept.
    ///
    /// `label` names a new account; a held one keeps its label (a sign-in never renames), and a
    /// new one whose asked label is another account's gets a free default one — the sign-in the
    /// user just completed is never thrown away over a name. `label_note` says what happened.
    pub fn sign_in(
        &self,
        cred: &Credential,
        label: Option<&str>,
    ) -> Result<ImportOutcome, AppError> {
        if let Some(l) = label {
            validate_label(l)?;
        }
        let id = &cred.identity;
        // A refresh of the old grant may commit between our read and our write: re-read and retry.
        for _ in 0..5 {
            let existing = self
                .store
                .find_by_identity(&id.chatgpt_account_id, &id.chatgpt_user_id)?;
            let Some(existing) = existing else {
                let free = match label {
                    Some(l) if !self.store.label_exists(l)? => Some(l),
                    _ => None,
                };
                let account_id = match self.add_account(cred, free, "signed_in", None) {
                    // Taken by another process since we looked: a default label, as above.
                    Err(AppError::Store(crate::store::StoreError::LabelTaken(_)))
                        if free.is_some() =>
                    {
                        self.add_account(cred, None, "signed_in", None)?
                    }
                    other => other?,
                };
                return Ok(ImportOutcome::SignedIn {
                    account: self.view(&account_id)?,
                });
            };
            let detail = existing
                .failure
                .as_ref()
                .map(|f| format!("revived from {}", f.code));
            if self.store.replace_grant(
                &existing.id,
                existing.generation,
                &self.seal(&existing.id, &cred.tokens),
                Some(&id.email),
                id.plan.as_deref(),
                id.fedramp,
                cred.last_refresh,
                "signed_in",
                detail.as_deref(),
            )? {
                // A fresh sign-in is a grant of our own: no other holder shares it.
                self.store.set_shared_grant(&existing.id, None)?;
                return Ok(ImportOutcome::SignedInAgain {
                    account: self.view(&existing.id)?,
                });
            }
        }
        Err(crate::store::StoreError::Conflict.into())
    }

    /// The endpoint's local API key: generated on first use, kept sealed in the store.
    pub fn local_api_key(&self) -> Result<crate::secret::Secret, AppError> {
        if let Some(blob) = self.store.meta_get(LOCAL_KEY_META)? {
            return Ok(self.vault.open("", Field::LocalApiKey, &blob)?);
        }
        self.store.with_write_lock(|conn| {
            if let Some(blob) = Store::meta_get_in(conn, LOCAL_KEY_META)? {
                return Ok(self.vault.open("", Field::LocalApiKey, &blob)?);
            }
            let key = new_local_key();
            let blob = self.vault.seal("", Field::LocalApiKey, &key);
            Store::meta_set_in(conn, LOCAL_KEY_META, &blob)?;
            Ok(key)
        })
    }

    /// Replaces the local API key; clients configured with the old one get 401 from now on.
    pub fn rotate_local_api_key(&self) -> Result<crate::secret::Secret, AppError> {
        let key = new_local_key();
        self.store.meta_set(
            LOCAL_KEY_META,
            &self.vault.seal("", Field::LocalApiKey, &key),
        )?;
        Ok(key)
    }

    pub fn remove(&self, reference: &str) -> Result<AccountView, AppError> {
        let account = self.store.find_account(reference)?;
        self.store.remove_account(&account.id)?;
        Ok(account.view(now_ms()))
    }

    /// Stores a ChatGPT account not held before; returns its new id.
    fn add_account(
        &self,
        cred: &Credential,
        label: Option<&str>,
        event_kind: &str,
        event_detail: Option<&str>,
    ) -> Result<String, AppError> {
        let id = &cred.identity;
        let account_id = uuid::Uuid::new_v4().to_string();
        let label = match label {
            Some(l) => l.to_string(),
            None => self.unique_label(&default_label(&id.email))?,
        };
        let new = NewAccount {
            id: account_id.clone(),
            label,
            email: Some(id.email.clone()),
            chatgpt_account_id: id.chatgpt_account_id.clone(),
            chatgpt_user_id: id.chatgpt_user_id.clone(),
            plan: id.plan.clone(),
            fedramp: id.fedramp,
            last_refresh_at: cred.last_refresh,
        };
        self.store.insert_account(
            &new,
            &self.seal(&account_id, &cred.tokens),
            event_kind,
            event_detail,
        )?;
        Ok(account_id)
    }

    fn unique_label(&self, base: &str) -> Result<String, AppError> {
        let mut candidate = base.to_string();
        let mut n = 2;
        while self.store.label_exists(&candidate)? {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        Ok(candidate)
    }
}

/// After a sign-in with `--label asked`: why the account's label is not `asked`, if it is not.
pub fn label_note(asked: Option<&str>, outcome: &ImportOutcome) -> Option<String> {
    let asked = asked?;
    let label = &outcome.account().label;
    if label == asked {
        return None;
    }
    Some(match outcome {
        ImportOutcome::SignedIn { .. } => format!(
            "the label `{asked}` is another account's, so this one is called `{label}`; rename it with `codex-vault accounts rename {} <new label>` (or Rename on its card in the app)",
            shell_word(label)
        ),
        _ => format!(
            "this sign-in is account `{label}`, which keeps its label (a sign-in never renames an account); to call it `{asked}`: {}",
            rename_hint(label, asked)
        ),
    })
}

/// The command that renames `from` to `to`, each quoted for a POSIX shell when it needs it.
fn rename_hint(from: &str, to: &str) -> String {
    format!(
        "`codex-vault accounts rename {} {}` (or Rename on its card in the app)",
        shell_word(from),
        shell_word(to)
    )
}

fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub fn validate_label(label: &str) -> Result<(), AppError> {
    if label.trim().is_empty() {
        return Err(AppError::InvalidLabel("it is empty".into()));
    }
    if has_control_chars(label) {
        return Err(AppError::InvalidLabel(
            "it contains control characters".into(),
        ));
    }
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(AppError::InvalidLabel(format!(
            "it is longer than {MAX_LABEL_CHARS} characters"
        )));
    }
    Ok(())
}

fn new_local_key() -> crate::secret::Secret {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    crate::secret::Secret::new(format!(
        "cvk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// `ana@corp.com` → `ana`: a readable default that the user can rename.
fn default_label(email: &str) -> String {
    let local = email.split('@').next().unwrap_or(email);
    let cleaned: String = local
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
        .take(MAX_LABEL_CHARS - 4)
        .collect();
    if cleaned.is_empty() {
        "account".to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_labels() {
        assert_eq!(default_label("ana@corp.com"), "ana");
        assert_eq!(default_label("@x"), "account");
        assert_eq!(default_label("a b\u{1b}c@x"), "abc");
    }

    #[test]
    fn rename_hints_quote_for_the_shell() {
        assert_eq!(
            rename_hint("ana", "work"),
            "`codex-vault accounts rename ana work` (or Rename on its card in the app)"
        );
        assert!(rename_hint("ana", "day job").contains("rename ana 'day job'"));
        assert!(rename_hint("ana", "bo's").contains(r"'bo'\''s'"));
    }

    #[test]
    fn labels_validated() {
        assert!(validate_label("work").is_ok());
        assert!(validate_label("").is_err());
        assert!(validate_label("a\r\nX-Injected: 1").is_err());
        assert!(validate_label(&"x".repeat(65)).is_err());
    }
}
