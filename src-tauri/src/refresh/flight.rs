//! The single flight per account in this process and the lease across processes: who refreshes
//! an account now, and who waits for whom. The refresh POST itself is `attempt.rs`.

use super::backoff::backoff_delay;
use super::holder::holder_is_dead;
use super::manager::{
    blocking, lock, token_margin, valid_for, AccessToken, Backoff, Inner, Mode, Snapshot,
    TokenManager, LEASE_POLL,
};
use super::RefreshError;
use crate::account::{now_ms, Status};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What one read of the account says before any refresh POST.
enum Precheck {
    /// No POST: this is the answer.
    Done(Result<AccessToken, RefreshError>),
    /// A refresh is wanted now.
    Refresh,
}

impl TokenManager {
    pub(super) fn cached_valid(&self, account_id: &str) -> Option<AccessToken> {
        let cache = lock(&self.inner.cache);
        let (t, margin) = cache.get(account_id)?;
        valid_for(t.expires_at, *margin).then(|| t.clone())
    }

    pub(super) async fn stored_still_valid(
        &self,
        account_id: &str,
    ) -> Result<Option<AccessToken>, RefreshError> {
        if let Some(t) = self.inner.held_token(account_id) {
            return Ok(t.expires_at.is_some_and(|e| e > now_ms()).then_some(t));
        }
        let snap = self.inner.read(account_id).await?;
        // Still usable (not expired), even if inside the margin.
        Ok(snap
            .account
            .access_expires_at
            .is_some_and(|e| e > now_ms())
            .then(|| snap.token()))
    }

    /// Joins the refresh in flight for this account, or starts one as its own task: a refresh
    /// that reached upstream must commit even if every caller went away.
    pub(super) async fn flight(
        &self,
        account_id: &str,
        mode: Mode,
    ) -> Result<AccessToken, RefreshError> {
        let mut rx = {
            let mut inflight = lock(&self.inner.inflight);
            match inflight.get(account_id) {
                Some(rx) => rx.clone(),
                None if self.inner.closing.load(Ordering::Relaxed) => {
                    drop(inflight);
                    return match self.inner.held_token(account_id) {
                        Some(t) => Ok(t),
                        None => Err(RefreshError::Transient {
                            account: account_id.to_string(),
                            reason: "Codex Vault is shutting down: no new refresh is started"
                                .into(),
                        }),
                    };
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(account_id.to_string(), rx.clone());
                    let inner = self.inner.clone();
                    let id = account_id.to_string();
                    inner.busy.send_modify(|n| *n += 1);
                    tokio::spawn(async move {
                        let result = inner.run(&id, mode).await;
                        if let Ok(t) = &result {
                            let margin = token_margin(inner.cfg.margin, t);
                            lock(&inner.cache).insert(id.clone(), (t.clone(), margin));
                        }
                        lock(&inner.inflight).remove(&id);
                        let _ = tx.send(Some(result));
                        inner.busy.send_modify(|n| *n -= 1);
                    });
                    rx
                }
            }
        };
        let done = rx.wait_for(Option::is_some).await.map_err(|_| {
            RefreshError::TaskFailed("the refresh task ended without a result".into())
        })?;
        done.clone()
            .unwrap_or_else(|| Err(RefreshError::TaskFailed("no refresh result".into())))
    }
}

impl Inner {
    /// How long until the account's backoff step ends, if it is backing off now.
    pub(super) fn backoff_wait(&self, account_id: &str) -> Option<Duration> {
        let wait = lock(&self.backoff).get(account_id)?.not_before - now_ms();
        (wait > 0).then(|| Duration::from_millis(wait as u64))
    }

    /// A refresh POST failed transiently: the account's next step of backoff, for everyone.
    pub(super) fn back_off(&self, account_id: &str) {
        let mut b = lock(&self.backoff);
        let failures = b.get(account_id).map_or(0, |b| b.failures);
        let delay = backoff_delay(failures, self.cfg.retry_base, self.cfg.backoff_max);
        b.insert(
            account_id.to_string(),
            Backoff {
                failures: failures + 1,
                not_before: now_ms() + delay.as_millis() as i64,
            },
        );
    }

    pub(super) fn clear_backoff(&self, account_id: &str) {
        lock(&self.backoff).remove(account_id);
    }

    /// The newest token of an account whose rotation this process holds in memory only.
    pub(super) fn held_token(&self, account_id: &str) -> Option<AccessToken> {
        lock(&self.held).get(account_id).map(|h| h.token.clone())
    }

