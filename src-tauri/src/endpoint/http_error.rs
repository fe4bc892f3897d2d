//! The endpoint's own errors as HTTP answers, in the OpenAI error shape the Codex CLI and SDKs
//! parse: `{"error":{"type","code","message"}}`. The one `IntoResponse` for them; everything in
//! `endpoint/` that refuses a request builds an `HttpError` (through `error`). Upstream's
//! answers are passed on as they came, and the broker's OAuth answers keep the OAuth shape.

use crate::error_code::ErrorCode;
use crate::refresh::RefreshError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            code,
            message: message.into(),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    code: ErrorCode,
    message: &'a str,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let kind = if self.status == StatusCode::TOO_MANY_REQUESTS {
            "usage_limit_reached"
        } else {
            "codex_vault_error"
        };
        let body = Body {
            error: Detail {
                kind,
                code: self.code,
                message: &self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// A token that could not be had for a request: the account needs sign-in (503), the refresh
/// failed for now (502), or the store or vault failed (503).
impl From<&RefreshError> for HttpError {
    fn from(e: &RefreshError) -> HttpError {
        let status = match e {
            RefreshError::Transient { .. } => StatusCode::BAD_GATEWAY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        HttpError::new(status, e.code(), e.to_string())
    }
}

/// Shorthand for `HttpError::new(..).into_response()`.
pub(crate) fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    HttpError::new(status, code, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_wire_body_is_the_openai_error_shape() {
        let resp = error(StatusCode::FORBIDDEN, ErrorCode::HostNotAllowed, "no");
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let bytes = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"error":{"type":"codex_vault_error","code":"host_not_allowed","message":"no"}}"#
        );
        let capped = error(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::UsageLimitReached,
            "cap",
        );
        let bytes = axum::body::to_bytes(capped.into_body(), 1024)
            .await
            .unwrap();
        assert!(std::str::from_utf8(&bytes)
            .unwrap()
            .starts_with(r#"{"error":{"type":"usage_limit_reached","code":"usage_limit_reached""#));
    }

    #[test]
    fn a_refresh_error_keeps_its_code_and_gets_its_status() {
        let transient = RefreshError::Transient {
            account: "work".into(),
            reason: "HTTP 502".into(),
        };
        let e = HttpError::from(&transient);
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_GATEWAY, ErrorCode::RefreshTransient)
        );
        assert_eq!(e.message, transient.to_string());
        let disabled = HttpError::from(&RefreshError::Disabled("work".into()));
        assert_eq!(
            (disabled.status, disabled.code),
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::AccountDisabled)
        );
    }
}
