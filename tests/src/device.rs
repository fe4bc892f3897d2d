//! Device-code sign-in (protocol.md § Device sign-in): `POST /api/accounts/deviceauth/usercode`
//! issues a user code, `POST /api/accounts/deviceauth/token` is polled until the user approves
//! (a test, through `FakeOpenAi::approve_device_code`), and the approval is an authorization code
//! plus the PKCE pair the issuer made, redeemed at `/oauth/token` like any other code.
//!
//! What upstream's client shows: 200 is the answer, 403/404 mean "not yet". The error bodies
//! below (RFC 8628's names) and the statuses for slow_down/expired/denied are this fake's model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::HeaderMap;
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::json;

use crate::auth_routes::parse_params;
use crate::config::{AccountSpec, CLIENT_ID};
use crate::faults::json_response;
use crate::grants::{pkce_challenge, CodeRequest};
use crate::state::{now_unix, Shared, State};

/// What the fake answered one poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceAnswer {
    Pending,
    SlowDown,
    Expired,
    Denied,
    /// The authorization code was handed out.
    Approved,
    /// Polled again after the code was handed out.
    AlreadyUsed,
}

/// One poll as the fake saw it: when it came (measured by the fake's own clock) and what it got.
#[derive(Clone, Debug, PartialEq)]
pub struct DevicePoll {
    /// Since the previous poll of this code; `None` for the first one (upstream's client polls
    /// at once after the code is issued, which the issuer accepts).
    pub since_previous: Option<Duration>,
    /// The interval in force when the poll arrived.
    pub interval: Duration,
    pub answer: DeviceAnswer,
}

#[derive(Clone, Debug, PartialEq)]
enum Decision {
    Pending,
    Approved(AccountSpec),
    Denied,
    Used,
}

pub(crate) struct DeviceAuth {
    device_auth_id: String,
    interval: Duration,
    expires_at: Instant,
    last_poll: Option<Instant>,
    decision: Decision,
    /// The next poll answers slow_down even when on time (the issuer under load).
    slow_down_next: bool,
    polls: Vec<DevicePoll>,
}

fn random(prefix: &str, n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// `XXXX-XXXXX` from an alphabet without look-alikes, as users type it.
fn user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 9];
    rand::thread_rng().fill_bytes(&mut bytes);
    let chars: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

pub(crate) async fn usercode(
    AxState(shared): AxState<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = parse_params(&headers, &body);
    let mut state = shared.lock();
    state.counters.device_usercode_calls += 1;
    if params.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return json_response(
            401,
            &json!({"error": "invalid_client", "error_description": "Unknown client_id."}),
        );
    }
    let code = user_code();
    let auth = DeviceAuth {
        device_auth_id: random("deviceauth_", 24),
        interval: state.cfg.device_code_interval,
        expires_at: Instant::now() + state.cfg.device_code_lifetime,
        last_poll: None,
        decision: Decision::Pending,
        slow_down_next: false,
        polls: Vec::new(),
    };
    let answer = json!({
        "device_auth_id": auth.device_auth_id,
        "user_code": code,
        // Upstream sends the interval as a string of seconds.
        "interval": auth.interval.as_secs().to_string(),
    });
    state.devices.insert(code, auth);
    json_response(200, &answer)
}

pub(crate) async fn token(
    AxState(shared): AxState<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = parse_params(&headers, &body);
    let p = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    let mut state = shared.lock();
    state.counters.device_token_calls += 1;
    let (user_code, device_auth_id) = (p("user_code"), p("device_auth_id"));
    let known = state
        .devices
        .get(user_code)
        .is_some_and(|d| d.device_auth_id == device_auth_id);
    if !known {
        return json_response(
            400,
            &json!({"error": "invalid_request", "error_description": "Unknown device authorization."}),
        );
    }
    poll(&mut state, user_code)
}

/// Judges one poll of a known code and builds its answer.
fn poll(state: &mut State, user_code: &str) -> Response {
    let Some((answer, approved, interval)) = judge(state, user_code) else {
        return json_response(400, &json!({"error": "invalid_request"}));
    };
    let oauth = |status: u16, error: &str, description: &str| {
        json_response(
            status,
            &json!({"error": error, "error_description": description}),
        )
    };
    match answer {
        DeviceAnswer::Pending => oauth(
            403,
            "authorization_pending",
            "The user has not approved the sign-in yet.",
        ),
        DeviceAnswer::SlowDown => json_response(
            403,
            &json!({"error": "slow_down",
                    "error_description": "Polling too fast; wait longer between polls.",
                    "interval": interval.as_secs().to_string()}),
        ),
        DeviceAnswer::Expired => oauth(410, "expired_token", "The device code has expired."),
        DeviceAnswer::Denied => oauth(
            401,
            "authorization_declined",
            "The user declined the sign-in.",
        ),
        DeviceAnswer::AlreadyUsed => {
            oauth(400, "invalid_grant", "The device code was already used.")
        }
        DeviceAnswer::Approved => match approved {
            Some(spec) => grant(state, spec),
            None => json_response(500, &json!({"error": "server_error"})),
        },
    }
}

