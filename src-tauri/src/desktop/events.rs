//! Every live event the window receives: one enum, namespaced names, emitted only by `emit`.
//! The UI (ui/src/api.ts) names the same strings and payload shapes.

use crate::endpoint_ctl::EndpointStatus;
use serde::Serialize;
use tauri::{AppHandle, Emitter};

pub const ACCOUNTS_CHANGED: &str = "accounts://changed";
pub const SIGNIN_FINISHED: &str = "signin://finished";
pub const ENDPOINT_CHANGED: &str = "endpoint://changed";

#[derive(Debug, Clone, PartialEq)]
pub enum FrontendEvent {
    /// One account changed (`Some(id)`), or possibly all of them (`None`): the UI reloads its list.
    AccountsChanged { account_id: Option<String> },
    /// A browser sign-in started by `sign_in_start` ended: signed in, failed, or cancelled.
    SignInFinished(SignInFinished),
    /// The endpoint started, stopped, moved, got a new key, or served more requests.
    EndpointChanged(EndpointStatus),
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccountsChanged {
    pub account_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SignInFinished {
    /// Which `sign_in_start` this answers (a replaced flow's late answer is ignored by the UI).
    pub flow: u64,
    pub ok: bool,
    /// What happened, in words ("Signed in: added account …" or the error's message).
    pub message: String,
    /// The error code when `ok` is false (`login_cancelled`, `missing_codex_entitlement`, …).
    pub code: Option<String>,
    pub account_id: Option<String>,
}

impl FrontendEvent {
    pub fn name(&self) -> &'static str {
        match self {
            FrontendEvent::AccountsChanged { .. } => ACCOUNTS_CHANGED,
            FrontendEvent::SignInFinished(_) => SIGNIN_FINISHED,
            FrontendEvent::EndpointChanged(_) => ENDPOINT_CHANGED,
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
        FrontendEvent::EndpointChanged(status) => app.emit(name, status),
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
