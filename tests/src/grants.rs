//! OAuth semantics: minting, single-use rotating refresh tokens, reuse detection, family
//! revocation, PKCE code exchange, and bearer checks for the backend. Pure state transitions: the
//! HTTP layer only maps their results to answers.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::claims::{access_claims, id_claims, TokenContext};
use crate::config::{IssuedTokens, ReuseMode, CLIENT_ID};
use crate::state::{AccessEntry, Family, PendingCode, RtEntry, RtStatus, State};

/// An error answer: status and JSON body, exactly as sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub status: u16,
    pub body: Value,
}

impl Rejection {
    /// OpenAI's object form: `{"error":{"message","type","param","code"}}`.
    fn object(status: u16, code: &str, message: &str) -> Self {
        Rejection {
            status,
            body: json!({"error": {
                "message": message,
                "type": "invalid_request_error",
                "param": null,
                "code": code,
            }}),
        }
    }

    /// The OAuth 2.0 string form: `{"error":"…","error_description":"…"}`.
    fn oauth(status: u16, error: &str, description: &str) -> Self {
        Rejection {
            status,
            body: json!({"error": error, "error_description": description}),
        }
    }

    /// The backend's 401 shape for a token it knows but will not take.
    fn backend_token(code: &str, message: &str) -> Self {
        Rejection {
            status: 401,
            body: json!({
                "error": {"message": message, "type": "invalid_request_error", "code": code, "param": null},
                "status": 401,
            }),
        }
    }

    fn detail(status: u16, detail: &str) -> Self {
        Rejection {
            status,
            body: json!({ "detail": detail }),
        }
    }
}

/// Why a refresh failed, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefreshFailure {
    Reuse,
    Rejected,
}

/// A successful token answer.
#[derive(Clone, Debug)]
pub(crate) struct Minted {
    pub tokens: IssuedTokens,
    pub expires_in: i64,
    /// False when the answer leaves `id_token` out (refresh with `omit_id_token_on_refresh`).
    pub include_id_token: bool,
}

impl Minted {
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "access_token": self.tokens.access_token,
            "expires_in": self.expires_in,
            "refresh_token": self.tokens.refresh_token,
            "scope": "openid profile email offline_access",
            "token_type": "Bearer",
        });
        if self.include_id_token {
            body["id_token"] = json!(self.tokens.id_token);
        }
        body
    }
}

