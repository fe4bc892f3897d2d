//! Who owns an imported Codex sign-in (`accounts import --codex-cli broker|detach`), the broker's
//! env line in `endpoint info`, and shared-grant flags set and cleared, through the real binary.

use crate::common;

use common::*;
use std::path::PathBuf;

/// A whole shell line, everywhere it is shown (text, JSON, the UI): pasted as it is.
const ENV_LINE: &str = "export CODEX_REFRESH_TOKEN_URL_OVERRIDE=http://127.0.0.1:8417/oauth/token";

/// A test env whose `HOME` is private too, so `~/.codex/auth.json` is this test's.
fn run(env: &DataDir, args: &[&str]) -> Run {
    Run::from(
        env.cmd()
            .env("HOME", env.dir.path())
            .args(args)
            .output()
            .expect("spawn codex-vault"),
    )
}

fn list(env: &DataDir) -> Vec<serde_json::Value> {
    let r = run(env, &["accounts", "list", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

/// Writes `$CODEX_HOME/auth.json` (0600, as the CLI does) and returns its path.
fn live_auth_json(env: &DataDir, text: &str) -> PathBuf {
    std::fs::create_dir_all(env.codex_home()).unwrap();
    let p = env.codex_home().join("auth.json");
    std::fs::write(&p, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    p
}

#[test]
fn detach_moves_the_clis_file_to_a_private_backup_and_warns() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "detach@corp.com", "plus");
    let text = auth_json(&t, "2026-01-01T00:00:00Z");
    let p = live_auth_json(&env, &text);
    let r = run(&env, &["accounts", "import", "--codex-cli", "detach"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!p.exists(), "the CLI's auth.json is moved away");
    let backups: Vec<PathBuf> = std::fs::read_dir(env.codex_home())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|b| {
            b.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("auth.json.codex-vault-backup-")
        })
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), text);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backups[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(
        r.stdout.contains(&backups[0].display().to_string()),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("codex logout"), "{}", r.stderr);
    assert!(!r.stdout.contains(ENV_LINE));
    // Nothing was revoked, and no one else holds the sign-in now.
    assert_eq!(fake.counters().revoke_calls, 0);
    let accounts = list(&env);
    assert_eq!(accounts[0]["shared_grant"], false, "{accounts:?}");
    assert_no_tokens(r.stdout.as_bytes(), &t, "import's output");
}

#[test]
fn broker_is_the_default_for_the_clis_own_file_and_the_grant_is_flagged_until_it_goes() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "broker@corp.com", "plus");
    let p = live_auth_json(&env, &auth_json(&t, "2026-01-01T00:00:00Z"));
    let r = run(&env, &["accounts", "import"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(p.exists(), "broker leaves the CLI's file in place");
    assert!(
        r.stdout.contains(&format!("  {ENV_LINE}\n")),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("export export"), "{}", r.stdout);
    assert!(r.stderr.contains("codex logout"), "{}", r.stderr);

    // The file still holds the chain: flagged, with where, in JSON and text.
    let accounts = list(&env);
    assert_eq!(accounts[0]["shared_grant"], true, "{accounts:?}");
    let place = accounts[0]["shared_grant_where"].as_str().unwrap();
    assert_eq!(
        PathBuf::from(place),
        std::fs::canonicalize(&p).unwrap(),
        "{place}"
    );
    let text = run(&env, &["accounts", "list"]);
    assert!(text.stdout.contains("shared grant"), "{}", text.stdout);
    assert!(
        text.stdout.contains("log each other out"),
        "{}",
        text.stdout
    );

    // `endpoint info` shows the same line (text and JSON).
    let info = run(&env, &["endpoint", "info"]);
    assert_eq!(info.code, 0, "{}", info.stderr);
    assert!(info.stdout.contains(ENV_LINE), "{}", info.stdout);
    let info = run(&env, &["endpoint", "info", "--json"]);
    let info: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
    assert_eq!(info["refresh_override_env"], ENV_LINE);

    // The CLI's file goes away (the user detached it by hand): the flag clears itself.
    std::fs::remove_file(&p).unwrap();
    let accounts = list(&env);
    assert_eq!(accounts[0]["shared_grant"], false, "{accounts:?}");
    assert_eq!(accounts[0]["shared_grant_where"], serde_json::Value::Null);
}

#[test]
fn a_second_copy_of_a_held_grant_is_flagged_and_other_files_are_left_alone() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "copy@corp.com", "plus");
    let text = auth_json(&t, "2026-01-01T00:00:00Z");
    // Any other file: left alone, no env line, not flagged (nothing else holds it that we know of).
    let a = env.write_file("a.json", text.as_bytes());
    let r = run(&env, &["accounts", "import", a.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(a.exists());
    assert!(!r.stdout.contains(ENV_LINE), "{}", r.stdout);
    assert_eq!(list(&env)[0]["shared_grant"], false);

    // The same grant again, pasted: now two copies exist.
    let r = Run::from({
        use std::io::Write;
        let mut child = env
            .cmd()
            .env("HOME", env.dir.path())
            .args(["accounts", "import", "-", "--json"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(out["account"]["shared_grant"], true, "{out}");
    let accounts = list(&env);
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["shared_grant"], true);
    assert!(accounts[0]["shared_grant_where"]
        .as_str()
        .unwrap()
        .contains("already held"));

    // --codex-cli needs a file.
    let r = run(&env, &["accounts", "import", "-", "--codex-cli", "detach"]);
    assert_ne!(r.code, 0);
}

#[test]
fn the_env_line_names_the_configured_endpoint_port() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    assert_eq!(run(&env, &["accounts", "list"]).code, 0); // creates the store
    let db = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
    db.execute(
        "INSERT INTO settings (key, value) VALUES ('endpoint.port', '9123')",
        [],
    )
    .unwrap();
    let t = account(&fake, "port@corp.com", "plus");
    live_auth_json(&env, &auth_json(&t, "2026-01-01T00:00:00Z"));
    let r = run(
        &env,
        &["accounts", "import", "--codex-cli", "broker", "--json"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        out["codex_cli"]["env"],
        "export CODEX_REFRESH_TOKEN_URL_OVERRIDE=http://127.0.0.1:9123/oauth/token"
    );
    assert_eq!(out["codex_cli"]["mode"], "broker");
    assert_eq!(out["outcome"], "added");
    let info = run(&env, &["endpoint", "info"]);
    assert!(
        info.stdout.contains(
            "  export CODEX_REFRESH_TOKEN_URL_OVERRIDE=http://127.0.0.1:9123/oauth/token\n"
        ),
        "{}",
        info.stdout
    );
}

#[test]
fn importing_the_same_file_again_is_not_a_second_copy() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "twice@corp.com", "plus");
    let a = env.write_file("a.json", auth_json(&t, "2026-01-01T00:00:00Z").as_bytes());
    for round in 0..2 {
        let r = run(&env, &["accounts", "import", a.to_str().unwrap()]);
        assert_eq!(r.code, 0, "round {round}: {}", r.stderr);
        assert!(
            !r.stderr.contains("held elsewhere"),
            "round {round}: {}",
            r.stderr
        );
        let accounts = list(&env);
        assert_eq!(accounts.len(), 1);
        assert_eq!(
            accounts[0]["shared_grant"], false,
            "round {round}: {accounts:?}"
        );
    }
    // Through a symlink it is still the same file.
    #[cfg(unix)]
    {
        let link = env.dir.path().join("link.json");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let r = run(&env, &["accounts", "import", link.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(list(&env)[0]["shared_grant"], false);
    }
    // Another file with the same grant is a second copy, named as such — not as the account.
    let b = env.write_file("b.json", auth_json(&t, "2026-01-01T00:00:00Z").as_bytes());
    let r = run(&env, &["accounts", "import", b.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("held elsewhere"), "{}", r.stderr);
    let accounts = list(&env);
    let place = accounts[0]["shared_grant_where"].as_str().unwrap();
    assert!(place.contains("b.json"), "{place}");
}

#[test]
fn a_copy_flag_clears_once_our_rotation_has_spent_the_copys_token() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "stale@corp.com", "plus");
    let a = env.write_file("a.json", auth_json(&t, "2026-01-01T00:00:00Z").as_bytes());
    assert_eq!(
        run(&env, &["accounts", "import", a.to_str().unwrap()]).code,
        0
    );
    // A flag as an earlier build left it after the same file was imported twice (naming the
    // account itself), recorded like any detection.
    {
        let db = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
        let place = "another copy of this sign-in was already held (account stale)";
        db.execute("UPDATE accounts SET shared_grant_where = ?1", [place])
            .unwrap();
        db.execute(
            "INSERT INTO account_events (account_id, at, kind, detail)
             SELECT id, CAST(unixepoch('subsec') * 1000 AS INTEGER), 'shared_grant_detected', ?1 FROM accounts",
            [place],
        )
        .unwrap();
    }
    assert_eq!(list(&env)[0]["shared_grant"], true, "no rotation yet: kept");
    // The vault rotates: the copy's token is spent, the warning is stale and clears.
    let r = Run::from(
        env.cmd()
            .env("HOME", env.dir.path())
            .env("CODEX_VAULT_AUTH_BASE", fake.base_url())
            .args(["accounts", "refresh", "stale"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let accounts = list(&env);
    assert_eq!(accounts[0]["shared_grant"], false, "{accounts:?}");
    assert_eq!(accounts[0]["status"], "healthy");
}
