//! Importing a sign-in: an auth.json (from a file, the Codex CLI's own, stdin or a paste) or a
//! completed browser sign-in. What an import does is decided by `decision::decide_import`, the
//! same function the preview asks.

use crate::account::{Account, AccountView};
use crate::accounts::decision::{decide_import, Held, ImportDecision};
use crate::accounts::labels::{default_label, rename_hint, validate_label};
use crate::accounts::Service;
use crate::error::AppError;
use crate::oauth::auth_json::{Credential, TokenSet};
use crate::store::{NewAccount, SealedTokens};
use crate::vault::Field;
use serde::Serialize;
use std::path::Path;

/// What an import did, in words the CLI prints and the UI shows.
#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
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
    pub(crate) fn seal(&self, account_id: &str, t: &TokenSet) -> SealedTokens {
        SealedTokens {
            access_token: self
                .vault()
                .seal(account_id, Field::AccessToken, &t.access_token),
            id_token: self.vault().seal(account_id, Field::IdToken, &t.id_token),
            refresh_token: self
                .vault()
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
        let source = source.map(|p| p.display().to_string());
        let detail = |what: Option<&str>| -> Option<String> {
            match &source {
                Some(p) => Some(crate::store::import_source_detail(what, p)),
                None => what.map(str::to_string),
            }
        };
        let (existing, same_grant) = self.held_for(cred)?;
        let held = existing.as_ref().map(|a| held_facts(a, same_grant));
        let decision = decide_import(held, cred.last_refresh, label);
        let existing = match (decision.clone(), existing) {
            (ImportDecision::WouldRename { held, asked }, _) => {
                return Err(AppError::ImportWouldRename {
                    rename: rename_hint(&held, &asked),
                    held,
                    asked,
                });
            }
            (ImportDecision::Add, _) | (_, None) => {
                let account_id =
                    self.add_account(cred, label, "imported", detail(None).as_deref())?;
                return Ok(ImportOutcome::Added {
                    account: self.view(&account_id)?,
                });
            }
            (_, Some(existing)) => existing,
        };
        if decision == ImportDecision::Replace {
            let id = &cred.identity;
            let replaced = self.store().replace_grant(
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
        self.store().append_event(
            &existing.id,
            "imported_again",
            detail(Some("kept the newer tokens already held")).as_deref(),
        )?;
        Ok(ImportOutcome::KeptNewer {
            account: self.view(&existing.id)?,
        })
    }

    /// The held account this credential is (same ChatGPT account id + user id), and whether its
    /// current refresh token is the credential's: what `decide_import` needs from the store.
    pub(crate) fn held_for(&self, cred: &Credential) -> Result<(Option<Account>, bool), AppError> {
        let id = &cred.identity;
        let Some(existing) = self
            .store()
            .find_by_identity(&id.chatgpt_account_id, &id.chatgpt_user_id)?
        else {
            return Ok((None, false));
        };
        let same_grant = self
            .store()
            .secrets(&existing.id)?
            .is_some_and(|s| s.refresh_fingerprint == cred.tokens.refresh_token.fingerprint());
        Ok((Some(existing), same_grant))
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
                .store()
                .find_by_identity(&id.chatgpt_account_id, &id.chatgpt_user_id)?;
            let Some(existing) = existing else {
                let free = match label {
                    Some(l) if !self.store().label_exists(l)? => Some(l),
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
            if self.store().replace_grant(
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
                self.store().set_shared_grant(&existing.id, None)?;
                return Ok(ImportOutcome::SignedInAgain {
                    account: self.view(&existing.id)?,
                });
            }
        }
        Err(crate::store::StoreError::Conflict.into())
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
        self.store().insert_account(
            &new,
            &self.seal(&account_id, &cred.tokens),
            event_kind,
            event_detail,
        )?;
        Ok(account_id)
    }

    pub(crate) fn unique_label(&self, base: &str) -> Result<String, AppError> {
        let mut candidate = base.to_string();
        let mut n = 2;
        while self.store().label_exists(&candidate)? {
            candidate = format!("{base}-{n}");
            n += 1;
        }
        Ok(candidate)
    }
}

/// The held account as the decision sees it.
pub(crate) fn held_facts(a: &Account, same_grant: bool) -> Held<'_> {
    Held {
        label: &a.label,
        last_refresh_at: a.last_refresh_at,
        same_grant,
    }
}
