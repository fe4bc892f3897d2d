//! The Codex backend routes: SSE answers, auth checks, usage limits, models, usage.

use crate::common;

use std::time::Duration;

use codex_vault_testkit::sse::parse_sse;
use codex_vault_testkit::{AccountSpec, FakeConfig, FakeOpenAi, FAKE_MODEL};
use common::{client, post_responses, post_responses_as, responses_body};
use serde_json::{json, Value};

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_stream_is_the_full_responses_event_sequence() {
    let fake = FakeOpenAi::start(FakeConfig {
        responses_text: "Hi there, friend!".into(),
        ..FakeConfig::default()
    })
    .await;
    fake.set_stream_events(3);
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    fake.set_usage(&t.account_id, 42.5, 7.0);

    let resp = post_responses_as(&c, &fake, &t).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(header(&resp, "x-codex-primary-used-percent"), Some("42.5"));
    assert_eq!(header(&resp, "x-codex-primary-window-minutes"), Some("300"));
    assert_eq!(header(&resp, "x-codex-secondary-used-percent"), Some("7"));
    assert_eq!(
        header(&resp, "x-codex-secondary-window-minutes"),
        Some("10080")
    );
    let reset: i64 = header(&resp, "x-codex-primary-reset-at")
        .expect("reset")
        .parse()
        .expect("int");
    assert!(reset > chrono::Utc::now().timestamp());
    assert!(header(&resp, "x-codex-credits-has-credits").is_some());
    assert!(header(&resp, "x-codex-credits-balance").is_some());

    let events = parse_sse(&resp.text().await.expect("body"));
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.data["type"],
            json!(e.event),
            "data.type mirrors the event name"
        );
        assert_eq!(e.data["sequence_number"], json!(i));
    }
    let text: String = events
        .iter()
        .filter(|e| e.event == "response.output_text.delta")
        .map(|e| e.data["delta"].as_str().expect("delta"))
        .collect();
    assert_eq!(text, "Hi there, friend!");
    let done = &events[9].data["item"];
    assert_eq!(done["type"], "message");
    assert_eq!(done["role"], "assistant");
    assert_eq!(
        done["content"][0],
        json!({"type": "output_text", "annotations": [], "logprobs": [], "text": "Hi there, friend!"})
    );
    let completed = &events[10].data["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["id"], events[0].data["response"]["id"]);
    let usage = &completed["usage"];
    let (i, o) = (
        usage["input_tokens"].as_u64().expect("in"),
        usage["output_tokens"].as_u64().expect("out"),
    );
    assert_eq!(usage["total_tokens"].as_u64(), Some(i + o));
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 0);

    let counters = fake
        .wait_for_counters(Duration::from_secs(5), |c| c.responses_completed == 1)
        .await
        .expect("completed");
    assert_eq!(counters.responses_calls, 1);
    assert_eq!(counters.per_account[&t.account_id].responses_calls, 1);
}

#[tokio::test]
async fn the_last_request_headers_and_body_are_recorded() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    let resp = c
        .post(format!("{}/responses", fake.codex_base()))
        .bearer_auth(&t.access_token)
        .header("ChatGPT-Account-ID", &t.account_id)
        .header("originator", "codex_cli_rs")
        .header("session_id", "sess-1")
        .header("x-codex-beta-features", "a")
        .header("x-codex-beta-features", "b")
        .json(&responses_body())
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    let counters = fake.counters();
    let h = counters.last_responses_headers.expect("headers recorded");
    assert_eq!(h["originator"], "codex_cli_rs");
    assert_eq!(h["session_id"], "sess-1");
    assert_eq!(h["x-codex-beta-features"], "a, b");
    assert_eq!(h["chatgpt-account-id"], t.account_id);
    assert_eq!(counters.last_responses_body, Some(responses_body()));
}

#[tokio::test]
async fn bad_credentials_are_refused_like_upstream() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    let other = fake.add_account(AccountSpec::default());

    // No token / garbage / another fake's token: {"detail":"Unauthorized"}.
    let resp = c
        .post(format!("{}/responses", fake.codex_base()))
        .json(&responses_body())
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"detail": "Unauthorized"})
    );
    let stranger = FakeOpenAi::start(FakeConfig::default()).await;
    let foreign = stranger.add_account(AccountSpec::default());
    let resp = post_responses_as(&c, &fake, &foreign).await;
    assert_eq!(resp.status(), 401);

    // Expired.
    let expired = fake.issue_grant(&t.account_id, Some(Duration::ZERO));
    let resp = post_responses_as(&c, &fake, &expired).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "token_expired");

    // Token of one account, header of another (or none): 403.
    let resp = post_responses(&c, &fake, &t.access_token, &other.account_id).await;
    assert_eq!(resp.status(), 403);
    let resp = c
        .post(format!("{}/responses", fake.codex_base()))
        .bearer_auth(&t.access_token)
        .json(&responses_body())
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 403);

    // The backend only streams.
    let mut body = responses_body();
    body["stream"] = json!(false);
    let resp = c
        .post(format!("{}/responses", fake.codex_base()))
        .bearer_auth(&t.access_token)
        .header("ChatGPT-Account-ID", &t.account_id)
        .json(&body)
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"detail": "Stream must be set to true"})
    );
    assert_eq!(fake.counters().responses_calls, 6);
}

