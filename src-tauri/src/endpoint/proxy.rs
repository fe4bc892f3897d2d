//! Forwarding one request: choose an account, inject its credentials, send, and stream the
//! answer back chunk by chunk. 401 → refresh through the TokenManager and retry once; 429
//! usage_limit_reached → mark the account limited and retry on another; a `response.failed`
//! before the first output event (the head is held until then) fails over the same way; a 400
//! `invalid_encrypted_content` is retried once on the same account without the ciphertext it
//! cannot read. Ciphertext another account minted is dropped before a request goes out
//! (`continuity`). Nothing is retried once a byte reached the client.

pub(super) use super::failover::report;
pub(crate) use super::failover::send;
use super::select::SelectError;
use super::{error, Shared};
use crate::account::now_ms;
use crate::activity::Route;
use crate::error_code::ErrorCode;
use crate::refresh::RefreshError;
use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{BoxStream, StreamExt};
use std::sync::Arc;

pub const PIN_HEADER: &str = "x-codex-vault-account";
/// Error bodies we read to decide (401/429) are small; cap what we buffer of them.
const MAX_DECISION_BODY: usize = 64 * 1024;

/// Hop-by-hop headers (RFC 9110 § 7.6.1) and the ones we set or must not forward.
pub(super) const DROP_REQUEST: &[&str] = &[
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
    forward(
        shared,
        Route::Responses,
        Method::POST,
        "/responses",
        headers,
        body,
    )
    .await
}

/// Remote compaction (`/responses/compact`): the same account choice and ciphertext rules; the
/// answer is one JSON document whose `compaction` item is bound to the account that made it.
pub async fn compact(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    forward(
        shared,
        Route::Compact,
        Method::POST,
        "/responses/compact",
        headers,
        body,
    )
    .await
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
    forward(
        shared,
        Route::Models,
        Method::GET,
        &path,
        headers,
        Bytes::new(),
    )
    .await
}

/// The one field of a request body selection needs. Deserialising only it skips the rest of
/// the body (a Codex turn is tens of KB: instructions, tools, history) without building a tree
/// of it on every request; a missing, non-string or unparseable key reads as none, as before.
#[derive(serde::Deserialize)]
struct ConversationKey {
    #[serde(default, deserialize_with = "string_or_none")]
    prompt_cache_key: Option<String>,
    /// For the request log.
    #[serde(default, deserialize_with = "string_or_none")]
    model: Option<String>,
}

fn string_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::Deserialize;
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

/// The conversation a request belongs to: `prompt_cache_key`, else the session header.
pub(super) fn conversation(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    request_keys(headers, body).0
}

/// The conversation (as [`conversation`]) and the model a request body names, in one pass.
pub(super) fn request_keys(headers: &HeaderMap, body: &[u8]) -> (Option<String>, Option<String>) {
    let keys = serde_json::from_slice::<ConversationKey>(body).ok();
    let (from_body, model) = keys.map_or((None, None), |k| (k.prompt_cache_key, k.model));
    let conv = from_body.or_else(|| {
        ["session_id", "session-id"]
            .iter()
            .find_map(|h| headers.get(*h)?.to_str().ok().map(str::to_string))
    });
    (conv, model)
}

#[cfg(test)]
use super::upstream::upstream_url;
pub(super) use super::upstream::{upstream_request, LeanBase};

pub(crate) async fn read_small(resp: impl Into<Upstream>) -> (HeaderMap, Vec<u8>) {
    let mut resp: Upstream = resp.into();
    let headers = std::mem::take(&mut resp.headers);
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
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    pub(super) body: BoxStream<'static, crate::http::BodyResult>,
}

impl From<reqwest::Response> for Upstream {
    fn from(mut r: reqwest::Response) -> Upstream {
        Upstream {
            status: r.status().as_u16(),
            // Moved, not copied: the body stream does not need them.
            headers: std::mem::take(r.headers_mut()),
            body: r
                .bytes_stream()
                .map(|c| c.map_err(crate::http::BodyError::from))
                .boxed(),
        }
    }
}

impl Upstream {
    pub(super) fn from_lean(r: axum::http::Response<hyper::body::Incoming>) -> Upstream {
        use http_body_util::BodyExt;
        Upstream::streaming(r.map(|body| body.into_data_stream()))
    }

