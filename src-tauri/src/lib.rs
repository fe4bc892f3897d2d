//! Codex Vault's core: no Tauri types outside `desktop`, so `--no-default-features` builds and
//! tests everything without WebKit.

pub mod account;
pub mod accounts;
pub mod activity;
pub mod bus;
pub mod cli;
pub mod codex_writeback;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod error_code;
pub mod failpoint;
pub mod fsutil;
pub mod health;
pub mod http;
pub mod listeners;
pub mod loopback;
pub mod oauth;
pub mod paths;
pub mod refresh;
pub mod runtime;
pub mod secret;
pub mod serve;
pub mod settings;
pub mod store;
pub mod vault;

#[cfg(feature = "desktop")]
pub mod desktop;

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings and errors).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
