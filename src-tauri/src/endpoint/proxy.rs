//! Forwarding one request: choose an account, inject its credentials, send, and stream the
//! answer back chunk by chunk. 401 → refresh through the TokenManager and retry once; 429
//! usage_limit_reached → mark the account limited and retry on another. Nothing is retried once
//! a byte reached the client.

use super::select::{Request as Pick, SelectError};
use super::{body_from, error, lock, usage, Shared};
use crate::account::{now_ms, FailureReason};
use crate::oauth::classify::{error_code, error_message};
use crate::refresh::{AccessToken, RefreshError};
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashSet;
use std::sync::Arc;

pub const PIN_HEADER: &str = "x-codex-vault-account";
/// Error bodies we read to decide (401/429) are small; cap what we buffer of them.
const MAX_DECISION_BODY: usize = 64 * 1024;

/// Hop-by-hop headers (RFC 9110 § 7.6.1) and the ones we set or must not forward.
const DROP_REQUEST: &[&str] = &[
    "host",
    "authorization",
    "x-api-key",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "origin",
    "cookie",
    PIN_HEADER,
    "chatgpt-account-id",
    "x-openai-fedramp",
];
const DROP_RESPONSE: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "set-cookie",
];

pub async fn responses(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    forward(shared, Method::POST, "/responses", headers, body).await
}

/// The backend catalog unchanged (the Codex CLI's shape).
pub async fn models(
    State(shared): State<Arc<Shared>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let path = match uri.query() {
        Some(q) => format!("/models?{q}"),
        None => "/models".to_string(),
    };
    forward(shared, Method::GET, &path, headers, Bytes::new()).await
}

/// The one field of a request body selection needs. Deserialising only it skips the rest of
/// the body (a Codex turn is tens of KB: instructions, tools, history) without building a tree
/// of it on every request; a missing, non-string or unparseable key reads as none, as before.
#[derive(serde::Deserialize)]
struct ConversationKey {
    #[serde(default, deserialize_with = "string_or_none")]
    prompt_cache_key: Option<String>,
}

fn string_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::Deserialize;
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

/// The conversation a request belongs to: `prompt_cache_key`, else the session header.
fn conversation(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let from_body = serde_json::from_slice::<ConversationKey>(body)
        .ok()
        .and_then(|k| k.prompt_cache_key);
    from_body.or_else(|| {
        ["session_id", "session-id"]
            .iter()
            .find_map(|h| headers.get(*h)?.to_str().ok().map(str::to_string))
    })
}

fn upstream_request(
    shared: &Shared,
    method: &Method,
    path: &str,
    client_headers: &HeaderMap,
    token: &AccessToken,
    body: &Bytes,
) -> reqwest::RequestBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in client_headers {
        if !DROP_REQUEST.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", token.token.expose())) {
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&token.chatgpt_account_id) {
        headers.insert(HeaderName::from_static("chatgpt-account-id"), v);
    }
    if token.fedramp {
        headers.insert(
            HeaderName::from_static("x-openai-fedramp"),
            HeaderValue::from_static("true"),
        );
    }
    shared
        .http
        .request(method.clone(), format!("{}{}", shared.upstream, path))
        .headers(headers)
        .body(body.clone())
}

pub(crate) async fn read_small(resp: reqwest::Response) -> (HeaderMap, Vec<u8>) {
    let headers = resp.headers().clone();
    let mut resp = resp;
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_DECISION_BODY {
            break;
        }
    }
    (headers, body)
}

