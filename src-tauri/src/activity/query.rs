//! Reading the log: the request table (filtered, newest first, paged by id), totals and
//! per-bucket series for the charts, and the usage history. Labels are the caller's to join
//! (the log keeps account ids only: a rename shows everywhere at once).

use rusqlite::{params_from_iter, types::Value, Connection};
use serde::{Deserialize, Serialize};

/// Which requests. Every field narrows; none set is everything.
#[derive(Debug, Clone, Default, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Filter {
    #[ts(type = "number | null")]
    pub since_ms: Option<i64>,
    #[ts(type = "number | null")]
    pub until_ms: Option<i64>,
    pub account_id: Option<String>,
    pub model: Option<String>,
    pub status: Option<u16>,
    /// Only rows with an id below this (the next page of a newest-first listing).
    #[ts(type = "number | null")]
    pub before_id: Option<i64>,
}

/// One logged request, as the CLI prints it and the Activity page shows it.
#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct RequestRow {
    #[ts(type = "number")]
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    #[ts(type = "number")]
    pub at_ms: i64,
    pub route: String,
    pub model: Option<String>,
    pub account_id: Option<String>,
    pub account_label: Option<String>,
    pub conversation: Option<String>,
    pub status: u16,
    pub outcome: String,
    pub latency_ms: f64,
    pub ttfb_ms: Option<f64>,
    #[ts(type = "number | null")]
    pub input_tokens: Option<i64>,
    #[ts(type = "number | null")]
    pub cached_tokens: Option<i64>,
    #[ts(type = "number | null")]
    pub output_tokens: Option<i64>,
    #[ts(type = "number | null")]
    pub reasoning_tokens: Option<i64>,
}

/// Requests and tokens of one group (an account, a model, a time bucket).
#[derive(Debug, Clone, Default, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct Totals {
    /// The account id, model, or bucket start (ms, as a string) this row sums.
    pub key: Option<String>,
    /// For hour and day buckets: the account id within the bucket.
    pub sub: Option<String>,
    /// The account's label, where `key` (or `sub`) is an account (filled by `report`).
    pub label: Option<String>,
    #[ts(type = "number")]
    pub requests: i64,
    #[ts(type = "number")]
    pub failed: i64,
    #[ts(type = "number")]
    pub input_tokens: i64,
    #[ts(type = "number")]
    pub cached_tokens: i64,
    #[ts(type = "number")]
    pub output_tokens: i64,
    #[ts(type = "number")]
    pub reasoning_tokens: i64,
}

/// One usage sample of one account.
#[derive(Debug, Clone, Serialize, PartialEq, ts_rs::TS)]
#[ts(export)]
pub struct UsagePoint {
    pub account_id: String,
    #[ts(type = "number")]
    pub at_ms: i64,
    pub primary_used: Option<f64>,
    #[ts(type = "number | null")]
    pub primary_resets_at: Option<i64>,
    pub secondary_used: Option<f64>,
    #[ts(type = "number | null")]
    pub secondary_resets_at: Option<i64>,
}

/// Which column a totals query groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum GroupBy {
    Account,
    Model,
    /// Buckets of an hour (start of the bucket, ms), with the account as `sub`.
    Hour,
    Day,
}

fn where_clause(f: &Filter) -> (String, Vec<Value>) {
    let mut conds: Vec<&str> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(v) = f.since_ms {
        conds.push("at_ms >= ?");
        args.push(v.into());
    }
    if let Some(v) = f.until_ms {
        conds.push("at_ms < ?");
        args.push(v.into());
    }
    if let Some(v) = &f.account_id {
        conds.push("account_id = ?");
        args.push(v.clone().into());
    }
    if let Some(v) = &f.model {
        conds.push("model = ?");
        args.push(v.clone().into());
    }
    if let Some(v) = f.status {
        conds.push("status = ?");
        args.push(i64::from(v).into());
    }
    if let Some(v) = f.before_id {
        conds.push("id < ?");
        args.push(v.into());
    }
    if conds.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), args)
    }
}

