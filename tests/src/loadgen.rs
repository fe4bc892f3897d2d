//! A small HTTP/1.1 load generator for `make bench` (also the `loadgen` binary).
//!
//! Each of `concurrency` workers owns one persistent connection (TCP_NODELAY) and sends one
//! request at a time on it, reading every answer to its end:
//! - **closed loop** (default): the next request leaves as soon as the previous answer ended;
//!   throughput is what the server sustains at that concurrency;
//! - **open loop** (`rate`): requests are scheduled at a fixed total rate, spread evenly over the
//!   workers, and latency is counted from the *scheduled* send time, so a stalled server is
//!   charged for the queue it causes (no coordinated omission, as in wrk2).
//!
//! Per request it records the total latency (request written → last body byte) and the time to
//! the first body byte (for an SSE answer: the first event). Only requests started after the
//! warm-up and before the deadline count. hyper directly, not reqwest: no pool, no retries, no
//! decompression hidden inside the measurement.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One load run.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Where to connect and what to ask for (`http://127.0.0.1:PORT/path?query`).
    pub url: String,
    pub method: Method,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Open loop at this many requests per second in all; `None`: closed loop.
    pub rate: Option<f64>,
    /// The status every answer must have; any other counts as an error.
    pub expect_status: u16,
}

/// What a run measured (milliseconds, requests per second).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub concurrency: usize,
    pub open_loop_rate: Option<f64>,
    pub requests: u64,
    /// Failed requests: transport errors and answers with another status than expected.
    pub errors: u64,
    /// Of `errors`, the answers whose status was not 2xx (the bench counts such a row as failed).
    #[serde(default)]
    pub non_2xx: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub first_byte_p50_ms: f64,
    pub first_byte_p99_ms: f64,
    pub bytes_per_request: f64,
    /// The first error seen, for the report (never carries a body: bodies may hold tokens).
    pub first_error: Option<String>,
}

/// A parsed `http://host:port/path` (plain HTTP on loopback is all the bench needs).
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub authority: String,
    pub path_and_query: String,
}

pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .map_err(|e| format!("{authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority}: no address"))?;
    Ok(Target {
        addr,
        authority: authority.to_string(),
        path_and_query: path.to_string(),
    })
}

type Sender = http1::SendRequest<Full<Bytes>>;

/// Opens one HTTP/1.1 connection; its driver task ends with the connection.
pub async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request's timings.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub status: u16,
    pub total: Duration,
    pub first_byte: Duration,
    pub bytes: u64,
}

fn build(spec: &Spec, target: &Target) -> Result<Request<Full<Bytes>>, String> {
    let mut b = Request::builder()
        .method(spec.method.clone())
        .uri(&target.path_and_query)
        .header(hyper::header::HOST, &target.authority);
    for (k, v) in &spec.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    if !spec.body.is_empty() {
        b = b.header(hyper::header::CONTENT_LENGTH, spec.body.len());
    }
    b.body(Full::new(spec.body.clone()))
        .map_err(|e| format!("request: {e}"))
}

/// Sends one request on `sender` and reads the answer to its end. `since` is when the request
/// counts as started (now for a closed loop, the scheduled time for an open one).
pub async fn send_one(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
    since: Instant,
) -> Result<Timing, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("not ready: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut first_byte = None;
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            if !data.is_empty() && first_byte.is_none() {
                first_byte = Some(since.elapsed());
            }
            bytes += data.len() as u64;
        }
    }
    let total = since.elapsed();
    Ok(Timing {
        status,
        total,
        first_byte: first_byte.unwrap_or(total),
        bytes,
    })
}