/// What this poll gets, recorded with its timing; the approving identity when it is the
/// approval; the interval from now on.
fn judge(
    state: &mut State,
    user_code: &str,
) -> Option<(DeviceAnswer, Option<AccountSpec>, Duration)> {
    let now = Instant::now();
    let step = state.cfg.device_slow_down_step;
    let auth = state.devices.get_mut(user_code)?;
    let since_previous = auth.last_poll.map(|t| now.duration_since(t));
    auth.last_poll = Some(now);
    let interval = auth.interval;
    let too_early = since_previous.is_some_and(|d| d < interval);
    let answer = if now >= auth.expires_at && auth.decision != Decision::Used {
        DeviceAnswer::Expired
    } else {
        match &auth.decision {
            Decision::Used => DeviceAnswer::AlreadyUsed,
            Decision::Denied => DeviceAnswer::Denied,
            _ if too_early || auth.slow_down_next => DeviceAnswer::SlowDown,
            Decision::Pending => DeviceAnswer::Pending,
            Decision::Approved(_) => DeviceAnswer::Approved,
        }
    };
    if answer == DeviceAnswer::SlowDown {
        // RFC 8628 § 3.5: every slow_down adds to the interval for the rest of the flow.
        auth.interval += step;
        auth.slow_down_next = false;
    }
    auth.polls.push(DevicePoll {
        since_previous,
        interval,
        answer,
    });
    let approved = match (&auth.decision, answer) {
        (Decision::Approved(spec), DeviceAnswer::Approved) => {
            let spec = spec.clone();
            auth.decision = Decision::Used;
            Some(spec)
        }
        _ => None,
    };
    let interval = auth.interval;
    if too_early {
        state.counters.device_polls_too_early += 1;
    }
    Some((answer, approved, interval))
}

/// The approval: an ordinary authorization code for `spec`, with the PKCE pair the issuer made.
fn grant(state: &mut State, spec: AccountSpec) -> Response {
    let now = now_unix();
    let account_id = spec.chatgpt_account_id.clone();
    state.register_account(spec, now);
    let verifier = random("", 64);
    let challenge = pkce_challenge(&verifier);
    let redirect_uri = format!("{}/deviceauth/callback", state.issuer);
    let code = state.create_code(
        CodeRequest {
            client_id: CLIENT_ID,
            redirect_uri: &redirect_uri,
            challenge: &challenge,
            account_id: &account_id,
        },
        now,
    );
    json_response(
        200,
        &json!({"authorization_code": code, "code_challenge": challenge, "code_verifier": verifier}),
    )
}

impl Shared {
    /// Approves a pending code as `spec` (else the login identity, else a new account).
    pub(crate) fn approve_device_code(&self, user_code: &str, spec: Option<AccountSpec>) -> bool {
        let mut state = self.lock();
        let spec = spec
            .or_else(|| state.login_identity.clone())
            .unwrap_or_default();
        match state.devices.get_mut(user_code) {
            Some(d) if d.decision == Decision::Pending => {
                d.decision = Decision::Approved(spec);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn deny_device_code(&self, user_code: &str) -> bool {
        let mut state = self.lock();
        match state.devices.get_mut(user_code) {
            Some(d) if d.decision == Decision::Pending => {
                d.decision = Decision::Denied;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn slow_down_next_device_poll(&self, user_code: &str) -> bool {
        let mut state = self.lock();
        match state.devices.get_mut(user_code) {
            Some(d) => {
                d.slow_down_next = true;
                true
            }
            None => false,
        }
    }

    pub(crate) fn device_polls(&self, user_code: &str) -> Vec<DevicePoll> {
        self.raw_lock()
            .devices
            .get(user_code)
            .map(|d| d.polls.clone())
            .unwrap_or_default()
    }

    pub(crate) fn device_user_codes(&self) -> Vec<String> {
        self.raw_lock().devices.keys().cloned().collect()
    }
}
