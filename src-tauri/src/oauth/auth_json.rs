//! The Codex CLI's `auth.json` (protocol.md § Codex CLI `auth.json`): parsed strictly enough that a
//! bad file is refused with a reason before anything is written, loosely enough to take every
//! shape the CLI has written over time (id_token as a claims object in old files).

use super::jwt::{self, IdentityClaims, JwtError};
use crate::account::{has_control_chars, rfc3339_to_ms, UnixMs};
use crate::error_code::ErrorCode;
use crate::secret::Secret;
use serde_json::{Map, Value};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Larger than any real auth.json by two orders of magnitude; caps memory on hostile input.
pub const MAX_AUTH_JSON_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AuthJsonError {
    #[error("cannot read it: {0}")]
    Unreadable(String),
    #[error("it is larger than 1 MiB, which no Codex auth.json is")]
    TooLarge,
    #[error("it is empty")]
    Empty,
    #[error("it is not valid JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("it is not a JSON object")]
    NotObject,
    #[error(
        "this is an API key login, not a ChatGPT account; Codex Vault holds ChatGPT sign-ins only"
    )]
    ApiKeyOnly,
    #[error("it has no `tokens` object (is it a Codex CLI auth.json from a ChatGPT sign-in?)")]
    NoTokens,
    #[error("`{0}` is missing")]
    MissingField(&'static str),
    #[error("`{field}` has the wrong type (expected {expected})")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("`tokens.refresh_token` is empty, so this sign-in cannot be kept fresh")]
    EmptyRefreshToken,
    #[error("{0}")]
    Jwt(#[from] JwtError),
    #[error("`{0}` contains control characters")]
    ControlChars(&'static str),
    #[error(
        "the sign-in names no ChatGPT account id (neither the id_token nor `tokens.account_id`)"
    )]
    NoAccountId,
    #[error("the sign-in names no ChatGPT user id")]
    NoUserId,
    #[error("`tokens.account_id` ({file}) does not match the id_token's account ({claim})")]
    AccountIdMismatch { file: String, claim: String },
}

impl AuthJsonError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthJsonError::Unreadable(_) => ErrorCode::AuthJsonUnreadable,
            AuthJsonError::TooLarge => ErrorCode::AuthJsonTooLarge,
            AuthJsonError::Empty => ErrorCode::AuthJsonEmpty,
            AuthJsonError::NotJson { .. } | AuthJsonError::NotObject => ErrorCode::AuthJsonNotJson,
            AuthJsonError::ApiKeyOnly => ErrorCode::AuthJsonApiKeyOnly,
            AuthJsonError::NoTokens => ErrorCode::AuthJsonNoTokens,
            AuthJsonError::MissingField(_) => ErrorCode::AuthJsonMissingField,
            AuthJsonError::WrongType { .. } => ErrorCode::AuthJsonWrongType,
            AuthJsonError::EmptyRefreshToken => ErrorCode::AuthJsonEmptyRefreshToken,
            AuthJsonError::Jwt(e) => e.code(),
            AuthJsonError::ControlChars(_) => ErrorCode::AuthJsonControlChars,
            AuthJsonError::NoAccountId | AuthJsonError::NoUserId => ErrorCode::JwtMissingClaim,
            AuthJsonError::AccountIdMismatch { .. } => ErrorCode::AuthJsonAccountMismatch,
        }
    }
}

/// Where an auth.json came from; named in every error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    File(PathBuf),
    Stdin,
    Pasted,
}

impl std::fmt::Display for AuthSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthSource::File(p) => write!(f, "{}", p.display()),
            AuthSource::Stdin => f.write_str("standard input"),
            AuthSource::Pasted => f.write_str("the pasted auth.json"),
        }
    }
}

/// A ChatGPT sign-in read from an auth.json, validated, ready to store.
#[derive(Debug, Clone)]
pub struct Credential {
    pub identity: Identity,
    pub tokens: TokenSet,
    /// The file's `last_refresh`: decides whether it is newer than what we already hold.
    pub last_refresh: Option<UnixMs>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub email: String,
    pub chatgpt_account_id: String,
    pub chatgpt_user_id: String,
    pub plan: Option<String>,
    pub fedramp: bool,
}

