//! Every bad auth.json gets its own clear error, exit 1, no token text, and the store is
//! byte-identical before and after.

use crate::common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use serde_json::{json, Value};

fn jwt(claims: &Value) -> String {
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one linear scenario: its steps share one running setup and read top to bottom"
)]
fn every_bad_input_is_refused_with_its_reason_and_changes_nothing() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    // A store with one good account, so "changes nothing" is checked against real data.
    let good = account(&fake, "good@corp.com", "plus");
    let good_text = auth_json(&good, "2026-01-01T00:00:00Z");
    let p = env.write_file("good.json", good_text.as_bytes());
    env.ok(&["accounts", "import", p.to_str().unwrap()]);
    let base: Value = serde_json::from_str(&good_text).unwrap();
    let id_claims =
        serde_json::to_value(codex_vault_testkit::jwt::decode_claims(&good.id_token).unwrap())
            .unwrap();

    let auth = codex_vault_testkit::AUTH_CLAIM;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        v.to_string().into_bytes()
    };
    let with_claims = |f: &dyn Fn(&mut Value)| {
        let mut c = id_claims.clone();
        f(&mut c);
        let mut v = base.clone();
        v["tokens"]["id_token"] = json!(jwt(&c));
        // Keep the file's account id in step with the claims, so each case tests one thing.
        match &c[auth]["chatgpt_account_id"] {
            Value::String(_) => v["tokens"]["account_id"] = c[auth]["chatgpt_account_id"].clone(),
            _ => {
                v["tokens"].as_object_mut().unwrap().remove("account_id");
            }
        }
        v.to_string().into_bytes()
    };

    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "not JSON",
            b"{\"tokens\": ".to_vec(),
            "auth_json_not_json",
            "not valid JSON",
        ),
        (
            "a JSON array",
            b"[]".to_vec(),
            "auth_json_not_json",
            "not a JSON object",
        ),
        (
            "no tokens",
            br#"{"auth_mode":"chatgpt"}"#.to_vec(),
            "auth_json_no_tokens",
            "no `tokens`",
        ),
        (
            "API key only",
            br#"{"OPENAI_API_KEY":"sk-test-not-a-real-key","tokens":null}"#.to_vec(),
            "auth_json_api_key_only",
            "API key login, not a ChatGPT account",
        ),
        (
            "undecodable JWT",
            with(&|v| v["tokens"]["id_token"] = json!("eyJ.@@@.sig")),
            "jwt_malformed",
            "id_token",
        ),
        (
            "JWT not a JWT",
            with(&|v| v["tokens"]["id_token"] = json!("plainstring")),
            "jwt_malformed",
            "not a JWT",
        ),
        (
            "no email claim",
            with_claims(&|c| {
                c.as_object_mut().unwrap().remove("email");
                c.as_object_mut()
                    .unwrap()
                    .remove(codex_vault_testkit::PROFILE_CLAIM);
            }),
            "jwt_missing_claim",
            "`email`",
        ),
        (
            "no auth claims",
            with_claims(&|c| {
                c.as_object_mut().unwrap().remove(auth);
            }),
            "jwt_missing_claim",
            "no ChatGPT account id",
        ),
        (
            "email of wrong type",
            with_claims(&|c| c["email"] = json!(42)),
            "jwt_wrong_claim_type",
            "wrong type",
        ),
        (
            "account id of wrong type",
            with_claims(&|c| c[auth]["chatgpt_account_id"] = json!(["x"])),
            "jwt_wrong_claim_type",
            "chatgpt_account_id",
        ),
        (
            "control chars in email",
            with_claims(&|c| c["email"] = json!("a\u{1b}[2J@x.com")),
            "auth_json_control_chars",
            "email",
        ),
        (
            "control chars in account id",
            with_claims(&|c| c[auth]["chatgpt_account_id"] = json!("acc\u{7}x")),
            "auth_json_control_chars",
            "account_id` contains control characters",
        ),
        (
            "missing refresh token",
            with(&|v| {
                v["tokens"].as_object_mut().unwrap().remove("refresh_token");
            }),
            "auth_json_missing_field",
            "tokens.refresh_token",
        ),
        (
            "empty refresh token",
            with(&|v| v["tokens"]["refresh_token"] = json!("")),
            "auth_json_empty_refresh_token",
            "empty",
        ),
        (
            "refresh token of wrong type",
            with(&|v| v["tokens"]["refresh_token"] = json!({"a":1})),
            "auth_json_wrong_type",
            "tokens.refresh_token",
        ),
        ("empty file", Vec::new(), "auth_json_empty", "empty"),
        (
            "over 1 MiB",
            vec![b' '; 1024 * 1024 + 1],
            "auth_json_too_large",
            "larger than 1 MiB",
        ),
    ];

    let before = env.snapshot();
    for (name, bytes, code, words) in &cases {
        let path = env.write_file("bad.json", bytes);
        let r = env.run(&["accounts", "import", path.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{name}: exit {} {}", r.code, r.stderr);
        assert!(
            r.stderr.contains(&format!("[{code}]")),
            "{name}: {}",
            r.stderr
        );
        assert!(r.stderr.contains(words), "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains(path.to_str().unwrap()),
            "{name}: file not named: {}",
            r.stderr
        );
        assert_no_tokens(r.stderr.as_bytes(), &good, name);
        assert_eq!(env.snapshot(), before, "{name}: the store changed");
    }

    // Unreadable sources: a missing file, a directory, empty stdin.
    let missing = env.dir.path().join("nope.json");
    let r = env.run(&["accounts", "import", missing.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("[auth_json_unreadable]") && r.stderr.contains("nope.json"),
        "{}",
        r.stderr
    );
    // A directory is a bulk import of its files (README § Bulk import): a broken file makes the
    // exit code 1, named on its own line, and nothing is written.
    let folder = env.dir.path().join("only-broken");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("broken.json"), b"{\"tokens\": ").unwrap();
    let r = env.run(&["accounts", "import", folder.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains(": invalid: ") && r.stdout.contains("Imported:"),
        "{}",
        r.stdout
    );
    let r = env.run_with_stdin(&["accounts", "import", "-"], b"");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("standard input") && r.stderr.contains("[auth_json_empty]"),
        "{}",
        r.stderr
    );

    // A label with control characters (header injection) is refused before anything is written.
    let other = account(&fake, "other@corp.com", "plus");
    let p = env.write_file(
        "other.json",
        auth_json(&other, "2026-01-01T00:00:00Z").as_bytes(),
    );
    let r = env.run(&[
        "accounts",
        "import",
        p.to_str().unwrap(),
        "--label",
        "x\r\nX-Evil: 1",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("[invalid_label]"), "{}", r.stderr);
    assert_eq!(env.snapshot(), before, "the store changed");

    // Usage errors exit 2.
    assert_eq!(env.run(&["accounts", "frobnicate"]).code, 2);
}

#[test]
fn stdin_import_works() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "stdin@corp.com", "pro");
    let r = env.run_with_stdin(
        &["accounts", "import", "-"],
        auth_json(&t, "2026-01-01T00:00:00Z").as_bytes(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.list_json()[0]["plan"], "pro");
}

#[test]
fn default_path_is_codex_home_auth_json() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "home@corp.com", "plus");
    std::fs::create_dir_all(env.codex_home()).unwrap();
    std::fs::write(
        env.codex_home().join("auth.json"),
        auth_json(&t, "2026-01-01T00:00:00Z"),
    )
    .unwrap();
    env.ok(&["accounts", "import"]);
    assert_eq!(env.list_json()[0]["email"], "home@corp.com");
}

