//! `TokenManager`: hands out access tokens valid for at least a safety margin, refreshing when
//! needed — once per account in this process (single-flight), once across processes (a lease in
//! SQLite), surviving a rotation race (re-read: a sibling's newer token is adopted, an unchanged
//! one means the grant is dead), and leaving an intent row so a crash mid-rotation is told honestly.

use super::backoff::backoff_delay;
use super::held;
use super::holder::{holder_id, holder_is_dead};
use super::verify::{self, Verdict};
use crate::account::{now_ms, Account, FailureReason, Status, UnixMs};
use crate::oauth::client::{RefreshOutcome, TokenClient, TokenResponse, REQUEST_TIMEOUT};
use crate::oauth::jwt;
use crate::secret::Secret;
use crate::store::{Intent, Rotation, Store, StoreError};
use crate::vault::{Field, Vault, VaultError};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// protocol.md: refresh when `exp` is within 5 minutes; with no readable `exp`, after 8 days.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(5 * 60);
const STALE_WITHOUT_EXP_MS: i64 = 8 * 24 * 3600 * 1000;
const LEASE_POLL: Duration = Duration::from_millis(100);
/// How long a shutdown (SIGTERM, Ctrl-C, `serve` stopping, the app's Quit) waits for refreshes
/// already sent to commit, and for rotations held in memory to land.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// Retries of a held rotation's commit: quick at first (a lock released, space freed), then
/// every few seconds — always well inside the lease TTL, which each retry renews.
const HELD_RETRY_BASE: Duration = Duration::from_millis(250);
const HELD_RETRY_MAX: Duration = Duration::from_secs(5);

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
    /// Defaults, plus `CODEX_VAULT_REFRESH_LEASE=off` (tests of race recovery only).
    pub fn from_env() -> RefreshConfig {
        let mut c = RefreshConfig::default();
        if std::env::var("CODEX_VAULT_REFRESH_LEASE").as_deref() == Ok("off") {
            c.lease_enabled = false;
        }
        c
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

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum RefreshError {
    #[error("account {account} needs sign-in: {} ({}{})", .reason.message, .reason.code, .reason.http_status.map(|s| format!(", HTTP {s}")).unwrap_or_default())]
    Terminal {
        account: String,
        reason: FailureReason,
    },
    #[error("could not refresh account {account} now: {reason}")]
    Transient { account: String, reason: String },
    #[error("account {0} is disabled")]
    Disabled(String),
    #[error("no account {0}")]
    NotFound(String),
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Vault(String),
}

impl RefreshError {
    pub fn code(&self) -> &'static str {
        match self {
            RefreshError::Terminal { .. } => "account_terminal",
            RefreshError::Transient { .. } => "refresh_transient",
            RefreshError::Disabled(_) => "account_disabled",
            RefreshError::NotFound(_) => "account_not_found",
            RefreshError::Store(_) => "store_error",
            RefreshError::Vault(_) => "vault_error",
        }
    }
}

impl From<StoreError> for RefreshError {
    fn from(e: StoreError) -> Self {
        RefreshError::Store(e.to_string())
    }
}

impl From<VaultError> for RefreshError {
    fn from(e: VaultError) -> Self {
        RefreshError::Vault(e.to_string())
    }
}

