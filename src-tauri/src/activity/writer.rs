//! The log's one writer thread: it sleeps in `recv` until a record arrives (no timer), then
//! writes everything that queued meanwhile in one transaction, pruning as it adds.

use super::{db, retention, Counters, Item, Record, UsageSample};
use crate::settings::Settings;
use rusqlite::Connection;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

/// At most this many records a transaction (a burst is written in a few commits, not one huge).
const MAX_BATCH: usize = 1024;
const DAY_MS: i64 = 24 * 3600 * 1000;

pub(super) fn spawn(
    conn: Connection,
    rx: Receiver<Item>,
    settings: Settings,
    counters: Arc<Counters>,
) -> Result<(), super::ActivityError> {
    let mut w = Writer::new(conn, settings, counters)?;
    std::thread::Builder::new()
        .name("vault-activity".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(i) => batch.push(i),
                        Err(_) => break,
                    }
                }
                w.write(batch);
            }
        })
        .map(|_| ())
        .map_err(|e| super::ActivityError::Thread(e.to_string()))
}

struct Writer {
    conn: Connection,
    settings: Settings,
    counters: Arc<Counters>,
    /// The lowest id kept and the earliest time kept (not always the same row: a clock set
    /// back writes earlier times later): what pruning compares with, without a query.
    oldest_id: Option<i64>,
    oldest_at: Option<i64>,
    oldest_sample: Option<i64>,
    /// A failing write is said once, not once a batch, until a write succeeds again.
    failing: bool,
}

impl Writer {
    fn new(
        conn: Connection,
        settings: Settings,
        counters: Arc<Counters>,
    ) -> Result<Writer, super::ActivityError> {
        Ok(Writer {
            oldest_id: db::oldest_request(&conn)?.map(|(id, _)| id),
            oldest_at: db::earliest_request_at(&conn)?,
            oldest_sample: db::oldest_sample_at(&conn)?,
            conn,
            settings,
            counters,
            failing: false,
        })
    }

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
            match self.commit(&requests, &samples) {
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
                    // What the file holds now is what pruning must compare with.
                    self.reread();
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }

    fn reread(&mut self) {
        if let (Ok(id), Ok(at)) = (
            db::oldest_request(&self.conn),
            db::earliest_request_at(&self.conn),
        ) {
            self.oldest_id = id.map(|(id, _)| id);
            self.oldest_at = at;
        }
    }

    fn commit(&mut self, requests: &[Record], samples: &[UsageSample]) -> rusqlite::Result<()> {
        let (days, max_rows) = retention(&self.settings);
        let cutoff = crate::account::now_ms() - days * DAY_MS;
        let tx = self.conn.transaction()?;
        let mut newest = None;
        for r in requests {
            let id = db::insert_request(&tx, r)?;
            newest = Some(id);
            self.oldest_id.get_or_insert(id);
            self.oldest_at = Some(self.oldest_at.map_or(r.at_ms, |a| a.min(r.at_ms)));
        }
        for s in samples {
            db::insert_sample(&tx, s)?;
            if self.oldest_sample.is_none() {
                self.oldest_sample = Some(s.at_ms);
            }
        }
        if let (Some(newest), Some(oldest_id), Some(oldest_at)) =
            (newest, self.oldest_id, self.oldest_at)
        {
            if newest - oldest_id + 1 > max_rows || oldest_at < cutoff {
                db::prune_requests(&tx, cutoff, newest, max_rows)?;
                self.oldest_id = db::oldest_request(&tx)?.map(|(id, _)| id);
                self.oldest_at = db::earliest_request_at(&tx)?;
            }
        }
        if self.oldest_sample.is_some_and(|at| at < cutoff) {
            db::prune_samples(&tx, cutoff)?;
            self.oldest_sample = db::oldest_sample_at(&tx)?;
        }
        tx.commit()
    }
}
