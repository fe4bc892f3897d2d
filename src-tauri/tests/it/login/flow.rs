//! "Sign in with ChatGPT" end to end: a plain HTTP client plays the browser against our callback
//! server and the fake issuer; state mismatch, /cancel, provider errors and busy ports.

use crate::common;

use codex_vault::oauth::client::{Issuer, TokenClient};
use codex_vault::oauth::login::{LoginError, LoginFlow, LoginOptions};
use codex_vault_testkit::{AccountSpec, FakeOpenAi};
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

struct LoginProc {
    child: Child,
    url: String,
    port: u16,
}

/// Starts `accounts login` against the fake, on an ephemeral callback port, and reads its URL.
fn start_cli_login(env: &DataDir, fake: &FakeOpenAi, extra: &[&str]) -> LoginProc {
    let mut child = env
        .cmd()
        .args(["accounts", "login", "--no-browser"])
        .args(extra)
        .env("CODEX_VAULT_AUTH_BASE", fake.base_url())
        .env("CODEX_VAULT_CALLBACK_PORTS", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("login printed no URL").unwrap();
        if line.starts_with("http") {
            break line;
        }
    };
    // Keep draining stdout on a thread so the child never blocks on a full pipe.
    let rest =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    std::mem::forget(rest);
    let port = redirect_port(&url);
    fake.register_redirect_port(port);
    LoginProc { child, url, port }
}

fn redirect_port(url: &str) -> u16 {
    let u = url::Url::parse(url).unwrap();
    let redirect = u
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .unwrap()
        .1
        .into_owned();
    url::Url::parse(&redirect).unwrap().port().unwrap()
}

fn query(url: &str, key: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .unwrap()
        .1
        .into_owned()
}

fn browser_get(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = reqwest::get(url).await.expect("browser GET");
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

fn finish(mut p: LoginProc) -> Run {
    Run::finished(&mut p.child, String::new())
}

#[test]
fn sign_in_stores_the_account_and_signing_in_again_revives_the_same_row() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    fake.set_login_identity(Some(AccountSpec {
        email: "login@corp.com".into(),
        plan: "pro".into(),
        ..Default::default()
    }));

    let p = start_cli_login(&env, &fake, &["--label", "mine"]);
    assert!(
        p.url
            .starts_with(&format!("{}/oauth/authorize?", fake.base_url())),
        "{}",
        p.url
    );
    let (status, page) = browser_get(&p.url);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Signed in") && page.contains("login@corp.com"),
        "{page}"
    );
    let r = finish(p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let list = env.list_json();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["label"], "mine");
    assert_eq!(list[0]["email"], "login@corp.com");
    assert_eq!(list[0]["plan"], "pro");
    assert_eq!(list[0]["status"], "healthy");
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(fake.counters().code_exchanges, 1);

    // The account dies (as the refresh engine would record it), then the user signs in again.
    {
        let conn = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
        conn.execute(
            "UPDATE accounts SET status = 'terminal', failure_code = 'refresh_token_reused', failure_message = 'm', failure_at = 1 WHERE id = ?1",
            [&id],
        )
        .unwrap();
    }
    assert_eq!(env.list_json()[0]["status"], "terminal");
    let p = start_cli_login(&env, &fake, &[]);
    assert_eq!(browser_get(&p.url).0, 200);
    let r = finish(p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let list = env.list_json();
    assert_eq!(list.len(), 1, "a twin row was added");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "healthy");
    assert!(list[0]["failure"].is_null());
    let conn = rusqlite::Connection::open(env.vault_home().join("codex-vault.db")).unwrap();
    let events: Vec<(String, Option<String>)> = conn
        .prepare("SELECT kind, detail FROM account_events WHERE account_id = ?1 ORDER BY id")
        .unwrap()
        .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(events.len(), 2, "history kept: {events:?}");
    assert_eq!(
        events[1],
        (
            "signed_in".into(),
            Some("revived from refresh_token_reused".into())
        )
    );
}

/// One whole CLI sign-in with the fake's login identity: the browser follows the URL.
fn sign_in_with(env: &DataDir, fake: &FakeOpenAi, extra: &[&str]) -> Run {
    let p = start_cli_login(env, fake, extra);
    assert_eq!(browser_get(&p.url).0, 200);
    finish(p)
}

