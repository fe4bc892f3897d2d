//! Section 1 (endpoint overhead, side by side: the upstream alone, `serve`, nginx; the fake and
//! a static nginx upstream serving the 200- and the 14-event answer) and 1b (the first-byte hold
//! on / off), with serve's footprint around them.

use super::*;

/// The processes and sides of the overhead cells; dropping it stops them.
pub(crate) struct Columns {
    pub(crate) sides: Vec<Side<'static>>,
    pub(crate) hold_off_sides: Vec<Side<'static>>,
    /// The static nginx upstream's processes, when it runs.
    pub(crate) static_nginx: Option<Box<dyn Fn() -> Vec<u32>>>,
    pub(crate) serve: Proc,
    pub(crate) serve_base: String,
    pub(crate) keep: Vec<Nginx>,
    pub(crate) keep_procs: Vec<Proc>,
}

/// What sections 1 and 1b measured.
pub(crate) struct Overhead {
    pub(crate) cells: Vec<Cell>,
    pub(crate) hold_rounds: Vec<(Payload, Vec<(Cell, Cell)>)>,
    pub(crate) idle_rss: f64,
    pub(crate) serve_health: Value,
    pub(crate) rss_after: f64,
    pub(crate) hwm: f64,
    pub(crate) load_rss: f64,
}

fn nginx_tree(master: u32) -> impl Fn() -> Vec<u32> + Copy {
    move || {
        let mut v = children_of(master);
        v.push(master);
        v
    }
}

fn bearer(key: &str) -> Vec<(String, String)> {
    vec![("authorization".into(), format!("Bearer {key}"))]
}

fn upstream_auth(t: &IssuedTokens) -> Vec<(String, String)> {
    vec![
        (
            "authorization".to_string(),
            format!("Bearer {}", t.access_token),
        ),
        ("chatgpt-account-id".to_string(), t.account_id.clone()),
    ]
}

