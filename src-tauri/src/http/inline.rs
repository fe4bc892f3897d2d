//! The endpoint's client for a plain-HTTP upstream (`http://`, HTTP/1.1): hyper's connection
//! API with a pool of its own, where each connection is driven by the task that uses it.
//!
//! Why not hyper-util's pooled client here: it runs every connection in a task of its own and
//! hands each body chunk to the request's task through a channel, a task wake-up per chunk
//! (often across the runtime's two workers) on top of the socket's own. Here the request's
//! future polls the connection while it waits for the answer's head, and the answer's body
//! polls it while it streams (`Streaming`), so one task reads the upstream socket and writes the
//! client's, as a proxy like nginx does in one loop. Behaviour is the pooled client's: keep-alive
//! reuse, `Host` and origin-form request line, 10 s connect timeout, `TCP_NODELAY`, idle
//! connections kept 60 s, a request found unsent on a reused connection that had closed sent
//! once more on a new one.
//!
//! An idle connection is polled by no one, so an upstream's close of it is seen when it is
//! next taken (it is then dropped and another taken) or when it ages out of the pool; no timer
//! runs for it (idle is free).
//!
//! HTTPS upstreams keep hyper-util's client (`super::lean`): there TLS and HTTP/2 (one
//! connection multiplexing many requests, so a task of its own) are the norm.

use axum::body::Bytes;
use futures_util::Stream;
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::net::TcpStream;

pub type Body = Full<Bytes>;
type Conn = http1::Connection<TokioIo<TcpStream>, Body>;

/// Idle connections kept at most; more are closed when their answer ends (a burst's
/// connections beyond what the next burst reuses).
const MAX_IDLE: usize = 256;

/// Why a request got no answer; the message names neither the URL nor a header.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("error connecting: {0}")]
    Connect(std::io::Error),
    #[error("error connecting: connect timed out")]
    ConnectTimeout,
    #[error("error sending request: {}", describe(.0))]
    Send(hyper::Error),
}

fn describe(e: &hyper::Error) -> String {
    super::lean::with_causes(e.to_string(), std::error::Error::source(e))
}

/// One upstream's connections (host and port of a plain `http://` base).
pub struct Pool {
    host: String,
    port: u16,
    /// The `Host` header every request carries (the port only when it is not 80).
    host_header: axum::http::HeaderValue,
    /// One list per connection worker (`crate::workers`), and one for every other thread: a
    /// connection's socket belongs to the runtime it was opened on, so it is reused there only
    /// (on another worker, its I/O would wake the thread that opened it).
    idle: Vec<Mutex<VecDeque<Live>>>,
}

/// A connection: the handle requests are sent on and the connection future that does its I/O.
struct Live {
    tx: http1::SendRequest<Body>,
    /// `None` once the connection has finished (closed by either side, or failed).
    conn: Option<Conn>,
    idle_since: Instant,
}

impl Live {
    /// Lets the connection do its I/O, with this task's waker; notes when it has finished.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(conn) = self.conn.as_mut() {
            if Pin::new(conn).poll(cx).is_ready() {
                self.conn = None;
            }
        }
    }

    fn reusable(&self) -> bool {
        self.conn.is_some() && !self.tx.is_closed()
    }
}

impl Pool {
    /// For `authority` of an `http://` base; `None` when it names no host.
    pub fn new(authority: &axum::http::uri::Authority) -> Option<Arc<Pool>> {
        let host = authority.host();
        // `[::1]` is connected to as `::1`.
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if bare.is_empty() {
            return None;
        }
        let port = authority.port_u16().unwrap_or(80);
        // As hyper-util's client writes it: the port only when it is not the default.
        let host_header = if port == 80 {
            host.to_string()
        } else {
            format!("{host}:{port}")
        };
        Some(Arc::new(Pool {
            host: bare.to_string(),
            port,
            host_header: axum::http::HeaderValue::from_str(&host_header).ok()?,
            idle: (0..=crate::workers::count())
                .map(|_| Mutex::new(VecDeque::new()))
                .collect(),
        }))
    }

