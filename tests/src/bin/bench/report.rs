//! The printed table, the targets and `results.json`.

use super::*;
use std::fmt::Write as _;

/// Everything one run measured.
pub(crate) struct Results<'a> {
    pub(crate) o: &'a Opts,
    pub(crate) started: Instant,
    pub(crate) ov: &'a Overhead,
    pub(crate) amp: &'a [Value],
    pub(crate) scale: &'a Value,
    pub(crate) idle: &'a Value,
    /// 1c: the request log on / off (`logcost`).
    pub(crate) log_cost: &'a Value,
    pub(crate) notes: &'a [String],
}

pub(crate) fn f(v: f64, digits: usize) -> String {
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

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}

fn get<'c>(cells: &'c [Cell], side: &str, p: &str, c: usize) -> Option<&'c Cell> {
    cells
        .iter()
        .find(|x| x.side == side && x.payload == p && x.report.concurrency == c)
}

/// Prints the table and writes `results.json`; returns what it wrote.
pub(crate) fn write(r: &Results) -> Value {
    let mut out = String::new();
    let _ = writeln!(out, "\nCodex Vault bench — loadgen (hyper, closed loop), {} s per cell, all release, one machine ({} cores)", r.o.secs, cores());
    let ratios = overhead_table(&mut out, &r.ov.cells);
    cpu_line(&mut out, &r.ov.cells);
    let hold = hold_table(&mut out, &r.ov.hold_rounds, r.o.hold_rounds);
    log_cost_line(&mut out, r.log_cost);
    amp_lines(&mut out, r.amp);
    scale_lines(&mut out, r.scale, r.ov);
    idle_lines(&mut out, r.idle);
    let stable = schema::ratios(&r.ov.cells, &hold);
    let mut targets = perf_targets(&ratios, &stable);
    targets.extend(other_targets(r));
    let _ = writeln!(
        out,
        "\nTargets (issue 8; against nginx: issue 18; the first-byte hold: issue 16; idle wake-ups: issue 17)"
    );
    let mark = |ok: bool| if ok { "met " } else { "MISS" };
    for x in &targets {
        let _ = writeln!(
            out,
            "   [{}] {:<46} {}",
            mark(x["met"] == true),
            x["target"].as_str().unwrap_or(""),
            x["measured"].as_str().unwrap_or("")
        );
    }
    for n in r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(
        out,
        "(whole bench: {} s)",
        f(r.started.elapsed().as_secs_f64(), 0)
    );
    print!("{out}");
    let (rows, extra_rows) = schema::rows(&r.ov.cells);
    let doc = json!({
        "rows": rows, "ratios": stable,
        "idle_wakeups_per_min": schema::idle_wakeups(r.idle),
        "refresh_calls": schema::refresh_calls(r.amp),
        "extra_rows": extra_rows, "smoke": r.o.smoke,
        "generated_at": chrono::Utc::now().to_rfc3339(),
        "machine": {"cores": cores()},
        "method": {"load_generator": "codex_vault_testkit::loadgen (hyper 1, HTTP/1.1, one keep-alive connection per worker, closed loop)",
                   "seconds_per_cell": r.o.secs, "warmup_seconds": r.o.warmup, "sse_events": SSE_EVENTS, "sse14_events": SSE14_EVENTS,
                   "hold_rounds": r.o.hold_rounds, "nginx_workers": {"sse14": 1, "other rows": "auto (= cores)"},
                   "small": MODELS_PATH, "sse": RESPONSES_PATH, "profile": "bench-release (release, no LTO)"},
        "overhead": r.ov.cells, "overhead_ratios": ratios, "first_byte_hold": hold,
        "footprint": {"serve_idle_rss_mb": r.ov.idle_rss, "serve_rss_c64_peak_mb": r.ov.load_rss, "serve_vmhwm_mb": r.ov.hwm,
                      "serve_rss_after_load_mb": r.ov.rss_after, "serve_health_after_load": r.ov.serve_health},
        "amplification": r.amp, "scale": r.scale, "idle": r.idle, "targets": targets, "notes": r.notes,
        "activity_log_cost": r.log_cost,
    });
    save(&r.o.out, &doc);
    doc
}

