//! OpenAI Chat Completions on top of the Codex Responses backend: `POST /v1/chat/completions`
//! and the OpenAI-shaped `GET /v1/models`. The translation is pure (`request`, `stream`,
//! `error`, `models`); this file is the I/O around it, and it reuses the proxy's account
//! selection, 401 refresh and 429 failover (`proxy::send`) rather than a second copy.

pub mod error;
pub mod models;
pub mod names;
pub mod request;
pub mod sse;
pub mod stream;

use super::proxy::{self, Sent};
use super::Shared;
use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use error::ApiError;
use futures_util::StreamExt;
use serde_json::Value;
use sse::SseReader;
use std::collections::VecDeque;
use std::sync::Arc;
use stream::{ChatStream, Completion, Out};

/// Our own error answers are small; cap what is read of one to re-shape it.
const MAX_ERROR_BODY: usize = 64 * 1024;

fn respond(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, axum::Json(e.body)).into_response()
}

/// A failed `send` (ours or upstream's) → an OpenAI-shaped error.
async fn failure(sent: Sent) -> ApiError {
    match sent {
        Sent::Upstream(resp) => {
            let status = resp.status().as_u16();
            let (_, body) = proxy::read_small(resp).await;
            error::from_upstream(status, &body)
        }
        Sent::Answer(r) => {
            let status = r.status().as_u16();
            let body = axum::body::to_bytes(r.into_body(), MAX_ERROR_BODY)
                .await
                .unwrap_or_default();
            error::from_upstream(status, &body)
        }
    }
}

pub async fn completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return respond(error::from_request(&request::RequestError::BadField {
                field: "body",
                why: format!("not valid JSON: {e}"),
            }))
        }
    };
    let t = match request::translate(&parsed) {
        Ok(t) => t,
        Err(e) => return respond(error::from_request(&e)),
    };
    if !t.dropped.is_empty() {
        tracing::debug!(dropped = ?t.dropped, "chat completions: parameters the Codex backend rejects were not sent");
    }
    let upstream_body = match serde_json::to_vec(&t.body) {
        Ok(b) => Bytes::from(b),
        // A Value always serialises; kept as an error rather than a panic all the same.
        Err(e) => return respond(error::from_upstream(500, e.to_string().as_bytes())),
    };
    let mut up_headers = headers;
    // The client asked Chat for JSON or SSE; upstream always streams SSE.
    up_headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    up_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let resp = match proxy::send(
        shared,
        crate::activity::Route::Chat,
        Method::POST,
        "/responses",
        up_headers,
        upstream_body,
    )
    .await
    {
        Sent::Upstream(r) if r.status().is_success() => r,
        other => return respond(failure(other).await),
    };
    let chat = ChatStream::new(
        format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        t.model,
        chrono::Utc::now().timestamp(),
        // The non-streaming answer always carries usage.
        t.include_usage || !t.stream,
        t.names,
    );
    let passed = rate_limit_headers(resp.headers());
    let mut out = if t.stream {
        stream_answer(resp, chat)
    } else {
        collect_answer(resp, chat).await
    };
    out.headers_mut().extend(passed);
    out
}

/// The backend's usage headers (`x-codex-*`) and request id, for clients that read them.
fn rate_limit_headers(h: &HeaderMap) -> HeaderMap {
    h.iter()
        .filter(|(n, _)| n.as_str().starts_with("x-codex-") || n.as_str() == "x-request-id")
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

fn event_outputs(chat: &mut ChatStream, ev: &sse::Event) -> Vec<Out> {
    let Ok(data) = serde_json::from_str::<Value>(&ev.data) else {
        return Vec::new(); // not JSON (a keep-alive or `[DONE]`): nothing to translate
    };
    let kind = if ev.name.is_empty() {
        data.get("type").and_then(Value::as_str).unwrap_or("")
    } else {
        &ev.name
    };
    chat.on_event(kind, &data)
}

fn frame(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

struct Pump {
    upstream: futures_util::stream::BoxStream<'static, crate::http::BodyResult>,
    reader: SseReader,
    chat: ChatStream,
    ready: VecDeque<Bytes>,
    ended: bool,
}

/// `stream: true`: each upstream chunk is translated and sent as soon as it arrives.
fn stream_answer(resp: proxy::Upstream, chat: ChatStream) -> Response {
    let pump = Pump {
        upstream: resp.into_stream(),
        reader: SseReader::default(),
        chat,
        ready: VecDeque::new(),
        ended: false,
    };
    let body = futures_util::stream::unfold(pump, |mut p| async move {
        loop {
            if let Some(b) = p.ready.pop_front() {
                return Some((Ok(b), p));
            }
            if p.ended {
                return None;
            }
            match p.upstream.next().await {
                Some(Ok(chunk)) => {
                    for ev in p.reader.push(&chunk) {
                        for o in event_outputs(&mut p.chat, &ev) {
                            match o {
                                Out::Chunk(c) => p.ready.push_back(frame(&c)),
                                Out::Fail(e) => {
                                    // OpenAI's in-stream error; SDKs raise it as an API error.
                                    p.ready.push_back(frame(&e.body));
                                    p.ended = true;
                                }
                                Out::Done => {
                                    p.ready.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
                                    p.ended = true;
                                }
                            }
                        }
                    }
                }
                // Upstream closed before its last event: cut our stream too (no `[DONE]`), so
                // the client sees an incomplete answer, as it would talking to upstream.
                Some(Err(_)) | None => {
                    p.ended = true;
                    let err = std::io::Error::other("the Codex backend closed the stream early");
                    return Some((Err(err), p));
                }
            }
        }
    });
    let mut out = Response::new(Body::from_stream(body));
    let h = out.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out
}

/// `stream: false`: the same translation, folded into one `chat.completion`.
async fn collect_answer(resp: proxy::Upstream, mut chat: ChatStream) -> Response {
    let mut resp = resp;
    let mut reader = SseReader::default();
    let mut done = Completion::default();
    while let Ok(Some(chunk)) = resp.chunk().await {
        for ev in reader.push(&chunk) {
            for o in event_outputs(&mut chat, &ev) {
                match o {
                    Out::Chunk(c) => done.absorb(&c),
                    Out::Fail(e) => return respond(e),
                    Out::Done => return axum::Json(done.into_json()).into_response(),
                }
            }
        }
    }
    respond(error::truncated())
}

/// `GET /v1/models`: the Codex CLI (it sends `client_version`) gets the backend's catalog as
/// is; every other client gets OpenAI's list shape.
pub async fn list_models(
    State(shared): State<Arc<Shared>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let from_codex = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.starts_with("client_version=")));
    if from_codex {
        return proxy::models(State(shared), OriginalUri(uri), headers).await;
    }
    let path = models::catalog_path();
    let resp = match proxy::send(
        shared,
        crate::activity::Route::Models,
        Method::GET,
        &path,
        headers,
        Bytes::new(),
    )
    .await
    {
        Sent::Upstream(r) if r.status().is_success() => r,
        other => return respond(failure(other).await),
    };
    match resp
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    {
        Some(catalog) => axum::Json(models::to_openai_list(&catalog)).into_response(),
        None => respond(error::from_upstream(502, b"")),
    }
}
