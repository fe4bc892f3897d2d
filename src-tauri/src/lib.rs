//! Codex Vault's core: no Tauri types outside `desktop`, so `--no-default-features` builds and
//! tests everything without WebKit.

pub mod account;
pub mod accounts;
pub mod activity;
pub mod backup;
pub mod bus;
pub mod cli;
pub mod codex_writeback;
pub mod config;
pub mod connect;
pub mod diagnostics;
pub mod endpoint;
pub mod error;
pub mod error_code;
pub mod failpoint;
pub mod fsutil;
pub mod health;
pub mod http;
pub mod listeners;
pub mod logging;
pub mod loopback;
pub mod notices;
pub mod oauth;
pub mod paths;
pub mod refresh;
pub mod runtime;
pub mod secret;
pub mod serve;
pub mod settings;
pub mod store;
pub mod vault;
pub mod workers;

#[cfg(feature = "desktop")]
pub mod desktop;

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings and errors), and — once `serve`
/// or the app attaches it — to the rolling log file in the data dir (`logging`).
pub fn init_logging() {
    logging::init();
}
