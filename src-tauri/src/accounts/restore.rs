//! Encrypted backup and restore of the whole vault (README.md § Backup and restore).
//!
//! A backup is every account (tokens opened with this store's key), its history, what the
//! broker knows of its holders, and the shared settings, sealed with a passphrase
//! (`backup::sealed`). A restore puts them into any store, under that store's key:
//! - an account not held there is added **paused** (disabled, `restored_at` set): the machine the
//!   backup came from may still refresh that grant, and a refresh with a token it has already
//!   spent can get the whole sign-in revoked. It never refreshes or serves until the user
//!   confirms the other copy is retired (`confirm_restored`);
//! - an account held there keeps its tokens unless the backup's are newer (`decide_import`, the
//!   rule an import follows: same grant, or an older `last_refresh`, keeps ours); newer ones
//!   replace them paused, in the same transaction;
//! - a label another account has gets a suffix, and the report says so;
//! - a setting already set there keeps its value; this machine's own connections (`connect.*`)
//!   and the endpoint's local key are never carried.

use crate::account::{ms_to_rfc3339, now_ms, AccountView, FailureReason};
use crate::accounts::decision::{decide_import, ImportDecision};
use crate::accounts::import::held_facts;
use crate::accounts::Service;
use crate::backup::{
    sealed, BackupAccount, BackupDoc, BackupEvent, BackupFailure, BackupHolder, BackupTokens,
    HeldToken, FORMAT, VERSION,
};
use crate::error::{AppError, BackupError};
use crate::oauth::auth_json::TokenSet;
use crate::secret::Secret;
use crate::store::{
    DigestOrigin, ExportedAccount, NewAccount, RestoredAccount, RestoredBroker, RestoredGrant,
    RestoredHolder, StoreError,
};
use crate::vault::Field;
use serde::Serialize;
use std::path::Path;

/// Settings that describe this machine, never another: not carried by a backup.
const MACHINE_SETTINGS: &[&str] = &["connect."];

/// What the user is told on every restore, in the CLI and the app.
pub const TWO_MACHINES_WARNING: &str = "Restored accounts are paused. One sign-in can be refreshed by one machine only: every refresh replaces its token, so two machines refreshing the same sign-in log each other out, and a refresh with a token already spent can get the sign-in revoked. Confirm an account only once the machine this backup came from no longer refreshes it (remove it there, or retire that machine).";

/// What writing a backup did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ts_rs::TS)]
#[ts(export)]
pub struct BackupSummary {
    pub path: String,
    pub accounts: usize,
    pub settings: usize,
    /// Holders whose token is neither the account's current nor its previous one: the broker
    /// of the restored store will not know them (they sign in again, or are imported again).
    pub holders_left_behind: usize,
}

/// What a restore did to one account of the backup.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum RestoreAction {
    /// Not held here: added, paused.
    Added,
    /// Held here with older tokens: the backup's replaced them, paused.
    Replaced,
    /// Held here with tokens at least as new (or the very same grant): nothing changed.
    KeptNewer,
}

#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct RestoreItem {
    pub action: RestoreAction,
    pub account: AccountView,
    /// The backup's label, when another account here already had it and this one got a suffix.
    pub renamed_from: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct RestoreReport {
    /// When the backup was written (RFC 3339).
    pub backup_created_at: String,
    pub items: Vec<RestoreItem>,
    /// Settings taken from the backup (they were not set here).
    pub settings_applied: Vec<String>,
    /// Settings the backup had that keep this store's value.
    pub settings_kept: Vec<String>,
    /// [`TWO_MACHINES_WARNING`].
    pub warning: String,
}

impl RestoreReport {
    /// One line per account and a closing summary, as the CLI prints them.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .items
            .iter()
            .map(|i| {
                let a = &i.account;
                let who = format!("{} ({})", a.label, a.email.as_deref().unwrap_or("no email"));
                let renamed = i
                    .renamed_from
                    .as_deref()
                    .map(|l| format!(" (the label `{l}` is another account's here)"))
                    .unwrap_or_default();
                match i.action {
                    RestoreAction::Added => {
                        format!("added    {who}{renamed}: paused until you confirm")
                    }
                    RestoreAction::Replaced => format!(
                        "replaced {who}: the backup's tokens are newer; paused until you confirm"
                    ),
                    RestoreAction::KeptNewer => format!(
                        "kept     {who}: the tokens held here are at least as new; unchanged"
                    ),
                }
            })
            .collect();
        let paused = self
            .items
            .iter()
            .filter(|i| i.action != RestoreAction::KeptNewer)
            .count();
        out.push(format!(
            "Restored a backup of {}: {} account(s), {paused} paused; settings: {} applied, {} kept as they were here.",
            self.backup_created_at,
            self.items.len(),
            self.settings_applied.len(),
            self.settings_kept.len()
        ));
        out
    }
}

