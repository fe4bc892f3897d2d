//! Forwarding one request: choose an account, inject its credentials, send, and stream the
//! answer back chunk by chunk. 401 → refresh through the TokenManager and retry once; 429
//! usage_limit_reached → mark the account limited and retry on another; a `response.failed`
//! before the first output event (the head is held until then) fails over the same way; a 400
//! `invalid_encrypted_content` is retried once on the same account without the ciphertext it
//! cannot read. Ciphertext another account minted is dropped before a request goes out
//! (`continuity`). Nothing is retried once a byte reached the client.

use super::continuity::{self, hold, rewrite, scan, tap};
use super::select::{Request as Pick, SelectError};
use super::{error, lock, usage, Shared};
use crate::account::{now_ms, FailureReason};
use crate::error::ErrorCode;
use crate::oauth::classify::{error_code, error_message};
use crate::refresh::{AccessToken, RefreshError};
use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{BoxStream, StreamExt};
use std::collections::{HashMap, HashSet};
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

/// Remote compaction (`/responses/compact`): the same account choice and ciphertext rules; the
/// answer is one JSON document whose `compaction` item is bound to the account that made it.
pub async fn compact(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    forward(shared, Method::POST, "/responses/compact", headers, body).await
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

pub(crate) async fn read_small(resp: impl Into<Upstream>) -> (HeaderMap, Vec<u8>) {
    let mut resp: Upstream = resp.into();
    let headers = resp.headers.clone();
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_DECISION_BODY {
            break;
        }
    }
    (headers, body)
}

/// An upstream answer on its way to the client: status, headers, and the body still streaming
/// (behind the ciphertext tap, after any head the hold read).
pub(crate) struct Upstream {
    status: u16,
    headers: HeaderMap,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
}

impl From<reqwest::Response> for Upstream {
    fn from(r: reqwest::Response) -> Upstream {
        Upstream {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.bytes_stream().boxed(),
        }
    }
}

impl Upstream {
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY)
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub fn into_stream(self) -> BoxStream<'static, reqwest::Result<Bytes>> {
        self.body
    }

    pub async fn chunk(&mut self) -> reqwest::Result<Option<Bytes>> {
        self.body.next().await.transpose()
    }

    /// The whole body (a small JSON answer).
    pub async fn bytes(mut self) -> reqwest::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(c) = self.chunk().await? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    fn into_response(self) -> Response {
        let (status, headers) = (self.status, self.headers.clone());
        passthrough(status, &headers, Body::from_stream(self.body))
    }
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
        Sent::Upstream(resp) => resp.into_response(),
        Sent::Answer(r) => r,
    }
}

/// What [`send`] ends with.
pub(crate) enum Sent {
    /// The backend's answer, unread (but for a held head): a success or an error the client
    /// should see as is.
    Upstream(Upstream),
    /// Ours (selection, refresh or failover ended it), or an upstream error read to decide.
    Answer(Response),
}

/// Why an account was passed over for this request (for the "conversation moved" event).
fn moved_reason(label: &str, why: &str) -> String {
    format!("{label} {why}")
}

