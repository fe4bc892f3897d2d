//! A gate that parks `/responses` streams after their first SSE event, so a test can observe a
//! stream that is open and mid-flight (a proxy must already have forwarded that first event).

use std::sync::Arc;

use tokio::sync::watch;

/// Shared between the [`StreamGate`] handle and the streams parked behind it.
pub(crate) struct GateShared {
    released: watch::Sender<bool>,
    /// Park after the first output item (`response.output_item.added`) instead of after the
    /// first event: what a proxy that holds the head until the first output byte forwards.
    pub after_output: bool,
}

impl GateShared {
    /// Resolves once the gate is released, or at once if it already was.
    pub async fn wait_released(&self) {
        let mut rx = self.released.subscribe();
        // An error means the sender is gone, which only happens once nothing can release us:
        // treat it as released so no stream is parked forever.
        let _ = rx.wait_for(|released| *released).await;
    }
}

/// Returned by [`crate::FakeOpenAi::hold_streams_after_first_event`]. Streams started while it is
/// held send their first event and then wait; [`StreamGate::release`] (or dropping the gate)
/// lets every one of them finish.
pub struct StreamGate {
    inner: Arc<GateShared>,
}

impl StreamGate {
    pub(crate) fn new(after_output: bool) -> (Self, Arc<GateShared>) {
        let inner = Arc::new(GateShared {
            released: watch::Sender::new(false),
            after_output,
        });
        (
            StreamGate {
                inner: inner.clone(),
            },
            inner,
        )
    }

    /// Lets every parked stream continue; streams started later are not held. (The fake may
    /// still point at this released gate: waiting on it returns at once. That keeps `release`
    /// lock-free, so dropping a gate can never deadlock with the state lock.)
    pub fn release(&self) {
        self.inner.released.send_replace(true);
    }

    pub fn is_released(&self) -> bool {
        *self.inner.released.borrow()
    }
}

impl Drop for StreamGate {
    fn drop(&mut self) {
        self.release();
    }
}

impl std::fmt::Debug for StreamGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamGate")
            .field("released", &self.is_released())
            .finish()
    }
}
