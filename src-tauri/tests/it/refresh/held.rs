//! A rotation whose commit fails is held, not dropped: the invariant "no refresh POST without a
//! committed intent row and a held lease", the lease kept past its TTL while the rotation is
//! held (renewed only then), serving with the held tokens, and the commit landing once the
//! store can write again. In a process of its own: the full-disk failpoint is read once per process.

use crate::common::{in_own_process, wait_until_async};

use crate::common::vault::*;
use codex_vault::refresh::{holder_id, holder_is_dead, RefreshConfig};
use codex_vault_testkit::{Fault, FaultRoute};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::too_many_lines,
    reason = "one linear scenario: its steps share one running setup and read top to bottom"
)]
async fn a_rotation_whose_commit_fails_is_held_with_its_lease_until_it_lands() {
    let flag_dir = tempfile::tempdir().unwrap();
    // The failpoints are read once per process: the child this test re-runs in has it from the
    // start (the flag file in the parent's temp dir, which outlives the child).
    let failpoint = std::env::var("CODEX_VAULT_FAILPOINT").unwrap_or_else(|_| {
        format!(
            "store_full_while:{}",
            flag_dir.path().join("disk-is-full").display()
        )
    });
    if !in_own_process(
        concat!(
            module_path!(),
            "::a_rotation_whose_commit_fails_is_held_with_its_lease_until_it_lands"
        ),
        &[("CODEX_VAULT_FAILPOINT", failpoint.as_ref())],
    ) {
        return;
    }
    let full = std::path::PathBuf::from(
        failpoint
            .strip_prefix("store_full_while:")
            .expect("a store_full_while failpoint"),
    );
    std::fs::write(&full, b"").unwrap();

    let (e, t, id) = TestVault::with_expired("held@corp.com").await;
    let fake = &e.fake;
    let ttl = Duration::from_secs(2);
    let tm = e.manager(RefreshConfig {
        lease_ttl: ttl,
        ..refresh_config(fake)
    });
    let other = e.reopen();

    // While the POST is at the issuer, the intent row is committed and the lease is ours.
    fake.inject_faults(
        FaultRoute::Token,
        vec![Fault::Slow(Duration::from_millis(700))],
    );
    let caller = {
        let (tm, id) = (tm.clone(), id.clone());
        tokio::spawn(async move { tm.access_token(&id).await })
    };
    fake.wait_for_counters(Duration::from_secs(10), |n| n.token_calls == 1)
        .await
        .unwrap();
    let intent = other.store().intent(&id).unwrap().expect("an intent row");
    assert_eq!(
        (intent.generation, intent.holder.as_str()),
        (0, holder_id())
    );
    assert_eq!(
        other.store().lease_holder(&id).unwrap().as_deref(),
        Some(holder_id())
    );

    // The commit fails (SQLITE_FULL): the caller still gets the new token, and it works.
    let got = caller.await.unwrap().expect("the new token, held");
    assert_ne!(got.token.expose(), t.access_token);
    assert!(accepted(fake, got.token.expose(), &t.account_id).await);
    assert_eq!(tm.held_rotations(), vec![id.clone()]);
    let view = codex_vault::refresh::held_rotation(&id).expect("shown as held");
    assert!(
        view.last_error.contains("database or disk is full"),
        "{view:?}"
    );
    assert_eq!(
        other.store().generation(&id).unwrap(),
        Some(0),
        "not committed"
    );

    // Past the lease TTL (workload: time passing is the point), the lease is still ours, and no
    // other process could take it to redeem the spent refresh token.
    tokio::time::sleep(ttl + Duration::from_millis(800)).await;
    assert_eq!(
        other.store().lease_holder(&id).unwrap().as_deref(),
        Some(holder_id()),
        "renewed while held"
    );
    assert!(!other
        .store()
        .try_acquire_lease(&id, "4194999:0:1", 60_000, holder_is_dead)
        .unwrap());
    assert!(
        other.store().intent(&id).unwrap().is_some(),
        "the intent stays until the commit"
    );

    // Serving goes on with the held token, with no new POST.
    tm.forget(&id);
    let again = tm.access_token(&id).await.unwrap();
    assert_eq!(again.token, got.token);
    assert_eq!(fake.counters().token_calls, 1);

    // Space freed: the commit lands, the lease and intent are released.
    std::fs::remove_file(&full).unwrap();
    // Landed means the held task finished: it leaves the held set just before it releases the
    // lease, and counts as busy until it is done.
    wait_until_async("the held rotation to land", Duration::from_secs(15), || {
        std::future::ready(tm.held_rotations().is_empty() && tm.busy() == 0)
    })
    .await;
    assert!(codex_vault::refresh::held_rotation(&id).is_none());
    assert_eq!(other.store().generation(&id).unwrap(), Some(1));
    assert!(other.store().intent(&id).unwrap().is_none());
    assert!(other.store().lease_holder(&id).unwrap().is_none());
    let fresh = manager_for(&other, fake, refresh_config(fake));
    let stored = fresh.access_token(&id).await.unwrap();
    assert_eq!(stored.token, got.token, "the held token is the one stored");
    let n = fake.counters();
    assert_eq!((n.refreshes_ok, n.refresh_reuse), (1, 0), "{n:?}");
}
