//! The held-rotation path: the issuer rotated but the commit failed (a full disk, a lock held
//! past `busy_timeout`, an I/O error). The new tokens are the only copy: they are served from
//! memory, the lease is kept, and the commit is retried until it lands.

use super::backoff::backoff_delay;
use super::held;
use super::manager::{
    blocking, lock, AccessToken, Held, Inner, Snapshot, HELD_RETRY_BASE, HELD_RETRY_MAX,
};
use super::RefreshError;
use crate::account::now_ms;
use crate::secret::Secret;
use crate::store::Rotation;
use std::sync::Arc;

impl Inner {
    /// The commit failed (a full disk, a lock held past `busy_timeout`, an I/O error) after the
    /// issuer rotated: keep the new tokens in memory and serve with them, keep the lease (no
    /// other process may redeem the spent token), and retry the commit until it lands.
    pub(super) fn hold(
        self: &Arc<Self>,
        snap: &Snapshot,
        rotation: Rotation,
        access: Secret,
        e: &RefreshError,
    ) -> AccessToken {
        let id = snap.account.id.clone();
        let mut token = snap.token();
        token.token = access;
        token.generation = snap.account.generation + 1;
        token.expires_at = rotation.access_expires_at;
        let since = now_ms();
        let reason = e.to_string();
        tracing::error!(account = %id, "the new sign-in could not be saved ({reason}): it is held in memory and used, and saving it is retried; free disk space");
        held::record(&id, since, 1, &reason);
        lock(&self.held).insert(
            id.clone(),
            Held {
                generation: snap.account.generation,
                rotation,
                token: token.clone(),
                since,
                attempts: 1,
            },
        );
        self.busy.send_modify(|n| *n += 1);
        tokio::spawn(self.clone().retry_held(id));
        token
    }

    /// Retries a held rotation's commit with backoff until it lands, renewing the lease at each
    /// due retry (only while something is held: idle costs nothing). A drain lets it go on.
    async fn retry_held(self: Arc<Self>, account_id: String) {
        let cap = HELD_RETRY_MAX.min(self.cfg.lease_ttl / 3);
        let mut n = 0;
        loop {
            tokio::time::sleep(backoff_delay(n, HELD_RETRY_BASE, cap)).await;
            n += 1;
            let Some((generation, rotation)) = lock(&self.held)
                .get(&account_id)
                .map(|h| (h.generation, h.rotation.clone()))
            else {
                break;
            };
            match self.commit_held(&account_id, generation, rotation).await {
                Ok(committed) => {
                    self.settle_held(&account_id, generation, committed).await;
                    break;
                }
                Err(e) => self.held_failed_again(&account_id, &e),
            }
        }
        self.busy.send_modify(|n| *n -= 1);
    }

    /// One retry: renews the lease (the spent token must stay ours), then commits.
    async fn commit_held(
        &self,
        account_id: &str,
        generation: i64,
        rotation: Rotation,
    ) -> Result<bool, RefreshError> {
        let ttl = self.cfg.lease_ttl.as_millis() as i64;
        let store = self.store.clone();
        let (id, holder, lease) = (
            account_id.to_string(),
            self.holder.clone(),
            self.cfg.lease_enabled,
        );
        blocking(move || {
            if lease {
                match store.renew_lease(&id, &holder, ttl) {
                    Ok(true) => {}
                    Ok(false) => tracing::error!(account = %id, "the refresh lease of a held sign-in was taken by another process"),
                    Err(e) => tracing::warn!(account = %id, "cannot renew the refresh lease of a held sign-in: {e}"),
                }
            }
            store.commit_rotation(
                &id,
                generation,
                &rotation,
                "refreshed",
                Some("saved after being held in memory"),
            )
        })
        .await
    }

    /// The held rotation landed (or a newer grant replaced it): forget it, release the lease.
    async fn settle_held(&self, account_id: &str, generation: i64, committed: bool) {
        if committed {
            tracing::warn!(account = %account_id, generation = generation + 1, "the held sign-in is saved now");
            // Only now is the rotation in the store, where its followers read it.
            if let Some(o) = self.observer.get() {
                o.rotation_committed(account_id, generation + 1).await;
            }
        } else {
            // A sign-in or import replaced the grant meanwhile: theirs is newer.
            tracing::warn!(account = %account_id, "a newer grant was stored while a sign-in was held; keeping the newer one");
            lock(&self.cache).remove(account_id);
        }
        lock(&self.held).remove(account_id);
        held::clear(account_id);
        if self.cfg.lease_enabled {
            let store = self.store.clone();
            let (id, holder) = (account_id.to_string(), self.holder.clone());
            if let Err(e) = blocking(move || store.release_lease(&id, &holder)).await {
                tracing::warn!(account = %account_id, "cannot release the refresh lease: {e}");
            }
        }
    }

    fn held_failed_again(&self, account_id: &str, e: &RefreshError) {
        let reason = e.to_string();
        let mut held_map = lock(&self.held);
        if let Some(h) = held_map.get_mut(account_id) {
            h.attempts += 1;
            held::record(account_id, h.since, h.attempts, &reason);
            if h.attempts % 20 == 0 {
                tracing::error!(account = %account_id, attempts = h.attempts, "the held sign-in still cannot be saved ({reason}); free disk space");
            }
        }
    }
}