/// True for the backend's refusal of ciphertext the account cannot read, in every shape seen:
/// `code: "invalid_encrypted_content"`, or `code: null` with the message ("The encrypted content
/// … could not be verified.").
fn is_invalid_encrypted_content(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let e = v.get("error").unwrap_or(&v);
    if e.get("code").and_then(|c| c.as_str()) == Some("invalid_encrypted_content") {
        return true;
    }
    e.get("message").and_then(|m| m.as_str()).is_some_and(|m| {
        m.starts_with("The encrypted content") && m.contains("could not be verified")
    })
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
    let posted = method == Method::POST;
    let compact = path.ends_with("/compact");
    let cont = shared.continuity.clone();
    // The ciphertext this body carries, found by a byte scan (no parse) and looked up once.
    let carried: Vec<scan::Digest> = if posted {
        let c = scan::carried(&body);
        if c.needs_parse {
            rewrite::carried_parsed(&body)
        } else {
            c.digests
        }
    } else {
        Vec::new()
    };
    let minters = cont.minters(&carried);
    // A compacted conversation lives on the account holding its summary while that one serves.
    let compaction_home: Option<Arc<str>> = minters.iter().rev().find_map(|m| match m {
        Some((a, continuity::Kind::Compaction)) => Some(a.clone()),
        _ => None,
    });
    let mut conv = conversation(&headers, &body);
    if let Some(home) = &compaction_home {
        let key = conv.get_or_insert_with(|| {
            format!(
                "compaction:{}",
                hex16(carried.last().copied().unwrap_or_default())
            )
        });
        lock(&shared.selector).stick(key, home);
    }
    let mut excluded: HashSet<String> = HashSet::new();
    let mut refreshed: HashSet<String> = HashSet::new();
    let mut passed_over: HashMap<String, &'static str> = HashMap::new();
    let mut last_failure: Option<Sent> = None;
    // After a 400 for unreadable ciphertext: the same account once more, with only its own.
    let mut retry_stripped: Option<String> = None;
    let mut stripped_once = false;
    let attempts = shared.accounts().len() * 2 + 3;
    for _ in 0..attempts {
        let accounts = shared.accounts();
        let strip_unknown = retry_stripped.is_some();
        let picked = match retry_stripped.take() {
            Some(id) => Ok(id),
            None => {
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
            }
        };
        let id = match picked {
            Ok(id) => id,
            Err(e) => {
                return last_failure.unwrap_or_else(|| Sent::Answer(select_error(e)));
            }
        };
        let token = match shared.tm.access_token(&id).await {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(account = %id, "not usable for this request: {e}");
                excluded.insert(id.clone());
                passed_over.insert(id, "could not be used");
                last_failure = Some(Sent::Answer(refresh_error(&e)));
                continue;
            }
        };
        // Only what this account minted goes to it: others' ciphertext is dropped whole (and,
        // after a rejection, ciphertext of unknown origin too). Parsed only when needed.
        let foreign = minters.iter().any(|m| match m {
            Some((a, _)) => **a != *id,
            None => strip_unknown,
        });
        let mut summary_lost: Vec<Arc<str>> = Vec::new();
        let out_body = if foreign {
            let keep = |d: &scan::Digest| match cont.minter(d) {
                Some(a) => *a == *id,
                None => !strip_unknown,
            };
            match rewrite::drop_items(&body, keep) {
                Some((b, dropped)) => {
                    for d in dropped.iter().filter(|d| d.kind.starts_with("compaction")) {
                        if let Some(a) = cont.minter(&d.digest) {
                            summary_lost.push(a);
                        }
                    }
                    tracing::debug!(account = %id, dropped = dropped.len(), "ciphertext of other accounts left out");
                    Bytes::from(b)
                }
                None => body.clone(),
            }
        } else {
            body.clone()
        };
        let sent = upstream_request(&shared, &method, path, &headers, &token, &out_body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Sent::Answer(error(
                    StatusCode::BAD_GATEWAY,
                    ErrorCode::UpstreamUnreachable,
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
                            last_failure = Some(Sent::Answer(passthrough(401, &h, b.into())));
                            continue;
                        }
                        Err(e) => {
                            excluded.insert(id.clone());
                            passed_over.insert(id, "could not refresh its sign-in");
                            last_failure = Some(Sent::Answer(refresh_error(&e)));
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
                excluded.insert(id.clone());
                passed_over.insert(id, "needs sign-in");
                last_failure = Some(Sent::Answer(passthrough(401, &h, b.into())));
            }
            429 => {
                let (h, b) = read_small(resp).await;
                let json: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
                match usage_limit_reset(&json) {
                    Some(until) => {
                        mark_limited(&shared, &id, until).await;
                        tracing::info!(account = %id, "usage limit reached; failing over");
                        excluded.insert(id.clone());
                        passed_over.insert(id, "hit its limit");
                        last_failure = None;
                    }
                    // Some other 429 (not a usage cap): the client decides what to do.
                    None => return Sent::Answer(passthrough(429, &h, b.into())),
                }
            }
            400 if posted && !stripped_once && !carried.is_empty() => {
                let (h, b) = read_small(resp).await;
                if !is_invalid_encrypted_content(&b) {
                    return Sent::Answer(passthrough(400, &h, b.into()));
                }
                // Ciphertext from before we ran (or one we missed): once more on the same
                // account, with only what it minted itself. Never a second time.
                tracing::info!(account = %id, "ciphertext refused; retrying without what it did not mint");
                stripped_once = true;
                retry_stripped = Some(id);
                last_failure = Some(Sent::Answer(passthrough(400, &h, b.into())));
            }
            _ => {
                let ok = (200..300).contains(&status);
                let mut up: Upstream = resp.into();
                if ok && posted {
                    let tap = if compact {
                        let len = up
                            .headers
                            .get(axum::http::header::CONTENT_LENGTH)
                            .and_then(|v| v.to_str().ok()?.parse().ok());
                        tap::Tap::json(cont.clone(), &id, len)
                    } else {
                        tap::Tap::sse(cont.clone(), &id)
                    };
                    let mut tapped = tap::Tapped::new(up.body, tap);
                    if compact || !shared.first_byte_hold {
                        up.body = tapped.boxed();
                    } else {
                        let held = hold::until_first_output(&mut tapped).await;
                        let head = futures_util::stream::iter(
                            (!held.head.is_empty()).then_some(Ok(held.head)),
                        );
                        match held.outcome {
                            hold::Outcome::Pass => {
                                up.body = head.chain(tapped).boxed();
                            }
                            hold::Outcome::Broken(e) => {
                                up.body = head.chain(futures_util::stream::iter([Err(e)])).boxed();
                            }
                            hold::Outcome::Failed(failed) => {
                                up.body = head.chain(tapped).boxed();
                                match hold::verdict(&failed) {
                                    hold::Verdict::UsageLimit { until } => {
                                        mark_limited(&shared, &id, until).await;
                                        tracing::info!(account = %id, "usage limit reached in the stream; failing over");
                                        excluded.insert(id.clone());
                                        passed_over.insert(id, "hit its limit");
                                        // When no other account can answer, the client
                                        // sees this failure as upstream sent it.
                                        last_failure = Some(Sent::Upstream(up));
                                        continue;
                                    }
                                    hold::Verdict::Busy { until } => {
                                        lock(&shared.selector)
                                            .rate_limited
                                            .insert(id.clone(), until);
                                        tracing::info!(account = %id, "overloaded in the stream; failing over");
                                        excluded.insert(id.clone());
                                        passed_over.insert(id, "was overloaded");
                                        last_failure = Some(Sent::Upstream(up));
                                        continue;
                                    }
                                    hold::Verdict::PassThrough => {}
                                }
                            }
                        }
                    }
                }
                *lock(&shared.served).entry(id.clone()).or_default() += 1;
                if ok && posted {
                    note_served(&shared, conv.as_deref(), &id, &passed_over, &summary_lost);
                }
                return Sent::Upstream(up);
            }
        }
    }
    last_failure.unwrap_or_else(|| {
        Sent::Answer(error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NoUsableAccount,
            "no account could answer this request",
        ))
    })
}

