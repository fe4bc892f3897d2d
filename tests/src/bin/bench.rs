//! The `make bench` driver. Runs the release `fake-openai`, `codex-vault serve` and (if present)
//! Debian's nginx side by side in one run, drives them with the in-crate load generator
//! (`codex_vault_testkit::loadgen`), prints one table and writes `target/bench/results.json`.
//!
//! `bench --vault BIN --fake BIN --core BIN [--secs S] [--warmup S] [--idle-secs S]
//!        [--accounts N] [--out PATH]`
//!
//! It must run inside `scripts/keyring-session.sh` (its own D-Bus + gnome-keyring): every vault
//! it creates lives in a temp dir, never in the user's data or keychain. It never prints a token
//! or the local key. See README.md § Benchmarks for the method.

use bytes::Bytes;
use codex_vault_testkit::loadgen::{self, Report, Spec};
use codex_vault_testkit::IssuedTokens;
use hyper::Method;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSE_DELTAS: u64 = 192; // + 8 framing events = a 200-event stream
const SSE_EVENTS: usize = 200;
const MODELS_PATH: &str = "/backend-api/codex/models?client_version=0.169.0";
const RESPONSES_PATH: &str = "/backend-api/codex/responses";
/// The endpoint's switch for the first-byte hold (`codex_vault::endpoint::SETTING_FIRST_BYTE_HOLD`).
const HOLD_SETTING: &str = "endpoint.first_byte_hold";
/// Hold on / hold off cells at c=1, alternating which goes first: the difference sought (≤ 0.1 ms)
/// is below one cell's drift on a shared machine, so it is the median of per-round differences.
const HOLD_ROUNDS: usize = 4;

struct Opts {
    vault: PathBuf,
    fake: PathBuf,
    core: PathBuf,
    secs: f64,
    warmup: f64,
    idle_secs: f64,
    accounts: usize,
    out: PathBuf,
}

fn opts() -> Opts {
    let mut o = Opts {
        vault: "target/bench-release/codex-vault".into(),
        fake: "target/bench-release/fake-openai".into(),
        core: "target/bench-release/examples/bench_core".into(),
        secs: 5.0,
        warmup: 1.0,
        idle_secs: 60.0,
        accounts: 1000,
        out: "target/bench/results.json".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--vault" => o.vault = v.into(),
            "--fake" => o.fake = v.into(),
            "--core" => o.core = v.into(),
            "--secs" => o.secs = v.parse().expect("--secs"),
            "--warmup" => o.warmup = v.parse().expect("--warmup"),
            "--idle-secs" => o.idle_secs = v.parse().expect("--idle-secs"),
            "--accounts" => o.accounts = v.parse().expect("--accounts"),
            "--out" => o.out = v.into(),
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

// ---------------------------------------------------------------- processes and /proc

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("bench: {} did not stop on SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` and waits for the first stdout line containing `marker`; returns it and the time
/// from spawn to that line.
fn spawn_until_line(
    mut cmd: Command,
    name: &'static str,
    marker: &str,
    stderr_to: &Path,
) -> (Proc, String, Duration) {
    let log = std::fs::File::create(stderr_to).expect("log file");
    cmd.stdout(Stdio::piped()).stderr(log).stdin(Stdio::null());
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&marker) {
                let _ = tx.send((line, t0.elapsed()));
            }
        }
    });
    let proc = Proc { child, name };
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok((line, took)) => (proc, line, took),
        Err(_) => panic!(
            "{name} did not become ready in 30 s; see {}",
            stderr_to.display()
        ),
    }
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn rss_mb(pid: u32) -> f64 {
    proc_status_kb(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0
}

/// utime + stime in clock ticks of `pid` and, for nginx, its workers (children).
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After the command: state(0) … utime is field 14 of stat, i.e. index 11 here.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                let ppid = s
                    .rfind(')')
                    .and_then(|i| s[i + 2..].split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(parent) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// Context switches (voluntary + not) of every thread of `pid`: how often it woke up.
fn ctx_switches(pid: u32) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("status")) {
                for l in s.lines() {
                    if l.starts_with("voluntary_ctxt_switches:")
                        || l.starts_with("nonvoluntary_ctxt_switches:")
                    {
                        n += l
                            .split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(0);
                    }
                }
            }
        }
    }
    n
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

// ---------------------------------------------------------------- the fake and the vault

struct Fake {
    proc: Proc,
    base: String,
}

impl Fake {
    async fn admin(&self, method: Method, path: &str, body: Value) -> Value {
        let url = format!("{}/__admin{path}", self.base);
        let body = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        };
        let (status, b) =
            loadgen::request(method, &url, &[("content-type", "application/json")], body)
                .await
                .unwrap_or_else(|e| panic!("admin {path}: {e}"));
        assert!(status < 300, "admin {path}: HTTP {status}");
        serde_json::from_slice(&b).unwrap_or(Value::Null)
    }

    async fn counter(&self, name: &str) -> u64 {
        self.admin(Method::GET, "/counters", Value::Null).await[name]
            .as_u64()
            .unwrap_or(0)
    }

    async fn new_account(&self, expired: bool) -> IssuedTokens {
        let t: IssuedTokens =
            serde_json::from_value(self.admin(Method::POST, "/accounts", json!({})).await)
                .expect("IssuedTokens");
        if !expired {
            return t;
        }
        serde_json::from_value(
            self.admin(
                Method::POST,
                &format!("/accounts/{}/grants", t.account_id),
                json!({"access_lifetime_secs": 0}),
            )
            .await,
        )
        .expect("IssuedTokens")
    }

    fn codex_base(&self) -> String {
        format!("{}/backend-api/codex", self.base)
    }
}

/// One vault data dir, driven through the release CLI.
struct Vault {
    bin: PathBuf,
    core: PathBuf,
    home: PathBuf,
    fake_base: String,
    codex_base: String,
    logs: PathBuf,
}