impl Service {
    /// Writes an encrypted backup of the whole vault to `path` (0600; a file already there is
    /// replaced only once the new one is whole).
    pub fn write_backup(
        &self,
        path: &Path,
        passphrase: &Secret,
    ) -> Result<BackupSummary, AppError> {
        sealed::check_new_passphrase(passphrase)?;
        let (doc, holders_left_behind) = self.backup_doc()?;
        sealed::write(path, &doc, passphrase)?;
        Ok(BackupSummary {
            path: path.display().to_string(),
            accounts: doc.accounts.len(),
            settings: doc.settings.len(),
            holders_left_behind,
        })
    }

    /// The document a backup seals, and how many holders it could not carry.
    pub fn backup_doc(&self) -> Result<(BackupDoc, usize), AppError> {
        let export = self.store().export()?;
        let mut left_behind = 0;
        let mut accounts = Vec::with_capacity(export.accounts.len());
        for e in &export.accounts {
            let (account, left) = self.backup_account(e)?;
            left_behind += left;
            accounts.push(account);
        }
        let settings = export
            .settings
            .into_iter()
            .filter(|(k, _)| !is_machine_setting(k))
            .collect();
        Ok((
            BackupDoc {
                format: FORMAT.into(),
                version: VERSION,
                created_at: ms_to_rfc3339(now_ms()),
                app_version: env!("CARGO_PKG_VERSION").into(),
                store_id: self.store().store_id().to_string(),
                accounts,
                settings,
            },
            left_behind,
        ))
    }

    fn backup_account(&self, e: &ExportedAccount) -> Result<(BackupAccount, usize), AppError> {
        let a = &e.account;
        let open = |field, blob: &[u8]| self.vault().open(&a.id, field, blob);
        let tokens = BackupTokens {
            access_token: open(Field::AccessToken, &e.secrets.access_token)?,
            id_token: open(Field::IdToken, &e.secrets.id_token)?,
            refresh_token: open(Field::RefreshToken, &e.secrets.refresh_token)?,
            previous_refresh_token: match &e.previous_refresh_token {
                Some(blob) => Some(open(Field::RefreshToken, blob)?),
                None => None,
            },
        };
        let current = self.vault().refresh_digest(&tokens.refresh_token);
        let previous = tokens
            .previous_refresh_token
            .as_ref()
            .map(|t| self.vault().refresh_digest(t));
        let which = |digest: &[u8]| {
            if current.as_bytes() == digest {
                Some(HeldToken::Current)
            } else if previous.as_ref().is_some_and(|p| p.as_bytes() == digest) {
                Some(HeldToken::Previous)
            } else {
                None
            }
        };
        let mut holders = Vec::new();
        let mut left_behind = 0;
        for h in &e.holders {
            match which(&h.token_digest) {
                Some(holds) => holders.push(BackupHolder {
                    auth_path: h.auth_path.clone(),
                    holds,
                    seen_at: h.seen_at,
                }),
                None => left_behind += 1,
            }
        }
        let origin_of = |held: HeldToken| {
            e.origins
                .iter()
                .find(|(d, _)| which(d) == Some(held))
                .map(|(_, o)| o.as_str().to_string())
        };
        Ok((
            BackupAccount {
                id: a.id.clone(),
                label: a.label.clone(),
                email: a.email.clone(),
                chatgpt_account_id: a.chatgpt_account_id.clone(),
                chatgpt_user_id: a.chatgpt_user_id.clone(),
                plan: a.plan.clone(),
                fedramp: a.fedramp,
                disabled: a.disabled,
                created_at: a.created_at,
                last_refresh_at: a.last_refresh_at,
                access_expires_at: a.access_expires_at,
                access_issued_at: a.access_issued_at,
                failure: backup_failure(a),
                current_origin: origin_of(HeldToken::Current),
                previous_origin: origin_of(HeldToken::Previous),
                tokens,
                events: e.events.iter().map(backup_event).collect(),
                holders,
            },
            left_behind,
        ))
    }

