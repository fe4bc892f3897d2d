//! The endpoint's upstream client on its hot path: hyper's pooled client (hyper-util's legacy
//! `Client`) with rustls, set up as [`super::upstream`]'s reqwest client is — webpki roots, ALPN
//! `h2` then `http/1.1`, `TCP_NODELAY`, a 10 s connect timeout (TCP and TLS together), idle
//! connections kept 60 s, no redirects followed, no proxy — but without reqwest's layers around
//! it (its redirect, timeout and decompression services, a URL parsed and a header map built
//! per request): the endpoint builds the `http::Request` itself, with a URI from parts parsed
//! once, and moves it in.
//!
//! A proxy set in the environment (`HTTPS_PROXY`, `ALL_PROXY`, …), which reqwest honours, is
//! not: [`direct`] says whether an upstream is reached without one, and the endpoint keeps
//! reqwest for an upstream that is not.

use axum::body::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

/// A request body: the endpoint has it whole (it reads the client's body before choosing).
pub type Body = http_body_util::Full<Bytes>;
pub type Client = hyper_util::client::legacy::Client<Timed<HttpsConnector<HttpConnector>>, Body>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The process's one lean client (one pool), built on first use.
pub fn client() -> Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(build).clone()
}

fn build() -> Client {
    let mut http = HttpConnector::new();
    // The TLS connector above it takes `https`; this one must accept it.
    http.enforce_http(false);
    http.set_nodelay(true);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let https = HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(provider)
        // Only fails when the provider supports no TLS version, which ring's default does.
        .expect("rustls with ring supports TLS 1.2 and 1.3")
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(super::POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .build(Timed {
            inner: https,
            timeout: super::CONNECT_TIMEOUT,
        })
}

/// Whether `uri`'s upstream is reached without a proxy from the environment: the matcher
/// reqwest itself uses (`HTTP(S)_PROXY`, `ALL_PROXY`, `NO_PROXY`), read once as reqwest reads it
/// once when its client is built.
pub fn direct(uri: &hyper::Uri) -> bool {
    static PROXIES: OnceLock<hyper_util::client::proxy::matcher::Matcher> = OnceLock::new();
    PROXIES
        .get_or_init(hyper_util::client::proxy::matcher::Matcher::from_system)
        .intercept(uri)
        .is_none()
}

/// A connect timeout around the whole connection set-up (TCP and TLS), as reqwest's
/// `connect_timeout` is.
#[derive(Clone)]
pub struct Timed<C> {
    inner: C,
    timeout: Duration,
}

/// Connecting took longer than the connect timeout.
#[derive(Debug, thiserror::Error)]
#[error("connect timed out")]
struct ConnectTimeout;

impl<C> tower_service::Service<hyper::Uri> for Timed<C>
where
    C: tower_service::Service<hyper::Uri>,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let (connecting, timeout) = (self.inner.call(uri), self.timeout);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(ConnectTimeout.into()),
            }
        })
    }
}

/// Why a request got no answer, in words that never carry the URL or a header (the request's
/// token is in one): hyper's error and its causes (connection refused, TLS, timed out).
pub fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let what = if e.is_connect() {
        "error connecting"
    } else {
        "error sending request"
    };
    with_causes(what.to_string(), std::error::Error::source(e))
}

/// `out` followed by `cause` and each of its own causes, `: ` between them.
pub(super) fn with_causes(
    mut out: String,
    mut cause: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    while let Some(s) = cause {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cause = s.source();
    }
    out
}
