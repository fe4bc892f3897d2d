//! The loopback endpoint the stock Codex CLI and other local tools point at: it picks a healthy
//! account, injects its credentials, streams the upstream answer back unbuffered, refreshes on
//! 401 and fails over on 429. Binds 127.0.0.1 (and ::1 on the same port) only.

mod accept;
pub mod broker;
pub mod chat;
pub mod continuity;
pub mod ctl;
mod failover;
mod flush;
pub mod guard;
mod http_error;
pub mod info;
pub mod keyless;
mod port_holder;
mod proxy;
mod quota;
pub mod quota_shape;
pub(crate) mod record;
mod routes;
pub mod select;
mod upstream;

pub mod usage_poll;

use crate::account::usage::UsageSnapshot;
use crate::account::{now_ms, Account, AccountView};
use crate::refresh::TokenManager;
use crate::secret::Secret;
use crate::store::SharedStore;
use routes::router;
use select::Selector;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use crate::error::EndpointError;
pub use accept::Budget;
pub(crate) use http_error::error;
pub use http_error::HttpError;
pub use info::start;
pub use keyless::{KeylessLimits, KEYLESS_BODY_TIMEOUT, KEYLESS_MAX_BODY};

pub use crate::listeners::{DEFAULT_PORT, SETTING_PORT};
/// `on` (default) | `off`, read at start and again whenever the bus says the store or a setting
/// changed (`Shared::reload`). For benchmarks only: `off` passes every answer on
/// from its first byte, so an in-stream failure before any output is no longer failed over.
pub const SETTING_FIRST_BYTE_HOLD: &str = "endpoint.first_byte_hold";
/// The request body is buffered (so a retry on another account sends the same bytes); capped.
/// Keyed routes only: the keyless ones have their own, far smaller cap (`keyless`).
pub const MAX_BODY: usize = 32 * 1024 * 1024;
/// A client must have sent a whole request head within this time or its connection is closed:
/// without it a slowloris client (a header trickled a byte at a time) or a silent connection holds
/// a socket and a task forever. It bounds the head only (an idle keep-alive connection counts as
/// waiting for one); request bodies and streamed answers are not limited by it.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Shared {
    tm: TokenManager,
    /// Where this endpoint reports what it learns about accounts (limits, dead sign-ins, usage).
    health: crate::health::Health,
    store: SharedStore,
    vault: crate::vault::Vault,
    local_key: LocalKey,
    key: RwLock<Secret>,
    accounts: RwLock<Arc<Vec<Account>>>,
    selector: Mutex<Selector>,
    usage: Mutex<HashMap<String, UsageSnapshot>>,
    dirty_usage: Mutex<HashSet<String>>,
    /// Wakes the usage flush (see `note_usage`).
    usage_dirtied: tokio::sync::Notify,
    served: Mutex<HashMap<String, u64>>,
    /// Wakes `flush::publish_served` (counted in `failover`).
    served_dirtied: tokio::sync::Notify,
    continuity: Arc<continuity::Continuity>,
    http: reqwest::Client,
    upstream: String,
    /// `upstream` parsed once (a request's URL is this with its path set: no host parsed per
    /// request); `None` when it does not parse (each request then fails as before).
    upstream_url: Option<reqwest::Url>,
    /// The lean client's upstream (`proxy::LeanBase`); `None`: requests go through `http`.
    lean: Option<proxy::LeanBase>,
    /// Hold a stream's head until its first output event (`continuity::hold`).
    first_byte_hold: std::sync::atomic::AtomicBool,
    /// The request log and usage history (`None` when `activity.db` could not be opened: the
    /// endpoint serves without it).
    activity: Option<Arc<crate::activity::Log>>,
    /// The routes clients asked for under `chatgpt_base_url` ("METHOD /path", with " (bearer)"
    /// when one was sent; the newest 256):
    /// what a Codex CLI pointed here calls (`Endpoint::chatgpt_routes`, docs/protocol.md).
    chatgpt_routes: Mutex<std::collections::VecDeque<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn store(&self) -> &SharedStore {
        &self.store
    }

    fn accounts(&self) -> Arc<Vec<Account>> {
        self.accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads accounts and the local key (another process may have changed either).
    fn reload(&self) {
        self.first_byte_hold.store(
            first_byte_hold(&*self.store),
            std::sync::atomic::Ordering::Relaxed,
        );
        match self.store().list_accounts() {
            Ok(list) => {
                self.adopt_from_store(&list);
                *self.accounts.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list);
            }
            Err(e) => tracing::warn!("endpoint cannot reload accounts: {e}"),
        }
        match (self.local_key)() {
            Ok(k) => *self.key.write().unwrap_or_else(|e| e.into_inner()) = k,
            Err(e) => tracing::warn!("endpoint cannot reload its key: {e}"),
        }
    }

    /// What another process (or a redemption in this one) learnt first: a limit lifted (the
    /// store's row went from rate-limited to healthy since the last reading — a limit this
    /// process learnt first and has not written yet shows no such transition and is kept), and
    /// usage figures newer than ours (ours reach the store through the flush, so the store is
    /// newer only when someone else read the account).
    fn adopt_from_store(&self, next: &[Account]) {
        let before = self.accounts();
        {
            let mut sel = lock(&self.selector);
            for a in next {
                let was_limited = before
                    .iter()
                    .any(|b| b.id == a.id && b.status == crate::account::Status::RateLimited);
                if was_limited
                    && a.status != crate::account::Status::RateLimited
                    && a.rate_limited_until.is_none()
                {
                    sel.rate_limited.remove(&a.id);
                }
            }
        }
        let mut usage = lock(&self.usage);
        for a in next {
            let Some(stored) = a
                .usage_json
                .as_deref()
                .and_then(|j| serde_json::from_str::<UsageSnapshot>(j).ok())
            else {
                continue;
            };
            let newer = usage.get(&a.id).is_none_or(|u| {
                crate::account::rfc3339_to_ms(&u.updated_at)
                    < crate::account::rfc3339_to_ms(&stored.updated_at)
            });
            if newer {
                usage.insert(a.id.clone(), stored);
            }
        }
    }

    /// Records fresh usage figures for `account_id`; they reach the store in the next flush
    /// only if they differ from what was known (an idle account's poll finding the same
    /// figures writes nothing, so it wakes no store watcher and no view).
    fn note_usage(&self, account_id: &str, mut snap: UsageSnapshot) {
        let unchanged = {
            let mut usage = lock(&self.usage);
            // An answer's headers carry no extras: the last full reading's stay.
            if snap.quota.is_none() {
                snap.quota = usage.get(account_id).and_then(|u| u.quota.clone());
            }
            match usage.get_mut(account_id) {
                // Only the reading time moves: the figures kept are the ones last saved, so a
                // reset read as "after N s" cannot drift away from the stored one unseen.
                Some(old) if old.same_figures(&snap) => {
                    old.updated_at = snap.updated_at;
                    true
                }
                _ => {
                    usage.insert(account_id.to_string(), snap);
                    false
                }
            }
        };
        if unchanged {
            return;
        }
        if let Some(log) = &self.activity {
            if let Some(u) = lock(&self.usage).get(account_id) {
                log.sample(crate::activity::UsageSample::from_snapshot(account_id, u));
            }
        }
        lock(&self.dirty_usage).insert(account_id.to_string());
        self.usage_dirtied.notify_one();
    }

    /// Whether a stream's head is held until its first output event (`continuity::hold`).
    fn first_byte_hold(&self) -> bool {
        self.first_byte_hold
            .load(std::sync::atomic::Ordering::Relaxed)
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

/// Health's writes in this process reach the snapshot the selector and `/v1/accounts` read
/// before the write call returns (no reload, no waiting for the store watcher).
impl crate::health::AccountSink for Shared {
    fn account_written(&self, store_id: &str, account: &Account) {
        if store_id != self.store().store_id() {
            return;
        }
        self.adopt_from_store(std::slice::from_ref(account));
        let mut guard = self.accounts.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = guard.iter().position(|a| a.id == account.id) {
            let mut next = (**guard).clone();
            next[i] = account.clone();
            *guard = Arc::new(next);
        }
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

    /// Whether streamed answers are held until their first output (the `endpoint.first_byte_hold`
    /// setting as this endpoint applies it now).
    pub fn first_byte_hold(&self) -> bool {
        self.shared.first_byte_hold()
    }

    /// Keyless requests (`/oauth/token`, `/oauth/revoke`) in flight now.
    pub fn keyless_in_flight(&self) -> usize {
        self.keyless.in_flight()
    }

    /// Requests answered per account since start (the UI's endpoint panel).
    pub fn served(&self) -> HashMap<String, u64> {
        lock(&self.shared.served).clone()
    }

    /// The routes asked for under `chatgpt_base_url` since start, oldest first (the newest 256).
    pub fn chatgpt_routes(&self) -> Vec<String> {
        lock(&self.shared.chatgpt_routes).iter().cloned().collect()
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
        self.shared.continuity.flush_now(&**self.shared.store());
    }
}

/// Reads the endpoint's local API key, minting it on first use (`Service::local_api_key`).
pub type LocalKey = Arc<dyn Fn() -> Result<Secret, crate::error::AppError> + Send + Sync>;

/// What the endpoint needs from the opened vault, and no more: the endpoint's core does not name
/// `accounts` (`info::start` builds this from a `Service`).
pub struct Deps {
    pub store: SharedStore,
    pub vault: crate::vault::Vault,
    pub local_key: LocalKey,
    pub activity: Option<Arc<crate::activity::Log>>,
}

/// Binds and serves. `port` 0 picks a free port (reported in `Endpoint::port`).
pub async fn listen(
    deps: Deps,
    tm: TokenManager,
    port: u16,
    upstream: String,
) -> Result<Endpoint, EndpointError> {
    let (v4, v6) = bind(port).await?;
    let port = v4.local_addr().map(|a| a.port()).unwrap_or(port);
    let workers = crate::workers::ConnWorkers::get().map_err(|e| EndpointError::Bind {
        port,
        detail: format!("cannot start its connection threads: {e}"),
    })?;
    let key = (deps.local_key)().map_err(|e| EndpointError::Bind {
        port,
        detail: e.to_string(),
    })?;
    let shared = new_shared(deps, tm, key, upstream);
    crate::health::register_view(
        Arc::downgrade(&shared) as std::sync::Weak<dyn crate::health::AccountSink>
    );
    // Subscribed before the accounts are first read: a change landing in between is then
    // re-read, never taken as already seen.
    let changes = crate::bus::Bus::global().subscribe();
    if let Err(e) = shared.store().watch_changes() {
        tracing::warn!("no live updates from other processes: {e}");
    }
    shared.reload();
    seed(&shared);
    let budget = Budget::current();
    let keyless = KeylessLimits::new(budget.keyless);
    let app = router(shared.clone(), keyless.clone());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let slots = Arc::new(tokio::sync::Semaphore::new(budget.connections));
    let mut tasks = Vec::new();
    for listener in std::iter::once(v4).chain(v6) {
        tasks.push(tokio::spawn(accept::serve_listener(
            listener,
            workers,
            app.clone(),
            slots.clone(),
            stop_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(watch_store(shared.clone(), changes)));
    tasks.push(tokio::spawn(flush::flush_usage(shared.clone())));
    tasks.push(tokio::spawn(flush::publish_served(shared.clone())));
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

/// 127.0.0.1 on `port` (0: any free one), and ::1 on the same port where the machine has IPv6
/// loopback (its absence is not an error).
async fn bind(
    port: u16,
) -> Result<(tokio::net::TcpListener, Option<tokio::net::TcpListener>), EndpointError> {
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
    let v6 = tokio::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
        .await
        .ok();
    Ok((v4, v6))
}

fn new_shared(deps: Deps, tm: TokenManager, key: Secret, upstream: String) -> Arc<Shared> {
    let http = crate::http::upstream();
    let upstream_url = reqwest::Url::parse(upstream.trim_end_matches('/')).ok();
    let first_byte_hold = first_byte_hold(&*deps.store);
    if !first_byte_hold {
        tracing::warn!(
            "{SETTING_FIRST_BYTE_HOLD} = off: a failure in the stream before any output reaches the client (no failover)"
        );
    }
    Arc::new(Shared {
        tm,
        health: crate::health::Health::new(deps.store.clone()),
        store: deps.store,
        vault: deps.vault,
        local_key: deps.local_key,
        key: RwLock::new(key),
        accounts: RwLock::new(Arc::new(Vec::new())),
        selector: Mutex::new(Selector::default()),
        usage: Mutex::new(HashMap::new()),
        dirty_usage: Mutex::new(HashSet::new()),
        usage_dirtied: tokio::sync::Notify::new(),
        served: Mutex::new(HashMap::new()),
        served_dirtied: tokio::sync::Notify::new(),
        continuity: Arc::new(continuity::Continuity::default()),
        http,
        upstream_url: upstream_url.clone(),
        lean: proxy::LeanBase::new(upstream_url.as_ref()),
        upstream: upstream.trim_end_matches('/').to_string(),
        first_byte_hold: std::sync::atomic::AtomicBool::new(first_byte_hold),
        activity: deps.activity,
        chatgpt_routes: Mutex::new(std::collections::VecDeque::new()),
    })
}

/// The `endpoint.first_byte_hold` setting: on unless `off`.
fn first_byte_hold(store: &dyn crate::store::CoreStore) -> bool {
    !matches!(
        store
            .setting(SETTING_FIRST_BYTE_HOLD)
            .ok()
            .flatten()
            .as_deref()
            .map(str::trim),
        Some("off")
    )
}

/// Usage from the store, so selection has figures before the first answer; conversations and
/// who minted what, as an earlier run left them.
fn seed(shared: &Shared) {
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
        let pairs = shared.continuity.load(&**shared.store());
        let mut sel = lock(&shared.selector);
        for (conv, account) in pairs {
            sel.stick(&conv, &account);
        }
    }
}

/// Re-reads accounts and the key when the bus says the store changed (another process's
/// commit, seen by the store watcher; a change this process reported): no polling.
async fn watch_store(
    shared: Arc<Shared>,
    mut changes: tokio::sync::broadcast::Receiver<crate::bus::CoreEvent>,
) {
    use crate::bus::CoreEvent;
    let relevant = |e: &CoreEvent| {
        matches!(
            e,
            CoreEvent::StoreChanged
                | CoreEvent::AccountChanged { .. }
                | CoreEvent::SettingsChanged { .. }
        )
    };
    while crate::bus::next_matching(&mut changes, relevant)
        .await
        .is_some()
    {
        crate::bus::drain(&mut changes);
        // Forget cached tokens first: a request racing the reload then reads the store anew.
        shared.tm.forget_all();
        let s = shared.clone();
        let reloaded = tokio::task::spawn_blocking(move || {
            // Health's job on every change: flags that no longer hold are cleared in the store
            // (a clearing is itself a change, seen once more, with nothing left to clear).
            if let Err(e) = s.health.recheck_shared_grants() {
                tracing::warn!("cannot re-check shared sign-ins: {e}");
            }
            s.reload();
        });
        if let Err(e) = reloaded.await {
            tracing::warn!("endpoint reload task failed: {e}");
        }
    }
}
