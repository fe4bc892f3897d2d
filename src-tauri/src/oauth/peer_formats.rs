//! The sign-in files other tools write, recognised by their content (never their file name) and
//! turned into the Codex CLI `auth.json` shape, so every one goes through the same strict
//! `auth_json::parse` a single import does. Formats (README § Bulk import lists the fields read):
//! - the Codex CLI's `auth.json` (`{tokens:{id_token, access_token, refresh_token, account_id},
//!   last_refresh}`), which codex-lb's per-account "Codex" export also is;
//! - CLIProxyAPI's Codex auth file: flat `{type:"codex", id_token, access_token, refresh_token,
//!   account_id, last_refresh, email, expired}`;
//! - sub2api's account export: `{type:"sub2api-data", accounts:[{name, platform, type,
//!   credentials:{id_token, access_token, refresh_token, chatgpt_account_id, …}}]}`, bare or in
//!   its API envelope `{code, message, data:{…}}`; only `platform:"openai"`, `type:"oauth"` rows
//!   are ChatGPT sign-ins;
//! - codex-lb's export answer (`{account, tokens, codexAuthJson, opencodeAuthJson}`: its
//!   `codexAuthJson` is read) and the OpenCode `auth.json` it also offers
//!   (`{openai:{type:"oauth", refresh, access, expires, accountId}}`), which has no id_token: the
//!   identity is read from the access token's claims, where OpenAI puts the same facts.

use super::auth_json::{self, AuthJsonError, Credential};
use super::jwt::{self, AUTH_CLAIM, PROFILE_CLAIM};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Which tool's file it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum PeerFormat {
    CodexAuthJson,
    CliProxyApi,
    Sub2api,
    CodexLbExport,
    OpenCode,
}

impl PeerFormat {
    pub fn name(self) -> &'static str {
        match self {
            PeerFormat::CodexAuthJson => "Codex auth.json",
            PeerFormat::CliProxyApi => "CLIProxyAPI auth file",
            PeerFormat::Sub2api => "sub2api export",
            PeerFormat::CodexLbExport => "codex-lb export",
            PeerFormat::OpenCode => "OpenCode auth.json",
        }
    }
}

/// One sign-in a file holds (a sub2api export holds many).
#[derive(Debug)]
pub struct PeerEntry {
    /// Where in the file: `accounts[3]` for an export's row; empty for a one-sign-in file.
    pub locator: String,
    /// The name the other tool gave it (sub2api's `name`), a label candidate.
    pub name: Option<String>,
    pub credential: Result<Credential, AuthJsonError>,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerFormatError {
    #[error("{0}")]
    File(#[from] AuthJsonError),
    #[error(
        "it is JSON, but no sign-in format Codex Vault knows (a Codex auth.json, a CLIProxyAPI \
         Codex auth file, a sub2api export, a codex-lb export or an OpenCode auth.json)"
    )]
    Unknown,
    #[error("it is a {0} with no ChatGPT sign-in in it")]
    NoSignIn(&'static str),
}

impl PeerFormatError {
    pub fn code(&self) -> crate::error_code::ErrorCode {
        use crate::error_code::ErrorCode;
        match self {
            PeerFormatError::File(e) => e.code(),
            PeerFormatError::Unknown => ErrorCode::PeerFormatUnknown,
            PeerFormatError::NoSignIn(_) => ErrorCode::PeerFormatNoSignIn,
        }
    }
}

/// Reads every sign-in in a file's bytes. A file-level problem (not JSON, no known format) is the
/// error; a bad row of an export is that entry's error, and the other rows still count.
pub fn read(bytes: &[u8]) -> Result<(PeerFormat, Vec<PeerEntry>), PeerFormatError> {
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(AuthJsonError::Empty.into());
    }
    let root: Value = serde_json::from_slice(text).map_err(|e| AuthJsonError::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(root) = root else {
        return Err(AuthJsonError::NotObject.into());
    };
    let one = |format, value: Value| Ok((format, vec![entry(String::new(), None, &value)]));
    // First: codex-lb's answer also has a `tokens` object, in its own camelCase shape.
    if let Some(Value::Object(codex)) = root.get("codexAuthJson") {
        return one(PeerFormat::CodexLbExport, Value::Object(codex.clone()));
    }
    if root.contains_key("tokens") || root.contains_key("OPENAI_API_KEY") {
        // The strict parser itself, so its messages (an API-key login, …) reach the user.
        return Ok((
            PeerFormat::CodexAuthJson,
            vec![PeerEntry {
                locator: String::new(),
                name: None,
                credential: auth_json::parse(text),
            }],
        ));
    }
    if root.get("type").and_then(Value::as_str) == Some("codex")
        && root.contains_key("refresh_token")
    {
        return one(PeerFormat::CliProxyApi, from_flat(&root, "account_id"));
    }
    if let Some(Value::Object(oc)) = root.get("openai") {
        if oc.contains_key("refresh") && oc.contains_key("access") {
            return one(PeerFormat::OpenCode, from_opencode(oc));
        }
    }
    // sub2api: the export itself, or the API's envelope around it.
    let export = match root.get("data") {
        Some(Value::Object(d)) if d.contains_key("accounts") => d,
        _ => &root,
    };
    if let Some(accounts) = export.get("accounts") {
        let Value::Array(rows) = accounts else {
            return Err(AuthJsonError::WrongType {
                field: "accounts",
                expected: "an array",
            }
            .into());
        };
        let entries: Vec<PeerEntry> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, row)| sub2api_row(i, row))
            .collect();
        if entries.is_empty() {
            return Err(PeerFormatError::NoSignIn(PeerFormat::Sub2api.name()));
        }
        return Ok((PeerFormat::Sub2api, entries));
    }
    Err(PeerFormatError::Unknown)
}

