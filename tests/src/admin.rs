//! The admin HTTP API under `/__admin` (JSON in, JSON out): the Rust control methods for tests
//! that drive the `fake-openai` binary from another process (and for the real Codex CLI test).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State as AxState};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::{AccountSpec, Fault, FaultRoute, IssuedTokens};
use crate::control::{ControlError, Settings};
use crate::encrypted::EncryptedContentError;
use crate::faults::json_response;
use crate::state::Shared;

/// A fault on the admin wire: `{"kind":"status","status":503}`, `{"kind":"html403"}`,
/// `{"kind":"html200"}`, `{"kind":"slow","millis":1500}`, `{"kind":"drop_connection"}`,
/// `{"kind":"custom","status":502,"content_type":"text/plain","body":"bad gateway"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultSpec {
    Status {
        status: u16,
    },
    Custom {
        status: u16,
        content_type: String,
        body: String,
    },
    Html403,
    Html200,
    Slow {
        millis: u64,
    },
    DropConnection,
    /// `{"kind":"stream_failed","code":"server_is_overloaded","message":"…","resets_at":null,"after_output":false}`
    StreamFailed {
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        resets_at: Option<i64>,
        #[serde(default)]
        after_output: bool,
    },
    /// `{"kind":"invalid_encrypted_content","shape":"could_not_be_verified"|"for_item"|"code_null"}`
    InvalidEncryptedContent {
        #[serde(default)]
        shape: EncryptedContentError,
    },
    SlowAfterHandling {
        millis: u64,
    },
    DropAfterHandling,
}

impl From<FaultSpec> for Fault {
    fn from(f: FaultSpec) -> Fault {
        match f {
            FaultSpec::Status { status } => Fault::Status(status),
            FaultSpec::Custom {
                status,
                content_type,
                body,
            } => Fault::Custom {
                status,
                content_type,
                body,
            },
            FaultSpec::Html403 => Fault::Html403,
            FaultSpec::Html200 => Fault::Html200,
            FaultSpec::Slow { millis } => Fault::Slow(Duration::from_millis(millis)),
            FaultSpec::DropConnection => Fault::DropConnection,
            FaultSpec::StreamFailed {
                code,
                message,
                resets_at,
                after_output,
            } => Fault::StreamFailed {
                code,
                message,
                resets_at,
                after_output,
            },
            FaultSpec::InvalidEncryptedContent { shape } => Fault::InvalidEncryptedContent(shape),
            FaultSpec::SlowAfterHandling { millis } => {
                Fault::SlowAfterHandling(Duration::from_millis(millis))
            }
            FaultSpec::DropAfterHandling => Fault::DropAfterHandling,
        }
    }
}

impl From<&Fault> for FaultSpec {
    fn from(f: &Fault) -> FaultSpec {
        match f {
            Fault::Status(status) => FaultSpec::Status { status: *status },
            Fault::Custom {
                status,
                content_type,
                body,
            } => FaultSpec::Custom {
                status: *status,
                content_type: content_type.clone(),
                body: body.clone(),
            },
            Fault::Html403 => FaultSpec::Html403,
            Fault::Html200 => FaultSpec::Html200,
            Fault::Slow(d) => FaultSpec::Slow {
                millis: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            },
            Fault::DropConnection => FaultSpec::DropConnection,
            Fault::StreamFailed {
                code,
                message,
                resets_at,
                after_output,
            } => FaultSpec::StreamFailed {
                code: code.clone(),
                message: message.clone(),
                resets_at: *resets_at,
                after_output: *after_output,
            },
            Fault::InvalidEncryptedContent(shape) => {
                FaultSpec::InvalidEncryptedContent { shape: *shape }
            }
            Fault::SlowAfterHandling(d) => FaultSpec::SlowAfterHandling {
                millis: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            },
            Fault::DropAfterHandling => FaultSpec::DropAfterHandling,
        }
    }
}

#[derive(Deserialize)]
struct GrantRequest {
    /// Access-token lifetime for this grant's first token; 0 = already expired.
    access_lifetime_secs: Option<u64>,
}

