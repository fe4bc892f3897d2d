//! `codex-vault serve`: the headless face — the composition root (`runtime::Core`: scheduler +
//! loopback endpoint) in one process until SIGTERM/SIGINT, then its shutdown.

use crate::config::Config;
use crate::error::AppError;
use crate::runtime::Core;
use std::process::ExitCode;

pub fn run(port: Option<u16>) -> Result<ExitCode, AppError> {
    let core = Core::open(Config::from_env()?)?;
    crate::logging::attach_or_warn(&core.config.data_dir);
    if let Some(w) = core.service.info().warning {
        tracing::warn!("{w}");
    }
    let rt = crate::runtime::tokio_runtime()?;
    let result = rt.block_on(async move {
        // Registered before the first refresh can start (start-up recovery refreshes too): a
        // SIGTERM from then on is a graceful stop that drains, never the default instant death.
        let stop = shutdown_signal();
        let status = core.start(port).await?;
        println!("Codex Vault endpoint listening on {}", status.url);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        eprintln!("codex-vault serve: `codex-vault endpoint info` shows the key and the Codex CLI configuration; Ctrl-C stops.");
        stop.await;
        core.shutdown().await;
        Ok::<_, AppError>(())
    });
    crate::logging::flush_file();
    result?;
    Ok(ExitCode::SUCCESS)
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
