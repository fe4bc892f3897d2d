//! Account-bound ciphertext and in-stream failures, as the backend does them (protocol.md §
//! Account-bound content): reasoning items carry `encrypted_content` only the minting account
//! can read; another account answers 400 `invalid_encrypted_content` (three shapes);
//! `/responses/compact` mints `compaction` items the same way; `response.failed` faults.

use crate::common;

use codex_vault_testkit::sse::parse_sse;
use codex_vault_testkit::{
    AccountSpec, EncryptedContentError, FakeConfig, FakeOpenAi, Fault, FaultRoute, IssuedTokens,
};
use common::{client, responses_body};
use serde_json::{json, Value};

async fn post(fake: &FakeOpenAi, t: &IssuedTokens, path: &str, body: &Value) -> (u16, String) {
    let resp = client()
        .post(format!("{}{path}", fake.codex_base()))
        .bearer_auth(&t.access_token)
        .header("ChatGPT-Account-ID", &t.account_id)
        .json(body)
        .send()
        .await
        .expect("call");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

fn with_reasoning_include(mut body: Value) -> Value {
    body["include"] = json!(["reasoning.encrypted_content"]);
    body
}

/// The reasoning item a stream carried (from `response.output_item.done`).
fn reasoning_item(sse: &str) -> Value {
    parse_sse(sse)
        .into_iter()
        .find(|e| e.event == "response.output_item.done" && e.data["item"]["type"] == "reasoning")
        .map(|e| e.data["item"].clone())
        .expect("a reasoning item")
}

/// The next turn's body: the history replayed the way the Codex CLI does it (no `id`).
fn replay(items: &[Value]) -> Value {
    let mut body = with_reasoning_include(responses_body());
    let input = body["input"].as_array_mut().unwrap();
    for item in items {
        let mut i = item.clone();
        i.as_object_mut().unwrap().remove("id");
        input.push(i);
    }
    input.push(json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "and again"}]}));
    body
}

#[tokio::test]
async fn reasoning_ciphertext_is_bound_to_the_account_that_minted_it() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let a = fake.add_account(AccountSpec::default());
    let b = fake.add_account(AccountSpec::default());

    // Without `include` there is no reasoning item at all.
    let (status, sse) = post(&fake, &a, "/responses", &responses_body()).await;
    assert_eq!(status, 200);
    assert!(!sse.contains(r#""type":"reasoning""#), "{sse}");

    let (status, sse) = post(
        &fake,
        &a,
        "/responses",
        &with_reasoning_include(responses_body()),
    )
    .await;
    assert_eq!(status, 200);
    let item = reasoning_item(&sse);
    let ct = item["encrypted_content"].as_str().unwrap().to_string();
    assert!(ct.starts_with("gAAAA"), "{ct}");
    assert!(item["id"].as_str().unwrap().starts_with("rs_"));
    let events = parse_sse(&sse);
    // Reasoning first, then the message one output index up; `completed` lists both.
    let msg_done = events
        .iter()
        .find(|e| e.event == "response.output_item.done" && e.data["item"]["type"] == "message")
        .unwrap();
    assert_eq!(msg_done.data["output_index"], 1);
    let completed = events.last().unwrap();
    assert_eq!(completed.event, "response.completed");
    assert_eq!(
        completed.data["response"]["output"][0]["encrypted_content"],
        ct.as_str()
    );
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e.data["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..events.len() as u64).collect::<Vec<_>>());

    // A replays it: accepted. B is handed it: 400, in the default shape.
    let (status, _) = post(
        &fake,
        &a,
        "/responses",
        &replay(std::slice::from_ref(&item)),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = post(
        &fake,
        &b,
        "/responses",
        &replay(std::slice::from_ref(&item)),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["code"], "invalid_encrypted_content");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let msg = err["error"]["message"].as_str().unwrap();
    let abbreviated = format!("{}...{}", &ct[..4], &ct[ct.len() - 4..]);
    assert_eq!(
        msg,
        format!("The encrypted content {abbreviated} could not be verified.")
    );

    // The other two shapes, chosen per account.
    fake.set_encrypted_content_error(&b.account_id, EncryptedContentError::ForItem);
    let (_, body) = post(
        &fake,
        &b,
        "/responses",
        &replay(std::slice::from_ref(&item)),
    )
    .await;
    let err: Value = serde_json::from_str(&body).unwrap();
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("The encrypted content for item rs_"),
        "{msg}"
    );
    assert!(msg.ends_with(
        "could not be verified. Reason: Encrypted content could not be decrypted or parsed."
    ));
    fake.set_encrypted_content_error(&b.account_id, EncryptedContentError::CodeNull);
    let (_, body) = post(
        &fake,
        &b,
        "/responses",
        &replay(std::slice::from_ref(&item)),
    )
    .await;
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["code"], Value::Null);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("could not be verified"));

    // A ciphertext edited by one character is refused by its own account too.
    let mut forged = item.clone();
    let mut chars: Vec<char> = ct.chars().collect();
    chars[30] = if chars[30] == 'A' { 'B' } else { 'A' };
    forged["encrypted_content"] = json!(chars.into_iter().collect::<String>());
    let (status, _) = post(&fake, &a, "/responses", &replay(&[forged])).await;
    assert_eq!(status, 400);

    let n = fake.counters();
    assert_eq!(n.encrypted_content_rejected, 4);
    assert_eq!(n.per_account[&a.account_id].encrypted_minted, 2);
    assert_eq!(n.per_account[&a.account_id].encrypted_accepted, 1);
    assert_eq!(n.per_account[&a.account_id].encrypted_foreign_received, 1);
    assert_eq!(n.per_account[&b.account_id].encrypted_foreign_received, 3);
    assert_eq!(n.per_account[&b.account_id].encrypted_accepted, 0);

    // `mint_encrypted_content`: history from before a proxy ran, bound like any other.
    let old = fake.mint_encrypted_content(&b.account_id);
    let item = json!({"type": "reasoning", "summary": [], "encrypted_content": old});
    let (status, _) = post(&fake, &b, "/responses", &replay(&[item])).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn compaction_items_are_bound_too() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let a = fake.add_account(AccountSpec::default());
    let b = fake.add_account(AccountSpec::default());
    let (status, body) = post(&fake, &a, "/responses/compact", &responses_body()).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "response.compaction");
    let out = v["output"].as_array().unwrap();
    assert_eq!(out[0]["role"], "user", "the user's messages are kept");
    let compaction = out.last().unwrap().clone();
    assert_eq!(compaction["type"], "compaction");
    assert!(compaction["encrypted_content"]
        .as_str()
        .unwrap()
        .starts_with("gAAAA"));
    let (status, _) = post(
        &fake,
        &a,
        "/responses",
        &replay(std::slice::from_ref(&compaction)),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &fake,
        &b,
        "/responses",
        &replay(std::slice::from_ref(&compaction)),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post(&fake, &b, "/responses/compact", &replay(&[compaction])).await;
    assert_eq!(
        status, 400,
        "compacting another account's summary is refused too"
    );
    assert_eq!(fake.counters().compact_calls, 2);
}

