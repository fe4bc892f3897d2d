//! Fault injection for the crash and durability tests, from `CODEX_VAULT_FAILPOINT`: a
//! comma-separated list of `name:value` items, read once per process (unset in normal use: it
//! then costs one environment lookup for the life of the process).
//!
//! - `pause_before_commit:<ms>` widens the window between the issuer's answer and our commit, so
//!   a `kill -9` or a signal can be aimed into it;
//! - `store_full_while:<path>` makes a rotation's commit fail with SQLite's own "database or
//!   disk is full" (SQLITE_FULL) while `<path>` exists: a full disk that the test can free. The
//!   store makes that error itself (`store/refresh.rs`): SQL and its errors stay in `store/`.

use std::sync::OnceLock;

fn items() -> &'static [(String, String)] {
    static ITEMS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    ITEMS.get_or_init(|| {
        std::env::var("CODEX_VAULT_FAILPOINT")
            .unwrap_or_default()
            .split(',')
            .filter_map(|item| {
                let (k, v) = item.split_once(':')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect()
    })
}

/// The value of failpoint `name`, if set.
pub fn value(name: &str) -> Option<&'static str> {
    items()
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `store_full_while`: true while its file exists.
pub fn store_full() -> bool {
    value("store_full_while").is_some_and(|p| std::path::Path::new(p).exists())
}
