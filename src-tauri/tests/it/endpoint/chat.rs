//! `/v1/chat/completions` and `/v1/models` over the real endpoint and the fake backend: the
//! answer streams as upstream produces it, the translated request is what reached the backend,
//! errors come back OpenAI-shaped. Selection (affinity, pins), 401 refresh and 429 failover are
//! the same code path as for `/v1/responses`: `routes.rs` runs those scenarios on both routes.

use crate::common::rest_of;
use crate::common::vault::{chat_turn, TestVault};
use codex_vault_testkit::{Fault, FaultRoute};
use serde_json::{json, Value};

/// The `data:` payloads of an SSE body, in order.
fn data_lines(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_stream_starts_before_upstream_finishes_and_ends_with_done() {
    let rig = TestVault::new(1).await;
    let gate = rig.fake.hold_streams_after_first_output();
    let mut resp = rig.chat(chat_turn(true, None)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let first = resp.chunk().await.unwrap().expect("a first chunk");
    let first: Value = serde_json::from_str(
        String::from_utf8_lossy(&first)
            .trim()
            .strip_prefix("data: ")
            .expect("an SSE data frame"),
    )
    .unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert!(
        !gate.is_released(),
        "the role chunk came through while upstream was still held"
    );
    gate.release();
    let rest = rest_of(&mut resp, "the stream").await;
    let lines = data_lines(&String::from_utf8(rest).unwrap());
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        codex_vault_testkit::FakeConfig::default().responses_text
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "no usage chunk unless stream_options.include_usage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_gets_the_translated_request_and_a_completion_comes_back() {
    let rig = TestVault::new(1).await;
    let resp = rig
        .chat(json!({"model": "gpt-5.5", "temperature": 0.1, "max_tokens": 5, "reasoning_effort": "low",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().contains_key("x-codex-primary-used-percent"),
        "usage headers pass through"
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        codex_vault_testkit::FakeConfig::default()
            .responses_text
            .as_str()
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let sent = rig.fake.counters().last_responses_body.expect("a body");
    assert_eq!(sent["instructions"], "Be brief.");
    assert_eq!(
        (&sent["stream"], &sent["store"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(sent["include"], json!(["reasoning.encrypted_content"]));
    assert_eq!(sent["reasoning"], json!({"effort": "low"}));
    assert!(sent.get("temperature").is_none() && sent.get("max_tokens").is_none());
    assert_eq!(sent["input"][0]["content"][0]["text"], "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_come_back_in_openai_shape() {
    let rig = TestVault::new(1).await;
    // Our own refusal: never reaches the backend.
    let resp = rig
        .chat(json!({"model": "m", "n": 3, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (&v["error"]["type"], &v["error"]["param"]),
        (&json!("invalid_request_error"), &json!("n"))
    );
    assert_eq!(rig.fake.counters().responses_calls, 0);

    rig.fake.inject_faults(
        FaultRoute::Responses,
        vec![
            Fault::Status(503),
            Fault::Custom {
                status: 400,
                content_type: "application/json".into(),
                body: r#"{"detail":"Unsupported model"}"#.into(),
            },
            Fault::Html403,
        ],
    );
    for (status, kind, message) in [
        (503, "server_error", ""),
        (400, "invalid_request_error", "Unsupported model"),
        (403, "upstream_error", "HTTP 403"),
    ] {
        let resp = rig.chat(chat_turn(true, None)).send().await.unwrap();
        assert_eq!(resp.status(), status);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(message),
            "{v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_listed_in_openai_shape_and_the_codex_cli_keeps_its_catalog() {
    let rig = TestVault::new(1).await;
    let get = |q: &str| {
        rig.http
            .get(rig.url(&format!("/v1/models{q}")))
            .bearer_auth(&rig.key)
            .send()
    };
    let v: Value = get("").await.unwrap().json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], codex_vault_testkit::FAKE_MODEL);
    assert_eq!(v["data"][0]["object"], "model");
    let cli: Value = get("?client_version=0.169.0")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cli["models"][0]["slug"], codex_vault_testkit::FAKE_MODEL);
    assert!(cli.get("data").is_none(), "the CLI's shape is passed as is");
    let unauth = rig
        .http
        .get(rig.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unauth.status(),
        401,
        "the local key guards the chat route too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_cut_mid_answer_is_never_passed_off_as_complete() {
    // Taken apart so the fake can be dropped while the rest runs on.
    let TestVault {
        fake,
        dir: _dir,
        service: _service,
        core: _core,
        ep,
        key,
        accounts: _accounts,
        http,
        ..
    } = TestVault::new(1).await;
    let ep = ep.expect("serving");
    let gate = fake.hold_streams_after_first_output();
    let mut resp = http
        .post(format!("{}/v1/chat/completions", ep.url()))
        .bearer_auth(&key)
        .json(&chat_turn(true, None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let first = resp.chunk().await.unwrap().expect("the role chunk");
    assert!(String::from_utf8_lossy(&first).contains("\"role\":\"assistant\""));
    // The backend goes away while its answer is held after the first event.
    drop(fake);
    let mut rest = Vec::new();
    let cut = loop {
        match resp.chunk().await {
            Ok(Some(c)) => rest.extend_from_slice(&c),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(cut, "the client sees the stream cut, not a clean end");
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        !rest.contains("[DONE]") && !rest.contains("finish_reason\":\"stop"),
        "no invented ending: {rest}"
    );
    drop(gate);
}

/// A 200 SSE answer whose stream ends with `event`/`data` after `response.created`.
fn scripted_stream(last_event: &str, last_data: Value) -> Fault {
    let created =
        json!({"type": "response.created", "response": {"id": "resp_x", "status": "in_progress"}});
    let mut last = last_data;
    last["type"] = json!(last_event);
    Fault::Custom {
        status: 200,
        content_type: "text/event-stream".into(),
        body: format!(
            "event: response.created\ndata: {created}\n\nevent: {last_event}\ndata: {last}\n\n"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_incomplete_response_ends_the_chat_answer_honestly() {
    let rig = TestVault::new(1).await;
    let failed = || {
        scripted_stream(
            "response.failed",
            json!({"response": {"id": "resp_x", "status": "failed", "error": {
                "code": "usage_limit_reached", "message": "You've hit your usage limit.", "resets_at": 1767225600}}}),
        )
    };
    let incomplete = scripted_stream(
        "response.incomplete",
        json!({"response": {"id": "resp_x", "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"}}}),
    );
    rig.fake
        .inject_faults(FaultRoute::Responses, vec![failed(), failed(), incomplete]);

    // Streaming: the failure arrives as OpenAI's in-stream error, and no [DONE] follows.
    let body = rig
        .chat(chat_turn(true, None))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines = data_lines(&body);
    assert!(!lines.iter().any(|l| l == "[DONE]"), "{body}");
    let err: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(err["error"]["code"], "usage_limit_reached", "{body}");
    assert_eq!(err["error"]["resets_at"], 1767225600);

    // Not streaming: the same failure is the answer's status and body.
    let resp = rig.chat(chat_turn(false, None)).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["resets_at"], 1767225600, "{v}");

    // Cut short by the output limit: finish_reason length.
    let v: Value = rig
        .chat(chat_turn(false, None))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
}
