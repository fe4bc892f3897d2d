//! One way to await a condition in a test: poll it until it holds or a deadline passes, and on
//! timeout say what was awaited (and the last thing seen). A condition, never a fixed sleep.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(20);

/// What a condition answers: `true` / `Some(v)` / `Ok(v)` once it holds; for `Err(seen)` the
/// last `seen` is shown if the wait times out.
pub trait Ready {
    type Out;
    fn ready(self) -> Result<Self::Out, Option<String>>;
}

impl Ready for bool {
    type Out = ();
    fn ready(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Ready for Option<T> {
    type Out = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Debug> Ready for Result<T, E> {
    type Out = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(format!("{seen:?}")))
    }
}

fn timed_out(what: &str, within: Duration, seen: Option<String>) -> ! {
    match seen {
        Some(seen) => panic!("timed out after {within:?} waiting for {what}; last seen: {seen}"),
        None => panic!("timed out after {within:?} waiting for {what}"),
    }
}

/// Blocks until `condition` holds (polled every 20 ms, at least once) and returns what it gave;
/// panics after `within`, naming `what`.
pub fn wait_until<R: Ready>(what: &str, within: Duration, condition: impl FnMut() -> R) -> R::Out {
    poll(within, condition).unwrap_or_else(|seen| timed_out(what, within, seen))
}

/// [`wait_until`] for a wait whose deadline is itself an outcome (a process that may not exit, a
/// mark that may never appear): None once `within` passed, never a panic.
pub fn poll_until<R: Ready>(within: Duration, condition: impl FnMut() -> R) -> Option<R::Out> {
    poll(within, condition).ok()
}

fn poll<R: Ready>(
    within: Duration,
    mut condition: impl FnMut() -> R,
) -> Result<R::Out, Option<String>> {
    let deadline = Instant::now() + within;
    loop {
        match condition().ready() {
            Ok(v) => return Ok(v),
            Err(seen) if Instant::now() >= deadline => return Err(seen),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// [`wait_until`] for a condition that awaits (an HTTP call, a lock): the task yields between polls.
pub async fn wait_until_async<R: Ready, F: Future<Output = R>>(
    what: &str,
    within: Duration,
    mut condition: impl FnMut() -> F,
) -> R::Out {
    let deadline = Instant::now() + within;
    loop {
        match condition().await.ready() {
            Ok(v) => return v,
            Err(seen) if Instant::now() >= deadline => timed_out(what, within, seen),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}
