//! The process's one event bus: typed core events, published by whoever changed something
//! (the health owner, the store watcher, the held-rotation table, the endpoint's controller)
//! and subscribed to by whoever shows or plans from that state (the endpoint's view, the
//! scheduler, the desktop window and tray). Nothing polls for these changes.
//!
//! One bus per process (`Bus::global`): held rotations are process-wide already, and a spurious
//! event only costs a subscriber one re-read, so events do not say which store they concern.
//! A subscriber that lags behind (`RecvError::Lagged`) must treat it as "everything changed".

use std::sync::OnceLock;
use tokio::sync::broadcast;

/// Enough for bursts (an import of many accounts); a slower subscriber re-reads everything.
const CAPACITY: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreEvent {
    /// The store was committed to, by another process or by a connection of this one that does
    /// not report what it changed: re-read whatever you show.
    StoreChanged,
    /// One account's row changed (health, label, grant), written by this process.
    AccountChanged { account_id: String },
    /// A rotation held in memory only was recorded or cleared (nothing in the store moves).
    HeldChanged,
    /// The endpoint started, stopped, moved, or got a new key.
    EndpointChanged,
    /// A setting was written (`endpoint.port`, the refresh lead, …).
    SettingsChanged { key: String },
}

#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<CoreEvent>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Bus {
    /// This process's bus.
    pub fn global() -> &'static Bus {
        static BUS: OnceLock<Bus> = OnceLock::new();
        BUS.get_or_init(Bus::default)
    }

    /// Never blocks and never fails: with no subscriber the event is simply not needed.
    pub fn publish(&self, event: CoreEvent) {
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CoreEvent> {
        self.tx.subscribe()
    }
}

/// Shorthand: publishes onto this process's bus.
pub fn publish(event: CoreEvent) {
    Bus::global().publish(event);
}

/// Waits for the next event `wanted` accepts; a lag counts as a match (something was missed).
/// `None` once the bus is gone (never, for the global one).
pub async fn next_matching(
    rx: &mut broadcast::Receiver<CoreEvent>,
    wanted: impl Fn(&CoreEvent) -> bool,
) -> Option<()> {
    loop {
        match rx.recv().await {
            Ok(e) if wanted(&e) => return Some(()),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return Some(()),
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// Drains what is already queued, so a burst of events costs one re-read.
pub fn drain(rx: &mut broadcast::Receiver<CoreEvent>) {
    while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = rx.try_recv() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_what_is_published_after_they_subscribed() {
        let bus = Bus::default();
        bus.publish(CoreEvent::HeldChanged); // nobody listens: dropped, no error
        let mut rx = bus.subscribe();
        bus.publish(CoreEvent::SettingsChanged { key: "x".into() });
        bus.publish(CoreEvent::StoreChanged);
        next_matching(&mut rx, |e| *e == CoreEvent::StoreChanged)
            .await
            .unwrap();
        assert!(
            rx.try_recv().is_err(),
            "the earlier event was skipped, not kept"
        );
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_something_was_missed() {
        let bus = Bus::default();
        let mut rx = bus.subscribe();
        for _ in 0..CAPACITY + 10 {
            bus.publish(CoreEvent::HeldChanged);
        }
        // Lagged counts as a match even for a filter nothing passes.
        next_matching(&mut rx, |_| false).await.unwrap();
        drain(&mut rx);
        assert!(rx.try_recv().is_err());
    }
}
