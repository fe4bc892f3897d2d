//! The request log (`activity.db`) through the real `serve`: each kind of request — a text turn,
//! a function call with reasoning, a failover, a refresh on 401, a pinned capped account, a client
//! that goes away mid-stream, the model catalog — is listed by `codex-vault activity --json` with
//! its account, outcome and the tokens of the `response.completed` the client saw.

use crate::common::*;
use codex_vault_testkit::{Fault, FaultRoute};
use serde_json::{json, Value};
use std::time::Duration;

const PIN: &str = "x-codex-vault-account";

/// A Codex turn with a system prompt long enough that a repeat finds whole cached blocks.
fn text_turn(key: Option<&str>) -> Value {
    let mut v = crate::common::vault::turn(key);
    v["instructions"] = json!("You are a careful coding agent. ".repeat(12));
    v
}

fn tool_turn() -> Value {
    json!({"model": "gpt-5.5", "instructions": "", "stream": true, "store": false,
        "include": ["reasoning.encrypted_content"],
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}],
        "tool_choice": "required",
        "input": [{"type":"message","role":"user","content":[{"type":"input_text","text":"weather?"}]}]})
}

/// The usage of the `response.completed` in an SSE body, as the client received it.
fn completed_usage(body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(body);
    text.split("\n\n")
        .filter(|f| f.contains("event: response.completed"))
        .filter_map(|f| f.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .map(|v| v["response"]["usage"].clone())
        .next()
        .unwrap_or_else(|| panic!("no response.completed in {text}"))
}

struct Sent {
    status: u16,
    usage: Option<Value>,
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
    pin: Option<&str>,
) -> Sent {
    let mut req = http.post(url).bearer_auth(key).json(body);
    if let Some(p) = pin {
        req = req.header(PIN, p);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    Sent {
        status,
        usage: (status == 200).then(|| completed_usage(&bytes)),
    }
}

fn activity(env: &DataDir, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["activity", "--json"];
    all.extend_from_slice(args);
    let r = env.ok(&all);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    v["requests"].as_array().unwrap().clone()
}

fn assert_tokens(row: &Value, usage: &Value) {
    assert_eq!(row["input_tokens"], usage["input_tokens"], "{row}");
    assert_eq!(
        row["cached_tokens"], usage["input_tokens_details"]["cached_tokens"],
        "{row}"
    );
    assert_eq!(row["output_tokens"], usage["output_tokens"], "{row}");
    assert_eq!(
        row["reasoning_tokens"], usage["output_tokens_details"]["reasoning_tokens"],
        "{row}"
    );
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one linear scenario through a real serve: each request, then the log read back"
)]
fn every_request_through_serve_is_logged_with_account_outcome_and_tokens() {
    let fake = fake();
    let env = DataDir::new();
    let a = account(&fake, "alice@corp.com", "plus");
    let b = account(&fake, "bob@corp.com", "pro");
    for (t, label) in [(&a, "a"), (&b, "b")] {
        let p = env.write_file(
            &format!("{label}.json"),
            auth_json(t, "2026-11-30T00:00:00Z").as_bytes(),
        );
        env.ok(&["accounts", "import", p.to_str().unwrap(), "--label", label]);
    }
    let vars = vault::fake_env(&fake);
    let serve = env.spawn_serve(&vars, env.dir.path().join("serve.stderr"));
    let info: Value =
        serde_json::from_str(&env.ok(&["endpoint", "info", "--json"]).stdout).unwrap();
    let key = info["key"].as_str().unwrap().to_string();
    let url = serve.url("/v1/responses");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let now = chrono::Utc::now().timestamp();

    let mut expected: Vec<(&str, &str, u16, Option<Value>)> = Vec::new(); // oldest first
    rt.block_on(async {
        // A is capped upstream: of two unpinned turns one is tried on A first and fails over.
        fake.set_rate_limited(&a.account_id, Some(now + 3600));
        for _ in 0..2 {
            let s = post(&http, &url, &key, &text_turn(None), None).await;
            assert_eq!(s.status, 200);
            expected.push(("b", "?", 200, s.usage));
        }
        // One conversation twice: the second turn finds its prefix in the prompt cache.
        for _ in 0..2 {
            let s = post(&http, &url, &key, &text_turn(Some("conv-1")), Some("b")).await;
            expected.push(("b", "ok", 200, s.usage));
        }
        let s = post(&http, &url, &key, &tool_turn(), Some("b")).await;
        expected.push(("b", "ok", 200, s.usage));
        // A 401 from the backend: refreshed, then answered.
        fake.inject_faults(
            FaultRoute::Responses,
            vec![Fault::Custom {
                status: 401,
                content_type: "application/json".into(),
                body: r#"{"error":{"message":"Provided authentication token is expired. Please try signing in again.","type":"invalid_request_error","code":"token_expired"}}"#.into(),
            }],
        );
        let s = post(&http, &url, &key, &text_turn(None), Some("b")).await;
        assert_eq!(s.status, 200);
        expected.push(("b", "refreshed", 200, s.usage));
        // A pinned, capped account cannot answer: ours, no account served it.
        let s = post(&http, &url, &key, &text_turn(None), Some("a")).await;
        assert_eq!(s.status, 503);
        expected.push(("-", "no_account", 503, None));
        // The client goes away after the first output, while the stream is parked upstream.
        let gate = fake.hold_streams_after_first_output();
        let mut resp = http
            .post(&url)
            .bearer_auth(&key)
            .header(PIN, "b")
            .json(&text_turn(None))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let first = resp.chunk().await.unwrap();
        assert!(first.is_some(), "the first output reached the client");
        drop(resp);
        expected.push(("b", "client_closed", 200, None));
        // The row is written when the endpoint sees the client gone; then the stream may end.
        wait_until("the closed request logged", Duration::from_secs(20), || {
            activity(&env, &["--limit", "1"])
                .first()
                .is_some_and(|r| r["outcome"] == "client_closed")
        });
        gate.release();
        let models = http
            .get(serve.url("/v1/models"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(models.status(), 200);
        models.bytes().await.unwrap();
        expected.push(("?", "ok", 200, None));
        // Every account capped: B is tried, and the client gets the 429.
        fake.set_rate_limited(&b.account_id, Some(now + 600));
        let s = post(&http, &url, &key, &text_turn(None), None).await;
        assert_eq!(s.status, 429);
        expected.push(("b", "rate_limited", 429, None));
    });

    let rows = wait_until("every request logged", Duration::from_secs(20), || {
        let rows = activity(&env, &[]);
        (rows.len() >= expected.len()).then_some(rows)
    });
    assert_eq!(rows.len(), expected.len(), "one row a request: {rows:#?}");
    let ids: Vec<String> = env
        .list_json()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    let id_of = |label: &str| {
        env.list_json()
            .into_iter()
            .find(|v| v["label"] == label)
            .map(|v| v["id"].as_str().unwrap().to_string())
    };
    let (id_a, id_b) = (id_of("a").unwrap(), id_of("b").unwrap());
    assert_eq!(ids.len(), 2);
    // Newest first: compare against the requests in the order they were made.
    let oldest_first: Vec<&Value> = rows.iter().rev().collect();
    let outcomes: Vec<&str> = oldest_first[..2]
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    let mut sorted = outcomes.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["failed_over", "ok"],
        "A was tried once: {outcomes:?}"
    );
    for (row, (label, outcome, status, usage)) in oldest_first.iter().zip(&expected) {
        assert_eq!(row["status"], *status, "{row}");
        if *outcome != "?" {
            assert_eq!(row["outcome"], *outcome, "{row}");
        }
        match *label {
            "b" => {
                assert_eq!(row["account_id"], id_b.as_str(), "{row}");
                assert_eq!(row["account_label"], "b", "{row}");
            }
            "-" => assert!(row["account_id"].is_null(), "{row}"),
            _ => {}
        }
        match usage {
            Some(u) => assert_tokens(row, u),
            None => assert!(row["output_tokens"].is_null(), "no tokens: {row}"),
        }
        assert!(row["at"].as_str().unwrap().ends_with('Z'), "{row}");
        assert!(row["latency_ms"].as_f64().unwrap() >= row["ttfb_ms"].as_f64().unwrap_or(0.0));
    }
    let by_route: Vec<&str> = oldest_first
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert_eq!(by_route[by_route.len() - 2], "models");
    assert_eq!(
        by_route.iter().filter(|r| **r == "responses").count(),
        by_route.len() - 1
    );
    assert_eq!(oldest_first[0]["model"], "gpt-5-codex");
    assert_eq!(oldest_first[4]["model"], "gpt-5.5");
    // The repeated conversation found its prefix cached; the reasoning turn counted reasoning.
    assert!(
        oldest_first[3]["cached_tokens"].as_i64().unwrap() > 0,
        "{}",
        oldest_first[3]
    );
    assert!(
        oldest_first[4]["reasoning_tokens"].as_i64().unwrap() > 0,
        "{}",
        oldest_first[4]
    );
    assert_eq!(
        oldest_first[2]["conversation"],
        oldest_first[3]["conversation"]
    );
    assert_ne!(
        oldest_first[2]["conversation"], "conv-1",
        "the key is hashed"
    );

    // Filters: by account (label), by time.
    let only_b = activity(&env, &["--account", "b"]);
    assert!(only_b.iter().all(|r| r["account_id"] == id_b.as_str()));
    assert_eq!(
        only_b.len(),
        rows.iter()
            .filter(|r| r["account_id"] == id_b.as_str())
            .count()
    );
    assert!(
        activity(&env, &["--account", "a"]).is_empty(),
        "A served nothing"
    );
    assert_eq!(activity(&env, &["--since", "1h"]).len(), rows.len());
    let r = env.run(&["activity", "--since", "soon"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not a time span"), "{}", r.stderr);

    // `usage --json`: both accounts, what each served, A's window from its 429.
    let u: Value = serde_json::from_str(&env.ok(&["usage", "--json"]).stdout).unwrap();
    let accounts = u["accounts"].as_array().unwrap();
    let of = |id: &str| {
        accounts
            .iter()
            .find(|x| x["account_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        of(&id_b)["last_24h"]["requests"].as_i64().unwrap() as usize,
        only_b.len()
    );
    assert_eq!(of(&id_a)["last_24h"]["requests"], 0);
    assert_eq!(of(&id_a)["status"], "rate_limited", "{u}");
    assert_eq!(of(&id_b)["status"], "rate_limited", "{u}");

    // Usage history: the windows the answers' headers carried, sampled when they changed.
    let db = rusqlite::Connection::open(env.vault_home().join("activity.db")).unwrap();
    let samples = |id: &str| -> i64 {
        db.query_row(
            "SELECT count(*) FROM usage_samples WHERE account_id = ?1 AND primary_used IS NOT NULL",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert!(
        samples(&id_a) >= 1 && samples(&id_b) >= 1,
        "both accounts sampled"
    );
    let answers_of_b = rows
        .iter()
        .filter(|r| r["account_id"] == id_b.as_str())
        .count() as i64;
    assert!(
        samples(&id_b) < answers_of_b,
        "a sample only when the figures changed"
    );

    // `/metrics`: keyed, parses as the Prometheus text format, and counts what the log lists.
    let (unkeyed, text) = rt.block_on(async {
        let unkeyed = http
            .get(serve.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status();
        let resp = http
            .get(serve.url("/metrics"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        (unkeyed, resp.text().await.unwrap())
    });
    assert_eq!(unkeyed, 401);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let sum = |name: &str, want: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| want.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(
        sum("codex_vault_requests_total", &[]) as usize,
        rows.len(),
        "{text}"
    );
    assert_eq!(
        sum("codex_vault_requests_total", &[("account", "b")]) as usize,
        only_b.len(),
        "{text}"
    );
    assert_eq!(
        sum(
            "codex_vault_requests_total",
            &[("outcome", "client_closed")]
        ),
        1.0
    );
    assert_eq!(sum("codex_vault_failovers_total", &[]), 1.0, "{text}");
    let logged_output: i64 = rows
        .iter()
        .filter_map(|r| r["output_tokens"].as_i64())
        .sum();
    assert_eq!(
        sum("codex_vault_tokens_total", &[("kind", "output")]) as i64,
        logged_output
    );
    assert!(
        sum("codex_vault_refreshes_total", &[("outcome", "rotated")]) >= 1.0,
        "{text}"
    );
    assert_eq!(
        sum("codex_vault_accounts", &[("status", "rate_limited")]),
        2.0,
        "{text}"
    );
    let leaks = LeakScanner::new(fake.issued_secrets().into_iter().chain([
        key.clone(),
        "alice@corp.com".into(),
        "bob@corp.com".into(),
    ]));
    assert_eq!(leaks.find(text.as_bytes()), None, "/metrics leaks");
    drop(serve);
}

/// The writer stuck behind another process's lock on `activity.db` and a queue of two: every
/// request is still answered at once, the records that did not fit are dropped and counted
/// (`/metrics`), and what was queued is written once the lock goes.
#[test]
fn a_full_log_queue_drops_and_counts_and_never_holds_a_request() {
    let fake = fake();
    let env = DataDir::new();
    let t = account(&fake, "carol@corp.com", "plus");
    let p = env.write_file("c.json", auth_json(&t, "2026-11-30T00:00:00Z").as_bytes());
    env.ok(&["accounts", "import", p.to_str().unwrap(), "--label", "c"]);
    let mut vars = vault::fake_env(&fake);
    vars.push(("CODEX_VAULT_ACTIVITY_QUEUE", "2".to_string()));
    let serve = env.spawn_serve(&vars, env.dir.path().join("serve.stderr"));
    let info: Value =
        serde_json::from_str(&env.ok(&["endpoint", "info", "--json"]).stdout).unwrap();
    let key = info["key"].as_str().unwrap().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let url = serve.url("/v1/responses");
    // serve opened the log at its start; this connection now holds its write lock.
    let blocker = rusqlite::Connection::open(env.vault_home().join("activity.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    const N: usize = 12;
    rt.block_on(async {
        for _ in 0..N {
            let s = post(&http, &url, &key, &text_turn(None), None).await;
            assert_eq!(s.status, 200, "answered while the log cannot write");
        }
    });
    let metrics = |name: &str| -> f64 {
        let text = rt.block_on(async {
            http.get(serve.url("/metrics"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .unwrap()
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(
        metrics("codex_vault_requests_total") as usize,
        N,
        "each request counted"
    );
    let lost = metrics("codex_vault_activity_lost_total") as usize;
    // Accepted at most: the record the writer took, the two that queued while it gathered its
    // burst, and two more while its write waits for the lock.
    assert!(
        lost >= N - 5,
        "a queue of 2 takes at most 5 here: lost {lost}"
    );
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    // What was queued is written once the lock is gone (or counted lost when the wait timed out).
    let rows = wait_until(
        "the queued records written",
        Duration::from_secs(20),
        || {
            let rows = activity(&env, &[]).len();
            let lost = metrics("codex_vault_activity_lost_total") as usize;
            (rows + lost == N).then_some(rows)
        },
    );
    assert!(rows <= 5, "{rows} rows");
    drop(serve);
}
