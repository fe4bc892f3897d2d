//! `codex-vault serve`: the headless face — scheduler + loopback endpoint in one process — and
//! the runtime file through which `endpoint info` reports the live listener.

use crate::endpoint::{self, DEFAULT_PORT, SETTING_PORT};
use crate::error::AppError;
use crate::service::Service;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const RUNTIME_FILE: &str = "endpoint.json";

#[derive(Debug, Serialize, Deserialize)]
struct Runtime {
    pid: u32,
    port: u16,
}

#[derive(Debug, Serialize)]
pub struct EndpointInfo {
    pub running: bool,
    pub pid: Option<u32>,
    pub port: u16,
    /// The base URL tools use (`…/v1`).
    pub url: String,
    pub key: String,
    pub config_toml: String,
    pub env: String,
    /// The env line that makes a stock Codex CLI refresh its own sign-in through the broker.
    pub refresh_override_env: String,
}

fn runtime_path(service: &Service) -> PathBuf {
    PathBuf::from(service.info().data_dir).join(RUNTIME_FILE)
}

pub fn configured_port(service: &Service) -> Result<u16, AppError> {
    Ok(service
        .store()
        .setting(SETTING_PORT)?
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_PORT))
}

/// The Codex CLI provider block for an endpoint at `base_url` (protocol.md § Pointing the stock CLI).
pub fn codex_config_toml(base_url: &str) -> String {
    format!(
        "model_provider = \"codex-vault\"\n\n[model_providers.codex-vault]\nname = \"Codex Vault\"\nbase_url = \"{base_url}\"\nwire_api = \"responses\"\nenv_key = \"CODEX_VAULT_KEY\"\n"
    )
}

/// The port the endpoint listens on now (a live `serve` or app), else the configured one; reads
/// no key (an import's env line must not mint the local key as a side effect).
pub fn current_port(service: &Service) -> Result<u16, AppError> {
    match live_runtime(service) {
        Some(r) => Ok(r.port),
        None => configured_port(service),
    }
}

/// The pid of the process serving this store's endpoint right now, if any.
pub fn live_pid(service: &Service) -> Option<u32> {
    live_runtime(service).map(|r| r.pid)
}

fn live_runtime(service: &Service) -> Option<Runtime> {
    std::fs::read(runtime_path(service))
        .ok()
        .and_then(|b| serde_json::from_slice::<Runtime>(&b).ok())
        .filter(|r| {
            !crate::refresh::holder_is_dead(&format!("{}:0", r.pid))
                && (cfg!(not(target_os = "linux"))
                    || std::path::Path::new(&format!("/proc/{}", r.pid)).exists())
        })
}

pub fn info(service: &Service) -> Result<EndpointInfo, AppError> {
    let live = live_runtime(service);
    let port = match &live {
        Some(r) => r.port,
        None => configured_port(service)?,
    };
    let url = format!("http://127.0.0.1:{port}/v1");
    let key = service.local_api_key()?;
    Ok(EndpointInfo {
        running: live.is_some(),
        pid: live.map(|r| r.pid),
        port,
        config_toml: codex_config_toml(&url),
        env: format!("export CODEX_VAULT_KEY={}", key.expose()),
        refresh_override_env: crate::codex_ownership::refresh_override_env(port),
        key: key.expose().to_string(),
        url,
    })
}

/// A started endpoint plus its runtime file (removed when this is dropped), so `endpoint info`
/// reports the live listener whichever face started it.
pub struct Running {
    pub endpoint: endpoint::Endpoint,
    runtime_file: PathBuf,
}

impl Drop for Running {
    /// Removes the runtime file only while it still names this listener: when the desktop app
    /// moves its endpoint to another port, the new listener's file must outlive the old one.
    fn drop(&mut self) {
        let ours = std::fs::read(&self.runtime_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Runtime>(&b).ok())
            .is_some_and(|r| r.pid == std::process::id() && r.port == self.endpoint.port);
        if ours {
            let _ = std::fs::remove_file(&self.runtime_file);
        }
    }
}

/// Starts the endpoint on `port` (default: the setting, else 8417) — shared by `serve` and the
/// desktop app.
pub async fn start_endpoint(
    service: Arc<Service>,
    tm: crate::refresh::TokenManager,
    port: Option<u16>,
) -> Result<Running, AppError> {
    let port = match port {
        Some(p) => p,
        None => configured_port(&service)?,
    };
    let ep = endpoint::start(service.clone(), tm, port, crate::refresh::upstream_base()).await?;
    let path = runtime_path(&service);
    let json = serde_json::to_vec(&Runtime {
        pid: std::process::id(),
        port: ep.port,
    })
    .expect("runtime info serialises");
    let _ = std::fs::remove_file(&path);
    if let Err(e) = crate::fsutil::write_private_new(&path, &json) {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
    Ok(Running {
        endpoint: ep,
        runtime_file: path,
    })
}

pub fn run(port: Option<u16>) -> Result<ExitCode, AppError> {
    let service = Arc::new(Service::open_default()?);
    if let Some(w) = service.info().warning {
        tracing::warn!("{w}");
    }
    let tm = service.token_manager();
    let rt = crate::cli::runtime()?;
    rt.block_on(async move {
        tm.recover_intents().await;
        let _scheduler = crate::refresh::Scheduler::spawn(tm.clone());
        let tm_for_drain = tm.clone();
        let running = start_endpoint(service, tm, port).await?;
        println!("Codex Vault endpoint listening on {}/v1", running.endpoint.url());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        eprintln!("codex-vault serve: `codex-vault endpoint info` shows the key and the Codex CLI configuration; Ctrl-C stops.");
        shutdown_signal().await;
        drop(running);
        drain_refreshes(&tm_for_drain).await;
        Ok::<_, AppError>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The shutdown path `serve` and the desktop app share: no new refresh starts; refreshes already
/// sent get up to `DRAIN_LIMIT` to commit, and rotations held in memory (a full disk) keep being
/// retried for all of it. Says in the log what it waits for and what, if anything, is lost.
pub async fn drain_refreshes(tm: &crate::refresh::TokenManager) -> crate::refresh::Drained {
    let limit = crate::refresh::DRAIN_LIMIT;
    let held = tm.held_rotations();
    if tm.busy() > 0 {
        eprintln!(
            "codex-vault: stopping; waiting up to {} s for refreshes in flight to be saved{}",
            limit.as_secs(),
            if held.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} new sign-in(s) held in memory: retrying to save them)",
                    held.len()
                )
            }
        );
    }
    let drained = tm.drain(limit).await;
    for id in &drained.held {
        tracing::error!(account = %id, "stopped with a new sign-in held in memory that could not be saved: this account will need a new sign-in");
        eprintln!("codex-vault: account {id}: its new sign-in could not be saved before stopping (free disk space); it will need a new sign-in");
    }
    if drained.unfinished > 0 {
        eprintln!(
            "codex-vault: {} refresh(es) did not finish within {} s",
            drained.unfinished,
            limit.as_secs()
        );
    }
    drained
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
