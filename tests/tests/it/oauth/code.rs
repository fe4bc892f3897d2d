//! `/oauth/authorize` and the authorization-code grant with PKCE.

use crate::common;

use std::collections::HashMap;

use codex_vault_testkit::jwt::decode_claims;
use codex_vault_testkit::{AccountSpec, FakeConfig, FakeOpenAi, AUTH_CLAIM, CLIENT_ID};
use common::{client, pkce_pair, refresh};
use serde_json::{json, Value};

const REDIRECT: &str = "http://localhost:1455/auth/callback";

/// The authorize URL the CLI opens in the browser.
fn authorize_url(
    fake: &FakeOpenAi,
    redirect: &str,
    challenge: Option<&str>,
    state: &str,
) -> String {
    let mut url = url::Url::parse(&format!("{}/oauth/authorize", fake.base_url())).expect("url");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", CLIENT_ID)
            .append_pair("redirect_uri", redirect)
            .append_pair("scope", "openid profile email offline_access")
            .append_pair("id_token_add_organizations", "true")
            .append_pair("codex_cli_simplified_flow", "true")
            .append_pair("state", state)
            .append_pair("originator", "codex_cli_rs");
        if let Some(c) = challenge {
            q.append_pair("code_challenge", c)
                .append_pair("code_challenge_method", "S256");
        }
    }
    url.into()
}

/// Follows the authorize step by hand: returns the callback's query parameters.
async fn authorize(c: &reqwest::Client, url: &str) -> (u16, Option<HashMap<String, String>>) {
    let resp = c.get(url).send().await.expect("authorize");
    let status = resp.status().as_u16();
    let query = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .and_then(|l| url::Url::parse(l).ok())
        .map(|u| u.query_pairs().into_owned().collect());
    (status, query)
}

async fn exchange(
    c: &reqwest::Client,
    fake: &FakeOpenAi,
    code: &str,
    redirect: &str,
    verifier: &str,
) -> (u16, Value) {
    let resp = c
        .post(fake.token_url())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("client_id", CLIENT_ID),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("exchange");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn pkce_code_flow_signs_in_as_the_login_identity() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let who = AccountSpec {
        email: "bo@example.test".into(),
        ..AccountSpec::default()
    };
    fake.set_login_identity(Some(who.clone()));
    let c = client();
    let (verifier, challenge) = pkce_pair();

    let (status, q) = authorize(
        &c,
        &authorize_url(&fake, REDIRECT, Some(&challenge), "st4te"),
    )
    .await;
    assert_eq!(status, 302);
    let q = q.expect("redirected to the callback");
    assert_eq!(q.get("state").map(String::as_str), Some("st4te"));
    let code = q.get("code").expect("code").clone();

    let (status, body) = exchange(&c, &fake, &code, REDIRECT, &verifier).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let claims = decode_claims(body["id_token"].as_str().expect("id_token")).expect("claims");
    assert_eq!(claims["email"], "bo@example.test");
    assert_eq!(
        claims[AUTH_CLAIM]["chatgpt_account_id"],
        json!(who.chatgpt_account_id)
    );
    // The granted refresh token works.
    let rt = body["refresh_token"].as_str().expect("rt");
    assert_eq!(refresh(&c, &fake, rt).await.0, 200);

    let counters = fake.counters();
    assert_eq!((counters.authorize_calls, counters.code_exchanges), (1, 1));
}

#[tokio::test]
async fn wrong_verifier_and_wrong_redirect_are_invalid_grant() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let (verifier, challenge) = pkce_pair();
    let (other_verifier, _) = pkce_pair();
    let (_, q) = authorize(&c, &authorize_url(&fake, REDIRECT, Some(&challenge), "s")).await;
    let code = q.expect("callback")["code"].clone();

    let (status, body) = exchange(&c, &fake, &code, REDIRECT, &other_verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, body) = exchange(
        &c,
        &fake,
        &code,
        "http://localhost:1457/auth/callback",
        &verifier,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Neither consumed the code: the right request still works.
    let (status, _) = exchange(&c, &fake, &code, REDIRECT, &verifier).await;
    assert_eq!(status, 200);
    assert_eq!(fake.counters().code_exchanges_rejected, 2);
}

#[tokio::test]
async fn a_reused_code_fails_and_revokes_what_it_granted() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let (verifier, challenge) = pkce_pair();
    let (_, q) = authorize(&c, &authorize_url(&fake, REDIRECT, Some(&challenge), "s")).await;
    let code = q.expect("callback")["code"].clone();

    let (status, first) = exchange(&c, &fake, &code, REDIRECT, &verifier).await;
    assert_eq!(status, 200);
    let (status, body) = exchange(&c, &fake, &code, REDIRECT, &verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let rt = first["refresh_token"].as_str().expect("rt");
    let (status, body) = refresh(&c, &fake, rt).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "refresh_token_invalidated");
}

#[tokio::test]
async fn unregistered_redirects_get_an_error_page_not_a_redirect() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let (_, challenge) = pkce_pair();
    for bad in [
        "http://localhost:1456/auth/callback",
        "http://127.0.0.1:1455/auth/callback",
        "http://evil.example/auth/callback",
    ] {
        let (status, q) = authorize(&c, &authorize_url(&fake, bad, Some(&challenge), "s")).await;
        assert_eq!((status, q), (400, None), "{bad}");
    }
    // Registering a test port makes it acceptable.
    fake.register_redirect_port(40123);
    let (status, q) = authorize(
        &c,
        &authorize_url(
            &fake,
            "http://localhost:40123/auth/callback",
            Some(&challenge),
            "s",
        ),
    )
    .await;
    assert_eq!(status, 302);
    assert!(q.expect("callback").contains_key("code"));
}

#[tokio::test]
async fn missing_pkce_redirects_with_invalid_request() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let (status, q) = authorize(&c, &authorize_url(&fake, REDIRECT, None, "xyz")).await;
    assert_eq!(status, 302);
    let q = q.expect("redirect to the callback with an error");
    assert_eq!(q.get("error").map(String::as_str), Some("invalid_request"));
    assert_eq!(q.get("state").map(String::as_str), Some("xyz"));
    assert!(!q.contains_key("code"));

    // A plain (non-S256) method is refused the same way.
    let url = authorize_url(&fake, REDIRECT, None, "xyz")
        + "&code_challenge=abc&code_challenge_method=plain";
    let (_, q) = authorize(&c, &url).await;
    assert_eq!(q.expect("redirect")["error"], "invalid_request");
}

#[tokio::test]
async fn each_sign_in_without_identity_is_a_new_account() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let c = client();
    let mut accounts = Vec::new();
    for _ in 0..2 {
        let (verifier, challenge) = pkce_pair();
        let (_, q) = authorize(&c, &authorize_url(&fake, REDIRECT, Some(&challenge), "s")).await;
        let code = q.expect("callback")["code"].clone();
        let (_, body) = exchange(&c, &fake, &code, REDIRECT, &verifier).await;
        let claims = decode_claims(body["id_token"].as_str().expect("id")).expect("claims");
        accounts.push(claims[AUTH_CLAIM]["chatgpt_account_id"].clone());
    }
    assert_ne!(accounts[0], accounts[1]);
}
