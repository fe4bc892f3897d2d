//! Tauri commands: parse the arguments, call one core function, map the error to `{code, message}`,
//! and announce a change through `events::emit`. Nothing else.

use super::events;
use super::prefs::{self, Prefs};
use super::AppState;
use crate::account::AccountView;
use crate::accounts::ownership::{OwnedImport, Ownership};
use crate::accounts::{CodexCliPreview, EventView, ImportPreview};
use crate::accounts::{ImportOutcome, StoreInfo};
use crate::endpoint::ctl::{EndpointControl, EndpointStatus};
use crate::error::{AppError, ConfigError, ErrorBody, ErrorCode};
use crate::oauth::client::TokenClient;
use crate::oauth::login::{LoginFlow, LoginOptions};
use serde::Serialize;
use std::sync::Arc;
use tauri::{AppHandle, State};

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

/// What an import or sign-in did, in the one wording the CLI prints too
/// (`ImportOutcome::sentence`, plus `label_note` when the asked label was not applied).
pub(super) fn outcome_message(label: Option<&str>, outcome: &ImportOutcome) -> String {
    match crate::accounts::label_note(label, outcome) {
        Some(note) => format!("{} Note: {note}.", outcome.sentence()),
        None => outcome.sentence(),
    }
}

/// An import's result with its sentence: the UI shows `message` as it is.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct Imported {
    #[serde(flatten)]
    pub outcome: ImportOutcome,
    pub message: String,
}

/// `import_codex_cli_auth`'s result with its sentence.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct OwnedImported {
    #[serde(flatten)]
    pub import: OwnedImport,
    pub message: String,
}

#[tauri::command]
pub fn import_auth_json(
    app: AppHandle,
    state: State<'_, AppState>,
    text: String,
    label: Option<String>,
) -> Result<Imported, ErrorBody> {
    let label = optional_label(label);
    let outcome = state
        .service()?
        .import_text(&text, label.as_deref())
        .map_err(body)?;
    events::account_changed(&app, Some(&outcome.account().id));
    let message = outcome_message(label.as_deref(), &outcome);
    Ok(Imported { outcome, message })
}

#[tauri::command]
pub fn preview_codex_cli_auth(state: State<'_, AppState>) -> Result<CodexCliPreview, ErrorBody> {
    state.service()?.preview_codex_cli_auth().map_err(body)
}

