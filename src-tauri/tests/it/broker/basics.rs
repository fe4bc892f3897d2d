//! The refresh broker (`POST /oauth/token`, `POST /oauth/revoke` on the loopback endpoint) with
//! direct HTTP clients, backed by the fake OpenAI: the current refresh token rotates through the
//! TokenManager (one upstream refresh however many callers), the previous generation gets the
//! current tokens, older ones are a reuse, unknown grants pass through unchanged, a terminal
//! account answers its code, a CLI's logout never revokes our grant, the guard applies, and no
//! token reaches a log line or an error body.

use crate::common::vault::*;
use codex_vault::vault::Field;
use codex_vault_testkit::{AccountSpec, FakeOpenAi, Fault, FaultRoute};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

/// Every log line of this test binary (all levels), to check that no token is ever logged.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        buf
    })
}

struct LogSink(Arc<Mutex<Vec<u8>>>);
impl Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One account, `broker@corp.com`, imported as the broker's tests hold it (no Codex file of its
/// own), then the core serving.
async fn broker_vault() -> TestVault {
    logs();
    let mut rig = TestVault::builder().no_endpoint().start().await;
    let t = rig.fake.add_account(AccountSpec {
        email: "broker@corp.com".into(),
        ..Default::default()
    });
    let cred = codex_vault::oauth::auth_json::parse(
        FakeOpenAi::auth_json(&t, chrono::Utc::now()).as_bytes(),
    )
    .unwrap();
    rig.service
        .import_owned(&cred, None, None, None, 0)
        .unwrap();
    rig.accounts.push(t);
    rig.serve().await;
    rig
}

/// The broker's calls and what they leave in the store (the core's handle on it).
trait Broker {
    fn account_id(&self) -> String;
    async fn refresh(&self, rt: &str) -> (u16, Value);
    fn stored(&self) -> (String, i64);
}

impl Broker for TestVault {
    fn account_id(&self) -> String {
        self.core().service.list().unwrap()[0].id.clone()
    }

