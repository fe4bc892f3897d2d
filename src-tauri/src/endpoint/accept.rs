//! The accept loop: each connection is handed to a connection worker (`crate::workers`: one
//! thread per core; a connection never changes threads) and served there by hyper's HTTP/1 with
//! a header-read timeout (`axum::serve` sets no timer, so it has none; its auto-detecting builder
//! would also wait untimed for a silent connection's first bytes), within a connection budget
//! derived from the process's file-descriptor limit, and closed with a lingering close after an
//! answer that refused a body the client may still be sending (marked `LingeringClose`).
//!
//! HTTP/1.1 only: axum is built with just `http1`, and local tools speak it to a plain
//! `http://127.0.0.1` URL. On stop, open connections finish the request in flight (graceful
//! shutdown).

use super::HEADER_READ_TIMEOUT;
use axum::Router;
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

/// After a failed `accept` (out of file descriptors): a pause, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Descriptors kept for everything that is not a served connection: SQLite (db, -wal, -shm),
/// the keychain's D-Bus socket, logs, the scheduler's and usage poller's upstream requests.
const RESERVED_FDS: u64 = 64;
const MIN_CONNECTIONS: usize = 16;
const MAX_CONNECTIONS: usize = 16 * 1024;
/// A lingering close reads (and drops) what the client still sends for at most this long and
/// this much, so it sees our answer rather than a reset, without our holding the socket long.
const LINGER_FOR: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 * 1024 * 1024;

/// How many connections the endpoint serves at once, and how many of them may be keyless
/// requests. Every served connection may hold a second descriptor (its upstream request), so the
/// budget is half of what the fd limit leaves after the reserve; keyless requests get at most
/// half of that, so keyed routes always keep the other half. Past the budget the accept loop
/// stops accepting (the kernel's backlog holds newcomers) instead of failing on `EMFILE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub connections: usize,
    pub keyless: usize,
}

impl Budget {
    pub fn for_fd_limit(soft_limit: u64) -> Budget {
        let connections = usize::try_from(soft_limit.saturating_sub(RESERVED_FDS) / 2)
            .unwrap_or(MAX_CONNECTIONS)
            .clamp(MIN_CONNECTIONS, MAX_CONNECTIONS);
        Budget {
            connections,
            keyless: (connections / 2).clamp(1, 256),
        }
    }

    /// From this process's soft `RLIMIT_NOFILE` now (1024 where it cannot be read).
    pub fn current() -> Budget {
        Budget::for_fd_limit(soft_fd_limit().unwrap_or(1024))
    }
}

#[cfg(unix)]
fn soft_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    // rlim_t is u64 on Linux and macOS; RLIM_INFINITY is u64::MAX, clamped by the budget.
    #[allow(clippy::unnecessary_cast, reason = "rlim_t is platform-defined")]
    Some(lim.rlim_cur as u64)
}

#[cfg(not(unix))]
fn soft_fd_limit() -> Option<u64> {
    None
}

/// Accepts connections until `stop`, at most `slots`' worth at once (shared by the v4 and v6
/// listeners), and hands each to a connection worker, which serves it to its end.
pub(super) async fn serve_listener(
    listener: tokio::net::TcpListener,
    workers: &'static crate::workers::ConnWorkers,
    app: Router,
    slots: Arc<Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::TokioTimer;

    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return, // closed: the endpoint is gone
            },
            _ = stopped(&mut stop) => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!("endpoint accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => return,
        };
        // SSE frames are small and must go out as produced (Nagle would hold them back).
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let app = app.clone();
        let stop = stop.clone();
        // `into_std` takes the socket out of this runtime's event loop; `from_std`, run on the
        // worker, puts it into the worker's.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("endpoint connection lost in the hand-over: {e}");
                continue;
            }
        };
        workers.pick().spawn(async move {
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => serve_connection(builder, stream, app, stop).await,
                Err(e) => tracing::debug!("endpoint connection lost in the hand-over: {e}"),
            }
            drop(slot);
        });
    }
}

/// A response extension (never sent): the answer refused a body the client may still be
/// sending, so the connection closes with a lingering close. Only for that: a connection shed
/// for load, or whose client is too slow, is closed at once.
#[derive(Debug, Clone, Copy)]
pub(super) struct LingeringClose;

/// The router behind hyper's `Service`, behind the Host/Origin guard, noting whether an answer
/// asked for a lingering close.
struct Watched {
    inner: hyper_util::service::TowerToHyperService<Router>,
    closing: Arc<AtomicBool>,
}

type Answer = Result<axum::response::Response, std::convert::Infallible>;

impl hyper::service::Service<hyper::Request<Incoming>> for Watched {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    // Boxed: `poll_without_shutdown` (which gives the socket back for the lingering close) needs
    // an `Unpin` future.
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        if let Some(refused) = super::routes::refused_browser(req.headers()) {
            return Box::pin(std::future::ready(Ok(refused)));
        }
        let fut = self.inner.call(req);
        let closing = self.closing.clone();
        Box::pin(async move {
            let resp = fut.await?;
            if resp.extensions().get::<LingeringClose>().is_some() {
                closing.store(true, Ordering::Relaxed);
            }
            Ok(resp)
        })
    }
}

async fn serve_connection(
    builder: hyper::server::conn::http1::Builder,
    stream: tokio::net::TcpStream,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::TokioIo;

    let closing = Arc::new(AtomicBool::new(false));
    let service = Watched {
        inner: hyper_util::service::TowerToHyperService::new(app),
        closing: closing.clone(),
    };
    let mut conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break r,
            _ = stopped(&mut stop), if !stopping => stopping = true,
        }
        Pin::new(&mut conn).graceful_shutdown();
    };
    match result {
        Ok(()) if closing.load(Ordering::Relaxed) => {
            let stream = conn.into_parts().io.into_inner();
            linger(stream).await;
        }
        // hyper did not shut the socket down (we asked it not to): dropping it closes it.
        Ok(()) => {}
        // A head not sent in time lands here too; the socket is closed.
        Err(e) => tracing::debug!("endpoint connection ended: {e}"),
    }
}

/// Sends our FIN, then reads and drops what the client still sends (a refused body) until it
/// closes, for a bounded time and amount: closing with unread data would send a reset, which can
/// destroy our answer in the client's receive buffer before it reads it.
async fn linger(mut stream: tokio::net::TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0usize;
        while total < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_FOR, drain).await;
}

/// Resolves once the endpoint stops (or is gone: a dropped sender).
pub(super) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_follows_the_fd_limit_and_keeps_half_for_keyed_routes() {
        // `ulimit -n 256`: the case that used to starve keyed routes.
        let small = Budget::for_fd_limit(256);
        assert_eq!(small.connections, 96);
        assert_eq!(small.keyless, 48);
        assert!(small.connections * 2 + RESERVED_FDS as usize <= 256);
        let common = Budget::for_fd_limit(1024);
        assert_eq!((common.connections, common.keyless), (480, 240));
        // Keyless stays bounded however large the limit.
        let huge = Budget::for_fd_limit(u64::MAX);
        assert_eq!(huge.connections, MAX_CONNECTIONS);
        assert_eq!(huge.keyless, 256);
        // A limit below the reserve still serves a few.
        assert_eq!(Budget::for_fd_limit(10).connections, MIN_CONNECTIONS);
    }
}
