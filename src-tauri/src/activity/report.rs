//! What the CLI's `activity` and `usage` print and the app's Activity page shows: log rows with
//! their accounts' labels, and per-account usage (current windows from the accounts store, totals
//! from the log). Labels are joined here, at read time: a rename shows on old rows too.

use super::ActivityError;
use crate::account::usage::{UsageSnapshot, UsageWindow};
use crate::account::{now_ms, Account};
use crate::store::activity::open_read;
use crate::store::activity::query::{self, Filter, GroupBy, RequestRow, Totals};
use crate::store::activity::LogConn;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

const HOUR_MS: i64 = 3600 * 1000;

/// Newest first, at most `limit`, labels filled in.
pub fn requests(
    data_dir: &Path,
    accounts: &[Account],
    filter: &Filter,
    limit: usize,
) -> Result<Vec<RequestRow>, ActivityError> {
    let Some(conn) = open_read(data_dir)? else {
        return Ok(Vec::new());
    };
    labelled_requests(&conn, &labels(accounts), filter, limit)
}

fn labels(accounts: &[Account]) -> HashMap<&str, &str> {
    accounts
        .iter()
        .map(|a| (a.id.as_str(), a.label.as_str()))
        .collect()
}

fn labelled_requests(
    conn: &LogConn,
    labels: &HashMap<&str, &str>,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<RequestRow>, ActivityError> {
    let mut rows = query::requests(conn, filter, limit)?;
    for r in &mut rows {
        r.account_label = r
            .account_id
            .as_deref()
            .and_then(|id| labels.get(id))
            .map(|l| l.to_string());
    }
    Ok(rows)
}

/// A page of the request table and how many rows the filter matches in all.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct ActivityPage {
    pub rows: Vec<RequestRow>,
    #[ts(type = "number")]
    pub total: i64,
}

pub fn page(
    data_dir: &Path,
    accounts: &[Account],
    filter: &Filter,
    limit: usize,
) -> Result<ActivityPage, ActivityError> {
    // One connection for both reads: opening the file twice per page cost more than the query.
    let Some(conn) = open_read(data_dir)? else {
        return Ok(ActivityPage {
            rows: Vec::new(),
            total: 0,
        });
    };
    let rows = labelled_requests(&conn, &labels(accounts), filter, limit)?;
    let total = query::count(
        &conn,
        &Filter {
            before_id: None,
            ..filter.clone()
        },
    )?;
    Ok(ActivityPage { rows, total })
}

/// Totals per account, model or time bucket, account labels filled in.
pub fn totals(
    data_dir: &Path,
    accounts: &[Account],
    filter: &Filter,
    by: GroupBy,
) -> Result<Vec<Totals>, ActivityError> {
    let Some(conn) = open_read(data_dir)? else {
        return Ok(Vec::new());
    };
    let label = |id: Option<&str>| {
        accounts
            .iter()
            .find(|a| Some(a.id.as_str()) == id)
            .map(|a| a.label.clone())
    };
    let mut rows = query::totals(&conn, filter, by)?;
    for t in &mut rows {
        t.label = match by {
            GroupBy::Account => label(t.key.as_deref()),
            GroupBy::Hour | GroupBy::Day => label(t.sub.as_deref()),
            GroupBy::Model => None,
        };
    }
    Ok(rows)
}

pub fn usage_history(
    data_dir: &Path,
    since_ms: i64,
) -> Result<Vec<query::UsagePoint>, ActivityError> {
    match open_read(data_dir)? {
        Some(conn) => Ok(query::usage_history(&conn, since_ms)?),
        None => Ok(Vec::new()),
    }
}

/// The filtered table as CSV (newest first, read in pages: a million rows never sit in memory
/// at once), written 0600 to `out`; returns how many rows.
pub fn export_csv(
    data_dir: &Path,
    accounts: &[Account],
    filter: &Filter,
    out: &Path,
) -> Result<usize, ActivityError> {
    use std::io::Write;
    const PAGE: usize = 10_000;
    let io = |e: std::io::Error| ActivityError::Open {
        path: out.display().to_string(),
        detail: e.to_string(),
    };
    let file = {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        o.open(out).map_err(io)?
    };
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "{}", CSV_HEADER).map_err(io)?;
    let mut f = filter.clone();
    let mut n = 0;
    let conn = open_read(data_dir)?;
    let labels = labels(accounts);
    while let Some(conn) = conn.as_ref() {
        let rows = labelled_requests(conn, &labels, &f, PAGE)?;
        for r in &rows {
            writeln!(w, "{}", csv_line(r)).map_err(io)?;
        }
        n += rows.len();
        match rows.last() {
            Some(last) if rows.len() == PAGE => f.before_id = Some(last.id),
            _ => break,
        }
    }
    w.flush().map_err(io)?;
    Ok(n)
}

