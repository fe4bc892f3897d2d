//! Helpers shared by the fake's own tests: a plain HTTP client speaking to the fake the way the
//! Codex CLI (and Codex Vault) do.
#![allow(
    dead_code,
    reason = "not every helper is used by every build of the suite"
)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use codex_vault_testkit::sse::{SseEvent, SseParser};
use codex_vault_testkit::{FakeOpenAi, IssuedTokens, CLIENT_ID};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// A client that, like a browser-less test, does not follow redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The CLI's refresh grant: JSON body.
pub async fn refresh(c: &reqwest::Client, fake: &FakeOpenAi, rt: &str) -> (u16, Value) {
    let resp = c
        .post(fake.token_url())
        .json(&json!({"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": rt}))
        .send()
        .await
        .expect("token call");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("token answer is JSON"))
}

/// A minimal Codex request body (the backend insists on `stream: true`, `store: false`).
pub fn responses_body() -> Value {
    json!({
        "model": "gpt-5.5",
        "instructions": "be brief",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]}],
        "stream": true,
        "store": false,
    })
}

pub async fn post_responses(
    c: &reqwest::Client,
    fake: &FakeOpenAi,
    access_token: &str,
    account_id: &str,
) -> reqwest::Response {
    c.post(format!("{}/responses", fake.codex_base()))
        .bearer_auth(access_token)
        .header("ChatGPT-Account-ID", account_id)
        .header("Accept", "text/event-stream")
        .json(&responses_body())
        .send()
        .await
        .expect("responses call")
}

pub async fn post_responses_as(
    c: &reqwest::Client,
    fake: &FakeOpenAi,
    t: &IssuedTokens,
) -> reqwest::Response {
    post_responses(c, fake, &t.access_token, &t.account_id).await
}

/// Reads body chunks until the parser yields the next event (None at end of body).
pub async fn next_event<S>(
    stream: &mut S,
    parser: &mut SseParser,
    queue: &mut Vec<SseEvent>,
) -> Option<SseEvent>
where
    S: futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
{
    loop {
        if !queue.is_empty() {
            return Some(queue.remove(0));
        }
        match stream.next().await {
            Some(Ok(chunk)) => queue.extend(parser.push(&chunk)),
            Some(Err(_)) | None => return None,
        }
    }
}

/// A PKCE pair as the CLI makes it: 64 random bytes, base64url; challenge = S256.
pub fn pkce_pair() -> (String, String) {
    let bytes: [u8; 64] =
        std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(rand_byte()));
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = codex_vault_testkit::pkce_challenge(&verifier);
    (verifier, challenge)
}

fn rand_byte() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0]
}
