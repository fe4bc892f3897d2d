//! AEAD sealing of one value. Layout: version byte, 24-byte random nonce, ciphertext+tag.
//! The AAD binds the account id and the field, so a blob copied to another row or column fails.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    AccessToken,
    RefreshToken,
    IdToken,
    KeyCheck,
    LocalApiKey,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::AccessToken => "access_token",
            Field::RefreshToken => "refresh_token",
            Field::IdToken => "id_token",
            Field::KeyCheck => "key_check",
            Field::LocalApiKey => "local_api_key",
        }
    }
}

/// The 256-bit data key; wiped from memory when the last holder drops it.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

impl DataKey {
    pub fn generate() -> DataKey {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        DataKey(key.into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> DataKey {
        DataKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    fn aad(account_id: &str, field: Field) -> Vec<u8> {
        format!("codex-vault:v1:{}:{}", account_id, field.name()).into_bytes()
    }

    pub fn seal(&self, account_id: &str, field: Field, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = Self::aad(account_id, field);
        // Encryption with a valid key and in-memory buffers cannot fail (no length limit is reachable).
        let ct = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption is infallible for in-memory input");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// HMAC-SHA256 of `value` under a key derived from the data key for `purpose`: a full-length
    /// keyed digest, so a stored digest says nothing about the token to anyone without the key,
    /// and two tokens never share one (unlike a 64-bit fingerprint).
    pub fn keyed_digest(&self, purpose: &str, value: &[u8]) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        type HmacSha256 = Hmac<sha2::Sha256>;
        // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
        let mut derive =
            <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        derive.update(format!("codex-vault:v1:digest-key:{purpose}").as_bytes());
        let sub_key: zeroize::Zeroizing<[u8; 32]> =
            zeroize::Zeroizing::new(derive.finalize().into_bytes().into());
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(&sub_key[..]).expect("HMAC takes any key length");
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    pub fn open(&self, account_id: &str, field: Field, blob: &[u8]) -> Option<Vec<u8>> {
        if blob.len() < 1 + NONCE_LEN + 16 || blob[0] != VERSION {
            return None;
        }
        let nonce = XNonce::from_slice(&blob[1..1 + NONCE_LEN]);
        let aad = Self::aad(account_id, field);
        self.cipher()
            .decrypt(
                nonce,
                Payload {
                    msg: &blob[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_digests_depend_on_key_purpose_and_value() {
        let (a, b) = (DataKey::generate(), DataKey::generate());
        let d = a.keyed_digest("refresh_token", b"rt_1");
        assert_eq!(d, a.keyed_digest("refresh_token", b"rt_1"));
        assert_ne!(d, a.keyed_digest("refresh_token", b"rt_2"));
        assert_ne!(d, a.keyed_digest("other", b"rt_1"));
        assert_ne!(d, b.keyed_digest("refresh_token", b"rt_1"));
    }

    #[test]
    fn roundtrip() {
        let k = DataKey::generate();
        let blob = k.seal("acct-1", Field::RefreshToken, b"rt_secret");
        assert_eq!(
            k.open("acct-1", Field::RefreshToken, &blob).as_deref(),
            Some(&b"rt_secret"[..])
        );
    }

    #[test]
    fn fresh_nonce_every_seal() {
        let k = DataKey::generate();
        assert_ne!(
            k.seal("a", Field::AccessToken, b"x"),
            k.seal("a", Field::AccessToken, b"x")
        );
    }

    #[test]
    fn every_flipped_byte_fails() {
        let k = DataKey::generate();
        let blob = k.seal("acct-1", Field::AccessToken, b"token-value");
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(
                k.open("acct-1", Field::AccessToken, &bad).is_none(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn moved_to_another_account_or_field_fails() {
        let k = DataKey::generate();
        let blob = k.seal("acct-1", Field::RefreshToken, b"rt");
        assert!(k.open("acct-2", Field::RefreshToken, &blob).is_none());
        assert!(k.open("acct-1", Field::AccessToken, &blob).is_none());
    }

    #[test]
    fn another_key_fails() {
        let blob = DataKey::generate().seal("a", Field::IdToken, b"x");
        assert!(DataKey::generate()
            .open("a", Field::IdToken, &blob)
            .is_none());
    }

    #[test]
    fn truncated_blob_fails() {
        let k = DataKey::generate();
        let blob = k.seal("a", Field::IdToken, b"x");
        assert!(k.open("a", Field::IdToken, &blob[..10]).is_none());
        assert!(k.open("a", Field::IdToken, &[]).is_none());
    }
}
