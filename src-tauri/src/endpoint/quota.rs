//! Codex's own quota routes under `chatgpt_base_url` (README.md § Codex's own quota routes):
//! `GET /backend-api/wham/usage` and `GET /api/codex/usage` answered from our usage data, the
//! reset-credit list of an account, and a clear refusal for everything else there. Nothing under
//! the ChatGPT base is forwarded with a pool account's token, and a reset credit is never
//! consumed on anyone's behalf (redeeming is the app's or `accounts redeem-reset`'s, on an
//! explicit action).
//!
//! Who may ask: the local key (the pool's figures, or the pinned account's), or the access token
//! of an account this vault holds (then that account's figures, whatever the pin says).

use super::proxy::PIN_HEADER;
use super::quota_shape::{self, Facts};
use super::{error, lock, Shared};
use crate::account::{now_ms, Account, Status};
use crate::error_code::ErrorCode;
use crate::oauth::jwt::{decode_claims, AUTH_CLAIM};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub(super) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/backend-api/wham/usage", get(usage))
        .route("/api/codex/usage", get(usage))
        .route(
            "/backend-api/wham/rate-limit-reset-credits",
            get(reset_credits),
        )
        .route("/api/codex/rate-limit-reset-credits", get(reset_credits))
        .route(
            "/backend-api/wham/rate-limit-reset-credits/consume",
            any(consume),
        )
        .route("/api/codex/rate-limit-reset-credits/consume", any(consume))
        .route("/backend-api/{*rest}", any(not_served))
        .route("/api/codex/{*rest}", any(not_served))
        .route_layer(axum::middleware::from_fn_with_state(shared, note_route))
}

/// Remembers which route was asked for, and whether with a bearer (never the token, the other
/// headers, the body or the query).
async fn note_route(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    {
        let mut seen = lock(&shared.chatgpt_routes);
        if seen.len() == 256 {
            seen.pop_front();
        }
        let bearer = if bearer(req.headers()).is_some() {
            " (bearer)"
        } else {
            ""
        };
        seen.push_back(format!("{} {}{bearer}", req.method(), req.uri().path()));
    }
    next.run(req).await
}

/// Who asked.
enum Caller {
    /// The local key: the pool, or the pinned account.
    Local,
    /// The access token of a held account (its id).
    Account(String),
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The held account whose current access token this is (claims read to find the candidate,
/// then the whole token compared in constant time with the one we hold).
async fn token_owner(shared: &Shared, token: &str) -> Option<String> {
    let claims = decode_claims(token, "access_token").ok()?;
    let auth = claims.get(AUTH_CLAIM)?;
    let workspace = auth.get("chatgpt_account_id")?.as_str()?;
    let user = auth
        .get("chatgpt_user_id")
        .or_else(|| auth.get("user_id"))
        .and_then(|v| v.as_str());
    let candidates: Vec<String> = shared
        .accounts()
        .iter()
        .filter(|a| {
            a.chatgpt_account_id == workspace && user.is_none_or(|u| a.chatgpt_user_id == u)
        })
        .map(|a| a.id.clone())
        .collect();
    for id in candidates {
        if let Ok(Some(held)) = shared.tm.current_token(&id).await {
            if bool::from(held.token.expose().as_bytes().ct_eq(token.as_bytes())) {
                return Some(id);
            }
        }
    }
    None
}

async fn caller(shared: &Shared, headers: &HeaderMap) -> Result<Caller, Response> {
    if shared.key_matches(headers) {
        return Ok(Caller::Local);
    }
    if let Some(token) = bearer(headers) {
        if let Some(id) = token_owner(shared, token).await {
            return Ok(Caller::Account(id));
        }
    }
    Err(error(
        StatusCode::UNAUTHORIZED,
        ErrorCode::QuotaCallerUnknown,
        "send the local API key (`codex-vault endpoint info`) or the current access token of an account Codex Vault holds",
    ))
}

#[allow(
    clippy::result_large_err,
    reason = "the refusal is the answer, built once per request"
)]
/// The account a request is about: the caller's own, else the pin, else none (the pool).
fn subject(
    shared: &Shared,
    caller: &Caller,
    headers: &HeaderMap,
) -> Result<Option<Account>, Response> {
    let accounts = shared.accounts();
    let pin = headers
        .get(PIN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let pinned = match pin.filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(
            accounts
                .iter()
                .find(|a| a.id == p || a.label == p || a.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(p)))
                .cloned()
                .ok_or_else(|| {
                    error(
                        StatusCode::NOT_FOUND,
                        ErrorCode::UnknownAccount,
                        format!("the {PIN_HEADER} header names no account (use an id, label or email from `codex-vault accounts list`)"),
                    )
                })?,
        ),
    };
    match caller {
        Caller::Local => Ok(pinned),
        Caller::Account(id) => {
            if pinned.as_ref().is_some_and(|p| &p.id != id) {
                return Err(error(
                    StatusCode::FORBIDDEN,
                    ErrorCode::QuotaAccountMismatch,
                    "an account's access token sees that account's figures only; use the local key to ask about another",
                ));
            }
            Ok(accounts.iter().find(|a| &a.id == id).cloned())
        }
    }
}

