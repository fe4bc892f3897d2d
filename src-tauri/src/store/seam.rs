//! The store seam: what the endpoint and the refresh engine need from a store, as object-safe
//! traits by job, so a second backend (a PostgreSQL store for a team pool) can stand behind them
//! without either of those modules changing. The SQLite [`Store`] implements every one; the
//! use cases (`accounts/`), the backup and the integrity check keep the concrete type.
//!
//! Contracts every backend keeps (docs/store-seam.md says the same, for readers of the docs):
//! - **Generation guard**: every account has a generation that moves by one with each grant
//!   change (rotation, import, sign-in). A write that follows a refresh attempt names the
//!   generation it started from and is a no-op (`Ok(false)`) when the account moved on: a stale
//!   process never overwrites a newer grant nor marks a newer, live grant terminal.
//! - **Atomic**: each method is one transaction: its row changes and the history event it
//!   records commit together or not at all; an `Err` means nothing was written.
//! - **One clock**: lease expiry is judged by the store's own clock, never a caller's.
//! - **Tokens stay sealed**: token fields are the vault's AEAD blobs; a backend never sees a
//!   token in the clear, and never a refresh token's fingerprint in place of the token.

use super::{
    AffinityRow, BrokerSnapshot, ContinuityBatch, ContinuityBounds, CurrentTokens, FingerprintRow,
    Intent, MintedRow, Rotation, Store, StoreError, StoredSecrets,
};
use crate::account::{Account, FailureReason, UnixMs};
use std::sync::Arc;