/// Newest first, at most `limit` rows.
pub fn requests(conn: &Connection, f: &Filter, limit: usize) -> rusqlite::Result<Vec<RequestRow>> {
    let (w, mut args) = where_clause(f);
    args.push((limit as i64).into());
    let sql = format!(
        "SELECT id, at_ms, route, model, account_id, conversation, status, outcome, latency_us,
                ttfb_us, input_tokens, cached_tokens, output_tokens, reasoning_tokens
         FROM requests{w} ORDER BY id DESC LIMIT ?"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        let at_ms: i64 = r.get(1)?;
        Ok(RequestRow {
            id: r.get(0)?,
            at: crate::account::ms_to_rfc3339(at_ms),
            at_ms,
            route: r.get(2)?,
            model: r.get(3)?,
            account_id: r.get(4)?,
            account_label: None,
            conversation: r.get(5)?,
            status: r.get(6)?,
            outcome: r.get(7)?,
            latency_ms: r.get::<_, i64>(8)? as f64 / 1000.0,
            ttfb_ms: r.get::<_, Option<i64>>(9)?.map(|v| v as f64 / 1000.0),
            input_tokens: r.get(10)?,
            cached_tokens: r.get(11)?,
            output_tokens: r.get(12)?,
            reasoning_tokens: r.get(13)?,
        })
    })?;
    rows.collect()
}

/// How many requests match.
pub fn count(conn: &Connection, f: &Filter) -> rusqlite::Result<i64> {
    let (w, args) = where_clause(f);
    conn.query_row(
        &format!("SELECT count(*) FROM requests{w}"),
        params_from_iter(args),
        |r| r.get(0),
    )
}

/// Sums per group, ordered by key; for `Hour`/`Day` the key is the bucket's start (ms) and
/// `sub` the account.
pub fn totals(conn: &Connection, f: &Filter, by: GroupBy) -> rusqlite::Result<Vec<Totals>> {
    let (w, args) = where_clause(f);
    let (key, sub) = match by {
        GroupBy::Account => ("account_id", "NULL"),
        GroupBy::Model => ("model", "NULL"),
        GroupBy::Hour => ("CAST((at_ms / 3600000) * 3600000 AS TEXT)", "account_id"),
        GroupBy::Day => ("CAST((at_ms / 86400000) * 86400000 AS TEXT)", "account_id"),
    };
    let sql = format!(
        "SELECT {key} AS k, {sub} AS s, count(*),
                sum(outcome IN ('upstream_error', 'no_account', 'rejected', 'rate_limited')),
                coalesce(sum(input_tokens), 0), coalesce(sum(cached_tokens), 0),
                coalesce(sum(output_tokens), 0), coalesce(sum(reasoning_tokens), 0)
         FROM requests{w} GROUP BY k, s ORDER BY k"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok(Totals {
            key: r.get(0)?,
            sub: r.get(1)?,
            label: None,
            requests: r.get(2)?,
            failed: r.get(3)?,
            input_tokens: r.get(4)?,
            cached_tokens: r.get(5)?,
            output_tokens: r.get(6)?,
            reasoning_tokens: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// Every account's samples since `since_ms`, oldest first.
pub fn usage_history(conn: &Connection, since_ms: i64) -> rusqlite::Result<Vec<UsagePoint>> {
    let mut stmt = conn.prepare(
        "SELECT account_id, at_ms, primary_used, primary_resets_at, secondary_used,
                secondary_resets_at
         FROM usage_samples WHERE at_ms >= ?1 ORDER BY at_ms",
    )?;
    let rows = stmt.query_map([since_ms], |r| {
        Ok(UsagePoint {
            account_id: r.get(0)?,
            at_ms: r.get(1)?,
            primary_used: r.get(2)?,
            primary_resets_at: r.get(3)?,
            secondary_used: r.get(4)?,
            secondary_resets_at: r.get(5)?,
        })
    })?;
    rows.collect()
}
