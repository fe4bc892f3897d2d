//! The headless faces: subcommands per docs/cli.md. Each parses, calls the service,
//! prints; errors are mapped to a message and an exit code in one place (`run`).

use crate::accounts::Service;
use crate::error::{AppError, ConfigError};
use crate::oauth::auth_json::{self, AuthSource};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

mod activity;
mod backup;
mod connect;
mod import;
mod login;
mod quota;

pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_TERMINAL: u8 = 3;

/// Shown after every `--help`: what the environment changes and what the exit status means.
const AFTER_HELP: &str = "\
Environment:
  CODEX_VAULT_HOME            Data directory (default: the platform's data dir + codex-vault,
                              ~/.local/share/codex-vault on Linux)
  CODEX_VAULT_KEY_STORE       `keychain` (default: the data key in the OS keychain) or `file`
                              (a 0600 key file in the data directory, for machines without one)
  CODEX_HOME                  The Codex CLI's home (default ~/.codex): `accounts import` reads
                              its auth.json
  CODEX_VAULT_NO_BROWSER      1/true/yes: `accounts login` prints the URL without opening a
                              browser (0/false/no: it opens one, the default)
  CODEX_VAULT_CALLBACK_PORTS  Ports the sign-in callback tries, in order (default 1455,1457;
                              0 = any free port)
  CODEX_VAULT_AUTH_BASE       The OAuth issuer (default https://auth.openai.com; for tests)
  CODEX_VAULT_UPSTREAM        The ChatGPT backend the endpoint forwards to (for tests)
  RUST_LOG                    Log filter, e.g. `info` or `codex_vault=debug` (stderr: default
                              warn; serve's and the app's log file in <data dir>/logs: info)

Exit status:
  0  success
  1  an error, printed as `error: <message> [<code>]`
  2  a usage error (unknown option, invalid value)
  3  an account needs a new sign-in (`codex-vault accounts login`)";

#[derive(Debug, Parser)]
#[command(
    name = "codex-vault",
    version,
    about = "Holds many ChatGPT/Codex sign-ins, keeps them fresh, serves them to local tools.",
    long_about = "Holds many ChatGPT/Codex sign-ins, keeps them fresh, serves them to local tools.\n\n\
        Without a subcommand it starts the desktop app. Every face (app, `serve`, the subcommands) \
        shares one data directory and may run at the same time.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Started by the desktop session's autostart entry: open in the tray, not as a window.
    #[arg(long, hide = true)]
    pub autostarted: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the accounts in the vault.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Run headless: keep tokens fresh and serve the loopback endpoint (logs to stderr and
    /// <data dir>/logs).
    Serve {
        /// Port on 127.0.0.1 (default: the `endpoint.port` setting, else 8417; 0 = any free port).
        #[arg(long)]
        port: Option<u16>,
    },
    /// The loopback endpoint: its URL, key and a ready Codex CLI configuration.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// What to send when asking for help: versions, OS, key store, settings, account states,
    /// the endpoint and the last warnings and errors (no token, key or email).
    Diagnostics {
        /// Print it as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The request log: newest first (`--json`: `{"requests": [...]}`).
    Activity {
        /// Only requests this recent: 30s, 15m, 1h, 2d, 1w.
        #[arg(long, value_name = "SPAN")]
        since: Option<String>,
        /// Only this account's requests (its id, label or email).
        #[arg(long, value_name = "ID|LABEL")]
        account: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Each account's current 5 h / weekly windows and what it served (last 24 h, 7 days).
    Usage {
        #[arg(long)]
        json: bool,
    },
    /// Point a client at the endpoint (`connect codex`: the Codex CLI's config.toml).
    #[command(subcommand)]
    Connect(connect::ConnectCommand),
    /// Undo `connect` (`disconnect codex`).
    #[command(subcommand)]
    Disconnect(connect::DisconnectCommand),
    /// Write an encrypted backup of the whole vault: accounts, labels, history, settings
    /// (asks for a passphrase; README § Backup and restore).
    Backup(backup::BackupArgs),
    /// Restore an encrypted backup; restored accounts stay paused until you confirm the other
    /// copy is retired (`accounts confirm-restored`).
    Restore(backup::RestoreArgs),
    /// Print a valid access token of an account (refreshing it if needed).
    Token {
        /// The account: its id, label or email.
        #[arg(value_name = "ID|LABEL")]
        account: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// URL, local key, and the config.toml snippet for the stock Codex CLI.
    Info {
        /// Print it as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Replace the local API key (clients using the old one get 401).
    RotateKey,
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// List the accounts (one object per account with --json).
    List {
        /// Print a JSON array, one object per account.
        #[arg(long)]
        json: bool,
    },
    /// Import sign-ins: a Codex CLI auth.json (default: $CODEX_HOME/auth.json, else
    /// ~/.codex/auth.json; `-` reads stdin), or several files and folders in any mix of the
    /// formats other tools write (README § Bulk import), a line per sign-in.
    Import {
        /// Files or folders (a folder's files are read); `-` reads standard input.
        #[arg(value_name = "PATH")]
        paths: Vec<String>,
        /// Print what each sign-in would do, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The new account's label (default: from its email). A sign-in already held keeps its
        /// label: an import never renames (see `accounts rename`).
        #[arg(long)]
        label: Option<String>,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
        /// Who keeps a live Codex CLI auth.json after the import: `broker` (the CLI keeps its
        /// file and refreshes through Codex Vault; prints the env line to add) or `detach` (the
        /// file is moved aside to a dated 0600 backup; nothing is revoked). Default: `broker`
        /// when importing the Codex CLI's own auth.json ($CODEX_HOME or ~/.codex), else the
        /// file is left alone.
        #[arg(long, value_enum, value_name = "broker|detach")]
        codex_cli: Option<crate::accounts::ownership::Ownership>,
    },
    /// Sign in with ChatGPT in the browser (PKCE); prints the URL too.
    Login {
        /// The label of the account, if the sign-in adds one (default: from its email). An
        /// account already held keeps its label.
        #[arg(long)]
        label: Option<String>,
        /// Do not try to open a browser; just print the URL (the variable takes 1, true or yes;
        /// 0, false or no; any case).
        #[arg(
            long,
            env = "CODEX_VAULT_NO_BROWSER",
            value_parser = parse_switch,
            hide_env_values = true
        )]
        no_browser: bool,
        /// Give up after this many seconds (browser sign-in; `--device` waits until its code expires).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Sign in with a code typed on any device (prints the code and the URL); no callback.
        #[arg(long, conflicts_with = "paste")]
        device: bool,
        /// The browser is on another machine: print the URL, then read the callback address it
        /// was sent to (`http://localhost:1455/auth/callback?code=…&state=…`) from stdin.
        #[arg(long)]
        paste: bool,
    },
    /// Refresh an account's tokens now.
    Refresh {
        /// The account: its id, label or email.
        #[arg(value_name = "ID|LABEL")]
        account: String,
    },
    /// Remove an account (its history is kept).
    Remove {
        /// The account: its id, label or email.
        #[arg(value_name = "ID|LABEL")]
        account: String,
    },
    /// Spend one reset credit of an account (lifts its usage limit); asks for --yes first.
    RedeemReset(quota::RedeemArgs),
    /// A restored account may refresh and serve: its other copy (the machine the backup came
    /// from) no longer refreshes it.
    ConfirmRestored {
        /// The accounts: id, label or email.
        #[arg(value_name = "ID|LABEL", required = true)]
        accounts: Vec<String>,
    },
    /// Give an account a new label.
    Rename {
        /// The account: its id, label or email.
        #[arg(value_name = "ID|LABEL")]
        account: String,
        /// Its new label (at most 64 characters, unique).
        #[arg(value_name = "NEW_LABEL")]
        label: String,
    },
}

/// A yes/no switch from the command line or the environment: `1`/`true`/`yes` or
/// `0`/`false`/`no`, in any case. Anything else is an error naming what is accepted.
pub fn parse_switch(value: &str) -> Result<bool, String> {
    crate::oauth::login::parse_switch(value)
}

/// Runs a parsed subcommand; prints the error (code + message, never a token) on failure.
pub fn run(command: Command) -> ExitCode {
    match dispatch(command) {
        Ok(code) => code,
        Err(AppError::Refresh(crate::refresh::RefreshError::Terminal { account, reason })) => {
            eprintln!(
                "error: account {account} needs sign-in: {} ({}{}, since {}) [{}]",
                reason.message,
                reason.code,
                reason
                    .http_status
                    .map(|s| format!(", HTTP {s}"))
                    .unwrap_or_default(),
                crate::account::ms_to_rfc3339(reason.at),
                reason.code
            );
            ExitCode::from(EXIT_TERMINAL)
        }
        Err(e) => {
            eprintln!("error: {e} [{}]", e.code());
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode, AppError> {
    match command {
        Command::Accounts(AccountsCommand::List { json }) => list(json),
        Command::Accounts(AccountsCommand::Import {
            paths,
            dry_run,
            label,
            json,
            codex_cli,
        }) => match import::single(&paths, dry_run) {
            Some(path) => import(path, label, json, codex_cli),
            None => import::bulk(&paths, dry_run, label.is_some(), json, codex_cli),
        },
        Command::Accounts(AccountsCommand::Login {
            label,
            no_browser,
            timeout,
            device,
            paste,
        }) => login::login(label, login::way(no_browser, device, paste), timeout),
        Command::Token { account } => token(&account),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::Accounts(AccountsCommand::ConfirmRestored { accounts }) => {
            backup::confirm(&accounts)
        }
        Command::Diagnostics { json } => diagnostics(json),
        Command::Activity {
            since,
            account,
            limit,
            json,
        } => activity::activity(since.as_deref(), account.as_deref(), limit, json),
        Command::Usage { json } => activity::usage(json),
        Command::Serve { port } => crate::serve::run(port),
        Command::Endpoint(EndpointCommand::Info { json }) => endpoint_info(json),
        Command::Endpoint(EndpointCommand::RotateKey) => connect::rotate_key(),
        Command::Connect(c) => connect::connect(c),
        Command::Disconnect(c) => connect::disconnect(c),
        Command::Accounts(AccountsCommand::Refresh { account }) => refresh_now(&account),
        Command::Accounts(AccountsCommand::RedeemReset(args)) => quota::redeem_reset(args),
        Command::Accounts(AccountsCommand::Remove { account }) => {
            let service = Service::open_default()?;
            let removed = service.remove(&account)?;
            println!("Removed account {} ({}).", removed.label, removed.id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Accounts(AccountsCommand::Rename { account, label }) => {
            let service = Service::open_default()?;
            let before = service.store().find_account(&account)?.label;
            let renamed = service.rename(&account, &label)?;
            println!(
                "Renamed account {before} to {} ({}).",
                renamed.label, renamed.id
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn warn_key_store(service: &Service) {
    if let Some(w) = service.info().warning {
        eprintln!("warning: {w}");
    }
}

fn list(json: bool) -> Result<ExitCode, AppError> {
    let service = Service::open_default()?;
    warn_key_store(&service);
    let accounts = service.list()?;
    let mut out = std::io::stdout().lock();
    if json {
        // Serialising plain data into a String cannot fail.
        let text = serde_json::to_string_pretty(&accounts).expect("AccountView serialises");
        let _ = writeln!(out, "{text}");
        return Ok(ExitCode::SUCCESS);
    }
    if accounts.is_empty() {
        let _ = writeln!(
            out,
            "No accounts yet. Add one with `codex-vault accounts import` (reads ~/.codex/auth.json)."
        );
        return Ok(ExitCode::SUCCESS);
    }
    for a in &accounts {
        let mut reason = a
            .failure
            .as_ref()
            .map(|f| format!("  [{}] {}", f.code, f.message))
            .unwrap_or_default();
        if let Some(h) = &a.held_rotation {
            reason.push_str(&format!(
                "  [held in memory by pid {}, {} tries: {}] {}",
                h.pid, h.attempts, h.last_error, h.message
            ));
        }
        if let Some(place) = a.shared_grant_where.as_deref().filter(|_| a.shared_grant) {
            reason.push_str(&format!(
                "  [shared grant: {place}] {}",
                crate::account::SHARED_GRANT_ADVICE
            ));
        }
        if let Some(at) = &a.restored_at {
            reason.push_str(&format!(
                "  [restored {at}: paused until you confirm the other copy is retired: `codex-vault accounts confirm-restored {}`]",
                a.label
            ));
        }
        if a.brokered {
            reason.push_str(&match a.broker_holder_seen_at.as_deref() {
                Some(at) => format!("  [brokered: holder last came through {at}]"),
                None => "  [brokered: holder not seen yet]".to_string(),
            });
        }
        let _ = writeln!(
            out,
            "{:<20} {:<32} {:<10} {:<12} {}{}",
            a.label,
            a.email.as_deref().unwrap_or("-"),
            a.plan.as_deref().unwrap_or("-"),
            a.status.as_str(),
            a.id,
            reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn import(
    path: Option<String>,
    label: Option<String>,
    json: bool,
    codex_cli: Option<crate::accounts::ownership::Ownership>,
) -> Result<ExitCode, AppError> {
    use crate::accounts::ownership::{is_visible_codex_auth, Ownership};
    // Parse and validate before the store is opened: a bad file changes nothing on disk.
    let (source, cred) = read_import_source(path.as_deref())?;
    if let Some(l) = &label {
        crate::accounts::validate_label(l)?;
    }
    let file = match &source {
        AuthSource::File(p) => Some(p.clone()),
        _ => None,
    };
    if codex_cli.is_some() && file.is_none() {
        return Err(ConfigError::CodexCliNeedsFile.into());
    }
    // The Codex CLI's own live file defaults to broker: non-destructive, and the CLI stops
    // racing the vault as soon as the env line is set. Other files are left alone unless asked.
    let ownership = codex_cli.or_else(|| {
        file.as_deref()
            .filter(|p| is_visible_codex_auth(p))
            .map(|_| Ownership::Broker)
    });
    let service = Service::open_default()?;
    warn_key_store(&service);
    let port = crate::endpoint::info::current_port(&service)?;
    let owned = service.import_owned(&cred, label.as_deref(), file.as_deref(), ownership, port)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&owned).expect("OwnedImport serialises")
        );
    } else {
        print_import(&owned);
    }
    Ok(ExitCode::SUCCESS)
}

/// The auth.json `accounts import` reads: the path given, stdin for `-`, else the Codex CLI's.
fn read_import_source(path: Option<&str>) -> Result<(AuthSource, auth_json::Credential), AppError> {
    let (source, bytes) = match path {
        Some("-") => (AuthSource::Stdin, auth_json::read_stdin()),
        Some(p) => {
            let p = PathBuf::from(p);
            (AuthSource::File(p.clone()), auth_json::read_file(&p))
        }
        None => {
            let home = crate::paths::codex_home().ok_or_else(|| {
                AppError::from(ConfigError::NoCodexHome("give the auth.json path"))
            })?;
            let p = home.join("auth.json");
            (AuthSource::File(p.clone()), auth_json::read_file(&p))
        }
    };
    let cred = bytes
        .and_then(|b| auth_json::parse(&b))
        .map_err(|error| AppError::AuthJson {
            origin: source.clone(),
            error,
        })?;
    Ok((source, cred))
}

/// What an import did, in words: the outcome, what became of the CLI's file, any shared grant.
fn print_import(owned: &crate::accounts::ownership::OwnedImport) {
    use crate::accounts::ownership::Ownership;
    println!("{}", owned.outcome.sentence());
    let account = owned.outcome.account();
    if let Some(r) = &owned.codex_cli {
        match r.mode {
            Ownership::Broker => {
                println!(
                    "The Codex CLI keeps {} and should refresh through Codex Vault: add this line to its environment (e.g. your shell profile):",
                    r.path
                );
                println!();
                println!("  {}", r.env.as_deref().unwrap_or_default());
                println!();
            }
            Ownership::Detach => println!(
                "Moved the Codex CLI's {} aside to {} (0600); nothing was revoked. Codex Vault alone holds this sign-in now.",
                r.path,
                r.backup.as_deref().unwrap_or_default()
            ),
        }
        eprintln!("warning: {}.", r.warning);
    }
    if account.shared_grant {
        eprintln!(
            "warning: this sign-in is also held elsewhere ({}): {}.",
            account
                .shared_grant_where
                .as_deref()
                .unwrap_or("another holder"),
            crate::account::SHARED_GRANT_ADVICE
        );
    }
}

fn diagnostics(json: bool) -> Result<ExitCode, AppError> {
    let service = Service::open_default()?;
    let report = crate::diagnostics::build(&service, None)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("Diagnostics serialises")
        );
    } else {
        print!("{}", crate::diagnostics::render_text(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn endpoint_info(json: bool) -> Result<ExitCode, AppError> {
    let service = Service::open_default()?;
    let info = crate::endpoint::info::info(&service)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info).expect("EndpointInfo serialises")
        );
        return Ok(ExitCode::SUCCESS);
    }
    match info.listeners.as_slice() {
        [one] => println!("Endpoint: running at {} (pid {})", one.url, one.pid),
        [] => println!(
            "Endpoint: not running (it will listen at {}; start it with `codex-vault serve` or the desktop app)",
            info.url
        ),
        many => {
            println!("Endpoint: {} processes serve this store:", many.len());
            for l in many {
                println!("  {} (pid {})", l.url, l.pid);
            }
        }
    }
    println!("Local API key: {}", info.key);
    println!();
    println!("Point the stock Codex CLI at it: add to $CODEX_HOME/config.toml (default ~/.codex/config.toml):");
    println!();
    println!("{}", info.config_toml);
    println!("and set the key in the CLI's environment:");
    println!();
    println!("  {}", info.env);
    println!();
    println!(
        "A Codex CLI signed in with its own ChatGPT account (an imported auth.json) should refresh"
    );
    println!("through Codex Vault, so the two never redeem the same refresh token: set in its environment");
    println!();
    println!("  {}", info.refresh_override_env);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, AppError> {
    crate::runtime::tokio_runtime()
}

fn token(reference: &str) -> Result<ExitCode, AppError> {
    let service = Service::open_default()?;
    let id = service.store().find_account(reference)?.id;
    let tm = service.token_manager();
    let token = runtime()?.block_on(async {
        // A refresh left unfinished by a crashed process is settled first (once).
        tm.recover_intents().await;
        let token = tm.access_token(&id).await;
        // A rotation whose commit failed is held in memory: give it its chance to land before
        // this process (its only holder) exits.
        crate::runtime::drain_refreshes(&tm).await;
        token
    })?;
    println!("{}", token.token.expose());
    Ok(ExitCode::SUCCESS)
}

fn refresh_now(reference: &str) -> Result<ExitCode, AppError> {
    let service = Service::open_default()?;
    let account = service.store().find_account(reference)?;
    let tm = service.token_manager();
    let token = runtime()?.block_on(async {
        let token = tm.force_refresh(&account.id, None).await;
        crate::runtime::drain_refreshes(&tm).await;
        token
    })?;
    println!(
        "Refreshed {}; the access token is valid until {}.",
        account.label,
        token
            .expires_at
            .map(crate::account::ms_to_rfc3339)
            .unwrap_or_else(|| "an unknown time".into())
    );
    Ok(ExitCode::SUCCESS)
}
