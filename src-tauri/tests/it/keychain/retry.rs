//! A keychain that was unreachable when the process first looked is tried again by the next open:
//! the desktop app recovers once the user starts or unlocks their keyring, without a restart.
//! In a process of its own: it changes that process's environment (the session bus address).

use crate::common;

use codex_vault::accounts::Service;
use codex_vault::vault::KeyStoreKind;
use common::*;

#[test]
fn a_failed_keychain_start_is_not_remembered() {
    if !in_own_process(
        concat!(
            module_path!(),
            "::a_failed_keychain_start_is_not_remembered"
        ),
        &[],
    ) {
        return;
    }
    let env = TestVault::builder().data_dir();
    let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").expect("run inside keyring-session");
    // The only test in this process, so no other thread reads the environment meanwhile.
    std::env::set_var(
        "DBUS_SESSION_BUS_ADDRESS",
        format!("unix:path={}", env.dir.path().join("no-such-bus").display()),
    );
    let e = Service::open(&env.vault_home(), KeyStoreKind::Keychain)
        .err()
        .expect("no bus: the open fails");
    assert_eq!(e.code(), "keychain_unavailable", "{e}");
    assert!(
        !env.vault_home().exists(),
        "a failed first open left a store"
    );

    // The keyring comes up: the same process opens the store now.
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", bus);
    let s = Service::open(&env.vault_home(), KeyStoreKind::Keychain).expect("retried");
    assert_eq!(s.info().key_store, KeyStoreKind::Keychain);
    assert!(s.list().unwrap().is_empty());
    let store_id = s.store().store_id().to_string();
    assert!(
        !secret_tool_search(&store_id).is_empty(),
        "the key is in the keychain"
    );
}
