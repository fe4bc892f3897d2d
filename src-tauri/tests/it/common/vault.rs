//! The suite's one rig, [`TestVault`], made by its builder: a data dir in a temp dir (the
//! [`DataDir`] layer, which also runs the real binary), the fake OpenAI, accounts imported from
//! grants the fake issued, and — unless told otherwise — the core opened from one `Config` the way
//! `serve` opens it (`runtime::Core::open`) with its endpoint listening on a free port. The
//! configuration the core reads is made in one function, [`config`]; processes get the same values
//! through their environment ([`process_env`], [`fake_env`]).

use super::DataDir;
use codex_vault::accounts::Service;
use codex_vault::config::Config;
use codex_vault::endpoint::{self, Endpoint};
use codex_vault::oauth::auth_json;
use codex_vault::oauth::client::{Issuer, TokenClient};
use codex_vault::refresh::{RefreshConfig, TokenManager};
use codex_vault::runtime::Core;
use codex_vault::vault::KeyStoreKind;
use codex_vault_testkit::{AccountCounters, AccountSpec, FakeConfig, FakeOpenAi, IssuedTokens};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// Where every test's vault keeps its key: the session's keychain (`scripts/keyring-session.sh`).
pub const KEY_STORE: KeyStoreKind = KeyStoreKind::Keychain;

/// The one place the suite makes the core's configuration: the data dir, the session's keychain,
/// the fake as the sign-in server and as the Codex backend, and the refresh engine's tuning
/// (retries fast enough for a test).
pub fn config(data_dir: &Path, fake: &FakeOpenAi) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        key_store: KEY_STORE,
        issuer: Issuer {
            base: fake.base_url(),
        },
        upstream: fake.codex_base(),
        refresh: refresh_config(fake),
        // Filled by `Core::open` from the store it opens.
        settings: Default::default(),
    }
}

/// The refresh tuning of [`config`], for the tests that start a refresh engine of their own
/// (`..refresh_config(fake)` to change one knob).
pub fn refresh_config(fake: &FakeOpenAi) -> RefreshConfig {
    RefreshConfig {
        usage_url: Some(fake.usage_url()),
        retry_base: Duration::from_millis(20),
        ..RefreshConfig::default()
    }
}

/// [`config`]'s data dir as a process's environment (what `Config::from_env` reads back).
pub fn process_env(data_dir: &Path) -> Vec<(&'static str, String)> {
    vec![("CODEX_VAULT_HOME", data_dir.display().to_string())]
}

/// [`config`]'s sign-in server and Codex backend (the fake) as a process's environment.
pub fn fake_env(fake: &FakeOpenAi) -> Vec<(&'static str, String)> {
    // Only the fake's part of the configuration is read here: no data dir is named.
    let c = config(Path::new(""), fake);
    vec![
        ("CODEX_VAULT_AUTH_BASE", c.issuer.base),
        ("CODEX_VAULT_UPSTREAM", c.upstream),
    ]
}

/// How much of the core a [`TestVault`] starts.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Face {
    /// `Core::open` and its endpoint listening on a free port (what `serve` runs).
    #[default]
    Serving,
    /// `Core::open` only: the endpoint's controller is there, not started (`TestVault::ctl`).
    Stopped,
    /// No core: the store opened in this process only (refresh-engine scenarios start their own
    /// `TokenManager`s: `TestVault::manager`).
    StoreOnly,
}

/// What a [`TestVault`] starts with; `TestVault::new(n)` is the common case.
#[derive(Default)]
pub struct TestVaultBuilder {
    accounts: usize,
    emails: Option<String>,
    settings: Vec<(String, String)>,
    fake: Option<FakeConfig>,
    tune: Option<Tune>,
    face: Face,
}

/// A change a test makes to [`config`] (the knobs `Config` has and the test needs).
type Tune = std::sync::Arc<dyn Fn(&mut Config) + Send + Sync>;

impl TestVaultBuilder {
    /// `n` accounts, `ep0@corp.com` … at the fake, imported in that order.
    pub fn accounts(mut self, n: usize) -> Self {
        self.accounts = n;
        self
    }

