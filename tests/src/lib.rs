//! `codex-vault-testkit`: a faithful fake of OpenAI's auth server and Codex backend (the
//! stand-in for OpenAI in every test and benchmark of Codex Vault), plus helpers to run the real
//! Codex CLI against any endpoint. See `tests/README.md` for the routes and their semantics.
//!
//! ```no_run
//! # async fn demo() {
//! use codex_vault_testkit::{AccountSpec, FakeConfig, FakeOpenAi};
//! let fake = FakeOpenAi::start(FakeConfig::default()).await;
//! let tokens = fake.add_account(AccountSpec::default());
//! // point the code under test at fake.base_url() (issuer) and fake.codex_base() (backend)
//! # }
//! ```

// No unwrap/expect outside tests: the fake must report, not panic, on bad input. The few
// invariants that cannot fail say so where they are allowed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod admin;
mod auth_routes;
mod backend_routes;
mod claims;
pub mod codex_cli;
mod config;
mod conn;
mod control;
mod counters;
mod device;
mod encrypted;
mod faults;
mod gate;
mod grants;
pub mod jwt;
pub mod loadgen;
mod models;
mod quota_routes;
mod response_stream;
mod server;
pub mod sse;
mod state;
mod tool_calls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use admin::FaultSpec;
pub use claims::{AUTH_CLAIM, PROFILE_CLAIM};
pub use config::{AccountSpec, FakeConfig, Fault, FaultRoute, IssuedTokens, ReuseMode, CLIENT_ID};
pub use control::{ControlError, Settings};
pub use counters::{AccountCounters, Counters, CountersTimeout};
pub use device::{DeviceAnswer, DevicePoll};
pub use encrypted::EncryptedContentError;
pub use gate::StreamGate;
pub use grants::pkce_challenge;
pub use models::FAKE_MODEL;
pub use quota_routes::{AdditionalLimit, CreditsBalance, ResetCredit, RouteHit};

use conn::ConnRegistry;
use state::Shared;

/// A running fake on `127.0.0.1:<port>`. Dropping it stops the server and cuts every open
/// connection (streams in flight end without `response.completed`).
pub struct FakeOpenAi {
    shared: Arc<Shared>,
    registry: Arc<ConnRegistry>,
    addr: SocketAddr,
    runner: Runner,
}