#[tauri::command]
pub fn import_codex_cli_auth(
    app: AppHandle,
    state: State<'_, AppState>,
    ownership: Ownership,
    label: Option<String>,
) -> Result<OwnedImported, ErrorBody> {
    let service = state.service()?;
    let port = crate::endpoint::info::current_port(service).map_err(body)?;
    let label = optional_label(label);
    let imported = service
        .import_codex_cli_auth_owned(label.as_deref(), ownership, port)
        .map_err(body)?;
    events::account_changed(&app, Some(&imported.outcome.account().id));
    let message = outcome_message(label.as_deref(), &imported.outcome);
    Ok(OwnedImported {
        import: imported,
        message,
    })
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

/// A page of the request log, newest first (`filter.before_id`: the next page).
#[tauri::command]
pub fn activity_page(
    state: State<'_, AppState>,
    filter: crate::activity::query::Filter,
    limit: Option<usize>,
) -> Result<crate::activity::report::ActivityPage, ErrorBody> {
    state
        .service()?
        .activity_page(&filter, limit.unwrap_or(200).min(5_000))
        .map_err(body)
}

#[tauri::command]
pub fn activity_totals(
    state: State<'_, AppState>,
    filter: crate::activity::query::Filter,
    by: crate::activity::query::GroupBy,
) -> Result<Vec<crate::activity::query::Totals>, ErrorBody> {
    state.service()?.activity_totals(&filter, by).map_err(body)
}

#[tauri::command]
pub fn usage_history(
    state: State<'_, AppState>,
    since_ms: i64,
) -> Result<Vec<crate::activity::query::UsagePoint>, ErrorBody> {
    state.service()?.usage_history(since_ms).map_err(body)
}

/// Writes the filtered table as CSV into the Downloads folder (else the home folder); returns
/// the file's path.
#[tauri::command]
pub fn export_activity_csv(
    state: State<'_, AppState>,
    filter: crate::activity::query::Filter,
) -> Result<String, ErrorBody> {
    let dir = dirs::download_dir()
        .or_else(dirs::home_dir)
        .ok_or_else(|| body(crate::error::AppError::NoDataDir))?;
    let name = format!(
        "codex-vault-activity-{}.csv",
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    );
    let path = dir.join(name);
    state
        .service()?
        .export_activity_csv(&filter, &path)
        .map_err(body)?;
    Ok(path.display().to_string())
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

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct SignInStarted {
    #[ts(type = "number")]
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
        crate::accounts::validate_label(l).map_err(body)?;
    }
    let opts = LoginOptions::from_env().map_err(|m| body(ConfigError::LoginSettings(m)))?;
    state.cancel_sign_in("replaced by a new sign-in");
    let flow = LoginFlow::start(&opts, TokenClient::new(opts.issuer.clone()))
        .await
        .map_err(body)?;
    let flow_id = state.begin_sign_in(flow.canceller());
    crate::oauth::login::open_browser(flow.url());
    let started = SignInStarted {
        flow: flow_id,
        url: flow.url().to_string(),
        port: flow.port(),
    };
    tauri::async_runtime::spawn(async move {
        let outcome = flow.wait().await;
        super::signin::finish(&app, flow_id, label, outcome);
    });
    Ok(started)
}

/// Cancels the pending sign-in, if any; its `signin://finished` (code `login_cancelled`) follows.
#[tauri::command]
pub fn sign_in_cancel(state: State<'_, AppState>) -> Result<bool, ErrorBody> {
    Ok(state.cancel_sign_in("cancelled in Codex Vault"))
}

fn endpoint(state: &AppState) -> Result<Arc<EndpointControl>, ErrorBody> {
    state.service()?;
    state.endpoint.clone().ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::EndpointUnavailable,
            "the endpoint could not open the store; see the log",
        )
    })
}

#[tauri::command]
pub async fn endpoint_status(state: State<'_, AppState>) -> Result<EndpointStatus, ErrorBody> {
    endpoint(&state)?.status().await.map_err(body)
}

#[tauri::command]
pub async fn endpoint_start(
    app: AppHandle,
    state: State<'_, AppState>,
) -> Result<EndpointStatus, ErrorBody> {
    let ctl = endpoint(&state)?;
    let result = ctl.start().await;
    super::announce_endpoint(&app, &ctl).await;
    result.map_err(body)
}

#[tauri::command]
pub async fn endpoint_stop(
    app: AppHandle,
    state: State<'_, AppState>,
) -> Result<EndpointStatus, ErrorBody> {
    let ctl = endpoint(&state)?;
    let result = ctl.stop().await;
    super::announce_endpoint(&app, &ctl).await;
    result.map_err(body)
}

#[tauri::command]
pub async fn endpoint_set_port(
    app: AppHandle,
    state: State<'_, AppState>,
    port: u16,
) -> Result<EndpointStatus, ErrorBody> {
    let ctl = endpoint(&state)?;
    let result = ctl.set_port(port).await;
    super::announce_endpoint(&app, &ctl).await;
    result.map_err(body)
}

/// The key itself: only for the panel's explicit Reveal / Copy.
#[tauri::command]
pub fn endpoint_key(state: State<'_, AppState>) -> Result<String, ErrorBody> {
    endpoint(&state)?.key().map_err(body)
}

