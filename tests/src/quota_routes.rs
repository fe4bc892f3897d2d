//! Quota surfaces of the ChatGPT backend beyond the two usage windows (protocol.md § The CLI's own
//! backend): the `/wham/usage` extras (credits balance, additional metered limits, a free plan's
//! monthly window, the reset-credit summary) and the reset credits themselves —
//! `GET /backend-api/wham/rate-limit-reset-credits` and its `…/consume`. Shapes as codex-rs's
//! `backend-client` decodes them (`RateLimitStatusPayload`, `RateLimitResetCreditsDetails`,
//! `ConsumeRateLimitResetCreditResponse`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State as AxState};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::FaultRoute;
use crate::conn::ConnHandle;
use crate::faults::{
    apply_after, apply_fault, json_response, rejection_response, take_after_fault,
};
use crate::state::{now_unix, Account, Shared, State};

/// A reset credit the backend granted an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetCredit {
    pub id: String,
    /// Unix seconds.
    pub granted_at: i64,
    /// Unix seconds; `None`: never expires.
    pub expires_at: Option<i64>,
    /// Set once spent.
    pub redeemed: bool,
}

/// A metered limit reported beside the account's own (`additional_rate_limits[]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdditionalLimit {
    pub limit_name: String,
    pub metered_feature: String,
    pub used_percent: f64,
    pub window_secs: i64,
    /// Unix seconds.
    pub reset_at: i64,
}

/// The credits balance (`credits{has_credits, unlimited, balance}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditsBalance {
    pub has_credits: bool,
    pub unlimited: bool,
    /// A decimal string, as the backend sends it.
    pub balance: String,
}

#[derive(Clone, Debug, Default)]
pub struct AccountQuota {
    /// `(primary, secondary)` window lengths in seconds; `None`: 5 h + weekly. A free plan
    /// reports one monthly window (`(2_592_000, None)`).
    pub windows: Option<(i64, Option<i64>)>,
    pub credits: Option<CreditsBalance>,
    pub additional: Vec<AdditionalLimit>,
    pub reset_credits: Vec<ResetCredit>,
    /// redeem_request_id → the answer given: a retry with the same id spends nothing more and
    /// is answered the same.
    pub redemptions: HashMap<String, Value>,
}

/// One request the fake saw (outside `/__admin`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteHit {
    pub method: String,
    pub path: String,
    /// Whether it carried `Authorization: Bearer …` (never the token itself).
    pub bearer: bool,
}

pub(crate) fn record_hit(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap) {
    if uri.path().starts_with("/__admin") {
        return;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
    let mut state = shared.lock();
    state.route_log.push(RouteHit {
        method: method.to_string(),
        path: uri.path().to_string(),
        bearer,
    });
}

fn available(c: &ResetCredit, now: i64) -> bool {
    !c.redeemed && c.expires_at.is_none_or(|t| t > now)
}

fn status(c: &ResetCredit, now: i64) -> &'static str {
    if c.redeemed {
        "redeemed"
    } else if available(c, now) {
        "available"
    } else {
        "expired"
    }
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// protocol.md's `/wham/usage` shape, with the extras an account has. `used_percent` is an
/// integer (codex-rs decodes it as `i32`: a float there fails the CLI's whole decode).
pub(crate) fn usage_body(a: &Account, now: i64) -> Value {
    let limited = a.limited_until(now).is_some();
    let (primary_used, primary_reset) = match a.limited_until(now) {
        Some(until) => (100.0, until),
        None => (a.primary_used_percent, a.primary_reset_at),
    };
    let (primary_secs, secondary_secs) = a.window_secs();
    let window = |used: f64, secs: i64, reset_at: i64| {
        json!({
            "used_percent": used.round().clamp(0.0, 100.0) as i64,
            "limit_window_seconds": secs,
            "reset_after_seconds": (reset_at - now).max(0),
            "reset_at": reset_at,
        })
    };
    let secondary = match secondary_secs {
        Some(secs) => window(a.secondary_used_percent, secs, a.secondary_reset_at),
        None => Value::Null,
    };
    let q = &a.quota;
    let credits = match &q.credits {
        Some(c) => {
            json!({"has_credits": c.has_credits, "unlimited": c.unlimited, "balance": c.balance})
        }
        None => json!({"has_credits": false, "unlimited": false, "balance": "0"}),
    };
    let mut body = json!({
        "plan_type": a.spec.plan,
        "rate_limit": {
            "allowed": !limited,
            "limit_reached": limited,
            "primary_window": window(primary_used, primary_secs, primary_reset),
            "secondary_window": secondary,
        },
        "credits": credits,
        "rate_limit_reset_credits": {
            "available_count": q.reset_credits.iter().filter(|c| available(c, now)).count(),
        },
    });
    if !q.additional.is_empty() {
        body["additional_rate_limits"] = q
            .additional
            .iter()
            .map(|l| {
                let reached = l.used_percent >= 100.0;
                json!({
                    "limit_name": l.limit_name,
                    "metered_feature": l.metered_feature,
                    "rate_limit": {
                        "allowed": !reached,
                        "limit_reached": reached,
                        "primary_window": window(l.used_percent, l.window_secs, l.reset_at),
                        "secondary_window": null,
                    },
                })
            })
            .collect();
    }
    body
}

#[allow(
    clippy::result_large_err,
    reason = "the refusal is the answer, built once per call"
)]
fn authorized(state: &mut State, headers: &HeaderMap, now: i64) -> Result<String, Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let account = headers
        .get("chatgpt-account-id")
        .and_then(|v| v.to_str().ok());
    let id = state
        .authorize_bearer(bearer, account, now)
        .map_err(|r| rejection_response(&r))?;
    if let Some(a) = state.accounts.get_mut(&id) {
        a.roll_windows(now);
    }
    Ok(id)
}

