//! `accounts import` with several files, a folder, or another tool's format: the bulk import, a
//! line per sign-in, then a summary. One Codex auth.json (or stdin, or none: the Codex CLI's own)
//! keeps the single import and its words.

use crate::accounts::bulk::{self, BulkAction, BulkItem, BulkPlan};
use crate::accounts::ownership::Ownership;
use crate::accounts::Service;
use crate::error::{AppError, ConfigError};
use crate::oauth::peer_formats::{self, PeerFormat};
use std::path::PathBuf;
use std::process::ExitCode;

/// `Some(path)` when this is the single import: no path, `-`, or one file that is a Codex
/// auth.json (anything else a single file may be — an export of many — is bulk). `--dry-run`
/// is always bulk: the single import has no preview of its own on the command line.
pub(super) fn single(paths: &[String], dry_run: bool) -> Option<Option<String>> {
    if dry_run {
        return None;
    }
    match paths {
        [] => Some(None),
        [one] if one == "-" => Some(Some(one.clone())),
        [one] => {
            let p = PathBuf::from(one);
            let codex = crate::oauth::auth_json::read_file(&p)
                .ok()
                .and_then(|b| peer_formats::read(&b).ok())
                .is_none_or(|(format, _)| format == PeerFormat::CodexAuthJson);
            // Unreadable or unknown: the single import's own error message says why.
            (codex && !p.is_dir()).then(|| Some(one.clone()))
        }
        _ => None,
    }
}

pub(super) fn bulk(
    paths: &[String],
    dry_run: bool,
    label: bool,
    json: bool,
    codex_cli: Option<Ownership>,
) -> Result<ExitCode, AppError> {
    if label {
        return Err(ConfigError::LabelWithBulk.into());
    }
    if paths.iter().any(|p| p == "-") {
        return Err(ConfigError::StdinWithBulk.into());
    }
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    let files = bulk::collect_files(&paths)?;
    let service = Service::open_default()?;
    let plan = if dry_run {
        service.bulk_preview(&files)?
    } else {
        let port = crate::endpoint::info::current_port(&service)?;
        service.bulk_import(&files, codex_cli, port, |_, _| {})?
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).expect("BulkPlan serialises")
        );
    } else {
        for item in &plan.items {
            println!("{}", line(item, dry_run));
        }
        println!("{}", summary(&plan, dry_run));
        eprintln!("note: {}", plan.note);
    }
    Ok(if plan.any_failed() {
        ExitCode::from(super::EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    })
}

fn who(item: &BulkItem) -> String {
    format!(
        "{} ({})",
        item.label.as_deref().unwrap_or("-"),
        item.email.as_deref().unwrap_or("no email")
    )
}

/// One sign-in: where it is, its format, and what it would do or did.
fn line(item: &BulkItem, dry_run: bool) -> String {
    let format = item.format.map(|f| f.name()).unwrap_or("unreadable");
    let what = match item.action {
        BulkAction::Invalid => format!(
            "invalid: {}",
            item.reason.as_deref().unwrap_or("not importable")
        ),
        BulkAction::Duplicate => format!(
            "duplicate {}: {}",
            who(item),
            item.reason.as_deref().unwrap_or("")
        ),
        _ if item.failed => format!(
            "failed: {}",
            item.result.as_deref().unwrap_or("not imported")
        ),
        _ if !dry_run => item.result.clone().unwrap_or_default(),
        BulkAction::New => format!("would add {}", who(item)),
        BulkAction::Update => format!("would update {} with these newer tokens", who(item)),
        BulkAction::KeptNewer => format!("would keep the newer tokens held for {}", who(item)),
    };
    let mut out = format!("{} [{format}]: {what}", item.place());
    if let Some(note) = &item.label_note {
        out.push_str(&format!(" ({note})"));
    }
    match (&item.codex_cli_note, item.codex_cli) {
        (Some(note), _) => out.push_str(&format!("\n  {note}")),
        (None, true) => out.push_str(
            " (the Codex CLI's own auth.json: importing it keeps the broker / detach choice)",
        ),
        _ => {}
    }
    out
}

fn summary(plan: &BulkPlan, dry_run: bool) -> String {
    let failed = plan.items.iter().filter(|i| i.failed).count();
    format!(
        "{} {} new, {} updated, {} kept newer; {} duplicate, {} invalid{}.",
        if dry_run {
            "Would import:"
        } else {
            "Imported:"
        },
        plan.count(BulkAction::New),
        plan.count(BulkAction::Update),
        plan.count(BulkAction::KeptNewer),
        plan.count(BulkAction::Duplicate),
        plan.count(BulkAction::Invalid),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    )
}
