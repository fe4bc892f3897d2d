//! The loopback endpoint the stock Codex CLI and other local tools point at: it picks a healthy
//! account, injects its credentials, streams the upstream answer back unbuffered, refreshes on
//! 401 and fails over on 429. Binds 127.0.0.1 (and ::1 on the same port) only.

mod accept;
pub mod broker;
pub mod chat;
pub mod continuity;
pub mod ctl;
pub mod guard;
mod http_error;
pub mod keyless;
mod port_holder;
mod proxy;
pub mod select;
pub mod usage;
pub mod usage_poll;

use crate::account::{now_ms, Account, AccountView};
use crate::accounts::Service;
use crate::error::ErrorCode;
use crate::refresh::TokenManager;
use crate::secret::Secret;
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use select::Selector;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use usage::UsageSnapshot;

pub use accept::Budget;
pub(crate) use http_error::error;
pub use http_error::HttpError;
pub use keyless::{KeylessLimits, KEYLESS_BODY_TIMEOUT, KEYLESS_MAX_BODY};

pub const DEFAULT_PORT: u16 = 8417;
pub const SETTING_PORT: &str = "endpoint.port";
/// `on` (default) | `off`, read once at start. For benchmarks only: `off` passes every answer on
/// from its first byte, so an in-stream failure before any output is no longer failed over.
pub const SETTING_FIRST_BYTE_HOLD: &str = "endpoint.first_byte_hold";
/// The request body is buffered (so a retry on another account sends the same bytes); capped.
/// Keyed routes only: the keyless ones have their own, far smaller cap (`keyless`).
pub const MAX_BODY: usize = 32 * 1024 * 1024;
const CHANGE_POLL: Duration = Duration::from_millis(500);
/// A client must have sent a whole request head within this time or its connection is closed:
/// without it a slowloris client (a header trickled a byte at a time) or a silent connection holds
/// a socket and a task forever. It bounds the head only (an idle keep-alive connection counts as
/// waiting for one); request bodies and streamed answers are not limited by it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const USAGE_FLUSH: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("port {port} on 127.0.0.1 is already in use{holder}; choose another with `--port` (or 0 for any free port), or stop the program using it")]
    PortInUse { port: u16, holder: String },
    #[error("cannot listen on 127.0.0.1:{port}: {detail}")]
    Bind { port: u16, detail: String },
}

impl EndpointError {
    pub fn code(&self) -> ErrorCode {
        match self {
            EndpointError::PortInUse { .. } => ErrorCode::PortInUse,
            EndpointError::Bind { .. } => ErrorCode::EndpointBind,
        }
    }
}

pub struct Shared {
    tm: TokenManager,
    service: Arc<Service>,
    key: RwLock<Secret>,
    accounts: RwLock<Arc<Vec<Account>>>,
    selector: Mutex<Selector>,
    usage: Mutex<HashMap<String, UsageSnapshot>>,
    dirty_usage: Mutex<HashSet<String>>,
    served: Mutex<HashMap<String, u64>>,
    continuity: Arc<continuity::Continuity>,
    http: reqwest::Client,
    upstream: String,
    /// Hold a stream's head until its first output event (`continuity::hold`).
    first_byte_hold: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn store(&self) -> &Arc<Store> {
        self.service.store()
    }

    fn accounts(&self) -> Arc<Vec<Account>> {
        self.accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads accounts and the local key (another process may have changed either).
    fn reload(&self) {
        match self.store().list_accounts() {
            Ok(list) => {
                *self.accounts.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list);
            }
            Err(e) => tracing::warn!("endpoint cannot reload accounts: {e}"),
        }
        match self.service.local_api_key() {
            Ok(k) => *self.key.write().unwrap_or_else(|e| e.into_inner()) = k,
            Err(e) => tracing::warn!("endpoint cannot reload its key: {e}"),
        }
    }

    fn key_matches(&self, headers: &axum::http::HeaderMap) -> bool {
        let key = self.key.read().unwrap_or_else(|e| e.into_inner());
        guard::key_matches(headers, key.expose())
    }

    /// Health JSON per account: the store's view with this process's fresher usage and limits.
    fn views(&self) -> Vec<AccountView> {
        let now = now_ms();
        let usage = lock(&self.usage);
        let served = lock(&self.served);
        let mut views: Vec<AccountView> = self
            .accounts()
            .iter()
            .map(|a| {
                let mut v = a.view(now);
                if let Some(u) = usage.get(&a.id) {
                    v.usage = serde_json::to_value(u).ok();
                }
                if let Some(n) = served.get(&a.id) {
                    if let Some(serde_json::Value::Object(m)) = v.usage.as_mut() {
                        m.insert("requests_served".into(), (*n).into());
                    }
                }
                v
            })
            .collect();
        crate::refresh::overlay_held(&mut views);
        views
    }
}

