//! `loadgen URL [-c N] [-d SECS] [-w SECS] [--rate R] [-m METHOD] [-H 'k: v']... [--body TEXT|@FILE]
//! [--expect STATUS]`: drives one HTTP/1.1 load run (see `codex_vault_testkit::loadgen`) and
//! prints its report as one JSON line. Closed loop unless `--rate` (open loop, total req/s).
//! `LOADGEN_THREADS=N` sets the runtime's threads (1: a current-thread runtime, like `wrk -t1`).

use bytes::Bytes;
use codex_vault_testkit::loadgen::{run, Spec};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: loadgen URL [-c N] [-d SECS] [-w SECS] [--rate R] [-m METHOD] [-H 'k: v']... [--body TEXT|@FILE] [--expect STATUS]";

fn parse() -> Result<Spec, String> {
    let mut spec = Spec {
        url: String::new(),
        method: hyper::Method::GET,
        headers: Vec::new(),
        body: Bytes::new(),
        concurrency: 1,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(5),
        rate: None,
        expect_status: 200,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "-c" => spec.concurrency = val()?.parse().map_err(|e| format!("-c: {e}"))?,
            "-d" => {
                spec.duration =
                    Duration::from_secs_f64(val()?.parse().map_err(|e| format!("-d: {e}"))?)
            }
            "-w" => {
                spec.warmup =
                    Duration::from_secs_f64(val()?.parse().map_err(|e| format!("-w: {e}"))?)
            }
            "--rate" => spec.rate = Some(val()?.parse().map_err(|e| format!("--rate: {e}"))?),
            "-m" => spec.method = val()?.parse().map_err(|e| format!("-m: {e}"))?,
            "--expect" => {
                spec.expect_status = val()?.parse().map_err(|e| format!("--expect: {e}"))?
            }
            "-H" => {
                let h = val()?;
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| format!("-H wants 'name: value', got {h:?}"))?;
                spec.headers
                    .push((k.trim().to_string(), v.trim().to_string()));
            }
            "--body" => {
                let b = val()?;
                spec.body = match b.strip_prefix('@') {
                    Some(path) => std::fs::read(path)
                        .map_err(|e| format!("{path}: {e}"))?
                        .into(),
                    None => Bytes::from(b),
                };
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ if spec.url.is_empty() && !a.starts_with('-') => spec.url = a,
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if spec.url.is_empty() {
        return Err(USAGE.into());
    }
    Ok(spec)
}

fn main() -> ExitCode {
    let spec = match parse() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // `LOADGEN_THREADS=1`: one thread (a current-thread runtime), like `wrk -t1`.
    let threads: usize = std::env::var("LOADGEN_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let rt = match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .expect("tokio runtime");
    match rt.block_on(run(&spec)) {
        Ok(r) => {
            println!("{}", serde_json::to_string(&r).expect("report serialises"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
