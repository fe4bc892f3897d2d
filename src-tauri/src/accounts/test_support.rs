//! Helpers the use cases' unit tests share: auth.json texts and a service over a temp dir.

use crate::accounts::Service;
use crate::vault::KeyStoreKind;

fn b64(v: &serde_json::Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn jwt(claims: serde_json::Value) -> String {
    format!(
        "{}.{}.sig",
        b64(&serde_json::json!({"alg": "none"})),
        b64(&claims)
    )
}

pub fn auth_json(email: &str, refresh: &str, last_refresh: &str) -> String {
    auth_json_for("acc-1", email, refresh, last_refresh)
}

pub fn auth_json_for(account: &str, email: &str, refresh: &str, last_refresh: &str) -> String {
    let auth = serde_json::json!({
        "chatgpt_account_id": account,
        "chatgpt_user_id": "user-1",
        "chatgpt_plan_type": "plus",
    });
    let id_token = jwt(serde_json::json!({
        "email": email,
        "https://api.openai.com/auth": auth,
    }));
    let access = jwt(serde_json::json!({"exp": 4_000_000_000i64, "iat": 3_999_000_000i64}));
    serde_json::json!({
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": id_token,
            "access_token": access,
            "refresh_token": refresh,
            "account_id": account,
        },
        "last_refresh": last_refresh,
    })
    .to_string()
}

pub fn service() -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let s = Service::open(dir.path(), KeyStoreKind::File).unwrap();
    (dir, s)
}