/// One request on a fresh connection (the bench's admin calls and bursts).
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    let target = parse_url(url)?;
    let mut sender = connect(target.addr).await?;
    let mut b = Request::builder()
        .method(method)
        .uri(&target.path_and_query)
        .header(hyper::header::HOST, &target.authority);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if !body.is_empty() {
        b = b.header(hyper::header::CONTENT_LENGTH, body.len());
    }
    let req = b
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    sender
        .ready()
        .await
        .map_err(|e| format!("not ready: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

#[derive(Default)]
struct WorkerResult {
    totals: Vec<u32>,
    first_bytes: Vec<u32>,
    bytes: u64,
    errors: u64,
    non_2xx: u64,
    first_error: Option<String>,
}

impl WorkerResult {
    fn record(&mut self, t: &Timing, expect_status: u16) {
        if t.status != expect_status {
            if !(200..300).contains(&t.status) {
                self.non_2xx += 1;
            }
            self.error(format!("status {}", t.status));
            return;
        }
        self.totals
            .push(t.total.as_micros().min(u32::MAX as u128) as u32);
        self.first_bytes
            .push(t.first_byte.as_micros().min(u32::MAX as u128) as u32);
        self.bytes += t.bytes;
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

async fn worker(spec: Spec, target: Target, index: usize, start: Instant) -> WorkerResult {
    let mut out = WorkerResult::default();
    let measure_from = start + spec.warmup;
    let deadline = measure_from + spec.duration;
    let mut sender: Option<Sender> = None;
    let mut k: u64 = 0;
    loop {
        // Open loop: request k of this worker is due at start + (k·c + index) / rate.
        let scheduled = spec.rate.map(|rate| {
            let slot = (k * spec.concurrency as u64 + index as u64) as f64 / rate;
            start + Duration::from_secs_f64(slot)
        });
        k += 1;
        if let Some(t) = scheduled {
            if t >= deadline {
                break;
            }
            tokio::time::sleep_until(t.into()).await;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let since = scheduled.unwrap_or(now);
        let counted = since >= measure_from;
        if sender.is_none() {
            match connect(target.addr).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    if counted {
                        out.error(e);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let req = match build(&spec, &target) {
            Ok(r) => r,
            Err(e) => {
                out.error(e);
                break;
            }
        };
        let Some(mut s) = sender.take() else { continue };
        // A server may close an idle keep-alive connection between two requests (nginx after
        // `keepalive_requests`): that is not a failed request; reconnect and send it then.
        if s.ready().await.is_err() {
            match connect(target.addr).await {
                Ok(fresh) => s = fresh,
                Err(e) => {
                    if counted {
                        out.error(e);
                    }
                    continue;
                }
            }
        }
        let s = sender.insert(s);
        match send_one(s, req, since).await {
            Ok(t) if counted => out.record(&t, spec.expect_status),
            Ok(_) => {}
            Err(e) => {
                sender = None;
                if counted {
                    out.error(e);
                }
            }
        }
    }
    out
}

fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[i.min(sorted_us.len() - 1)] as f64 / 1000.0
}

/// Runs `spec` on the current tokio runtime.
pub async fn run(spec: &Spec) -> Result<Report, String> {
    let target = parse_url(&spec.url)?;
    let start = Instant::now();
    let handles: Vec<_> = (0..spec.concurrency.max(1))
        .map(|i| tokio::spawn(worker(spec.clone(), target.clone(), i, start)))
        .collect();
    let mut all = WorkerResult::default();
    for h in handles {
        let r = h.await.map_err(|e| format!("worker: {e}"))?;
        all.totals.extend(r.totals);
        all.first_bytes.extend(r.first_bytes);
        all.bytes += r.bytes;
        all.errors += r.errors;
        all.non_2xx += r.non_2xx;
        if all.first_error.is_none() {
            all.first_error = r.first_error;
        }
    }
    // Measured window: from the end of the warm-up to the deadline (or the last answer, if later).
    let seconds = start
        .elapsed()
        .saturating_sub(spec.warmup)
        .as_secs_f64()
        .max(1e-3);
    all.totals.sort_unstable();
    all.first_bytes.sort_unstable();
    let n = all.totals.len() as u64;
    Ok(Report {
        concurrency: spec.concurrency,
        open_loop_rate: spec.rate,
        requests: n,
        errors: all.errors,
        non_2xx: all.non_2xx,
        seconds,
        rps: n as f64 / seconds,
        p50_ms: percentile_ms(&all.totals, 0.50),
        p90_ms: percentile_ms(&all.totals, 0.90),
        p99_ms: percentile_ms(&all.totals, 0.99),
        max_ms: percentile_ms(&all.totals, 1.0),
        first_byte_p50_ms: percentile_ms(&all.first_bytes, 0.50),
        first_byte_p99_ms: percentile_ms(&all.first_bytes, 0.99),
        bytes_per_request: if n == 0 {
            0.0
        } else {
            all.bytes as f64 / n as f64
        },
        first_error: all.first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.5), 51.0);
        assert_eq!(percentile_ms(&v, 0.99), 99.0);
        assert_eq!(percentile_ms(&v, 1.0), 100.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn urls_parse() {
        let t = parse_url("http://127.0.0.1:8080/a/b?c=1").unwrap();
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(t.path_and_query, "/a/b?c=1");
        assert!(parse_url("https://x").is_err());
    }
}
