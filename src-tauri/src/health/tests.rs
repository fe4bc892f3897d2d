use super::*;
use crate::account::{now_ms, Status};
use crate::store::Store;
use crate::store::{NewAccount, SealedTokens};

fn store_with_account() -> (tempfile::TempDir, Arc<Store>, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    // Unique per test: the views health tells (`register_view`) are process-wide, and the
    // tests run in parallel; with one shared id a test saw another's rate limit of "acct-1".
    let id = format!("acct-{}", uuid::Uuid::new_v4().simple());
    store
        .insert_account(
            &NewAccount {
                id: id.clone(),
                label: "one".into(),
                email: None,
                chatgpt_account_id: "cg-1".into(),
                chatgpt_user_id: "user-1".into(),
                plan: None,
                fedramp: false,
                last_refresh_at: Some(now_ms()),
            },
            &SealedTokens {
                access_token: vec![1],
                id_token: vec![2],
                refresh_token: vec![3],
                refresh_fingerprint: "fp".into(),
                access_expires_at: Some(now_ms() + 3_600_000),
                access_issued_at: Some(now_ms()),
            },
            "imported",
            None,
        )
        .unwrap();
    (dir, store, id)
}

fn reason() -> FailureReason {
    FailureReason {
        code: "refresh_token_reused".into(),
        message: "dead".into(),
        http_status: Some(401),
        at: now_ms(),
    }
}

/// Records what health hands to the views of this process.
#[derive(Default)]
struct Seen(Mutex<Vec<(String, Status)>>);

impl AccountSink for Seen {
    fn account_written(&self, _store_id: &str, account: &Account) {
        self.0
            .lock()
            .unwrap()
            .push((account.id.clone(), account.status));
    }
}

#[test]
fn a_verdict_for_an_older_generation_writes_nothing_and_tells_nobody() {
    let (_dir, store, id) = store_with_account();
    let seen = Arc::new(Seen::default());
    register_view(Arc::downgrade(&seen) as Weak<dyn AccountSink>);
    let generation = store.generation(&id).unwrap().unwrap();
    let health = Health::new(store.clone());
    assert!(!health
        .mark_terminal(&id, generation + 1, &reason())
        .unwrap());
    assert_eq!(
        store.get_account(&id).unwrap().unwrap().status,
        Status::Healthy
    );
    assert!(seen.0.lock().unwrap().iter().all(|(a, _)| a != &id));

    assert!(health.mark_terminal(&id, generation, &reason()).unwrap());
    assert_eq!(
        store.get_account(&id).unwrap().unwrap().status,
        Status::Terminal
    );
    assert!(
        seen.0
            .lock()
            .unwrap()
            .contains(&(id.clone(), Status::Terminal)),
        "the view got the row before the call returned"
    );
    // Dead stays dead: a later rate limit does not revive it.
    assert!(!health.rate_limited(&id, now_ms() + 60_000).unwrap());
}

#[tokio::test]
async fn a_change_is_published_on_the_bus() {
    let (_dir, store, id) = store_with_account();
    let mut rx = bus::Bus::global().subscribe();
    let health = Health::new(store);
    assert!(health.rate_limited(&id, now_ms() + 60_000).unwrap());
    let want = CoreEvent::AccountChanged {
        account_id: id.clone(),
    };
    bus::next_matching(&mut rx, |e| *e == want).await.unwrap();
    assert!(health.rate_limit_lifted(&id).unwrap());
}

#[test]
fn a_failed_write_is_returned_not_swallowed() {
    let (_dir, store, id) = store_with_account();
    store.fail_writes_for_test();
    let health = Health::new(store.clone());
    let generation = store.generation(&id).unwrap().unwrap();
    let err = health
        .mark_terminal(&id, generation, &reason())
        .unwrap_err();
    assert_eq!(err.code(), "store_error", "{err}");
    assert!(health.usage(&id, "{}").is_err());
    assert!(health.shared_grant(&id, Some("somewhere")).is_err());
}

#[test]
fn a_stale_shared_grant_flag_is_decided_by_reading_and_cleared_only_by_health() {
    let (dir, store, id) = store_with_account();
    let gone = dir.path().join("gone").join("auth.json");
    assert!(store
        .set_shared_grant(&id, Some(gone.to_str().unwrap()))
        .unwrap());
    assert_eq!(shared_grants::stale(&*store).unwrap(), vec![id.clone()]);
    assert!(
        store
            .get_account(&id)
            .unwrap()
            .unwrap()
            .shared_grant_where
            .is_some(),
        "deciding wrote nothing"
    );
    let health = Health::new(store.clone());
    assert_eq!(health.recheck_shared_grants().unwrap(), 1);
    assert!(store
        .get_account(&id)
        .unwrap()
        .unwrap()
        .shared_grant_where
        .is_none());
    assert!(shared_grants::stale(&*store).unwrap().is_empty());
    assert_eq!(health.recheck_shared_grants().unwrap(), 0);
}
