//! In-process helpers for refresh-engine scenarios: a store in a temp dir with accounts imported
//! from grants the fake issued, and TokenManagers pointed at the fake.

use codex_vault::accounts::Service;
use codex_vault::oauth::auth_json;
use codex_vault::oauth::client::{Issuer, TokenClient};
use codex_vault::refresh::{RefreshConfig, TokenManager};
use codex_vault::vault::KeyStoreKind;
use codex_vault_testkit::{AccountSpec, FakeOpenAi, IssuedTokens};
use std::time::Duration;

pub struct Engine {
    pub dir: tempfile::TempDir,
    pub service: Service,
}

impl Engine {
    pub fn new() -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let service = Service::open(dir.path(), KeyStoreKind::Keychain).unwrap();
        Engine { dir, service }
    }

    /// Another handle on the same data dir, as a second process would have.
    pub fn reopen(&self) -> Service {
        Service::open(self.dir.path(), KeyStoreKind::Keychain).unwrap()
    }

    /// Imports a grant; returns the account id.
    pub fn import(&self, tokens: &IssuedTokens) -> String {
        let text = FakeOpenAi::auth_json(tokens, chrono::Utc::now());
        let cred = auth_json::parse(text.as_bytes()).unwrap();
        self.service
            .import(&cred, None)
            .unwrap()
            .account()
            .id
            .clone()
    }

    pub fn manager(&self, fake: &FakeOpenAi, cfg: RefreshConfig) -> TokenManager {
        manager_for(&self.service, fake, cfg)
    }
}

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

pub fn config(fake: &FakeOpenAi) -> RefreshConfig {
    RefreshConfig {
        usage_url: Some(fake.usage_url()),
        retry_base: Duration::from_millis(20),
        ..RefreshConfig::default()
    }
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
