//! The quota surfaces beyond the two windows: `/wham/usage` extras, reset credits and their
//! idempotent consume, the route log.

use crate::common::{client, post_responses};

use std::time::Duration;

use codex_vault_testkit::{
    AccountSpec, AdditionalLimit, CreditsBalance, FakeConfig, FakeOpenAi, Fault, FaultRoute,
};
use serde_json::{json, Value};

async fn get(
    c: &reqwest::Client,
    fake: &FakeOpenAi,
    path: &str,
    t: &codex_vault_testkit::IssuedTokens,
) -> (u16, Value) {
    let resp = c
        .get(format!("{}/backend-api{path}", fake.base_url()))
        .bearer_auth(&t.access_token)
        .header("ChatGPT-Account-ID", &t.account_id)
        .send()
        .await
        .expect("get");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn consume(
    c: &reqwest::Client,
    fake: &FakeOpenAi,
    t: &codex_vault_testkit::IssuedTokens,
    body: Value,
) -> Result<(u16, Value), reqwest::Error> {
    let resp = c
        .post(format!(
            "{}/backend-api/wham/rate-limit-reset-credits/consume",
            fake.base_url()
        ))
        .bearer_auth(&t.access_token)
        .header("ChatGPT-Account-ID", &t.account_id)
        .json(&body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn usage_reports_integer_windows_and_the_extras_when_set() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec {
        plan: "free".into(),
        ..Default::default()
    });
    fake.set_usage(&t.account_id, 12.4, 0.0);
    let (status, v) = get(&c, &fake, "/wham/usage", &t).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["rate_limit"]["primary_window"]["used_percent"],
        json!(12),
        "an integer: {v}"
    );
    assert_eq!(v["rate_limit_reset_credits"]["available_count"], 0);
    assert!(v.get("additional_rate_limits").is_none());

    fake.set_windows(&t.account_id, 2_592_000, None);
    fake.set_credits_balance(
        &t.account_id,
        Some(CreditsBalance {
            has_credits: true,
            unlimited: false,
            balance: "7.25".into(),
        }),
    );
    fake.set_additional_limits(
        &t.account_id,
        vec![AdditionalLimit {
            limit_name: "GPT-5.3-Codex-Spark".into(),
            metered_feature: "codex_bengalfox".into(),
            used_percent: 100.0,
            window_secs: 18_000,
            reset_at: chrono::Utc::now().timestamp() + 600,
        }],
    );
    fake.grant_reset_credits(&t.account_id, 2, Some(Duration::from_secs(86_400)));
    let (_, v) = get(&c, &fake, "/wham/usage", &t).await;
    assert_eq!(
        v["rate_limit"]["primary_window"]["limit_window_seconds"], 2_592_000,
        "monthly"
    );
    assert_eq!(v["rate_limit"]["secondary_window"], Value::Null);
    assert_eq!(v["credits"]["balance"], "7.25");
    assert_eq!(
        v["additional_rate_limits"][0]["rate_limit"]["limit_reached"],
        true
    );
    assert_eq!(v["rate_limit_reset_credits"]["available_count"], 2);
}

#[tokio::test]
async fn a_consume_spends_one_credit_lifts_the_limit_and_a_retry_spends_nothing() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    let ids = fake.grant_reset_credits(&t.account_id, 2, None);
    let (_, list) = get(&c, &fake, "/wham/rate-limit-reset-credits", &t).await;
    assert_eq!(list["available_count"], 2);
    assert_eq!(list["credits"][0]["reset_type"], "codex_rate_limits");
    assert_eq!(list["credits"][0]["status"], "available");

    // Nothing used: nothing to reset, nothing spent.
    let (_, nothing) = consume(&c, &fake, &t, json!({"redeem_request_id": "r0"}))
        .await
        .unwrap();
    assert_eq!(nothing["code"], "nothing_to_reset");

    let until = chrono::Utc::now().timestamp() + 3_600;
    fake.set_rate_limited(&t.account_id, Some(until));
    fake.set_usage(&t.account_id, 40.0, 30.0);
    assert_eq!(
        post_responses(&c, &fake, &t.access_token, &t.account_id)
            .await
            .status(),
        429
    );
    let body = json!({"redeem_request_id": "r1", "credit_id": ids[0]});
    let (status, first) = consume(&c, &fake, &t, body.clone()).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(first, json!({"code": "reset", "windows_reset": 2}));
    assert_eq!(
        post_responses(&c, &fake, &t.access_token, &t.account_id)
            .await
            .status(),
        200
    );
    let (_, again) = consume(&c, &fake, &t, body).await.unwrap();
    assert_eq!(again, first, "the same id answers the same");
    let n = fake.counters();
    assert_eq!((n.reset_consume_calls, n.reset_credits_spent), (3, 1));
    assert_eq!(n.last_redeem_request_id.as_deref(), Some("r1"));
    let (_, list) = get(&c, &fake, "/wham/rate-limit-reset-credits", &t).await;
    assert_eq!(list["available_count"], 1);
    let (_, spent) = consume(
        &c,
        &fake,
        &t,
        json!({"redeem_request_id": "r2", "credit_id": ids[0]}),
    )
    .await
    .unwrap();
    assert_eq!(spent["code"], "already_redeemed");
    let (status, _) = consume(&c, &fake, &t, json!({"credit_id": ids[1]}))
        .await
        .unwrap();
    assert_eq!(status, 400, "redeem_request_id is required");
}

#[tokio::test]
async fn a_dropped_consume_answer_spends_and_its_retry_does_not() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    fake.grant_reset_credits(&t.account_id, 3, None);
    fake.set_usage(&t.account_id, 90.0, 10.0);
    fake.inject_faults(FaultRoute::ResetConsume, vec![Fault::DropAfterHandling]);
    let body = json!({"redeem_request_id": "lost-once"});
    assert!(
        consume(&c, &fake, &t, body.clone()).await.is_err(),
        "the answer is lost"
    );
    assert_eq!(
        fake.counters().reset_credits_spent,
        1,
        "but the credit was spent"
    );
    let (_, retry) = consume(&c, &fake, &t, body).await.unwrap();
    assert_eq!(retry["code"], "reset");
    assert_eq!(fake.counters().reset_credits_spent, 1);
}

#[tokio::test]
async fn the_route_log_names_every_request_and_unknown_backend_routes_are_404() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    let (status, _) = get(&c, &fake, "/wham/accounts/check", &t).await;
    assert_eq!(status, 404);
    let resp = c
        .get(format!("{}/api/codex/usage", fake.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let log = fake.route_log();
    assert_eq!(log[0].path, "/backend-api/wham/accounts/check");
    assert!(log[0].bearer);
    assert_eq!(
        (log[1].method.as_str(), log[1].path.as_str(), log[1].bearer),
        ("GET", "/api/codex/usage", false)
    );
}
