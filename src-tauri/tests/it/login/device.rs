//! `accounts login --device` against the fake's device flow: the real binary polls
//! `/api/accounts/deviceauth/token` while a test plays the user approving (or declining) the
//! code on another device. Intervals are judged by the fake's own clock, never by sleeping here.

use crate::common;

use codex_vault_testkit::{AccountSpec, DeviceAnswer, FakeConfig, FakeOpenAi};
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn device_fake(lifetime: Duration) -> FakeOpenAi {
    FakeOpenAi::start_blocking(FakeConfig {
        device_code_interval: Duration::from_secs(1),
        device_slow_down_step: Duration::from_secs(1),
        device_code_lifetime: lifetime,
        ..Default::default()
    })
}

struct DeviceProc {
    child: Child,
    code: String,
    url: String,
    stdout: std::thread::JoinHandle<String>,
}

/// Starts `accounts login --device` and reads the verification URL and the code it prints.
fn start(env: &DataDir, fake: &FakeOpenAi, extra: &[&str]) -> DeviceProc {
    let mut child = env
        .cmd()
        .args(["accounts", "login", "--device"])
        .args(extra)
        .env("CODEX_VAULT_AUTH_BASE", fake.base_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let (mut url, mut code) = (None, None);
    while code.is_none() {
        let line = lines.next().expect("no code printed").unwrap();
        if line.starts_with("  http") {
            url = Some(line.trim().to_string());
        } else if line.starts_with("  ") && url.is_some() {
            code = Some(line.trim().to_string());
        }
        seen.push(line);
    }
    let stdout = std::thread::spawn(move || {
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        seen.extend(rest);
        seen.join("\n")
    });
    DeviceProc {
        child,
        code: code.unwrap(),
        url: url.unwrap(),
        stdout,
    }
}

fn finish(mut p: DeviceProc) -> Run {
    let stdout = p.stdout.join().unwrap();
    Run::finished(&mut p.child, stdout)
}

fn wait_polls(fake: &FakeOpenAi, n: u64) {
    fake.wait_for_counters_blocking(WAIT, |c| c.device_token_calls >= n)
        .expect("the device flow stopped polling");
}

#[test]
fn pending_then_slow_down_then_approved_stores_the_account() {
    let fake = device_fake(Duration::from_secs(15 * 60));
    let env = TestVault::builder().data_dir();
    let p = start(&env, &fake, &["--label", "remote"]);
    assert_eq!(p.url, format!("{}/codex/device", fake.base_url()));
    assert_eq!(fake.device_user_codes(), vec![p.code.clone()]);

    wait_polls(&fake, 1);
    assert!(fake.slow_down_next_device_poll(&p.code));
    // Approve only once the slow_down was answered, so the sequence is the whole story.
    let mut n = 2;
    loop {
        wait_polls(&fake, n);
        let polls = fake.device_polls(&p.code);
        if polls.iter().any(|q| q.answer == DeviceAnswer::SlowDown) {
            break;
        }
        n += 1;
    }
    assert!(fake.approve_device_code(
        &p.code,
        Some(AccountSpec {
            email: "far@corp.com".into(),
            plan: "pro".into(),
            ..Default::default()
        })
    ));
    let r = finish(p);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("Signed in: added account remote (far@corp.com, pro)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("poll less often: every 2 s"),
        "{}",
        r.stderr
    );
    let list = env.list_json();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["label"], "remote");
    assert_eq!(list[0]["email"], "far@corp.com");
    assert_eq!(list[0]["status"], "healthy");
    assert_eq!(fake.counters().code_exchanges, 1);

    // The fake's own clock: no poll came sooner than the interval in force, and the interval
    // grew with the slow_down.
    let code = fake.device_user_codes().pop().unwrap();
    let polls = fake.device_polls(&code);
    let answers: Vec<DeviceAnswer> = polls.iter().map(|q| q.answer).collect();
    let at = |a| answers.iter().position(|x| *x == a).unwrap();
    assert!(
        at(DeviceAnswer::Pending) < at(DeviceAnswer::SlowDown)
            && at(DeviceAnswer::SlowDown) < at(DeviceAnswer::Approved)
            && *answers.last().unwrap() == DeviceAnswer::Approved,
        "{answers:?}"
    );
    assert_eq!(fake.counters().device_polls_too_early, 0, "{polls:?}");
    for q in &polls[1..] {
        let gap = q.since_previous.unwrap();
        assert!(
            gap >= q.interval,
            "polled after {gap:?} with {:?} in force",
            q.interval
        );
    }
    let after = &polls[at(DeviceAnswer::SlowDown) + 1..];
    assert!(
        after.iter().all(|q| q.interval == Duration::from_secs(2)),
        "{polls:?}"
    );
}

