//! Encrypted backup and restore through the real binary (README.md § Backup and restore): a
//! backup restored into a new data dir comes back paused and reaches no upstream until the user
//! confirms; a wrong passphrase writes nothing; an older backup never replaces newer tokens.

use crate::common;

use common::*;
use serde_json::{json, Value};

const LAST_REFRESH: &str = "2026-01-01T12:00:00Z";
const PASSPHRASE: &str = "correct horse battery staple";

fn passphrase_file(env: &DataDir, text: &str) -> String {
    let p = env.write_file("passphrase.txt", format!("{text}\n").as_bytes());
    p.to_str().unwrap().to_string()
}

/// Two accounts imported (one renamed) into a data dir that talks to `fake`; returns their tokens.
fn two_accounts(
    env: &DataDir,
    fake: &codex_vault_testkit::FakeOpenAi,
) -> Vec<codex_vault_testkit::IssuedTokens> {
    let mut out = Vec::new();
    for (email, label) in [("ana@corp.com", "work"), ("bo@corp.com", "home")] {
        let t = account(fake, email, "plus");
        let p = env.write_file(
            &format!("{label}.json"),
            auth_json(&t, LAST_REFRESH).as_bytes(),
        );
        env.ok(&["accounts", "import", p.to_str().unwrap(), "--label", label]);
        out.push(t);
    }
    env.ok(&["accounts", "rename", "home", "personal"]);
    out
}