/// Writes the results file (its directory made first) and says where.
fn save(path: &Path, doc: &Value) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(path, serde_json::to_string_pretty(doc).expect("JSON"))
        .expect("results written");
    println!("results: {}", path.display());
}

/// One target's line: met or MISS, what it is, what was measured.
fn target_line(out: &mut String, x: &Value) {
    let mark = if x["met"] == true { "met " } else { "MISS" };
    let _ = writeln!(
        out,
        "   [{mark}] {:<46} {}",
        x["target"].as_str().unwrap_or(""),
        x["measured"].as_str().unwrap_or("")
    );
}

/// `--only log`: section 1c's line and JSON (`{"activity_log_cost": …}`).
pub(crate) fn write_log_cost(o: &Opts, v: &Value) {
    let mut out = String::new();
    log_cost_line(&mut out, v);
    print!("{out}");
    if let Some(dir) = o.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let doc = json!({ "activity_log_cost": v, "generated_at": chrono::Utc::now().to_rfc3339() });
    std::fs::write(&o.out, serde_json::to_string_pretty(&doc).expect("JSON"))
        .expect("results written");
    println!("results: {}", o.out.display());
}

/// 1c: CPU a request with the request log on and off.
fn log_cost_line(out: &mut String, v: &Value) {
    let n = |k: &str| v[k].as_f64().map_or("-".into(), |x| f(x, 1));
    let _ = writeln!(
        out,
        "\nRequest log (issue 19), small c=16, median of {} rounds: serve CPU {} µs/req with the log, {} without: {} % added, median of the paired rounds (target ≤ 3 %)",
        v["rounds"], n("cpu_us_per_req_on"), n("cpu_us_per_req_off"), n("added_cpu_percent")
    );
}

/// `--only ROWS`: section 1's table (and 1b's), the issue-18 target lines of those rows, and a
/// JSON of rows, ratios and cells.
pub(crate) fn write_rows(o: &Opts, started: Instant, ov: &Overhead, notes: &[String]) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nCodex Vault bench — rows {} only, {} s per cell ({} cores)",
        o.only_rows.as_deref().unwrap_or_default().join(", "),
        o.secs,
        cores()
    );
    let ratios = overhead_table(&mut out, &ov.cells);
    let hold = hold_table(&mut out, &ov.hold_rounds, o.hold_rounds);
    let stable = schema::ratios(&ov.cells, &hold);
    let _ = writeln!(
        out,
        "\nTargets against nginx (issue 18; rows not run show n/a)"
    );
    for x in nginx_targets(&stable) {
        if x["measured"].as_str().is_some_and(|m| m.contains("n/a")) {
            continue;
        }
        target_line(&mut out, &x);
    }
    // The footprint too: an allocator or buffer change is judged on memory as well as CPU.
    let _ = writeln!(
        out,
        "serve RSS: idle {} MB, c=64 peak {} MB, VmHWM {} MB, after the load {} MB",
        f(ov.idle_rss, 1),
        f(ov.load_rss, 1),
        f(ov.hwm, 1),
        f(ov.rss_after, 1)
    );
    for n in notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(
        out,
        "(rows only: {} s)",
        f(started.elapsed().as_secs_f64(), 0)
    );
    print!("{out}");
    let (rows, extra_rows) = schema::rows(&ov.cells);
    let doc = json!({
        "rows": rows, "extra_rows": extra_rows, "ratios": stable, "sections": ["overhead"],
        "only_rows": o.only_rows, "generated_at": chrono::Utc::now().to_rfc3339(),
        "machine": {"cores": cores()}, "overhead": ov.cells, "overhead_ratios": ratios,
        "first_byte_hold": hold, "notes": notes,
    });
    save(&o.out, &doc);
}

