//! Load soak through the real `serve`: N concurrent streams for D seconds over four accounts,
//! one account revoked a third of the way in. Every request must succeed (three healthy accounts
//! stay available throughout: a request that lands on the revoked one is refreshed, found dead
//! and failed over), the revoked account ends terminal, and the endpoint's memory stays flat
//! (RSS growth < 10% from the warmed-up level to the end; asserted in the long run only, where
//! it means something — a few seconds of load measure allocator warm-up, not a leak).
//!
//! `make test`: `HARDEN_SOAK_STREAMS` 100 for `HARDEN_SOAK_SECS` 8; `make soak`: 500 for 60.

use crate::common;

use codex_vault_testkit::{FakeConfig, FakeOpenAi};
use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::too_many_lines,
    reason = "one linear scenario: its steps share one running setup and read top to bottom"
)]
async fn concurrent_streams_with_an_account_revoked_mid_run_all_succeed_and_memory_stays_flat() {
    let streams = env_num("HARDEN_SOAK_STREAMS", 100) as usize;
    let secs = env_num("HARDEN_SOAK_SECS", 8);
    let duration = Duration::from_secs(secs);
    // Client, fake-server and (inherited by serve) upstream sockets: several per stream.
    need_open_files(3 * streams + 200);
    let fake = FakeOpenAi::start(FakeConfig::default()).await;
    let env = TestVault::builder().data_dir();
    let accounts: Vec<_> = (0..4)
        .map(|i| {
            let t = account(&fake, &format!("soak{i}@corp.com"), "plus");
            let p = env.write_file(
                &format!("s{i}.json"),
                auth_json(&t, "2026-01-01T00:00:00Z").as_bytes(),
            );
            let label = format!("soak{i}");
            let r = tokio::task::block_in_place(|| {
                env.run(&["accounts", "import", p.to_str().unwrap(), "--label", &label])
            });
            assert_eq!(r.code, 0, "{}", r.stderr);
            t
        })
        .collect();
    let key = {
        let r = tokio::task::block_in_place(|| env.run(&["endpoint", "info", "--json"]));
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["key"].as_str().unwrap().to_string()
    };
    let mut serve = tokio::task::block_in_place(|| {
        env.spawn_serve(&fake_env(&fake), env.dir.path().join("serve.log"))
    });
    let pid = serve.pid();
    let url = serve.url("/v1/responses");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(streams)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let turn = json!({"model": "gpt-5-codex", "instructions": "", "stream": true, "store": false,
        "input": [{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}]});

    let ok = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..streams)
        .map(|w| {
            let (http, url, key, turn) = (http.clone(), url.clone(), key.clone(), turn.clone());
            let (ok, failures, stop) = (ok.clone(), failures.clone(), stop.clone());
            tokio::spawn(async move {
                let mut body = turn;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Four conversations per worker: selection spreads them over the accounts, and
                    // the affinity table (bounded) is full after warm-up, so RSS measures leaks.
                    body["prompt_cache_key"] = json!(format!("w{w}-{}", n % 4));
                    n += 1;
                    let result = async {
                        let resp = http
                            .post(&url)
                            .bearer_auth(&key)
                            .json(&body)
                            .send()
                            .await
                            .map_err(|e| format!("send: {e}"))?;
                        let status = resp.status();
                        let bytes = resp
                            .bytes()
                            .await
                            .map_err(|e| format!("{status} read: {e}"))?;
                        let text = String::from_utf8_lossy(&bytes);
                        if status == 200 && text.contains("response.completed") {
                            Ok(())
                        } else {
                            Err(format!(
                                "{status}: {}",
                                text.chars().take(300).collect::<String>()
                            ))
                        }
                    }
                    .await;
                    match result {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                }
            })
        })
        .collect();

    // Warm-up, then the baseline; a third in, one account's sessions are revoked upstream.
    tokio::time::sleep(duration / 5).await;
    let rss_warm = rss_kb(pid);
    let ok_warm = ok.load(Ordering::Relaxed);
    tokio::time::sleep(duration / 3 - duration / 5).await;
    fake.revoke_account(&accounts[0].account_id);
    tokio::time::sleep(duration.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let rss_end = rss_kb(pid);
    let ok = ok.load(Ordering::Relaxed);
    let failures = failures.lock().unwrap().clone();
    let growth = (rss_end as f64 - rss_warm as f64) / rss_warm.max(1) as f64 * 100.0;
    println!(
        "soak: {streams} concurrent streams for {secs} s: {ok} requests ok ({ok_warm} in warm-up), {} failed; serve RSS {rss_warm} kB warm → {rss_end} kB end ({growth:+.1}%)",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} requests failed although healthy accounts were available; first: {:?}",
        failures.len(),
        failures.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        ok > ok_warm && ok_warm > 0,
        "the load ran: {ok_warm} then {ok}"
    );
    let list = tokio::task::block_in_place(|| env.list_json());
    let revoked = list.iter().find(|a| a["label"] == "soak0").unwrap();
    assert_eq!(revoked["status"], "terminal", "{revoked}");
    assert_eq!(
        revoked["failure"]["code"], "refresh_token_invalidated",
        "{revoked}"
    );
    for a in list.iter().filter(|a| a["label"] != "soak0") {
        assert_eq!(a["status"], "healthy", "{a}");
    }
    if secs >= 30 {
        assert!(
            rss_warm > 0 && growth < 10.0,
            "serve RSS grew {growth:.1}% ({rss_warm} → {rss_end} kB)"
        );
    }
    assert_eq!(tokio::task::block_in_place(|| serve.terminate()), Some(0));
}
