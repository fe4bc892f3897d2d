//! Redeeming an account's reset credit (README.md § Reset credits): only on an explicit action
//! (the card's button after its confirmation, `accounts redeem-reset --yes`), never by itself.
//!
//! At most one credit per action, whatever goes wrong: the `redeem_request_id` is written to the
//! store before the consume call goes out (`Store::begin_redemption`), and a retry — after a lost
//! answer, from a second click, from another process — sends the same id, on which upstream is
//! idempotent. Calls for one account in this process run one at a time, and one that waited
//! while another finished takes that one's result instead of spending a second credit. The
//! account's limit is lifted when upstream says the windows were reset (re-read from
//! `/wham/usage`), never assumed.

use super::Service;
use crate::account::quota::{self, ResetCredits};
use crate::account::usage::UsageSnapshot;
use crate::account::{now_ms, Status};
use crate::error::{AppError, RedeemError};
use crate::refresh::{AccessToken, TokenManager};
use crate::store::Redemption;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a redemption did (`accounts redeem-reset --json`, the app's command).
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct RedeemOutcome {
    pub account_id: String,
    pub label: String,
    pub redeem_request_id: String,
    pub credit_id: Option<String>,
    /// Upstream's code: `reset`, `nothing_to_reset`, `no_credit`, `already_redeemed`.
    pub code: String,
    #[ts(type = "number")]
    pub windows_reset: i64,
    /// This call re-sent a redemption left pending (its answer had been lost).
    pub retried: bool,
    /// This call waited for another redemption of the account that finished meanwhile, and
    /// reports that one (nothing more was spent).
    pub joined: bool,
    /// The account is no longer rate-limited (upstream's usage says so).
    pub limit_lifted: bool,
    /// The usage read right after (None when the read failed).
    pub usage: Option<UsageSnapshot>,
}

/// The backend URLs, beside the Codex base (`{backend-api}/codex`).
struct Urls {
    usage: String,
    list: String,
    consume: String,
}

impl Urls {
    fn from_upstream(upstream: &str) -> Urls {
        let usage = crate::refresh::usage_url(upstream);
        let list = quota::reset_credits_url(&usage);
        Urls {
            consume: format!("{list}/consume"),
            usage,
            list,
        }
    }
}

/// One redemption at a time per account in this process.
fn gate(key: &str) -> Arc<tokio::sync::Mutex<()>> {
    static GATES: Mutex<Option<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = Mutex::new(None);
    let mut g = GATES.lock().unwrap_or_else(|e| e.into_inner());
    g.get_or_insert_with(HashMap::new)
        .entry(key.to_string())
        .or_default()
        .clone()
}

fn get(http: &reqwest::Client, url: &str, token: &AccessToken) -> reqwest::RequestBuilder {
    let mut req = http
        .get(url)
        .bearer_auth(token.token.expose())
        .header("ChatGPT-Account-ID", &token.chatgpt_account_id)
        .timeout(Duration::from_secs(30));
    if token.fedramp {
        req = req.header("X-OpenAI-Fedramp", "true");
    }
    req
}

impl Service {
    /// What an account's last usage reading says about its reset credits (no network).
    pub fn reset_credits(&self, reference: &str) -> Result<Option<ResetCredits>, AppError> {
        let view = self.view(reference)?;
        Ok(view
            .usage
            .and_then(|u| serde_json::from_value::<UsageSnapshot>(u).ok())
            .and_then(|u| u.quota)
            .and_then(|q| q.reset_credits))
    }

    /// Redeems one reset credit of the account (see the module comment).
    pub async fn redeem_reset(
        &self,
        tm: &TokenManager,
        reference: &str,
    ) -> Result<RedeemOutcome, AppError> {
        self.redeem_reset_at(tm, reference, &crate::refresh::upstream_base())
            .await
    }

    pub async fn redeem_reset_at(
        &self,
        tm: &TokenManager,
        reference: &str,
        upstream: &str,
    ) -> Result<RedeemOutcome, AppError> {
        let started = now_ms();
        let account = self.store().find_account(reference)?;
        let label = account.label.clone();
        let unusable = |why: &str| RedeemError::Unusable {
            label: label.clone(),
            why: why.to_string(),
        };
        if account.disabled {
            return Err(unusable("it is disabled").into());
        }
        if account.status == Status::Terminal {
            return Err(unusable("it needs a new sign-in").into());
        }
        let gate = gate(&format!("{}:{}", self.store().store_id(), account.id));
        let _one_at_a_time = gate.lock().await;
        let urls = Urls::from_upstream(upstream);
        let http = crate::http::upstream();
        if let Some(last) = self.store().last_finished_redemption(&account.id)? {
            if last.finished_at.is_some_and(|t| t >= started) {
                let token = tm.access_token(&account.id).await?;
                let usage = self.reread_usage(&http, &urls, &token, &account.id).await;
                return Ok(outcome(&account.id, &label, &last, false, true, usage));
            }
        }
        let token = tm.access_token(&account.id).await?;
        let (redemption, retried) = match self.store().pending_redemption(&account.id)? {
            Some(p) => (p, true),
            None => {
                let list = self.list_credits(&http, &urls, &token, &label).await?;
                let Some(credit) = list.next_to_spend() else {
                    return Err(RedeemError::NoCredit {
                        label,
                        available: list.available_count,
                    }
                    .into());
                };
                let id = uuid::Uuid::new_v4().to_string();
                self.store()
                    .begin_redemption(&account.id, &id, Some(&credit.id))?
            }
        };
        let answer = self
            .consume(&http, &urls, &token, &redemption, &label)
            .await?;
        let code = answer
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        let windows = answer
            .get("windows_reset")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let done = self
            .store()
            .finish_redemption(&redemption.redeem_request_id, &code, windows)?
            .unwrap_or(redemption);
        let usage = self.reread_usage(&http, &urls, &token, &account.id).await;
        Ok(outcome(&account.id, &label, &done, retried, false, usage))
    }

    async fn list_credits(
        &self,
        http: &reqwest::Client,
        urls: &Urls,
        token: &AccessToken,
        label: &str,
    ) -> Result<ResetCredits, AppError> {
        let resp = get(http, &urls.list, token)
            .send()
            .await
            .map_err(|e| RedeemError::Refused {
                label: label.to_string(),
                status: 0,
                detail: format!(" (the credit list could not be read: {})", e.without_url()),
            })?;
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.ok();
        match body
            .filter(|_| status == 200)
            .and_then(|b| quota::parse_list(&b, now_ms()))
        {
            Some(list) => Ok(list),
            None => Err(RedeemError::Refused {
                label: label.to_string(),
                status,
                detail: " (reading the credit list)".into(),
            }
            .into()),
        }
    }

    /// Sends the consume call for `r`. A lost answer (network, 5xx) leaves `r` pending for a
    /// retry with the same id; a refusal (4xx) closes it.
    async fn consume(
        &self,
        http: &reqwest::Client,
        urls: &Urls,
        token: &AccessToken,
        r: &Redemption,
        label: &str,
    ) -> Result<Value, AppError> {
        let mut body = serde_json::json!({ "redeem_request_id": r.redeem_request_id });
        if let Some(c) = &r.credit_id {
            body["credit_id"] = Value::from(c.as_str());
        }
        let mut req = http
            .post(&urls.consume)
            .bearer_auth(token.token.expose())
            .header("ChatGPT-Account-ID", &token.chatgpt_account_id)
            .json(&body)
            .timeout(Duration::from_secs(30));
        if token.fedramp {
            req = req.header("X-OpenAI-Fedramp", "true");
        }
        let lost = |detail: String| RedeemError::Unconfirmed {
            label: label.to_string(),
            request_id: r.redeem_request_id.clone(),
            detail,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| lost(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        if status >= 500 || status == 429 {
            return Err(lost(format!("HTTP {status}")).into());
        }
        let answer = resp.json::<Value>().await;
        match answer {
            Ok(v) if status == 200 && v.get("code").is_some() => Ok(v),
            Ok(_) | Err(_) if status == 200 => Err(lost("an unreadable answer".into()).into()),
            _ => {
                self.store().finish_redemption(
                    &r.redeem_request_id,
                    &format!("refused_{status}"),
                    0,
                )?;
                Err(RedeemError::Refused {
                    label: label.to_string(),
                    status,
                    detail: String::new(),
                }
                .into())
            }
        }
    }

    /// Reads the account's usage after a redemption and records it; lifts the rate limit when
    /// upstream no longer reports it reached. `None` when the read failed.
    async fn reread_usage(
        &self,
        http: &reqwest::Client,
        urls: &Urls,
        token: &AccessToken,
        account_id: &str,
    ) -> Option<(UsageSnapshot, bool)> {
        let resp = get(http, &urls.usage, token).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.json::<Value>().await.ok()?;
        let previous = self
            .store()
            .get_account(account_id)
            .ok()
            .flatten()
            .and_then(|a| a.usage_json)
            .and_then(|j| serde_json::from_str::<UsageSnapshot>(&j).ok())
            .and_then(|u| u.quota);
        let (mut snap, reached) = quota::parse_usage(&body, previous.as_ref())?;
        if let Some(q) = snap.quota.as_mut() {
            if quota::needs_list(q, now_ms(), 0) {
                let list = get(http, &urls.list, token).send().await.ok();
                if let Some(resp) = list.filter(|r| r.status().is_success()) {
                    if let Some(l) = resp
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|b| quota::parse_list(&b, now_ms()))
                    {
                        q.reset_credits = Some(l);
                    }
                }
            }
        }
        let health = crate::health::Health::new(self.shared_store().clone());
        if let Ok(json) = serde_json::to_string(&snap) {
            if let Err(e) = health.usage(account_id, &json) {
                tracing::warn!("cannot save the usage read after a redemption: {e}");
            }
        }
        if !reached {
            if let Err(e) = health.rate_limit_lifted(account_id) {
                tracing::warn!("cannot record the lifted limit: {e}");
            }
        }
        // Whoever shows this account re-reads it (the limit may not have changed, the figures did).
        crate::bus::publish(crate::bus::CoreEvent::AccountChanged {
            account_id: account_id.to_string(),
        });
        Some((snap, reached))
    }
}

fn outcome(
    account_id: &str,
    label: &str,
    r: &Redemption,
    retried: bool,
    joined: bool,
    read: Option<(UsageSnapshot, bool)>,
) -> RedeemOutcome {
    let (usage, reached) = match read {
        Some((u, reached)) => (Some(u), reached),
        None => (None, true),
    };
    RedeemOutcome {
        account_id: account_id.to_string(),
        label: label.to_string(),
        redeem_request_id: r.redeem_request_id.clone(),
        credit_id: r.credit_id.clone(),
        code: r.code.clone().unwrap_or_default(),
        windows_reset: r.windows_reset.unwrap_or(0),
        retried,
        joined,
        limit_lifted: !reached,
        usage,
    }
}
