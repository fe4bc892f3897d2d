//! 150 broker callers presenting an account's current refresh token while the vault's scheduler
//! (the same TokenManager, as in `serve`) commits a planned rotation of it — started before the
//! first caller, or in the middle of them. The issuer revokes the whole family on any reuse. Each of 10 trials: exactly one rotation at the issuer, zero reuses, every caller
//! ends holding the vault's current tokens, which the issuer accepts.
//!
//! Before the broker decided on one consistent read, a caller that looked its token up before the
//! commit and read the grant after it forwarded the spent token to the issuer (8 of 10 trials
//! failed, the family died while the vault showed it healthy).

use crate::common::vault::*;
use codex_vault::vault::Field;
use codex_vault_testkit::{AccountSpec, FakeConfig, Fault, FaultRoute};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
const CALLERS: u64 = 150;
const TRIALS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_around_a_commit_never_spend_a_rotated_token() {
    let e = TestVault::builder()
        .fake(FakeConfig {
            family_revoke_on_reuse: true,
            ..FakeConfig::default()
        })
        .start()
        .await;
    let (fake, ep) = (&e.fake, e.ep());
    let (service, tm) = (&e.core().service, e.tm());
    let http = reqwest::Client::new();
    let url = format!("{}/oauth/token", ep.url());

    for trial in 0..TRIALS {
        let t = fake.add_account(AccountSpec::default());
        let id = e.import(&t);
        let gen = service.store().generation(&id).unwrap().unwrap();
        // The issuer holds its answer, so callers arrive before, during and after the commit.
        fake.inject_faults(
            FaultRoute::Token,
            vec![Fault::Slow(Duration::from_millis(150))],
        );
        // Odd trials: the scheduler's refresh starts while callers are already arriving.
        let delay = Duration::from_millis(if trial % 2 == 0 { 0 } else { 100 });
        let (scheduler, sid) = (tm.clone(), id.clone());
        let planned = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            scheduler.refresh_planned(&sid, gen).await
        });
        let callers: Vec<_> = (0..CALLERS)
            .map(|i| {
                let (http, url, rt) = (http.clone(), url.clone(), t.refresh_token.clone());
                tokio::spawn(async move {
                    // Spread over ~300 ms: a workload shape, not a synchronisation.
                    tokio::time::sleep(Duration::from_millis(i * 2)).await;
                    let r = http
                        .post(url)
                        .json(&json!({"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": rt}))
                        .send()
                        .await
                        .unwrap();
                    (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
                })
            })
            .collect();
        planned.await.unwrap().expect("the scheduler's rotation");
        let answers = futures_util::future::join_all(callers).await;

        let n = fake.counters();
        let per = &n.per_account[&t.account_id];
        assert_eq!(
            (per.refreshes_ok, per.refresh_reuse),
            (1, 0),
            "trial {trial}: exactly one rotation, no reuse: {n:?}"
        );
        let s = service.store().secrets(&id).unwrap().unwrap();
        let current = service
            .vault()
            .open(&id, Field::RefreshToken, &s.refresh_token)
            .unwrap();
        let mut access = BTreeSet::new();
        for a in answers {
            let (status, body) = a.unwrap();
            assert_eq!(status, 200, "trial {trial}: {body}");
            assert_eq!(
                body["refresh_token"].as_str(),
                Some(current.expose()),
                "trial {trial}: every caller holds the vault's current refresh token"
            );
            access.insert(body["access_token"].as_str().unwrap().to_string());
        }
        for a in &access {
            assert!(
                accepted(fake, a, &t.account_id).await,
                "trial {trial}: the issuer accepts every handed access token"
            );
        }
        // The chain is alive at the issuer: its current token still redeems.
        fake.rotate_out_of_band(current.expose());
        let view = service.view(&id).unwrap();
        assert_eq!(view.status.as_str(), "healthy", "trial {trial}: {view:?}");
    }
    assert_eq!(fake.counters().refresh_reuse, 0);
}
