//! What the desktop window does to accounts beyond listing and importing them: rename,
//! enable/disable, history. Plain service functions, so the Tauri commands stay one call each and
//! any other face can reuse them.

use crate::account::{ms_to_rfc3339, AccountView};
use crate::accounts::{validate_label, Service};
use crate::error::AppError;
use crate::store::StoreError;
use serde::Serialize;

/// The most events `history` returns, whatever the caller asks.
pub const MAX_HISTORY: usize = 500;

/// One `account_events` row for the UI. Times are RFC 3339.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ts_rs::TS)]
#[ts(export)]
pub struct EventView {
    #[ts(type = "number")]
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub detail: Option<String>,
}

impl Service {
    /// Renames an account; the label and its `renamed` event commit together.
    pub fn rename(&self, reference: &str, label: &str) -> Result<AccountView, AppError> {
        validate_label(label)?;
        let account = self.store().find_account(reference)?;
        if account.label == label {
            return self.view(&account.id);
        }
        let detail = format!("{} → {}", account.label, label);
        self.store()
            .rename_account(&account.id, label, &detail)
            .map_err(|e| match e {
                StoreError::AccountNotFound(_) => StoreError::AccountNotFound(reference.into()),
                e => e,
            })?;
        self.view(&account.id)
    }

    /// Turns an account off (never selected, never refreshed) or back on. Disabling keeps a
    /// terminal reason: the view derives `disabled` on top of the stored status.
    pub fn set_disabled(&self, reference: &str, disabled: bool) -> Result<AccountView, AppError> {
        let account = self.store().find_account(reference)?;
        if account.disabled == disabled {
            return self.view(&account.id);
        }
        if !disabled {
            crate::accounts::restore::refuse_enable_while_restored(&account)?;
        }
        self.store()
            .set_disabled(&account.id, disabled)
            .map_err(|e| match e {
                StoreError::AccountNotFound(_) => StoreError::AccountNotFound(reference.into()),
                e => e,
            })?;
        self.view(&account.id)
    }

    /// The account's events, newest first, at most `limit` (capped at `MAX_HISTORY`).
    pub fn history(&self, reference: &str, limit: usize) -> Result<Vec<EventView>, AppError> {
        let account = self.store().find_account(reference)?;
        Ok(self
            .store()
            .events(&account.id, limit.clamp(1, MAX_HISTORY))?
            .into_iter()
            .map(|e| EventView {
                id: e.id,
                at: ms_to_rfc3339(e.at),
                kind: e.kind,
                detail: e.detail,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::accounts::test_support::{auth_json, auth_json_for, service};

    #[test]
    fn rename_disable_and_history() {
        let (_d, s) = service();
        let text = auth_json("ana@corp.com", "rt-1", "2025-01-01T00:00:00Z");
        let id = s
            .import_text(&text, Some("work"))
            .unwrap()
            .account()
            .id
            .clone();

        let v = s.rename(&id, "day job").unwrap();
        assert_eq!(v.label, "day job");
        assert_eq!(s.rename(&id, "a\nb").unwrap_err().code(), "invalid_label");

        let v = s.set_disabled("day job", true).unwrap();
        assert_eq!(v.status, crate::account::Status::Disabled);
        // Idempotent: no second event.
        s.set_disabled(&id, true).unwrap();
        let v = s.set_disabled(&id, false).unwrap();
        assert_eq!(v.status, crate::account::Status::Healthy);

        let kinds: Vec<String> = s
            .history(&id, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["enabled", "disabled", "renamed", "imported"]);
        let h = s.history(&id, 1).unwrap();
        assert_eq!(h.len(), 1);
        assert!(h[0].at.ends_with('Z'));

        let other = auth_json_for("acc-2", "bo@corp.com", "rt-9", "2025-01-01T00:00:00Z");
        s.import_text(&other, Some("side")).unwrap();
        assert_eq!(s.rename(&id, "side").unwrap_err().code(), "label_taken");
        assert_eq!(
            s.history("nobody", 5).unwrap_err().code(),
            "account_not_found"
        );
    }
}
