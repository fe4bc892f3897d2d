//! What the desktop window does to accounts beyond listing them: preview and import an auth.json
//! (pasted or the Codex CLI's own), rename, enable/disable, history. Plain service functions, so
//! the Tauri commands stay one call each and any other face can reuse them.

use crate::account::{ms_to_rfc3339, now_ms, AccountView};
use crate::accounts::{validate_label, ImportOutcome, Service};
use crate::error::AppError;
use crate::oauth::auth_json::{self, AuthJsonError, AuthSource, Credential, MAX_AUTH_JSON_BYTES};
use crate::store::StoreError;
use serde::Serialize;
use std::path::PathBuf;

/// The most events `history` returns, whatever the caller asks.
pub const MAX_HISTORY: usize = 500;

/// What importing an auth.json would do, shown before anything is written. Never any token text.
#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct ImportPreview {
    pub email: String,
    pub plan: Option<String>,
    pub chatgpt_account_id: String,
    /// The held account this sign-in is (same ChatGPT account id + user id), if any.
    pub existing: Option<ExistingAccount>,
    /// What an import would do: `add`, `update` (the file is newer), or `keep_newer`.
    pub action: PreviewAction,
    /// The file's access token expiry (RFC 3339), when readable.
    pub access_expires_at: Option<String>,
    /// The file's `last_refresh` (RFC 3339), when present.
    pub last_refresh: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ts_rs::TS)]
#[ts(export)]
pub struct ExistingAccount {
    pub id: String,
    pub label: String,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum PreviewAction {
    Add,
    Update,
    KeepNewer,
}

/// The Codex CLI's auth.json as the Add dialog shows it: where it was looked for, and its preview.
#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct CodexCliPreview {
    /// Where the file is (or would be): `$CODEX_HOME/auth.json`, else `~/.codex/auth.json`.
    pub path: Option<String>,
    pub found: bool,
    pub preview: Option<ImportPreview>,
}

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

fn parse_text(text: &str) -> Result<Credential, AppError> {
    let wrap = |error| AppError::AuthJson {
        origin: AuthSource::Pasted,
        error,
    };
    if text.len() as u64 > MAX_AUTH_JSON_BYTES {
        return Err(wrap(AuthJsonError::TooLarge));
    }
    auth_json::parse(text.as_bytes()).map_err(wrap)
}

fn codex_cli_path() -> Option<PathBuf> {
    crate::paths::codex_home().map(|h| h.join("auth.json"))
}

fn read_codex_cli() -> Result<Credential, AppError> {
    let path = codex_cli_path().ok_or_else(|| {
        AppError::from(crate::error::ConfigError::NoCodexHome(
            "the Codex CLI's auth.json cannot be found",
        ))
    })?;
    auth_json::read_file(&path)
        .and_then(|b| auth_json::parse(&b))
        .map_err(|error| AppError::AuthJson {
            origin: AuthSource::File(path),
            error,
        })
}

impl Service {
    /// What importing this auth.json text would do. Parses only; writes nothing.
    pub fn preview_auth_json(&self, text: &str) -> Result<ImportPreview, AppError> {
        self.preview(&parse_text(text)?)
    }

    /// Imports a pasted auth.json (same rules as `accounts import`).
    pub fn import_text(&self, text: &str, label: Option<&str>) -> Result<ImportOutcome, AppError> {
        if let Some(l) = label {
            validate_label(l)?;
        }
        let cred = parse_text(text)?;
        let outcome = self.import(&cred, label)?;
        self.remember_import_holder(&outcome.account().id, &cred, None, None)?;
        Ok(outcome)
    }

    /// The Codex CLI's auth.json, if there is one: `$CODEX_HOME/auth.json`, else `~/.codex/auth.json`.
    pub fn find_codex_cli_auth() -> Option<PathBuf> {
        codex_cli_path().filter(|p| p.is_file())
    }

    /// Where the Codex CLI's auth.json is and what importing it would do. A missing file is not an
    /// error (`found: false`); an unusable one is.
    pub fn preview_codex_cli_auth(&self) -> Result<CodexCliPreview, AppError> {
        let path = codex_cli_path().map(|p| p.display().to_string());
        if Service::find_codex_cli_auth().is_none() {
            return Ok(CodexCliPreview {
                path,
                found: false,
                preview: None,
            });
        }
        let preview = self.preview(&read_codex_cli()?)?;
        Ok(CodexCliPreview {
            path,
            found: true,
            preview: Some(preview),
        })
    }

    /// Imports the Codex CLI's auth.json. From then on Codex Vault refreshes this sign-in.
    pub fn import_codex_cli_auth(&self, label: Option<&str>) -> Result<ImportOutcome, AppError> {
        if let Some(l) = label {
            validate_label(l)?;
        }
        let cred = read_codex_cli()?;
        self.import(&cred, label)
    }

