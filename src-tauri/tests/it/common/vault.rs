//! The in-process rig: a data dir in a temp dir, the fake OpenAI, accounts imported from grants
//! the fake issued, and the endpoint started on a free port over them, the way `serve` starts it.
//! Every configuration the core reads (data dir, store settings, upstream and issuer URLs) is set
//! in [`TestVaultBuilder::start`], the one place to switch to the core's `Config`.

use super::engine::*;
use codex_vault::endpoint::{self, Endpoint};
use codex_vault_testkit::{AccountSpec, FakeConfig, FakeOpenAi, IssuedTokens};
use serde_json::{json, Value};
use std::sync::Arc;

pub struct TestVault {
    pub fake: FakeOpenAi,
    pub e: Engine,
    pub ep: Endpoint,
    /// The endpoint's own refresh engine (the one `serve` runs beside it).
    pub tm: codex_vault::refresh::TokenManager,
    pub key: String,
    pub accounts: Vec<IssuedTokens>,
    pub http: reqwest::Client,
}

/// What a [`TestVault`] starts with; `TestVault::new(n)` is the common case.
#[derive(Default)]
pub struct TestVaultBuilder {
    accounts: usize,
    settings: Vec<(String, String)>,
}

impl TestVaultBuilder {
    /// `n` accounts, `ep0@corp.com` … at the fake, imported in that order.
    pub fn accounts(mut self, n: usize) -> Self {
        self.accounts = n;
        self
    }

    /// A store setting written before the endpoint starts.
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_string(), value.to_string()));
        self
    }

    pub async fn start(self) -> TestVault {
        let fake = FakeOpenAi::start(FakeConfig::default()).await;
        let e = Engine::new();
        for (k, v) in &self.settings {
            e.service.store().set_setting(k, v).unwrap();
        }
        let accounts: Vec<IssuedTokens> = (0..self.accounts)
            .map(|i| {
                let t = fake.add_account(AccountSpec {
                    email: format!("ep{i}@corp.com"),
                    ..Default::default()
                });
                e.import(&t);
                t
            })
            .collect();
        let service = Arc::new(e.reopen());
        let tm = manager_for(&service, &fake, config(&fake));
        let key = service.local_api_key().unwrap().expose().to_string();
        let ep = endpoint::start(service, tm.clone(), 0, fake.codex_base())
            .await
            .unwrap();
        TestVault {
            fake,
            e,
            ep,
            tm,
            key,
            accounts,
            http: reqwest::Client::new(),
        }
    }
}

impl TestVault {
    pub fn builder() -> TestVaultBuilder {
        TestVaultBuilder::default()
    }

    pub async fn new(n: usize) -> TestVault {
        TestVault::builder().accounts(n).start().await
    }

    /// `settings` are written to the store before the endpoint starts.
    pub async fn with_settings(n: usize, settings: &[(&str, &str)]) -> TestVault {
        settings
            .iter()
            .fold(TestVault::builder().accounts(n), |b, (k, v)| {
                b.setting(k, v)
            })
            .start()
            .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.ep.url())
    }

    /// A Responses request (streamed, as the Codex CLI sends it), keyed.
    pub fn post(&self, body: Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url("/v1/responses"))
            .bearer_auth(&self.key)
            .header("accept", "text/event-stream")
            .json(&body)
    }

    /// A Chat Completions request, keyed.
    pub fn chat(&self, body: Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(&self.key)
            .json(&body)
    }

    pub fn per_account_calls(&self) -> Vec<u64> {
        let n = self.fake.counters();
        self.accounts
            .iter()
            .map(|t| {
                n.per_account
                    .get(&t.account_id)
                    .map_or(0, |c| c.responses_calls)
            })
            .collect()
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
