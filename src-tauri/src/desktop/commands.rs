//! Tauri commands: parse the arguments, call one core function, map the error to `{code, message}`,
//! and announce a change through `events::emit`. Nothing else.

use super::events::{self, FrontendEvent, SignInFinished};
use super::AppState;
use crate::account::AccountView;
use crate::error::{AppError, ErrorBody};
use crate::oauth::client::TokenClient;
use crate::oauth::login::{LoginFlow, LoginOptions};
use crate::service::{ImportOutcome, StoreInfo};
use crate::service_ops::{CodexCliPreview, EventView, ImportPreview};
use serde::Serialize;
use tauri::{AppHandle, Manager, State};

fn body(e: impl Into<AppError>) -> ErrorBody {
    e.into().to_body()
}

/// An empty or blank label from a form field means "no label": the core picks one.
fn optional_label(label: Option<String>) -> Option<String> {
    label.filter(|l| !l.trim().is_empty())
}

#[tauri::command]
pub fn list_accounts(state: State<'_, AppState>) -> Result<Vec<AccountView>, ErrorBody> {
    state.service()?.list().map_err(body)
}

#[tauri::command]
pub fn store_info(state: State<'_, AppState>) -> Result<StoreInfo, ErrorBody> {
    Ok(state.service()?.info())
}

#[tauri::command]
pub fn preview_auth_json(
    state: State<'_, AppState>,
    text: String,
) -> Result<ImportPreview, ErrorBody> {
    state.service()?.preview_auth_json(&text).map_err(body)
}

#[tauri::command]
pub fn import_auth_json(
    app: AppHandle,
    state: State<'_, AppState>,
    text: String,
    label: Option<String>,
) -> Result<ImportOutcome, ErrorBody> {
    let outcome = state
        .service()?
        .import_text(&text, optional_label(label).as_deref())
        .map_err(body)?;
    events::account_changed(&app, Some(&outcome.account().id));
    Ok(outcome)
}

#[tauri::command]
pub fn preview_codex_cli_auth(state: State<'_, AppState>) -> Result<CodexCliPreview, ErrorBody> {
    state.service()?.preview_codex_cli_auth().map_err(body)
}

#[tauri::command]
pub fn import_codex_cli_auth(
    app: AppHandle,
    state: State<'_, AppState>,
    label: Option<String>,
) -> Result<ImportOutcome, ErrorBody> {
    let outcome = state
        .service()?
        .import_codex_cli_auth(optional_label(label).as_deref())
        .map_err(body)?;
    events::account_changed(&app, Some(&outcome.account().id));
    Ok(outcome)
}

#[tauri::command]
pub fn rename_account(
    app: AppHandle,
    state: State<'_, AppState>,
    id: String,
    label: String,
) -> Result<AccountView, ErrorBody> {
    let view = state.service()?.rename(&id, &label).map_err(body)?;
    events::account_changed(&app, Some(&view.id));
    Ok(view)
}

#[tauri::command]
pub fn set_account_disabled(
    app: AppHandle,
    state: State<'_, AppState>,
    id: String,
    disabled: bool,
) -> Result<AccountView, ErrorBody> {
    let view = state.service()?.set_disabled(&id, disabled).map_err(body)?;
    events::account_changed(&app, Some(&view.id));
    Ok(view)
}

#[tauri::command]
pub fn remove_account(
    app: AppHandle,
    state: State<'_, AppState>,
    id: String,
) -> Result<AccountView, ErrorBody> {
    let view = state.service()?.remove(&id).map_err(body)?;
    events::account_changed(&app, Some(&view.id));
    Ok(view)
}

#[tauri::command]
pub fn account_history(
    state: State<'_, AppState>,
    id: String,
    limit: Option<usize>,
) -> Result<Vec<EventView>, ErrorBody> {
    state
        .service()?
        .history(&id, limit.unwrap_or(50))
        .map_err(body)
}

/// Refreshes now through the app's one TokenManager (the scheduler's), so an in-process refresh
/// already in flight is joined, not duplicated. A failure changes the account too (terminal, or a
/// transient warning), so the change is announced either way.
#[tauri::command]
pub async fn refresh_account(
    app: AppHandle,
    state: State<'_, AppState>,
    id: String,
) -> Result<(), ErrorBody> {
    let result = state.token_manager()?.force_refresh(&id, None).await;
    events::account_changed(&app, Some(&id));
    result.map(|_| ()).map_err(body)
}

#[derive(Debug, Clone, Serialize)]
pub struct SignInStarted {
    pub flow: u64,
    pub url: String,
    pub port: u16,
}

/// Starts a browser sign-in and returns its URL at once; the callback is awaited in the
/// background and its end arrives as `signin://finished`. A pending sign-in is cancelled first.
#[tauri::command]
pub async fn sign_in_start(
    app: AppHandle,
    state: State<'_, AppState>,
    label: Option<String>,
) -> Result<SignInStarted, ErrorBody> {
    state.service()?;
    let label = optional_label(label);
    if let Some(l) = &label {
        crate::service::validate_label(l).map_err(body)?;
    }
    let opts = LoginOptions::from_env().map_err(|m| body(AppError::Config(m)))?;
    state.cancel_sign_in("replaced by a new sign-in");
    let flow = LoginFlow::start(&opts, TokenClient::new(opts.issuer.clone()))
        .await
        .map_err(body)?;
    let flow_id = state.begin_sign_in(flow.canceller());
    let started = SignInStarted {
        flow: flow_id,
        url: flow.url().to_string(),
        port: flow.port(),
    };
    tauri::async_runtime::spawn(async move {
        let outcome = flow.wait().await;
        let state = app.state::<AppState>();
        state.end_sign_in(flow_id);
        let stored = match outcome {
            Ok(cred) => state
                .service()
                .and_then(|s| s.sign_in(&cred, label.as_deref()).map_err(body)),
            Err(e) => Err(body(e)),
        };
        let finished = match stored {
            Ok(outcome) => {
                events::account_changed(&app, Some(&outcome.account().id));
                SignInFinished {
                    flow: flow_id,
                    ok: true,
                    message: outcome.sentence(),
                    code: None,
                    account_id: Some(outcome.account().id.clone()),
                }
            }
            Err(e) => SignInFinished {
                flow: flow_id,
                ok: false,
                message: e.message,
                code: Some(e.code),
                account_id: None,
            },
        };
        events::emit(&app, FrontendEvent::SignInFinished(finished));
    });
    Ok(started)
}

/// Cancels the pending sign-in, if any; its `signin://finished` (code `login_cancelled`) follows.
#[tauri::command]
pub fn sign_in_cancel(state: State<'_, AppState>) -> Result<bool, ErrorBody> {
    Ok(state.cancel_sign_in("cancelled in Codex Vault"))
}
