//! Every live event the window receives: one enum, namespaced names, emitted only by `emit`.
//! The UI (ui/src/api.ts) names the same strings and payload shapes.

use crate::endpoint::ctl::EndpointStatus;
use serde::Serialize;
use tauri::{AppHandle, Emitter};

pub const ACCOUNTS_CHANGED: &str = "accounts://changed";
pub const SIGNIN_FINISHED: &str = "signin://finished";
pub const SIGNIN_DEVICE: &str = "signin://device";
pub const ENDPOINT_CHANGED: &str = "endpoint://changed";
pub const QUIT_HELD: &str = "quit://held";

#[derive(Debug, Clone, PartialEq)]
pub enum FrontendEvent {
    /// One account changed (`Some(id)`), or possibly all of them (`None`): the UI reloads its list.
    AccountsChanged { account_id: Option<String> },
    /// A browser sign-in started by `sign_in_start` ended: signed in, failed, or cancelled.
    SignInFinished(SignInFinished),
    /// A device-code sign-in polled: still pending, asked to slow down, retrying, approved.
    DeviceProgress(DeviceProgressEvent),
    /// The endpoint started, stopped, moved, got a new key, or served more requests.
    EndpointChanged(EndpointStatus),
    /// Quit was asked while a new sign-in is held in memory only: the window asks the user
    /// (quitting now loses it), and answers with `quit_app { force: true }`.
    QuitHeld(QuitHeld),
}

#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct QuitHeld {
    /// The accounts whose new sign-in would be lost.
    pub account_ids: Vec<String>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct AccountsChanged {
    pub account_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct SignInFinished {
    /// Which `sign_in_start` this answers (a replaced flow's late answer is ignored by the UI).
    #[ts(type = "number")]
    pub flow: u64,
    pub ok: bool,
    /// What happened, in words ("Signed in: added account …" or the error's message).
    pub message: String,
    /// The error code when `ok` is false (`login_cancelled`, `missing_codex_entitlement`, …).
    pub code: Option<crate::error_code::ErrorCode>,
    pub account_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct DeviceProgressEvent {
    /// Which `device_sign_in_start` this is about.
    #[ts(type = "number")]
    pub flow: u64,
    /// `pending`, `slow_down`, `retrying` or `approved`.
    pub state: String,
    /// The polling interval from now on.
    #[ts(type = "number")]
    pub interval_secs: u64,
    /// Words for the window (empty while simply pending).
    pub message: String,
}

impl FrontendEvent {
    pub fn name(&self) -> &'static str {
        match self {
            FrontendEvent::AccountsChanged { .. } => ACCOUNTS_CHANGED,
            FrontendEvent::SignInFinished(_) => SIGNIN_FINISHED,
            FrontendEvent::DeviceProgress(_) => SIGNIN_DEVICE,
            FrontendEvent::EndpointChanged(_) => ENDPOINT_CHANGED,
            FrontendEvent::QuitHeld(_) => QUIT_HELD,
        }
    }
}

/// The one place events leave the backend. A window that is gone is not an error worth more
/// than a log line: the next list load shows the truth anyway.
pub fn emit(app: &AppHandle, event: FrontendEvent) {
    let name = event.name();
    let result = match event {
        FrontendEvent::AccountsChanged { account_id } => {
            app.emit(name, AccountsChanged { account_id })
        }
        FrontendEvent::SignInFinished(payload) => app.emit(name, payload),
        FrontendEvent::DeviceProgress(payload) => app.emit(name, payload),
        FrontendEvent::EndpointChanged(status) => app.emit(name, status),
        FrontendEvent::QuitHeld(payload) => app.emit(name, payload),
    };
    if let Err(e) = result {
        tracing::warn!(event = name, "cannot emit a window event: {e}");
    }
}

/// Shorthand for the common case after a mutating command.
pub fn account_changed(app: &AppHandle, account_id: Option<&str>) {
    emit(
        app,
        FrontendEvent::AccountsChanged {
            account_id: account_id.map(str::to_string),
        },
    );
}
