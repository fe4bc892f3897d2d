//! `accounts login --paste`: the browser is on another machine. The test plays that browser:
//! it opens the printed URL at the fake without following the redirect (that machine's
//! localhost is not ours), and pastes the address it was sent to on stdin.

use crate::common;

use codex_vault_testkit::{AccountSpec, FakeOpenAi};
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};

struct PasteProc {
    child: Child,
    url: String,
}

fn start(env: &DataDir, fake: &FakeOpenAi, extra: &[&str]) -> PasteProc {
    let mut child = env
        .cmd()
        .args(["accounts", "login", "--paste"])
        .args(extra)
        .env("CODEX_VAULT_AUTH_BASE", fake.base_url())
        .env_remove("CODEX_VAULT_CALLBACK_PORTS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("no URL printed").unwrap();
        if line.starts_with("http") {
            break line;
        }
    };
    std::thread::spawn(move || lines.map_while(Result::ok).count());
    PasteProc { child, url }
}

/// The remote browser: signs in at the fake and returns where it was redirected.
fn remote_browser(url: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = client.get(url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 302);
        r.headers()["location"].to_str().unwrap().to_string()
    })
}

fn paste(mut p: PasteProc, text: &str) -> Run {
    let mut stdin = p.child.stdin.take().unwrap();
    writeln!(stdin, "{text}").unwrap();
    drop(stdin);
    Run::finished(&mut p.child, String::new())
}

#[test]
fn a_pasted_callback_url_stores_the_account() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    fake.set_login_identity(Some(AccountSpec {
        email: "paste@corp.com".into(),
        ..Default::default()
    }));
    let p = start(&env, &fake, &["--label", "pasted"]);
    let callback = remote_browser(&p.url);
    assert!(
        callback.starts_with("http://localhost:1455/auth/callback?code="),
        "{callback}"
    );
    let r = paste(p, &callback);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let list = env.list_json();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["label"], "pasted");
    assert_eq!(list[0]["email"], "paste@corp.com");
    assert_eq!(fake.counters().code_exchanges, 1);
}

#[test]
fn a_wrong_state_is_refused_and_nothing_is_stored() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let p = start(&env, &fake, &[]);
    let callback = remote_browser(&p.url);
    let mut u = url::Url::parse(&callback).unwrap();
    let code: String = u
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    u.query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", "not-the-state");
    let r = paste(p, u.as_str());
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("[login_state_mismatch]"), "{}", r.stderr);
    assert!(env.list_json().is_empty());
    assert_eq!(
        fake.counters().code_exchanges,
        0,
        "a refused code was redeemed"
    );
}

#[test]
fn the_callback_of_another_sign_in_is_refused() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    let other = start(&env, &fake, &[]);
    let others_callback = remote_browser(&other.url);
    let p = start(&env, &fake, &[]);
    let r = paste(p, &others_callback);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("did not match this sign-in")
            && r.stderr.contains("[login_state_mismatch]"),
        "{}",
        r.stderr
    );
    assert!(env.list_json().is_empty());
    assert_eq!(fake.counters().code_exchanges, 0);
    // That address still belongs to its own sign-in, which completes with it.
    let r = paste(other, &others_callback);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(env.list_json().len(), 1);
}

#[test]
fn what_is_not_a_callback_address_is_refused() {
    let fake = fake();
    let env = TestVault::builder().data_dir();
    for text in ["", "hello", "http://localhost:1455/other?code=a&state=b"] {
        let p = start(&env, &fake, &[]);
        let r = paste(p, text);
        assert_eq!(r.code, 1, "{text}");
        assert!(
            r.stderr.contains("[login_paste_invalid]"),
            "{text}: {}",
            r.stderr
        );
    }
    assert!(env.list_json().is_empty());
    assert_eq!(fake.counters().code_exchanges, 0);
}
