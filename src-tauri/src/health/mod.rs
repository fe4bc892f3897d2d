//! The one owner of account health: the only code that writes an account's status, failure
//! reason, rate limit, usage figures and shared-grant flag. The endpoint, the broker, the usage
//! poller, the refresh engine, the CLI and the app *report* here and *read* their views.
//!
//! Every write is guarded (a terminal verdict only for the generation it was reached on; a rate
//! limit never over a dead or disabled account — the store's `WHERE` clauses), retried while the
//! store is busy, and a write that still fails is returned to the caller: never swallowed.
//! A write that changed a row is applied at once, before the call returns, to every view this
//! process registered (`register_view`: the endpoint's snapshot, so the selector and
//! `/v1/accounts` agree with the row), then published on the bus (`AccountChanged`) for the
//! window, the tray and the scheduler. Another process's writes arrive through the store watcher.

pub mod shared_grants;

use crate::account::{Account, FailureReason, UnixMs};
use crate::bus::{self, CoreEvent};
use crate::store::{CoreStore, SharedStore, StoreError};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// A busy store (another process's long transaction past SQLite's own busy timeout) is tried
/// again after each of these delays before the error is returned.
const BUSY_RETRIES: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(250)];

/// Something in this process that shows accounts from a snapshot of its own.
pub trait AccountSink: Send + Sync {
    /// `account` (of the store `store_id`) was just written by this process.
    fn account_written(&self, store_id: &str, account: &Account);
}

static SINKS: Mutex<Vec<Weak<dyn AccountSink>>> = Mutex::new(Vec::new());

/// Registers a view for this process's health writes; it is dropped from the list when the
/// view itself is dropped.
pub fn register_view(sink: Weak<dyn AccountSink>) {
    let mut sinks = SINKS.lock().unwrap_or_else(|e| e.into_inner());
    sinks.retain(|s| s.strong_count() > 0);
    sinks.push(sink);
}

fn live_sinks() -> Vec<Arc<dyn AccountSink>> {
    let mut sinks = SINKS.lock().unwrap_or_else(|e| e.into_inner());
    sinks.retain(|s| s.strong_count() > 0);
    sinks.iter().filter_map(Weak::upgrade).collect()
}

/// The health writer for one store. Cheap to make (an `Arc` clone); its methods block on SQLite,
/// so async callers run them in `spawn_blocking`.
#[derive(Clone)]
pub struct Health {
    store: SharedStore,
}

impl Health {
    pub fn new(store: SharedStore) -> Health {
        Health { store }
    }

    /// The refresh engine's or the endpoint's verdict that the sign-in is dead, for the
    /// `generation` it was reached on. False: the grant moved on meanwhile, nothing written.
    pub fn mark_terminal(
        &self,
        account_id: &str,
        generation: i64,
        reason: &FailureReason,
    ) -> Result<bool, StoreError> {
        self.write(account_id, |s| {
            s.mark_terminal(account_id, generation, reason)
        })
    }

    /// A transient refresh problem (a warning on the card), for `generation` only.
    pub fn note_refresh_problem(
        &self,
        account_id: &str,
        generation: i64,
        message: &str,
    ) -> Result<bool, StoreError> {
        self.write(account_id, |s| {
            s.set_last_error(account_id, generation, message)
        })
    }

    /// A usage limit until `until` (a 429 or an in-stream limit); not over a dead account.
    pub fn rate_limited(&self, account_id: &str, until: UnixMs) -> Result<bool, StoreError> {
        self.write(account_id, |s| s.set_rate_limited(account_id, until))
    }

    /// The limit's window reset early: selectable again.
    pub fn rate_limit_lifted(&self, account_id: &str) -> Result<bool, StoreError> {
        self.write(account_id, |s| s.clear_rate_limit(account_id))
    }

    /// The latest usage figures (JSON). Not announced: usage changes with every answer, and
    /// whoever shows it keeps the fresher figures in memory.
    pub fn usage(&self, account_id: &str, json: &str) -> Result<(), StoreError> {
        retry_busy(|| self.store.set_usage_json(account_id, json))
    }

    /// Sets (`Some(where)`) or clears the shared-grant flag. Returns whether it changed.
    pub fn shared_grant(&self, account_id: &str, place: Option<&str>) -> Result<bool, StoreError> {
        self.write(account_id, |s| s.set_shared_grant(account_id, place))
    }

    /// Clears every shared-grant flag that no longer holds (`shared_grants::stale`); returns how
    /// many it cleared.
    pub fn recheck_shared_grants(&self) -> Result<usize, StoreError> {
        let mut cleared = 0;
        for id in retry_busy(|| shared_grants::stale(&*self.store))? {
            if self.shared_grant(&id, None)? {
                cleared += 1;
            }
        }
        Ok(cleared)
    }

    /// One guarded write; when it changed the row, every view of this process gets the row at
    /// once and the bus is told.
    fn write(
        &self,
        account_id: &str,
        op: impl Fn(&dyn CoreStore) -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        let changed = retry_busy(|| op(&*self.store))?;
        if changed {
            self.announce(account_id);
        }
        Ok(changed)
    }

    fn announce(&self, account_id: &str) {
        match retry_busy(|| self.store.get_account(account_id)) {
            Ok(Some(account)) => {
                for sink in live_sinks() {
                    sink.account_written(self.store.store_id(), &account);
                }
            }
            Ok(None) => {}
            // The write itself stands; views catch up on the bus event below (a full re-read).
            Err(e) => {
                tracing::warn!(account = %account_id, "cannot re-read a written account: {e}")
            }
        }
        bus::publish(CoreEvent::AccountChanged {
            account_id: account_id.to_string(),
        });
    }
}

fn retry_busy<T>(op: impl Fn() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let mut delays = BUSY_RETRIES.iter();
    loop {
        match op() {
            Err(e) if e.code() == "store_busy" => match delays.next() {
                Some(d) => std::thread::sleep(*d),
                None => return Err(e),
            },
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests;
