//! The refresh engine never drops a rotation it was given, and says honestly what happened:
//! a shutdown waits for the refresh in flight (the path the desktop's Quit and `serve`'s SIGTERM
//! take), an answer lost in a live process is `rotation_lost_in_transit` found by the very next
//! refresh, and a token endpoint failing for one account costs one call per backoff step for all
//! requests together while the endpoint's other accounts answer them.

use crate::common::vault::*;
use codex_vault::account::Status;
use codex_vault::refresh::{RefreshConfig, RefreshError};
use codex_vault_testkit::{AccountSpec, Fault, FaultRoute};
use serde_json::json;
use std::time::{Duration, Instant};

/// Quit (desktop) and SIGTERM (`serve`) both end in `runtime::drain_refreshes`: the issuer has
/// rotated and holds its answer for 3 s; the drain waits for it and the commit, and starts
/// nothing new. A later process (a restart) finds the account healthy, with no reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_path_waits_for_a_rotation_the_issuer_is_still_answering() {
    let (e, t, id) = TestVault::with_expired("quit@corp.com").await;
    let fake = &e.fake;
    let tm = e.manager(refresh_config(fake));
    fake.inject_faults(
        FaultRoute::Token,
        vec![Fault::SlowAfterHandling(Duration::from_secs(3))],
    );
    let caller = {
        let (tm, id) = (tm.clone(), id.clone());
        tokio::spawn(async move { tm.access_token(&id).await })
    };
    // The issuer has rotated: its answer is on hold now.
    fake.wait_for_counters(Duration::from_secs(10), |n| n.refreshes_ok == 1)
        .await
        .unwrap();
    assert_eq!(tm.busy(), 1, "one refresh in flight");
    let drained = codex_vault::runtime::drain_refreshes(&tm).await;
    assert_eq!(drained.unfinished, 0, "{drained:?}");
    assert!(drained.held.is_empty(), "{drained:?}");
    let acct = e.service.store().get_account(&id).unwrap().unwrap();
    assert_eq!(
        acct.generation, 1,
        "the rotation was committed before the drain returned"
    );
    let got = caller.await.unwrap().expect("the caller got the new token");

    // Draining: nothing new starts, not even a forced refresh.
    let calls = fake.counters().token_calls;
    match tm.force_refresh(&id, None).await {
        Err(RefreshError::Transient { reason, .. }) => {
            assert!(reason.contains("shutting down"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.counters().token_calls, calls);

    // A restart: another process on the same store.
    let other = e.reopen();
    let tm2 = manager_for(&other, fake, refresh_config(fake));
    let after = tm2.access_token(&id).await.unwrap();
    assert_eq!(
        after.token, got.token,
        "the committed token is served after a restart"
    );
    assert!(accepted(fake, after.token.expose(), &t.account_id).await);
    let v = other.view(&id).unwrap();
    assert_eq!(v.status, Status::Healthy);
    assert!(v.failure.is_none());
    let n = fake.counters();
    assert_eq!((n.refreshes_ok, n.refresh_reuse), (1, 0), "{n:?}");
}

/// The issuer rotates, then the connection drops before its answer reaches us. The same call's
/// next refresh (under the same lease, at once — not some later scheduled one) finds the token
/// spent and says so with the honest code: the process is alive, the answer was lost in transit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_lost_in_a_live_process_is_lost_in_transit_found_by_the_next_refresh() {
    let (e, t, id) = TestVault::with_expired("transit@corp.com").await;
    let fake = &e.fake;
    let tm = e.manager(refresh_config(fake));
    fake.inject_faults(FaultRoute::Token, vec![Fault::DropAfterHandling]);
    match tm.access_token(&id).await {
        Err(RefreshError::Terminal { reason, .. }) => {
            assert_eq!(reason.code, "rotation_lost_in_transit");
            assert!(
                reason.message.contains("lost on the network"),
                "{}",
                reason.message
            );
        }
        other => panic!("{other:?}"),
    }
    let n = per_account(fake, &t.account_id);
    assert_eq!(
        (n.refresh_calls, n.refreshes_ok, n.refresh_reuse),
        (2, 1, 1),
        "the rotation whose answer was lost, then the one refresh that found out: {n:?}"
    );
    let v = e.service.view(&id).unwrap();
    assert_eq!(v.status, Status::Terminal);
    assert_eq!(v.failure.unwrap().code, "rotation_lost_in_transit");
    assert!(e.service.store().intent(&id).unwrap().is_none(), "settled");
}

/// A connection dropped before the issuer handled anything is ambiguous too: the next refresh
/// finds the token still current and the account simply refreshes — no false alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_request_the_issuer_never_handled_is_refreshed_at_once() {
    let (e, t, id) = TestVault::with_expired("dropped@corp.com").await;
    let fake = &e.fake;
    let tm = e.manager(RefreshConfig {
        transient_retries: 0,
        ..refresh_config(fake)
    });
    fake.inject_faults(FaultRoute::Token, vec![Fault::DropConnection]);
    let got = tm
        .access_token(&id)
        .await
        .expect("refreshed by the recheck");
    assert!(accepted(fake, got.token.expose(), &t.account_id).await);
    let n = fake.counters();
    assert_eq!((n.token_calls, n.refreshes_ok, n.refresh_reuse), (2, 1, 0));
    assert_eq!(e.service.view(&id).unwrap().status, Status::Healthy);
}