/// A running endpoint; dropping it stops the listeners and background tasks.
pub struct Endpoint {
    pub port: u16,
    pub shared: Arc<Shared>,
    /// The connection budget this listener was started with (from the fd limit then).
    pub budget: Budget,
    keyless: KeylessLimits,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Endpoint {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Re-reads accounts and the key now: for changes made through this endpoint's own store
    /// connection (a key rotated by the desktop app), which its `data_version` watch cannot see.
    pub fn reload(&self) {
        self.shared.tm.forget_all();
        self.shared.reload();
    }

    /// Keyless requests (`/oauth/token`, `/oauth/revoke`) in flight now.
    pub fn keyless_in_flight(&self) -> usize {
        self.keyless.in_flight()
    }

    /// Requests answered per account since start (the UI's endpoint panel).
    pub fn served(&self) -> HashMap<String, u64> {
        lock(&self.shared.served).clone()
    }

    /// Conversations each account served in the last 30 minutes (the account cards).
    pub fn recent_conversations(&self) -> HashMap<String, u64> {
        self.shared.continuity.recent_conversations()
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        // What the debounced flush had not written yet (a restart must find it).
        self.shared.continuity.flush_now(self.shared.store());
    }
}

/// Binds and serves. `port` 0 picks a free port (reported in `Endpoint::port`).
pub async fn start(
    service: Arc<Service>,
    tm: TokenManager,
    port: u16,
    upstream: String,
) -> Result<Endpoint, EndpointError> {
    let v4 = match tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(EndpointError::PortInUse {
                port,
                holder: port_holder::describe(port).unwrap_or_default(),
            })
        }
        Err(e) => {
            return Err(EndpointError::Bind {
                port,
                detail: e.to_string(),
            })
        }
    };
    let port = v4.local_addr().map(|a| a.port()).unwrap_or(port);
    // ::1 on the same port where the machine has IPv6 loopback; its absence is not an error.
    let v6 = tokio::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
        .await
        .ok();
    let key = service.local_api_key().map_err(|e| EndpointError::Bind {
        port,
        detail: e.to_string(),
    })?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client builds with rustls");
    let first_byte_hold = !matches!(
        service
            .store()
            .setting(SETTING_FIRST_BYTE_HOLD)
            .ok()
            .flatten()
            .as_deref()
            .map(str::trim),
        Some("off")
    );
    if !first_byte_hold {
        tracing::warn!(
            "{SETTING_FIRST_BYTE_HOLD} = off: a failure in the stream before any output reaches the client (no failover)"
        );
    }
    let shared = Arc::new(Shared {
        tm,
        service,
        key: RwLock::new(key),
        accounts: RwLock::new(Arc::new(Vec::new())),
        selector: Mutex::new(Selector::default()),
        usage: Mutex::new(HashMap::new()),
        dirty_usage: Mutex::new(HashSet::new()),
        served: Mutex::new(HashMap::new()),
        continuity: Arc::new(continuity::Continuity::default()),
        http,
        upstream: upstream.trim_end_matches('/').to_string(),
        first_byte_hold,
    });
    shared.reload();
    // Seed usage from the store so selection has figures before the first answer.
    {
        let mut usage = lock(&shared.usage);
        for a in shared.accounts().iter() {
            if let Some(u) = a
                .usage_json
                .as_deref()
                .and_then(|j| serde_json::from_str(j).ok())
            {
                usage.insert(a.id.clone(), u);
            }
        }
    }
    // Conversations and who minted what, as an earlier run left them.
    {
        let pairs = shared.continuity.load(shared.store());
        let mut sel = lock(&shared.selector);
        for (conv, account) in pairs {
            sel.stick(&conv, &account);
        }
    }
    let budget = Budget::current();
    let keyless = KeylessLimits::new(budget.keyless);
    let app = router(shared.clone(), keyless.clone());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let slots = Arc::new(tokio::sync::Semaphore::new(budget.connections));
    let mut tasks = Vec::new();
    for listener in std::iter::once(v4).chain(v6) {
        tasks.push(tokio::spawn(accept::serve_listener(
            listener,
            app.clone(),
            slots.clone(),
            stop_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(watch_store(shared.clone())));
    tasks.push(tokio::spawn(flush_usage(shared.clone())));
    tasks.push(tokio::spawn(
        shared.continuity.clone().run_flush(shared.store().clone()),
    ));
    tasks.push(tokio::spawn(usage_poll::run(
        shared.clone(),
        crate::refresh::usage_url(&shared.upstream),
    )));
    Ok(Endpoint {
        port,
        shared,
        budget,
        keyless,
        tasks,
        stop,
    })
}

/// Picks up accounts added, removed or changed by another process within a second: a cheap
/// `PRAGMA data_version` check, a full reload only when it moved.
async fn watch_store(shared: Arc<Shared>) {
    let version = |s: Arc<Shared>| async move {
        tokio::task::spawn_blocking(move || s.store().data_version().ok())
            .await
            .ok()
            .flatten()
    };
    let mut last = version(shared.clone()).await;
    // The accounts were first read before this baseline: read once more after it, so a commit
    // that landed in between is not taken as already seen.
    {
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || s.reload()).await;
    }
    loop {
        tokio::time::sleep(CHANGE_POLL).await;
        let now = version(shared.clone()).await;
        if now != last {
            last = now;
            // Forget cached tokens first: a request racing the reload then reads the store anew.
            shared.tm.forget_all();
            let s = shared.clone();
            let _ = tokio::task::spawn_blocking(move || s.reload()).await;
        }
    }
}

/// Usage snapshots reach SQLite at most every few seconds, never one write per request.
async fn flush_usage(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(USAGE_FLUSH).await;
        let dirty: Vec<(String, String)> = {
            let ids: Vec<String> = lock(&shared.dirty_usage).drain().collect();
            let usage = lock(&shared.usage);
            ids.into_iter()
                .filter_map(|id| {
                    let json = serde_json::to_string(usage.get(&id)?).ok()?;
                    Some((id, json))
                })
                .collect()
        };
        if dirty.is_empty() {
            continue;
        }
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for (id, json) in dirty {
                if let Err(e) = s.store().set_usage_json(&id, &json) {
                    tracing::warn!("cannot save usage: {e}");
                }
            }
        })
        .await;
    }
}