/// Reading accounts, their history and the shared settings.
pub trait AccountStore: Send + Sync {
    /// Every account, in a stable order (creation order).
    fn list_accounts(&self) -> Result<Vec<Account>, StoreError>;
    /// One account by id; `None` when there is none (removed).
    fn get_account(&self, account_id: &str) -> Result<Option<Account>, StoreError>;
    /// The account's current generation (see the generation guard), `None` when there is none.
    fn generation(&self, account_id: &str) -> Result<Option<i64>, StoreError>;
    /// The account's sealed tokens with the generation they belong to, read together (one
    /// statement or one transaction: never a token of one generation with another's number).
    fn secrets(&self, account_id: &str) -> Result<Option<StoredSecrets>, StoreError>;
    /// Appends one event to the account's append-only history.
    fn append_event(
        &self,
        account_id: &str,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError>;
    /// A setting every face shares (port, selection policy, lead times); `None` when unset.
    /// Read from `settings()`, never from the backend: per-request readers may call it.
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets a shared setting (insert or replace), applied to `settings()` before it returns.
    fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// This process's live copy of the settings (`crate::settings`): loaded at open, kept
    /// current with this process's writes and, once `watch_changes` runs, other processes'.
    fn settings(&self) -> crate::settings::Settings;
    /// A counter that moves when *another* process committed a change (this process's own
    /// writes need not move it); used to notice cross-process changes cheaply.
    fn data_version(&self) -> Result<i64, StoreError>;
    /// Which store this is: every handle to one store gives the same id, another store another.
    fn store_id(&self) -> &str;
    /// When the account's newest event of `kind` was recorded, if any.
    fn last_event_at(&self, account_id: &str, kind: &str) -> Result<Option<UnixMs>, StoreError>;
    /// Starts publishing other processes' commits on the bus (`CoreEvent::StoreChanged`), once
    /// per store and process however often it is called. SQLite: a file-system watch.
    fn watch_changes(&self) -> Result<(), StoreError>;
}

/// The account-health writes: status, failure, warnings, rate limits, usage.
pub trait HealthStore: Send + Sync {
    /// Marks the account terminal with `reason` only if still at `generation`; drops its
    /// refresh intent and records a `failed` event in the same transaction. `Ok(false)`: the
    /// account moved on (or is gone) and nothing was written.
    fn mark_terminal(
        &self,
        account_id: &str,
        generation: i64,
        reason: &FailureReason,
    ) -> Result<bool, StoreError>;
    /// Records a transient problem (a warning; the status stays) only if still at
    /// `generation`, with a `refresh_failed` event. `Ok(false)`: the account moved on.
    fn set_last_error(
        &self,
        account_id: &str,
        generation: i64,
        message: &str,
    ) -> Result<bool, StoreError>;
    /// Records a usage limit until `until`, unless the account is terminal or disabled, with a
    /// `rate_limited` event. `Ok(false)`: nothing changed (already so, or not usable).
    fn set_rate_limited(&self, account_id: &str, until: UnixMs) -> Result<bool, StoreError>;
    /// Lifts a usage limit early, with a `rate_limit_lifted` event. `Ok(false)`: none was set.
    fn clear_rate_limit(&self, account_id: &str) -> Result<bool, StoreError>;
    /// Saves the last usage snapshot (JSON); touches nothing else.
    fn set_usage_json(&self, account_id: &str, json: &str) -> Result<(), StoreError>;
    /// Flags (`Some(place)`) or clears (`None`) a grant also held somewhere else, with its event.
    /// Returns false when nothing changed.
    fn set_shared_grant(&self, account_id: &str, place: Option<&str>) -> Result<bool, StoreError>;
    /// Every account's current and previous refresh-token fingerprints and when it last rotated
    /// (what shared-grant detection decides on).
    fn refresh_fingerprints(&self) -> Result<Vec<FingerprintRow>, StoreError>;
}

/// The refresh engine's cross-process coordination: leases, intents, the rotation commit.
pub trait RefreshStore: Send + Sync {
    /// Takes the account's refresh lease for `ttl_ms` if it is free, expired (by the store's
    /// clock), already `holder`'s, or held by a holder `holder_dead` judges gone. Atomic with
    /// respect to other takers: of two racing for one stale lease, exactly one wins. (A plain
    /// `fn`, not a generic, so the trait stays object-safe and today's callers pass theirs as is.)
    fn try_acquire_lease(
        &self,
        account_id: &str,
        holder: &str,
        ttl_ms: i64,
        holder_dead: fn(&str) -> bool,
    ) -> Result<bool, StoreError>;
    /// Pushes the expiry of a lease `holder` holds; `Ok(false)` when it is not (or no longer) theirs.
    fn renew_lease(&self, account_id: &str, holder: &str, ttl_ms: i64) -> Result<bool, StoreError>;
    /// Lets go of the lease if `holder` holds it (another holder's lease is left alone).
    fn release_lease(&self, account_id: &str, holder: &str) -> Result<(), StoreError>;
    /// The holder of the account's unexpired lease, if any (possibly a dead process).
    fn lease_holder(&self, account_id: &str) -> Result<Option<String>, StoreError>;
    /// Every refresh started and neither committed nor cleared (crash recovery reads these).
    fn intents(&self) -> Result<Vec<Intent>, StoreError>;
    /// The account's unfinished refresh, if any.
    fn intent(&self, account_id: &str) -> Result<Option<Intent>, StoreError>;
    /// Records that `generation` is being redeemed and, in the same transaction, renews the
    /// lease — only while `holder` still holds it (`lease_ttl_ms` None: no lease is used).
    /// `Ok(false)`: the lease was lost, nothing was written, and no refresh may be sent.
    fn write_intent_under_lease(
        &self,
        account_id: &str,
        generation: i64,
        holder: &str,
        lease_ttl_ms: Option<i64>,
    ) -> Result<bool, StoreError>;
    /// Clears the intent for `generation` once its outcome is known (a newer one is kept).
    fn clear_intent(&self, account_id: &str, generation: i64) -> Result<(), StoreError>;
    /// Commits a rotation if the account is still at `expected_generation` (compare-and-swap):
    /// the generation moves by one, the new tokens replace the old (the old refresh token's
    /// fingerprint kept as the previous one), the intent is cleared and the event recorded, all
    /// in one transaction. A terminal or rate-limited status stays. `Ok(false)`: another writer
    /// moved the generation first and nothing was written.
    fn commit_rotation(
        &self,
        account_id: &str,
        expected_generation: i64,
        rotation: &Rotation,
        event_kind: &str,
        event_detail: Option<&str>,
    ) -> Result<bool, StoreError>;
}

/// The refresh broker's reads and its one write (docs/broker.md).
pub trait BrokerStore: Send + Sync {
    /// Everything the broker decides on for one presented token (by its keyed digest), read
    /// as one consistent snapshot: a rotation committing meanwhile is wholly in it or not.
    fn broker_snapshot(&self, digest: &[u8]) -> Result<BrokerSnapshot, StoreError>;
    /// The account's current tokens and generation, read together.
    fn current_tokens(&self, account_id: &str) -> Result<Option<CurrentTokens>, StoreError>;
    /// After the broker handed `handed` to a caller that presented `presented`: each holder of
    /// `presented` now holds `handed` (an unknown caller becomes a holder). One transaction.
    fn record_handed(
        &self,
        account_id: &str,
        presented: &[u8],
        handed: &[u8],
    ) -> Result<(), StoreError>;
}

/// Conversation affinity and minted-ciphertext digests (the endpoint's continuity).
pub trait ContinuityStore: Send + Sync {
    /// Writes a batch (with its events) and prunes to `bounds`, in one transaction.
    fn save_continuity(
        &self,
        batch: &ContinuityBatch,
        bounds: ContinuityBounds,
        now: UnixMs,
    ) -> Result<(), StoreError>;
    /// Everything kept within `bounds`, oldest first.
    fn load_continuity(
        &self,
        bounds: ContinuityBounds,
        now: UnixMs,
    ) -> Result<(Vec<AffinityRow>, Vec<MintedRow>), StoreError>;
}

/// Every job's traits together: what the endpoint and the refresh engine hold.
pub trait CoreStore:
    AccountStore + HealthStore + RefreshStore + BrokerStore + ContinuityStore
{
}

impl<T> CoreStore for T where
    T: AccountStore + HealthStore + RefreshStore + BrokerStore + ContinuityStore + ?Sized
{
}

/// The store as the endpoint and the refresh engine hold it. An `Arc<Store>` coerces into it.
pub type SharedStore = Arc<dyn CoreStore>;

impl AccountStore for Store {
    fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        Store::list_accounts(self)
    }
    fn get_account(&self, account_id: &str) -> Result<Option<Account>, StoreError> {
        Store::get_account(self, account_id)
    }
    fn generation(&self, account_id: &str) -> Result<Option<i64>, StoreError> {
        Store::generation(self, account_id)
    }
    fn secrets(&self, account_id: &str) -> Result<Option<StoredSecrets>, StoreError> {
        Store::secrets(self, account_id)
    }
    fn append_event(
        &self,
        account_id: &str,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        Store::append_event(self, account_id, kind, detail)
    }
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Store::setting(self, key)
    }
    fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        Store::set_setting(self, key, value)
    }
    fn settings(&self) -> crate::settings::Settings {
        Store::settings(self)
    }
    fn data_version(&self) -> Result<i64, StoreError> {
        Store::data_version(self)
    }
    fn store_id(&self) -> &str {
        Store::store_id(self)
    }
    fn last_event_at(&self, account_id: &str, kind: &str) -> Result<Option<UnixMs>, StoreError> {
        Store::last_event_at(self, account_id, kind)
    }
    fn watch_changes(&self) -> Result<(), StoreError> {
        match self.path().parent() {
            Some(dir) => super::watch_dir(dir),
            None => Ok(()),
        }
    }
}

