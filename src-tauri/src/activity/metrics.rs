//! `/metrics` for people who already run Prometheus: requests by route, status, outcome and
//! account; tokens by account and kind; failovers; refreshes by outcome; accounts by status; the
//! request log's drops. Through the `metrics` facade with the Prometheus exporter's recorder,
//! installed once per long-running process (`serve`, the app: `install`). Only counters and
//! gauges: they are atomics, so nothing needs upkeep and the exporter runs no timer; a scrape
//! renders them. In a process without the recorder (a CLI call) every count is a no-op.
//!
//! Account series are labelled with the account's label (what a user sees everywhere), never
//! its email or anything secret.

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process's recorder (first call; later calls return the same handle). `None`
/// when another recorder was installed first.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!("no /metrics: {e}");
                None
            }
        })
        .as_ref()
}

/// The text format, with the account gauges set from `statuses` (each account's status) first.
pub fn render(statuses: &[&'static str]) -> Option<String> {
    let handle = install()?;
    for s in crate::account::Status::ALL {
        let n = statuses.iter().filter(|x| **x == s.as_str()).count();
        gauge!("codex_vault_accounts", "status" => s.as_str()).set(n as f64);
    }
    Some(handle.render())
}

/// One finished request (the request log's record, as it is queued).
pub fn request(r: &super::Record, account_label: Option<&str>) {
    // One shared string for every series of this request: its clones are reference counts,
    // not copies of the label.
    let account = match account_label {
        Some(l) => metrics::SharedString::from_shared(std::sync::Arc::<str>::from(l)),
        None => metrics::SharedString::const_str("none"),
    };
    counter!(
        "codex_vault_requests_total",
        "route" => r.route.as_str(),
        "status" => status_label(r.status),
        "outcome" => r.outcome.as_str(),
        "account" => account.clone(),
    )
    .increment(1);
    if r.outcome == super::Outcome::FailedOver {
        counter!("codex_vault_failovers_total", "route" => r.route.as_str()).increment(1);
    }
    if let Some(t) = r.tokens {
        for (kind, n) in [
            ("input", t.input),
            ("cached", t.cached),
            ("output", t.output),
            ("reasoning", t.reasoning),
        ] {
            counter!("codex_vault_tokens_total", "account" => account.clone(), "kind" => kind)
                .increment(n);
        }
    }
}

/// The common statuses as static strings (no allocation a request); others formatted.
fn status_label(status: u16) -> metrics::SharedString {
    match status {
        200 => "200".into(),
        400 => "400".into(),
        401 => "401".into(),
        429 => "429".into(),
        500 => "500".into(),
        502 => "502".into(),
        503 => "503".into(),
        s => s.to_string().into(),
    }
}

/// One refresh POST's end (`rotated`, `transient`, `refused`), or what recovery made of a
/// refusal (`race_recovered`, `terminal`).
pub fn refresh(outcome: &'static str) {
    counter!("codex_vault_refreshes_total", "outcome" => outcome).increment(1);
}

/// A record the request log dropped (its queue was full) or could not write.
pub fn log_lost(why: &'static str) {
    counter!("codex_vault_activity_lost_total", "why" => why).increment(1);
}