const CSV_HEADER: &str = "at,route,model,account_id,account_label,status,outcome,latency_ms,ttfb_ms,input_tokens,cached_tokens,output_tokens,reasoning_tokens";

fn csv_field(s: &str) -> String {
    // Quoted when needed (RFC 4180); a leading formula character is neutralised so a
    // spreadsheet never runs a label as a formula.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv_line(r: &RequestRow) -> String {
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    [
        csv_field(&r.at),
        csv_field(&r.route),
        csv_field(r.model.as_deref().unwrap_or("")),
        csv_field(r.account_id.as_deref().unwrap_or("")),
        csv_field(r.account_label.as_deref().unwrap_or("")),
        r.status.to_string(),
        csv_field(&r.outcome),
        format!("{:.3}", r.latency_ms),
        r.ttfb_ms.map(|v| format!("{v:.3}")).unwrap_or_default(),
        opt(r.input_tokens),
        opt(r.cached_tokens),
        opt(r.output_tokens),
        opt(r.reasoning_tokens),
    ]
    .join(",")
}

/// One account's current windows and what it served.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct AccountUsage {
    pub account_id: String,
    pub label: String,
    pub status: String,
    pub primary: Option<UsageWindow>,
    pub secondary: Option<UsageWindow>,
    /// When the windows were read (RFC 3339); `None`: never.
    pub usage_updated_at: Option<String>,
    /// The last poll was refused: the figures may be old.
    pub stale: bool,
    pub last_24h: Totals,
    pub last_7d: Totals,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct UsageReport {
    pub accounts: Vec<AccountUsage>,
}

pub fn usage(data_dir: &Path, accounts: &[Account]) -> Result<UsageReport, ActivityError> {
    let now = now_ms();
    let conn = open_read(data_dir)?;
    let per_account = |since: i64| -> Result<HashMap<String, Totals>, ActivityError> {
        let Some(conn) = &conn else {
            return Ok(HashMap::new());
        };
        let f = Filter {
            since_ms: Some(since),
            ..Filter::default()
        };
        Ok(query::totals(conn, &f, GroupBy::Account)?
            .into_iter()
            .filter_map(|t| Some((t.key.clone()?, t)))
            .collect())
    };
    let day = per_account(now - 24 * HOUR_MS)?;
    let week = per_account(now - 7 * 24 * HOUR_MS)?;
    let out = accounts
        .iter()
        .map(|a| {
            let snap: Option<UsageSnapshot> = a
                .usage_json
                .as_deref()
                .and_then(|j| serde_json::from_str(j).ok());
            AccountUsage {
                account_id: a.id.clone(),
                label: a.label.clone(),
                status: a.view(now).status.as_str().to_string(),
                primary: snap.as_ref().and_then(|s| s.primary.clone()),
                secondary: snap.as_ref().and_then(|s| s.secondary.clone()),
                usage_updated_at: snap.as_ref().map(|s| s.updated_at.clone()),
                stale: snap.as_ref().is_some_and(|s| s.stale),
                last_24h: day.get(&a.id).cloned().unwrap_or_default(),
                last_7d: week.get(&a.id).cloned().unwrap_or_default(),
            }
        })
        .collect();
    Ok(UsageReport { accounts: out })
}

/// `30s`, `15m`, `1h`, `2d`, `1w` as milliseconds.
pub fn parse_span(s: &str) -> Option<i64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    let ms = match unit {
        "s" => 1000,
        "m" => 60 * 1000,
        "h" => HOUR_MS,
        "d" => 24 * HOUR_MS,
        "w" => 7 * 24 * HOUR_MS,
        _ => return None,
    };
    n.checked_mul(ms)
}

#[cfg(test)]
mod tests {
    use super::{csv_field, parse_span};

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field("work"), "work");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
    }

    #[test]
    fn spans_read_each_unit_and_refuse_the_rest() {
        assert_eq!(parse_span("30s"), Some(30_000));
        assert_eq!(parse_span("15m"), Some(900_000));
        assert_eq!(parse_span("1h"), Some(3_600_000));
        assert_eq!(parse_span("2d"), Some(172_800_000));
        assert_eq!(parse_span("1w"), Some(604_800_000));
        assert_eq!(parse_span("1"), None);
        assert_eq!(parse_span("h"), None);
        assert_eq!(parse_span("1y"), None);
        assert_eq!(parse_span("-1h"), None);
    }
}
