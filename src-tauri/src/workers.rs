//! The endpoint's connection workers: one thread per core, each running a single-threaded tokio
//! runtime, and each accepted connection served from start to end on one of them — the shape of
//! nginx's worker processes.
//!
//! Why not the core's multi-threaded runtime: there a task woken by I/O is often run by the
//! other worker (or makes it wake to look for work), so a request at c=1 cost ≈ 4 context
//! switches and ≈ 100 µs of CPU where one thread needs 2 and ≈ 70 (`perf stat` under `make
//! bench`'s small c=1 row; README § "Where the time goes"). On a worker, a request's socket, its
//! upstream connection (from this worker's share of the inline pool, `http::inline`) and its
//! timers are all driven by one thread's event loop.
//!
//! The workers start with the first endpoint and live as long as the process: an upstream
//! connection a worker opened is driven by it, whoever uses the connection next. Idle, a worker
//! sleeps in its event loop with no timer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The most workers started, however many cores (each one is a thread and an event loop).
const MAX_WORKERS: usize = 16;

/// Names of the worker threads and of their runtimes' blocking threads (`make bench` counts the
/// idle wake-ups of every `vault-` thread).
const THREAD_NAME: &str = "vault-conn";

pub struct ConnWorkers {
    handles: Vec<tokio::runtime::Handle>,
    next: AtomicUsize,
}

thread_local! {
    /// 1 + this thread's worker number on a worker thread; 0 on any other.
    static SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many workers there are (or will be): one a core, at least one.
pub fn count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_WORKERS)
}

/// Which share of a per-worker structure this thread uses: 1 + its worker number on a worker,
/// 0 on every other thread (the core's runtime, tests). Always `<= count()`.
pub fn slot() -> usize {
    SLOT.with(|s| s.get())
}

impl ConnWorkers {
    /// The process's workers, started on the first call.
    pub fn get() -> std::io::Result<&'static ConnWorkers> {
        static WORKERS: Mutex<Option<&'static ConnWorkers>> = Mutex::new(None);
        // Only ever set once, below: consistent after any panic.
        let mut workers = WORKERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = *workers {
            return Ok(w);
        }
        // Leaked on purpose: the workers are the process's for its whole life.
        let started: &'static ConnWorkers = Box::leak(Box::new(ConnWorkers::start(count())?));
        *workers = Some(started);
        Ok(started)
    }

    fn start(n: usize) -> std::io::Result<ConnWorkers> {
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(THREAD_NAME)
                .build()?;
            handles.push(rt.handle().clone());
            std::thread::Builder::new()
                .name(THREAD_NAME.into())
                .spawn(move || {
                    SLOT.with(|s| s.set(i + 1));
                    // Runs the tasks handed to it (`pick`) for the rest of the process.
                    rt.block_on(std::future::pending::<()>());
                })?;
        }
        Ok(ConnWorkers {
            handles,
            next: AtomicUsize::new(0),
        })
    }

    /// The worker for the next connection (in turn: connections are alike, and a client with
    /// several connections spreads them over the cores).
    pub fn pick(&self) -> &tokio::runtime::Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.handles[i % self.handles.len()]
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.handles.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_go_to_each_worker_in_turn_each_its_own_named_thread() {
        let workers = ConnWorkers::get().expect("workers");
        assert!(std::ptr::eq(workers, ConnWorkers::get().expect("again")));
        assert_eq!(workers.len(), count());
        assert_eq!(slot(), 0, "a test's own thread is no worker");
        let mut seen = Vec::new();
        let all: Vec<usize> = (1..=count()).collect();
        // Other tests pick too, so this test's picks may not be consecutive: it picks until
        // each worker ran one of its tasks (in turn, that takes `count()` picks of its own when
        // nobody else picks meanwhile).
        for _ in 0..count() * 100 {
            let on = workers
                .pick()
                .spawn(async {
                    let t = std::thread::current();
                    (slot(), t.name().map(str::to_string), t.id())
                })
                .await
                .expect("ran");
            seen.push(on);
            let mut slots: Vec<usize> = seen.iter().map(|s| s.0).collect();
            slots.sort_unstable();
            slots.dedup();
            if slots == all {
                break;
            }
        }
        let mut slots: Vec<usize> = seen.iter().map(|s| s.0).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots, all, "every worker takes connections");
        assert!(seen.iter().all(|s| s.1.as_deref() == Some(THREAD_NAME)));
        // One thread a slot: a worker's tasks never move.
        for a in &seen {
            assert!(seen.iter().all(|b| (a.0 == b.0) == (a.2 == b.2)));
        }
    }
}
