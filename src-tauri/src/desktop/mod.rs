//! The only module that names Tauri. Commands parse, call one service function, map the error
//! to `{code, message}`; nothing else lives here.

mod backup;
mod bulk;
mod commands;
mod connect;
pub mod events;
mod notify;
mod prefs;
mod quota_commands;
mod signin;
mod tray;

use crate::accounts::Service;
use crate::bus::{Bus, CoreEvent};
use crate::endpoint::ctl::EndpointControl;
use crate::error::ErrorBody;
use crate::oauth::login::LoginCanceller;
use crate::refresh::TokenManager;
use crate::runtime::{Core, QuitPlan};
use events::FrontendEvent;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tauri::{AppHandle, Manager, WindowEvent};
use tray::Tray;

/// Events arriving together (a burst of requests served, an import's commits) are told to the
/// window once: after the first, the relay gathers for this long. Only when something happens.
const COALESCE: Duration = Duration::from_millis(100);

/// What commands reach: the core (`runtime::Core`, the same composition root `serve` starts) as
/// its opened service (or why it could not be opened, shown by the UI), its one TokenManager
/// (shared with the scheduler: one single-flight per account) and its endpoint; and the browser
/// sign-in in progress, if any.
pub struct AppState {
    core: Option<Arc<Core>>,
    pub service: Result<Arc<Service>, ErrorBody>,
    token_manager: Option<TokenManager>,
    /// The endpoint (on the app's one store connection: its view follows the bus); None when
    /// the store could not be opened.
    pub endpoint: Option<Arc<EndpointControl>>,
    /// Where the store lives, for "set aside and start fresh" when it cannot be opened.
    data_dir: Option<PathBuf>,
    /// Absent where the desktop has no tray (no AppIndicator library): closing then quits.
    tray: OnceLock<Option<Tray>>,
    sign_in: Mutex<Option<(u64, LoginCanceller)>>,
    next_flow: AtomicU64,
}

impl AppState {
    pub fn new(core: Result<Core, ErrorBody>, data_dir: Option<PathBuf>) -> AppState {
        let core = core.map(Arc::new);
        let service = core
            .as_ref()
            .map(|c| c.service.clone())
            .map_err(Clone::clone);
        let token_manager = core.as_ref().ok().map(|c| c.token_manager.clone());
        let endpoint = core.as_ref().ok().map(|c| c.endpoint.clone());
        AppState {
            core: core.ok(),
            service,
            token_manager,
            endpoint,
            data_dir,
            tray: OnceLock::new(),
            sign_in: Mutex::new(None),
            next_flow: AtomicU64::new(0),
        }
    }

    fn tray(&self) -> Option<&Tray> {
        self.tray.get().and_then(Option::as_ref)
    }

    pub fn service(&self) -> Result<&Service, ErrorBody> {
        self.service.as_deref().map_err(Clone::clone)
    }

