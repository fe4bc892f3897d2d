//! The bulk import's commands: choose files or a folder (the native chooser, called from here so
//! the window needs no dialog permission), preview them, import them with progress. Each calls
//! the core's `accounts::bulk` and nothing more.

use super::events;
use super::AppState;
use crate::accounts::bulk::{self, BulkPlan};
use crate::accounts::ownership::Ownership;
use crate::error::{AppError, ErrorBody};
use serde::Serialize;
use std::path::PathBuf;
use tauri::ipc::Channel;
use tauri::{AppHandle, State};
use tauri_plugin_dialog::DialogExt;

fn body(e: impl Into<AppError>) -> ErrorBody {
    e.into().to_body()
}

fn files(paths: &[String]) -> Result<Vec<PathBuf>, ErrorBody> {
    let paths: Vec<PathBuf> = paths
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();
    bulk::collect_files(&paths).map_err(body)
}

/// The native chooser: several files, or one folder. `None`: the user closed it.
#[tauri::command]
pub async fn pick_import_paths(app: AppHandle, folder: bool) -> Option<Vec<String>> {
    let dialog = app.dialog().file().set_title(if folder {
        "Choose a folder of sign-in files"
    } else {
        "Choose sign-in files"
    });
    // The blocking pickers wait for the user: off the async runtime's workers.
    let picked = tauri::async_runtime::spawn_blocking(move || {
        if folder {
            dialog.blocking_pick_folder().map(|p| vec![p])
        } else {
            dialog.blocking_pick_files()
        }
    })
    .await
    .ok()
    .flatten()?;
    Some(
        picked
            .into_iter()
            .filter_map(|p| p.into_path().ok())
            .map(|p| p.display().to_string())
            .collect(),
    )
}

#[tauri::command]
pub async fn bulk_import_preview(
    state: State<'_, AppState>,
    paths: Vec<String>,
) -> Result<BulkPlan, ErrorBody> {
    let service = state.service.clone()?;
    let files = files(&paths)?;
    run_blocking(move || service.bulk_preview(&files)).await
}

/// How far an import is: `done` of `total` sign-ins.
#[derive(Debug, Clone, Copy, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct BulkProgress {
    pub done: u32,
    pub total: u32,
}

#[tauri::command]
pub async fn bulk_import(
    app: AppHandle,
    state: State<'_, AppState>,
    paths: Vec<String>,
    ownership: Option<Ownership>,
    progress: Channel<BulkProgress>,
) -> Result<BulkPlan, ErrorBody> {
    let service = state.service.clone()?;
    let files = files(&paths)?;
    let plan = run_blocking(move || {
        let port = crate::endpoint::info::current_port(&service)?;
        service.bulk_import(&files, ownership, port, |done, total| {
            // A closed window drops the channel: the import goes on regardless.
            let _ = progress.send(BulkProgress {
                done: done as u32,
                total: total as u32,
            });
        })
    })
    .await;
    events::account_changed(&app, None);
    plan
}

/// Store work (SQLite, the keychain, file reads) on a blocking thread, not an async worker.
pub(super) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppError> + Send + 'static,
) -> Result<T, ErrorBody> {
    tauri::async_runtime::spawn_blocking(f)
        .await
        .map_err(|e| body(crate::error::ConfigError::Runtime(e.to_string())))?
        .map_err(body)
}
