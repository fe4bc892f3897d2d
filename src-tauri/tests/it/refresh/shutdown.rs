//! Durability across real processes: SIGTERM to `serve` while the issuer holds its answer, a
//! full disk between the issuer's answer and our commit (then space freed), and a `token` run
//! beside a live `serve` that must not settle the live process's unfinished refresh.

use crate::common;

use codex_vault_testkit::{Fault, FaultRoute};
use common::*;
use std::process::Stdio;
use std::time::Duration;

fn spawn_serve(env: &DataDir, vars: &[(&'static str, String)]) -> ServeProc {
    env.spawn_serve(vars, env.dir.path().join("serve.stderr"))
}

/// Polls `f` until it gives a value (bounded): a condition awaited, never a fixed sleep.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    crate::common::wait_until(what, limit, &mut f)
}

fn db(env: &DataDir) -> rusqlite::Connection {
    rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap()
}

fn key(env: &DataDir) -> String {
    let r = env.ok(&["endpoint", "info", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["key"].as_str().unwrap().to_string()
}

fn turn_through(serve: &ServeProc, key: &str) -> u16 {
    let body = serde_json::json!({"model": "gpt-5-codex", "instructions": "", "input": [{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}], "stream": true, "store": false});
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let r = reqwest::Client::new()
            .post(serve.url("/v1/responses"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status().as_u16();
        r.bytes().await.unwrap();
        s
    })
}

#[test]
fn sigterm_to_serve_waits_for_the_rotation_the_issuer_is_still_answering() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = import_expired(&env, &fake, "term");
    // The issuer rotates at once, then holds its answer for 3 s.
    fake.inject_faults(
        FaultRoute::Token,
        vec![Fault::SlowAfterHandling(Duration::from_secs(3))],
    );
    let mut serve = spawn_serve(&env, &fake_env(&fake));
    fake.wait_for_counters_blocking(Duration::from_secs(20), |n| {
        n.per_account
            .get(&t.account_id)
            .is_some_and(|c| c.refreshes_ok == 1)
    })
    .expect("serve's scheduler refreshed the expired account");
    assert_eq!(serve.terminate(), Some(0), "a clean stop");
    let stderr = String::from_utf8_lossy(&serve.stderr()).into_owned();
    assert!(
        stderr.contains("waiting up to 15 s for refreshes in flight"),
        "the wait is said in the log: {stderr}"
    );

    // After a restart: healthy, the committed token, no reuse at the issuer.
    let mut c = env.cmd();
    env_for(&env, &fake)(&mut c);
    let r = Run::from(c.args(["token", "term"]).output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(accepted_blocking(&fake, r.stdout.trim(), &t.account_id));
    let a = &env.list_json()[0];
    assert_eq!(a["status"], "healthy", "{a}");
    assert!(a["failure"].is_null(), "{a}");
    let n = per_account(&fake, &t.account_id);
    assert_eq!((n.refreshes_ok, n.refresh_reuse), (1, 0), "{n:?}");
}

#[test]
fn sigterm_during_start_up_recovery_lets_that_refresh_commit() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = import_expired(&env, &fake, "boot");
    // An unfinished refresh left by a process that is gone: `serve` refreshes it once at start,
    // before it listens.
    let (vault_id, generation): (String, i64) = db(&env)
        .query_row("SELECT id, generation FROM accounts", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    db(&env)
        .execute(
            "INSERT INTO refresh_intents (account_id, generation, holder, started_at) VALUES (?1, ?2, '99999999:0', 0)",
            rusqlite::params![vault_id, generation],
        )
        .unwrap();
    fake.inject_faults(
        FaultRoute::Token,
        vec![Fault::SlowAfterHandling(Duration::from_secs(3))],
    );
    let mut c = env.cmd();
    env_for(&env, &fake)(&mut c);
    let mut child = c
        .args(["serve", "--port", "0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(env.dir.path().join("boot.stderr")).unwrap())
        .spawn()
        .unwrap();
    fake.wait_for_counters_blocking(Duration::from_secs(20), |n| {
        n.per_account
            .get(&t.account_id)
            .is_some_and(|c| c.refreshes_ok == 1)
    })
    .expect("start-up recovery refreshed the account");
    // The issuer has rotated and holds its answer: serve has not listened yet.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = wait_for("serve to exit", Duration::from_secs(30), || {
        child.try_wait().unwrap()
    });
    assert_eq!(
        status.code(),
        Some(0),
        "a graceful stop, not death by signal"
    );

    let mut c = env.cmd();
    env_for(&env, &fake)(&mut c);
    let r = Run::from(c.args(["token", "boot"]).output().unwrap());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(accepted_blocking(&fake, r.stdout.trim(), &t.account_id));
    let a = &env.list_json()[0];
    assert_eq!(a["status"], "healthy", "{a}");
    let n = per_account(&fake, &t.account_id);
    assert_eq!((n.refreshes_ok, n.refresh_reuse), (1, 0), "{n:?}");
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one linear scenario: its steps share one running setup and read top to bottom"
)]
fn a_full_disk_between_answer_and_commit_holds_the_rotation_until_space_is_freed() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = import_expired(&env, &fake, "full");
    let serve_key = key(&env);
    let full = env.dir.path().join("disk-is-full");
    std::fs::write(&full, b"").unwrap();
    let mut vars = fake_env(&fake);
    vars.push((
        "CODEX_VAULT_FAILPOINT",
        format!("store_full_while:{}", full.display()),
    ));
    let mut serve = spawn_serve(&env, &vars);

    // `accounts list` (another process) learns of the held rotation from the live listener.
    let held = wait_for("the held rotation", Duration::from_secs(20), || {
        let list = env.list_json();
        list[0]["held_rotation"]
            .is_object()
            .then(|| list[0].clone())
    });
    let h = &held["held_rotation"];
    assert_eq!(
        h["message"],
        "a new sign-in is held in memory; free disk space"
    );
    assert_eq!(h["pid"], serve.pid());
    assert!(
        h["last_error"]
            .as_str()
            .unwrap()
            .contains("database or disk is full"),
        "{h}"
    );
    assert!(held["failure"].is_null(), "never terminal: {held}");
    let text = env.run(&["accounts", "list"]);
    assert!(text.stdout.contains("held in memory"), "{}", text.stdout);
    assert!(text.stdout.contains("free disk space"), "{}", text.stdout);
    let n = per_account(&fake, &t.account_id);
    assert_eq!((n.refreshes_ok, n.refresh_reuse), (1, 0), "{n:?}");

    // The invariant: the intent row is committed and the lease is held, by serve.
    let conn = db(&env);
    let (intent_holder, lease_holder, lease_live): (String, String, bool) = conn
        .query_row(
            "SELECT i.holder, l.holder, l.expires_at > CAST(unixepoch('subsec') * 1000 AS INTEGER)
             FROM refresh_intents i JOIN refresh_leases l USING (account_id)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    drop(conn);
    let pid = format!("{}:", serve.pid());
    assert!(intent_holder.starts_with(&pid) && lease_holder.starts_with(&pid));
    assert!(lease_live, "the lease is held while the rotation is");

    // Serving goes on with the held tokens (the stored access token has expired).
    assert_eq!(turn_through(&serve, &serve_key), 200);

    // Another process wanting a token meanwhile never redeems the spent refresh token: it
    // waits for the holder's commit.
    let mut c = env.cmd();
    env_for(&env, &fake)(&mut c);
    let waiting = c
        .args(["token", "full"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Space freed: the commit lands.
    std::fs::remove_file(&full).unwrap();
    wait_for("the commit", Duration::from_secs(20), || {
        let list = env.list_json();
        (list[0]["held_rotation"].is_null() && list[0]["status"] == "healthy").then_some(())
    });
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_ne!(printed, t.access_token);
    assert!(accepted_blocking(&fake, &printed, &t.account_id));

    // The token the vault serves is the newest: the one `token` prints is what serve sends.
    assert_eq!(turn_through(&serve, &serve_key), 200);
    let sent = fake.counters().last_responses_headers.unwrap()["authorization"].clone();
    assert_eq!(sent, format!("Bearer {printed}"));
    let n = per_account(&fake, &t.account_id);
    assert_eq!(
        (n.refresh_calls, n.refreshes_ok, n.refresh_reuse),
        (1, 1, 0),
        "one rotation, never a reuse: {n:?}"
    );
    let a = &env.list_json()[0];
    assert!(
        a["failure"].is_null() && a["last_refresh_at"].is_string(),
        "{a}"
    );
    assert_eq!(serve.terminate(), Some(0));
}

/// Linux: field 22 of /proc/<pid>/stat, what a holder id carries beside the pid.
fn start_time(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(19).unwrap().to_string()
}

#[test]
fn a_token_run_never_settles_the_unfinished_refresh_of_a_live_serve() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let t = account(&fake, "live@corp.com", "plus");
    let p = env.write_file(
        "live.json",
        auth_json(&t, "2026-01-01T00:00:00Z").as_bytes(),
    );
    env.ok(&["accounts", "import", p.to_str().unwrap(), "--label", "live"]);
    let mut serve = spawn_serve(&env, &fake_env(&fake));
    // An unfinished refresh of serve's (as an ambiguous failure leaves it): serve is alive.
    let holder = format!("{}:0badc0de:{}", serve.pid(), start_time(serve.pid()));
    db(&env)
        .execute(
            "INSERT INTO refresh_intents (account_id, generation, holder, started_at)
             SELECT id, generation, ?1, 0 FROM accounts",
            [&holder],
        )
        .unwrap();
    let calls = fake.counters().token_calls;
    let run_token = || {
        let mut c = env.cmd();
        env_for(&env, &fake)(&mut c);
        Run::from(c.args(["token", "live"]).output().unwrap())
    };
    let r = run_token();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        fake.counters().token_calls,
        calls,
        "the token run did not refresh on the live holder's behalf"
    );
    let left: String = db(&env)
        .query_row("SELECT holder FROM refresh_intents", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, holder, "the live holder's intent is left to it");

    // Once the holder is really gone, the next start settles it (once).
    serve.kill_9();
    let r = run_token();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        fake.counters().token_calls,
        calls + 1,
        "one settling refresh"
    );
    let n: i64 = db(&env)
        .query_row("SELECT COUNT(*) FROM refresh_intents", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(env.list_json()[0]["status"], "healthy");
}
