//! UI preferences — theme, window geometry, start minimized — in tauri-plugin-store's
//! `prefs.json` under the app's data dir. Never a secret here; what the headless side needs
//! (endpoint port, policies) lives in SQLite instead.

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Runtime};
use tauri_plugin_store::StoreExt;

pub const FILE: &str = "prefs.json";
const KEY: &str = "prefs";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct WindowGeometry {
    pub width: u32,
    pub height: u32,
    pub x: i32,
    pub y: i32,
    pub maximized: bool,
}

impl WindowGeometry {
    /// A saved geometry worth restoring: a window too small to use (or off in negative space
    /// from a monitor since unplugged) is ignored rather than restored.
    pub fn usable(&self) -> bool {
        self.width >= 400 && self.height >= 300 && self.x > -10_000 && self.y > -10_000
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, ts_rs::TS)]
#[ts(export)]
#[serde(default)]
pub struct Prefs {
    pub theme: Theme,
    /// Open hidden in the tray (only where a tray exists; otherwise the window shows).
    pub start_minimized: bool,
    /// The app's own to keep: the UI never sends it.
    #[ts(optional)]
    pub window: Option<WindowGeometry>,
}

/// Reads the prefs; a missing or unreadable file gives the defaults (it holds nothing that could
/// be lost by starting over, and a broken prefs file must never keep the app from opening).
pub fn load<R: Runtime>(app: &AppHandle<R>) -> Prefs {
    let Ok(store) = app.store(FILE) else {
        return Prefs::default();
    };
    store
        .get(KEY)
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

pub fn save<R: Runtime>(app: &AppHandle<R>, prefs: &Prefs) -> Result<(), String> {
    let store = app.store(FILE).map_err(|e| e.to_string())?;
    let value = serde_json::to_value(prefs).map_err(|e| e.to_string())?;
    store.set(KEY, value);
    store.save().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_defaults() {
        let p: Prefs = serde_json::from_str(r#"{"theme":"dark"}"#).unwrap();
        assert_eq!(p.theme, Theme::Dark);
        assert!(!p.start_minimized);
        assert_eq!(p.window, None);
    }

    #[test]
    fn unknown_theme_is_rejected_not_guessed() {
        assert!(serde_json::from_str::<Prefs>(r#"{"theme":"sepia"}"#).is_err());
    }

    #[test]
    fn tiny_or_far_away_windows_are_not_restored() {
        let g = |width, height, x| WindowGeometry {
            width,
            height,
            x,
            y: 0,
            maximized: false,
        };
        assert!(g(1100, 720, 10).usable());
        assert!(!g(100, 720, 10).usable());
        assert!(!g(1100, 720, -20_000).usable());
    }
}