    async fn refresh(&self, rt: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/oauth/token", self.ep().url()))
            .json(&json!({"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": rt}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The vault's stored (refresh token, generation) for the account.
    fn stored(&self) -> (String, i64) {
        let id = self.account_id();
        let s = self.core().service.store().secrets(&id).unwrap().unwrap();
        let rt = self
            .core()
            .service
            .vault()
            .open(&id, Field::RefreshToken, &s.refresh_token)
            .unwrap();
        (rt.expose().to_string(), s.generation)
    }
}

fn assert_no_token_text(hay: &[u8], tokens: &[&str], what: &str) {
    for t in tokens {
        let t = t.as_bytes();
        for needle in [t, &t[t.len() / 2..t.len() / 2 + 16]] {
            assert!(
                !hay.windows(needle.len()).any(|w| w == needle),
                "{what} contains token text"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_token_rotates_as_the_accounts_rotation_and_its_predecessor_gets_the_same() {
    let rig = broker_vault().await;
    let (_, gen0) = rig.stored();
    let (status, a) = rig.refresh(&rig.accounts[0].refresh_token).await;
    assert_eq!(status, 200, "{a}");
    let new_rt = a["refresh_token"].as_str().unwrap();
    let new_at = a["access_token"].as_str().unwrap();
    assert_ne!(new_rt, rig.accounts[0].refresh_token);
    assert_ne!(new_at, rig.accounts[0].access_token);
    assert_eq!(a["token_type"], "Bearer");
    assert!(a["id_token"]
        .as_str()
        .is_some_and(|s| s.split('.').count() == 3));
    assert!(a["expires_in"].as_i64().unwrap() > 3000, "{a}");
    assert_eq!(rig.fake.counters().refreshes_ok, 1);
    // The broker's rotation is the account's: the vault holds exactly what the client got.
    let (stored_rt, gen1) = rig.stored();
    assert_eq!(stored_rt, new_rt);
    assert_eq!(gen1, gen0 + 1);
    assert!(accepted(&rig.fake, new_at, &rig.accounts[0].account_id).await);
    assert_eq!(
        rig.core().service.list().unwrap()[0].status.as_str(),
        "healthy"
    );

    // A sibling CLI still holding the previous generation: handed the current tokens, no refresh.
    let (status, b) = rig.refresh(&rig.accounts[0].refresh_token).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["refresh_token"], a["refresh_token"]);
    assert_eq!(b["access_token"], a["access_token"]);
    let n = rig.fake.counters();
    assert_eq!((n.token_calls, n.refreshes_ok), (1, 1), "{n:?}");

    // The new current token rotates again (form-encoded works too), and the vault follows.
    let r = rig
        .http
        .post(format!("{}/oauth/token", rig.ep().url()))
        .form(&[
            ("client_id", CLIENT_ID),
            ("grant_type", "refresh_token"),
            ("refresh_token", new_rt),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.unwrap();
    assert_ne!(c["refresh_token"], a["refresh_token"]);
    assert_eq!(rig.stored().0, c["refresh_token"].as_str().unwrap());
    assert_eq!(rig.fake.counters().refreshes_ok, 2);

    // Two generations back is a reuse, answered in upstream's shape, without asking upstream.
    let (status, d) = rig.refresh(&rig.accounts[0].refresh_token).await;
    assert_eq!(status, 401, "{d}");
    assert_eq!(d["error"]["code"], "refresh_token_reused");
    assert_eq!(rig.fake.counters().token_calls, 2);
    // Our account is unharmed by that.
    assert_eq!(
        rig.core().service.list().unwrap()[0].status.as_str(),
        "healthy"
    );
    let logs = logs().lock().unwrap().clone();
    // The capture works (else the check below would pass vacuously).
    assert!(
        String::from_utf8_lossy(&logs).contains("broker: refreshed for a Codex CLI"),
        "no broker log line captured"
    );
    assert_no_token_text(
        &logs,
        &[
            &rig.accounts[0].refresh_token,
            new_rt,
            new_at,
            c["refresh_token"].as_str().unwrap(),
        ],
        "the log",
    );
    assert_no_token_text(
        d.to_string().as_bytes(),
        &[&rig.accounts[0].refresh_token],
        "the 401 body",
    );
    assert_broker_calls_logged(&rig);
}

/// Each call is in the request log as the broker's, for the account it was about.
fn assert_broker_calls_logged(rig: &TestVault) {
    let rows = crate::common::wait_until(
        "the broker's calls logged",
        std::time::Duration::from_secs(20),
        || {
            let r = rig.dir.ok(&["activity", "--json"]);
            let v: Value = serde_json::from_str(&r.stdout).unwrap();
            let rows = v["requests"].as_array().unwrap().clone();
            (rows.len() >= 4).then_some(rows)
        },
    );
    let seen: Vec<(String, u64)> = rows
        .iter()
        .rev()
        .map(|r| {
            assert_eq!(r["route"], "broker", "{r}");
            assert_eq!(r["account_id"], rig.account_id().as_str(), "{r}");
            (
                r["outcome"].as_str().unwrap().to_string(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("refreshed", 200),
        ("ok", 200),
        ("refreshed", 200),
        ("rejected", 401),
    ];
    assert_eq!(seen, want.map(|(o, s)| (o.to_string(), s)), "{rows:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_callers_with_one_current_token_share_one_upstream_refresh() {
    let rig = broker_vault().await;
    // Upstream is slow, so every caller arrives while the first refresh is still in flight.
    rig.fake.inject_faults(
        FaultRoute::Token,
        vec![Fault::Slow(Duration::from_millis(800))],
    );
    let answers =
        futures_util::future::join_all((0..6).map(|_| rig.refresh(&rig.accounts[0].refresh_token)))
            .await;
    let n = rig.fake.counters();
    assert_eq!(
        (n.token_calls, n.refreshes_ok, n.refresh_reuse),
        (1, 1, 0),
        "{n:?}"
    );
    let first = &answers[0].1;
    for (status, a) in &answers {
        assert_eq!(*status, 200, "{a}");
        assert_eq!(a["refresh_token"], first["refresh_token"]);
        assert_eq!(a["access_token"], first["access_token"]);
    }
    assert_eq!(rig.stored().0, first["refresh_token"].as_str().unwrap());
}

/// The vault's own TokenManager for `rig` (its rotations are followed, as `serve`'s are).
fn vault_manager(rig: &TestVault) -> codex_vault::refresh::TokenManager {
    let tm = manager_for(&rig.core().service, &rig.fake, refresh_config(&rig.fake));
    tm.set_rotation_observer(std::sync::Arc::new(
        codex_vault::codex_writeback::CodexWriteback::new(
            rig.core().service.store().clone(),
            rig.core().service.vault().clone(),
        ),
    ));
    tm
}

/// The vault's scheduler rotates `n` times; returns each new refresh token, oldest first.
async fn vault_rotates(
    rig: &TestVault,
    tm: &codex_vault::refresh::TokenManager,
    n: usize,
) -> Vec<String> {
    let id = rig.account_id();
    let mut out = Vec::new();
    for _ in 0..n {
        let (_, gen) = rig.stored();
        tm.refresh_planned(&id, gen).await.unwrap();
        out.push(rig.stored().0);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holders_newest_token_is_honoured_at_any_age_and_a_kept_or_older_one_never() {
    let rig = broker_vault().await;
    let tm = vault_manager(&rig);
    // The vault rotates three times while the holder (the imported file's CLI) sleeps.
    let minted = vault_rotates(&rig, &tm, 3).await;
    assert_eq!(rig.fake.counters().refreshes_ok, 3);
    // Eleven minutes later (moved back in the store: the window is judged by `rotated_at`).
    let db = rusqlite::Connection::open(rig.data_dir().join("codex-vault.db")).unwrap();
    db.execute(
        "UPDATE account_secrets SET rotated_at = rotated_at - 11 * 60 * 1000",
        [],
    )
    .unwrap();
    let calls = rig.fake.counters().token_calls;

    // Tokens only our own rotations ever had (the previous one and an older one): refused as
    // a reuse, never forwarded.
    for rt in [&minted[1], &minted[0]] {
        let (status, a) = rig.refresh(rt).await;
        assert_eq!(status, 401, "{a}");
        assert_eq!(a["error"]["code"], "refresh_token_reused");
    }
    assert_eq!(rig.fake.counters().token_calls, calls, "nothing forwarded");

    // The holder comes back with the token it was imported with: handed the current tokens.
    let (status, a) = rig.refresh(&rig.accounts[0].refresh_token).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["refresh_token"].as_str(), Some(minted[2].as_str()));
    assert!(
        accepted(
            &rig.fake,
            a["access_token"].as_str().unwrap(),
            &rig.accounts[0].account_id
        )
        .await
    );
    assert_eq!(
        rig.fake.counters().token_calls,
        calls,
        "handed, not refreshed"
    );
    let view = &rig.core().service.list().unwrap()[0];
    assert!(
        view.brokered && view.broker_holder_seen_at.is_some(),
        "{view:?}"
    );

    // Now it holds the current token: its older one is a reuse (after the window).
    let (status, b) = rig.refresh(&rig.accounts[0].refresh_token).await;
    assert_eq!(status, 401, "{b}");
    assert_eq!(b["error"]["code"], "refresh_token_reused");
    assert_eq!(rig.fake.counters().token_calls, calls);
    // The current one rotates, and the issuer never saw a reuse.
    let (status, c) = rig.refresh(&minted[2]).await;
    assert_eq!(status, 200, "{c}");
    let n = rig.fake.counters();
    assert_eq!((n.refreshes_ok, n.refresh_reuse), (4, 0), "{n:?}");
    assert_eq!(rig.stored().0, c["refresh_token"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detach_backups_token_is_refused_and_never_forwarded() {
    let mut e = TestVault::builder().no_endpoint().start().await;
    let fake = &e.fake;
    let t = fake.add_account(AccountSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.json");
    std::fs::write(&file, FakeOpenAi::auth_json(&t, chrono::Utc::now())).unwrap();
    let cred = codex_vault::oauth::auth_json::parse(&std::fs::read(&file).unwrap()).unwrap();
    let owned = e
        .service
        .import_owned(
            &cred,
            None,
            Some(&file),
            Some(codex_vault::accounts::ownership::Ownership::Detach),
            0,
        )
        .unwrap();
    let backup = owned.codex_cli.unwrap().backup.unwrap();
    assert!(!file.exists());
    let backup_rt = codex_vault::oauth::auth_json::parse(&std::fs::read(&backup).unwrap())
        .unwrap()
        .tokens
        .refresh_token;
    e.serve().await;
    let (fake, ep) = (&e.fake, e.ep());
    let (service, tm) = (&e.core().service, e.tm());
    let refresh = |rt: String| {
        let url = format!("{}/oauth/token", ep.url());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&json!({"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": rt}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // Still the vault's current token, but the backup's: refused, not rotated, not forwarded.
    let (status, a) = refresh(backup_rt.expose().to_string()).await;
    assert_eq!(status, 401, "{a}");
    assert_eq!(a["error"]["code"], "refresh_token_reused");
    assert_eq!(fake.counters().token_calls, 0);
    // After the vault rotated it: still refused, still never forwarded.
    let id = service.list().unwrap()[0].id.clone();
    tm.force_refresh(&id, None).await.unwrap();
    let (status, b) = refresh(backup_rt.expose().to_string()).await;
    assert_eq!(status, 401, "{b}");
    let n = fake.counters();
    assert_eq!(
        (n.token_calls, n.refreshes_ok, n.refresh_reuse),
        (1, 1, 0),
        "{n:?}"
    );
    assert_eq!(service.list().unwrap()[0].status.as_str(), "healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_grants_pass_through_unchanged() {
    let rig = broker_vault().await;
    // A garbage token: the broker's answer is byte for byte the fake's own.
    let direct = rig
        .http
        .post(rig.fake.token_url())
        .json(&json!({"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": "rt_not_ours"}))
        .send()
        .await
        .unwrap();
    let (d_status, d_type) = (
        direct.status(),
        direct.headers().get("content-type").cloned(),
    );
    let d_body = direct.bytes().await.unwrap();
    let via = rig
        .http
        .post(format!("{}/oauth/token", rig.ep().url()))
        .json(&json!({"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": "rt_not_ours"}))
        .send()
        .await
        .unwrap();
    assert_eq!(via.status(), d_status);
    assert_eq!(d_status, 401);
    assert_eq!(via.headers().get("content-type").cloned(), d_type);
    assert_eq!(via.bytes().await.unwrap(), d_body);

    // A live sign-in the vault does not hold: refreshed by the issuer itself, answer passed on.
    let other = rig.fake.add_account(AccountSpec::default());
    let (status, a) = rig.refresh(&other.refresh_token).await;
    assert_eq!(status, 200, "{a}");
    let rt = a["refresh_token"].as_str().unwrap();
    assert_ne!(rt, other.refresh_token);
    rig.fake.rotate_out_of_band(rt); // the issuer knows it as that chain's current token
    assert_eq!(rig.fake.counters().refreshes_ok, 1);
    // Our own account was not touched.
    assert_eq!(rig.stored().0, rig.accounts[0].refresh_token);

    // A grant type the broker does not handle (form-encoded code exchange): forwarded as is.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", "ac_nope"),
        ("client_id", CLIENT_ID),
    ];
    let direct = rig
        .http
        .post(rig.fake.token_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    let (d_status, d_body) = (direct.status(), direct.bytes().await.unwrap());
    assert!(d_status.is_client_error());
    let via = rig
        .http
        .post(format!("{}/oauth/token", rig.ep().url()))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(via.status(), d_status);
    assert_eq!(via.bytes().await.unwrap(), d_body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_account_answers_its_code() {
    let rig = broker_vault().await;
    rig.fake.revoke_account(&rig.accounts[0].account_id);
    let (status, a) = rig.refresh(&rig.accounts[0].refresh_token).await;
    assert_eq!(status, 401, "{a}");
    assert_eq!(a["error"]["code"], "refresh_token_invalidated");
    assert_eq!(
        rig.core().service.list().unwrap()[0].status.as_str(),
        "terminal"
    );
    let calls = rig.fake.counters().token_calls;
    // Asked again: answered from the account's recorded reason, upstream not asked again.
    let (status, b) = rig.refresh(&rig.accounts[0].refresh_token).await;
    assert_eq!(status, 401, "{b}");
    assert_eq!(b["error"]["code"], "refresh_token_invalidated");
    assert_eq!(rig.fake.counters().token_calls, calls);
    assert_no_token_text(
        a.to_string().as_bytes(),
        &[&rig.accounts[0].refresh_token],
        "the 401 body",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_logout_of_a_held_sign_in_is_recorded_not_revoked() {
    let rig = broker_vault().await;
    let revoke = |token: String| {
        let url = format!("{}/oauth/revoke", rig.ep().url());
        let http = rig.http.clone();
        async move {
            http.post(url)
                .json(&json!({"token": token, "token_type_hint": "refresh_token", "client_id": CLIENT_ID}))
                .send()
                .await
                .unwrap()
        }
    };
    let r = revoke(rig.accounts[0].refresh_token.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        rig.fake.counters().revoke_calls,
        0,
        "never revoked upstream"
    );
    assert!(rig
        .events(&rig.account_id())
        .contains(&"cli_logged_out".to_string()));
    // Our grant still works: the broker (and so the vault) can refresh it.
    let (status, a) = rig.refresh(&rig.accounts[0].refresh_token).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        rig.core().service.list().unwrap()[0].status.as_str(),
        "healthy"
    );

    // Someone else's sign-in: forwarded, and the issuer did revoke it.
    let other = rig.fake.add_account(AccountSpec::default());
    let r = revoke(other.refresh_token.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(rig.fake.counters().revoke_calls, 1);
    let (status, b) = rig.refresh(&other.refresh_token).await;
    assert_eq!(status, 401, "{b}");
    assert_eq!(b["error"]["code"], "refresh_token_invalidated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_applies_to_the_broker() {
    let rig = broker_vault().await;
    for (name, value, code) in [
        ("host", "evil.example", "host_not_allowed"),
        ("origin", "https://evil.example", "origin_not_allowed"),
    ] {
        for path in ["/oauth/token", "/oauth/revoke"] {
            let r = rig
                .http
                .post(format!("{}{path}", rig.ep().url()))
                .header(name, value)
                .json(&json!({"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": rig.accounts[0].refresh_token, "token": rig.accounts[0].refresh_token}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path} with {name}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], code);
        }
    }
    let n = rig.fake.counters();
    assert_eq!((n.token_calls, n.revoke_calls), (0, 0));
    assert_eq!(rig.stored().0, rig.accounts[0].refresh_token);
}
