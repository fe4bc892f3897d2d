//! Injected faults, applied before a route's normal handling, and small answer builders.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::config::{Fault, FaultRoute};
use crate::conn::ConnHandle;
use crate::grants::Rejection;
use crate::state::Shared;

pub(crate) fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) fn rejection_response(r: &Rejection) -> Response {
    json_response(r.status, &r.body)
}

fn text_response(status: u16, content_type: &str, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

/// The JSON body of `Fault::Status`: OpenAI's `server_error` for 5xx, a rate-limit error for
/// 429, a generic error otherwise.
pub(crate) fn status_body(status: u16) -> Value {
    match status {
        429 => json!({"error": {
            "message": "Rate limit reached. Please try again later.",
            "type": "rate_limit_exceeded", "param": null, "code": "rate_limit_exceeded",
        }}),
        500..=599 => json!({"error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error", "param": null, "code": null,
        }}),
        _ => json!({"error": {
            "message": format!("Injected fault: HTTP {status}."),
            "type": "invalid_request_error", "param": null, "code": null,
        }}),
    }
}

/// What a CDN in front of OpenAI answers when it blocks a client.
const CDN_BLOCK_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en-US\"><head><title>Attention Required! | Cloudflare</title>\
<meta charset=\"UTF-8\" /></head><body><div id=\"cf-wrapper\"><h1>Sorry, you have been blocked</h1>\
<h2>You are unable to access chatgpt.com</h2><p>Cloudflare Ray ID: 8f0c0ffee0c0ffee</p></div></body></html>\n";

const CHALLENGE_PAGE: &str =
    "<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title></head>\
<body><noscript>Enable JavaScript and cookies to continue</noscript></body></html>\n";

/// A fault the route itself must play out (it needs the caller's account or the stream).
pub(crate) enum Deferred {
    StreamFailed {
        code: String,
        message: String,
        resets_at: Option<i64>,
        after_output: bool,
    },
    InvalidEncryptedContent(crate::encrypted::EncryptedContentError),
}

/// Pops the next fault of `route` if it acts after the call is handled
/// (`SlowAfterHandling`, `DropAfterHandling`): the route applies it with [`apply_after`].
pub(crate) fn take_after_fault(shared: &Shared, route: FaultRoute) -> Option<Fault> {
    let mut state = shared.lock();
    let after = matches!(
        state.faults.get(&route).and_then(|q| q.front()),
        Some(Fault::SlowAfterHandling(_) | Fault::DropAfterHandling)
    );
    if after {
        state.next_fault(route)
    } else {
        None
    }
}

/// Applies a fault taken by [`take_after_fault`] to the answer the route computed.
pub(crate) async fn apply_after(
    fault: Option<Fault>,
    conn: &ConnHandle,
    resp: Response,
) -> Response {
    match fault {
        Some(Fault::SlowAfterHandling(d)) => {
            tokio::time::sleep(d).await;
            resp
        }
        Some(Fault::DropAfterHandling) => {
            conn.kill.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        _ => resp,
    }
}

/// Pops the next fault of `route` and applies it. `Some(answer)` ends the call with that answer;
/// `None` lets normal handling continue (no fault, or a `Slow` one that has waited). Faults only
/// `/responses` can play out answer 500 elsewhere.
pub(crate) async fn apply_fault(
    shared: &Shared,
    route: FaultRoute,
    conn: &ConnHandle,
) -> Option<Response> {
    match apply_fault_deferring(shared, route, conn).await {
        Ok(None) => None,
        Ok(Some(_)) => Some(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Err(resp) => Some(resp),
    }
}

/// [`apply_fault`] for `/responses`: `Ok(Some(deferred))` hands an in-stream or request-shaped
/// fault back to the route.
pub(crate) async fn apply_fault_deferring(
    shared: &Shared,
    route: FaultRoute,
    conn: &ConnHandle,
) -> Result<Option<Deferred>, Response> {
    let Some(fault) = shared.lock().next_fault(route) else {
        return Ok(None);
    };
    tracing::debug!(?route, ?fault, "injected fault fires");
    let answer = match fault {
        Fault::Status(status) => json_response(status, &status_body(status)),
        Fault::Custom {
            status,
            content_type,
            body,
        } => text_response(status, &content_type, body),
        Fault::Html403 => {
            text_response(403, "text/html; charset=UTF-8", CDN_BLOCK_PAGE.to_string())
        }
        Fault::Html200 => {
            text_response(200, "text/html; charset=UTF-8", CHALLENGE_PAGE.to_string())
        }
        Fault::Slow(d) => {
            tokio::time::sleep(d).await;
            return Ok(None);
        }
        Fault::DropConnection => {
            // Cut the socket first: hyper's attempt to write this answer then fails, and the
            // client sees the connection close without a byte of response.
            conn.kill.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Fault::StreamFailed {
            code,
            message,
            resets_at,
            after_output,
        } => {
            return Ok(Some(Deferred::StreamFailed {
                code,
                message,
                resets_at,
                after_output,
            }))
        }
        Fault::InvalidEncryptedContent(shape) => {
            return Ok(Some(Deferred::InvalidEncryptedContent(shape)))
        }
        // Routes that support them take these first (`take_after_fault`); elsewhere they are
        // spent without effect.
        Fault::SlowAfterHandling(_) | Fault::DropAfterHandling => return Ok(None),
    };
    Err(answer)
}
