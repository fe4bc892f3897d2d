//! Bounds for the routes any local process may call without the local key (the refresh broker's
//! `/oauth/token` and `/oauth/revoke`: the stock Codex CLI calls them with only its refresh token).
//! Without them a process could hold connections with unfinished bodies forever, or have us buffer
//! and relay 32 MiB requests to the issuer. A token request is a few hundred bytes, so the cap is
//! small; a body must arrive within a deadline; and only so many keyless requests run at once, so
//! keyed routes keep descriptors and tasks to answer with.
//!
//! Every keyless answer closes its connection (`Connection: close`): a keyless connection then
//! exists only while its one request is in flight, and so is counted exactly by the cap. A 413
//! gets a lingering close from the accept loop, so a client still sending the refused body reads
//! our answer instead of a reset.

use super::error;
use crate::error_code::ErrorCode;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// A refresh or revoke request is under 1 KiB; 64 KiB leaves room for any form the issuer takes.
pub const KEYLESS_MAX_BODY: usize = 64 * 1024;
/// From the request head to the body's last byte.
pub const KEYLESS_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many keyless requests may be in flight at once (head read, body being read or the issuer
/// being asked); one more is answered 503 at once, never parked.
#[derive(Clone)]
pub struct KeylessLimits {
    permits: Arc<Semaphore>,
    cap: usize,
}

impl KeylessLimits {
    pub fn new(cap: usize) -> KeylessLimits {
        KeylessLimits {
            permits: Arc::new(Semaphore::new(cap)),
            cap,
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Keyless requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.cap - self.permits.available_permits()
    }
}

fn closing(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn too_large() -> Response {
    let mut resp = closing(error(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RequestTooLarge,
        format!(
            "a token or revoke request body is at most {} KiB",
            KEYLESS_MAX_BODY / 1024
        ),
    ));
    resp.extensions_mut().insert(super::accept::LingeringClose);
    resp
}

/// The layer in front of the keyless routes (after the Host/Origin guard).
pub async fn bound(State(limits): State<KeylessLimits>, req: Request, next: Next) -> Response {
    // From the head alone, before a byte of the body is read or a permit taken.
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > KEYLESS_MAX_BODY as u64) {
        return too_large();
    }
    let Ok(_permit) = limits.permits.clone().try_acquire_owned() else {
        tracing::debug!(
            cap = limits.cap,
            "keyless request refused: too many in flight"
        );
        return closing(error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::TooManyKeylessRequests,
            "too many token requests at once; retry shortly",
        ));
    };
    let (parts, body) = req.into_parts();
    let read = async {
        let mut data = body.into_data_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = data.next().await {
            let Ok(chunk) = chunk else {
                return Err(None);
            };
            if buf.len() + chunk.len() > KEYLESS_MAX_BODY {
                return Err(Some(too_large()));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    let body = match tokio::time::timeout(KEYLESS_BODY_TIMEOUT, read).await {
        Ok(Ok(buf)) => buf,
        Ok(Err(Some(refused))) => return refused,
        // The client broke off mid-body (or sent a malformed chunk): nothing to answer.
        Ok(Err(None)) => {
            return closing(error(
                StatusCode::BAD_REQUEST,
                ErrorCode::RequestBodyInvalid,
                "the request body could not be read",
            ))
        }
        Err(_) => {
            return closing(error(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::RequestBodyTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    KEYLESS_BODY_TIMEOUT.as_secs()
                ),
            ))
        }
    };
    let resp = next.run(Request::from_parts(parts, Body::from(body))).await;
    // The permit is held until the answer is produced (the issuer call included).
    closing(resp)
}
