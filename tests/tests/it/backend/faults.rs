//! Injected faults fire once each, in order, on the route they were queued for.

use crate::common;

use std::time::{Duration, Instant};

use codex_vault_testkit::{AccountSpec, FakeConfig, FakeOpenAi, Fault, FaultRoute};
use common::{client, post_responses_as, refresh};
use serde_json::Value;

#[tokio::test]
async fn token_faults_fire_in_order_then_normal_service_resumes() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    fake.inject_faults(
        FaultRoute::Token,
        vec![
            Fault::Status(503),
            Fault::Html403,
            Fault::Html200,
            Fault::DropConnection,
        ],
    );

    let send = || {
        c.post(fake.token_url())
            .json(&serde_json::json!({
                "client_id": codex_vault_testkit::CLIENT_ID,
                "grant_type": "refresh_token",
                "refresh_token": t.refresh_token,
            }))
            .send()
    };

    let resp = send().await.expect("503 answer");
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.expect("JSON error body");
    assert_eq!(body["error"]["type"], "server_error");

    let resp = send().await.expect("403 answer");
    assert_eq!(resp.status(), 403);
    assert!(resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html")));
    assert!(resp.text().await.expect("body").contains("Cloudflare"));

    let resp = send().await.expect("200 answer");
    assert_eq!(resp.status(), 200);
    assert!(resp.json::<Value>().await.is_err(), "an unparseable 200");

    let err = send()
        .await
        .expect_err("the connection is dropped without an answer");
    assert!(!err.is_status(), "{err}");

    // The queue is empty: the refresh token was never consumed by the faulted calls.
    assert_eq!(refresh(&c, &fake, &t.refresh_token).await.0, 200);
    let counters = fake.counters();
    assert_eq!(counters.token_calls, 5);
    assert_eq!(counters.faults_fired, 4);
    assert_eq!(counters.refreshes_ok, 1);
}

#[tokio::test]
async fn faults_only_hit_their_route_and_slow_delays() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    fake.inject_faults(
        FaultRoute::Responses,
        vec![Fault::Slow(Duration::from_millis(300)), Fault::Status(502)],
    );
    fake.inject_faults(
        FaultRoute::Usage,
        vec![Fault::Custom {
            status: 500,
            content_type: "text/plain".into(),
            body: "upstream connect error".into(),
        }],
    );

    // Token route unaffected.
    assert_eq!(refresh(&c, &fake, &t.refresh_token).await.0, 200);

    let started = Instant::now();
    let resp = post_responses_as(&c, &fake, &t).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(resp.status(), 200, "Slow answers normally after waiting");
    let _ = resp.text().await;

    assert_eq!(post_responses_as(&c, &fake, &t).await.status(), 502);
    assert_eq!(post_responses_as(&c, &fake, &t).await.status(), 200);

    let resp = c
        .get(fake.usage_url())
        .bearer_auth(&t.access_token)
        .header("ChatGPT-Account-ID", &t.account_id)
        .send()
        .await
        .expect("usage");
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.text().await.expect("body"), "upstream connect error");
    assert_eq!(fake.counters().faults_fired, 3);
}

#[tokio::test]
async fn models_faults_and_drop_connection_on_responses() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    fake.inject_faults(FaultRoute::Models, vec![Fault::Status(429)]);
    fake.inject_faults(FaultRoute::Responses, vec![Fault::DropConnection]);

    let resp = c
        .get(format!("{}/models", fake.codex_base()))
        .bearer_auth(&t.access_token)
        .header("ChatGPT-Account-ID", &t.account_id)
        .send()
        .await
        .expect("models");
    assert_eq!(resp.status(), 429);

    let err = c
        .post(format!("{}/responses", fake.codex_base()))
        .bearer_auth(&t.access_token)
        .header("ChatGPT-Account-ID", &t.account_id)
        .json(&common::responses_body())
        .send()
        .await
        .expect_err("dropped");
    assert!(!err.is_status());
    assert_eq!(post_responses_as(&c, &fake, &t).await.status(), 200);
}
