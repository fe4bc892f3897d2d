//! The issuer: `GET /oauth/authorize`, `POST /oauth/token`, `POST /oauth/revoke`
//! (protocol.md § OAuth).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Value};

use crate::config::{FaultRoute, CLIENT_ID};
use crate::conn::ConnHandle;
use crate::faults::{
    apply_after, apply_fault, json_response, rejection_response, status_body, take_after_fault,
};
use crate::grants::{CodeRequest, Minted};
use crate::state::{now_unix, Shared};

/// The request parameters, from a JSON object or a form body, whichever the content type says
/// (the CLI sends the code exchange as a form and the refresh as JSON; accept both for both).
pub(crate) fn parse_params(headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
    if is_json {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
            return HashMap::new();
        };
        map.into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                Value::Null => None,
                other => Some((k, other.to_string())),
            })
            .collect()
    } else {
        url::form_urlencoded::parse(body).into_owned().collect()
    }
}

fn token_answer(minted: &Minted) -> Response {
    let mut resp = json_response(200, &minted.to_json());
    // RFC 6749 § 5.1: token answers must not be cached.
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

pub(crate) async fn token(
    AxState(shared): AxState<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.lock().counters.token_calls += 1;
    let after = take_after_fault(&shared, FaultRoute::Token);
    if let Some(resp) = apply_fault(&shared, FaultRoute::Token, &conn).await {
        return resp;
    }
    let params = parse_params(&headers, &body);
    let p = |k: &str| params.get(k).map(String::as_str);
    let now = now_unix();
    if p("grant_type") == Some("refresh_token") {
        if let Some(resp) = refresh_failure(&shared, p("refresh_token")) {
            return apply_after(after, &conn, resp).await;
        }
    }
    let result = {
        let mut state = shared.lock();
        match p("grant_type") {
            Some("refresh_token") => state
                .refresh(p("client_id"), p("refresh_token"), false, now)
                .map_err(|(_, r)| r),
            Some("authorization_code") => state.exchange_code(
                p("client_id"),
                p("code"),
                p("redirect_uri"),
                p("code_verifier"),
                now,
            ),
            Some(other) => {
                return json_response(
                    400,
                    &json!({"error": "unsupported_grant_type",
                            "error_description": format!("Unsupported grant type: {other}.")}),
                )
            }
            None => {
                return json_response(
                    400,
                    &json!({"error": "invalid_request",
                            "error_description": "Missing required parameter: grant_type."}),
                )
            }
        }
    };
    let resp = match result {
        Ok(minted) => token_answer(&minted),
        Err(rejection) => rejection_response(&rejection),
    };
    apply_after(after, &conn, resp).await
}

/// Counts a refresh grant against its account and answers the failure set for that account
/// (`FakeOpenAi::set_refresh_failure`), if any.
fn refresh_failure(shared: &Shared, refresh_token: Option<&str>) -> Option<Response> {
    let mut state = shared.lock();
    let account = refresh_token
        .and_then(|rt| state.refresh_tokens.get(rt))
        .and_then(|e| state.families.get(&e.family))
        .map(|f| f.account_id.clone())?;
    state.counters.account(&account).refresh_calls += 1;
    let status = state.accounts.get(&account)?.refresh_failure?;
    Some(json_response(status, &status_body(status)))
}

pub(crate) async fn revoke(
    AxState(shared): AxState<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = parse_params(&headers, &body);
    let mut state = shared.lock();
    state.counters.revoke_calls += 1;
    let Some(token) = params.get("token").filter(|t| !t.is_empty()) else {
        return json_response(
            400,
            &json!({"error": "invalid_request", "error_description": "Missing required parameter: token."}),
        );
    };
    match state.revoke_token(params.get("client_id").map(String::as_str), token) {
        Ok(()) => json_response(200, &json!({})),
        Err(r) => rejection_response(&r),
    }
}

/// An error page shown in the browser: an authorization request whose client or redirect URI
/// cannot be trusted must never redirect (RFC 6749 § 4.1.2.1).
fn error_page(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(format!(
            "<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Something went wrong</h1><p>{}</p></body></html>",
            message.replace('<', "&lt;")
        )),
    )
        .into_response()
}

fn redirect(location: &url::Url) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location.as_str()) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Is `uri` exactly `http://localhost:{port}/auth/callback` for a registered port?
fn registered_redirect(uri: &str, ports: &[u16]) -> bool {
    let Some(rest) = uri.strip_prefix("http://localhost:") else {
        return false;
    };
    let Some(port) = rest.strip_suffix("/auth/callback") else {
        return false;
    };
    port.parse::<u16>().is_ok_and(|p| ports.contains(&p))
}

/// Auto-approves the sign-in (as the identity set with `set_login_identity`, or a fresh
/// generated account) and redirects to the callback with a single-use code.
pub(crate) async fn authorize(
    AxState(shared): AxState<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let p = |k: &str| q.get(k).map(String::as_str);
    let mut state = shared.lock();
    state.counters.authorize_calls += 1;
    if p("client_id") != Some(CLIENT_ID) {
        return error_page("Unknown client_id.");
    }
    let Some(redirect_uri) =
        p("redirect_uri").filter(|u| registered_redirect(u, &state.cfg.registered_redirect_ports))
    else {
        return error_page("The redirect_uri is not registered for this client.");
    };
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        return error_page("The redirect_uri is not a URL.");
    };
    let with_error = |mut target: url::Url, error: &str, description: &str| {
        {
            let mut qp = target.query_pairs_mut();
            qp.append_pair("error", error);
            qp.append_pair("error_description", description);
            if let Some(s) = p("state") {
                qp.append_pair("state", s);
            }
        }
        redirect(&target)
    };
    if p("response_type") != Some("code") {
        return with_error(
            target,
            "unsupported_response_type",
            "response_type must be code",
        );
    }
    let Some(challenge) = p("code_challenge").filter(|c| !c.is_empty()) else {
        return with_error(target, "invalid_request", "code_challenge is required");
    };
    if p("code_challenge_method") != Some("S256") {
        return with_error(
            target,
            "invalid_request",
            "code_challenge_method must be S256",
        );
    }
    let now = now_unix();
    let identity = state.login_identity.clone().unwrap_or_default();
    let account_id = identity.chatgpt_account_id.clone();
    state.register_account(identity, now);
    let code = state.create_code(
        CodeRequest {
            client_id: CLIENT_ID,
            redirect_uri,
            challenge,
            account_id: &account_id,
        },
        now,
    );
    {
        let mut qp = target.query_pairs_mut();
        qp.append_pair("code", &code);
        if let Some(s) = p("state") {
            qp.append_pair("state", s);
        }
    }
    redirect(&target)
}

#[cfg(test)]
mod tests {
    use super::registered_redirect;

    #[test]
    fn only_exact_registered_callbacks() {
        let ports = [1455, 1457];
        assert!(registered_redirect(
            "http://localhost:1455/auth/callback",
            &ports
        ));
        assert!(registered_redirect(
            "http://localhost:1457/auth/callback",
            &ports
        ));
        assert!(!registered_redirect(
            "http://localhost:1456/auth/callback",
            &ports
        ));
        assert!(!registered_redirect(
            "http://127.0.0.1:1455/auth/callback",
            &ports
        ));
        assert!(!registered_redirect(
            "http://localhost:1455/auth/callback/x",
            &ports
        ));
        assert!(!registered_redirect(
            "https://localhost:1455/auth/callback",
            &ports
        ));
        assert!(!registered_redirect("http://localhost:1455/other", &ports));
    }
}
