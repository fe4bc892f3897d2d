//! Backup and restore commands: choose the file (the native chooser, called from here so the
//! window needs no dialog permission), then seal or open it through `accounts::restore`. The
//! scrypt work takes about a second, so it runs on a blocking thread.

use super::bulk::run_blocking;
use super::events;
use super::AppState;
use crate::account::AccountView;
use crate::accounts::restore::{open_backup, BackupSummary, RestoreReport};
use crate::error::{AppError, BackupError, ErrorBody};
use crate::secret::Secret;
use std::path::PathBuf;
use tauri::{AppHandle, State};
use tauri_plugin_dialog::DialogExt;

/// The native chooser: where to write a backup (`save`) or which backup to restore.
/// `None`: the user closed it.
#[tauri::command]
pub async fn pick_backup_path(app: AppHandle, save: bool) -> Option<String> {
    let dialog = app
        .dialog()
        .file()
        .add_filter("Codex Vault backup", &["age"]);
    let picked = tauri::async_runtime::spawn_blocking(move || {
        if save {
            let name = format!("codex-vault-{}.age", chrono::Utc::now().format("%Y-%m-%d"));
            dialog
                .set_title("Save an encrypted backup")
                .set_file_name(name)
                .blocking_save_file()
        } else {
            dialog
                .set_title("Choose a backup to restore")
                .blocking_pick_file()
        }
    })
    .await
    .ok()
    .flatten()?;
    picked.into_path().ok().map(|p| p.display().to_string())
}

fn path(path: &str) -> Result<PathBuf, ErrorBody> {
    let path = path.trim();
    if path.is_empty() {
        return Err(AppError::from(BackupError::Io {
            action: "use",
            path: "the backup file".into(),
            detail: "none was chosen; choose one or type its path".into(),
        })
        .to_body());
    }
    Ok(PathBuf::from(path))
}

/// `again` is the second typing of a new passphrase: a backup sealed with a mistyped one
/// could never be opened.
#[tauri::command]
pub async fn write_backup(
    state: State<'_, AppState>,
    path: String,
    passphrase: String,
    again: String,
) -> Result<BackupSummary, ErrorBody> {
    let service = state.service.clone()?;
    let path = self::path(&path)?;
    let (passphrase, again) = (Secret::new(passphrase), Secret::new(again));
    run_blocking(move || {
        if passphrase != again {
            return Err(BackupError::Passphrase(
                "the two passphrases differ; nothing was written".into(),
            )
            .into());
        }
        service.write_backup(&path, &passphrase)
    })
    .await
}

/// Opens the backup first: a wrong passphrase or a wrong file changes nothing.
#[tauri::command]
pub async fn restore_backup(
    app: AppHandle,
    state: State<'_, AppState>,
    path: String,
    passphrase: String,
) -> Result<RestoreReport, ErrorBody> {
    let service = state.service.clone()?;
    let path = self::path(&path)?;
    let passphrase = Secret::new(passphrase);
    let report = run_blocking(move || {
        let doc = open_backup(&path, &passphrase)?;
        service.restore(&doc)
    })
    .await?;
    events::account_changed(&app, None);
    Ok(report)
}

#[tauri::command]
pub fn confirm_restored(
    app: AppHandle,
    state: State<'_, AppState>,
    id: String,
) -> Result<AccountView, ErrorBody> {
    let view = state
        .service()?
        .confirm_restored(&id)
        .map_err(|e| e.to_body())?;
    events::account_changed(&app, Some(&view.id));
    Ok(view)
}
