//! What a token-endpoint answer means, as one outcome type (protocol.md § Refresh errors).
//! Pure: status + body in, outcome out, so the whole table is unit-tested without a network.

use serde_json::Value;

/// Codes that mean "the token we sent is no longer current": race recovery decides.
pub const RACE_CODES: &[&str] = &["invalid_grant", "refresh_token_reused"];

/// Codes that mean the credential is dead: terminal, no recovery.
pub const TERMINAL_CODES: &[&str] = &[
    "refresh_token_expired",
    "refresh_token_invalidated",
    "app_session_terminated",
    "invalid_refresh_token",
    "invalid_client",
    "unauthorized_client",
    "access_denied",
];

/// How a failed refresh is classified. `Rotated` (success) is built by the client from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// `invalid_grant` / `refresh_token_reused`: a sibling may have rotated first.
    MaybeRace {
        code: String,
        message: String,
        http_status: u16,
    },
    /// The credential is dead.
    Terminal {
        code: String,
        message: String,
        http_status: Option<u16>,
    },
    /// Network, timeout, 5xx, 429, an HTML or unparseable body: retry later, never terminal.
    Transient { reason: String },
}

/// The error code in any of the three shapes upstream has used, lower-cased:
/// `{"error":{"code":..}}`, `{"error":"..."}`, or a top-level `{"code":..}`.
pub fn error_code(body: &Value) -> Option<String> {
    let code = match body.get("error") {
        Some(Value::Object(e)) => e.get("code").and_then(Value::as_str),
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    }
    .or_else(|| body.get("code").and_then(Value::as_str))?;
    let code = code.trim().to_ascii_lowercase();
    // Only a code-shaped string is a code: anything else (a page of text, escapes) is dropped,
    // because codes are stored, shown and matched on.
    let code_shaped = (1..=64).contains(&code.len())
        && code.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    code_shaped.then_some(code)
}

/// The human message, redacted and capped: `error.message`, `error_description`, or `message`.
pub fn error_message(body: &Value) -> Option<String> {
    let m = match body.get("error") {
        Some(Value::Object(e)) => e.get("message").and_then(Value::as_str),
        _ => None,
    }
    .or_else(|| body.get("error_description").and_then(Value::as_str))
    .or_else(|| body.get("message").and_then(Value::as_str))?;
    Some(redact(m))
}

/// Classifies a non-2xx answer of the token endpoint.
pub fn classify_error(status: u16, body: &[u8]) -> Failure {
    // protocol.md: 5xx and 429 are transient whatever their body says.
    if status >= 500 || status == 429 {
        return Failure::Transient {
            reason: format!("the sign-in server answered HTTP {status}"),
        };
    }
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let code = json.as_ref().and_then(error_code);
    let message = json.as_ref().and_then(error_message);
    if let Some(code) = code {
        let message = message
            .clone()
            .unwrap_or_else(|| format!("the sign-in server answered {code}"));
        if RACE_CODES.contains(&code.as_str()) {
            return Failure::MaybeRace {
                code,
                message,
                http_status: status,
            };
        }
        if TERMINAL_CODES.contains(&code.as_str()) {
            return Failure::Terminal {
                code,
                message,
                http_status: Some(status),
            };
        }
    }
    if json.is_none() {
        // A CDN/proxy page (HTML 403, captive portal…) is a network problem, not a dead grant.
        return Failure::Transient {
            reason: format!(
                "the sign-in server answered HTTP {status} with a body that is not JSON"
            ),
        };
    }
    if status == 401 {
        return Failure::Terminal {
            code: "unauthorized".into(),
            message: message
                .unwrap_or_else(|| "the sign-in server refused the refresh token".into()),
            http_status: Some(401),
        };
    }
    // An unknown 4xx: we cannot tell it is the grant's fault, so never kill an account on a guess.
    Failure::Transient {
        reason: format!(
            "the sign-in server answered HTTP {status}{}",
            match (json.as_ref().and_then(error_code), message) {
                (Some(c), _) => format!(" ({c})"),
                (None, Some(m)) => format!(": {m}"),
                (None, None) => String::new(),
            }
        ),
    }
}

