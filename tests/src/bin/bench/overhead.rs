//! Section 1 (endpoint overhead, side by side: the fake alone, `serve`, nginx; the fake's and a
//! static upstream) and 1b (the first-byte hold on / off), with serve's footprint around them.

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
            if p.static_upstream() != side.static_upstream {
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

/// The fake alone and `serve` in front of it (hold on, and its twin with the hold off); also
/// serve's idle RSS once both answer.
async fn fake_columns(o: &Opts, tmp: &Path, fake: &Fake, t: &IssuedTokens) -> (Columns, f64) {
    let vault = Vault::new(o, tmp, "vault-overhead", fake);
    vault.import(t, "bench", chrono::Duration::zero());
    let key = vault.key();
    let (serve, serve_base, _) = vault.serve("serve-overhead.log");
    let serve_pid = serve.pid();
    let (serve_off, serve_off_base, key_off) =
        serve_hold_off(o, tmp, "vault-hold-off", fake, t, None);
    let serve_off_pid = serve_off.pid();
    let hold_off_sides = vec![Side {
        name: "serve (hold off)",
        static_upstream: false,
        base: serve_off_base.clone(),
        headers: bearer(&key_off),
        pids: Box::new(move || vec![serve_off_pid]),
    }];
    while health(&serve_base).await.is_none() || health(&serve_off_base).await.is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_mb(serve_pid);
    let sides = vec![
        Side {
            name: "direct",
            static_upstream: false,
            base: fake.base.clone(),
            headers: upstream_auth(t),
            pids: Box::new(Vec::new),
        },
        Side {
            name: "serve",
            static_upstream: false,
            base: serve_base.clone(),
            headers: bearer(&key),
            pids: Box::new(move || vec![serve_pid]),
        },
    ];
    let cols = Columns {
        sides,
        hold_off_sides,
        static_nginx: None,
        serve,
        serve_base,
        keep: Vec::new(),
        keep_procs: vec![serve_off],
    };
    (cols, idle_rss)
}

/// The static SSE upstream (the fake's own 200-event answer, saved and served by nginx), the
/// nginx proxy column in front of both upstreams, and `serve` (hold on and off) in front of the
/// static one.
async fn static_columns(
    o: &Opts,
    tmp: &Path,
    fake: &Fake,
    t: &IssuedTokens,
    cols: &mut Columns,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let st = start_static_upstream(o, tmp, &cols.sides[0]).await?;
    let st_base = st.bases[0].clone();
    cols.static_nginx = Some(Box::new(nginx_tree(st.proc.pid())));
    let extra = format!(
        "{}{}",
        upstream_block("fake", port_of(&fake.base)),
        upstream_block("static_sse", port_of(&st_base))
    );
    let proxies = [proxy_location("fake"), proxy_location("static_sse")];
    match start_nginx(tmp, "nginx-proxy", &extra, &proxies) {
        Ok(n) => {
            let pids = nginx_tree(n.proc.pid());
            for (static_upstream, base) in [(false, &n.bases[0]), (true, &n.bases[1])] {
                cols.sides.push(Side {
                    name: "nginx",
                    static_upstream,
                    base: base.clone(),
                    headers: upstream_auth(t),
                    pids: Box::new(pids),
                });
            }
            cols.keep.push(n);
        }
        Err(e) => notes.push(format!("nginx column skipped: {e}")),
    }
    // A second serve whose upstream is the static nginx (same account, valid token).
    let static_codex = format!("{st_base}/backend-api/codex");
    let vault2 = Vault::new(o, tmp, "vault-static", fake).upstream(static_codex.clone());
    vault2.import(t, "bench", chrono::Duration::zero());
    let key2 = vault2.key();
    let (serve2, serve2_base, _) = vault2.serve("serve-static.log");
    let serve2_pid = serve2.pid();
    cols.sides.push(Side {
        name: "direct",
        static_upstream: true,
        base: st_base,
        headers: upstream_auth(t),
        pids: Box::new(Vec::new),
    });
    cols.sides.push(Side {
        name: "serve",
        static_upstream: true,
        base: serve2_base,
        headers: bearer(&key2),
        pids: Box::new(move || vec![serve2_pid]),
    });
    let (serve2_off, serve2_off_base, key2_off) =
        serve_hold_off(o, tmp, "vault-static-hold-off", fake, t, Some(static_codex));
    let serve2_off_pid = serve2_off.pid();
    cols.hold_off_sides.push(Side {
        name: "serve (hold off)",
        static_upstream: true,
        base: serve2_off_base,
        headers: bearer(&key2_off),
        pids: Box::new(move || vec![serve2_off_pid]),
    });
    cols.keep_procs.push(serve2_off);
    cols.keep_procs.push(serve2);
    cols.keep.push(st);
    Ok(())
}

/// nginx serving the fake's own SSE answer as a static file.
async fn start_static_upstream(o: &Opts, tmp: &Path, direct: &Side<'_>) -> Result<Nginx, String> {
    let sse_doc = {
        let sp = spec(o, direct, Payload::Sse, 1);
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
    start_nginx(tmp, "nginx-static", "", &[static_loc])
}

/// The upstream processes charged for a payload's cells; `None` when that upstream is absent.
fn upstream_pids(cols: &Columns, payload: Payload, fake_pid: u32) -> Option<Vec<u32>> {
    match (payload.static_upstream(), &cols.static_nginx) {
        (true, Some(tree)) => Some(tree()),
        (true, None) => None,
        (false, _) => Some(vec![fake_pid]),
    }
}

async fn measure_cells(o: &Opts, cols: &Columns, fake_pid: u32) -> Vec<Cell> {
    let serve_pid = cols.serve.pid();
    let mut cells: Vec<Cell> = Vec::new();
    for payload in PAYLOADS {
        let group = payload.static_upstream();
        let Some(upstream_pids) = upstream_pids(cols, payload, fake_pid) else {
            continue;
        };
        for c in [1usize, 16, 64] {
            // Side by side, cell by cell: drift on a shared machine hits all columns alike.
            for side in cols.sides.iter().filter(|s| s.static_upstream == group) {
                let sp = (side.name == "serve" && !group).then_some(serve_pid);
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
    eprintln!("bench: first-byte hold on / off at c=1 ({HOLD_ROUNDS} rounds)");
    let mut hold_rounds = Vec::new();
    for payload in [Payload::Sse, Payload::SseStatic] {
        let group = payload.static_upstream();
        let Some(upstream_pids) = upstream_pids(cols, payload, fake_pid) else {
            continue;
        };
        let on = cols
            .sides
            .iter()
            .find(|s| s.name == "serve" && s.static_upstream == group);
        let off = cols
            .hold_off_sides
            .iter()
            .find(|s| s.static_upstream == group);
        let (Some(on), Some(off)) = (on, off) else {
            continue;
        };
        let mut rounds = Vec::new();
        for round in 0..HOLD_ROUNDS {
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
