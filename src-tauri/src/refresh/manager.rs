//! `TokenManager`: hands out access tokens valid for at least a safety margin, refreshing when
//! needed — once per account in this process (single-flight), once across processes (a lease in
//! SQLite), surviving a rotation race (re-read: a sibling's newer token is adopted, an unchanged
//! one means the grant is dead), and leaving an intent row so a crash mid-rotation is told honestly.

use super::backoff::backoff_delay;
use super::holder::{holder_id, holder_is_dead};
use super::verify::{self, Verdict};
use crate::account::{now_ms, Account, FailureReason, Status, UnixMs};
use crate::oauth::client::{RefreshOutcome, TokenClient, TokenResponse, REQUEST_TIMEOUT};
use crate::oauth::jwt;
use crate::secret::Secret;
use crate::store::{Intent, Rotation, Store, StoreError};
use crate::vault::{Field, Vault, VaultError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// protocol.md: refresh when `exp` is within 5 minutes; with no readable `exp`, after 8 days.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(5 * 60);
const STALE_WITHOUT_EXP_MS: i64 = 8 * 24 * 3600 * 1000;
const LEASE_POLL: Duration = Duration::from_millis(100);

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
    pub retry_base: Duration,
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
            retry_base: Duration::from_millis(500),
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
    /// `seen_generation` (a sibling refreshed meanwhile).
    Force { seen_generation: i64 },
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

struct Inner {
    store: Arc<Store>,
    vault: Vault,
    client: TokenClient,
    http: reqwest::Client,
    cfg: RefreshConfig,
    holder: String,
    inflight: Mutex<HashMap<String, Flight>>,
    cache: Mutex<HashMap<String, AccessToken>>,
    observer: std::sync::OnceLock<Arc<dyn super::RotationObserver>>,
}

#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

impl TokenManager {
    pub fn new(store: Arc<Store>, vault: Vault, client: TokenClient, cfg: RefreshConfig) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client builds with rustls");
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
        let mut attempt = 0;
        loop {
            match self.flight(account_id, Mode::IfNeeded).await {
                Err(RefreshError::Transient { account, reason }) => {
                    if let Some(t) = self.stored_still_valid(account_id).await? {
                        return Ok(t);
                    }
                    if attempt >= self.inner.cfg.transient_retries {
                        return Err(RefreshError::Transient { account, reason });
                    }
                    tokio::time::sleep(backoff_delay(
                        attempt,
                        self.inner.cfg.retry_base,
                        Duration::from_secs(10),
                    ))
                    .await;
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
        self.flight(account_id, Mode::Force { seen_generation })
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
            },
        )
        .await
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
            if intent.holder != self.inner.holder && !holder_is_dead(&intent.holder) {
                let store = self.inner.store.clone();
                let id = intent.account_id.clone();
                let holder = blocking(move || store.lease_holder(&id))
                    .await
                    .ok()
                    .flatten();
                if holder.is_some_and(|h| !holder_is_dead(&h)) {
                    continue; // a live process is still working on it
                }
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
        if let Some(t) = lock(&self.inner.cache).get(account_id) {
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
        let t = cache.get(account_id)?;
        valid_for(t.expires_at, self.inner.cfg.margin).then(|| t.clone())
    }

    async fn stored_still_valid(
        &self,
        account_id: &str,
    ) -> Result<Option<AccessToken>, RefreshError> {
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
                None => {
                    let (tx, rx) = watch::channel(None);
                    inflight.insert(account_id.to_string(), rx.clone());
                    let inner = self.inner.clone();
                    let id = account_id.to_string();
                    tokio::spawn(async move {
                        let result = inner.run(&id, mode).await;
                        if let Ok(t) = &result {
                            lock(&inner.cache).insert(id.clone(), t.clone());
                        }
                        lock(&inner.inflight).remove(&id);
                        let _ = tx.send(Some(result));
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

    async fn run(&self, account_id: &str, mode: Mode) -> Result<AccessToken, RefreshError> {
        let mut held = false;
        let result = loop {
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
                Mode::Force { seen_generation } => snap.account.generation == *seen_generation,
                Mode::Recover { intent_generation } => {
                    snap.account.generation == *intent_generation
                }
            };
            if !wanted {
                break Ok(snap.token());
            }
            if self.cfg.lease_enabled && !held {
                match self.acquire_lease(account_id).await {
                    // Re-read under the lease: a refresh another process committed between our
                    // read and our lease must not be redone with the refresh token it spent.
                    Ok(true) => held = true,
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
            break self.attempt(snap, true).await;
        };
        if held {
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
    async fn attempt(
        &self,
        snap: Snapshot,
        may_recover: bool,
    ) -> Result<AccessToken, RefreshError> {
        let account_id = snap.account.id.clone();
        let generation = snap.account.generation;
        let store = self.store.clone();
        let (id, holder) = (account_id.clone(), self.holder.clone());
        // An intent already at this generation is a refresh that never finished (crash or lost answer).
        let unfinished = blocking(move || {
            let previous = store.intent(&id)?.filter(|i| i.generation == generation);
            store.write_intent(&id, generation, &holder)?;
            Ok(previous)
        })
        .await?;

        match self.client.refresh(&snap.refresh).await {
            RefreshOutcome::Rotated(t) => self.commit(&snap, t).await,
            RefreshOutcome::Transient { reason, ambiguous } => {
                let store = self.store.clone();
                let (id, msg) = (account_id.clone(), reason.clone());
                blocking(move || {
                    // An ambiguous failure keeps the intent: upstream may have rotated.
                    if !ambiguous {
                        store.clear_intent(&id, generation)?;
                    }
                    store.set_last_error(&id, generation, &msg)
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
                        let (code, how) = if prev.holder != self.holder {
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

    async fn commit(&self, snap: &Snapshot, t: TokenResponse) -> Result<AccessToken, RefreshError> {
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
        let committed =
            blocking(move || store.commit_rotation(&id2, generation, &rotation, "refreshed", None))
                .await?;
        if committed {
            tracing::info!(account = %id, generation = generation + 1, "refreshed");
            if let Some(o) = self.observer.get() {
                o.rotation_committed(id, generation + 1).await;
            }
            let mut token = snap.token();
            token.token = access;
            token.generation = generation + 1;
            let store = self.store.clone();
            let id3 = id.clone();
            if let Some(a) = blocking(move || store.get_account(&id3)).await? {
                token.expires_at = a.access_expires_at;
            }
            return Ok(token);
        }
        // Someone replaced the grant meanwhile (a sign-in or import): theirs is newer; never overwrite it.
        tracing::warn!(account = %id, "a newer grant was stored during this refresh; keeping it");
        let now = self.read(id).await?;
        Ok(now.token())
    }

    /// A sibling process rotated first: use its token, stay healthy, say so; verify it once,
    /// since our reuse may have revoked the whole family upstream.
    async fn adopt_sibling(&self, now: Snapshot, code: &str) -> Result<AccessToken, RefreshError> {
        let store = self.store.clone();
        let id = now.account.id.clone();
        let detail =
            format!("{code}: a sibling had already rotated the refresh token; using its token");
        blocking(move || store.append_event(&id, "race_recovered", Some(&detail))).await?;
        tracing::info!(account = %now.account.id, code, "rotation race recovered");
        let now = if now.needs_refresh(self.cfg.margin) {
            // The adopted token is itself near expiry: one more refresh, without another recovery.
            return Box::pin(self.attempt(now, false)).await;
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
        let marked = blocking(move || store.mark_terminal(&id, generation, &r)).await?;
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

/// Fault injection for the crash tests: `CODEX_VAULT_FAILPOINT=pause_before_commit:<ms>` widens the
/// window between upstream's answer and our commit, so a `kill -9` can be aimed into it. Unset in
/// normal use (read once; costs nothing then).
async fn failpoint_pause_before_commit() {
    static PAUSE: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let pause = PAUSE.get_or_init(|| {
        std::env::var("CODEX_VAULT_FAILPOINT")
            .ok()?
            .strip_prefix("pause_before_commit:")?
            .parse::<u64>()
            .ok()
            .map(Duration::from_millis)
    });
    if let Some(d) = pause {
        tokio::time::sleep(*d).await;
    }
}
