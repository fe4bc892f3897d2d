//! Secrets never leak: the main flows (import, refresh, reuse → terminal, endpoint requests with
//! 401-refresh and 429 failover, chat completions, the broker's /oauth/token with race recovery,
//! a revoked account going terminal mid-request) run through the real binary with
//! `RUST_LOG=trace`; then no 12-character slice of any token the fake ever minted, of the local
//! API key or of the data key appears in any log, error body, event or file. Files in the data
//! dir are 0600 and the dir 0700, during `serve` (its listener entry present) and after; serve's
//! rolling log file (`logs/`) is scanned too.

use crate::common;

use codex_vault_testkit::{Fault, FaultRoute, IssuedTokens, CLIENT_ID};
use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Everything a person or a tool could see, by where it came from.
#[derive(Default)]
struct Seen {
    items: Vec<(String, Vec<u8>)>,
}

impl Seen {
    fn add(&mut self, what: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.items.push((what.into(), bytes.into()));
    }
}

fn run_traced(
    env: &DataDir,
    fake_env: &[(&str, String)],
    args: &[&str],
    stdin: Option<&[u8]>,
) -> Run {
    use std::io::Write;
    let mut c = env.cmd();
    c.env("RUST_LOG", "trace").env("RUST_BACKTRACE", "1");
    for (k, v) in fake_env {
        c.env(k, v);
    }
    let mut child = c
        .args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    Run::from(child.wait_with_output().unwrap())
}

/// Every file 0600 and every directory 0700 under `dir` (recursively), `dir` included.
fn assert_private(dir: &Path, when: &str) {
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{when}: {} is {mode:o}", dir.display());
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            assert_private(&p, when);
        } else {
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{when}: {} is {mode:o}", p.display());
        }
    }
}

