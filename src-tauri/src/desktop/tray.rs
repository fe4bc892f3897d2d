//! The tray: every action is a menu item, since Linux trays (AppIndicator) deliver no clicks on
//! the icon itself. The menu's first line is the accounts summary, kept current by the watcher.

use super::AppState;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Wry};

const OPEN: &str = "tray.open";
const ENDPOINT: &str = "tray.endpoint";
const QUIT: &str = "tray.quit";

/// The items whose text changes after the tray is built.
pub struct Tray {
    _icon: TrayIcon,
    summary: MenuItem<Wry>,
    endpoint: MenuItem<Wry>,
}

/// The endpoint item's text for a listener state.
pub fn endpoint_item_text(running: bool) -> &'static str {
    if running {
        "Stop endpoint"
    } else {
        "Start endpoint"
    }
}

impl Tray {
    pub fn build(app: &AppHandle) -> tauri::Result<Tray> {
        let summary = MenuItem::with_id(app, "tray.summary", "Loading…", false, None::<&str>)?;
        let open = MenuItem::with_id(app, OPEN, "Open Codex Vault", true, None::<&str>)?;
        let endpoint =
            MenuItem::with_id(app, ENDPOINT, endpoint_item_text(false), true, None::<&str>)?;
        let quit = MenuItem::with_id(app, QUIT, "Quit Codex Vault", true, None::<&str>)?;
        let menu = Menu::with_items(
            app,
            &[
                &summary,
                &PredefinedMenuItem::separator(app)?,
                &open,
                &endpoint,
                &PredefinedMenuItem::separator(app)?,
                &quit,
            ],
        )?;
        let mut builder = TrayIconBuilder::with_id("main")
            .menu(&menu)
            .tooltip("Codex Vault")
            .on_menu_event(|app, event| match event.id().as_ref() {
                OPEN => super::show_main_window(app),
                ENDPOINT => toggle_endpoint(app),
                QUIT => super::request_quit(app, false),
                _ => {}
            });
        if let Some(icon) = app.default_window_icon() {
            builder = builder.icon(icon.clone());
        }
        let icon = builder.build(app)?;
        Ok(Tray {
            _icon: icon,
            summary,
            endpoint,
        })
    }

    pub fn show(&self, summary: &str, endpoint_running: bool) {
        // A tray that went away (the indicator host quit) is not worth more than a log line.
        if let Err(e) = self.summary.set_text(summary) {
            tracing::debug!("tray summary not updated: {e}");
        }
        if let Err(e) = self.endpoint.set_text(endpoint_item_text(endpoint_running)) {
            tracing::debug!("tray endpoint item not updated: {e}");
        }
    }
}

fn toggle_endpoint(app: &AppHandle) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let state = app.state::<AppState>();
        let Some(ctl) = state.endpoint.clone() else {
            return;
        };
        let running = ctl.status().await.map(|s| s.running).unwrap_or(false);
        let result = if running {
            ctl.stop().await
        } else {
            ctl.start().await
        };
        if let Err(e) = &result {
            tracing::warn!(code = e.code().as_str(), "tray: endpoint {e}");
        }
        super::announce_endpoint(&app, &ctl).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_item_offers_the_opposite_of_the_state() {
        assert_eq!(endpoint_item_text(true), "Stop endpoint");
        assert_eq!(endpoint_item_text(false), "Start endpoint");
    }
}
