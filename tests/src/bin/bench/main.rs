//! The `make bench` driver. Runs the release `fake-openai`, `codex-vault serve` and (if present)
//! Debian's nginx side by side in one run, drives them with the in-crate load generator
//! (`codex_vault_testkit::loadgen`), prints one table and writes `target/bench/results.json`.
//!
//! `bench --vault BIN --fake BIN --core BIN [--app BIN] [--secs S] [--warmup S] [--idle-secs S] [--idle-settle S]
//!        [--accounts N] [--hold-rounds N] [--out PATH] [--only idle|ROW[,ROW…]] [--smoke]`
//! `bench --check PATH`: validates a written `results.json` against the stable schema.
//!
//! Sections: `overhead` (1, 1b), `amp` (2), `scale` (3, 4), `idle` (5: idle wake-ups and the
//! cross-process pickup); `report` prints them and writes the JSON, `schema` builds and checks
//! its stable part (rows, ratios, idle wake-ups, refresh calls). `--only idle` runs section 5
//! alone (its JSON then holds only that section); `--only small,sse14` runs section 1 (and 1b
//! for those rows) for the named rows alone, for a quick before / after (its JSON holds
//! `rows`, `ratios` and `overhead` for them: not a full run, so not checked). `--smoke` (what `make test` runs, on the debug
//! binaries) runs every section at its smallest size — 0.5 s a cell, 10 accounts, 2 s idle
//! windows, one hold round — and fails unless every row ran without a failed request and the
//! JSON passes the schema check; it asserts no timing.
//!
//! It must run inside `scripts/keyring-session.sh` (its own D-Bus + gnome-keyring): every vault
//! it creates lives in a temp dir, never in the user's data or keychain. It never prints a token
//! or the local key. See README.md § Benchmarks for the method.

mod amp;
mod idle;
mod load;
mod logcost;
mod nginx;
mod overhead;
mod procs;
mod report;
mod rig;
mod scale;
mod schema;

pub(crate) use amp::*;
pub(crate) use load::*;
pub(crate) use nginx::*;
pub(crate) use overhead::*;
pub(crate) use procs::*;
pub(crate) use report::{f, Results};
pub(crate) use rig::*;
pub(crate) use scale::*;

use bytes::Bytes;
use codex_vault_testkit::loadgen::{self, Report, Spec};
use codex_vault_testkit::IssuedTokens;
use hyper::Method;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const SSE_DELTAS: u64 = 192; // + 8 framing events = a 200-event stream
pub(crate) const SSE_EVENTS: usize = 200;
/// The short answer (`sse14`): 6 text deltas + 8 framing events, the shape of a short Codex turn.
pub(crate) const SSE14_DELTAS: u64 = 6;
pub(crate) const SSE14_EVENTS: usize = 14;
pub(crate) const CONCURRENCIES: [usize; 3] = [1, 16, 64];
/// The payloads whose first-byte hold is measured on / off (the fake's stream and the short
/// static one).
pub(crate) const HOLD_PAYLOADS: [Payload; 2] = [Payload::Sse, Payload::Sse14];
pub(crate) const MODELS_PATH: &str = "/backend-api/codex/models?client_version=0.169.0";
pub(crate) const RESPONSES_PATH: &str = "/backend-api/codex/responses";
/// The endpoint's switch for the first-byte hold (`codex_vault::endpoint::SETTING_FIRST_BYTE_HOLD`).
pub(crate) const HOLD_SETTING: &str = "endpoint.first_byte_hold";
/// Hold on / hold off cells at c=1, alternating which goes first: the difference sought (≤ 0.1 ms)
/// is below one cell's drift on a shared machine, so it is the median of per-round differences.
pub(crate) const HOLD_ROUNDS: usize = 4;
/// Where `--smoke` writes (so a smoke never overwrites a real run's results).
pub(crate) const SMOKE_OUT: &str = "target/bench-smoke/results.json";

const USAGE: &str = "bench [--vault BIN] [--fake BIN] [--core BIN] [--app BIN] [--secs S] [--warmup S]
      [--idle-secs S] [--idle-settle S] [--accounts N] [--hold-rounds N] [--out PATH]
      [--only idle | --only log | --only ROW[,ROW...]] [--smoke]
