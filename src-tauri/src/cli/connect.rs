//! `connect codex` / `disconnect codex` (docs/cli.md): parse, call `crate::connect`, print.

use crate::accounts::Service;
use crate::connect::{self, ConnectOptions, KeyMode};
use crate::error::AppError;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ConnectCommand {
    /// Point the Codex CLI at the endpoint: writes the provider block into $CODEX_HOME/config.toml
    /// (a dated backup first; everything else in the file kept byte for byte). No environment
    /// variable needed.
    Codex(ConnectArgs),
}

#[derive(Debug, Subcommand)]
pub enum DisconnectCommand {
    /// Undo `connect codex`: the file restored byte for byte when nothing else changed it since,
    /// else only our block (and our `model_provider` / `chatgpt_base_url` lines) removed.
    Codex(DisconnectArgs),
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The Codex home holding config.toml (default: $CODEX_HOME, else ~/.codex).
    #[arg(long, value_name = "DIR")]
    pub codex_home: Option<PathBuf>,
    /// Also make Codex Vault the default provider (`model_provider = "codex-vault"`).
    #[arg(long)]
    pub make_default: bool,
    /// Also point `chatgpt_base_url` at the endpoint, so Codex's /status and status line read
    /// the pool's quota from it.
    #[arg(long)]
    pub status_routes: bool,
    /// A Codex that keeps its own ChatGPT sign-in refreshes through Codex Vault: prints
    /// CODEX_REFRESH_TOKEN_URL_OVERRIDE and, while Codex Vault starts at sign-in, writes it where
    /// GUI apps read their environment.
    #[arg(long)]
    pub broker: bool,
    /// How Codex gets the endpoint's key: `command` (Codex runs `cat` on a 0600 key file of
    /// ours; no secret in config.toml), `token` (the key in config.toml, made 0600) or `env`
    /// (you export CODEX_VAULT_KEY yourself).
    #[arg(long, value_enum, value_name = "command|token|env")]
    pub key: Option<KeyMode>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// The Codex home to disconnect (default: $CODEX_HOME, else ~/.codex).
    #[arg(long, value_name = "DIR")]
    pub codex_home: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

fn print_json(value: &impl serde::Serialize) {
    // Plain data: serialising it cannot fail.
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("report serialises")
    );
}

pub fn connect(command: ConnectCommand) -> Result<ExitCode, AppError> {
    let ConnectCommand::Codex(a) = command;
    let service = Service::open_default()?;
    let report = connect::connect(
        &service,
        &ConnectOptions {
            codex_home: a.codex_home,
            make_default: a.make_default,
            status_routes: a.status_routes,
            broker: a.broker,
            key: a.key.unwrap_or_else(KeyMode::default_for_platform),
        },
    )?;
    for w in &report.warnings {
        eprintln!("warning: {w}.");
    }
    if a.json {
        print_json(&report);
        return Ok(ExitCode::SUCCESS);
    }
    let c = &report.connection;
    if report.changed {
        println!(
            "Connected {} to Codex Vault at {}.",
            c.config_path, report.url
        );
    } else {
        println!(
            "{} already points at Codex Vault ({}); nothing changed.",
            c.config_path, report.url
        );
    }
    if let Some(b) = &c.backup {
        println!("Backup of your original file: {b}");
    }
    match c.key {
        KeyMode::Command => println!("Codex reads the key from a 0600 file of Codex Vault's: no environment variable needed."),
        KeyMode::Token => println!("The key is in config.toml (now 0600)."),
        KeyMode::Env => {
            println!("Codex reads the key from CODEX_VAULT_KEY: add to its environment (`codex-vault endpoint info` shows the key):");
            println!("  {}", report.env_line.as_deref().unwrap_or_default());
        }
    }
    if !c.make_default {
        println!(
            "Use it with `codex -c model_provider={}`, or connect again with --make-default.",
            connect::PROVIDER_ID
        );
    }
    if report.changed {
        println!("{}", report.restart.sentence());
    }
    if let Some(line) = &report.broker_env.line {
        println!("Refresh broker: {line}");
        println!("  {}", report.broker_env.note);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn disconnect(command: DisconnectCommand) -> Result<ExitCode, AppError> {
    let DisconnectCommand::Codex(a) = command;
    let service = Service::open_default()?;
    let report = connect::disconnect(&service, a.codex_home.as_deref())?;
    if a.json {
        print_json(&report);
        return Ok(ExitCode::SUCCESS);
    }
    use connect::DisconnectOutcome as O;
    match report.outcome {
        O::Restored => println!("Restored {} as it was before `connect` (byte for byte).", report.config_path),
        O::Removed => println!("Removed {} (Codex Vault had created it).", report.config_path),
        O::BlockRemoved => println!(
            "{} changed since Codex Vault wrote it: removed only Codex Vault's block and lines, kept the rest.",
            report.config_path
        ),
        O::Gone => println!("{} no longer exists; forgot the connection.", report.config_path),
    }
    if let Some(b) = &report.backup {
        println!("The backup stays at {b}.");
    }
    println!("{}", report.restart.sentence());
    Ok(ExitCode::SUCCESS)
}

/// `endpoint rotate-key`: the connected configs follow the new key.
pub fn rotate_key() -> Result<ExitCode, AppError> {
    let service = Service::open_default()?;
    let r = connect::rotate_key(&service)?;
    println!("Rotated the local API key; `codex-vault endpoint info` shows the new one.");
    if r.connections > 0 {
        println!(
            "{} connected Codex config(s) follow it ({} config file(s) rewritten, the key file replaced).",
            r.connections, r.configs_rewritten
        );
    }
    Ok(ExitCode::SUCCESS)
}
