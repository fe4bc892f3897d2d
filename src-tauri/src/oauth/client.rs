//! The token client: authorization-code exchange (form-encoded) and refresh (JSON), with connect and
//! total timeouts, bodies capped, and every answer turned into one outcome type.

use super::classify::{classify_error, error_code, error_message, Failure};
use crate::secret::Secret;
use serde_json::Value;
use std::time::Duration;

/// The Codex CLI's public OAuth client (protocol.md § OAuth).
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
pub const DEFAULT_ISSUER: &str = "https://auth.openai.com";
const USER_AGENT: &str = concat!("codex-vault/", env!("CARGO_PKG_VERSION"));
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Token answers are a few KiB; anything far larger is not a token answer.
const MAX_BODY: usize = 256 * 1024;

/// Where the issuer is: `CODEX_VAULT_AUTH_BASE` (tests point it at the fake), else OpenAI's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    pub base: String,
}

impl Issuer {
    pub fn from_env() -> Issuer {
        let base = std::env::var("CODEX_VAULT_AUTH_BASE")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ISSUER.to_string());
        Issuer {
            base: base.trim_end_matches('/').to_string(),
        }
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.base)
    }

    pub fn authorize_url(&self) -> String {
        format!("{}/oauth/authorize", self.base)
    }

    /// Device sign-in (protocol.md § Device sign-in): where a user code is asked for.
    pub fn device_usercode_url(&self) -> String {
        format!("{}/api/accounts/deviceauth/usercode", self.base)
    }

    /// Device sign-in: where the approval is polled for.
    pub fn device_token_url(&self) -> String {
        format!("{}/api/accounts/deviceauth/token", self.base)
    }

    /// Device sign-in: the page the user opens to enter the code.
    pub fn device_verification_url(&self) -> String {
        format!("{}/codex/device", self.base)
    }

    /// Device sign-in: the redirect URI its authorization code is bound to.
    pub fn device_redirect_uri(&self) -> String {
        format!("{}/deviceauth/callback", self.base)
    }
}

/// The tokens of a successful answer. Each is optional on refresh: an absent one keeps its old value.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenResponse {
    pub id_token: Option<Secret>,
    pub access_token: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub expires_in: Option<i64>,
}

/// What one refresh call came to. No strings to sniff: callers match on the variant.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshOutcome {
    Rotated(TokenResponse),
    MaybeRace {
        code: String,
        message: String,
        http_status: u16,
    },
    Terminal {
        code: String,
        message: String,
        http_status: Option<u16>,
    },
    Transient {
        reason: String,
        /// True when the request may have reached the server without us seeing the answer
        /// (timeout, connection broken after sending): upstream may have rotated the token.
        ambiguous: bool,
    },
}