bench --check PATH
  rows: small, sse14, sse200, sse-static, turn80k; --only ROWS runs section 1 (1b) for them alone.
  Run inside scripts/keyring-session.sh. Writes target/bench/results.json (README.md § Benchmarks).";

impl Opts {
    /// Whether section 1 measures this payload (all unless `--only ROWS`).
    pub(crate) fn wants(&self, p: Payload) -> bool {
        self.only_rows
            .as_ref()
            .is_none_or(|rows| rows.iter().any(|r| r == p.key()))
    }
}

pub(crate) struct Opts {
    pub(crate) vault: PathBuf,
    pub(crate) fake: PathBuf,
    pub(crate) core: PathBuf,
    pub(crate) secs: f64,
    pub(crate) warmup: f64,
    pub(crate) idle_secs: f64,
    /// How long after start the idle window opens (`--idle-settle`, default 3 s): longer, to
    /// count a steady state past the first usage poll (which writes the first figures).
    pub(crate) idle_settle: f64,
    /// The desktop app (default features) whose idle core threads are counted.
    pub(crate) app: PathBuf,
    pub(crate) accounts: usize,
    pub(crate) out: PathBuf,
    /// `--only idle`: section 5 alone.
    pub(crate) only_idle: bool,
    /// `--only log`: section 1c (the request log on / off) alone.
    pub(crate) only_log: bool,
    /// `--only ROW,…`: section 1 (and 1b) for these payload keys alone.
    pub(crate) only_rows: Option<Vec<String>>,
    pub(crate) hold_rounds: usize,
    /// `--smoke`: smallest sizes; the run fails unless every row ran and the schema holds.
    pub(crate) smoke: bool,
}

/// `--smoke`'s sizes; explicit options still override them.
fn smoke_defaults(o: &mut Opts) {
    o.smoke = true;
    o.secs = 0.5;
    // No warm-up: a slow debug cell (64 SSE streams through serve) still counts its first
    // requests; with one, none might start inside a 0.5 s window.
    o.warmup = 0.0;
    o.idle_secs = 2.0;
    o.accounts = 10;
    o.hold_rounds = 1;
    o.out = SMOKE_OUT.into();
}

fn opts() -> Opts {
    let mut o = Opts {
        vault: "target/bench-release/codex-vault".into(),
        fake: "target/bench-release/fake-openai".into(),
        core: "target/bench-release/examples/bench_core".into(),
        secs: 5.0,
        warmup: 1.0,
        idle_secs: 60.0,
        idle_settle: 3.0,
        app: "target/debug/codex-vault".into(),
        accounts: 1000,
        out: "target/bench/results.json".into(),
        only_idle: false,
        only_log: false,
        only_rows: None,
        hold_rounds: HOLD_ROUNDS,
        smoke: false,
    };
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        std::process::exit(0);
    }
    if std::env::args().any(|a| a == "--smoke") {
        smoke_defaults(&mut o);
    }
    let mut args = std::env::args().skip(1).filter(|a| a != "--smoke");
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--vault" => o.vault = v.into(),
            "--fake" => o.fake = v.into(),
            "--core" => o.core = v.into(),
            "--secs" => o.secs = v.parse().expect("--secs"),
            "--warmup" => o.warmup = v.parse().expect("--warmup"),
            "--app" => o.app = v.into(),
            "--idle-secs" => o.idle_secs = v.parse().expect("--idle-secs"),
            "--idle-settle" => o.idle_settle = v.parse().expect("--idle-settle"),
            "--accounts" => o.accounts = v.parse().expect("--accounts"),
            "--out" => o.out = v.into(),
            "--hold-rounds" => o.hold_rounds = v.parse().expect("--hold-rounds"),
            "--check" => std::process::exit(schema::check_file(Path::new(&v))),
            "--only" if v == "idle" => o.only_idle = true,
            "--only" if v == "log" => o.only_log = true,
            "--only" => {
                let rows: Vec<String> = v.split(',').map(str::to_string).collect();
                for r in &rows {
                    assert!(
                        PAYLOADS.iter().any(|p| p.key() == r),
                        "--only takes `idle` or row names ({}), not {r}",
                        PAYLOADS.map(|p| p.key()).join(", ")
                    );
                }
                o.only_rows = Some(rows);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    o
}