#[derive(Deserialize)]
struct RateLimitRequest {
    resets_at: Option<i64>,
}

#[derive(Deserialize)]
struct EncryptedErrorRequest {
    shape: EncryptedContentError,
}

#[derive(Deserialize, Default)]
struct HoldRequest {
    /// `"first_event"` (default) or `"first_output"`.
    #[serde(default)]
    after: Option<String>,
}

#[derive(Deserialize)]
struct UsageRequest {
    primary_used_percent: f64,
    secondary_used_percent: f64,
}

#[derive(Deserialize)]
struct RotateRequest {
    refresh_token: String,
}

#[derive(Deserialize)]
struct FaultsRequest {
    route: FaultRoute,
    faults: Vec<FaultSpec>,
}

#[derive(Deserialize)]
struct PortRequest {
    port: u16,
}

#[derive(Deserialize)]
struct AuthJsonRequest {
    tokens: IssuedTokens,
    /// RFC 3339; now when absent.
    last_refresh: Option<chrono::DateTime<chrono::Utc>>,
}

type AppState = AxState<Arc<Shared>>;

fn ok() -> Response {
    json_response(200, &json!({}))
}

fn control_error(e: ControlError) -> Response {
    match e {
        ControlError::UnknownAccount(id) => json_response(
            404,
            &json!({"error": "unknown_account", "chatgpt_account_id": id}),
        ),
        ControlError::Rejected { status, body } => json_response(
            409,
            &json!({"error": "rejected", "status": status, "body": body}),
        ),
    }
}

fn tokens_response(r: Result<IssuedTokens, ControlError>) -> Response {
    match r {
        Ok(t) => json_response(200, &json!(t)),
        Err(e) => control_error(e),
    }
}

fn unit_response(r: Result<(), ControlError>) -> Response {
    match r {
        Ok(()) => ok(),
        Err(e) => control_error(e),
    }
}

async fn add_account(AxState(s): AppState, spec: Option<Json<AccountSpec>>) -> Response {
    let spec = spec.map(|Json(s)| s).unwrap_or_default();
    json_response(200, &json!(s.add_account(spec)))
}

async fn issue_grant(
    AxState(s): AppState,
    Path(id): Path<String>,
    req: Option<Json<GrantRequest>>,
) -> Response {
    let lifetime = req
        .and_then(|Json(r)| r.access_lifetime_secs)
        .map(Duration::from_secs);
    tokens_response(s.issue_grant(&id, lifetime))
}

async fn revoke_account(AxState(s): AppState, Path(id): Path<String>) -> Response {
    unit_response(s.revoke_account(&id))
}

async fn rate_limit(
    AxState(s): AppState,
    Path(id): Path<String>,
    Json(r): Json<RateLimitRequest>,
) -> Response {
    unit_response(s.set_rate_limited(&id, r.resets_at))
}

async fn usage(
    AxState(s): AppState,
    Path(id): Path<String>,
    Json(r): Json<UsageRequest>,
) -> Response {
    unit_response(s.set_usage(&id, r.primary_used_percent, r.secondary_used_percent))
}

#[derive(Deserialize)]
struct ResetCreditsRequest {
    count: usize,
    #[serde(default)]
    expires_in_secs: Option<u64>,
}

async fn reset_credits(
    AxState(s): AppState,
    Path(id): Path<String>,
    Json(r): Json<ResetCreditsRequest>,
) -> Response {
    let now = crate::state::now_unix();
    let mut state = s.lock();
    let Some(a) = state.accounts.get_mut(&id) else {
        return json_response(404, &json!({"error": "unknown_account"}));
    };
    let ids: Vec<String> = (0..r.count)
        .map(|_| {
            let cid = format!("rlrc_{}", uuid::Uuid::new_v4().simple());
            a.quota
                .reset_credits
                .push(crate::quota_routes::ResetCredit {
                    id: cid.clone(),
                    granted_at: now,
                    expires_at: r.expires_in_secs.map(|d| now + d as i64),
                    redeemed: false,
                });
            cid
        })
        .collect();
    json_response(200, &json!({ "ids": ids }))
}

