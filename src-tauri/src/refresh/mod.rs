//! Keeping tokens fresh: `TokenManager` (single-flight per account, cross-process lease, rotation
//! race recovery, crash intents) and `Scheduler` (background refresh ahead of expiry).

mod attempt;
mod backoff;
mod error;
mod flight;
mod held;
mod hold;
mod holder;
mod manager;
mod observer;
pub mod plan;
mod race;
mod scheduler;
mod snapshot;
mod verify;

pub use backoff::backoff_delay;
pub use error::RefreshError;
pub use held::{held_rotation, held_version, overlay_held};
pub use holder::{holder_id, holder_is_dead};
pub use manager::{refresh_margin, AccessToken, Drained, RefreshConfig, TokenManager, DRAIN_LIMIT};
pub use observer::{ObserverFuture, RotationObserver};
pub use scheduler::{total_wakeups as scheduler_wakeups, Scheduler};
pub use verify::{upstream_base, usage_url};