#[test]
fn a_utf8_byte_order_mark_before_the_json_is_accepted() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "bom@corp.com", "plus");
    // As Notepad or PowerShell's `Out-File -Encoding utf8` save it.
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(auth_json(&t, "2026-01-01T00:00:00Z").as_bytes());
    let p = env.write_file("bom.json", &bytes);
    env.ok(&["accounts", "import", p.to_str().unwrap()]);
    assert_eq!(env.list_json()[0]["email"], "bom@corp.com");
    // Through standard input too.
    let u = account(&fake, "bom2@corp.com", "plus");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(auth_json(&u, "2026-01-01T00:00:00Z").as_bytes());
    let r = env.run_with_stdin(&["accounts", "import", "-"], &bytes);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.list_json().len(), 2);
}

/// `accounts login` with `CODEX_VAULT_NO_BROWSER=value` and a browser opener on PATH that only
/// leaves a mark: whether it ran, and the run (the sign-in itself times out after a second).
fn login_with_no_browser(env: &DataDir, value: &str) -> (bool, Run) {
    use std::os::unix::fs::PermissionsExt;
    let bin = env.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let mark = env.dir.path().join("browser-opened");
    let _ = std::fs::remove_file(&mark);
    for opener in ["xdg-open", "open"] {
        let p = bin.join(opener);
        std::fs::write(&p, format!("#!/bin/sh\ntouch '{}'\n", mark.display())).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let r = Run::from(
        env.cmd()
            .env("PATH", path)
            .env("CODEX_VAULT_NO_BROWSER", value)
            .env("CODEX_VAULT_CALLBACK_PORTS", "0")
            .env("CODEX_VAULT_AUTH_BASE", "http://127.0.0.1:9")
            .args(["accounts", "login", "--timeout", "1"])
            .output()
            .unwrap(),
    );
    // The opener is spawned, not awaited: give it the moment it needs to leave its mark.
    let opened = poll_until(std::time::Duration::from_secs(1), || mark.exists()).is_some();
    (opened, r)
}

#[cfg(unix)]
#[test]
fn no_browser_takes_1_true_yes_and_0_false_no_in_any_case() {
    let env = TestVault::builder().data_dir();
    for value in ["1", "true", "YES", "True"] {
        let (opened, r) = login_with_no_browser(&env, value);
        assert!(!opened, "{value}: a browser was opened");
        assert!(
            r.stdout.contains("http://127.0.0.1:9/oauth/authorize"),
            "{value}: {}",
            r.stdout
        );
        assert!(
            r.stderr.contains("[login_timed_out]"),
            "{value}: {}",
            r.stderr
        );
    }
    for value in ["0", "false", "No"] {
        let (opened, r) = login_with_no_browser(&env, value);
        assert!(opened, "{value}: no browser was opened: {}", r.stderr);
    }
    let (opened, r) = login_with_no_browser(&env, "maybe");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!opened);
    assert!(
        r.stderr.contains("invalid value 'maybe'")
            && r.stderr
                .contains("expected 1, true or yes (or 0, false or no)"),
        "{}",
        r.stderr
    );
}

