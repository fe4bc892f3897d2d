//! Three real Codex CLI processes (npm @openai/codex 0.169) holding copies of one imported sign-in,
//! each with an expired access token and `CODEX_REFRESH_TOKEN_URL_OVERRIDE` pointed at the
//! broker, started together: the issuer sees exactly one refresh, every CLI ends with tokens the
//! issuer accepts (the vault's own current ones), and the vault's account stays healthy.
//!
//! Why the CLI refreshes at all: codex-rs's auth manager refreshes a ChatGPT sign-in before use
//! when the access token's `exp` has passed (or `last_refresh` is older than 8 days). The grant
//! here is issued already expired, with `last_refresh` a day ago, so only the expiry triggers it.

use crate::common::vault::*;
use codex_vault::vault::Field;
use codex_vault_testkit::codex_cli::{CodexExec, CodexHome, ProviderConfig};
use codex_vault_testkit::{FakeConfig, FakeOpenAi, Fault, FaultRoute};
use serde_json::Value;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::too_many_lines,
    reason = "one linear scenario: its steps share one running setup and read top to bottom"
)]
async fn three_stock_clis_share_one_refresh_through_the_broker() {
    let Some(bin) = crate::common::real_codex_cli(None) else {
        return;
    };
    let mut e = TestVault::builder()
        .fake(FakeConfig {
            responses_text: "Hello after a brokered refresh.".into(),
            ..FakeConfig::default()
        })
        .no_endpoint()
        .start()
        .await;
    let expired = expired_account(&e.fake, "three@corp.com");
    let account_id = e.import(&expired);
    e.serve().await;
    let (fake, ep) = (&e.fake, e.ep());
    let service = &e.core().service;
    let gen0 = service.store().generation(&account_id).unwrap().unwrap();
    // A slow issuer keeps the one refresh in flight while the other CLIs arrive.
    fake.inject_faults(
        FaultRoute::Token,
        vec![Fault::Slow(Duration::from_millis(1500))],
    );

    let provider = ProviderConfig::chatgpt(
        fake.codex_base(),
        format!("{}/backend-api/", fake.base_url()),
    );
    let auth = FakeOpenAi::auth_json(&expired, chrono::Utc::now() - chrono::Duration::days(1));
    let homes: Vec<CodexHome> = (0..3)
        .map(|_| {
            let h = CodexHome::new(&provider).expect("codex home");
            h.write_auth_json(&auth).expect("auth.json");
            h
        })
        .collect();
    let override_url = format!("{}/oauth/token", ep.url());
    let runs = futures_util::future::join_all(homes.iter().map(|h| {
        let mut exec = CodexExec::new(bin.clone(), h, "say hi")
            .env("CODEX_REFRESH_TOKEN_URL_OVERRIDE", override_url.clone());
        exec.timeout = Duration::from_secs(120);
        async move { exec.run().await.expect("codex ran") }
    }))
    .await;

    let n = fake.counters();
    assert_eq!(
        (n.refreshes_ok, n.refresh_reuse, n.refresh_rejected),
        (1, 0, 0),
        "exactly one refresh upstream: {n:?}\n{runs:#?}"
    );
    // The vault moved one generation: the broker's rotation is the account's rotation.
    assert_eq!(
        service.store().generation(&account_id).unwrap(),
        Some(gen0 + 1)
    );
    let s = service.store().secrets(&account_id).unwrap().unwrap();
    let vault_rt = service
        .vault()
        .open(&account_id, Field::RefreshToken, &s.refresh_token)
        .unwrap();
    assert_ne!(vault_rt.expose(), expired.refresh_token);

    for (h, run) in homes.iter().zip(&runs) {
        assert!(
            !run.stderr.contains("refresh token"),
            "a CLI reported a refresh problem:\n{}",
            run.stderr
        );
        let file: Value = serde_json::from_str(
            &std::fs::read_to_string(h.codex_home().join("auth.json")).unwrap(),
        )
        .unwrap();
        let tokens = &file["tokens"];
        assert_eq!(
            tokens["refresh_token"].as_str(),
            Some(vault_rt.expose()),
            "every CLI holds the vault's current refresh token"
        );
        let access = tokens["access_token"].as_str().unwrap();
        assert_ne!(access, expired.access_token);
        assert!(
            accepted(fake, access, &expired.account_id).await,
            "the issuer accepts the CLI's new access token"
        );
    }
    let view = &service.list().unwrap()[0];
    assert_eq!(view.status.as_str(), "healthy", "{view:?}");
    // The shared chain is still live at the issuer: its current token redeems (out of band).
    assert_eq!(fake.counters().refresh_reuse, 0);
    fake.rotate_out_of_band(vault_rt.expose());
    // The CLIs' own turns, run against the fake directly with the brokered tokens.
    for run in &runs {
        assert!(run.success(), "codex exec failed: {run:?}");
        assert!(
            run.stdout.contains("Hello after a brokered refresh."),
            "{run:?}"
        );
    }
}
