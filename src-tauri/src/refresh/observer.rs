//! A hook for whoever must follow a committed rotation (the Codex CLI write-back,
//! `codex_writeback`), kept apart from the engine so the engine knows nothing of files.

use std::future::Future;
use std::pin::Pin;

pub type ObserverFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Told once after each rotation this process committed, before the refresh's callers get its
/// result. Quick work (a store write) may be awaited here; slow work (files, locks held by other
/// programs) must go to a task of its own: a refresh's callers wait for this future.
pub trait RotationObserver: Send + Sync {
    /// `account_id` is now at `generation` (the rotation's own).
    fn rotation_committed(&self, account_id: &str, generation: i64) -> ObserverFuture;
}
