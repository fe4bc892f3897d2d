//! The real Codex CLI (0.169.0 and 0.171.0) keeps a conversation going through `codex-vault
//! serve` while accounts change under it: turn 1 on A; A is capped; `codex exec resume --last`
//! turn 2 is answered by B without A's reasoning ciphertext (which B could not read); turn 3
//! stays on B with B's own reasoning still sent; `serve` restarts (and A is usable again) and
//! turn 4 still goes to B with B's reasoning kept.

use crate::common;

use codex_vault_testkit::codex_cli::{CodexExec, CodexHome, CodexRun, ProviderConfig};
use codex_vault_testkit::AccountSpec;
use common::*;

struct Cli<'a> {
    bin: std::path::PathBuf,
    home: &'a CodexHome,
    key: String,
}

impl Cli<'_> {
    fn run(&self, resume: bool, prompt: &str) -> CodexRun {
        let mut exec = CodexExec::new(self.bin.clone(), self.home, prompt)
            .env("CODEX_VAULT_KEY", self.key.clone());
        if resume {
            exec = exec.arg("resume").arg("--last");
        }
        let r = exec.run_blocking().expect("codex exec ran");
        assert!(r.success(), "codex exec failed: {r:?}");
        r
    }
}

/// Points the CLI's config at a (re)started endpoint: the `endpoint info` snippet verbatim, plus
/// what keeps the CLI offline in a test.
fn configure(env: &DataDir, home: &CodexHome) -> String {
    let info = env.ok(&["endpoint", "info", "--json"]);
    let info: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
    let config = format!(
        "check_for_update_on_startup = false\n{}\n[analytics]\nenabled = false\n\n[feedback]\nenabled = false\n",
        info["config_toml"].as_str().unwrap()
    );
    std::fs::write(home.codex_home().join("config.toml"), config).unwrap();
    info["key"].as_str().unwrap().to_string()
}

#[allow(
    clippy::too_many_lines,
    reason = "one linear scenario: its steps share one running setup and read top to bottom"
)]
fn scenario(version: &'static str) {
    let Some(bin) = crate::common::real_codex_cli(Some(version)) else {
        return;
    };
    let fake = fake();
    fake.set_responses_text("Hello through Codex Vault.");
    let env = TestVault::builder().data_dir();
    let mut tokens = Vec::new();
    for label in ["a", "b"] {
        let t = fake.add_account(AccountSpec {
            email: format!("{label}@corp.com"),
            ..Default::default()
        });
        let p = env.write_file(
            &format!("{label}.json"),
            auth_json(&t, "2026-01-01T00:00:00Z").as_bytes(),
        );
        env.ok(&["accounts", "import", p.to_str().unwrap(), "--label", label]);
        tokens.push(t);
    }
    let envs = fake_env(&fake);
    let mut serve = env.spawn_serve(&envs, env.dir.path().join("serve1.log"));
    let home = CodexHome::new(&ProviderConfig::new(
        "http://127.0.0.1:1/v1",
        "CODEX_VAULT_KEY",
    ))
    .unwrap();
    let key = configure(&env, &home);
    let cli = Cli {
        bin,
        home: &home,
        key,
    };

    // Turn 1: whoever the endpoint picks is "A" from here on.
    let r = cli.run(false, "say hi");
    assert!(r.stdout.contains("Hello through Codex Vault."), "{r:?}");
    let body = fake.counters().last_responses_body.unwrap();
    assert!(
        body["include"]
            .as_array()
            .is_some_and(|i| i.iter().any(|v| v == "reasoning.encrypted_content")),
        "CLI {version} asks for reasoning ciphertext: {body}"
    );
    let (a, b) = if per_account(&fake, &tokens[0].account_id).responses_calls == 1 {
        (&tokens[0], &tokens[1])
    } else {
        (&tokens[1], &tokens[0])
    };
    assert_eq!(per_account(&fake, &a.account_id).responses_calls, 1);
    assert_eq!(per_account(&fake, &a.account_id).encrypted_minted, 1);

    // A is capped upstream (a 429 usage limit). Turn 2 is B's, with A's reasoning left out.
    let now = chrono::Utc::now().timestamp();
    fake.set_rate_limited(&a.account_id, Some(now + 3600));
    let r = cli.run(true, "and then?");
    assert!(r.stdout.contains("Hello through Codex Vault."), "{r:?}");
    let sent = fake.counters().last_responses_body.unwrap();
    let replayed_reasoning = sent["input"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "reasoning")
        .count();
    let nb = per_account(&fake, &b.account_id);
    assert_eq!(nb.responses_calls, 1, "turn 2 was answered by B");
    assert_eq!(
        nb.encrypted_foreign_received, 0,
        "A's ciphertext never reached B"
    );
    assert_eq!(
        replayed_reasoning, 0,
        "A's reasoning item was dropped whole"
    );
    assert_eq!(fake.counters().encrypted_content_rejected, 0);

    // Turn 3 stays on B, and B's own reasoning from turn 2 goes with it.
    cli.run(true, "one more");
    let nb = per_account(&fake, &b.account_id);
    assert_eq!(nb.responses_calls, 2, "turn 3 stayed on B");
    assert_eq!(nb.encrypted_accepted, 1, "B's reasoning was sent to B");
    assert_eq!(nb.encrypted_foreign_received, 0);

    assert_turns_logged(&env, version, a, b);

    // Restart serve. A's window resets meanwhile (upstream and in the store), so only the
    // remembered affinity keeps the conversation on B.
    assert_eq!(serve.terminate(), Some(0), "serve stops cleanly");
    fake.set_rate_limited(&a.account_id, None);
    let db = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
    db.execute(
        "UPDATE accounts SET status = 'healthy', rate_limited_until = NULL WHERE chatgpt_account_id = ?1",
        [&a.account_id],
    )
    .unwrap();
    let kept: i64 = db
        .query_row("SELECT count(*) FROM minted_content", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        kept, 3,
        "the digests of all three answers' reasoning were saved"
    );
    drop(db);
    let _serve = env.spawn_serve(&envs, env.dir.path().join("serve2.log"));
    let key = configure(&env, &home);
    let cli = Cli { key, ..cli };
    cli.run(true, "still there?");
    let nb = per_account(&fake, &b.account_id);
    assert_eq!(
        nb.responses_calls, 3,
        "turn 4 still went to B after the restart"
    );
    assert_eq!(
        nb.encrypted_accepted,
        1 + 2,
        "both of B's reasoning items were kept"
    );
    assert_eq!(nb.encrypted_foreign_received, 0, "A's stayed out");
    assert_eq!(per_account(&fake, &a.account_id).responses_calls, 1);
    assert_eq!(fake.counters().encrypted_content_rejected, 0);
}

