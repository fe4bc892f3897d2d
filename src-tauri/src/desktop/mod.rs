//! The only module that names Tauri. Commands parse, call one service function, map the error
//! to `{code, message}`; nothing else lives here.

mod commands;

use crate::error::ErrorBody;
use crate::service::Service;
use std::process::ExitCode;

/// What commands reach: the opened service, or why it could not be opened (shown by the UI).
pub struct AppState {
    pub service: Result<Service, ErrorBody>,
}

impl AppState {
    pub fn service(&self) -> Result<&Service, ErrorBody> {
        self.service.as_ref().map_err(Clone::clone)
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
             On a headless machine use the CLI instead: `codex-vault accounts list`, `codex-vault accounts import`, `codex-vault --help`."
        );
        return ExitCode::from(crate::cli::EXIT_ERROR);
    }
    let state = AppState {
        service: Service::open_default().map_err(|e| {
            tracing::error!(code = e.code(), "cannot open the store: {e}");
            e.to_body()
        }),
    };
    // The background refresher runs as long as the app: unfinished refreshes of a crashed
    // process are settled first, then tokens are kept fresh ahead of expiry.
    let token_manager = state.service.as_ref().ok().map(|s| s.token_manager());
    let result = tauri::Builder::default()
        .setup(move |_app| {
            if let Some(tm) = token_manager {
                tauri::async_runtime::spawn(async move {
                    tm.recover_intents().await;
                    let _scheduler = crate::refresh::Scheduler::spawn(tm);
                    // Held for the life of the app (dropping it stops the scheduler).
                    std::future::pending::<()>().await;
                });
            }
            Ok(())
        })
        .manage(state)
        .invoke_handler(tauri::generate_handler![
            commands::list_accounts,
            commands::store_info
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
