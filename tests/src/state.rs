//! The fake's whole world: accounts, token families, codes, injected faults, counters. One
//! `State` behind one mutex; route handlers lock it briefly and never across an `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use crate::config::{AccountSpec, FakeConfig, Fault, FaultRoute};
use crate::counters::Counters;
use crate::gate::{GateShared, StreamGate};
use crate::jwt::JwtSigner;

/// Upstream's usage windows (protocol.md: 300 min and 10080 min).
pub(crate) const PRIMARY_WINDOW_SECS: i64 = 300 * 60;
pub(crate) const SECONDARY_WINDOW_SECS: i64 = 10_080 * 60;

pub(crate) struct Account {
    pub spec: AccountSpec,
    /// While set, every refresh grant of this account answers this status (an issuer failing
    /// for one account), without rotating.
    pub refresh_failure: Option<u16>,
    /// Limited until this unix second (inclusive of earlier times only).
    pub rate_limited_until: Option<i64>,
    pub primary_used_percent: f64,
    pub secondary_used_percent: f64,
    pub primary_reset_at: i64,
    pub secondary_reset_at: i64,
    /// How this account words its refusal of ciphertext it cannot verify.
    pub encrypted_content_error: crate::encrypted::EncryptedContentError,
    /// The quota extras `/wham/usage` reports, and the reset credits (`quota_routes`).
    pub quota: crate::quota_routes::AccountQuota,
}

impl Account {
    pub fn new(spec: AccountSpec, now: i64) -> Self {
        Account {
            spec,
            refresh_failure: None,
            rate_limited_until: None,
            primary_used_percent: 0.0,
            secondary_used_percent: 0.0,
            primary_reset_at: now + PRIMARY_WINDOW_SECS,
            secondary_reset_at: now + SECONDARY_WINDOW_SECS,
            encrypted_content_error: Default::default(),
            quota: Default::default(),
        }
    }

    /// Windows roll over like upstream's: once a reset time passes, usage restarts at zero.
    pub fn roll_windows(&mut self, now: i64) {
        let (primary_secs, secondary_secs) = self.window_secs();
        if now >= self.primary_reset_at {
            self.primary_used_percent = 0.0;
            while self.primary_reset_at <= now {
                self.primary_reset_at += primary_secs;
            }
        }
        if now >= self.secondary_reset_at {
            self.secondary_used_percent = 0.0;
            while self.secondary_reset_at <= now {
                self.secondary_reset_at += secondary_secs.unwrap_or(SECONDARY_WINDOW_SECS);
            }
        }
    }

    /// The lengths of the primary and secondary windows (a free plan: one monthly window).
    pub fn window_secs(&self) -> (i64, Option<i64>) {
        match self.quota.windows {
            Some((p, s)) => (p.max(1), s.map(|s| s.max(1))),
            None => (PRIMARY_WINDOW_SECS, Some(SECONDARY_WINDOW_SECS)),
        }
    }

    /// The reset time of a current usage limit, if one is in force.
    pub fn limited_until(&self, now: i64) -> Option<i64> {
        self.rate_limited_until.filter(|until| *until > now)
    }
}

/// One refresh-token family: the chain of rotations that started with one sign-in (or one
/// `issue_grant`). Exactly one of its refresh tokens is current at a time.
pub(crate) struct Family {
    pub account_id: String,
    pub session_id: String,
    pub current_rt: String,
    pub revoked: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum RtStatus {
    Current,
    /// Already redeemed once: presenting it again is a reuse.
    Rotated,
}

pub(crate) struct RtEntry {
    pub family: u64,
    pub status: RtStatus,
}

pub(crate) struct AccessEntry {
    pub family: u64,
    pub account_id: String,
    pub exp: i64,
}

pub(crate) struct PendingCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub account_id: String,
    pub expires_at: i64,
    /// Set once redeemed; a second redemption revokes this family (RFC 6749 § 4.1.2).
    pub redeemed_family: Option<u64>,
}