#[derive(Debug, Clone)]
pub struct TokenSet {
    pub id_token: Secret,
    pub access_token: Secret,
    pub refresh_token: Secret,
    /// From the access token's `exp`; `None` when unreadable (not an error).
    pub access_expires_at: Option<UnixMs>,
    /// From the access token's `iat`, when present.
    pub access_issued_at: Option<UnixMs>,
}

/// Reads at most 1 MiB (+1 byte to detect more) from a reader.
fn read_capped(mut r: impl Read) -> Result<Vec<u8>, AuthJsonError> {
    let mut buf = Vec::new();
    r.by_ref()
        .take(MAX_AUTH_JSON_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| AuthJsonError::Unreadable(e.to_string()))?;
    if buf.len() as u64 > MAX_AUTH_JSON_BYTES {
        return Err(AuthJsonError::TooLarge);
    }
    Ok(buf)
}

pub fn read_file(path: &Path) -> Result<Vec<u8>, AuthJsonError> {
    let f = std::fs::File::open(path).map_err(|e| AuthJsonError::Unreadable(e.to_string()))?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(AuthJsonError::Unreadable("it is a directory".into()));
    }
    read_capped(f)
}

pub fn read_stdin() -> Result<Vec<u8>, AuthJsonError> {
    read_capped(std::io::stdin().lock())
}

fn get_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<&'a str>, AuthJsonError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AuthJsonError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

/// A UTF-8 byte order mark: Windows editors (Notepad, PowerShell's `Out-File`) put one before a
/// file they save; JSON forbids it, but it is no part of the content.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses and validates an auth.json. Nothing is written anywhere.
pub fn parse(bytes: &[u8]) -> Result<Credential, AuthJsonError> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(AuthJsonError::Empty);
    }
    let root: Value = serde_json::from_slice(bytes).map_err(|e| AuthJsonError::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(root) = root else {
        return Err(AuthJsonError::NotObject);
    };
    let tokens = match root.get("tokens") {
        Some(Value::Object(t)) => t,
        Some(Value::Null) | None => {
            let has_key =
                matches!(root.get("OPENAI_API_KEY"), Some(Value::String(s)) if !s.is_empty());
            return Err(if has_key {
                AuthJsonError::ApiKeyOnly
            } else {
                AuthJsonError::NoTokens
            });
        }
        Some(_) => {
            return Err(AuthJsonError::WrongType {
                field: "tokens",
                expected: "an object",
            })
        }
    };

    let access = get_str(tokens, "access_token", "tokens.access_token")?
        .filter(|s| !s.is_empty())
        .ok_or(AuthJsonError::MissingField("tokens.access_token"))?;
    let refresh = get_str(tokens, "refresh_token", "tokens.refresh_token")?
        .ok_or(AuthJsonError::MissingField("tokens.refresh_token"))?;
    if refresh.trim().is_empty() {
        return Err(AuthJsonError::EmptyRefreshToken);
    }
    for (value, field) in [
        (access, "tokens.access_token"),
        (refresh, "tokens.refresh_token"),
    ] {
        // A token goes into an HTTP header later; a control character there is header injection.
        if has_control_chars(value) || value.contains(' ') {
            return Err(AuthJsonError::ControlChars(field));
        }
    }

    // id_token: a JWT string, or (very old files) the claims object itself.
    let (id_token_text, claims) = match tokens.get("id_token") {
        Some(Value::String(s)) => (s.clone(), jwt::decode_claims(s, "id_token")?),
        Some(Value::Object(m)) => (Value::Object(m.clone()).to_string(), m.clone()),
        None | Some(Value::Null) => return Err(AuthJsonError::MissingField("tokens.id_token")),
        Some(_) => {
            return Err(AuthJsonError::WrongType {
                field: "tokens.id_token",
                expected: "a JWT string or a claims object",
            })
        }
    };
    let file_account_id = get_str(tokens, "account_id", "tokens.account_id")?;
    let identity = identity_from_claims(&claims, file_account_id)?;

    let last_refresh = match root.get("last_refresh") {
        None | Some(Value::Null) => None,
        // An unparseable date only loses the "is it newer" comparison; treat it as old.
        Some(Value::String(s)) => rfc3339_to_ms(s),
        Some(_) => {
            return Err(AuthJsonError::WrongType {
                field: "last_refresh",
                expected: "an RFC 3339 date string",
            })
        }
    };

    Ok(Credential {
        identity,
        tokens: TokenSet {
            id_token: Secret::new(id_token_text),
            access_expires_at: jwt::access_token_exp(access).map(|s| s.saturating_mul(1000)),
            access_issued_at: jwt::access_token_iat(access).map(|s| s.saturating_mul(1000)),
            access_token: Secret::new(access),
            refresh_token: Secret::new(refresh),
        },
        last_refresh,
    })
}

