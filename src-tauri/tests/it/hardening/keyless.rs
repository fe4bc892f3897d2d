//! The keyless routes (`/oauth/token`, `/oauth/revoke`: the refresh broker, called without the
//! local key) are bounded: unfinished bodies are dropped after the body timeout while keyed
//! routes answer; an oversized request is 413 from its head (or, chunked, once it passes the cap)
//! and never reaches the issuer; with the keyless cap's worth held open, one more keyless request
//! is refused at once and keyed requests still answer; and a `serve` at `ulimit -n 256` keeps
//! answering keyed requests under 300 unfinished keyless bodies (the reported exhaustion).

use crate::common;

use crate::common::read_until_closed;
use crate::common::vault::{turn, TestVault};
use codex_vault::endpoint::{KEYLESS_BODY_TIMEOUT, KEYLESS_MAX_BODY};
use serde_json::Value;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A token request's head announcing `announced` bytes, and the first bytes of its body.
fn unfinished_token_request(announced: usize) -> Vec<u8> {
    format!(
        "POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {announced}\r\n\r\ngrant_type=refresh_token&refresh_token="
    )
    .into_bytes()
}

fn status_of(answer: &[u8]) -> Option<u16> {
    String::from_utf8_lossy(answer)
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()
}

/// Waits (bounded) until `f` holds; polling a gauge, not a sleep standing in for an event.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    crate::common::wait_until_async(what, Duration::from_secs(20), || std::future::ready(f()))
        .await;
}