    /// The accounts' emails are `{prefix}0@corp.com` … instead.
    pub fn emails(mut self, prefix: &str) -> Self {
        self.emails = Some(prefix.to_string());
        self
    }

    /// A store setting written before the core opens.
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_string(), value.to_string()));
        self
    }

    pub fn settings(self, settings: &[(&str, &str)]) -> Self {
        settings.iter().fold(self, |b, (k, v)| b.setting(k, v))
    }

    /// The fake OpenAI started with `cfg` instead of its defaults.
    pub fn fake(mut self, cfg: FakeConfig) -> Self {
        self.fake = Some(cfg);
        self
    }

    /// The endpoint forwards to `base` instead of the fake's Codex backend (a test's own server).
    pub fn upstream(self, base: &str) -> Self {
        let base = base.to_string();
        self.configure(move |c| c.upstream = base.clone())
    }

    /// The core's `Config` changed by `tune` after [`config`] made it (e.g. its refresh tuning).
    pub fn configure(mut self, tune: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        let before = self.tune.take();
        self.tune = Some(std::sync::Arc::new(move |c: &mut Config| {
            if let Some(b) = &before {
                b(c);
            }
            tune(c);
        }));
        self
    }

    /// The core opened, its endpoint not started (the app's endpoint controls: `TestVault::ctl`).
    pub fn stopped(mut self) -> Self {
        self.face = Face::Stopped;
        self
    }

    /// No core at all: the store in this process, for tests that drive the refresh engine.
    pub fn no_endpoint(mut self) -> Self {
        self.face = Face::StoreOnly;
        self
    }

    /// Only the data-dir layer (temp dirs and the real binary), for process-level scenarios:
    /// nothing is opened in this process.
    pub fn data_dir(self) -> DataDir {
        DataDir::new()
    }

    pub async fn start(self) -> TestVault {
        let fake = FakeOpenAi::start(self.fake.unwrap_or_default()).await;
        let dir = DataDir::new();
        let service = dir.open();
        for (k, v) in &self.settings {
            service.store().set_setting(k, v).unwrap();
        }
        let prefix = self.emails.as_deref().unwrap_or("ep");
        let mut tv = TestVault {
            fake,
            dir,
            service,
            core: None,
            ep: None,
            tune: self.tune,
            key: String::new(),
            accounts: Vec::new(),
            http: reqwest::Client::new(),
        };
        tv.accounts = (0..self.accounts)
            .map(|i| {
                let t = tv.fake.add_account(AccountSpec {
                    email: format!("{prefix}{i}@corp.com"),
                    ..Default::default()
                });
                tv.import(&t);
                t
            })
            .collect();
        match self.face {
            Face::Serving => tv.start_core(true).await,
            Face::Stopped => tv.start_core(false).await,
            Face::StoreOnly => {}
        }
        tv
    }
}

/// A data dir, the fake OpenAI and (as built) the core and its endpoint over them.
pub struct TestVault {
    pub fake: FakeOpenAi,
    /// The data-dir layer (`data_dir()` is the store's directory).
    pub dir: DataDir,
    /// The test's own handle on the store (another connection than the core's, as another
    /// process would have): imports and settings go through it.
    pub service: Service,
    /// The core (`core()`); None for `no_endpoint()`.
    pub core: Option<Core>,
    /// The running endpoint (`ep()`); None for `stopped()` / `no_endpoint()`.
    pub ep: Option<Endpoint>,
    /// `TestVaultBuilder::configure`, kept for a restart.
    tune: Option<Tune>,
    /// The endpoint's local API key (empty until the core is opened).
    pub key: String,
    pub accounts: Vec<IssuedTokens>,
    pub http: reqwest::Client,
}

impl TestVault {
    pub fn builder() -> TestVaultBuilder {
        TestVaultBuilder::default()
    }

    pub async fn new(n: usize) -> TestVault {
        TestVault::builder().accounts(n).start().await
    }

    /// A vault without a core (`no_endpoint()`) holding one account whose access token has
    /// already expired (`email` at the fake): the refresh engine's scenarios. Also gives the
    /// account's grant and id.
    pub async fn with_expired(email: &str) -> (TestVault, IssuedTokens, String) {
        let e = TestVault::builder().no_endpoint().start().await;
        let t = expired_account(&e.fake, email);
        let id = e.import(&t);
        (e, t, id)
    }

