//! `codex-vault backup FILE`, `restore FILE` and `accounts confirm-restored` (README.md § Backup
//! and restore). The passphrase comes from a prompt on the terminal (typed twice for a backup,
//! never echoed) or from `--passphrase-file` (its first line), never from an argument or the
//! environment, where other processes could read it.

use crate::accounts::restore::open_backup;
use crate::accounts::Service;
use crate::error::{AppError, BackupError};
use crate::secret::Secret;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the backup (replaced once the new one is whole; 0600).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Read the passphrase from this file's first line instead of asking on the terminal.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup to restore.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Read the passphrase from this file's first line instead of asking on the terminal.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn backup(args: BackupArgs) -> Result<ExitCode, AppError> {
    let passphrase = passphrase(args.passphrase_file.as_deref(), true)?;
    let service = Service::open_default()?;
    let s = service.write_backup(&args.file, &passphrase)?;
    println!(
        "Wrote an encrypted backup of {} account(s) and {} setting(s) to {}.",
        s.accounts, s.settings, s.path
    );
    if s.holders_left_behind > 0 {
        println!(
            "{} outside holder(s) hold a token older than the one before the current one: a restore will not know them.",
            s.holders_left_behind
        );
    }
    println!("Keep the passphrase: without it the backup cannot be opened.");
    Ok(ExitCode::SUCCESS)
}

pub fn restore(args: RestoreArgs) -> Result<ExitCode, AppError> {
    let passphrase = passphrase(args.passphrase_file.as_deref(), false)?;
    // Opened before the store: a wrong passphrase or a wrong file writes nothing, not even a
    // new empty store.
    let doc = open_backup(&args.file, &passphrase)?;
    let service = Service::open_default()?;
    let report = service.restore(&doc)?;
    if args.json {
        let text = serde_json::to_string_pretty(&report).expect("RestoreReport serialises");
        println!("{text}");
    } else {
        for line in report.lines() {
            println!("{line}");
        }
        println!("{}", report.warning);
        let paused = report.items.iter().any(|i| i.account.restored_at.is_some());
        if paused {
            println!("Then run `codex-vault accounts confirm-restored LABEL` for each (or Confirm on its card in the app).");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn confirm(accounts: &[String]) -> Result<ExitCode, AppError> {
    let service = Service::open_default()?;
    for reference in accounts {
        let before = service.store().find_account(reference)?;
        let after = service.confirm_restored(reference)?;
        if before.restored_at.is_some() {
            println!(
                "Confirmed {}: it refreshes and serves from now on.",
                after.label
            );
        } else {
            println!(
                "{} was not waiting for a confirmation; unchanged.",
                after.label
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn passphrase(file: Option<&Path>, new: bool) -> Result<Secret, AppError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            BackupError::Passphrase(format!(
                "cannot read the passphrase file {}: {e}",
                path.display()
            ))
        })?;
        let first = text.lines().next().unwrap_or_default();
        let pass = Secret::new(first);
        if pass.is_empty() {
            return Err(BackupError::Passphrase(format!(
                "the passphrase file {} is empty",
                path.display()
            ))
            .into());
        }
        return Ok(pass);
    }
    if !std::io::stdin().is_terminal() {
        return Err(BackupError::Passphrase(
            "no terminal to ask for the passphrase: give it with --passphrase-file FILE".into(),
        )
        .into());
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Secret::new)
            .map_err(|e| BackupError::Passphrase(format!("cannot read the passphrase: {e}")))
    };
    let pass = ask("Passphrase: ")?;
    if new {
        crate::backup::sealed::check_new_passphrase(&pass)?;
        if ask("Passphrase again: ")? != pass {
            return Err(BackupError::Passphrase(
                "the two passphrases differ; nothing was written".into(),
            )
            .into());
        }
    }
    Ok(pass)
}
