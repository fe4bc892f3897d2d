//! A setting changed by another process while the endpoint runs reaches it through the bus: the
//! store watcher applies the commit to this process's settings copy and publishes
//! `SettingsChanged`, on which the endpoint re-applies its settings. No reload by hand.

use crate::common::vault::{turn, TestVault};
use crate::common::wait_until_async;
use codex_vault::bus::{Bus, CoreEvent};
use codex_vault::endpoint;
use codex_vault_testkit::{Fault, FaultRoute};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_processs_setting_reaches_the_running_endpoint_through_the_bus() {
    let v = TestVault::new(2).await;
    let ep = v.ep();
    assert!(ep.first_byte_hold(), "on by default");
    let mut bus = Bus::global().subscribe();

    // What another process does: a commit on a connection of its own (this process's copy of
    // the settings knows nothing of it until the watcher sees the commit).
    let other =
        rusqlite::Connection::open(v.data_dir().join(codex_vault::store::DB_FILE_NAME)).unwrap();
    other
        .execute(
            "INSERT INTO settings (key, value) VALUES (?1, 'off') \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [endpoint::SETTING_FIRST_BYTE_HOLD],
        )
        .unwrap();

    let key = endpoint::SETTING_FIRST_BYTE_HOLD.to_string();
    tokio::time::timeout(
        Duration::from_secs(10),
        codex_vault::bus::next_matching(&mut bus, |e| {
            *e == CoreEvent::SettingsChanged { key: key.clone() }
        }),
    )
    .await
    .expect("SettingsChanged published for the other process's write")
    .unwrap();
    wait_until_async(
        "the endpoint applies the new setting",
        Duration::from_secs(10),
        || std::future::ready(!ep.first_byte_hold()),
    )
    .await;
    assert_eq!(
        v.service
            .store()
            .setting(endpoint::SETTING_FIRST_BYTE_HOLD)
            .unwrap()
            .as_deref(),
        Some("off"),
        "this process's copy has it"
    );

    // And it acts on it: with the hold off a failure before output is the client's (no failover).
    v.fake
        .inject_faults(FaultRoute::Responses, vec![Fault::overloaded_in_stream()]);
    let sse = v
        .post(turn(None))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sse.contains("response.failed"), "{sse}");
    assert_eq!(v.fake.counters().responses_calls, 1, "no failover");
}
