//! "Sign in with ChatGPT": PKCE (S256) + state, the exact authorize URL of protocol.md, and a
//! one-shot callback server on 127.0.0.1 (1455, else 1457 — the only registered redirect ports).

use super::auth_json::{identity_from_claims, AuthJsonError, Credential, TokenSet};
use super::client::{ExchangeError, Issuer, TokenClient, CLIENT_ID};
use super::jwt;
use crate::account::now_ms;
use crate::error_code::ErrorCode;
use crate::secret::Secret;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use super::browser::{open_browser, parse_switch};

pub const DEFAULT_CALLBACK_PORTS: [u16; 2] = [1455, 1457];
pub const SCOPE: &str =
    "openid profile email offline_access api.connectors.read api.connectors.invoke";
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the sign-in callback ports {ports} are all in use (another `codex login` or Codex Vault sign-in may be running); finish or cancel it and try again")]
    PortsBusy { ports: String },
    #[error("cannot start the sign-in callback server: {0}")]
    Bind(String),
    #[error("the sign-in was cancelled: {0}")]
    Cancelled(String),
    #[error(
        "the sign-in answer did not match this sign-in (state mismatch); start the sign-in again"
    )]
    StateMismatch,
    #[error("this ChatGPT account has no access to Codex (missing_codex_entitlement): its plan or its workspace admin does not allow Codex")]
    MissingEntitlement,
    #[error("the sign-in was refused ({code}): {description}")]
    Denied { code: String, description: String },
    #[error("the sign-in callback had no authorization code")]
    NoCode,
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error("the sign-in returned an unusable id_token: {0}")]
    Identity(#[from] AuthJsonError),
    #[error("the sign-in did not finish within {0} seconds")]
    TimedOut(u64),
    #[error("this is not the sign-in's callback address ({0}); paste the whole address the browser was sent to, `http://localhost:1455/auth/callback?code=…&state=…`")]
    PasteInvalid(String),
    #[error("the sign-in server does not offer device-code sign-in here (HTTP 404); use the browser sign-in (`codex-vault accounts login`, or `--paste` when the browser is on another machine)")]
    DeviceUnavailable,
    #[error("the device code expired before the sign-in was approved; nothing was stored. Start again for a new code")]
    DeviceExpired,
    #[error("the sign-in was declined on the verification page ({0}); nothing was stored")]
    DeviceDenied(String),
    #[error(
        "the sign-in server refused the device sign-in (HTTP {status}, {code}); nothing was stored"
    )]
    DeviceRefused { status: u16, code: String },
    #[error("could not reach the sign-in server: {0}")]
    Network(String),
}

