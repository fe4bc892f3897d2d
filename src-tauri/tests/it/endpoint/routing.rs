//! The loopback endpoint in one process, backed by the fake OpenAI: real streaming, byte-exact
//! passthrough, refresh on 401, failover on 429, affinity, pinning, the guard, change pickup.

use crate::common::engine;

use codex_vault::endpoint::{self, Endpoint};
use codex_vault_testkit::{AccountSpec, FakeConfig, FakeOpenAi, Fault, FaultRoute, IssuedTokens};
use engine::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

struct Rig {
    fake: FakeOpenAi,
    e: Engine,
    ep: Endpoint,
    key: String,
    accounts: Vec<IssuedTokens>,
    http: reqwest::Client,
}

impl Rig {
    async fn new(n: usize) -> Rig {
        Rig::with_settings(n, &[]).await
    }

    /// `settings` are written to the store before the endpoint starts.
    async fn with_settings(n: usize, settings: &[(&str, &str)]) -> Rig {
        let fake = FakeOpenAi::start(FakeConfig::default()).await;
        let e = Engine::new();
        for (k, v) in settings {
            e.service.store().set_setting(k, v).unwrap();
        }
        let accounts: Vec<IssuedTokens> = (0..n)
            .map(|i| {
                let t = fake.add_account(AccountSpec {
                    email: format!("ep{i}@corp.com"),
                    ..Default::default()
                });
                e.import(&t);
                t
            })
            .collect();
        let service = Arc::new(e.reopen());
        let tm = manager_for(&service, &fake, config(&fake));
        let key = service.local_api_key().unwrap().expose().to_string();
        let ep = endpoint::start(service, tm, 0, fake.codex_base())
            .await
            .unwrap();
        Rig {
            fake,
            e,
            ep,
            key,
            accounts,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.ep.url())
    }

    fn post(&self, body: Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url("/v1/responses"))
            .bearer_auth(&self.key)
            .header("accept", "text/event-stream")
            .json(&body)
    }

    fn per_account_calls(&self) -> Vec<u64> {
        let n = self.fake.counters();
        self.accounts
            .iter()
            .map(|t| {
                n.per_account
                    .get(&t.account_id)
                    .map_or(0, |c| c.responses_calls)
            })
            .collect()
    }

    fn all_token_text(&self) -> Vec<String> {
        self.accounts
            .iter()
            .flat_map(|t| {
                [
                    t.access_token.clone(),
                    t.refresh_token.clone(),
                    t.id_token.clone(),
                ]
            })
            .collect()
    }
}

