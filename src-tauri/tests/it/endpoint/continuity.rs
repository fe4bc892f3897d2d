//! Conversations survive account changes (in one process, against the fake OpenAI): ciphertext
//! another account minted never reaches an account, unknown ciphertext is retried once without
//! it, a failure in the stream before any output fails over, compaction stays home while it
//! can, and affinity and digests outlive a restart of the endpoint.

use crate::common::vault::*;
use codex_vault::endpoint;
use codex_vault_testkit::sse::parse_sse;
use codex_vault_testkit::{AccountSpec, EncryptedContentError, Fault, FaultRoute};
use serde_json::{json, Value};

fn first_turn(conv: &str) -> Value {
    json!({"model": "gpt-5.5", "instructions": "", "stream": true, "store": false,
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": conv,
        "input": [{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}]})
}

/// The items of an answer the CLI keeps in its history (reasoning and message), without ids.
fn history_of(sse: &str) -> Vec<Value> {
    parse_sse(sse)
        .into_iter()
        .filter(|e| e.event == "response.output_item.done")
        .map(|e| {
            let mut item = e.data["item"].clone();
            if item["type"] == "reasoning" {
                item.as_object_mut().unwrap().remove("id");
            }
            item
        })
        .collect()
}

fn next_turn(mut body: Value, answer: &str) -> Value {
    let input = body["input"].as_array_mut().unwrap();
    input.extend(history_of(answer));
    input.push(
        json!({"type":"message","role":"user","content":[{"type":"input_text","text":"more"}]}),
    );
    body
}