    /// Restores an opened backup into this store (see the module's rules). Each account is its
    /// own transaction; the first failure stops the restore and is returned, and what was
    /// restored before it stays (paused), so running it again finishes the job.
    pub fn restore(&self, doc: &BackupDoc) -> Result<RestoreReport, AppError> {
        let detail = format!("from a backup of {}", doc.created_at);
        let mut items = Vec::with_capacity(doc.accounts.len());
        for b in &doc.accounts {
            items.push(self.restore_account(b, &detail)?);
        }
        let mut settings_applied = Vec::new();
        let mut settings_kept = Vec::new();
        for (key, value) in &doc.settings {
            if is_machine_setting(key) {
                continue;
            }
            if self.store().setting(key)?.is_some() {
                settings_kept.push(key.clone());
            } else {
                self.store().set_setting(key, value)?;
                settings_applied.push(key.clone());
            }
        }
        Ok(RestoreReport {
            backup_created_at: doc.created_at.clone(),
            items,
            settings_applied,
            settings_kept,
            warning: TWO_MACHINES_WARNING.into(),
        })
    }

    fn restore_account(&self, b: &BackupAccount, detail: &str) -> Result<RestoreItem, AppError> {
        let token_set = TokenSet {
            id_token: b.tokens.id_token.clone(),
            access_token: b.tokens.access_token.clone(),
            refresh_token: b.tokens.refresh_token.clone(),
            access_expires_at: b.access_expires_at,
            access_issued_at: b.access_issued_at,
        };
        let held = self
            .store()
            .find_by_identity(&b.chatgpt_account_id, &b.chatgpt_user_id)?;
        let Some(held) = held else {
            return self.restore_new(b, &token_set, detail);
        };
        let same_grant = self
            .store()
            .secrets(&held.id)?
            .is_some_and(|s| s.refresh_fingerprint == b.tokens.refresh_token.fingerprint());
        let decision = decide_import(Some(held_facts(&held, same_grant)), b.last_refresh_at, None);
        if decision == ImportDecision::Replace {
            let (holders, origins) = self.restored_broker(b);
            let replaced = self.store().restore_over(
                &held.id,
                held.generation,
                &RestoredGrant {
                    tokens: &self.seal(&held.id, &token_set),
                    email: b.email.as_deref(),
                    plan: b.plan.as_deref(),
                    fedramp: b.fedramp,
                    last_refresh_at: b.last_refresh_at,
                    broker: RestoredBroker {
                        holders: &holders,
                        origins: &origins,
                    },
                    detail,
                },
            )?;
            if replaced {
                return Ok(RestoreItem {
                    action: RestoreAction::Replaced,
                    account: self.view(&held.id)?,
                    renamed_from: None,
                });
            }
            // A refresh of ours committed meanwhile: ours is the newer grant now.
        }
        self.store().append_event(
            &held.id,
            "restore_kept_newer",
            Some(&format!(
                "{detail}: kept the tokens held here (at least as new)"
            )),
        )?;
        Ok(RestoreItem {
            action: RestoreAction::KeptNewer,
            account: self.view(&held.id)?,
            renamed_from: None,
        })
    }