#[test]
fn an_expired_code_says_so_and_stores_nothing() {
    let fake = device_fake(Duration::from_secs(2));
    let env = TestVault::builder().data_dir();
    let p = start(&env, &fake, &[]);
    let r = finish(p);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("the device code expired before the sign-in was approved")
            && r.stderr.contains("[login_device_expired]"),
        "{}",
        r.stderr
    );
    assert!(env.list_json().is_empty());
    assert_eq!(fake.counters().code_exchanges, 0);
}

#[test]
fn a_declined_sign_in_says_so_and_stores_nothing() {
    let fake = device_fake(Duration::from_secs(15 * 60));
    let env = TestVault::builder().data_dir();
    let p = start(&env, &fake, &[]);
    wait_polls(&fake, 1);
    assert!(fake.deny_device_code(&p.code));
    let r = finish(p);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("the sign-in was declined on the verification page")
            && r.stderr.contains("[login_device_denied]"),
        "{}",
        r.stderr
    );
    assert!(env.list_json().is_empty());
    assert_eq!(fake.counters().code_exchanges, 0);
}

#[test]
fn signing_in_again_by_device_keeps_the_label_and_says_so() {
    let fake = device_fake(Duration::from_secs(15 * 60));
    let env = TestVault::builder().data_dir();
    fake.set_login_identity(Some(AccountSpec {
        email: "same@corp.com".into(),
        ..Default::default()
    }));
    for (label, n) in [("first", 1u64), ("second", 2)] {
        let p = start(&env, &fake, &["--label", label]);
        assert!(fake.approve_device_code(&p.code, None));
        let r = finish(p);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(fake.counters().code_exchanges, n);
        if label == "second" {
            assert!(
                r.stderr
                    .contains("note: this sign-in is account `first`, which keeps its label")
                    && r.stderr
                        .contains("codex-vault accounts rename first second"),
                "{}",
                r.stderr
            );
        }
    }
    let list = env.list_json();
    assert_eq!(list.len(), 1, "a re-sign-in added a row");
    assert_eq!(list[0]["label"], "first");
}

#[tokio::test]
async fn a_cancel_stops_the_polling_and_stores_nothing() {
    use codex_vault::oauth::client::{Issuer, TokenClient};
    use codex_vault::oauth::device::DeviceFlow;
    use codex_vault::oauth::login::LoginError;
    let fake = FakeOpenAi::start(FakeConfig {
        device_code_interval: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let client = TokenClient::new(Issuer {
        base: fake.base_url(),
    });
    let flow = DeviceFlow::start(client).await.unwrap();
    assert_eq!(flow.code().interval, Duration::from_secs(1));
    let cancel = flow.canceller();
    let waiting = tokio::spawn(flow.wait(|_| {}));
    fake.wait_for_counters(WAIT, |c| c.device_token_calls >= 1)
        .await
        .expect("no poll came");
    cancel.cancel("cancelled in the test");
    match waiting.await.unwrap() {
        Err(LoginError::Cancelled(why)) => assert_eq!(why, "cancelled in the test"),
        other => panic!("{:?}", other.map(|c| c.identity)),
    }
    let polls = fake.counters().device_token_calls;
    // Approving now reaches nobody: the flow is gone, so nothing is redeemed.
    let code = fake.device_user_codes().pop().unwrap();
    assert!(fake.approve_device_code(&code, None));
    assert_eq!(fake.counters().device_token_calls, polls);
    assert_eq!(fake.counters().code_exchanges, 0);
}
