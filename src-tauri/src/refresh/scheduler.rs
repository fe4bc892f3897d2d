//! The background refresher: one task that sleeps until the earliest due account (each sleep
//! capped at `MAX_SLEEP`, so a machine waking from suspend catches up), refreshes what is due with
//! bounded concurrency, leaves an account alone while its refresh backs off (the backoff lives
//! in the `TokenManager`, shared with the request path), and wakes on changes: the bus's
//! store, account and settings events (another process's commits come through the store watcher).

use super::error::RefreshError;
use super::manager::TokenManager;
use super::plan::{plan, LeadSettings, SETTING_FRACTION, SETTING_MAX_SECS, SETTING_MIN_SECS};
use crate::account::now_ms;
use crate::bus::CoreEvent;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, Notify, Semaphore};

/// The longest sleep. Not a poll: the plan wakes for every due time and every change on the
/// bus. It bounds only how late a refresh due during a system suspend runs after the resume
/// (tokio's timers run on the monotonic clock, which stops while suspended). A request never
/// waits for it (an expired token is refreshed on use), so it can be long: idle, this is the
/// scheduler's only wake-up, 4 an hour.
pub const MAX_SLEEP: Duration = Duration::from_secs(15 * 60);
const CONCURRENCY: usize = 4;

/// Planning passes of every scheduler in this process, for `/health` (the benchmark reads it
/// from outside the process: one per `MAX_SLEEP` when nothing is due).
static TOTAL_WAKEUPS: AtomicU64 = AtomicU64::new(0);

pub fn total_wakeups() -> u64 {
    TOTAL_WAKEUPS.load(Ordering::Relaxed)
}

/// A running scheduler; dropping the handle stops it.
pub struct Scheduler {
    wake: Arc<Notify>,
    wakeups: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    running: HashSet<String>,
}

impl Scheduler {
    pub fn spawn(tm: TokenManager) -> Scheduler {
        let wake = Arc::new(Notify::new());
        let wakeups = Arc::new(AtomicU64::new(0));
        // Subscribed before the first plan reads the store: a change landing in between re-plans.
        let changes = crate::bus::Bus::global().subscribe();
        if let Err(e) = tm.store().watch_changes() {
            tracing::warn!("the scheduler sees no changes from other processes: {e}");
        }
        let task = tokio::spawn(run(tm, wake.clone(), wakeups.clone(), changes));
        Scheduler {
            wake,
            wakeups,
            task,
        }
    }

    /// Re-plan now (an account was added, changed or removed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// How many times the loop has planned (benchmarks: ≈ 0 per minute when nothing is due).
    pub fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    tm: TokenManager,
    wake: Arc<Notify>,
    wakeups: Arc<AtomicU64>,
    mut changes: broadcast::Receiver<CoreEvent>,
) {
    let state = Arc::new(Mutex::new(State {
        running: HashSet::new(),
    }));
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    loop {
        wakeups.fetch_add(1, Ordering::Relaxed);
        TOTAL_WAKEUPS.fetch_add(1, Ordering::Relaxed);
        let store = tm.store().clone();
        let read = tokio::task::spawn_blocking(move || {
            let accounts = store.list_accounts()?;
            let s = LeadSettings::from_values(
                store.setting(SETTING_FRACTION)?,
                store.setting(SETTING_MIN_SECS)?,
                store.setting(SETTING_MAX_SECS)?,
            );
            Ok::<_, crate::store::StoreError>((accounts, s))
        })
        .await;
        let next = match read {
            Ok(Ok((accounts, settings))) => {
                let now = now_ms();
                let not_before: HashMap<String, i64> = tm.backoff_not_before();
                let p = plan(now, &accounts, &settings, &not_before);
                for (id, generation) in p.due {
                    if !lock(&state).running.insert(id.clone()) {
                        continue;
                    }
                    let (tm, state, permits, wake) =
                        (tm.clone(), state.clone(), permits.clone(), wake.clone());
                    tokio::spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        let r = tm.refresh_planned(&id, generation).await;
                        lock(&state).running.remove(&id);
                        if let Err(RefreshError::Transient { reason, .. }) = r {
                            tracing::info!(account = %id, "background refresh failed ({reason}); retried after its backoff");
                        }
                        wake.notify_one();
                    });
                }
                p.next
            }
            Ok(Err(e)) => {
                tracing::warn!("scheduler cannot read the store: {e}");
                None
            }
            Err(e) => {
                tracing::warn!("scheduler read task failed: {e}");
                None
            }
        };
        let sleep = next
            .map(|t| Duration::from_millis((t - now_ms()).max(0) as u64))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
            _ = crate::bus::next_matching(&mut changes, replans) => {
                crate::bus::drain(&mut changes);
            }
        }
    }
}

/// What re-plans: accounts added, imported or refreshed (here or in another process, seen by the
/// store watcher within a second) and changed refresh-lead settings.
fn replans(e: &CoreEvent) -> bool {
    matches!(
        e,
        CoreEvent::StoreChanged
            | CoreEvent::AccountChanged { .. }
            | CoreEvent::SettingsChanged { .. }
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
