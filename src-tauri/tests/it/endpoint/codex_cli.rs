//! The real Codex CLI (npm @openai/codex) pointed at `codex-vault serve` with the snippet from
//! `codex-vault endpoint info`, backed by the fake OpenAI: a turn completes; with the account's
//! token expired, the next turn still completes (the endpoint refreshes).

use crate::common;

use codex_vault_testkit::codex_cli::{CodexExec, CodexHome, ProviderConfig};
use codex_vault_testkit::AccountSpec;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

struct Serve(Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one linear scenario: its steps share one running setup and read top to bottom"
)]
fn the_stock_codex_cli_completes_turns_through_the_endpoint() {
    let Some(bin) = crate::common::real_codex_cli(None) else {
        return;
    };
    let fake = fake();
    fake.set_responses_text("Hello through Codex Vault.");
    let env = TestVault::builder().data_dir();
    let t = fake.add_account(AccountSpec {
        email: "cli@corp.com".into(),
        ..Default::default()
    });
    let p = env.write_file("a.json", auth_json(&t, "2026-01-01T00:00:00Z").as_bytes());
    env.ok(&["accounts", "import", p.to_str().unwrap()]);

    let mut serve = env
        .cmd()
        .args(["serve", "--port", "0"])
        .envs(fake_env(&fake))
        // Everything logged, to check that no secret is.
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(env.dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let line = BufReader::new(serve.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let _serve = Serve(serve);
    assert!(
        line.starts_with("Codex Vault endpoint listening on http://127.0.0.1:"),
        "{line}"
    );

    let info = env.ok(&["endpoint", "info", "--json"]);
    let info: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
    assert_eq!(info["running"], true);
    assert!(
        line.ends_with(info["url"].as_str().unwrap()),
        "{line} vs {info}"
    );
    let key = info["key"].as_str().unwrap().to_string();
    let snippet = info["config_toml"].as_str().unwrap();

    // The snippet verbatim, plus what keeps the CLI offline in a test (no update checks, no analytics).
    let home = CodexHome::new(&ProviderConfig::new(
        info["url"].as_str().unwrap(),
        "CODEX_VAULT_KEY",
    ))
    .unwrap();
    let config = format!(
        "check_for_update_on_startup = false\n{snippet}\n[analytics]\nenabled = false\n\n[feedback]\nenabled = false\n"
    );
    std::fs::write(home.codex_home().join("config.toml"), config).unwrap();
    let run = |prompt: &str| {
        CodexExec::new(bin.clone(), &home, prompt)
            .env("CODEX_VAULT_KEY", key.clone())
            .run_blocking()
            .expect("codex exec ran")
    };
    let r = run("say hi");
    assert!(r.success(), "codex exec failed: {r:?}");
    assert!(r.stdout.contains("Hello through Codex Vault."), "{r:?}");
    let n = fake.counters();
    assert!(n.responses_completed >= 1);
    let headers = n.last_responses_headers.unwrap();
    assert_eq!(
        headers.get("chatgpt-account-id").map(String::as_str),
        Some(t.account_id.as_str())
    );
    assert!(
        headers.contains_key("originator"),
        "the CLI's own headers are forwarded: {headers:?}"
    );
    assert_eq!(n.refreshes_ok, 0);

    // The account's token expires (a newer import of an already-expired grant): the running
    // endpoint picks the change up and refreshes inside the request.
    let expired = fake.issue_grant(&t.account_id, Some(Duration::ZERO));
    let p = env.write_file(
        "b.json",
        auth_json(&expired, "2026-02-01T00:00:00Z").as_bytes(),
    );
    env.ok(&["accounts", "import", p.to_str().unwrap()]);
    // Wait until the running endpoint has picked the change up (it reports the new grant).
    let url = info["url"]
        .as_str()
        .unwrap()
        .trim_end_matches("/v1")
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    wait_until(
        "the endpoint to pick up the import",
        Duration::from_secs(10),
        || {
            let health: serde_json::Value = rt.block_on(async {
                reqwest::Client::new()
                    .get(format!("{url}/v1/accounts"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap()
            });
            health[0]["last_refresh_at"] == "2026-02-01T00:00:00Z"
        },
    );
    let r = run("say hi again");
    assert!(r.success(), "codex exec failed after expiry: {r:?}");
    assert!(r.stdout.contains("Hello through Codex Vault."), "{r:?}");
    assert_eq!(
        fake.counters().refreshes_ok,
        1,
        "the endpoint refreshed once"
    );

    // No token, refresh token or key fragment (16 chars of any) in serve's trace log.
    drop(_serve);
    let log = std::fs::read(env.dir.path().join("serve.log")).unwrap();
    assert!(log.len() > 1000, "the trace log is suspiciously short");
    assert_no_tokens(&log, &t, "serve's log");
    assert_no_tokens(&log, &expired, "serve's log");
    assert!(
        !log.windows(16).any(|w| w == &key.as_bytes()[4..20]),
        "the local key is in the log"
    );
}