fn entry(locator: String, name: Option<String>, auth_json_shape: &Value) -> PeerEntry {
    PeerEntry {
        locator,
        name,
        credential: auth_json::parse(auth_json_shape.to_string().as_bytes()),
    }
}

/// A flat token object (CLIProxyAPI's file, a sub2api row's credentials) as an auth.json.
fn from_flat(obj: &Map<String, Value>, account_id_key: &str) -> Value {
    let pick = |k: &str| obj.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "tokens": {
            "id_token": pick("id_token"),
            "access_token": pick("access_token"),
            "refresh_token": pick("refresh_token"),
            "account_id": pick(account_id_key),
        },
        "last_refresh": pick("last_refresh"),
    })
}

/// OpenCode keeps no id_token: the access token's claims name the same account, so they stand
/// in for it, as the old auth.json files' claims object did (the next refresh brings a real one).
fn from_opencode(oc: &Map<String, Value>) -> Value {
    let access = oc.get("access").cloned().unwrap_or(Value::Null);
    let claims = access
        .as_str()
        .and_then(|t| jwt::decode_claims(t, "access_token").ok())
        .map(|c| {
            let mut id = Map::new();
            for k in [AUTH_CLAIM, PROFILE_CLAIM, "email"] {
                if let Some(v) = c.get(k) {
                    id.insert(k.to_string(), v.clone());
                }
            }
            Value::Object(id)
        })
        // Not a JWT: `parse` then says the id_token is missing, which is the truth.
        .unwrap_or(Value::Null);
    // OpenCode's `expires` is the access token's expiry, not a refresh time: no `last_refresh`.
    json!({
        "tokens": {
            "id_token": claims,
            "access_token": access,
            "refresh_token": oc.get("refresh").cloned().unwrap_or(Value::Null),
            "account_id": oc.get("accountId").or_else(|| oc.get("account_id")).cloned().unwrap_or(Value::Null),
        },
    })
}