#[test]
fn help_describes_every_option_the_environment_and_the_exit_codes() {
    let env = TestVault::builder().data_dir();
    let top = env.ok(&["--help"]);
    for needle in [
        "CODEX_VAULT_HOME",
        "CODEX_VAULT_KEY_STORE",
        "CODEX_HOME",
        "CODEX_VAULT_NO_BROWSER",
        "CODEX_VAULT_CALLBACK_PORTS",
        "CODEX_VAULT_AUTH_BASE",
        "CODEX_VAULT_UPSTREAM",
        "RUST_LOG",
        "Exit status:",
        "3  an account needs a new sign-in",
    ] {
        assert!(
            top.stdout.contains(needle),
            "--help lacks {needle}:\n{}",
            top.stdout
        );
    }
    for cmd in [
        &["accounts", "list"][..],
        &["accounts", "import"],
        &["accounts", "login"],
        &["accounts", "refresh"],
        &["accounts", "remove"],
        &["accounts", "rename"],
        &["serve"],
        &["endpoint", "info"],
        &["endpoint", "rotate-key"],
        &["token"],
    ] {
        let r = env.run(&[cmd, &["--help"]].concat());
        assert_eq!(r.code, 0, "{cmd:?}: {}", r.stderr);
        let lines: Vec<&str> = r.stdout.lines().collect();
        let mut in_list = false;
        for (i, line) in lines.iter().enumerate() {
            if line.ends_with(':') && !line.starts_with(' ') {
                in_list = matches!(*line, "Arguments:" | "Options:");
                continue;
            }
            let entry = line.trim_start();
            // An entry starts at two spaces: `-x, --long`, `--long`, `<ARG>` or `[ARG]`.
            let is_entry = in_list
                && line.starts_with("  ")
                && !line.starts_with("   ")
                && entry.starts_with(['-', '<', '[']);
            if !is_entry {
                continue;
            }
            // Described on its own line (after the name) or on the next, more indented one.
            let name_end = entry.find("  ").unwrap_or(entry.len());
            let same_line = !entry[name_end..].trim().is_empty();
            let next_line = lines
                .get(i + 1)
                .is_some_and(|n| n.starts_with("          ") && !n.trim().is_empty());
            assert!(
                same_line || next_line,
                "{cmd:?}: `{}` has no description:\n{}",
                entry,
                r.stdout
            );
        }
    }
    // The documented switch is listed with the option it sets.
    let login = env.run(&["accounts", "login", "--help"]);
    assert!(
        login.stdout.contains("CODEX_VAULT_NO_BROWSER"),
        "{}",
        login.stdout
    );
}
