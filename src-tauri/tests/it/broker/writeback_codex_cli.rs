//! The real Codex CLI (0.169.0 and 0.171.0) holding its own brokered `auth.json`, with
//! short-lived tokens: `codex-vault serve`'s scheduler rotates the grant three times (each
//! rotation written back into the CLI's file), then the CLI, with `CODEX_REFRESH_TOKEN_URL_OVERRIDE`
//! pointed at serve, completes a turn; the issuer saw no reuse. The same again after serve was
//! restarted. Before write-back and holders, the CLI got `refresh_token_reused` here ("log out
//! and sign in again").

use crate::common;

use codex_vault_testkit::codex_cli::{CodexExec, CodexHome, ProviderConfig};
use codex_vault_testkit::{AccountSpec, FakeOpenAi};
use common::*;
use std::time::Duration;

/// Short enough that the scheduler rotates every few seconds (due at half the lifetime).
const LIFETIME: Duration = Duration::from_secs(12);

fn written_events(env: &DataDir) -> i64 {
    let db = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM account_events WHERE kind = 'codex_cli_written'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// Waits (bounded) until serve has written at least `n` rotations into the CLI's file.
fn await_written(env: &DataDir, n: i64) {
    wait_until(
        &format!("{n} write-backs (last seen: how many there were)"),
        Duration::from_secs(60),
        || {
            let written = written_events(env);
            if written >= n {
                Ok(())
            } else {
                Err(written)
            }
        },
    );
}

fn file_refresh_token(home: &CodexHome) -> String {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(home.codex_home().join("auth.json")).unwrap(),
    )
    .unwrap();
    v["tokens"]["refresh_token"].as_str().unwrap().to_string()
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
    fake.set_responses_text("Hello after the vault rotated.");
    let env = TestVault::builder().data_dir();
    let t = fake.add_account(AccountSpec {
        email: format!("writeback-{version}@corp.com"),
        access_token_lifetime: Some(LIFETIME),
        ..Default::default()
    });
    let provider = ProviderConfig::chatgpt(
        fake.codex_base(),
        format!("{}/backend-api/", fake.base_url()),
    );
    let home = CodexHome::new(&provider).unwrap();
    home.write_auth_json(&FakeOpenAi::auth_json(&t, chrono::Utc::now()))
        .unwrap();

    // The CLI's own auth.json: brokered by default.
    let r = Run::from(
        env.cmd()
            .env("CODEX_HOME", home.codex_home())
            .args(["accounts", "import"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("CODEX_REFRESH_TOKEN_URL_OVERRIDE"),
        "{}",
        r.stdout
    );
    // Rotate at half the lifetime, without the 5-minute floor.
    let db = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
    for (k, v) in [
        ("refresh.lead_fraction", "0.5"),
        ("refresh.lead_min_secs", "0"),
    ] {
        db.execute("INSERT INTO settings (key, value) VALUES (?1, ?2)", [k, v])
            .unwrap();
    }

    let mut envs = fake_env(&fake);
    envs.push(("RUST_LOG", "info".into()));
    let run_cli = |serve: &ServeProc| {
        let mut exec = CodexExec::new(bin.clone(), &home, "say hi").env(
            "CODEX_REFRESH_TOKEN_URL_OVERRIDE",
            serve.url("/oauth/token"),
        );
        exec.timeout = Duration::from_secs(60);
        exec.run_blocking().expect("codex ran")
    };

    for round in 0..2 {
        let serve = env.spawn_serve(&envs, env.dir.path().join(format!("serve-{round}.log")));
        let before = fake.counters().refreshes_ok;
        let written = written_events(&env);
        fake.wait_for_counters_blocking(Duration::from_secs(60), |c| c.refreshes_ok >= before + 3)
            .expect("the scheduler rotated three times");
        await_written(&env, written + 3);
        assert_ne!(
            file_refresh_token(&home),
            t.refresh_token,
            "the rotations were written into the CLI's file"
        );
        let run = run_cli(&serve);
        let n = fake.counters();
        let log = String::from_utf8_lossy(&serve.stderr()).into_owned();
        assert!(
            run.success() && run.stdout.contains("Hello after the vault rotated."),
            "round {round}: codex exec failed: {run:?}\n{n:?}\nserve: {log}"
        );
        assert_eq!(
            (n.refresh_reuse, n.refresh_rejected),
            (0, 0),
            "round {round}: the issuer saw no reuse: {n:?}\nserve: {log}"
        );
        let list = env.list_json();
        assert_eq!(list[0]["status"], "healthy", "{list:?}");
        assert_eq!(list[0]["brokered"], true, "{list:?}");
        drop(serve); // round 1 runs against a restarted vault
    }
    // The CLI came through the broker: `accounts list` says when.
    let list = env.list_json();
    assert!(list[0]["broker_holder_seen_at"].is_string(), "{list:?}");
    assert_eq!(fake.counters().refresh_reuse, 0);
}

#[test]
fn codex_cli_0_169_outlives_the_vaults_rotations() {
    scenario("0.169.0");
}

#[test]
fn codex_cli_0_171_outlives_the_vaults_rotations() {
    scenario("0.171.0");
}
