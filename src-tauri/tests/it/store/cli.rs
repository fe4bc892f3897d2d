//! Foundation scenarios through the real binary: import/list/remove, sealing at rest, the keychain
//! item, never-orphan, bad input that changes nothing, newer-DB refusal, the file key opt-in.

use crate::common;

use common::*;
use std::process::Command;

const LAST_REFRESH: &str = "2026-01-01T12:00:00Z";

#[test]
fn import_lists_the_account_and_seals_every_token() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let tokens = account(&fake, "ana@corp.com", "team");
    let path = env.write_file("auth.json", auth_json(&tokens, LAST_REFRESH).as_bytes());

    let r = env.ok(&[
        "accounts",
        "import",
        path.to_str().unwrap(),
        "--label",
        "work",
    ]);
    assert!(r.stdout.contains("Imported account work"), "{}", r.stdout);
    assert_no_tokens(r.stdout.as_bytes(), &tokens, "import output");

    let list = env.list_json();
    assert_eq!(list.len(), 1);
    let a = &list[0];
    assert_eq!(a["label"], "work");
    assert_eq!(a["email"], "ana@corp.com");
    assert_eq!(a["plan"], "team");
    assert_eq!(a["chatgpt_account_id"], tokens.account_id.as_str());
    assert_eq!(a["status"], "healthy");
    assert!(a["failure"].is_null());
    // A file of no Codex CLI's, whose tool never came through the broker: not called brokered.
    assert_eq!(a["brokered"], false, "{a}");
    assert!(a["access_expires_at"].as_str().is_some());
    assert_eq!(a["last_refresh_at"], "2026-01-01T12:00:00Z");

    // At rest: no file of the data dir (db, -wal, -shm) holds any token text.
    let snap = env.snapshot();
    assert!(snap.keys().any(|p| p.to_string_lossy().ends_with(".db")));
    for (path, bytes) in &snap {
        assert_no_tokens(bytes, &tokens, &path.display().to_string());
    }
}

#[test]
fn keychain_holds_one_item_named_by_the_store_id() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let tokens = account(&fake, "kc@corp.com", "plus");
    env.import_auth_json(&tokens, LAST_REFRESH);
    let store_id = env.store_id();
    let found = secret_tool_search(&store_id);
    assert!(
        found.contains(&format!("data-key:{store_id}")),
        "secret-tool found no item for this store: {found:?}"
    );
}

#[test]
fn missing_key_with_sealed_data_is_key_missing_and_changes_nothing() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let tokens = account(&fake, "gone@corp.com", "plus");
    let path = env.import_auth_json(&tokens, LAST_REFRESH);
    let store_id = env.store_id();
    let user = format!("data-key:{store_id}");
    let cleared = Command::new("secret-tool")
        .args(["clear", "service", "codex-vault", "username", &user])
        .status()
        .unwrap();
    assert!(cleared.success());
    assert!(secret_tool_search(&store_id).is_empty(), "item still there");

    let before = env.snapshot();
    for args in [
        &["accounts", "list"][..],
        &["accounts", "import", path.to_str().unwrap()][..],
    ] {
        let r = env.run(args);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stdout);
        assert!(r.stderr.contains("[key_missing]"), "{}", r.stderr);
        assert!(r.stderr.contains("Nothing was changed"), "{}", r.stderr);
    }
    assert_eq!(env.snapshot(), before, "the store changed");
    assert!(
        secret_tool_search(&store_id).is_empty(),
        "a new key was written over existing data"
    );

    // The way out the app offers: set the unreadable store aside (moved whole, never deleted),
    // then a fresh store opens with a new key of its own.
    assert!(codex_vault::accounts::set_aside::can_set_aside(
        "key_missing"
    ));
    let aside = codex_vault::accounts::set_aside::set_aside(&env.vault_home()).unwrap();
    assert!(!env.vault_home().exists());
    let moved = snapshot_dir(&aside);
    assert_eq!(
        moved.into_values().collect::<Vec<_>>(),
        before.into_values().collect::<Vec<_>>(),
        "every byte of the old store is kept"
    );
    let r = env.run(&["accounts", "list", "--json"]);
    assert_eq!(r.code, 0, "a fresh store opens: {}", r.stderr);
    assert_eq!(r.stdout.trim(), "[]");
    assert_ne!(env.store_id(), store_id, "a new store, with a new key");
}