fn hex16(d: scan::Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A usage cap (HTTP 429 or in the stream): rate-limited until `until`, in memory and the store.
async fn mark_limited(shared: &Arc<Shared>, id: &str, until: i64) {
    lock(&shared.selector)
        .rate_limited
        .insert(id.to_string(), until);
    let (s, aid) = (shared.clone(), id.to_string());
    let _ = tokio::task::spawn_blocking(move || {
        let _ = s.store().set_rate_limited(&aid, until);
        s.reload();
    })
    .await;
}

/// Bookkeeping after an answer began: the conversation's account, and the account events for a
/// conversation that moved or lost its summarised context.
fn note_served(
    shared: &Shared,
    conv: Option<&str>,
    id: &str,
    passed_over: &HashMap<String, &'static str>,
    summary_lost: &[Arc<str>],
) {
    let cont = &shared.continuity;
    let accounts = shared.accounts();
    let label = |aid: &str| {
        accounts
            .iter()
            .find(|a| a.id == aid)
            .map_or_else(|| aid.to_string(), |a| a.label.clone())
    };
    if let Some(conv) = conv {
        if let Some(before) = cont.served(conv, id) {
            let why = passed_over
                .get(&before)
                .copied()
                .unwrap_or("could not serve it");
            cont.event(
                id,
                "conversation_moved",
                format!(
                    "conversation moved from {} to {}: {}",
                    label(&before),
                    label(id),
                    moved_reason(&label(&before), why)
                ),
                false,
            );
        }
    }
    let mut told = HashSet::new();
    for from in summary_lost {
        if told.insert(from.clone()) {
            cont.event(
                id,
                "context_not_moved",
                format!(
                    "earlier context was summarised by account {} and could not move to {}",
                    label(from),
                    label(id)
                ),
                true,
            );
        }
    }
}

fn select_error(e: SelectError) -> Response {
    match e {
        SelectError::UnknownPin(p) => error(
            StatusCode::BAD_REQUEST,
            ErrorCode::UnknownAccount,
            format!("the {PIN_HEADER} header names no account: `{}` (use an id, label or email from `codex-vault accounts list`)", crate::oauth::classify::redact(&p)),
        ),
        SelectError::PinnedUnusable { label, why } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::AccountUnusable,
            format!("the pinned account {label} cannot answer: {why}"),
        ),
        SelectError::AllRateLimited { earliest_reset } => {
            let resets_at = earliest_reset.map(|ms| ms / 1000);
            let body = serde_json::json!({"error": {
                "type": "usage_limit_reached",
                "code": ErrorCode::UsageLimitReached,
                "message": "Every Codex Vault account has hit its usage limit.",
                "resets_at": resets_at,
                "resets_in_seconds": resets_at.map(|s| (s - now_ms() / 1000).max(0)),
            }});
            (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
        }
        SelectError::NoUsableAccount => error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NoUsableAccount,
            "no healthy account in Codex Vault: add one, or sign in again to the ones that need it",
        ),
    }
}

fn refresh_error(e: &RefreshError) -> Response {
    super::HttpError::from(e).into_response()
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