impl From<Failure> for RefreshOutcome {
    fn from(f: Failure) -> Self {
        match f {
            Failure::MaybeRace {
                code,
                message,
                http_status,
            } => RefreshOutcome::MaybeRace {
                code,
                message,
                http_status,
            },
            Failure::Terminal {
                code,
                message,
                http_status,
            } => RefreshOutcome::Terminal {
                code,
                message,
                http_status,
            },
            Failure::Transient { reason } => RefreshOutcome::Transient {
                reason,
                ambiguous: false,
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("the sign-in server refused the authorization code ({code}): {message}")]
    Refused {
        code: String,
        message: String,
        http_status: u16,
    },
    #[error("could not reach the sign-in server: {0}")]
    Network(String),
    #[error("the sign-in server's answer was not usable: {0}")]
    BadResponse(String),
}

#[derive(Clone)]
pub struct TokenClient {
    http: reqwest::Client,
    issuer: Issuer,
    total: Duration,
}

impl TokenClient {
    pub fn new(issuer: Issuer) -> TokenClient {
        TokenClient::with_timeout(issuer, REQUEST_TIMEOUT)
    }

    /// `total` bounds each request, connecting included (the shared client's connect timeout
    /// applies too).
    pub fn with_timeout(issuer: Issuer, total: Duration) -> TokenClient {
        TokenClient {
            http: crate::http::upstream(),
            issuer,
            total,
        }
    }

    fn post(&self, url: String) -> reqwest::RequestBuilder {
        self.http
            .post(url)
            .timeout(self.total)
            .header(reqwest::header::USER_AGENT, USER_AGENT)
    }

    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// Refreshes with protocol.md's JSON body. Never returns an error: every failure is classified.
    pub async fn refresh(&self, refresh_token: &Secret) -> RefreshOutcome {
        let body = serde_json::json!({
            "client_id": CLIENT_ID,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.expose(),
        });
        let sent = self.post(self.issuer.token_url()).json(&body).send().await;
        let (status, bytes) = match read(sent).await {
            Ok(x) => x,
            Err(e) => {
                return RefreshOutcome::Transient {
                    ambiguous: !e.never_sent,
                    reason: e.reason,
                }
            }
        };
        if !(200..300).contains(&status) {
            return classify_error(status, &bytes).into();
        }
        match parse_tokens(&bytes) {
            Some(t) if t.access_token.is_some() || t.refresh_token.is_some() => {
                RefreshOutcome::Rotated(t)
            }
            _ => RefreshOutcome::Transient {
                reason: format!("the sign-in server answered HTTP {status} without tokens"),
                ambiguous: false,
            },
        }
    }

    /// Exchanges an authorization code (form-encoded, with the PKCE verifier).
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &Secret,
    ) -> Result<TokenResponse, ExchangeError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", CLIENT_ID),
            ("code_verifier", code_verifier.expose()),
        ];
        let sent = self.post(self.issuer.token_url()).form(&form).send().await;
        let (status, bytes) = read(sent)
            .await
            .map_err(|e| ExchangeError::Network(e.reason))?;
        if !(200..300).contains(&status) {
            let json: Option<Value> = serde_json::from_slice(&bytes).ok();
            return Err(ExchangeError::Refused {
                code: json
                    .as_ref()
                    .and_then(error_code)
                    .unwrap_or_else(|| format!("http_{status}")),
                message: json
                    .as_ref()
                    .and_then(error_message)
                    .unwrap_or_else(|| format!("HTTP {status}")),
                http_status: status,
            });
        }
        let t = parse_tokens(&bytes)
            .ok_or_else(|| ExchangeError::BadResponse("not a JSON object".into()))?;
        for (present, name) in [
            (t.id_token.is_some(), "id_token"),
            (t.access_token.is_some(), "access_token"),
            (t.refresh_token.is_some(), "refresh_token"),
        ] {
            if !present {
                return Err(ExchangeError::BadResponse(format!("no {name}")));
            }
        }
        Ok(t)
    }
}

impl TokenClient {
    /// POSTs a JSON body to the issuer (the device sign-in's calls); the status and the body
    /// (capped), or why no answer came.
    pub(crate) async fn post_json(
        &self,
        url: String,
        body: &Value,
    ) -> Result<(u16, Vec<u8>), String> {
        let sent = self.post(url).json(body).send().await;
        read(sent).await.map_err(|e| e.reason)
    }
}

struct ReadError {
    reason: String,
    /// The request certainly never reached the server (connection refused, DNS…).
    never_sent: bool,
}

async fn read(sent: reqwest::Result<reqwest::Response>) -> Result<(u16, Vec<u8>), ReadError> {
    let err = |e: reqwest::Error| ReadError {
        never_sent: e.is_connect(),
        reason: describe(e),
    };
    let mut resp = sent.map_err(err)?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(err)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ReadError {
                reason: format!("HTTP {status} answer larger than {MAX_BODY} bytes"),
                never_sent: false,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// A reqwest error in words, without the URL's query (no secret is ever in our URLs, but keep it short).
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the connection broke while reading the answer"
    } else {
        "network error"
    };
    let mut detail = e.without_url().to_string();
    if detail.len() > 200 {
        detail.truncate(200);
    }
    format!("{kind}: {detail}")
}

fn parse_tokens(bytes: &[u8]) -> Option<TokenResponse> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let obj = v.as_object()?;
    let s = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
    };
    Some(TokenResponse {
        id_token: s("id_token"),
        access_token: s("access_token"),
        refresh_token: s("refresh_token"),
        expires_in: obj.get("expires_in").and_then(Value::as_i64),
    })
}