    /// `settings` are written to the store before the endpoint starts.
    pub async fn with_settings(n: usize, settings: &[(&str, &str)]) -> TestVault {
        TestVault::builder()
            .accounts(n)
            .settings(settings)
            .start()
            .await
    }

    /// The core over [`config`], as `serve` opens it; `listen`: its endpoint on a free port.
    /// The endpoint is started through `endpoint::start` rather than `Core::start`, whose
    /// controller keeps the listener to itself: the tests read it (`ep()`: port, connection
    /// budget, keyless requests in flight) and `Core::start` would also run the scheduler, which
    /// would refresh behind the counts these tests assert.
    async fn start_core(&mut self, listen: bool) {
        let mut config = config(&self.data_dir(), &self.fake);
        if let Some(tune) = &self.tune {
            tune(&mut config);
        }
        let core = Core::open(config).unwrap();
        self.key = core.service.local_api_key().unwrap().expose().to_string();
        if listen {
            let ep = endpoint::start(
                core.service.clone(),
                core.token_manager.clone(),
                0,
                core.config.upstream.clone(),
            )
            .await
            .unwrap();
            self.ep = Some(ep);
        }
        self.core = Some(core);
    }

    /// Opens the core and starts its endpoint now (after a `no_endpoint()` start, once the test
    /// has set the store up its own way).
    pub async fn serve(&mut self) {
        assert!(self.core.is_none(), "the core is open already");
        self.start_core(true).await;
    }

    /// Stops the endpoint and opens the core again on the same store, as a restart of `serve`.
    pub async fn restart(&mut self) {
        drop(self.ep.take());
        drop(self.core.take());
        self.serve().await;
    }

