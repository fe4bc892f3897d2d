//! Lock: another process holds a SQLite write transaction for 5 s during a refresh — before it
//! (the lease and intent writes wait) or between upstream's answer and our commit (the rotation's
//! commit waits). The refresh waits (busy_timeout) and succeeds: never terminal, never lost, one
//! rotation upstream, no intent or lease left behind.

use crate::common;

use common::*;
use std::process::Stdio;
use std::time::Duration;

/// The write lock the "other process" holds (a connection of its own, as the desktop app's is).
const HOLD: Duration = Duration::from_secs(5);

fn hold_write_lock(env: &DataDir) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    // IMMEDIATE takes the write lock now; a write makes it a real pending transaction.
    conn.execute_batch(
        "BEGIN IMMEDIATE; INSERT OR REPLACE INTO settings (key, value) VALUES ('test.lock', 'held');",
    )
    .unwrap();
    conn
}

fn assert_settled(
    env: &DataDir,
    fake: &codex_vault_testkit::FakeOpenAi,
    t: &codex_vault_testkit::IssuedTokens,
    out: &std::process::Output,
    what: &str,
) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: the refresh failed: {stderr}");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        accepted_blocking(fake, &token, &t.account_id),
        "{what}: the printed token is refused"
    );
    let n = fake.counters();
    assert_eq!(n.refreshes_ok, 1, "{what}: exactly one rotation upstream");
    assert_eq!(n.refresh_reuse, 0, "{what}: no reuse (nothing lost)");
    let a = &env.list_json()[0];
    assert_eq!(a["status"], "healthy", "{what}: {a}");
    assert!(a["failure"].is_null(), "{what}: {a}");
    let conn = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
    let (generation, intents, leases): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT generation FROM accounts), (SELECT count(*) FROM refresh_intents), (SELECT count(*) FROM refresh_leases)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(intents, 0, "{what}: the intent was cleared by the commit");
    assert_eq!(leases, 0, "{what}: the lease was released");
    assert!(
        generation >= 1,
        "{what}: the rotation was committed (generation {generation})"
    );
    // And the rotated refresh token is the one we hold: a second refresh works.
    let mut c = env.cmd();
    env_for(env, fake)(&mut c);
    let r = Run::from(c.args(["accounts", "refresh", "held"]).output().unwrap());
    assert_eq!(
        r.code, 0,
        "{what}: the committed refresh token works: {}",
        r.stderr
    );
}

#[test]
fn a_write_lock_held_before_the_refresh_makes_it_wait_not_fail() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = import_expired(&env, &fake, "held");
    let lock = hold_write_lock(&env);
    let mut c = env.cmd();
    env_for(&env, &fake)(&mut c);
    let child = c
        .args(["token", "held"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(HOLD);
    // While we held the lock, the refresh could not even take its lease: nothing went upstream.
    assert_eq!(
        fake.counters().token_calls,
        0,
        "a refresh went upstream without its lease"
    );
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert_settled(&env, &fake, &t, &out, "lock before");
}

#[test]
fn a_write_lock_held_between_upstreams_answer_and_our_commit_makes_the_commit_wait() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = import_expired(&env, &fake, "held");
    let mut c = env.cmd();
    env_for(&env, &fake)(&mut c);
    let mut child = c
        .args(["token", "held"])
        // Holds the commit back a moment after upstream rotated, so the lock lands in that window.
        .env("CODEX_VAULT_FAILPOINT", "pause_before_commit:500")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    fake.wait_for_counters_blocking(Duration::from_secs(30), |n| n.refreshes_ok == 1)
        .expect("upstream rotated");
    let lock = hold_write_lock(&env);
    std::thread::sleep(HOLD);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the refresh finished while its commit could not have been written"
    );
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert_settled(&env, &fake, &t, &out, "lock before commit");
}
