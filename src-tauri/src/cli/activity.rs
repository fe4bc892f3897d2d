//! `activity` and `usage`: the request log and each account's windows, for scripts and
//! headless machines.

use crate::error::AppError;
use std::io::Write;
use std::process::ExitCode;

/// Reads the accounts store without the keychain (labels and usage are not secret), so that
/// `activity` and `usage` work on a headless machine whose keychain is locked.
fn metadata() -> Result<(std::path::PathBuf, Vec<crate::account::Account>), AppError> {
    let dir = crate::paths::data_dir()?;
    let store = crate::store::Store::open(&dir)?;
    let accounts = store.list_accounts()?;
    Ok((dir, accounts))
}

pub(super) fn activity(
    since: Option<&str>,
    account: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<ExitCode, AppError> {
    use crate::activity::{query::Filter, report};
    let since_ms = match since {
        None => None,
        Some(s) => Some(
            crate::account::now_ms()
                - report::parse_span(s)
                    .ok_or_else(|| crate::error::ConfigError::Span(s.to_string()))?,
        ),
    };
    let (dir, accounts) = metadata()?;
    let account_id = match account {
        None => None,
        Some(a) => Some(crate::store::Store::open(&dir)?.find_account(a)?.id),
    };
    let filter = Filter {
        since_ms,
        account_id,
        ..Filter::default()
    };
    let rows = report::requests(&dir, &accounts, &filter, limit)?;
    let mut out = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({ "requests": rows });
        let _ = writeln!(out, "{doc:#}");
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        let _ = writeln!(out, "No requests logged yet.");
    }
    for r in &rows {
        let tokens = match (r.input_tokens, r.output_tokens) {
            (Some(i), Some(o)) => format!("{i} in / {o} out"),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "{}  {:<9} {:<14} {:<16} {:>3} {:<14} {:>8.1} ms  {}",
            r.at,
            r.route,
            r.model.as_deref().unwrap_or("-"),
            r.account_label
                .as_deref()
                .or(r.account_id.as_deref())
                .unwrap_or("-"),
            r.status,
            r.outcome,
            r.latency_ms,
            tokens
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn usage(json: bool) -> Result<ExitCode, AppError> {
    let (dir, accounts) = metadata()?;
    let report = crate::activity::report::usage(&dir, &accounts)?;
    let mut out = std::io::stdout().lock();
    if json {
        // Serialising plain data into a String cannot fail.
        let text = serde_json::to_string_pretty(&report).expect("UsageReport serialises");
        let _ = writeln!(out, "{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let window = |w: &Option<crate::account::usage::UsageWindow>| match w {
        Some(w) => format!(
            "{:>5.1}% (resets {})",
            w.used_percent,
            w.resets_at.as_deref().unwrap_or("?")
        ),
        None => "-".to_string(),
    };
    for a in &report.accounts {
        let _ = writeln!(
            out,
            "{:<20} {:<12} 5h {:<36} week {:<36} 24h {} req, {} tokens{}",
            a.label,
            a.status,
            window(&a.primary),
            window(&a.secondary),
            a.last_24h.requests,
            a.last_24h.input_tokens + a.last_24h.output_tokens,
            if a.stale { "  [stale]" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
