//! The shared settings (`endpoint.port`, `endpoint.first_byte_hold`, `refresh.lead_*`, …) as this
//! process knows them: one in-memory copy per store, read without touching the store, kept
//! current by the store itself and published on the bus.
//!
//! - This process's own writes go through the store (`set_setting`), which applies them here
//!   before it returns.
//! - Another process's writes arrive through the store's change watcher, which re-reads the
//!   settings when the store moved and applies the difference (`replace_all`).
//! - Either way, every key whose value changed is published as `CoreEvent::SettingsChanged`, so
//!   a part that caches something derived from a setting (the endpoint's first-byte hold, the
//!   scheduler's plan) refreshes it; a part that reads per use just reads.
//!
//! Backend-neutral on purpose: the store seam hands out a [`Settings`], and a store other than
//! SQLite fills it from its own change notifications the same way. A leaf (only the bus below
//! it), so every layer can read settings.

use crate::bus::{self, CoreEvent};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// A handle on one store's settings; clones share the copy.
#[derive(Clone, Default)]
pub struct Settings(Arc<Inner>);

#[derive(Default)]
struct Inner {
    values: RwLock<BTreeMap<String, String>>,
    /// Held across "read or write the store, then update the copy" (`serialized`), so that a
    /// read taken before a write can never land in the copy after that write's `apply`. Readers
    /// of the copy never take it.
    sync: Mutex<()>,
    /// Set by the first `replace_all` (the store's open): before it, nothing can have changed.
    loaded: OnceLock<()>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.snapshot()).finish()
    }
}

impl Settings {
    /// The one copy of the store `store_id`'s settings in this process (every handle on one
    /// store shares it, so a write through one is seen through all).
    pub fn for_store(store_id: &str) -> Settings {
        static ALL: Mutex<Option<HashMap<String, Settings>>> = Mutex::new(None);
        let mut all = ALL.lock().unwrap_or_else(|e| e.into_inner());
        all.get_or_insert_with(HashMap::new)
            .entry(store_id.to_string())
            .or_default()
            .clone()
    }

    /// Runs `f` (a store write followed by `apply`, or a store read followed by `replace_all`)
    /// with every other such pair of this copy kept out.
    pub fn serialized<T>(&self, f: impl FnOnce() -> T) -> T {
        let _held = self.0.sync.lock().unwrap_or_else(|e| e.into_inner());
        f()
    }

    /// The value of `key`, `None` when unset.
    pub fn get(&self, key: &str) -> Option<String> {
        self.read().get(key).cloned()
    }

    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.read().clone()
    }

    /// Records a write of this process (`None`: the key was removed). Publishes
    /// `SettingsChanged` when the value changed; returns whether it did.
    pub fn apply(&self, key: &str, value: Option<&str>) -> bool {
        let changed = {
            let mut values = self.write();
            let old = values.get(key).map(String::as_str);
            if old == value {
                false
            } else {
                match value {
                    Some(v) => values.insert(key.to_string(), v.to_string()),
                    None => values.remove(key),
                };
                true
            }
        };
        if changed {
            bus::publish(CoreEvent::SettingsChanged {
                key: key.to_string(),
            });
        }
        changed
    }

    /// Replaces the copy with what the store holds now (the watcher, after another process's
    /// commit); publishes `SettingsChanged` for each key added, changed or removed, and returns
    /// those keys. Before the first load it only loads (nothing was known to differ from).
    pub fn replace_all(&self, rows: Vec<(String, String)>) -> Vec<String> {
        let new: BTreeMap<String, String> = rows.into_iter().collect();
        let changed: Vec<String> = {
            let mut values = self.write();
            let first = self.0.loaded.get().is_none();
            let changed = if first {
                Vec::new()
            } else {
                let mut keys: Vec<String> = new
                    .iter()
                    .filter(|(k, v)| values.get(*k) != Some(*v))
                    .map(|(k, _)| k.clone())
                    .collect();
                keys.extend(values.keys().filter(|k| !new.contains_key(*k)).cloned());
                keys
            };
            *values = new;
            let _ = self.0.loaded.set(());
            changed
        };
        for key in &changed {
            bus::publish(CoreEvent::SettingsChanged { key: key.clone() });
        }
        changed
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, String>> {
        // A panic while holding the lock leaves a map that is still whole: keep using it.
        self.0.values.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, String>> {
        self.0.values.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The keys of the `SettingsChanged` events published so far (the bus is the process's:
    /// other tests publish too, so each test uses keys of its own).
    fn changed_keys(rx: &mut tokio::sync::broadcast::Receiver<CoreEvent>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if let CoreEvent::SettingsChanged { key } = e {
                out.push(key);
            }
        }
        out
    }

    #[test]
    fn handles_on_one_store_share_one_copy_and_another_store_has_its_own() {
        let a = Settings::for_store("settings-test-store-a");
        a.replace_all(rows(&[]));
        a.apply("t1.key", Some("1"));
        assert_eq!(
            Settings::for_store("settings-test-store-a").get("t1.key"),
            Some("1".into())
        );
        assert_eq!(
            Settings::for_store("settings-test-store-b").get("t1.key"),
            None
        );
    }

    #[test]
    fn a_write_publishes_only_when_the_value_changed() {
        let mut rx = bus::Bus::global().subscribe();
        let s = Settings::default();
        s.replace_all(rows(&[("t2.k", "a")]));
        assert!(!s.apply("t2.k", Some("a")), "same value: no change");
        assert!(s.apply("t2.k", Some("b")));
        assert!(s.apply("t2.k", None));
        assert!(!s.apply("t2.k", None));
        let keys: Vec<String> = changed_keys(&mut rx)
            .into_iter()
            .filter(|k| k.starts_with("t2."))
            .collect();
        assert_eq!(keys, ["t2.k", "t2.k"]);
        assert_eq!(s.get("t2.k"), None);
    }

    #[test]
    fn a_reload_publishes_each_added_changed_and_removed_key_and_nothing_else() {
        let s = Settings::default();
        assert!(
            s.replace_all(rows(&[("t3.same", "1"), ("t3.old", "x"), ("t3.gone", "y")]))
                .is_empty(),
            "the first load has nothing to differ from"
        );
        let mut rx = bus::Bus::global().subscribe();
        let mut changed =
            s.replace_all(rows(&[("t3.same", "1"), ("t3.old", "z"), ("t3.new", "n")]));
        changed.sort();
        assert_eq!(changed, ["t3.gone", "t3.new", "t3.old"]);
        let mut published: Vec<String> = changed_keys(&mut rx)
            .into_iter()
            .filter(|k| k.starts_with("t3."))
            .collect();
        published.sort();
        assert_eq!(published, ["t3.gone", "t3.new", "t3.old"]);
        assert_eq!(s.get("t3.old").as_deref(), Some("z"));
        assert!(s.replace_all(s.snapshot().into_iter().collect()).is_empty());
    }
}