async fn route_log(AxState(s): AppState) -> Response {
    json_response(200, &json!(s.raw_lock().route_log.clone()))
}

async fn encrypted_error(
    AxState(s): AppState,
    Path(id): Path<String>,
    Json(r): Json<EncryptedErrorRequest>,
) -> Response {
    unit_response(s.set_encrypted_content_error(&id, r.shape))
}

async fn rotate(AxState(s): AppState, Json(r): Json<RotateRequest>) -> Response {
    tokens_response(s.rotate_out_of_band(&r.refresh_token))
}

async fn faults(AxState(s): AppState, Json(r): Json<FaultsRequest>) -> Response {
    s.inject_faults(r.route, r.faults.into_iter().map(Fault::from).collect());
    ok()
}

#[derive(Deserialize)]
struct DeviceDecision {
    user_code: String,
    /// `approve` (the default) or `deny`.
    #[serde(default)]
    deny: bool,
    /// Who approves; absent: the login identity, else a new account.
    account: Option<AccountSpec>,
}

async fn device_decision(AxState(s): AppState, Json(d): Json<DeviceDecision>) -> Response {
    let done = if d.deny {
        s.deny_device_code(&d.user_code)
    } else {
        s.approve_device_code(&d.user_code, d.account)
    };
    if done {
        ok()
    } else {
        json_response(404, &json!({"error": "no_pending_device_code"}))
    }
}

async fn login_identity(AxState(s): AppState, Json(spec): Json<Option<AccountSpec>>) -> Response {
    s.set_login_identity(spec);
    ok()
}

async fn redirect_port(AxState(s): AppState, Json(r): Json<PortRequest>) -> Response {
    s.register_redirect_port(r.port);
    ok()
}

async fn settings(AxState(s): AppState, req: Option<Json<Settings>>) -> Response {
    let req = req.map(|Json(r)| r).unwrap_or_default();
    json_response(200, &json!(s.update_settings(req)))
}

async fn hold_streams(AxState(s): AppState, req: Option<Json<HoldRequest>>) -> Response {
    let after_output = req
        .and_then(|Json(r)| r.after)
        .is_some_and(|a| a == "first_output");
    let gate = s.hold_streams(after_output);
    // Replacing a previous admin gate releases it; drop it outside the state lock.
    let previous = s.lock().admin_gate.replace(gate);
    drop(previous);
    ok()
}

async fn release_streams(AxState(s): AppState) -> Response {
    let gate = s.lock().admin_gate.take();
    drop(gate); // dropping releases
    ok()
}

async fn counters(AxState(s): AppState) -> Json<Value> {
    Json(json!(s.counters()))
}

async fn issued_secrets(AxState(s): AppState) -> Json<Value> {
    Json(json!(s.raw_lock().minted.clone()))
}

async fn auth_json(Json(r): Json<AuthJsonRequest>) -> Response {
    let text = crate::auth_json(&r.tokens, r.last_refresh.unwrap_or_else(chrono::Utc::now));
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    json_response(200, &value)
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/accounts", post(add_account))
        .route("/accounts/{id}/grants", post(issue_grant))
        .route("/accounts/{id}/revoke", post(revoke_account))
        .route("/accounts/{id}/rate_limit", post(rate_limit))
        .route("/accounts/{id}/usage", post(usage))
        .route("/accounts/{id}/reset_credits", post(reset_credits))
        .route("/route_log", get(route_log))
        .route(
            "/accounts/{id}/encrypted_content_error",
            post(encrypted_error),
        )
        .route("/rotate_out_of_band", post(rotate))
        .route("/faults", post(faults))
        .route("/login_identity", post(login_identity))
        .route("/device", post(device_decision))
        .route("/redirect_ports", post(redirect_port))
        .route("/settings", get(settings).post(settings))
        .route("/streams/hold", post(hold_streams))
        .route("/streams/release", post(release_streams))
        .route("/counters", get(counters))
        .route("/issued_secrets", get(issued_secrets))
        .route("/auth_json", post(auth_json))
}