pub(crate) struct State {
    pub cfg: FakeConfig,
    pub issuer: String,
    pub signer: JwtSigner,
    pub accounts: BTreeMap<String, Account>,
    pub families: HashMap<u64, Family>,
    pub next_family: u64,
    pub refresh_tokens: HashMap<String, RtEntry>,
    /// Access tokens by `jti`.
    pub access_tokens: HashMap<String, AccessEntry>,
    pub codes: HashMap<String, PendingCode>,
    pub login_identity: Option<AccountSpec>,
    /// Device-code sign-ins by user code (device.rs).
    pub devices: HashMap<String, crate::device::DeviceAuth>,
    pub faults: HashMap<FaultRoute, VecDeque<Fault>>,
    /// The gate new streams park behind, while one is held.
    pub gate: Option<Arc<GateShared>>,
    /// A gate taken through the admin API, kept until `/__admin/streams/release`.
    pub admin_gate: Option<StreamGate>,
    pub counters: Counters,
    /// Every token text ever minted (access, id, refresh), in order: leak scans look for them.
    pub minted: Vec<String>,
    /// The key account-bound ciphertext (`encrypted_content`) is authenticated with.
    pub content_key: [u8; 32],
    /// Who minted each ciphertext (for the counters only: verification uses the tag).
    pub minted_content: HashMap<String, String>,
    /// The prompt cache: per (account, `prompt_cache_key`), the input tokens of the last request,
    /// which a following request with the same key finds cached (in 64-token blocks, as the
    /// backend counts whole blocks of a repeated prefix).
    pub prompt_cache: HashMap<(String, String), u64>,
    /// Every request that reached the fake outside `/__admin`, in order ("METHOD /path" and
    /// whether it carried a bearer): which routes a client calls under its `chatgpt_base_url`.
    pub route_log: Vec<crate::quota_routes::RouteHit>,
}

impl State {
    pub fn new(cfg: FakeConfig, issuer: String) -> Self {
        State {
            cfg,
            issuer,
            signer: JwtSigner::new_random(),
            accounts: BTreeMap::new(),
            families: HashMap::new(),
            next_family: 1,
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            codes: HashMap::new(),
            login_identity: None,
            devices: HashMap::new(),
            faults: HashMap::new(),
            gate: None,
            admin_gate: None,
            counters: Counters::default(),
            minted: Vec::new(),
            content_key: {
                let mut k = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut k);
                k
            },
            minted_content: HashMap::new(),
            prompt_cache: HashMap::new(),
            route_log: Vec::new(),
        }
    }

    /// Adds the account, or updates who it is while keeping its usage and grants (a second
    /// sign-in to the same ChatGPT account).
    pub fn register_account(&mut self, spec: AccountSpec, now: i64) {
        match self.accounts.get_mut(&spec.chatgpt_account_id) {
            Some(existing) => existing.spec = spec,
            None => {
                self.accounts
                    .insert(spec.chatgpt_account_id.clone(), Account::new(spec, now));
            }
        }
    }

    pub fn next_fault(&mut self, route: FaultRoute) -> Option<Fault> {
        let fault = self.faults.get_mut(&route)?.pop_front()?;
        self.counters.faults_fired += 1;
        Some(fault)
    }
}

/// The state plus what lets waiters see it change.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes blocking waiters (`wait_for_counters_blocking`) on every change.
    changed: Condvar,
    /// Wakes async waiters on every change.
    version: watch::Sender<u64>,
    /// Flips to true when the fake shuts down: parked streams stop waiting.
    pub shutdown: watch::Sender<bool>,
}

impl Shared {
    pub fn new(state: State) -> Self {
        Shared {
            state: Mutex::new(state),
            changed: Condvar::new(),
            version: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
        }
    }

    /// Locks the state for a change and wakes every waiter when the guard drops.
    pub fn lock(&self) -> StateGuard<'_> {
        StateGuard {
            // A panic while holding the lock (a failed assertion in a test thread) must not
            // take every later call of the fake down with it; the state stays consistent
            // because every mutation is a few field writes.
            guard: Some(self.state.lock().unwrap_or_else(PoisonError::into_inner)),
            shared: self,
        }
    }

    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub fn wait_changed_blocking<'a>(
        &'a self,
        guard: MutexGuard<'a, State>,
        timeout: std::time::Duration,
    ) -> MutexGuard<'a, State> {
        match self.changed.wait_timeout(guard, timeout) {
            Ok((g, _)) => g,
            Err(poisoned) => poisoned.into_inner().0,
        }
    }

    pub fn raw_lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) struct StateGuard<'a> {
    guard: Option<MutexGuard<'a, State>>,
    shared: &'a Shared,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        // Invariant: `guard` is only taken in `drop`.
        #[allow(clippy::expect_used, reason = "guard is only taken in drop")]
        self.guard.as_ref().expect("guard present until drop")
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        // Invariant: `guard` is only taken in `drop`.
        #[allow(clippy::expect_used, reason = "guard is only taken in drop")]
        self.guard.as_mut().expect("guard present until drop")
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        // Release the lock before waking, so woken waiters can take it at once.
        drop(self.guard.take());
        self.shared.changed.notify_all();
        self.shared.version.send_modify(|v| *v += 1);
    }
}

pub(crate) fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}
