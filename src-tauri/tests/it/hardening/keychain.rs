//! Keychain: with no Secret Service reachable (no D-Bus session bus at all) every face stops
//! with a clear `keychain_unavailable` error and exit 1, and the data is untouched; the key file
//! opt-in still works there, with its warning. (A keychain item deleted while data exists is
//! `key_missing`, no new key: store_cli.rs `missing_key_with_sealed_data_is_key_missing_and_changes_nothing`;
//! the file opt-in's warning and 0600 key file: store_cli.rs `file_key_store_is_an_explicit_opt_in_that_warns`.)

use crate::common;

use common::*;

/// The binary as on a machine without a session bus: D-Bus connects fail at once.
fn without_dbus(env: &DataDir, args: &[&str]) -> Run {
    Run::from(
        env.cmd()
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", env.dir.path().join("no-such-bus").display()),
            )
            .args(args)
            .output()
            .unwrap(),
    )
}

#[test]
fn no_secret_service_is_keychain_unavailable_and_changes_nothing() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "nobus@corp.com", "plus");
    let p = env.write_file("a.json", auth_json(&t, "2026-01-01T00:00:00Z").as_bytes());
    env.ok(&["accounts", "import", p.to_str().unwrap()]);
    let second = account(&fake, "nobus2@corp.com", "plus");
    let p2 = env.write_file(
        "b.json",
        auth_json(&second, "2026-01-01T00:00:00Z").as_bytes(),
    );
    let store_id = env.store_id();
    let before = env.snapshot();

    for args in [
        &["accounts", "list", "--json"][..],
        &["accounts", "import", p2.to_str().unwrap()][..],
        &["accounts", "refresh", "nobus"][..],
        &["token", "nobus"][..],
        &["endpoint", "info"][..],
        &["serve", "--port", "0"][..],
    ] {
        let r = without_dbus(&env, args);
        assert_eq!(r.code, 1, "{args:?}: exit {} {}", r.code, r.stderr);
        assert!(
            r.stderr.contains("[keychain_unavailable]"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains("CODEX_VAULT_KEY_STORE=file"),
            "{args:?}: the error names the way out: {}",
            r.stderr
        );
        assert!(
            r.stdout.trim().is_empty() || !r.stdout.contains("nobus2"),
            "{args:?}: {}",
            r.stdout
        );
        assert_no_tokens(r.stderr.as_bytes(), &t, "keychain error");
    }
    assert_eq!(
        env.snapshot(),
        before,
        "a run without a keychain changed the store"
    );
    // The key itself was never replaced: with the bus back, everything opens as before.
    assert!(!secret_tool_search(&store_id).is_empty());
    let list = env.list_json();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["status"], "healthy");
}

#[test]
fn the_file_key_opt_in_works_without_any_secret_service_and_warns() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "filebus@corp.com", "plus");
    let p = env.write_file("a.json", auth_json(&t, "2026-01-01T00:00:00Z").as_bytes());
    let run = |args: &[&str]| {
        Run::from(
            env.cmd()
                .env("CODEX_VAULT_KEY_STORE", "file")
                .env(
                    "DBUS_SESSION_BUS_ADDRESS",
                    "unix:path=/nonexistent/codex-vault-test-bus",
                )
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let r = run(&["accounts", "import", p.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&["accounts", "list", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("warning: The data key is kept in a file"),
        "{}",
        r.stderr
    );
    let list: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(list[0]["email"], "filebus@corp.com");
    assert!(env.vault_home().join("data-key").exists());
}

#[test]
fn a_first_run_without_a_keychain_leaves_nothing_behind() {
    // No data dir yet: it is not created (nor a database in it).
    let env = TestVault::builder().data_dir();
    let r = without_dbus(&env, &["accounts", "list"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("[keychain_unavailable]"), "{}", r.stderr);
    assert!(
        !env.vault_home().exists(),
        "left behind: {:?}",
        std::fs::read_dir(env.vault_home()).map(|d| d.count())
    );

    // A data dir we were told to use, empty: it stays, and stays empty.
    std::fs::create_dir(env.vault_home()).unwrap();
    let r = without_dbus(&env, &["accounts", "list"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(env.vault_home().is_dir());
    let left: Vec<_> = std::fs::read_dir(env.vault_home())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // With the keychain back, the first run creates the store as usual.
    env.ok(&["accounts", "list"]);
    assert!(env.vault_home().join("codex-vault.db").exists());
}
