//! `TokenManager`: hands out access tokens valid for at least a safety margin, refreshing when
//! needed — once per account in this process (single-flight), once across processes (a lease in
//! SQLite), surviving a rotation race (re-read: a sibling's newer token is adopted, an unchanged
//! one means the grant is dead), and leaving an intent row so a crash mid-rotation is told honestly.
//!
//! This file holds the types and the public API; the work is cut by job: `flight.rs` (single
//! flight and lease), `attempt.rs` (one refresh POST and its commit), `race.rs` (the pure race
//! verdict, sibling adoption, terminal marks), `hold.rs` (a rotation whose commit failed),
//! `snapshot.rs` (the account as read for a refresh).

use super::error::RefreshError;
use super::holder::{holder_id, holder_is_dead};
use super::verify;
use crate::account::{now_ms, Account, UnixMs};
use crate::oauth::client::{TokenClient, REQUEST_TIMEOUT};
use crate::oauth::jwt;
use crate::secret::Secret;
use crate::store::{Intent, Rotation, SharedStore, StoreError};
use crate::vault::Vault;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// protocol.md: refresh when `exp` is within 5 minutes; with no readable `exp`, after 8 days.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(5 * 60);
pub(super) const STALE_WITHOUT_EXP_MS: i64 = 8 * 24 * 3600 * 1000;
pub(super) const LEASE_POLL: Duration = Duration::from_millis(100);
/// How long a shutdown (SIGTERM, Ctrl-C, `serve` stopping, the app's Quit) waits for refreshes
/// already sent to commit, and for rotations held in memory to land.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// Retries of a held rotation's commit: quick at first (a lock released, space freed), then
/// every few seconds — always well inside the lease TTL, which each retry renews.
pub(super) const HELD_RETRY_BASE: Duration = Duration::from_millis(250);
pub(super) const HELD_RETRY_MAX: Duration = Duration::from_secs(5);

/// The refresh margin for a token of known lifetime: `min(configured, lifetime / 4)`, so a
/// short-lived token (say 2 minutes) is not "within 5 minutes of expiry" — refreshed on every
/// use — from the moment it is issued.
pub fn refresh_margin(
    configured: Duration,
    issued_at: Option<UnixMs>,
    expires_at: Option<UnixMs>,
) -> Duration {
    match (issued_at, expires_at) {
        (Some(i), Some(e)) if e > i => configured.min(Duration::from_millis((e - i) as u64 / 4)),
        _ => configured,
    }
}

#[derive(Debug, Clone)]
pub struct RefreshConfig {
    pub margin: Duration,
    /// The cross-process lease; only tests that prove race recovery turn it off.
    pub lease_enabled: bool,
    /// ≥ 2× the refresh timeout, so a live holder never loses its lease mid-request.
    pub lease_ttl: Duration,
    pub request_timeout: Duration,
    /// Where an adopted sibling token is verified (`…/wham/usage`); `None` skips verification.
    pub usage_url: Option<String>,
    /// Retries of an expired token's refresh inside one `access_token` call.
    pub transient_retries: u32,
    /// The first step of an account's backoff after a failed refresh POST. One backoff per
    /// account, shared by the scheduler and every request: a failing token endpoint costs at
    /// most one call per step, however many requests want the account.
    pub retry_base: Duration,
    /// The longest step of that backoff.
    pub backoff_max: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            margin: DEFAULT_MARGIN,
            lease_enabled: true,
            lease_ttl: REQUEST_TIMEOUT * 2 + Duration::from_secs(10),
            request_timeout: REQUEST_TIMEOUT,
            usage_url: Some(verify::usage_url(&verify::upstream_base())),
            transient_retries: 2,
            retry_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30 * 60),
        }
    }
}

impl RefreshConfig {
    /// Defaults with the usage check on `upstream` (the Codex backend base), plus
    /// `CODEX_VAULT_REFRESH_LEASE=off` (tests of race recovery only). Read once, into
    /// `config::Config`, by the composition root; the CLI's one-shot commands read it too.
    pub fn from_env(upstream: &str) -> RefreshConfig {
        RefreshConfig {
            usage_url: Some(verify::usage_url(upstream)),
            lease_enabled: std::env::var("CODEX_VAULT_REFRESH_LEASE").as_deref() != Ok("off"),
            ..RefreshConfig::default()
        }
    }
}