    fn restore_new(
        &self,
        b: &BackupAccount,
        token_set: &TokenSet,
        detail: &str,
    ) -> Result<RestoreItem, AppError> {
        // Keep the backup's id (its history names it) unless this store already uses it.
        let id = if self.store().get_account(&b.id)?.is_none() {
            b.id.clone()
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        let sealed = self.seal(&id, token_set);
        let (holders, origins) = self.restored_broker(b);
        let events: Vec<_> = b
            .events
            .iter()
            .map(|e| (e.at, e.kind.clone(), e.detail.clone()))
            .collect();
        let failure = b.failure.as_ref().map(|f| FailureReason {
            code: f.code.clone(),
            message: f.message.clone(),
            http_status: f.http_status,
            at: f.at,
        });
        // A label taken here (or taken by another process meanwhile) gets the next free suffix.
        for _ in 0..5 {
            let label = if self.store().label_exists(&b.label)? {
                self.unique_label(&b.label)?
            } else {
                b.label.clone()
            };
            let new = NewAccount {
                id: id.clone(),
                label: label.clone(),
                email: b.email.clone(),
                chatgpt_account_id: b.chatgpt_account_id.clone(),
                chatgpt_user_id: b.chatgpt_user_id.clone(),
                plan: b.plan.clone(),
                fedramp: b.fedramp,
                last_refresh_at: b.last_refresh_at,
            };
            let restored = self.store().insert_restored(&RestoredAccount {
                new: &new,
                tokens: &sealed,
                created_at: b.created_at,
                failure: failure.as_ref(),
                events: &events,
                broker: RestoredBroker {
                    holders: &holders,
                    origins: &origins,
                },
                detail,
            });
            match restored {
                Err(StoreError::LabelTaken(_)) => continue,
                other => other?,
            }
            return Ok(RestoreItem {
                action: RestoreAction::Added,
                account: self.view(&id)?,
                renamed_from: (label != b.label).then(|| b.label.clone()),
            });
        }
        Err(StoreError::Conflict.into())
    }

    /// The backup's holders and origins, digested under this store's key.
    fn restored_broker(
        &self,
        b: &BackupAccount,
    ) -> (Vec<RestoredHolder>, Vec<(Vec<u8>, DigestOrigin)>) {
        let digest = |held: HeldToken| {
            let token = match held {
                HeldToken::Current => Some(&b.tokens.refresh_token),
                HeldToken::Previous => b.tokens.previous_refresh_token.as_ref(),
            };
            token.map(|t| self.vault().refresh_digest(t).as_bytes().to_vec())
        };
        let holders = b
            .holders
            .iter()
            .filter_map(|h| {
                Some(RestoredHolder {
                    auth_path: h.auth_path.clone(),
                    token_digest: digest(h.holds)?,
                    seen_at: h.seen_at,
                })
            })
            .collect();
        let origins = [
            (HeldToken::Current, &b.current_origin),
            (HeldToken::Previous, &b.previous_origin),
        ]
        .into_iter()
        .filter_map(|(held, origin)| {
            let origin = DigestOrigin::parse(origin.as_deref()?)?;
            Some((digest(held)?, origin))
        })
        .collect();
        (holders, origins)
    }

    /// The user confirms the other copy of a restored account is retired: it refreshes and
    /// serves from now on. An account that is not waiting for this is returned unchanged.
    pub fn confirm_restored(&self, reference: &str) -> Result<AccountView, AppError> {
        let account = self.store().find_account(reference)?;
        if account.restored_at.is_some() {
            self.store().confirm_restored(&account.id)?;
        }
        self.view(&account.id)
    }
}

fn backup_failure(a: &crate::account::Account) -> Option<BackupFailure> {
    let f = a
        .failure
        .as_ref()
        .filter(|_| a.status == crate::account::Status::Terminal)?;
    Some(BackupFailure {
        code: f.code.clone(),
        message: f.message.clone(),
        http_status: f.http_status,
        at: f.at,
    })
}

fn backup_event(ev: &crate::store::Event) -> BackupEvent {
    BackupEvent {
        at: ev.at,
        kind: ev.kind.clone(),
        detail: ev.detail.clone(),
    }
}

fn is_machine_setting(key: &str) -> bool {
    MACHINE_SETTINGS.iter().any(|p| key.starts_with(p))
}

/// A restored account may not be switched on by "enable": only a confirmation does that.
pub(crate) fn refuse_enable_while_restored(a: &crate::account::Account) -> Result<(), AppError> {
    match a.restored_at {
        Some(_) => Err(BackupError::RestoredUnconfirmed {
            label: a.label.clone(),
        }
        .into()),
        None => Ok(()),
    }
}

/// Reads and opens a backup file: nothing is opened or written before it succeeds.
pub fn open_backup(path: &Path, passphrase: &Secret) -> Result<BackupDoc, AppError> {
    Ok(sealed::read(path, passphrase)?)
}

#[cfg(test)]
#[path = "restore_tests.rs"]
mod tests;
