//! The stable part of `results.json` (issue 18): `rows`, `ratios`, `idle_wakeups_per_min` and
//! `refresh_calls`, what a check may read; built from what the sections measured, and checked
//! (`check`, `bench --check PATH`). README.md § Benchmarks documents every key.

use super::*;

/// The schema's rows (payload keys) and targets (columns); conc: `CONCURRENCIES`.
pub(crate) const ROW_NAMES: [&str; 4] = ["small", "sse14", "sse200", "turn80k"];
pub(crate) const TARGETS: [&str; 3] = ["direct", "nginx", "serve"];
/// Rows whose throughput target (≥ 1.0× nginx at c=16 and c=64) the issue sets.
pub(crate) const THROUGHPUT_ROWS: [&str; 3] = ["small", "sse14", "sse200"];
const RATIO_KEYS: [&str; 5] = [
    "throughput_vs_nginx",
    "p99_vs_nginx",
    "added_p50_ms_c1",
    "added_p50_vs_nginx_c1",
    "hold_added_p50_ms_c1",
];
const REFRESH_KEYS: [&str; 4] = ["n1", "n100", "n1000", "processes4"];

/// A cell that ran and had no failed request (a non-2xx answer or a transport error).
pub(crate) fn cell_ok(c: &Cell) -> bool {
    c.report.requests > 0 && c.report.errors == 0
}

fn row(c: &Cell) -> Value {
    let r = &c.report;
    json!({"name": c.payload, "target": c.side, "conc": r.concurrency, "rps": r.rps,
           "p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "non_2xx": r.non_2xx,
           "ok": cell_ok(c), "requests": r.requests, "errors": r.errors,
           "cpu_us_per_req": c.cpu_us_per_req().filter(|v| v.is_finite()),
           "upstream_cpu_us_per_req": (c.side != "direct").then_some(c.fake_cpu_us_per_req)})
}

/// `rows`: the schema's payloads × targets × conc; `extra_rows`: the other payloads' cells
/// (`sse-static`) in the same shape.
pub(crate) fn rows(cells: &[Cell]) -> (Value, Value) {
    let (schema, extra): (Vec<&Cell>, Vec<&Cell>) = cells
        .iter()
        .filter(|c| TARGETS.contains(&c.side))
        .partition(|c| ROW_NAMES.contains(&c.payload));
    (
        schema.into_iter().map(row).collect(),
        extra.into_iter().map(row).collect(),
    )
}

fn ok_cell<'c>(cells: &'c [Cell], side: &str, p: &str, c: usize) -> Option<&'c Cell> {
    cells
        .iter()
        .find(|x| x.side == side && x.payload == p && x.report.concurrency == c)
        .filter(|x| cell_ok(x))
}

/// `a / b`, or null when either side is missing or failed, or `b` is not positive.
fn quotient(a: Option<f64>, b: Option<f64>) -> Value {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => json!(a / b),
        _ => Value::Null,
    }
}

fn per_conc(f: impl Fn(usize) -> Value) -> Value {
    let m: serde_json::Map<String, Value> = CONCURRENCIES
        .iter()
        .map(|c| (format!("c{c}"), f(*c)))
        .collect();
    Value::Object(m)
}

fn per_row(f: impl Fn(&str) -> Value) -> Value {
    let m: serde_json::Map<String, Value> =
        ROW_NAMES.iter().map(|p| (p.to_string(), f(p))).collect();
    Value::Object(m)
}

/// `ratios`: serve against nginx (and direct) per row, from the cells and the hold rounds'
/// per-payload summaries (`report::hold_table`'s `added_p50_ms`).
pub(crate) fn ratios(cells: &[Cell], hold: &[Value]) -> Value {
    let get = |side: &str, p: &str, c: usize| ok_cell(cells, side, p, c).map(|x| &x.report);
    let added = |side: &str, p: &str| {
        let (s, d) = (get(side, p, 1)?, get("direct", p, 1)?);
        Some(s.p50_ms - d.p50_ms)
    };
    json!({
        "throughput_vs_nginx": per_row(|p| per_conc(|c| quotient(
            get("serve", p, c).map(|r| r.rps), get("nginx", p, c).map(|r| r.rps)))),
        "p99_vs_nginx": per_row(|p| per_conc(|c| quotient(
            get("serve", p, c).map(|r| r.p99_ms), get("nginx", p, c).map(|r| r.p99_ms)))),
        "added_p50_ms_c1": per_row(|p| json!({"serve": added("serve", p), "nginx": added("nginx", p)})),
        "added_p50_vs_nginx_c1": per_row(|p| quotient(added("serve", p), added("nginx", p))),
        "hold_added_p50_ms_c1": HOLD_PAYLOADS.iter().map(|p| {
            let v = hold.iter().find(|h| h["payload"] == p.key()).map(|h| h["added_p50_ms"].clone());
            (p.key().to_string(), v.filter(|v| v.as_f64().is_some_and(f64::is_finite)).unwrap_or(Value::Null))
        }).collect::<serde_json::Map<_, _>>(),
    })
}

