//! Tauri commands of the Endpoint page's "Connect Codex" (thin: each calls `crate::connect`).

use super::AppState;
use crate::connect::{self, ConnectOptions, ConnectReport, ConnectState, DisconnectReport};
use crate::error::{AppError, ErrorBody};
use std::path::PathBuf;
use tauri::State;

fn body(e: impl Into<AppError>) -> ErrorBody {
    e.into().to_body()
}

/// An empty field means "the default Codex home" (`$CODEX_HOME`, else `~/.codex`).
fn dir(codex_home: Option<String>) -> Option<PathBuf> {
    codex_home
        .filter(|d| !d.trim().is_empty())
        .map(PathBuf::from)
}

#[tauri::command]
pub fn codex_connections(state: State<'_, AppState>) -> Result<ConnectState, ErrorBody> {
    connect::state(state.service()?).map_err(body)
}

/// Connect (the page asked whether to make Codex Vault the default provider).
#[tauri::command]
pub fn codex_connect(
    state: State<'_, AppState>,
    codex_home: Option<String>,
    make_default: bool,
    status_routes: bool,
    broker: bool,
) -> Result<ConnectReport, ErrorBody> {
    let opts = ConnectOptions {
        codex_home: dir(codex_home),
        make_default,
        status_routes,
        broker,
        ..ConnectOptions::default()
    };
    connect::connect(state.service()?, &opts).map_err(body)
}

#[tauri::command]
pub fn codex_disconnect(
    state: State<'_, AppState>,
    codex_home: String,
) -> Result<DisconnectReport, ErrorBody> {
    connect::disconnect(state.service()?, dir(Some(codex_home)).as_deref()).map_err(body)
}