/// Why a refresh is asked for.
#[derive(Debug, Clone, PartialEq)]
enum Mode {
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
struct Snapshot {
    account: Account,
    access: Secret,
    refresh: Secret,
    refresh_fp: String,
}

type Flight = watch::Receiver<Option<Result<AccessToken, RefreshError>>>;

/// An account's backoff after failed refresh POSTs.
#[derive(Debug, Clone)]
struct Backoff {
    failures: u32,
    not_before: UnixMs,
}

/// A rotation the issuer made whose commit failed: the only copy of the new refresh token.
struct Held {
    generation: i64,
    rotation: Rotation,
    token: AccessToken,
    since: UnixMs,
    attempts: u32,
}

struct Inner {
    store: Arc<Store>,
    vault: Vault,
    client: TokenClient,
    http: reqwest::Client,
    cfg: RefreshConfig,
    holder: String,
    inflight: Mutex<HashMap<String, Flight>>,
    /// Handed-out tokens with the margin their lifetime gives them.
    cache: Mutex<HashMap<String, (AccessToken, Duration)>>,
    backoff: Mutex<HashMap<String, Backoff>>,
    held: Mutex<HashMap<String, Held>>,
    /// Set by `drain`: no new refresh starts.
    closing: AtomicBool,
    /// Refreshes in flight plus held rotations not yet committed: what a shutdown waits for.
    busy: watch::Sender<usize>,
    observer: std::sync::OnceLock<Arc<dyn super::RotationObserver>>,
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
    inner: Arc<Inner>,
}

impl TokenManager {
    pub fn new(store: Arc<Store>, vault: Vault, client: TokenClient, cfg: RefreshConfig) -> Self {
        let http = crate::runtime::upstream_http();
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

    pub fn store(&self) -> &Arc<Store> {
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

    fn cached_valid(&self, account_id: &str) -> Option<AccessToken> {
        let cache = lock(&self.inner.cache);
        let (t, margin) = cache.get(account_id)?;
        valid_for(t.expires_at, *margin).then(|| t.clone())
    }

    async fn stored_still_valid(
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
    async fn flight(&self, account_id: &str, mode: Mode) -> Result<AccessToken, RefreshError> {
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
        let done = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| RefreshError::Store("the refresh task ended without a result".into()))?;
        done.clone()
            .unwrap_or_else(|| Err(RefreshError::Store("no refresh result".into())))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned map only means a panic elsewhere mid-insert; the map itself stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn valid_for(expires_at: Option<UnixMs>, margin: Duration) -> bool {
    expires_at.is_some_and(|e| e - now_ms() > margin.as_millis() as i64)
}

/// The margin of a handed-out token, from its own `iat`/`exp` (the JWT says its lifetime).
fn token_margin(configured: Duration, t: &AccessToken) -> Duration {
    let iat = jwt::access_token_iat(t.token.expose()).map(|s| s.saturating_mul(1000));
    refresh_margin(configured, iat, t.expires_at)
}

/// SQLite calls may wait on another process's lock (busy_timeout): keep them off async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, RefreshError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RefreshError::Store(format!("store task failed: {e}")))?
        .map_err(RefreshError::from)
}

impl Snapshot {
    fn token(&self) -> AccessToken {
        AccessToken {
            account_id: self.account.id.clone(),
            chatgpt_account_id: self.account.chatgpt_account_id.clone(),
            fedramp: self.account.fedramp,
            token: self.access.clone(),
            expires_at: self.account.access_expires_at,
            generation: self.account.generation,
        }
    }

    fn needs_refresh(&self, margin: Duration) -> bool {
        let margin = refresh_margin(
            margin,
            self.account.access_issued_at,
            self.account.access_expires_at,
        );
        match self.account.access_expires_at {
            Some(_) => !valid_for(self.account.access_expires_at, margin),
            None => self
                .account
                .last_refresh_at
                .is_none_or(|t| now_ms() - t > STALE_WITHOUT_EXP_MS),
        }
    }
}

impl Inner {
    /// How long until the account's backoff step ends, if it is backing off now.
    fn backoff_wait(&self, account_id: &str) -> Option<Duration> {
        let wait = lock(&self.backoff).get(account_id)?.not_before - now_ms();
        (wait > 0).then(|| Duration::from_millis(wait as u64))
    }

    /// A refresh POST failed transiently: the account's next step of backoff, for everyone.
    fn back_off(&self, account_id: &str) {
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

    fn clear_backoff(&self, account_id: &str) {
        lock(&self.backoff).remove(account_id);
    }

    /// The newest token of an account whose rotation this process holds in memory only.
    fn held_token(&self, account_id: &str) -> Option<AccessToken> {
        lock(&self.held).get(account_id).map(|h| h.token.clone())
    }

    async fn read(&self, account_id: &str) -> Result<Snapshot, RefreshError> {
        let store = self.store.clone();
        let id = account_id.to_string();
        let (account, secrets) = blocking(move || {
            let a = store.get_account(&id)?;
            let s = store.secrets(&id)?;
            Ok((a, s))
        })
        .await?;
        let (Some(account), Some(s)) = (account, secrets) else {
            return Err(RefreshError::NotFound(account_id.to_string()));
        };
        let open = |field, blob: &[u8]| self.vault.open(account_id, field, blob);
        Ok(Snapshot {
            access: open(Field::AccessToken, &s.access_token)?,
            refresh: open(Field::RefreshToken, &s.refresh_token)?,
            refresh_fp: s.refresh_fingerprint,
            account,
        })
    }

    fn terminal_error(account: &Account) -> RefreshError {
        RefreshError::Terminal {
            account: account.label.clone(),
            reason: account.failure.clone().unwrap_or(FailureReason {
                code: "unknown".into(),
                message: "the account needs sign-in".into(),
                http_status: None,
                at: account.updated_at,
            }),
        }
    }

    async fn run(
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
            if snap.account.status == Status::Terminal {
                break Err(Self::terminal_error(&snap.account));
            }
            if snap.account.disabled {
                break Err(RefreshError::Disabled(snap.account.label.clone()));
            }
            let wanted = match &mode {
                Mode::IfNeeded => snap.needs_refresh(self.cfg.margin),
                Mode::Force {
                    seen_generation, ..
                } => snap.account.generation == *seen_generation,
                Mode::Recover { intent_generation } => {
                    snap.account.generation == *intent_generation
                }
            };
            if !wanted {
                break Ok(snap.token());
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
                if let Some(wait) = self.backoff_wait(account_id) {
                    break Err(RefreshError::Transient {
                        account: snap.account.label.clone(),
                        reason: format!(
                            "backing off after failed refreshes; the next try is in {} s",
                            wait.as_secs().max(1)
                        ),
                    });
                }
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
        // A held rotation keeps the lease (its retries renew it and release it once committed).
        if leased && self.held_token(account_id).is_none() {
            let store = self.store.clone();
            let (id, holder) = (account_id.to_string(), self.holder.clone());
            if let Err(e) = blocking(move || store.release_lease(&id, &holder)).await {
                tracing::warn!(
                    account = account_id,
                    "cannot release the refresh lease: {e}"
                );
            }
        }
        result
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

    /// One refresh POST and its consequences. `may_recover`: at most one recovery per call.
    /// `lost_answer` is set when the POST may have reached the issuer without its answer
    /// reaching us (the issuer may have rotated).
    async fn attempt(
        self: &Arc<Self>,
        snap: Snapshot,
        may_recover: bool,
        lost_answer: &mut bool,
    ) -> Result<AccessToken, RefreshError> {
        let account_id = snap.account.id.clone();
        let generation = snap.account.generation;
        let store = self.store.clone();
        let (id, holder) = (account_id.clone(), self.holder.clone());
        let lease_ttl = self
            .cfg
            .lease_enabled
            .then(|| self.cfg.lease_ttl.as_millis() as i64);
        // An intent already at this generation is a refresh that never finished (crash or lost answer).
        let (unfinished, under_lease) = blocking(move || {
            let previous = store.intent(&id)?.filter(|i| i.generation == generation);
            let written = store.write_intent_under_lease(&id, generation, &holder, lease_ttl)?;
            Ok((previous, written))
        })
        .await?;
        if !under_lease {
            // Our lease expired and another process took it: it is that process's refresh now.
            return Err(RefreshError::Transient {
                account: snap.account.label.clone(),
                reason: "another Codex Vault process took over this refresh".into(),
            });
        }

        match self.client.refresh(&snap.refresh).await {
            RefreshOutcome::Rotated(t) => {
                self.clear_backoff(&account_id);
                self.commit(&snap, t).await
            }
            RefreshOutcome::Transient { reason, ambiguous } => {
                *lost_answer = ambiguous;
                self.back_off(&account_id);
                let store = self.store.clone();
                let (id, msg) = (account_id.clone(), reason.clone());
                blocking(move || {
                    // An ambiguous failure keeps the intent: upstream may have rotated.
                    if !ambiguous {
                        store.clear_intent(&id, generation)?;
                    }
                    crate::health::Health::new(store).note_refresh_problem(&id, generation, &msg)
                })
                .await?;
                Err(RefreshError::Transient {
                    account: snap.account.label.clone(),
                    reason,
                })
            }
            RefreshOutcome::Terminal {
                code,
                message,
                http_status,
            } => {
                self.terminal(
                    &snap,
                    FailureReason {
                        code,
                        message,
                        http_status,
                        at: now_ms(),
                    },
                )
                .await
            }
            RefreshOutcome::MaybeRace {
                code,
                message,
                http_status,
            } => {
                let now = self.read(&account_id).await?;
                let sibling_rotated =
                    now.account.generation != generation && now.refresh_fp != snap.refresh_fp;
                if sibling_rotated && may_recover {
                    return self.adopt_sibling(now, &code).await;
                }
                if now.account.generation != generation {
                    // The grant moved on without a new refresh token (a re-import of the same one, say):
                    // never mark a newer generation terminal from a stale attempt.
                    return match now.account.status {
                        Status::Terminal => Err(Self::terminal_error(&now.account)),
                        _ => Ok(now.token()),
                    };
                }
                let reason = match unfinished {
                    Some(prev) => {
                        // Lost in a crash only if the process that sent that refresh is gone;
                        // a live one (this one, or another that still runs) lost the answer.
                        let (code, how) = if holder_is_dead(&prev.holder) {
                            ("rotation_lost_in_crash", "a Codex Vault process stopped (crashed or was killed) after the sign-in server rotated the refresh token and before the new one was saved")
                        } else {
                            ("rotation_lost_in_transit", "the answer of an earlier refresh was lost on the network after the sign-in server had rotated the refresh token")
                        };
                        tracing::warn!(account = %account_id, code, "rotation lost; counted");
                        FailureReason {
                            code: code.into(),
                            message: format!("{how}. Sign in again."),
                            http_status: Some(http_status),
                            at: now_ms(),
                        }
                    }
                    None => FailureReason {
                        message: format!(
                            "{message} — no other Codex Vault process rotated it, so another app (for example a Codex CLI holding the same sign-in) redeemed it. Sign in again, or let Codex Vault broker the CLI's refreshes."
                        ),
                        code,
                        http_status: Some(http_status),
                        at: now_ms(),
                    },
                };
                self.terminal(&snap, reason).await
            }
        }
    }

    async fn commit(
        self: &Arc<Self>,
        snap: &Snapshot,
        t: TokenResponse,
    ) -> Result<AccessToken, RefreshError> {
        let id = &snap.account.id;
        failpoint_pause_before_commit().await;
        // Absent fields keep their old values (protocol.md: each is optional on refresh).
        let access = t.access_token.unwrap_or_else(|| snap.access.clone());
        let rotation = Rotation {
            access_expires_at: jwt::access_token_exp(access.expose())
                .map(|s| s.saturating_mul(1000))
                .or_else(|| t.expires_in.map(|s| now_ms() + s.saturating_mul(1000))),
            access_issued_at: jwt::access_token_iat(access.expose())
                .map(|s| s.saturating_mul(1000)),
            access_token: self.vault.seal(id, Field::AccessToken, &access),
            id_token: t
                .id_token
                .as_ref()
                .map(|s| self.vault.seal(id, Field::IdToken, s)),
            refresh_token: t
                .refresh_token
                .as_ref()
                .map(|s| (self.vault.seal(id, Field::RefreshToken, s), s.fingerprint())),
        };
        let store = self.store.clone();
        let (id2, generation) = (id.clone(), snap.account.generation);
        let to_commit = rotation.clone();
        let committed = match blocking(move || {
            store.commit_rotation(&id2, generation, &to_commit, "refreshed", None)
        })
        .await
        {
            Ok(c) => c,
            // The issuer has rotated: the new refresh token exists only here now. Never drop it.
            Err(e) => return Ok(self.hold(snap, rotation, access, &e)),
        };
        if committed {
            tracing::info!(account = %id, generation = generation + 1, "refreshed");
            if let Some(o) = self.observer.get() {
                o.rotation_committed(id, generation + 1).await;
            }
            let mut token = snap.token();
            token.token = access;
            token.generation = generation + 1;
            token.expires_at = rotation.access_expires_at;
            return Ok(token);
        }
        // Someone replaced the grant meanwhile (a sign-in or import): theirs is newer; never overwrite it.
        tracing::warn!(account = %id, "a newer grant was stored during this refresh; keeping it");
        let now = self.read(id).await?;
        Ok(now.token())
    }

    /// The commit failed (a full disk, a lock held past `busy_timeout`, an I/O error) after the
    /// issuer rotated: keep the new tokens in memory and serve with them, keep the lease (no
    /// other process may redeem the spent token), and retry the commit until it lands.
    fn hold(
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
        let ttl = self.cfg.lease_ttl.as_millis() as i64;
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
            let store = self.store.clone();
            let (id, holder, lease) = (
                account_id.clone(),
                self.holder.clone(),
                self.cfg.lease_enabled,
            );
            let r = blocking(move || {
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
            .await;
            match r {
                Ok(committed) => {
                    if committed {
                        tracing::warn!(account = %account_id, generation = generation + 1, "the held sign-in is saved now");
                        // Only now is the rotation in the store, where its followers read it.
                        if let Some(o) = self.observer.get() {
                            o.rotation_committed(&account_id, generation + 1).await;
                        }
                    } else {
                        // A sign-in or import replaced the grant meanwhile: theirs is newer.
                        tracing::warn!(account = %account_id, "a newer grant was stored while a sign-in was held; keeping the newer one");
                        lock(&self.cache).remove(&account_id);
                    }
                    lock(&self.held).remove(&account_id);
                    held::clear(&account_id);
                    if lease {
                        let store = self.store.clone();
                        let (id, holder) = (account_id.clone(), self.holder.clone());
                        if let Err(e) = blocking(move || store.release_lease(&id, &holder)).await {
                            tracing::warn!(account = %account_id, "cannot release the refresh lease: {e}");
                        }
                    }
                    break;
                }
                Err(e) => {
                    let reason = e.to_string();
                    let mut held_map = lock(&self.held);
                    if let Some(h) = held_map.get_mut(&account_id) {
                        h.attempts += 1;
                        held::record(&account_id, h.since, h.attempts, &reason);
                        if h.attempts % 20 == 0 {
                            tracing::error!(account = %account_id, attempts = h.attempts, "the held sign-in still cannot be saved ({reason}); free disk space");
                        }
                    }
                }
            }
        }
        self.busy.send_modify(|n| *n -= 1);
    }

    /// A sibling process rotated first: use its token, stay healthy, say so; verify it once,
    /// since our reuse may have revoked the whole family upstream.
    async fn adopt_sibling(
        self: &Arc<Self>,
        now: Snapshot,
        code: &str,
    ) -> Result<AccessToken, RefreshError> {
        let store = self.store.clone();
        let id = now.account.id.clone();
        let detail =
            format!("{code}: a sibling had already rotated the refresh token; using its token");
        blocking(move || store.append_event(&id, "race_recovered", Some(&detail))).await?;
        tracing::info!(account = %now.account.id, code, "rotation race recovered");
        let now = if now.needs_refresh(self.cfg.margin) {
            // The adopted token is itself near expiry: one more refresh, without another recovery.
            return Box::pin(self.attempt(now, false, &mut false)).await;
        } else {
            now
        };
        if let Some(url) = &self.cfg.usage_url {
            match verify::verify(
                &self.http,
                url,
                &now.access,
                &now.account.chatgpt_account_id,
            )
            .await
            {
                Verdict::Rejected { code, http_status } => {
                    let reason = FailureReason {
                        message: "the sibling's new token was refused too: reusing the old refresh token revoked the whole sign-in upstream. Sign in again.".into(),
                        code,
                        http_status: Some(http_status),
                        at: now_ms(),
                    };
                    return self.terminal(&now, reason).await;
                }
                Verdict::Accepted | Verdict::Unknown => {}
            }
        }
        Ok(now.token())
    }

    async fn terminal(
        &self,
        snap: &Snapshot,
        reason: FailureReason,
    ) -> Result<AccessToken, RefreshError> {
        let store = self.store.clone();
        let (id, generation, r) = (
            snap.account.id.clone(),
            snap.account.generation,
            reason.clone(),
        );
        let marked =
            blocking(move || crate::health::Health::new(store).mark_terminal(&id, generation, &r))
                .await?;
        if marked {
            tracing::warn!(account = %snap.account.id, code = %reason.code, "account needs sign-in");
            return Err(RefreshError::Terminal {
                account: snap.account.label.clone(),
                reason,
            });
        }
        // The generation moved on meanwhile: that newer grant is not ours to judge.
        let now = self.read(&snap.account.id).await?;
        match now.account.status {
            Status::Terminal => Err(Self::terminal_error(&now.account)),
            _ => Ok(now.token()),
        }
    }
}

/// `CODEX_VAULT_FAILPOINT=pause_before_commit:<ms>` (see `crate::failpoint`).
async fn failpoint_pause_before_commit() {
    static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        crate::failpoint::value("pause_before_commit")?
            .parse::<u64>()
            .ok()
            .map(Duration::from_millis)
    });
    if let Some(d) = pause {
        tokio::time::sleep(*d).await;
    }
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

    #[test]
    fn a_fresh_short_lived_token_is_not_refreshed_on_every_use() {
        let now = now_ms();
        let account = Account {
            id: "a".into(),
            label: "a".into(),
            email: None,
            chatgpt_account_id: "c".into(),
            chatgpt_user_id: "u".into(),
            plan: None,
            fedramp: false,
            status: Status::Healthy,
            failure: None,
            last_error: None,
            access_expires_at: Some(now + 2 * MIN),
            access_issued_at: Some(now),
            last_refresh_at: Some(now),
            rate_limited_until: None,
            generation: 0,
            disabled: false,
            created_at: 0,
            updated_at: 0,
            usage_json: None,
            shared_grant_where: None,
            brokered: false,
            broker_holder_seen_at: None,
        };
        let snap = |a: Account| Snapshot {
            account: a,
            access: Secret::new("x"),
            refresh: Secret::new("y"),
            refresh_fp: String::new(),
        };
        assert!(!snap(account.clone()).needs_refresh(DEFAULT_MARGIN));
        let mut late = account;
        late.access_issued_at = Some(now - 100_000);
        late.access_expires_at = Some(now + 20_000);
        assert!(
            snap(late).needs_refresh(DEFAULT_MARGIN),
            "inside its last quarter: refreshed"
        );
    }
}
