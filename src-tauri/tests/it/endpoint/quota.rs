//! Codex's own quota routes under `chatgpt_base_url` (`/backend-api/wham/usage`,
//! `/api/codex/usage`): pooled and pinned figures in the backend's shape, stale figures marked,
//! who may ask, nothing else forwarded with a pool account's token, no consume on anyone's
//! behalf. And redeeming a reset credit: one consume with an idempotency key, a double click
//! and a retry after a lost answer spending one credit, the limit lifted.

use crate::common::vault::{turn, TestVault};
use crate::common::{account, auth_json, env_for, fake, wait_until_async, Run};
use codex_vault_testkit::{AccountSpec, CreditsBalance, Fault, FaultRoute, IssuedTokens};
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn ask(rig: &TestVault, path: &str, bearer: &str, pin: Option<&str>) -> (u16, Value) {
    let mut req = rig.http.get(rig.url(path)).bearer_auth(bearer);
    if let Some(p) = pin {
        req = req.header("x-codex-vault-account", p);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Waits until the endpoint has read every account's `/wham/usage` in full (its extras known).
async fn polled(rig: &TestVault) {
    wait_until_async("every account's usage read in full", WAIT, || async {
        let views = rig.accounts_view().await;
        views
            .iter()
            .all(|v| v["usage"]["quota"]["polled_at"].is_string())
            .then_some(())
            .ok_or_else(|| format!("{views:?}"))
    })
    .await;
}

fn balance(b: &str) -> Option<CreditsBalance> {
    Some(CreditsBalance {
        has_credits: true,
        unlimited: false,
        balance: b.into(),
    })
}

#[tokio::test]
async fn wham_usage_answers_the_pool_and_a_pinned_account_in_the_backends_shape() {
    let rig = TestVault::with_settings(2, &[("endpoint.usage_poll_secs", "0.2")]).await;
    let (a, b) = (&rig.accounts[0], &rig.accounts[1]);
    rig.fake.set_usage(&a.account_id, 20.0, 10.0);
    rig.fake.set_usage(&b.account_id, 60.0, 31.0);
    rig.fake.set_credits_balance(&a.account_id, balance("5.50"));
    rig.fake.set_credits_balance(&b.account_id, balance("1.25"));
    rig.fake
        .grant_reset_credits(&b.account_id, 2, Some(Duration::from_secs(86_400)));
    polled(&rig).await;

    for path in ["/backend-api/wham/usage", "/api/codex/usage"] {
        let (status, v) = ask(&rig, path, &rig.key, None).await;
        assert_eq!(status, 200, "{path}: {v}");
        let rl = &v["rate_limit"];
        assert_eq!(rl["primary_window"]["used_percent"], 40, "the mean: {v}");
        assert_eq!(
            rl["secondary_window"]["used_percent"], 21,
            "20.5 rounded up: {v}"
        );
        assert_eq!(rl["primary_window"]["limit_window_seconds"], 18_000);
        assert_eq!(rl["limit_reached"], false);
        assert_eq!(v["credits"]["balance"], "6.75");
        assert_eq!(v["rate_limit_reset_credits"]["available_count"], 2);
        assert_eq!(v["codex_vault"]["scope"], "pool");
        assert_eq!(v["codex_vault"]["stale"], false);
    }
    let label_b = rig.account_view(b).await["label"].clone();
    let label_b = label_b.as_str();
    let (status, v) = ask(&rig, "/backend-api/wham/usage", &rig.key, label_b).await;
    assert_eq!(status, 200);
    assert_eq!(v["rate_limit"]["primary_window"]["used_percent"], 60);
    assert_eq!(v["credits"]["balance"], "1.25");
    assert_eq!(v["codex_vault"]["account"].as_str(), label_b);
    // Reset credits of that account, as last read.
    let (_, list) = ask(
        &rig,
        "/backend-api/wham/rate-limit-reset-credits",
        &rig.key,
        label_b,
    )
    .await;
    assert_eq!(list["available_count"], 2);
    assert_eq!(list["credits"][0]["status"], "available");
    let (status, v) = ask(&rig, "/backend-api/wham/usage", &rig.key, Some("nobody")).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("unknown_account"))
    );
}

