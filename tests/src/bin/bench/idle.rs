//! Section 5, idle wake-ups (issue 17): how often an idle `serve` with 5 accounts, and the idle
//! desktop app's core threads, wake up — voluntary + involuntary context switches of their
//! threads from `/proc/<pid>/task/*/status` over the idle window — and the cross-process pickup
//! latency (an account imported by a separate CLI process, until `serve`'s `/v1/accounts`
//! lists it).

use super::*;
use std::collections::BTreeMap;

const IDLE_ACCOUNTS: usize = 5;

/// Context switches of the threads of `pid` whose name passes `keep`, per thread (keyed by
/// name and tid). A thread that exits inside the window takes its count with it (an undercount,
/// never an overcount).
fn thread_switches(pid: u32, keep: &dyn Fn(&str) -> bool) -> BTreeMap<(String, String), u64> {
    let mut per = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return per;
    };
    for t in rd.flatten() {
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let name = name.trim_end();
        if !keep(name) {
            continue;
        }
        let Ok(s) = std::fs::read_to_string(t.path().join("status")) else {
            continue;
        };
        let n = s
            .lines()
            .filter(|l| {
                l.starts_with("voluntary_ctxt_switches:")
                    || l.starts_with("nonvoluntary_ctxt_switches:")
            })
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
        let tid = t.file_name().to_string_lossy().into_owned();
        per.insert((name.to_string(), tid), n);
    }
    per
}

/// Counts `pid`'s wake-ups over the idle window, in all and per thread name (threads of one
/// name summed; a thread that started inside the window counts from zero).
async fn window(o: &Opts, pid: u32, what: &str, keep: &dyn Fn(&str) -> bool) -> Value {
    let before = thread_switches(pid, keep);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(o.idle_secs)).await;
    let after = thread_switches(pid, keep);
    let secs = t0.elapsed().as_secs_f64();
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    for (key, n) in &after {
        let d = n.saturating_sub(before.get(key).copied().unwrap_or(0));
        *by_name.entry(key.0.clone()).or_default() += d;
    }
    let total: u64 = by_name.values().sum();
    let per_min = |n: u64| n as f64 * 60.0 / secs;
    let per_thread: serde_json::Map<String, Value> = by_name
        .iter()
        .map(|(name, n)| (name.clone(), json!(per_min(*n))))
        .collect();
    json!({
        "what": what, "threads": after.len(), "window_s": secs,
        "context_switches": total,
        "wakeups_per_min": per_min(total),
        "per_thread_per_min": per_thread,
        "target_per_min": 10,
    })
}

pub(crate) async fn run(o: &Opts, tmp: &Path, fake: &Fake) -> Value {
    eprintln!(
        "bench: idle wake-ups ({IDLE_ACCOUNTS} accounts; {} s windows)",
        o.idle_secs
    );
    let (serve, pickup_ms) = serve_idle(o, tmp, fake).await;
    let app = match app_idle(o, tmp, fake).await {
        Ok(v) => v,
        Err(why) => {
            eprintln!("bench:   app core row skipped: {why}");
            json!({"skipped": why})
        }
    };
    json!({"window_s": o.idle_secs, "serve": serve, "app_core": app, "pickup_ms": pickup_ms})
}

async fn seeded_vault(o: &Opts, tmp: &Path, fake: &Fake, name: &str) -> Vault {
    let vault = Vault::new(o, tmp, name, fake);
    for i in 0..IDLE_ACCOUNTS {
        let t = fake.new_account(false).await;
        vault.import(&t, &format!("idle-{i}"), chrono::Duration::zero());
    }
    vault
}

async fn accounts_listed(base: &str, key: &str) -> usize {
    let auth = format!("Bearer {key}");
    match loadgen::request(
        Method::GET,
        &format!("{base}/v1/accounts"),
        &[("authorization", &auth)],
        Bytes::new(),
    )
    .await
    {
        Ok((200, body)) => serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0),
        _ => 0,
    }
}

