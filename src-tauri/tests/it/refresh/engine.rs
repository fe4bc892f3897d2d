//! The refresh engine in one process against the fake (counting its refresh calls):
//! single-flight, race recovery in both reuse shapes, family revoke, genuine death, an outsider's
//! redemption, transient failures, and rotations that concurrent writes can never drop.

use crate::common::vault::*;
use codex_vault::account::Status;
use codex_vault::refresh::{AccessToken, RefreshConfig, RefreshError};
use codex_vault_testkit::{FakeOpenAi, Fault, FaultRoute, ReuseMode};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_cause_one_refresh() {
    let (e, t, id) = TestVault::with_expired("sf@corp.com").await;
    let fake = &e.fake;
    let tm = e.manager(refresh_config(fake));
    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let (tm, id) = (tm.clone(), id.clone());
            tokio::spawn(async move { tm.access_token(&id).await })
        })
        .collect();
    let mut tokens = Vec::new();
    for c in calls {
        tokens.push(c.await.unwrap().expect("every caller gets a token"));
    }
    assert_eq!(
        fake.counters().refreshes_ok,
        1,
        "exactly one refresh at the fake"
    );
    assert!(
        tokens.iter().all(|x| x.token == tokens[0].token),
        "all callers got the same token"
    );
    assert_ne!(tokens[0].token.expose(), t.access_token);
    assert!(accepted(fake, tokens[0].token.expose(), &t.account_id).await);
    assert_eq!(
        e.service
            .store()
            .get_account(&id)
            .unwrap()
            .unwrap()
            .generation,
        1
    );
}

/// Two independent managers (as two processes would have) with the lease off, refreshing one
/// expired account at once: nothing but race recovery stands between them and a dead account.
/// The first refresh to arrive is held briefly, so both redeem the same refresh token.
async fn racing_refreshes(
    fake: &FakeOpenAi,
    e: &TestVault,
    id: &str,
) -> (
    Result<AccessToken, RefreshError>,
    Result<AccessToken, RefreshError>,
) {
    let other = e.reopen();
    let cfg = RefreshConfig {
        lease_enabled: false,
        ..refresh_config(fake)
    };
    let (a, b) = (e.manager(cfg.clone()), manager_for(&other, fake, cfg));
    fake.inject_faults(
        FaultRoute::Token,
        vec![Fault::Slow(Duration::from_millis(400))],
    );
    tokio::join!(a.access_token(id), b.access_token(id))
}