#[test]
fn importing_one_account_twice_updates_the_same_row() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let first = account(&fake, "twice@corp.com", "plus");
    let p1 = env.write_file(
        "a1.json",
        auth_json(&first, "2026-01-01T00:00:00Z").as_bytes(),
    );
    env.ok(&["accounts", "import", p1.to_str().unwrap()]);
    let id = env.list_json()[0]["id"].as_str().unwrap().to_string();

    // A newer file (a new grant of the same ChatGPT account) replaces the tokens.
    let second = fake.issue_grant(&first.account_id, None);
    let p2 = env.write_file(
        "a2.json",
        auth_json(&second, "2026-02-01T00:00:00Z").as_bytes(),
    );
    let r = env.ok(&["accounts", "import", p2.to_str().unwrap()]);
    assert!(
        r.stdout.contains("Updated existing account"),
        "{}",
        r.stdout
    );

    // An older file must not replace the newer grant.
    let r = env.ok(&["accounts", "import", p1.to_str().unwrap()]);
    assert!(
        r.stdout.contains("kept the newer tokens already held"),
        "{}",
        r.stdout
    );

    let list = env.list_json();
    assert_eq!(list.len(), 1, "a twin row was added");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["last_refresh_at"], "2026-02-01T00:00:00Z");

    let conn = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
    let kinds: Vec<String> = conn
        .prepare("SELECT kind FROM account_events WHERE account_id = ?1 ORDER BY id")
        .unwrap()
        .query_map([&id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // The newer file's grant is now held twice (the file and the vault): flagged once.
    assert_eq!(
        kinds,
        [
            "imported",
            "imported_again",
            "shared_grant_detected",
            "imported_again"
        ]
    );
    let generation: i64 = conn
        .query_row(
            "SELECT generation FROM accounts WHERE id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(generation, 1, "only the newer import rotated the grant");
}

#[test]
fn remove_deletes_account_and_secrets_but_keeps_history() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let tokens = account(&fake, "rm@corp.com", "plus");
    let path = env.write_file("auth.json", auth_json(&tokens, LAST_REFRESH).as_bytes());
    env.ok(&[
        "accounts",
        "import",
        path.to_str().unwrap(),
        "--label",
        "old",
    ]);
    env.ok(&["accounts", "remove", "old"]);
    assert!(env.list_json().is_empty());
    let r = env.run(&["accounts", "remove", "old"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("[account_not_found]"), "{}", r.stderr);
    let conn = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
    let secrets: i64 = conn
        .query_row("SELECT COUNT(*) FROM account_secrets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(secrets, 0);
    let removed: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM account_events WHERE kind = 'removed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(removed, 1);
}

#[test]
fn a_store_from_a_newer_version_is_refused_untouched() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let tokens = account(&fake, "new@corp.com", "plus");
    env.import_auth_json(&tokens, LAST_REFRESH);
    {
        let conn = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        // Leave a clean file behind, so the snapshot compares the DB itself.
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE").ok();
    }
    let before = env.snapshot();
    let r = env.run(&["accounts", "list"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("[store_too_new]"), "{}", r.stderr);
    assert!(r.stderr.contains("newer Codex Vault"), "{}", r.stderr);
    assert_eq!(env.snapshot(), before);
}

#[test]
fn file_key_store_is_an_explicit_opt_in_that_warns() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let tokens = account(&fake, "file@corp.com", "plus");
    let path = env.write_file("auth.json", auth_json(&tokens, LAST_REFRESH).as_bytes());
    let r = common::Run::from(
        env.cmd()
            .env("CODEX_VAULT_KEY_STORE", "file")
            .args(["accounts", "import", path.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = common::Run::from(
        env.cmd()
            .env("CODEX_VAULT_KEY_STORE", "file")
            .args(["accounts", "list", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("warning: The data key is kept in a file"),
        "{}",
        r.stderr
    );
    assert!(
        secret_tool_search(&env.store_id()).is_empty(),
        "file mode touched the keychain"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.vault_home().join("data-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[cfg(unix)]
#[test]
fn data_dir_is_0700_and_its_files_0600() {
    use std::os::unix::fs::PermissionsExt;
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let tokens = account(&fake, "perm@corp.com", "plus");
    env.import_auth_json(&tokens, LAST_REFRESH);
    let dir_mode = std::fs::metadata(env.vault_home())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    // Hold a connection with a write in the WAL, so -wal and -shm exist while modes are read.
    let conn = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
    conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    conn.execute(
        "INSERT INTO settings (key, value) VALUES ('probe', '1')",
        [],
    )
    .unwrap();
    let snap = env.snapshot();
    assert!(
        snap.keys().any(|p| p.to_string_lossy().ends_with("-wal")),
        "no WAL file to check: {:?}",
        snap.keys().collect::<Vec<_>>()
    );
    assert!(!snap.is_empty());
    for p in snap.keys() {
        let mode = std::fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", p.display());
    }
}

#[test]
fn a_reimport_never_renames_the_held_account_and_changes_nothing_when_asked_to() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let spec = codex_vault_testkit::AccountSpec {
        email: "same@corp.com".into(),
        ..Default::default()
    };
    let first = fake.add_account(spec.clone());
    let a = env.write_file("a.json", auth_json(&first, LAST_REFRESH).as_bytes());
    env.ok(&["accounts", "import", a.to_str().unwrap(), "--label", "work"]);

    // A newer file of the same ChatGPT account, with another label: refused, and nothing at all
    // is written — neither the label nor the newer tokens (one decision, before any write).
    let newer = fake.issue_grant(&first.account_id, None);
    let b = env.write_file(
        "b.json",
        auth_json(&newer, "2026-02-01T00:00:00Z").as_bytes(),
    );
    let before = env.snapshot();
    let r = env.run(&[
        "accounts",
        "import",
        b.to_str().unwrap(),
        "--label",
        "day job",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("[import_would_rename]"), "{}", r.stderr);
    assert!(
        r.stderr.contains("already held as account `work`")
            && r.stderr
                .contains("codex-vault accounts rename work 'day job'"),
        "the error says which account it is and how to rename: {}",
        r.stderr
    );
    assert_eq!(
        env.snapshot(),
        before,
        "a refused re-import changed the store"
    );
    assert_eq!(env.list_json()[0]["label"], "work");

    // Its own label, or none: the tokens are updated and the label stays.
    let r = env.ok(&["accounts", "import", b.to_str().unwrap(), "--label", "work"]);
    assert!(
        r.stdout.contains("Updated existing account work"),
        "{}",
        r.stdout
    );
    env.ok(&["accounts", "import", b.to_str().unwrap()]);
    assert_eq!(env.list_json()[0]["label"], "work");

    // Renaming is its own command.
    let r = env.ok(&["accounts", "rename", "work", "day job"]);
    assert!(
        r.stdout.contains("Renamed account work to day job"),
        "{}",
        r.stdout
    );
    let list = env.list_json();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["label"], "day job");
    let r = env.run(&["accounts", "rename", "nobody", "x"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("[account_not_found]"), "{}", r.stderr);
}

#[test]
fn a_newer_reimport_updates_the_claims_it_carries() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let spec = codex_vault_testkit::AccountSpec {
        email: "claims@corp.com".into(),
        plan: "plus".into(),
        fedramp: false,
        ..Default::default()
    };
    let first = fake.add_account(spec.clone());
    let a = env.write_file("a.json", auth_json(&first, LAST_REFRESH).as_bytes());
    env.ok(&["accounts", "import", a.to_str().unwrap()]);
    let fedramp = |env: &DataDir| -> bool {
        let conn = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
        conn.query_row("SELECT fedramp FROM accounts", [], |r| r.get(0))
            .unwrap()
    };
    assert!(!fedramp(&env));

    // The same ChatGPT account, now a FedRAMP workspace on another plan, with a new email.
    let moved = fake.add_account(codex_vault_testkit::AccountSpec {
        email: "claims-new@corp.com".into(),
        plan: "enterprise".into(),
        fedramp: true,
        ..spec.clone()
    });
    assert_eq!(moved.account_id, first.account_id);
    let b = env.write_file(
        "b.json",
        auth_json(&moved, "2026-02-01T00:00:00Z").as_bytes(),
    );
    // An older file carrying these claims changes nothing: only a newer grant speaks for them.
    let old = env.write_file(
        "old.json",
        auth_json(&moved, "2025-06-01T00:00:00Z").as_bytes(),
    );
    env.ok(&["accounts", "import", old.to_str().unwrap()]);
    assert!(!fedramp(&env));
    assert_eq!(env.list_json()[0]["plan"], "plus");

    let r = env.ok(&["accounts", "import", b.to_str().unwrap()]);
    assert!(
        r.stdout.contains("Updated existing account"),
        "{}",
        r.stdout
    );
    assert!(fedramp(&env), "fedramp follows the newer file");
    let list = env.list_json();
    assert_eq!(list[0]["plan"], "enterprise");
    assert_eq!(list[0]["email"], "claims-new@corp.com");

    // And back: a newer grant without the flag clears it.
    let back = fake.add_account(codex_vault_testkit::AccountSpec {
        fedramp: false,
        ..spec
    });
    let c = env.write_file(
        "c.json",
        auth_json(&back, "2026-03-01T00:00:00Z").as_bytes(),
    );
    env.ok(&["accounts", "import", c.to_str().unwrap()]);
    assert!(!fedramp(&env));
}
