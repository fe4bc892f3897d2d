//! `endpoint info`: where this store's endpoint listens (the listener registry, `listeners`),
//! its key and the Codex CLI lines that point a tool at it; and a started endpoint registered
//! in that registry (`Running`), whichever face started it.

use crate::accounts::Service;
use crate::endpoint::{self, SETTING_PORT};
use crate::error::AppError;
use crate::listeners::{self, Listener, Registration};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// What an older build wrote for its one listener; removed on sight (the registry replaced it).
const LEGACY_RUNTIME_FILE: &str = "endpoint.json";

#[derive(Debug, Serialize)]
pub struct EndpointInfo {
    /// At least one process serves this store's endpoint now.
    pub running: bool,
    /// The listener `url` names (the one on the configured port, else the newest).
    pub pid: Option<u32>,
    pub port: u16,
    /// The base URL tools use (`…/v1`).
    pub url: String,
    /// Every live listener on this store (the app and a `serve`, say), the one above first.
    pub listeners: Vec<ListenerInfo>,
    pub key: String,
    pub config_toml: String,
    pub env: String,
    /// The env line that makes a stock Codex CLI refresh its own sign-in through the broker.
    pub refresh_override_env: String,
}

#[derive(Debug, Serialize)]
pub struct ListenerInfo {
    pub pid: u32,
    pub port: u16,
    pub url: String,
}

fn data_dir(service: &Service) -> PathBuf {
    PathBuf::from(service.info().data_dir)
}

/// The `endpoint.port` setting, read per use (Settings and other processes change it), else 8417.
pub fn configured_port(service: &Service) -> Result<u16, AppError> {
    Ok(listeners::configured_port(
        service.store().setting(SETTING_PORT)?,
    ))
}

/// The Codex CLI provider block for an endpoint at `base_url` (protocol.md § Pointing the stock CLI).
pub fn codex_config_toml(base_url: &str) -> String {
    format!(
        "model_provider = \"codex-vault\"\n\n[model_providers.codex-vault]\nname = \"Codex Vault\"\nbase_url = \"{base_url}\"\nwire_api = \"responses\"\nenv_key = \"CODEX_VAULT_KEY\"\n"
    )
}

fn live_listeners(service: &Service, configured: Option<u16>) -> Vec<Listener> {
    listeners::live_preferring(&data_dir(service), configured)
}

/// The port the endpoint listens on now (a live `serve` or app), else the configured one; reads
/// no key (an import's env line must not mint the local key as a side effect).
pub fn current_port(service: &Service) -> Result<u16, AppError> {
    Ok(listeners::current_port(
        &data_dir(service),
        configured_port(service)?,
    ))
}

/// The pid of a process serving this store's endpoint right now other than this one, if any.
pub fn live_pid(service: &Service) -> Option<u32> {
    listeners::other_live_pid(&data_dir(service))
}

pub fn info(service: &Service) -> Result<EndpointInfo, AppError> {
    let configured = configured_port(service)?;
    let live = live_listeners(service, Some(configured));
    let port = live.first().map_or(configured, |l| l.port);
    let url = format!("http://127.0.0.1:{port}/v1");
    let key = service.local_api_key()?;
    Ok(EndpointInfo {
        running: !live.is_empty(),
        pid: live.first().map(|l| l.pid),
        port,
        listeners: live
            .iter()
            .map(|l| ListenerInfo {
                pid: l.pid,
                port: l.port,
                url: format!("http://127.0.0.1:{}/v1", l.port),
            })
            .collect(),
        config_toml: codex_config_toml(&url),
        env: format!("export CODEX_VAULT_KEY={}", key.expose()),
        refresh_override_env: crate::accounts::ownership::refresh_override_env(port),
        key: key.expose().to_string(),
        url,
    })
}

/// Binds and serves the endpoint over `service`'s store, vault and local key
/// (`endpoint::listen`). `port` 0 picks a free port.
pub async fn start(
    service: Arc<Service>,
    tm: crate::refresh::TokenManager,
    port: u16,
    upstream: String,
) -> Result<endpoint::Endpoint, endpoint::EndpointError> {
    let activity =
        match crate::activity::Log::for_dir(&data_dir(&service), service.store().settings()) {
            Ok(log) => Some(log),
            Err(e) => {
                // Serving matters more than logging: the endpoint runs without a request log.
                tracing::warn!(code = e.code().as_str(), "no request log: {e}");
                None
            }
        };
    let deps = endpoint::Deps {
        store: service.shared_store().clone(),
        vault: service.vault().clone(),
        local_key: Arc::new(move || service.local_api_key()),
        activity,
    };
    endpoint::listen(deps, tm, port, upstream).await
}

/// A started endpoint plus its entry in the listener registry (removed when this is dropped), so
/// `endpoint info` reports the live listener whichever face started it.
pub struct Running {
    pub endpoint: endpoint::Endpoint,
    _registration: Option<Registration>,
}

/// Starts the endpoint on `port` (default: the setting, else 8417) and records it in the
/// listener registry; `EndpointControl` (every face's hold on the endpoint) calls it.
pub async fn start_registered(
    service: Arc<Service>,
    tm: crate::refresh::TokenManager,
    port: Option<u16>,
    upstream: String,
) -> Result<Running, AppError> {
    let port = match port {
        Some(p) => p,
        None => configured_port(&service)?,
    };
    let ep = start(service.clone(), tm, port, upstream).await?;
    let dir = data_dir(&service);
    let _ = std::fs::remove_file(dir.join(LEGACY_RUNTIME_FILE));
    let registration = match listeners::register(&dir, ep.port) {
        Ok(r) => {
            crate::connect::follow_listener(&service, ep.port);
            Some(r)
        }
        Err(e) => {
            // Serving matters more than being listed; `endpoint info` will say "not running".
            tracing::warn!("cannot record the listener in {}: {e}", dir.display());
            None
        }
    };
    Ok(Running {
        endpoint: ep,
        _registration: registration,
    })
}