async fn race(mode: ReuseMode, expected_code: &str) {
    let (e, t, id) = TestVault::with_expired("race@corp.com").await;
    let fake = &e.fake;
    // How the fake answers refreshes: set before the first one.
    fake.set_reuse_mode(mode);
    let (ra, rb) = racing_refreshes(fake, &e, &id).await;
    let (ta, tb) = (ra.expect("a gets a token"), rb.expect("b gets a token"));
    assert_eq!(ta.token, tb.token, "the loser adopted the winner's token");
    let n = fake.counters();
    assert_eq!(
        (n.refreshes_ok, n.refresh_reuse),
        (1, 1),
        "one winner, one loser: {n:?}"
    );
    let acct = e.service.store().get_account(&id).unwrap().unwrap();
    assert_eq!(acct.status, Status::Healthy);
    assert!(acct.failure.is_none());
    let ev = e.events(&id);
    assert!(ev.contains(&"race_recovered".to_string()), "{ev:?}");
    let detail = e.service.store().events(&id, 10).unwrap();
    assert!(detail
        .iter()
        .any(|d| d.detail.as_deref().unwrap_or("").starts_with(expected_code)));
    assert!(accepted(fake, ta.token.expose(), &t.account_id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_recovery_after_refresh_token_reused() {
    race(ReuseMode::RefreshTokenReused, "refresh_token_reused").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_recovery_after_invalid_grant() {
    race(ReuseMode::InvalidGrant, "invalid_grant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_token_revoked_by_family_revoke_is_terminal_with_upstreams_code() {
    let (e, _t, id) = TestVault::with_expired("family@corp.com").await;
    let fake = &e.fake;
    // How the fake answers refreshes: set before the first one.
    fake.set_family_revoke_on_reuse(true);
    let (ra, rb) = racing_refreshes(fake, &e, &id).await;
    let loser = [ra, rb]
        .into_iter()
        .find_map(Result::err)
        .expect("the loser cannot keep a revoked token");
    match loser {
        RefreshError::Terminal { reason, .. } => {
            assert_eq!(reason.http_status, Some(401));
            assert!(
                reason.message.contains("revoked the whole sign-in"),
                "{}",
                reason.message
            );
        }
        other => panic!("{other:?}"),
    }
    let acct = e.service.store().get_account(&id).unwrap().unwrap();
    assert_eq!(acct.status, Status::Terminal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_is_terminal_with_its_reason_and_never_retried() {
    let (e, t, id) = TestVault::with_expired("dead@corp.com").await;
    let fake = &e.fake;
    fake.revoke_account(&t.account_id);
    let tm = e.manager(refresh_config(fake));
    match tm.access_token(&id).await {
        Err(RefreshError::Terminal { reason, .. }) => {
            assert_eq!(reason.code, "refresh_token_invalidated");
            assert_eq!(reason.http_status, Some(401));
            assert!(!reason.message.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let view = e.service.view(&id).unwrap();
    assert_eq!(view.status, Status::Terminal);
    let f = view.failure.unwrap();
    assert_eq!(f.code, "refresh_token_invalidated");
    assert_eq!(f.http_status, Some(401));
    let calls = fake.counters().token_calls;
    for _ in 0..5 {
        assert!(matches!(
            tm.access_token(&id).await,
            Err(RefreshError::Terminal { .. })
        ));
        assert!(matches!(
            tm.force_refresh(&id, None).await,
            Err(RefreshError::Terminal { .. })
        ));
    }
    assert_eq!(
        fake.counters().token_calls,
        calls,
        "a dead grant was hammered"
    );
    assert!(e.events(&id).contains(&"failed".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsider_redeeming_our_token_is_refresh_token_reused_naming_another_app() {
    let (e, t, id) = TestVault::with_expired("outsider@corp.com").await;
    let fake = &e.fake;
    fake.rotate_out_of_band(&t.refresh_token);
    match e.manager(refresh_config(fake)).access_token(&id).await {
        Err(RefreshError::Terminal { reason, .. }) => {
            assert_eq!(reason.code, "refresh_token_reused");
            assert!(reason.message.contains("another app"), "{}", reason.message);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_warn_then_clear_and_never_kill() {
    let (e, t, id) = TestVault::with_expired("flaky@corp.com").await;
    let fake = &e.fake;
    let tm = e.manager(RefreshConfig {
        transient_retries: 0,
        ..refresh_config(fake)
    });
    fake.inject_faults(
        FaultRoute::Token,
        vec![
            Fault::Status(503),
            Fault::Status(503),
            // Not a dropped connection: that one is re-checked at once (the answer may have been
            // lost after the issuer rotated), see refresh_durability.rs.
            Fault::Status(502),
        ],
    );
    for _ in 0..3 {
        match tm.access_token(&id).await {
            Err(RefreshError::Transient { .. }) => {}
            other => panic!("{other:?}"),
        }
        let v = e.service.view(&id).unwrap();
        assert_eq!(
            v.status,
            Status::Healthy,
            "a transient failure must never be terminal"
        );
        assert!(v.last_error.is_some(), "the warning is shown");
    }
    let ok = tm.access_token(&id).await.expect("the fourth try succeeds");
    assert!(accepted(fake, ok.token.expose(), &t.account_id).await);
    let v = e.service.view(&id).unwrap();
    assert!(v.last_error.is_none(), "the warning is cleared on success");
    assert_eq!(v.status, Status::Healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_inside_one_call_ride_out_a_short_outage() {
    let (e, _t, id) = TestVault::with_expired("retry@corp.com").await;
    let fake = &e.fake;
    fake.inject_faults(
        FaultRoute::Token,
        vec![Fault::Status(502), Fault::Status(500)],
    );
    let tm = e.manager(refresh_config(fake));
    assert!(tm.access_token(&id).await.is_ok());
    assert_eq!(fake.counters().refreshes_ok, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_writes_racing_refreshes_never_lose_a_rotation() {
    let e = TestVault::builder().no_endpoint().start().await;
    let fake = &e.fake;
    let t = fake.add_account(Default::default());
    let id = e.import(&t);
    let tm = e.manager(refresh_config(fake));
    let store = e.service.store().clone();
    for i in 0..40 {
        let writer = {
            let (store, id) = (store.clone(), id.clone());
            tokio::task::spawn_blocking(move || {
                for j in 0..20 {
                    store.set_label(&id, &format!("label-{i}-{j}")).unwrap();
                    store.set_setting("probe", &j.to_string()).unwrap();
                }
            })
        };
        let refreshed = tm.force_refresh(&id, None).await.expect("refresh");
        writer.await.unwrap();
        assert_eq!(refreshed.generation, i + 1);
    }
    // Had any rotation been dropped, the stored refresh token would be stale and this would be a reuse.
    let last = tm
        .force_refresh(&id, None)
        .await
        .expect("the stored refresh token is the current one");
    assert!(accepted(fake, last.token.expose(), &t.account_id).await);
    let n = fake.counters();
    assert_eq!((n.refreshes_ok, n.refresh_reuse), (41, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_attempt_never_marks_a_newer_generation_terminal() {
    use codex_vault::account::{now_ms, FailureReason};
    let e = TestVault::builder().no_endpoint().start().await;
    let fake = &e.fake;
    let t = fake.add_account(Default::default());
    let id = e.import(&t);
    let g0 = e
        .service
        .store()
        .get_account(&id)
        .unwrap()
        .unwrap()
        .generation;
    e.manager(refresh_config(fake))
        .force_refresh(&id, None)
        .await
        .unwrap();
    // A process that started at g0 now sees refresh_token_reused and tries to record it.
    let reason = FailureReason {
        code: "refresh_token_reused".into(),
        message: "m".into(),
        http_status: Some(401),
        at: now_ms(),
    };
    assert!(!e.service.store().mark_terminal(&id, g0, &reason).unwrap());
    assert!(!e.service.store().set_last_error(&id, g0, "stale").unwrap());
    let a = e.service.store().get_account(&id).unwrap().unwrap();
    assert_eq!(a.status, Status::Healthy);
    assert!(a.last_error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_fields_keep_their_old_values() {
    let (e, t, id) = TestVault::with_expired("noid@corp.com").await;
    let fake = &e.fake;
    // How the fake answers refreshes: set before the first one.
    fake.set_omit_id_token_on_refresh(true);
    e.manager(refresh_config(fake))
        .access_token(&id)
        .await
        .unwrap();
    let s = e.service.store().secrets(&id).unwrap().unwrap();
    let id_token = e
        .service
        .vault()
        .open(&id, codex_vault::vault::Field::IdToken, &s.id_token)
        .unwrap();
    assert_eq!(
        id_token.expose(),
        t.id_token,
        "the old id_token is kept when the answer omits it"
    );
}
