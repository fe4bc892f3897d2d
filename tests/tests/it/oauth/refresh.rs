//! The refresh grant: rotation, single use, reuse answers, family revocation, revoked accounts.

use crate::common;

use codex_vault_testkit::jwt::decode_claims;
use codex_vault_testkit::{AccountSpec, FakeConfig, FakeOpenAi, ReuseMode, AUTH_CLAIM, CLIENT_ID};
use common::{client, post_responses_as, refresh};
use serde_json::{json, Value};

fn code_of(body: &Value) -> Option<&str> {
    body["error"]["code"]
        .as_str()
        .or_else(|| body["error"].as_str())
}

#[tokio::test]
async fn refresh_rotates_and_the_old_token_is_then_a_reuse() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t0 = fake.add_account(AccountSpec::default());

    let (status, body) = refresh(&c, &fake, &t0.refresh_token).await;
    assert_eq!(status, 200, "{body}");
    let rt1 = body["refresh_token"].as_str().expect("new refresh token");
    assert_ne!(
        rt1, t0.refresh_token,
        "refresh tokens rotate on every success"
    );
    assert!(rt1.starts_with("rt_") && rt1.len() == 67, "{rt1}");
    assert_ne!(body["access_token"], json!(t0.access_token));
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().is_some_and(|s| s > 3000));
    let claims = decode_claims(body["id_token"].as_str().expect("id_token")).expect("claims");
    assert_eq!(
        claims[AUTH_CLAIM]["chatgpt_account_id"],
        json!(t0.account_id)
    );

    // The old token again: 401 refresh_token_reused (the default mode).
    let (status, body) = refresh(&c, &fake, &t0.refresh_token).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": {
            "message": "Your refresh token has already been used to generate a new access token. Please try signing in again.",
            "type": "invalid_request_error", "param": null, "code": "refresh_token_reused"}})
    );

    // Without family revocation the current token still works.
    let (status, body) = refresh(&c, &fake, rt1).await;
    assert_eq!(status, 200, "{body}");

    let counters = fake.counters();
    assert_eq!(counters.token_calls, 3);
    assert_eq!(counters.refreshes_ok, 2);
    assert_eq!(counters.refresh_reuse, 1);
    assert_eq!(counters.refresh_rejected, 0);
    let per = &counters.per_account[&t0.account_id];
    assert_eq!((per.refreshes_ok, per.refresh_reuse), (2, 1));
}

#[tokio::test]
async fn reuse_answers_follow_the_reuse_mode() {
    let fake = FakeOpenAi::start(FakeConfig {
        reuse_mode: ReuseMode::InvalidGrant,
        ..FakeConfig::default()
    })
    .await;
    let c = client();
    let t0 = fake.add_account(AccountSpec::default());
    assert_eq!(refresh(&c, &fake, &t0.refresh_token).await.0, 200);

    let (status, body) = refresh(&c, &fake, &t0.refresh_token).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"].is_string());

    fake.set_reuse_mode(ReuseMode::RefreshTokenReused400);
    let (status, body) = refresh(&c, &fake, &t0.refresh_token).await;
    assert_eq!(
        (status, code_of(&body)),
        (400, Some("refresh_token_reused"))
    );

    fake.set_reuse_mode(ReuseMode::RefreshTokenReused);
    let (status, body) = refresh(&c, &fake, &t0.refresh_token).await;
    assert_eq!(
        (status, code_of(&body)),
        (401, Some("refresh_token_reused"))
    );
    assert_eq!(fake.counters().refresh_reuse, 3);
}

#[tokio::test]
async fn reuse_revokes_the_whole_family_when_switched_on() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    fake.set_family_revoke_on_reuse(true);
    let c = client();
    let t0 = fake.add_account(AccountSpec::default());
    // A second, independent family of the same account must survive.
    let other = fake.issue_grant(&t0.account_id, None);

    let (_, body) = refresh(&c, &fake, &t0.refresh_token).await;
    let rt1 = body["refresh_token"].as_str().expect("rt1").to_string();
    let at1 = body["access_token"].as_str().expect("at1").to_string();
    assert_eq!(
        common::post_responses(&c, &fake, &at1, &t0.account_id)
            .await
            .status(),
        200
    );

    let (status, body) = refresh(&c, &fake, &t0.refresh_token).await;
    assert_eq!(
        (status, code_of(&body)),
        (401, Some("refresh_token_reused"))
    );

    // The reuse took the current token and its access tokens down with it.
    let (status, body) = refresh(&c, &fake, &rt1).await;
    assert_eq!(
        (status, code_of(&body)),
        (401, Some("refresh_token_invalidated"))
    );
    let resp = common::post_responses(&c, &fake, &at1, &t0.account_id).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "token_invalidated");

    // The other family is untouched.
    assert_eq!(refresh(&c, &fake, &other.refresh_token).await.0, 200);
}

#[tokio::test]
async fn a_revoked_account_cannot_refresh_nor_call_the_backend() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    assert_eq!(post_responses_as(&c, &fake, &t).await.status(), 200);

    fake.revoke_account(&t.account_id);
    let (status, body) = refresh(&c, &fake, &t.refresh_token).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": {"message": "Your session has ended. Please log in again.",
            "type": "invalid_request_error", "param": null, "code": "refresh_token_invalidated"}})
    );
    let resp = post_responses_as(&c, &fake, &t).await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "token_invalidated");
    assert_eq!(fake.counters().refresh_rejected, 1);

    // Signing in again afterwards works.
    let fresh = fake.issue_grant(&t.account_id, None);
    assert_eq!(refresh(&c, &fake, &fresh.refresh_token).await.0, 200);
}