fn router(shared: Arc<Shared>, limits: KeylessLimits) -> Router {
    let api = Router::new()
        .route("/v1/responses", post(proxy::responses))
        .route("/backend-api/codex/responses", post(proxy::responses))
        .route("/v1/responses/compact", post(proxy::compact))
        .route("/backend-api/codex/responses/compact", post(proxy::compact))
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/models", get(chat::list_models))
        .route("/backend-api/codex/models", get(proxy::models))
        .route("/v1/accounts", get(accounts))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), require_key));
    // The refresh broker: no local key (the refresh token is the credential, as upstream), so
    // bounded apart (body size and time, requests at once); the Host/Origin guard applies too.
    let keyless = Router::new()
        .route("/oauth/token", post(broker::token))
        .route("/oauth/revoke", post(broker::revoke))
        .route_layer(middleware::from_fn_with_state(limits, keyless::bound));
    Router::new()
        .route("/health", get(health))
        .merge(keyless)
        .merge(api)
        .layer(middleware::from_fn(guard_browser))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// Host and Origin first: a rebinding or cross-site request learns nothing, not even 401.
async fn guard_browser(req: Request, next: Next) -> Response {
    if !guard::host_allowed(req.headers()) {
        return error(
            StatusCode::FORBIDDEN,
            ErrorCode::HostNotAllowed,
            "this endpoint answers only requests addressed to 127.0.0.1, localhost or [::1]",
        );
    }
    if guard::has_browser_origin(req.headers()) {
        return error(
            StatusCode::FORBIDDEN,
            ErrorCode::OriginNotAllowed,
            "browser requests are refused (the request carried an Origin header)",
        );
    }
    next.run(req).await
}

async fn require_key(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if !shared.key_matches(req.headers()) {
        return error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidLocalKey,
            "missing or wrong local API key: send `Authorization: Bearer <key>` (see `codex-vault endpoint info`)",
        );
    }
    if req.headers().contains_key(header::UPGRADE) {
        // Newer Codex CLIs try a WebSocket first; 426 makes them fall back to HTTP streaming.
        return error(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::WebsocketNotServed,
            "this endpoint serves HTTP streaming (SSE) only; retry without Upgrade",
        );
    }
    // A body announced over the limit is refused from its head, before a byte of it is read
    // (otherwise 32 MiB would be taken in first, or a client announcing more and sending nothing
    // would hold the connection).
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RequestTooLarge,
            format!("the request body is over {} MiB", MAX_BODY / (1024 * 1024)),
        );
    }
    next.run(req).await
}

/// Liveness plus two process counters the benchmark checks from outside (keychain reads stay at
/// 1, the idle scheduler barely wakes); neither says anything about accounts or secrets.
async fn health() -> Response {
    Json(serde_json::json!({
        "status": "ok",
        "service": "codex-vault",
        "version": env!("CARGO_PKG_VERSION"),
        "process": {
            "keychain_reads": crate::vault::keychain_reads(),
            "scheduler_wakeups": crate::refresh::scheduler_wakeups(),
        },
    }))
    .into_response()
}

async fn accounts(State(shared): State<Arc<Shared>>) -> Response {
    let recent = shared.continuity.recent_conversations();
    let views: Vec<serde_json::Value> = shared
        .views()
        .into_iter()
        .map(|v| {
            let mut j = serde_json::to_value(&v).unwrap_or_default();
            if let serde_json::Value::Object(m) = &mut j {
                m.insert(
                    "conversations".into(),
                    serde_json::json!({
                        "served_last_30_min": recent.get(&v.id).copied().unwrap_or(0),
                        "notes": shared.continuity.notes(&v.id),
                    }),
                );
            }
            j
        })
        .collect();
    Json(views).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such route: use /v1/responses, /v1/chat/completions, /v1/models, /v1/accounts or /health",
    )
}