/// The account slot an id_token names, validated (used by auth.json import and by sign-in).
/// `account_id_hint` is the auth.json's `tokens.account_id`, which must agree with the claims.
pub fn identity_from_claims(
    claims: &Map<String, Value>,
    account_id_hint: Option<&str>,
) -> Result<Identity, AuthJsonError> {
    let IdentityClaims {
        email,
        chatgpt_account_id,
        chatgpt_user_id,
        plan,
        fedramp,
    } = jwt::identity_from_claims(claims)?;
    if account_id_hint.is_some_and(has_control_chars) {
        return Err(AuthJsonError::ControlChars("tokens.account_id"));
    }
    let account_id = match (chatgpt_account_id, account_id_hint) {
        (Some(c), Some(f)) if c != f => {
            return Err(AuthJsonError::AccountIdMismatch {
                file: f.to_string(),
                claim: c,
            })
        }
        (Some(c), _) => c,
        (None, Some(f)) => f.to_string(),
        (None, None) => return Err(AuthJsonError::NoAccountId),
    };
    let user_id = chatgpt_user_id.ok_or(AuthJsonError::NoUserId)?;
    for (value, field) in [
        (email.as_str(), "email"),
        (account_id.as_str(), "account id"),
        (user_id.as_str(), "user id"),
    ] {
        if has_control_chars(value) {
            return Err(AuthJsonError::ControlChars(field));
        }
        if value.trim().is_empty() {
            return Err(AuthJsonError::MissingField(field));
        }
    }
    if plan.as_deref().is_some_and(has_control_chars) {
        return Err(AuthJsonError::ControlChars("plan"));
    }
    Ok(Identity {
        email,
        chatgpt_account_id: account_id,
        chatgpt_user_id: user_id,
        plan,
        fedramp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::jwt::{make_unsigned_jwt, AUTH_CLAIM};
    use serde_json::json;

    fn id_claims() -> Value {
        json!({"email": "ana@corp.com", AUTH_CLAIM: {"chatgpt_account_id": "acc-1", "chatgpt_user_id": "user-1", "chatgpt_plan_type": "team"}})
    }

    fn file(id_token: Value) -> Value {
        json!({"auth_mode": "chatgpt", "OPENAI_API_KEY": null,
            "tokens": {"id_token": id_token, "access_token": make_unsigned_jwt(&json!({"exp": 1_900_000_000})),
                       "refresh_token": "rt_abc", "account_id": "acc-1"},
            "last_refresh": "2026-01-01T12:34:56.123456Z"})
    }

    fn parse_value(v: &Value) -> Result<Credential, AuthJsonError> {
        parse(v.to_string().as_bytes())
    }

    #[test]
    fn parses_a_current_file() {
        let c = parse_value(&file(Value::String(make_unsigned_jwt(&id_claims())))).unwrap();
        assert_eq!(c.identity.email, "ana@corp.com");
        assert_eq!(c.identity.chatgpt_account_id, "acc-1");
        assert_eq!(c.identity.plan.as_deref(), Some("team"));
        assert_eq!(c.tokens.access_expires_at, Some(1_900_000_000_000));
        assert_eq!(c.last_refresh, rfc3339_to_ms("2026-01-01T12:34:56.123456Z"));
    }

    #[test]
    fn accepts_a_utf8_byte_order_mark() {
        let text = file(Value::String(make_unsigned_jwt(&id_claims()))).to_string();
        let with_bom = [UTF8_BOM, text.as_bytes()].concat();
        let c = parse(&with_bom).unwrap();
        assert_eq!(c.identity.email, "ana@corp.com");
        // Only one mark, and only at the start: anything else is still not JSON.
        let twice = [UTF8_BOM, UTF8_BOM, text.as_bytes()].concat();
        assert_eq!(parse(&twice).unwrap_err().code(), "auth_json_not_json");
        assert_eq!(parse(UTF8_BOM).unwrap_err().code(), "auth_json_empty");
    }

    #[test]
    fn accepts_id_token_as_claims_object() {
        let c = parse_value(&file(id_claims())).unwrap();
        assert_eq!(c.identity.chatgpt_user_id, "user-1");
    }

    #[test]
    fn refuses_bad_shapes_with_their_codes() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "auth_json_empty"),
            (b"{not json".to_vec(), "auth_json_not_json"),
            (b"[1]".to_vec(), "auth_json_not_json"),
            (
                br#"{"OPENAI_API_KEY":"sk-x"}"#.to_vec(),
                "auth_json_api_key_only",
            ),
            (
                br#"{"auth_mode":"chatgpt"}"#.to_vec(),
                "auth_json_no_tokens",
            ),
        ];
        for (bytes, code) in cases {
            assert_eq!(
                parse(&bytes).unwrap_err().code(),
                code,
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let mut v = file(id_claims());
        v["tokens"]["refresh_token"] = json!("");
        assert_eq!(
            parse_value(&v).unwrap_err().code(),
            "auth_json_empty_refresh_token"
        );
        let mut v = file(id_claims());
        v["tokens"]["refresh_token"] = json!(42);
        assert_eq!(parse_value(&v).unwrap_err().code(), "auth_json_wrong_type");
        let mut v = file(json!("not-a-jwt"));
        v["tokens"]["account_id"] = json!("acc-1");
        assert_eq!(parse_value(&v).unwrap_err().code(), "jwt_malformed");
        let mut claims = id_claims();
        claims["email"] = json!("ana\n@corp.com");
        assert_eq!(
            parse_value(&file(claims)).unwrap_err().code(),
            "auth_json_control_chars"
        );
        let mut claims = id_claims();
        claims[AUTH_CLAIM]["chatgpt_user_id"] = json!(null);
        assert_eq!(
            parse_value(&file(claims)).unwrap_err().code(),
            "jwt_missing_claim"
        );
    }

    #[test]
    fn unreadable_exp_is_not_an_error() {
        let mut v = file(id_claims());
        v["tokens"]["access_token"] = json!("opaque");
        assert_eq!(parse_value(&v).unwrap().tokens.access_expires_at, None);
    }

    #[test]
    fn caps_size() {
        let big = vec![b' '; (MAX_AUTH_JSON_BYTES + 10) as usize];
        assert!(matches!(
            read_capped(&big[..]),
            Err(AuthJsonError::TooLarge)
        ));
    }

    #[test]
    fn errors_never_contain_token_text() {
        // Token text placed where error messages quote the file: none of it may come back.
        let mut v = file(id_claims());
        v["tokens"]["refresh_token"] = json!("rt_abc def");
        let e = parse_value(&v).unwrap_err().to_string();
        assert!(!e.contains("rt_abc"), "{e}");
        let mut v = file(json!("eyJhbGciOiJub25lIn0.not-base64!!.sig"));
        v["tokens"]["account_id"] = json!("acc-1");
        let e = parse_value(&v).unwrap_err().to_string();
        assert!(!e.contains("eyJhbGci"), "{e}");
        let mut v = file(id_claims());
        v["tokens"]["account_id"] = json!("acc-\u{1b}[31mother");
        let e = parse_value(&v).unwrap_err().to_string();
        assert!(!e.contains('\u{1b}'), "escape echoed: {e:?}");
    }
}
