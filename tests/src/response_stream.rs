//! A `/responses` body that is really streamed: a task produces one SSE frame at a time into a
//! one-slot channel, and the body hands each frame to hyper as it arrives (hyper writes and
//! flushes it before asking for the next). The body notices when the client goes away (hyper
//! drops it early) and counts the stream as completed or cancelled exactly once.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use futures_util::Stream;
use tokio::sync::mpsc;

use crate::gate::GateShared;
use crate::sse::SseEvent;
use crate::state::Shared;

struct TrackedBody {
    rx: mpsc::Receiver<Bytes>,
    /// Set by the producer once it handed over the last frame.
    producer_finished: Arc<AtomicBool>,
    reached_end: bool,
    shared: Arc<Shared>,
}

impl Stream for TrackedBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(frame)) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(None) => {
                self.reached_end = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        // hyper drops the body either after reading it to the end or when the connection is
        // gone; only the first case with a producer that got through every event is complete.
        let completed = self.reached_end && self.producer_finished.load(Ordering::SeqCst);
        let mut state = self.shared.lock();
        if completed {
            state.counters.responses_completed += 1;
        } else {
            state.counters.responses_cancelled += 1;
        }
    }
}

/// Starts producing `events` and returns the body that carries them.
pub(crate) fn spawn_stream(
    shared: Arc<Shared>,
    events: Vec<SseEvent>,
    gate: Option<Arc<GateShared>>,
) -> Body {
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let producer_finished = Arc::new(AtomicBool::new(false));
    let body = TrackedBody {
        rx,
        producer_finished: producer_finished.clone(),
        reached_end: false,
        shared: shared.clone(),
    };
    let mut shutdown = shared.shutdown.subscribe();
    let hold_at = match &gate {
        Some(g) if g.after_output => events
            .iter()
            .position(|e| e.event == "response.output_item.added")
            .unwrap_or(0),
        _ => 0,
    };
    tokio::spawn(async move {
        for (i, event) in events.iter().enumerate() {
            if tx.send(Bytes::from(event.frame())).await.is_err() {
                return; // the client went away; the body's drop counts it
            }
            if i == hold_at {
                if let Some(gate) = &gate {
                    tokio::select! {
                        _ = gate.wait_released() => {}
                        _ = tx.closed() => return,
                        _ = shutdown.wait_for(|down| *down) => return,
                    }
                }
            }
        }
        producer_finished.store(true, Ordering::SeqCst);
    });
    Body::from_stream(body)
}
