//! The Codex backend: `POST /backend-api/codex/responses` (SSE), `GET /backend-api/codex/models`,
//! `GET /backend-api/wham/usage` (protocol.md § Backend).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State as AxState};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::config::FaultRoute;
use crate::conn::ConnHandle;
use crate::encrypted;
use crate::faults::{
    apply_fault, apply_fault_deferring, json_response, rejection_response, Deferred,
};
use crate::grants::Rejection;
use crate::models::models_response;
use crate::response_stream::spawn_stream;
use crate::sse::{
    failed_events, response_events, with_reasoning, with_token_details, ReasoningItem,
    ResponseScript, SseEvent, StreamFailure,
};
use crate::state::{now_unix, Account, Shared, State};
use crate::tool_calls::{function_call_events, plan};

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn account_header(headers: &HeaderMap) -> Option<&str> {
    headers.get("chatgpt-account-id")?.to_str().ok()
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Checks the caller's credentials; on success rolls the account's usage windows forward and
/// returns its id.
fn authorize(state: &mut State, headers: &HeaderMap, now: i64) -> Result<String, Rejection> {
    let account_id = state.authorize_bearer(bearer(headers), account_header(headers), now)?;
    if let Some(a) = state.accounts.get_mut(&account_id) {
        a.roll_windows(now);
    }
    Ok(account_id)
}

/// Effective usage: a limited account has used its whole primary window until the limit resets.
fn effective_primary(a: &Account, now: i64) -> (f64, i64) {
    match a.limited_until(now) {
        Some(until) => (100.0, until),
        None => (a.primary_used_percent, a.primary_reset_at),
    }
}

/// The `x-codex-*` rate-limit headers upstream puts on every answer for an account.
fn rate_limit_headers(a: &Account, now: i64) -> Vec<(&'static str, String)> {
    let (primary, primary_reset) = effective_primary(a, now);
    vec![
        ("x-codex-primary-used-percent", primary.to_string()),
        ("x-codex-primary-window-minutes", "300".into()),
        ("x-codex-primary-reset-at", primary_reset.to_string()),
        (
            "x-codex-primary-reset-after-seconds",
            (primary_reset - now).max(0).to_string(),
        ),
        (
            "x-codex-secondary-used-percent",
            a.secondary_used_percent.to_string(),
        ),
        ("x-codex-secondary-window-minutes", "10080".into()),
        (
            "x-codex-secondary-reset-at",
            a.secondary_reset_at.to_string(),
        ),
        (
            "x-codex-secondary-reset-after-seconds",
            (a.secondary_reset_at - now).max(0).to_string(),
        ),
        // Capitalised like a Python backend prints booleans: clients must compare
        // case-insensitively (the Codex CLI does).
        ("x-codex-credits-has-credits", "False".into()),
        ("x-codex-credits-unlimited", "False".into()),
        ("x-codex-credits-balance", "0".into()),
    ]
}

fn add_headers(resp: &mut Response, headers: Vec<(&'static str, String)>) {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(HeaderName::from_static(name), v);
        }
    }
}

