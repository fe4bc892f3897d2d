//! `fake-openai [--port N] [--access-lifetime-secs N] [--responses-text TEXT]`: runs the fake
//! OpenAI (auth server + Codex backend) until killed. Prints exactly one line, its base URL, on
//! stdout once it accepts connections; logs go to stderr (`RUST_LOG`, default `info`). Drive it
//! through the admin API under `/__admin` (see tests/README.md).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use codex_vault_testkit::{FakeConfig, FakeOpenAi};

const USAGE: &str =
    "usage: fake-openai [--port N] [--access-lifetime-secs N] [--responses-text TEXT]";

fn parse_args(args: impl Iterator<Item = String>) -> Result<FakeConfig, String> {
    let mut cfg = FakeConfig::default();
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--port" => {
                cfg.port = value("--port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?;
            }
            "--access-lifetime-secs" => {
                let secs: u64 = value("--access-lifetime-secs")?
                    .parse()
                    .map_err(|e| format!("--access-lifetime-secs: {e}"))?;
                cfg.access_token_lifetime = Duration::from_secs(secs);
            }
            "--responses-text" => cfg.responses_text = value("--responses-text")?,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(cfg)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cfg = match parse_args(std::env::args().skip(1)) {
        Ok(cfg) => cfg,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let fake = match FakeOpenAi::try_start(cfg).await {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-openai: cannot listen: {e}");
            return ExitCode::from(1);
        }
    };
    let mut stdout = std::io::stdout().lock();
    // The one line a parent process waits for; flushed, since stdout is a pipe there.
    if writeln!(stdout, "{}", fake.base_url())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::from(1);
    }
    drop(stdout);
    tracing::info!("fake-openai listening on {}", fake.base_url());
    let _ = tokio::signal::ctrl_c().await;
    drop(fake);
    ExitCode::SUCCESS
}
