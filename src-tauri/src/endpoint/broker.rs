//! The refresh broker: `POST /oauth/token` and `POST /oauth/revoke` for stock Codex CLIs started
//! with `CODEX_REFRESH_TOKEN_URL_OVERRIDE=http://127.0.0.1:<port>/oauth/token` (the CLI then sends
//! its JSON refresh grant here and derives its revoke URL from the same origin).
//!
//! Every Codex process on the machine then shares one redeemer of each refresh-token chain — the
//! TokenManager, with its single-flight, lease and race recovery — instead of racing the vault
//! and each other ("refresh token was already used"). No local key: as upstream, the refresh
//! token itself is the credential. Grants we do not hold pass through to the issuer unchanged,
//! so a shell-wide override never breaks another Codex home.

use super::Shared;
use crate::account::{now_ms, Status, UnixMs};
use crate::activity::Route;
use crate::error_code::ErrorCode;
use crate::refresh::RefreshError;
use crate::secret::Secret;
use crate::store::{BrokerAccount, BrokerSnapshot, DigestOrigin};
use crate::vault::{Field, TokenDigest, Vault};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// A caller holding the refresh token a sibling redeemed less than this long ago is handed the
/// current tokens (concurrent copies of one sign-in); after it, only a holder's newest is.
pub const PREVIOUS_GENERATION_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Token and revoke bodies are a few hundred bytes; anything far larger is not one.
const MAX_FORWARD_ANSWER: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the sign-in server could not be reached: {0}")]
    Upstream(String),
    #[error("the vault could not be read: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the vault could not be read: {0}")]
    Vault(#[from] crate::vault::VaultError),
    /// The blocking store task ended without an answer.
    #[error("the vault could not be read: {0}")]
    TaskFailed(String),
}

impl BrokerError {
    pub fn code(&self) -> ErrorCode {
        match self {
            BrokerError::Upstream(_) => ErrorCode::UpstreamUnreachable,
            BrokerError::Store(_) | BrokerError::Vault(_) | BrokerError::TaskFailed(_) => {
                ErrorCode::VaultError
            }
        }
    }
}

/// What the broker does with a presented refresh token (docs/broker.md § What the broker
/// honours), decided on one consistent read of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// The account's current refresh token at `generation`: rotated through the TokenManager,
    /// which never spends it once the account moved past `generation`.
    Rotate { account_id: String, generation: i64 },
    /// A token we know a holder holds (its newest), or the previous generation inside the
    /// window: handed the account's current tokens; the presented token is never sent upstream.
    HandCurrent {
        account_id: String,
        why: &'static str,
    },
    /// A token of a held chain the broker does not honour: answered as a reuse, never forwarded
    /// (upstream may answer a reuse by revoking the whole chain, ours too).
    Refuse {
        account_id: String,
        why: &'static str,
    },
    /// Not a sign-in we hold.
    Unknown,
}

impl Decision {
    fn rank(&self) -> u8 {
        match self {
            Decision::Rotate { .. } => 0,
            Decision::HandCurrent { .. } => 1,
            Decision::Refuse { .. } => 2,
            Decision::Unknown => 3,
        }
    }

    fn account_id(&self) -> Option<&str> {
        match self {
            Decision::Rotate { account_id, .. }
            | Decision::HandCurrent { account_id, .. }
            | Decision::Refuse { account_id, .. } => Some(account_id),
            Decision::Unknown => None,
        }
    }
}

/// What one account's rows say about the presented token (opened and compared by the caller).
struct Facts<'a> {
    account: &'a BrokerAccount,
    is_current: bool,
    is_previous: bool,
    holder_newest: bool,
    origin: Option<DigestOrigin>,
    /// Only the legacy 64-bit fingerprints match: refused, never honoured.
    legacy_match: bool,
}

fn decide_for(f: &Facts<'_>, now: UnixMs) -> Decision {
    let account_id = f.account.account_id.clone();
    let refuse = |why| Decision::Refuse {
        account_id: account_id.clone(),
        why,
    };
    if f.origin == Some(DigestOrigin::Detached) {
        return refuse("the token of a detached auth.json's backup");
    }
    if f.is_current {
        return Decision::Rotate {
            account_id: account_id.clone(),
            generation: f.account.generation,
        };
    }
    if f.holder_newest {
        return Decision::HandCurrent {
            account_id: account_id.clone(),
            why: "a holder's newest token",
        };
    }
    if f.is_previous {
        if f.origin == Some(DigestOrigin::Minted) {
            return refuse("a token our own rotation minted and nobody was handed");
        }
        let recent = f
            .account
            .rotated_at
            .is_some_and(|t| now - t < PREVIOUS_GENERATION_WINDOW_MS);
        return if recent {
            Decision::HandCurrent {
                account_id: account_id.clone(),
                why: "the previous generation, inside the window",
            }
        } else {
            refuse("the previous generation, after the window")
        };
    }
    if f.origin.is_some() || f.legacy_match {
        return refuse("an older token of a held chain");
    }
    Decision::Unknown
}

