//! Verifying an adopted sibling token with one cheap call (`GET …/wham/usage`): a reuse may have
//! revoked the whole token family upstream, and then the sibling's token is dead too.

use crate::oauth::classify::error_code;
use crate::secret::Secret;
use std::time::Duration;

pub const DEFAULT_UPSTREAM: &str = "https://chatgpt.com/backend-api/codex";

/// `CODEX_VAULT_UPSTREAM` (the Codex backend base), default chatgpt.com's.
pub fn upstream_base() -> String {
    std::env::var("CODEX_VAULT_UPSTREAM")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_UPSTREAM.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// `{backend-api}/wham/usage`, derived from the Codex base `{backend-api}/codex`.
pub fn usage_url(upstream: &str) -> String {
    let base = upstream.strip_suffix("/codex").unwrap_or(upstream);
    format!("{base}/wham/usage")
}

pub enum Verdict {
    Accepted,
    /// Upstream refused the token: the code it gave (or `unauthorized`), and the HTTP status.
    Rejected {
        code: String,
        http_status: u16,
    },
    /// Could not tell (network, 5xx…): its first real use will tell.
    Unknown,
}

pub async fn verify(
    http: &reqwest::Client,
    url: &str,
    access: &Secret,
    chatgpt_account_id: &str,
) -> Verdict {
    let sent = http
        .get(url)
        .bearer_auth(access.expose())
        .header("ChatGPT-Account-ID", chatgpt_account_id)
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    let Ok(resp) = sent else {
        return Verdict::Unknown;
    };
    let status = resp.status().as_u16();
    match status {
        200..=299 => Verdict::Accepted,
        401 => {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            Verdict::Rejected {
                code: error_code(&body).unwrap_or_else(|| "unauthorized".into()),
                http_status: status,
            }
        }
        _ => Verdict::Unknown,
    }
}
