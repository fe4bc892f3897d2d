//! Every face's hold on its loopback endpoint (the app's panel and tray, `serve` through
//! `runtime::Core`): start, stop, move to another port, rotate the key, and report the real
//! listener state. Kept out of `desktop` so it is tested without WebKit.

use crate::accounts::Service;
use crate::endpoint::info::{self, Running};
use crate::endpoint::SETTING_PORT;
use crate::error::{AppError, ErrorBody};
use crate::refresh::TokenManager;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// What the endpoint panel and the tray show. Never the key itself: `key_hint` is a fingerprint;
/// the key crosses only when the user asks to reveal or copy it (`EndpointControl::key`).
#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct EndpointStatus {
    /// A listener of this process is accepting connections right now.
    pub running: bool,
    /// The live port when running, else the one a start would use.
    pub port: u16,
    /// The port saved in the store (`endpoint.port`).
    pub configured_port: u16,
    /// The base URL tools use (`…/v1`).
    pub url: String,
    pub key_hint: String,
    /// The Codex CLI `config.toml` block for this URL.
    pub config_toml: String,
    /// The shell line that gives tools the key, with the key left as a placeholder.
    pub env_hint: String,
    /// The line that makes the stock Codex CLI refresh its own sign-in through this endpoint.
    pub refresh_override_env: String,
    /// Why the last start failed (port in use, …), until a start succeeds.
    pub error: Option<ErrorBody>,
    /// Another process (e.g. `codex-vault serve`) runs an endpoint on this store.
    pub other_pid: Option<u32>,
    /// Requests answered per account id since this listener started.
    #[ts(type = "Record<string, number>")]
    pub served: BTreeMap<String, u64>,
    /// Conversations each account served in the last 30 minutes (this listener's view).
    #[ts(type = "Record<string, number>")]
    pub conversations: BTreeMap<String, u64>,
}

struct Slot {
    running: Option<Running>,
    error: Option<ErrorBody>,
}

pub struct EndpointControl {
    service: Arc<Service>,
    tm: TokenManager,
    /// The Codex backend base (`Config::upstream`).
    upstream: String,
    slot: Mutex<Slot>,
}

fn port_setting_error(port: u16) -> AppError {
    crate::error::ConfigError::PortUnusable { port }.into()
}

impl EndpointControl {
    /// `service` may be the app's own: the endpoint's view follows the bus, which carries this
    /// process's changes as well as other processes' (the store watcher).
    pub fn new(service: Arc<Service>, tm: TokenManager, upstream: String) -> EndpointControl {
        EndpointControl {
            service,
            tm,
            upstream,
            slot: Mutex::new(Slot {
                running: None,
                error: None,
            }),
        }
    }

    pub async fn status(&self) -> Result<EndpointStatus, AppError> {
        let slot = self.slot.lock().await;
        self.status_of(&slot)
    }

    /// The state after a change (started, stopped, moved, new key), told to the bus first: the
    /// window and the tray follow the bus.
    fn changed(&self, slot: &Slot) -> Result<EndpointStatus, AppError> {
        crate::bus::publish(crate::bus::CoreEvent::EndpointChanged);
        self.status_of(slot)
    }

    fn status_of(&self, slot: &Slot) -> Result<EndpointStatus, AppError> {
        let configured_port = info::configured_port(&self.service)?;
        let port = slot
            .running
            .as_ref()
            .map_or(configured_port, |r| r.endpoint.port);
        let url = format!("http://127.0.0.1:{port}/v1");
        let other_pid = match slot.running {
            Some(_) => None,
            // Only the listener registry (a directory read): this runs every second for the panel
            // and the tray.
            None => info::live_pid(&self.service).filter(|pid| *pid != std::process::id()),
        };
        Ok(EndpointStatus {
            running: slot.running.is_some(),
            port,
            configured_port,
            key_hint: self.service.local_api_key()?.fingerprint(),
            config_toml: info::codex_config_toml(&url),
            env_hint: "export CODEX_VAULT_KEY=<your key>".to_string(),
            refresh_override_env: crate::accounts::ownership::refresh_override_env(port),
            url,
            error: slot.error.clone(),
            other_pid,
            served: slot
                .running
                .as_ref()
                .map(|r| r.endpoint.served().into_iter().collect())
                .unwrap_or_default(),
            conversations: slot
                .running
                .as_ref()
                .map(|r| r.endpoint.recent_conversations().into_iter().collect())
                .unwrap_or_default(),
        })
    }

    /// Starts on the configured port; a no-op when already running. A failure is kept for the
    /// panel (and returned), the app goes on without an endpoint.
    pub async fn start(&self) -> Result<EndpointStatus, AppError> {
        self.start_on(None).await
    }

    /// `start` on `port` (None: the configured one) without saving it: `serve --port`.
    pub async fn start_on(&self, port: Option<u16>) -> Result<EndpointStatus, AppError> {
        let mut slot = self.slot.lock().await;
        if slot.running.is_none() {
            match self.listen(port).await {
                Ok(running) => {
                    slot.running = Some(running);
                    slot.error = None;
                }
                Err(e) => {
                    slot.error = Some(e.to_body());
                    // The panel, the tray and the notices follow the failure too.
                    crate::bus::publish(crate::bus::CoreEvent::EndpointChanged);
                    return Err(e);
                }
            }
        }
        self.changed(&slot)
    }

    pub async fn stop(&self) -> Result<EndpointStatus, AppError> {
        let mut slot = self.slot.lock().await;
        if let Some(running) = slot.running.take() {
            drop(running);
        }
        slot.error = None;
        self.changed(&slot)
    }

    /// Saves `port` as the endpoint's port. While running, the new listener is bound first and
    /// the old one stopped only then: a port that is taken leaves the endpoint serving where it
    /// was, the setting unchanged, and an error that names the holder.
    pub async fn set_port(&self, port: u16) -> Result<EndpointStatus, AppError> {
        if port < 1024 {
            return Err(port_setting_error(port));
        }
        let mut slot = self.slot.lock().await;
        let moving = slot
            .running
            .as_ref()
            .is_some_and(|r| r.endpoint.port != port);
        if moving {
            let next = self.listen(Some(port)).await?;
            slot.running = Some(next);
        }
        self.service
            .store()
            .set_setting(SETTING_PORT, &port.to_string())?;
        // Connected Codex configs follow the new port (not fatal: the move itself succeeded).
        if let Err(e) = crate::connect::retarget(&self.service, port) {
            tracing::warn!(
                code = e.code().as_str(),
                "connected Codex configs not updated: {e}"
            );
        }
        slot.error = None;
        self.changed(&slot)
    }

    async fn listen(&self, port: Option<u16>) -> Result<Running, AppError> {
        info::start_registered(
            self.service.clone(),
            self.tm.clone(),
            port,
            self.upstream.clone(),
        )
        .await
    }

    /// The key itself, for an explicit reveal or copy.
    pub fn key(&self) -> Result<String, AppError> {
        Ok(self.service.local_api_key()?.expose().to_string())
    }

    /// Replaces the key; the running listener accepts only the new one from now on.
    pub async fn rotate_key(&self) -> Result<EndpointStatus, AppError> {
        let slot = self.slot.lock().await;
        // Through `connect`, so every connected Codex config follows the new key.
        crate::connect::rotate_key(&self.service)?;
        if let Some(running) = &slot.running {
            running.endpoint.reload();
        }
        self.changed(&slot)
    }
}