fn facts<'a>(
    shared: &Shared,
    a: &'a Account,
    usage: Option<&'a crate::account::usage::UsageSnapshot>,
    now: i64,
) -> Facts<'a> {
    let mem = lock(&shared.selector).rate_limited.get(&a.id).copied();
    let stored = (a.status == Status::RateLimited)
        .then_some(a.rate_limited_until)
        .flatten();
    Facts {
        label: &a.label,
        plan: a.plan.as_deref(),
        limited_until: mem.max(stored).filter(|t| *t > now),
        usage,
    }
}

/// Who asks (or the refusal to answer), then which account the answer is about: the pinned or
/// the caller's own one, or `None` for the pool.
async fn asked_about(shared: &Shared, headers: &HeaderMap) -> Result<Option<Account>, Response> {
    let who = caller(shared, headers).await?;
    subject(shared, &who, headers)
}

/// Figures are fresh for ten minutes, or two usage-poll intervals when that is longer (an idle
/// account is read once per interval).
fn fresh_ms(shared: &Shared) -> i64 {
    (2 * super::usage_poll::interval(shared).as_millis() as i64).max(600_000)
}

async fn usage(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let one = match asked_about(&shared, req.headers()).await {
        Ok(one) => one,
        Err(resp) => return resp,
    };
    let now = now_ms();
    let fresh = fresh_ms(&shared);
    let usage = lock(&shared.usage).clone();
    let body = match &one {
        Some(a) => quota_shape::account(&facts(&shared, a, usage.get(&a.id), now), now, fresh),
        None => {
            let accounts = shared.accounts();
            let usable: Vec<Facts<'_>> = accounts
                .iter()
                .filter(|a| !a.disabled && a.status != Status::Terminal)
                .map(|a| facts(&shared, a, usage.get(&a.id), now))
                .collect();
            quota_shape::pool(&usable, now, fresh)
        }
    };
    Json(body).into_response()
}

/// The reset credits of the account asked about (as last read by the usage poll); the pool's
/// are every usable account's.
async fn reset_credits(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let one = match asked_about(&shared, req.headers()).await {
        Ok(one) => one,
        Err(resp) => return resp,
    };
    let usage = lock(&shared.usage).clone();
    let accounts = shared.accounts();
    let chosen: Vec<&Account> = match &one {
        Some(a) => accounts.iter().filter(|x| x.id == a.id).collect(),
        None => accounts
            .iter()
            .filter(|a| !a.disabled && a.status != Status::Terminal)
            .collect(),
    };
    let (mut credits, mut count) = (Vec::new(), 0i64);
    for a in chosen {
        if let Some(r) = usage
            .get(&a.id)
            .and_then(|u| u.quota.as_ref())
            .and_then(|q| q.reset_credits.as_ref())
        {
            count += r.available_count;
            credits.extend(r.credits.iter().map(|c| {
                serde_json::json!({"id": c.id, "reset_type": "codex_rate_limits", "status": c.status,
                    "granted_at": c.granted_at, "expires_at": c.expires_at})
            }));
        }
    }
    Json(serde_json::json!({"credits": credits, "available_count": count})).into_response()
}

async fn consume() -> Response {
    error(
        StatusCode::FORBIDDEN,
        ErrorCode::ResetNotForwarded,
        "Codex Vault never spends a reset credit on a client's behalf: redeem one in the app (the account's card) or with `codex-vault accounts redeem-reset <ACCOUNT> --yes`",
    )
}

async fn not_served(req: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        ErrorCode::ChatgptRouteNotServed,
        format!(
            "Codex Vault answers only the quota routes under chatgpt_base_url (/wham/usage, /api/codex/usage, /wham/rate-limit-reset-credits); {} is not forwarded, so no pool account's sign-in is used for it",
            req.uri().path()
        ),
    )
}