#[tauri::command]
pub async fn endpoint_rotate_key(
    app: AppHandle,
    state: State<'_, AppState>,
) -> Result<EndpointStatus, ErrorBody> {
    let ctl = endpoint(&state)?;
    let result = ctl.rotate_key().await;
    super::announce_endpoint(&app, &ctl).await;
    result.map_err(body)
}

#[tauri::command]
pub fn get_prefs(app: AppHandle) -> Prefs {
    prefs::load(&app)
}

/// Saves the UI preferences (the window geometry is the app's to keep, not the form's).
#[tauri::command]
pub fn set_prefs(app: AppHandle, prefs: Prefs) -> Result<Prefs, ErrorBody> {
    let mut next = prefs::load(&app);
    next.theme = prefs.theme;
    next.start_minimized = prefs.start_minimized;
    prefs::save(&app, &next).map_err(|m| body(ConfigError::Prefs(m)))?;
    Ok(next)
}

/// Why the store did not open, and whether "set it aside and start fresh" is offered.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct StartupProblem {
    pub code: ErrorCode,
    pub message: String,
    pub can_set_aside: bool,
    pub data_dir: Option<String>,
}

#[tauri::command]
pub fn startup_problem(state: State<'_, AppState>) -> Option<StartupProblem> {
    let e = state.service.as_ref().err()?;
    Some(StartupProblem {
        code: e.code,
        message: e.message.clone(),
        can_set_aside: crate::accounts::set_aside::can_set_aside(e.code.as_str())
            && state.data_dir.is_some(),
        data_dir: state.data_dir.as_ref().map(|d| d.display().to_string()),
    })
}

/// Moves the unreadable store aside (never deletes it) and restarts into a fresh one.
#[tauri::command]
pub fn set_aside_store(app: AppHandle, state: State<'_, AppState>) -> Result<String, ErrorBody> {
    let problem = state.service.as_ref().err().ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::StoreOpen,
            "the store opened fine; there is nothing to set aside",
        )
    })?;
    if !crate::accounts::set_aside::can_set_aside(problem.code.as_str()) {
        return Err(ErrorBody::new(
            ErrorCode::SetAsideNotOffered,
            format!(
                "starting fresh does not fix `{}`; {}",
                problem.code, problem.message
            ),
        ));
    }
    let dir = state
        .data_dir
        .as_ref()
        .ok_or_else(|| body(AppError::NoDataDir))?;
    let moved = crate::accounts::set_aside::set_aside(dir).map_err(body)?;
    tracing::warn!(to = %moved.display(), "restarting with a fresh store");
    app.restart();
}

/// "Try again" after fixing what kept the store from opening: the store, the keychain and the
/// background tasks are set up at start, so a clean restart is the honest retry.
#[tauri::command]
pub fn restart_app(app: AppHandle) {
    app.restart();
}

/// Quit, after refreshes in flight are saved (at most 15 s). `force`: the user confirmed that a
/// new sign-in held in memory only may be lost.
#[tauri::command]
pub fn quit_app(app: AppHandle, force: bool) {
    super::request_quit(&app, force);
}

/// Whether the desktop session starts Codex Vault at sign-in (the OS's own entry is the truth).
#[tauri::command]
pub fn get_autostart(app: AppHandle) -> Result<bool, ErrorBody> {
    use tauri_plugin_autostart::ManagerExt;
    app.autolaunch()
        .is_enabled()
        .map_err(|e| body(ConfigError::AutostartRead(e.to_string())))
}

#[tauri::command]
pub fn set_autostart(
    app: AppHandle,
    state: State<'_, AppState>,
    enabled: bool,
) -> Result<bool, ErrorBody> {
    use tauri_plugin_autostart::ManagerExt;
    let launcher = app.autolaunch();
    // Asking for what is already so is a no-op (removing an absent entry is an error otherwise).
    if launcher.is_enabled().ok() == Some(enabled) {
        return Ok(enabled);
    }
    let result = if enabled {
        launcher.enable()
    } else {
        launcher.disable()
    };
    result.map_err(|e| body(ConfigError::AutostartChange(e.to_string())))?;
    // The broker variable for GUI apps exists only while we start at sign-in (connect::broker_env).
    if let Ok(service) = state.service() {
        let _ = crate::connect::sync_broker_env(service);
    }
    launcher
        .is_enabled()
        .map_err(|e| body(ConfigError::AutostartRead(e.to_string())))
}