/// The fake, in release, logs off: it must not be what we measure.
async fn start_fake(o: &Opts, tmp: &Path) -> Fake {
    let mut cmd = Command::new(&o.fake);
    cmd.env("RUST_LOG", "warn");
    let (fake_proc, fake_line, _) =
        spawn_until_line(cmd, "fake-openai", "http://", &tmp.join("fake.log"));
    let fake = Fake {
        base: fake_line.trim().to_string(),
        proc: fake_proc,
    };
    fake.admin(
        Method::POST,
        "/settings",
        json!({"stream_deltas": SSE_DELTAS}),
    )
    .await;
    fake
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
    let code = run(&o, tmpdir.path()).await;
    remove_tmp(tmpdir);
    code
}

/// Removes the temp dir, retrying for a moment: the desktop app's WebKit child processes may
/// still be writing into its HOME there just after the app was killed.
fn remove_tmp(dir: tempfile::TempDir) {
    let path = dir.path().to_path_buf();
    drop(dir);
    for _ in 0..25 {
        if !path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&path);
    }
    eprintln!("bench: could not remove {}", path.display());
}

async fn run(o: &Opts, tmp: &Path) -> std::process::ExitCode {
    let tmp = tmp.to_path_buf();
    let started = Instant::now();
    let mut notes: Vec<String> = Vec::new();
    let fake = start_fake(o, &tmp).await;
    if o.only_log {
        let v = logcost::run(o, &tmp, &fake).await;
        drop(fake);
        report::write_log_cost(o, &v);
        return std::process::ExitCode::SUCCESS;
    }
    if o.only_idle {
        let idle = idle::run(o, &tmp, &fake).await;
        drop(fake);
        report::write_idle(o, started, &idle);
        return std::process::ExitCode::SUCCESS;
    }

    // ---- 1. endpoint overhead, 1b. the first-byte hold
    let ov = overhead::run(o, &tmp, &fake, &mut notes).await;
    if o.only_rows.is_some() {
        drop(fake);
        report::write_rows(o, started, &ov, &notes);
        return std::process::ExitCode::SUCCESS;
    }

    // ---- 1c. the request log's cost
    let log_cost = logcost::run(o, &tmp, &fake).await;

    // ---- 2. refresh amplification
    eprintln!("bench: refresh amplification");
    let mut amp = Vec::new();
    for n in [1usize, 100, 1000] {
        amp.push(amplification(o, &tmp, &fake, n).await);
    }
    amp.push(process_race(o, &tmp, &fake, 4).await);

    // ---- 3. scale (also 4. idle footprint with many accounts)
    eprintln!(
        "bench: scale ({} accounts; {} s idle window)",
        o.accounts, o.idle_secs
    );
    let scale = scale(o, &tmp, &fake).await;

    // ---- 5. idle wake-ups and cross-process pickup
    let idle = idle::run(o, &tmp, &fake).await;
    if let Some(why) = idle["app_core"]["skipped"].as_str() {
        notes.push(format!("app core idle row skipped: {why}"));
    }
    drop(fake);

    let doc = report::write(&Results {
        o,
        started,
        ov: &ov,
        amp: &amp,
        scale: &scale,
        idle: &idle,
        log_cost: &log_cost,
        notes: &notes,
    });
    let problems = schema::check(&doc, o.smoke);
    for p in &problems {
        eprintln!("bench: results.json: {p}");
    }
    if !o.smoke {
        return std::process::ExitCode::SUCCESS;
    }
    // Returned, not `exit`ed: the temp dir is removed on the way out.
    if !problems.is_empty() {
        eprintln!("bench smoke FAILED ({} problems)", problems.len());
        return std::process::ExitCode::FAILURE;
    }
    println!(
        "bench smoke: every row ran, the schema holds ({} s)",
        f(started.elapsed().as_secs_f64(), 0)
    );
    std::process::ExitCode::SUCCESS
}
