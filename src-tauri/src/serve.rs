//! `codex-vault serve`: the headless face — scheduler + loopback endpoint in one process — and
//! the listener registry (`listeners`) through which `endpoint info` reports every live listener.

use crate::accounts::Service;
use crate::endpoint::{self, DEFAULT_PORT, SETTING_PORT};
use crate::error::AppError;
use crate::listeners::{self, Listener, Registration};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
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

/// Live listeners, the one to point tools at first: on the configured port if one is (a moved
/// port's listener otherwise), else the newest.
fn live_listeners(service: &Service, configured: Option<u16>) -> Vec<Listener> {
    let mut live = listeners::live(&data_dir(service));
    if let Some(i) = configured.and_then(|p| live.iter().position(|l| l.port == p)) {
        let preferred = live.remove(i);
        live.insert(0, preferred);
    }
    live
}

/// The port the endpoint listens on now (a live `serve` or app), else the configured one; reads
/// no key (an import's env line must not mint the local key as a side effect).
pub fn current_port(service: &Service) -> Result<u16, AppError> {
    let configured = configured_port(service)?;
    Ok(live_listeners(service, Some(configured))
        .first()
        .map_or(configured, |l| l.port))
}

/// The pid of a process serving this store's endpoint right now other than this one, if any.
pub fn live_pid(service: &Service) -> Option<u32> {
    let me = std::process::id();
    live_listeners(service, None)
        .into_iter()
        .map(|l| l.pid)
        .find(|pid| *pid != me)
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

/// A started endpoint plus its entry in the listener registry (removed when this is dropped), so
/// `endpoint info` reports the live listener whichever face started it.
pub struct Running {
    pub endpoint: endpoint::Endpoint,
    _registration: Option<Registration>,
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
    let dir = data_dir(&service);
    let _ = std::fs::remove_file(dir.join(LEGACY_RUNTIME_FILE));
    let registration = match listeners::register(&dir, ep.port) {
        Ok(r) => Some(r),
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

pub fn run(port: Option<u16>) -> Result<ExitCode, AppError> {
    let service = Arc::new(Service::open_default()?);
    // Never serve from a half-damaged store (a CLI call skips this: it reads the whole file).
    service.store().check_integrity()?;
    if let Some(w) = service.info().warning {
        tracing::warn!("{w}");
    }
    let tm = service.token_manager();
    let rt = crate::runtime::tokio_runtime()?;
    rt.block_on(async move {
        // Registered before the first refresh can start (start-up recovery refreshes too): a
        // SIGTERM from then on is a graceful stop that drains, never the default instant death.
        let stop = shutdown_signal();
        tm.recover_intents().await;
        let _scheduler = crate::refresh::Scheduler::spawn(tm.clone());
        let tm_for_drain = tm.clone();
        let running = start_endpoint(service, tm, port).await?;
        println!("Codex Vault endpoint listening on {}/v1", running.endpoint.url());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        eprintln!("codex-vault serve: `codex-vault endpoint info` shows the key and the Codex CLI configuration; Ctrl-C stops.");
        stop.await;
        drop(running);
        drain_refreshes(&tm_for_drain).await;
        Ok::<_, AppError>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// What the desktop app's Quit does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuitPlan {
    /// A new sign-in is held in memory only (its save failed): quitting now loses it, so the
    /// window asks first.
    Ask {
        account_ids: Vec<String>,
        message: String,
    },
    /// Drain refreshes (`drain_refreshes`), then exit.
    Drain,
}

/// Quit asks while rotations are held in memory only, unless the user already chose to quit
/// anyway (`force`); otherwise it drains.
pub fn quit_plan(held: Vec<String>, force: bool) -> QuitPlan {
    if held.is_empty() || force {
        return QuitPlan::Drain;
    }
    QuitPlan::Ask {
        message: format!(
            "{} — quitting now loses it and the account will need a new sign-in. Free disk space and wait, or quit anyway.",
            crate::account::HELD_ROTATION_ADVICE
        ),
        account_ids: held,
    }
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

/// Installs the SIGTERM and SIGINT handlers now (tokio's `ctrl_c()` would only install its own
/// when first polled) and resolves when either arrives. Needs the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers =
            signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
        async move {
            match handlers {
                Ok((mut term, mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quit_asks_only_while_a_rotation_is_held_and_not_when_forced() {
        assert_eq!(quit_plan(Vec::new(), false), QuitPlan::Drain);
        assert_eq!(quit_plan(vec!["a".into()], true), QuitPlan::Drain);
        match quit_plan(vec!["a".into()], false) {
            QuitPlan::Ask {
                account_ids,
                message,
            } => {
                assert_eq!(account_ids, vec!["a".to_string()]);
                assert!(message.contains("held in memory"), "{message}");
            }
            QuitPlan::Drain => panic!("a held rotation must make Quit ask"),
        }
    }
}