enum Runner {
    /// Serving on the runtime `start` was awaited in.
    Task(tokio::task::JoinHandle<()>),
    /// Serving on a thread and runtime of its own (`start_blocking`).
    Thread {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl FakeOpenAi {
    /// Binds and starts serving on the current tokio runtime.
    ///
    /// # Panics
    /// If the port cannot be bound (only possible with a fixed `cfg.port`).
    pub async fn start(cfg: FakeConfig) -> FakeOpenAi {
        match Self::try_start(cfg).await {
            Ok(fake) => fake,
            Err(e) => panic!("fake-openai could not bind: {e}"),
        }
    }

    pub async fn try_start(cfg: FakeConfig) -> std::io::Result<FakeOpenAi> {
        let bound = server::bind(cfg).await?;
        let task = tokio::spawn(server::serve(bound.listener, bound.shared.clone()));
        Ok(FakeOpenAi {
            shared: bound.shared,
            registry: bound.registry,
            addr: bound.addr,
            runner: Runner::Task(task),
        })
    }

    /// Starts the fake on a thread with its own runtime, for synchronous tests (and for async
    /// tests that must not share their runtime with the fake).
    ///
    /// # Panics
    /// If the port cannot be bound or the thread cannot start.
    pub fn start_blocking(cfg: FakeConfig) -> FakeOpenAi {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake-openai".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match server::bind(cfg).await {
                        Ok(bound) => {
                            let _ = ready_tx.send(Ok((
                                bound.shared.clone(),
                                bound.registry.clone(),
                                bound.addr,
                            )));
                            tokio::select! {
                                _ = server::serve(bound.listener, bound.shared) => {}
                                _ = stop_rx => {}
                            }
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
                // Dropping the runtime here ends every connection task still running.
            });
        let thread = match thread {
            Ok(t) => t,
            Err(e) => panic!("fake-openai thread could not start: {e}"),
        };
        match ready_rx.recv() {
            Ok(Ok((shared, registry, addr))) => FakeOpenAi {
                shared,
                registry,
                addr,
                runner: Runner::Thread {
                    stop: Some(stop_tx),
                    thread: Some(thread),
                },
            },
            Ok(Err(e)) => panic!("fake-openai could not start: {e}"),
            Err(_) => panic!("fake-openai thread died during start"),
        }
    }

    /// `http://127.0.0.1:PORT`: the issuer (`CODEX_VAULT_AUTH_BASE`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base_url + "/backend-api/codex"` (`CODEX_VAULT_UPSTREAM`).
    pub fn codex_base(&self) -> String {
        format!("{}/backend-api/codex", self.base_url())
    }

    /// `base_url + "/oauth/token"` (also what `CODEX_REFRESH_TOKEN_URL_OVERRIDE` takes).
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.base_url())
    }

    /// `base_url + "/backend-api/wham/usage"`.
    pub fn usage_url(&self) -> String {
        format!("{}/backend-api/wham/usage", self.base_url())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Registers the account (or updates who it is) and issues a fresh grant for it.
    pub fn add_account(&self, spec: AccountSpec) -> IssuedTokens {
        self.shared.add_account(spec)
    }

    /// A new, independent refresh-token family for an existing account. `access_lifetime`
    /// overrides the first access token's lifetime only (`Duration::ZERO` = already expired:
    /// issued an hour ago, expired a minute ago); later rotations use the account's lifetime.
    ///
    /// # Panics
    /// If the account is unknown (see [`FakeOpenAi::try_issue_grant`]).
    #[track_caller]
    pub fn issue_grant(
        &self,
        chatgpt_account_id: &str,
        access_lifetime: Option<Duration>,
    ) -> IssuedTokens {
        match self.try_issue_grant(chatgpt_account_id, access_lifetime) {
            Ok(t) => t,
            Err(e) => panic!("issue_grant: {e}"),
        }
    }

    pub fn try_issue_grant(
        &self,
        chatgpt_account_id: &str,
        access_lifetime: Option<Duration>,
    ) -> Result<IssuedTokens, ControlError> {
        self.shared.issue_grant(chatgpt_account_id, access_lifetime)
    }

    /// The Codex CLI's `auth.json` text for these tokens (protocol.md's exact shape).
    pub fn auth_json(tokens: &IssuedTokens, last_refresh: chrono::DateTime<chrono::Utc>) -> String {
        auth_json(tokens, last_refresh)
    }

    /// Ends every session of the account: its refresh tokens answer 401
    /// `refresh_token_invalidated`, its access tokens 401 `token_invalidated` at the backend.
    /// Signing in again afterwards works (new grants are unaffected).
    ///
    /// # Panics
    /// If the account is unknown.
    #[track_caller]
    pub fn revoke_account(&self, chatgpt_account_id: &str) {
        if let Err(e) = self.shared.revoke_account(chatgpt_account_id) {
            panic!("revoke_account: {e}");
        }
    }

    /// An outsider (another app holding the same refresh token) redeems it: the token rotates as
    /// if refreshed through `/oauth/token`, but counted in `out_of_band_rotations`.
    ///
    /// # Panics
    /// If the token endpoint would refuse the token (see [`FakeOpenAi::try_rotate_out_of_band`]).
    #[track_caller]
    pub fn rotate_out_of_band(&self, refresh_token: &str) -> IssuedTokens {
        match self.try_rotate_out_of_band(refresh_token) {
            Ok(t) => t,
            Err(e) => panic!("rotate_out_of_band: {e}"),
        }
    }

    pub fn try_rotate_out_of_band(
        &self,
        refresh_token: &str,
    ) -> Result<IssuedTokens, ControlError> {
        self.shared.rotate_out_of_band(refresh_token)
    }

    pub fn set_reuse_mode(&self, m: ReuseMode) {
        self.update_settings(Settings {
            reuse_mode: Some(m),
            ..Settings::default()
        });
    }

    pub fn set_family_revoke_on_reuse(&self, on: bool) {
        self.update_settings(Settings {
            family_revoke_on_reuse: Some(on),
            ..Settings::default()
        });
    }

    /// Refresh answers leave `id_token` out (clients must keep their old one).
    pub fn set_omit_id_token_on_refresh(&self, on: bool) {
        self.update_settings(Settings {
            omit_id_token_on_refresh: Some(on),
            ..Settings::default()
        });
    }

    /// Lifetime of access tokens minted from now on (accounts with their own lifetime keep it).
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.update_settings(Settings {
            access_token_lifetime_secs: Some(lifetime.as_secs()),
            ..Settings::default()
        });
    }

    pub fn set_responses_text(&self, text: &str) {
        self.update_settings(Settings {
            responses_text: Some(text.to_string()),
            ..Settings::default()
        });
    }

    /// How many `response.output_text.delta` events a `/responses` stream carries.
    pub fn set_stream_events(&self, n_deltas: usize) {
        self.update_settings(Settings {
            stream_deltas: Some(n_deltas),
            ..Settings::default()
        });
    }

    /// Applies the set switches; returns them all as they now are.
    pub fn update_settings(&self, settings: Settings) -> Settings {
        self.shared.update_settings(settings)
    }

    /// `Some(resets_at)` (unix seconds): `/responses` answers 429 `usage_limit_reached` until
    /// then (and by itself again after). `None` clears the limit.
    ///
    /// # Panics
    /// If the account is unknown.
    #[track_caller]
    pub fn set_rate_limited(&self, chatgpt_account_id: &str, resets_at: Option<i64>) {
        if let Err(e) = self.shared.set_rate_limited(chatgpt_account_id, resets_at) {
            panic!("set_rate_limited: {e}");
        }
    }

    /// The usage the `x-codex-*` headers and `/wham/usage` report.
    ///
    /// # Panics
    /// If the account is unknown.
    #[track_caller]
    pub fn set_usage(
        &self,
        chatgpt_account_id: &str,
        primary_used_percent: f64,
        secondary_used_percent: f64,
    ) {
        if let Err(e) = self.shared.set_usage(
            chatgpt_account_id,
            primary_used_percent,
            secondary_used_percent,
        ) {
            panic!("set_usage: {e}");
        }
    }

    /// `Some(status)`: every refresh grant of this account answers `status` (a 5xx carries
    /// OpenAI's `server_error` body) without rotating, until `None`. Other accounts are served.
    ///
    /// # Panics
    /// If the account is unknown.
    #[track_caller]
    pub fn set_refresh_failure(&self, chatgpt_account_id: &str, status: Option<u16>) {
        if let Err(e) = self.shared.set_refresh_failure(chatgpt_account_id, status) {
            panic!("set_refresh_failure: {e}");
        }
    }

    /// Queues faults for the next calls of `route`, one per call, in order (after any already
    /// queued).
    pub fn inject_faults(&self, route: FaultRoute, faults: Vec<Fault>) {
        self.shared.inject_faults(route, faults);
    }

    /// Who `/oauth/authorize` signs in as; `None` = a newly generated account each time.
    pub fn set_login_identity(&self, spec: Option<AccountSpec>) {
        self.shared.set_login_identity(spec);
    }

    /// Approves the pending device code `user_code` as `spec` (`None`: the login identity, else a
    /// new account); its next poll gets the authorization code. False if no such pending code.
    pub fn approve_device_code(&self, user_code: &str, spec: Option<AccountSpec>) -> bool {
        self.shared.approve_device_code(user_code, spec)
    }

    /// The user declines the sign-in of `user_code`: its next poll answers `authorization_declined`.
    pub fn deny_device_code(&self, user_code: &str) -> bool {
        self.shared.deny_device_code(user_code)
    }

    /// The next poll of `user_code` answers `slow_down` (and grows its interval) even if on time.
    pub fn slow_down_next_device_poll(&self, user_code: &str) -> bool {
        self.shared.slow_down_next_device_poll(user_code)
    }

    /// Every poll of `user_code`, with the gap the fake measured and the interval then in force.
    pub fn device_polls(&self, user_code: &str) -> Vec<DevicePoll> {
        self.shared.device_polls(user_code)
    }

    /// The user codes issued so far.
    pub fn device_user_codes(&self) -> Vec<String> {
        self.shared.device_user_codes()
    }

    /// Registers `http://localhost:{port}/auth/callback` as a redirect URI (tests run their
    /// callback servers on ephemeral ports).
    pub fn register_redirect_port(&self, port: u16) {
        self.shared.register_redirect_port(port);
    }

    /// Streams started from now on send their first SSE event, then wait until the gate is
    /// released (or dropped).
    pub fn hold_streams_after_first_event(&self) -> StreamGate {
        self.shared.hold_streams(false)
    }

    /// Streams started from now on send everything up to and including their first output item
    /// (`response.output_item.added`), then wait until the gate is released (or dropped): a
    /// mid-flight stream as seen through a proxy that holds the head until the first output.
    pub fn hold_streams_after_first_output(&self) -> StreamGate {
        self.shared.hold_streams(true)
    }

    /// How `chatgpt_account_id` words its 400 for ciphertext it cannot verify.
    ///
    /// # Panics
    /// If the account is unknown.
    #[track_caller]
    pub fn set_encrypted_content_error(
        &self,
        chatgpt_account_id: &str,
        shape: EncryptedContentError,
    ) {
        if let Err(e) = self
            .shared
            .set_encrypted_content_error(chatgpt_account_id, shape)
        {
            panic!("set_encrypted_content_error: {e}");
        }
    }

    /// A ciphertext bound to `chatgpt_account_id`, as if an earlier answer (one this test's
    /// code under test never saw) had carried it: history from before a proxy ran.
    pub fn mint_encrypted_content(&self, chatgpt_account_id: &str) -> String {
        let now = state::now_unix();
        let mut state = self.shared.lock();
        let ct = encrypted::mint(&state.content_key, chatgpt_account_id, now);
        state
            .minted_content
            .insert(ct.clone(), chatgpt_account_id.to_string());
        ct
    }

    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }

    /// Grants `n` reset credits to the account (`expires_in`: from now; `None`: no expiry);
    /// returns their ids.
    ///
    /// # Panics
    /// If the account is unknown.
    #[track_caller]
    pub fn grant_reset_credits(
        &self,
        chatgpt_account_id: &str,
        n: usize,
        expires_in: Option<Duration>,
    ) -> Vec<String> {
        self.with_account(chatgpt_account_id, |a, now| {
            (0..n)
                .map(|_| {
                    let id = format!("rlrc_{}", uuid::Uuid::new_v4().simple());
                    a.quota.reset_credits.push(ResetCredit {
                        id: id.clone(),
                        granted_at: now,
                        expires_at: expires_in.map(|d| now + d.as_secs() as i64),
                        redeemed: false,
                    });
                    id
                })
                .collect()
        })
    }

    /// The credits balance `/wham/usage` reports (`None`: none, `balance "0"`).
    #[track_caller]
    pub fn set_credits_balance(&self, chatgpt_account_id: &str, credits: Option<CreditsBalance>) {
        self.with_account(chatgpt_account_id, |a, _| a.quota.credits = credits);
    }

    /// The additional metered limits `/wham/usage` reports (`additional_rate_limits`).
    #[track_caller]
    pub fn set_additional_limits(&self, chatgpt_account_id: &str, limits: Vec<AdditionalLimit>) {
        self.with_account(chatgpt_account_id, |a, _| a.quota.additional = limits);
    }

    /// The account's window lengths: `(18_000, Some(604_800))` is the default; a free plan
    /// reports one monthly window, `(2_592_000, None)`. Windows restart from now.
    #[track_caller]
    pub fn set_windows(
        &self,
        chatgpt_account_id: &str,
        primary_secs: i64,
        secondary_secs: Option<i64>,
    ) {
        self.with_account(chatgpt_account_id, |a, now| {
            a.quota.windows = Some((primary_secs, secondary_secs));
            let (p, s) = a.window_secs();
            a.primary_reset_at = now + p;
            a.secondary_reset_at = now + s.unwrap_or(state::SECONDARY_WINDOW_SECS);
        });
    }

    /// Every request that reached the fake outside `/__admin`, oldest first.
    pub fn route_log(&self) -> Vec<RouteHit> {
        self.shared.raw_lock().route_log.clone()
    }

    #[track_caller]
    fn with_account<T>(
        &self,
        chatgpt_account_id: &str,
        f: impl FnOnce(&mut state::Account, i64) -> T,
    ) -> T {
        let now = state::now_unix();
        let mut state = self.shared.lock();
        match state.accounts.get_mut(chatgpt_account_id) {
            Some(a) => {
                a.roll_windows(now);
                f(a, now)
            }
            None => panic!("unknown account {chatgpt_account_id}"),
        }
    }

    /// Every token this fake ever minted (access, id and refresh tokens of every grant, refresh
    /// and code exchange), oldest first: what a leak scan must never find in logs or answers.
    pub fn issued_secrets(&self) -> Vec<String> {
        self.shared.raw_lock().minted.clone()
    }

    /// Waits until the counters satisfy `pred` (woken by every change, no polling); on timeout
    /// the error carries the last snapshot.
    pub async fn wait_for_counters(
        &self,
        timeout: Duration,
        pred: impl Fn(&Counters) -> bool,
    ) -> Result<Counters, CountersTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.shared.subscribe_changes();
        loop {
            changes.borrow_and_update();
            let snapshot = self.counters();
            if pred(&snapshot) {
                return Ok(snapshot);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(CountersTimeout {
                        last: Box::new(self.counters()),
                    })
                }
            }
        }
    }

    /// [`FakeOpenAi::wait_for_counters`] for synchronous tests.
    pub fn wait_for_counters_blocking(
        &self,
        timeout: Duration,
        pred: impl Fn(&Counters) -> bool,
    ) -> Result<Counters, CountersTimeout> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.raw_lock();
        loop {
            if pred(&state.counters) {
                return Ok(state.counters.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CountersTimeout {
                    last: Box::new(state.counters.clone()),
                });
            }
            state = self.shared.wait_changed_blocking(state, deadline - now);
        }
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        self.registry.kill_all();
        match &mut self.runner {
            Runner::Task(task) => task.abort(),
            Runner::Thread { stop, thread } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}

impl std::fmt::Debug for FakeOpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOpenAi")
            .field("base_url", &self.base_url())
            .finish()
    }
}

/// The Codex CLI's `auth.json` for `tokens` (see [`FakeOpenAi::auth_json`]).
pub fn auth_json(tokens: &IssuedTokens, last_refresh: chrono::DateTime<chrono::Utc>) -> String {
    let doc = serde_json::json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": tokens.id_token,
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "account_id": tokens.account_id,
        },
        "last_refresh": last_refresh.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    // Keys come out alphabetically (serde_json's default map); JSON readers do not care, and
    // the CLI pretty-prints its own file the same way.
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string())
}

#[cfg(test)]
mod tests {
    /// Tests share the fake across tasks and threads.
    #[test]
    fn handles_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::FakeOpenAi>();
        assert_send_sync::<super::StreamGate>();
        assert_send_sync::<super::Counters>();
    }
}