fn turn(key: Option<&str>) -> Value {
    let mut v = json!({"model": "gpt-5-codex", "instructions": "", "input": [{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}], "stream": true, "store": false});
    if let Some(k) = key {
        v["prompt_cache_key"] = json!(k);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_event_arrives_before_upstream_finishes() {
    let rig = Rig::new(1).await;
    let gate = rig.fake.hold_streams_after_first_output();
    let mut resp = rig.post(turn(None)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().expect("a first chunk");
    assert!(String::from_utf8_lossy(&first).contains("response.created"));
    assert!(
        !gate.is_released(),
        "the first event came through while upstream was still held"
    );
    gate.release();
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert!(String::from_utf8_lossy(&rest).contains("response.completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_event_stream_and_error_bodies_pass_through_intact() {
    let rig = Rig::new(1).await;
    rig.fake.set_stream_events(10_000);
    let body = rig
        .post(turn(None))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let text = std::str::from_utf8(&body).expect("UTF-8 SSE");
    // Every frame intact: `event: …` then `data: {json}`, nothing torn or re-framed.
    let frames: Vec<&str> = text.split("\n\n").filter(|f| !f.is_empty()).collect();
    for f in &frames {
        let mut lines = f.lines();
        assert!(
            lines.next().is_some_and(|l| l.starts_with("event: ")),
            "torn frame: {f:?}"
        );
        let data = lines
            .next()
            .and_then(|l| l.strip_prefix("data: "))
            .expect("data line");
        serde_json::from_str::<Value>(data).expect("whole JSON data");
    }
    let kinds: Vec<&str> = frames
        .iter()
        .filter_map(|f| f.lines().next()?.strip_prefix("event: "))
        .collect();
    let deltas = kinds
        .iter()
        .filter(|k| **k == "response.output_text.delta")
        .count();
    assert_eq!(deltas, 10_000);
    assert_eq!(kinds.first(), Some(&"response.created"));
    assert_eq!(kinds.last(), Some(&"response.completed"));

    // An upstream error body is passed byte for byte (here a 400 the backend gives non-streaming calls).
    let direct = reqwest::Client::new()
        .post(format!("{}/responses", rig.fake.codex_base()))
        .bearer_auth(&rig.accounts[0].access_token)
        .header("ChatGPT-Account-ID", &rig.accounts[0].account_id)
        .json(&json!({"model": "m", "input": [], "stream": false}))
        .send()
        .await
        .unwrap();
    let (direct_status, direct_body) = (direct.status(), direct.bytes().await.unwrap());
    let proxied = rig
        .post(json!({"model": "m", "input": [], "stream": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), direct_status);
    assert_eq!(proxied.bytes().await.unwrap(), direct_body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_refreshes_once_and_retries() {
    let rig = Rig::new(1).await;
    rig.fake.inject_faults(
        FaultRoute::Responses,
        vec![Fault::Custom {
            status: 401,
            content_type: "application/json".into(),
            body: r#"{"error":{"message":"Provided authentication token is expired. Please try signing in again.","type":"invalid_request_error","code":"token_expired"}}"#.into(),
        }],
    );
    let resp = rig.post(turn(None)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(String::from_utf8_lossy(&resp.bytes().await.unwrap()).contains("response.completed"));
    let n = rig.fake.counters();
    assert_eq!(n.refreshes_ok, 1, "exactly one refresh");
    assert_eq!(n.responses_calls, 2, "the request was retried once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_fails_over_and_all_capped_answers_429_with_the_earliest_reset() {
    let rig = Rig::new(2).await;
    let now = chrono::Utc::now().timestamp();
    let (a, b) = (&rig.accounts[0], &rig.accounts[1]);
    rig.fake.set_rate_limited(&a.account_id, Some(now + 3600));
    // Round robin starts with the first account, so A is tried first and B answers.
    for _ in 0..2 {
        let resp = rig.post(turn(None)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    // The fake counts per account only what it served; its total also counts A's 429.
    let calls = rig.per_account_calls();
    assert_eq!(calls, vec![0, 2], "B served both: {calls:?}");
    assert_eq!(
        rig.fake.counters().responses_calls,
        3,
        "A was tried once, then skipped while limited"
    );
    let health: Vec<Value> = rig
        .http
        .get(rig.url("/v1/accounts"))
        .bearer_auth(&rig.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ha = health
        .iter()
        .find(|v| v["chatgpt_account_id"] == a.account_id.as_str())
        .unwrap();
    assert_eq!(ha["status"], "rate_limited");
    assert_eq!(
        ha["rate_limited_until"].as_str().unwrap(),
        chrono::DateTime::from_timestamp(now + 3600, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );

    rig.fake.set_rate_limited(&b.account_id, Some(now + 600));
    let resp = rig.post(turn(None)).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "usage_limit_reached");
    assert_eq!(
        v["error"]["resets_at"],
        now + 600,
        "the earliest reset: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_stick_new_ones_spread_and_pins_work() {
    let rig = Rig::new(3).await;
    for _ in 0..20 {
        rig.post(turn(Some("conversation-1")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let calls = rig.per_account_calls();
    assert_eq!(
        calls.iter().filter(|c| **c > 0).count(),
        1,
        "one conversation, one account: {calls:?}"
    );
    assert_eq!(calls.iter().sum::<u64>(), 20);
    for i in 0..20 {
        rig.post(turn(Some(&format!("k{i}"))))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let after = rig.per_account_calls();
    let used = after.iter().zip(&calls).filter(|(a, b)| a > b).count();
    assert!(
        used >= 2,
        "20 conversations used {used} account(s): {after:?}"
    );

    let before = rig.per_account_calls()[2];
    let resp = rig
        .post(turn(None))
        .header("x-codex-vault-account", "ep2@corp.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    assert_eq!(
        rig.per_account_calls()[2],
        before + 1,
        "the pin chose the account"
    );
    let resp = rig
        .post(turn(None))
        .header("x-codex-vault-account", "nobody")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    assert!(text.contains("x-codex-vault-account"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_refuses_strangers_and_never_echoes_secrets() {
    let rig = Rig::new(1).await;
    let url = rig.url("/v1/responses");
    let c = &rig.http;
    let mut bodies = Vec::new();
    let check = |status: u16, resp: reqwest::Response| {
        let got = resp.status().as_u16();
        async move {
            let b = resp.text().await.unwrap();
            assert_eq!(got, status, "{b}");
            b
        }
    };
    bodies.push(check(401, c.post(&url).json(&turn(None)).send().await.unwrap()).await);
    bodies.push(
        check(
            401,
            c.post(&url)
                .bearer_auth("cvk_wrong")
                .json(&turn(None))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    bodies.push(
        check(
            403,
            c.post(&url)
                .bearer_auth(&rig.key)
                .header("host", "evil.example")
                .json(&turn(None))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    bodies.push(
        check(
            403,
            c.post(&url)
                .bearer_auth(&rig.key)
                .header("origin", "https://evil.example")
                .json(&turn(None))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    let (status, body) = oversize_head(rig.ep.port, &rig.key).await;
    assert_eq!(status, 413, "{body}");
    bodies.push(body);
    bodies.push(
        check(
            426,
            c.get(&url)
                .bearer_auth(&rig.key)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    bodies.push(check(401, c.get(rig.url("/v1/accounts")).send().await.unwrap()).await);
    // /health needs no key and tells nothing about accounts.
    let h = c.get(rig.url("/health")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let h = h.text().await.unwrap();
    assert!(!h.contains("ep0@corp.com"));
    bodies.push(h);
    let x = c
        .post(&url)
        .bearer_auth("cvk_wrong")
        .header("x-api-key", "also-wrong")
        .json(&turn(None))
        .send()
        .await
        .unwrap();
    bodies.push(check(401, x).await);
    // x-api-key works as well as Bearer.
    let ok = c
        .post(&url)
        .header("x-api-key", &rig.key)
        .json(&turn(None))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    bodies.push(ok.text().await.unwrap());
    for b in &bodies {
        assert!(!b.contains(&rig.key), "the local key was echoed");
        for t in rig.all_token_text() {
            assert!(
                !b.contains(&t[t.len() / 2..t.len() / 2 + 16]),
                "token text in an answer"
            );
        }
    }
    assert_eq!(
        rig.fake.counters().responses_calls,
        1,
        "only the authorised request reached upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_added_by_another_process_are_served_within_a_second() {
    let rig = Rig::new(1).await;
    let late = rig.fake.add_account(AccountSpec {
        email: "late@corp.com".into(),
        ..Default::default()
    });
    // Another connection to the same file (as the CLI would be) adds an account.
    let other = Engine {
        dir: tempfile::tempdir().unwrap(),
        service: rig.e.reopen(),
    };
    other.import(&late);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let resp = rig
            .post(turn(None))
            .header("x-codex-vault-account", "late@corp.com")
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            resp.bytes().await.unwrap();
            break;
        }
        assert_eq!(resp.status(), 400, "until picked up the pin is unknown");
        assert!(
            tokio::time::Instant::now() < deadline,
            "not picked up within the deadline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n = rig.fake.counters();
    assert_eq!(
        n.per_account
            .get(&late.account_id)
            .map_or(0, |c| c.responses_calls),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_headers_reach_the_health_json() {
    let rig = Rig::new(1).await;
    rig.fake.set_usage(&rig.accounts[0].account_id, 42.0, 7.0);
    rig.post(turn(None))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let health: Vec<Value> = rig
        .http
        .get(rig.url("/v1/accounts"))
        .bearer_auth(&rig.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let u = &health[0]["usage"];
    assert_eq!(u["primary"]["used_percent"], 42.0, "{u}");
    assert_eq!(u["secondary"]["used_percent"], 7.0, "{u}");
    assert_eq!(u["requests_served"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let e = Engine::new();
    let service = Arc::new(e.reopen());
    let tm = manager_for(&service, &fake, config(&fake));
    let err = match endpoint::start(service, tm, port, fake.codex_base()).await {
        Err(e) => e,
        Ok(_) => panic!("bound a taken port"),
    };
    assert_eq!(err.code(), "port_in_use");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    // Linux tells who holds it: this test process.
    if cfg!(target_os = "linux") {
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
    }
}

/// Polls the health JSON until `pred` holds (a condition awaited, bounded).
async fn wait_health(rig: &Rig, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let health: Vec<Value> = rig
            .http
            .get(rig.url("/v1/accounts"))
            .bearer_auth(&rig.key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if pred(&health) {
            return health;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_accounts_are_polled_and_an_early_reset_makes_a_capped_account_selectable() {
    let rig = Rig::with_settings(
        3,
        &[(codex_vault::endpoint::usage_poll::SETTING_POLL_SECS, "0.5")],
    )
    .await;
    let (a, b, c) = (&rig.accounts[0], &rig.accounts[1], &rig.accounts[2]);
    rig.fake.set_usage(&c.account_id, 33.0, 4.0);
    // Idle account C: its usage shows up without any request through the endpoint.
    wait_health(&rig, "C's polled usage", |h| {
        h.iter().any(|v| {
            v["chatgpt_account_id"] == c.account_id.as_str()
                && v["usage"]["primary"]["used_percent"] == 33.0
        })
    })
    .await;
    // A is capped (learnt from a 429), then its window resets early: selectable again.
    let now = chrono::Utc::now().timestamp();
    rig.fake.set_rate_limited(&a.account_id, Some(now + 3600));
    rig.post(turn(None))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    wait_health(&rig, "A rate-limited", |h| {
        h.iter().any(|v| {
            v["chatgpt_account_id"] == a.account_id.as_str() && v["status"] == "rate_limited"
        })
    })
    .await;
    rig.fake.set_rate_limited(&a.account_id, None);
    wait_health(&rig, "A selectable again", |h| {
        h.iter()
            .any(|v| v["chatgpt_account_id"] == a.account_id.as_str() && v["status"] == "healthy")
    })
    .await;
    // B's grant is revoked upstream: the poll's 401 marks its usage stale and never refreshes.
    rig.fake.revoke_account(&b.account_id);
    wait_health(&rig, "B's usage stale", |h| {
        h.iter().any(|v| {
            v["chatgpt_account_id"] == b.account_id.as_str() && v["usage"]["stale"] == true
        })
    })
    .await;
    assert_eq!(
        rig.fake.counters().token_calls,
        0,
        "polling spent a refresh token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_passes_through_byte_for_byte() {
    // A deterministic upstream (the fake's streams carry random ids): 10,000 SSE events in
    // uneven chunks, which must reach the client exactly as sent.
    let mut expected = Vec::new();
    for i in 0..10_000 {
        expected.extend_from_slice(
            format!("event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"delta\":\"w{i} \"}}\n\n").as_bytes(),
        );
    }
    expected.extend_from_slice(
        b"event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n",
    );
    let body = axum::body::Bytes::from(expected.clone());
    let app = axum::Router::new().route(
        "/responses",
        axum::routing::post(move || {
            let body = body.clone();
            async move {
                let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> = body
                    .chunks(4093)
                    .map(|c| Ok(axum::body::Bytes::copy_from_slice(c)))
                    .collect();
                axum::response::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(axum::body::Body::from_stream(futures_util::stream::iter(
                        chunks,
                    )))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let e = Engine::new();
    e.import(&fake.add_account(AccountSpec::default()));
    let service = Arc::new(e.reopen());
    let tm = manager_for(&service, &fake, config(&fake));
    let key = service.local_api_key().unwrap().expose().to_string();
    let ep = endpoint::start(service, tm, 0, upstream).await.unwrap();
    let got = reqwest::Client::new()
        .post(format!("{}/v1/responses", ep.url()))
        .bearer_auth(&key)
        .json(&turn(None))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got[..] == expected[..], "the stream was altered in passing");
}

/// Sends a request head announcing a body over the 32 MiB limit, and no body: the endpoint must
/// refuse it from `Content-Length` alone. (With a real 33 MiB upload the early 413 races the
/// client's writing, which then sees a reset instead of the answer: a flaky test, not a finding.)
async fn oversize_head(port: u16, key: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/responses HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        33 * 1024 * 1024
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length || n == 0 {
                let status = text[9..12].parse().unwrap();
                return (status, text[end + 4..].to_string());
            }
        }
        assert!(n > 0, "the connection closed before an answer: {text}");
    }
}
