//! The only module that names Tauri. Commands parse, call one service function, map the error
//! to `{code, message}`; nothing else lives here.

mod commands;
pub mod events;

use crate::error::ErrorBody;
use crate::oauth::login::LoginCanceller;
use crate::refresh::TokenManager;
use crate::service::Service;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What commands reach: the opened service (or why it could not be opened, shown by the UI), the
/// app's one TokenManager (shared with the scheduler: one single-flight per account), and the
/// browser sign-in in progress, if any.
pub struct AppState {
    pub service: Result<Service, ErrorBody>,
    token_manager: Option<TokenManager>,
    sign_in: Mutex<Option<(u64, LoginCanceller)>>,
    next_flow: AtomicU64,
}

impl AppState {
    pub fn new(service: Result<Service, ErrorBody>) -> AppState {
        let token_manager = service.as_ref().ok().map(Service::token_manager);
        AppState {
            service,
            token_manager,
            sign_in: Mutex::new(None),
            next_flow: AtomicU64::new(0),
        }
    }

    pub fn service(&self) -> Result<&Service, ErrorBody> {
        self.service.as_ref().map_err(Clone::clone)
    }

    pub fn token_manager(&self) -> Result<&TokenManager, ErrorBody> {
        self.service()?;
        self.token_manager.as_ref().ok_or_else(|| ErrorBody {
            code: "unknown".into(),
            message: "the refresh engine is not running".into(),
        })
    }

    /// Records a started sign-in; returns its flow number (what `signin://finished` names).
    fn begin_sign_in(&self, canceller: LoginCanceller) -> u64 {
        let flow = self.next_flow.fetch_add(1, Ordering::Relaxed) + 1;
        *self.pending() = Some((flow, canceller));
        flow
    }

    /// Forgets a finished sign-in, unless a newer one replaced it meanwhile.
    fn end_sign_in(&self, flow: u64) {
        let mut pending = self.pending();
        if pending.as_ref().is_some_and(|(f, _)| *f == flow) {
            *pending = None;
        }
    }

    /// Cancels the pending sign-in; false when none was pending.
    fn cancel_sign_in(&self, why: &str) -> bool {
        match self.pending().take() {
            Some((_, canceller)) => {
                canceller.cancel(why);
                true
            }
            None => false,
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Option<(u64, LoginCanceller)>> {
        self.sign_in.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn has_display() -> bool {
    if cfg!(target_os = "linux") {
        std::env::var_os("DISPLAY").is_some_and(|v| !v.is_empty())
            || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|v| !v.is_empty())
    } else {
        true
    }
}

pub fn run() -> ExitCode {
    if !has_display() {
        eprintln!(
            "No display found (DISPLAY/WAYLAND_DISPLAY unset): the desktop window needs one.\n\
             On a headless machine run `codex-vault serve` (the endpoint + background refresh) and the CLI: `codex-vault accounts list`, `codex-vault --help`."
        );
        return ExitCode::from(crate::cli::EXIT_ERROR);
    }
    let state = AppState::new(Service::open_default().map_err(|e| {
        tracing::error!(code = e.code(), "cannot open the store: {e}");
        e.to_body()
    }));
    // The background refresher and the loopback endpoint run as long as the app: unfinished
    // refreshes of a crashed process are settled first, then tokens are kept fresh ahead of
    // expiry and served to local tools (the same endpoint `codex-vault serve` runs).
    let token_manager = state.token_manager.clone();
    let result = tauri::Builder::default()
        .setup(move |_app| {
            if let Some(tm) = token_manager {
                tauri::async_runtime::spawn(async move {
                    tm.recover_intents().await;
                    let _scheduler = crate::refresh::Scheduler::spawn(tm.clone());
                    let _endpoint = match Service::open_default() {
                        Ok(service) => {
                            match crate::serve::start_endpoint(
                                std::sync::Arc::new(service),
                                tm,
                                None,
                            )
                            .await
                            {
                                Ok(running) => Some(running),
                                Err(e) => {
                                    tracing::error!(
                                        code = e.code(),
                                        "the endpoint did not start: {e}"
                                    );
                                    None
                                }
                            }
                        }
                        Err(e) => {
                            tracing::error!(code = e.code(), "the endpoint did not start: {e}");
                            None
                        }
                    };
                    // Held for the life of the app (dropping them stops the scheduler and endpoint).
                    std::future::pending::<()>().await;
                });
            }
            Ok(())
        })
        .manage(state)
        .invoke_handler(tauri::generate_handler![
            commands::list_accounts,
            commands::store_info,
            commands::preview_auth_json,
            commands::import_auth_json,
            commands::preview_codex_cli_auth,
            commands::import_codex_cli_auth,
            commands::rename_account,
            commands::set_account_disabled,
            commands::remove_account,
            commands::account_history,
            commands::refresh_account,
            commands::sign_in_start,
            commands::sign_in_cancel,
        ])
        .run(tauri::generate_context!());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: the desktop app failed: {e}");
            ExitCode::from(crate::cli::EXIT_ERROR)
        }
    }
}
