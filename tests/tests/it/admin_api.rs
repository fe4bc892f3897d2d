//! The `fake-openai` binary, driven from another process through the admin API.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use codex_vault_testkit::{Counters, IssuedTokens, CLIENT_ID};
use serde_json::{json, Value};

struct FakeProcess {
    child: Child,
    url: String,
}

impl FakeProcess {
    fn start(args: &[&str]) -> FakeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fake-openai");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("first line");
        let url = line.trim().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url:?}");
        FakeProcess { child, url }
    }
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn admin(c: &reqwest::Client, p: &FakeProcess, path: &str, body: Value) -> (u16, Value) {
    let resp = c
        .post(format!("{}/__admin{path}", p.url))
        .json(&body)
        .send()
        .await
        .expect("admin call");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("admin answers JSON"))
}

async fn counters(c: &reqwest::Client, p: &FakeProcess) -> Counters {
    c.get(format!("{}/__admin/counters", p.url))
        .send()
        .await
        .expect("counters")
        .json()
        .await
        .expect("counters JSON")
}

async fn refresh_status(c: &reqwest::Client, p: &FakeProcess, rt: &str) -> (u16, Value) {
    let resp = c
        .post(format!("{}/oauth/token", p.url))
        .json(&json!({"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": rt}))
        .send()
        .await
        .expect("token");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn the_binary_is_driven_through_the_admin_api() {
    let p = FakeProcess::start(&[
        "--access-lifetime-secs",
        "120",
        "--responses-text",
        "from the binary",
    ]);
    let c = common::client();

    let (status, body) = admin(
        &c,
        &p,
        "/accounts",
        json!({"email": "x@example.test", "plan": "pro"}),
    )
    .await;
    assert_eq!(status, 200);
    let t: IssuedTokens = serde_json::from_value(body).expect("tokens");
    let claims = codex_vault_testkit::jwt::decode_claims(&t.access_token).expect("claims");
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        120
    );

    // A second family, the first one rotated out of band, then our copy is a reuse.
    let (status, body) = admin(
        &c,
        &p,
        &format!("/accounts/{}/grants", t.account_id),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let second: IssuedTokens = serde_json::from_value(body).expect("tokens");
    let (status, _) = admin(
        &c,
        &p,
        "/rotate_out_of_band",
        json!({"refresh_token": t.refresh_token}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = admin(
        &c,
        &p,
        "/rotate_out_of_band",
        json!({"refresh_token": t.refresh_token}),
    )
    .await;
    assert_eq!(status, 409, "a rotated token cannot be redeemed again");
    let (status, body) = refresh_status(&c, &p, &t.refresh_token).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("refresh_token_reused"))
    );

    // Settings: reuse mode.
    let (status, settings) =
        admin(&c, &p, "/settings", json!({"reuse_mode": "invalid_grant"})).await;
    assert_eq!(status, 200);
    assert_eq!(settings["reuse_mode"], "invalid_grant");
    let (status, body) = refresh_status(&c, &p, &t.refresh_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Faults.
    let (status, _) = admin(
        &c,
        &p,
        "/faults",
        json!({"route": "token", "faults": [{"kind": "status", "status": 500}]}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = refresh_status(&c, &p, &second.refresh_token).await;
    assert_eq!(status, 500);
    let (status, _) = refresh_status(&c, &p, &second.refresh_token).await;
    assert_eq!(status, 200);

    // Rate limit, then revoke.
    let (status, _) = admin(
        &c,
        &p,
        &format!("/accounts/{}/rate_limit", t.account_id),
        json!({"resets_at": chrono::Utc::now().timestamp() + 60}),
    )
    .await;
    assert_eq!(status, 200);
    let resp = c
        .post(format!("{}/backend-api/codex/responses", p.url))
        .bearer_auth(&second.access_token)
        .header("ChatGPT-Account-ID", &second.account_id)
        .json(&common::responses_body())
        .send()
        .await
        .expect("responses");
    assert_eq!(resp.status(), 429);
    let (status, _) = admin(
        &c,
        &p,
        &format!("/accounts/{}/rate_limit", t.account_id),
        json!({"resets_at": null}),
    )
    .await;
    assert_eq!(status, 200);
    let resp = c
        .post(format!("{}/backend-api/codex/responses", p.url))
        .bearer_auth(&second.access_token)
        .header("ChatGPT-Account-ID", &second.account_id)
        .json(&common::responses_body())
        .send()
        .await
        .expect("responses");
    assert!(resp.text().await.expect("body").contains("from the binary"));

    let (status, _) = admin(
        &c,
        &p,
        &format!("/accounts/{}/revoke", t.account_id),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = admin(&c, &p, "/accounts/nope/revoke", json!({})).await;
    assert_eq!(status, 404);

    // auth.json.
    let (status, auth) = admin(
        &c,
        &p,
        "/auth_json",
        json!({"tokens": second, "last_refresh": "2026-01-01T12:34:56.123456Z"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(auth["auth_mode"], "chatgpt");
    assert_eq!(auth["OPENAI_API_KEY"], Value::Null);
    assert_eq!(auth["tokens"]["refresh_token"], json!(second.refresh_token));
    assert_eq!(auth["last_refresh"], "2026-01-01T12:34:56.123456Z");

    let counters = counters(&c, &p).await;
    assert_eq!(counters.out_of_band_rotations, 1);
    assert_eq!(counters.refresh_reuse, 2);
    assert_eq!(counters.faults_fired, 1);
    assert_eq!(counters.responses_calls, 2);
}

#[tokio::test]
async fn hold_and_release_through_the_admin_api() {
    let p = FakeProcess::start(&[]);
    let c = common::client();
    let (_, body) = admin(&c, &p, "/accounts", json!({})).await;
    let t: IssuedTokens = serde_json::from_value(body).expect("tokens");
    let (status, _) = admin(&c, &p, "/streams/hold", json!({})).await;
    assert_eq!(status, 200);

    let resp = c
        .post(format!("{}/backend-api/codex/responses", p.url))
        .bearer_auth(&t.access_token)
        .header("ChatGPT-Account-ID", &t.account_id)
        .json(&common::responses_body())
        .send()
        .await
        .expect("responses");
    let mut body = resp.bytes_stream();
    let (mut parser, mut queue) = (codex_vault_testkit::sse::SseParser::new(), Vec::new());
    let first = common::next_event(&mut body, &mut parser, &mut queue)
        .await
        .expect("first");
    assert_eq!(first.event, "response.created");
    assert_eq!(counters(&c, &p).await.responses_completed, 0);

    let (status, _) = admin(&c, &p, "/streams/release", json!({})).await;
    assert_eq!(status, 200);
    let mut last = None;
    while let Some(e) = common::next_event(&mut body, &mut parser, &mut queue).await {
        last = Some(e.event);
    }
    assert_eq!(last.as_deref(), Some("response.completed"));
}

#[test]
fn the_binary_rejects_bad_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-openai"))
        .arg("--bogus")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}
