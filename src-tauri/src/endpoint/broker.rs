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
use crate::refresh::RefreshError;
use crate::secret::Secret;
use crate::store::FingerprintRow;
use crate::vault::Field;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// A caller holding the refresh token a sibling redeemed less than this long ago is handed the
/// current tokens (its race is recovered); older generations are a reuse, as upstream says.
pub const PREVIOUS_GENERATION_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Token and revoke bodies are a few hundred bytes; anything far larger is not one.
const MAX_FORWARD_ANSWER: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the sign-in server could not be reached: {0}")]
    Upstream(String),
    #[error("the vault could not be read: {0}")]
    Vault(String),
}

/// Whose refresh token a caller presented.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Presented {
    /// The account's current refresh token (at `generation`).
    Current { account_id: String, generation: i64 },
    /// The refresh token the account's current one replaced, `rotated_at` ago.
    Previous {
        account_id: String,
        rotated_at: Option<UnixMs>,
    },
    /// An older refresh token of a held chain: a reuse.
    Older { account_id: String },
    /// Not a sign-in we hold.
    Unknown,
}

/// Compares the presented token's fingerprint with every row's, without stopping at the first
/// hit, so timing says nothing about which row (or how many bytes) matched.
fn classify(
    rows: &[FingerprintRow],
    retired: &[(String, String)],
    presented_fp: &str,
) -> Presented {
    let fp = presented_fp.as_bytes();
    let mut found = Presented::Unknown;
    for row in rows {
        let current: bool = row.refresh_fingerprint.as_bytes().ct_eq(fp).into();
        let previous: bool = row
            .previous_refresh_fingerprint
            .as_deref()
            .map(|p| p.as_bytes().ct_eq(fp).into())
            .unwrap_or(false);
        if current && found == Presented::Unknown {
            found = Presented::Current {
                account_id: row.account_id.clone(),
                generation: row.generation,
            };
        } else if previous && found == Presented::Unknown {
            found = Presented::Previous {
                account_id: row.account_id.clone(),
                rotated_at: row.rotated_at,
            };
        }
    }
    for (account_id, retired_fp) in retired {
        let older: bool = retired_fp.as_bytes().ct_eq(fp).into();
        if older && found == Presented::Unknown {
            found = Presented::Older {
                account_id: account_id.clone(),
            };
        }
    }
    found
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

fn forward_client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(crate::oauth::client::REQUEST_TIMEOUT)
            // Transparent means transparent: a redirect is the client's to follow, not ours.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client builds with rustls")
    })
}

/// Sends the request on to the issuer byte for byte and returns its answer unchanged (status,
/// body, content type, cache control).
async fn forward(url: &str, headers: &HeaderMap, body: Bytes) -> Result<Response, BrokerError> {
    let mut req = forward_client().post(url).body(body);
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
            let body = json!({"error": {"message": e.to_string(), "type": "server_error", "param": null, "code": "upstream_unreachable"}});
            (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Vault(format!("store task failed: {e}")))?
}

type Fingerprints = (Vec<FingerprintRow>, Vec<(String, String)>);

async fn fingerprints(shared: &Arc<Shared>) -> Result<Fingerprints, BrokerError> {
    let store = shared.store().clone();
    blocking(move || {
        let err = |e: crate::store::StoreError| BrokerError::Vault(e.to_string());
        Ok((
            store.refresh_fingerprints().map_err(err)?,
            store.retired_fingerprints().map_err(err)?,
        ))
    })
    .await
}

