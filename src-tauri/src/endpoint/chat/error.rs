//! Every failure a Chat Completions client sees, in OpenAI's error shape
//! (`{"error":{"message","type","param","code"}}`) with the status that fits. Upstream bodies come
//! in three shapes (an OpenAI error object, FastAPI's `{"detail": …}`, an HTML page); usage-limit
//! answers keep their reset information so clients can wait the right time. Pure.

use super::request::RequestError;
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub body: Value,
}

/// The OpenAI `type` conventionally paired with a status.
fn kind_for(status: u16) -> &'static str {
    match status {
        400 | 404 | 409 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_exceeded",
        _ => "server_error",
    }
}

fn shaped(status: u16, message: String, kind: &str, code: Value, param: Value) -> ApiError {
    ApiError {
        status,
        body: json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    }
}

pub fn from_request(e: &RequestError) -> ApiError {
    shaped(
        400,
        e.to_string(),
        "invalid_request_error",
        json!("invalid_request"),
        json!(e.param()),
    )
}

/// An error object (`{message, type, code, …}`) with its status; extra fields (`resets_at`,
/// `resets_in_seconds`, `plan_type`) are kept.
fn from_error_object(status: u16, e: &serde_json::Map<String, Value>) -> ApiError {
    let mut out = e.clone();
    let kind = out
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| kind_for(status).to_string());
    let code = out
        .get("code")
        .filter(|c| !c.is_null())
        .cloned()
        .unwrap_or_else(|| json!(kind));
    let message = out
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("the Codex backend answered HTTP {status}"));
    out.insert("message".into(), json!(message));
    out.insert("type".into(), json!(kind));
    out.insert("code".into(), code);
    out.entry("param").or_insert(Value::Null);
    ApiError {
        status,
        body: json!({ "error": out }),
    }
}

/// A non-2xx answer (from the backend or from the endpoint's own checks) → the client's error.
pub fn from_upstream(status: u16, body: &[u8]) -> ApiError {
    // Only error statuses reach here; anything else from upstream is a gateway problem.
    let status = if (400..600).contains(&status) {
        status
    } else {
        502
    };
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(e) = json
        .as_ref()
        .and_then(|j| j.get("error"))
        .and_then(Value::as_object)
    {
        return from_error_object(status, e);
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(j) = &json {
        let message = j
            .get("detail")
            .map(text)
            .or_else(|| j.get("error").map(text))
            .or_else(|| j.get("message").map(text));
        if let Some(m) = message {
            return shaped(status, m, kind_for(status), Value::Null, Value::Null);
        }
    }
    shaped(
        status,
        format!("the Codex backend answered HTTP {status} without a readable error"),
        "upstream_error",
        json!("upstream_error"),
        Value::Null,
    )
}

/// `response.failed`'s `response.error`, or an `error` event, met after the stream began.
pub fn from_stream_error(e: &Value) -> ApiError {
    let code = e
        .get("code")
        .or_else(|| e.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let status = match code {
        "usage_limit_reached" | "rate_limit_exceeded" | "usage_not_included" => 429,
        "context_length_exceeded" | "invalid_prompt" | "invalid_request_error" => 400,
        _ => 500,
    };
    match e.as_object() {
        Some(obj) => from_error_object(status, obj),
        None => from_upstream(status, &[]),
    }
}

/// The backend closed the stream before `response.completed`.
pub fn truncated() -> ApiError {
    shaped(
        502,
        "the Codex backend closed the stream before the answer was complete".into(),
        "server_error",
        json!("stream_truncated"),
        Value::Null,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_errors_map_to_openai_shape_and_status() {
        let cases: Vec<(u16, &str, u16, &str, &str, &str)> = vec![
            // (status, body) → (status, type, code, message contains)
            (
                401,
                r#"{"detail":"Unauthorized"}"#,
                401,
                "authentication_error",
                "null",
                "Unauthorized",
            ),
            (
                400,
                r#"{"detail":"Stream must be set to true"}"#,
                400,
                "invalid_request_error",
                "null",
                "Stream must",
            ),
            (
                403,
                "<html>blocked</html>",
                403,
                "upstream_error",
                "\"upstream_error\"",
                "HTTP 403",
            ),
            (
                503,
                r#"{"error":{"message":"overloaded","type":"server_error","code":null}}"#,
                503,
                "server_error",
                "\"server_error\"",
                "overloaded",
            ),
            (
                401,
                r#"{"error":{"message":"expired","type":"invalid_request_error","code":"token_expired"}}"#,
                401,
                "invalid_request_error",
                "\"token_expired\"",
                "expired",
            ),
            (
                400,
                r#"{"error":{"type":"codex_vault_error","code":"unknown_account","message":"names no account"}}"#,
                400,
                "codex_vault_error",
                "\"unknown_account\"",
                "names no account",
            ),
            (
                200,
                "",
                502,
                "upstream_error",
                "\"upstream_error\"",
                "HTTP 502",
            ),
        ];
        for (status, body, want_status, kind, code, msg) in cases {
            let e = from_upstream(status, body.as_bytes());
            assert_eq!(e.status, want_status, "{body}");
            assert_eq!(e.body["error"]["type"], kind, "{body}");
            assert_eq!(e.body["error"]["code"].to_string(), code, "{body}");
            assert!(
                e.body["error"]["message"].as_str().unwrap().contains(msg),
                "{body}: {}",
                e.body
            );
            assert!(
                e.body["error"].get("param").is_some(),
                "param present: {}",
                e.body
            );
        }
    }

    #[test]
    fn a_usage_limit_keeps_its_reset_information() {
        let body = r#"{"error":{"type":"usage_limit_reached","message":"You've hit your usage limit.","plan_type":"plus","resets_at":1767225600,"resets_in_seconds":600}}"#;
        let e = from_upstream(429, body.as_bytes());
        assert_eq!(e.status, 429);
        let err = &e.body["error"];
        assert_eq!(err["type"], "usage_limit_reached");
        assert_eq!(err["code"], "usage_limit_reached");
        assert_eq!(err["resets_at"], 1767225600);
        assert_eq!(err["resets_in_seconds"], 600);
        assert_eq!(err["plan_type"], "plus");
    }

    #[test]
    fn stream_failures_and_request_errors_map() {
        let cases = [
            (
                json!({"code": "usage_limit_reached", "message": "cap", "resets_at": 5}),
                429,
            ),
            (
                json!({"code": "context_length_exceeded", "message": "too long"}),
                400,
            ),
            (json!({"code": "server_error", "message": "oops"}), 500),
            (json!({"type": "error", "message": "no code"}), 500),
        ];
        for (e, status) in cases {
            let got = from_stream_error(&e);
            assert_eq!(got.status, status, "{e}");
            assert_eq!(got.body["error"]["message"], e["message"]);
        }
        assert_eq!(
            from_stream_error(&json!({"code":"usage_limit_reached","resets_at":5})).body["error"]
                ["resets_at"],
            5
        );
        let r = from_request(&RequestError::ManyChoices(3));
        assert_eq!(
            (r.status, r.body["error"]["param"].as_str()),
            (400, Some("n"))
        );
        assert_eq!(truncated().status, 502);
    }
}