/// The token endpoint answers 503 for one account (its token expired), 60 requests go through
/// the endpoint: the failing account's refreshes follow one shared backoff (a handful of calls,
/// not three per request), the selector passes it over while it backs off, and the other
/// account answers every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_endpoint_costs_one_call_per_backoff_step_and_others_answer() {
    let base = Duration::from_millis(100);
    let mut e = TestVault::builder()
        .configure(move |c| c.refresh.retry_base = base)
        .no_endpoint()
        .start()
        .await;
    let fake = &e.fake;
    let failing = expired_account(fake, "failing@corp.com");
    e.import(&failing);
    let fine = fake.add_account(AccountSpec {
        email: "fine@corp.com".into(),
        ..Default::default()
    });
    e.import(&fine);
    fake.set_refresh_failure(&failing.account_id, Some(503));
    e.serve().await;
    let (fake, ep, key) = (&e.fake, e.ep(), &e.key);
    let http = reqwest::Client::new();
    let body = json!({"model": "gpt-5-codex", "instructions": "", "input": [{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}], "stream": true, "store": false});
    let started = Instant::now();
    for _round in 0..10 {
        let wave: Vec<_> = (0..6)
            .map(|_| {
                let req = http
                    .post(format!("{}/v1/responses", ep.url()))
                    .bearer_auth(key)
                    .json(&body);
                tokio::spawn(async move {
                    let r = req.send().await.unwrap();
                    let status = r.status().as_u16();
                    r.bytes().await.unwrap();
                    status
                })
            })
            .collect();
        for w in wave {
            assert_eq!(w.await.unwrap(), 200, "every request is answered");
        }
        // Workload pacing: requests arrive over a few backoff steps, as a client's would.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let bad = per_account(fake, &failing.account_id);
    let good = per_account(fake, &fine.account_id);
    assert_eq!(bad.responses_calls, 0, "the failing account never served");
    assert_eq!(
        good.responses_calls, 60,
        "the other account answered all 60"
    );
    // Steps grow base·2^k (each at least half of that): within `elapsed` at most
    // log2(2·elapsed/base + 1) + 1 of them can have ended.
    let steps = ((2.0 * elapsed.as_secs_f64() / base.as_secs_f64()) + 1.0).log2() as u64 + 1;
    eprintln!(
        "60 requests in {elapsed:?}: {} refresh calls for the failing account (backoff from {base:?})",
        bad.refresh_calls
    );
    assert!(
        bad.refresh_calls >= 1 && bad.refresh_calls <= steps + 1,
        "{} refresh calls in {elapsed:?} (at most {} backoff steps)",
        bad.refresh_calls,
        steps
    );
    assert_eq!(good.refresh_calls, 0);
}