/// The account's current token set, read in one statement (one generation), as upstream's
/// refresh answer. `None` when the stored refresh token is not `must_match` (a fingerprint
/// collision, or a rotation in between): the caller then treats the token as unknown.
async fn current_answer(
    shared: &Arc<Shared>,
    account_id: &str,
    must_match: Option<&Secret>,
) -> Result<Option<Value>, BrokerError> {
    let store = shared.store().clone();
    let id = account_id.to_string();
    let (account, secrets) = blocking(move || {
        let a = store
            .get_account(&id)
            .map_err(|e| BrokerError::Vault(e.to_string()))?;
        let s = store
            .secrets(&id)
            .map_err(|e| BrokerError::Vault(e.to_string()))?;
        Ok((a, s))
    })
    .await?;
    let (Some(account), Some(s)) = (account, secrets) else {
        return Ok(None);
    };
    let vault = shared.service.vault();
    let open = |f, b: &[u8]| {
        vault
            .open(account_id, f, b)
            .map_err(|e| BrokerError::Vault(e.to_string()))
    };
    let refresh = open(Field::RefreshToken, &s.refresh_token)?;
    if let Some(presented) = must_match {
        let same: bool = refresh
            .expose()
            .as_bytes()
            .ct_eq(presented.expose().as_bytes())
            .into();
        if !same {
            return Ok(None);
        }
    }
    let access = open(Field::AccessToken, &s.access_token)?;
    let id_token = open(Field::IdToken, &s.id_token)?;
    let expires_in = account
        .access_expires_at
        .map(|e| ((e - now_ms()) / 1000).max(0));
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
    Ok(Some(answer))
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

/// `POST /oauth/token`.
pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let upstream = shared.tm.token_url();
    let presented = fields(&headers, &body).and_then(|m| {
        let is_refresh = m.get("grant_type").and_then(Value::as_str) == Some("refresh_token");
        is_refresh.then(|| field(&m, "refresh_token")).flatten()
    });
    // Not a refresh grant (or not one we can read): the issuer's business.
    let Some(presented) = presented else {
        return forwarded(upstream, &headers, body).await;
    };
    let (rows, retired) = match fingerprints(&shared).await {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    match classify(&rows, &retired, &presented.fingerprint()) {
        Presented::Unknown => forwarded(upstream, &headers, body).await,
        // Never forwarded: upstream may answer a reuse by revoking the whole chain, ours too.
        Presented::Older { account_id } => {
            tracing::warn!(account = %account_id, "broker: an older refresh token of a held sign-in was presented; answered as a reuse");
            reused()
        }
        Presented::Current {
            account_id,
            generation,
        } => {
            // Confirm the whole token, not only its 64-bit fingerprint, before spending it.
            match current_answer(&shared, &account_id, Some(&presented)).await {
                Ok(Some(_)) => {}
                Ok(None) => return forwarded(upstream, &headers, body).await,
                Err(e) => return unavailable(&e),
            }
            if let Some(r) = terminal_answer(&shared, &account_id).await {
                return r;
            }
            rotate(&shared, &account_id, generation).await
        }
        Presented::Previous {
            account_id,
            rotated_at,
        } => {
            if let Some(r) = terminal_answer(&shared, &account_id).await {
                return r;
            }
            let recent = rotated_at.is_some_and(|t| now_ms() - t < PREVIOUS_GENERATION_WINDOW_MS);
            if !recent {
                tracing::warn!(account = %account_id, "broker: the previous refresh token of a held sign-in was presented after the window; answered as a reuse");
                return reused();
            }
            tracing::info!(account = %account_id, "broker: a sibling already rotated; handing out the current tokens");
            match current_answer(&shared, &account_id, None).await {
                Ok(Some(a)) => tokens_answer(a),
                Ok(None) => reused(),
                Err(e) => unavailable(&e),
            }
        }
    }
}

/// Rotates the presented generation through the TokenManager and answers with the new pair.
async fn rotate(shared: &Arc<Shared>, account_id: &str, generation: i64) -> Response {
    match shared.tm.rotate_presented(account_id, generation).await {
        Ok(t) => {
            tracing::info!(account = %account_id, generation = t.generation, "broker: refreshed for a Codex CLI");
            match current_answer(shared, account_id, None).await {
                Ok(Some(a)) => tokens_answer(a),
                Ok(None) => unavailable(&"the account was removed meanwhile"),
                Err(e) => unavailable(&e),
            }
        }
        Err(RefreshError::Terminal { reason, .. }) => {
            oauth_error(StatusCode::UNAUTHORIZED, &reason.code, &reason.message)
        }
        Err(RefreshError::Disabled(_)) => oauth_error(
            StatusCode::UNAUTHORIZED,
            "account_disabled",
            "This sign-in is disabled in Codex Vault; enable it there first.",
        ),
        Err(e) => unavailable(&e),
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
    let (rows, retired) = match fingerprints(&shared).await {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    // Any generation of a held chain is ours: forwarding even an old one could end the chain.
    let account_id = match classify(&rows, &retired, &presented.fingerprint()) {
        Presented::Current { account_id, .. }
        | Presented::Previous { account_id, .. }
        | Presented::Older { account_id } => Some(account_id),
        Presented::Unknown => held_access_token(&shared, &rows, &presented).await,
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
    rows: &[FingerprintRow],
    presented: &Secret,
) -> Option<String> {
    let store = shared.store().clone();
    let ids: Vec<String> = rows.iter().map(|r| r.account_id.clone()).collect();
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
    let vault = shared.service.vault();
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
mod tests {
    use super::*;

    fn row(id: &str, current: &str, previous: Option<&str>) -> FingerprintRow {
        FingerprintRow {
            account_id: id.into(),
            chatgpt_account_id: format!("c-{id}"),
            chatgpt_user_id: format!("u-{id}"),
            generation: 3,
            refresh_fingerprint: current.into(),
            previous_refresh_fingerprint: previous.map(Into::into),
            rotated_at: Some(42),
        }
    }

    #[test]
    fn current_previous_and_unknown() {
        let rows = [row("a", "aaaa", Some("a0a0")), row("b", "bbbb", None)];
        let retired = [
            ("a".to_string(), "a0a0".to_string()),
            ("a".into(), "a1a1".into()),
        ];
        let classify = |fp| classify(&rows, &retired, fp);
        assert_eq!(
            classify("bbbb"),
            Presented::Current {
                account_id: "b".into(),
                generation: 3
            }
        );
        assert_eq!(
            classify("a0a0"),
            Presented::Previous {
                account_id: "a".into(),
                rotated_at: Some(42)
            }
        );
        assert_eq!(
            classify("a1a1"),
            Presented::Older {
                account_id: "a".into()
            }
        );
        assert_eq!(classify("cccc"), Presented::Unknown);
        assert_eq!(classify(""), Presented::Unknown);
    }

    #[test]
    fn json_and_form_bodies() {
        let mut h = HeaderMap::new();
        let m = fields(
            &h,
            br#"{"grant_type":"refresh_token","refresh_token":"rt_x"}"#,
        )
        .unwrap();
        assert_eq!(field(&m, "refresh_token").unwrap().expose(), "rt_x");
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let m = fields(&h, b"grant_type=refresh_token&refresh_token=rt_y%2B").unwrap();
        assert_eq!(field(&m, "refresh_token").unwrap().expose(), "rt_y+");
        assert!(fields(&HeaderMap::new(), b"[1]").is_none());
    }
}
