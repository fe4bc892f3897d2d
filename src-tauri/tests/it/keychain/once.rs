//! The data key is read from the keychain once per process, however often the store is opened.
//! The counting test runs in a process of its own, so no other test moves the process-wide counter.

use crate::common;

use codex_vault::accounts::Service;
use codex_vault::vault::{keychain_reads, KeyStoreKind};
use common::*;

#[test]
fn data_key_is_read_once_per_process() {
    if !in_own_process(
        concat!(module_path!(), "::data_key_is_read_once_per_process"),
        &[],
    ) {
        return;
    }
    // An existing store, made by another process (the CLI), as a user's would be.
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "once@corp.com", "plus");
    let p = env.write_file(
        "auth.json",
        auth_json(&t, "2026-01-01T00:00:00Z").as_bytes(),
    );
    env.ok(&["accounts", "import", p.to_str().unwrap()]);

    let before = keychain_reads();
    let a = Service::open(&env.vault_home(), KeyStoreKind::Keychain).expect("open 1");
    let b = Service::open(&env.vault_home(), KeyStoreKind::Keychain).expect("open 2");
    assert_eq!(a.list().unwrap().len(), 1);
    drop((a, b));
    let c = Service::open(&env.vault_home(), KeyStoreKind::Keychain).expect("open 3");
    assert_eq!(keychain_reads() - before, 1);
    assert_eq!(c.info().key_store, KeyStoreKind::Keychain);
}

#[test]
fn two_processes_creating_a_store_at_once_agree_on_one_key() {
    // Several CLI processes open one new data dir at the same moment: exactly one key is minted
    // and every import stays readable.
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let files: Vec<_> = (0..4)
        .map(|i| {
            let t = account(&fake, &format!("race{i}@corp.com"), "plus");
            env.write_file(
                &format!("a{i}.json"),
                auth_json(&t, "2026-01-01T00:00:00Z").as_bytes(),
            )
        })
        .collect();
    let children: Vec<_> = files
        .iter()
        .map(|p| {
            env.cmd()
                .args(["accounts", "import", p.to_str().unwrap()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = env.list_json();
    assert_eq!(list.len(), 4);
    let store_id = env.store_id();
    let items = secret_tool_search(&store_id);
    assert_eq!(
        items
            .matches(&format!("attribute.username = data-key:{store_id}"))
            .count(),
        1,
        "{items}"
    );
}