/// `idle_wakeups_per_min`: section 5's two rows (null when a row was skipped).
pub(crate) fn idle_wakeups(idle: &Value) -> Value {
    json!({
        "serve": idle["serve"]["wakeups_per_min"].as_f64(),
        "app_core": idle["app_core"]["wakeups_per_min"].as_f64(),
    })
}

/// `refresh_calls`: token calls at the fake per amplification case (`n<requests>`,
/// `processes<count>`).
pub(crate) fn refresh_calls(amp: &[Value]) -> Value {
    let m: serde_json::Map<String, Value> = amp
        .iter()
        .filter_map(|a| {
            let key = match a["kind"].as_str()? {
                "endpoint" => format!("n{}", a["concurrent_requests"]),
                _ => format!("processes{}", a["processes"]),
            };
            Some((key, a["refresh_calls"].clone()))
        })
        .collect();
    Value::Object(m)
}

fn num_or_null(v: &Value) -> bool {
    v.is_null() || v.as_f64().is_some_and(f64::is_finite)
}

fn check_row(r: &Value, problems: &mut Vec<String>) {
    let id = format!("row {} {} c={}", r["name"], r["target"], r["conc"]);
    for k in ["rps", "p50_ms", "p99_ms"] {
        if !r[k].as_f64().is_some_and(|v| v.is_finite() && v >= 0.0) {
            problems.push(format!("{id}: `{k}` is not a number ≥ 0"));
        }
    }
    // Older files have no CPU figure; when present it is a number ≥ 0 or null.
    if let Some(v) = r.get("cpu_us_per_req") {
        if !(v.is_null() || v.as_f64().is_some_and(|v| v.is_finite() && v >= 0.0)) {
            problems.push(format!(
                "{id}: `cpu_us_per_req` is not a number ≥ 0 or null"
            ));
        }
    }
    let Some(non_2xx) = r["non_2xx"].as_u64() else {
        problems.push(format!("{id}: `non_2xx` is not a count"));
        return;
    };
    match r["ok"].as_bool() {
        None => problems.push(format!("{id}: `ok` is not a boolean")),
        Some(true) if non_2xx > 0 => {
            problems.push(format!("{id}: {non_2xx} non-2xx answers yet `ok`"))
        }
        _ => {}
    }
}

/// Every schema row present once, well formed.
fn check_rows(doc: &Value, problems: &mut Vec<String>) {
    let Some(rows) = doc["rows"].as_array() else {
        problems.push("`rows` is not an array".into());
        return;
    };
    for name in ROW_NAMES {
        for target in TARGETS {
            for conc in CONCURRENCIES {
                let n = rows
                    .iter()
                    .filter(|r| r["name"] == name && r["target"] == target && r["conc"] == conc)
                    .count();
                if n != 1 {
                    problems.push(format!("row {name} {target} c={conc}: {n} entries, want 1"));
                }
            }
        }
    }
    for r in rows {
        let known = r["name"].as_str().is_some_and(|n| ROW_NAMES.contains(&n))
            && r["target"].as_str().is_some_and(|t| TARGETS.contains(&t))
            && r["conc"]
                .as_u64()
                .is_some_and(|c| CONCURRENCIES.contains(&(c as usize)));
        if !known {
            problems.push(format!(
                "unknown row {} {} c={}",
                r["name"], r["target"], r["conc"]
            ));
        }
        check_row(r, problems);
    }
}

