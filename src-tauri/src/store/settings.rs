//! The `settings` table, and this process's copy of it (`crate::settings::Settings`): loaded at
//! open, updated by every write made here, and by the change watcher for writes made elsewhere.

use super::{Store, StoreError};
use crate::settings::Settings;
use rusqlite::{params, Connection};

/// Every setting in the store (what a copy is loaded from).
pub(super) fn all(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare("SELECT key, value FROM settings")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<(String, String)>, _>>()?;
    Ok(rows)
}

impl Store {
    /// This store's settings as this process knows them (no SQL: the copy loaded at open).
    pub fn settings(&self) -> Settings {
        self.settings.clone()
    }

    /// A setting, `None` when unset; from the copy, so it costs no query.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.settings.get(key))
    }

    /// Writes a setting, then applies it to this process's copy (publishing `SettingsChanged`
    /// when the value changed) before returning: this process sees its own write at once.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.settings.serialized(|| {
            self.conn().execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            self.settings.apply(key, Some(value));
            Ok(())
        })
    }
}

/// Reads the store's settings into `copy` (an open, the watcher after a commit), serialized with
/// this process's writes; returns the keys that changed.
pub(super) fn refresh(copy: &Settings, conn: &Connection) -> Result<Vec<String>, StoreError> {
    copy.serialized(|| Ok(copy.replace_all(all(conn)?)))
}