/// The request log lists the CLI's three turns as the fake answered them: A, then a failover to
/// B, then B; each with the CLI's model and the tokens of its `response.completed` (reasoning
/// included, which the CLI asks for).
fn assert_turns_logged(
    env: &DataDir,
    version: &str,
    a: &codex_vault_testkit::IssuedTokens,
    b: &codex_vault_testkit::IssuedTokens,
) {
    let ids: std::collections::HashMap<String, String> = env
        .list_json()
        .iter()
        .map(|v| {
            (
                v["chatgpt_account_id"].as_str().unwrap().to_string(),
                v["label"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let turns = crate::common::wait_until(
        "three turns logged",
        std::time::Duration::from_secs(20),
        || {
            let r = env.ok(&["activity", "--json"]);
            let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
            let turns: Vec<serde_json::Value> = v["requests"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["route"] == "responses")
                .rev()
                .cloned()
                .collect();
            (turns.len() >= 3).then_some(turns)
        },
    );
    let seen: Vec<(&str, &str)> = turns
        .iter()
        .map(|t| {
            (
                t["account_label"].as_str().unwrap(),
                t["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    let (la, lb) = (&ids[&a.account_id], &ids[&b.account_id]);
    assert_eq!(
        seen,
        [
            (la.as_str(), "ok"),
            (lb.as_str(), "failed_over"),
            (lb.as_str(), "ok")
        ],
        "CLI {version}: {turns:#?}"
    );
    for t in &turns {
        assert!(t["model"].as_str().is_some_and(|m| !m.is_empty()), "{t}");
        assert!(t["input_tokens"].as_i64().unwrap() > 0, "{t}");
        assert!(t["reasoning_tokens"].as_i64().unwrap() > 0, "{t}");
        assert_eq!(t["status"], 200, "{t}");
    }
}

#[test]
fn codex_cli_0_169_keeps_its_conversation_across_a_failover_and_a_restart() {
    scenario("0.169.0");
}

#[test]
fn codex_cli_0_171_keeps_its_conversation_across_a_failover_and_a_restart() {
    scenario("0.171.0");
}