/// An idle `serve` with 5 accounts (every thread counted), then the pickup of a sixth account
/// imported by another process (after the window, so its polling is not counted as idle).
async fn serve_idle(o: &Opts, tmp: &Path, fake: &Fake) -> (Value, Option<f64>) {
    let vault = seeded_vault(o, tmp, fake, "vault-idle").await;
    let key = vault.key();
    let (serve, base, _) = vault.serve("serve-idle.log");
    while health(&base).await.is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // After start, before the window: start-up work (the first plan, the webview loading)
    // settles (`--idle-settle`).
    tokio::time::sleep(Duration::from_secs_f64(o.idle_settle)).await;
    let row = window(o, serve.pid(), "serve, all threads", &|_| true).await;
    eprintln!(
        "bench:   serve idle: {}/min",
        f(row["wakeups_per_min"].as_f64().unwrap_or(0.0), 1)
    );
    let t = fake.new_account(false).await;
    vault.import(&t, "picked-up", chrono::Duration::zero());
    // The import process has exited: its row is committed. Poll (a measurement, not a test).
    let t0 = Instant::now();
    let mut pickup = None;
    while t0.elapsed() < Duration::from_secs(10) {
        if accounts_listed(&base, &key).await > IDLE_ACCOUNTS {
            pickup = Some(t0.elapsed().as_secs_f64() * 1000.0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if pickup.is_none() {
        eprintln!("bench:   serve did not list the imported account within 10 s");
    }
    drop(serve);
    (row, pickup)
}

/// The core's threads: its runtime's workers (`vault-rt`, also Tauri's tasks in the app), the
/// core's own std threads (`vault-<job>`; `store-watch`, the store watcher's name before that
/// convention), the store watcher's inotify thread (`notify-rs inotify loop`, cut to 15 bytes by
/// the kernel), and tokio's default worker names (`tokio-runtime-w`, `tokio-rt-worker`): those
/// are the Secret Service client's runtime (zbus's own, for the one keychain read) — counted, an
/// overcount, never an undercount (idle, they park with no timer). Not GTK's, WebKit's, the X11
/// client's, zbus's other threads or the `blocking` pool's (`blocking-N`).
fn core_thread(name: &str) -> bool {
    [
        "tokio-runtime-w",
        "tokio-rt-worker",
        "vault-",
        "store-watch",
        "notify-rs inoti",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// A private X server (`Xvfb -displayfd`): returns it and its display number.
fn xvfb(tmp: &Path) -> Result<(Proc, String), String> {
    if Command::new("Xvfb").arg("-help").output().is_err() {
        return Err("Xvfb is not installed (apt-get install xvfb)".into());
    }
    let mut cmd = Command::new("Xvfb");
    cmd.args([
        "-displayfd",
        "1",
        "-screen",
        "0",
        "1280x800x24",
        "-nolisten",
        "tcp",
    ]);
    let (p, line, _) = spawn_until_line(cmd, "Xvfb", "", &tmp.join("xvfb.log"));
    Ok((p, format!(":{}", line.trim())))
}

/// The idle desktop app (`--app`, default features) with 5 accounts, under Xvfb, in its own
/// HOME and data dir inside the bench's keyring session: its core threads counted.
async fn app_idle(o: &Opts, tmp: &Path, fake: &Fake) -> Result<Value, String> {
    if !o.app.exists() {
        return Err(format!(
            "no desktop binary at {} (build it with `cargo build -p codex-vault`, default features)",
            o.app.display()
        ));
    }
    let vault = seeded_vault(o, tmp, fake, "vault-app").await;
    let (_x, display) = xvfb(tmp)?;
    let home = tmp.join("app-home");
    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
    // Its own port: the endpoint it starts must not meet another's (`endpoint.port`).
    vault.set("endpoint.port", &free_port().to_string());
    let mut cmd = vault.cmd_for(&o.app);
    cmd.env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("DISPLAY", &display)
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.join("app.log")).map_err(|e| e.to_string())?);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the app: {e}"))?;
    let mut app = Proc {
        child,
        name: "codex-vault (app)",
    };
    wait_for_core(&mut app, tmp).await?;
    // After start, before the window: start-up work (the first plan, the webview loading)
    // settles (`--idle-settle`).
    tokio::time::sleep(Duration::from_secs_f64(o.idle_settle)).await;
    let row = window(
        o,
        app.pid(),
        "app core (tokio workers, vault-*)",
        &core_thread,
    )
    .await;
    if let Ok(Some(status)) = app.child.try_wait() {
        return Err(format!("the app exited during the window ({status})"));
    }
    eprintln!(
        "bench:   app core idle: {}/min",
        f(row["wakeups_per_min"].as_f64().unwrap_or(0.0), 1)
    );
    Ok(row)
}

/// Waits until the app runs its core (a core thread exists), or says why it never will.
async fn wait_for_core(app: &mut Proc, tmp: &Path) -> Result<(), String> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(status)) = app.child.try_wait() {
            let log = std::fs::read_to_string(tmp.join("app.log")).unwrap_or_default();
            let tail: String = log.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
            return Err(format!("the app exited at start ({status}): {tail}"));
        }
        if !thread_switches(app.pid(), &core_thread).is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the app started no core thread in 60 s".into())
}