#[tokio::test]
async fn id_token_can_be_left_out_of_refresh_answers() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    fake.set_omit_id_token_on_refresh(true);
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    let (status, body) = refresh(&c, &fake, &t.refresh_token).await;
    assert_eq!(status, 200);
    assert!(body.get("id_token").is_none(), "{body}");
    assert!(body["access_token"].is_string() && body["refresh_token"].is_string());

    fake.set_omit_id_token_on_refresh(false);
    let rt = body["refresh_token"].as_str().expect("rt");
    let (_, body) = refresh(&c, &fake, rt).await;
    assert!(body["id_token"].is_string());
}

#[tokio::test]
async fn unknown_tokens_wrong_clients_and_form_bodies() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());

    let (status, body) = refresh(&c, &fake, "rt_not-a-token").await;
    assert_eq!(
        (status, code_of(&body)),
        (401, Some("invalid_refresh_token"))
    );

    let resp = c
        .post(fake.token_url())
        .json(&json!({"client_id": "app_other", "grant_type": "refresh_token", "refresh_token": t.refresh_token}))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");

    // Form-encoded refresh grants are accepted as well.
    let resp = c
        .post(fake.token_url())
        .form(&[
            ("client_id", CLIENT_ID),
            ("grant_type", "refresh_token"),
            ("refresh_token", t.refresh_token.as_str()),
        ])
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );

    let counters = fake.counters();
    assert_eq!(
        (
            counters.token_calls,
            counters.refreshes_ok,
            counters.refresh_rejected
        ),
        (3, 1, 2)
    );
}

#[tokio::test]
async fn out_of_band_rotation_makes_our_copy_a_reuse() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    let theirs = fake.rotate_out_of_band(&t.refresh_token);
    assert_ne!(theirs.refresh_token, t.refresh_token);

    let (status, body) = refresh(&c, &fake, &t.refresh_token).await;
    assert_eq!(
        (status, code_of(&body)),
        (401, Some("refresh_token_reused"))
    );
    // The outsider's token is the current one.
    assert_eq!(refresh(&c, &fake, &theirs.refresh_token).await.0, 200);

    let counters = fake.counters();
    assert_eq!(counters.out_of_band_rotations, 1);
    assert_eq!(
        counters.token_calls, 2,
        "out-of-band rotations do not hit /oauth/token"
    );
    assert!(fake.try_rotate_out_of_band(&t.refresh_token).is_err());
}

#[tokio::test]
async fn revoke_endpoint_ends_the_family() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let t = fake.add_account(AccountSpec::default());
    let resp = c
        .post(format!("{}/oauth/revoke", fake.base_url()))
        .json(&json!({"token": t.refresh_token, "token_type_hint": "refresh_token", "client_id": CLIENT_ID}))
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 200);
    let (status, body) = refresh(&c, &fake, &t.refresh_token).await;
    assert_eq!(
        (status, code_of(&body)),
        (401, Some("refresh_token_invalidated"))
    );
    assert_eq!(post_responses_as(&c, &fake, &t).await.status(), 401);
    assert_eq!(fake.counters().revoke_calls, 1);
}

#[tokio::test]
async fn tokens_carry_the_account_claims() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let spec = AccountSpec {
        email: "ana@corp.example".into(),
        plan: "team".into(),
        fedramp: true,
        ..AccountSpec::default()
    };
    let t = fake.add_account(spec.clone());
    let id = decode_claims(&t.id_token).expect("id claims");
    assert_eq!(id["email"], "ana@corp.example");
    assert_eq!(
        id["https://api.openai.com/profile"]["email"],
        "ana@corp.example"
    );
    let auth = &id[AUTH_CLAIM];
    assert_eq!(auth["chatgpt_account_id"], json!(spec.chatgpt_account_id));
    assert_eq!(auth["chatgpt_user_id"], json!(spec.chatgpt_user_id));
    assert_eq!(auth["user_id"], json!(spec.chatgpt_user_id));
    assert_eq!(auth["chatgpt_plan_type"], "team");
    assert_eq!(auth["chatgpt_account_is_fedramp"], true);
    assert_eq!(id["iss"], json!(fake.base_url()));
    assert_eq!(id["aud"], json!([CLIENT_ID]));

    let access = decode_claims(&t.access_token).expect("access claims");
    let (iat, exp) = (
        access["iat"].as_i64().expect("iat"),
        access["exp"].as_i64().expect("exp"),
    );
    assert_eq!(exp - iat, 3600);
    assert_eq!(
        access[AUTH_CLAIM]["chatgpt_account_id"],
        json!(spec.chatgpt_account_id)
    );
    assert!(t.access_token.len() > 1000, "realistic JWT size");

    // Duration::ZERO: already expired.
    let expired = fake.issue_grant(&t.account_id, Some(std::time::Duration::ZERO));
    let exp = decode_claims(&expired.access_token).expect("claims")["exp"]
        .as_i64()
        .expect("exp");
    assert!(exp < chrono::Utc::now().timestamp());
}
