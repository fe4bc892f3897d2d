//! The composition root `serve` and the desktop app both start (`Core`): the store and vault
//! (`Service`), the refresh engine (`TokenManager`, whose writes go through `health`), the
//! scheduler and the endpoint's controller, wired from one `Config`; the bus (`bus::Bus::global`)
//! and the store watcher are the process's own and joined by the parts that follow them. Also
//! the one upstream HTTP client and the async runtime.

use crate::accounts::Service;
use crate::config::Config;
use crate::endpoint::ctl::{EndpointControl, EndpointStatus};
use crate::error::AppError;
use crate::refresh::{Drained, Scheduler, TokenManager};
use std::sync::{Arc, Mutex};

/// The async runtime `serve`, the desktop app (Tauri's tasks too: `desktop::run` hands it to
/// Tauri) and the CLI's networked commands run on: two workers (the core's work is I/O), named
/// `vault-rt` so that their wake-ups are told apart from other runtimes' in a process (the
/// Secret Service client's, whose workers keep tokio's default name).
pub fn tokio_runtime() -> Result<tokio::runtime::Runtime, AppError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("vault-rt")
        .enable_all()
        .build()
        .map_err(|e| AppError::from(crate::error::ConfigError::Runtime(e.to_string())))
}

/// The core of a long-running face, opened from its `Config`.
pub struct Core {
    pub config: Config,
    pub service: Arc<Service>,
    /// The process's one refresh engine (one single-flight per account), shared by the
    /// scheduler, the endpoint and the app's commands.
    pub token_manager: TokenManager,
    /// The endpoint (on the core's one store connection: its view follows the bus).
    pub endpoint: Arc<EndpointControl>,
    /// Held while the core runs (dropping it stops the scheduler).
    scheduler: Mutex<Option<Scheduler>>,
}

impl Core {
    /// Opens the store (integrity-checked: never serve from a half-damaged store; a CLI call
    /// skips this, it reads the whole file), the vault, the refresh engine and the endpoint's
    /// controller. Starts nothing yet.
    pub fn open(mut config: Config) -> Result<Core, AppError> {
        // A long-running face counts for `/metrics` (a CLI call counts nothing).
        crate::activity::metrics::install();
        let service = Arc::new(Service::open(&config.data_dir, config.key_store)?);
        service.store().check_integrity()?;
        config.settings = service.store().settings();
        let token_manager =
            service.token_manager_with(config.issuer.clone(), config.refresh.clone());
        let endpoint = Arc::new(EndpointControl::new(
            service.clone(),
            token_manager.clone(),
            config.upstream.clone(),
        ));
        Ok(Core {
            config,
            service,
            token_manager,
            endpoint,
            scheduler: Mutex::new(None),
        })
    }

    /// Runs the core (inside the async runtime): unfinished refreshes of a crashed process are
    /// settled first, then the scheduler keeps tokens fresh ahead of expiry and the endpoint
    /// serves local tools on `port` (None: the `endpoint.port` setting, else 8417). The
    /// endpoint's failure is returned (`serve` exits on it; the app shows it and goes on).
    pub async fn start(&self, port: Option<u16>) -> Result<EndpointStatus, AppError> {
        self.token_manager.recover_intents().await;
        let scheduler = Scheduler::spawn(self.token_manager.clone());
        *self.scheduler.lock().unwrap_or_else(|e| e.into_inner()) = Some(scheduler);
        self.endpoint.start_on(port).await
    }

    /// What Quit does now (`force`: the user already said to quit anyway).
    pub fn quit_plan(&self, force: bool) -> QuitPlan {
        quit_plan(self.token_manager.held_rotations(), force)
    }

    /// The shutdown `serve`'s SIGTERM and the app's Quit share: the endpoint stops listening,
    /// refreshes drain (`drain_refreshes`), then the scheduler stops.
    pub async fn shutdown(&self) -> Drained {
        if let Err(e) = self.endpoint.stop().await {
            tracing::warn!(code = e.code().as_str(), "stopping the endpoint: {e}");
        }
        let drained = drain_refreshes(&self.token_manager).await;
        drop(
            self.scheduler
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        drained
    }
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
pub async fn drain_refreshes(tm: &TokenManager) -> Drained {
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
