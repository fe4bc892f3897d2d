//! Connections the fake can cut at will. `Fault::DropConnection` must close a TCP connection
//! without answering, and dropping the fake must end connections that still stream; a plain
//! `TcpListener` gives a handler no way to do either. Each accepted stream is wrapped with a
//! kill switch; once killed, its reads and writes fail, so hyper abandons the connection and the
//! socket closes with nothing written.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
pub(crate) struct KillSwitch {
    killed: AtomicBool,
    /// The tasks last blocked reading or writing: woken on kill so they see the error at once.
    wakers: Mutex<[Option<Waker>; 2]>,
}

impl KillSwitch {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        for w in wakers.iter_mut() {
            if let Some(w) = w.take() {
                w.wake();
            }
        }
    }

    fn check(&self, slot: usize, cx: &Context<'_>) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection dropped by the fake",
            ));
        }
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        match &wakers[slot] {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => wakers[slot] = Some(cx.waker().clone()),
        }
        Ok(())
    }
}

impl std::fmt::Debug for KillSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KillSwitch")
            .field("killed", &self.killed.load(Ordering::SeqCst))
            .finish()
    }
}

/// Per-connection info handed to handlers (through `ConnectInfo`).
#[derive(Clone, Debug)]
pub(crate) struct ConnHandle {
    pub remote: SocketAddr,
    pub kill: Arc<KillSwitch>,
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Every live connection, so shutdown can cut them all.
#[derive(Default)]
pub(crate) struct ConnRegistry {
    conns: Mutex<Vec<Weak<KillSwitch>>>,
}

impl ConnRegistry {
    fn register(&self, kill: &Arc<KillSwitch>) {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        conns.retain(|w| w.strong_count() > 0);
        conns.push(Arc::downgrade(kill));
    }

    pub fn kill_all(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(PoisonError::into_inner));
        for kill in conns.iter().filter_map(Weak::upgrade) {
            kill.kill();
        }
    }
}

pub(crate) struct KillableListener {
    pub inner: TcpListener,
    pub registry: Arc<ConnRegistry>,
}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, remote)) => {
                    // Small SSE frames must leave at once for streaming tests to mean anything.
                    let _ = stream.set_nodelay(true);
                    let kill = Arc::new(KillSwitch::default());
                    self.registry.register(&kill);
                    let handle = ConnHandle {
                        remote,
                        kill: kill.clone(),
                    };
                    return (
                        KillableStream {
                            inner: stream,
                            kill,
                        },
                        handle,
                    );
                }
                // Like axum's own listener: accept errors (EMFILE, aborted handshakes) are
                // transient; back off briefly instead of spinning.
                Err(e) => {
                    tracing::debug!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnHandle {
            remote: self.inner.local_addr()?,
            kill: Arc::new(KillSwitch::default()),
        })
    }
}

pub(crate) struct KillableStream {
    inner: TcpStream,
    kill: Arc<KillSwitch>,
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.kill.check(0, cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.kill.check(1, cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.kill.check(1, cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
