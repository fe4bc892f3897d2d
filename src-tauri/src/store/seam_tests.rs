//! The seam driven only through `&dyn CoreStore`: the main flows the endpoint and the refresh
//! engine rely on. `drive` takes nothing but the trait object and an account's id, so a second
//! backend proves itself by passing the same function.

use super::*;
use crate::account::Status;
use crate::store::{NewAccount, SealedTokens};

/// A store in a temp dir holding one account, `acct-1` (the store's other unit tests use it too).
pub(in crate::store) fn store_with_account() -> (tempfile::TempDir, Store, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = "acct-1".to_string();
    let new = NewAccount {
        id: id.clone(),
        label: "work".into(),
        email: Some("ana@corp.com".into()),
        chatgpt_account_id: "chatgpt-1".into(),
        chatgpt_user_id: "user-1".into(),
        plan: Some("plus".into()),
        fedramp: false,
        last_refresh_at: Some(1),
    };
    let sealed = SealedTokens {
        access_token: b"sealed-access-0".to_vec(),
        id_token: b"sealed-id-0".to_vec(),
        refresh_token: b"sealed-refresh-0".to_vec(),
        refresh_fingerprint: "fp-0".into(),
        access_expires_at: Some(10),
        access_issued_at: Some(5),
    };
    store
        .insert_account(&new, &sealed, "imported", None)
        .unwrap();
    (dir, store, id)
}

fn rotation(n: u8) -> Rotation {
    Rotation {
        access_token: format!("sealed-access-{n}").into_bytes(),
        id_token: None,
        refresh_token: Some((
            format!("sealed-refresh-{n}").into_bytes(),
            format!("fp-{n}"),
        )),
        access_expires_at: Some(100 * i64::from(n)),
        access_issued_at: Some(50 * i64::from(n)),
    }
}

fn lease_flow(s: &dyn CoreStore, id: &str) {
    let alive: fn(&str) -> bool = |_| false;
    assert!(s.try_acquire_lease(id, "a", 60_000, alive).unwrap());
    assert!(
        !s.try_acquire_lease(id, "b", 60_000, alive).unwrap(),
        "held by a"
    );
    assert_eq!(s.lease_holder(id).unwrap().as_deref(), Some("a"));
    // A holder judged gone loses its lease to the next taker.
    assert!(s.try_acquire_lease(id, "b", 60_000, |h| h == "a").unwrap());
    s.release_lease(id, "a").unwrap();
    assert_eq!(
        s.lease_holder(id).unwrap().as_deref(),
        Some("b"),
        "not a's to release"
    );
    assert!(s.renew_lease(id, "b", 60_000).unwrap());
    assert!(!s.renew_lease(id, "a", 60_000).unwrap());
}

fn rotation_flow(s: &dyn CoreStore, id: &str) -> i64 {
    let g0 = s.generation(id).unwrap().unwrap();
    // No refresh without a committed intent under a held lease.
    assert!(!s
        .write_intent_under_lease(id, g0, "a", Some(60_000))
        .unwrap());
    assert!(s.intent(id).unwrap().is_none());
    assert!(s
        .write_intent_under_lease(id, g0, "b", Some(60_000))
        .unwrap());
    assert_eq!(s.intents().unwrap().len(), 1);
    assert_eq!(s.intent(id).unwrap().unwrap().generation, g0);

    assert!(s
        .commit_rotation(id, g0, &rotation(1), "refreshed", None)
        .unwrap());
    let g1 = s.generation(id).unwrap().unwrap();
    assert_eq!(g1, g0 + 1);
    assert!(
        s.intent(id).unwrap().is_none(),
        "the commit clears the intent"
    );
    let secrets = s.secrets(id).unwrap().unwrap();
    assert_eq!(secrets.generation, g1);
    assert_eq!(secrets.refresh_token, b"sealed-refresh-1");
    assert_eq!(secrets.refresh_fingerprint, "fp-1");
    // A writer that started from the old generation loses the compare-and-swap.
    assert!(!s
        .commit_rotation(id, g0, &rotation(2), "refreshed", None)
        .unwrap());
    assert_eq!(s.secrets(id).unwrap().unwrap().refresh_fingerprint, "fp-1");
    s.release_lease(id, "b").unwrap();
    assert!(s.lease_holder(id).unwrap().is_none());
    g1
}