#[tokio::test]
async fn a_limited_account_gets_429_until_the_reset() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec {
        plan: "pro".into(),
        ..AccountSpec::default()
    });
    let resets_at = chrono::Utc::now().timestamp() + 3600;
    fake.set_rate_limited(&t.account_id, Some(resets_at));

    let resp = post_responses_as(&c, &fake, &t).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-codex-primary-used-percent"), Some("100"));
    assert_eq!(
        header(&resp, "x-codex-primary-reset-at"),
        Some(resets_at.to_string().as_str())
    );
    let body: Value = resp.json().await.expect("json");
    let err = &body["error"];
    assert_eq!(err["type"], "usage_limit_reached");
    assert_eq!(err["plan_type"], "pro");
    assert_eq!(err["resets_at"], resets_at);
    let secs = err["resets_in_seconds"]
        .as_i64()
        .expect("resets_in_seconds");
    assert!((3590..=3600).contains(&secs), "{secs}");
    assert!(err["message"].is_string());

    // A reset time in the past is no limit; None clears it.
    fake.set_rate_limited(&t.account_id, Some(chrono::Utc::now().timestamp() - 1));
    assert_eq!(post_responses_as(&c, &fake, &t).await.status(), 200);
    fake.set_rate_limited(&t.account_id, Some(resets_at));
    fake.set_rate_limited(&t.account_id, None);
    assert_eq!(post_responses_as(&c, &fake, &t).await.status(), 200);
}

#[tokio::test]
async fn models_and_usage_answer_with_the_account_auth() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    fake.set_usage(&t.account_id, 12.0, 34.0);

    let resp = c
        .get(format!(
            "{}/models?client_version=0.169.0",
            fake.codex_base()
        ))
        .bearer_auth(&t.access_token)
        .header("ChatGPT-Account-ID", &t.account_id)
        .send()
        .await
        .expect("models");
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "etag").is_some());
    let body: Value = resp.json().await.expect("json");
    let model = &body["models"][0];
    assert_eq!(model["slug"], FAKE_MODEL);
    for field in [
        "display_name",
        "supported_reasoning_levels",
        "shell_type",
        "visibility",
        "truncation_policy",
        "experimental_supported_tools",
        "priority",
    ] {
        assert!(model.get(field).is_some(), "{field}");
    }
    let unauth = c
        .get(format!("{}/models", fake.codex_base()))
        .send()
        .await
        .expect("models");
    assert_eq!(unauth.status(), 401);

    let resp = c
        .get(fake.usage_url())
        .bearer_auth(&t.access_token)
        .header("ChatGPT-Account-ID", &t.account_id)
        .send()
        .await
        .expect("usage");
    assert_eq!(resp.status(), 200);
    let u: Value = resp.json().await.expect("json");
    assert_eq!(u["plan_type"], "plus");
    assert_eq!(u["rate_limit"]["allowed"], true);
    assert_eq!(u["rate_limit"]["limit_reached"], false);
    assert_eq!(u["rate_limit"]["primary_window"]["used_percent"], 12.0);
    assert_eq!(
        u["rate_limit"]["primary_window"]["limit_window_seconds"],
        18000
    );
    assert_eq!(u["rate_limit"]["secondary_window"]["used_percent"], 34.0);
    assert_eq!(
        u["rate_limit"]["secondary_window"]["limit_window_seconds"],
        604800
    );
    assert!(u["rate_limit"]["primary_window"]["reset_at"].is_i64());
    assert!(u["rate_limit"]["primary_window"]["reset_after_seconds"].is_i64());
    assert_eq!(u["credits"]["has_credits"], false);

    fake.set_rate_limited(&t.account_id, Some(chrono::Utc::now().timestamp() + 60));
    let u: Value = c
        .get(fake.usage_url())
        .bearer_auth(&t.access_token)
        .header("ChatGPT-Account-ID", &t.account_id)
        .send()
        .await
        .expect("usage")
        .json()
        .await
        .expect("json");
    assert_eq!(u["rate_limit"]["limit_reached"], true);
    assert_eq!(u["rate_limit"]["allowed"], false);

    let counters = fake.counters();
    assert_eq!((counters.models_calls, counters.usage_calls), (2, 2));
}

#[tokio::test]
async fn websocket_upgrades_get_426() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let resp = c
        .get(format!("{}/responses", fake.codex_base()))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("upgrade attempt");
    assert_eq!(resp.status(), 426);
    let counters = fake.counters();
    assert_eq!(
        (
            counters.websocket_upgrades_refused,
            counters.responses_calls
        ),
        (1, 0)
    );
}