/// Replaces anything token-like (a long run of base64url/JWT characters) with a marker and caps
/// the length: upstream messages are shown to users and stored, and must never carry a secret.
pub fn redact(text: &str) -> String {
    const MIN_TOKEN_RUN: usize = 24;
    const MAX_CHARS: usize = 300;
    let mut out = String::with_capacity(text.len().min(MAX_CHARS));
    let mut run = String::new();
    // Tokens are random: a long run with a digit or a capital. A long snake_case word (an error
    // code such as `missing_codex_entitlement`) is not redacted.
    let flush = |run: &mut String, out: &mut String| {
        let random_looking = run
            .chars()
            .any(|c| c.is_ascii_digit() || c.is_ascii_uppercase());
        if run.chars().count() >= MIN_TOKEN_RUN && random_looking {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | '+' | '/') {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(if c.is_control() { ' ' } else { c });
        }
    }
    flush(&mut run, &mut out);
    if out.chars().count() > MAX_CHARS {
        out = out.chars().take(MAX_CHARS).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(status: u16, body: &str) -> Failure {
        classify_error(status, body.as_bytes())
    }

    fn code_of(f: &Failure) -> (&'static str, Option<&str>) {
        match f {
            Failure::MaybeRace { code, .. } => ("race", Some(code)),
            Failure::Terminal { code, .. } => ("terminal", Some(code)),
            Failure::Transient { .. } => ("transient", None),
        }
    }

    #[test]
    #[allow(
        clippy::too_many_lines,
        reason = "one table of cases, a row per line: splitting it would hide the table"
    )]
    fn the_protocol_table() {
        let reused = r#"{"error":{"message":"Your refresh token has already been used to generate a new access token. Please try signing in again.","type":"invalid_request_error","param":null,"code":"refresh_token_reused"}}"#;
        let invalidated = r#"{"error":{"message":"Your session has ended. Please log in again.","type":"invalid_request_error","param":null,"code":"refresh_token_invalidated"}}"#;
        let cases: Vec<(u16, String, &str, Option<&str>)> = vec![
            (401, reused.into(), "race", Some("refresh_token_reused")),
            (400, reused.into(), "race", Some("refresh_token_reused")),
            (
                400,
                r#"{"error":"invalid_grant","error_description":"bad"}"#.into(),
                "race",
                Some("invalid_grant"),
            ),
            (
                400,
                r#"{"error":"INVALID_GRANT"}"#.into(),
                "race",
                Some("invalid_grant"),
            ),
            (
                401,
                invalidated.into(),
                "terminal",
                Some("refresh_token_invalidated"),
            ),
            (
                401,
                r#"{"code":"refresh_token_expired","message":"expired"}"#.into(),
                "terminal",
                Some("refresh_token_expired"),
            ),
            (
                400,
                r#"{"error":"invalid_client"}"#.into(),
                "terminal",
                Some("invalid_client"),
            ),
            (
                400,
                r#"{"error":"unauthorized_client"}"#.into(),
                "terminal",
                Some("unauthorized_client"),
            ),
            (
                403,
                r#"{"error":"access_denied"}"#.into(),
                "terminal",
                Some("access_denied"),
            ),
            (
                401,
                r#"{"error":{"code":"app_session_terminated","message":"x"}}"#.into(),
                "terminal",
                Some("app_session_terminated"),
            ),
            (
                401,
                r#"{"error":{"code":"invalid_refresh_token"}}"#.into(),
                "terminal",
                Some("invalid_refresh_token"),
            ),
            (
                401,
                r#"{"error":{"code":"something_new","message":"?"}}"#.into(),
                "terminal",
                Some("unauthorized"),
            ),
            (401, r#"{}"#.into(), "terminal", Some("unauthorized")),
            (
                403,
                "<html><body>Access denied | Cloudflare</body></html>".into(),
                "transient",
                None,
            ),
            (401, "<html>login</html>".into(), "transient", None),
            (
                503,
                r#"{"error":"temporarily_unavailable"}"#.into(),
                "transient",
                None,
            ),
            (500, "".into(), "transient", None),
            (502, "<html>bad gateway</html>".into(), "transient", None),
            (
                429,
                r#"{"error":{"code":"rate_limit_exceeded"}}"#.into(),
                "transient",
                None,
            ),
            (
                400,
                r#"{"error":"invalid_request"}"#.into(),
                "transient",
                None,
            ),
            (
                503,
                r#"{"error":"invalid_grant"}"#.into(),
                "transient",
                None,
            ),
            (
                429,
                r#"{"error":{"code":"access_denied"}}"#.into(),
                "transient",
                None,
            ),
            (
                401,
                r#"{"error":"<script>alert(1)</script>"}"#.into(),
                "terminal",
                Some("unauthorized"),
            ),
        ];
        for (status, body, kind, code) in cases {
            let got = t(status, &body);
            assert_eq!(code_of(&got), (kind, code), "{status} {body}");
        }
    }

    #[test]
    fn keeps_status_and_message() {
        match t(
            401,
            r#"{"error":{"code":"refresh_token_invalidated","message":"Your session has ended."}}"#,
        ) {
            Failure::Terminal {
                message,
                http_status,
                ..
            } => {
                assert_eq!(message, "Your session has ended.");
                assert_eq!(http_status, Some(401));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redacts_token_like_text() {
        let m = redact("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc was reused\nrt_AAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert!(!m.contains("eyJhbGci"), "{m}");
        assert!(!m.contains("rt_AAAA"), "{m}");
        assert!(m.contains("was reused"));
        assert_eq!(
            redact("missing_codex_entitlement_for_workspace"),
            "missing_codex_entitlement_for_workspace"
        );
        assert!(!m.contains('\n'));
        assert!(redact(&"a ".repeat(400)).chars().count() <= 301);
    }
}