fn terminal_flow(s: &dyn CoreStore, id: &str, g0: i64, g1: i64) {
    let reason = FailureReason {
        code: "refresh_token_reused".into(),
        message: "already used".into(),
        http_status: Some(401),
        at: 7,
    };
    // Stale writers never touch a newer, live grant.
    assert!(!s.mark_terminal(id, g0, &reason).unwrap());
    assert!(!s.set_last_error(id, g0, "network").unwrap());
    let a = s.get_account(id).unwrap().unwrap();
    assert_eq!(a.status, Status::Healthy);
    assert!(a.last_error.is_none());

    assert!(s.set_last_error(id, g1, "network").unwrap());
    assert!(s.mark_terminal(id, g1, &reason).unwrap());
    let a = s.get_account(id).unwrap().unwrap();
    assert_eq!(a.status, Status::Terminal);
    assert_eq!(a.failure.unwrap().code, "refresh_token_reused");
    // A dead account takes no rate limit.
    assert!(!s.set_rate_limited(id, i64::MAX).unwrap());
    assert!(!s.clear_rate_limit(id).unwrap());
}

fn snapshot_flow(s: &dyn CoreStore, id: &str, g1: i64) {
    let snap = s.broker_snapshot(b"some-digest").unwrap();
    let mine = snap.accounts.iter().find(|a| a.account_id == id).unwrap();
    assert_eq!(mine.generation, g1);
    assert!(mine.terminal);
    assert_eq!(mine.refresh_token, b"sealed-refresh-1");
    let t = s.current_tokens(id).unwrap().unwrap();
    assert_eq!(
        (t.generation, t.access_token.as_slice()),
        (g1, &b"sealed-access-1"[..])
    );
    let listed = s.list_accounts().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].generation, g1);
    assert!(s.get_account("nobody").unwrap().is_none());
}

fn settings_flow(s: &dyn CoreStore, id: &str) {
    assert_eq!(s.setting("endpoint.port").unwrap(), None);
    s.set_setting("endpoint.port", "8417").unwrap();
    s.set_setting("endpoint.port", "8418").unwrap();
    assert_eq!(s.setting("endpoint.port").unwrap().as_deref(), Some("8418"));
    s.set_usage_json(id, "{\"used\":1}").unwrap();
    assert_eq!(
        s.get_account(id).unwrap().unwrap().usage_json.as_deref(),
        Some("{\"used\":1}")
    );
    s.append_event(id, "note", Some("through the seam"))
        .unwrap();
    s.data_version().unwrap();
}

/// The main flows, through the trait object only.
fn drive(s: &dyn CoreStore, id: &str) {
    let g0 = s.generation(id).unwrap().unwrap();
    lease_flow(s, id);
    let g1 = rotation_flow(s, id);
    terminal_flow(s, id, g0, g1);
    snapshot_flow(s, id, g1);
    settings_flow(s, id);
}

#[test]
fn the_sqlite_store_fills_the_seam() {
    let (_dir, store, id) = store_with_account();
    drive(&store, &id);
    // Each write recorded its history in the same transaction.
    let kinds: Vec<String> = store
        .events(&id, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        ["note", "failed", "refresh_failed", "refreshed", "imported"]
    );
}

#[test]
fn an_arc_store_coerces_into_the_shared_store() {
    let (_dir, store, id) = store_with_account();
    let shared: SharedStore = Arc::new(store);
    // Held the way the endpoint and the refresh engine hold it, and sent to a blocking thread.
    let s = shared.clone();
    let g = std::thread::spawn(move || s.generation(&id).unwrap())
        .join()
        .unwrap();
    assert_eq!(g, Some(0));
}