    pub(super) async fn run(
        self: &Arc<Self>,
        account_id: &str,
        mode: Mode,
    ) -> Result<AccessToken, RefreshError> {
        let mut leased = false;
        let mut rechecked_lost_answer = false;
        let result = loop {
            // A rotation held in memory is the newest truth: the stored refresh token is spent.
            if let Some(t) = self.held_token(account_id) {
                break Ok(t);
            }
            let snap = match self.read(account_id).await {
                Ok(s) => s,
                Err(e) => break Err(e),
            };
            if let Precheck::Done(r) = self.precheck(&snap, &mode, rechecked_lost_answer) {
                break r;
            }
            if self.cfg.lease_enabled && !leased {
                match self.acquire_lease(account_id).await {
                    // Re-read under the lease: a refresh another process committed between our
                    // read and our lease must not be redone with the refresh token it spent.
                    Ok(true) => leased = true,
                    // Another process is refreshing: wait for its commit (or its death), re-read.
                    Ok(false) => {
                        if let Err(e) = self
                            .wait_for_other(account_id, snap.account.generation)
                            .await
                        {
                            break Err(e);
                        }
                    }
                    Err(e) => break Err(e),
                }
                continue;
            }
            let mut ambiguous = false;
            let r = self.attempt(snap, true, &mut ambiguous).await;
            if ambiguous && !rechecked_lost_answer {
                // The issuer may have rotated and its answer was lost on the way: find out now,
                // with the next refresh of this account (still under our lease), rather than
                // at some later scheduled one — a reuse answer then says so honestly.
                rechecked_lost_answer = true;
                continue;
            }
            break r;
        };
        if leased {
            self.release_unless_held(account_id).await;
        }
        result
    }

    /// Whether the account as read wants a refresh POST now, or already gives the answer.
    fn precheck(&self, snap: &Snapshot, mode: &Mode, rechecked_lost_answer: bool) -> Precheck {
        if snap.account.status == Status::Terminal {
            return Precheck::Done(Err(Self::terminal_error(&snap.account)));
        }
        if snap.account.disabled {
            return Precheck::Done(Err(RefreshError::Disabled(snap.account.label.clone())));
        }
        let wanted = match mode {
            Mode::IfNeeded => snap.needs_refresh(self.cfg.margin),
            Mode::Force {
                seen_generation, ..
            } => snap.account.generation == *seen_generation,
            Mode::Recover { intent_generation } => snap.account.generation == *intent_generation,
        };
        if !wanted {
            return Precheck::Done(Ok(snap.token()));
        }
        let bypass_backoff = rechecked_lost_answer
            || matches!(
                mode,
                Mode::Force {
                    bypass_backoff: true,
                    ..
                } | Mode::Recover { .. }
            );
        if !bypass_backoff {
            if let Some(wait) = self.backoff_wait(&snap.account.id) {
                return Precheck::Done(Err(RefreshError::Transient {
                    account: snap.account.label.clone(),
                    reason: format!(
                        "backing off after failed refreshes; the next try is in {} s",
                        wait.as_secs().max(1)
                    ),
                }));
            }
        }
        Precheck::Refresh
    }

    /// A held rotation keeps the lease (its retries renew it and release it once committed).
    async fn release_unless_held(&self, account_id: &str) {
        if self.held_token(account_id).is_some() {
            return;
        }
        let store = self.store.clone();
        let (id, holder) = (account_id.to_string(), self.holder.clone());
        if let Err(e) = blocking(move || store.release_lease(&id, &holder)).await {
            tracing::warn!(
                account = account_id,
                "cannot release the refresh lease: {e}"
            );
        }
    }

    async fn acquire_lease(&self, account_id: &str) -> Result<bool, RefreshError> {
        let store = self.store.clone();
        let (id, holder) = (account_id.to_string(), self.holder.clone());
        let ttl = self.cfg.lease_ttl.as_millis() as i64;
        blocking(move || store.try_acquire_lease(&id, &holder, ttl, holder_is_dead)).await
    }

    /// Polls (SQLite has no cross-process notification) until the generation moves or the lease
    /// frees up; bounded by the lease TTL, after which the lease is takeable anyway.
    async fn wait_for_other(&self, account_id: &str, generation: i64) -> Result<(), RefreshError> {
        let deadline = tokio::time::Instant::now() + self.cfg.lease_ttl + Duration::from_secs(1);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(LEASE_POLL).await;
            let store = self.store.clone();
            let id = account_id.to_string();
            let (gen, holder) =
                blocking(move || Ok((store.generation(&id)?, store.lease_holder(&id)?))).await?;
            let busy = holder.is_some_and(|h| !holder_is_dead(&h));
            if gen != Some(generation) || !busy {
                return Ok(());
            }
        }
        Ok(())
    }
}
