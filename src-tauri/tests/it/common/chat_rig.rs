//! The endpoint in this process, backed by the fake OpenAI, for the Chat Completions scenarios.

use super::engine::*;
use codex_vault::endpoint::{self, Endpoint};
use codex_vault_testkit::{AccountSpec, FakeConfig, FakeOpenAi, IssuedTokens};
use serde_json::{json, Value};
use std::sync::Arc;

pub struct Rig {
    pub fake: FakeOpenAi,
    pub e: Engine,
    pub ep: Endpoint,
    pub key: String,
    pub accounts: Vec<IssuedTokens>,
    pub http: reqwest::Client,
}

impl Rig {
    pub async fn new(n: usize) -> Rig {
        let fake = FakeOpenAi::start(FakeConfig::default()).await;
        let e = Engine::new();
        let accounts: Vec<IssuedTokens> = (0..n)
            .map(|i| {
                let t = fake.add_account(AccountSpec {
                    email: format!("chat{i}@corp.com"),
                    ..Default::default()
                });
                e.import(&t);
                t
            })
            .collect();
        let service = Arc::new(e.reopen());
        let tm = manager_for(&service, &fake, config(&fake));
        let key = service.local_api_key().unwrap().expose().to_string();
        let ep = endpoint::start(service, tm, 0, fake.codex_base())
            .await
            .unwrap();
        Rig {
            fake,
            e,
            ep,
            key,
            accounts,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.ep.url())
    }

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
