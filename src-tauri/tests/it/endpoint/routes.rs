//! The routing scenarios, run once for each client-facing route (`/v1/responses` as the Codex CLI
//! streams it, `/v1/chat/completions` streamed and not): refresh on 401, failover on 429 and the
//! all-capped answer, conversation affinity, spreading, and pinning. The answer shapes differ by
//! route; the routing underneath is one.

use crate::common::vault::{chat_turn, turn, TestVault};
use codex_vault_testkit::{Fault, FaultRoute};
use serde_json::Value;

#[derive(Clone, Copy, Debug)]
enum Route {
    Responses,
    Chat,
}

impl Route {
    /// One turn on this route; `stream` only for chat (the Responses route is always streamed).
    fn send(self, rig: &TestVault, stream: bool, key: Option<&str>) -> reqwest::RequestBuilder {
        match self {
            Route::Responses => rig.post(turn(key)),
            Route::Chat => rig.chat(chat_turn(stream, key)),
        }
    }

    /// The turn's answer came back complete, in this route's shape.
    fn assert_completed(self, body: &[u8]) {
        match self {
            Route::Responses => {
                assert!(String::from_utf8_lossy(body).contains("response.completed"));
            }
            Route::Chat => {
                let v: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(v["choices"][0]["finish_reason"], "stop");
            }
        }
    }
}

async fn a_401_refreshes_once_and_retries(route: Route) {
    let rig = TestVault::new(1).await;
    rig.fake.inject_faults(
        FaultRoute::Responses,
        vec![Fault::Custom {
            status: 401,
            content_type: "application/json".into(),
            body: r#"{"error":{"message":"Provided authentication token is expired. Please try signing in again.","type":"invalid_request_error","code":"token_expired"}}"#.into(),
        }],
    );
    let resp = route.send(&rig, false, None).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    route.assert_completed(&resp.bytes().await.unwrap());
    let n = rig.fake.counters();
    assert_eq!(n.refreshes_ok, 1, "exactly one refresh");
    assert_eq!(n.responses_calls, 2, "the request was retried once");
}

async fn a_429_fails_over_and_all_capped_answers_429_with_the_earliest_reset(route: Route) {
    let rig = TestVault::new(2).await;
    let now = chrono::Utc::now().timestamp();
    let (a, b) = (&rig.accounts[0], &rig.accounts[1]);
    rig.fake.set_rate_limited(&a.account_id, Some(now + 3600));
    // Round robin starts with the first account, so A is tried first and B answers.
    for stream in [true, false] {
        let resp = route.send(&rig, stream, None).send().await.unwrap();
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
    let ha = rig.account_view(a).await;
    assert_eq!(ha["status"], "rate_limited");
    assert_eq!(
        ha["rate_limited_until"].as_str().unwrap(),
        chrono::DateTime::from_timestamp(now + 3600, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );

    rig.fake.set_rate_limited(&b.account_id, Some(now + 600));
    let resp = route.send(&rig, true, None).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "usage_limit_reached");
    if let Route::Chat = route {
        assert_eq!(v["error"]["code"], "usage_limit_reached");
    }
    assert_eq!(
        v["error"]["resets_at"],
        now + 600,
        "the earliest reset: {v}"
    );
}

/// Sends `n` turns with `key` (and the session header if given), each answer read to the end.
async fn turns(rig: &TestVault, route: Route, n: usize, key: Option<&str>, session: Option<&str>) {
    for i in 0..n {
        let mut req = route.send(rig, i % 2 == 0, key);
        if let Some(s) = session {
            req = req.header("session_id", s);
        }
        req.send().await.unwrap().bytes().await.unwrap();
    }
}

async fn conversations_stick_new_ones_spread_and_pins_work(route: Route) {
    let rig = TestVault::new(3).await;
    turns(&rig, route, 20, Some("conversation-1"), None).await;
    let calls = rig.per_account_calls();
    assert_eq!(
        calls.iter().filter(|c| **c > 0).count(),
        1,
        "one conversation, one account: {calls:?}"
    );
    assert_eq!(calls.iter().sum::<u64>(), 20);
    // The session header is a conversation key as well.
    turns(&rig, route, 5, None, Some("s-42")).await;
    let after_session = rig.per_account_calls();
    let moved: Vec<u64> = after_session
        .iter()
        .zip(&calls)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(
        moved.iter().filter(|m| **m > 0).count(),
        1,
        "one session, one account: {moved:?}"
    );
    for i in 0..20 {
        turns(&rig, route, 1, Some(&format!("k{i}")), None).await;
    }
    let after = rig.per_account_calls();
    let used = after
        .iter()
        .zip(&after_session)
        .filter(|(a, b)| a > b)
        .count();
    assert!(
        used >= 2,
        "20 conversations used {used} account(s): {after:?}"
    );

    let before = rig.per_account_calls()[2];
    let resp = route
        .send(&rig, false, None)
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
    let resp = route
        .send(&rig, false, None)
        .header("x-codex-vault-account", "nobody")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    match route {
        Route::Responses => assert!(text.contains("x-codex-vault-account"), "{text}"),
        Route::Chat => {
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["code"], "unknown_account", "{v}");
        }
    }
}

/// Each scenario as one test per route: `endpoint::routes::responses::…` and
/// `endpoint::routes::chat_completions::…`.
macro_rules! for_each_route {
    ($($scenario:ident),* $(,)?) => {
        mod responses {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Route::Responses).await;
                }
            )*
        }
        mod chat_completions {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Route::Chat).await;
                }
            )*
        }
    };
}

for_each_route!(
    a_401_refreshes_once_and_retries,
    a_429_fails_over_and_all_capped_answers_429_with_the_earliest_reset,
    conversations_stick_new_ones_spread_and_pins_work,
);
