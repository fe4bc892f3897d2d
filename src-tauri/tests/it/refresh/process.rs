//! The refresh engine across real processes: four `token` processes on one expired account,
//! `token` on a dead grant (exit 3 with the reason), and kill -9 at random points of a refresh.

use crate::common;

use codex_vault_testkit::{Fault, FaultRoute};
use common::*;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn four_token_processes_started_together_cause_one_refresh() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = import_expired(&env, &fake, "shared");
    let set = env_for(&env, &fake);
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut c = env.cmd();
            set(&mut c);
            c.args(["token", "shared"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut tokens = Vec::new();
    for o in &outs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        tokens.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
    }
    assert_eq!(
        fake.counters().refreshes_ok,
        1,
        "exactly one refresh across four processes"
    );
    assert_eq!(fake.counters().refresh_reuse, 0);
    for tok in &tokens {
        assert!(
            accepted_blocking(&fake, tok, &t.account_id),
            "a printed token is refused"
        );
    }
    assert_eq!(env.list_json()[0]["status"], "healthy");
}

#[test]
fn token_on_a_dead_grant_exits_3_with_the_reason_and_refresh_works_on_a_live_one() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let dead = import_expired(&env, &fake, "dead");
    import_expired(&env, &fake, "live");
    fake.revoke_account(&dead.account_id);
    let set = env_for(&env, &fake);
    let run = |args: &[&str]| {
        let mut c = env.cmd();
        set(&mut c);
        Run::from(c.args(args).output().unwrap())
    };
    let r = run(&["token", "dead"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("needs sign-in")
            && r.stderr.contains("[refresh_token_invalidated]")
            && r.stderr.contains("HTTP 401"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
    let calls = fake.counters().token_calls;
    assert_eq!(run(&["token", "dead"]).code, 3);
    assert_eq!(run(&["accounts", "refresh", "dead"]).code, 3);
    assert_eq!(
        fake.counters().token_calls,
        calls,
        "no further refresh calls for a dead grant"
    );

    let list = env.list_json();
    let d = list.iter().find(|a| a["label"] == "dead").unwrap();
    assert_eq!(d["status"], "terminal");
    assert_eq!(d["failure"]["code"], "refresh_token_invalidated");
    assert_eq!(d["failure"]["http_status"], 401);
    assert!(d["failure"]["at"].as_str().is_some());

    let r = run(&["accounts", "refresh", "live"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Refreshed live"), "{}", r.stdout);
    let l = env
        .list_json()
        .into_iter()
        .find(|a| a["label"] == "live")
        .unwrap();
    assert_eq!(l["status"], "healthy");
    assert!(l["last_refresh_at"].as_str().is_some());
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one linear scenario: its steps share one running setup and read top to bottom"
)]
fn kill_9_at_random_points_of_a_refresh_loses_nothing_silently() {
    const TRIALS: usize = 24;
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0de);
    let mut rng = Rng(seed);
    let fake = fake();
    let (mut healthy, mut lost) = (0, 0);
    for trial in 0..TRIALS {
        let env = TestVault::builder().data_dir();
        let label = format!("k{trial}");
        let t = import_expired(&env, &fake, &label);
        let before = per_account(&fake, &t.account_id).refreshes_ok;
        let calls_before = fake.counters().token_calls;
        // The upstream answer takes a while and the commit is held back a moment (a failpoint),
        // so kills land in every phase: before the POST, during it, between answer and commit, after.
        fake.inject_faults(
            FaultRoute::Token,
            vec![Fault::Slow(Duration::from_millis(150))],
        );
        let mut c = env.cmd();
        env_for(&env, &fake)(&mut c);
        let mut child = c
            .args(["token", &label])
            .env("CODEX_VAULT_FAILPOINT", "pause_before_commit:150")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let phase = rng.below(4);
        match phase {
            // early: right after start, often before the POST
            0 => std::thread::sleep(Duration::from_millis(rng.below(60))),
            // while upstream is working on it
            1 => {
                fake.wait_for_counters_blocking(Duration::from_secs(10), |n| {
                    n.token_calls > calls_before
                })
                .ok();
                std::thread::sleep(Duration::from_millis(rng.below(100)));
            }
            // after upstream rotated, inside the commit window
            2 => {
                fake.wait_for_counters_blocking(Duration::from_secs(10), |n| {
                    n.per_account
                        .get(&t.account_id)
                        .map_or(0, |c| c.refreshes_ok)
                        > before
                })
                .ok();
                std::thread::sleep(Duration::from_millis(rng.below(100)));
            }
            // late: random, often after the commit
            _ => std::thread::sleep(Duration::from_millis(250 + rng.below(300))),
        }
        let _ = child.kill();
        let _ = child.wait();

        // The DB always opens and is intact.
        let db = env.vault_home().join("codex-vault.db");
        let conn = rusqlite::Connection::open(&db).expect("the DB opens after kill -9");
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let generation: i64 = conn
            .query_row("SELECT generation FROM accounts", [], |r| r.get(0))
            .unwrap();
        drop(conn);
        let rotated_upstream = per_account(&fake, &t.account_id).refreshes_ok - before;
        // Known from the fake's counters and our generation: was a rotation lost in the crash?
        let expect_lost = rotated_upstream as i64 > generation;

        // Next start: the unfinished refresh is settled once, honestly.
        let mut c = env.cmd();
        env_for(&env, &fake)(&mut c);
        let r = Run::from(c.args(["token", &label]).output().unwrap());
        let a = &env.list_json()[0];
        if expect_lost {
            lost += 1;
            assert_eq!(r.code, 3, "trial {trial} (phase {phase}): {}", r.stderr);
            assert_eq!(a["status"], "terminal", "trial {trial}");
            assert_eq!(
                a["failure"]["code"], "rotation_lost_in_crash",
                "trial {trial}"
            );
        } else {
            healthy += 1;
            assert_eq!(r.code, 0, "trial {trial} (phase {phase}): {}", r.stderr);
            assert_eq!(a["status"], "healthy", "trial {trial}");
            assert!(
                accepted_blocking(&fake, r.stdout.trim(), &t.account_id),
                "trial {trial}: token refused"
            );
        }
    }
    println!("crash trials (seed {seed:#x}): {TRIALS} kills, {healthy} healthy, {lost} rotation_lost_in_crash");
    assert_eq!(healthy + lost, TRIALS);
    assert!(
        lost > 0 && healthy > 0,
        "the trials must cover both outcomes: {healthy} healthy, {lost} lost"
    );
}
