//! Several processes on one data dir: `endpoint info` reports every live listener — two `serve`s
//! on different ports, or a `serve` and the app's endpoint (EndpointControl, in this process) —
//! and when one goes (kill -9 included: the registry's liveness is a lock the kernel drops, never
//! a heartbeat), the other is still reported; with none left it says "not running".

use crate::common;

use codex_vault::endpoint::SETTING_PORT;
use common::{DataDir, TestVault};
use serde_json::Value;

fn info(env: &DataDir) -> Value {
    let r = env.ok(&["endpoint", "info", "--json"]);
    serde_json::from_str(&r.stdout).expect("info --json is JSON")
}

/// (pid, port) of every listener `endpoint info --json` reports, sorted.
fn listed(info: &Value) -> Vec<(u32, u16)> {
    let mut out: Vec<(u32, u16)> = info["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .map(|l| {
            (
                l["pid"].as_u64().unwrap() as u32,
                l["port"].as_u64().unwrap() as u16,
            )
        })
        .collect();
    out.sort();
    out
}

fn sorted(mut v: Vec<(u32, u16)>) -> Vec<(u32, u16)> {
    v.sort();
    v
}

#[test]
fn two_serves_on_one_store_are_both_reported_and_the_survivor_stays() {
    let env = TestVault::builder().data_dir();
    env.ok(&["accounts", "list"]);
    let mut a = env.spawn_serve(common::NO_ENV, env.dir.path().join("a.log"));
    let mut b = env.spawn_serve(common::NO_ENV, env.dir.path().join("b.log"));
    assert_ne!(a.port, b.port);

    let both = info(&env);
    assert_eq!(both["running"], true);
    assert_eq!(
        listed(&both),
        sorted(vec![(a.pid(), a.port), (b.pid(), b.port)])
    );
    let text = env.run(&["endpoint", "info"]);
    assert!(
        text.stdout.contains("2 processes serve this store")
            && text
                .stdout
                .contains(&format!("127.0.0.1:{}/v1 (pid {})", a.port, a.pid()))
            && text
                .stdout
                .contains(&format!("127.0.0.1:{}/v1 (pid {})", b.port, b.pid())),
        "{}",
        text.stdout
    );

    // kill -9: no chance to clean up; the other is still the one reported.
    a.kill_9();
    let one = info(&env);
    assert_eq!(one["running"], true, "{one}");
    assert_eq!(listed(&one), vec![(b.pid(), b.port)]);
    assert_eq!(one["pid"], b.pid());
    assert_eq!(one["url"], format!("http://127.0.0.1:{}/v1", b.port));
    let text = env.run(&["endpoint", "info"]).stdout;
    assert!(
        text.contains(&format!(
            "running at http://127.0.0.1:{}/v1 (pid {})",
            b.port,
            b.pid()
        )),
        "{text}"
    );

    // Stopped too: none left.
    // A clean stop even right after the listening line: the handler is in place before it.
    assert_eq!(b.terminate(), Some(0), "serve stops cleanly on SIGTERM");
    let none = info(&env);
    assert_eq!(none["running"], false, "{none}");
    assert!(listed(&none).is_empty());
    assert!(env
        .run(&["endpoint", "info"])
        .stdout
        .contains("not running"));
    // The killed one's leftover entry was cleared on the way.
    let left: Vec<_> = std::fs::read_dir(env.vault_home().join("endpoints"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_endpoint_and_a_serve_are_both_reported() {
    // The app's endpoint on a free port of its own.
    let rig = TestVault::builder()
        .setting(SETTING_PORT, &common::free_port().to_string())
        .stopped()
        .start()
        .await;
    let (env, ctl) = (&rig.dir, rig.ctl());
    let app = ctl.start().await.unwrap();
    let mut serve = env.spawn_serve(common::NO_ENV, env.dir.path().join("serve.log"));

    let me = std::process::id();
    let both = tokio::task::block_in_place(|| info(env));
    assert_eq!(
        listed(&both),
        sorted(vec![(me, app.port), (serve.pid(), serve.port)])
    );
    // The configured port's listener (the app's) is the one tools are pointed at.
    assert_eq!(both["port"], app.port);
    // The app's panel names the other process while its own endpoint is stopped.
    let stopped = ctl.stop().await.unwrap();
    assert_eq!(stopped.other_pid, Some(serve.pid()));

    let one = tokio::task::block_in_place(|| info(env));
    assert_eq!(listed(&one), vec![(serve.pid(), serve.port)]);
    assert_eq!(one["running"], true);

    serve.kill_9();
    let none = tokio::task::block_in_place(|| info(env));
    assert_eq!(none["running"], false);
    assert_eq!(ctl.status().await.unwrap().other_pid, None);
}
