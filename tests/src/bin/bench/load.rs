//! The overhead cells: payloads, the sides compared, one measured cell.

use super::*;

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Payload {
    Small,
    /// A fixed 14-event answer (the shape of a short Codex turn) from a static nginx upstream,
    /// proxied by a one-worker nginx: the row of issue 18's wrk table.
    Sse14,
    Sse,
    /// The same 200-event body from a static nginx upstream: the fake spends ≈ 7 µs per SSE
    /// event, which makes it the bottleneck of the SSE rows at c ≥ 16 on a small machine.
    SseStatic,
    /// A Codex-sized turn (≈ 80 KB: instructions, tools, history) to the static upstream: what
    /// the proxy does with a real request body (buffer it, read the conversation key, resend it).
    Turn80k,
}

pub(crate) const PAYLOADS: [Payload; 5] = [
    Payload::Small,
    Payload::Sse14,
    Payload::Sse,
    Payload::SseStatic,
    Payload::Turn80k,
];

/// Which upstream (and so which set of direct / serve / nginx columns) a payload goes through.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Group {
    /// The fake OpenAI.
    Fake,
    /// The static nginx serving the 200-event answer (proxied by the `workers = cores` nginx).
    Static,
    /// The static nginx serving the 14-event answer (proxied by a one-worker nginx).
    Static14,
}

impl Payload {
    pub(crate) fn group(self) -> Group {
        match self {
            Payload::Small | Payload::Sse => Group::Fake,
            Payload::SseStatic | Payload::Turn80k => Group::Static,
            Payload::Sse14 => Group::Static14,
        }
    }

    /// SSE events in one answer (`None`: not a stream).
    pub(crate) fn events(self) -> Option<usize> {
        match self {
            Payload::Small => None,
            Payload::Sse14 => Some(SSE14_EVENTS),
            Payload::Sse | Payload::SseStatic | Payload::Turn80k => Some(SSE_EVENTS),
        }
    }
}

/// A request body shaped like a Codex CLI turn, ≈ 80 KB.
pub(crate) fn codex_turn_body() -> String {
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
    pub(crate) fn name(self) -> &'static str {
        match self {
            Payload::Small => "small JSON (GET /models)",
            Payload::Sse14 => {
                "SSE, a fixed 14-event answer (a short Codex turn) from a static nginx upstream; nginx proxy: 1 worker"
            }
            Payload::Sse => "SSE, 200 events (POST /responses), fake upstream",
            Payload::SseStatic => {
                "the same 200-event SSE body from a static nginx upstream (one write, no per-event work)"
            }
            Payload::Turn80k => {
                "sse-static with an ≈ 80 KB Codex-like request body (instructions, tools, history)"
            }
        }
    }
    pub(crate) fn key(self) -> &'static str {
        match self {
            Payload::Small => "small",
            Payload::Sse14 => "sse14",
            Payload::Sse => "sse200",
            Payload::SseStatic => "sse-static",
            Payload::Turn80k => "turn80k",
        }
    }
}

pub(crate) struct Side<'a> {
    pub(crate) name: &'static str,
    /// Which payloads this side serves: those of one upstream.
    pub(crate) group: Group,
    pub(crate) base: String,
    pub(crate) headers: Vec<(String, String)>,
    /// Processes whose CPU the run is charged to (besides the fake).
    pub(crate) pids: Box<dyn Fn() -> Vec<u32> + 'a>,
}

pub(crate) fn spec(o: &Opts, side: &Side, payload: Payload, c: usize) -> Spec {
    let (method, path, body) = match payload {
        Payload::Small => (Method::GET, MODELS_PATH, Bytes::new()),
        Payload::Sse | Payload::SseStatic | Payload::Sse14 => (
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
pub(crate) async fn sanity(o: &Opts, side: &Side<'_>, payload: Payload) -> Result<(), String> {
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
    if let Some(want) = payload.events() {
        let events = String::from_utf8_lossy(&body).matches("\n\n").count();
        if events != want {
            return Err(format!(
                "{} {}: {events} SSE events, expected {want}",
                side.name,
                payload.key()
            ));
        }
    }
    Ok(())
}

#[derive(serde::Serialize, Clone)]
pub(crate) struct Cell {
    pub(crate) side: &'static str,
    pub(crate) payload: &'static str,
    pub(crate) report: Report,
    /// CPU time per request of the upstream (the fake, or the static nginx) and of the proxy
    /// (µs, utime + stime from /proc over the measured window, warm-up excluded).
    pub(crate) fake_cpu_us_per_req: f64,
    pub(crate) proxy_cpu_us_per_req: Option<f64>,
    /// Peak serve RSS sampled during the run (serve side only).
    pub(crate) proxy_rss_peak_mb: Option<f64>,
}

impl Cell {
    /// The CPU a request of this cell's own target: the upstream for `direct`, else the proxy
    /// (`rows[].cpu_us_per_req` in results.json).
    pub(crate) fn cpu_us_per_req(&self) -> Option<f64> {
        if self.side == "direct" {
            Some(self.fake_cpu_us_per_req)
        } else {
            self.proxy_cpu_us_per_req
        }
    }
}

/// Starts CPU meters on `upstream` and `proxy` once the warm-up is over (a thread sleeping
/// through it), so that the CPU counted covers the same window as the requests counted.
fn meters_after(
    warmup: f64,
    upstream: &[u32],
    proxy: &[u32],
) -> std::thread::JoinHandle<(CpuMeter, CpuMeter)> {
    let (upstream, proxy) = (upstream.to_vec(), proxy.to_vec());
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(warmup.max(0.0)));
        (CpuMeter::start(&upstream), CpuMeter::start(&proxy))
    })
}

fn rss_sampler(
    serve_pid: Option<u32>,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Option<std::thread::JoinHandle<f64>> {
    serve_pid.map(|pid| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak: f64 = 0.0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_mb(pid));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    })
}

pub(crate) async fn measure(
    o: &Opts,
    upstream_pids: &[u32],
    side: &Side<'_>,
    payload: Payload,
    c: usize,
    serve_pid: Option<u32>,
) -> Cell {
    let proxy_pids = (side.pids)();
    let meters = meters_after(o.warmup, upstream_pids, &proxy_pids);
    // Sample serve's RSS while the load runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = rss_sampler(serve_pid, &stop);
    let report = loadgen::run(&spec(o, side, payload, c))
        .await
        .unwrap_or_else(|e| panic!("load run {}: {e}", side.name));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.map(|h| h.join().unwrap_or(0.0));
    let (up_meter, proxy_meter) = meters.join().expect("CPU meter thread");
    let fake_cpu = up_meter.us_per(report.requests).unwrap_or(0.0);
    let proxy_cpu = proxy_meter.us_per(report.requests);
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