/// `--only idle`: section 5's lines and targets, and a JSON of that section alone.
pub(crate) fn write_idle(o: &Opts, started: Instant, idle: &Value) {
    let mut out = String::new();
    idle_lines(&mut out, idle);
    let targets = idle_targets(idle);
    let _ = writeln!(out, "\nTargets (idle wake-ups: issue 17)");
    for x in &targets {
        target_line(&mut out, x);
    }
    let _ = writeln!(
        out,
        "(idle section only: {} s)",
        f(started.elapsed().as_secs_f64(), 0)
    );
    print!("{out}");
    let doc = json!({
        "idle_wakeups_per_min": schema::idle_wakeups(idle),
        "generated_at": chrono::Utc::now().to_rfc3339(),
        "machine": {"cores": cores()},
        "sections": ["idle"], "idle": idle, "targets": targets,
    });
    save(&o.out, &doc);
}

/// Section 1's table; returns its ratios (serve against direct and nginx).
fn overhead_table(out: &mut String, cells: &[Cell]) -> Vec<Value> {
    let _ = writeln!(out, "\n1. Endpoint overhead        {:>30} | {:>30} | {:>30} | serve vs direct      | serve/nginx | +1st byte", "direct (upstream alone)", "codex-vault serve", "nginx");
    let _ = writeln!(out, "   payload   c     {:>8} {:>7} {:>7} {:>5} | {:>8} {:>7} {:>7} {:>5} | {:>8} {:>7} {:>7} {:>5} | +p50ms +p99ms  thr  |  thr        | ms", "req/s", "p50ms", "p99ms", "cpuµs", "req/s", "p50ms", "p99ms", "cpuµs", "req/s", "p50ms", "p99ms", "cpuµs");
    let _ = writeln!(out, "   (cpuµs: CPU a request, utime + stime of the column's own processes over the measured window)");
    for p in PAYLOADS {
        let _ = writeln!(out, "   {:<10} = {}", p.key(), p.name());
    }
    let mut ratios = Vec::new();
    for p in PAYLOADS {
        for c in CONCURRENCIES {
            let d = get(cells, "direct", p.key(), c);
            let s = get(cells, "serve", p.key(), c);
            let n = get(cells, "nginx", p.key(), c);
            let (Some(d), Some(s)) = (d, s) else { continue };
            ratios.push(ratio_row(out, p, c, (d, s, n)));
        }
    }
    ratios
}

fn ratio_row(
    out: &mut String,
    p: Payload,
    c: usize,
    (d, s, n): (&Cell, &Cell, Option<&Cell>),
) -> Value {
    let trip = |x: Option<&Cell>| match x {
        Some(x) => format!(
            "{:>8} {:>7} {:>7} {:>5}",
            f(x.report.rps, 0),
            f(x.report.p50_ms, 3),
            f(x.report.p99_ms, 3),
            x.cpu_us_per_req()
                .map(|v| f(v, 0))
                .unwrap_or_else(|| "-".into())
        ),
        None => format!("{:>8} {:>7} {:>7} {:>5}", "-", "-", "-", "-"),
    };
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
    for x in [Some(d), Some(s), n].into_iter().flatten() {
        if !schema::cell_ok(x) {
            let _ = writeln!(
                out,
                "   ^ FAILED: {} {} c={c}: {} requests, {} non-2xx, {} errors in all",
                x.side,
                p.key(),
                x.report.requests,
                x.report.non_2xx,
                x.report.errors
            );
        }
    }
    json!({
        "payload": p.key(), "concurrency": c,
        "added_p50_ms": add50, "added_p99_ms": add99,
        "throughput_vs_direct": thr_d, "throughput_vs_nginx": thr_n,
        "added_first_byte_p50_ms": fb,
        "added_first_byte_p99_ms": s.report.first_byte_p99_ms - d.report.first_byte_p99_ms,
        "nginx_added_p50_ms": n.map(|n| n.report.p50_ms - d.report.p50_ms),
        "nginx_added_first_byte_p50_ms": n.map(|n| n.report.first_byte_p50_ms - d.report.first_byte_p50_ms),
        "cpu_us_per_req": {"fake": d.fake_cpu_us_per_req, "serve": s.proxy_cpu_us_per_req, "nginx": n.and_then(|n| n.proxy_cpu_us_per_req)},
    })
}

