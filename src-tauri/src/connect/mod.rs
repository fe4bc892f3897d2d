//! `connect codex` / `disconnect codex`: points a Codex CLI (its `$CODEX_HOME/config.toml`) at
//! this store's live endpoint without any environment variable, and undoes it exactly.
//!
//! - The file is edited with `toml_edit` (`toml_block`): our `[model_providers.codex-vault]`
//!   table, optionally `model_provider` (`--make-default`) and `chatgpt_base_url`
//!   (`--status-routes`); every other byte stays.
//! - The key reaches the CLI through command-backed auth (`auth = { command = "cat", args =
//!   [<our 0600 key file>] }`, supported by Codex 0.169 and 0.171), so config.toml holds no
//!   secret and a rotated key is picked up by a running CLI on its next 401. `--key token`
//!   (`experimental_bearer_token`, the file made 0600) and `--key env` (`env_key`) remain.
//! - Before the first change a dated 0600 backup is made; the connections are kept in the
//!   `connect.codex` setting (JSON) with the hash of what we last wrote, so `disconnect` restores
//!   the backup byte for byte when nothing else changed the file since, and otherwise removes only
//!   what is ours.
//! - `endpoint rotate-key` and a port change (`rotate_key`, `retarget`) rewrite every connected
//!   config (and the key file), whichever face made the change.

pub mod broker_env;
mod file;
mod ops;
pub mod procs;
mod toml_block;

pub use ops::{
    connect, disconnect, follow_listener, retarget, rotate_key, state, ConnectReport, ConnectState,
    ConnectionView, DisconnectOutcome, DisconnectReport, RotateReport,
};
pub use toml_block::{KEY_ENV, PROVIDER_ID};

use crate::accounts::Service;
use crate::error::{AppError, ConnectError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The store setting holding the list of connected configs (JSON array of [`Connection`]).
pub const SETTING: &str = "connect.codex";
/// Our key file in the data dir (0600), read by the connected CLIs' auth command.
pub const KEY_FILE: &str = "codex-provider.key";

/// How a connected Codex gets the local key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum KeyMode {
    /// `auth = { command = "cat", args = [<key file>] }`: no secret in config.toml (default).
    Command,
    /// `experimental_bearer_token`: the key in config.toml, which is made 0600.
    Token,
    /// `env_key = "CODEX_VAULT_KEY"`: you export the key in Codex's environment yourself.
    Env,
}

/// One connected config, as kept in the `connect.codex` setting (no secret in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Connection {
    /// The Codex home (absolute), and the file we edit in it.
    pub codex_home: String,
    pub config_path: String,
    /// The dated copy made before our first change (`None`: there was no file).
    pub backup: Option<String>,
    /// We created config.toml (disconnect removes it again when nothing else changed it).
    pub created: bool,
    /// SHA-256 of the file before our first change, and of what we last wrote (`None` once
    /// something else changed the file after our write: disconnect then removes only our part).
    pub original_sha256: Option<String>,
    pub written_sha256: Option<String>,
    /// The file's permission bits before we touched it (restored on disconnect).
    pub original_mode: Option<u32>,
    pub key: KeyMode,
    /// We set `model_provider`; what it was before (`None`: absent).
    pub make_default: bool,
    pub previous_model_provider: Option<String>,
    /// We set `chatgpt_base_url`; what it was before.
    pub status_routes: bool,
    pub previous_chatgpt_base_url: Option<String>,
    /// `CODEX_REFRESH_TOKEN_URL_OVERRIDE` is wanted for GUI apps (`broker_env`).
    pub broker: bool,
    /// The endpoint port the file points at now.
    pub port: u16,
    /// RFC 3339.
    pub connected_at: String,
}

/// What `connect codex` asks for.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `None`: `$CODEX_HOME`, else `~/.codex`.
    pub codex_home: Option<PathBuf>,
    pub make_default: bool,
    pub status_routes: bool,
    pub broker: bool,
    pub key: KeyMode,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            codex_home: None,
            make_default: false,
            status_routes: false,
            broker: false,
            key: KeyMode::default_for_platform(),
        }
    }
}

impl KeyMode {
    /// Command-backed auth runs `cat`, a Unix tool; elsewhere the token in config.toml.
    pub fn default_for_platform() -> KeyMode {
        if cfg!(unix) {
            KeyMode::Command
        } else {
            KeyMode::Token
        }
    }
}

pub(crate) fn endpoint_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/v1")
}

/// The base Codex reads `/status` and the status line from (`…/wham/usage`), on our endpoint.
pub(crate) fn chatgpt_base_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/backend-api/")
}

/// `dir` made absolute (relative to the working directory), else `$CODEX_HOME`, else `~/.codex`.
pub fn resolve_home(dir: Option<&Path>) -> Result<PathBuf, AppError> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => crate::paths::codex_home().ok_or(crate::error::ConfigError::NoCodexHome(
            "give the directory with --codex-home",
        ))?,
    };
    let dir = if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir()
            .map_err(|e| ConnectError::io("resolve", &dir, &e))?
            .join(dir)
    };
    Ok(dir)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    a == b || canon(a) == canon(b)
}

/// The connections this store keeps. An unreadable value (written by a newer build?) reads as
/// none, with a warning: it must not stop the endpoint or a rotate.
pub fn connections(service: &Service) -> Result<Vec<Connection>, AppError> {
    let Some(text) = service.store().setting(SETTING)? else {
        return Ok(Vec::new());
    };
    match serde_json::from_str(&text) {
        Ok(list) => Ok(list),
        Err(e) => {
            tracing::warn!("the `{SETTING}` setting does not parse ({e}); treating it as empty");
            Ok(Vec::new())
        }
    }
}

fn save(service: &Service, list: &[Connection]) -> Result<(), AppError> {
    // Plain data: serialising it cannot fail.
    let text = serde_json::to_string(list).expect("connections serialise");
    if service.store().setting(SETTING)?.as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    service.store().set_setting(SETTING, &text)?;
    Ok(())
}

fn key_file(service: &Service) -> PathBuf {
    PathBuf::from(service.info().data_dir).join(KEY_FILE)
}

/// The absolute path of `cat` on `PATH` (a GUI-started Codex may have a thin `PATH`), else
/// `/bin/cat`.
fn cat_program() -> String {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("cat"))
                .find(|p| p.is_file())
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/bin/cat".into())
}

/// The port `connect` points at: the live listener's, else the configured one.
fn live_port(service: &Service) -> Result<u16, AppError> {
    let configured =
        crate::listeners::configured_port(service.store().setting(crate::listeners::SETTING_PORT)?);
    Ok(crate::listeners::current_port(
        Path::new(&service.info().data_dir),
        configured,
    ))
}

/// The broker variable's state after the connections changed (or autostart was switched).
pub fn sync_broker_env(service: &Service) -> Result<broker_env::BrokerEnvState, AppError> {
    let list = connections(service)?;
    let port = list.iter().find(|c| c.broker).map(|c| c.port);
    Ok(broker_env::sync(port))
}
