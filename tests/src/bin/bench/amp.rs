//! Refresh amplification: many requests or processes wanting one expired token.

use super::*;

pub(crate) async fn amplification(o: &Opts, tmp: &Path, fake: &Fake, n: usize) -> Value {
    let vault = Vault::new(o, tmp, &format!("vault-amp-{n}"), fake);
    let t = fake.new_account(true).await;
    vault.import(&t, "expired", chrono::Duration::hours(1));
    let key = vault.key();
    // A slow token endpoint holds the first refresh in flight while the burst arrives, so every
    // request meets it (without it a fast refresh could finish before most requests exist).
    fake.admin(
        Method::POST,
        "/faults",
        json!({"route": "token", "faults": [{"kind": "slow", "millis": 1500}]}),
    )
    .await;
    let before = fake.counter("token_calls").await;
    let (serve, base, _) = vault.serve(&format!("serve-amp-{n}.log"));
    let auth = format!("Bearer {key}");
    let url = format!("{base}{MODELS_PATH}");
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (url, auth) = (url.clone(), auth.clone());
            tokio::spawn(async move {
                let s = Instant::now();
                let r = loadgen::request(
                    Method::GET,
                    &url,
                    &[("authorization", auth.as_str())],
                    Bytes::new(),
                )
                .await;
                (r.map(|(st, _)| st), s.elapsed())
            })
        })
        .collect();
    let mut ok = 0;
    let mut waited = 0;
    let mut first_error = None;
    for h in tasks {
        match h.await {
            Ok((Ok(200), took)) => {
                ok += 1;
                if took >= Duration::from_millis(200) {
                    waited += 1;
                }
            }
            Ok((r, _)) => {
                if first_error.is_none() {
                    first_error = Some(format!("{r:?}"));
                }
            }
            Err(e) => first_error = Some(e.to_string()),
        }
    }
    let all_done = t0.elapsed();
    let calls = fake.counter("token_calls").await - before;
    let keychain = health(&base)
        .await
        .map(|h| h["process"]["keychain_reads"].clone());
    drop(serve);
    json!({
        "kind": "endpoint", "concurrent_requests": n, "answered_200": ok,
        "waited_for_refresh": waited, "refresh_calls": calls, "target_met": calls == 1 && ok == n,
        "seconds": all_done.as_secs_f64(), "first_error": first_error,
        "serve_keychain_reads": keychain,
    })
}

pub(crate) async fn process_race(o: &Opts, tmp: &Path, fake: &Fake, procs: usize) -> Value {
    let vault = Vault::new(o, tmp, "vault-race", fake);
    let t = fake.new_account(true).await;
    vault.import(&t, "raced", chrono::Duration::hours(1));
    fake.admin(
        Method::POST,
        "/faults",
        json!({"route": "token", "faults": [{"kind": "slow", "millis": 800}]}),
    )
    .await;
    let before = fake.counter("token_calls").await;
    let children: Vec<Child> = (0..procs)
        .map(|_| {
            vault
                .cmd()
                .args(["token", "raced"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("token process")
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("token process ends"))
        .collect();
    let ok = outs.iter().filter(|o| o.status.success()).count();
    // Compare the printed tokens without keeping or printing them.
    let mut distinct: Vec<Vec<u8>> = outs.iter().map(|o| o.stdout.clone()).collect();
    distinct.sort();
    distinct.dedup();
    let calls = fake.counter("token_calls").await - before;
    json!({
        "kind": "processes", "processes": procs, "succeeded": ok,
        "distinct_tokens": distinct.len(), "refresh_calls": calls,
        "target_met": calls == 1 && ok == procs && distinct.len() == 1,
    })
}