/// A usable access token and what a request needs to go with it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessToken {
    pub account_id: String,
    pub chatgpt_account_id: String,
    pub fedramp: bool,
    pub token: Secret,
    pub expires_at: Option<UnixMs>,
    pub generation: i64,
}

/// Why a refresh is asked for.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Mode {
    /// Only if the stored token is within the margin of expiry.
    IfNeeded,
    /// Now (a 401 upstream, or the user asked): unless the stored token already changed since
    /// `seen_generation` (a sibling refreshed meanwhile). Only the user's own request
    /// (`bypass_backoff`) tries while the account is backing off.
    Force {
        seen_generation: i64,
        bypass_backoff: bool,
    },
    /// An intent was left by a process that died mid-refresh: refresh once to learn the truth.
    Recover { intent_generation: i64 },
}

/// One account as read for a refresh: the row and its opened secrets.
pub(super) struct Snapshot {
    pub(super) account: Account,
    pub(super) access: Secret,
    pub(super) refresh: Secret,
    pub(super) refresh_fp: String,
}

pub(super) type Flight = watch::Receiver<Option<Result<AccessToken, RefreshError>>>;

/// An account's backoff after failed refresh POSTs.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    pub(super) failures: u32,
    pub(super) not_before: UnixMs,
}

/// A rotation the issuer made whose commit failed: the only copy of the new refresh token.
pub(super) struct Held {
    pub(super) generation: i64,
    pub(super) rotation: Rotation,
    pub(super) token: AccessToken,
    pub(super) since: UnixMs,
    pub(super) attempts: u32,
}

pub(super) struct Inner {
    pub(super) store: SharedStore,
    pub(super) vault: Vault,
    pub(super) client: TokenClient,
    pub(super) http: reqwest::Client,
    pub(super) cfg: RefreshConfig,
    pub(super) holder: String,
    pub(super) inflight: Mutex<HashMap<String, Flight>>,
    /// Handed-out tokens with the margin their lifetime gives them.
    pub(super) cache: Mutex<HashMap<String, (AccessToken, Duration)>>,
    pub(super) backoff: Mutex<HashMap<String, Backoff>>,
    pub(super) held: Mutex<HashMap<String, Held>>,
    /// Set by `drain`: no new refresh starts.
    pub(super) closing: AtomicBool,
    /// Refreshes in flight plus held rotations not yet committed: what a shutdown waits for.
    pub(super) busy: watch::Sender<usize>,
    pub(super) observer: std::sync::OnceLock<Arc<dyn super::RotationObserver>>,
}

/// What a shutdown left behind.
#[derive(Debug, Clone, PartialEq)]
pub struct Drained {
    /// Refreshes still in flight when the limit passed.
    pub unfinished: usize,
    /// Accounts whose new tokens were still held in memory only (they are lost with the process).
    pub held: Vec<String>,
}

#[derive(Clone)]
pub struct TokenManager {
    pub(super) inner: Arc<Inner>,
}

impl TokenManager {
    pub fn new(store: SharedStore, vault: Vault, client: TokenClient, cfg: RefreshConfig) -> Self {
        let http = crate::http::upstream();
        TokenManager {
            inner: Arc::new(Inner {
                store,
                vault,
                client,
                http,
                cfg,
                holder: holder_id().to_string(),
                inflight: Mutex::new(HashMap::new()),
                cache: Mutex::new(HashMap::new()),
                backoff: Mutex::new(HashMap::new()),
                held: Mutex::new(HashMap::new()),
                closing: AtomicBool::new(false),
                busy: watch::Sender::new(0),
                observer: std::sync::OnceLock::new(),
            }),
        }
    }

    pub fn store(&self) -> &SharedStore {
        &self.inner.store
    }

