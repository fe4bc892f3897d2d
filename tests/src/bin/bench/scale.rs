//! Scale: many accounts seeded, listed, served; the idle window.

use super::*;

pub(crate) async fn scale(o: &Opts, tmp: &Path, fake: &Fake) -> Value {
    let vault = Vault::new(o, tmp, "vault-scale", fake);
    let seed = seed(o, tmp, fake, &vault).await;
    let (list_ms, listed) = list_json(&vault);
    // Start → ready: the "listening" line, then the first /health answer.
    let t0 = Instant::now();
    let (serve, base, to_line) = vault.serve("serve-scale.log");
    while health(&base).await.is_none() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let to_health = t0.elapsed();
    // The endpoint loads the account list before it listens; check it sees all of them.
    let key = vault.key();
    let (_, body) = loadgen::request(
        Method::GET,
        &format!("{base}/v1/accounts"),
        &[("authorization", &format!("Bearer {key}"))],
        Bytes::new(),
    )
    .await
    .expect("/v1/accounts");
    let served_accounts = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0);

    // Idle: nothing is due (tokens are 1 h fresh).
    tokio::time::sleep(Duration::from_secs_f64(o.idle_secs.min(3.0))).await;
    let pid = serve.pid();
    let h0 = health(&base).await.unwrap_or(Value::Null);
    let (c0, rss0) = (ctx_switches(pid), rss_mb(pid));
    let idle_t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(o.idle_secs)).await;
    let h1 = health(&base).await.unwrap_or(Value::Null);
    let c1 = ctx_switches(pid);
    let secs = idle_t.elapsed().as_secs_f64();
    let w = |h: &Value| h["process"]["scheduler_wakeups"].as_u64().unwrap_or(0);
    let per_min = |d: u64| d as f64 * 60.0 / secs;
    let wakeups_per_min = per_min(w(&h1).saturating_sub(w(&h0)));
    // Each /health call above costs a few switches; it is 2 calls in `secs`, negligible.
    let thread_wakeups_per_min = per_min(c1.saturating_sub(c0));
    let rss_1000 = rss0.max(rss_mb(pid));
    let keychain = h1["process"]["keychain_reads"].clone();
    drop(serve);

    let sel = |n: usize, iters: u64| -> Value {
        let out = Command::new(&o.core)
            .args(["select", &n.to_string(), &iters.to_string()])
            .output()
            .expect("bench_core select runs");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    json!({
        "accounts": o.accounts, "seed": seed, "accounts_list_json_ms": list_ms,
        "accounts_listed": listed,
        "start_to_listening_ms": to_line.as_secs_f64() * 1000.0,
        "start_to_ready_ms": to_health.as_secs_f64() * 1000.0,
        "endpoint_accounts": served_accounts,
        "idle_window_s": secs,
        "scheduler_wakeups_per_min": wakeups_per_min,
        "thread_wakeups_per_min": thread_wakeups_per_min,
        "idle_rss_mb": rss_1000,
        "keychain_reads": keychain,
        // The smoke (debug build) only checks that selection runs.
        "select_1000": sel(o.accounts, if o.smoke { 1_000 } else { 100_000 }),
        "select_1": sel(1, if o.smoke { 10_000 } else { 1_000_000 }),
    })
}

/// `bench_core seed`: `o.accounts` accounts written straight into the vault.
async fn seed(o: &Opts, tmp: &Path, fake: &Fake, vault: &Vault) -> Value {
    let seed_path = tmp.join("seed.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&seed_path).expect("seed"));
        for i in 0..o.accounts {
            let t = fake.new_account(false).await;
            let doc = codex_vault_testkit::auth_json(&t, chrono::Utc::now());
            writeln!(
                f,
                "{}",
                json!({"label": format!("acct-{i:04}"), "auth_json": doc})
            )
            .expect("seed line");
        }
    }
    let seeded = Command::new(&o.core)
        .arg("seed")
        .arg(&seed_path)
        .env("CODEX_VAULT_HOME", &vault.home)
        .env("CODEX_HOME", vault.home.join("codex-home"))
        .output()
        .expect("bench_core seed runs");
    assert!(
        seeded.status.success(),
        "seed failed: {}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let _ = std::fs::remove_file(&seed_path);
    serde_json::from_slice(&seeded.stdout).unwrap_or(Value::Null)
}

/// `accounts list --json`: its median time (ms) and how many accounts it listed.
fn list_json(vault: &Vault) -> (f64, usize) {
    // `accounts list --json`: one warm-up, then the median of 7.
    let _ = vault.run(&["accounts", "list", "--json"]);
    let mut times = Vec::new();
    let mut listed = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let out = vault.run(&["accounts", "list", "--json"]);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        listed = serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], listed)
}