/// `GET /backend-api/wham/rate-limit-reset-credits` →
/// `{credits:[{id, reset_type, status, granted_at, expires_at}], available_count}`.
pub(crate) async fn list(
    AxState(shared): AxState<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    headers: HeaderMap,
) -> Response {
    shared.lock().counters.reset_credits_calls += 1;
    if let Some(resp) = apply_fault(&shared, FaultRoute::ResetCredits, &conn).await {
        return resp;
    }
    let now = now_unix();
    let mut state = shared.lock();
    let id = match authorized(&mut state, &headers, now) {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    let Some(a) = state.accounts.get(&id) else {
        return json_response(401, &json!({"detail": "Unauthorized"}));
    };
    let credits: Vec<Value> = a
        .quota
        .reset_credits
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "reset_type": "codex_rate_limits",
                "status": status(c, now),
                "granted_at": rfc3339(c.granted_at),
                "expires_at": c.expires_at.map(rfc3339),
            })
        })
        .collect();
    let count = a
        .quota
        .reset_credits
        .iter()
        .filter(|c| available(c, now))
        .count();
    json_response(200, &json!({"credits": credits, "available_count": count}))
}

#[derive(Deserialize)]
struct ConsumeRequest {
    redeem_request_id: Option<String>,
    credit_id: Option<String>,
}

/// `POST /backend-api/wham/rate-limit-reset-credits/consume` `{redeem_request_id, credit_id?}` →
/// `{code, windows_reset}`; `code` is `reset`, `nothing_to_reset`, `no_credit` or
/// `already_redeemed` (codex-rs `ConsumeRateLimitResetCreditCode`). Idempotent on
/// `redeem_request_id`. A reset spends the credit, lifts the usage limit and empties both windows.
pub(crate) async fn consume(
    AxState(shared): AxState<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.lock().counters.reset_consume_calls += 1;
    let after = take_after_fault(&shared, FaultRoute::ResetConsume);
    if let Some(resp) = apply_fault(&shared, FaultRoute::ResetConsume, &conn).await {
        return resp;
    }
    let answer = {
        let now = now_unix();
        let mut state = shared.lock();
        match authorized(&mut state, &headers, now) {
            Err(resp) => resp,
            Ok(id) => match serde_json::from_slice::<ConsumeRequest>(&body) {
                Ok(ConsumeRequest {
                    redeem_request_id: Some(rid),
                    credit_id,
                }) if !rid.trim().is_empty() => {
                    let (answer, spent) = redeem(&mut state, &id, &rid, credit_id.as_deref(), now);
                    state.counters.reset_credits_spent += spent;
                    state.counters.last_redeem_request_id = Some(rid);
                    json_response(200, &answer)
                }
                _ => json_response(400, &json!({"detail": "redeem_request_id is required"})),
            },
        }
    };
    apply_after(after, &conn, answer).await
}

fn redeem(
    state: &mut State,
    account_id: &str,
    rid: &str,
    credit_id: Option<&str>,
    now: i64,
) -> (Value, u64) {
    let Some(a) = state.accounts.get_mut(account_id) else {
        return (json!({"code": "no_credit", "windows_reset": 0}), 0);
    };
    if let Some(previous) = a.quota.redemptions.get(rid) {
        return (previous.clone(), 0);
    }
    let pick = match credit_id {
        Some(cid) => a.quota.reset_credits.iter().position(|c| c.id == cid),
        None => a.quota.reset_credits.iter().position(|c| available(c, now)),
    };
    let (answer, spent) = match pick {
        Some(i) if a.quota.reset_credits[i].redeemed => {
            (json!({"code": "already_redeemed", "windows_reset": 0}), 0)
        }
        Some(i) if available(&a.quota.reset_credits[i], now) => {
            let limited = a.limited_until(now).is_some();
            let windows = [
                limited || a.primary_used_percent > 0.0,
                a.secondary_used_percent > 0.0,
            ]
            .iter()
            .filter(|w| **w)
            .count();
            if windows == 0 {
                (json!({"code": "nothing_to_reset", "windows_reset": 0}), 0)
            } else {
                a.quota.reset_credits[i].redeemed = true;
                a.rate_limited_until = None;
                a.primary_used_percent = 0.0;
                a.secondary_used_percent = 0.0;
                let (p, s) = a.window_secs();
                a.primary_reset_at = now + p;
                a.secondary_reset_at = now + s.unwrap_or(crate::state::SECONDARY_WINDOW_SECS);
                (json!({"code": "reset", "windows_reset": windows}), 1)
            }
        }
        _ => (json!({"code": "no_credit", "windows_reset": 0}), 0),
    };
    a.quota.redemptions.insert(rid.to_string(), answer.clone());
    (answer, spent)
}

/// Anything else under the ChatGPT base (`/backend-api/…`, `/api/codex/…`): 404, logged.
pub(crate) async fn unknown_backend_route() -> Response {
    json_response(404, &json!({"detail": "Not Found"}))
}
