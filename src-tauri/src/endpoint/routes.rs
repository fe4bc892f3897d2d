//! The endpoint's routes and the middleware in front of them (local key, body cap; the
//! Host/Origin guard runs before the router, `refused_browser`), and the small answers it
//! makes itself (`/health`, `/v1/accounts`).

use super::{broker, chat, error, guard, keyless, proxy, quota, KeylessLimits, Shared, MAX_BODY};
use crate::error_code::ErrorCode;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;

pub(super) fn router(shared: Arc<Shared>, limits: KeylessLimits) -> Router {
    let api = Router::new()
        .route("/v1/responses", post(proxy::responses))
        .route("/backend-api/codex/responses", post(proxy::responses))
        .route("/v1/responses/compact", post(proxy::compact))
        .route("/backend-api/codex/responses/compact", post(proxy::compact))
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/models", get(chat::list_models))
        .route("/backend-api/codex/models", get(proxy::models))
        .route("/v1/accounts", get(accounts))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), require_key));
    // The refresh broker: no local key (the refresh token is the credential, as upstream), so
    // bounded apart (body size and time, requests at once); the Host/Origin guard applies too.
    let keyless = Router::new()
        .route("/oauth/token", post(broker::token))
        .route("/oauth/revoke", post(broker::revoke))
        .route_layer(middleware::from_fn_with_state(limits, keyless::bound));
    Router::new()
        .route("/health", get(health))
        .merge(keyless)
        // Codex's own quota routes: the local key or a held account's token (`quota`).
        .merge(quota::router(shared.clone()))
        .merge(api)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// The Prometheus text format (keyed like every route: the labels name the user's accounts).
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let statuses: Vec<&'static str> = shared.views().iter().map(|v| v.status.as_str()).collect();
    match crate::activity::metrics::render(&statuses) {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "this process serves no metrics (another metrics recorder was installed first)",
        ),
    }
}

/// Host and Origin first, for every route: a rebinding or cross-site request learns nothing,
/// not even 401. Called by the accept loop before the router (`accept::Watched`): as a
/// middleware layer it would clone the router's route services and box a future a request.
pub(super) fn refused_browser(headers: &axum::http::HeaderMap) -> Option<Response> {
    if !guard::host_allowed(headers) {
        return Some(error(
            StatusCode::FORBIDDEN,
            ErrorCode::HostNotAllowed,
            "this endpoint answers only requests addressed to 127.0.0.1, localhost or [::1]",
        ));
    }
    if guard::has_browser_origin(headers) {
        return Some(error(
            StatusCode::FORBIDDEN,
            ErrorCode::OriginNotAllowed,
            "browser requests are refused (the request carried an Origin header)",
        ));
    }
    None
}

async fn require_key(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if !shared.key_matches(req.headers()) {
        return error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidLocalKey,
            "missing or wrong local API key: send `Authorization: Bearer <key>` (see `codex-vault endpoint info`)",
        );
    }
    if req.headers().contains_key(header::UPGRADE) {
        // Newer Codex CLIs try a WebSocket first; 426 makes them fall back to HTTP streaming.
        return error(
            StatusCode::UPGRADE_REQUIRED,
            ErrorCode::WebsocketNotServed,
            "this endpoint serves HTTP streaming (SSE) only; retry without Upgrade",
        );
    }
    // A body announced over the limit is refused from its head, before a byte of it is read
    // (otherwise 32 MiB would be taken in first, or a client announcing more and sending nothing
    // would hold the connection).
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RequestTooLarge,
            format!("the request body is over {} MiB", MAX_BODY / (1024 * 1024)),
        );
    }
    next.run(req).await
}

/// Liveness plus two process counters the benchmark checks from outside (keychain reads stay at
/// 1, the idle scheduler barely wakes); neither says anything about accounts or secrets.
async fn health() -> Response {
    Json(serde_json::json!({
        "status": "ok",
        "service": "codex-vault",
        "version": env!("CARGO_PKG_VERSION"),
        "process": {
            "keychain_reads": crate::vault::keychain_reads(),
            "scheduler_wakeups": crate::refresh::scheduler_wakeups(),
        },
    }))
    .into_response()
}

async fn accounts(State(shared): State<Arc<Shared>>) -> Response {
    let recent = shared.continuity.recent_conversations();
    let views: Vec<serde_json::Value> = shared
        .views()
        .into_iter()
        .map(|v| {
            let mut j = serde_json::to_value(&v).unwrap_or_default();
            if let serde_json::Value::Object(m) = &mut j {
                m.insert(
                    "conversations".into(),
                    serde_json::json!({
                        "served_last_30_min": recent.get(&v.id).copied().unwrap_or(0),
                        "notes": shared.continuity.notes(&v.id),
                    }),
                );
            }
            j
        })
        .collect();
    Json(views).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such route: use /v1/responses, /v1/chat/completions, /v1/models, /v1/accounts or /health",
    )
}