/// Decides on `presented` against every account of one snapshot. The current and previous
/// tokens are opened and compared in full (constant time); everything else by keyed digest; the
/// legacy fingerprints only ever refuse.
fn decide(snap: &BrokerSnapshot, vault: &Vault, presented: &Secret, now: UnixMs) -> Decision {
    let fp = presented.fingerprint();
    let same = |a: &str, b: &str| -> bool { a.as_bytes().ct_eq(b.as_bytes()).into() };
    let mut best = Decision::Unknown;
    for account in &snap.accounts {
        let id = &account.account_id;
        let open = |blob: &[u8]| match vault.open(id, Field::RefreshToken, blob) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(account = %id, "broker: a stored refresh token does not open: {e}");
                None
            }
        };
        let is_current =
            open(&account.refresh_token).is_some_and(|t| same(t.expose(), presented.expose()));
        let is_previous = account
            .previous_refresh_token
            .as_deref()
            .and_then(open)
            .is_some_and(|t| same(t.expose(), presented.expose()));
        let legacy_match = account
            .previous_refresh_fingerprint
            .as_deref()
            .is_some_and(|p| same(p, &fp))
            | snap
                .retired
                .iter()
                .filter(|(a, _)| a == id)
                .fold(false, |hit, (_, r)| hit | same(r, &fp));
        let facts = Facts {
            account,
            is_current,
            is_previous,
            holder_newest: snap.holder_of.iter().any(|a| a == id),
            origin: snap.origins.iter().find(|(a, _)| a == id).map(|(_, o)| *o),
            legacy_match,
        };
        let d = decide_for(&facts, now);
        if d.rank() < best.rank() {
            best = d;
        }
    }
    best
}

/// The fields of a token or revoke request, JSON (what the CLI sends) or form-encoded (RFC 6749).
fn fields(headers: &HeaderMap, body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        return Some(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        );
    }
    match serde_json::from_slice(body).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn field(m: &serde_json::Map<String, Value>, name: &str) -> Option<Secret> {
    m.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(Secret::new)
}

/// The issuer's error shape (protocol.md § Refresh errors), so the CLI classifies it as it would
/// upstream's: `refresh_token_reused` → "already used", `refresh_token_invalidated` → "revoked".
fn oauth_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}});
    no_store((status, axum::Json(body)).into_response())
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn reused() -> Response {
    oauth_error(
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
        "Your refresh token has already been used to generate a new access token. Please try signing in again.",
    )
}

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    // 503 reads as transient to the CLI: it keeps its tokens and tries again later.
    let body = json!({"error": {"message": format!("Codex Vault could not refresh this sign-in now: {e}"), "type": "server_error", "param": null, "code": "temporarily_unavailable"}});
    no_store((StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response())
}

