//! Rotations held in memory only, for everyone in this process who shows accounts (the
//! endpoint's `/v1/accounts`, the app's list, `accounts list` in the process that serves).
//! Another process learns of them by asking the live listener (`Service::list`).

use crate::account::{ms_to_rfc3339, AccountView, HeldRotationView, UnixMs, HELD_ROTATION_ADVICE};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

static HELD: Mutex<Option<HashMap<String, HeldRotationView>>> = Mutex::new(None);
/// Bumped on every change (and `CoreEvent::HeldChanged` published): a held rotation changes
/// nothing in the store, so no store watcher would see it.
static VERSION: AtomicU64 = AtomicU64::new(0);

pub fn held_version() -> u64 {
    VERSION.load(Ordering::Relaxed)
}

fn held() -> MutexGuard<'static, Option<HashMap<String, HeldRotationView>>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn record(account_id: &str, since: UnixMs, attempts: u32, last_error: &str) {
    held().get_or_insert_with(HashMap::new).insert(
        account_id.to_string(),
        HeldRotationView {
            pid: std::process::id(),
            since: ms_to_rfc3339(since),
            attempts,
            last_error: last_error.to_string(),
            message: HELD_ROTATION_ADVICE.to_string(),
        },
    );
    VERSION.fetch_add(1, Ordering::Relaxed);
    crate::bus::publish(crate::bus::CoreEvent::HeldChanged);
}

pub(crate) fn clear(account_id: &str) {
    if let Some(m) = held().as_mut() {
        m.remove(account_id);
    }
    VERSION.fetch_add(1, Ordering::Relaxed);
    crate::bus::publish(crate::bus::CoreEvent::HeldChanged);
}

/// The rotation this process holds for `account_id`, if any.
pub fn held_rotation(account_id: &str) -> Option<HeldRotationView> {
    held().as_ref()?.get(account_id).cloned()
}

/// Marks the views of accounts whose rotation this process holds in memory.
pub fn overlay_held(views: &mut [AccountView]) {
    let guard = held();
    let Some(m) = guard.as_ref().filter(|m| !m.is_empty()) else {
        return;
    };
    for v in views {
        if let Some(h) = m.get(&v.id) {
            v.held_rotation = Some(h.clone());
        }
    }
}
