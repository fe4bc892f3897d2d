//! The token client against the fake OpenAI: rotation, reuse in both shapes, revocation, absent
//! fields, and every transient fault class (5xx, HTML, dropped connection, timeout).

use codex_vault::oauth::client::{Issuer, RefreshOutcome, TokenClient};
use codex_vault::secret::Secret;
use codex_vault_testkit::{AccountSpec, FakeConfig, FakeOpenAi, Fault, FaultRoute, ReuseMode};
use std::time::Duration;

fn client(fake: &FakeOpenAi) -> TokenClient {
    TokenClient::new(Issuer {
        base: fake.base_url(),
    })
}

#[tokio::test]
async fn rotation_then_reuse_in_both_shapes() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let t = fake.add_account(AccountSpec::default());
    let c = client(&fake);
    let old = Secret::new(t.refresh_token.clone());
    let RefreshOutcome::Rotated(new) = c.refresh(&old).await else {
        panic!("first refresh must rotate")
    };
    let new_rt = new.refresh_token.expect("rotated refresh token");
    assert_ne!(new_rt.expose(), t.refresh_token);
    assert!(new.access_token.is_some() && new.id_token.is_some());

    match c.refresh(&old).await {
        RefreshOutcome::MaybeRace {
            code,
            http_status,
            message,
        } => {
            assert_eq!(code, "refresh_token_reused");
            assert_eq!(http_status, 401);
            assert!(message.contains("already been used"), "{message}");
        }
        other => panic!("reuse must be MaybeRace, got {other:?}"),
    }
    fake.set_reuse_mode(ReuseMode::InvalidGrant);
    match c.refresh(&old).await {
        RefreshOutcome::MaybeRace {
            code, http_status, ..
        } => {
            assert_eq!((code.as_str(), http_status), ("invalid_grant", 400));
        }
        other => panic!("{other:?}"),
    }
    // The current token still works: reuse of an old one did not kill the family here.
    assert!(matches!(
        c.refresh(&new_rt).await,
        RefreshOutcome::Rotated(_)
    ));
    let n = fake.counters();
    assert_eq!(n.refreshes_ok, 2);
    assert_eq!(n.refresh_reuse, 2);
}

#[tokio::test]
async fn revoked_grant_is_terminal_with_code_message_and_status() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let t = fake.add_account(AccountSpec::default());
    fake.revoke_account(&t.account_id);
    match client(&fake)
        .refresh(&Secret::new(t.refresh_token.clone()))
        .await
    {
        RefreshOutcome::Terminal {
            code,
            message,
            http_status,
        } => {
            assert_eq!(code, "refresh_token_invalidated");
            assert_eq!(http_status, Some(401));
            assert!(!message.is_empty());
            assert!(!message.contains(&t.refresh_token));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn absent_id_token_is_reported_absent() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    fake.set_omit_id_token_on_refresh(true);
    let t = fake.add_account(AccountSpec::default());
    let RefreshOutcome::Rotated(new) = client(&fake).refresh(&Secret::new(t.refresh_token)).await
    else {
        panic!("must rotate")
    };
    assert!(
        new.id_token.is_none(),
        "an absent field must stay absent (the caller keeps the old one)"
    );
    assert!(new.access_token.is_some() && new.refresh_token.is_some());
}

#[tokio::test]
async fn faults_are_transient_and_never_terminal() {
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let t = fake.add_account(AccountSpec::default());
    let rt = Secret::new(t.refresh_token.clone());
    let c = TokenClient::with_timeout(
        Issuer {
            base: fake.base_url(),
        },
        Duration::from_millis(500),
    );
    fake.inject_faults(
        FaultRoute::Token,
        vec![
            Fault::Status(503),
            Fault::Status(500),
            Fault::Status(429),
            Fault::Html403,
            Fault::Html200,
            Fault::DropConnection,
            Fault::Slow(Duration::from_secs(5)),
        ],
    );
    let mut reasons = Vec::new();
    for _ in 0..7 {
        match c.refresh(&rt).await {
            RefreshOutcome::Transient { reason, .. } => reasons.push(reason),
            other => panic!("a fault must be transient, got {other:?}"),
        }
    }
    assert!(reasons[0].contains("503"), "{reasons:?}");
    assert!(reasons[3].contains("403"), "{reasons:?}");
    assert!(reasons[6].contains("timed out"), "{reasons:?}");
    // The grant survived all of it: the same refresh token still rotates.
    assert!(matches!(c.refresh(&rt).await, RefreshOutcome::Rotated(_)));
}

#[tokio::test]
async fn unreachable_issuer_is_transient() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = TokenClient::new(Issuer {
        base: format!("http://127.0.0.1:{port}"),
    });
    match c.refresh(&Secret::new("rt_x")).await {
        RefreshOutcome::Transient { reason, ambiguous } => {
            assert!(reason.contains("connect"), "{reason}");
            assert!(!ambiguous, "a refused connection never reached the server");
        }
        other => panic!("{other:?}"),
    }
}
