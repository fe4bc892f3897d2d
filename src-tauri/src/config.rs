//! What the process is configured with, read once at start (`Config::from_env`) by the face that
//! starts it (`serve`, the desktop app) and passed down by the composition root
//! (`runtime::Core`), instead of each part reading the environment on its own.
//!
//! The settings kept in the store (`endpoint.port`, `endpoint.first_byte_hold`,
//! `endpoint.usage_poll_secs`, the `refresh.lead_*` trio) are `settings`: this process's one copy
//! of them (`crate::settings::Settings`), filled by `Core::open` from the store it opens, never
//! read from SQL again. The app's Settings and other processes change them while this one runs:
//! the store applies this process's writes to the copy, its change watcher another process's, and
//! each changed key is published as `SettingsChanged` on the bus, so the parts that cache a
//! setting (the endpoint's first-byte hold, the scheduler's plan) refresh it and the parts that
//! read per use (the port on every start, the poll interval) read the copy.
//!
//! Left where they are read, on purpose: `CODEX_VAULT_CALLBACK_PORTS` and
//! `CODEX_VAULT_NO_BROWSER` (read by each browser sign-in, which also runs from a bare CLI call),
//! `CODEX_HOME` (where the Codex CLI's own `auth.json` is, read per import/hand-over),
//! `CODEX_VAULT_FAILPOINT` (a test hook) and the CLI's one-shot commands, which open the store
//! with the same environment through `Service::open_default`.

use crate::error::{AppError, ConfigError};
use crate::oauth::client::Issuer;
use crate::refresh::RefreshConfig;
use crate::settings::Settings;
use crate::vault::KeyStoreKind;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the store lives: `CODEX_VAULT_HOME`, else the platform's data directory.
    pub data_dir: PathBuf,
    /// Where the vault's key is kept: `CODEX_VAULT_KEY_STORE` (`keychain`, the default, or
    /// `file` where there is no Secret Service).
    pub key_store: KeyStoreKind,
    /// The sign-in server the refresh engine talks to: `CODEX_VAULT_AUTH_BASE`, default
    /// auth.openai.com.
    pub issuer: Issuer,
    /// The Codex backend the endpoint forwards to: `CODEX_VAULT_UPSTREAM`, default chatgpt.com's.
    pub upstream: String,
    /// The refresh engine's tuning: defaults (its usage check on `upstream`), plus
    /// `CODEX_VAULT_REFRESH_LEASE=off` (tests of race recovery only).
    pub refresh: RefreshConfig,
    /// The store's settings, live (see the module doc). Empty until `Core::open` opens the store.
    pub settings: Settings,
}

impl Config {
    /// Reads the environment once. Fails only without a data directory or on an unknown
    /// `CODEX_VAULT_KEY_STORE`.
    pub fn from_env() -> Result<Config, AppError> {
        let upstream = crate::refresh::upstream_base();
        Ok(Config {
            data_dir: crate::paths::data_dir()?,
            key_store: KeyStoreKind::from_env().map_err(ConfigError::KeyStoreSetting)?,
            issuer: Issuer::from_env(),
            refresh: RefreshConfig::from_env(&upstream),
            upstream,
            settings: Settings::default(),
        })
    }
}