fn data_key(store_id: &str) -> String {
    let out = std::process::Command::new("secret-tool")
        .args([
            "lookup",
            "service",
            "codex-vault",
            "username",
            &format!("data-key:{store_id}"),
        ])
        .output()
        .expect("secret-tool (libsecret-tools)");
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(key.len() >= 32, "the data key is in the keychain");
    key
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one linear scenario: its steps share one running setup and read top to bottom"
)]
fn no_token_key_or_refresh_token_fragment_shows_anywhere() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let fenv = fake_env(&fake);
    let mut seen = Seen::default();
    let record = |seen: &mut Seen, what: &str, r: &Run, stdout_is_secret: bool| {
        seen.add(format!("{what}: stderr"), r.stderr.clone());
        if !stdout_is_secret {
            seen.add(format!("{what}: stdout"), r.stdout.clone());
        }
    };

    // Import: from files, one expired (so `token` refreshes), one from stdin.
    let mut grants: Vec<(String, IssuedTokens)> = Vec::new();
    for label in ["a", "b", "c", "d", "e"] {
        let first = account(&fake, &format!("{label}@leak.test"), "plus");
        let t = if label == "a" {
            fake.issue_grant(&first.account_id, Some(std::time::Duration::ZERO))
        } else {
            first
        };
        let text = auth_json(&t, "2026-01-01T00:00:00Z");
        let r = if label == "b" {
            run_traced(
                &env,
                &fenv,
                &["accounts", "import", "-", "--label", label],
                Some(text.as_bytes()),
            )
        } else {
            let p = env.write_file(&format!("{label}.json"), text.as_bytes());
            run_traced(
                &env,
                &fenv,
                &["accounts", "import", p.to_str().unwrap(), "--label", label],
                None,
            )
        };
        assert_eq!(r.code, 0, "import {label}: {}", r.stderr);
        record(&mut seen, &format!("import {label}"), &r, false);
        grants.push((label.to_string(), t));
    }
    // A bad import: its error must name the problem, not echo the file.
    let bad = env.write_file(
        "bad.json",
        format!(
            "{{\"tokens\": {{\"refresh_token\": \"{}\"",
            grants[1].1.refresh_token
        )
        .as_bytes(),
    );
    let r = run_traced(
        &env,
        &fenv,
        &["accounts", "import", bad.to_str().unwrap()],
        None,
    );
    assert_eq!(r.code, 1);
    record(&mut seen, "bad import", &r, false);

    // Refresh: `token` (its stdout is the token, by design) and `accounts refresh`.
    let r = run_traced(&env, &fenv, &["token", "a"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let printed = r.stdout.trim().to_string();
    record(&mut seen, "token a", &r, true);
    let r = run_traced(&env, &fenv, &["accounts", "refresh", "b"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    record(&mut seen, "refresh b", &r, false);

    // A reuse with no sibling to recover from: terminal, the upstream message kept (redacted).
    fake.rotate_out_of_band(&grants[3].1.refresh_token);
    let r = run_traced(&env, &fenv, &["accounts", "refresh", "d"], None);
    assert_eq!(r.code, 3, "{}", r.stderr);
    record(&mut seen, "refresh d (reused)", &r, false);

    // The local key is printed by `endpoint info` on purpose; it must show nowhere else.
    let r = run_traced(&env, &fenv, &["endpoint", "info", "--json"], None);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let info: Value = serde_json::from_str(&r.stdout).unwrap();
    let local_key = info["key"].as_str().unwrap().to_string();
    record(&mut seen, "endpoint info", &r, true);

    // The endpoint, traced.
    let serve_log = env.dir.path().join("serve.log");
    let mut traced = fenv.clone();
    traced.extend([("RUST_LOG", "trace".into()), ("RUST_BACKTRACE", "1".into())]);
    let mut serve = env.spawn_serve(&traced, serve_log);
    assert_private(&env.vault_home(), "while serving");
    assert_eq!(
        std::fs::read_dir(env.vault_home().join("endpoints"))
            .unwrap()
            .count(),
        1,
        "the listener is registered (and its entry is checked for 0600 above)"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let turn = json!({"model": "gpt-5-codex", "instructions": "", "stream": true, "store": false,
        "input": [{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}]});
    let chat = |stream: bool| json!({"model": "gpt-5.5", "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    let answers: std::cell::RefCell<Vec<(String, u16, Vec<u8>)>> = Default::default();
    let send = |what: &str, req: reqwest::RequestBuilder| {
        let (status, headers, body) = rt.block_on(async {
            let resp = req.send().await.expect("request");
            let status = resp.status().as_u16();
            let headers = format!("{:?}", resp.headers());
            (
                status,
                headers,
                resp.bytes().await.unwrap_or_default().to_vec(),
            )
        });
        let mut all = headers.into_bytes();
        all.extend_from_slice(&body);
        answers.borrow_mut().push((what.to_string(), status, all));
        status
    };
    let post = |path: &str, body: &Value| {
        http.post(serve.url(path))
            .bearer_auth(&local_key)
            .json(body)
    };

    assert_eq!(send("responses", post("/v1/responses", &turn)), 200);
    fake.inject_faults(
        FaultRoute::Responses,
        vec![Fault::Custom {
            status: 401,
            content_type: "application/json".into(),
            body: r#"{"error":{"message":"Provided authentication token is expired. Please try signing in again.","type":"invalid_request_error","code":"token_expired"}}"#.into(),
        }],
    );
    let refreshes = fake.counters().refreshes_ok;
    assert_eq!(
        send("responses after 401", post("/v1/responses", &turn)),
        200
    );
    assert_eq!(
        fake.counters().refreshes_ok,
        refreshes + 1,
        "the 401 refreshed"
    );
    let resets = chrono::Utc::now().timestamp() + 3600;
    fake.inject_faults(
        FaultRoute::Responses,
        vec![Fault::Custom {
            status: 429,
            content_type: "application/json".into(),
            body: format!(r#"{{"error":{{"type":"usage_limit_reached","message":"The usage limit has been reached","plan_type":"plus","resets_at":{resets},"resets_in_seconds":3600}}}}"#),
        }],
    );
    let calls = fake.counters().responses_calls;
    assert_eq!(
        send("responses after 429", post("/v1/responses", &turn)),
        200
    );
    assert_eq!(
        fake.counters().responses_calls,
        calls + 2,
        "the 429 failed over"
    );
    assert_eq!(
        send("chat stream", post("/v1/chat/completions", &chat(true))),
        200
    );
    assert_eq!(
        send("chat", post("/v1/chat/completions", &chat(false))),
        200
    );
    assert_eq!(
        send(
            "models",
            http.get(serve.url("/v1/models")).bearer_auth(&local_key)
        ),
        200
    );
    assert_eq!(
        send(
            "accounts",
            http.get(serve.url("/v1/accounts")).bearer_auth(&local_key)
        ),
        200
    );
    assert_eq!(
        send(
            "wrong key",
            http.get(serve.url("/v1/accounts"))
                .bearer_auth("not-the-key")
        ),
        401
    );

    // The broker: a current refresh token is redeemed through the vault (answers carry tokens by
    // design, so their bodies are not scanned); presenting it again is a recovered race.
    let e = &grants[4].1;
    let grant = |rt: &str| json!({"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": rt});
    let (s1, b1) = rt.block_on(post_json(
        &http,
        &serve.url("/oauth/token"),
        &grant(&e.refresh_token),
    ));
    assert_eq!(s1, 200, "{b1}");
    let (s2, b2) = rt.block_on(post_json(
        &http,
        &serve.url("/oauth/token"),
        &grant(&e.refresh_token),
    ));
    assert_eq!(s2, 200, "the previous generation is a recovered race: {b2}");
    assert_eq!(b1["access_token"], b2["access_token"]);
    let unknown = format!("rt_{}", "Z".repeat(64));
    let (s3, b3) = rt.block_on(post_json(
        &http,
        &serve.url("/oauth/token"),
        &grant(&unknown),
    ));
    assert_eq!(
        s3, 401,
        "an unknown grant passes through to the issuer: {b3}"
    );
    answers
        .borrow_mut()
        .push(("broker unknown".into(), s3, b3.to_string().into_bytes()));

    // A revoked account fails mid-request: 401 → refresh → terminal, the client told why.
    fake.revoke_account(&grants[2].1.account_id);
    let status = send(
        "pinned to revoked c",
        post("/v1/responses", &turn).header("x-codex-vault-account", "c"),
    );
    assert!(
        status >= 400,
        "a request pinned to a dead account fails: {status}"
    );

    assert_private(&env.vault_home(), "after the endpoint flows");
    assert_eq!(serve.terminate(), Some(0), "serve stops cleanly on SIGTERM");
    seen.add("serve stdout", serve.stdout());
    let serve_stderr = serve.stderr();
    let trace_lines = String::from_utf8_lossy(&serve_stderr)
        .matches("TRACE")
        .count();
    assert!(
        trace_lines > 20,
        "serve logged at trace level ({trace_lines} lines)"
    );
    seen.add("serve stderr (trace)", serve_stderr);
    for (what, status, bytes) in answers.into_inner() {
        seen.add(format!("answer {what} ({status})"), bytes);
    }

    // What the CLI shows afterwards, and the store's own history.
    for args in [
        &["accounts", "list", "--json"][..],
        &["accounts", "list"][..],
        &["token", "c"][..],
        &["token", "d"][..],
    ] {
        let r = run_traced(&env, &fenv, args, None);
        record(
            &mut seen,
            &args.join(" "),
            &r,
            r.code == 0 && args[0] == "token",
        );
    }
    let list = env.list_json();
    let c = list.iter().find(|a| a["label"] == "c").unwrap();
    assert_eq!(c["status"], "terminal", "{c}");
    let conn = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT kind || ' ' || coalesce(detail, '') FROM account_events")
        .unwrap();
    let events: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        events.len() >= 10,
        "the flows left their events: {events:?}"
    );
    seen.add("account_events", events.join("\n"));
    drop(stmt);
    drop(conn);
    // Sealed at rest: no file of the data dir holds token text either.
    for (path, bytes) in env.snapshot() {
        seen.add(format!("file {}", path.display()), bytes);
    }
    // serve's rolling log file (logs/, 0600 as checked above), written at trace level too.
    let logs = snapshot_dir(&env.vault_home().join("logs"));
    let file_trace: usize = logs
        .values()
        .map(|b| String::from_utf8_lossy(b).matches(" TRACE ").count())
        .sum();
    assert!(
        file_trace > 20,
        "serve wrote its log file at trace level ({file_trace} lines in {:?})",
        logs.keys()
    );
    for (path, bytes) in logs {
        seen.add(format!("log file {}", path.display()), bytes);
    }
    assert_private(&env.vault_home(), "after serve stopped");

    // The needles: every token the fake minted, the local key and the data key.
    let mut secrets = fake.issued_secrets();
    assert!(
        secrets.contains(&printed),
        "the scan knows the tokens we handed out"
    );
    assert!(secrets.contains(&b1["refresh_token"].as_str().unwrap().to_string()));
    secrets.push(local_key.clone());
    secrets.push(data_key(&env.store_id()));
    let scanner = LeakScanner::new(&secrets);
    // The scanner finds what it should (a planted fragment), so a clean result means something.
    let planted = format!(
        "log line …{}… end",
        &grants[0].1.refresh_token[20..20 + LEAK_WINDOW]
    );
    assert!(scanner.find(planted.as_bytes()).is_some());

    let total: usize = seen.items.iter().map(|(_, b)| b.len()).sum();
    let leaks: Vec<String> = seen
        .items
        .iter()
        .filter_map(|(what, bytes)| scanner.find(bytes).map(|hit| format!("{what}: {hit}")))
        .collect();
    println!(
        "leak scan: {} secrets, {} sources, {total} bytes scanned ({trace_lines} trace lines from serve), {} leaks",
        scanner.secrets,
        seen.items.len(),
        leaks.len()
    );
    assert!(
        leaks.is_empty(),
        "secret fragments shown:\n{}",
        leaks.join("\n")
    );
    assert!(
        total > 100_000,
        "trace logging produced output to scan ({total} bytes)"
    );
}

async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let resp = http.post(url).json(body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}