    /// Who is told of every rotation this manager commits (once; a second call is ignored).
    pub fn set_rotation_observer(&self, observer: Arc<dyn super::RotationObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    /// A token valid for at least the margin, refreshing if needed. An expired token whose
    /// refresh fails transiently is retried a few times (bounded backoff); a still-valid one is
    /// returned as is when its early refresh fails.
    pub async fn access_token(&self, account_id: &str) -> Result<AccessToken, RefreshError> {
        if let Some(t) = self.cached_valid(account_id) {
            return Ok(t);
        }
        // A step of the account's backoff that ends soon is waited out (every caller waits for
        // the same moment and joins one flight then); a long one is not.
        const WAIT_AT_MOST: Duration = Duration::from_secs(2);
        let mut attempt = 0;
        loop {
            if let Some(wait) = self.inner.backoff_wait(account_id) {
                if wait <= WAIT_AT_MOST && !self.inner.closing.load(Ordering::Relaxed) {
                    tokio::time::sleep(wait).await;
                }
            }
            match self.flight(account_id, Mode::IfNeeded).await {
                Err(RefreshError::Transient { account, reason }) => {
                    if let Some(t) = self.stored_still_valid(account_id).await? {
                        return Ok(t);
                    }
                    let soon = self
                        .inner
                        .backoff_wait(account_id)
                        .is_none_or(|w| w <= WAIT_AT_MOST);
                    if attempt >= self.inner.cfg.transient_retries
                        || !soon
                        || self.inner.closing.load(Ordering::Relaxed)
                    {
                        return Err(RefreshError::Transient { account, reason });
                    }
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Refreshes now, unless the account's token changed since `rejected` was handed out (then
    /// the newer one is returned). The endpoint calls this on an upstream 401; the CLI's
    /// `accounts refresh` with `rejected = None`.
    pub async fn force_refresh(
        &self,
        account_id: &str,
        rejected: Option<&AccessToken>,
    ) -> Result<AccessToken, RefreshError> {
        let seen_generation = match rejected {
            Some(t) => t.generation,
            None => {
                let store = self.inner.store.clone();
                let id = account_id.to_string();
                blocking(move || store.generation(&id))
                    .await?
                    .ok_or_else(|| RefreshError::NotFound(account_id.to_string()))?
            }
        };
        self.forget(account_id);
        self.flight(
            account_id,
            Mode::Force {
                seen_generation,
                bypass_backoff: rejected.is_none(),
            },
        )
        .await
    }

    /// The refresh broker's rotation: a client presented the refresh token of `generation`, so it
    /// wants a fresh pair. Refreshes now unless the account already moved past `generation` (a
    /// sibling caller's rotation committed first: its tokens are the answer). Single-flight: every
    /// caller presenting the same generation at once joins one upstream refresh.
    pub async fn rotate_presented(
        &self,
        account_id: &str,
        generation: i64,
    ) -> Result<AccessToken, RefreshError> {
        self.forget(account_id);
        let mode = Mode::Force {
            seen_generation: generation,
            bypass_backoff: false,
        };
        let t = self.flight(account_id, mode.clone()).await?;
        if t.generation != generation {
            return Ok(t);
        }
        // We joined a flight started for another reason (an "if needed" check that found the
        // token still valid): the presented token was not spent, so rotate it once ourselves.
        self.flight(account_id, mode).await
    }

    /// The issuer's token endpoint, where the broker forwards grants it does not manage.
    pub fn token_url(&self) -> String {
        self.inner.client.issuer().token_url()
    }

    /// The issuer's revocation endpoint (protocol.md § OAuth: same origin, `/oauth/revoke`).
    pub fn revoke_url(&self) -> String {
        format!("{}/oauth/revoke", self.inner.client.issuer().base)
    }

    /// The scheduler's refresh: only if the account is still at the generation it was planned at
    /// (another process may have refreshed it meanwhile).
    pub async fn refresh_planned(
        &self,
        account_id: &str,
        planned_generation: i64,
    ) -> Result<AccessToken, RefreshError> {
        self.flight(
            account_id,
            Mode::Force {
                seen_generation: planned_generation,
                bypass_backoff: false,
            },
        )
        .await
    }

    /// When the scheduler may next try each backing-off account (Unix ms): one backoff per
    /// account, shared with the request path.
    /// An account whose rotation is held in memory is never due: its next refresh waits for
    /// the commit (the stored token is spent).
    pub fn backoff_not_before(&self) -> HashMap<String, UnixMs> {
        let mut out: HashMap<String, UnixMs> = lock(&self.inner.backoff)
            .iter()
            .map(|(k, b)| (k.clone(), b.not_before))
            .collect();
        for id in lock(&self.inner.held).keys() {
            out.insert(id.clone(), UnixMs::MAX / 4);
        }
        out
    }

    /// Accounts whose refresh is backing off right now: the selector prefers the others.
    pub fn backing_off(&self) -> HashSet<String> {
        let now = now_ms();
        lock(&self.inner.backoff)
            .iter()
            .filter(|(_, b)| b.not_before > now)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Refreshes in flight plus held rotations not yet saved.
    pub fn busy(&self) -> usize {
        *self.inner.busy.borrow()
    }

    /// Accounts whose newest tokens this manager holds in memory only (their commit failed).
    pub fn held_rotations(&self) -> Vec<String> {
        lock(&self.inner.held).keys().cloned().collect()
    }

    /// The shutdown path (SIGTERM, Ctrl-C, `serve` stopping, the app's Quit): starts no new
    /// refresh, then waits up to `limit` for the refreshes already sent to commit and for held
    /// rotations to land (their retries go on meanwhile). Returns what is left.
    pub async fn drain(&self, limit: Duration) -> Drained {
        self.inner.closing.store(true, Ordering::SeqCst);
        let mut busy = self.inner.busy.subscribe();
        let _ = tokio::time::timeout(limit, busy.wait_for(|n| *n == 0)).await;
        let unfinished = lock(&self.inner.inflight).len();
        Drained {
            unfinished,
            held: self.held_rotations(),
        }
    }

    /// At start: every intent left by a dead process (or an expired lease) gets one refresh, so a
    /// rotation lost in a crash is found now rather than at the next expiry. Returns the outcomes.
    pub async fn recover_intents(&self) -> Vec<(String, Result<AccessToken, RefreshError>)> {
        let store = self.inner.store.clone();
        let intents: Vec<Intent> = match blocking(move || store.intents()).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("cannot read refresh intents: {e}");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for intent in intents {
            // Only the dead are settled by others: a live holder (this process included) is
            // still working on it, or will find out itself at its next refresh of that account.
            if !holder_is_dead(&intent.holder) {
                continue;
            }
            tracing::info!(account = %intent.account_id, generation = intent.generation, "refreshing once after an unfinished refresh");
            let r = self
                .flight(
                    &intent.account_id,
                    Mode::Recover {
                        intent_generation: intent.generation,
                    },
                )
                .await;
            out.push((intent.account_id, r));
        }
        out
    }

    /// The account's current access token if it is still valid, without ever refreshing (usage
    /// polling must not spend refresh tokens). `None` when expired.
    pub async fn current_token(
        &self,
        account_id: &str,
    ) -> Result<Option<AccessToken>, RefreshError> {
        if let Some((t, _)) = lock(&self.inner.cache).get(account_id) {
            if t.expires_at.is_some_and(|e| e > now_ms()) {
                return Ok(Some(t.clone()));
            }
        }
        self.stored_still_valid(account_id).await
    }

    /// Drops this process's cached token (after a 401, or when another process changed the store).
    pub fn forget(&self, account_id: &str) {
        lock(&self.inner.cache).remove(account_id);
    }

    pub fn forget_all(&self) {
        lock(&self.inner.cache).clear();
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned map only means a panic elsewhere mid-insert; the map itself stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn valid_for(expires_at: Option<UnixMs>, margin: Duration) -> bool {
    expires_at.is_some_and(|e| e - now_ms() > margin.as_millis() as i64)
}

/// The margin of a handed-out token, from its own `iat`/`exp` (the JWT says its lifetime).
pub(super) fn token_margin(configured: Duration, t: &AccessToken) -> Duration {
    let iat = jwt::access_token_iat(t.token.expose()).map(|s| s.saturating_mul(1000));
    refresh_margin(configured, iat, t.expires_at)
}

/// SQLite calls may wait on another process's lock (busy_timeout): keep them off async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, RefreshError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RefreshError::TaskFailed(format!("store task failed: {e}")))?
        .map_err(RefreshError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn the_margin_is_five_minutes_or_a_quarter_of_the_lifetime() {
        let five = DEFAULT_MARGIN;
        // An hour-long token: the full 5 minutes.
        assert_eq!(refresh_margin(five, Some(0), Some(60 * MIN)), five);
        // Exactly 20 minutes: a quarter is 5 minutes.
        assert_eq!(refresh_margin(five, Some(0), Some(20 * MIN)), five);
        // A 2-minute token: 30 s, so it is not "near expiry" from the moment it is issued.
        assert_eq!(
            refresh_margin(five, Some(1_000), Some(1_000 + 2 * MIN)),
            Duration::from_secs(30)
        );
        // Unknown lifetime (no iat, or nonsense): the configured margin.
        assert_eq!(refresh_margin(five, None, Some(2 * MIN)), five);
        assert_eq!(refresh_margin(five, Some(5 * MIN), Some(2 * MIN)), five);
        // A smaller configured margin is never raised.
        let one = Duration::from_secs(60);
        assert_eq!(refresh_margin(one, Some(0), Some(60 * MIN)), one);
    }
}