    pub fn token_manager(&self) -> Result<&TokenManager, ErrorBody> {
        self.service()?;
        self.token_manager.as_ref().ok_or_else(|| {
            ErrorBody::new(
                crate::error_code::ErrorCode::Unknown,
                "the refresh engine is not running",
            )
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

/// Brings the main window back from the tray (or from behind other windows).
pub fn show_main_window(app: &AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

/// Quit (the tray's item, the window's close where there is no tray): no new refresh starts,
/// refreshes already sent get up to 15 s to be saved (`Core::shutdown`, the same path `serve`
/// takes on SIGTERM). While a new sign-in is held in memory only, the window asks
/// first, unless `force` (the user said yes).
pub fn request_quit(app: &AppHandle, force: bool) {
    let state = app.state::<AppState>();
    let Some(core) = state.core.clone() else {
        crate::logging::flush_file();
        app.exit(0);
        return;
    };
    if let QuitPlan::Ask {
        account_ids,
        message,
    } = core.quit_plan(force)
    {
        show_main_window(app);
        events::emit(
            app,
            FrontendEvent::QuitHeld(events::QuitHeld {
                message,
                account_ids,
            }),
        );
        return;
    }
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        core.shutdown().await;
        crate::logging::flush_file();
        app.exit(0);
    });
}

/// Tells the window and the tray what the endpoint is doing now.
pub async fn announce_endpoint(app: &AppHandle, ctl: &EndpointControl) {
    match ctl.status().await {
        Ok(status) => {
            refresh_tray(app, Some(status.running));
            events::emit(app, FrontendEvent::EndpointChanged(status));
        }
        Err(e) => tracing::warn!(code = e.code().as_str(), "endpoint status: {e}"),
    }
}

/// Re-reads the summary line for the tray; `running` None keeps the endpoint item as it is
/// known from the controller.
fn refresh_tray(app: &AppHandle, running: Option<bool>) {
    let state = app.state::<AppState>();
    let Some(tray) = state.tray() else { return };
    // The warning state while any account needs attention (the same ones the summary counts).
    let (summary, attention) = match state.service.as_ref() {
        Ok(s) => match s.list() {
            Ok(v) => (
                crate::account::summary_line(&v),
                crate::notices::needs_attention(&v),
            ),
            Err(e) => (format!("Accounts unavailable ({})", e.code()), true),
        },
        Err(e) => (format!("Store not open ({})", e.code), true),
    };
    let running = running.unwrap_or_else(|| {
        state.endpoint.as_ref().is_some_and(|ctl| {
            tauri::async_runtime::block_on(ctl.status()).is_ok_and(|s| s.running)
        })
    });
    tray.show(&summary, running, attention);
}

/// What one batch of bus events asks of the window and the tray.
#[derive(Default)]
struct Wanted {
    accounts: bool,
    endpoint: bool,
}

impl Wanted {
    fn add(&mut self, event: Option<&CoreEvent>) {
        match event {
            Some(CoreEvent::EndpointChanged | CoreEvent::SettingsChanged { .. }) => {
                self.endpoint = true
            }
            Some(
                CoreEvent::StoreChanged | CoreEvent::AccountChanged { .. } | CoreEvent::HeldChanged,
            ) => self.accounts = true,
            // Lagged: something was missed, tell everything.
            None => (self.accounts, self.endpoint) = (true, true),
        }
    }
}

/// Relays the bus to the window and the tray: commits to the store (this app's refreshes and
/// commands, the CLI, `serve` — the store watcher sees other processes'), held rotations, the
/// endpoint's state. Asleep until an event arrives; its own thread, since the tray's refresh
/// reads the store.
fn spawn_event_relay(app: AppHandle, data_dir: PathBuf) {
    let mut rx = Bus::global().subscribe();
    if let Err(e) = crate::store::watch_dir(&data_dir) {
        tracing::warn!("no live updates from other processes: {e}");
    }
    let spawned = std::thread::Builder::new()
        .name("vault-ui-events".into())
        .spawn(move || {
            use tokio::sync::broadcast::error::{RecvError, TryRecvError};
            let mut last_endpoint = None;
            loop {
                let mut wanted = Wanted::default();
                match rx.blocking_recv() {
                    Ok(e) => wanted.add(Some(&e)),
                    Err(RecvError::Lagged(_)) => wanted.add(None),
                    Err(RecvError::Closed) => return,
                }
                std::thread::sleep(COALESCE);
                loop {
                    match rx.try_recv() {
                        Ok(e) => wanted.add(Some(&e)),
                        Err(TryRecvError::Lagged(_)) => wanted.add(None),
                        Err(_) => break,
                    }
                }
                relay(&app, &wanted, &mut last_endpoint);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no live updates: cannot start the event relay thread: {e}");
    }
}

fn relay(
    app: &AppHandle,
    wanted: &Wanted,
    last_endpoint: &mut Option<crate::endpoint::ctl::EndpointStatus>,
) {
    if wanted.accounts {
        events::emit(app, FrontendEvent::AccountsChanged { account_id: None });
    }
    let state = app.state::<AppState>();
    let mut running = None;
    if let Some(ctl) = state.endpoint.as_ref().filter(|_| wanted.endpoint) {
        if let Ok(status) = tauri::async_runtime::block_on(ctl.status()) {
            running = Some(status.running);
            if last_endpoint.as_ref() != Some(&status) {
                *last_endpoint = Some(status.clone());
                events::emit(app, FrontendEvent::EndpointChanged(status));
            }
        }
    }
    refresh_tray(app, running.or(last_endpoint.as_ref().map(|s| s.running)));
}

/// Puts the window where the user left it, and shows it unless it should start in the tray.
fn place_window(app: &AppHandle, prefs: &prefs::Prefs, has_tray: bool, autostarted: bool) {
    let Some(w) = app.get_webview_window("main") else {
        return;
    };
    if let Some(g) = prefs.window.filter(prefs::WindowGeometry::usable) {
        let _ = w.set_size(tauri::PhysicalSize::new(g.width, g.height));
        let _ = w.set_position(tauri::PhysicalPosition::new(g.x, g.y));
        if g.maximized {
            let _ = w.maximize();
        }
    }
    if opens_window(prefs.start_minimized, autostarted, has_tray) {
        let _ = w.show();
    }
}

/// Whether the app opens its window at start: not when it should start in the tray (the
/// preference, or a start by the session's autostart entry) — unless there is no tray to start
/// in, since a hidden window without a tray could not be reached at all.
fn opens_window(start_minimized: bool, autostarted: bool, has_tray: bool) -> bool {
    !((start_minimized || autostarted) && has_tray)
}

fn remember_window(window: &tauri::Window) {
    let app = window.app_handle();
    let mut p = prefs::load(app);
    if let (Ok(size), Ok(pos)) = (window.outer_size(), window.outer_position()) {
        p.window = Some(prefs::WindowGeometry {
            width: size.width,
            height: size.height,
            x: pos.x,
            y: pos.y,
            maximized: window.is_maximized().unwrap_or(false),
        });
        if let Err(e) = prefs::save(app, &p) {
            tracing::warn!("window size not saved: {e}");
        }
    }
}

/// The tray needs the AppIndicator library, loaded at run time; where it is missing the
/// library's loader panics, so that is caught and the app runs without a tray.
fn build_tray(app: &AppHandle) -> Option<Tray> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Tray::build(app))) {
        Ok(Ok(tray)) => Some(tray),
        Ok(Err(e)) => {
            tracing::warn!("no tray icon: {e}");
            None
        }
        Err(_) => {
            tracing::warn!("no tray icon: the AppIndicator library is missing (install libayatana-appindicator3-1)");
            None
        }
    }
}

/// After the window exists: the tray, the window's place, then (with a store) the refresher,
/// the endpoint and the event relay. `data_dir` is None when the store could not be opened.
fn set_up(handle: &AppHandle, autostarted: bool, data_dir: Option<PathBuf>) {
    let handle = handle.clone();
    let state = handle.state::<AppState>();
    let tray = build_tray(&handle);
    let has_tray = tray.is_some();
    let _ = state.tray.set(tray);
    place_window(&handle, &prefs::load(&handle), has_tray, autostarted);
    let (Some(core), Some(dir)) = (state.core.clone(), data_dir) else {
        refresh_tray(&handle, Some(false));
        return;
    };
    // The core runs as long as the app (`Core::start`, as `serve` starts it; Quit ends it).
    let app2 = handle.clone();
    let notices_core = core.clone();
    tauri::async_runtime::spawn(async move {
        notify::spawn(&app2, &notices_core);
        if let Err(e) = core.start(None).await {
            tracing::error!(code = e.code().as_str(), "the endpoint did not start: {e}");
        }
        announce_endpoint(&app2, &core.endpoint).await;
        // Start-at-sign-in may have been switched outside the app: the broker variable follows.
        if let Err(e) = crate::connect::sync_broker_env(&core.service) {
            tracing::warn!(code = e.code().as_str(), "broker variable not synced: {e}");
        }
    });
    spawn_event_relay(handle, dir);
}

fn on_window_event(window: &tauri::Window, event: &WindowEvent) {
    if let WindowEvent::CloseRequested { api, .. } = event {
        remember_window(window);
        // Close-to-tray: the endpoint and refreshes go on; Quit is in the tray menu.
        api.prevent_close();
        if window.app_handle().state::<AppState>().tray().is_some() {
            let _ = window.hide();
        } else {
            // No tray: closing is quitting, through the same drain as Quit.
            request_quit(window.app_handle(), false);
        }
    }
}

/// The autostart entry's argument: an autostarted app opens in the tray, not as a window.
pub const AUTOSTARTED_ARG: &str = "--autostarted";

/// The core from the environment (or why it could not be opened), then the log file.
fn open_state(data_dir: Option<PathBuf>) -> AppState {
    let existed = data_dir.as_deref().is_some_and(Path::is_dir);
    if let Some(dir) = data_dir.as_deref().filter(|_| existed) {
        // First, so that a store that cannot be opened is in the log file too.
        crate::logging::attach_or_warn(dir);
    }
    let state = AppState::new(
        // `Core::open` checks the store's integrity, as for `serve`: a damaged store is a start
        // page with the way out (set aside), never a half-working app.
        crate::config::Config::from_env()
            .and_then(Core::open)
            .map_err(|e| {
                tracing::error!(code = e.code().as_str(), "cannot open the store: {e}");
                e.to_body()
            }),
        data_dir.clone(),
    );
    // A first run's data dir once the store made it (one that failed to open leaves none
    // behind, and gets no log made in it either).
    if let Some(dir) = data_dir.as_deref().filter(|d| !existed && d.is_dir()) {
        crate::logging::attach_or_warn(dir);
    }
    state
}

pub fn run(autostarted: bool) -> ExitCode {
    if !has_display() {
        eprintln!(
            "No display found (DISPLAY/WAYLAND_DISPLAY unset): the desktop window needs one.\n\
             On a headless machine run `codex-vault serve` (the endpoint + background refresh) and the CLI: `codex-vault accounts list`, `codex-vault --help`."
        );
        return ExitCode::from(crate::cli::EXIT_ERROR);
    }
    // The core's runtime (as `serve`'s), also for Tauri's own tasks: one runtime, two workers.
    // It must outlive the app, so it is held until `run` returns.
    let runtime = match crate::runtime::tokio_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(crate::cli::EXIT_ERROR);
        }
    };
    tauri::async_runtime::set(runtime.handle().clone());
    let data_dir = crate::paths::data_dir().ok();
    let state = open_state(data_dir.clone());
    let store_open = state.service.is_ok();
    let result = tauri::Builder::default()
        // First, so a second launch hands over to the running app before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            show_main_window(app)
        }))
        .plugin(tauri_plugin_store::Builder::new().build())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_dialog::init())
        // Off until the user turns it on in Settings; the entry starts the app in the tray.
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec![AUTOSTARTED_ARG]),
        ))
        .manage(state)
        .setup(move |app| {
            set_up(app.handle(), autostarted, data_dir.filter(|_| store_open));
            Ok(())
        })
        .on_window_event(on_window_event)
        .invoke_handler(handlers())
        .run(tauri::generate_context!());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: the desktop app failed: {e}");
            ExitCode::from(crate::cli::EXIT_ERROR)
        }
    }
}

