//! The desktop app's endpoint controls, without a window: start, a port change that binds the new
//! port before letting go of the old, a taken port that changes nothing, key rotation that the
//! running listener obeys at once, stop — each checked over real loopback HTTP and through what
//! `endpoint info` (the listener registry) reports.

use crate::common::vault::*;
use codex_vault::endpoint::info;
use codex_vault::endpoint::SETTING_PORT;
use std::net::TcpListener;

/// The app's endpoint controls over a store whose `endpoint.port` is a free port.
async fn controls() -> TestVault {
    TestVault::builder()
        .setting(SETTING_PORT, &crate::common::free_port().to_string())
        .stopped()
        .start()
        .await
}

/// The status of `GET /v1/accounts` (key-guarded, never reaches upstream) on `port`.
async fn accounts_status(rig: &TestVault, port: u16, key: &str) -> Option<u16> {
    rig.http
        .get(format!("http://127.0.0.1:{port}/v1/accounts"))
        .bearer_auth(key)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_move_and_stop_report_the_real_listener() {
    let rig = controls().await;
    let key = rig.ctl().key().unwrap();
    let first = rig.ctl().start().await.unwrap();
    assert!(first.running);
    assert_eq!(first.url, format!("http://127.0.0.1:{}/v1", first.port));
    assert!(first.config_toml.contains(&first.url));
    assert!(!first.key_hint.is_empty() && !key.contains(&first.key_hint));
    assert_eq!(accounts_status(&rig, first.port, &key).await, Some(200));
    // Starting again is a no-op on the same listener.
    assert_eq!(rig.ctl().start().await.unwrap().port, first.port);

    let next = crate::common::free_port();
    let moved = rig.ctl().set_port(next).await.unwrap();
    assert!(moved.running);
    assert_eq!((moved.port, moved.configured_port), (next, next));
    assert_eq!(accounts_status(&rig, next, &key).await, Some(200));
    assert_eq!(
        accounts_status(&rig, first.port, &key).await,
        None,
        "the old port is let go"
    );
    // The registry names the new listener even though the old one was dropped after it.
    let info = info::info(&rig.core().service).unwrap();
    assert!(info.running);
    assert_eq!(info.port, next);
    assert_eq!(
        rig.service.store().setting(SETTING_PORT).unwrap(),
        Some(next.to_string())
    );

    let stopped = rig.ctl().stop().await.unwrap();
    assert!(!stopped.running);
    assert_eq!(
        stopped.port, next,
        "a stopped endpoint shows the port it would use"
    );
    assert_eq!(accounts_status(&rig, next, &key).await, None);
    assert!(!info::info(&rig.core().service).unwrap().running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_changes_nothing_and_names_the_problem() {
    let rig = controls().await;
    let key = rig.ctl().key().unwrap();
    let before = rig.ctl().start().await.unwrap();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();

    let e = rig.ctl().set_port(taken).await.unwrap_err();
    assert_eq!(e.code(), "port_in_use");
    assert!(e.to_string().contains(&taken.to_string()), "{e}");

    let after = rig.ctl().status().await.unwrap();
    assert!(after.running);
    assert_eq!(after.port, before.port, "still serving where it was");
    assert_eq!(
        after.configured_port, before.port,
        "the setting is unchanged"
    );
    assert_eq!(accounts_status(&rig, before.port, &key).await, Some(200));

    // Ports below 1024 are refused before anything is tried.
    assert_eq!(rig.ctl().set_port(80).await.unwrap_err().code(), "config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_on_a_taken_port_is_kept_as_the_panels_error() {
    let rig = controls().await;
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    rig.service
        .store()
        .set_setting(SETTING_PORT, &taken.to_string())
        .unwrap();
    assert_eq!(rig.ctl().start().await.unwrap_err().code(), "port_in_use");
    let status = rig.ctl().status().await.unwrap();
    assert!(!status.running);
    assert_eq!(status.error.map(|e| e.code.as_str()), Some("port_in_use"));
    // Once the port is free, a start clears the error.
    drop(held);
    let status = rig.ctl().start().await.unwrap();
    assert!(status.running && status.error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_the_only_one_the_listener_accepts() {
    let rig = controls().await;
    let old = rig.ctl().key().unwrap();
    let running = rig.ctl().start().await.unwrap();
    assert_eq!(accounts_status(&rig, running.port, &old).await, Some(200));

    let rotated = rig.ctl().rotate_key().await.unwrap();
    let new = rig.ctl().key().unwrap();
    assert_ne!(new, old);
    assert_ne!(rotated.key_hint, running.key_hint);
    assert_eq!(accounts_status(&rig, running.port, &old).await, Some(401));
    assert_eq!(accounts_status(&rig, running.port, &new).await, Some(200));
    // Other processes read the same new key.
    assert_eq!(rig.service.local_api_key().unwrap().expose(), new);
}