#[tokio::test]
async fn stale_figures_are_marked_and_never_give_headroom() {
    let rig = TestVault::with_settings(2, &[("endpoint.usage_poll_secs", "0.2")]).await;
    let (a, b) = (&rig.accounts[0], &rig.accounts[1]);
    rig.fake.set_usage(&a.account_id, 10.0, 10.0);
    rig.fake.set_usage(&b.account_id, 10.0, 10.0);
    // A's polls are refused (its token no longer works there): its figures go stale.
    rig.fake.revoke_account(&a.account_id);
    let la = rig.account_view(a).await["label"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until_async("A's usage marked stale", WAIT, || async {
        rig.account_view(a).await["usage"]["stale"] == true
    })
    .await;
    wait_until_async("B's usage read", WAIT, || async {
        rig.account_view(b).await["usage"]["quota"]["polled_at"].is_string()
    })
    .await;
    let (_, one) = ask(&rig, "/backend-api/wham/usage", &rig.key, Some(&la)).await;
    assert_eq!(one["codex_vault"]["stale"], true, "{one}");
    assert_eq!(one["rate_limit"]["primary_window"]["used_percent"], 100);
    let (_, pool) = ask(&rig, "/backend-api/wham/usage", &rig.key, None).await;
    assert_eq!(
        pool["codex_vault"]["stale_accounts"],
        serde_json::json!([la])
    );
    assert_eq!(
        pool["rate_limit"]["primary_window"]["used_percent"], 55,
        "A counts as fully used: {pool}"
    );
}

#[tokio::test]
async fn who_may_ask_the_local_key_a_held_accounts_token_and_no_one_else() {
    let rig = TestVault::new(2).await;
    let (a, b) = (&rig.accounts[0], &rig.accounts[1]);
    // A turn for each (round robin): both have figures from the answers' headers.
    for _ in 0..2 {
        let (status, body) = rig.turn(&turn(None)).await;
        assert_eq!(status, 200, "{body}");
    }
    let label_a = rig.account_view(a).await["label"]
        .as_str()
        .unwrap()
        .to_string();
    // A held account's own access token: that account's figures, whatever the pin says.
    let (status, v) = ask(&rig, "/backend-api/wham/usage", &a.access_token, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["codex_vault"]["scope"], "account");
    assert_eq!(v["codex_vault"]["account"], label_a.as_str());
    let label_b = rig.account_view(b).await["label"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, v) = ask(
        &rig,
        "/backend-api/wham/usage",
        &a.access_token,
        Some(&label_b),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("quota_account_mismatch"))
    );
    // A token of an account this vault does not hold, a garbage one, none at all: refused.
    let stranger = rig.fake.add_account(AccountSpec::default());
    for bearer in [stranger.access_token.as_str(), "not-a-token"] {
        let (status, v) = ask(&rig, "/backend-api/wham/usage", bearer, None).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (401, Some("quota_caller_unknown"))
        );
        assert!(
            !v.to_string().contains(bearer),
            "the answer never echoes a token"
        );
    }
    let resp = rig
        .http
        .get(rig.url("/backend-api/wham/usage"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn other_chatgpt_routes_are_not_forwarded_and_consume_never_is() {
    let rig = TestVault::new(1).await;
    let a = &rig.accounts[0];
    rig.fake.grant_reset_credits(&a.account_id, 1, None);
    let before = rig.fake.route_log().len();
    for (bearer, path) in [
        (rig.key.as_str(), "/backend-api/wham/accounts/check"),
        (a.access_token.as_str(), "/backend-api/wham/config/bundle"),
        (rig.key.as_str(), "/api/codex/profiles/me"),
        (rig.key.as_str(), "/backend-api/plugins/list"),
    ] {
        let (status, v) = ask(&rig, path, bearer, None).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (404, Some("chatgpt_route_not_served")),
            "{path}"
        );
    }
    for path in [
        "/backend-api/wham/rate-limit-reset-credits/consume",
        "/api/codex/rate-limit-reset-credits/consume",
    ] {
        for bearer in [rig.key.as_str(), a.access_token.as_str()] {
            let resp = rig
                .http
                .post(rig.url(path))
                .bearer_auth(bearer)
                .json(&serde_json::json!({"redeem_request_id": "x"}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 403, "{path}");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["code"], "reset_not_forwarded");
        }
    }
    assert_eq!(
        rig.fake.route_log().len(),
        before,
        "nothing reached upstream"
    );
    assert_eq!(rig.fake.counters().reset_consume_calls, 0);
    let seen = rig.ep().chatgpt_routes();
    assert!(
        seen.contains(&"GET /backend-api/wham/accounts/check (bearer)".to_string()),
        "{seen:?}"
    );
}

/// A vault whose one account is rate-limited (the endpoint learnt it from a 429) and holds
/// `credits` reset credits.
async fn limited_with_credits(credits: usize) -> (TestVault, String) {
    let rig = TestVault::new(1).await;
    let a = rig.accounts[0].clone();
    let now = chrono::Utc::now().timestamp();
    rig.fake.set_rate_limited(&a.account_id, Some(now + 3_600));
    rig.fake.set_usage(&a.account_id, 100.0, 40.0);
    rig.fake.grant_reset_credits(&a.account_id, credits, None);
    let (status, _) = rig.turn(&turn(None)).await;
    assert_eq!(status, 429);
    assert_eq!(rig.account_view(&a).await["status"], "rate_limited");
    let id = rig.account_view(&a).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    (rig, id)
}

async fn redeem(
    rig: &TestVault,
    id: &str,
) -> Result<codex_vault::accounts::RedeemOutcome, codex_vault::error::AppError> {
    rig.service
        .redeem_reset_at(rig.tm(), id, &rig.fake.codex_base())
        .await
}

fn account_of(rig: &TestVault) -> &IssuedTokens {
    &rig.accounts[0]
}

#[tokio::test]
async fn one_redeem_sends_one_consume_with_an_idempotency_key_and_lifts_the_limit() {
    let (rig, id) = limited_with_credits(2).await;
    let out = redeem(&rig, &id).await.unwrap();
    assert_eq!((out.code.as_str(), out.windows_reset), ("reset", 2));
    assert!(out.limit_lifted && !out.retried && !out.joined);
    let n = rig.fake.counters();
    assert_eq!((n.reset_consume_calls, n.reset_credits_spent), (1, 1));
    assert_eq!(
        n.last_redeem_request_id.as_deref(),
        Some(out.redeem_request_id.as_str())
    );
    // The limit is lifted everywhere: the store, the endpoint's selection, upstream.
    let view = rig.service.view(&id).unwrap();
    assert_eq!(view.status.as_str(), "healthy");
    let usage = view.usage.unwrap();
    assert_eq!(
        usage["quota"]["reset_credits"]["available_count"], 1,
        "accounts list shows the credits left"
    );
    wait_until_async("the endpoint sees the limit lifted", WAIT, || async {
        rig.account_view(account_of(&rig)).await["status"] == "healthy"
    })
    .await;
    let (status, body) = rig.turn(&turn(None)).await;
    assert_eq!(status, 200, "{body}");
    assert!(rig.events(&id).contains(&"reset_redeemed".to_string()));
}

#[tokio::test]
async fn a_double_click_spends_one_credit() {
    let (rig, id) = limited_with_credits(3).await;
    let (one, two) = tokio::join!(redeem(&rig, &id), redeem(&rig, &id));
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(one.redeem_request_id, two.redeem_request_id);
    assert!(one.joined ^ two.joined, "the second joined the first");
    let n = rig.fake.counters();
    assert_eq!((n.reset_consume_calls, n.reset_credits_spent), (1, 1));
}

#[tokio::test]
async fn a_retry_after_a_lost_answer_spends_one_credit() {
    let (rig, id) = limited_with_credits(3).await;
    rig.fake
        .inject_faults(FaultRoute::ResetConsume, vec![Fault::DropAfterHandling]);
    let lost = redeem(&rig, &id).await.unwrap_err();
    assert_eq!(lost.code().as_str(), "redeem_unconfirmed", "{lost}");
    assert_eq!(
        rig.fake.counters().reset_credits_spent,
        1,
        "spent, answer lost"
    );
    let first_id = rig.fake.counters().last_redeem_request_id.unwrap();
    let retry = redeem(&rig, &id).await.unwrap();
    assert!(retry.retried);
    assert_eq!(
        retry.redeem_request_id, first_id,
        "the same idempotency key"
    );
    assert_eq!(retry.code, "reset");
    let n = rig.fake.counters();
    assert_eq!((n.reset_consume_calls, n.reset_credits_spent), (2, 1));
    assert!(retry.limit_lifted);
}

#[tokio::test]
async fn no_credit_is_a_clear_error_and_spends_nothing() {
    let (rig, id) = limited_with_credits(0).await;
    let e = redeem(&rig, &id).await.unwrap_err();
    assert_eq!(e.code().as_str(), "no_reset_credit", "{e}");
    assert_eq!(rig.fake.counters().reset_consume_calls, 0);
}

/// The real Codex CLI with `chatgpt_base_url` pointed at the vault (the opt-in `connect`
/// writes): a `codex exec` turn completes, the routes it asks for there are recorded, and
/// `/wham/usage` answers the pool's figures.
async fn the_real_cli_with_chatgpt_base_url_at_the_vault(version: &'static str) {
    use codex_vault_testkit::codex_cli::{CodexExec, CodexHome, ProviderConfig};
    let Some(bin) = crate::common::real_codex_cli(Some(version)) else {
        return;
    };
    let rig = TestVault::new(2).await;
    rig.fake.set_responses_text("Pooled quota seen.");
    rig.fake.set_usage(&rig.accounts[0].account_id, 30.0, 10.0);
    rig.fake.set_usage(&rig.accounts[1].account_id, 50.0, 20.0);
    let mut provider = ProviderConfig::new(rig.url("/v1"), "CODEX_VAULT_KEY");
    provider.chatgpt_base_url = Some(rig.url("/backend-api/"));
    let home = CodexHome::new(&provider).unwrap();
    let run = CodexExec::new(bin, &home, "say hi")
        .env("CODEX_VAULT_KEY", &rig.key)
        .run()
        .await
        .unwrap();
    assert!(
        run.success(),
        "codex {version}: {}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("Pooled quota seen."), "{}", run.stdout);
    // What the CLI asked for under chatgpt_base_url (printed for docs/protocol.md).
    let seen = rig.ep().chatgpt_routes();
    eprintln!("codex {version} asked the vault's chatgpt_base_url for: {seen:?}");
    assert!(
        seen.iter().all(|r| !r.contains("consume")),
        "no consume: {seen:?}"
    );
    // Nothing the CLI sent there reached upstream with anyone's token.
    let upstream: Vec<String> = rig
        .fake
        .route_log()
        .into_iter()
        .map(|h| h.path)
        .filter(|p| !p.starts_with("/backend-api/codex/"))
        .collect();
    assert!(upstream.is_empty(), "forwarded: {upstream:?}");
    // After the turns the answers' headers gave both accounts figures: the pool's mean.
    for _ in 0..2 {
        rig.turn(&turn(None)).await;
    }
    let (status, v) = ask(&rig, "/backend-api/wham/usage", &rig.key, None).await;
    assert_eq!(status, 200);
    assert_eq!(v["rate_limit"]["primary_window"]["used_percent"], 40, "{v}");
    assert_eq!(v["codex_vault"]["stale"], false, "{v}");
}

#[tokio::test]
async fn the_real_cli_0_169_with_chatgpt_base_url_at_the_vault() {
    the_real_cli_with_chatgpt_base_url_at_the_vault("0.169.0").await;
    signed_in_cli_asks_with_its_own_bearer("0.169.0").await;
}

/// A CLI keeping its own ChatGPT sign-in (a brokered one) with `chatgpt_base_url` at the vault:
/// what it asks there, with its own bearer (the held account's access token), and that the
/// vault answers those with that account's figures or a 404, never forwarding them.
async fn signed_in_cli_asks_with_its_own_bearer(version: &'static str) {
    use codex_vault_testkit::codex_cli::{CodexExec, CodexHome, ProviderConfig};
    let Some(bin) = crate::common::real_codex_cli(Some(version)) else {
        return;
    };
    let rig = TestVault::new(1).await;
    let t = rig.accounts[0].clone();
    let provider = ProviderConfig::chatgpt(rig.fake.codex_base(), rig.url("/backend-api/"));
    let home = CodexHome::new(&provider).unwrap();
    home.write_auth_json(&codex_vault_testkit::FakeOpenAi::auth_json(
        &t,
        chrono::Utc::now(),
    ))
    .unwrap();
    let run = CodexExec::new(bin, &home, "say hi").run().await.unwrap();
    assert!(
        run.success(),
        "codex {version}: {}\n{}",
        run.stdout,
        run.stderr
    );
    let seen = rig.ep().chatgpt_routes();
    eprintln!("codex {version} (signed in) asked the vault's chatgpt_base_url for: {seen:?}");
    let upstream: Vec<String> = rig
        .fake
        .route_log()
        .into_iter()
        .map(|h| h.path)
        .filter(|p| !p.starts_with("/backend-api/codex/") && !p.starts_with("/oauth/"))
        .collect();
    assert!(upstream.is_empty(), "forwarded: {upstream:?}");
    let (status, v) = ask(&rig, "/backend-api/wham/usage", &t.access_token, None).await;
    assert_eq!(
        (status, v["codex_vault"]["scope"].as_str()),
        (200, Some("account"))
    );
}

#[tokio::test]
async fn the_real_cli_0_171_with_chatgpt_base_url_at_the_vault() {
    the_real_cli_with_chatgpt_base_url_at_the_vault("0.171.0").await;
    signed_in_cli_asks_with_its_own_bearer("0.171.0").await;
}

/// `accounts redeem-reset` through the real binary: without `--yes` it spends nothing and says
/// why; with it, one consume call, one credit, and `accounts list` shows what is left.
#[test]
fn the_cli_redeems_only_with_yes_and_spends_one_credit() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "redeemer@corp.com", "pro");
    let now = chrono::Utc::now().timestamp();
    fake.set_rate_limited(&t.account_id, Some(now + 3_600));
    fake.set_usage(&t.account_id, 100.0, 40.0);
    fake.grant_reset_credits(&t.account_id, 2, None);
    let p = env.write_file(
        "redeemer.json",
        auth_json(&t, &chrono::Utc::now().to_rfc3339()).as_bytes(),
    );
    env.ok(&[
        "accounts",
        "import",
        p.to_str().unwrap(),
        "--label",
        "redeemer",
    ]);
    let run = |args: &[&str]| {
        let mut c = env.cmd();
        env_for(&env, &fake)(&mut c);
        Run::from(c.args(args).output().expect("spawn codex-vault"))
    };

    let asked = run(&["accounts", "redeem-reset", "redeemer"]);
    assert_ne!(asked.code, 0, "{}", asked.stdout);
    assert!(
        asked.stderr.contains("[confirmation_required]") && asked.stderr.contains("--yes"),
        "{}",
        asked.stderr
    );
    let n = fake.counters();
    assert_eq!((n.reset_consume_calls, n.reset_credits_spent), (0, 0));

    let done = run(&["accounts", "redeem-reset", "redeemer", "--yes", "--json"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let out: Value = serde_json::from_str(&done.stdout).expect("--json is JSON");
    assert_eq!(out["label"], "redeemer");
    assert_eq!(out["code"], "reset");
    assert_eq!(out["limit_lifted"], true, "{out}");
    let n = fake.counters();
    assert_eq!((n.reset_consume_calls, n.reset_credits_spent), (1, 1));
    assert_eq!(
        n.last_redeem_request_id.as_deref(),
        out["redeem_request_id"].as_str()
    );
    let listed = &env.list_json()[0];
    assert_eq!(
        listed["usage"]["quota"]["reset_credits"]["available_count"], 1,
        "{listed}"
    );
    for secret in [&t.access_token, &t.refresh_token] {
        assert!(!done.stdout.contains(secret.as_str()) && !done.stderr.contains(secret.as_str()));
    }
}
