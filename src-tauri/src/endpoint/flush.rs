//! What the endpoint learns on every request, passed on in batches rather than once a request:
//! usage figures to the store, the served counters to the bus.

use super::{lock, Shared};
use std::sync::Arc;
use std::time::Duration;

/// Usage figures changed by answers are written at most this often (one batch, never one write
/// per request), and only after a change: the flush task sleeps until woken.
const USAGE_FLUSH: Duration = Duration::from_secs(5);
/// How often, at most, the bus hears that the served counters moved (`publish_served`).
const SERVED_EVERY: Duration = Duration::from_secs(1);

/// The served counters move with every request, and every bus event wakes each subscriber (the
/// scheduler, the notices, the desktop window, which re-reads the endpoint's status and sends
/// it to the web view): told once a request, a loaded endpoint spent a wake-up of another
/// thread on each. They are told at most once every `SERVED_EVERY` instead, the first time at
/// once and the last counts within `SERVED_EVERY`.
pub(super) async fn publish_served(shared: Arc<Shared>) {
    coalesce(&shared.served_dirtied, SERVED_EVERY, || {
        crate::bus::publish(crate::bus::CoreEvent::EndpointChanged)
    })
    .await
}

/// Calls `publish` once for each burst of `dirtied`'s notifications: at the first at once, then
/// (for those that came meanwhile) once more after `every`, and so on. Idle, it waits on
/// `dirtied` alone: no timer runs.
async fn coalesce(dirtied: &tokio::sync::Notify, every: Duration, mut publish: impl FnMut()) {
    loop {
        // A notification during the pause below is kept (`notify_one` stores one permit), so
        // the last burst is never left unpublished.
        dirtied.notified().await;
        publish();
        tokio::time::sleep(every).await;
    }
}

/// Usage snapshots reach SQLite in batches: asleep until an answer changed some, then at most
/// one write batch every `USAGE_FLUSH`.
pub(super) async fn flush_usage(shared: Arc<Shared>) {
    loop {
        shared.usage_dirtied.notified().await;
        tokio::time::sleep(USAGE_FLUSH).await;
        write_dirty_usage(&shared).await;
    }
}

async fn write_dirty_usage(shared: &Arc<Shared>) {
    let dirty: Vec<(String, String)> = {
        let ids: Vec<String> = lock(&shared.dirty_usage).drain().collect();
        let usage = lock(&shared.usage);
        ids.into_iter()
            .filter_map(|id| {
                let json = serde_json::to_string(usage.get(&id)?).ok()?;
                Some((id, json))
            })
            .collect()
    };
    if dirty.is_empty() {
        return;
    }
    let s = shared.clone();
    let failed = tokio::task::spawn_blocking(move || {
        let mut failed = Vec::new();
        for (id, json) in dirty {
            if let Err(e) = s.health.usage(&id, &json) {
                tracing::warn!("cannot save usage (kept for the next flush): {e}");
                failed.push(id);
            }
        }
        failed
    })
    .await
    .unwrap_or_default();
    if !failed.is_empty() {
        lock(&shared.dirty_usage).extend(failed);
        shared.usage_dirtied.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn served_counts_are_published_at_once_then_once_a_burst_and_never_while_idle() {
        let dirtied = Arc::new(tokio::sync::Notify::new());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let d = dirtied.clone();
        let task = tokio::spawn(async move {
            coalesce(&d, SERVED_EVERY, move || {
                let _ = tx.send(Instant::now());
            })
            .await
        });
        let t0 = Instant::now();
        dirtied.notify_one();
        assert_eq!(
            rx.recv().await,
            Some(t0),
            "the first request is told at once"
        );
        // A burst while it pauses: told once, when the pause ends.
        for _ in 0..100 {
            dirtied.notify_one();
        }
        assert_eq!(rx.recv().await, Some(t0 + SERVED_EVERY));
        // Idle: nothing more, however long (the clock is paused: this sleep is virtual).
        tokio::time::sleep(SERVED_EVERY * 60).await;
        assert!(rx.try_recv().is_err(), "published while idle");
        let t1 = Instant::now();
        dirtied.notify_one();
        assert_eq!(
            rx.recv().await,
            Some(t1),
            "after a quiet spell, told at once again"
        );
        task.abort();
    }
}