/// Sends the request on to the issuer byte for byte and returns its answer unchanged (status,
/// body, content type, cache control).
async fn forward(url: &str, headers: &HeaderMap, body: Bytes) -> Result<Response, BrokerError> {
    // The shared client never follows a redirect: a transparent forward passes it on.
    let mut req = crate::http::upstream()
        .post(url)
        .timeout(crate::oauth::client::REQUEST_TIMEOUT)
        .body(body);
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::USER_AGENT] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name, v.clone());
        }
    }
    let resp = req
        .send()
        .await
        .map_err(|e| BrokerError::Upstream(e.without_url().to_string()))?;
    let status = resp.status();
    let mut out = Response::builder().status(status.as_u16());
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL, header::PRAGMA] {
        if let Some(v) = resp.headers().get(&name) {
            out = out.header(name, v.clone());
        }
    }
    let mut bytes = Vec::new();
    let mut resp = resp;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BrokerError::Upstream(e.without_url().to_string()))?
    {
        if bytes.len() + chunk.len() > MAX_FORWARD_ANSWER {
            return Err(BrokerError::Upstream("the answer is too large".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    out.body(axum::body::Body::from(bytes))
        .map_err(|e| BrokerError::Upstream(e.to_string()))
}

async fn forwarded(url: String, headers: &HeaderMap, body: Bytes) -> Response {
    match forward(&url, headers, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("broker: forwarding to the issuer failed: {e}");
            let body = json!({"error": {"message": e.to_string(), "type": "server_error", "param": null, "code": ErrorCode::UpstreamUnreachable}});
            (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::TaskFailed(format!("store task failed: {e}")))?
}

async fn snapshot(
    shared: &Arc<Shared>,
    digest: &TokenDigest,
) -> Result<BrokerSnapshot, BrokerError> {
    let store = shared.store().clone();
    let d = digest.as_bytes().to_vec();
    blocking(move || store.broker_snapshot(&d).map_err(BrokerError::from)).await
}

/// The account's current token set, read in one statement (one generation), as upstream's
/// refresh answer, with the keyed digest of the refresh token in it.
async fn current_answer(
    shared: &Arc<Shared>,
    account_id: &str,
) -> Result<Option<(Value, TokenDigest)>, BrokerError> {
    let store = shared.store().clone();
    let id = account_id.to_string();
    let current = blocking(move || store.current_tokens(&id).map_err(BrokerError::from)).await?;
    let Some(c) = current else {
        return Ok(None);
    };
    let vault = &shared.vault;
    let open = |f, b: &[u8]| vault.open(account_id, f, b).map_err(BrokerError::from);
    let refresh = open(Field::RefreshToken, &c.refresh_token)?;
    let access = open(Field::AccessToken, &c.access_token)?;
    let id_token = open(Field::IdToken, &c.id_token)?;
    let expires_in = c.access_expires_at.map(|e| ((e - now_ms()) / 1000).max(0));
    let mut answer = json!({
        "access_token": access.expose(),
        "refresh_token": refresh.expose(),
        "token_type": "Bearer",
    });
    if !id_token.is_empty() {
        answer["id_token"] = json!(id_token.expose());
    }
    if let Some(e) = expires_in {
        answer["expires_in"] = json!(e);
    }
    Ok(Some((answer, vault.refresh_digest(&refresh))))
}

fn tokens_answer(answer: Value) -> Response {
    no_store((StatusCode::OK, axum::Json(answer)).into_response())
}

/// The account's terminal reason as the issuer would have answered it, if it is terminal.
async fn terminal_answer(shared: &Arc<Shared>, account_id: &str) -> Option<Response> {
    let store = shared.store().clone();
    let id = account_id.to_string();
    let account = tokio::task::spawn_blocking(move || store.get_account(&id))
        .await
        .ok()?
        .ok()??;
    (account.status == Status::Terminal).then(|| {
        let (code, message) = match &account.failure {
            Some(f) => (f.code.clone(), f.message.clone()),
            None => (
                "refresh_token_invalidated".to_string(),
                "Your session has ended. Please log in again.".to_string(),
            ),
        };
        oauth_error(StatusCode::UNAUTHORIZED, &code, &message)
    })
}

/// The refresh token a request presents, if it is a refresh grant we can read.
fn presented_refresh_token(headers: &HeaderMap, body: &[u8]) -> Option<Secret> {
    fields(headers, body).and_then(|m| {
        let is_refresh = m.get("grant_type").and_then(Value::as_str) == Some("refresh_token");
        is_refresh.then(|| field(&m, "refresh_token")).flatten()
    })
}

/// `POST /oauth/token`, logged (route `broker`) with the account it was for.
pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut trace = super::record::Trace::begin(shared.activity.as_ref(), Route::Broker);
    let resp = answer_token(&shared, &headers, body, &mut trace).await;
    if let Some(t) = trace {
        t.answered(resp.status().as_u16(), false);
    }
    resp
}

async fn answer_token(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Bytes,
    trace: &mut Option<super::record::Trace>,
) -> Response {
    let upstream = shared.tm.token_url();
    // Not a refresh grant (or not one we can read): the issuer's business.
    let Some(presented) = presented_refresh_token(headers, &body) else {
        return forwarded(upstream, headers, body).await;
    };
    let digest = shared.vault.refresh_digest(&presented);
    let snap = match snapshot(shared, &digest).await {
        Ok(s) => s,
        Err(e) => return unavailable(&e),
    };
    let decision = decide(&snap, &shared.vault, &presented, now_ms());
    if let (Some(id), Some(t)) = (decision.account_id(), trace.as_mut()) {
        let accounts = shared.accounts();
        let label = accounts
            .iter()
            .find(|a| a.id == id)
            .map(|a| a.label.as_str());
        t.tried(id, label);
        t.refreshed = matches!(decision, Decision::Rotate { .. });
    }
    if let Some(id) = decision.account_id() {
        let terminal = snap
            .accounts
            .iter()
            .any(|a| a.account_id == id && a.terminal);
        if terminal && !matches!(decision, Decision::Refuse { .. }) {
            if let Some(r) = terminal_answer(shared, id).await {
                return r;
            }
        }
    }
    match decision {
        Decision::Unknown => forwarded(upstream, headers, body).await,
        Decision::Refuse { account_id, why } => {
            tracing::warn!(account = %account_id, "broker: refused {why}; answered as a reuse, not forwarded");
            reused()
        }
        Decision::Rotate {
            account_id,
            generation,
        } => match shared.tm.rotate_presented(&account_id, generation).await {
            Ok(t) => {
                tracing::info!(account = %account_id, generation = t.generation, "broker: refreshed for a Codex CLI");
                hand_current(shared, &account_id, &digest).await
            }
            Err(e) => refresh_error(e),
        },
        Decision::HandCurrent { account_id, why } => {
            // The presented token is not spent; the current tokens are handed out, refreshed
            // first if they are themselves about to expire.
            if let Err(e) = shared.tm.access_token(&account_id).await {
                return refresh_error(e);
            }
            tracing::info!(account = %account_id, "broker: {why}; handing out the current tokens");
            hand_current(shared, &account_id, &digest).await
        }
    }
}

/// Answers with the account's current tokens and records that the caller holds them now.
async fn hand_current(shared: &Arc<Shared>, account_id: &str, presented: &TokenDigest) -> Response {
    let (answer, handed) = match current_answer(shared, account_id).await {
        Ok(Some(a)) => a,
        Ok(None) => return unavailable(&"the account was removed meanwhile"),
        Err(e) => return unavailable(&e),
    };
    let store = shared.store().clone();
    let (id, p, h) = (
        account_id.to_string(),
        presented.as_bytes().to_vec(),
        handed.as_bytes().to_vec(),
    );
    let recorded =
        blocking(move || store.record_handed(&id, &p, &h).map_err(BrokerError::from)).await;
    if let Err(e) = recorded {
        // Handing out without remembering would let this holder be refused later: say so, and
        // do not hand the tokens out (the caller keeps its own and retries; 503 is transient).
        tracing::warn!(account = %account_id, "broker: cannot record the handed tokens: {e}");
        return unavailable(&e);
    }
    tokens_answer(answer)
}

fn refresh_error(e: RefreshError) -> Response {
    match e {
        RefreshError::Terminal { reason, .. } => {
            oauth_error(StatusCode::UNAUTHORIZED, &reason.code, &reason.message)
        }
        RefreshError::Disabled(_) => oauth_error(
            StatusCode::UNAUTHORIZED,
            "account_disabled",
            "This sign-in is disabled in Codex Vault; enable it there first.",
        ),
        e => unavailable(&e),
    }
}

/// `POST /oauth/revoke` (`codex logout`): a sign-in we hold is never revoked upstream on a CLI's
/// behalf — that would end the vault's grant too; the logout is recorded instead.
pub(super) async fn revoke(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let upstream = shared.tm.revoke_url();
    let Some(presented) = fields(&headers, &body).and_then(|m| field(&m, "token")) else {
        return forwarded(upstream, &headers, body).await;
    };
    let digest = shared.vault.refresh_digest(&presented);
    let snap = match snapshot(&shared, &digest).await {
        Ok(s) => s,
        Err(e) => return unavailable(&e),
    };
    // Any token of a held chain is ours, honoured or not: forwarding even an old one could end
    // the chain.
    let ids: Vec<String> = snap.accounts.iter().map(|a| a.account_id.clone()).collect();
    let account_id = match decide(&snap, &shared.vault, &presented, now_ms()).account_id() {
        Some(id) => Some(id.to_string()),
        None => held_access_token(&shared, ids, &presented).await,
    };
    let Some(account_id) = account_id else {
        return forwarded(upstream, &headers, body).await;
    };
    let store = shared.store().clone();
    let id = account_id.clone();
    let recorded = tokio::task::spawn_blocking(move || {
        store.append_event(
            &id,
            "cli_logged_out",
            Some("a Codex CLI logged out through the broker; the sign-in was kept (not revoked)"),
        )
    })
    .await;
    if !matches!(recorded, Ok(Ok(()))) {
        tracing::warn!(account = %account_id, "broker: cannot record the CLI's logout");
    }
    tracing::info!(account = %account_id, "broker: a Codex CLI logged out; the grant is kept");
    no_store((StatusCode::OK, axum::Json(json!({}))).into_response())
}

/// A revoke may name the access token instead: compare it with each account's, in full.
async fn held_access_token(
    shared: &Arc<Shared>,
    ids: Vec<String>,
    presented: &Secret,
) -> Option<String> {
    let store = shared.store().clone();
    let sealed = tokio::task::spawn_blocking(move || {
        ids.into_iter()
            .filter_map(|id| {
                let s = store.secrets(&id).ok()??;
                Some((id, s.access_token))
            })
            .collect::<Vec<_>>()
    })
    .await
    .ok()?;
    let vault = &shared.vault;
    let mut found = None;
    for (id, blob) in sealed {
        let Ok(access) = vault.open(&id, Field::AccessToken, &blob) else {
            continue;
        };
        let same: bool = access
            .expose()
            .as_bytes()
            .ct_eq(presented.expose().as_bytes())
            .into();
        if same && found.is_none() {
            found = Some(id);
        }
    }
    found
}

#[cfg(test)]
#[path = "broker_tests.rs"]
mod tests;
