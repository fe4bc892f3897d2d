//! The device-code sign-in and the pasted callback URL, as Tauri commands. A sign-in's end is
//! stored and announced here for every way (`finish`): `signin://finished` as for the browser.

use super::events::{self, DeviceProgressEvent, FrontendEvent, SignInFinished};
use super::AppState;
use crate::error::{AppError, ConfigError, ErrorBody};
use crate::oauth::client::TokenClient;
use crate::oauth::device::{DeviceFlow, DeviceProgress};
use crate::oauth::login::{LoginOptions, Outcome};
use serde::Serialize;
use tauri::{AppHandle, Manager, State};

fn body(e: impl Into<AppError>) -> ErrorBody {
    e.into().to_body()
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct DeviceSignInStarted {
    #[ts(type = "number")]
    pub flow: u64,
    pub user_code: String,
    pub verification_url: String,
    /// When the code stops being approvable (unix ms).
    #[ts(type = "number")]
    pub expires_at_ms: i64,
    #[ts(type = "number")]
    pub interval_secs: u64,
}

/// Asks the issuer for a device code and returns it at once; the polling runs in the
/// background (progress as `signin://device`, the end as `signin://finished`). A pending
/// sign-in of any kind is cancelled first.
#[tauri::command]
pub async fn device_sign_in_start(
    app: AppHandle,
    state: State<'_, AppState>,
    label: Option<String>,
) -> Result<DeviceSignInStarted, ErrorBody> {
    state.service()?;
    let label = label.filter(|l| !l.trim().is_empty());
    if let Some(l) = &label {
        crate::accounts::validate_label(l).map_err(body)?;
    }
    let opts = LoginOptions::from_env().map_err(|m| body(ConfigError::LoginSettings(m)))?;
    state.cancel_sign_in("replaced by a new sign-in");
    let flow = DeviceFlow::start(TokenClient::new(opts.issuer.clone()))
        .await
        .map_err(body)?;
    let flow_id = state.begin_sign_in(flow.login_canceller());
    let code = flow.code();
    let started = DeviceSignInStarted {
        flow: flow_id,
        user_code: code.user_code.clone(),
        verification_url: code.verification_url.clone(),
        expires_at_ms: code.expires_at_ms,
        interval_secs: code.interval.as_secs(),
    };
    let progress_app = app.clone();
    tauri::async_runtime::spawn(async move {
        let outcome = flow
            .wait(|p| {
                events::emit(
                    &progress_app,
                    FrontendEvent::DeviceProgress(progress_event(flow_id, p)),
                )
            })
            .await;
        finish(&app, flow_id, label, outcome);
    });
    Ok(started)
}

fn progress_event(flow: u64, p: DeviceProgress) -> DeviceProgressEvent {
    let (state, interval, message) = match p {
        DeviceProgress::Pending { interval, .. } => ("pending", interval, String::new()),
        DeviceProgress::SlowedDown { interval, .. } => (
            "slow_down",
            interval,
            format!(
                "The sign-in server asked to check less often: every {} s now.",
                interval.as_secs()
            ),
        ),
        DeviceProgress::Retrying { reason, interval } => (
            "retrying",
            interval,
            format!("No answer from the sign-in server ({reason}); trying again."),
        ),
        DeviceProgress::Approved => (
            "approved",
            std::time::Duration::ZERO,
            "Approved; finishing the sign-in…".to_string(),
        ),
    };
    DeviceProgressEvent {
        flow,
        state: state.to_string(),
        interval_secs: interval.as_secs(),
        message,
    }
}

/// Finishes the waiting browser sign-in with the callback URL pasted from another machine.
/// A URL of another sign-in is refused (`login_state_mismatch`) and the sign-in keeps waiting;
/// an accepted one ends as `signin://finished`, as if the browser had come back.
#[tauri::command]
pub async fn sign_in_paste(state: State<'_, AppState>, url: String) -> Result<(), ErrorBody> {
    let pending = state.pending().as_ref().map(|(_, c)| c.clone());
    let Some(pending) = pending else {
        return Err(body(crate::oauth::login::LoginError::PasteInvalid(
            "no sign-in is waiting; start one first".into(),
        )));
    };
    pending.paste(&url).await.map_err(body)
}

/// Stores a finished sign-in (or says why not) and tells the window: every way ends here.
pub(super) fn finish(app: &AppHandle, flow_id: u64, label: Option<String>, outcome: Outcome) {
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
            events::account_changed(app, Some(&outcome.account().id));
            SignInFinished {
                flow: flow_id,
                ok: true,
                message: super::commands::outcome_message(label.as_deref(), &outcome),
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
    events::emit(app, FrontendEvent::SignInFinished(finished));
}