fn run_with_fake(env: &DataDir, fake: &codex_vault_testkit::FakeOpenAi, args: &[&str]) -> Run {
    let mut c = env.cmd();
    env_for(env, fake)(&mut c);
    Run::from(c.args(args).output().expect("spawn codex-vault"))
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario: backup, restore, paused, confirmed, served"
)]
fn a_backup_restored_elsewhere_is_paused_until_confirmed_then_refreshes_and_serves() {
    let fake = fake();
    let from = TestVault::builder().data_dir();
    let tokens = two_accounts(&from, &fake);
    let file = from.dir.path().join("vault.cvbackup");
    let pass = passphrase_file(&from, PASSPHRASE);
    let r = from.ok(&["backup", file.to_str().unwrap(), "--passphrase-file", &pass]);
    assert!(r.stdout.contains("backup of 2 account(s)"), "{}", r.stdout);
    let sealed = std::fs::read(&file).unwrap();
    for t in &tokens {
        assert_no_tokens(&sealed, t, "the backup file");
        assert_no_tokens(r.stdout.as_bytes(), t, "backup output");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the backup holds tokens");
    }

    let to = TestVault::builder().data_dir();
    let pass_to = passphrase_file(&to, PASSPHRASE);
    let calls_before = fake.counters();
    let r = to.ok(&[
        "restore",
        file.to_str().unwrap(),
        "--passphrase-file",
        &pass_to,
    ]);
    assert!(
        r.stdout.contains("added    work (ana@corp.com): paused"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("two machines refreshing the same sign-in log each other out"),
        "{}",
        r.stdout
    );
    for t in &tokens {
        assert_no_tokens(r.stdout.as_bytes(), t, "restore output");
    }

    // The same accounts, labels and history, paused.
    let listed = to.list_json();
    let labels: Vec<&str> = listed
        .iter()
        .map(|a| a["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["work", "personal"]);
    for a in &listed {
        assert_eq!(a["status"], "disabled", "{a}");
        assert!(a["restored_at"].is_string(), "{a}");
    }
    let history: Vec<String> = to
        .open()
        .history("personal", 10)
        .unwrap()
        .into_iter()
        .rev()
        .map(|e| e.kind)
        .collect();
    assert_eq!(history, ["imported", "renamed", "restored"]);
    let text = to.ok(&["accounts", "list"]).stdout;
    assert!(text.contains("confirm-restored work"), "{text}");

    // Paused: a refresh is refused and the endpoint serves nobody; no call reaches upstream.
    let r = run_with_fake(&to, &fake, &["accounts", "refresh", "work"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("disabled"), "{}", r.stderr);
    let enable = to.open().set_disabled("work", false).unwrap_err();
    assert_eq!(enable.code(), "restore_unconfirmed");
    let key = endpoint_key(&to);
    let mut serve = to.spawn_serve(&fake_env(&fake), to.dir.path().join("serve-1.log"));
    assert_eq!(one_turn(&serve, &key).0, 503, "a paused account served");
    serve.terminate();
    assert_eq!(
        fake.counters(),
        calls_before,
        "a call reached the fake before the confirmation"
    );

    // Confirmed: it refreshes, and the endpoint serves it.
    let r = to.ok(&["accounts", "confirm-restored", "work"]);
    assert!(r.stdout.contains("Confirmed work"), "{}", r.stdout);
    let r = run_with_fake(&to, &fake, &["accounts", "refresh", "work"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(per_account(&fake, &tokens[0].account_id).refreshes_ok, 1);
    let mut serve = to.spawn_serve(&fake_env(&fake), to.dir.path().join("serve-2.log"));
    let (status, body) = one_turn(&serve, &key);
    assert_eq!(status, 200, "{body}");
    serve.terminate();
    assert_eq!(per_account(&fake, &tokens[0].account_id).responses_calls, 1);
    assert_eq!(
        per_account(&fake, &tokens[1].account_id),
        Default::default(),
        "the unconfirmed account stayed untouched"
    );
}

fn endpoint_key(env: &DataDir) -> String {
    let info: Value =
        serde_json::from_str(&env.ok(&["endpoint", "info", "--json"]).stdout).unwrap();
    info["key"].as_str().unwrap().to_string()
}

fn one_turn(serve: &ServeProc, key: &str) -> (u16, String) {
    let turn = json!({"model": "gpt-5-codex", "instructions": "", "stream": true, "store": false,
        "input": [{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}]});
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let resp = reqwest::Client::new()
            .post(serve.url("/v1/responses"))
            .bearer_auth(key)
            .json(&turn)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    })
}

#[test]
fn a_wrong_passphrase_says_so_and_writes_nothing() {
    let fake = fake();
    let from = TestVault::builder().data_dir();
    two_accounts(&from, &fake);
    let file = from.dir.path().join("vault.cvbackup");
    let pass = passphrase_file(&from, PASSPHRASE);
    from.ok(&["backup", file.to_str().unwrap(), "--passphrase-file", &pass]);

    // Into a new data dir: not even an empty store is created.
    let to = TestVault::builder().data_dir();
    let wrong = passphrase_file(&to, "not the passphrase");
    let r = to.run(&[
        "restore",
        file.to_str().unwrap(),
        "--passphrase-file",
        &wrong,
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("the passphrase does not open"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("[backup_wrong_passphrase]"),
        "{}",
        r.stderr
    );
    assert!(
        !to.vault_home().exists(),
        "a wrong passphrase created a store"
    );

    // Into a store with data: byte for byte as it was.
    let before = from.snapshot();
    let wrong = passphrase_file(&from, "not the passphrase");
    let r = from.run(&[
        "restore",
        file.to_str().unwrap(),
        "--passphrase-file",
        &wrong,
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(from.snapshot(), before);

    // Not a backup, and a too-short passphrase for a new one: their own messages.
    let r = to.run(&["restore", pass.as_str(), "--passphrase-file", &wrong]);
    assert!(r.stderr.contains("[backup_not_a_backup]"), "{}", r.stderr);
    let short = passphrase_file(&from, "short");
    let other = from.dir.path().join("other.cvbackup");
    let r = from.run(&[
        "backup",
        other.to_str().unwrap(),
        "--passphrase-file",
        &short,
    ]);
    assert!(r.stderr.contains("[backup_passphrase]"), "{}", r.stderr);
    assert!(!other.exists());
    // No terminal and no file: told how to give it.
    let r = from.run(&["backup", other.to_str().unwrap()]);
    assert!(r.stderr.contains("--passphrase-file"), "{}", r.stderr);
}

#[test]
fn an_older_backup_restored_over_the_same_accounts_keeps_the_newer_tokens() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let tokens = two_accounts(&env, &fake);
    let file = env.dir.path().join("old.cvbackup");
    let pass = passphrase_file(&env, PASSPHRASE);
    env.ok(&["backup", file.to_str().unwrap(), "--passphrase-file", &pass]);

    // The store moves on: a rotation spends the refresh token the backup holds.
    let r = run_with_fake(&env, &fake, &["accounts", "refresh", "work"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = env.ok(&[
        "restore",
        file.to_str().unwrap(),
        "--passphrase-file",
        &pass,
        "--json",
    ]);
    let report: Value = serde_json::from_str(&r.stdout).unwrap();
    let actions: Vec<&str> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["kept_newer", "kept_newer"]);
    for a in env.list_json() {
        assert_eq!(a["status"], "healthy", "{a}");
        assert!(a["restored_at"].is_null(), "{a}");
    }
    // The newer token is still the one held: the next refresh rotates it, no reuse.
    let r = run_with_fake(&env, &fake, &["accounts", "refresh", "work"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let c = per_account(&fake, &tokens[0].account_id);
    assert_eq!((c.refreshes_ok, c.refresh_reuse), (2, 0));
}
