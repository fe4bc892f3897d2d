//! `codex-vault diagnostics` (issue 19, point 4): after `serve` ran — a request served, an
//! account revoked mid-request, so a warning reached serve's log file — the report (text and
//! JSON, the real binary) shows the versions, the store, both accounts' states (the dead one
//! with its reason code; labels and emails as fingerprints) and the warning, and neither the
//! report nor the log file holds any token the fake minted, the local key, or an email.

use crate::common;

use codex_vault::logging::LogLine;
use common::*;
use serde_json::{json, Value};

const EMAILS: [&str; 2] = [
    "alice.first@diagnostics.example",
    "bob.second@diagnostics.example",
];

/// Two accounts imported with the CLI; returns the local key.
fn import_two(
    env: &DataDir,
    fenv: &[(&str, String)],
    fake: &codex_vault_testkit::FakeOpenAi,
) -> (String, String) {
    let mut revoked = String::new();
    for (email, label) in EMAILS.iter().zip(["a", "b"]) {
        let t = account(fake, email, "plus");
        let p = env.write_file(
            &format!("{label}.json"),
            auth_json(&t, "2026-01-01T00:00:00Z").as_bytes(),
        );
        let mut c = env.cmd();
        c.envs(fenv.iter().map(|(k, v)| (*k, v.as_str())));
        let r = Run::from(
            c.args(["accounts", "import", p.to_str().unwrap(), "--label", label])
                .output()
                .unwrap(),
        );
        assert_eq!(r.code, 0, "import {label}: {}", r.stderr);
        revoked = t.account_id.clone();
    }
    let info: Value =
        serde_json::from_str(&env.ok(&["endpoint", "info", "--json"]).stdout).unwrap();
    (info["key"].as_str().unwrap().to_string(), revoked)
}

/// One request served by `a`, then one pinned to `b` after the fake revoked it: `b` goes terminal
/// and serve logs a warning.
fn serve_and_break_b(
    env: &DataDir,
    fenv: &[(&str, String)],
    fake: &codex_vault_testkit::FakeOpenAi,
    key: &str,
    revoked: &str,
) {
    let mut serve = env.spawn_serve(fenv, env.dir.path().join("serve.log"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let turn = json!({"model": "gpt-5-codex", "instructions": "", "stream": true, "store": false,
        "input": [{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}]});
    let send = |pin: &str| {
        rt.block_on(async {
            let resp = http
                .post(serve.url("/v1/responses"))
                .bearer_auth(key)
                .header("x-codex-vault-account", pin)
                .json(&turn)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let _ = resp.bytes().await;
            status
        })
    };
    assert_eq!(send("a"), 200);
    fake.revoke_account(revoked);
    assert!(
        send("b") >= 400,
        "a request pinned to a revoked account fails"
    );
    assert_eq!(
        serve.terminate(),
        Some(0),
        "serve stops cleanly (its log flushed)"
    );
}

#[test]
fn diagnostics_show_states_and_warnings_and_no_secret_or_email() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let fenv = fake_env(&fake);
    let (key, revoked) = import_two(&env, &fenv, &fake);
    serve_and_break_b(&env, &fenv, &fake, &key, &revoked);

    let json_run = env.ok(&["diagnostics", "--json"]);
    let text_run = env.ok(&["diagnostics"]);
    println!("{}", text_run.stdout);
    let report: Value = serde_json::from_str(&json_run.stdout).expect("diagnostics --json is JSON");
    assert_eq!(report["app_version"], env!("CARGO_PKG_VERSION"));
    assert!(
        report["store_schema_version"].as_i64().unwrap() >= 1,
        "{report}"
    );
    assert!(
        report["key_store"]
            .as_str()
            .unwrap()
            .starts_with("keychain"),
        "{report}"
    );
    let accounts = report["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 2, "{report}");
    let b = accounts
        .iter()
        .find(|a| a["label_fp"] == codex_vault::secret::fingerprint("b"))
        .expect("accounts are named by label fingerprints");
    assert_eq!(b["status"], "terminal", "{b}");
    assert!(b["reason_code"].is_string(), "the reason code is kept: {b}");
    assert_eq!(b["email_fp"], codex_vault::secret::fingerprint(EMAILS[1]));
    assert_eq!(report["endpoint"]["listeners"], json!([]), "serve stopped");

    // The warning serve logged (its log file, read back), in both forms.
    let problems: Vec<LogLine> = report["recent_problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| LogLine {
            at: l["at"].as_str().unwrap().into(),
            level: l["level"].as_str().unwrap().into(),
            text: l["text"].as_str().unwrap().into(),
        })
        .collect();
    let warning = problems
        .iter()
        .find(|l| l.text.contains("account needs sign-in"))
        .unwrap_or_else(|| panic!("the warning is reported: {problems:?}"));
    assert!(warning.is_problem());
    assert!(
        text_run.stdout.contains("account needs sign-in"),
        "{}",
        text_run.stdout
    );
    assert!(text_run.stdout.contains("terminal"), "{}", text_run.stdout);

    // Nothing secret: every token the fake minted, the local key and each email, in the report
    // and in the log file.
    let logs = snapshot_dir(&env.vault_home().join("logs"));
    assert_eq!(logs.len(), 1, "serve wrote one log file: {:?}", logs.keys());
    let log_text = String::from_utf8_lossy(logs.values().next().unwrap()).into_owned();
    assert!(log_text.contains("account needs sign-in"), "{log_text}");
    let mut secrets = fake.issued_secrets();
    secrets.push(key);
    secrets.extend(EMAILS.iter().map(|e| e.to_string()));
    let scanner = LeakScanner::new(&secrets);
    for (what, hay) in [
        ("diagnostics --json", json_run.stdout.as_bytes()),
        ("diagnostics", text_run.stdout.as_bytes()),
        ("diagnostics stderr", text_run.stderr.as_bytes()),
        ("log file", log_text.as_bytes()),
    ] {
        assert!(
            !hay.is_empty() || what.ends_with("stderr"),
            "{what} is empty"
        );
        assert_eq!(scanner.find(hay), None, "{what} shows a secret");
        for e in EMAILS {
            assert!(
                !String::from_utf8_lossy(hay).contains(e),
                "{what} shows {e}"
            );
        }
    }
}
