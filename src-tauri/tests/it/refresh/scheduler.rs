//! The background scheduler in real time against the fake: a due account is refreshed in its
//! window (and not again until the next), and with nothing due the fake sees no call at all.
//! The lead-time rules themselves are simulated over days of virtual time in `refresh::plan`.

use crate::common::vault::*;
use codex_vault::refresh::plan::{SETTING_FRACTION, SETTING_MIN_SECS};
use codex_vault::refresh::Scheduler;
use codex_vault_testkit::AccountSpec;
use std::time::Duration;

/// In a process of its own: the core's event bus is process-wide, and another test's imports
/// and refreshes would wake this scheduler.
#[test]
fn nothing_due_means_no_calls() {
    if !crate::common::in_own_process(concat!(module_path!(), "::nothing_due_means_no_calls"), &[])
    {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(nothing_due_means_no_calls_alone());
}

async fn nothing_due_means_no_calls_alone() {
    let e = TestVault::builder().no_endpoint().start().await;
    let fake = &e.fake;
    for i in 0..3 {
        e.import(&fake.add_account(AccountSpec {
            email: format!("idle{i}@corp.com"),
            ..Default::default()
        }));
    }
    let scheduler = Scheduler::spawn(e.manager(refresh_config(fake)));
    // Observation interval: fresh 1-hour tokens are not due for ~54 minutes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.counters().token_calls, 0);
    assert!(
        scheduler.wakeups() <= 2,
        "the scheduler spins: {} wake-ups",
        scheduler.wakeups()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_account_is_refreshed_once_per_window() {
    let e = TestVault::builder().no_endpoint().start().await;
    let fake = &e.fake;
    // Short tokens and a small lead (settings live in SQLite), so windows pass in seconds.
    e.service
        .store()
        .set_setting(SETTING_FRACTION, "0.25")
        .unwrap();
    e.service
        .store()
        .set_setting(SETTING_MIN_SECS, "0.5")
        .unwrap();
    fake.set_access_token_lifetime(Duration::from_secs(4));
    let t = fake.add_account(AccountSpec {
        email: "due@corp.com".into(),
        ..Default::default()
    });
    let idle = fake.add_account(AccountSpec {
        email: "idle@corp.com".into(),
        access_token_lifetime: Some(Duration::from_secs(3600)),
        ..Default::default()
    });
    let id = e.import(&t);
    e.import(&idle);
    let _scheduler = Scheduler::spawn(e.manager(refresh_config(fake)));
    let n = fake
        .wait_for_counters(Duration::from_secs(30), |n| {
            n.per_account
                .get(&t.account_id)
                .is_some_and(|c| c.refreshes_ok >= 4)
        })
        .await
        .expect("four windows pass");
    assert_eq!(n.refresh_reuse, 0);
    assert!(
        n.per_account
            .get(&idle.account_id)
            .is_none_or(|c| c.refreshes_ok == 0),
        "the 1-hour account was refreshed early"
    );
    // Refresh times: never before half a token's life (2 s), never after expiry (4 s).
    let times: Vec<i64> = e
        .service
        .store()
        .events(&id, 100)
        .unwrap()
        .into_iter()
        .filter(|ev| ev.kind == "refreshed")
        .map(|ev| ev.at)
        .rev()
        .collect();
    // The fake counts a rotation when it answers and our commit follows: the first three are in.
    assert!(times.len() >= 3, "{times:?}");
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            (1900..4000).contains(&gap),
            "refresh gap {gap} ms outside the window"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_added_by_another_process_is_picked_up() {
    let e = TestVault::builder().no_endpoint().start().await;
    let fake = &e.fake;
    let _scheduler = Scheduler::spawn(e.manager(refresh_config(fake)));
    // Another handle on the file (its own connection), as the CLI would be: an already-expired
    // account appears there, and the running scheduler refreshes it without being told.
    let other = e.reopen();
    let first = fake.add_account(AccountSpec {
        email: "late@corp.com".into(),
        ..Default::default()
    });
    let t = fake.issue_grant(&first.account_id, Some(Duration::ZERO));
    import_into(&other, &t);
    fake.wait_for_counters(Duration::from_secs(20), |n| n.refreshes_ok >= 1)
        .await
        .expect("the new account was refreshed by the running scheduler");
}