    /// The store's directory.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.vault_home()
    }

    /// The core (not for `no_endpoint()`).
    pub fn core(&self) -> &Core {
        self.core
            .as_ref()
            .expect("this TestVault has no core (no_endpoint)")
    }

    /// The running endpoint (not for `stopped()` / `no_endpoint()`).
    pub fn ep(&self) -> &Endpoint {
        self.ep.as_ref().expect("this TestVault has no endpoint")
    }

    /// The core's refresh engine (the one `serve` runs beside its endpoint).
    pub fn tm(&self) -> &TokenManager {
        &self.core().token_manager
    }

    /// The endpoint's controller, as the app's panel and tray hold it.
    pub fn ctl(&self) -> &codex_vault::endpoint::ctl::EndpointControl {
        &self.core().endpoint
    }

    /// Another handle on the same data dir, as a second process would have.
    pub fn reopen(&self) -> Service {
        self.dir.open()
    }

    /// Imports a grant; returns the account id.
    pub fn import(&self, tokens: &IssuedTokens) -> String {
        import_into(&self.service, tokens)
    }

    /// A refresh engine of the test's own over the test's store handle, talking to the fake.
    pub fn manager(&self, cfg: RefreshConfig) -> TokenManager {
        manager_for(&self.service, &self.fake, cfg)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.ep().url())
    }

    /// A Responses request (streamed, as the Codex CLI sends it), keyed.
    pub fn post(&self, body: Value) -> reqwest::RequestBuilder {
        self.streamed("/v1/responses", &body)
    }

    /// A JSON `POST` to `path`, keyed.
    pub fn keyed_post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.key)
            .json(body)
    }

    /// A streamed request to `path`, keyed.
    pub fn streamed(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.keyed_post(path, body)
            .header("accept", "text/event-stream")
    }

    /// [`TestVault::streamed`] sent: its status and whole body.
    pub async fn post_to(&self, path: &str, body: &Value) -> (u16, String) {
        let resp = self.streamed(path, body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// Asserts a keyed Responses turn is answered in full (200, through `response.completed`).
    pub async fn assert_answers_a_turn(&self) {
        let resp = self
            .keyed_post("/v1/responses", &turn(None))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            String::from_utf8_lossy(&resp.bytes().await.unwrap()).contains("response.completed")
        );
    }

    /// One Responses turn: its status and whole body.
    pub async fn turn(&self, body: &Value) -> (u16, String) {
        self.post_to("/v1/responses", body).await
    }

    /// A Chat Completions request, keyed.
    pub fn chat(&self, body: Value) -> reqwest::RequestBuilder {
        self.keyed_post("/v1/chat/completions", &body)
    }

    /// `GET /v1/accounts`, parsed: the endpoint's view of every account.
    pub async fn accounts_view(&self) -> Vec<Value> {
        let resp = self
            .http
            .get(self.url("/v1/accounts"))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// The endpoint's view of the account `t` was issued for.
    pub async fn account_view(&self, t: &IssuedTokens) -> Value {
        self.accounts_view()
            .await
            .into_iter()
            .find(|v| v["chatgpt_account_id"] == t.account_id.as_str())
            .unwrap()
    }

    /// Responses calls the fake served for the account `t` was issued for.
    pub fn calls(&self, t: &IssuedTokens) -> u64 {
        per_account(&self.fake, &t.account_id).responses_calls
    }

    /// The kinds of the account's latest events (up to 100, newest first), from the store.
    pub fn events(&self, id: &str) -> Vec<String> {
        self.service
            .store()
            .events(id, 100)
            .unwrap()
            .into_iter()
            .map(|ev| ev.kind)
            .collect()
    }

    /// [`TestVault::calls`] of every account, in import order.
    pub fn per_account_calls(&self) -> Vec<u64> {
        self.accounts.iter().map(|t| self.calls(t)).collect()
    }

    pub fn all_token_text(&self) -> Vec<String> {
        self.accounts
            .iter()
            .flat_map(|t| {
                [
                    t.access_token.clone(),
                    t.refresh_token.clone(),
                    t.id_token.clone(),
                ]
            })
            .collect()
    }
}

/// Imports a grant through `service` (e.g. a `reopen()`ed one: another process); returns the
/// account id.
pub fn import_into(service: &Service, tokens: &IssuedTokens) -> String {
    let text = FakeOpenAi::auth_json(tokens, chrono::Utc::now());
    let cred = auth_json::parse(text.as_bytes()).unwrap();
    service.import(&cred, None).unwrap().account().id.clone()
}

/// A refresh engine over `service` talking to `fake` (a second manager, as another process has).
pub fn manager_for(service: &Service, fake: &FakeOpenAi, cfg: RefreshConfig) -> TokenManager {
    TokenManager::new(
        service.store().clone(),
        service.vault().clone(),
        TokenClient::new(Issuer {
            base: fake.base_url(),
        }),
        cfg,
    )
}

/// What the fake counted for one account (zeros before its first call).
pub fn per_account(fake: &FakeOpenAi, chatgpt_account_id: &str) -> AccountCounters {
    fake.counters()
        .per_account
        .get(chatgpt_account_id)
        .cloned()
        .unwrap_or_default()
}

/// An account at the fake whose current access token has already expired.
pub fn expired_account(fake: &FakeOpenAi, email: &str) -> IssuedTokens {
    let first = fake.add_account(AccountSpec {
        email: email.into(),
        ..Default::default()
    });
    fake.issue_grant(&first.account_id, Some(Duration::ZERO))
}

/// Whether the fake's backend accepts this access token right now.
pub async fn accepted(fake: &FakeOpenAi, access: &str, chatgpt_account_id: &str) -> bool {
    reqwest::Client::new()
        .get(fake.usage_url())
        .bearer_auth(access)
        .header("ChatGPT-Account-ID", chatgpt_account_id)
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
}

/// A one-turn Responses request as the Codex CLI streams it; `key` its `prompt_cache_key`.
pub fn turn(key: Option<&str>) -> Value {
    let mut v = json!({"model": "gpt-5-codex", "instructions": "", "input": [{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}], "stream": true, "store": false});
    if let Some(k) = key {
        v["prompt_cache_key"] = json!(k);
    }
    v
}

/// A one-message chat request; `key` becomes its `prompt_cache_key` (the conversation).
pub fn chat_turn(stream: bool, key: Option<&str>) -> Value {
    let mut v = json!({"model": "gpt-5.5", "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]});
    if let Some(k) = key {
        v["prompt_cache_key"] = json!(k);
    }
    v
}