fn check_ratios(doc: &Value, problems: &mut Vec<String>) {
    let ratios = &doc["ratios"];
    for key in RATIO_KEYS {
        if !ratios[key].is_object() {
            problems.push(format!("`ratios.{key}` is not an object"));
        }
    }
    for p in ROW_NAMES {
        for c in CONCURRENCIES {
            for key in ["throughput_vs_nginx", "p99_vs_nginx"] {
                if !num_or_null(&ratios[key][p][format!("c{c}")]) {
                    problems.push(format!("`ratios.{key}.{p}.c{c}` is not a number or null"));
                }
            }
        }
        let added = &ratios["added_p50_ms_c1"][p];
        if !(num_or_null(&added["serve"]) && num_or_null(&added["nginx"]) && added.is_object()) {
            problems.push(format!(
                "`ratios.added_p50_ms_c1.{p}` is not {{serve, nginx}}"
            ));
        }
        if !num_or_null(&ratios["added_p50_vs_nginx_c1"][p])
            || ratios["added_p50_vs_nginx_c1"].get(p).is_none()
        {
            problems.push(format!(
                "`ratios.added_p50_vs_nginx_c1.{p}` is not a number or null"
            ));
        }
    }
    for p in HOLD_PAYLOADS {
        let v = ratios["hold_added_p50_ms_c1"].get(p.key());
        if !v.is_some_and(num_or_null) {
            problems.push(format!(
                "`ratios.hold_added_p50_ms_c1.{}` is not a number or null",
                p.key()
            ));
        }
    }
}

fn check_idle_refresh(doc: &Value, problems: &mut Vec<String>) {
    for k in ["serve", "app_core"] {
        let v = doc["idle_wakeups_per_min"].get(k);
        if !v.is_some_and(num_or_null) {
            problems.push(format!(
                "`idle_wakeups_per_min.{k}` is not a number or null"
            ));
        }
    }
    for k in REFRESH_KEYS {
        if doc["refresh_calls"][k].as_u64().is_none() {
            problems.push(format!("`refresh_calls.{k}` is not a count"));
        }
    }
}

/// What is wrong with `doc` against the schema; with `ran`, also every row that failed or did
/// not run and every figure left null (the smoke's "it all ran", no timing asserted).
pub(crate) fn check(doc: &Value, ran: bool) -> Vec<String> {
    let mut problems = Vec::new();
    check_rows(doc, &mut problems);
    check_ratios(doc, &mut problems);
    check_idle_refresh(doc, &mut problems);
    if ran {
        for r in doc["rows"].as_array().into_iter().flatten() {
            if r["ok"] != true {
                problems.push(format!(
                    "row {} {} c={} failed: {} requests, {} errors, {} non-2xx",
                    r["name"], r["target"], r["conc"], r["requests"], r["errors"], r["non_2xx"]
                ));
            }
        }
        for k in ["serve", "app_core"] {
            if doc["idle_wakeups_per_min"][k].is_null() {
                problems.push(format!("idle row {k} did not run"));
            }
        }
    }
    problems
}