fn passthrough(status: u16, headers: &HeaderMap, body: axum::body::Body) -> Response {
    let mut out = Response::new(body);
    *out.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in headers {
        if !DROP_RESPONSE.contains(&name.as_str()) {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}

/// `resets_at` (Unix s) or `resets_in_seconds` of a usage-limit body, as Unix ms.
fn usage_limit_reset(body: &serde_json::Value) -> Option<i64> {
    let e = body.get("error")?;
    if e.get("type").and_then(|t| t.as_str()) != Some("usage_limit_reached") {
        return None;
    }
    let now = now_ms();
    Some(
        e.get("resets_at")
            .and_then(|v| v.as_f64())
            .map(|s| (s * 1000.0) as i64)
            .or_else(|| {
                e.get("resets_in_seconds")
                    .and_then(|v| v.as_f64())
                    // Saturating: a garbled body (1e300 s) must not overflow the sum.
                    .map(|s| now.saturating_add((s * 1000.0) as i64))
            })
            // No reset given: back off for five minutes rather than hammer a capped account.
            .unwrap_or(now + 5 * 60 * 1000),
    )
}

async fn forward(
    shared: Arc<Shared>,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match send(shared, method, path, headers, body).await {
        Sent::Upstream(resp) => {
            let (status, h) = (resp.status().as_u16(), resp.headers().clone());
            passthrough(status, &h, body_from(resp))
        }
        Sent::Answer(r) => r,
    }
}

/// What [`send`] ends with.
pub(crate) enum Sent {
    /// The backend's answer, unread: a success or an error the client should see as is.
    Upstream(reqwest::Response),
    /// Ours (selection, refresh or failover ended it), or an upstream error read to decide.
    Answer(Response),
}

/// The account choice, credential injection, 401 refresh and 429 failover every route shares;
/// callers decide how to turn the upstream answer into theirs (passthrough, or translation).
pub(crate) async fn send(
    shared: Arc<Shared>,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Sent {
    let pin = headers
        .get(PIN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let conv = conversation(&headers, &body);
    let mut excluded: HashSet<String> = HashSet::new();
    let mut refreshed: HashSet<String> = HashSet::new();
    let mut last_failure: Option<Response> = None;
    let attempts = shared.accounts().len() * 2 + 2;
    for _ in 0..attempts {
        let accounts = shared.accounts();
        let picked = {
            let usage = lock(&shared.usage);
            let mut selector = lock(&shared.selector);
            selector.backing_off = shared.tm.backing_off();
            selector.select(
                &accounts,
                &usage,
                &Pick {
                    pin: pin.as_deref(),
                    conversation: conv.as_deref(),
                    excluded: &excluded,
                },
                now_ms(),
            )
        };
        let id = match picked {
            Ok(id) => id,
            Err(e) => return Sent::Answer(last_failure.unwrap_or_else(|| select_error(e))),
        };
        let token = match shared.tm.access_token(&id).await {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(account = %id, "not usable for this request: {e}");
                excluded.insert(id);
                last_failure = Some(refresh_error(&e));
                continue;
            }
        };
        let sent = upstream_request(&shared, &method, path, &headers, &token, &body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Sent::Answer(error(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unreachable",
                    format!("could not reach the Codex backend: {}", e.without_url()),
                ))
            }
        };
        let status = resp.status().as_u16();
        if let Some(u) = usage::from_headers(resp.headers()) {
            lock(&shared.usage).insert(id.clone(), u);
            lock(&shared.dirty_usage).insert(id.clone());
        }
        match status {
            401 => {
                let (h, b) = read_small(resp).await;
                if refreshed.insert(id.clone()) {
                    // Refresh (single-flight, race-safe) and retry this account once.
                    match shared.tm.force_refresh(&id, Some(&token)).await {
                        Ok(_) => {
                            last_failure = Some(passthrough(401, &h, b.into()));
                            continue;
                        }
                        Err(e) => {
                            excluded.insert(id);
                            last_failure = Some(refresh_error(&e));
                            continue;
                        }
                    }
                }
                // Still 401 with a token fresh from the issuer: the session itself was revoked.
                let json: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
                let code = error_code(&json).unwrap_or_else(|| "unauthorized".into());
                let reason = FailureReason {
                    message: error_message(&json).unwrap_or_else(|| {
                        "the Codex backend refused a freshly refreshed token: the session was revoked".into()
                    }),
                    code,
                    http_status: Some(401),
                    at: now_ms(),
                };
                let (s, gen, aid) = (shared.clone(), token.generation, id.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = s.store().mark_terminal(&aid, gen, &reason);
                    // Our own write does not move data_version for us: reload explicitly.
                    s.reload();
                })
                .await;
                excluded.insert(id);
                last_failure = Some(passthrough(401, &h, b.into()));
            }
            429 => {
                let (h, b) = read_small(resp).await;
                let json: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
                match usage_limit_reset(&json) {
                    Some(until) => {
                        lock(&shared.selector)
                            .rate_limited
                            .insert(id.clone(), until);
                        let (s, aid) = (shared.clone(), id.clone());
                        let _ = tokio::task::spawn_blocking(move || {
                            let _ = s.store().set_rate_limited(&aid, until);
                            s.reload();
                        })
                        .await;
                        tracing::info!(account = %id, "usage limit reached; failing over");
                        excluded.insert(id);
                        last_failure = None;
                    }
                    // Some other 429 (not a usage cap): the client decides what to do.
                    None => return Sent::Answer(passthrough(429, &h, b.into())),
                }
            }
            _ => {
                *lock(&shared.served).entry(id).or_default() += 1;
                return Sent::Upstream(resp);
            }
        }
    }
    Sent::Answer(last_failure.unwrap_or_else(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_usable_account",
            "no account could answer this request",
        )
    }))
}

