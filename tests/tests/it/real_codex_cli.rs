//! The fake checked against the real Codex CLI (0.169.0), so it cannot drift into agreeing with
//! our own bugs. Needs the CLI installed (see the failure message); `CODEX_VAULT_SKIP_CODEX_CLI=1`
//! skips.

use std::time::Duration;

use codex_vault_testkit::codex_cli::{
    codex_cli_bin, skip_requested, CodexExec, CodexHome, ProviderConfig,
};
use codex_vault_testkit::{AccountSpec, FakeConfig, FakeOpenAi};
use serde_json::Value;

const TEXT: &str = "Hi from the fake, via the real CLI.";

fn cli_or_skip() -> Option<std::path::PathBuf> {
    if skip_requested() {
        eprintln!("skipped: CODEX_VAULT_SKIP_CODEX_CLI=1");
        return None;
    }
    match codex_cli_bin() {
        Ok(bin) => Some(bin),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn codex_exec_completes_a_turn_against_the_fake_backend() {
    let Some(bin) = cli_or_skip() else { return };
    let fake = FakeOpenAi::start(FakeConfig {
        responses_text: TEXT.into(),
        ..FakeConfig::default()
    })
    .await;
    let t = fake.add_account(AccountSpec::default());

    let provider = ProviderConfig::new(fake.codex_base(), "CODEX_VAULT_TEST_KEY")
        .header("ChatGPT-Account-ID", &t.account_id);
    let home = CodexHome::new(&provider).expect("codex home");
    let mut exec =
        CodexExec::new(bin, &home, "say hi").env("CODEX_VAULT_TEST_KEY", &t.access_token);
    exec.timeout = Duration::from_secs(90);
    let run = exec.run().await.expect("codex ran");

    assert!(
        run.success(),
        "codex exec failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.contains(TEXT),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let counters = fake.counters();
    assert!(counters.responses_calls >= 1);
    assert!(counters.responses_completed >= 1);
    let headers = counters.last_responses_headers.expect("headers");
    assert_eq!(headers["chatgpt-account-id"], t.account_id);
    assert!(headers["user-agent"].contains("0.169.0"), "{headers:?}");
    let body = counters.last_responses_body.expect("body");
    assert_eq!(body["stream"], Value::Bool(true));
    assert_eq!(body["store"], Value::Bool(false));
}

/// With its own ChatGPT sign-in and an expired access token, the CLI refreshes at the fake
/// (`CODEX_REFRESH_TOKEN_URL_OVERRIDE`), rewrites its `auth.json`, fetches `/models` (our shape
/// must deserialize) and completes the turn with the new token.
#[tokio::test]
async fn codex_with_chatgpt_auth_refreshes_at_the_fake() {
    let Some(bin) = cli_or_skip() else { return };
    let fake = FakeOpenAi::start(FakeConfig {
        responses_text: TEXT.into(),
        ..FakeConfig::default()
    })
    .await;
    let account = fake.add_account(AccountSpec::default());
    let expired = fake.issue_grant(&account.account_id, Some(Duration::ZERO));

    let provider = ProviderConfig::chatgpt(
        fake.codex_base(),
        format!("{}/backend-api/", fake.base_url()),
    );
    let home = CodexHome::new(&provider).expect("codex home");
    home.write_auth_json(&FakeOpenAi::auth_json(
        &expired,
        chrono::Utc::now() - chrono::Duration::days(1),
    ))
    .expect("auth.json");
    let mut exec = CodexExec::new(bin, &home, "say hi")
        .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", fake.token_url());
    exec.timeout = Duration::from_secs(90);
    let run = exec.run().await.expect("codex ran");
    assert!(
        run.success(),
        "codex exec failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains(TEXT), "stdout:\n{}", run.stdout);

    let counters = fake.counters();
    assert_eq!(counters.refreshes_ok, 1, "{counters:?}");
    assert_eq!(counters.refresh_reuse + counters.refresh_rejected, 0);
    assert!(counters.models_calls >= 1);
    assert!(counters.responses_completed >= 1);

    // The CLI stored the rotated tokens: its old refresh token is now a reuse, the new one works.
    let auth: Value = serde_json::from_str(
        &std::fs::read_to_string(home.codex_home().join("auth.json")).expect("auth.json"),
    )
    .expect("json");
    let new_rt = auth["tokens"]["refresh_token"]
        .as_str()
        .expect("refresh token");
    assert_ne!(new_rt, expired.refresh_token);
    assert!(fake.try_rotate_out_of_band(&expired.refresh_token).is_err());
    fake.rotate_out_of_band(new_rt);
    // And the model catalog we served is the one it cached.
    let cache = std::fs::read_to_string(home.codex_home().join("models_cache.json"))
        .expect("models_cache.json");
    assert!(cache.contains(codex_vault_testkit::FAKE_MODEL));
}

/// Makes a grant unusable the way the world can.
type Spoil = fn(&FakeOpenAi, &codex_vault_testkit::IssuedTokens);

/// Our refresh error shapes are the ones the real CLI classifies: a revoked session and a reused
/// refresh token each make it give up with its specific message (and no retry loop).
#[tokio::test]
async fn codex_recognises_revoked_and_reused_refresh_tokens() {
    let Some(bin) = cli_or_skip() else { return };
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let provider = ProviderConfig::chatgpt(
        fake.codex_base(),
        format!("{}/backend-api/", fake.base_url()),
    );

    let cases: [(&str, Spoil); 2] = [
        ("refresh token was revoked", |fake, t| {
            fake.revoke_account(&t.account_id)
        }),
        ("refresh token was already used", |fake, t| {
            fake.rotate_out_of_band(&t.refresh_token);
        }),
    ];
    for (expected, spoil) in cases {
        let account = fake.add_account(AccountSpec::default());
        let expired = fake.issue_grant(&account.account_id, Some(Duration::ZERO));
        spoil(&fake, &expired);
        let home = CodexHome::new(&provider).expect("codex home");
        home.write_auth_json(&FakeOpenAi::auth_json(&expired, chrono::Utc::now()))
            .expect("auth.json");
        let mut exec = CodexExec::new(bin.clone(), &home, "say hi")
            .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", fake.token_url());
        exec.timeout = Duration::from_secs(90);
        let run = exec.run().await.expect("codex ran");
        assert!(!run.success(), "must fail: {expected}\n{}", run.stdout);
        assert!(
            run.stderr.contains(expected),
            "expected {expected:?} in stderr:\n{}",
            run.stderr
        );
    }
    let counters = fake.counters();
    assert!(
        counters.refresh_rejected >= 1 && counters.refresh_reuse >= 1,
        "{counters:?}"
    );
    assert_eq!(counters.refreshes_ok, 0);
    assert_eq!(counters.responses_completed, 0);
}