impl LoginError {
    pub fn code(&self) -> ErrorCode {
        match self {
            LoginError::PortsBusy { .. } => ErrorCode::LoginPortsBusy,
            LoginError::Bind(_) => ErrorCode::LoginBind,
            LoginError::Cancelled(_) => ErrorCode::LoginCancelled,
            LoginError::StateMismatch => ErrorCode::LoginStateMismatch,
            LoginError::MissingEntitlement => ErrorCode::MissingCodexEntitlement,
            LoginError::Denied { .. } => ErrorCode::LoginDenied,
            LoginError::NoCode => ErrorCode::LoginNoCode,
            LoginError::Exchange(_) => ErrorCode::LoginExchangeFailed,
            LoginError::Identity(e) => e.code(),
            LoginError::TimedOut(_) => ErrorCode::LoginTimedOut,
            LoginError::PasteInvalid(_) => ErrorCode::LoginPasteInvalid,
            LoginError::DeviceUnavailable => ErrorCode::LoginDeviceUnavailable,
            LoginError::DeviceExpired => ErrorCode::LoginDeviceExpired,
            LoginError::DeviceDenied(_) => ErrorCode::LoginDeviceDenied,
            LoginError::DeviceRefused { .. } => ErrorCode::LoginDeviceFailed,
            LoginError::Network(_) => ErrorCode::LoginNetwork,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoginOptions {
    pub issuer: Issuer,
    /// Tried in order; 0 means "any free port" (tests, so parallel runs never collide).
    pub ports: Vec<u16>,
    pub timeout: Duration,
}

impl LoginOptions {
    /// Issuer from `CODEX_VAULT_AUTH_BASE`; ports from `CODEX_VAULT_CALLBACK_PORTS` (e.g. `1455,1457`).
    pub fn from_env() -> Result<LoginOptions, String> {
        let ports = match std::env::var("CODEX_VAULT_CALLBACK_PORTS") {
            Ok(s) if !s.trim().is_empty() => s
                .split(',')
                .map(|p| p.trim().parse::<u16>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| format!("CODEX_VAULT_CALLBACK_PORTS must be port numbers separated by commas, not `{s}`"))?,
            _ => DEFAULT_CALLBACK_PORTS.to_vec(),
        };
        let issuer = Issuer::from_env();
        if url::Url::parse(&issuer.authorize_url()).is_err() {
            return Err(format!(
                "CODEX_VAULT_AUTH_BASE is not a URL: `{}`",
                issuer.base
            ));
        }
        Ok(LoginOptions {
            issuer,
            ports,
            timeout: DEFAULT_LOGIN_TIMEOUT,
        })
    }
}

/// PKCE pair: verifier = 64 random bytes base64url; challenge = base64url(SHA-256(verifier)).
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    let verifier = random_b64(64);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier: Secret::new(verifier),
        challenge,
    }
}

fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn redirect_uri(port: u16) -> String {
    format!("http://localhost:{port}/auth/callback")
}

/// The authorize URL, parameters in protocol.md's order.
pub fn authorize_url(issuer: &Issuer, redirect_uri: &str, challenge: &str, state: &str) -> String {
    // `LoginOptions::from_env` validated the issuer; a hand-built one that is not a URL
    // yields an obviously broken link rather than a silent fallback to production.
    let mut url = match url::Url::parse(&issuer.authorize_url()) {
        Ok(u) => u,
        Err(_) => return format!("{}?invalid-issuer", issuer.authorize_url()),
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", SCOPE)
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("id_token_add_organizations", "true")
        .append_pair("codex_cli_simplified_flow", "true")
        .append_pair("state", state)
        .append_pair("originator", "codex_cli_rs");
    url.into()
}

pub(crate) type Outcome = Result<Credential, LoginError>;

pub(super) struct Callback {
    state: String,
    verifier: Secret,
    redirect_uri: String,
    client: TokenClient,
    result: Mutex<Option<oneshot::Sender<Outcome>>>,
}

/// Where a callback's outcome arrives.
pub(super) type OutcomeReceiver = oneshot::Receiver<Outcome>;

impl Callback {
    /// A fresh PKCE pair and state for `redirect`: the callback, its authorize URL, and where
    /// its outcome arrives.
    pub(super) fn new(
        issuer: &Issuer,
        redirect: String,
        client: TokenClient,
    ) -> (Callback, String, OutcomeReceiver) {
        let pkce = pkce();
        let state = random_b64(32);
        let url = authorize_url(issuer, &redirect, &pkce.challenge, &state);
        let (tx, rx) = oneshot::channel();
        let cb = Callback {
            state,
            verifier: pkce.verifier,
            redirect_uri: redirect,
            client,
            result: Mutex::new(Some(tx)),
        };
        (cb, url, rx)
    }

    /// The one check of an answer (the callback server's request or a pasted URL): its `state`
    /// must be this sign-in's, exactly. Then takes the right to finish (None: already finished).
    pub(super) fn accept(
        &self,
        q: &HashMap<String, String>,
    ) -> Result<Option<oneshot::Sender<Outcome>>, LoginError> {
        let matches = q
            .get("state")
            .is_some_and(|s| constant_time_eq(s.as_bytes(), self.state.as_bytes()));
        if !matches {
            return Err(LoginError::StateMismatch);
        }
        Ok(self.take())
    }

    /// What an accepted answer comes to: the provider's error, or its code redeemed.
    pub(super) async fn answer(&self, q: &HashMap<String, String>) -> Outcome {
        match q.get("error") {
            Some(code) => {
                let raw = q.get("error_description").map(String::as_str).unwrap_or("");
                Err(
                    if code == "missing_codex_entitlement"
                        || raw.contains("missing_codex_entitlement")
                    {
                        LoginError::MissingEntitlement
                    } else {
                        LoginError::Denied {
                            code: super::classify::redact(code),
                            description: super::classify::redact(raw),
                        }
                    },
                )
            }
            None => match q.get("code").filter(|c| !c.is_empty()) {
                Some(code) => redeem(&self.client, code, &self.redirect_uri, &self.verifier).await,
                None => Err(LoginError::NoCode),
            },
        }
    }

    /// Takes the right to finish the flow: exactly one request (or cancel) gets it.
    fn take(&self) -> Option<oneshot::Sender<Outcome>> {
        self.result.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn finish(&self, outcome: Outcome) -> bool {
        match self.take() {
            Some(tx) => tx.send(outcome).is_ok(),
            None => false,
        }
    }
}

/// A sign-in in progress: open `url()` in a browser, then `wait()`.
pub struct LoginFlow {
    url: String,
    port: u16,
    callback: Arc<Callback>,
    result: oneshot::Receiver<Outcome>,
    shutdown: Option<oneshot::Sender<()>>,
    timeout: Duration,
}

/// A pending sign-in, seen from elsewhere: the UI's Cancel button, or its "paste the callback
/// URL" field (browser sign-ins only).
#[derive(Clone)]
pub struct LoginCanceller(Pending);

#[derive(Clone)]
enum Pending {
    Browser(Arc<Callback>),
    Device(super::device::DeviceCanceller),
}

impl LoginCanceller {
    pub(crate) fn device(c: super::device::DeviceCanceller) -> LoginCanceller {
        LoginCanceller(Pending::Device(c))
    }

    pub fn cancel(&self, why: &str) {
        match &self.0 {
            Pending::Browser(cb) => {
                let _ = cb.finish(Err(LoginError::Cancelled(why.to_string())));
            }
            Pending::Device(c) => c.cancel(why),
        }
    }

    /// Finishes a waiting browser sign-in with the callback URL its browser was sent to (on
    /// another machine), checked exactly as the callback server checks a request. A URL of
    /// another sign-in is refused and this one keeps waiting; the outcome goes to `wait()`.
    pub async fn paste(&self, callback_url: &str) -> Result<(), LoginError> {
        let Pending::Browser(cb) = &self.0 else {
            return Err(LoginError::PasteInvalid(
                "no browser sign-in is waiting; a device-code sign-in needs no callback".into(),
            ));
        };
        let q = super::paste::pasted_query(callback_url)?;
        let Some(tx) = cb.accept(&q)? else {
            return Err(LoginError::Cancelled(
                "this sign-in had already finished".into(),
            ));
        };
        let _ = tx.send(cb.answer(&q).await);
        Ok(())
    }
}

impl LoginFlow {
    /// Binds the callback server (first free port of `opts.ports`) and prepares the URL.
    pub async fn start(opts: &LoginOptions, client: TokenClient) -> Result<LoginFlow, LoginError> {
        let listener = bind_first(&opts.ports).await?;
        let port = listener
            .local_addr()
            .map_err(|e| LoginError::Bind(e.to_string()))?
            .port();
        let (callback, url, rx) = Callback::new(&opts.issuer, redirect_uri(port), client);
        let callback = Arc::new(callback);
        let app = Router::new()
            .route("/auth/callback", get(on_callback))
            .route("/cancel", get(on_cancel))
            .with_state(callback.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        Ok(LoginFlow {
            url,
            port,
            callback,
            result: rx,
            shutdown: Some(stop_tx),
            timeout: opts.timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn canceller(&self) -> LoginCanceller {
        LoginCanceller(Pending::Browser(self.callback.clone()))
    }

    /// Waits for the browser to come back (or a cancel, or the timeout); the server then stops.
    pub async fn wait(mut self) -> Outcome {
        let outcome = match tokio::time::timeout(self.timeout, &mut self.result).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(LoginError::Cancelled("the sign-in server stopped".into())),
            Err(_) => Err(LoginError::TimedOut(self.timeout.as_secs())),
        };
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        outcome
    }
}

impl Drop for LoginFlow {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
    }
}

async fn bind_first(ports: &[u16]) -> Result<TcpListener, LoginError> {
    for &port in ports {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                tracing::info!(port, "sign-in callback port in use, trying the next");
            }
            Err(e) => return Err(LoginError::Bind(format!("port {port}: {e}"))),
        }
    }
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    Err(LoginError::PortsBusy {
        ports: list.join(" and "),
    })
}

async fn on_cancel(State(cb): State<Arc<Callback>>) -> Response {
    // `codex login` sends this when it finds our port busy: give the port back, and say so.
    let cancelled = cb.finish(Err(LoginError::Cancelled(
        "another sign-in (for example `codex login`) asked for the callback port".into(),
    )));
    let text = if cancelled {
        "Codex Vault: sign-in cancelled."
    } else {
        "Codex Vault: the sign-in had already finished."
    };
    (StatusCode::OK, text).into_response()
}

async fn on_callback(
    State(cb): State<Arc<Callback>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    // A stale tab of an earlier sign-in (or a forged request) gets a 400 and the flow keeps
    // waiting for the real answer, as the Codex CLI's own server does.
    let tx = match cb.accept(&q) {
        Ok(Some(tx)) => tx,
        Err(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "The answer did not match the sign-in that is waiting (state mismatch). If you started several sign-ins, use the tab of the latest one.",
            )
        }
        // Exactly one request gets to finish the flow; a reload or a duplicate gets 410.
        Ok(None) => {
            return page(
                StatusCode::GONE,
                "This sign-in is already finished",
                "Return to Codex Vault; start a new sign-in there if you need one.",
            )
        }
    };
    let outcome = cb.answer(&q).await;
    let (title, text) = match &outcome {
        Ok(cred) => (
            "Signed in",
            format!(
                "Signed in as {}. Return to Codex Vault; you can close this tab.",
                cred.identity.email
            ),
        ),
        Err(e) => ("Sign-in failed", e.to_string()),
    };
    if tx.send(outcome).is_err() {
        return page(
            StatusCode::GONE,
            "Sign-in no longer awaited",
            "Codex Vault stopped waiting for this sign-in (timed out or cancelled). Start a new sign-in there.",
        );
    }
    page(StatusCode::OK, title, &text)
}

/// Redeems an authorization code (with its PKCE verifier) and reads who signed in: the browser,
/// pasted and device sign-ins all end here.
pub(crate) async fn redeem(
    client: &TokenClient,
    code: &str,
    redirect_uri: &str,
    verifier: &Secret,
) -> Outcome {
    let t = client.exchange_code(code, redirect_uri, verifier).await?;
    // exchange_code guarantees all three are present.
    let (Some(id_token), Some(access), Some(refresh)) =
        (t.id_token, t.access_token, t.refresh_token)
    else {
        return Err(ExchangeError::BadResponse("missing tokens".into()).into());
    };
    let claims = jwt::decode_claims(id_token.expose(), "id_token").map_err(AuthJsonError::from)?;
    let identity = identity_from_claims(&claims, None)?;
    let access_issued_at = jwt::access_token_iat(access.expose()).map(|s| s.saturating_mul(1000));
    let access_expires_at = jwt::access_token_exp(access.expose())
        .map(|s| s.saturating_mul(1000))
        .or_else(|| t.expires_in.map(|s| now_ms() + s.saturating_mul(1000)));
    Ok(Credential {
        identity,
        tokens: TokenSet {
            id_token,
            access_token: access,
            refresh_token: refresh,
            access_expires_at,
            access_issued_at,
        },
        last_refresh: Some(now_ms()),
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Codex Vault: {t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;line-height:1.5}}</style>\
         </head><body><h1>{t}</h1><p>{x}</p></body></html>",
        t = esc(title),
        x = esc(text)
    );
    (status, Html(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_s256_of_verifier() {
        let p = pkce();
        assert_eq!(p.verifier.expose().len(), 86); // 64 bytes, base64url without padding
        let expect = URL_SAFE_NO_PAD.encode(Sha256::digest(p.verifier.expose().as_bytes()));
        assert_eq!(p.challenge, expect);
    }

    #[test]
    fn authorize_url_has_protocol_parameters_in_order() {
        let issuer = Issuer {
            base: "https://auth.openai.com".into(),
        };
        let u = authorize_url(&issuer, &redirect_uri(1455), "CH", "ST");
        let parsed = url::Url::parse(&u).unwrap();
        assert_eq!(parsed.path(), "/oauth/authorize");
        let keys: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        assert_eq!(
            keys,
            [
                "response_type",
                "client_id",
                "redirect_uri",
                "scope",
                "code_challenge",
                "code_challenge_method",
                "id_token_add_organizations",
                "codex_cli_simplified_flow",
                "state",
                "originator"
            ]
        );
        let q: HashMap<_, _> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], CLIENT_ID);
        assert_eq!(q["redirect_uri"], "http://localhost:1455/auth/callback");
        assert_eq!(q["scope"], SCOPE);
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["originator"], "codex_cli_rs");
    }
}