async fn keyed_turn_answers(rig: &TestVault) {
    rig.assert_answers_a_turn().await;
    let accounts = rig
        .http
        .get(rig.url("/v1/accounts"))
        .bearer_auth(&rig.key)
        .send()
        .await
        .unwrap();
    assert_eq!(accounts.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_keyless_bodies_are_dropped_while_keyed_requests_answer() {
    const HELD: usize = 200;
    common::need_open_files(4 * HELD + 200);
    let rig = TestVault::new(1).await;
    let held_by_server = HELD.min(rig.ep().budget.keyless);
    let mut clients = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        let mut s = TcpStream::connect(("127.0.0.1", rig.ep().port))
            .await
            .unwrap();
        s.write_all(&unfinished_token_request(1000)).await.unwrap();
        clients.push(s);
    }
    // Every one of them is inside the keyless layer, waiting for the rest of its body (any over
    // the cap were refused at once).
    until("the unfinished bodies are all being read", || {
        rig.ep().keyless_in_flight() == held_by_server
    })
    .await;
    keyed_turn_answers(&rig).await;
    assert_eq!(
        rig.ep().keyless_in_flight(),
        held_by_server,
        "the keyed requests were answered while the keyless bodies were still held"
    );

    let answers = futures_util::future::join_all(
        clients
            .iter_mut()
            .map(|s| read_until_closed(s, KEYLESS_BODY_TIMEOUT * 3)),
    )
    .await;
    let open = answers.iter().filter(|a| a.is_none()).count();
    assert_eq!(
        open, 0,
        "{open} connections with unfinished bodies were never closed"
    );
    let statuses: Vec<Option<u16>> = answers.iter().flatten().map(|a| status_of(a)).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == Some(408)).count(),
        held_by_server,
        "each held body ends in 408: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(s, Some(408) | Some(503))),
        "{statuses:?}"
    );
    assert_eq!(rig.ep().keyless_in_flight(), 0);
    assert_eq!(
        rig.fake.counters().token_calls,
        0,
        "no unfinished body was relayed to the issuer"
    );
    // And the endpoint serves on, keyless included.
    keyed_turn_answers(&rig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_token_request_is_refused_and_never_reaches_the_issuer() {
    let rig = TestVault::new(1).await;

    // From the head alone: 2 MiB announced, not a byte of it sent, and the answer comes.
    let mut raw = TcpStream::connect(("127.0.0.1", rig.ep().port))
        .await
        .unwrap();
    raw.write_all(&unfinished_token_request(2 * 1024 * 1024))
        .await
        .unwrap();
    let answer = read_until_closed(&mut raw, KEYLESS_BODY_TIMEOUT / 2)
        .await
        .expect("413 and a close, without waiting for the body");
    assert_eq!(
        status_of(&answer),
        Some(413),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(String::from_utf8_lossy(&answer).contains("request_too_large"));

    // A client that sends the whole 2 MiB reads the 413 (the lingering close drains it), not a reset.
    let form = format!(
        "grant_type=refresh_token&client_id=x&refresh_token={}",
        "a".repeat(2 * 1024 * 1024)
    );
    let resp = rig
        .http
        .post(rig.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("an answer, not a reset");
    assert_eq!(resp.status(), 413);

    // Chunked, no length announced: refused once it passes the cap.
    let chunks = (0..(KEYLESS_MAX_BODY / (8 * 1024) + 4))
        .map(|_| Ok::<_, std::io::Error>(vec![b'a'; 8 * 1024]));
    let resp = rig
        .http
        .post(rig.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("an answer, not a reset");
    assert_eq!(resp.status(), 413);
    // The same for revoke.
    let resp = rig
        .http
        .post(rig.url("/oauth/revoke"))
        .header("content-type", "application/json")
        .body(vec![b' '; KEYLESS_MAX_BODY + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let n = rig.fake.counters();
    assert_eq!(
        (n.token_calls, n.revoke_calls),
        (0, 0),
        "nothing reached the issuer"
    );

    // Control: a token request under the cap (an unknown grant) is relayed as before.
    let resp = rig
        .http
        .post(rig.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "app_EMoamEEZ73f0CkXaXp7hrann"),
            ("refresh_token", "rt_not_ours"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "the issuer's own answer to an unknown grant"
    );
    assert_eq!(rig.fake.counters().token_calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_keyless_cap_held_one_more_is_refused_and_keyed_requests_answer() {
    // Raised before the endpoint starts: its connection budget follows the limit then.
    common::raise_fd_limit();
    let rig = TestVault::new(1).await;
    let cap = rig.ep().budget.keyless;
    common::need_open_files(4 * cap + 200);
    let mut held = Vec::with_capacity(cap);
    for _ in 0..cap {
        let mut s = TcpStream::connect(("127.0.0.1", rig.ep().port))
            .await
            .unwrap();
        s.write_all(&unfinished_token_request(1000)).await.unwrap();
        held.push(s);
    }
    until("the cap's worth is held", || {
        rig.ep().keyless_in_flight() == cap
    })
    .await;

    // One more keyless request: refused at once (not parked), its connection closed.
    let mut extra = TcpStream::connect(("127.0.0.1", rig.ep().port))
        .await
        .unwrap();
    extra
        .write_all(&unfinished_token_request(1000))
        .await
        .unwrap();
    let answer = read_until_closed(&mut extra, KEYLESS_BODY_TIMEOUT / 2)
        .await
        .expect("refused before the body timeout");
    assert_eq!(
        status_of(&answer),
        Some(503),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(String::from_utf8_lossy(&answer).contains("too_many_keyless_requests"));

    keyed_turn_answers(&rig).await;
    assert_eq!(rig.ep().keyless_in_flight(), cap, "still held meanwhile");
    drop(held);
    until("the held ones are let go", || {
        rig.ep().keyless_in_flight() == 0
    })
    .await;
    assert_eq!(rig.fake.counters().token_calls, 0);
}

/// The reported exhaustion, end to end: `serve` at `ulimit -n 256`, 300 local connections that
/// send a token request's head and part of its body, then nothing; a keyed request is answered
/// meanwhile, and every one of the 300 is closed in the end.
#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one linear scenario: its steps share one running setup and read top to bottom"
)]
fn a_serve_at_ulimit_256_answers_keyed_requests_under_300_unfinished_keyless_bodies() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    const HELD: usize = 300;
    common::need_open_files(2 * HELD + 200);
    let fake = common::fake();
    let env = common::TestVault::builder().data_dir();
    let t = common::account(&fake, "low-fd@corp.com", "plus");
    let file = env.write_file(
        "a.json",
        common::auth_json(&t, &chrono::Utc::now().to_rfc3339()).as_bytes(),
    );
    env.ok(&["accounts", "import", file.to_str().unwrap(), "--label", "a"]);
    let info: Value =
        serde_json::from_str(&env.run(&["endpoint", "info", "--json"]).stdout).unwrap();
    let key = info["key"].as_str().unwrap().to_string();

    let mut c = env.cmd();
    common::env_for(&env, &fake)(&mut c);
    c.args(["serve", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(env.dir.path().join("serve.log")).unwrap());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = c.spawn().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let child = Kill(child);
    let port: u16 = lines
        .next()
        .expect("a listening line")
        .unwrap()
        .trim()
        .strip_prefix("Codex Vault endpoint listening on http://127.0.0.1:")
        .and_then(|r| r.strip_suffix("/v1"))
        .and_then(|p| p.parse().ok())
        .expect("the port");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut held = Vec::with_capacity(HELD);
        for _ in 0..HELD {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            s.write_all(&unfinished_token_request(1000)).await.unwrap();
            held.push(s);
        }
        let http = reqwest::Client::builder()
            .timeout(KEYLESS_BODY_TIMEOUT * 3)
            .build()
            .unwrap();
        let resp = http
            .post(format!("http://127.0.0.1:{port}/v1/responses"))
            .bearer_auth(&key)
            .json(&turn(None))
            .send()
            .await
            .expect("the keyed request is answered");
        assert_eq!(resp.status(), 200);
        assert!(
            String::from_utf8_lossy(&resp.bytes().await.unwrap()).contains("response.completed")
        );

        let answers = futures_util::future::join_all(
            held.iter_mut()
                .map(|s| read_until_closed(s, KEYLESS_BODY_TIMEOUT * 4)),
        )
        .await;
        let open = answers.iter().filter(|a| a.is_none()).count();
        assert_eq!(open, 0, "{open} unfinished bodies were never closed");
        let statuses: Vec<Option<u16>> = answers.iter().flatten().map(|a| status_of(a)).collect();
        assert!(
            statuses.contains(&Some(408)),
            "some were held until the body timeout: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| matches!(s, Some(408) | Some(503))),
            "{statuses:?}"
        );
    });
    assert_eq!(fake.counters().token_calls, 0);
    drop(child);
}