    /// Mirrors `Service::import`'s decision (same identity → update only when the file is newer and
    /// a different grant) without writing.
    fn preview(&self, cred: &Credential) -> Result<ImportPreview, AppError> {
        let id = &cred.identity;
        let existing = self
            .store()
            .find_by_identity(&id.chatgpt_account_id, &id.chatgpt_user_id)?;
        let action = match &existing {
            None => PreviewAction::Add,
            Some(a) => {
                let newer = match (cred.last_refresh, a.last_refresh_at) {
                    (Some(file), Some(ours)) => file > ours,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                let same_grant = self.store().secrets(&a.id)?.is_some_and(|s| {
                    s.refresh_fingerprint == cred.tokens.refresh_token.fingerprint()
                });
                if newer && !same_grant {
                    PreviewAction::Update
                } else {
                    PreviewAction::KeepNewer
                }
            }
        };
        Ok(ImportPreview {
            email: id.email.clone(),
            plan: id.plan.clone(),
            chatgpt_account_id: id.chatgpt_account_id.clone(),
            existing: existing.map(|a| ExistingAccount {
                id: a.id,
                label: a.label,
            }),
            action,
            access_expires_at: cred.tokens.access_expires_at.map(ms_to_rfc3339),
            last_refresh: cred.last_refresh.map(ms_to_rfc3339),
        })
    }

    /// Renames an account; the label and its `renamed` event commit together.
    pub fn rename(&self, reference: &str, label: &str) -> Result<AccountView, AppError> {
        validate_label(label)?;
        let account = self.store().find_account(reference)?;
        if account.label == label {
            return self.view(&account.id);
        }
        let detail = format!("{} → {}", account.label, label);
        self.store().with_write_lock(|conn| {
            let changed = conn
                .execute(
                    "UPDATE accounts SET label = ?2, updated_at = ?3 WHERE id = ?1",
                    rusqlite::params![account.id, label, now_ms()],
                )
                .map_err(|e| match e.sqlite_error_code() {
                    Some(rusqlite::ErrorCode::ConstraintViolation) => {
                        StoreError::LabelTaken(label.to_string())
                    }
                    _ => e.into(),
                })?;
            if changed == 0 {
                return Err(StoreError::AccountNotFound(reference.to_string()));
            }
            append_event(conn, &account.id, "renamed", Some(&detail))
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
        self.store().with_write_lock(|conn| {
            let changed = conn.execute(
                "UPDATE accounts SET disabled = ?2, updated_at = ?3 WHERE id = ?1",
                rusqlite::params![account.id, disabled, now_ms()],
            )?;
            if changed == 0 {
                return Err(StoreError::AccountNotFound(reference.to_string()));
            }
            let kind = if disabled { "disabled" } else { "enabled" };
            append_event(conn, &account.id, kind, None)
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

fn append_event(
    conn: &rusqlite::Connection,
    account_id: &str,
    kind: &str,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO account_events (account_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![account_id, now_ms(), kind, detail],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::KeyStoreKind;

    fn b64(v: &serde_json::Value) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn jwt(claims: serde_json::Value) -> String {
        format!(
            "{}.{}.sig",
            b64(&serde_json::json!({"alg": "none"})),
            b64(&claims)
        )
    }

    fn auth_json(email: &str, refresh: &str, last_refresh: &str) -> String {
        auth_json_for("acc-1", email, refresh, last_refresh)
    }

    fn auth_json_for(account: &str, email: &str, refresh: &str, last_refresh: &str) -> String {
        let auth = serde_json::json!({
            "chatgpt_account_id": account,
            "chatgpt_user_id": "user-1",
            "chatgpt_plan_type": "plus",
        });
        let id_token = jwt(serde_json::json!({
            "email": email,
            "https://api.openai.com/auth": auth,
        }));
        let access = jwt(serde_json::json!({"exp": 4_000_000_000i64, "iat": 3_999_000_000i64}));
        serde_json::json!({
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": id_token,
                "access_token": access,
                "refresh_token": refresh,
                "account_id": account,
            },
            "last_refresh": last_refresh,
        })
        .to_string()
    }

    fn service() -> (tempfile::TempDir, Service) {
        let dir = tempfile::tempdir().unwrap();
        let s = Service::open(dir.path(), KeyStoreKind::File).unwrap();
        (dir, s)
    }

    #[test]
    fn preview_writes_nothing_and_import_then_matches() {
        let (_d, s) = service();
        let text = auth_json("ana@corp.com", "rt-1", "2025-01-01T00:00:00Z");
        let p = s.preview_auth_json(&text).unwrap();
        assert_eq!(p.email, "ana@corp.com");
        assert_eq!(p.action, PreviewAction::Add);
        assert!(p.existing.is_none());
        assert!(s.list().unwrap().is_empty());
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("rt-1"));

        let out = s.import_text(&text, Some("work")).unwrap();
        assert!(matches!(out, ImportOutcome::Added { .. }));
        // Same grant again: nothing newer.
        let p = s.preview_auth_json(&text).unwrap();
        assert_eq!(p.action, PreviewAction::KeepNewer);
        assert_eq!(p.existing.as_ref().unwrap().label, "work");
        // A newer file with another refresh token would update.
        let newer = auth_json("ana@corp.com", "rt-2", "2025-02-01T00:00:00Z");
        assert_eq!(
            s.preview_auth_json(&newer).unwrap().action,
            PreviewAction::Update
        );
        assert!(matches!(
            s.import_text(&newer, None).unwrap(),
            ImportOutcome::Updated { .. }
        ));
    }

    #[test]
    fn pasted_errors_name_the_paste() {
        let (_d, s) = service();
        let e = s.preview_auth_json("{").unwrap_err();
        assert_eq!(e.code(), "auth_json_not_json");
        assert!(e.to_string().contains("pasted"), "{e}");
        assert_eq!(
            s.import_text("  ", None).unwrap_err().code(),
            "auth_json_empty"
        );
        let text = auth_json("ana@corp.com", "rt-1", "2025-01-01T00:00:00Z");
        assert_eq!(
            s.import_text(&text, Some("")).unwrap_err().code(),
            "invalid_label"
        );
        assert!(s.list().unwrap().is_empty());
    }

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
