//! The data key is read from the keychain once per process, however often the store is opened.
//! Its own test binary, so no other test moves the process-wide counter.

use codex_vault::service::Service;
use codex_vault::vault::{keychain_reads, KeyStoreKind};

#[test]
fn data_key_is_read_once_per_process() {
    let dir = tempfile::tempdir().unwrap();
    let before = keychain_reads();
    let a = Service::open(dir.path(), KeyStoreKind::Keychain).expect("open 1");
    let b = Service::open(dir.path(), KeyStoreKind::Keychain).expect("open 2");
    drop((a, b));
    let c = Service::open(dir.path(), KeyStoreKind::Keychain).expect("open 3");
    assert_eq!(keychain_reads() - before, 1);
    assert_eq!(c.info().key_store, KeyStoreKind::Keychain);
}
