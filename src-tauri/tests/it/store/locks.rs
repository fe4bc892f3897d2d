//! Several store connections in one process (the desktop app holds one for the UI, one for the
//! endpoint and a watcher) must keep their SQLite locks while other processes come and go: a
//! process whose connection closes last checkpoints and deletes the WAL, and must never believe
//! it is last while we still write. Regression: opening a second connection used to open and
//! close the database file outside SQLite, which dropped this process's POSIX locks.

use crate::common::vault::*;
use codex_vault_testkit::AccountSpec;
use std::process::Command;

fn cli_labels(dir: &std::path::Path) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_codex-vault"))
        .args(["accounts", "list", "--json"])
        .env("CODEX_VAULT_HOME", dir)
        .env_remove("CODEX_VAULT_KEY_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter()
        .map(|a| a["label"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn other_processes_see_every_commit_of_a_multi_connection_process() {
    let e = TestVault::builder().no_endpoint().start().await;
    let fake = &e.fake;
    // A second connection, opened after the first, as the desktop app's endpoint does.
    let second = e.reopen();
    let wal = e.data_dir().join("codex-vault.db-wal");
    for round in 0..3 {
        // Another process opens and closes the store...
        let before = cli_labels(&e.data_dir());
        assert!(
            wal.exists(),
            "round {round}: the WAL was deleted under open connections"
        );
        // ...and still sees what this process commits afterwards, on either connection.
        let tokens = fake.add_account(AccountSpec {
            email: format!("locks{round}@corp.com"),
            ..Default::default()
        });
        e.import(&tokens);
        let after = cli_labels(&e.data_dir());
        assert_eq!(after.len(), before.len() + 1, "round {round}: {after:?}");
        second
            .store()
            .set_setting("test.round", &round.to_string())
            .unwrap();
    }
    assert_eq!(
        e.service.store().setting("test.round").unwrap().as_deref(),
        Some("2")
    );
}