    /// Status and headers moved out of `r`, its body streaming on (the inline pool's answers are
    /// this shape already).
    pub(super) fn streaming<S, E>(r: axum::http::Response<S>) -> Upstream
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Send + 'static,
        crate::http::BodyError: From<E>,
    {
        let (parts, body) = r.into_parts();
        Upstream {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body
                .map(|c| c.map_err(crate::http::BodyError::from))
                .boxed(),
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

    pub fn into_stream(self) -> BoxStream<'static, crate::http::BodyResult> {
        self.body
    }

    pub async fn chunk(&mut self) -> Result<Option<Bytes>, crate::http::BodyError> {
        self.body.next().await.transpose()
    }

    /// The whole body (a small JSON answer).
    pub async fn bytes(mut self) -> Result<Vec<u8>, crate::http::BodyError> {
        let mut out = Vec::new();
        while let Some(c) = self.chunk().await? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    fn into_response(self) -> Response {
        passthrough_owned(self.status, self.headers, Body::from_stream(self.body))
    }
}

pub(super) fn passthrough(status: u16, headers: &HeaderMap, body: axum::body::Body) -> Response {
    let mut out = Response::new(body);
    *out.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    for (name, value) in headers {
        if !DROP_RESPONSE.contains(&name.as_str()) {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}

/// [`passthrough`] for headers we own: the dropped ones are removed in place, the rest moved.
fn passthrough_owned(status: u16, mut headers: HeaderMap, body: axum::body::Body) -> Response {
    for name in DROP_RESPONSE {
        headers.remove(*name);
    }
    let mut out = Response::new(body);
    *out.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    *out.headers_mut() = headers;
    out
}

/// `resets_at` (Unix s) or `resets_in_seconds` of a usage-limit body, as Unix ms.
pub(super) fn usage_limit_reset(body: &serde_json::Value) -> Option<i64> {
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
    route: Route,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match send(shared, route, method, path, headers, body).await {
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

/// True for the backend's refusal of ciphertext the account cannot read, in every shape seen:
/// `code: "invalid_encrypted_content"`, or `code: null` with the message ("The encrypted content
/// … could not be verified.").
pub(super) fn is_invalid_encrypted_content(body: &[u8]) -> bool {
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

pub(super) fn select_error(e: SelectError) -> Response {
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

pub(super) fn refresh_error(e: &RefreshError) -> Response {
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
    fn the_upstream_url_is_the_one_parsing_base_and_path_gives() {
        for base in [
            "http://127.0.0.1:8080/backend-api/codex",
            "https://chatgpt.com/backend-api/codex",
            "http://localhost:9/",
            "http://[::1]:7/a%20b",
        ] {
            let parsed = reqwest::Url::parse(base.trim_end_matches('/')).ok();
            for path in [
                "/responses",
                "/models?client_version=0.169.0",
                "/responses/compact",
                "/x y?q=a b",
            ] {
                let want = reqwest::Url::parse(&format!("{}{path}", base.trim_end_matches('/')));
                assert_eq!(
                    upstream_url(parsed.as_ref(), path).map(|u| u.to_string()),
                    want.ok().map(|u| u.to_string()),
                    "{base} {path}"
                );
            }
        }
        assert!(upstream_url(None, "/responses").is_none());
    }

    #[test]
    fn the_lean_uri_is_the_one_parsing_base_and_path_gives_or_none() {
        for base in [
            "http://127.0.0.1:8080/backend-api/codex",
            "https://chatgpt.com/backend-api/codex",
            "https://ChatGPT.com:443/backend-api/codex/",
            "http://localhost:9/",
            "http://[::1]:7/a%20b",
        ] {
            let parsed = reqwest::Url::parse(base.trim_end_matches('/')).ok();
            let lean = LeanBase::new(parsed.as_ref()).expect("a plain base takes the lean path");
            for path in [
                "/responses",
                "/models?client_version=0.169.0",
                "/responses/compact",
                "/models?a=%20b&c=d/e",
            ] {
                let want = reqwest::Url::parse(&format!("{}{path}", base.trim_end_matches('/')));
                assert_eq!(
                    lean.target(path),
                    want.ok().map(|u| u.to_string()),
                    "{base} {path}"
                );
            }
            // What a URL parse would rewrite goes through reqwest, as before.
            for path in [
                "/x y",
                "/models?q=\"a\"",
                "/a/../b",
                "/m?x='1'",
                "/é",
                "/a\\b",
            ] {
                assert!(lean.uri(path).is_none(), "{base} {path}");
            }
        }
        for base in [
            "http://u:p@127.0.0.1:1/x",
            "http://127.0.0.1:1/x?y=1",
            "ftp://h/x",
        ] {
            assert!(
                LeanBase::new(reqwest::Url::parse(base).ok().as_ref()).is_none(),
                "{base}"
            );
        }
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
        h.insert("session_id", axum::http::HeaderValue::from_static("s1"));
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
