//! What importing an auth.json would do, shown before anything is written (the Add dialog), and
//! the imports of a pasted auth.json. The preview asks `decision::decide_import`, as the import does.

use crate::account::ms_to_rfc3339;
use crate::accounts::decision::{decide_import, PreviewAction};
use crate::accounts::import::held_facts;
use crate::accounts::{validate_label, ImportOutcome, Service};
use crate::error::AppError;
use crate::oauth::auth_json::{self, AuthJsonError, AuthSource, Credential, MAX_AUTH_JSON_BYTES};
use serde::Serialize;
use std::path::PathBuf;

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

/// The Codex CLI's auth.json as the Add dialog shows it: where it was looked for, and its preview.
#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct CodexCliPreview {
    /// Where the file is (or would be): `$CODEX_HOME/auth.json`, else `~/.codex/auth.json`.
    pub path: Option<String>,
    pub found: bool,
    pub preview: Option<ImportPreview>,
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

/// The Codex CLI's auth.json: where it is, and its sign-in.
pub(crate) fn read_codex_cli() -> Result<(PathBuf, Credential), AppError> {
    let path = codex_cli_path().ok_or_else(|| {
        AppError::from(crate::error::ConfigError::NoCodexHome(
            "the Codex CLI's auth.json cannot be found",
        ))
    })?;
    let cred = auth_json::read_file(&path)
        .and_then(|b| auth_json::parse(&b))
        .map_err(|error| AppError::AuthJson {
            origin: AuthSource::File(path.clone()),
            error,
        })?;
    Ok((path, cred))
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
        let preview = self.preview(&read_codex_cli()?.1)?;
        Ok(CodexCliPreview {
            path,
            found: true,
            preview: Some(preview),
        })
    }

    /// What an import without a label would do, by the import's own decision; writes nothing.
    fn preview(&self, cred: &Credential) -> Result<ImportPreview, AppError> {
        let id = &cred.identity;
        let (existing, same_grant) = self.held_for(cred)?;
        let held = existing.as_ref().map(|a| held_facts(a, same_grant));
        let action = decide_import(held, cred.last_refresh, None).preview_action();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::test_support::{auth_json, service};

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
    fn preview_and_import_agree() {
        let (_d, s) = service();
        // Each file in turn: what the preview says, then what importing it does.
        let steps = [
            ("rt-1", "2025-01-01T00:00:00Z", PreviewAction::Add),
            // The same grant again, even when the file claims to be newer: a copy of ours.
            ("rt-1", "2025-01-01T00:00:00Z", PreviewAction::KeepNewer),
            ("rt-1", "2025-03-01T00:00:00Z", PreviewAction::KeepNewer),
            // Another grant, older than ours: ours is kept.
            ("rt-0", "2024-12-01T00:00:00Z", PreviewAction::KeepNewer),
            // Another grant, newer: it replaces ours.
            ("rt-2", "2025-02-01T00:00:00Z", PreviewAction::Update),
            ("rt-1", "2025-01-15T00:00:00Z", PreviewAction::KeepNewer),
        ];
        for (i, (refresh, at, want)) in steps.into_iter().enumerate() {
            let text = auth_json("ana@corp.com", refresh, at);
            assert_eq!(s.preview_auth_json(&text).unwrap().action, want, "step {i}");
            let outcome = s.import_text(&text, None).unwrap();
            let did = match outcome {
                ImportOutcome::Added { .. } => PreviewAction::Add,
                ImportOutcome::Updated { .. } => PreviewAction::Update,
                ImportOutcome::KeptNewer { .. } => PreviewAction::KeepNewer,
                other => panic!("step {i}: {other:?}"),
            };
            assert_eq!(did, want, "step {i}");
        }
    }
}