/// The About box: one version everywhere (Cargo workspace → tauri.conf.json → `--version`).
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct About {
    pub name: String,
    pub version: String,
    pub data_dir: Option<String>,
}

#[tauri::command]
pub fn about(app: AppHandle, state: State<'_, AppState>) -> About {
    let info = app.package_info();
    About {
        name: info.name.clone(),
        version: info.version.to_string(),
        data_dir: state.data_dir.as_ref().map(|d| d.display().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountView {
        serde_json::from_value(serde_json::json!({
            "id": "a1", "label": "work", "email": "ana@corp.com", "chatgpt_account_id": "acc",
            "plan": "team", "status": "healthy", "failure": null, "last_error": null,
            "access_expires_at": null, "last_refresh_at": null, "rate_limited_until": null,
            "usage": null, "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    /// The UI shows `message` as it is: the CLI's own sentence, beside the outcome's fields.
    #[test]
    fn an_import_result_carries_the_cli_sentence() {
        let outcome = ImportOutcome::Added { account: account() };
        let message = outcome_message(None, &outcome);
        assert_eq!(message, outcome.sentence());
        let json = serde_json::to_value(Imported { outcome, message }).unwrap();
        assert_eq!(json["outcome"], "added");
        assert_eq!(json["account"]["label"], "work");
        assert_eq!(
            json["message"],
            "Imported account work (ana@corp.com, team) as a1."
        );
    }
}

/// *Copy diagnostics*: the report `codex-vault diagnostics` prints (no token, key or email), with
/// this app's endpoint start failure if there is one.
#[tauri::command]
pub async fn diagnostics(
    state: State<'_, AppState>,
) -> Result<crate::diagnostics::Diagnostics, ErrorBody> {
    let start_error = match state.endpoint.as_ref() {
        Some(ctl) => ctl
            .status()
            .await
            .ok()
            .and_then(|s| s.error)
            .map(|e| e.message),
        None => None,
    };
    crate::diagnostics::build(state.service()?, start_error).map_err(body)
}

/// One notification's switch, as the Settings page shows it.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct NoticeSwitch {
    pub kind: crate::notices::NoticeKind,
    pub on: bool,
}

/// The notifications' switches (store settings `notify.*`, on unless set off).
#[tauri::command]
pub fn notice_switches(state: State<'_, AppState>) -> Result<Vec<NoticeSwitch>, ErrorBody> {
    let settings = state.service()?.store().settings();
    Ok(crate::notices::NoticeKind::ALL
        .iter()
        .map(|&kind| NoticeSwitch {
            kind,
            on: crate::notices::switched_on(settings.get(kind.setting_key()).as_deref()),
        })
        .collect())
}

#[tauri::command]
pub fn set_notice_switch(
    state: State<'_, AppState>,
    kind: crate::notices::NoticeKind,
    on: bool,
) -> Result<(), ErrorBody> {
    state
        .service()?
        .store()
        .set_setting(kind.setting_key(), if on { "on" } else { "off" })
        .map_err(body)
}

/// The Logs view: one page of the newest log file (paged back from the end, or followed).
#[tauri::command]
pub fn read_logs(
    state: State<'_, AppState>,
    query: crate::logging::LogQuery,
) -> Result<crate::logging::LogPage, ErrorBody> {
    let dir = std::path::PathBuf::from(state.service()?.info().data_dir);
    crate::logging::page(&dir, &query)
        .map_err(|e| ErrorBody::new(ErrorCode::Unknown, format!("cannot read the log file: {e}")))
}