#[test]
fn the_label_is_checked_once_we_know_which_account_signed_in() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    fake.set_login_identity(Some(AccountSpec {
        email: "ana@corp.com".into(),
        ..Default::default()
    }));
    let r = sign_in_with(&env, &fake, &["--label", "mine"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // The same account again, with the label it has: a re-sign-in, not `label_taken`.
    let r = sign_in_with(&env, &fake, &["--label", "mine"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("label_taken"), "{}", r.stderr);
    assert!(!r.stderr.contains("note:"), "{}", r.stderr);
    let list = env.list_json();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["label"], "mine");

    // With another label: the sign-in is kept, so is the label, and the note says how to rename.
    let r = sign_in_with(&env, &fake, &["--label", "other"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("note: this sign-in is account `mine`, which keeps its label")
            && r.stderr.contains("codex-vault accounts rename mine other"),
        "{}",
        r.stderr
    );
    let list = env.list_json();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["label"], "mine");

    // Another account asking for a label that is taken: added under a free one, and told so.
    fake.set_login_identity(Some(AccountSpec {
        email: "bo@corp.com".into(),
        ..Default::default()
    }));
    let r = sign_in_with(&env, &fake, &["--label", "mine"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the label `mine` is another account's, so this one is called `bo`"),
        "{}",
        r.stderr
    );
    let list = env.list_json();
    assert_eq!(list.len(), 2);
    let bo = list.iter().find(|a| a["email"] == "bo@corp.com").unwrap();
    assert_eq!(bo["label"], "bo");
    assert_eq!(fake.counters().code_exchanges, 4, "every sign-in completed");
}

#[test]
fn wrong_state_is_refused_and_the_real_answer_still_completes() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let p = start_cli_login(&env, &fake, &[]);
    let forged = format!(
        "http://127.0.0.1:{}/auth/callback?code=abc&state=not-the-state",
        p.port
    );
    let (status, page) = browser_get(&forged);
    assert_eq!(status, 400);
    assert!(page.contains("state mismatch"), "{page}");
    assert_eq!(
        fake.counters().code_exchanges,
        0,
        "a forged code was exchanged"
    );
    assert!(
        env.list_json().is_empty(),
        "a forged callback stored something"
    );
    // The flow kept waiting (like the Codex CLI's server): the real answer still signs in.
    let (status, page) = browser_get(&p.url);
    assert_eq!(status, 200, "{page}");
    let r = finish(p);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.list_json().len(), 1);
    assert_eq!(fake.counters().code_exchanges, 1);
}

#[test]
fn cancel_from_codex_login_ends_the_flow() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let p = start_cli_login(&env, &fake, &[]);
    let port = p.port;
    let (status, text) = browser_get(&format!("http://127.0.0.1:{}/cancel", p.port));
    assert_eq!(status, 200);
    assert!(text.contains("cancelled"), "{text}");
    let r = finish(p);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("[login_cancelled]") && r.stderr.contains("codex login"),
        "{}",
        r.stderr
    );
    assert!(env.list_json().is_empty());
    // The point of /cancel: the port is free again for `codex login`.
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the callback port was given back");
}

fn opts(fake: &FakeOpenAi, ports: Vec<u16>) -> LoginOptions {
    LoginOptions {
        issuer: Issuer {
            base: fake.base_url(),
        },
        ports,
        timeout: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn provider_error_missing_entitlement_is_explained() {
    let fake = FakeOpenAi::start(Default::default()).await;
    let flow = LoginFlow::start(
        &opts(&fake, vec![0]),
        TokenClient::new(Issuer {
            base: fake.base_url(),
        }),
    )
    .await
    .unwrap();
    let state = query(flow.url(), "state");
    let url = format!(
        "http://127.0.0.1:{}/auth/callback?error=access_denied&error_description=missing_codex_entitlement&state={state}",
        flow.port()
    );
    let page = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert!(page.contains("no access to Codex"), "{page}");
    match flow.wait().await {
        Err(e @ LoginError::MissingEntitlement) => {
            assert_eq!(e.code(), "missing_codex_entitlement")
        }
        other => panic!("{:?}", other.map(|c| c.identity)),
    }
}

#[tokio::test]
async fn busy_ports_fall_back_then_fail_clearly() {
    let fake = FakeOpenAi::start(Default::default()).await;
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (pa, pb) = (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    );
    let client = TokenClient::new(Issuer {
        base: fake.base_url(),
    });

    let err = match LoginFlow::start(&opts(&fake, vec![pa, pb]), client.clone()).await {
        Err(e) => e,
        Ok(_) => panic!("both ports are busy"),
    };
    assert_eq!(err.code(), "login_ports_busy");
    let msg = err.to_string();
    assert!(
        msg.contains(&pa.to_string()) && msg.contains(&pb.to_string()),
        "{msg}"
    );

    // Now a second port that is free: the flow falls back to it. A port freed for this can be
    // taken at once by another socket of this machine (it is in the ephemeral range); that is
    // told apart by binding it ourselves, and then another free port is tried.
    drop(b);
    let mut second = pb;
    for _ in 0..5 {
        match LoginFlow::start(&opts(&fake, vec![pa, second]), client.clone()).await {
            Ok(flow) => {
                assert_eq!(
                    flow.port(),
                    second,
                    "the second port is used when the first is busy"
                );
                assert_eq!(redirect_port(flow.url()), second);
                return;
            }
            Err(e) if e.code() == "login_ports_busy" => {
                assert!(
                    std::net::TcpListener::bind(("127.0.0.1", second)).is_err(),
                    "the sign-in called {second} busy, but it is free: {e}"
                );
                let c = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                second = c.local_addr().unwrap().port();
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("five freed ports were all taken by others before the sign-in could bind one");
}