/// Every command the window may call (the UI's `ui/src/api.ts` names the same).
fn handlers() -> impl Fn(tauri::ipc::Invoke) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
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
        commands::activity_page,
        commands::activity_totals,
        commands::usage_history,
        commands::export_activity_csv,
        commands::refresh_account,
        quota_commands::redeem_reset,
        commands::sign_in_start,
        commands::sign_in_cancel,
        signin::device_sign_in_start,
        signin::sign_in_paste,
        commands::endpoint_status,
        commands::endpoint_start,
        commands::endpoint_stop,
        commands::endpoint_set_port,
        commands::endpoint_key,
        commands::endpoint_rotate_key,
        connect::codex_connections,
        connect::codex_connect,
        connect::codex_disconnect,
        commands::get_prefs,
        commands::set_prefs,
        commands::startup_problem,
        commands::set_aside_store,
        commands::restart_app,
        commands::quit_app,
        commands::get_autostart,
        commands::set_autostart,
        commands::about,
        commands::diagnostics,
        commands::notice_switches,
        commands::set_notice_switch,
        commands::read_logs,
        bulk::pick_import_paths,
        bulk::bulk_import_preview,
        bulk::bulk_import,
        backup::pick_backup_path,
        backup::write_backup,
        backup::restore_backup,
        backup::confirm_restored,
    ]
}

#[cfg(test)]
mod tests {
    use super::opens_window;

    #[test]
    fn starts_in_the_tray_only_where_a_tray_exists() {
        assert!(
            opens_window(false, false, true),
            "a plain start opens the window"
        );
        assert!(
            !opens_window(true, false, true),
            "start minimized: tray only"
        );
        assert!(!opens_window(false, true, true), "autostarted: tray only");
        assert!(
            opens_window(true, true, false),
            "no tray: the window, or nothing could be reached"
        );
    }
}