fn completed(sse: &str) -> bool {
    let kinds: Vec<String> = parse_sse(sse).into_iter().map(|e| e.event).collect();
    kinds.last().map(String::as_str) == Some("response.completed")
        && !kinds.iter().any(|k| k == "response.failed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_moves_without_foreign_ciphertext_and_keeps_its_own_across_a_restart() {
    let mut rig = TestVault::new(2).await;
    let (a, b) = (rig.accounts[0].clone(), rig.accounts[1].clone());
    // Turn 1: A (round robin starts with the first account).
    let t1 = first_turn("conv-1");
    let (status, sse1) = rig.turn(&t1).await;
    assert_eq!(status, 200);
    assert!(completed(&sse1));
    assert_eq!(rig.calls(&a), 1);

    // A is capped: turn 2 carries A's reasoning, which B must not be handed.
    let now = chrono::Utc::now().timestamp();
    rig.fake.set_rate_limited(&a.account_id, Some(now + 3600));
    let t2 = next_turn(t1, &sse1);
    let (status, sse2) = rig.turn(&t2).await;
    assert_eq!(status, 200, "{sse2}");
    assert!(completed(&sse2));
    assert_eq!(rig.calls(&b), 1);
    let n = rig.fake.counters();
    assert_eq!(n.encrypted_content_rejected, 0, "no 400 was needed");
    let nb = &n.per_account[&b.account_id];
    assert_eq!(nb.encrypted_foreign_received, 0);
    // The request B got: the whole reasoning item gone, the messages kept.
    let sent = n.last_responses_body.unwrap();
    let items = sent["input"].as_array().unwrap();
    assert!(items.iter().all(|i| i["type"] != "reasoning"), "{sent}");
    assert_eq!(items.len(), t2["input"].as_array().unwrap().len() - 1);

    // Turn 3 stays on B, and B's own reasoning goes to it.
    let t3 = next_turn(t2, &sse2);
    let (status, sse3) = rig.turn(&t3).await;
    assert_eq!(status, 200);
    assert!(completed(&sse3));
    let n = rig.fake.counters();
    let nb = &n.per_account[&b.account_id];
    assert_eq!(nb.responses_calls, 2);
    assert_eq!(nb.encrypted_accepted, 1, "B's own reasoning was kept");
    assert_eq!(nb.encrypted_foreign_received, 0);

    // B counts the conversation as recent.
    let hb = rig.account_view(&b).await;
    assert_eq!(hb["conversations"]["served_last_30_min"], 1, "{hb}");
    let b_id = hb["id"].as_str().unwrap().to_string();

    // A restart: A's limit is lifted upstream and in the store, so round robin alone would now
    // pick A first; affinity and the digests come back from the store.
    rig.fake.set_rate_limited(&a.account_id, None);
    let a_id = rig.account_view(&a).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    rig.restart().await;
    rig.service.store().clear_rate_limit(&a_id).unwrap();
    rig.ep().reload();
    assert_eq!(rig.account_view(&a).await["status"], "healthy");

    // The move was recorded as an event on B (written by the time the endpoint stopped).
    let events = rig.service.store().events(&b_id, 20).unwrap();
    let moved = events
        .iter()
        .find(|e| e.kind == "conversation_moved")
        .expect("a conversation_moved event");
    let detail = moved.detail.as_deref().unwrap();
    assert!(detail.starts_with("conversation moved from "), "{detail}");
    assert!(detail.ends_with("hit its limit"), "{detail}");
    let t4 = next_turn(t3, &sse3);
    let (status, sse4) = rig.turn(&t4).await;
    assert_eq!(status, 200);
    assert!(completed(&sse4));
    let n = rig.fake.counters();
    let nb = &n.per_account[&b.account_id];
    assert_eq!(nb.responses_calls, 3, "turn 4 went to B after the restart");
    assert_eq!(nb.encrypted_accepted, 1 + 2, "B's two reasoning items kept");
    assert_eq!(nb.encrypted_foreign_received, 0, "A's stayed out");
    assert_eq!(n.encrypted_content_rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ciphertext_gets_one_400_and_one_stripped_retry_in_every_shape() {
    let rig = TestVault::new(1).await;
    let a = rig.accounts[0].clone();
    // An account this vault never held minted it: history from before we ran.
    let stranger = rig.fake.add_account(AccountSpec::default());
    let mut rejected = 0;
    for shape in [
        EncryptedContentError::CouldNotBeVerified,
        EncryptedContentError::ForItem,
        EncryptedContentError::CodeNull,
    ] {
        rig.fake.set_encrypted_content_error(&a.account_id, shape);
        let foreign = rig.fake.mint_encrypted_content(&stranger.account_id);
        let own_before = rig
            .fake
            .counters()
            .per_account
            .get(&a.account_id)
            .map_or(0, |c| c.encrypted_accepted);
        let mut body = first_turn(&format!("conv-{shape:?}"));
        let (_, sse) = rig.turn(&body).await;
        body = next_turn(body, &sse); // A's own reasoning, which must survive the strip
        body["input"].as_array_mut().unwrap().insert(
            1,
            json!({"type":"reasoning","summary":[],"encrypted_content": foreign}),
        );
        let calls = rig.fake.counters().responses_calls;
        let (status, sse) = rig.turn(&body).await;
        assert_eq!(status, 200, "{shape:?}: {sse}");
        assert!(
            completed(&sse),
            "{shape:?}: the client sees a normal answer"
        );
        rejected += 1;
        let n = rig.fake.counters();
        assert_eq!(n.encrypted_content_rejected, rejected, "{shape:?}: one 400");
        assert_eq!(
            n.responses_calls,
            calls + 2,
            "{shape:?}: one retry, no loop"
        );
        assert_eq!(
            n.per_account[&a.account_id].encrypted_accepted,
            own_before + 1
        );
    }

    // A rejection that stripping cannot cure is passed on after the one retry.
    rig.fake.inject_faults(
        FaultRoute::Responses,
        vec![
            Fault::InvalidEncryptedContent(EncryptedContentError::CouldNotBeVerified),
            Fault::InvalidEncryptedContent(EncryptedContentError::CouldNotBeVerified),
        ],
    );
    let foreign = rig.fake.mint_encrypted_content(&stranger.account_id);
    let mut body = first_turn("conv-stuck");
    body["input"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type":"reasoning","summary":[],"encrypted_content": foreign}));
    let calls = rig.fake.counters().responses_calls;
    let (status, text) = rig.turn(&body).await;
    assert_eq!(status, 400);
    assert!(text.contains("could not be verified"), "{text}");
    assert_eq!(rig.fake.counters().responses_calls, calls + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_the_stream_before_output_fails_over_and_after_output_passes() {
    let rig = TestVault::new(3).await;
    // Overloaded before any output: the client gets another account's whole stream, and nothing
    // of the first one's.
    rig.fake
        .inject_faults(FaultRoute::Responses, vec![Fault::overloaded_in_stream()]);
    let (status, sse) = rig.turn(&first_turn("conv-o")).await;
    assert_eq!(status, 200);
    assert!(completed(&sse), "{sse}");
    let created: Vec<_> = parse_sse(&sse)
        .into_iter()
        .filter(|e| e.event == "response.created")
        .collect();
    assert_eq!(created.len(), 1, "one clean stream");
    let n = rig.fake.counters();
    assert_eq!(n.responses_calls, 2);
    assert_eq!(
        n.per_account
            .values()
            .filter(|c| c.responses_calls == 1)
            .count(),
        2
    );

    // A usage limit in the stream marks the account rate-limited until its reset.
    let resets_at = chrono::Utc::now().timestamp() + 7200;
    rig.fake.inject_faults(
        FaultRoute::Responses,
        vec![Fault::usage_limit_in_stream(resets_at)],
    );
    let (status, sse) = rig.turn(&first_turn("conv-u")).await;
    assert_eq!(status, 200);
    assert!(completed(&sse), "{sse}");
    // Whichever account took the fault is now limited until `resets_at`; the other answered.
    let health = rig.accounts_view().await;
    let limited: Vec<&Value> = health
        .iter()
        .filter(|v| v["status"] == "rate_limited")
        .collect();
    assert_eq!(limited.len(), 1, "{health:?}");
    assert_eq!(
        limited[0]["rate_limited_until"].as_str().unwrap(),
        chrono::DateTime::from_timestamp(resets_at, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );

    // After output, a failure is the client's to see, unchanged: no retry.
    rig.fake.inject_faults(
        FaultRoute::Responses,
        vec![Fault::StreamFailed {
            code: "server_is_overloaded".into(),
            message: "Our servers are currently overloaded.".into(),
            resets_at: None,
            after_output: true,
        }],
    );
    let calls = rig.fake.counters().responses_calls;
    let (status, sse) = rig.turn(&first_turn("conv-late")).await;
    assert_eq!(status, 200);
    let kinds: Vec<String> = parse_sse(&sse).into_iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.output_text.delta",
            "response.failed"
        ]
    );
    assert_eq!(rig.fake.counters().responses_calls, calls + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_first_byte_hold_off_a_failure_before_output_reaches_the_client() {
    let fault = || vec![Fault::overloaded_in_stream()];
    // Off (the benchmarks' switch): the stream is passed on from its first byte, so the failure
    // is the client's, from the one account that was asked.
    let off = TestVault::with_settings(2, &[(endpoint::SETTING_FIRST_BYTE_HOLD, "off")]).await;
    off.fake.inject_faults(FaultRoute::Responses, fault());
    let (status, sse) = off.turn(&first_turn("conv-off")).await;
    assert_eq!(status, 200);
    let kinds: Vec<String> = parse_sse(&sse).into_iter().map(|e| e.event).collect();
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("response.failed"),
        "{sse}"
    );
    assert!(!completed(&sse));
    assert_eq!(off.fake.counters().responses_calls, 1, "no failover");

    // `on` holds the head and fails over, as the default does (the test above runs without the
    // setting).
    let on = TestVault::with_settings(2, &[(endpoint::SETTING_FIRST_BYTE_HOLD, "on")]).await;
    on.fake.inject_faults(FaultRoute::Responses, fault());
    let (status, sse) = on.turn(&first_turn("conv-on")).await;
    assert_eq!(status, 200);
    assert!(completed(&sse), "{sse}");
    assert_eq!(on.fake.counters().responses_calls, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_byte_hold_setting_is_re_read_when_the_store_changes() {
    // Started with the hold on (the default), then switched off in the store while running: the
    // endpoint's reload (what the bus's StoreChanged/SettingsChanged runs) picks it up, no restart.
    let rig = TestVault::new(2).await;
    rig.service
        .store()
        .set_setting(endpoint::SETTING_FIRST_BYTE_HOLD, "off")
        .unwrap();
    rig.ep().reload();
    rig.fake
        .inject_faults(FaultRoute::Responses, vec![Fault::overloaded_in_stream()]);
    let (status, sse) = rig.turn(&first_turn("conv-live-off")).await;
    assert_eq!(status, 200);
    assert!(!completed(&sse), "the hold is off now: no failover: {sse}");
    assert_eq!(rig.fake.counters().responses_calls, 1, "no failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_fail_over_before_the_first_output_too() {
    let rig = TestVault::new(2).await;
    rig.fake
        .inject_faults(FaultRoute::Responses, vec![Fault::overloaded_in_stream()]);
    let (status, body) = rig
        .post_to(
            "/v1/chat/completions",
            &json!({"model": "gpt-5.5", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    assert!(!body.contains("\"error\""), "{body}");
    let text: String = body
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "Hello from the fake Codex backend.", "{body}");
    let n = rig.fake.counters();
    assert_eq!(n.responses_calls, 2);
    assert_eq!(
        n.per_account
            .values()
            .filter(|c| c.responses_calls == 1)
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_conversation_stays_home_and_says_so_when_it_must_move() {
    let rig = TestVault::new(2).await;
    let (a, b) = (rig.accounts[0].clone(), rig.accounts[1].clone());
    let (status, body) = rig
        .post_to("/v1/responses/compact", &first_turn("conv-c"))
        .await;
    assert_eq!(status, 200, "{body}");
    let compacted: Value = serde_json::from_str(&body).unwrap();
    let home = rig.fake.counters();
    let home_is_a = home
        .per_account
        .get(&a.account_id)
        .is_some_and(|c| c.encrypted_minted == 1);
    let (home, away) = if home_is_a { (&a, &b) } else { (&b, &a) };
    let output = compacted["output"].as_array().unwrap().clone();
    // New conversation keys each time, so plain affinity cannot be what keeps it home.
    for i in 0..4 {
        let mut t = first_turn(&format!("conv-c-{i}"));
        t["input"] = json!(output);
        let (status, sse) = rig.turn(&t).await;
        assert_eq!(status, 200);
        assert!(completed(&sse));
    }
    assert_eq!(
        rig.calls(home),
        4,
        "every turn went where the summary lives"
    );
    assert_eq!(rig.calls(away), 0);

    // The home account is capped: the turn moves, without the summary, and says so.
    rig.fake
        .set_rate_limited(&home.account_id, Some(chrono::Utc::now().timestamp() + 600));
    let mut t = first_turn("conv-c-moved");
    t["input"] = json!(output);
    let (status, sse) = rig.turn(&t).await;
    assert_eq!(status, 200);
    assert!(completed(&sse));
    let n = rig.fake.counters();
    assert_eq!(
        n.per_account[&away.account_id].encrypted_foreign_received,
        0
    );
    let h = rig.account_view(away).await;
    let notes = h["conversations"]["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{h}");
    let msg = notes[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("earlier context was summarised by account "),
        "{msg}"
    );
    assert!(msg.contains("could not move"), "{msg}");
    // The WebSocket upgrade on the compact route is still a clean 426.
    let resp = rig
        .http
        .get(rig.url("/v1/responses/compact"))
        .bearer_auth(&rig.key)
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 426);
}
