//! What `serve` and the desktop app share at start-up. For now: the one upstream HTTP client.
//! (The composition root proper — store, vault, health, token manager, scheduler, endpoint and
//! bus started in one place — is not here yet: `serve.rs` and `desktop/mod.rs` still wire them.)

use crate::error::AppError;
use std::sync::OnceLock;
use std::time::Duration;

/// Connecting to the sign-in server or the Codex backend; each request sets its own total
/// timeout on top (the token client 30 s, the usage poll 20 s, streamed answers none).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const POOL_IDLE: Duration = Duration::from_secs(60);

/// The process's one upstream HTTP client (one connection pool, one TLS set-up): the token
/// client, the refresh engine's checks, the endpoint's proxy and poller and the broker's
/// forwarding all clone it. Redirects are never followed: every upstream answer is passed on
/// or classified as it came (the broker must be transparent; no API call here is redirected).
pub fn upstream_http() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_idle_timeout(POOL_IDLE)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                // Only fails when the TLS backend cannot initialise, which rustls always can.
                .expect("HTTP client builds with rustls")
        })
        .clone()
}

/// The async runtime `serve` and the CLI's networked commands run on (two workers: the core's
/// work is I/O). Here, not in `cli`, so `serve` does not depend on the CLI that starts it.
pub fn tokio_runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| AppError::from(crate::error::ConfigError::Runtime(e.to_string())))
}
