//! The one variable a connected Codex may still need, `CODEX_REFRESH_TOKEN_URL_OVERRIDE` (a CLI
//! that keeps its own sign-in refreshes through the broker: docs/broker.md), written where the
//! platform's GUI apps read their environment — Linux `~/.config/environment.d/codex-vault.conf`
//! (systemd's user environment), macOS a LaunchAgent that runs `launchctl setenv` at sign-in —
//! and **only while Codex Vault starts at sign-in**: otherwise every GUI Codex would send its
//! refreshes to an endpoint that is not running.

use serde::Serialize;
use std::path::PathBuf;

pub const VAR: &str = "CODEX_REFRESH_TOKEN_URL_OVERRIDE";
/// The autostart plugin (desktop) names its entry after `productName` in tauri.conf.json.
const AUTOSTART_NAME: &str = "Codex Vault";
#[cfg(target_os = "macos")]
const LAUNCH_AGENT: &str = "dev.codexvault.environment";

pub fn value(port: u16) -> String {
    format!("http://127.0.0.1:{port}/oauth/token")
}

/// What Settings shows about the variable.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ts_rs::TS)]
#[ts(export)]
pub struct BrokerEnvState {
    /// `VAR=value`, when a connection asked for the broker (`--broker`).
    pub line: Option<String>,
    /// Where it is written for GUI apps now (`None`: nowhere).
    pub written_to: Option<String>,
    /// Whether Codex Vault starts at sign-in (the condition for writing it).
    pub autostart: bool,
    /// In words, for the CLI and Settings.
    pub note: String,
}

/// Whether the desktop session starts Codex Vault at sign-in: the autostart entry the app's
/// Settings switch creates (`~/.config/autostart/Codex Vault.desktop` on Linux,
/// `~/Library/LaunchAgents/Codex Vault.plist` on macOS) is the truth.
pub fn autostart_on() -> bool {
    let Some(home) = dirs::home_dir() else {
        return false;
    };
    if cfg!(target_os = "macos") {
        home.join("Library/LaunchAgents")
            .join(format!("{AUTOSTART_NAME}.plist"))
            .is_file()
    } else {
        home.join(".config/autostart")
            .join(format!("{AUTOSTART_NAME}.desktop"))
            .is_file()
    }
}

/// Where the variable goes on this platform.
pub fn target() -> Option<PathBuf> {
    if cfg!(target_os = "macos") {
        #[cfg(target_os = "macos")]
        return dirs::home_dir().map(|h| {
            h.join("Library/LaunchAgents")
                .join(format!("{LAUNCH_AGENT}.plist"))
        });
        #[cfg(not(target_os = "macos"))]
        return None;
    }
    dirs::config_dir().map(|c| c.join("environment.d").join("codex-vault.conf"))
}

/// Brings the platform's copy in line: written when `port` (a connection wants the broker) and
/// start-at-sign-in is on, removed otherwise. Writes only when the content differs.
pub fn sync(port: Option<u16>) -> BrokerEnvState {
    let autostart = autostart_on();
    let line = port.map(|p| format!("{VAR}={}", value(p)));
    let Some(path) = target() else {
        return BrokerEnvState {
            line,
            written_to: None,
            autostart,
            note: "this platform has no place for GUI apps' variables we know of: set it in Codex's environment yourself".into(),
        };
    };
    let shown = path.display().to_string();
    match (&line, autostart) {
        (Some(l), true) => match write(&path, port.unwrap_or_default(), l) {
            Ok(()) => BrokerEnvState {
                note: format!("written to {shown} (read by apps started after your next sign-in)"),
                line,
                written_to: Some(shown),
                autostart,
            },
            Err(e) => BrokerEnvState {
                note: format!(
                    "could not write {shown}: {e}; set it in Codex's environment yourself"
                ),
                line,
                written_to: None,
                autostart,
            },
        },
        (Some(_), false) => {
            remove(&path);
            BrokerEnvState {
                note: "not written for GUI apps: Codex Vault does not start at sign-in (turn it on in Settings), and a GUI Codex would fail its refresh whenever Codex Vault is not running. Set it in your shell profile for a CLI you start while Codex Vault runs".into(),
                line,
                written_to: None,
                autostart,
            }
        }
        (None, _) => {
            remove(&path);
            BrokerEnvState {
                note: "no connection uses the refresh broker".into(),
                line,
                written_to: None,
                autostart,
            }
        }
    }
}

#[cfg(not(target_os = "macos"))]
fn write(path: &std::path::Path, _port: u16, line: &str) -> std::io::Result<()> {
    let text = format!(
        "# Written by Codex Vault while it starts at sign-in; removed on disconnect.\n{line}\n"
    );
    if std::fs::read_to_string(path).ok().as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

/// A LaunchAgent that sets the variable for the GUI session at every sign-in, loaded now too.
/// Not tested here (no macOS machine); the Linux path is.
#[cfg(target_os = "macos")]
fn write(path: &std::path::Path, port: u16, _line: &str) -> std::io::Result<()> {
    let url = value(port);
    let text = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n  <key>Label</key><string>{LAUNCH_AGENT}</string>\n  <key>ProgramArguments</key>\n  <array><string>/bin/launchctl</string><string>setenv</string><string>{VAR}</string><string>{url}</string></array>\n  <key>RunAtLoad</key><true/>\n</dict>\n</plist>\n"
    );
    if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text)?;
    }
    let _ = std::process::Command::new("/bin/launchctl")
        .args(["setenv", VAR, &url])
        .status();
    Ok(())
}

fn remove(path: &std::path::Path) {
    if path.exists() {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
        #[cfg(target_os = "macos")]
        let _ = std::process::Command::new("/bin/launchctl")
            .args(["unsetenv", VAR])
            .status();
    }
}
