//! The process's one upstream HTTP client, a leaf module so that the token client, the refresh
//! engine and the endpoint can share it without depending on the composition root.

pub mod inline;
pub mod lean;

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
pub fn upstream() -> reqwest::Client {
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

/// A failed read of an upstream answer's body (the connection broke mid-stream), from either
/// client; its message never carries the URL.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("{0}")]
    Lean(#[from] hyper::Error),
    /// Built with `reqwest::Error::without_url`.
    #[error("{0}")]
    Reqwest(reqwest::Error),
}

impl From<reqwest::Error> for BodyError {
    fn from(e: reqwest::Error) -> Self {
        BodyError::Reqwest(e.without_url())
    }
}

/// One chunk of an upstream answer's body.
pub type BodyResult = Result<axum::body::Bytes, BodyError>;
