//! JWT claims, decoded but not verified: we are a client holding tokens the issuer gave us, and
//! the issuer verifies them on every use. Claim names follow the Codex CLI (protocol.md § JWT claims).

use crate::error_code::ErrorCode;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{Map, Value};

/// The namespaced claim object OpenAI puts its account facts in.
pub const AUTH_CLAIM: &str = "https://api.openai.com/auth";
pub const PROFILE_CLAIM: &str = "https://api.openai.com/profile";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("the {which} is not a JWT (expected three dot-separated parts)")]
    NotAJwt { which: &'static str },
    #[error("the {which}'s claims are not valid base64url")]
    BadBase64 { which: &'static str },
    #[error("the {which}'s claims are not a JSON object")]
    NotJson { which: &'static str },
    #[error("the {which} has no `{claim}` claim")]
    MissingClaim {
        which: &'static str,
        claim: &'static str,
    },
    #[error("the {which}'s `{claim}` claim has the wrong type (expected {expected})")]
    WrongType {
        which: &'static str,
        claim: &'static str,
        expected: &'static str,
    },
}

impl JwtError {
    pub fn code(&self) -> ErrorCode {
        match self {
            JwtError::NotAJwt { .. } | JwtError::BadBase64 { .. } | JwtError::NotJson { .. } => {
                ErrorCode::JwtMalformed
            }
            JwtError::MissingClaim { .. } => ErrorCode::JwtMissingClaim,
            JwtError::WrongType { .. } => ErrorCode::JwtWrongClaimType,
        }
    }
}

/// Decodes the middle segment of a JWT into its claims object.
pub fn decode_claims(token: &str, which: &'static str) -> Result<Map<String, Value>, JwtError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::NotAJwt { which });
    };
    // Issuers emit no padding; tolerate it anyway rather than reject a valid token.
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(payload))
        .map_err(|_| JwtError::BadBase64 { which })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::NotJson { which }),
    }
}

/// Who an id_token says the account is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityClaims {
    pub email: String,
    pub chatgpt_account_id: Option<String>,
    pub chatgpt_user_id: Option<String>,
    pub plan: Option<String>,
    pub fedramp: bool,
}

fn opt_str(
    obj: &Map<String, Value>,
    key: &'static str,
    which: &'static str,
) -> Result<Option<String>, JwtError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwtError::WrongType {
            which,
            claim: key,
            expected: "a string",
        }),
    }
}

fn opt_obj<'a>(
    obj: &'a Map<String, Value>,
    key: &'static str,
    which: &'static str,
) -> Result<Option<&'a Map<String, Value>>, JwtError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(JwtError::WrongType {
            which,
            claim: key,
            expected: "an object",
        }),
    }
}

/// Reads the identity out of id_token claims (a decoded JWT or an old file's claims object).
pub fn identity_from_claims(claims: &Map<String, Value>) -> Result<IdentityClaims, JwtError> {
    const W: &str = "id_token";
    let auth = opt_obj(claims, AUTH_CLAIM, W)?;
    let profile = opt_obj(claims, PROFILE_CLAIM, W)?;
    let email = match opt_str(claims, "email", W)? {
        Some(e) => Some(e),
        None => match profile {
            Some(p) => opt_str(p, "email", W)?,
            None => None,
        },
    }
    .ok_or(JwtError::MissingClaim {
        which: W,
        claim: "email",
    })?;
    let (account_id, user_id, plan, fedramp) = match auth {
        Some(a) => {
            let user = match opt_str(a, "chatgpt_user_id", W)? {
                Some(u) => Some(u),
                None => opt_str(a, "user_id", W)?,
            };
            let fedramp = match a.get("chatgpt_account_is_fedramp") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(JwtError::WrongType {
                        which: W,
                        claim: "chatgpt_account_is_fedramp",
                        expected: "a boolean",
                    })
                }
            };
            (
                opt_str(a, "chatgpt_account_id", W)?,
                user,
                opt_str(a, "chatgpt_plan_type", W)?,
                fedramp,
            )
        }
        None => (None, None, None, false),
    };
    Ok(IdentityClaims {
        email,
        chatgpt_account_id: account_id,
        chatgpt_user_id: user_id,
        plan,
        fedramp,
    })
}

/// The access token's `exp` in Unix seconds. `None` when unreadable: protocol.md then falls
/// back to the age of the last refresh, so this is never an error.
pub fn access_token_exp(token: &str) -> Option<i64> {
    numeric_claim(token, "exp")
}

/// The access token's `iat` in Unix seconds, when readable.
pub fn access_token_iat(token: &str) -> Option<i64> {
    numeric_claim(token, "iat")
}

fn numeric_claim(token: &str, claim: &str) -> Option<i64> {
    let claims = decode_claims(token, "access_token").ok()?;
    match claims.get(claim)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) fn make_unsigned_jwt(claims: &Value) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!(
        "{}.{}.sig",
        enc(&serde_json::json!({"alg":"none","typ":"JWT"})),
        enc(claims)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_identity_with_fallbacks() {
        let jwt = make_unsigned_jwt(&json!({
            PROFILE_CLAIM: {"email": "ana@me.com"},
            AUTH_CLAIM: {"chatgpt_account_id": "acc-1", "user_id": "u-1", "chatgpt_plan_type": "plus"}
        }));
        let id = identity_from_claims(&decode_claims(&jwt, "id_token").unwrap()).unwrap();
        assert_eq!(id.email, "ana@me.com");
        assert_eq!(id.chatgpt_account_id.as_deref(), Some("acc-1"));
        assert_eq!(id.chatgpt_user_id.as_deref(), Some("u-1"));
        assert_eq!(id.plan.as_deref(), Some("plus"));
        assert!(!id.fedramp);
    }

    #[test]
    fn rejects_non_jwts_and_wrong_types() {
        assert_eq!(
            decode_claims("abc", "id_token").unwrap_err().code(),
            "jwt_malformed"
        );
        assert_eq!(
            decode_claims("a.!!!.c", "id_token").unwrap_err(),
            JwtError::BadBase64 { which: "id_token" }
        );
        let not_obj = format!("a.{}.c", URL_SAFE_NO_PAD.encode("[1,2]"));
        assert_eq!(
            decode_claims(&not_obj, "id_token").unwrap_err(),
            JwtError::NotJson { which: "id_token" }
        );
        let claims = decode_claims(&make_unsigned_jwt(&json!({"email": 5})), "id_token").unwrap();
        assert_eq!(
            identity_from_claims(&claims).unwrap_err().code(),
            "jwt_wrong_claim_type"
        );
        let claims = decode_claims(&make_unsigned_jwt(&json!({})), "id_token").unwrap();
        assert_eq!(
            identity_from_claims(&claims).unwrap_err(),
            JwtError::MissingClaim {
                which: "id_token",
                claim: "email"
            }
        );
    }

    #[test]
    fn exp_is_optional() {
        assert_eq!(
            access_token_exp(&make_unsigned_jwt(&json!({"exp": 1700000000}))),
            Some(1_700_000_000)
        );
        assert_eq!(access_token_exp("opaque-token"), None);
        assert_eq!(
            access_token_exp(&make_unsigned_jwt(&json!({"exp": "soon"}))),
            None
        );
    }
}
