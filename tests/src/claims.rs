//! The claim sets of the tokens the fake mints, shaped like OpenAI's (protocol.md § JWT claims):
//! the fields clients read are exactly where upstream puts them, and the rest (scopes, session ids,
//! organizations, …) is there so the tokens have a realistic size (≈ 1–2 KB each).

use serde_json::{json, Value};

use crate::config::{AccountSpec, CLIENT_ID};

/// The claim namespace holding the ChatGPT account facts.
pub const AUTH_CLAIM: &str = "https://api.openai.com/auth";
/// The claim namespace holding the e-mail (the id_token also has a top-level `email`).
pub const PROFILE_CLAIM: &str = "https://api.openai.com/profile";

/// What every minted token of one grant shares.
pub(crate) struct TokenContext<'a> {
    pub issuer: &'a str,
    pub account: &'a AccountSpec,
    /// The session the grant started with (stable across rotations, like upstream's `session_id`).
    pub session_id: &'a str,
    pub iat: i64,
}

fn auth_claims(account: &AccountSpec) -> Value {
    json!({
        "chatgpt_account_id": account.chatgpt_account_id,
        "chatgpt_account_user_id": format!("{}__{}", account.chatgpt_user_id, account.chatgpt_account_id),
        "chatgpt_compute_residency": "no_constraint",
        "chatgpt_plan_type": account.plan,
        "chatgpt_user_id": account.chatgpt_user_id,
        "chatgpt_account_is_fedramp": account.fedramp,
        "user_id": account.chatgpt_user_id,
    })
}

/// Access token claims; `jti` is the key the fake's state table knows the token by.
pub(crate) fn access_claims(ctx: &TokenContext<'_>, exp: i64, jti: &str) -> Value {
    json!({
        "aud": ["https://api.openai.com/v1"],
        "client_id": CLIENT_ID,
        "exp": exp,
        AUTH_CLAIM: auth_claims(ctx.account),
        PROFILE_CLAIM: {
            "email": ctx.account.email,
            "email_verified": true,
        },
        "iat": ctx.iat,
        "iss": ctx.issuer,
        "jti": jti,
        "nbf": ctx.iat,
        "pwd_auth_time": ctx.iat * 1000,
        "scp": ["openid", "profile", "email", "offline_access", "api.connectors.read", "api.connectors.invoke"],
        "session_id": ctx.session_id,
        "sub": format!("auth0|{}", ctx.account.chatgpt_user_id.trim_start_matches("user-")),
    })
}

/// id_token claims. Upstream id tokens live one hour whatever the access token does.
pub(crate) fn id_claims(ctx: &TokenContext<'_>, jti: &str) -> Value {
    let mut auth = auth_claims(ctx.account);
    if let Value::Object(map) = &mut auth {
        map.insert(
            "chatgpt_subscription_active_start".into(),
            json!(chrono::DateTime::from_timestamp(ctx.iat - 86_400 * 20, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()),
        );
        map.insert(
            "chatgpt_subscription_active_until".into(),
            json!(chrono::DateTime::from_timestamp(ctx.iat + 86_400 * 10, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()),
        );
        map.insert(
            "chatgpt_subscription_last_checked".into(),
            json!(chrono::DateTime::from_timestamp(ctx.iat, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()),
        );
        map.insert("groups".into(), json!([]));
        map.insert(
            "organizations".into(),
            json!([{
                "id": format!("org-{}", ctx.account.chatgpt_account_id.replace('-', "")),
                "is_default": true,
                "role": "owner",
                "title": "Personal",
            }]),
        );
    }
    json!({
        "at_hash": crate::config::random_alnum(22),
        "aud": [CLIENT_ID],
        "auth_provider": "password",
        "auth_time": ctx.iat,
        "email": ctx.account.email,
        "email_verified": true,
        "exp": ctx.iat + 3600,
        AUTH_CLAIM: auth,
        PROFILE_CLAIM: { "email": ctx.account.email },
        "iat": ctx.iat,
        "iss": ctx.issuer,
        "jti": jti,
        "rat": ctx.iat,
        "sid": ctx.session_id,
        "sub": format!("auth0|{}", ctx.account.chatgpt_user_id.trim_start_matches("user-")),
    })
}