/// A sub2api export row: a ChatGPT sign-in (`platform:"openai"`, `type:"oauth"`) or `None` for
/// another platform's account, which is not ours to import.
fn sub2api_row(i: usize, row: &Value) -> Option<PeerEntry> {
    let locator = format!("accounts[{i}]");
    let Value::Object(row) = row else {
        return Some(PeerEntry {
            locator,
            name: None,
            credential: Err(AuthJsonError::NotObject),
        });
    };
    let platform = row.get("platform").and_then(Value::as_str).unwrap_or("");
    let kind = row.get("type").and_then(Value::as_str).unwrap_or("");
    if !platform.eq_ignore_ascii_case("openai") || kind != "oauth" {
        return None;
    }
    let name = row
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let credential = match row.get("credentials") {
        Some(Value::Object(c)) => {
            return Some(entry(locator, name, &from_flat(c, "chatgpt_account_id")))
        }
        None | Some(Value::Null) => Err(AuthJsonError::MissingField("credentials")),
        Some(_) => Err(AuthJsonError::WrongType {
            field: "credentials",
            expected: "an object",
        }),
    };
    Some(PeerEntry {
        locator,
        name,
        credential,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::jwt::make_unsigned_jwt;

    fn id_claims(n: u32) -> Value {
        json!({"email": format!("u{n}@corp.com"), AUTH_CLAIM: {"chatgpt_account_id": format!("acc-{n}"),
            "chatgpt_user_id": format!("user-{n}"), "chatgpt_plan_type": "plus"}})
    }

    fn access(n: u32) -> String {
        make_unsigned_jwt(
            &json!({"exp": 1_900_000_000, AUTH_CLAIM: id_claims(n)[AUTH_CLAIM].clone(),
            PROFILE_CLAIM: {"email": format!("u{n}@corp.com")}}),
        )
    }

    fn emails(entries: &[PeerEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match &e.credential {
                Ok(c) => c.identity.email.clone(),
                Err(err) => format!("err:{}", err.code()),
            })
            .collect()
    }

    #[test]
    fn each_format_is_told_by_its_content() {
        let codex = json!({"tokens": {"id_token": make_unsigned_jwt(&id_claims(1)), "access_token": access(1),
            "refresh_token": "rt_1"}, "last_refresh": "2026-11-01T00:00:00Z"});
        let cpa = json!({"type": "codex", "id_token": make_unsigned_jwt(&id_claims(2)), "access_token": access(2),
            "refresh_token": "rt_2", "account_id": "acc-2", "last_refresh": "2026-11-01T00:00:00Z",
            "email": "u2@corp.com", "expired": "2026-11-11T00:00:00Z"});
        let sub2api = json!({"code": 0, "message": "success", "data": {"type": "sub2api-data", "version": 1,
            "exported_at": "2026-11-01T00:00:00Z", "proxies": [], "accounts": [
                {"name": "team-a", "platform": "openai", "type": "oauth", "credentials": {
                    "id_token": make_unsigned_jwt(&id_claims(3)), "access_token": access(3), "refresh_token": "rt_3",
                    "chatgpt_account_id": "acc-3"}},
                {"name": "claude", "platform": "anthropic", "type": "oauth", "credentials": {"access_token": "x"}},
                {"name": "broken", "platform": "openai", "type": "oauth", "credentials": {"access_token": access(4)}}]}});
        let codex_lb = json!({"filename": "x.json", "account": {"accountId": "a", "email": "u5@corp.com"},
            "tokens": {"idToken": "x", "accessToken": "y", "refreshToken": "z", "expiresAtMs": 0},
            "codexAuthJson": {"auth_mode": "chatgpt", "OPENAI_API_KEY": null, "tokens": {
                "id_token": make_unsigned_jwt(&id_claims(5)), "access_token": access(5), "refresh_token": "rt_5",
                "account_id": "acc-5"}, "last_refresh": "2026-11-01T00:00:00Z"}});
        let opencode = json!({"openai": {"type": "oauth", "refresh": "rt_6", "access": access(6),
            "expires": 1_900_000_000_000_i64, "accountId": "acc-6"}});
        let cases = [
            (codex, PeerFormat::CodexAuthJson, vec!["u1@corp.com"]),
            (cpa, PeerFormat::CliProxyApi, vec!["u2@corp.com"]),
            (
                sub2api,
                PeerFormat::Sub2api,
                vec!["u3@corp.com", "err:auth_json_missing_field"],
            ),
            (codex_lb, PeerFormat::CodexLbExport, vec!["u5@corp.com"]),
            (opencode, PeerFormat::OpenCode, vec!["u6@corp.com"]),
        ];
        for (value, format, want) in cases {
            let (got, entries) = read(value.to_string().as_bytes()).unwrap();
            assert_eq!(got, format);
            assert_eq!(emails(&entries), want, "{format:?}");
        }
    }

    #[test]
    fn the_fields_land_where_the_import_reads_them() {
        let (_, entries) = read(
            json!({"type": "codex", "id_token": make_unsigned_jwt(&id_claims(2)), "access_token": access(2),
                "refresh_token": "rt_2", "account_id": "acc-2", "last_refresh": "2026-11-01T00:00:00Z"})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let c = entries[0].credential.as_ref().unwrap();
        assert_eq!(c.identity.chatgpt_account_id, "acc-2");
        assert_eq!(c.identity.chatgpt_user_id, "user-2");
        assert_eq!(c.tokens.refresh_token.expose(), "rt_2");
        assert_eq!(
            c.last_refresh,
            crate::account::rfc3339_to_ms("2026-11-01T00:00:00Z")
        );
        // A sub2api row keeps its name as a label candidate; an OpenCode file has no refresh age.
        let (_, rows) = read(
            json!({"accounts": [{"name": " work ", "platform": "OpenAI", "type": "oauth", "credentials": {
                "id_token": make_unsigned_jwt(&id_claims(3)), "access_token": access(3), "refresh_token": "rt_3"}}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(rows[0].name.as_deref(), Some("work"));
        assert_eq!(rows[0].locator, "accounts[0]");
        let (_, oc) = read(
            json!({"openai": {"type": "oauth", "refresh": "rt_6", "access": access(6), "expires": 1}})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let c = oc[0].credential.as_ref().unwrap();
        assert_eq!(c.last_refresh, None);
        assert_eq!(c.identity.chatgpt_account_id, "acc-6");
    }

    #[test]
    fn files_that_are_no_known_format_say_so() {
        for (bytes, want) in [
            (&b"{\"hello\": 1}"[..], "no sign-in format"),
            (&b"[]"[..], "not a JSON object"),
            (&b"{nope"[..], "not valid JSON"),
            (
                &br#"{"accounts": [{"platform": "anthropic", "type": "oauth"}]}"#[..],
                "no ChatGPT sign-in",
            ),
            (&br#"{"OPENAI_API_KEY": "sk-1"}"#[..], "API key login"),
        ] {
            let msg = match read(bytes) {
                Err(e) => e.to_string(),
                Ok((_, entries)) => entries[0].credential.as_ref().unwrap_err().to_string(),
            };
            assert!(msg.contains(want), "{msg}");
        }
    }
}