impl HealthStore for Store {
    fn mark_terminal(
        &self,
        account_id: &str,
        generation: i64,
        reason: &FailureReason,
    ) -> Result<bool, StoreError> {
        Store::mark_terminal(self, account_id, generation, reason)
    }
    fn set_last_error(
        &self,
        account_id: &str,
        generation: i64,
        message: &str,
    ) -> Result<bool, StoreError> {
        Store::set_last_error(self, account_id, generation, message)
    }
    fn set_rate_limited(&self, account_id: &str, until: UnixMs) -> Result<bool, StoreError> {
        Store::set_rate_limited(self, account_id, until)
    }
    fn clear_rate_limit(&self, account_id: &str) -> Result<bool, StoreError> {
        Store::clear_rate_limit(self, account_id)
    }
    fn set_usage_json(&self, account_id: &str, json: &str) -> Result<(), StoreError> {
        Store::set_usage_json(self, account_id, json)
    }
    fn set_shared_grant(&self, account_id: &str, place: Option<&str>) -> Result<bool, StoreError> {
        Store::set_shared_grant(self, account_id, place)
    }
    fn refresh_fingerprints(&self) -> Result<Vec<FingerprintRow>, StoreError> {
        Store::refresh_fingerprints(self)
    }
}

impl RefreshStore for Store {
    fn try_acquire_lease(
        &self,
        account_id: &str,
        holder: &str,
        ttl_ms: i64,
        holder_dead: fn(&str) -> bool,
    ) -> Result<bool, StoreError> {
        Store::try_acquire_lease(self, account_id, holder, ttl_ms, holder_dead)
    }
    fn renew_lease(&self, account_id: &str, holder: &str, ttl_ms: i64) -> Result<bool, StoreError> {
        Store::renew_lease(self, account_id, holder, ttl_ms)
    }
    fn release_lease(&self, account_id: &str, holder: &str) -> Result<(), StoreError> {
        Store::release_lease(self, account_id, holder)
    }
    fn lease_holder(&self, account_id: &str) -> Result<Option<String>, StoreError> {
        Store::lease_holder(self, account_id)
    }
    fn intents(&self) -> Result<Vec<Intent>, StoreError> {
        Store::intents(self)
    }
    fn intent(&self, account_id: &str) -> Result<Option<Intent>, StoreError> {
        Store::intent(self, account_id)
    }
    fn write_intent_under_lease(
        &self,
        account_id: &str,
        generation: i64,
        holder: &str,
        lease_ttl_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        Store::write_intent_under_lease(self, account_id, generation, holder, lease_ttl_ms)
    }
    fn clear_intent(&self, account_id: &str, generation: i64) -> Result<(), StoreError> {
        Store::clear_intent(self, account_id, generation)
    }
    fn commit_rotation(
        &self,
        account_id: &str,
        expected_generation: i64,
        rotation: &Rotation,
        event_kind: &str,
        event_detail: Option<&str>,
    ) -> Result<bool, StoreError> {
        Store::commit_rotation(
            self,
            account_id,
            expected_generation,
            rotation,
            event_kind,
            event_detail,
        )
    }
}

impl BrokerStore for Store {
    fn broker_snapshot(&self, digest: &[u8]) -> Result<BrokerSnapshot, StoreError> {
        Store::broker_snapshot(self, digest)
    }
    fn current_tokens(&self, account_id: &str) -> Result<Option<CurrentTokens>, StoreError> {
        Store::current_tokens(self, account_id)
    }
    fn record_handed(
        &self,
        account_id: &str,
        presented: &[u8],
        handed: &[u8],
    ) -> Result<(), StoreError> {
        Store::record_handed(self, account_id, presented, handed)
    }
}

impl ContinuityStore for Store {
    fn save_continuity(
        &self,
        batch: &ContinuityBatch,
        bounds: ContinuityBounds,
        now: UnixMs,
    ) -> Result<(), StoreError> {
        Store::save_continuity(self, batch, bounds, now)
    }
    fn load_continuity(
        &self,
        bounds: ContinuityBounds,
        now: UnixMs,
    ) -> Result<(Vec<AffinityRow>, Vec<MintedRow>), StoreError> {
        Store::load_continuity(self, bounds, now)
    }
}

#[cfg(test)]
#[path = "seam_tests.rs"]
pub(super) mod tests;
