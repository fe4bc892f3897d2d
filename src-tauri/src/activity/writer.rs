//! The log's one writer thread: it sleeps in `recv` until a record arrives (no timer when
//! idle), lets a burst gather for a moment, then writes everything queued in one transaction
//! (`store::activity::LogDb`, which prunes as it adds).

use super::{retention, Counters, Item};
use crate::settings::Settings;
use crate::store::activity::LogDb;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

/// At most this many records a transaction (a burst is written in a few commits, not one huge).
const MAX_BATCH: usize = 4096;
/// After the first record of a quiet spell, how long the writer lets others gather before it
/// commits: one commit per burst instead of one per request (a commit writes several WAL pages,
/// which would cost more than the request). Well inside the promise of "on disk within a second".
const GATHER: Duration = Duration::from_millis(100);
const DAY_MS: i64 = 24 * 3600 * 1000;

pub(super) fn spawn(
    db: LogDb,
    rx: Receiver<Item>,
    settings: Settings,
    counters: Arc<Counters>,
) -> Result<(), super::ActivityError> {
    let mut w = Writer {
        db,
        settings,
        counters,
        failing: false,
    };
    std::thread::Builder::new()
        .name("vault-activity".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                if !matches!(first, Item::Flush(_)) {
                    // The senders' `try_send` wakes nobody meanwhile: the writer is not waiting.
                    std::thread::sleep(GATHER);
                }
                let mut batch = vec![first];
                loop {
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(i) => batch.push(i),
                            Err(_) => break,
                        }
                    }
                    let full = batch.len() == MAX_BATCH;
                    w.write(std::mem::take(&mut batch));
                    if !full {
                        break;
                    }
                }
            }
        })
        .map(|_| ())
        .map_err(|e| super::ActivityError::Thread(e.to_string()))
}

struct Writer {
    db: LogDb,
    settings: Settings,
    counters: Arc<Counters>,
    /// A failing write is said once, not once a batch, until a write succeeds again.
    failing: bool,
}

impl Writer {
    fn write(&mut self, batch: Vec<Item>) {
        let mut requests = Vec::new();
        let mut samples = Vec::new();
        let mut flushes = Vec::new();
        for item in batch {
            match item {
                Item::Request(r) => requests.push(r),
                Item::Usage(s) => samples.push(s),
                Item::Flush(done) => flushes.push(done),
            }
        }
        if !requests.is_empty() || !samples.is_empty() {
            let (days, max_rows) = retention(&self.settings);
            let cutoff = crate::account::now_ms() - days * DAY_MS;
            match self.db.write(&requests, &samples, cutoff, max_rows) {
                Ok(()) => {
                    self.counters
                        .written
                        .fetch_add(requests.len() as u64, Ordering::Relaxed);
                    self.failing = false;
                }
                Err(e) => {
                    self.counters
                        .failed
                        .fetch_add(requests.len() as u64, Ordering::Relaxed);
                    for _ in &requests {
                        super::metrics::log_lost("write_failed");
                    }
                    if !self.failing {
                        tracing::warn!(
                            "activity log not written ({} requests lost): {e}",
                            requests.len()
                        );
                    }
                    self.failing = true;
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