pub(crate) async fn run(o: &Opts, tmp: &Path, fake: &Fake, notes: &mut Vec<String>) -> Overhead {
    eprintln!(
        "bench: endpoint overhead ({} s per cell after {} s warm-up)",
        o.secs, o.warmup
    );
    let t = fake.new_account(false).await;
    let (mut cols, idle_rss) = fake_columns(o, tmp, fake, &t).await;
    if let Err(e) = static_columns(o, tmp, fake, &t, &mut cols, notes).await {
        notes.push(format!("nginx and static-upstream columns skipped: {e}"));
    }
    for side in cols.sides.iter().chain(&cols.hold_off_sides) {
        for p in PAYLOADS {
            if p.group() != side.group || !o.wants(p) {
                continue;
            }
            if let Err(e) = sanity(o, side, p).await {
                panic!("sanity check failed: {e}");
            }
        }
    }
    let fake_pid = fake.proc.pid();
    let cells = measure_cells(o, &cols, fake_pid).await;
    let hold_rounds = hold_cells(o, &cols, fake_pid).await;
    let serve_pid = cols.serve.pid();
    let serve_health = health(&cols.serve_base).await.unwrap_or(Value::Null);
    let rss_after = rss_mb(serve_pid);
    let hwm = proc_status_kb(serve_pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    let load_rss = cells
        .iter()
        .filter(|c| c.side == "serve" && c.report.concurrency == 64)
        .filter_map(|c| c.proxy_rss_peak_mb)
        .fold(0.0_f64, f64::max);
    drop(cols);
    Overhead {
        cells,
        hold_rounds,
        idle_rss,
        serve_health,
        rss_after,
        hwm,
        load_rss,
    }
}

/// A vault with account `t` whose `serve` goes to `upstream` (the fake when `None`), the first-
/// byte hold on (the default) or off; returns the process and its column.
fn serve_side(
    o: &Opts,
    tmp: &Path,
    fake: &Fake,
    t: &IssuedTokens,
    (name, upstream, group): (&str, Option<&str>, Group),
    hold: bool,
) -> (Proc, Side<'static>) {
    let mut v = Vault::new(o, tmp, name, fake);
    if let Some(u) = upstream {
        v = v.upstream(format!("{u}/backend-api/codex"));
    }
    v.import(t, "bench", chrono::Duration::zero());
    if !hold {
        v.set(HOLD_SETTING, "off");
    }
    let key = v.key();
    let (p, base, _) = v.serve(&format!("{name}.log"));
    let pid = p.pid();
    let side = Side {
        name: if hold { "serve" } else { "serve (hold off)" },
        group,
        base,
        headers: bearer(&key),
        pids: Box::new(move || vec![pid]),
    };
    (p, side)
}

/// The fake alone and `serve` in front of it (hold on, and its twin with the hold off); also
/// serve's idle RSS once both answer.
async fn fake_columns(o: &Opts, tmp: &Path, fake: &Fake, t: &IssuedTokens) -> (Columns, f64) {
    let on = ("vault-overhead", None, Group::Fake);
    let (serve, serve_side_on) = serve_side(o, tmp, fake, t, on, true);
    let off = ("vault-hold-off", None, Group::Fake);
    let (serve_off, serve_side_off) = serve_side(o, tmp, fake, t, off, false);
    let serve_base = serve_side_on.base.clone();
    while health(&serve_base).await.is_none() || health(&serve_side_off.base).await.is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_mb(serve.pid());
    let direct = Side {
        name: "direct",
        group: Group::Fake,
        base: fake.base.clone(),
        headers: upstream_auth(t),
        pids: Box::new(Vec::new),
    };
    let cols = Columns {
        sides: vec![direct, serve_side_on],
        hold_off_sides: vec![serve_side_off],
        static_nginx: None,
        serve,
        serve_base,
        keep: Vec::new(),
        keep_procs: vec![serve_off],
    };
    (cols, idle_rss)
}

/// The static SSE upstream (the fake's own 200- and 14-event answers, saved and served by
/// nginx), the nginx proxy columns in front of the upstreams, and `serve` in front of each
/// static one (the 14-event one also with the hold off).
async fn static_columns(
    o: &Opts,
    tmp: &Path,
    fake: &Fake,
    t: &IssuedTokens,
    cols: &mut Columns,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let st = start_static_upstream(o, tmp, fake, &cols.sides[0]).await?;
    let (st_base, st14_base) = (st.bases[0].clone(), st.bases[1].clone());
    cols.static_nginx = Some(Box::new(nginx_tree(st.proc.pid())));
    cols.keep.push(st);
    // Direct first in each row (README § Benchmarks), as for the fake's rows.
    for (group, base) in [(Group::Static, &st_base), (Group::Static14, &st14_base)] {
        cols.sides.push(Side {
            name: "direct",
            group,
            base: base.clone(),
            headers: upstream_auth(t),
            pids: Box::new(Vec::new),
        });
    }
    nginx_columns(tmp, fake, t, cols, (&st_base, &st14_base), notes);
    let on = ("vault-static", Some(st_base.as_str()), Group::Static);
    let on14 = ("vault-sse14", Some(st14_base.as_str()), Group::Static14);
    let off14 = (
        "vault-sse14-hold-off",
        Some(st14_base.as_str()),
        Group::Static14,
    );
    for (spec, hold) in [(on, true), (on14, true), (off14, false)] {
        let (p, side) = serve_side(o, tmp, fake, t, spec, hold);
        if hold {
            cols.sides.push(side);
        } else {
            cols.hold_off_sides.push(side);
        }
        cols.keep_procs.push(p);
    }
    Ok(())
}

/// The nginx reverse-proxy columns: `workers = cores` in front of the fake and the 200-event
/// static upstream, one worker in front of the 14-event one (as in issue 18's wrk table).
fn nginx_columns(
    tmp: &Path,
    fake: &Fake,
    t: &IssuedTokens,
    cols: &mut Columns,
    (st_base, st14_base): (&str, &str),
    notes: &mut Vec<String>,
) {
    let configs = [
        (
            "nginx-proxy",
            "auto",
            vec![
                (Group::Fake, "fake", port_of(&fake.base)),
                (Group::Static, "static_sse", port_of(st_base)),
            ],
        ),
        (
            "nginx-proxy-1w",
            "1",
            vec![(Group::Static14, "static_sse14", port_of(st14_base))],
        ),
    ];
    for (name, workers, upstreams) in configs {
        let extra: String = upstreams
            .iter()
            .map(|(_, u, port)| upstream_block(u, *port))
            .collect();
        let locations: Vec<String> = upstreams
            .iter()
            .map(|(_, u, _)| proxy_location(u))
            .collect();
        match start_nginx(tmp, name, workers, &extra, &locations) {
            Ok(n) => {
                let pids = nginx_tree(n.proc.pid());
                for ((group, _, _), base) in upstreams.iter().zip(&n.bases) {
                    cols.sides.push(Side {
                        name: "nginx",
                        group: *group,
                        base: base.clone(),
                        headers: upstream_auth(t),
                        pids: Box::new(pids),
                    });
                }
                cols.keep.push(n);
            }
            Err(e) => notes.push(format!("nginx column ({name}) skipped: {e}")),
        }
    }
}

/// One answer of the fake to `payload`'s request, with `deltas` text deltas in its stream.
async fn fake_answer(o: &Opts, fake: &Fake, direct: &Side<'_>, deltas: u64) -> Bytes {
    fake.admin(Method::POST, "/settings", json!({"stream_deltas": deltas}))
        .await;
    let sp = spec(o, direct, Payload::Sse, 1);
    let hdrs: Vec<(&str, &str)> = sp
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let doc = loadgen::request(sp.method.clone(), &sp.url, &hdrs, sp.body.clone())
        .await
        .expect("one SSE answer from the fake")
        .1;
    fake.admin(
        Method::POST,
        "/settings",
        json!({"stream_deltas": SSE_DELTAS}),
    )
    .await;
    doc
}

/// nginx serving the fake's own SSE answers as static files: the 200-event one (first server)
/// and the 14-event one (second server).
async fn start_static_upstream(
    o: &Opts,
    tmp: &Path,
    fake: &Fake,
    direct: &Side<'_>,
) -> Result<Nginx, String> {
    let static_dir = tmp.join("static");
    std::fs::create_dir_all(&static_dir).expect("static dir");
    let mut locations = Vec::new();
    for (file, deltas) in [("sse.txt", SSE_DELTAS), ("sse14.txt", SSE14_DELTAS)] {
        let doc = fake_answer(o, fake, direct, deltas).await;
        std::fs::write(static_dir.join(file), &doc).expect("static SSE body");
        // POST to a static file is a 405 in nginx; `error_page 405 =200 $uri` serves the file anyway.
        locations.push(format!(
            "            root {};\n            default_type \"text/event-stream; charset=utf-8\";\n            error_page 405 =200 $uri;\n            try_files /{file} =404;\n",
            static_dir.display()
        ));
    }
    start_nginx(tmp, "nginx-static", "auto", "", &locations)
}

/// The upstream processes charged for a payload's cells; `None` when that upstream is absent.
fn upstream_pids(cols: &Columns, payload: Payload, fake_pid: u32) -> Option<Vec<u32>> {
    match (payload.group(), &cols.static_nginx) {
        (Group::Fake, _) => Some(vec![fake_pid]),
        (_, Some(tree)) => Some(tree()),
        (_, None) => None,
    }
}

async fn measure_cells(o: &Opts, cols: &Columns, fake_pid: u32) -> Vec<Cell> {
    let serve_pid = cols.serve.pid();
    let mut cells: Vec<Cell> = Vec::new();
    for payload in PAYLOADS.into_iter().filter(|p| o.wants(*p)) {
        let group = payload.group();
        let Some(upstream_pids) = upstream_pids(cols, payload, fake_pid) else {
            continue;
        };
        for c in CONCURRENCIES {
            // Side by side, cell by cell: drift on a shared machine hits all columns alike.
            for side in cols.sides.iter().filter(|s| s.group == group) {
                let sp = (side.name == "serve" && group == Group::Fake).then_some(serve_pid);
                let cell = measure(o, &upstream_pids, side, payload, c, sp).await;
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
    cells
}

/// 1b. the first-byte hold (issue 16): serve as above (hold on) against its twin with
/// `endpoint.first_byte_hold = off`, c=1, in alternating order.
async fn hold_cells(o: &Opts, cols: &Columns, fake_pid: u32) -> Vec<(Payload, Vec<(Cell, Cell)>)> {
    eprintln!(
        "bench: first-byte hold on / off at c=1 ({} rounds)",
        o.hold_rounds
    );
    let mut hold_rounds = Vec::new();
    for payload in HOLD_PAYLOADS.into_iter().filter(|p| o.wants(*p)) {
        let group = payload.group();
        let Some(upstream_pids) = upstream_pids(cols, payload, fake_pid) else {
            continue;
        };
        let on = cols
            .sides
            .iter()
            .find(|s| s.name == "serve" && s.group == group);
        let off = cols.hold_off_sides.iter().find(|s| s.group == group);
        let (Some(on), Some(off)) = (on, off) else {
            continue;
        };
        let mut rounds = Vec::new();
        for round in 0..o.hold_rounds {
            let on_first = round % 2 == 0;
            let (a, b) = if on_first { (on, off) } else { (off, on) };
            let ca = measure(o, &upstream_pids, a, payload, 1, None).await;
            let cb = measure(o, &upstream_pids, b, payload, 1, None).await;
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
    hold_rounds
}