fn cpu_line(out: &mut String, cells: &[Cell]) {
    let per_payload = PAYLOADS
        .iter()
        .map(|p| p.key())
        .map(|p| {
            let v = |side: &str| {
                get(cells, side, p, 64).map(|c| {
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
        .join("; ");
    let _ = writeln!(
        out,
        "   CPU per request (µs, /proc utime+stime), c=64: {per_payload}"
    );
}

fn hold_table(
    out: &mut String,
    hold_rounds: &[(Payload, Vec<(Cell, Cell)>)],
    n: usize,
) -> Vec<Value> {
    let mut hold = Vec::new();
    let _ = writeln!(out, "\n1b. First-byte hold, c=1: serve with the hold on (default) and off (`{HOLD_SETTING} = off`), {n} rounds in alternating order, medians");
    let _ = writeln!(
        out,
        "   payload     hold on p50  hold off p50  added p50 (ms) | 1st byte on  off  added (ms)"
    );
    for (p, rounds) in hold_rounds.iter().filter(|(_, r)| !r.is_empty()) {
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
    hold
}

fn amp_lines(out: &mut String, amp: &[Value]) {
    let _ = writeln!(
        out,
        "\n2. Refresh amplification (token endpoint slowed to hold the refresh in flight)"
    );
    for a in amp {
        if a["kind"] == "endpoint" {
            let _ = writeln!(out, "   {:>5} concurrent requests via serve → {} refresh call(s) at the fake; {} answered 200, {} waited for the refresh",
                a["concurrent_requests"], a["refresh_calls"], a["answered_200"], a["waited_for_refresh"]);
        } else {
            let _ = writeln!(out, "   {:>5} `codex-vault token` processes racing → {} refresh call(s); {} succeeded, {} distinct token(s)",
                a["processes"], a["refresh_calls"], a["succeeded"], a["distinct_tokens"]);
        }
    }
}

fn scale_lines(out: &mut String, scale: &Value, ov: &Overhead) {
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    let _ = writeln!(out, "\n3. Scale ({} accounts)", scale["accounts"]);
    let _ = writeln!(
        out,
        "   start → listening {} ms, → /health answers {} ms (endpoint sees {} accounts)",
        f(num(&scale["start_to_listening_ms"]), 1),
        f(num(&scale["start_to_ready_ms"]), 1),
        scale["endpoint_accounts"]
    );
    let _ = writeln!(
        out,
        "   idle: scheduler wake-ups {}/min, thread wake-ups (context switches) {}/min",
        f(num(&scale["scheduler_wakeups_per_min"]), 1),
        f(num(&scale["thread_wakeups_per_min"]), 0)
    );
    let _ = writeln!(out, "   selection per request: {} µs new conversation, {} µs affinity hit, {} µs pinned (1 account: {} µs)",
        f(num(&scale["select_1000"]["new_conversation_us"]), 2), f(num(&scale["select_1000"]["affinity_hit_us"]), 2),
        f(num(&scale["select_1000"]["pinned_us"]), 2), f(num(&scale["select_1"]["new_conversation_us"]), 3));
    let _ = writeln!(
        out,
        "   `accounts list --json`: {} ms (median of 7, {} accounts listed)",
        f(num(&scale["accounts_list_json_ms"]), 1),
        scale["accounts_listed"]
    );
    let _ = writeln!(out, "\n4. Footprint: serve RSS idle {} MB (1 account), {} MB (with {} accounts); peak under c=64 load {} MB (VmHWM {} MB); keychain reads per process: serve {} (after load), {} (1,000 accounts)",
        f(ov.idle_rss, 1), f(num(&scale["idle_rss_mb"]), 1), scale["accounts"], f(ov.load_rss, 1), f(ov.hwm, 1), ov.serve_health["process"]["keychain_reads"], scale["keychain_reads"]);
}

fn idle_lines(out: &mut String, idle: &Value) {
    let _ = writeln!(
        out,
        "\n5. Idle wake-ups (voluntary + involuntary context switches of the threads, /proc/<pid>/task/*/status, over {} s)",
        idle["window_s"]
    );
    for row in ["serve", "app_core"] {
        let v = &idle[row];
        match v["wakeups_per_min"].as_f64() {
            Some(w) => {
                let _ = writeln!(
                    out,
                    "   {:<34} {:>8}/min  ({} threads counted)",
                    v["what"].as_str().unwrap_or(row),
                    f(w, 1),
                    v["threads"]
                );
                per_thread_lines(out, &v["per_thread_per_min"]);
            }
            None => {
                let _ = writeln!(
                    out,
                    "   {:<34} skipped: {}",
                    row,
                    v["skipped"].as_str().unwrap_or("?")
                );
            }
        }
    }
    if let Some(ms) = idle["pickup_ms"].as_f64() {
        let _ = writeln!(out, "   cross-process pickup: an account imported by a separate CLI process shows in serve's /v1/accounts after {} ms", f(ms, 0));
    }
}

/// The busiest thread names of one idle row, most wake-ups first (the rest summed).
fn per_thread_lines(out: &mut String, per: &Value) {
    let Some(map) = per.as_object() else { return };
    let mut rows: Vec<(&String, f64)> = map
        .iter()
        .map(|(k, v)| (k, v.as_f64().unwrap_or(0.0)))
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, w) in rows.iter().take(6) {
        let _ = writeln!(out, "      {name:<31} {:>8}/min", f(*w, 1));
    }
    if rows.len() > 6 {
        let rest: f64 = rows[6..].iter().map(|r| r.1).sum();
        let _ = writeln!(
            out,
            "      ({} more threads) {:>22}/min",
            rows.len() - 6,
            f(rest, 1)
        );
    }
}

fn ratio(ratios: &[Value], p: &str, c: usize) -> Value {
    ratios
        .iter()
        .find(|x| x["payload"] == p && x["concurrency"] == c)
        .cloned()
        .unwrap_or(Value::Null)
}

fn target(name: &str, ok: bool, got: String) -> Value {
    json!({"target": name, "met": ok, "measured": got})
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Targets of the overhead cells (issue 8), against nginx (issue 18: from the stable `ratios`)
/// and of the first-byte hold (issue 16).
fn perf_targets(ratios: &[Value], stable: &Value) -> Vec<Value> {
    let r = |p: &str, c: usize| ratio(ratios, p, c);
    let add50_c1 = num(&r("small", 1)["added_p50_ms"]);
    // First byte without queueing (c=1); the c=16/64 figures are in the table.
    let fb = num(&r("sse200", 1)["added_first_byte_p50_ms"]);
    let fb14 = num(&r("sse14", 1)["added_first_byte_p50_ms"]);
    let mut t = vec![
        target(
            "added p50 ≤ 0.25 ms at c=1",
            add50_c1 <= 0.25,
            format!(
                "{} ms small (SSE: {} 14 ev., {} fake, {} static; 80 KB turn: {})",
                f(add50_c1, 3),
                f(num(&r("sse14", 1)["added_p50_ms"]), 3),
                f(num(&r("sse200", 1)["added_p50_ms"]), 3),
                f(num(&r("sse-static", 1)["added_p50_ms"]), 3),
                f(num(&r("turn80k", 1)["added_p50_ms"]), 3)
            ),
        ),
        target(
            "added first SSE byte ≤ 1 ms (p50, c=1)",
            fb <= 1.0 && (fb14.is_nan() || fb14 <= 1.0),
            format!("{} ms fake, {} ms 14 ev. static", f(fb, 3), f(fb14, 3)),
        ),
    ];
    t.extend(nginx_targets(stable));
    let hold = &stable["hold_added_p50_ms_c1"];
    let holds: Vec<f64> = HOLD_PAYLOADS.iter().map(|p| num(&hold[p.key()])).collect();
    t.push(target(
        "first-byte hold ≤ 0.1 ms p50 at c=1",
        holds.iter().all(|h| *h <= 0.1),
        HOLD_PAYLOADS
            .iter()
            .zip(&holds)
            .map(|(p, h)| format!("{} ms {}", f(*h, 3), p.key()))
            .collect::<Vec<_>>()
            .join(", ")
            + " (added p50, hold on − off)",
    ));
    t
}

/// Issue 18's targets, one line per row: a missing or failed cell (null ratio) is a miss.
fn nginx_targets(stable: &Value) -> Vec<Value> {
    let v = |key: &str, p: &str, c: &str| stable[key][p][c].as_f64();
    let shown = |x: Option<f64>| x.map(|x| f(x, 2)).unwrap_or_else(|| "n/a".into());
    let mut t = Vec::new();
    for p in schema::THROUGHPUT_ROWS {
        let xs = [
            v("throughput_vs_nginx", p, "c16"),
            v("throughput_vs_nginx", p, "c64"),
        ];
        t.push(target(
            &format!("{p}: req/s ≥ 1.0× nginx, c=16 / 64"),
            xs.iter().all(|x| x.is_some_and(|x| x >= 1.0)),
            format!("{}× / {}×", shown(xs[0]), shown(xs[1])),
        ));
    }
    for p in schema::ROW_NAMES {
        let xs = [v("p99_vs_nginx", p, "c16"), v("p99_vs_nginx", p, "c64")];
        t.push(target(
            &format!("{p}: p99 ≤ 1.5× nginx's, c=16 / 64"),
            xs.iter().all(|x| x.is_some_and(|x| x <= 1.5)),
            format!("{}× / {}×", shown(xs[0]), shown(xs[1])),
        ));
    }
    for p in schema::ROW_NAMES {
        let x = stable["added_p50_vs_nginx_c1"][p].as_f64();
        let added = &stable["added_p50_ms_c1"][p];
        t.push(target(
            &format!("{p}: added p50 ≤ 1.5× nginx's, c=1"),
            x.is_some_and(|x| x <= 1.5),
            format!(
                "{}× (serve +{} ms, nginx +{} ms)",
                shown(x),
                f(num(&added["serve"]), 3),
                f(num(&added["nginx"]), 3)
            ),
        ));
    }
    t
}

/// Targets of refresh, scale, footprint (issue 8) and idle wake-ups (issue 17).
fn other_targets(r: &Results) -> Vec<Value> {
    let (scale, ov) = (r.scale, r.ov);
    let ready = num(&scale["start_to_ready_ms"]);
    let wake = num(&scale["scheduler_wakeups_per_min"]);
    let keychain = &ov.serve_health["process"]["keychain_reads"];
    let added = num(&r.log_cost["added_cpu_percent"]);
    let mut t = vec![
        target(
            "request log ≤ 3 % of a request's CPU (small c=16)",
            added <= 3.0,
            format!("{} % added", f(added, 1)),
        ),
        target(
            "refresh calls = 1 in every amplification case",
            r.amp.iter().all(|a| a["target_met"] == true),
            r.amp
                .iter()
                .map(|a| a["refresh_calls"].to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        target(
            "1,000 accounts ready < 1 s",
            ready < 1000.0,
            format!("{} ms", f(ready, 1)),
        ),
        target(
            "idle scheduler wake-ups ≈ 0",
            wake <= 1.5,
            format!("{}/min (sleep cap 60 s)", f(wake, 1)),
        ),
        target(
            "idle RSS < 40 MB",
            ov.idle_rss < 40.0,
            format!("{} MB", f(ov.idle_rss, 1)),
        ),
        target(
            "keychain reads per process = 1",
            *keychain == 1 && scale["keychain_reads"] == 1,
            format!("{}, {}", keychain, scale["keychain_reads"]),
        ),
    ];
    t.extend(idle_targets(r.idle));
    t
}

/// Section 5's targets (issue 17).
fn idle_targets(idle: &Value) -> Vec<Value> {
    let mut t = Vec::new();
    for (row, name) in [
        ("serve", "idle serve wake-ups ≤ 10/min (5 accounts)"),
        ("app_core", "idle app core wake-ups ≤ 10/min"),
    ] {
        if let Some(w) = idle[row]["wakeups_per_min"].as_f64() {
            t.push(target(name, w <= 10.0, format!("{}/min", f(w, 1))));
        }
    }
    if let Some(ms) = idle["pickup_ms"].as_f64() {
        t.push(target(
            "cross-process pickup < 1 s",
            ms < 1000.0,
            format!("{} ms", f(ms, 0)),
        ));
    }
    t
}