/// `bench --check PATH`: 0 when the file parses and passes `check` (without `ran`), else 1.
pub(crate) fn check_file(path: &Path) -> i32 {
    let doc: Value = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return 1;
        }
    };
    let problems = check(&doc, false);
    for p in &problems {
        eprintln!("{}: {p}", path.display());
    }
    if problems.is_empty() {
        println!("{}: matches the results schema", path.display());
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(side: &'static str, payload: &'static str, c: usize, rps: f64, non_2xx: u64) -> Cell {
        Cell {
            side,
            payload,
            report: Report {
                concurrency: c,
                requests: 100,
                errors: non_2xx,
                non_2xx,
                rps,
                p50_ms: 0.1 * c as f64,
                p99_ms: 0.2 * c as f64,
                ..Report::default()
            },
            fake_cpu_us_per_req: 40.0,
            proxy_cpu_us_per_req: (side != "direct").then_some(25.0),
            proxy_rss_peak_mb: None,
        }
    }

    fn doc(non_2xx_serve_small: u64) -> Value {
        let mut cells = Vec::new();
        for p in ROW_NAMES.iter().chain(&["sse-static"]) {
            for t in TARGETS {
                for c in CONCURRENCIES {
                    let bad = *p == "small" && t == "serve" && c == 16;
                    let n = if bad { non_2xx_serve_small } else { 0 };
                    cells.push(cell(t, p, c, 1000.0, n));
                }
            }
        }
        let hold = vec![json!({"payload": "sse200", "added_p50_ms": 0.01})];
        let amp = vec![
            json!({"kind": "endpoint", "concurrent_requests": 1, "refresh_calls": 1}),
            json!({"kind": "endpoint", "concurrent_requests": 100, "refresh_calls": 1}),
            json!({"kind": "endpoint", "concurrent_requests": 1000, "refresh_calls": 1}),
            json!({"kind": "processes", "processes": 4, "refresh_calls": 1}),
        ];
        let idle = json!({"serve": {"wakeups_per_min": 8.0}, "app_core": {"skipped": "no app"}});
        let (rows, extra) = rows(&cells);
        json!({"rows": rows, "extra_rows": extra, "ratios": ratios(&cells, &hold),
               "idle_wakeups_per_min": idle_wakeups(&idle), "refresh_calls": refresh_calls(&amp)})
    }

    #[test]
    fn a_full_run_matches_the_schema() {
        let d = doc(0);
        assert_eq!(check(&d, false), Vec::<String>::new());
        assert_eq!(d["rows"].as_array().map(Vec::len), Some(36));
        assert_eq!(d["extra_rows"].as_array().map(Vec::len), Some(9));
        assert_eq!(d["ratios"]["throughput_vs_nginx"]["sse14"]["c16"], 1.0);
        assert_eq!(d["ratios"]["hold_added_p50_ms_c1"]["sse200"], 0.01);
        assert!(d["ratios"]["hold_added_p50_ms_c1"]["sse14"].is_null());
        assert_eq!(d["refresh_calls"]["processes4"], 1);
        // Each row's CPU a request is its own target's: the upstream's for direct.
        let row = |t: &str| {
            d["rows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == "small" && r["target"] == t && r["conc"] == 16)
                .unwrap()
                .clone()
        };
        assert_eq!(row("direct")["cpu_us_per_req"], 40.0);
        assert_eq!(row("serve")["cpu_us_per_req"], 25.0);
        assert_eq!(row("serve")["upstream_cpu_us_per_req"], 40.0);
        // The skipped app row is null: fine for the schema, not for the smoke.
        assert_eq!(
            check(&d, true),
            vec!["idle row app_core did not run".to_string()]
        );
    }

    #[test]
    fn a_row_with_non_2xx_answers_is_failed_and_has_no_ratio() {
        let d = doc(3);
        let bad = d["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "small" && r["target"] == "serve" && r["conc"] == 16)
            .unwrap();
        assert_eq!(bad["ok"], false);
        assert_eq!(bad["non_2xx"], 3);
        assert!(d["ratios"]["throughput_vs_nginx"]["small"]["c16"].is_null());
        assert!(check(&d, false).is_empty());
        assert!(check(&d, true)
            .iter()
            .any(|p| p.contains("small") && p.contains("failed")));
    }

    #[test]
    fn missing_or_malformed_keys_are_reported() {
        let mut d = doc(0);
        d["rows"].as_array_mut().unwrap().remove(0);
        d["rows"][0]["rps"] = json!("fast");
        d["rows"][1]["ok"] = json!(true);
        d["rows"][1]["non_2xx"] = json!(2);
        d["rows"][2]["cpu_us_per_req"] = json!(-1.0);
        d["refresh_calls"].as_object_mut().unwrap().remove("n1000");
        d["ratios"].as_object_mut().unwrap().remove("p99_vs_nginx");
        let p = check(&d, false);
        assert!(
            p.iter().any(|x| x.contains("small direct c=1: 0 entries")),
            "{p:?}"
        );
        assert!(p.iter().any(|x| x.contains("`rps`")), "{p:?}");
        assert!(
            p.iter().any(|x| x.contains("non-2xx answers yet `ok`")),
            "{p:?}"
        );
        assert!(p.iter().any(|x| x.contains("refresh_calls.n1000")), "{p:?}");
        assert!(p.iter().any(|x| x.contains("`cpu_us_per_req`")), "{p:?}");
        assert!(p.iter().any(|x| x.contains("ratios.p99_vs_nginx")), "{p:?}");
    }
}