fn select_error(e: SelectError) -> Response {
    match e {
        SelectError::UnknownPin(p) => error(
            StatusCode::BAD_REQUEST,
            "unknown_account",
            format!("the {PIN_HEADER} header names no account: `{}` (use an id, label or email from `codex-vault accounts list`)", crate::oauth::classify::redact(&p)),
        ),
        SelectError::PinnedUnusable { label, why } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "account_unusable",
            format!("the pinned account {label} cannot answer: {why}"),
        ),
        SelectError::AllRateLimited { earliest_reset } => {
            let resets_at = earliest_reset.map(|ms| ms / 1000);
            let body = serde_json::json!({"error": {
                "type": "usage_limit_reached",
                "code": "usage_limit_reached",
                "message": "Every Codex Vault account has hit its usage limit.",
                "resets_at": resets_at,
                "resets_in_seconds": resets_at.map(|s| (s - now_ms() / 1000).max(0)),
            }});
            (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
        }
        SelectError::NoUsableAccount => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_usable_account",
            "no healthy account in Codex Vault: add one, or sign in again to the ones that need it",
        ),
    }
}

fn refresh_error(e: &RefreshError) -> Response {
    match e {
        RefreshError::Terminal { .. } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "account_terminal",
            e.to_string(),
        ),
        RefreshError::Transient { .. } => {
            error(StatusCode::BAD_GATEWAY, "refresh_transient", e.to_string())
        }
        _ => error(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_limit_reset_absurdly_far_away_does_not_overflow() {
        let body = serde_json::json!({"error": {"type": "usage_limit_reached", "resets_in_seconds": 1e300}});
        assert_eq!(usage_limit_reset(&body), Some(i64::MAX));
    }

    #[test]
    fn conversation_reads_the_cache_key_else_the_session_header() {
        let mut h = HeaderMap::new();
        let big = format!(
            r#"{{"input":[{{"type":"message","content":"{}"}}],"prompt_cache_key":"k1","tools":[]}}"#,
            "x".repeat(10_000)
        );
        assert_eq!(conversation(&h, big.as_bytes()).as_deref(), Some("k1"));
        assert_eq!(conversation(&h, br#"{"prompt_cache_key":7}"#), None);
        assert_eq!(conversation(&h, b"not json"), None);
        h.insert("session_id", HeaderValue::from_static("s1"));
        assert_eq!(
            conversation(&h, br#"{"prompt_cache_key":null}"#).as_deref(),
            Some("s1")
        );
        assert_eq!(conversation(&h, br#"[1,2]"#).as_deref(), Some("s1"));
        assert_eq!(
            conversation(&h, br#"{"prompt_cache_key":"k2"}"#).as_deref(),
            Some("k2")
        );
    }
}
