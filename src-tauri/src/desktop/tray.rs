//! The tray: every action is a menu item, since Linux trays (AppIndicator) deliver no clicks on
//! the icon itself. The menu's first line is the accounts summary, kept current by the watcher.

use super::AppState;
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Wry};

const OPEN: &str = "tray.open";
const ENDPOINT: &str = "tray.endpoint";
const QUIT: &str = "tray.quit";

/// The items whose text changes after the tray is built, and the icon's two states.
pub struct Tray {
    icon: TrayIcon,
    summary: MenuItem<Wry>,
    endpoint: MenuItem<Wry>,
    /// The app icon, and the same with a warning badge (an account needs attention).
    normal: Option<Image<'static>>,
    warning: Option<Image<'static>>,
    warned: std::sync::atomic::AtomicBool,
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
        let normal = app.default_window_icon().map(|i| i.clone().to_owned());
        if let Some(icon) = &normal {
            builder = builder.icon(icon.clone());
        }
        let warning = normal.as_ref().map(|i| {
            Image::new_owned(
                with_warning_badge(i.rgba(), i.width(), i.height()),
                i.width(),
                i.height(),
            )
        });
        let icon = builder.build(app)?;
        Ok(Tray {
            icon,
            summary,
            endpoint,
            normal,
            warning,
            warned: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// `attention`: some account needs the user (the warning badge and tooltip).
    pub fn show(&self, summary: &str, endpoint_running: bool, attention: bool) {
        use std::sync::atomic::Ordering;
        if self.warned.swap(attention, Ordering::Relaxed) != attention {
            let (image, tip) = if attention {
                (&self.warning, format!("Codex Vault — {summary}"))
            } else {
                (&self.normal, "Codex Vault".to_string())
            };
            if let Err(e) = self.icon.set_icon(image.clone()) {
                tracing::debug!("tray icon not updated: {e}");
            }
            let _ = self.icon.set_tooltip(Some(tip));
        }
        // A tray that went away (the indicator host quit) is not worth more than a log line.
        if let Err(e) = self.summary.set_text(summary) {
            tracing::debug!("tray summary not updated: {e}");
        }
        if let Err(e) = self.endpoint.set_text(endpoint_item_text(endpoint_running)) {
            tracing::debug!("tray endpoint item not updated: {e}");
        }
    }
}

/// `rgba` (`width` × `height`) with an amber warning dot, dark-rimmed, in its lower right quarter.
pub fn with_warning_badge(rgba: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = rgba.to_vec();
    let (w, h) = (f64::from(width), f64::from(height));
    let r = w.min(h) * 0.22;
    let (cx, cy) = (w - r - 1.0, h - r - 1.0);
    for y in 0..height {
        for x in 0..width {
            let d = ((f64::from(x) + 0.5 - cx).powi(2) + (f64::from(y) + 0.5 - cy).powi(2)).sqrt();
            let px = if d <= r * 0.78 {
                [0xf5, 0x9e, 0x0b, 0xff]
            } else if d <= r {
                [0x1f, 0x29, 0x37, 0xff]
            } else {
                continue;
            };
            let i = ((y * width + x) * 4) as usize;
            if let Some(dst) = out.get_mut(i..i + 4) {
                dst.copy_from_slice(&px);
            }
        }
    }
    out
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
    fn the_warning_badge_marks_the_lower_right_only() {
        let (w, h) = (32u32, 32u32);
        let icon = vec![0x10u8; (w * h * 4) as usize];
        let badged = with_warning_badge(&icon, w, h);
        let px = |img: &[u8], x: u32, y: u32| img[((y * w + x) * 4) as usize..][..4].to_vec();
        assert_eq!(px(&badged, 0, 0), px(&icon, 0, 0), "the icon is kept");
        assert_eq!(px(&badged, 8, 24), px(&icon, 8, 24));
        assert_eq!(
            px(&badged, 25, 25),
            vec![0xf5, 0x9e, 0x0b, 0xff],
            "amber dot"
        );
        assert_eq!(badged.len(), icon.len());
    }

    #[test]
    fn endpoint_item_offers_the_opposite_of_the_state() {
        assert_eq!(endpoint_item_text(true), "Stop endpoint");
        assert_eq!(endpoint_item_text(false), "Start endpoint");
    }
}
