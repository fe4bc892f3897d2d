//! Crash: `kill -9` of `serve` at seeded random moments of a refresh storm (every account due at
//! once, the scheduler refreshing four at a time, upstream slow, commits held back a moment).
//! After each kill: the DB opens and passes `PRAGMA integrity_check`; a restarted `serve` settles
//! what was unfinished; every account is healthy except those whose rotation was lost in the
//! crash window (upstream rotated, we had not committed), which are terminal
//! `rotation_lost_in_crash` — and both counts match the fake's counters exactly.
//!
//! `make test` runs `HARDEN_CRASH_TRIALS` (default 10) trials; `make soak` runs 60.
//! `CRASH_SEED=<u64>` replays a schedule.

use crate::common;

use codex_vault_testkit::{Fault, FaultRoute, IssuedTokens};
use common::*;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

const ACCOUNTS: usize = 5;

fn trials() -> usize {
    std::env::var("HARDEN_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// chatgpt_account_id → committed generation, from a DB that must be intact.
fn generations(env: &DataDir) -> BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(env.vault_home().join("codex-vault.db"))
        .expect("the DB opens after kill -9");
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "integrity_check after kill -9");
    let mut stmt = conn
        .prepare("SELECT chatgpt_account_id, generation FROM accounts")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows
}

#[derive(Default, Debug)]
struct Tally {
    kills: usize,
    healthy: usize,
    lost: usize,
    by_phase: [usize; 4],
}

#[allow(
    clippy::too_many_lines,
    reason = "one linear scenario: its steps share one running setup and read top to bottom"
)]
fn trial(seed_rng: &mut Rng, n: usize, tally: &mut Tally) {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let accounts: Vec<(String, IssuedTokens)> = (0..ACCOUNTS)
        .map(|i| {
            let label = format!("t{n}a{i}");
            let t = import_expired(&env, &fake, &label);
            (label, t)
        })
        .collect();
    // Upstream takes a while on some calls, and every commit is held back: kills land before
    // the POST, during it, between answer and commit, and after.
    let slow: Vec<Fault> = (0..ACCOUNTS)
        .map(|_| Fault::Slow(Duration::from_millis(40 + seed_rng.below(160))))
        .collect();
    fake.inject_faults(FaultRoute::Token, slow);
    let pause = 100 + seed_rng.below(200);
    let mut c = env.cmd();
    env_for(&env, &fake)(&mut c);
    let mut serve = c
        .args(["serve", "--port", "0"])
        .env(
            "CODEX_VAULT_FAILPOINT",
            format!("pause_before_commit:{pause}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let phase = seed_rng.below(4) as usize;
    let k = 1 + seed_rng.below(ACCOUNTS as u64);
    let wait = |pred: &dyn Fn(&codex_vault_testkit::Counters) -> bool| {
        fake.wait_for_counters_blocking(Duration::from_secs(20), pred)
            .ok();
    };
    match phase {
        // early: often before any POST
        0 => std::thread::sleep(Duration::from_millis(seed_rng.below(150))),
        // while upstream works on the k-th refresh
        1 => {
            wait(&|c| c.token_calls >= k);
            std::thread::sleep(Duration::from_millis(seed_rng.below(120)));
        }
        // after the k-th rotation upstream, often inside its commit window
        2 => {
            wait(&|c| c.refreshes_ok >= k);
            std::thread::sleep(Duration::from_millis(seed_rng.below(pause)));
        }
        // late: the storm mostly over
        _ => std::thread::sleep(Duration::from_millis(300 + seed_rng.below(700))),
    }
    let _ = serve.kill();
    let _ = serve.wait();
    tally.kills += 1;
    tally.by_phase[phase] += 1;

    // What the crash left: committed generations vs rotations upstream, per account.
    let committed = generations(&env);
    let mut expect_lost = BTreeMap::new();
    for (label, t) in &accounts {
        let rotated = per_account(&fake, &t.account_id).refreshes_ok as i64;
        let generation = committed[&t.account_id];
        assert!(
            (0..=1).contains(&(rotated - generation)),
            "trial {n} {label}: {rotated} rotations upstream, generation {generation}"
        );
        expect_lost.insert(label.clone(), rotated > generation);
    }
    let reuse_before = fake.counters().refresh_reuse;

    // The next start settles unfinished refreshes once (before it listens), honestly.
    let mut restarted = env.spawn_serve(&fake_env(&fake), env.dir.path().join("serve2.log"));
    for (label, t) in &accounts {
        let mut c = env.cmd();
        env_for(&env, &fake)(&mut c);
        let r = Run::from(c.args(["token", label]).output().unwrap());
        if expect_lost[label] {
            assert_eq!(r.code, 3, "trial {n} (phase {phase}) {label}: {}", r.stderr);
        } else {
            assert_eq!(r.code, 0, "trial {n} (phase {phase}) {label}: {}", r.stderr);
            assert!(
                accepted_blocking(&fake, r.stdout.trim(), &t.account_id),
                "trial {n} {label}: token refused"
            );
        }
    }
    assert_eq!(
        restarted.terminate(),
        Some(0),
        "trial {n}: serve stops cleanly"
    );

    let list = env.list_json();
    let lost_here = expect_lost.values().filter(|l| **l).count();
    for a in &list {
        let label = a["label"].as_str().unwrap();
        if expect_lost[label] {
            assert_eq!(a["status"], "terminal", "trial {n} {label}: {a}");
            assert_eq!(
                a["failure"]["code"], "rotation_lost_in_crash",
                "trial {n} {label}"
            );
        } else {
            assert_eq!(a["status"], "healthy", "trial {n} {label}: {a}");
        }
    }
    // The counts match the fake's own: one reuse per lost rotation (the settling attempt), and
    // every successful rotation upstream is either committed by us or one of the lost.
    let n_after = fake.counters();
    assert_eq!(
        n_after.refresh_reuse - reuse_before,
        lost_here as u64,
        "trial {n}: reuse answers at the fake vs rotations lost"
    );
    let final_generations: i64 = generations(&env).values().sum();
    assert_eq!(
        n_after.refreshes_ok as i64,
        final_generations + lost_here as i64,
        "trial {n}: rotations upstream = committed + lost"
    );
    tally.healthy += ACCOUNTS - lost_here;
    tally.lost += lost_here;
}

#[test]
fn kill_9_of_serve_during_refresh_storms_loses_nothing_silently() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5e4e_c4a5);
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let trials = trials();
    for n in 0..trials {
        trial(&mut rng, n, &mut tally);
    }
    println!(
        "serve crash trials (seed {seed:#x}): {} kills (by phase early/in-POST/commit-window/late: {:?}), {} accounts healthy, {} rotation_lost_in_crash",
        tally.kills, tally.by_phase, tally.healthy, tally.lost
    );
    assert_eq!(tally.kills, trials);
    assert_eq!(tally.healthy + tally.lost, trials * ACCOUNTS);
    assert!(
        tally.lost > 0 && tally.healthy > 0,
        "the trials must cover both outcomes: {tally:?}"
    );
}