#[tokio::test]
async fn in_stream_failures_come_before_or_after_output() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let a = fake.add_account(AccountSpec::default());
    fake.inject_faults(
        FaultRoute::Responses,
        vec![
            Fault::overloaded_in_stream(),
            Fault::usage_limit_in_stream(1_900_000_000),
            Fault::StreamFailed {
                code: "server_is_overloaded".into(),
                message: "Our servers are currently overloaded.".into(),
                resets_at: None,
                after_output: true,
            },
            Fault::InvalidEncryptedContent(EncryptedContentError::ForItem),
        ],
    );
    let kinds = |sse: &str| {
        parse_sse(sse)
            .into_iter()
            .map(|e| e.event)
            .collect::<Vec<_>>()
    };

    let (status, sse) = post(&fake, &a, "/responses", &responses_body()).await;
    assert_eq!(status, 200);
    assert_eq!(
        kinds(&sse),
        [
            "response.created",
            "response.in_progress",
            "response.failed"
        ]
    );
    let failed = parse_sse(&sse).pop().unwrap();
    assert_eq!(failed.data["response"]["status"], "failed");
    assert_eq!(
        failed.data["response"]["error"]["code"],
        "server_is_overloaded"
    );

    let (_, sse) = post(&fake, &a, "/responses", &responses_body()).await;
    let failed = parse_sse(&sse).pop().unwrap();
    assert_eq!(
        failed.data["response"]["error"]["code"],
        "usage_limit_reached"
    );
    assert_eq!(failed.data["response"]["error"]["resets_at"], 1_900_000_000);

    let (_, sse) = post(&fake, &a, "/responses", &responses_body()).await;
    assert_eq!(
        kinds(&sse),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.output_text.delta",
            "response.failed"
        ]
    );

    let (status, body) = post(&fake, &a, "/responses", &responses_body()).await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid_encrypted_content"), "{body}");

    // The queue is spent: normal service.
    let (status, sse) = post(&fake, &a, "/responses", &responses_body()).await;
    assert_eq!(status, 200);
    assert_eq!(
        kinds(&sse).last().map(String::as_str),
        Some("response.completed")
    );
}

#[tokio::test]
async fn the_admin_api_sets_the_new_faults_and_shapes() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let a = fake.add_account(AccountSpec::default());
    let c = client();
    let admin = |path: &str, body: Value| {
        c.post(format!("{}/__admin{path}", fake.base_url()))
            .json(&body)
            .send()
    };
    let r = admin(
        "/faults",
        json!({"route": "responses", "faults": [{"kind": "stream_failed", "code": "usage_limit_reached", "resets_at": 1_900_000_000}]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = admin(
        &format!("/accounts/{}/encrypted_content_error", a.account_id),
        json!({"shape": "code_null"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let (_, sse) = post(&fake, &a, "/responses", &responses_body()).await;
    assert!(sse.contains("usage_limit_reached"), "{sse}");
    let r = admin(
        "/accounts/nope/encrypted_content_error",
        json!({"shape": "for_item"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
}
