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
    // With the recorder installed, the series' handles are looked up once per thread and kept:
    // building a labelled key and finding it in the registry was ≈ 3 % of a worker's CPU under
    // load (five series a request). Without it (a CLI call, or before `install`) the uncached
    // path returns no-op handles, which must not be kept.
    if HANDLE.get().is_some_and(Option::is_some) {
        MEMO.with(|m| m.borrow_mut().count(r, account_label));
    } else {
        count_uncached(r, account_label);
    }
}

fn count_uncached(r: &super::Record, account_label: Option<&str>) {
    let series = Series::of(account_label);
    series.request(r).increment(1);
    series.count_rest(r);
}

thread_local! {
    static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::new(Memo::default());
}

/// Series handles by account label (a label renamed or an account removed leaves its entry
/// behind until the memo is cleared at `MEMO_MAX` entries).
#[derive(Default)]
struct Memo {
    accounts: std::collections::HashMap<String, Series>,
    none: Option<Series>,
}

const MEMO_MAX: usize = 4096;

impl Memo {
    fn count(&mut self, r: &super::Record, account_label: Option<&str>) {
        let series = match account_label {
            None => self.none.get_or_insert_with(|| Series::of(None)),
            Some(l) => {
                if !self.accounts.contains_key(l) {
                    if self.accounts.len() >= MEMO_MAX {
                        self.accounts.clear();
                    }
                    self.accounts.insert(l.to_string(), Series::of(Some(l)));
                }
                // Inserted just above when missing.
                let Some(s) = self.accounts.get_mut(l) else {
                    return;
                };
                s
            }
        };
        let key = (r.route, r.status, r.outcome);
        let requests = match series.requests.iter().find(|(k, _)| *k == key) {
            Some((_, c)) => c.clone(),
            None => {
                let c = series.request(r);
                series.requests.push((key, c.clone()));
                c
            }
        };
        requests.increment(1);
        series.count_rest(r);
    }
}

/// One account's series, each made when first counted: its request counters by (route,
/// status, outcome) and its four token counters.
struct Series {
    account: metrics::SharedString,
    requests: Vec<((super::Route, u16, super::Outcome), metrics::Counter)>,
    tokens: std::cell::OnceCell<[metrics::Counter; 4]>,
}

impl Series {
    fn of(account_label: Option<&str>) -> Series {
        // One shared string for every series of this account: its clones are reference
        // counts, not copies of the label.
        let account = match account_label {
            Some(l) => metrics::SharedString::from_shared(std::sync::Arc::<str>::from(l)),
            None => metrics::SharedString::const_str("none"),
        };
        Series {
            account,
            requests: Vec::new(),
            tokens: std::cell::OnceCell::new(),
        }
    }

    fn request(&self, r: &super::Record) -> metrics::Counter {
        counter!(
            "codex_vault_requests_total",
            "route" => r.route.as_str(),
            "status" => status_label(r.status),
            "outcome" => r.outcome.as_str(),
            "account" => self.account.clone(),
        )
    }

    /// Everything but the request counter: a failover, the tokens.
    fn count_rest(&self, r: &super::Record) {
        if r.outcome == super::Outcome::FailedOver {
            counter!("codex_vault_failovers_total", "route" => r.route.as_str()).increment(1);
        }
        if let Some(t) = r.tokens {
            let tokens = self.tokens.get_or_init(|| {
                TOKEN_KINDS.map(|kind| {
                    counter!("codex_vault_tokens_total", "account" => self.account.clone(), "kind" => kind)
                })
            });
            for (c, n) in tokens
                .iter()
                .zip([t.input, t.cached, t.output, t.reasoning])
            {
                c.increment(n);
            }
        }
    }
}

const TOKEN_KINDS: [&str; 4] = ["input", "cached", "output", "reasoning"];

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

#[cfg(test)]
mod tests {
    use super::super::{Outcome, Record, Route, Tokens};
    use super::*;

    fn record(status: u16, outcome: Outcome, tokens: Option<Tokens>) -> Record {
        Record {
            at_ms: 0,
            route: Route::Responses,
            model: None,
            account_id: None,
            conversation: None,
            status,
            outcome,
            latency_us: 1,
            ttfb_us: None,
            tokens,
        }
    }

    /// The value of the one series whose line holds every `parts`.
    fn value(text: &str, parts: &[&str]) -> f64 {
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && parts.iter().all(|p| l.contains(p)))
            .collect();
        assert_eq!(lines.len(), 1, "one series for {parts:?} in\n{text}");
        lines[0].rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn kept_handles_count_into_the_same_series_as_fresh_ones() {
        // Labels of this test's own, so other tests counting in the same process do not mix in.
        let handle = install().expect("the recorder");
        let tokens = Tokens {
            input: 10,
            cached: 4,
            output: 3,
            reasoning: 1,
        };
        // The first two made the series; the rest find them in this thread's memo, and a
        // request from another thread (a memo of its own) adds to the same series.
        request(&record(200, Outcome::Ok, Some(tokens)), Some("memo-a"));
        request(&record(429, Outcome::RateLimited, None), Some("memo-a"));
        request(&record(200, Outcome::Ok, Some(tokens)), Some("memo-a"));
        request(&record(200, Outcome::FailedOver, None), Some("memo-b"));
        std::thread::spawn(move || {
            request(&record(200, Outcome::Ok, Some(tokens)), Some("memo-a"))
        })
        .join()
        .unwrap();
        let text = handle.render();
        let ok_a = [
            "codex_vault_requests_total",
            "account=\"memo-a\"",
            "status=\"200\"",
            "outcome=\"ok\"",
        ];
        assert_eq!(value(&text, &ok_a), 3.0);
        let limited = [
            "codex_vault_requests_total",
            "account=\"memo-a\"",
            "status=\"429\"",
        ];
        assert_eq!(value(&text, &limited), 1.0);
        let over_b = [
            "codex_vault_requests_total",
            "account=\"memo-b\"",
            "outcome=\"failed_over\"",
        ];
        assert_eq!(value(&text, &over_b), 1.0);
        for (kind, n) in [
            ("input", 30.0),
            ("cached", 12.0),
            ("output", 9.0),
            ("reasoning", 3.0),
        ] {
            let kind = format!("kind=\"{kind}\"");
            let series = [
                "codex_vault_tokens_total",
                "account=\"memo-a\"",
                kind.as_str(),
            ];
            assert_eq!(value(&text, &series), n);
        }
        assert!(
            !text.contains("codex_vault_tokens_total{account=\"memo-b\""),
            "no token series for an account that reported none"
        );
    }
}
