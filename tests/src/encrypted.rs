//! Account-bound ciphertext, as the backend mints it for `reasoning` and `compaction` items
//! (`encrypted_content`): opaque to the client, decryptable only by the account that produced
//! it. Another account handed one answers 400 `invalid_encrypted_content` (protocol.md §
//! Account-bound content).
//!
//! The fake's ciphertext is Fernet-shaped like upstream's (`gAAAA…`, URL-safe base64 with
//! padding): version byte `0x80`, an 8-byte timestamp, a 16-byte nonce, a 32-byte tag =
//! HMAC-SHA256(fake secret, account id ‖ nonce), and filler standing in for the sealed reasoning.
//! Verifying for an account recomputes the tag with *that* account's id: a foreign or edited
//! ciphertext fails, exactly as upstream's would.

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

const VERSION: u8 = 0x80;
const NONCE: usize = 16;
const TAG: usize = 32;
/// Stand-in for the sealed reasoning itself (upstream's are KBs; a few hundred bytes suffice).
const FILLER: usize = 160;

/// Which of upstream's rejection bodies an account answers foreign ciphertext with (all seen
/// live; clients and proxies must recognise each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncryptedContentError {
    /// `"The encrypted content gAAA...DQ== could not be verified."`, `code: "invalid_encrypted_content"`.
    #[default]
    CouldNotBeVerified,
    /// `"The encrypted content for item rs_… could not be verified. Reason: Encrypted content
    /// could not be decrypted or parsed."`, `code: "invalid_encrypted_content"`.
    ForItem,
    /// The first message with `code: null`.
    CodeNull,
}

fn mac(secret: &[u8], account_id: &str, nonce: &[u8]) -> [u8; TAG] {
    // Invariant: HMAC accepts keys of any length.
    #[allow(clippy::expect_used, reason = "HMAC takes any key length")]
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(account_id.as_bytes());
    m.update(&[0]);
    m.update(nonce);
    m.finalize().into_bytes().into()
}

/// A fresh ciphertext bound to `account_id`.
pub(crate) fn mint(secret: &[u8], account_id: &str, now: i64) -> String {
    let mut nonce = [0u8; NONCE];
    rand::thread_rng().fill_bytes(&mut nonce);
    let mut filler = [0u8; FILLER];
    rand::thread_rng().fill_bytes(&mut filler);
    let mut raw = Vec::with_capacity(1 + 8 + NONCE + TAG + FILLER);
    raw.push(VERSION);
    raw.extend_from_slice(&(now.max(0) as u64).to_be_bytes());
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&mac(secret, account_id, &nonce));
    raw.extend_from_slice(&filler);
    URL_SAFE.encode(raw)
}

/// True when `ciphertext` was minted for `account_id` by this fake.
pub(crate) fn verifies(secret: &[u8], account_id: &str, ciphertext: &str) -> bool {
    let Ok(raw) = URL_SAFE.decode(ciphertext) else {
        return false;
    };
    if raw.len() < 1 + 8 + NONCE + TAG || raw[0] != VERSION {
        return false;
    }
    let nonce = &raw[9..9 + NONCE];
    let tag = &raw[9 + NONCE..9 + NONCE + TAG];
    let want = mac(secret, account_id, nonce);
    // Constant time is not needed in a fake; equality is.
    tag == want
}

/// `gAAA...DQ==`: how upstream abbreviates a ciphertext in its error message.
fn abbreviate(ciphertext: &str) -> String {
    let head: String = ciphertext.chars().take(4).collect();
    let tail: String = {
        let n = ciphertext.chars().count();
        ciphertext.chars().skip(n.saturating_sub(4)).collect()
    };
    format!("{head}...{tail}")
}

/// The 400 body for a ciphertext the account cannot verify.
pub(crate) fn rejection(shape: EncryptedContentError, ciphertext: &str, item_id: &str) -> Value {
    let (message, code) = match shape {
        EncryptedContentError::CouldNotBeVerified => (
            format!(
                "The encrypted content {} could not be verified.",
                abbreviate(ciphertext)
            ),
            json!("invalid_encrypted_content"),
        ),
        EncryptedContentError::ForItem => (
            format!("The encrypted content for item {item_id} could not be verified. Reason: Encrypted content could not be decrypted or parsed."),
            json!("invalid_encrypted_content"),
        ),
        EncryptedContentError::CodeNull => (
            format!(
                "The encrypted content {} could not be verified.",
                abbreviate(ciphertext)
            ),
            Value::Null,
        ),
    };
    json!({"error": {
        "message": message,
        "type": "invalid_request_error",
        "param": null,
        "code": code,
    }})
}

/// Every `(index, type, id, encrypted_content)` of the request's `input` items that carry one.
pub(crate) fn carried(request: &Value) -> Vec<(usize, String, Option<String>, String)> {
    let Some(items) = request.get("input").and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let ct = item.get("encrypted_content")?.as_str()?.to_string();
            let kind = item
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let id = item.get("id").and_then(Value::as_str).map(str::to_string);
            Some((i, kind, id, ct))
        })
        .collect()
}

/// Whether the request asks for reasoning ciphertext in its output
/// (`include: ["reasoning.encrypted_content"]`).
pub(crate) fn wants_reasoning(request: &Value) -> bool {
    request
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|v| v.as_str() == Some("reasoning.encrypted_content"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphertext_is_fernet_shaped_and_bound_to_its_account() {
        let secret = b"k";
        let ct = mint(secret, "acct-a", 1_800_000_000);
        assert!(ct.starts_with("gAAAA"), "{ct}");
        assert!(verifies(secret, "acct-a", &ct));
        assert!(!verifies(secret, "acct-b", &ct));
        assert!(!verifies(b"other fake", "acct-a", &ct));
        assert!(!verifies(secret, "acct-a", "gAAAAnot-base64!"));
        let body = rejection(EncryptedContentError::CouldNotBeVerified, &ct, "rs_1");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with("The encrypted content gAAA..."), "{msg}");
        assert!(msg.ends_with(" could not be verified."));
        assert_eq!(
            rejection(EncryptedContentError::CodeNull, &ct, "rs_1")["error"]["code"],
            Value::Null
        );
    }
}