    /// Sends `req` (its URI in origin form: path and query) and returns the answer's head with
    /// its body streaming, the connection riding along with the body.
    pub async fn request(
        self: &Arc<Pool>,
        mut req: axum::http::Request<Body>,
    ) -> Result<axum::http::Response<Streaming>, Error> {
        req.headers_mut()
            .insert(axum::http::header::HOST, self.host_header.clone());
        loop {
            let (mut live, reused) = match self.take().await {
                Some(live) => (live, true),
                None => (self.connect().await?, false),
            };
            let sending = live.tx.try_send_request(req);
            let mut sending = std::pin::pin!(sending);
            let answered = poll_fn(|cx| {
                live.drive(cx);
                sending.as_mut().poll(cx)
            })
            .await;
            match answered {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let streaming = Streaming {
                        body,
                        live: Some(live),
                        pool: self.clone(),
                    };
                    return Ok(axum::http::Response::from_parts(parts, streaming));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: the reused connection had closed as it was taken.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(Error::Send(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that is still open, with this task's waker
    /// registered on it (so that its I/O wakes this task, not the one that used it last).
    async fn take(&self) -> Option<Live> {
        loop {
            let mut live = self.lock().pop_back()?;
            if live.idle_since.elapsed() > super::POOL_IDLE {
                continue;
            }
            let ready = poll_fn(|cx| {
                live.drive(cx);
                let open = live.reusable() && matches!(live.tx.poll_ready(cx), Poll::Ready(Ok(())));
                Poll::Ready(open)
            })
            .await;
            if ready {
                return Some(live);
            }
        }
    }

    async fn connect(&self) -> Result<Live, Error> {
        let connecting = TcpStream::connect((self.host.as_str(), self.port));
        let tcp = tokio::time::timeout(super::CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| Error::ConnectTimeout)?
            .map_err(Error::Connect)?;
        // Small writes (an SSE event) go out at once, as hyper-util's connector sets it.
        let _ = tcp.set_nodelay(true);
        let (tx, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(Error::Send)?;
        Ok(Live {
            tx,
            conn: Some(conn),
            idle_since: Instant::now(),
        })
    }

    fn put(&self, mut live: Live) {
        live.idle_since = Instant::now();
        let mut idle = self.lock();
        // The oldest ones are reached last (most recent first): aged ones go here.
        while idle
            .front()
            .is_some_and(|l| l.idle_since.elapsed() > super::POOL_IDLE)
        {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(live);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Live>> {
        // The deque is consistent after any panic (push and pop only). `slot()` never exceeds
        // `count()`; the `min` keeps that from being an index panic.
        let slot = crate::workers::slot().min(self.idle.len() - 1);
        self.idle[slot].lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.lock().len()
    }

    /// The `Host` every request carries.
    #[cfg(test)]
    pub(crate) fn host_header(&self) -> &axum::http::HeaderValue {
        &self.host_header
    }
}

/// An answer's body, with its connection: reading the body drives the connection, and the
/// connection goes back to the pool when the body has been read to its end (dropped earlier,
/// the connection is closed: HTTP/1 cannot abandon an answer and reuse the connection).
pub struct Streaming {
    body: Incoming,
    live: Option<Live>,
    pool: Arc<Pool>,
}

impl Streaming {
    /// The answer has been read to its end: the connection goes back to the pool, driven once
    /// more so that it takes in the end and readies itself for the next request (or notes a
    /// close).
    fn finish(&mut self, cx: &mut Context<'_>) {
        if let Some(mut live) = self.live.take() {
            live.drive(cx);
            if live.reusable() {
                self.pool.put(live);
            }
        }
    }
}

impl Stream for Streaming {
    type Item = Result<Bytes, hyper::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(live) = this.live.as_mut() {
                live.drive(cx);
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        // A body of a known length ends with its last byte: whoever writes it
                        // on (hyper's server, for one) may stop reading there and drop this.
                        if this.body.is_end_stream() {
                            this.finish(cx);
                        }
                        return Poll::Ready(Some(Ok(data)));
                    }
                    // Trailers: not passed on (as the pooled client's data stream does not).
                    Err(_) => continue,
                },
                Poll::Ready(Some(Err(e))) => {
                    this.live = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.finish(cx);
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A real HTTP/1.1 server on loopback: answers each request on a connection with `body`,
    /// closing the connection after `per_conn` answers (without saying so, as a server whose
    /// keep-alive timed out does, and saying on `closed` that it did); counts the connections it
    /// accepted, and checks the request line and Host of each request.
    async fn server(
        per_conn: usize,
        body: &'static str,
    ) -> (
        u16,
        Arc<AtomicUsize>,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for _ in 0..per_conn {
                        let mut chunk = [0u8; 4096];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            let n = sock.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        let head = String::from_utf8_lossy(&buf).to_string();
                        assert!(head.starts_with("GET /x HTTP/1.1\r\n"), "{head}");
                        assert!(head.contains(&format!("host: 127.0.0.1:{port}")), "{head}");
                        buf.clear();
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        sock.write_all(answer.as_bytes()).await.unwrap();
                    }
                    // Closed after the last answer; on loopback the FIN is in the client's
                    // socket once `drop` returns.
                    drop(sock);
                    let _ = closed_tx.send(());
                });
            }
        });
        (port, accepted, closed)
    }

    fn pool(port: u16) -> Arc<Pool> {
        Pool::new(&format!("127.0.0.1:{port}").parse().unwrap()).unwrap()
    }

    fn get() -> axum::http::Request<Body> {
        let mut req = axum::http::Request::new(Body::new(Bytes::new()));
        *req.uri_mut() = "/x".parse().unwrap();
        req
    }

    async fn body_of(resp: axum::http::Response<Streaming>) -> String {
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_reused_for_requests_one_after_another() {
        let (port, accepted, _closed) = server(100, "hello").await;
        let pool = pool(port);
        for _ in 0..3 {
            let resp = pool.request(get()).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(body_of(resp).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_body_of_known_length_returns_its_connection_with_its_last_byte() {
        let (port, accepted, _closed) = server(100, "sized").await;
        let pool = pool(port);
        for _ in 0..3 {
            let mut body = pool.request(get()).await.unwrap().into_body();
            let mut got = Vec::new();
            while got.len() < "sized".len() {
                got.extend_from_slice(&body.next().await.unwrap().unwrap());
            }
            // Dropped without being polled to its end, as hyper's server drops a body whose
            // announced length it has written.
            drop(body);
            assert_eq!(got, b"sized");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_pooled_connection_the_server_closed_is_not_used_again() {
        let (port, accepted, mut closed) = server(1, "once").await;
        let pool = pool(port);
        for _ in 0..3 {
            let resp = pool.request(get()).await.unwrap();
            assert_eq!(body_of(resp).await, "once");
            // The next request must find the close, not race it.
            closed.recv().await.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_does_not_return_its_connection() {
        let (port, accepted, _closed) = server(100, "a longer body").await;
        let pool = pool(port);
        let resp = pool.request(get()).await.unwrap();
        drop(resp);
        assert_eq!(pool.idle_count(), 0);
        let resp = pool.request(get()).await.unwrap();
        assert_eq!(body_of(resp).await, "a longer body");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_host_header_names_the_port_only_when_it_is_not_80() {
        for (authority, host) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("localhost:80", "localhost"),
            ("localhost", "localhost"),
            ("[::1]:7", "[::1]:7"),
        ] {
            let pool = Pool::new(&authority.parse().unwrap()).unwrap();
            assert_eq!(pool.host_header(), host, "{authority}");
        }
        let v6 = Pool::new(&"[::1]:7".parse().unwrap()).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 7));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error_without_the_address() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = pool(port).request(get()).await.err().expect("refused");
        let text = err.to_string();
        assert!(text.starts_with("error connecting: "), "{text}");
        assert!(!text.contains(&port.to_string()), "{text}");
    }
}