impl Vault {
    fn new(o: &Opts, tmp: &Path, name: &str, fake: &Fake) -> Vault {
        let home = tmp.join(name);
        std::fs::create_dir_all(&home).expect("vault dir");
        Vault {
            bin: o.vault.clone(),
            core: o.core.clone(),
            home,
            fake_base: fake.base.clone(),
            codex_base: fake.codex_base(),
            logs: tmp.to_path_buf(),
        }
    }

    /// Points this vault's endpoint at another Codex backend (the static SSE upstream).
    fn upstream(mut self, codex_base: String) -> Vault {
        self.codex_base = codex_base;
        self
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("CODEX_VAULT_HOME", &self.home)
            .env("CODEX_HOME", self.home.join("codex-home"))
            .env("CODEX_VAULT_AUTH_BASE", &self.fake_base)
            .env("CODEX_VAULT_UPSTREAM", &self.codex_base)
            .env("RUST_LOG", "warn");
        c
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let out = self.cmd().args(args).output().expect("codex-vault runs");
        assert!(
            out.status.success(),
            "codex-vault {:?} failed: {}",
            args.first(),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn import(&self, tokens: &IssuedTokens, label: &str, last_refresh_ago: chrono::Duration) {
        let path = self.home.join(format!("{label}.auth.json"));
        let text = codex_vault_testkit::auth_json(tokens, chrono::Utc::now() - last_refresh_ago);
        std::fs::write(&path, text).expect("auth.json written");
        self.run(&[
            "accounts",
            "import",
            path.to_str().expect("utf-8 path"),
            "--label",
            label,
        ]);
        let _ = std::fs::remove_file(&path);
    }

    /// Writes one row of this vault's `settings` table (`bench_core set`).
    fn set(&self, key: &str, value: &str) {
        let out = Command::new(&self.core)
            .args(["set", key, value])
            .env("CODEX_VAULT_HOME", &self.home)
            .env("CODEX_HOME", self.home.join("codex-home"))
            .output()
            .expect("bench_core set runs");
        assert!(
            out.status.success(),
            "bench_core set {key} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn key(&self) -> String {
        let out = self.run(&["endpoint", "info", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).expect("endpoint info JSON");
        v["key"].as_str().expect("key").to_string()
    }

    /// `serve --port 0`; returns it, its base URL and the time to its "listening" line.
    fn serve(&self, log: &str) -> (Proc, String, Duration) {
        let mut c = self.cmd();
        c.args(["serve", "--port", "0"]);
        let (p, line, took) =
            spawn_until_line(c, "codex-vault serve", "listening on", &self.logs.join(log));
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("URL in the listening line")
            .trim_end_matches("/v1")
            .to_string();
        (p, url, took)
    }
}

async fn health(base: &str) -> Option<Value> {
    let (s, b) = loadgen::request(Method::GET, &format!("{base}/health"), &[], Bytes::new())
        .await
        .ok()?;
    (s == 200)
        .then(|| serde_json::from_slice(&b).ok())
        .flatten()
}

// ---------------------------------------------------------------- nginx

struct Nginx {
    proc: Proc,
    /// Base URL of each `server` block, in the order given.
    bases: Vec<String>,
}

fn nginx_bin() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Starts a private Debian nginx from a config generated in `tmp/name` (workers = cores, no
/// access log, keep-alive never cut short), one `server` per entry of `locations` (the body of
/// its `location /`), plus `extra` in the `http` block.
fn start_nginx(tmp: &Path, name: &str, extra: &str, locations: &[String]) -> Result<Nginx, String> {
    let bin = nginx_bin().ok_or("nginx is not installed")?;
    let dir = tmp.join(name);
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
    let ports: Vec<u16> = locations.iter().map(|_| free_port()).collect();
    let servers: String = locations
        .iter()
        .zip(&ports)
        .map(|(loc, port)| {
            format!(
                "    server {{\n        listen 127.0.0.1:{port};\n        keepalive_requests 10000000;\n        location / {{\n{loc}        }}\n    }}\n"
            )
        })
        .collect();
    // Root's workers would drop to `nobody` and could not use our temp dirs.
    let user = if is_root() { "user root;\n" } else { "" };
    let conf = format!(
        r#"{user}worker_processes auto;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{extra}
{servers}}}
"#,
        dir = dir.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("logs/stderr.log")).map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start nginx: {e}"))?;
    let proc = Proc {
        child,
        name: "nginx",
    };
    let bases = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    for _ in 0..300 {
        if ports
            .iter()
            .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
        {
            return Ok(Nginx { proc, bases });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!(
        "nginx did not listen; see {}",
        dir.join("logs").display()
    ))
}

/// A plain reverse proxy location: keep-alive upstream connections and no response buffering
/// (what any SSE proxy configures); request bodies up to 1 MB stay in memory, as in serve.
fn proxy_location(upstream: &str) -> String {
    format!(
        "            proxy_pass http://{upstream};\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n            proxy_buffering off;\n            client_body_buffer_size 1m;\n"
    )
}

fn upstream_block(name: &str, port: u16) -> String {
    format!("    upstream {name} {{ server 127.0.0.1:{port}; keepalive 256; keepalive_requests 10000000; }}\n")
}

fn port_of(base: &str) -> u16 {
    base.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in base URL")
}

fn is_root() -> bool {
    // Root's nginx workers drop to `nobody` by default and could not use our temp dirs.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

// ---------------------------------------------------------------- overhead

#[derive(Clone, Copy, PartialEq)]
enum Payload {
    Small,
    Sse,
    /// The same 200-event body from a static nginx upstream: the fake spends ≈ 7 µs per SSE
    /// event, which makes it the bottleneck of the SSE rows at c ≥ 16 on a small machine.
    SseStatic,
    /// A Codex-sized turn (≈ 80 KB: instructions, tools, history) to the static upstream: what
    /// the proxy does with a real request body (buffer it, read the conversation key, resend it).
    Turn80k,
}

const PAYLOADS: [Payload; 4] = [
    Payload::Small,
    Payload::Sse,
    Payload::SseStatic,
    Payload::Turn80k,
];

impl Payload {
    /// Served by the static nginx upstream (else by the fake).
    fn static_upstream(self) -> bool {
        matches!(self, Payload::SseStatic | Payload::Turn80k)
    }
}

/// A request body shaped like a Codex CLI turn, ≈ 80 KB.
fn codex_turn_body() -> String {
    let input: Vec<Value> = (0..130)
        .map(|i| {
            json!({"type": "message", "role": "user", "content": [{"type": "input_text",
                   "text": format!("lorem ipsum dolor sit amet, consectetur adipiscing elit {i}. ").repeat(8)}]})
        })
        .collect();
    let tools: Vec<Value> = (0..10)
        .map(|i| {
            json!({"type": "function", "name": format!("shell{i}"),
                   "description": "run a command ".repeat(20),
                   "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}})
        })
        .collect();
    json!({"model": "gpt-5.5", "instructions": "You are Codex. ".repeat(300), "stream": true,
           "store": false, "prompt_cache_key": "bench-conversation", "input": input, "tools": tools})
    .to_string()
}

impl Payload {
    fn name(self) -> &'static str {
        match self {
            Payload::Small => "small JSON (GET /models)",
            Payload::Sse => "SSE, 200 events (POST /responses), fake upstream",
            Payload::SseStatic => {
                "the same 200-event SSE body from a static nginx upstream (one write, no per-event work)"
            }
            Payload::Turn80k => {
                "sse-static with an ≈ 80 KB Codex-like request body (instructions, tools, history)"
            }
        }
    }
    fn key(self) -> &'static str {
        match self {
            Payload::Small => "small",
            Payload::Sse => "sse200",
            Payload::SseStatic => "sse-static",
            Payload::Turn80k => "turn-80k",
        }
    }
}

struct Side<'a> {
    name: &'static str,
    /// Which payloads this side serves: the fake's (small, sse200) or the static upstream's.
    static_upstream: bool,
    base: String,
    headers: Vec<(String, String)>,
    /// Processes whose CPU the run is charged to (besides the fake).
    pids: Box<dyn Fn() -> Vec<u32> + 'a>,
}

fn spec(o: &Opts, side: &Side, payload: Payload, c: usize) -> Spec {
    let (method, path, body) = match payload {
        Payload::Small => (Method::GET, MODELS_PATH, Bytes::new()),
        Payload::Sse | Payload::SseStatic => (
            Method::POST,
            RESPONSES_PATH,
            Bytes::from(
                json!({"model": "gpt-5.5", "instructions": "bench", "stream": true, "store": false,
                       "input": [{"type": "message", "role": "user",
                                  "content": [{"type": "input_text", "text": "hello"}]}]})
                .to_string(),
            ),
        ),
        Payload::Turn80k => (Method::POST, RESPONSES_PATH, Bytes::from(codex_turn_body())),
    };
    let mut headers = side.headers.clone();
    if payload != Payload::Small {
        headers.push(("content-type".into(), "application/json".into()));
        headers.push(("accept".into(), "text/event-stream".into()));
    }
    Spec {
        url: format!("{}{path}", side.base),
        method,
        headers,
        body,
        concurrency: c,
        warmup: Duration::from_secs_f64(o.warmup),
        duration: Duration::from_secs_f64(o.secs),
        rate: None,
        expect_status: 200,
    }
}

/// One request through `side`: 200, and the SSE stream has all its events.
async fn sanity(o: &Opts, side: &Side<'_>, payload: Payload) -> Result<(), String> {
    let s = spec(o, side, payload, 1);
    let hdrs: Vec<(&str, &str)> = s
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (status, body) = loadgen::request(s.method.clone(), &s.url, &hdrs, s.body.clone()).await?;
    if status != 200 {
        return Err(format!("{}: HTTP {status}", side.name));
    }
    if payload != Payload::Small {
        let events = String::from_utf8_lossy(&body).matches("\n\n").count();
        if events != SSE_EVENTS {
            return Err(format!(
                "{}: {events} SSE events, expected {SSE_EVENTS}",
                side.name
            ));
        }
    }
    Ok(())
}

#[derive(serde::Serialize, Clone)]
struct Cell {
    side: &'static str,
    payload: &'static str,
    report: Report,
    /// CPU time per request of the upstream (the fake, or the static nginx) and of the proxy
    /// (µs), from /proc.
    fake_cpu_us_per_req: f64,
    proxy_cpu_us_per_req: Option<f64>,
    /// Peak serve RSS sampled during the run (serve side only).
    proxy_rss_peak_mb: Option<f64>,
}

async fn measure(
    o: &Opts,
    upstream_pids: &[u32],
    side: &Side<'_>,
    payload: Payload,
    c: usize,
    serve_pid: Option<u32>,
) -> Cell {
    let tck = clk_tck();
    let proxy_pids = (side.pids)();
    let (f0, p0) = (cpu_ticks(upstream_pids), cpu_ticks(&proxy_pids));
    // Sample serve's RSS while the load runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = serve_pid.map(|pid| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak: f64 = 0.0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_mb(pid));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    });
    let report = loadgen::run(&spec(o, side, payload, c))
        .await
        .unwrap_or_else(|e| panic!("load run {}: {e}", side.name));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.map(|h| h.join().unwrap_or(0.0));
    // Ticks cover warm-up too; so do requests counted here (approximately: scale by the window).
    let total_secs = o.warmup + report.seconds;
    let reqs = (report.requests as f64 * total_secs / report.seconds).max(1.0);
    let per = |ticks: u64| ticks as f64 / tck * 1e6 / reqs;
    let fake_cpu = per(cpu_ticks(upstream_pids).saturating_sub(f0));
    let proxy_cpu =
        (!proxy_pids.is_empty()).then(|| per(cpu_ticks(&proxy_pids).saturating_sub(p0)));
    if report.errors > 0 {
        eprintln!(
            "bench: {} {} c={c}: {} errors (first: {:?})",
            side.name,
            payload.key(),
            report.errors,
            report.first_error
        );
    }
    Cell {
        side: side.name,
        payload: payload.key(),
        report,
        fake_cpu_us_per_req: fake_cpu,
        proxy_cpu_us_per_req: proxy_cpu,
        proxy_rss_peak_mb: peak,
    }
}

// ---------------------------------------------------------------- refresh amplification

async fn amplification(o: &Opts, tmp: &Path, fake: &Fake, n: usize) -> Value {
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

async fn process_race(o: &Opts, tmp: &Path, fake: &Fake, procs: usize) -> Value {
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

// ---------------------------------------------------------------- scale

async fn scale(o: &Opts, tmp: &Path, fake: &Fake) -> Value {
    let vault = Vault::new(o, tmp, "vault-scale", fake);
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
    let seed: Value = serde_json::from_slice(&seeded.stdout).unwrap_or(Value::Null);

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
    let list_ms = times[times.len() / 2];

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
    tokio::time::sleep(Duration::from_secs(3)).await;
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
        "select_1000": sel(o.accounts, 100_000),
        "select_1": sel(1, 1_000_000),
    })
}

// ---------------------------------------------------------------- main

fn f(v: f64, digits: usize) -> String {
    format!("{v:.digits$}")
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

/// A vault like `vault`'s (same account) whose `serve` runs with the first-byte hold off.
fn serve_hold_off(
    o: &Opts,
    tmp: &Path,
    name: &str,
    fake: &Fake,
    t: &IssuedTokens,
    upstream: Option<String>,
) -> (Proc, String, String) {
    let mut v = Vault::new(o, tmp, name, fake);
    if let Some(u) = upstream {
        v = v.upstream(u);
    }
    v.import(t, "bench", chrono::Duration::zero());
    v.set(HOLD_SETTING, "off");
    let key = v.key();
    let (p, base, _) = v.serve(&format!("{name}.log"));
    (p, base, key)
}

#[tokio::main]
async fn main() {
    let o = opts();
    for (name, p) in [
        ("codex-vault", &o.vault),
        ("fake-openai", &o.fake),
        ("bench_core", &o.core),
    ] {
        assert!(p.exists(), "{name} binary missing at {}", p.display());
    }
    assert!(
        std::env::var_os("CODEX_VAULT_TEST_SESSION").is_some(),
        "run the bench inside scripts/keyring-session.sh (it never touches your keychain)"
    );
    let tmpdir = tempfile::Builder::new()
        .prefix("codex-vault-bench.")
        .tempdir()
        .expect("temp dir");
    let tmp = tmpdir.path().to_path_buf();
    let started = Instant::now();
    let mut notes: Vec<String> = Vec::new();

    // The fake, in release, logs off: it must not be what we measure.
    let mut cmd = Command::new(&o.fake);
    cmd.env("RUST_LOG", "warn");
    let (fake_proc, fake_line, _) =
        spawn_until_line(cmd, "fake-openai", "http://", &tmp.join("fake.log"));
    let fake = Fake {
        base: fake_line.trim().to_string(),
        proc: fake_proc,
    };
    let fake_pid = fake.proc.pid();
    let fake_port: u16 = fake
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("fake port");
    fake.admin(
        Method::POST,
        "/settings",
        json!({"stream_deltas": SSE_DELTAS}),
    )
    .await;

    // ---- 1. endpoint overhead
    eprintln!(
        "bench: endpoint overhead ({} s per cell after {} s warm-up)",
        o.secs, o.warmup
    );
    let t = fake.new_account(false).await;
    let vault = Vault::new(&o, &tmp, "vault-overhead", &fake);
    vault.import(&t, "bench", chrono::Duration::zero());
    let key = vault.key();
    let (serve, serve_base, _) = vault.serve("serve-overhead.log");
    let serve_pid = serve.pid();
    let (serve_off, serve_off_base, key_off) =
        serve_hold_off(&o, &tmp, "vault-hold-off", &fake, &t, None);
    let serve_off_pid = serve_off.pid();
    let mut hold_off_sides = vec![Side {
        name: "serve (hold off)",
        static_upstream: false,
        base: serve_off_base.clone(),
        headers: vec![("authorization".into(), format!("Bearer {key_off}"))],
        pids: Box::new(move || vec![serve_off_pid]),
    }];
    let mut keep_off = vec![serve_off];
    while health(&serve_base).await.is_none() || health(&serve_off_base).await.is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_mb(serve_pid);
    let mut keep2 = None;
    let upstream_auth = vec![
        (
            "authorization".to_string(),
            format!("Bearer {}", t.access_token),
        ),
        ("chatgpt-account-id".to_string(), t.account_id.clone()),
    ];
    let serve_auth = vec![("authorization".to_string(), format!("Bearer {key}"))];
    let nginx_tree = |master: u32| {
        move || {
            let mut v = children_of(master);
            v.push(master);
            v
        }
    };
    let mut sides = vec![
        Side {
            name: "direct",
            static_upstream: false,
            base: fake.base.clone(),
            headers: upstream_auth.clone(),
            pids: Box::new(Vec::new),
        },
        Side {
            name: "serve",
            static_upstream: false,
            base: serve_base.clone(),
            headers: serve_auth.clone(),
            pids: Box::new(move || vec![serve_pid]),
        },
    ];
    // The static SSE upstream: the fake's own 200-event answer, saved and served by nginx.
    let mut keep = Vec::new();
    let mut static_nginx = None;
    let sse_doc = {
        let direct = &sides[0];
        let sp = spec(&o, direct, Payload::Sse, 1);
        let hdrs: Vec<(&str, &str)> = sp
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        loadgen::request(sp.method.clone(), &sp.url, &hdrs, sp.body.clone())
            .await
            .expect("one SSE answer from the fake")
            .1
    };
    let static_dir = tmp.join("static");
    std::fs::create_dir_all(&static_dir).expect("static dir");
    std::fs::write(static_dir.join("sse.txt"), &sse_doc).expect("static SSE body");
    // POST to a static file is a 405 in nginx; `error_page 405 =200 $uri` serves the file anyway.
    let static_loc = format!(
        "            root {};\n            default_type \"text/event-stream; charset=utf-8\";\n            error_page 405 =200 $uri;\n            try_files /sse.txt =404;\n",
        static_dir.display()
    );
    match start_nginx(&tmp, "nginx-static", "", &[static_loc]) {
        Ok(st) => {
            let st_base = st.bases[0].clone();
            let st_port = port_of(&st_base);
            static_nginx = Some(nginx_tree(st.proc.pid()));
            let extra = format!(
                "{}{}",
                upstream_block("fake", fake_port),
                upstream_block("static_sse", st_port)
            );
            match start_nginx(
                &tmp,
                "nginx-proxy",
                &extra,
                &[proxy_location("fake"), proxy_location("static_sse")],
            ) {
                Ok(n) => {
                    let pids = nginx_tree(n.proc.pid());
                    sides.push(Side {
                        name: "nginx",
                        static_upstream: false,
                        base: n.bases[0].clone(),
                        headers: upstream_auth.clone(),
                        pids: Box::new(pids),
                    });
                    sides.push(Side {
                        name: "nginx",
                        static_upstream: true,
                        base: n.bases[1].clone(),
                        headers: upstream_auth.clone(),
                        pids: Box::new(pids),
                    });
                    keep.push(n);
                }
                Err(e) => notes.push(format!("nginx column skipped: {e}")),
            }
            // A second serve whose upstream is the static nginx (same account, valid token).
            let st_base_for_off = st_base.clone();
            let vault2 = Vault::new(&o, &tmp, "vault-static", &fake)
                .upstream(format!("{st_base}/backend-api/codex"));
            vault2.import(&t, "bench", chrono::Duration::zero());
            let key2 = vault2.key();
            let (serve2, serve2_base, _) = vault2.serve("serve-static.log");
            let serve2_pid = serve2.pid();
            sides.push(Side {
                name: "direct",
                static_upstream: true,
                base: st_base,
                headers: upstream_auth.clone(),
                pids: Box::new(Vec::new),
            });
            sides.push(Side {
                name: "serve",
                static_upstream: true,
                base: serve2_base,
                headers: vec![("authorization".into(), format!("Bearer {key2}"))],
                pids: Box::new(move || vec![serve2_pid]),
            });
            let (serve2_off, serve2_off_base, key2_off) = serve_hold_off(
                &o,
                &tmp,
                "vault-static-hold-off",
                &fake,
                &t,
                Some(format!("{}/backend-api/codex", st_base_for_off)),
            );
            let serve2_off_pid = serve2_off.pid();
            hold_off_sides.push(Side {
                name: "serve (hold off)",
                static_upstream: true,
                base: serve2_off_base,
                headers: vec![("authorization".into(), format!("Bearer {key2_off}"))],
                pids: Box::new(move || vec![serve2_off_pid]),
            });
            keep_off.push(serve2_off);
            keep.push(st);
            keep2 = Some(serve2);
        }
        Err(e) => notes.push(format!("nginx and static-upstream columns skipped: {e}")),
    }
    for side in sides.iter().chain(&hold_off_sides) {
        for p in PAYLOADS {
            if p.static_upstream() != side.static_upstream {
                continue;
            }
            if let Err(e) = sanity(&o, side, p).await {
                panic!("sanity check failed: {e}");
            }
        }
    }
    let mut cells: Vec<Cell> = Vec::new();
    for payload in PAYLOADS {
        let group = payload.static_upstream();
        let upstream_pids: Vec<u32> = match (group, &static_nginx) {
            (true, Some(tree)) => tree(),
            (true, None) => continue,
            (false, _) => vec![fake_pid],
        };
        for c in [1usize, 16, 64] {
            // Side by side, cell by cell: drift on a shared machine hits all columns alike.
            for side in sides.iter().filter(|s| s.static_upstream == group) {
                let sp = (side.name == "serve" && !group).then_some(serve_pid);
                let cell = measure(&o, &upstream_pids, side, payload, c, sp).await;
                eprintln!(
                    "bench:   {:<6} {:<10} c={c:<3} {:>9} req/s  p50 {:>7} ms  p99 {:>7} ms",
                    side.name,
                    payload.key(),
                    f(cell.report.rps, 0),
                    f(cell.report.p50_ms, 3),
                    f(cell.report.p99_ms, 3)
                );
                cells.push(cell);
            }
        }
    }
    // ---- 1b. the first-byte hold (issue 16): serve as above (hold on) against its twin with
    // `endpoint.first_byte_hold = off`, c=1, in alternating order.
    eprintln!("bench: first-byte hold on / off at c=1 ({HOLD_ROUNDS} rounds)");
    let mut hold_rounds: Vec<(Payload, Vec<(Cell, Cell)>)> = Vec::new();
    for payload in [Payload::Sse, Payload::SseStatic] {
        let group = payload.static_upstream();
        let upstream_pids: Vec<u32> = match (group, &static_nginx) {
            (true, Some(tree)) => tree(),
            (true, None) => continue,
            (false, _) => vec![fake_pid],
        };
        let on = sides
            .iter()
            .find(|s| s.name == "serve" && s.static_upstream == group);
        let off = hold_off_sides.iter().find(|s| s.static_upstream == group);
        let (Some(on), Some(off)) = (on, off) else {
            continue;
        };
        let mut rounds = Vec::new();
        for round in 0..HOLD_ROUNDS {
            let on_first = round % 2 == 0;
            let (a, b) = if on_first { (on, off) } else { (off, on) };
            let ca = measure(&o, &upstream_pids, a, payload, 1, None).await;
            let cb = measure(&o, &upstream_pids, b, payload, 1, None).await;
            let (c_on, c_off) = if on_first { (ca, cb) } else { (cb, ca) };
            eprintln!(
                "bench:   hold {:<10} round {round}: p50 on {:>7} ms, off {:>7} ms",
                payload.key(),
                f(c_on.report.p50_ms, 3),
                f(c_off.report.p50_ms, 3)
            );
            rounds.push((c_on, c_off));
        }
        hold_rounds.push((payload, rounds));
    }
    drop(keep_off);

    let serve_health = health(&serve_base).await.unwrap_or(Value::Null);
    let rss_after = rss_mb(serve_pid);
    let hwm = proc_status_kb(serve_pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    let load_rss = cells
        .iter()
        .filter(|c| c.side == "serve" && c.report.concurrency == 64)
        .filter_map(|c| c.proxy_rss_peak_mb)
        .fold(0.0_f64, f64::max);
    drop(keep);
    drop(keep2);
    drop(serve);

    // ---- 2. refresh amplification
    eprintln!("bench: refresh amplification");
    let mut amp = Vec::new();
    for n in [1usize, 100, 1000] {
        amp.push(amplification(&o, &tmp, &fake, n).await);
    }
    amp.push(process_race(&o, &tmp, &fake, 4).await);

    // ---- 3. scale (also 4. idle footprint with many accounts)
    eprintln!(
        "bench: scale ({} accounts; {} s idle window)",
        o.accounts, o.idle_secs
    );
    let scale = scale(&o, &tmp, &fake).await;
    drop(fake);

    // ---- report
    let get = |side: &str, p: &str, c: usize| {
        cells
            .iter()
            .find(|x| x.side == side && x.payload == p && x.report.concurrency == c)
    };
    let mut ratios = Vec::new();
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(out, "\nCodex Vault bench — loadgen (hyper, closed loop), {} s per cell, all release, one machine ({} cores)", o.secs, std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    let _ = writeln!(out, "\n1. Endpoint overhead        {:>24} | {:>24} | {:>24} | serve vs direct      | serve/nginx | +1st byte", "direct (fake alone)", "codex-vault serve", "nginx");
    let _ = writeln!(out, "   payload   c     {:>8} {:>7} {:>7} | {:>8} {:>7} {:>7} | {:>8} {:>7} {:>7} | +p50ms +p99ms  thr  |  thr        | ms", "req/s", "p50ms", "p99ms", "req/s", "p50ms", "p99ms", "req/s", "p50ms", "p99ms");
    for p in PAYLOADS {
        let _ = writeln!(out, "   {:<10} = {}", p.key(), p.name());
    }
    for p in PAYLOADS {
        for c in [1usize, 16, 64] {
            let d = get("direct", p.key(), c);
            let s = get("serve", p.key(), c);
            let n = get("nginx", p.key(), c);
            let trip = |x: Option<&Cell>| match x {
                Some(x) => format!(
                    "{:>8} {:>7} {:>7}",
                    f(x.report.rps, 0),
                    f(x.report.p50_ms, 3),
                    f(x.report.p99_ms, 3)
                ),
                None => format!("{:>8} {:>7} {:>7}", "-", "-", "-"),
            };
            let (Some(d), Some(s)) = (d, s) else { continue };
            let add50 = s.report.p50_ms - d.report.p50_ms;
            let add99 = s.report.p99_ms - d.report.p99_ms;
            let thr_d = s.report.rps / d.report.rps.max(1e-9);
            let thr_n = n.map(|n| s.report.rps / n.report.rps.max(1e-9));
            let fb = s.report.first_byte_p50_ms - d.report.first_byte_p50_ms;
            let _ = writeln!(
                out,
                "   {:<10} {:>3}   {} | {} | {} | {:>6} {:>6} {:>5} | {:>6}      | {}",
                p.key(),
                c,
                trip(Some(d)),
                trip(Some(s)),
                trip(n),
                f(add50, 3),
                f(add99, 3),
                f(thr_d, 2),
                thr_n.map(|v| f(v, 2)).unwrap_or_else(|| "-".into()),
                if p != Payload::Small {
                    f(fb, 3)
                } else {
                    "-".into()
                }
            );
            ratios.push(json!({
                "payload": p.key(), "concurrency": c,
                "added_p50_ms": add50, "added_p99_ms": add99,
                "throughput_vs_direct": thr_d, "throughput_vs_nginx": thr_n,
                "added_first_byte_p50_ms": fb,
                "added_first_byte_p99_ms": s.report.first_byte_p99_ms - d.report.first_byte_p99_ms,
                "nginx_added_p50_ms": n.map(|n| n.report.p50_ms - d.report.p50_ms),
                "nginx_added_first_byte_p50_ms": n.map(|n| n.report.first_byte_p50_ms - d.report.first_byte_p50_ms),
                "cpu_us_per_req": {"fake": d.fake_cpu_us_per_req, "serve": s.proxy_cpu_us_per_req, "nginx": n.and_then(|n| n.proxy_cpu_us_per_req)},
            }));
        }
    }
    let _ = writeln!(
        out,
        "   CPU per request (µs, /proc utime+stime), c=64: {}",
        ["small", "sse200", "sse-static", "turn-80k"]
            .iter()
            .map(|p| {
                let v = |side: &str| {
                    get(side, p, 64).map(|c| {
                        if side == "direct" {
                            c.fake_cpu_us_per_req
                        } else {
                            c.proxy_cpu_us_per_req.unwrap_or(0.0)
                        }
                    })
                };
                format!(
                    "{p}: upstream {} serve {} nginx {}",
                    v("direct").map(|x| f(x, 0)).unwrap_or_default(),
                    v("serve").map(|x| f(x, 0)).unwrap_or_default(),
                    v("nginx").map(|x| f(x, 0)).unwrap_or_else(|| "-".into())
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    );
    let mut hold = Vec::new();
    let _ = writeln!(out, "\n1b. First-byte hold, c=1: serve with the hold on (default) and off (`{HOLD_SETTING} = off`), {HOLD_ROUNDS} rounds in alternating order, medians");
    let _ = writeln!(
        out,
        "   payload     hold on p50  hold off p50  added p50 (ms) | 1st byte on  off  added (ms)"
    );
    for (p, rounds) in &hold_rounds {
        let med = |g: &dyn Fn(&(Cell, Cell)) -> f64| median(rounds.iter().map(g).collect());
        let on50 = med(&|r| r.0.report.p50_ms);
        let off50 = med(&|r| r.1.report.p50_ms);
        let add50 = med(&|r| r.0.report.p50_ms - r.1.report.p50_ms);
        let on_fb = med(&|r| r.0.report.first_byte_p50_ms);
        let off_fb = med(&|r| r.1.report.first_byte_p50_ms);
        let add_fb = med(&|r| r.0.report.first_byte_p50_ms - r.1.report.first_byte_p50_ms);
        let _ = writeln!(
            out,
            "   {:<10} {:>12} {:>13} {:>14} | {:>11} {:>4} {:>11}",
            p.key(),
            f(on50, 3),
            f(off50, 3),
            f(add50, 3),
            f(on_fb, 3),
            f(off_fb, 3),
            f(add_fb, 3)
        );
        hold.push(json!({
            "payload": p.key(), "concurrency": 1, "rounds": rounds.len(),
            "hold_on_p50_ms": on50, "hold_off_p50_ms": off50, "added_p50_ms": add50,
            "hold_on_p99_ms": med(&|r| r.0.report.p99_ms), "hold_off_p99_ms": med(&|r| r.1.report.p99_ms),
            "hold_on_first_byte_p50_ms": on_fb, "hold_off_first_byte_p50_ms": off_fb,
            "added_first_byte_p50_ms": add_fb,
            "hold_on_rps": med(&|r| r.0.report.rps), "hold_off_rps": med(&|r| r.1.report.rps),
            "cells": rounds.iter().map(|(a, b)| json!({"hold_on": a, "hold_off": b})).collect::<Vec<_>>(),
        }));
    }
    let _ = writeln!(
        out,
        "\n2. Refresh amplification (token endpoint slowed to hold the refresh in flight)"
    );
    for a in &amp {
        if a["kind"] == "endpoint" {
            let _ = writeln!(out, "   {:>5} concurrent requests via serve → {} refresh call(s) at the fake; {} answered 200, {} waited for the refresh",
                a["concurrent_requests"], a["refresh_calls"], a["answered_200"], a["waited_for_refresh"]);
        } else {
            let _ = writeln!(out, "   {:>5} `codex-vault token` processes racing → {} refresh call(s); {} succeeded, {} distinct token(s)",
                a["processes"], a["refresh_calls"], a["succeeded"], a["distinct_tokens"]);
        }
    }
    let sel_us = scale["select_1000"]["new_conversation_us"]
        .as_f64()
        .unwrap_or(0.0);
    let _ = writeln!(out, "\n3. Scale ({} accounts)", scale["accounts"]);
    let _ = writeln!(
        out,
        "   start → listening {} ms, → /health answers {} ms (endpoint sees {} accounts)",
        f(scale["start_to_listening_ms"].as_f64().unwrap_or(0.0), 1),
        f(scale["start_to_ready_ms"].as_f64().unwrap_or(0.0), 1),
        scale["endpoint_accounts"]
    );
    let _ = writeln!(
        out,
        "   idle: scheduler wake-ups {}/min, thread wake-ups (context switches) {}/min",
        f(
            scale["scheduler_wakeups_per_min"].as_f64().unwrap_or(0.0),
            1
        ),
        f(scale["thread_wakeups_per_min"].as_f64().unwrap_or(0.0), 0)
    );
    let _ = writeln!(out, "   selection per request: {} µs new conversation, {} µs affinity hit, {} µs pinned (1 account: {} µs)",
        f(sel_us, 2), f(scale["select_1000"]["affinity_hit_us"].as_f64().unwrap_or(0.0), 2),
        f(scale["select_1000"]["pinned_us"].as_f64().unwrap_or(0.0), 2), f(scale["select_1"]["new_conversation_us"].as_f64().unwrap_or(0.0), 3));
    let _ = writeln!(
        out,
        "   `accounts list --json`: {} ms (median of 7, {} accounts listed)",
        f(scale["accounts_list_json_ms"].as_f64().unwrap_or(0.0), 1),
        scale["accounts_listed"]
    );
    let _ = writeln!(out, "\n4. Footprint: serve RSS idle {} MB (1 account), {} MB (with {} accounts); peak under c=64 load {} MB (VmHWM {} MB); keychain reads per process: serve {} (after load), {} (1,000 accounts)",
        f(idle_rss, 1), f(scale["idle_rss_mb"].as_f64().unwrap_or(0.0), 1), scale["accounts"], f(load_rss, 1), f(hwm, 1), serve_health["process"]["keychain_reads"], scale["keychain_reads"]);

    // Targets (issue 8).
    let r = |p: &str, c: usize| {
        ratios
            .iter()
            .find(|x| x["payload"] == p && x["concurrency"] == c)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let add50_c1 = num(&r("small", 1)["added_p50_ms"]);
    let add50_c1_sse = num(&r("sse200", 1)["added_p50_ms"]);
    let add50_c1_static = num(&r("sse-static", 1)["added_p50_ms"]);
    let add50_c1_turn = num(&r("turn-80k", 1)["added_p50_ms"]);
    let thr64: Vec<Option<f64>> = ["small", "sse200", "sse-static", "turn-80k"]
        .iter()
        .map(|p| r(p, 64)["throughput_vs_nginx"].as_f64())
        .collect();
    // First byte without queueing (c=1); the c=16/64 figures are in the table.
    let fb = num(&r("sse200", 1)["added_first_byte_p50_ms"]);
    let fb_static = num(&r("sse-static", 1)["added_first_byte_p50_ms"]);
    let refresh_ok = amp.iter().all(|a| a["target_met"] == true);
    let ready = scale["start_to_ready_ms"].as_f64().unwrap_or(f64::NAN);
    let wake = scale["scheduler_wakeups_per_min"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let keychain_ok =
        serve_health["process"]["keychain_reads"] == 1 && scale["keychain_reads"] == 1;
    let mark = |ok: bool| if ok { "met " } else { "MISS" };
    let mut targets = Vec::new();
    let mut t = |name: &str, ok: bool, got: String| {
        targets.push(json!({"target": name, "met": ok, "measured": got}));
    };
    t(
        "added p50 ≤ 0.25 ms at c=1",
        add50_c1 <= 0.25,
        format!(
            "{} ms small (SSE: {} fake, {} static; 80 KB turn: {})",
            f(add50_c1, 3),
            f(add50_c1_sse, 3),
            f(add50_c1_static, 3),
            f(add50_c1_turn, 3)
        ),
    );
    let thr_ok =
        thr64.iter().all(|v| v.is_none_or(|v| v >= 0.9)) && thr64.iter().any(Option::is_some);
    let na = |v: Option<f64>| v.map(|v| f(v, 2)).unwrap_or_else(|| "n/a".into());
    t(
        "throughput at c=64 ≥ 0.9× nginx",
        thr_ok,
        format!(
            "{} small, {} SSE fake, {} SSE static, {} 80 KB turn",
            na(thr64[0]),
            na(thr64[1]),
            na(thr64[2]),
            na(thr64[3])
        ),
    );
    t(
        "added first SSE byte ≤ 1 ms (p50, c=1)",
        fb <= 1.0 && (fb_static.is_nan() || fb_static <= 1.0),
        format!("{} ms fake, {} ms static", f(fb, 3), f(fb_static, 3)),
    );
    t(
        "refresh calls = 1 in every amplification case",
        refresh_ok,
        amp.iter()
            .map(|a| a["refresh_calls"].to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );
    t(
        "1,000 accounts ready < 1 s",
        ready < 1000.0,
        format!("{} ms", f(ready, 1)),
    );
    t(
        "idle scheduler wake-ups ≈ 0",
        wake <= 1.5,
        format!("{}/min (sleep cap 60 s)", f(wake, 1)),
    );
    t(
        "idle RSS < 40 MB",
        idle_rss < 40.0,
        format!("{} MB", f(idle_rss, 1)),
    );
    t(
        "keychain reads per process = 1",
        keychain_ok,
        format!(
            "{}, {}",
            serve_health["process"]["keychain_reads"], scale["keychain_reads"]
        ),
    );
    let hold_add = |p: &str| {
        hold.iter()
            .find(|x| x["payload"] == p)
            .map_or(f64::NAN, |x| num(&x["added_p50_ms"]))
    };
    let (hold_fake, hold_static) = (hold_add("sse200"), hold_add("sse-static"));
    t(
        "first-byte hold ≤ 0.1 ms p50 at c=1",
        hold_fake <= 0.1 && (hold_static.is_nan() || hold_static <= 0.1),
        format!(
            "{} ms fake SSE, {} ms static SSE (added p50, hold on − off)",
            f(hold_fake, 3),
            f(hold_static, 3)
        ),
    );
    let _ = writeln!(out, "\nTargets (issue 8; the first-byte hold: issue 16)");
    for x in &targets {
        let _ = writeln!(
            out,
            "   [{}] {:<46} {}",
            mark(x["met"] == true),
            x["target"].as_str().unwrap_or(""),
            x["measured"].as_str().unwrap_or("")
        );
    }
    for n in &notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(
        out,
        "(whole bench: {} s)",
        f(started.elapsed().as_secs_f64(), 0)
    );
    print!("{out}");

    let doc = json!({
        "generated_at": chrono::Utc::now().to_rfc3339(),
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "method": {"load_generator": "codex_vault_testkit::loadgen (hyper 1, HTTP/1.1, one keep-alive connection per worker, closed loop)",
                   "seconds_per_cell": o.secs, "warmup_seconds": o.warmup, "sse_events": SSE_EVENTS,
                   "small": MODELS_PATH, "sse": RESPONSES_PATH, "profile": "bench-release (release, no LTO)"},
        "overhead": cells, "ratios": ratios, "first_byte_hold": hold,
        "footprint": {"serve_idle_rss_mb": idle_rss, "serve_rss_c64_peak_mb": load_rss, "serve_vmhwm_mb": hwm,
                      "serve_rss_after_load_mb": rss_after, "serve_health_after_load": serve_health},
        "amplification": amp, "scale": scale, "targets": targets, "notes": notes,
    });
    if let Some(dir) = o.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&o.out, serde_json::to_string_pretty(&doc).expect("JSON"))
        .expect("results written");
    println!("results: {}", o.out.display());
}
