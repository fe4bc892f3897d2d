//! Compact JWTs (`header.payload.signature`, base64url without padding), signed HS256 with a
//! secret that only this fake knows. Clients decode the payload without verifying it (protocol.md
//! § JWT claims); the fake itself verifies the signature of every bearer it is shown, so a token
//! cannot be forged by editing its claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{json, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("not a compact JWT (expected three dot-separated base64url segments)")]
    Malformed,
    #[error("JWT signature does not verify")]
    BadSignature,
    #[error("JWT segment is not the expected JSON: {0}")]
    BadJson(String),
}

/// Signs and verifies this fake's tokens.
pub struct JwtSigner {
    secret: [u8; 32],
    key_id: String,
}

impl JwtSigner {
    /// A signer with a fresh random secret: two fakes never accept each other's tokens.
    pub fn new_random() -> Self {
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let key_id = uuid::Uuid::new_v4().to_string();
        JwtSigner { secret, key_id }
    }

    fn mac(&self) -> HmacSha256 {
        // Invariant: HMAC accepts keys of any length, so this cannot fail.
        #[allow(clippy::expect_used, reason = "HMAC takes any key length")]
        HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length")
    }

    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "HS256", "kid": self.key_id, "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = mac.finalize().into_bytes();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Checks the signature (constant time) and returns the claims.
    pub fn verify(&self, token: &str) -> Result<Value, JwtError> {
        let (signing_input, sig_b64) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
        if signing_input.split('.').count() != 2 {
            return Err(JwtError::Malformed);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|_| JwtError::Malformed)?;
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&sig).map_err(|_| JwtError::BadSignature)?;
        decode_claims(token)
    }
}

/// Decodes the payload of a compact JWT without verifying it: what a client such as the Codex
/// CLI (and Codex Vault) does with the `id_token` and `access_token` it holds.
pub fn decode_claims(token: &str) -> Result<Value, JwtError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|e| JwtError::BadJson(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let signer = JwtSigner::new_random();
        let token = signer.sign(&json!({"sub": "a", "exp": 1}));
        assert_eq!(signer.verify(&token).unwrap()["sub"], "a");
        assert_eq!(decode_claims(&token).unwrap()["exp"], 1);

        // Swap the payload for another one: the signature no longer matches.
        let forged_payload = URL_SAFE_NO_PAD.encode(json!({"sub": "b", "exp": 1}).to_string());
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_payload;
        assert_eq!(signer.verify(&parts.join(".")), Err(JwtError::BadSignature));

        // Another fake's secret does not verify this fake's tokens.
        assert_eq!(
            JwtSigner::new_random().verify(&token),
            Err(JwtError::BadSignature)
        );
        assert_eq!(signer.verify("abc"), Err(JwtError::Malformed));
        assert_eq!(signer.verify("a.b.c.d"), Err(JwtError::Malformed));
    }
}