fn header_snapshot(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

fn detail(status: u16, detail: &str) -> Response {
    json_response(status, &json!({ "detail": detail }))
}

/// `GET` on `/responses`: newer CLIs try a WebSocket first; we do not serve one, so 426 makes
/// them fall back to HTTP (protocol.md).
pub(crate) async fn responses_get(
    AxState(shared): AxState<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    if is_websocket_upgrade(&headers) {
        shared.lock().counters.websocket_upgrades_refused += 1;
        return detail(426, "WebSocket transport is not available; use HTTP.");
    }
    StatusCode::METHOD_NOT_ALLOWED.into_response()
}

pub(crate) async fn responses(
    AxState(shared): AxState<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if is_websocket_upgrade(&headers) {
        shared.lock().counters.websocket_upgrades_refused += 1;
        return detail(426, "WebSocket transport is not available; use HTTP.");
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    {
        let mut state = shared.lock();
        state.counters.responses_calls += 1;
        state.counters.last_responses_headers = Some(header_snapshot(&headers));
        state.counters.last_responses_body = parsed.clone();
    }
    let deferred = match apply_fault_deferring(&shared, FaultRoute::Responses, &conn).await {
        Ok(d) => d,
        Err(resp) => return resp,
    };

    let now = now_unix();
    let mut state = shared.lock();
    let account_id = match authorize(&mut state, &headers, now) {
        Ok(id) => id,
        Err(r) => return rejection_response(&r),
    };
    let (request, limit_headers) =
        match check_request(&mut state, &account_id, parsed, now, deferred.as_ref()) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
    let events = stream_events(
        &mut state,
        &account_id,
        &request,
        deferred.as_ref(),
        body.len(),
        now,
    );
    let gate = state.gate.clone();
    let omit_content_type = state.cfg.omit_sse_content_type;
    drop(state);

    let mut resp = Response::new(spawn_stream(shared.clone(), events, gate));
    let h = resp.headers_mut();
    if !omit_content_type {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&format!("req_{}", uuid::Uuid::new_v4().simple())) {
        h.insert(HeaderName::from_static("x-request-id"), v);
    }
    add_headers(&mut resp, limit_headers);
    resp
}

type LimitHeaders = Vec<(&'static str, String)>;

/// The backend's request checks, the account's limit and carried reasoning; what the answer
/// needs (the request, the account's rate-limit headers), or the refusal.
fn check_request(
    state: &mut State,
    account_id: &str,
    parsed: Option<Value>,
    now: i64,
    deferred: Option<&Deferred>,
) -> Result<(Value, LimitHeaders), Box<Response>> {
    // The ChatGPT backend's own request checks (FastAPI-style `detail` bodies, as observed by
    // third-party clients): it only streams, and never stores.
    let Some(request) = parsed.filter(Value::is_object) else {
        return Err(Box::new(detail(400, "Request body must be a JSON object.")));
    };
    if request.get("stream") != Some(&Value::Bool(true)) {
        return Err(Box::new(detail(400, "Stream must be set to true")));
    }
    if request.get("store") == Some(&Value::Bool(true)) {
        return Err(Box::new(detail(400, "Store must be set to false")));
    }
    if let Some(resp) = limit_check(state, account_id, now) {
        return Err(Box::new(resp));
    }
    let Some(account) = state.accounts.get(account_id) else {
        return Err(Box::new(detail(401, "Unauthorized")));
    };
    let limit_headers = rate_limit_headers(account, now);
    if let Some(Deferred::InvalidEncryptedContent(shape)) = deferred {
        state.counters.encrypted_content_rejected += 1;
        let ct = encrypted::carried(&request)
            .into_iter()
            .next()
            .map_or_else(|| "gAAAAAinjected==".to_string(), |c| c.3);
        return Err(Box::new(json_response(
            400,
            &encrypted::rejection(*shape, &ct, "rs_injected"),
        )));
    }
    if let Some(resp) = verify_carried(state, account_id, &request) {
        return Err(Box::new(resp));
    }
    state.counters.account(account_id).responses_calls += 1;

    Ok((request, limit_headers))
}

/// The SSE events of the answer: a scripted failure, a function call or text, with a
/// reasoning item when the request asks for one.
fn stream_events(
    state: &mut State,
    account_id: &str,
    request: &Value,
    deferred: Option<&Deferred>,
    body_len: usize,
    now: i64,
) -> Vec<SseEvent> {
    let response_id = format!("resp_{}", uuid::Uuid::new_v4().simple());
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("gpt-5-codex");
    let (call, text) = plan(request, &state.cfg.responses_text);
    let item_id = match call {
        Some(_) => format!("fc_{}", uuid::Uuid::new_v4().simple()),
        None => format!("msg_{}", uuid::Uuid::new_v4().simple()),
    };
    let script = ResponseScript {
        response_id: &response_id,
        item_id: &item_id,
        model,
        text: &text,
        n_deltas: state.cfg.stream_deltas,
        input_tokens: (body_len as u64 / 4).max(1),
        created_at: now,
    };
    let events = match (deferred, &call) {
        (
            Some(Deferred::StreamFailed {
                code,
                message,
                resets_at,
                after_output,
            }),
            _,
        ) => failed_events(
            &script,
            &StreamFailure {
                code,
                message,
                resets_at: *resets_at,
                after_output: *after_output,
            },
        ),
        (_, Some(c)) => {
            let call_id = format!("call_{}", uuid::Uuid::new_v4().simple());
            function_call_events(&script, c, &call_id)
        }
        (_, None) => response_events(&script),
    };
    let failed = matches!(deferred, Some(Deferred::StreamFailed { .. }));
    let mut events = events;
    let cached = prompt_cached(state, account_id, request, script.input_tokens);
    let reasoning = if encrypted::wants_reasoning(request) && !failed {
        REASONING_TOKENS
    } else {
        0
    };
    with_token_details(&mut events, cached, reasoning);
    if encrypted::wants_reasoning(request) && !failed {
        let ct = mint_for(state, account_id, now);
        let id = format!("rs_{}", uuid::Uuid::new_v4().simple());
        with_reasoning(
            events,
            &ReasoningItem {
                id: &id,
                summary: "Considering the request.",
                encrypted_content: &ct,
            },
        )
    } else {
        events
    }
}

/// What a reasoning item costs in the fake's usage.
const REASONING_TOKENS: u64 = 48;

/// The input tokens of this request found in the account's prompt cache (the last request with
/// the same `prompt_cache_key` on this account), in whole 64-token blocks; remembers this one.
fn prompt_cached(state: &mut State, account_id: &str, request: &Value, input: u64) -> u64 {
    let Some(key) = request.get("prompt_cache_key").and_then(Value::as_str) else {
        return 0;
    };
    let prev = state
        .prompt_cache
        .insert((account_id.to_string(), key.to_string()), input);
    prev.map_or(0, |p| p.min(input) / 64 * 64)
}

/// A limited account answers 429 `usage_limit_reached` (with its reset) to every call.
fn limit_check(state: &State, account_id: &str, now: i64) -> Option<Response> {
    let Some(account) = state.accounts.get(account_id) else {
        return Some(detail(401, "Unauthorized"));
    };
    if let Some(until) = account.limited_until(now) {
        let body = json!({"error": {
            "type": "usage_limit_reached",
            "message": "You've hit your usage limit. Try again later.",
            "plan_type": account.spec.plan,
            "resets_at": until,
            "resets_in_seconds": (until - now).max(0),
        }});
        let mut resp = json_response(429, &body);
        add_headers(&mut resp, rate_limit_headers(account, now));
        return Some(resp);
    }
    None
}

/// Every input item's `encrypted_content` must verify for the calling account; the first that
/// does not is answered 400 in the account's chosen wording. Counted either way.
fn verify_carried(state: &mut State, account_id: &str, request: &Value) -> Option<Response> {
    let carried = encrypted::carried(request);
    if carried.is_empty() {
        return None;
    }
    let shape = state
        .accounts
        .get(account_id)
        .map(|a| a.encrypted_content_error)
        .unwrap_or_default();
    let mut own = 0u64;
    let mut first_bad: Option<(usize, Option<String>, String)> = None;
    for (i, _kind, id, ct) in carried {
        if encrypted::verifies(&state.content_key, account_id, &ct) {
            own += 1;
        } else {
            state
                .counters
                .account(account_id)
                .encrypted_foreign_received += 1;
            if first_bad.is_none() {
                first_bad = Some((i, id, ct));
            }
        }
    }
    if let Some((i, id, ct)) = first_bad {
        state.counters.encrypted_content_rejected += 1;
        // The CLI sends no ids back; upstream then names an item of its own making.
        let id = id.unwrap_or_else(|| format!("rs_{:032x}", i));
        return Some(json_response(400, &encrypted::rejection(shape, &ct, &id)));
    }
    state.counters.account(account_id).encrypted_accepted += own;
    None
}

fn mint_for(state: &mut State, account_id: &str, now: i64) -> String {
    let ct = encrypted::mint(&state.content_key, account_id, now);
    state
        .minted_content
        .insert(ct.clone(), account_id.to_string());
    state.counters.account(account_id).encrypted_minted += 1;
    ct
}

/// `POST /backend-api/codex/responses/compact` (remote compaction): the history in, a shorter
/// one out — the user's messages kept, everything else replaced by one `compaction` item whose
/// `encrypted_content` is bound to the caller's account. JSON, not a stream. Same auth, limit
/// and ciphertext checks as `/responses`.
pub(crate) async fn compact(
    AxState(shared): AxState<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let now = now_unix();
    let mut state = shared.lock();
    state.counters.compact_calls += 1;
    state.counters.last_responses_body = parsed.clone();
    let account_id = match authorize(&mut state, &headers, now) {
        Ok(id) => id,
        Err(r) => return rejection_response(&r),
    };
    let Some(request) = parsed.filter(Value::is_object) else {
        return detail(400, "Request body must be a JSON object.");
    };
    if let Some(resp) = limit_check(&state, &account_id, now) {
        return resp;
    }
    if let Some(resp) = verify_carried(&mut state, &account_id, &request) {
        return resp;
    }
    let kept: Vec<Value> = request
        .get("input")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter(|i| {
                    i.get("type").and_then(Value::as_str) == Some("message")
                        && i.get("role").and_then(Value::as_str) == Some("user")
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let ct = mint_for(&mut state, &account_id, now);
    let mut output = kept;
    output.push(json!({
        "type": "compaction",
        "id": format!("cmp_{}", uuid::Uuid::new_v4().simple()),
        "encrypted_content": ct,
    }));
    let input_tokens = (body.len() as u64 / 4).max(1);
    let answer = json!({
        "id": format!("resp_{}", uuid::Uuid::new_v4().simple()),
        "object": "response.compaction",
        "created_at": now,
        "output": output,
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 64,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + 64,
        },
    });
    let mut resp = json_response(200, &answer);
    if let Some(a) = state.accounts.get(&account_id) {
        add_headers(&mut resp, rate_limit_headers(a, now));
    }
    resp
}

pub(crate) async fn models(
    AxState(shared): AxState<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    headers: HeaderMap,
) -> Response {
    shared.lock().counters.models_calls += 1;
    if let Some(resp) = apply_fault(&shared, FaultRoute::Models, &conn).await {
        return resp;
    }
    let now = now_unix();
    let mut state = shared.lock();
    let account_id = match authorize(&mut state, &headers, now) {
        Ok(id) => id,
        Err(r) => return rejection_response(&r),
    };
    let (body, etag) = models_response();
    let mut resp = json_response(200, &body);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    if let Some(a) = state.accounts.get(&account_id) {
        add_headers(&mut resp, rate_limit_headers(a, now));
    }
    resp
}

pub(crate) async fn usage(
    AxState(shared): AxState<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    headers: HeaderMap,
) -> Response {
    shared.lock().counters.usage_calls += 1;
    if let Some(resp) = apply_fault(&shared, FaultRoute::Usage, &conn).await {
        return resp;
    }
    let now = now_unix();
    let mut state = shared.lock();
    let account_id = match authorize(&mut state, &headers, now) {
        Ok(id) => id,
        Err(r) => return rejection_response(&r),
    };
    let Some(a) = state.accounts.get(&account_id) else {
        return detail(401, "Unauthorized");
    };
    json_response(200, &crate::quota_routes::usage_body(a, now))
}
