//! `Secret`: a token in memory. Its `Debug`/`Display` print only a short fingerprint, so a
//! `tracing` field, an error message or a panic can never print the token itself.

use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::Zeroizing;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The token itself. Call sites are the few places that must send or seal it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A short, stable, non-reversible name for the token (first 8 bytes of SHA-256, hex).
    pub fn fingerprint(&self) -> String {
        fingerprint(self.expose())
    }
}

/// Fingerprint of any sensitive string; 16 hex chars is enough to tell tokens apart in logs.
pub fn fingerprint(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(value.as_bytes());
    // One allocation (the request log fingerprints every request's conversation key).
    let mut out = String::with_capacity(16);
    for b in &digest[..8] {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(fp:{})", self.fingerprint())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fp:{}", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("rt_super_secret_value_123456");
        let shown = format!("{s:?} {s}");
        assert!(!shown.contains("super_secret"), "{shown}");
        assert!(shown.contains(&s.fingerprint()));
        assert_eq!(s.fingerprint().len(), 16);
    }

    #[test]
    fn fingerprints_differ_for_different_tokens() {
        assert_ne!(fingerprint("a"), fingerprint("b"));
        assert_eq!(fingerprint("a"), fingerprint("a"));
        // The first 8 bytes of SHA-256("abc"), lower-case hex (a stable format others compare).
        assert_eq!(fingerprint("abc"), "ba7816bf8f01cfea");
    }
}
