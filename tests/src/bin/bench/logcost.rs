//! 1c. The request log's cost (issue 19: ≤ 3 % of a request's CPU): `serve` with the log on
//! (the default, as every other row runs it) against its twin with `activity.log = off`, the
//! small answer at c=16 from the fake, in alternating rounds; CPU µs a request of each serve
//! process, over the same window.

use super::*;

/// The log's switch (`codex_vault::activity::SETTING_ENABLED`).
const LOG_SETTING: &str = "activity.log";
const CONC: usize = 16;

fn side(o: &Opts, tmp: &Path, fake: &Fake, t: &IssuedTokens, on: bool) -> (Proc, Side<'static>) {
    let name = if on { "vault-log-on" } else { "vault-log-off" };
    let v = Vault::new(o, tmp, name, fake);
    v.import(t, "bench", chrono::Duration::zero());
    if !on {
        v.set(LOG_SETTING, "off");
    }
    let key = v.key();
    let (p, base, _) = v.serve(&format!("{name}.log"));
    let pid = p.pid();
    let side = Side {
        name: if on {
            "serve (log on)"
        } else {
            "serve (log off)"
        },
        group: Group::Fake,
        base,
        headers: vec![("authorization".into(), format!("Bearer {key}"))],
        pids: Box::new(move || vec![pid]),
    };
    (p, side)
}

pub(crate) async fn run(o: &Opts, tmp: &Path, fake: &Fake) -> Value {
    let rounds = if o.smoke { 1 } else { 3 };
    eprintln!("bench: request log on / off, small c={CONC} ({rounds} rounds)");
    let t = fake.new_account(false).await;
    let (p_on, on) = side(o, tmp, fake, &t, true);
    let (p_off, off) = side(o, tmp, fake, &t, false);
    while health(&on.base).await.is_none() || health(&off.base).await.is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let fake_pid = fake.proc.pid();
    let mut cells = Vec::new();
    for round in 0..rounds {
        let (a, b) = if round % 2 == 0 {
            (&on, &off)
        } else {
            (&off, &on)
        };
        let ca = measure(o, &[fake_pid], a, Payload::Small, CONC, None).await;
        let cb = measure(o, &[fake_pid], b, Payload::Small, CONC, None).await;
        let (c_on, c_off) = if round % 2 == 0 { (ca, cb) } else { (cb, ca) };
        eprintln!(
            "bench:   log round {round}: cpu µs/req on {:>6}, off {:>6}; req/s on {:>7}, off {:>7}",
            c_on.proxy_cpu_us_per_req.map_or("-".into(), |v| f(v, 1)),
            c_off.proxy_cpu_us_per_req.map_or("-".into(), |v| f(v, 1)),
            f(c_on.report.rps, 0),
            f(c_off.report.rps, 0)
        );
        cells.push((c_on, c_off));
    }
    drop((p_on, p_off));
    let med = |pick: &dyn Fn(&(Cell, Cell)) -> Option<f64>| -> Option<f64> {
        let mut v: Vec<f64> = cells.iter().filter_map(pick).collect();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let on_us = med(&|c| c.0.proxy_cpu_us_per_req);
    let off_us = med(&|c| c.1.proxy_cpu_us_per_req);
    let added = on_us.zip(off_us).map(|(a, b)| (a - b) / b * 100.0);
    json!({
        "payload": "small", "conc": CONC, "rounds": rounds,
        "cpu_us_per_req_on": on_us, "cpu_us_per_req_off": off_us,
        "added_cpu_percent": added,
        "rps_on": med(&|c| Some(c.0.report.rps)), "rps_off": med(&|c| Some(c.1.report.rps)),
        "non_2xx": cells.iter().map(|c| c.0.report.non_2xx + c.1.report.non_2xx).sum::<u64>(),
    })
}