/// `rt_` + 64 base64url characters: opaque, unguessable, realistic in length.
fn new_refresh_token() -> String {
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("rt_{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn new_code() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("ac_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// PKCE S256 (RFC 7636 § 4.2): the challenge is base64url-no-pad(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// RFC 7636 § 4.1: 43–128 characters of `[A-Za-z0-9-._~]`.
fn verifier_well_formed(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

pub(crate) struct CodeRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub challenge: &'a str,
    pub account_id: &'a str,
}

impl State {
    fn lifetime_for(&self, account_id: &str) -> Duration {
        self.accounts
            .get(account_id)
            .and_then(|a| a.spec.access_token_lifetime)
            .unwrap_or(self.cfg.access_token_lifetime)
    }

    /// Mints access + id + refresh token in `family_id`, making the new refresh token current.
    /// A lifetime of zero means "already expired": issued an hour ago, expired a minute ago.
    fn mint(&mut self, family_id: u64, lifetime: Option<Duration>, now: i64) -> Option<Minted> {
        let family = self.families.get(&family_id)?;
        let account_id = family.account_id.clone();
        let session_id = family.session_id.clone();
        let account = self.accounts.get(&account_id)?;
        let lifetime = lifetime.unwrap_or_else(|| self.lifetime_for(&account_id));
        let (iat, exp) = if lifetime.is_zero() {
            (now - 3600, now - 60)
        } else {
            let secs = i64::try_from(lifetime.as_secs())
                .unwrap_or(i64::MAX / 2)
                .max(1);
            (now, now.saturating_add(secs))
        };
        let ctx = TokenContext {
            issuer: &self.issuer,
            account: &account.spec,
            session_id: &session_id,
            iat,
        };
        let jti = uuid::Uuid::new_v4().to_string();
        let access_token = self.signer.sign(&access_claims(&ctx, exp, &jti));
        let id_token = self
            .signer
            .sign(&id_claims(&ctx, &uuid::Uuid::new_v4().to_string()));
        let refresh_token = new_refresh_token();

        self.access_tokens.insert(
            jti,
            AccessEntry {
                family: family_id,
                account_id: account_id.clone(),
                exp,
            },
        );
        self.refresh_tokens.insert(
            refresh_token.clone(),
            RtEntry {
                family: family_id,
                status: RtStatus::Current,
            },
        );
        if let Some(family) = self.families.get_mut(&family_id) {
            family.current_rt = refresh_token.clone();
        }
        self.minted.extend([
            access_token.clone(),
            id_token.clone(),
            refresh_token.clone(),
        ]);
        Some(Minted {
            tokens: IssuedTokens {
                id_token,
                access_token,
                refresh_token,
                account_id,
            },
            expires_in: (exp - now).max(0),
            include_id_token: true,
        })
    }

    /// Starts a new, independent refresh-token family for an existing account.
    pub fn new_family(
        &mut self,
        account_id: &str,
        lifetime: Option<Duration>,
        now: i64,
    ) -> Option<(u64, Minted)> {
        if !self.accounts.contains_key(account_id) {
            return None;
        }
        let id = self.next_family;
        self.next_family += 1;
        self.families.insert(
            id,
            Family {
                account_id: account_id.to_string(),
                session_id: format!("authsess_{}", crate::config::random_alnum(24)),
                current_rt: String::new(),
                revoked: false,
            },
        );
        let minted = self.mint(id, lifetime, now)?;
        Some((id, minted))
    }

    /// The refresh grant. Counts its outcome; `out_of_band` rotations are counted apart.
    pub fn refresh(
        &mut self,
        client_id: Option<&str>,
        refresh_token: Option<&str>,
        out_of_band: bool,
        now: i64,
    ) -> Result<Minted, (RefreshFailure, Rejection)> {
        let result = self.refresh_inner(client_id, refresh_token, now);
        match &result {
            Ok(minted) => {
                let account = minted.tokens.account_id.clone();
                if out_of_band {
                    self.counters.out_of_band_rotations += 1;
                } else {
                    self.counters.refreshes_ok += 1;
                    self.counters.account(&account).refreshes_ok += 1;
                }
            }
            Err((RefreshFailure::Reuse, _)) if !out_of_band => {
                self.counters.refresh_reuse += 1;
                if let Some(account) = refresh_token
                    .and_then(|rt| self.refresh_tokens.get(rt))
                    .and_then(|e| self.families.get(&e.family))
                    .map(|f| f.account_id.clone())
                {
                    self.counters.account(&account).refresh_reuse += 1;
                }
            }
            Err(_) if !out_of_band => self.counters.refresh_rejected += 1,
            Err(_) => {}
        }
        result
    }

    fn refresh_inner(
        &mut self,
        client_id: Option<&str>,
        refresh_token: Option<&str>,
        now: i64,
    ) -> Result<Minted, (RefreshFailure, Rejection)> {
        let rejected = |r: Rejection| (RefreshFailure::Rejected, r);
        if client_id != Some(CLIENT_ID) {
            return Err(rejected(Rejection::oauth(
                401,
                "invalid_client",
                "Client authentication failed: unknown client_id.",
            )));
        }
        let Some(rt) = refresh_token.filter(|rt| !rt.is_empty()) else {
            return Err(rejected(Rejection::oauth(
                400,
                "invalid_request",
                "Missing required parameter: refresh_token.",
            )));
        };
        let Some(entry) = self.refresh_tokens.get(rt) else {
            return Err(rejected(Rejection::object(
                401,
                "invalid_refresh_token",
                "Could not validate your refresh token. Please try signing in again.",
            )));
        };
        let (family_id, status) = (entry.family, entry.status);
        // Invariant: every refresh token entry points at a family that exists.
        let Some(family) = self.families.get(&family_id) else {
            return Err(rejected(Rejection::object(
                401,
                "invalid_refresh_token",
                "Could not validate your refresh token. Please try signing in again.",
            )));
        };
        if family.revoked {
            // Once a family is revoked (logout, account revoked, reuse), every token of it,
            // rotated or not, just says the session ended.
            return Err(rejected(Rejection::object(
                401,
                "refresh_token_invalidated",
                "Your session has ended. Please log in again.",
            )));
        }
        if status == RtStatus::Rotated {
            if self.cfg.family_revoke_on_reuse {
                self.revoke_family(family_id);
            }
            let message = "Your refresh token has already been used to generate a new access token. Please try signing in again.";
            let rejection = match self.cfg.reuse_mode {
                ReuseMode::RefreshTokenReused => {
                    Rejection::object(401, "refresh_token_reused", message)
                }
                ReuseMode::RefreshTokenReused400 => {
                    Rejection::object(400, "refresh_token_reused", message)
                }
                ReuseMode::InvalidGrant => Rejection::oauth(
                    400,
                    "invalid_grant",
                    "The refresh token has already been used.",
                ),
            };
            return Err((RefreshFailure::Reuse, rejection));
        }
        if let Some(e) = self.refresh_tokens.get_mut(rt) {
            e.status = RtStatus::Rotated;
        }
        // Invariant: the family and its account exist (checked above; accounts are never removed).
        let Some(mut minted) = self.mint(family_id, None, now) else {
            return Err(rejected(Rejection::object(
                401,
                "invalid_refresh_token",
                "Could not validate your refresh token. Please try signing in again.",
            )));
        };
        minted.include_id_token = !self.cfg.omit_id_token_on_refresh;
        Ok(minted)
    }

    /// Revokes a family: its refresh tokens answer `refresh_token_invalidated`, its access
    /// tokens `token_invalidated`.
    pub fn revoke_family(&mut self, family_id: u64) {
        if let Some(f) = self.families.get_mut(&family_id) {
            f.revoked = true;
        }
    }

    /// Ends every session of the account (new sign-ins still work, as upstream).
    pub fn revoke_account(&mut self, account_id: &str) -> bool {
        let ids: Vec<u64> = self
            .families
            .iter()
            .filter(|(_, f)| f.account_id == account_id)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.revoke_family(id);
        }
        self.accounts.contains_key(account_id)
    }

    /// `POST /oauth/revoke`: a refresh token or an access token revokes its family. Unknown
    /// tokens are ignored (RFC 7009 § 2.2: still 200).
    pub fn revoke_token(&mut self, client_id: Option<&str>, token: &str) -> Result<(), Rejection> {
        if client_id.is_some_and(|c| c != CLIENT_ID) {
            return Err(Rejection::oauth(
                401,
                "invalid_client",
                "Client authentication failed: unknown client_id.",
            ));
        }
        let family = match self.refresh_tokens.get(token) {
            Some(e) => Some(e.family),
            None => self
                .signer
                .verify(token)
                .ok()
                .and_then(|claims| claims["jti"].as_str().map(str::to_string))
                .and_then(|jti| self.access_tokens.get(&jti).map(|a| a.family)),
        };
        if let Some(id) = family {
            self.revoke_family(id);
        }
        Ok(())
    }

    /// Records an approved authorization and returns its single-use code.
    pub fn create_code(&mut self, req: CodeRequest<'_>, now: i64) -> String {
        let code = new_code();
        let lifetime = i64::try_from(self.cfg.authorization_code_lifetime.as_secs()).unwrap_or(300);
        self.codes.insert(
            code.clone(),
            PendingCode {
                client_id: req.client_id.to_string(),
                redirect_uri: req.redirect_uri.to_string(),
                challenge: req.challenge.to_string(),
                account_id: req.account_id.to_string(),
                expires_at: now + lifetime,
                redeemed_family: None,
            },
        );
        code
    }

    /// The authorization_code grant with PKCE.
    pub fn exchange_code(
        &mut self,
        client_id: Option<&str>,
        code: Option<&str>,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        now: i64,
    ) -> Result<Minted, Rejection> {
        let result = self.exchange_inner(client_id, code, redirect_uri, verifier, now);
        match result {
            Ok(_) => self.counters.code_exchanges += 1,
            Err(_) => self.counters.code_exchanges_rejected += 1,
        }
        result
    }

    fn exchange_inner(
        &mut self,
        client_id: Option<&str>,
        code: Option<&str>,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        now: i64,
    ) -> Result<Minted, Rejection> {
        let invalid_grant = |d: &str| Rejection::oauth(400, "invalid_grant", d);
        if client_id != Some(CLIENT_ID) {
            return Err(Rejection::oauth(
                401,
                "invalid_client",
                "Client authentication failed: unknown client_id.",
            ));
        }
        let Some(code) = code.filter(|c| !c.is_empty()) else {
            return Err(Rejection::oauth(
                400,
                "invalid_request",
                "Missing required parameter: code.",
            ));
        };
        let Some(pending) = self.codes.get(code) else {
            return Err(invalid_grant("Invalid authorization code."));
        };
        if let Some(family) = pending.redeemed_family {
            // RFC 6749 § 4.1.2: a code used twice revokes what it already granted.
            self.revoke_family(family);
            return Err(invalid_grant("Authorization code has already been used."));
        }
        if pending.expires_at <= now {
            return Err(invalid_grant("Authorization code has expired."));
        }
        if pending.client_id != CLIENT_ID {
            return Err(invalid_grant(
                "Authorization code was issued to another client.",
            ));
        }
        if redirect_uri != Some(pending.redirect_uri.as_str()) {
            return Err(invalid_grant(
                "redirect_uri does not match the authorization request.",
            ));
        }
        let Some(verifier) = verifier.filter(|v| !v.is_empty()) else {
            return Err(Rejection::oauth(
                400,
                "invalid_request",
                "Missing required parameter: code_verifier.",
            ));
        };
        if !verifier_well_formed(verifier) || pkce_challenge(verifier) != pending.challenge {
            return Err(invalid_grant("Invalid code_verifier."));
        }
        let account_id = pending.account_id.clone();
        let Some((family, minted)) = self.new_family(&account_id, None, now) else {
            return Err(invalid_grant("Invalid authorization code."));
        };
        if let Some(p) = self.codes.get_mut(code) {
            p.redeemed_family = Some(family);
        }
        Ok(minted)
    }

    /// Checks a backend call's bearer and `ChatGPT-Account-ID`; returns the account id.
    pub fn authorize_bearer(
        &self,
        bearer: Option<&str>,
        account_header: Option<&str>,
        now: i64,
    ) -> Result<String, Rejection> {
        let unauthorized = || Rejection::detail(401, "Unauthorized");
        let token = bearer.ok_or_else(unauthorized)?;
        let claims = self.signer.verify(token).map_err(|_| unauthorized())?;
        let jti = claims["jti"].as_str().ok_or_else(unauthorized)?;
        let entry = self.access_tokens.get(jti).ok_or_else(unauthorized)?;
        let revoked = self.families.get(&entry.family).is_none_or(|f| f.revoked);
        if revoked {
            return Err(Rejection::backend_token(
                "token_invalidated",
                "Your authentication token has been invalidated. Please try signing in again.",
            ));
        }
        if entry.exp <= now {
            return Err(Rejection::backend_token(
                "token_expired",
                "Provided authentication token is expired. Please try signing in again.",
            ));
        }
        // Our choice (upstream's answer unobserved): a token used for another workspace, or with
        // no workspace header, is a 403, not a 401 — refreshing would not fix it.
        match account_header {
            Some(h) if h == entry.account_id => Ok(entry.account_id.clone()),
            Some(_) => Err(Rejection::detail(
                403,
                "ChatGPT-Account-ID does not match the access token's account.",
            )),
            None => Err(Rejection::detail(403, "Missing ChatGPT-Account-ID header.")),
        }
    }
}
